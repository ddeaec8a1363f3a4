//! Concrete tensors for the reference interpreter, constants and weights.
//!
//! Reference semantics compute in a wide type: floats in f64 and integers in
//! i64. Each result is then rounded to its output dtype, so that +, -, *, / and
//! sqrt round exactly as they would in the narrow type.
//!
//! u64 values above `i64::MAX` read through [`Tensor::to_i64`] keep their bits
//! (they wrap to negative i64), so wrapping arithmetic and bit operations stay
//! exact; ops whose result depends on order or magnitude (comparisons,
//! division, right shifts) use [`Tensor::to_u64`] for u64.
//!
//! Storage-only [`Narrow`] tensors hold one bit pattern per byte; `to_f64`
//! decodes them exactly and `from_f64` encodes with saturation (see
//! [`crate::narrow`]).

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use std::hash::{Hash, Hasher};

use crate::dtype::{DType, Narrow};
use crate::narrow::{encode_e8m0, RoundMode};
use crate::shape::{Shape, TensorType};

#[derive(Clone, Debug)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    F16(ArrayD<f16>),
    BF16(ArrayD<bf16>),
    I8(ArrayD<i8>),
    U8(ArrayD<u8>),
    I16(ArrayD<i16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    Bool(ArrayD<bool>),
    U16(ArrayD<u16>),
    U32(ArrayD<u32>),
    U64(ArrayD<u64>),
    /// A storage-only type: each byte holds one element's bit pattern in its
    /// low bits (the rest are zero).
    Narrow(Narrow, ArrayD<u8>),
}

/// Apply `$body` to the array inside any variant, binding it as `$a`.
#[macro_export]
macro_rules! with_array {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::tensor::Tensor::F32($a) => $body,
            $crate::tensor::Tensor::F64($a) => $body,
            $crate::tensor::Tensor::F16($a) => $body,
            $crate::tensor::Tensor::BF16($a) => $body,
            $crate::tensor::Tensor::I8($a) => $body,
            $crate::tensor::Tensor::U8($a) => $body,
            $crate::tensor::Tensor::I16($a) => $body,
            $crate::tensor::Tensor::I32($a) => $body,
            $crate::tensor::Tensor::I64($a) => $body,
            $crate::tensor::Tensor::Bool($a) => $body,
            $crate::tensor::Tensor::U16($a) => $body,
            $crate::tensor::Tensor::U32($a) => $body,
            $crate::tensor::Tensor::U64($a) => $body,
            $crate::tensor::Tensor::Narrow(_, $a) => $body,
        }
    };
}

/// Rebuild a tensor of the same variant by mapping the inner array generically.
/// `$f` must be a generic-free expression valid for every element type
/// (for example `a.permuted_axes(..)`, `a.slice(..).to_owned()`).
#[macro_export]
macro_rules! map_array {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::tensor::Tensor::F32($a) => $crate::tensor::Tensor::F32($body),
            $crate::tensor::Tensor::F64($a) => $crate::tensor::Tensor::F64($body),
            $crate::tensor::Tensor::F16($a) => $crate::tensor::Tensor::F16($body),
            $crate::tensor::Tensor::BF16($a) => $crate::tensor::Tensor::BF16($body),
            $crate::tensor::Tensor::I8($a) => $crate::tensor::Tensor::I8($body),
            $crate::tensor::Tensor::U8($a) => $crate::tensor::Tensor::U8($body),
            $crate::tensor::Tensor::I16($a) => $crate::tensor::Tensor::I16($body),
            $crate::tensor::Tensor::I32($a) => $crate::tensor::Tensor::I32($body),
            $crate::tensor::Tensor::I64($a) => $crate::tensor::Tensor::I64($body),
            $crate::tensor::Tensor::Bool($a) => $crate::tensor::Tensor::Bool($body),
            $crate::tensor::Tensor::U16($a) => $crate::tensor::Tensor::U16($body),
            $crate::tensor::Tensor::U32($a) => $crate::tensor::Tensor::U32($body),
            $crate::tensor::Tensor::U64($a) => $crate::tensor::Tensor::U64($body),
            $crate::tensor::Tensor::Narrow(k, $a) => {
                $crate::tensor::Tensor::Narrow($crate::dtype::Narrow::own(k), $body)
            }
        }
    };
}

