//! Element types. Quantized types carry their scale and zero point in the type
//! itself, so a quantized tensor is self-describing in the IR and the artifact.

use std::fmt;

/// Affine quantization parameters: `real = scale * (q - zero_point)`.
/// The scale is kept as raw bits so that types stay `Eq + Hash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantParams {
    scale_bits: u32,
    pub zero_point: i32,
}

impl QuantParams {
    pub fn new(scale: f32, zero_point: i32) -> Self {
        QuantParams {
            scale_bits: scale.to_bits(),
            zero_point,
        }
    }
    pub fn scale(&self) -> f32 {
        f32::from_bits(self.scale_bits)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I8,
    U8,
    I16,
    I32,
    I64,
    Bool,
    /// Signed 8-bit storage with affine quantization.
    QI8(QuantParams),
    /// Unsigned 8-bit storage with affine quantization.
    QU8(QuantParams),
}

impl DType {
    /// Every plain (non-quantized) dtype, in canonical order.
    pub const PLAIN: [DType; 10] = [
        DType::F32,
        DType::F64,
        DType::F16,
        DType::BF16,
        DType::I8,
        DType::U8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::Bool,
    ];

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }
    pub fn is_int(self) -> bool {
        matches!(
            self,
            DType::I8 | DType::U8 | DType::I16 | DType::I32 | DType::I64
        )
    }
    pub fn is_quantized(self) -> bool {
        matches!(self, DType::QI8(_) | DType::QU8(_))
    }
    /// Numeric = arithmetic is defined on it (floats and plain integers).
    pub fn is_numeric(self) -> bool {
        self.is_float() || self.is_int()
    }
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool | DType::QI8(_) | DType::QU8(_) => 1,
        }
    }
    /// The text spelling of a plain dtype (quantized ones print with parameters).
    pub fn base_name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
            DType::QI8(_) => "qi8",
            DType::QU8(_) => "qu8",
        }
    }
    pub fn from_name(s: &str) -> Option<DType> {
        DType::PLAIN.iter().copied().find(|d| d.base_name() == s)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DType::QI8(q) | DType::QU8(q) => {
                write!(f, "{}<{:?},{}>", self.base_name(), q.scale(), q.zero_point)
            }
            _ => f.write_str(self.base_name()),
        }
    }
}
