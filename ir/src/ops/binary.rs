//! Binary elementwise ops with numpy broadcasting: arithmetic, comparisons,
//! logic, integer bit operations, `mod` and `prelu`.
//!
//! Ops whose attribute changes the computation (`mod`'s `fmod`, `bit_shift`'s
//! `direction`) get one `BinaryKind` per attribute value, so every kind is one
//! fixed function and `Binary` stays a plain, `Eq + Hash` kind. Such kinds share
//! a spelling and print their attribute.

use ndarray::{ArrayD, Zip};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::dtype::DType;
use crate::grad::{GradCtx, GradError, GradResult};
use crate::graph::ValueId;
use crate::op::{dtype_err, expect_arity, shape_err, FusionKind, OpDef, OpResult};
use crate::ops::{broadcast_shapes, same_dtype};
use crate::shape::{Shape, TensorType};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    /// Logical xor of bools.
    Xor,
    /// `mod {fmod = 0}`: the remainder takes the divisor's sign (Python's `%`).
    Mod,
    /// `mod {fmod = 1}`: the remainder takes the dividend's sign (C's `fmod`).
    FMod,
    /// `bit_shift {direction = "LEFT"}`.
    ShiftLeft,
    /// `bit_shift {direction = "RIGHT"}`: arithmetic for signed dtypes.
    ShiftRight,
    BitwiseAnd,
    BitwiseOr,
    BitwiseXor,
    /// `prelu(x, slope)`: x where x >= 0, else slope * x; slope broadcasts to x.
    PRelu,
}

/// Kind → spelling. `mod` and `bit_shift` appear twice; their attribute tells
/// the kinds apart.
const BINARY: &[(BinaryKind, &str)] = &[
    (BinaryKind::Add, "add"),
    (BinaryKind::Sub, "sub"),
    (BinaryKind::Mul, "mul"),
    (BinaryKind::Div, "div"),
    (BinaryKind::Pow, "pow"),
    (BinaryKind::Max, "max"),
    (BinaryKind::Min, "min"),
    (BinaryKind::Eq, "eq"),
    (BinaryKind::Lt, "lt"),
    (BinaryKind::Le, "le"),
    (BinaryKind::Gt, "gt"),
    (BinaryKind::Ge, "ge"),
    (BinaryKind::And, "and"),
    (BinaryKind::Or, "or"),
    (BinaryKind::Xor, "xor"),
    (BinaryKind::Mod, "mod"),
    (BinaryKind::FMod, "mod"),
    (BinaryKind::ShiftLeft, "bit_shift"),
    (BinaryKind::ShiftRight, "bit_shift"),
    (BinaryKind::BitwiseAnd, "bitwise_and"),
    (BinaryKind::BitwiseOr, "bitwise_or"),
    (BinaryKind::BitwiseXor, "bitwise_xor"),
    (BinaryKind::PRelu, "prelu"),
];

