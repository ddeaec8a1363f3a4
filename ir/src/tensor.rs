//! Concrete tensors for the reference interpreter, constants and weights.
//!
//! Reference semantics compute in a wide type: floats in f64 and integers in
//! i64. Each result is then rounded to its output dtype, so that +, -, *, / and
//! sqrt round exactly as they would in the narrow type.

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use std::hash::{Hash, Hasher};

use crate::dtype::DType;
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
        }
    }
    /// All elements as i64. Floats truncate toward zero (saturating), like a C cast.
    pub fn to_i64(&self) -> ArrayD<i64> {
        match self {
            Tensor::I64(a) => a.clone(),
            Tensor::I32(a) => a.mapv(i64::from),
            Tensor::I16(a) => a.mapv(i64::from),
            Tensor::I8(a) => a.mapv(i64::from),
            Tensor::U8(a) => a.mapv(i64::from),
            Tensor::Bool(a) => a.mapv(i64::from),
            _ => self.to_f64().mapv(|x| x as i64),
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
            _ => Tensor::from_f64(dtype, a.mapv(|x| x as f64)),
        }
    }
    pub fn from_bool(dtype: DType, a: ArrayD<bool>) -> Tensor {
        match dtype {
            DType::Bool => Tensor::Bool(a),
            _ => Tensor::from_i64(dtype, a.mapv(i64::from)),
        }
    }
    /// Element-wise conversion to another dtype (ONNX `Cast` semantics:
    /// float → int truncates, anything → bool is `!= 0`).
    pub fn cast(&self, dtype: DType) -> Tensor {
        if self.dtype() == dtype {
            return self.clone();
        }
        if self.dtype().is_float() && !dtype.is_float() && dtype != DType::Bool {
            // Truncate toward zero, then wrap like a C cast through i64.
            return Tensor::from_i64(dtype, self.to_i64());
        }
        if !self.dtype().is_float() && !dtype.is_float() {
            return Tensor::from_i64(dtype, self.to_i64());
        }
        Tensor::from_f64(dtype, self.to_f64())
    }

    /// A tensor of `dtype` from f64 values and a shape (used by tests and literals).
    pub fn from_vec_f64(dtype: DType, shape: &[usize], data: Vec<f64>) -> Result<Tensor, String> {
        let a = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| e.to_string())?;
        Ok(if dtype.is_float() {
            Tensor::from_f64(dtype, a)
        } else {
            Tensor::from_i64(dtype, a.mapv(|x| x as i64))
        })
    }
    pub fn f32(shape: &[usize], data: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape matches data"))
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
        }
        out
    }

    /// Decode little-endian row-major bytes. Fails on a size mismatch.
    pub fn from_le_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor, String> {
        let n: usize = shape.iter().product();
        let w = dtype.size_bytes();
        if bytes.len() != n * w {
            return Err(format!(
                "expected {} bytes for {dtype}{:?}, found {}",
                n * w,
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
