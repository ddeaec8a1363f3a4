//! `TensorProto` ⇄ [`Tensor`].
//!
//! ONNX element types map onto kiln dtypes as follows ([`dtype_from_onnx`]):
//!
//! | ONNX | kiln | note |
//! |---|---|---|
//! | FLOAT, DOUBLE, FLOAT16, BFLOAT16 | f32, f64, f16, bf16 | exact |
//! | INT8, UINT8, INT16, INT32, INT64, BOOL | i8, u8, i16, i32, i64, bool | exact |
//! | UINT16, UINT32, UINT64 | u16, u32, u64 | exact |
//! | FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ, FLOAT8E8M0 | f8e4m3fn, f8e4m3fnuz, f8e5m2, f8e5m2fnuz, f8e8m0 | storage-only, exact bits |
//! | FLOAT4E2M1, INT4, UINT4, INT2, UINT2 | f4e2m1, i4, u4, i2, u2 | storage-only, exact bits |
//!
//! Everything else (STRING, COMPLEX*, FLOAT6*, ...) is an error naming the type.
//!
//! Data comes either from `raw_data` (fixed-width little-endian, row-major;
//! the 4-bit types two to a byte and the 2-bit types four to a byte, first
//! element in the lowest bits) or from the typed field ONNX assigns to each
//! element type: `float_data` (FLOAT), `double_data` (DOUBLE), `int64_data`
//! (INT64), `uint64_data` (UINT32, UINT64) and `int32_data` for everything
//! narrower, including the bit patterns of FLOAT16/BFLOAT16 and the float8
//! types, one packed byte per value for the 4- and 2-bit types, and 0/1 for
//! BOOL (any non-zero byte or value reads as true). Element counts are checked
//! against the dims, and typed values against their element type's range.

use std::path::Path;

use half::{bf16, f16};
use kiln_ir::{DType, Narrow, Tensor};
use ndarray::{ArrayD, IxDyn};
use prost::Message;

use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::TensorProto;
use super::{read_file, OnnxError};

/// The kiln dtype that tensors of ONNX element type `elem_type` (a
/// `TensorProto.DataType` value) decode to, or `None` if kiln cannot represent
/// it (see the module docs).
pub fn dtype_from_onnx(elem_type: i32) -> Option<DType> {
    Some(match DataType::try_from(elem_type).ok()? {
        DataType::Float => DType::F32,
        DataType::Double => DType::F64,
        DataType::Float16 => DType::F16,
        DataType::Bfloat16 => DType::BF16,
        DataType::Int8 => DType::I8,
        DataType::Uint8 => DType::U8,
        DataType::Int16 => DType::I16,
        DataType::Uint16 => DType::U16,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::Uint32 => DType::U32,
        DataType::Uint64 => DType::U64,
        DataType::Bool => DType::Bool,
        DataType::Float8e4m3fn => DType::Narrow(Narrow::F8E4M3FN),
        DataType::Float8e4m3fnuz => DType::Narrow(Narrow::F8E4M3FNUZ),
        DataType::Float8e5m2 => DType::Narrow(Narrow::F8E5M2),
        DataType::Float8e5m2fnuz => DType::Narrow(Narrow::F8E5M2FNUZ),
        DataType::Float8e8m0 => DType::Narrow(Narrow::F8E8M0),
        DataType::Float4e2m1 => DType::Narrow(Narrow::F4E2M1),
        DataType::Int4 => DType::Narrow(Narrow::I4),
        DataType::Uint4 => DType::Narrow(Narrow::U4),
        DataType::Int2 => DType::Narrow(Narrow::I2),
        DataType::Uint2 => DType::Narrow(Narrow::U2),
        _ => return None,
    })
}