impl BinaryKind {
    pub fn spelling(self) -> &'static str {
        BINARY
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, s)| *s)
            .expect("every kind has a spelling")
    }
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryKind::Eq | BinaryKind::Lt | BinaryKind::Le | BinaryKind::Gt | BinaryKind::Ge
        )
    }
    pub fn is_logical(self) -> bool {
        matches!(self, BinaryKind::And | BinaryKind::Or | BinaryKind::Xor)
    }
    /// Ops on the bits of integers.
    pub fn is_bitwise(self) -> bool {
        matches!(
            self,
            BinaryKind::ShiftLeft
                | BinaryKind::ShiftRight
                | BinaryKind::BitwiseAnd
                | BinaryKind::BitwiseOr
                | BinaryKind::BitwiseXor
        )
    }
    fn arith_f64(self, a: f64, b: f64) -> f64 {
        match self {
            BinaryKind::Add => a + b,
            BinaryKind::Sub => a - b,
            BinaryKind::Mul => a * b,
            BinaryKind::Div => a / b,
            BinaryKind::Pow => a.powf(b),
            // NaN-propagating, like numpy's maximum/minimum and ONNX Max/Min.
            BinaryKind::Max => nan_max(a, b),
            BinaryKind::Min => nan_min(a, b),
            // fmod is exact, so computing it in f64 and rounding is exact too.
            BinaryKind::FMod => a % b,
            BinaryKind::Mod => py_mod_f64(a, b),
            BinaryKind::PRelu => {
                if a >= 0.0 {
                    a
                } else {
                    b * a
                }
            }
            _ => unreachable!("not float arithmetic"),
        }
    }
    fn arith_i64(self, a: i64, b: i64) -> i64 {
        match self {
            BinaryKind::Add => a.wrapping_add(b),
            BinaryKind::Sub => a.wrapping_sub(b),
            BinaryKind::Mul => a.wrapping_mul(b),
            // Integer division truncates toward zero; x/0 is defined as 0 here
            // rather than trapping, so a bad input cannot crash the interpreter.
            BinaryKind::Div => {
                if b == 0 {
                    0
                } else {
                    a.wrapping_div(b)
                }
            }
            BinaryKind::Pow => {
                if b < 0 {
                    0
                } else {
                    a.wrapping_pow(b.min(u32::MAX as i64) as u32)
                }
            }
            BinaryKind::Max => a.max(b),
            BinaryKind::Min => a.min(b),
            // x mod 0 is 0, like x/0. wrapping_rem makes MIN % -1 = 0.
            BinaryKind::FMod => {
                if b == 0 {
                    0
                } else {
                    a.wrapping_rem(b)
                }
            }
            BinaryKind::Mod => {
                if b == 0 {
                    return 0;
                }
                let r = a.wrapping_rem(b);
                if r != 0 && (r < 0) != (b < 0) {
                    r + b
                } else {
                    r
                }
            }
            // Narrow integers are sign-extended into i64, so the low bits of
            // these are the narrow results.
            BinaryKind::BitwiseAnd => a & b,
            BinaryKind::BitwiseOr => a | b,
            BinaryKind::BitwiseXor => a ^ b,
            BinaryKind::PRelu => {
                if a >= 0 {
                    a
                } else {
                    b.wrapping_mul(a)
                }
            }
            _ => unreachable!("not integer arithmetic"),
        }
    }
    /// A shift of a `bits`-wide integer held sign-extended (or, for unsigned
    /// dtypes, zero-extended) in an i64. ONNX BitShift (opset 28): a shift
    /// amount that is negative or at least the width gives what the fill alone
    /// gives: -1 for a right shift of a negative value, 0 otherwise.
    fn shift(self, a: i64, s: i64, bits: i64) -> i64 {
        let in_range = (0..bits).contains(&s);
        match self {
            // Bits shifted past the width are dropped when the result is
            // narrowed to the dtype.
            BinaryKind::ShiftLeft if in_range => a.wrapping_shl(s as u32),
            BinaryKind::ShiftLeft => 0,
            BinaryKind::ShiftRight if in_range => a >> s,
            BinaryKind::ShiftRight => {
                if a < 0 {
                    -1
                } else {
                    0
                }
            }
            _ => unreachable!("not a shift"),
        }
    }
    /// u64 arithmetic, for the dtype whose values i64 cannot order: wrapping
    /// like the i64 path, x/0 and x mod 0 are 0, shifts are logical and a
    /// shift amount of 64 or more gives 0.
    fn arith_u64(self, a: u64, b: u64) -> u64 {
        match self {
            BinaryKind::Add => a.wrapping_add(b),
            BinaryKind::Sub => a.wrapping_sub(b),
            BinaryKind::Mul => a.wrapping_mul(b),
            BinaryKind::Div => a.checked_div(b).unwrap_or(0),
            // Both signs agree for unsigned values.
            BinaryKind::Mod | BinaryKind::FMod => a.checked_rem(b).unwrap_or(0),
            BinaryKind::Pow => a.wrapping_pow(b.min(u64::from(u32::MAX)) as u32),
            BinaryKind::Max => a.max(b),
            BinaryKind::Min => a.min(b),
            BinaryKind::BitwiseAnd => a & b,
            BinaryKind::BitwiseOr => a | b,
            BinaryKind::BitwiseXor => a ^ b,
            BinaryKind::ShiftLeft => a.checked_shl(b.min(64) as u32).unwrap_or(0),
            BinaryKind::ShiftRight => a.checked_shr(b.min(64) as u32).unwrap_or(0),
            // Unsigned values are never negative.
            BinaryKind::PRelu => a,
            _ => unreachable!("not integer arithmetic"),
        }
    }
    fn compare<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            BinaryKind::Eq => a == b,
            BinaryKind::Lt => a < b,
            BinaryKind::Le => a <= b,
            BinaryKind::Gt => a > b,
            BinaryKind::Ge => a >= b,
            _ => unreachable!("not a comparison"),
        }
    }
}

/// NaN-propagating maximum (numpy's `maximum`).
pub fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// NaN-propagating minimum (numpy's `minimum`).
pub fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Floating-point modulo with the divisor's sign, as numpy's `mod` and ONNX
/// Mod with `fmod = 0` (opset 28) define it: a zero result carries the
/// divisor's sign, and a finite x against an infinite y of the other sign
/// gives y. Infinite x, zero y or NaN give NaN.
pub fn py_mod_f64(a: f64, b: f64) -> f64 {
    let r = a % b;
    if r == 0.0 {
        0.0f64.copysign(b)
    } else if (r < 0.0) != (b < 0.0) {
        r + b
    } else {
        r
    }
}

/// A binary op with numpy broadcasting (`prelu`: the slope broadcasts to x).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Binary {
    pub kind: BinaryKind,
}

impl Binary {
    pub fn new(kind: BinaryKind) -> Binary {
        Binary { kind }
    }
}