impl Tensor {
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
            Tensor::F16(_) => DType::F16,
            Tensor::BF16(_) => DType::BF16,
            Tensor::I8(_) => DType::I8,
            Tensor::U8(_) => DType::U8,
            Tensor::I16(_) => DType::I16,
            Tensor::I32(_) => DType::I32,
            Tensor::I64(_) => DType::I64,
            Tensor::Bool(_) => DType::Bool,
            Tensor::U16(_) => DType::U16,
            Tensor::U32(_) => DType::U32,
            Tensor::U64(_) => DType::U64,
            Tensor::Narrow(n, _) => DType::Narrow(*n),
        }
    }
    pub fn shape(&self) -> &[usize] {
        with_array!(self, a => a.shape())
    }
    pub fn len(&self) -> usize {
        with_array!(self, a => a.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), Shape::from_dims(self.shape()))
    }

    /// All elements as f64 (bool → 0/1), in logical row-major order.
    pub fn to_f64(&self) -> ArrayD<f64> {
        match self {
            Tensor::F32(a) => a.mapv(f64::from),
            Tensor::F64(a) => a.clone(),
            Tensor::F16(a) => a.mapv(f64::from),
            Tensor::BF16(a) => a.mapv(f64::from),
            Tensor::I8(a) => a.mapv(f64::from),
            Tensor::U8(a) => a.mapv(f64::from),
            Tensor::I16(a) => a.mapv(f64::from),
            Tensor::I32(a) => a.mapv(f64::from),
            Tensor::I64(a) => a.mapv(|x| x as f64),
            Tensor::Bool(a) => a.mapv(|x| if x { 1.0 } else { 0.0 }),
            Tensor::U16(a) => a.mapv(f64::from),
            Tensor::U32(a) => a.mapv(f64::from),
            Tensor::U64(a) => a.mapv(|x| x as f64),
            Tensor::Narrow(n, a) => a.mapv(|b| n.decode(b)),
        }
    }
    /// All elements as i64. Floats truncate toward zero (saturating), like a C
    /// cast; u64 keeps its bits (values above `i64::MAX` become negative).
    pub fn to_i64(&self) -> ArrayD<i64> {
        match self {
            Tensor::U16(a) => a.mapv(i64::from),
            Tensor::U32(a) => a.mapv(i64::from),
            Tensor::U64(a) => a.mapv(|x| x as i64),
            Tensor::Narrow(n, a) if n.is_int() => a.mapv(|b| n.decode_int(b)),
            Tensor::I64(a) => a.clone(),
            Tensor::I32(a) => a.mapv(i64::from),
            Tensor::I16(a) => a.mapv(i64::from),
            Tensor::I8(a) => a.mapv(i64::from),
            Tensor::U8(a) => a.mapv(i64::from),
            Tensor::Bool(a) => a.mapv(i64::from),
            _ => self.to_f64().mapv(|x| x as i64),
        }
    }
    /// All elements as u64: u64 as is, everything else through [`Tensor::to_i64`]
    /// (negative values wrap).
    pub fn to_u64(&self) -> ArrayD<u64> {
        match self {
            Tensor::U64(a) => a.clone(),
            _ => self.to_i64().mapv(|x| x as u64),
        }
    }
    /// Truthiness of every element (non-zero is true).
    pub fn to_bool(&self) -> ArrayD<bool> {
        match self {
            Tensor::Bool(a) => a.clone(),
            _ => self.to_f64().mapv(|x| x != 0.0),
        }
    }

    /// Round an f64 array to `dtype`. Integers saturate; NaN becomes 0.
    pub fn from_f64(dtype: DType, a: ArrayD<f64>) -> Tensor {
        match dtype {
            DType::F32 => Tensor::F32(a.mapv(|x| x as f32)),
            DType::F64 => Tensor::F64(a),
            DType::F16 => Tensor::F16(a.mapv(f16::from_f64)),
            DType::BF16 => Tensor::BF16(a.mapv(bf16::from_f64)),
            DType::I8 | DType::QI8(_) => Tensor::I8(a.mapv(|x| x as i8)),
            DType::U8 | DType::QU8(_) => Tensor::U8(a.mapv(|x| x as u8)),
            DType::I16 => Tensor::I16(a.mapv(|x| x as i16)),
            DType::I32 => Tensor::I32(a.mapv(|x| x as i32)),
            DType::I64 => Tensor::I64(a.mapv(|x| x as i64)),
            DType::Bool => Tensor::Bool(a.mapv(|x| x != 0.0)),
            DType::U16 => Tensor::U16(a.mapv(|x| x as u16)),
            DType::U32 => Tensor::U32(a.mapv(|x| x as u32)),
            DType::U64 => Tensor::U64(a.mapv(|x| x as u64)),
            DType::Narrow(n) => Tensor::Narrow(n, a.mapv(|x| n.encode(x, true))),
        }
    }
    /// Convert an i64 array to `dtype`. Narrower integers wrap (two's complement).
    pub fn from_i64(dtype: DType, a: ArrayD<i64>) -> Tensor {
        match dtype {
            DType::I64 => Tensor::I64(a),
            DType::I32 => Tensor::I32(a.mapv(|x| x as i32)),
            DType::I16 => Tensor::I16(a.mapv(|x| x as i16)),
            DType::I8 | DType::QI8(_) => Tensor::I8(a.mapv(|x| x as i8)),
            DType::U8 | DType::QU8(_) => Tensor::U8(a.mapv(|x| x as u8)),
            DType::Bool => Tensor::Bool(a.mapv(|x| x != 0)),
            DType::U16 => Tensor::U16(a.mapv(|x| x as u16)),
            DType::U32 => Tensor::U32(a.mapv(|x| x as u32)),
            DType::U64 => Tensor::U64(a.mapv(|x| x as u64)),
            DType::Narrow(n) if n.is_int() => Tensor::Narrow(n, a.mapv(|x| n.wrap(x))),
            _ => Tensor::from_f64(dtype, a.mapv(|x| x as f64)),
        }
    }
    /// Convert a u64 array to `dtype`: exact for u64, wrapping for narrower
    /// integers, rounded for floats.
    pub fn from_u64(dtype: DType, a: ArrayD<u64>) -> Tensor {
        match dtype {
            DType::U64 => Tensor::U64(a),
            d if d.is_float_like() => Tensor::from_f64(d, a.mapv(|x| x as f64)),
            _ => Tensor::from_i64(dtype, a.mapv(|x| x as i64)),
        }
    }
    pub fn from_bool(dtype: DType, a: ArrayD<bool>) -> Tensor {
        match dtype {
            DType::Bool => Tensor::Bool(a),
            _ => Tensor::from_i64(dtype, a.mapv(i64::from)),
        }
    }
    /// Element-wise conversion to another dtype with ONNX `Cast`'s defaults
    /// (`saturate = 1`, `round_mode = "up"`); see [`Tensor::cast_with`].
    pub fn cast(&self, dtype: DType) -> Tensor {
        self.cast_with(dtype, true, RoundMode::Up)
    }

    /// Element-wise conversion with ONNX `Cast` semantics: float → integer
    /// truncates toward zero and wraps like a C cast through i64 (a 4- or 2-bit
    /// integer keeps the low bits; NaN and ±inf give 0 there); integer →
    /// integer wraps; anything → bool is `!= 0`; to a float8 or fp4 type rounds
    /// to nearest even, with `saturate` deciding overflow; to e8m0 keeps the
    /// f32 exponent, rounded by `round_mode` (see [`crate::narrow`]).
    pub fn cast_with(&self, dtype: DType, saturate: bool, round_mode: RoundMode) -> Tensor {
        let from = self.dtype();
        if from == dtype {
            return self.clone();
        }
        match dtype {
            DType::Bool => return Tensor::Bool(self.to_bool()),
            DType::Narrow(Narrow::F8E8M0) => {
                let e = |x: f64| encode_e8m0(x as f32, saturate, round_mode);
                return Tensor::Narrow(Narrow::F8E8M0, self.to_f64().mapv(e));
            }
            DType::Narrow(n) if n.is_float() => {
                return Tensor::Narrow(n, self.to_f64().mapv(|x| n.encode(x, saturate)))
            }
            DType::Narrow(n) if from.is_float_like() => {
                let e = |x: f64| if x.is_finite() { n.wrap(x as i64) } else { 0 };
                return Tensor::Narrow(n, self.to_f64().mapv(e));
            }
            DType::U64 if from.is_float_like() => {
                // Through i64 (wrapping negatives, like a C cast) while in
                // range; above i64::MAX straight to u64.
                let c = |x: f64| {
                    if x >= 9_223_372_036_854_775_808.0 {
                        x as u64
                    } else {
                        x as i64 as u64
                    }
                };
                return Tensor::U64(self.to_f64().mapv(c));
            }
            _ => {}
        }
        if dtype.is_float_like() {
            Tensor::from_f64(dtype, self.to_f64())
        } else {
            // Float sources truncate in to_i64; integers keep their bits.
            Tensor::from_i64(dtype, self.to_i64())
        }
    }

    /// A tensor of `dtype` from f64 values and a shape (used by tests and literals).
    pub fn from_vec_f64(dtype: DType, shape: &[usize], data: Vec<f64>) -> Result<Tensor, String> {
        let a = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| e.to_string())?;
        Ok(if dtype.is_float_like() || dtype == DType::U64 {
            Tensor::from_f64(dtype, a)
        } else {
            Tensor::from_i64(dtype, a.mapv(|x| x as i64))
        })
    }
    pub fn f32(shape: &[usize], data: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape matches data"))
    }
    /// [`Tensor::f32`] for untrusted shapes: an error when `data` does not
    /// fit `shape` or the shape overflows (a zero dim next to huge ones).
    pub fn try_f32(shape: &[usize], data: Vec<f32>) -> Result<Tensor, String> {
        Ok(Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| e.to_string())?,
        ))
    }
    pub fn zeros(ty: &TensorType) -> Option<Tensor> {
        let dims = ty.shape.concrete()?;
        Some(Tensor::from_f64(ty.dtype, ArrayD::zeros(IxDyn(&dims))))
    }

    /// Elements in row-major order as f64, for printing and comparisons.
    pub fn values_f64(&self) -> Vec<f64> {
        self.to_f64().iter().copied().collect()
    }

    /// Little-endian bytes in row-major order (the safetensors / artifact layout).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * self.dtype().size_bytes());
        match self {
            Tensor::F32(a) => a
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::F64(a) => a
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::F16(a) => a
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::BF16(a) => a
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::I8(a) => a
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::U8(a) => out.extend(a.iter().copied()),
            Tensor::I16(a) => a
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::I32(a) => a
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::I64(a) => a
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::Bool(a) => out.extend(a.iter().map(|&b| b as u8)),
            Tensor::U16(a) => a
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::U32(a) => a
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::U64(a) => a
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::Narrow(_, a) => out.extend(a.iter().copied()),
        }
        out
    }

    /// The elements' bytes as files store them: 4- and 2-bit types packed two
    /// or four to a byte (first element in the low bits, as ONNX does),
    /// everything else as [`Tensor::to_le_bytes`].
    pub fn to_packed_bytes(&self) -> Vec<u8> {
        match self {
            Tensor::Narrow(n, a) if n.bits() < 8 => {
                let elems: Vec<u8> = a.iter().copied().collect();
                crate::narrow::pack(*n, &elems)
            }
            _ => self.to_le_bytes(),
        }
    }

    /// The inverse of [`Tensor::to_packed_bytes`].
    pub fn from_packed_bytes(
        dtype: DType,
        shape: &[usize],
        bytes: &[u8],
    ) -> Result<Tensor, String> {
        match dtype {
            DType::Narrow(n) if n.bits() < 8 => {
                let count: usize = shape.iter().product();
                let v = crate::narrow::unpack(n, bytes, count).ok_or_else(|| {
                    format!(
                        "expected {} bytes for {dtype}{shape:?} ({count} elements of {} bits, packed), found {}",
                        (count * n.bits() as usize).div_ceil(8),
                        n.bits(),
                        bytes.len()
                    )
                })?;
                Ok(Tensor::Narrow(
                    n,
                    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| e.to_string())?,
                ))
            }
            _ => Tensor::from_le_bytes(dtype, shape, bytes),
        }
    }

    /// A narrow tensor from one bit pattern per byte; a byte with bits beyond
    /// the type's width is an error.
    pub fn narrow_from_bits(n: Narrow, a: ArrayD<u8>) -> Result<Tensor, String> {
        if let Some(b) = a.iter().find(|&&b| b & !n.mask() != 0) {
            return Err(format!(
                "byte {b:#04x} is not a {}-bit {} pattern",
                n.bits(),
                n.name()
            ));
        }
        Ok(Tensor::Narrow(n, a))
    }

    /// Decode little-endian row-major bytes. Fails on a size mismatch.
    pub fn from_le_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor, String> {
        let w = dtype.size_bytes();
        let want = shape.iter().try_fold(w, |a, &d| a.checked_mul(d));
        if want != Some(bytes.len()) {
            return Err(format!(
                "expected {} bytes for {dtype}{:?}, found {}",
                want.map_or("more than usize::MAX".to_string(), |n| n.to_string()),
                shape,
                bytes.len()
            ));
        }
        macro_rules! dec {
            ($t:ty, $v:ident) => {{
                let v: Vec<$t> = bytes
                    .chunks_exact(w)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk width")))
                    .collect();
                Tensor::$v(ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| e.to_string())?)
            }};
        }
        Ok(match dtype {
            DType::F32 => dec!(f32, F32),
            DType::F64 => dec!(f64, F64),
            DType::F16 => dec!(f16, F16),
            DType::BF16 => dec!(bf16, BF16),
            DType::I8 | DType::QI8(_) => dec!(i8, I8),
            DType::U8 | DType::QU8(_) => dec!(u8, U8),
            DType::I16 => dec!(i16, I16),
            DType::I32 => dec!(i32, I32),
            DType::I64 => dec!(i64, I64),
            DType::Bool => {
                let v: Vec<bool> = bytes.iter().map(|&b| b != 0).collect();
                Tensor::Bool(ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| e.to_string())?)
            }
            DType::U16 => dec!(u16, U16),
            DType::U32 => dec!(u32, U32),
            DType::U64 => dec!(u64, U64),
            DType::Narrow(n) => {
                let a = ArrayD::from_shape_vec(IxDyn(shape), bytes.to_vec())
                    .map_err(|e| e.to_string())?;
                Tensor::narrow_from_bits(n, a)?
            }
        })
    }
}