/// The ONNX element type (`TensorProto.DataType` value) that stores `dtype`.
/// Quantized dtypes store as their integer type (INT8, UINT8).
pub fn dtype_to_onnx(dtype: DType) -> i32 {
    let t = match dtype {
        DType::F32 => DataType::Float,
        DType::F64 => DataType::Double,
        DType::F16 => DataType::Float16,
        DType::BF16 => DataType::Bfloat16,
        DType::I8 | DType::QI8(_) => DataType::Int8,
        DType::U8 | DType::QU8(_) => DataType::Uint8,
        DType::I16 => DataType::Int16,
        DType::I32 => DataType::Int32,
        DType::I64 => DataType::Int64,
        DType::Bool => DataType::Bool,
        DType::U16 => DataType::Uint16,
        DType::U32 => DataType::Uint32,
        DType::U64 => DataType::Uint64,
        DType::Narrow(n) => match n {
            Narrow::F8E4M3FN => DataType::Float8e4m3fn,
            Narrow::F8E4M3FNUZ => DataType::Float8e4m3fnuz,
            Narrow::F8E5M2 => DataType::Float8e5m2,
            Narrow::F8E5M2FNUZ => DataType::Float8e5m2fnuz,
            Narrow::F8E8M0 => DataType::Float8e8m0,
            Narrow::F4E2M1 => DataType::Float4e2m1,
            Narrow::I4 => DataType::Int4,
            Narrow::U4 => DataType::Uint4,
            Narrow::I2 => DataType::Int2,
            Narrow::U2 => DataType::Uint2,
        },
    };
    t as i32
}

/// The ONNX spelling of an element type (`FLOAT`, `STRING`, ...), or
/// `data type N` for a value outside the enum.
fn type_name(elem_type: i32) -> String {
    match DataType::try_from(elem_type) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => format!("data type {elem_type}"),
    }
}

/// Encode `t` as a `TensorProto` named `name`, with its data in `raw_data`
/// (4- and 2-bit types packed).
pub fn tensor_to_proto(name: &str, t: &Tensor) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(dtype_to_onnx(t.dtype())),
        raw_data: Some(t.to_packed_bytes()),
        ..Default::default()
    }
}

/// Decode a serialized `TensorProto` (the ONNX test-data `.pb` format) into its
/// name and value.
pub fn read_tensor_pb(bytes: &[u8]) -> Result<(String, Tensor), OnnxError> {
    let proto = TensorProto::decode(bytes).map_err(|source| OnnxError::Decode {
        what: "ONNX tensor (TensorProto)".to_string(),
        source,
    })?;
    Ok((proto.name().to_string(), tensor_from_proto(&proto)?))
}

/// Read a `.pb` file holding one serialized `TensorProto` (such as
/// `test_data_set_0/input_0.pb`) and return its name and value.
pub fn load_tensor_pb(path: &Path) -> Result<(String, Tensor), OnnxError> {
    let bytes = read_file(path)?;
    let proto = TensorProto::decode(bytes.as_slice()).map_err(|source| OnnxError::Decode {
        what: format!("ONNX tensor {}", path.display()),
        source,
    })?;
    Ok((proto.name().to_string(), tensor_from_proto(&proto)?))
}

/// Convert a `TensorProto` into a [`Tensor`] (see the module docs for the
/// dtype mapping and where the data may come from).
///
/// Errors, each naming the tensor: negative dims, an element count or
/// `raw_data` length that does not match the dims, typed values out of range
/// for the element type, data in both `raw_data` and a typed field,
/// external or segmented data, and unsupported element types.
pub fn tensor_from_proto(t: &TensorProto) -> Result<Tensor, OnnxError> {
    decode(t).map_err(|message| OnnxError::Tensor {
        name: t.name().to_string(),
        message,
    })
}

/// Where a tensor's elements come from.
#[derive(Clone, Copy)]
enum Source<'a> {
    Raw(&'a [u8]),
    Typed,
}