/// Broadcast two arrays to their common shape (shapes already checked by infer).
fn bcast2<A: Clone, B: Clone>(a: &ArrayD<A>, b: &ArrayD<B>) -> OpResult<(ArrayD<A>, ArrayD<B>)> {
    let shape = broadcast_shapes(&Shape::from_dims(a.shape()), &Shape::from_dims(b.shape()))?;
    let dims = shape.concrete().expect("runtime shapes are concrete");
    let err = || crate::op::OpError::Shape("cannot broadcast".into());
    let va = a.broadcast(dims.as_slice()).ok_or_else(err)?.to_owned();
    let vb = b.broadcast(dims.as_slice()).ok_or_else(err)?.to_owned();
    Ok((va, vb))
}

fn attr_error(attr: &str, msg: impl Into<String>) -> AttrError {
    AttrError {
        attr: attr.into(),
        msg: msg.into(),
    }
}

impl OpDef for Binary {
    const SPELLINGS: &'static [&'static str] = &[
        "add",
        "sub",
        "mul",
        "div",
        "pow",
        "max",
        "min",
        "eq",
        "lt",
        "le",
        "gt",
        "ge",
        "and",
        "or",
        "xor",
        "mod",
        "bit_shift",
        "bitwise_and",
        "bitwise_or",
        "bitwise_xor",
        "prelu",
    ];
    fn parse(spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let kind = match spelling {
            "mod" => match attrs.int("fmod", 0)? {
                0 => BinaryKind::Mod,
                1 => BinaryKind::FMod,
                v => return Err(attr_error("fmod", format!("expected 0 or 1, found {v}"))),
            },
            "bit_shift" => match attrs.opt_str("direction")?.as_deref() {
                Some("LEFT") => BinaryKind::ShiftLeft,
                Some("RIGHT") => BinaryKind::ShiftRight,
                Some(other) => {
                    return Err(attr_error(
                        "direction",
                        format!("expected \"LEFT\" or \"RIGHT\", found {other:?}"),
                    ))
                }
                None => return Err(attr_error("direction", "required but missing")),
            },
            _ => BINARY
                .iter()
                .find(|(_, s)| *s == spelling)
                .map(|(k, _)| *k)
                .expect("known spelling"),
        };
        Ok(Binary { kind })
    }
    fn spelling(&self) -> &'static str {
        self.kind.spelling()
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        match self.kind {
            BinaryKind::Mod => w.int("fmod", 0),
            BinaryKind::FMod => w.int("fmod", 1),
            BinaryKind::ShiftLeft => w.str("direction", "LEFT"),
            BinaryKind::ShiftRight => w.str("direction", "RIGHT"),
            _ => {}
        }
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        let k = self.kind;
        let shape = broadcast_shapes(&inputs[0].shape, &inputs[1].shape)?;
        if k == BinaryKind::PRelu && shape != inputs[0].shape {
            return shape_err(format!(
                "prelu's slope {} must broadcast to x's shape {}",
                inputs[1].shape, inputs[0].shape
            ));
        }
        let dtype = if k == BinaryKind::Pow {
            // ONNX Pow allows a different exponent type; the result has the base's type.
            if !inputs[0].dtype.is_numeric() || !inputs[1].dtype.is_numeric() {
                return dtype_err("pow takes numeric inputs");
            }
            inputs[0].dtype
        } else {
            same_dtype(inputs)?
        };
        let spelling = self.spelling();
        let out = if k.is_logical() {
            if dtype != DType::Bool {
                return dtype_err(format!("{spelling} takes bool inputs, found {dtype}"));
            }
            DType::Bool
        } else if k.is_comparison() {
            if dtype.is_quantized() {
                return dtype_err("comparison of quantized values is not defined");
            }
            DType::Bool
        } else if k.is_bitwise() {
            if !dtype.is_int() {
                return dtype_err(format!("{spelling} takes integer inputs, found {dtype}"));
            }
            dtype
        } else {
            if !dtype.is_numeric() {
                return dtype_err(format!("{spelling} takes numeric inputs, found {dtype}"));
            }
            dtype
        };
        Ok(vec![TensorType::new(out, shape)])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Broadcast
    }
    const GRAD_SPELLINGS: &'static [&'static str] =
        &["add", "sub", "mul", "div", "pow", "max", "min", "prelu"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        use BinaryKind as K;
        let Some(dy) = dout[0] else {
            return Ok(vec![None, None]);
        };
        let (a, b, y) = (inputs[0], inputs[1], outputs[0]);
        let (ta, tb) = (cx.ty(a), cx.ty(b));
        if !ta.dtype.is_float() || !Self::GRAD_SPELLINGS.contains(&self.spelling()) {
            return Err(GradError::NoRule(self.spelling()));
        }
        let dt = ta.dtype;
        let (ga, gb) = match self.kind {
            K::Add => (Some(dy), Some(dy)),
            K::Sub => (Some(dy), Some(cx.neg(dy)?)),
            K::Mul => (Some(cx.mul(dy, b)?), Some(cx.mul(dy, a)?)),
            // d/da = 1/b, d/db = -a/b^2 = -y/b
            K::Div => {
                let ga = cx.div(dy, b)?;
                let q = cx.mul(dy, y)?;
                let q = cx.div(q, b)?;
                (Some(ga), Some(cx.neg(q)?))
            }
            // d/da = b a^(b-1), d/db = y ln a
            K::Pow => {
                let bf = if tb.dtype == dt {
                    b
                } else {
                    cx.add(crate::ops::shape::Cast::new(dt), &[b])?
                };
                let one = cx.scalar(1.0, dt)?;
                let bm1 = cx.sub(bf, one)?;
                let p = cx.binary(K::Pow, a, bm1)?;
                let p = cx.mul(p, bf)?;
                let ga = cx.mul(dy, p)?;
                let gb = if tb.dtype.is_float() {
                    let l = cx.unary(crate::ops::elementwise::UnaryKind::Log, a)?;
                    let q = cx.mul(y, l)?;
                    Some(cx.mul(dy, q)?)
                } else {
                    None
                };
                (Some(ga), gb)
            }
            // The router: the gradient goes to the input that won; on a tie,
            // to the first.
            K::Max | K::Min => {
                let cmp = if self.kind == K::Max { K::Ge } else { K::Le };
                let zero = cx.scalar(0.0, dt)?;
                let m = cx.binary(cmp, a, b)?;
                let ga = cx.add(crate::ops::elementwise::Where, &[m, dy, zero])?;
                let gb = cx.add(crate::ops::elementwise::Where, &[m, zero, dy])?;
                (Some(ga), Some(gb))
            }
            // y = x (x >= 0), slope * x otherwise
            K::PRelu => {
                let zero = cx.scalar(0.0, dt)?;
                let m = cx.binary(K::Ge, a, zero)?;
                let sdy = cx.mul(dy, b)?;
                let ga = cx.add(crate::ops::elementwise::Where, &[m, dy, sdy])?;
                let xdy = cx.mul(dy, a)?;
                let gb = cx.add(crate::ops::elementwise::Where, &[m, zero, xdy])?;
                (Some(ga), Some(gb))
            }
            _ => return Err(GradError::NoRule(self.spelling())),
        };
        let ga = match ga {
            Some(g) => Some(cx.sum_to(g, &ta.shape)?),
            None => None,
        };
        let gb = match gb {
            Some(g) => Some(cx.sum_to(g, &tb.shape)?),
            None => None,
        };
        Ok(vec![ga, gb])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (x, y) = (inputs[0], inputs[1]);
        let k = self.kind;
        let out = if k.is_logical() {
            let (a, b) = bcast2(&x.to_bool(), &y.to_bool())?;
            let f = |p: &bool, q: &bool| match k {
                BinaryKind::And => *p && *q,
                BinaryKind::Or => *p || *q,
                _ => *p != *q,
            };
            Tensor::Bool(Zip::from(&a).and(&b).map_collect(f))
        } else if x.dtype() == DType::U64 && y.dtype() == DType::U64 {
            // u64 values above i64::MAX do not survive i64 ordering.
            let (a, b) = bcast2(&x.to_u64(), &y.to_u64())?;
            if k.is_comparison() {
                Tensor::Bool(Zip::from(&a).and(&b).map_collect(|p, q| k.compare(*p, *q)))
            } else {
                Tensor::U64(
                    Zip::from(&a)
                        .and(&b)
                        .map_collect(|p, q| k.arith_u64(*p, *q)),
                )
            }
        } else if k.is_comparison() {
            if x.dtype().is_float() {
                let (a, b) = bcast2(&x.to_f64(), &y.to_f64())?;
                Tensor::Bool(Zip::from(&a).and(&b).map_collect(|p, q| k.compare(*p, *q)))
            } else {
                let (a, b) = bcast2(&x.to_i64(), &y.to_i64())?;
                Tensor::Bool(Zip::from(&a).and(&b).map_collect(|p, q| k.compare(*p, *q)))
            }
        } else if matches!(k, BinaryKind::ShiftLeft | BinaryKind::ShiftRight) {
            let bits = 8 * x.dtype().size_bytes() as i64;
            let (a, b) = bcast2(&x.to_i64(), &y.to_i64())?;
            let r = Zip::from(&a)
                .and(&b)
                .map_collect(|p, q| k.shift(*p, *q, bits));
            Tensor::from_i64(x.dtype(), r)
        } else if x.dtype().is_float() || (k == BinaryKind::Pow && y.dtype().is_float()) {
            let (a, b) = bcast2(&x.to_f64(), &y.to_f64())?;
            let r = Zip::from(&a)
                .and(&b)
                .map_collect(|p, q| k.arith_f64(*p, *q));
            if x.dtype().is_float() {
                Tensor::from_f64(x.dtype(), r)
            } else {
                Tensor::from_i64(x.dtype(), r.mapv(|v| v as i64))
            }
        } else {
            let (a, b) = bcast2(&x.to_i64(), &y.to_i64())?;
            Tensor::from_i64(
                x.dtype(),
                Zip::from(&a)
                    .and(&b)
                    .map_collect(|p, q| k.arith_i64(*p, *q)),
            )
        };
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::elementwise::{Unary, UnaryKind, Where};
    use ndarray::arr1;

    fn ints(d: DType, v: &[i64]) -> Tensor {
        Tensor::from_i64(d, arr1(v).into_dyn())
    }
    fn run(k: BinaryKind, x: &Tensor, y: &Tensor) -> Tensor {
        Binary::new(k).eval(&[x, y]).unwrap().remove(0)
    }
    fn run_i(k: BinaryKind, x: &Tensor, y: &Tensor) -> Vec<i64> {
        run(k, x, y).to_i64().iter().copied().collect()
    }
    fn f32s(t: &Tensor) -> Vec<f32> {
        match t {
            Tensor::F32(a) => a.iter().copied().collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn u64_above_i64_max_orders_and_divides_as_unsigned() {
        let u = |v: &[u64]| Tensor::U64(arr1(v).into_dyn());
        let x = u(&[u64::MAX, 1 << 63, 10, 7]);
        let y = u(&[2, 3, 0, 1]);
        let r = |k: BinaryKind| run(k, &x, &y);
        assert_eq!(r(BinaryKind::Div), u(&[u64::MAX / 2, (1 << 63) / 3, 0, 7]));
        assert_eq!(r(BinaryKind::Mod), u(&[1, (1 << 63) % 3, 0, 0]));
        assert_eq!(r(BinaryKind::Max), u(&[u64::MAX, 1 << 63, 10, 7]));
        assert_eq!(r(BinaryKind::Min), u(&[2, 3, 0, 1]));
        assert_eq!(r(BinaryKind::Gt).values_f64(), [1.0, 1.0, 1.0, 1.0]);
        assert_eq!(r(BinaryKind::Add), u(&[1, (1 << 63) + 3, 10, 8]));
        assert_eq!(r(BinaryKind::Sub), u(&[u64::MAX - 2, (1 << 63) - 3, 10, 6]));
        assert_eq!(
            r(BinaryKind::ShiftRight),
            u(&[u64::MAX >> 2, 1 << 60, 10, 3]),
            "logical shifts"
        );
        let big = u(&[1, 1]);
        let sh = u(&[64, 63]);
        assert_eq!(run(BinaryKind::ShiftLeft, &big, &sh), u(&[0, 1 << 63]));
        // Narrower unsigned types wrap in their width.
        let a = Tensor::U16(arr1(&[3u16, 65535]).into_dyn());
        let b = Tensor::U16(arr1(&[5u16, 1]).into_dyn());
        assert_eq!(
            run(BinaryKind::Sub, &a, &b),
            Tensor::U16(arr1(&[65534u16, 65534]).into_dyn())
        );
        assert_eq!(run(BinaryKind::Add, &a, &b).values_f64(), [8.0, 0.0]);
    }

    #[test]
    fn integer_arithmetic_is_total() {
        // Division by zero and overflow give defined values, never a panic.
        let x = Tensor::from_i64(
            DType::I32,
            ndarray::arr1(&[7i64, i32::MIN as i64, 5]).into_dyn(),
        );
        let y = Tensor::from_i64(DType::I32, ndarray::arr1(&[0i64, -1, 2]).into_dyn());
        let q = Binary::new(BinaryKind::Div).eval(&[&x, &y]).unwrap();
        assert_eq!(
            q[0].to_i64().into_raw_vec_and_offset().0,
            vec![0, i32::MIN as i64, 2]
        );
        let n = Unary::new(UnaryKind::Neg).eval(&[&x]).unwrap();
        assert_eq!(
            n[0].to_i64()[[1]],
            i32::MIN as i64,
            "wraps like two's complement"
        );
    }

    #[test]
    fn comparisons_and_logic_broadcast() {
        let a = Tensor::f32(&[2, 1], vec![1.0, 3.0]);
        let b = Tensor::f32(&[3], vec![0.0, 2.0, 3.0]);
        let gt = Binary::new(BinaryKind::Gt)
            .eval(&[&a, &b])
            .unwrap()
            .remove(0);
        assert_eq!(gt.values_f64(), vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        let le = Binary::new(BinaryKind::Le)
            .eval(&[&a, &b])
            .unwrap()
            .remove(0);
        let or = Binary::new(BinaryKind::Or)
            .eval(&[&gt, &le])
            .unwrap()
            .remove(0);
        assert!(or.values_f64().iter().all(|&v| v == 1.0));
        let and = Binary::new(BinaryKind::And)
            .eval(&[&gt, &le])
            .unwrap()
            .remove(0);
        assert!(and.values_f64().iter().all(|&v| v == 0.0));
        let w = Where.eval(&[&gt, &a, &b]).unwrap().remove(0);
        assert_eq!(w.values_f64(), vec![1.0, 2.0, 3.0, 3.0, 3.0, 3.0]);
    }

    #[test]
    fn integer_mod_sign_conventions() {
        // ONNX test_mod_mixed_sign_int32 / test_mod_int64_fmod.
        for d in [DType::I8, DType::I16, DType::I32, DType::I64] {
            let x = ints(d, &[-4, 7, 5, 4, -7, 8, 9, -9]);
            let y = ints(d, &[2, -3, 8, -2, 3, 5, 0, 0]);
            assert_eq!(run_i(BinaryKind::Mod, &x, &y), [0, -2, 5, 0, 2, 3, 0, 0]);
            assert_eq!(run_i(BinaryKind::FMod, &x, &y), [0, 1, 5, 0, -1, 3, 0, 0]);
        }
        let x = ints(DType::I64, &[i64::MIN, i64::MIN, -1]);
        let y = ints(DType::I64, &[-1, i64::MAX, i64::MIN]);
        assert_eq!(run_i(BinaryKind::Mod, &x, &y), [0, i64::MAX - 1, -1]);
        assert_eq!(run_i(BinaryKind::FMod, &x, &y), [0, -1, -1]);
        let x = ints(DType::U8, &[250, 7, 0]);
        let y = ints(DType::U8, &[7, 250, 3]);
        assert_eq!(run_i(BinaryKind::Mod, &x, &y), [5, 7, 0]);
    }

    #[test]
    fn float_mod_sign_conventions() {
        // ONNX test_mod_mixed_sign_float32 (fmod = 1) and
        // test_mod_float32_mixed_sign_fmod_0 (opset 28), outputs as stored there.
        let x = Tensor::f32(&[6], vec![-4.3, 7.2, 5.0, 4.3, -7.2, 8.0]);
        let y = Tensor::f32(&[6], vec![2.1, -3.4, 8.0, -2.1, 3.4, 5.0]);
        let fmod = [
            -0.100_000_381_469_726_56,
            0.399_999_618_530_273_44,
            5.0,
            0.100_000_381_469_726_56,
            -0.399_999_618_530_273_44,
            3.0,
        ];
        let pymod = [
            1.999_999_523_162_841_8,
            -3.000_000_476_837_158,
            5.0,
            -1.999_999_523_162_841_8,
            3.000_000_476_837_158,
            3.0,
        ];
        let as_f32 = |v: [f64; 6]| v.map(|x| x as f32).to_vec();
        assert_eq!(f32s(&run(BinaryKind::FMod, &x, &y)), as_f32(fmod));
        assert_eq!(f32s(&run(BinaryKind::Mod, &x, &y)), as_f32(pymod));
        // ONNX test_mod_float_edge_cases_fmod_0_float32: signed zeros take the
        // divisor's sign, infinite divisors, and NaN cases.
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        let x = Tensor::f32(
            &[14],
            vec![
                0.0, -0.0, 0.0, -0.0, -3.0, 3.0, -1.0, 1.0, inf, -inf, 1.0, 1.0, nan, 1.0,
            ],
        );
        let y = Tensor::f32(
            &[14],
            vec![
                -2.0, 2.0, 2.0, -2.0, inf, inf, -inf, -inf, 2.0, 2.0, 0.0, -0.0, 2.0, nan,
            ],
        );
        let want = [
            -0.0, 0.0, 0.0, -0.0, inf, 3.0, -1.0, -inf, nan, nan, nan, nan, nan, nan,
        ];
        let got = f32s(&run(BinaryKind::Mod, &x, &y));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "element {i}: {g} vs {w}"
            );
        }
        // fmod: the dividend's sign, x for an infinite divisor.
        let got = f32s(&run(BinaryKind::FMod, &x, &y));
        let want = [
            0.0, -0.0, 0.0, -0.0, -3.0, 3.0, -1.0, 1.0, nan, nan, nan, nan, nan, nan,
        ];
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "element {i}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn bit_shift_edge_cases() {
        use BinaryKind::{ShiftLeft as L, ShiftRight as R};
        let u = |v: &[i64]| ints(DType::U8, v);
        // ONNX's examples: RIGHT [16, 4, 1] >> [1, 2, 3], LEFT likewise.
        assert_eq!(run_i(R, &u(&[16, 4, 1]), &u(&[1, 2, 3])), [8, 1, 0]);
        assert_eq!(run_i(L, &u(&[16, 4, 1]), &u(&[1, 2, 3])), [32, 16, 8]);
        // Unsigned: logical right shift, bits past the width dropped, shift >= 8 gives 0.
        assert_eq!(
            run_i(R, &u(&[255, 128, 255, 255]), &u(&[1, 7, 8, 255])),
            [127, 1, 0, 0]
        );
        assert_eq!(
            run_i(L, &u(&[255, 1, 255, 1]), &u(&[1, 7, 8, 200])),
            [254, 128, 0, 0]
        );
        // Signed (ONNX opset 28): arithmetic right shift; left shifts wrap into
        // the sign bit; negative or too-large amounts give the fill alone.
        let i8s = |v: &[i64]| ints(DType::I8, v);
        assert_eq!(
            run_i(R, &i8s(&[-8, -1, -128]), &i8s(&[1, 1, 1])),
            [-4, -1, -64]
        );
        assert_eq!(
            run_i(L, &i8s(&[64, 1, -64]), &i8s(&[1, 7, 1])),
            [-128, -128, -128]
        );
        assert_eq!(run_i(L, &i8s(&[-8, 4, -1]), &i8s(&[8, 9, 127])), [0, 0, 0]);
        assert_eq!(
            run_i(R, &i8s(&[-8, 4, -1]), &i8s(&[8, -1, -128])),
            [-1, 0, -1]
        );
        let i32s = |v: &[i64]| ints(DType::I32, v);
        assert_eq!(
            run_i(R, &i32s(&[-8, 4, -1]), &i32s(&[-1, -32, -64])),
            [-1, 0, -1]
        );
        assert_eq!(
            run_i(L, &i32s(&[1, 3, 1]), &i32s(&[31, 31, 32])),
            [i32::MIN as i64, i32::MIN as i64, 0]
        );
        let i64s = |v: &[i64]| ints(DType::I64, v);
        assert_eq!(run_i(L, &i64s(&[1, 1]), &i64s(&[63, 64])), [i64::MIN, 0]);
        assert_eq!(
            run_i(R, &i64s(&[i64::MIN, i64::MIN]), &i64s(&[63, 64])),
            [-1, -1]
        );
        // Broadcasting: one shift amount for every element.
        let r = run(
            L,
            &ints(DType::I16, &[1, -1, 3]),
            &Tensor::I16(ndarray::arr0(4).into_dyn()),
        );
        assert_eq!(r, ints(DType::I16, &[16, -16, 48]));
    }

    #[test]
    fn bitwise_and_xor_ops() {
        let a = ints(DType::I16, &[0b1100, -1, -32768, 0x0ff0]);
        let b = ints(DType::I16, &[0b1010, 0x1234, -1, -1]);
        assert_eq!(
            run_i(BinaryKind::BitwiseAnd, &a, &b),
            [0b1000, 0x1234, -32768, 0x0ff0]
        );
        assert_eq!(run_i(BinaryKind::BitwiseOr, &a, &b), [0b1110, -1, -1, -1]);
        assert_eq!(
            run_i(BinaryKind::BitwiseXor, &a, &b),
            [0b0110, !0x1234, 32767, !0x0ff0]
        );
        // u8 against a broadcast [2,1] column.
        let x = ints(DType::U8, &[0xf0, 0x0f, 0xff]);
        let y = Tensor::U8(ndarray::arr2(&[[0x3c], [0xff]]).into_dyn());
        let r = run(BinaryKind::BitwiseXor, &x, &y);
        assert_eq!(r.shape(), [2, 3]);
        assert_eq!(r.values_f64(), [204.0, 51.0, 195.0, 15.0, 240.0, 0.0]);
        // Logical xor of bools, broadcast.
        let p = Tensor::Bool(ndarray::arr2(&[[true], [false]]).into_dyn());
        let q = Tensor::Bool(arr1(&[true, false]).into_dyn());
        let r = run(BinaryKind::Xor, &p, &q);
        assert_eq!(
            r.to_bool().iter().copied().collect::<Vec<_>>(),
            [false, true, true, false]
        );
    }

    #[test]
    fn prelu_broadcasts_slope_to_x() {
        let x = Tensor::f32(&[2, 2], vec![-2.0, 3.0, -0.5, -0.0]);
        let slope = Tensor::f32(&[2], vec![0.1, -2.0]);
        let r = f32s(&run(BinaryKind::PRelu, &x, &slope));
        let want = [
            (0.1f32 as f64 * -2.0) as f32,
            3.0,
            (0.1f32 as f64 * -0.5) as f32,
            -0.0,
        ];
        assert_eq!(r, want);
        assert!(r[3].is_sign_negative(), "x >= 0 passes -0.0 through");
        let r = f32s(&run(
            BinaryKind::PRelu,
            &Tensor::f32(&[1], vec![f32::NAN]),
            &Tensor::f32(&[1], vec![0.5]),
        ));
        assert!(r[0].is_nan());
        let xi = ints(DType::I32, &[-3, 4, -5]);
        assert_eq!(
            run_i(BinaryKind::PRelu, &xi, &ints(DType::I32, &[2])),
            [-6, 4, -10]
        );
    }

    #[test]
    fn new_binary_type_rules() {
        let t = |d: DType, s: &[usize]| TensorType::concrete(d, s);
        let (f, i, u, b) = (
            t(DType::F32, &[3]),
            t(DType::I32, &[3]),
            t(DType::U8, &[3]),
            t(DType::Bool, &[3]),
        );
        let infer = |k: BinaryKind, x: &TensorType, y: &TensorType| Binary::new(k).infer(&[x, y]);
        let dtype_error = |r: OpResult<Vec<TensorType>>| matches!(r, Err(crate::OpError::DType(_)));
        for k in [BinaryKind::Mod, BinaryKind::FMod] {
            assert_eq!(infer(k, &f, &f).unwrap()[0], f, "opset 28 allows float mod");
            assert_eq!(infer(k, &i, &i).unwrap()[0], i);
            assert!(dtype_error(infer(k, &b, &b)));
            assert!(dtype_error(infer(k, &i, &u)), "mixed dtypes");
        }
        for k in [
            BinaryKind::ShiftLeft,
            BinaryKind::ShiftRight,
            BinaryKind::BitwiseAnd,
            BinaryKind::BitwiseOr,
            BinaryKind::BitwiseXor,
        ] {
            assert_eq!(infer(k, &u, &u).unwrap()[0], u);
            assert!(dtype_error(infer(k, &f, &f)), "{k:?} on floats");
            assert!(dtype_error(infer(k, &b, &b)), "{k:?} on bools");
            assert!(dtype_error(infer(k, &i, &u)), "{k:?} on mixed widths");
        }
        assert_eq!(infer(BinaryKind::Xor, &b, &b).unwrap()[0], b);
        assert!(dtype_error(infer(BinaryKind::Xor, &i, &i)));
        // prelu: the slope broadcasts to x, never the other way.
        let x = t(DType::F32, &[2, 3]);
        assert_eq!(
            infer(BinaryKind::PRelu, &x, &t(DType::F32, &[3])).unwrap()[0],
            x
        );
        assert_eq!(
            infer(BinaryKind::PRelu, &x, &t(DType::F32, &[2, 1])).unwrap()[0],
            x
        );
        assert!(matches!(
            infer(BinaryKind::PRelu, &f, &x),
            Err(crate::OpError::Shape(_))
        ));
        assert!(dtype_error(infer(BinaryKind::PRelu, &b, &b)));
    }

    fn roundtrip(src: &str) -> String {
        let g = crate::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        let p = crate::print(&g);
        assert_eq!(crate::print(&crate::parse(&p).unwrap()), p);
        p
    }

    #[test]
    fn new_binary_attributes_roundtrip() {
        let src = "graph g {\n input %x: i32[3]\n input %y: i32[3]\n input %p: bool[3]\n \
                   %a = mod(%x, %y)\n %b = mod(%a, %y) {fmod = 1}\n \
                   %c = bit_shift(%b, %y) {direction = \"LEFT\"}\n \
                   %d = bit_shift(%c, %y) {direction = \"RIGHT\"}\n %e = bitwise_and(%d, %x)\n \
                   %f = bitwise_or(%e, %x)\n %g = bitwise_xor(%f, %x)\n %h = prelu(%g, %y)\n \
                   %q = xor(%p, %p)\n output h = %h\n output q = %q\n}";
        let p = roundtrip(src);
        for want in [
            "mod(%x, %y) {fmod = 0}: i32[3]",
            "{fmod = 1}",
            "bit_shift(%1, %y) {direction = \"LEFT\"}",
            "{direction = \"RIGHT\"}",
            "bitwise_and(%3, %x): i32[3]",
            "bitwise_or(",
            "bitwise_xor(",
            "prelu(%6, %y): i32[3]",
            "xor(%p, %p): bool[3]",
        ] {
            assert!(p.contains(want), "missing `{want}` in\n{p}");
        }
        let bad = |op: &str| {
            let src = format!("graph g {{\n input %x: u8[3]\n %y = {op}\n output y = %y\n}}");
            crate::parse(&src).expect_err(&src).to_string()
        };
        let e = bad("bit_shift(%x, %x)");
        assert!(e.contains("direction") && e.contains("missing"), "{e}");
        let e = bad("bit_shift(%x, %x) {direction = \"left\"}");
        assert!(e.contains("\"LEFT\" or \"RIGHT\""), "{e}");
        assert!(bad("bit_shift(%x, %x) {direction = 1}").contains("direction"));
        assert!(bad("mod(%x, %x) {fmod = 2}").contains("fmod"));
        assert!(bad("mod(%x, %x) {fmod = \"1\"}").contains("fmod"));
        assert!(
            bad("add(%x, %x) {fmod = 1}").contains("fmod"),
            "only mod has fmod"
        );
    }
}