/// Bitwise equality: same dtype, same shape, same bytes (so NaN == NaN and
/// 0.0 != -0.0). This is what CSE and constant hashing need.
impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        self.dtype() == other.dtype()
            && self.shape() == other.shape()
            && self.to_le_bytes() == other.to_le_bytes()
    }
}
impl Eq for Tensor {}

impl Hash for Tensor {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.dtype().hash(state);
        self.shape().hash(state);
        self.to_le_bytes().hash(state);
    }
}

/// Compare two tensors with numpy's `allclose` rule: |a-b| <= atol + rtol*|b|.
/// NaNs must match NaNs. Returns the first offending index and values.
pub fn allclose(actual: &Tensor, expected: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if actual.shape() != expected.shape() {
        return Err(format!(
            "shape mismatch: got {:?}, expected {:?}",
            actual.shape(),
            expected.shape()
        ));
    }
    let a = actual.to_f64();
    let b = expected.to_f64();
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        let ok = if x.is_nan() || y.is_nan() {
            x.is_nan() && y.is_nan()
        } else if x.is_infinite() || y.is_infinite() {
            x == y
        } else {
            (x - y).abs() <= atol + rtol * y.abs()
        };
        if !ok {
            return Err(format!("element {i}: got {x}, expected {y}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

    fn bits(t: &Tensor) -> Vec<u8> {
        match t {
            Tensor::Narrow(_, a) => a.iter().copied().collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cast_to_float8_rounds_and_saturates() {
        let x = Tensor::f32(&[5], vec![448.0, 465.0, f32::INFINITY, f32::NAN, -0.0]);
        let e4 = DType::Narrow(Narrow::F8E4M3FN);
        assert_eq!(bits(&x.cast(e4)), [0x7E, 0x7E, 0x7E, 0x7F, 0x80]);
        assert_eq!(
            bits(&x.cast_with(e4, false, RoundMode::Up)),
            [0x7E, 0x7F, 0x7F, 0x7F, 0x80]
        );
        let e5 = DType::Narrow(Narrow::F8E5M2);
        assert_eq!(bits(&x.cast_with(e5, false, RoundMode::Up))[2], 0x7C);
        let uz = DType::Narrow(Narrow::F8E4M3FNUZ);
        assert_eq!(bits(&x.cast(uz)), [0x7F, 0x7F, 0x7F, 0x80, 0x00]);
        // And back: decoding is exact.
        let back = x.cast(e4).cast(DType::F32);
        assert_eq!(back.values_f64()[..3], [448.0, 448.0, 448.0]);
        assert!(back.values_f64()[3].is_nan());
    }

    #[test]
    fn cast_to_small_integers_truncates_and_wraps() {
        let x = Tensor::f32(&[6], vec![-9.5, -2.5, 7.9, 8.0, 100.0, f32::NAN]);
        let i4 = DType::Narrow(Narrow::I4);
        // ml_dtypes / C semantics: truncate, keep the low 4 bits.
        assert_eq!(x.cast(i4).values_f64(), [7.0, -2.0, 7.0, -8.0, 4.0, 0.0]);
        let u2 = DType::Narrow(Narrow::U2);
        let i = Tensor::I32(arr1(&[-1, 4, 6]).into_dyn());
        assert_eq!(i.cast(u2).values_f64(), [3.0, 0.0, 2.0]);
        // i4 -> i8 sign-extends.
        assert_eq!(x.cast(i4).cast(DType::I8).values_f64()[3], -8.0);
    }

    #[test]
    fn u64_stays_exact() {
        let big = Tensor::U64(arr1(&[u64::MAX, 1 << 63, 5]).into_dyn());
        assert_eq!(big.to_u64(), arr1(&[u64::MAX, 1 << 63, 5]).into_dyn());
        assert_eq!(big.to_i64()[0], -1, "to_i64 keeps the bits");
        assert_eq!(Tensor::from_i64(DType::U64, big.to_i64()), big);
        assert_eq!(big.cast(DType::I8).values_f64(), [-1.0, 0.0, 5.0]);
        let f = Tensor::F64(arr1(&[1.8e19, -1.0, 3.7]).into_dyn());
        assert_eq!(
            f.cast(DType::U64),
            Tensor::U64(arr1(&[18_000_000_000_000_000_000, u64::MAX, 3]).into_dyn())
        );
        let bytes = big.to_le_bytes();
        assert_eq!(
            Tensor::from_le_bytes(DType::U64, &[3], &bytes).unwrap(),
            big
        );
    }

    #[test]
    fn narrow_bytes_and_packing() {
        let t = Tensor::Narrow(Narrow::I4, arr1(&[1u8, 0xF, 8]).into_dyn());
        assert_eq!(t.to_packed_bytes(), [0xF1, 0x08]);
        assert_eq!(
            Tensor::from_packed_bytes(t.dtype(), &[3], &[0xF1, 0x08]).unwrap(),
            t
        );
        assert!(Tensor::from_packed_bytes(t.dtype(), &[3], &[0xF1]).is_err());
        // One byte per element in memory; stray high bits are refused.
        assert!(Tensor::from_le_bytes(t.dtype(), &[1], &[0x10]).is_err());
        let e5 = DType::Narrow(Narrow::F8E5M2);
        let f = Tensor::from_le_bytes(e5, &[2], &[0x7B, 0xFC]).unwrap();
        assert_eq!(f.values_f64(), [57344.0, f64::NEG_INFINITY]);
    }
}