fn decode(t: &TensorProto) -> Result<Tensor, String> {
    match t.data_location {
        None => {}
        Some(loc) if loc == DataLocation::Default as i32 => {}
        Some(loc) if loc == DataLocation::External as i32 => {
            return Err(
                "external data not supported (data_location = EXTERNAL; the data lives \
                 in a separate file)"
                    .to_string(),
            )
        }
        Some(loc) => return Err(format!("unknown data_location {loc}")),
    }
    if t.segment.is_some() {
        return Err("segmented tensors are not supported".to_string());
    }

    let elem_type = t.data_type();
    let ty = match DataType::try_from(elem_type) {
        Ok(DataType::Undefined) => return Err("data_type is missing or UNDEFINED".to_string()),
        Ok(ty) if dtype_from_onnx(elem_type).is_some() => ty,
        _ => return Err(format!("unsupported data type {}", type_name(elem_type))),
    };

    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        match usize::try_from(d) {
            Ok(d) => dims.push(d),
            Err(_) => return Err(format!("negative dimension {d} in dims {:?}", t.dims)),
        }
    }
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("element count of dims {:?} overflows", t.dims))?;

    let typed_len = t.float_data.len()
        + t.int32_data.len()
        + t.string_data.len()
        + t.int64_data.len()
        + t.double_data.len()
        + t.uint64_data.len();
    let src = match &t.raw_data {
        Some(raw) if !raw.is_empty() && typed_len > 0 => {
            return Err("data is in both raw_data and a typed field".to_string())
        }
        Some(raw) if !raw.is_empty() || typed_len == 0 => Source::Raw(raw),
        _ => Source::Typed,
    };

    let d = Decoder {
        t,
        ty,
        dims: &dims,
        count,
        src,
    };
    Ok(match ty {
        DataType::Float => Tensor::F32(d.array(f32::from_le_bytes, || Ok(t.float_data.clone()))?),
        DataType::Double => Tensor::F64(d.array(f64::from_le_bytes, || Ok(t.double_data.clone()))?),
        DataType::Float16 => Tensor::F16(d.array(f16::from_le_bytes, || {
            d.narrow_int32(|x| u16::try_from(x).ok().map(f16::from_bits))
        })?),
        DataType::Bfloat16 => Tensor::BF16(d.array(bf16::from_le_bytes, || {
            d.narrow_int32(|x| u16::try_from(x).ok().map(bf16::from_bits))
        })?),
        DataType::Int8 => Tensor::I8(d.array(i8::from_le_bytes, || {
            d.narrow_int32(|x| i8::try_from(x).ok())
        })?),
        DataType::Uint8 => Tensor::U8(d.array(u8::from_le_bytes, || {
            d.narrow_int32(|x| u8::try_from(x).ok())
        })?),
        DataType::Int16 => Tensor::I16(d.array(i16::from_le_bytes, || {
            d.narrow_int32(|x| i16::try_from(x).ok())
        })?),
        DataType::Uint16 => Tensor::U16(d.array(u16::from_le_bytes, || {
            d.narrow_int32(|x| u16::try_from(x).ok())
        })?),
        DataType::Int32 => Tensor::I32(d.array(i32::from_le_bytes, || Ok(t.int32_data.clone()))?),
        DataType::Int64 => Tensor::I64(d.array(i64::from_le_bytes, || Ok(t.int64_data.clone()))?),
        // The typed form stores each value in uint64_data.
        DataType::Uint32 => Tensor::U32(d.array(u32::from_le_bytes, || {
            d.narrow_uint64(|x| u32::try_from(x).ok())
        })?),
        DataType::Uint64 => Tensor::U64(d.array(u64::from_le_bytes, || Ok(t.uint64_data.clone()))?),
        DataType::Bool => {
            Tensor::Bool(d.array(|b: [u8; 1]| b[0] != 0, || d.narrow_int32(|x| Some(x != 0)))?)
        }
        other => match dtype_from_onnx(other as i32) {
            Some(DType::Narrow(n)) => d.narrow(n)?,
            _ => return Err(format!("unsupported data type {}", other.as_str_name())),
        },
    })
}

struct Decoder<'a> {
    t: &'a TensorProto,
    ty: DataType,
    dims: &'a [usize],
    count: usize,
    src: Source<'a>,
}

