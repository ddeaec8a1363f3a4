//! Element types. Quantized types carry their scale and zero point in the type
//! itself, so a quantized tensor is self-describing in the IR and the artifact.
//!
//! Three groups:
//! - arithmetic types: the floats (f32, f64, f16, bf16) and the integers
//!   (i8..i64, u8..u64), on which every numeric op is defined;
//! - `bool`;
//! - storage-only [`Narrow`] types (the float8 formats, e8m0, fp4, and the 4-
//!   and 2-bit integers). They exist so that models can hold and move such
//!   data: casts, quantize/dequantize and pure data movement accept them,
//!   arithmetic refuses them. Their encodings live in [`crate::narrow`].

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
    U16,
    U32,
    U64,
    /// A storage-only type of at most 8 bits (see [`Narrow`]).
    Narrow(Narrow),
}

/// Storage-only element types of at most 8 bits. In memory each element takes
/// one byte holding its bit pattern in the low bits (the upper bits are zero);
/// ONNX files pack the 4- and 2-bit ones two or four to a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Narrow {
    /// float8 with 4 exponent bits (bias 7), 3 mantissa bits, no infinities;
    /// NaN is S.1111.111 (max 448).
    F8E4M3FN,
    /// float8 e4m3, bias 8, no infinities, no negative zero; NaN is 0x80 (max 240).
    F8E4M3FNUZ,
    /// float8 with IEEE-style e5m2, bias 15, infinities and NaNs (max 57344).
    F8E5M2,
    /// float8 e5m2, bias 16, no infinities, no negative zero; NaN is 0x80.
    F8E5M2FNUZ,
    /// Exponent only: 2^(e - 127); 0xFF is NaN. No sign, no zero.
    F8E8M0,
    /// float4 e2m1 (bias 1): ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}; no infinities or NaN.
    F4E2M1,
    I4,
    U4,
    I2,
    U2,
}

impl Narrow {
    pub const ALL: [Narrow; 10] = [
        Narrow::F8E4M3FN,
        Narrow::F8E4M3FNUZ,
        Narrow::F8E5M2,
        Narrow::F8E5M2FNUZ,
        Narrow::F8E8M0,
        Narrow::F4E2M1,
        Narrow::I4,
        Narrow::U4,
        Narrow::I2,
        Narrow::U2,
    ];
    /// Width of one element in bits.
    pub fn bits(self) -> u32 {
        match self {
            Narrow::I4 | Narrow::U4 | Narrow::F4E2M1 => 4,
            Narrow::I2 | Narrow::U2 => 2,
            _ => 8,
        }
    }
    /// The mask of the meaningful bits of an element's byte.
    pub fn mask(self) -> u8 {
        (((1u16) << self.bits()) - 1) as u8
    }
    /// A floating-point format (as opposed to a 4- or 2-bit integer).
    pub fn is_float(self) -> bool {
        !self.is_int()
    }
    pub fn is_int(self) -> bool {
        matches!(self, Narrow::I4 | Narrow::U4 | Narrow::I2 | Narrow::U2)
    }
    pub fn name(self) -> &'static str {
        match self {
            Narrow::F8E4M3FN => "f8e4m3fn",
            Narrow::F8E4M3FNUZ => "f8e4m3fnuz",
            Narrow::F8E5M2 => "f8e5m2",
            Narrow::F8E5M2FNUZ => "f8e5m2fnuz",
            Narrow::F8E8M0 => "f8e8m0",
            Narrow::F4E2M1 => "f4e2m1",
            Narrow::I4 => "i4",
            Narrow::U4 => "u4",
            Narrow::I2 => "i2",
            Narrow::U2 => "u2",
        }
    }
    /// Own a `Narrow` from a value or a reference (used by `map_array!`, whose
    /// matches may bind either).
    pub fn own(k: impl std::borrow::Borrow<Narrow>) -> Narrow {
        *k.borrow()
    }
}

impl DType {
    /// Every plain (non-quantized) dtype, in canonical order.
    pub const PLAIN: [DType; 23] = [
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
        DType::U16,
        DType::U32,
        DType::U64,
        DType::Narrow(Narrow::F8E4M3FN),
        DType::Narrow(Narrow::F8E4M3FNUZ),
        DType::Narrow(Narrow::F8E5M2),
        DType::Narrow(Narrow::F8E5M2FNUZ),
        DType::Narrow(Narrow::F8E8M0),
        DType::Narrow(Narrow::F4E2M1),
        DType::Narrow(Narrow::I4),
        DType::Narrow(Narrow::U4),
        DType::Narrow(Narrow::I2),
        DType::Narrow(Narrow::U2),
    ];

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }
    pub fn is_int(self) -> bool {
        matches!(
            self,
            DType::I8
                | DType::U8
                | DType::I16
                | DType::I32
                | DType::I64
                | DType::U16
                | DType::U32
                | DType::U64
        )
    }
    /// Values read naturally as reals: the arithmetic floats and the narrow
    /// float formats (float8, e8m0, fp4).
    pub fn is_float_like(self) -> bool {
        self.is_float() || matches!(self, DType::Narrow(n) if n.is_float())
    }
    /// Unsigned arithmetic integers (u8..u64).
    pub fn is_unsigned(self) -> bool {
        matches!(self, DType::U8 | DType::U16 | DType::U32 | DType::U64)
    }
    /// The storage-only type, if this is one.
    pub fn narrow(self) -> Option<Narrow> {
        match self {
            DType::Narrow(n) => Some(n),
            _ => None,
        }
    }
    pub fn is_quantized(self) -> bool {
        matches!(self, DType::QI8(_) | DType::QU8(_))
    }
    /// Numeric = arithmetic is defined on it (floats and plain integers).
    pub fn is_numeric(self) -> bool {
        self.is_float() || self.is_int()
    }
    /// Bytes per element in memory (narrow types take one byte each).
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8
            | DType::U8
            | DType::Bool
            | DType::QI8(_)
            | DType::QU8(_)
            | DType::Narrow(_) => 1,
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
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::Narrow(n) => n.name(),
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