impl Decoder<'_> {
    /// The elements from `raw_data` (decoded with `from_le`) or from the typed
    /// field (`typed`), shaped to the dims.
    fn array<T, const N: usize>(
        &self,
        from_le: impl Fn([u8; N]) -> T,
        typed: impl FnOnce() -> Result<Vec<T>, String>,
    ) -> Result<ArrayD<T>, String> {
        let v = match self.src {
            Source::Raw(raw) => self.raw(raw, from_le)?,
            Source::Typed => self.typed(typed()?, self.typed_field())?,
        };
        self.shape(v)
    }

    fn raw<T, const N: usize>(
        &self,
        raw: &[u8],
        from_le: impl Fn([u8; N]) -> T,
    ) -> Result<Vec<T>, String> {
        let want = self.count.checked_mul(N);
        if want != Some(raw.len()) {
            return Err(format!(
                "raw_data has {} bytes but dims {:?} of {} need {} ({} elements of {N} bytes)",
                raw.len(),
                self.dims,
                self.ty.as_str_name(),
                want.map_or_else(|| "more".to_string(), |w| w.to_string()),
                self.count,
            ));
        }
        Ok(raw
            .chunks_exact(N)
            .map(|c| {
                let mut b = [0u8; N];
                b.copy_from_slice(c);
                from_le(b)
            })
            .collect())
    }

    /// A storage-only type: one byte per element (float8), or packed two or
    /// four to a byte (4- and 2-bit types), in `raw_data` or one byte per
    /// `int32_data` value.
    fn narrow(&self, n: Narrow) -> Result<Tensor, String> {
        let per = 8 / n.bits() as usize;
        let want = self.count.div_ceil(per);
        let bytes: Vec<u8> = match self.src {
            Source::Raw(raw) => {
                if raw.len() != want {
                    return Err(format!(
                        "raw_data has {} bytes but dims {:?} of {} need {want} ({} elements of {} bits)",
                        raw.len(),
                        self.dims,
                        self.ty.as_str_name(),
                        self.count,
                        n.bits()
                    ));
                }
                raw.to_vec()
            }
            Source::Typed => {
                if self.t.int32_data.len() != want {
                    return Err(format!(
                        "int32_data has {} elements but dims {:?} need {want}",
                        self.t.int32_data.len(),
                        self.dims
                    ));
                }
                self.narrow_int32(|x| u8::try_from(x).ok())?
            }
        };
        let elems = if per == 1 {
            bytes
        } else {
            kiln_ir::narrow::unpack(n, &bytes, self.count)
                .ok_or_else(|| "packed data does not match the dims".to_string())?
        };
        Tensor::narrow_from_bits(n, self.shape(elems)?)
    }

    fn typed<T>(&self, v: Vec<T>, field: &str) -> Result<Vec<T>, String> {
        if v.len() != self.count {
            return Err(format!(
                "{field} has {} elements but dims {:?} need {}",
                v.len(),
                self.dims,
                self.count
            ));
        }
        Ok(v)
    }

    fn shape<T>(&self, v: Vec<T>) -> Result<ArrayD<T>, String> {
        ArrayD::from_shape_vec(IxDyn(self.dims), v)
            .map_err(|e| format!("bad dims {:?}: {e}", self.dims))
    }

    /// The typed field ONNX uses for this element type.
    fn typed_field(&self) -> &'static str {
        match self.ty {
            DataType::Float => "float_data",
            DataType::Double => "double_data",
            DataType::Int64 => "int64_data",
            DataType::Uint32 | DataType::Uint64 => "uint64_data",
            _ => "int32_data",
        }
    }

    /// Narrow each `int32_data` value with `conv`; `None` means out of range.
    fn narrow_int32<T>(&self, conv: impl Fn(i32) -> Option<T>) -> Result<Vec<T>, String> {
        self.t
            .int32_data
            .iter()
            .map(|&x| conv(x).ok_or_else(|| self.out_of_range("int32_data", x)))
            .collect()
    }

    /// Narrow each `uint64_data` value with `conv`; `None` means out of range.
    fn narrow_uint64<T>(&self, conv: impl Fn(u64) -> Option<T>) -> Result<Vec<T>, String> {
        self.t
            .uint64_data
            .iter()
            .map(|&x| conv(x).ok_or_else(|| self.out_of_range("uint64_data", x)))
            .collect()
    }

    fn out_of_range(&self, field: &str, x: impl std::fmt::Display) -> String {
        format!(
            "{field} value {x} is out of range for {}",
            self.ty.as_str_name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(name: &str, ty: DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            name: Some(name.to_string()),
            data_type: Some(ty as i32),
            dims: dims.to_vec(),
            ..Default::default()
        }
    }

    fn err_of(t: &TensorProto) -> String {
        match tensor_from_proto(t) {
            Ok(v) => panic!("expected an error, decoded {v:?}"),
            Err(e @ OnnxError::Tensor { .. }) => e.to_string(),
            Err(e) => panic!("expected a tensor error, got {e}"),
        }
    }

    fn arr<T>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
    }

    /// One tensor per kiln dtype, with awkward values (NaN, -0.0, extremes).
    fn samples() -> Vec<Tensor> {
        vec![
            Tensor::F32(arr(
                &[2, 3],
                vec![
                    1.5,
                    -0.0,
                    f32::NAN,
                    f32::INFINITY,
                    f32::MIN_POSITIVE,
                    -3.25e30,
                ],
            )),
            Tensor::F64(arr(&[3], vec![std::f64::consts::PI, -1e300, f64::NAN])),
            Tensor::F16(arr(
                &[2, 2],
                vec![f16::ONE, f16::NEG_INFINITY, f16::from_f32(-0.333), f16::MAX],
            )),
            Tensor::BF16(arr(
                &[1, 3],
                vec![bf16::from_f32(2.5), bf16::MIN, bf16::from_bits(0x7fc1)],
            )),
            Tensor::I8(arr(&[4], vec![i8::MIN, -1, 0, i8::MAX])),
            Tensor::U8(arr(&[2, 2], vec![0, 1, 128, 255])),
            Tensor::I16(arr(&[3], vec![i16::MIN, 7, i16::MAX])),
            Tensor::I32(arr(&[3], vec![i32::MIN, -42, i32::MAX])),
            Tensor::I64(arr(&[2, 1], vec![i64::MIN, i64::MAX])),
            Tensor::Bool(arr(&[3], vec![true, false, true])),
            Tensor::U16(arr(&[2], vec![0, u16::MAX])),
            Tensor::U32(arr(&[3], vec![0, 7, u32::MAX])),
            Tensor::U64(arr(&[2], vec![u64::MAX, 1 << 63])),
            // Every narrow type, with an odd count so packing pads.
            Tensor::Narrow(Narrow::F8E4M3FN, arr(&[3], vec![0x7E, 0xFF, 0x01])),
            Tensor::Narrow(Narrow::F8E4M3FNUZ, arr(&[3], vec![0x80, 0x7F, 0x81])),
            Tensor::Narrow(Narrow::F8E5M2, arr(&[3], vec![0x7B, 0xFC, 0x7E])),
            Tensor::Narrow(Narrow::F8E5M2FNUZ, arr(&[2], vec![0x80, 0x01])),
            Tensor::Narrow(Narrow::F8E8M0, arr(&[2], vec![0x7F, 0xFF])),
            Tensor::Narrow(Narrow::F4E2M1, arr(&[3], vec![0x7, 0xF, 0x1])),
            Tensor::Narrow(Narrow::I4, arr(&[1, 3], vec![0x8, 0x7, 0xF])),
            Tensor::Narrow(Narrow::U4, arr(&[5], vec![1, 2, 3, 15, 0])),
            Tensor::Narrow(Narrow::I2, arr(&[5], vec![2, 1, 3, 0, 1])),
            Tensor::Narrow(Narrow::U2, arr(&[2, 3], vec![0, 1, 2, 3, 3, 1])),
            // A scalar and an empty tensor.
            Tensor::F32(arr(&[], vec![7.0])),
            Tensor::I64(arr(&[2, 0, 3], vec![])),
        ]
    }

    #[test]
    fn round_trip_every_dtype() {
        let mut seen = std::collections::HashSet::new();
        for (i, t) in samples().into_iter().enumerate() {
            let name = format!("t{i}");
            let p = tensor_to_proto(&name, &t);
            assert_eq!(p.data_type(), dtype_to_onnx(t.dtype()));
            assert_eq!(dtype_from_onnx(p.data_type()), Some(t.dtype()));
            // Through the wire format too.
            let (back_name, back) = read_tensor_pb(&p.encode_to_vec()).unwrap();
            assert_eq!(back_name, name);
            assert_eq!(back, t, "{name}: bitwise round trip");
            assert_eq!(tensor_from_proto(&p).unwrap(), t);
            seen.insert(t.dtype());
        }
        assert_eq!(
            seen.len(),
            DType::PLAIN.len(),
            "every plain dtype is covered"
        );
    }

    #[test]
    fn dtype_mapping() {
        assert_eq!(dtype_from_onnx(DataType::Uint16 as i32), Some(DType::U16));
        assert_eq!(dtype_from_onnx(DataType::Uint32 as i32), Some(DType::U32));
        assert_eq!(dtype_from_onnx(DataType::Uint64 as i32), Some(DType::U64));
        assert_eq!(
            dtype_from_onnx(DataType::Float8e4m3fn as i32),
            Some(DType::Narrow(Narrow::F8E4M3FN))
        );
        assert_eq!(
            dtype_from_onnx(DataType::Uint2 as i32),
            Some(DType::Narrow(Narrow::U2))
        );
        for ty in [
            DataType::Undefined,
            DataType::String,
            DataType::Complex64,
            DataType::Complex128,
            DataType::Float6e2m3,
        ] {
            assert_eq!(dtype_from_onnx(ty as i32), None, "{ty:?}");
        }
        assert_eq!(dtype_from_onnx(-1), None);
        assert_eq!(dtype_from_onnx(999), None);
        for d in DType::PLAIN {
            assert_eq!(dtype_from_onnx(dtype_to_onnx(d)), Some(d));
        }
        let q = kiln_ir::QuantParams::new(0.5, 3);
        assert_eq!(dtype_to_onnx(DType::QI8(q)), DataType::Int8 as i32);
        assert_eq!(dtype_to_onnx(DType::QU8(q)), DataType::Uint8 as i32);
    }

    #[test]
    fn typed_float_double_int64() {
        let mut p = proto("f", DataType::Float, &[2, 2]);
        p.float_data = vec![1.0, 2.0, 3.0, 4.0];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::f32(&[2, 2], vec![1.0, 2.0, 3.0, 4.0])
        );

        let mut p = proto("d", DataType::Double, &[2]);
        p.double_data = vec![0.1, -2.0];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::F64(arr(&[2], vec![0.1, -2.0]))
        );

        let mut p = proto("i", DataType::Int64, &[3]);
        p.int64_data = vec![-1, 0, i64::MAX];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::I64(arr(&[3], vec![-1, 0, i64::MAX]))
        );

        // A scalar in a typed field.
        let mut p = proto("s", DataType::Int64, &[]);
        p.int64_data = vec![5];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::I64(arr(&[], vec![5]))
        );
    }

    #[test]
    fn typed_int32_data_carries_narrow_types() {
        let h = [f16::from_f32(1.5), f16::NEG_INFINITY, f16::from_f32(-0.0)];
        let mut p = proto("h", DataType::Float16, &[3]);
        p.int32_data = h.iter().map(|x| i32::from(x.to_bits())).collect();
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::F16(arr(&[3], h.to_vec()))
        );

        let b = [bf16::from_f32(-2.0), bf16::from_f32(1e20)];
        let mut p = proto("b", DataType::Bfloat16, &[2]);
        p.int32_data = b.iter().map(|x| i32::from(x.to_bits())).collect();
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::BF16(arr(&[2], b.to_vec()))
        );

        let mut p = proto("bool", DataType::Bool, &[2, 2]);
        p.int32_data = vec![1, 0, 0, 1];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::Bool(arr(&[2, 2], vec![true, false, false, true]))
        );

        let mut p = proto("i8", DataType::Int8, &[3]);
        p.int32_data = vec![-128, 0, 127];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::I8(arr(&[3], vec![-128, 0, 127]))
        );

        let mut p = proto("u8", DataType::Uint8, &[2]);
        p.int32_data = vec![0, 255];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::U8(arr(&[2], vec![0, 255]))
        );

        let mut p = proto("i16", DataType::Int16, &[2]);
        p.int32_data = vec![-32768, 32767];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::I16(arr(&[2], vec![-32768, 32767]))
        );

        let mut p = proto("u16", DataType::Uint16, &[2]);
        p.int32_data = vec![0, 65535];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::U16(arr(&[2], vec![0, 65535]))
        );

        // float8: one pattern per value; 4-bit: one packed byte per value.
        let mut p = proto("f8", DataType::Float8e5m2, &[2]);
        p.int32_data = vec![0x7B, 0xFC];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::Narrow(Narrow::F8E5M2, arr(&[2], vec![0x7B, 0xFC]))
        );
        let mut p = proto("i4", DataType::Int4, &[3]);
        p.int32_data = vec![0x21, 0x0F];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::Narrow(Narrow::I4, arr(&[3], vec![1, 2, 0xF]))
        );
        assert_eq!(
            tensor_from_proto(&p).unwrap().values_f64(),
            [1.0, 2.0, -1.0]
        );
        p.int32_data = vec![0x21];
        assert!(err_of(&p).contains("int32_data has 1 elements but dims [3] need 2"));
        p.int32_data = vec![0x21, 0x100];
        assert!(err_of(&p).contains("out of range for INT4"));
        let mut p = proto("u2", DataType::Uint2, &[5]);
        p.raw_data = Some(vec![0b1110_0100, 0b11]);
        assert_eq!(
            tensor_from_proto(&p).unwrap().values_f64(),
            [0.0, 1.0, 2.0, 3.0, 3.0]
        );
        p.raw_data = Some(vec![0b1110_0100]);
        assert!(err_of(&p).contains("raw_data has 1 bytes"));

        let mut p = proto("i32", DataType::Int32, &[2]);
        p.int32_data = vec![i32::MIN, i32::MAX];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::I32(arr(&[2], vec![i32::MIN, i32::MAX]))
        );
    }

    #[test]
    fn typed_values_out_of_range_are_errors() {
        for (ty, bad) in [
            (DataType::Int8, 128),
            (DataType::Int8, -129),
            (DataType::Uint8, -1),
            (DataType::Uint8, 256),
            (DataType::Int16, 40000),
            (DataType::Uint16, 65536),
            (DataType::Float16, -1),
            (DataType::Bfloat16, 0x10000),
        ] {
            let mut p = proto("x", ty, &[2]);
            p.int32_data = vec![0, bad];
            let e = err_of(&p);
            assert!(
                e.contains("tensor 'x'")
                    && e.contains("out of range")
                    && e.contains(&bad.to_string()),
                "{ty:?}: {e}"
            );
        }
        let mut p = proto("u32", DataType::Uint32, &[1]);
        p.uint64_data = vec![1 << 32];
        assert!(err_of(&p).contains("out of range for UINT32"));
    }

    #[test]
    fn unsigned_types_are_exact() {
        let mut p = proto("u16", DataType::Uint16, &[3]);
        p.raw_data = Some(
            [0u16, 1, 65535]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        );
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::U16(arr(&[3], vec![0, 1, 65535]))
        );

        let mut p = proto("u32", DataType::Uint32, &[2]);
        p.uint64_data = vec![7, u64::from(u32::MAX)];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::U32(arr(&[2], vec![7, u32::MAX]))
        );

        // Above i64::MAX, from either source.
        let mut p = proto("u64", DataType::Uint64, &[2]);
        p.uint64_data = vec![3, u64::MAX];
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::U64(arr(&[2], vec![3, u64::MAX]))
        );
        let mut p = proto("u64", DataType::Uint64, &[1]);
        p.raw_data = Some(u64::MAX.to_le_bytes().to_vec());
        assert_eq!(
            tensor_from_proto(&p).unwrap(),
            Tensor::U64(arr(&[1], vec![u64::MAX]))
        );
    }

    #[test]
    fn count_mismatches_are_errors() {
        let mut p = proto("w", DataType::Float, &[2, 3]);
        p.float_data = vec![1.0; 5];
        let e = err_of(&p);
        assert!(
            e.contains("tensor 'w'") && e.contains("float_data has 5 elements"),
            "{e}"
        );
        assert!(e.contains("need 6"), "{e}");

        let mut p = proto("w", DataType::Int64, &[1]);
        p.int64_data = vec![1, 2];
        assert!(err_of(&p).contains("int64_data has 2 elements"));

        // Data in the wrong typed field: the right one is empty.
        let mut p = proto("w", DataType::Float, &[2]);
        p.int64_data = vec![1, 2];
        assert!(err_of(&p).contains("float_data has 0 elements"));

        // No data at all for a non-empty tensor.
        let p = proto("w", DataType::Float, &[2]);
        assert!(err_of(&p).contains("float_data has 0 elements but dims [2] need 2"));

        // A scalar needs one element.
        let p = proto("s", DataType::Int32, &[]);
        assert!(err_of(&p).contains("int32_data has 0 elements but dims [] need 1"));
    }

    #[test]
    fn truncated_or_padded_raw_data_is_an_error() {
        let t = Tensor::f32(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let mut p = tensor_to_proto("raw", &t);
        p.raw_data.as_mut().unwrap().truncate(15);
        let e = err_of(&p);
        assert!(
            e.contains("tensor 'raw'")
                && e.contains("raw_data has 15 bytes")
                && e.contains("need 16"),
            "{e}"
        );
        p.raw_data.as_mut().unwrap().extend_from_slice(&[0, 0]);
        assert!(err_of(&p).contains("raw_data has 17 bytes"));

        let mut p = tensor_to_proto("raw64", &Tensor::I64(arr(&[1], vec![1])));
        p.raw_data = Some(vec![1, 0, 0, 0]);
        assert!(err_of(&p).contains("need 8"));
    }

    #[test]
    fn bad_dims_are_errors() {
        let mut p = proto("neg", DataType::Float, &[2, -1]);
        p.float_data = vec![1.0, 2.0];
        let e = err_of(&p);
        assert!(
            e.contains("'neg'") && e.contains("negative dimension -1"),
            "{e}"
        );

        // Overflowing element counts never allocate or panic.
        let mut p = proto("big", DataType::Float, &[i64::MAX, i64::MAX]);
        p.raw_data = Some(vec![0; 8]);
        assert!(err_of(&p).contains("overflows"));
        let mut p = proto("big", DataType::Double, &[1 << 62]);
        p.raw_data = Some(vec![0; 8]);
        let e = err_of(&p);
        assert!(e.contains("raw_data has 8 bytes"), "{e}");
        // A zero dim makes the count 0 even next to a huge one: an empty tensor,
        // unless ndarray cannot represent the shape.
        let mut p = proto("empty", DataType::Float, &[0, i64::MAX]);
        p.raw_data = Some(vec![]);
        assert_eq!(
            tensor_from_proto(&p).unwrap().shape(),
            &[0, i64::MAX as usize]
        );
        let mut p = proto("empty", DataType::Float, &[0, i64::MAX, 4]);
        p.raw_data = Some(vec![]);
        assert!(err_of(&p).contains("bad dims"));
    }

    #[test]
    fn external_segmented_and_ambiguous_data_are_errors() {
        let mut p = proto("ext", DataType::Float, &[4]);
        p.data_location = Some(DataLocation::External as i32);
        p.external_data = vec![crate::onnx::proto::StringStringEntryProto {
            key: Some("location".into()),
            value: Some("weights.bin".into()),
        }];
        let e = err_of(&p);
        assert!(
            e.contains("'ext'") && e.contains("external data not supported"),
            "{e}"
        );

        let mut p = proto("loc", DataType::Float, &[0]);
        p.data_location = Some(7);
        assert!(err_of(&p).contains("unknown data_location 7"));

        let mut p = proto("seg", DataType::Float, &[1]);
        p.float_data = vec![1.0];
        p.segment = Some(crate::onnx::proto::tensor_proto::Segment {
            begin: Some(0),
            end: Some(1),
        });
        assert!(err_of(&p).contains("segmented"));

        let mut p = proto("both", DataType::Float, &[1]);
        p.float_data = vec![1.0];
        p.raw_data = Some(1f32.to_le_bytes().to_vec());
        assert!(err_of(&p).contains("both raw_data and a typed field"));

        // An explicitly empty raw_data next to typed data is not ambiguous.
        let mut p = proto("ok", DataType::Float, &[1]);
        p.float_data = vec![1.0];
        p.raw_data = Some(vec![]);
        assert_eq!(tensor_from_proto(&p).unwrap(), Tensor::f32(&[1], vec![1.0]));
    }

    #[test]
    fn unsupported_types_are_named() {
        let mut p = proto("s", DataType::String, &[2]);
        p.string_data = vec![b"a".to_vec(), b"b".to_vec()];
        let e = err_of(&p);
        assert!(
            e.contains("tensor 's'") && e.contains("unsupported data type STRING"),
            "{e}"
        );

        for (ty, name) in [
            (DataType::Float6e3m2, "FLOAT6E3M2"),
            (DataType::Complex64, "COMPLEX64"),
        ] {
            let mut p = proto("q", ty, &[1]);
            p.raw_data = Some(vec![0; 8]);
            assert!(err_of(&p).contains(name), "{name}");
        }
        let mut p = proto("", DataType::Float, &[1]);
        p.data_type = Some(1234);
        let e = err_of(&p);
        assert!(
            e.contains("<unnamed>") && e.contains("data type 1234"),
            "{e}"
        );

        let mut p = proto("u", DataType::Float, &[1]);
        p.data_type = None;
        assert!(err_of(&p).contains("UNDEFINED"));
    }

    #[test]
    fn tensor_pb_files() {
        let dir = std::env::temp_dir().join(format!("kiln-onnx-tensor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        let t = Tensor::I16(arr(&[2, 2], vec![1, -2, 3, -4]));
        let good = dir.join("input_0.pb");
        std::fs::write(&good, tensor_to_proto("x", &t).encode_to_vec()).unwrap();
        assert_eq!(load_tensor_pb(&good).unwrap(), ("x".to_string(), t));

        let garbage = dir.join("garbage.pb");
        std::fs::write(&garbage, [0x0a, 0xff, 0xff, 0xff]).unwrap();
        let e = load_tensor_pb(&garbage).unwrap_err();
        assert!(matches!(e, OnnxError::Decode { .. }), "{e}");
        assert!(e.to_string().contains("garbage.pb"), "{e}");

        let e = load_tensor_pb(&dir.join("missing.pb")).unwrap_err();
        assert!(matches!(e, OnnxError::Io { .. }) && e.to_string().contains("missing.pb"));

        std::fs::remove_dir_all(&dir).unwrap();
    }
}
