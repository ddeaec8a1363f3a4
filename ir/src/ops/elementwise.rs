//! Elementwise ops: the unary table and `where`. The broadcasting binary ops
//! live in `binary.rs` and are re-exported here.

use ndarray::{ArrayD, Zip};

pub use crate::ops::binary::{Binary, BinaryKind};

use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::dtype::DType;
use crate::grad::{GradCtx, GradResult};
use crate::graph::ValueId;
use crate::op::{attr_err, dtype_err, expect_arity, FusionKind, OpDef, OpResult};
use crate::ops::{broadcast_all, same_dtype};
use crate::shape::TensorType;
use crate::tensor::Tensor;

/// Declares the unary ops once: spelling, and f64 reference function. Ops with
/// a parameter read it from `UnaryKind`'s attribute fields.
macro_rules! unary_table {
    ($($kind:ident => $spell:literal),* $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum UnaryKind { $($kind),* }
        impl UnaryKind {
            pub const ALL: &'static [UnaryKind] = &[$(UnaryKind::$kind),*];
            pub fn spelling(self) -> &'static str {
                match self { $(UnaryKind::$kind => $spell),* }
            }
        }
        const UNARY_SPELLINGS: &[&str] = &[$($spell),*];
    };
}

unary_table! {
    Neg => "neg", Abs => "abs", Exp => "exp", Log => "log", Sqrt => "sqrt",
    Rsqrt => "rsqrt", Reciprocal => "reciprocal", Sin => "sin", Cos => "cos",
    Tanh => "tanh", Sigmoid => "sigmoid", Relu => "relu", LeakyRelu => "leaky_relu",
    Elu => "elu", Selu => "selu", Gelu => "gelu", Erf => "erf", Softplus => "softplus",
    HardSigmoid => "hard_sigmoid", Sign => "sign", Floor => "floor", Ceil => "ceil",
    Round => "round", Not => "not",
    Tan => "tan", Asin => "asin", Acos => "acos", Atan => "atan", Sinh => "sinh",
    Cosh => "cosh", Asinh => "asinh", Acosh => "acosh", Atanh => "atanh",
    Softsign => "softsign", Mish => "mish", HardSwish => "hard_swish", Celu => "celu",
    ThresholdedRelu => "thresholded_relu", IsNan => "is_nan", IsInf => "is_inf",
    BitwiseNot => "bitwise_not",
}

/// A unary elementwise op. `alpha`/`beta` hold the parameters of the ops that
/// have them (leaky_relu, elu, selu, hard_sigmoid, celu, thresholded_relu);
/// is_inf keeps its `detect_positive`/`detect_negative` flags there as 1.0 or
/// 0.0. `approximate` is gelu's form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unary {
    pub kind: UnaryKind,
    pub alpha: F64,
    pub beta: F64,
    pub approximate: Option<&'static str>,
}

// SELU constants (Klambauer et al.), as ONNX defines them.
const SELU_ALPHA: f64 = 1.673_263_192_176_818_8;
const SELU_GAMMA: f64 = 1.050_701_022_148_132_3;

impl Unary {
    pub fn new(kind: UnaryKind) -> Unary {
        let (alpha, beta) = match kind {
            UnaryKind::LeakyRelu => (0.01, 0.0),
            UnaryKind::Elu | UnaryKind::Celu | UnaryKind::ThresholdedRelu => (1.0, 0.0),
            UnaryKind::Selu => (SELU_ALPHA, SELU_GAMMA),
            UnaryKind::HardSigmoid => (0.2, 0.5),
            UnaryKind::IsInf => (1.0, 1.0),
            _ => (0.0, 0.0),
        };
        let approximate = (kind == UnaryKind::Gelu).then_some("none");
        Unary {
            kind,
            alpha: F64(alpha),
            beta: F64(beta),
            approximate,
        }
    }
    /// is_inf with its two flags.
    pub fn is_inf(detect_positive: bool, detect_negative: bool) -> Unary {
        let flag = |b: bool| F64(if b { 1.0 } else { 0.0 });
        Unary {
            alpha: flag(detect_positive),
            beta: flag(detect_negative),
            ..Unary::new(UnaryKind::IsInf)
        }
    }
    /// The float attributes this kind carries, in print order, stored in
    /// `alpha` then `beta`.
    fn float_params(kind: UnaryKind) -> &'static [&'static str] {
        match kind {
            UnaryKind::LeakyRelu
            | UnaryKind::Elu
            | UnaryKind::Celu
            | UnaryKind::ThresholdedRelu => &["alpha"],
            UnaryKind::Selu => &["alpha", "gamma"],
            UnaryKind::HardSigmoid => &["alpha", "beta"],
            _ => &[],
        }
    }
    /// is_inf's int flags, in print order, stored in `alpha` then `beta`.
    const IS_INF_FLAGS: [&'static str; 2] = ["detect_positive", "detect_negative"];

    /// Reference function on one element, in f64. is_nan and is_inf give 1.0
    /// for true and 0.0 for false; not and bitwise_not act on the value's
    /// integer reading.
    pub fn apply(&self, x: f64) -> f64 {
        let (a, b) = (self.alpha.0, self.beta.0);
        match self.kind {
            UnaryKind::Neg => -x,
            UnaryKind::Abs => x.abs(),
            UnaryKind::Exp => x.exp(),
            UnaryKind::Log => x.ln(),
            UnaryKind::Sqrt => x.sqrt(),
            UnaryKind::Rsqrt => 1.0 / x.sqrt(),
            UnaryKind::Reciprocal => 1.0 / x,
            UnaryKind::Sin => x.sin(),
            UnaryKind::Cos => x.cos(),
            UnaryKind::Tanh => x.tanh(),
            UnaryKind::Sigmoid => sigmoid(x),
            // NaN stays NaN, as in numpy and ONNX (f64::max would return 0).
            UnaryKind::Relu => {
                if x.is_nan() {
                    x
                } else {
                    x.max(0.0)
                }
            }
            UnaryKind::LeakyRelu => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            UnaryKind::Elu => {
                if x > 0.0 {
                    x
                } else {
                    a * (x.exp() - 1.0)
                }
            }
            UnaryKind::Selu => b * if x > 0.0 { x } else { a * (x.exp() - 1.0) },
            UnaryKind::Gelu => match self.approximate {
                Some("tanh") => {
                    let c = (2.0 / std::f64::consts::PI).sqrt();
                    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
                }
                _ => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
            },
            UnaryKind::Erf => erf(x),
            UnaryKind::Softplus => softplus(x),
            UnaryKind::HardSigmoid => (a * x + b).clamp(0.0, 1.0),
            UnaryKind::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            }
            UnaryKind::Floor => x.floor(),
            UnaryKind::Ceil => x.ceil(),
            // Round half to even, as ONNX and numpy do.
            UnaryKind::Round => x.round_ties_even(),
            UnaryKind::Not => bool_f64(x == 0.0),
            UnaryKind::Tan => x.tan(),
            UnaryKind::Asin => x.asin(),
            UnaryKind::Acos => x.acos(),
            UnaryKind::Atan => x.atan(),
            UnaryKind::Sinh => x.sinh(),
            UnaryKind::Cosh => x.cosh(),
            UnaryKind::Asinh => x.asinh(),
            UnaryKind::Acosh => x.acosh(),
            UnaryKind::Atanh => x.atanh(),
            UnaryKind::Softsign => x / (1.0 + x.abs()),
            UnaryKind::Mish => x * softplus(x).tanh(),
            // ONNX: x * hard_sigmoid(x) with alpha = 1/6, beta = 0.5.
            UnaryKind::HardSwish => x * (x * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0),
            // max(0, x) + min(0, alpha * (exp(x / alpha) - 1)), with expm1 as
            // the ONNX reference uses; NaN stays NaN.
            UnaryKind::Celu => {
                if x.is_nan() {
                    x
                } else {
                    x.max(0.0) + (a * (x / a).exp_m1()).min(0.0)
                }
            }
            // NaN is not greater than alpha, so it gives 0 (as ONNX's reference).
            UnaryKind::ThresholdedRelu => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            UnaryKind::IsNan => bool_f64(x.is_nan()),
            UnaryKind::IsInf => {
                bool_f64((a != 0.0 && x == f64::INFINITY) || (b != 0.0 && x == f64::NEG_INFINITY))
            }
            UnaryKind::BitwiseNot => !(x as i64) as f64,
        }
    }
    /// Whether the result is bool whatever the input dtype.
    fn returns_bool(&self) -> bool {
        matches!(self.kind, UnaryKind::IsNan | UnaryKind::IsInf)
    }
}

impl Unary {
    /// dL/dx from dL/dy for this unary op, with x its input and y its output.
    fn unary_grad(
        &self,
        cx: &mut GradCtx,
        x: ValueId,
        y: ValueId,
        dy: ValueId,
    ) -> GradResult<ValueId> {
        use BinaryKind as B;
        use UnaryKind as U;
        let dt = cx.ty(x).dtype;
        let (a, b) = (self.alpha.0, self.beta.0);
        // Piecewise rules: dy where `x kind c` holds, else dy * `other` (a
        // constant factor or zero).
        let select = |cx: &mut GradCtx, kind: B, c: f64, on: ValueId, off: ValueId| {
            let k = cx.scalar(c, dt)?;
            let m = cx.binary(kind, x, k)?;
            cx.add(Where, &[m, on, off])
        };
        let d = match self.kind {
            U::Neg => return cx.neg(dy),
            U::Abs => cx.unary(U::Sign, x)?,
            U::Exp => y,
            U::Log => return cx.div(dy, x),
            // 0.5 / y
            U::Sqrt => {
                let h = cx.scale(dy, 0.5)?;
                return cx.div(h, y);
            }
            // -0.5 * y / x
            U::Rsqrt => {
                let q = cx.div(y, x)?;
                cx.scale(q, -0.5)?
            }
            // -y^2
            U::Reciprocal => {
                let q = cx.mul(y, y)?;
                cx.neg(q)?
            }
            U::Sin => cx.unary(U::Cos, x)?,
            U::Cos => {
                let s = cx.unary(U::Sin, x)?;
                cx.neg(s)?
            }
            // 1 - y^2
            U::Tanh => {
                let one = cx.scalar(1.0, dt)?;
                let y2 = cx.mul(y, y)?;
                cx.sub(one, y2)?
            }
            // y (1 - y)
            U::Sigmoid => {
                let one = cx.scalar(1.0, dt)?;
                let c = cx.sub(one, y)?;
                cx.mul(y, c)?
            }
            U::Relu => {
                let z = cx.zeros(&cx.ty(dy))?;
                return select(cx, B::Gt, 0.0, dy, z);
            }
            U::LeakyRelu => {
                let s = cx.scale(dy, a)?;
                return select(cx, B::Ge, 0.0, dy, s);
            }
            // y + alpha below 0
            U::Elu => {
                let k = cx.scalar(a, dt)?;
                let ya = cx.add2(y, k)?;
                let s = cx.mul(dy, ya)?;
                return select(cx, B::Gt, 0.0, dy, s);
            }
            // gamma above 0, gamma * alpha * e^x below
            U::Selu => {
                let e = cx.unary(U::Exp, x)?;
                let lo = cx.scale(e, a * b)?;
                let hi = cx.full(&cx.ty(x), b)?;
                select(cx, B::Gt, 0.0, hi, lo)?
            }
            U::Gelu if self.approximate == Some("tanh") => {
                // 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3k x^2), t = tanh(c (x + k x^3))
                let c = (2.0 / std::f64::consts::PI).sqrt();
                let k = 0.044715;
                let one = cx.scalar(1.0, dt)?;
                let x2 = cx.mul(x, x)?;
                let x3 = cx.mul(x2, x)?;
                let kx3 = cx.scale(x3, k)?;
                let inner = cx.add2(x, kx3)?;
                let inner = cx.scale(inner, c)?;
                let t = cx.unary(U::Tanh, inner)?;
                let opt = cx.add2(one, t)?;
                let left = cx.scale(opt, 0.5)?;
                let t2 = cx.mul(t, t)?;
                let omt2 = cx.sub(one, t2)?;
                let kx2 = cx.scale(x2, 3.0 * k)?;
                let poly = cx.add2(one, kx2)?;
                let r = cx.mul(omt2, poly)?;
                let r = cx.mul(r, x)?;
                let right = cx.scale(r, 0.5 * c)?;
                cx.add2(left, right)?
            }
            U::Gelu => {
                // Phi(x) + x phi(x)
                let xs = cx.scale(x, std::f64::consts::FRAC_1_SQRT_2)?;
                let e = cx.unary(U::Erf, xs)?;
                let one = cx.scalar(1.0, dt)?;
                let p = cx.add2(one, e)?;
                let cdf = cx.scale(p, 0.5)?;
                let x2 = cx.mul(x, x)?;
                let m = cx.scale(x2, -0.5)?;
                let g = cx.unary(U::Exp, m)?;
                let pdf = cx.scale(g, 1.0 / (2.0 * std::f64::consts::PI).sqrt())?;
                let xp = cx.mul(x, pdf)?;
                cx.add2(cdf, xp)?
            }
            // 2/sqrt(pi) e^(-x^2)
            U::Erf => {
                let x2 = cx.mul(x, x)?;
                let m = cx.neg(x2)?;
                let e = cx.unary(U::Exp, m)?;
                cx.scale(e, 2.0 / std::f64::consts::PI.sqrt())?
            }
            U::Softplus => cx.unary(U::Sigmoid, x)?,
            // alpha inside (0, 1), else 0
            U::HardSigmoid => {
                let lin = cx.scale(x, a)?;
                let k = cx.scalar(b, dt)?;
                let lin = cx.add2(lin, k)?;
                let zero = cx.scalar(0.0, dt)?;
                let one = cx.scalar(1.0, dt)?;
                let m1 = cx.mask(B::Gt, lin, zero, dt)?;
                let m2 = cx.mask(B::Lt, lin, one, dt)?;
                let m = cx.mul(m1, m2)?;
                cx.scale(m, a)?
            }
            // Piecewise constant: zero almost everywhere (as PyTorch).
            U::Sign | U::Floor | U::Ceil | U::Round => {
                let ty = cx.ty(dy);
                return cx.zeros(&ty);
            }
            // 1 + y^2
            U::Tan => {
                let one = cx.scalar(1.0, dt)?;
                let y2 = cx.mul(y, y)?;
                cx.add2(one, y2)?
            }
            // +-1 / sqrt(1 - x^2)
            U::Asin | U::Acos => {
                let one = cx.scalar(1.0, dt)?;
                let x2 = cx.mul(x, x)?;
                let d = cx.sub(one, x2)?;
                let r = cx.unary(U::Rsqrt, d)?;
                if self.kind == U::Acos {
                    cx.neg(r)?
                } else {
                    r
                }
            }
            // 1 / (1 + x^2)
            U::Atan => {
                let one = cx.scalar(1.0, dt)?;
                let x2 = cx.mul(x, x)?;
                let d = cx.add2(one, x2)?;
                return cx.div(dy, d);
            }
            U::Sinh => cx.unary(U::Cosh, x)?,
            U::Cosh => cx.unary(U::Sinh, x)?,
            // 1 / sqrt(x^2 + 1), 1 / sqrt(x^2 - 1)
            U::Asinh | U::Acosh => {
                let one = cx.scalar(1.0, dt)?;
                let x2 = cx.mul(x, x)?;
                let d = if self.kind == U::Asinh {
                    cx.add2(x2, one)?
                } else {
                    cx.sub(x2, one)?
                };
                cx.unary(U::Rsqrt, d)?
            }
            // 1 / (1 - x^2)
            U::Atanh => {
                let one = cx.scalar(1.0, dt)?;
                let x2 = cx.mul(x, x)?;
                let d = cx.sub(one, x2)?;
                return cx.div(dy, d);
            }
            // 1 / (1 + |x|)^2
            U::Softsign => {
                let one = cx.scalar(1.0, dt)?;
                let ax = cx.unary(U::Abs, x)?;
                let d = cx.add2(one, ax)?;
                let d2 = cx.mul(d, d)?;
                return cx.div(dy, d2);
            }
            // tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x)
            U::Mish => {
                let one = cx.scalar(1.0, dt)?;
                let sp = cx.unary(U::Softplus, x)?;
                let t = cx.unary(U::Tanh, sp)?;
                let t2 = cx.mul(t, t)?;
                let omt2 = cx.sub(one, t2)?;
                let sg = cx.unary(U::Sigmoid, x)?;
                let r = cx.mul(omt2, sg)?;
                let r = cx.mul(x, r)?;
                cx.add2(t, r)?
            }
            // 0 below -3, 1 above 3, x/3 + 1/2 between
            U::HardSwish => {
                let lin = cx.scale(x, 1.0 / 3.0)?;
                let h = cx.scalar(0.5, dt)?;
                let lin = cx.add2(lin, h)?;
                let one = cx.full(&cx.ty(x), 1.0)?;
                let zero = cx.zeros(&cx.ty(x))?;
                let upper = select(cx, B::Gt, 3.0, one, lin)?;
                select(cx, B::Lt, -3.0, zero, upper)?
            }
            // 1 above 0, e^(x/alpha) below
            U::Celu => {
                let xa = cx.scale(x, 1.0 / a)?;
                let e = cx.unary(U::Exp, xa)?;
                let one = cx.full(&cx.ty(x), 1.0)?;
                select(cx, B::Gt, 0.0, one, e)?
            }
            U::ThresholdedRelu => {
                let z = cx.zeros(&cx.ty(dy))?;
                return select(cx, B::Gt, a, dy, z);
            }
            U::Not | U::IsNan | U::IsInf | U::BitwiseNot => {
                return Err(crate::grad::GradError::NoRule(self.spelling()))
            }
        };
        cx.mul(dy, d)
    }
}

fn bool_f64(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// log(1 + e^x) without overflow for large x.
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// The error function, accurate to about 1e-14: a Taylor series for |x| < 2.5
/// and a continued fraction for erfc beyond, where it converges quickly.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Taylor series: erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)).
        let mut sum = 0.0;
        let mut term = ax;
        let x2 = ax * ax;
        // For |x| < 2.5 the terms peak near n = x^2 and then fall fast; the
        // cancellation costs at most e^(x^2) ulps (~1e-13). 120 terms is ample.
        for n in 0..120 {
            let t = term / (2.0 * n as f64 + 1.0);
            sum += t;
            if t.abs() <= 1e-17 * sum.abs() {
                break;
            }
            term *= -x2 / (n as f64 + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        1.0 - erfc_large(ax)
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// erfc(x) for x >= 2.5 by a continued fraction (Lentz), converging quickly there.
fn erfc_large(x: f64) -> f64 {
    if x > 27.0 {
        return 0.0;
    }
    // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
    let tiny = 1e-300;
    let mut f = x;
    let mut c = x;
    let mut d = 0.0;
    for i in 1..300 {
        let a = i as f64 / 2.0;
        d = x + a * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = x + a / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

impl OpDef for Unary {
    const SPELLINGS: &'static [&'static str] = UNARY_SPELLINGS;

    fn parse(spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let kind = *UnaryKind::ALL
            .iter()
            .find(|k| k.spelling() == spelling)
            .expect("spelling is one of SPELLINGS");
        let mut op = Unary::new(kind);
        for (i, name) in Unary::float_params(kind).iter().enumerate() {
            let slot = if i == 0 { &mut op.alpha } else { &mut op.beta };
            *slot = F64(attrs.float(name, slot.0)?);
        }
        if kind == UnaryKind::IsInf {
            for (i, name) in Unary::IS_INF_FLAGS.iter().enumerate() {
                let flag = match attrs.int(name, 1)? {
                    0 => 0.0,
                    1 => 1.0,
                    v => {
                        return Err(AttrError {
                            attr: (*name).into(),
                            msg: format!("expected 0 or 1, found {v}"),
                        })
                    }
                };
                *(if i == 0 { &mut op.alpha } else { &mut op.beta }) = F64(flag);
            }
        }
        if kind == UnaryKind::Gelu {
            op.approximate = Some(match attrs.str("approximate", "none")?.as_str() {
                "none" => "none",
                "tanh" => "tanh",
                other => {
                    return Err(AttrError {
                        attr: "approximate".into(),
                        msg: format!("expected \"none\" or \"tanh\", found {other:?}"),
                    })
                }
            });
        }
        Ok(op)
    }
    fn spelling(&self) -> &'static str {
        self.kind.spelling()
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        for (i, name) in Unary::float_params(self.kind).iter().enumerate() {
            w.float(name, if i == 0 { self.alpha.0 } else { self.beta.0 });
        }
        if self.kind == UnaryKind::IsInf {
            let [pos, neg] = Unary::IS_INF_FLAGS;
            w.int(pos, i64::from(self.alpha.0 != 0.0));
            w.int(neg, i64::from(self.beta.0 != 0.0));
        }
        if let Some(a) = self.approximate {
            w.str("approximate", a);
        }
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let t = inputs[0];
        let (ok, want) = match self.kind {
            UnaryKind::Not => (t.dtype == DType::Bool, "bool"),
            UnaryKind::Neg | UnaryKind::Abs | UnaryKind::Sign | UnaryKind::Relu => {
                (t.dtype.is_numeric(), "a numeric type")
            }
            UnaryKind::BitwiseNot => (t.dtype.is_int(), "an integer type"),
            _ => (t.dtype.is_float(), "a float type"),
        };
        if !ok {
            return dtype_err(format!(
                "{} takes {want}, found {}",
                self.spelling(),
                t.dtype
            ));
        }
        if self.kind == UnaryKind::Celu && self.alpha.0 == 0.0 {
            return attr_err("alpha", "celu's alpha must be nonzero");
        }
        let dtype = if self.returns_bool() {
            DType::Bool
        } else {
            t.dtype
        };
        Ok(vec![TensorType::new(dtype, t.shape.clone())])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Elementwise
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let x = inputs[0];
        let out = match self.kind {
            UnaryKind::Not => Tensor::Bool(x.to_bool().mapv(|b| !b)),
            _ if self.returns_bool() => Tensor::Bool(x.to_f64().mapv(|v| self.apply(v) != 0.0)),
            _ if x.dtype().is_int() => {
                // Unsigned values are never negative (u64 above i64::MAX reads
                // as a negative i64, hence the explicit cases).
                let unsigned = x.dtype().is_unsigned();
                let f = |v: i64| match self.kind {
                    UnaryKind::Neg => v.wrapping_neg(),
                    UnaryKind::Abs | UnaryKind::Relu if unsigned => v,
                    UnaryKind::Sign if unsigned => i64::from(v != 0),
                    UnaryKind::Abs => v.wrapping_abs(),
                    UnaryKind::Sign => v.signum(),
                    UnaryKind::Relu => v.max(0),
                    // On the sign- or zero-extended value; narrowing keeps the
                    // low bits, which are the narrow type's complement.
                    UnaryKind::BitwiseNot => !v,
                    _ => unreachable!("infer admits only these on integers"),
                };
                Tensor::from_i64(x.dtype(), x.to_i64().mapv(f))
            }
            _ => Tensor::from_f64(x.dtype(), x.to_f64().mapv(|v| self.apply(v))),
        };
        Ok(vec![out])
    }

    const GRAD_SPELLINGS: &'static [&'static str] = &[
        "neg",
        "abs",
        "exp",
        "log",
        "sqrt",
        "rsqrt",
        "reciprocal",
        "sin",
        "cos",
        "tanh",
        "sigmoid",
        "relu",
        "leaky_relu",
        "elu",
        "selu",
        "gelu",
        "erf",
        "softplus",
        "hard_sigmoid",
        "sign",
        "floor",
        "ceil",
        "round",
        "tan",
        "asin",
        "acos",
        "atan",
        "sinh",
        "cosh",
        "asinh",
        "acosh",
        "atanh",
        "softsign",
        "mish",
        "hard_swish",
        "celu",
        "thresholded_relu",
    ];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let (x, y) = (inputs[0], outputs[0]);
        let Some(dy) = dout[0] else {
            return Ok(vec![None]);
        };
        if !cx.ty(x).dtype.is_float() || !Self::GRAD_SPELLINGS.contains(&self.spelling()) {
            return Err(crate::grad::GradError::NoRule(self.spelling()));
        }
        Ok(vec![Some(self.unary_grad(cx, x, y, dy)?)])
    }
}

/// `where(cond, a, b)`: elementwise select with broadcasting of all three.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Where;

impl OpDef for Where {
    const SPELLINGS: &'static [&'static str] = &["where"];
    fn parse(_: &str, _: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Where)
    }
    fn spelling(&self) -> &'static str {
        "where"
    }
    fn write_attrs(&self, _w: &mut AttrWriter) {}
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 3)?;
        if inputs[0].dtype != DType::Bool {
            return dtype_err(format!(
                "where's condition must be bool, found {}",
                inputs[0].dtype
            ));
        }
        let dtype = same_dtype(&inputs[1..])?;
        let shape = broadcast_all(inputs.iter().map(|t| &t.shape))?;
        Ok(vec![TensorType::new(dtype, shape)])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Broadcast
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["where"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        _outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let Some(dy) = dout[0] else {
            return Ok(vec![None; 3]);
        };
        let (c, a, b) = (inputs[0], inputs[1], inputs[2]);
        if !cx.ty(a).dtype.is_float() {
            return Ok(vec![None; 3]);
        }
        let zero = cx.scalar(0.0, cx.ty(a).dtype)?;
        let ga = cx.add(Where, &[c, dy, zero])?;
        let ga = cx.sum_to(ga, &cx.ty(a).shape)?;
        let gb = cx.add(Where, &[c, zero, dy])?;
        let gb = cx.sum_to(gb, &cx.ty(b).shape)?;
        Ok(vec![None, Some(ga), Some(gb)])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let c = inputs[0].to_bool();
        let dtype = inputs[1].dtype();
        let shape = broadcast_all([
            &inputs[0].ty().shape,
            &inputs[1].ty().shape,
            &inputs[2].ty().shape,
        ])?;
        let dims = shape.concrete().expect("runtime shapes are concrete");
        let bc = |a: &ArrayD<f64>| a.broadcast(dims.as_slice()).map(|v| v.to_owned());
        let err = || crate::op::OpError::Shape("where: cannot broadcast".into());
        let cb = c.broadcast(dims.as_slice()).ok_or_else(err)?.to_owned();
        let out = if dtype.is_float() {
            let a = bc(&inputs[1].to_f64()).ok_or_else(err)?;
            let b = bc(&inputs[2].to_f64()).ok_or_else(err)?;
            Tensor::from_f64(
                dtype,
                Zip::from(&cb)
                    .and(&a)
                    .and(&b)
                    .map_collect(|c, a, b| if *c { *a } else { *b }),
            )
        } else {
            let ai = inputs[1].to_i64();
            let bi = inputs[2].to_i64();
            let a = ai.broadcast(dims.as_slice()).ok_or_else(err)?.to_owned();
            let b = bi.broadcast(dims.as_slice()).ok_or_else(err)?.to_owned();
            Tensor::from_i64(
                dtype,
                Zip::from(&cb)
                    .and(&a)
                    .and(&b)
                    .map_collect(|c, a, b| if *c { *a } else { *b }),
            )
        };
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_reference_values() {
        // Values from Abramowitz & Stegun table 7.1 / high-precision references.
        let cases = [
            (0.0, 0.0),
            (1e-10, 1.128_379_167_095_512_6e-10),
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.5, 0.999_999_256_901_627_7),
            (30.0, 1.0),
        ];
        for (x, want) in cases {
            assert!(
                (erf(x) - want).abs() < 1e-14,
                "erf({x}) = {}, want {want}",
                erf(x)
            );
            assert!((erf(-x) + want).abs() < 1e-14, "erf is odd");
        }
        assert!(erf(f64::NAN).is_nan());
        assert_eq!(erf(f64::INFINITY), 1.0);
    }

    #[test]
    fn unary_reference_values() {
        let v = |k: UnaryKind, x: f64| Unary::new(k).apply(x);
        assert_eq!(v(UnaryKind::Relu, -2.0), 0.0);
        assert!(v(UnaryKind::Relu, f64::NAN).is_nan());
        assert_eq!(v(UnaryKind::LeakyRelu, -2.0), -0.02);
        assert!((v(UnaryKind::Sigmoid, 0.0) - 0.5).abs() < 1e-15);
        assert!(
            (v(UnaryKind::Sigmoid, -800.0)).abs() < 1e-300,
            "no overflow for large negative x"
        );
        assert!((v(UnaryKind::Elu, -1.0) - (-0.632_120_558_828_557_7)).abs() < 1e-15);
        // ONNX's default gamma is the f32-rounded constant.
        assert!((v(UnaryKind::Selu, 1.0) - 1.050_701_022_148_132_3).abs() < 1e-15);
        assert!((v(UnaryKind::Gelu, 1.0) - 0.841_344_746_068_542_9).abs() < 1e-12);
        let mut tanh_gelu = Unary::new(UnaryKind::Gelu);
        tanh_gelu.approximate = Some("tanh");
        assert!((tanh_gelu.apply(1.0) - 0.841_191_990_608_276_8).abs() < 1e-12);
        assert!(
            (v(UnaryKind::Softplus, 1000.0) - 1000.0).abs() < 1e-12,
            "no overflow"
        );
        assert!((v(UnaryKind::Softplus, 0.0) - std::f64::consts::LN_2).abs() < 1e-15);
        assert_eq!(v(UnaryKind::HardSigmoid, 10.0), 1.0);
        assert_eq!(v(UnaryKind::HardSigmoid, 0.0), 0.5);
        assert_eq!(v(UnaryKind::Round, 2.5), 2.0, "ties to even");
        assert_eq!(v(UnaryKind::Round, -1.5), -2.0);
        assert_eq!(v(UnaryKind::Sign, -0.0), 0.0);
        assert_eq!(v(UnaryKind::Rsqrt, 4.0), 0.5);
    }

    #[test]
    fn type_rules() {
        let f = TensorType::concrete(DType::F32, &[2]);
        let i = TensorType::concrete(DType::I64, &[2]);
        let b = TensorType::concrete(DType::Bool, &[2]);
        assert!(Unary::new(UnaryKind::Exp).infer(&[&i]).is_err());
        assert!(Unary::new(UnaryKind::Abs).infer(&[&i]).is_ok());
        assert!(Unary::new(UnaryKind::Not).infer(&[&f]).is_err());
        assert_eq!(
            Binary::new(BinaryKind::Lt).infer(&[&f, &f]).unwrap()[0].dtype,
            DType::Bool
        );
        assert!(Binary::new(BinaryKind::And).infer(&[&f, &f]).is_err());
        assert!(Binary::new(BinaryKind::Add).infer(&[&b, &b]).is_err());
        assert!(
            Where.infer(&[&f, &f, &f]).is_err(),
            "condition must be bool"
        );
    }

    /// Relative error within `tol`, for values from mpmath at 40 digits.
    fn close(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * want.abs().max(f64::MIN_POSITIVE)
    }

    #[test]
    fn new_unary_reference_values() {
        use UnaryKind::*;
        // (kind, x, f(x)): f(x) from mpmath at 40 digits, rounded to the nearest f64.
        let cases = [
            (Tan, 0.5, 0.546_302_489_843_790_5),
            (Tan, -1.25, -3.009_569_673_862_831_3),
            (Tan, 3.0, -0.142_546_543_074_277_8),
            (Asin, 0.5, std::f64::consts::FRAC_PI_6),
            (Asin, -0.75, -0.848_062_078_981_481),
            (Acos, 0.5, std::f64::consts::FRAC_PI_3),
            (Acos, -0.75, 2.418_858_405_776_377_6),
            (Atan, 0.5, 0.463_647_609_000_806_1),
            (Atan, -2.0, -1.107_148_717_794_090_4),
            (Atan, 10.0, 1.471_127_674_303_734_7),
            (Sinh, 0.5, 0.521_095_305_493_747_4),
            (Sinh, -2.0, -3.626_860_407_847_018_6),
            (Sinh, 10.0, 11_013.232_874_703_393),
            (Cosh, 0.5, 1.127_625_965_206_380_7),
            (Cosh, -2.0, 3.762_195_691_083_631_4),
            (Cosh, 10.0, 11_013.232_920_103_323),
            (Asinh, 0.5, 0.481_211_825_059_603_47),
            (Asinh, -2.0, -1.443_635_475_178_810_3),
            (Asinh, 10.0, 2.998_222_950_297_97),
            (Acosh, 1.5, 0.962_423_650_119_206_9),
            (Acosh, 10.0, 2.993_222_846_126_381),
            (Atanh, 0.5, 0.549_306_144_334_054_9),
            (Atanh, -0.75, -0.972_955_074_527_656_6),
            (Softsign, -0.5, -0.333_333_333_333_333_3),
            (Softsign, 2.0, 0.666_666_666_666_666_6),
            (Softsign, -3.0, -0.75),
            (Mish, 1.0, 0.865_098_388_267_310_3),
            (Mish, -2.0, -0.252_501_482_695_708_9),
            (Mish, 0.5, 0.375_245_211_304_895_13),
            (Mish, 20.0, 20.0),
            (Mish, -30.0, -2.807_286_890_651_921e-12),
            (HardSwish, -4.0, 0.0),
            (HardSwish, -3.0, 0.0),
            (HardSwish, -1.0, -0.333_333_333_333_333_3),
            (HardSwish, 0.5, 0.291_666_666_666_666_7),
            (HardSwish, 3.0, 3.0),
            (HardSwish, 7.0, 7.0),
            (Celu, -1.0, -0.632_120_558_828_557_7),
            (Celu, -0.5, -0.393_469_340_287_366_6),
            (Celu, 2.0, 2.0),
            (ThresholdedRelu, 1.0, 0.0),
            (ThresholdedRelu, 1.5, 1.5),
            (ThresholdedRelu, -3.0, 0.0),
        ];
        for (k, x, want) in cases {
            let got = Unary::new(k).apply(x);
            assert!(close(got, want, 4e-15), "{k:?}({x}) = {got}, want {want}");
        }
        // Celu with alpha = 2.5 (mpmath): max(0,x) + min(0, 2.5*expm1(x/2.5)).
        let mut celu = Unary::new(Celu);
        celu.alpha = F64(2.5);
        assert!(close(celu.apply(-1.0), -0.824_199_884_910_901_8, 4e-15));
        assert!(close(celu.apply(-0.5), -0.453_173_117_305_045_34, 4e-15));
        assert!(celu.apply(f64::NAN).is_nan());
        let mut thr = Unary::new(ThresholdedRelu);
        thr.alpha = F64(-1.0);
        assert_eq!(thr.apply(-0.5), -0.5);
        assert_eq!(thr.apply(-1.0), 0.0, "strictly greater than alpha");
        assert_eq!(thr.apply(f64::NAN), 0.0, "as ONNX's reference");
        // Out of domain gives NaN or the limit, never a panic.
        assert!(Unary::new(Acosh).apply(0.5).is_nan());
        assert!(Unary::new(Asin).apply(1.5).is_nan());
        assert_eq!(Unary::new(Atanh).apply(1.0), f64::INFINITY);
        assert_eq!(Unary::new(Mish).apply(1000.0), 1000.0, "no overflow");
        assert_eq!(Unary::new(Softsign).apply(-1e300), -1.0);
    }

    #[test]
    fn new_unary_eval_rounds_to_the_output_dtype() {
        let x = Tensor::f32(&[4], vec![0.5, -2.0, 10.0, -1.0]);
        let y = Unary::new(UnaryKind::Sinh).eval(&[&x]).unwrap().remove(0);
        let want = [
            0.521_095_305_493_747_4f64 as f32,
            -3.626_860_407_847_018_6f64 as f32,
            11_013.232_874_703_393f64 as f32,
            -1.175_201_193_643_801_4f64 as f32,
        ];
        match &y {
            Tensor::F32(a) => assert_eq!(a.iter().copied().collect::<Vec<_>>(), want),
            other => panic!("{other:?}"),
        }
        let h = Tensor::from_vec_f64(DType::F16, &[2], vec![-1.0, 0.5]).unwrap();
        let hs = Unary::new(UnaryKind::HardSwish)
            .eval(&[&h])
            .unwrap()
            .remove(0);
        assert_eq!(hs.dtype(), DType::F16);
        assert_eq!(
            hs.values_f64(),
            vec![
                half::f16::from_f64(-1.0 / 3.0).to_f64(),
                half::f16::from_f64(7.0 / 24.0).to_f64()
            ]
        );
    }

    fn bools(t: &Tensor) -> Vec<bool> {
        t.to_bool().iter().copied().collect()
    }

    #[test]
    fn is_nan_and_is_inf_flags() {
        let inf = f32::INFINITY;
        let x = Tensor::f32(&[6], vec![-1.7, f32::NAN, inf, -3.6, -inf, 0.0]);
        let nan = Unary::new(UnaryKind::IsNan).eval(&[&x]).unwrap().remove(0);
        assert_eq!(nan.dtype(), DType::Bool);
        assert_eq!(bools(&nan), [false, true, false, false, false, false]);
        let cases = [
            ((true, true), [false, false, true, false, true, false]),
            ((true, false), [false, false, true, false, false, false]),
            ((false, true), [false, false, false, false, true, false]),
            ((false, false), [false; 6]),
        ];
        for ((pos, neg), want) in cases {
            let op = Unary::is_inf(pos, neg);
            let r = op.eval(&[&x]).unwrap().remove(0);
            assert_eq!(
                bools(&r),
                want,
                "detect_positive={pos} detect_negative={neg}"
            );
        }
        assert_eq!(Unary::new(UnaryKind::IsInf), Unary::is_inf(true, true));
    }

    #[test]
    fn bitwise_not_on_each_integer_width() {
        let t = |d: DType, v: Vec<f64>| Tensor::from_vec_f64(d, &[v.len()], v).unwrap();
        let not = |x: &Tensor| {
            Unary::new(UnaryKind::BitwiseNot)
                .eval(&[x])
                .unwrap()
                .remove(0)
        };
        assert_eq!(
            not(&t(DType::U8, vec![0.0, 5.0, 255.0])).values_f64(),
            [255.0, 250.0, 0.0]
        );
        assert_eq!(
            not(&t(DType::I8, vec![0.0, 5.0, -128.0])).values_f64(),
            [-1.0, -6.0, 127.0]
        );
        assert_eq!(
            not(&t(DType::I32, vec![-1.0, 7.0])).values_f64(),
            [0.0, -8.0]
        );
        let big = Tensor::I64(ndarray::arr1(&[i64::MIN, 0]).into_dyn());
        assert_eq!(
            not(&big),
            Tensor::I64(ndarray::arr1(&[i64::MAX, -1]).into_dyn())
        );
    }

    #[test]
    fn new_unary_type_rules() {
        let f = TensorType::concrete(DType::F32, &[2]);
        let i = TensorType::concrete(DType::I32, &[2]);
        let b = TensorType::concrete(DType::Bool, &[2]);
        for k in [
            UnaryKind::Tan,
            UnaryKind::Acosh,
            UnaryKind::Mish,
            UnaryKind::Celu,
        ] {
            assert!(matches!(
                Unary::new(k).infer(&[&i]),
                Err(crate::OpError::DType(_))
            ));
        }
        for k in [UnaryKind::IsNan, UnaryKind::IsInf] {
            let out = Unary::new(k).infer(&[&f]).unwrap();
            assert_eq!(out[0], TensorType::concrete(DType::Bool, &[2]));
            assert!(Unary::new(k).infer(&[&i]).is_err(), "{k:?} takes floats");
        }
        let not = Unary::new(UnaryKind::BitwiseNot);
        assert_eq!(not.infer(&[&i]).unwrap()[0], i);
        assert!(not.infer(&[&f]).is_err());
        assert!(not.infer(&[&b]).is_err(), "bool uses `not`");
        let mut celu = Unary::new(UnaryKind::Celu);
        celu.alpha = F64(0.0);
        assert!(matches!(celu.infer(&[&f]), Err(crate::OpError::Attr(e)) if e.attr == "alpha"));
        assert!(
            Unary::new(UnaryKind::Tan).infer(&[&f, &f]).is_err(),
            "arity"
        );
    }

    /// Parse, print, re-parse: the printed text is canonical and returned.
    fn roundtrip(src: &str) -> String {
        let g = crate::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        let p = crate::print(&g);
        assert_eq!(crate::print(&crate::parse(&p).unwrap()), p);
        p
    }

    #[test]
    fn new_unary_attributes_roundtrip() {
        let src = "graph g {\n input %x: f32[3]\n %a = celu(%x)\n %b = celu(%a) {alpha = 2.5}\n \
                   %c = thresholded_relu(%b)\n %d = thresholded_relu(%c) {alpha = -0.5}\n \
                   %e = is_inf(%d) {detect_negative = 0}\n %f = is_nan(%d)\n %h = mish(%d)\n \
                   %i = atanh(%h)\n output e = %e\n output f = %f\n output i = %i\n}";
        let p = roundtrip(src);
        for want in [
            "celu(%x) {alpha = 1.0}: f32[3]",
            "{alpha = 2.5}",
            "thresholded_relu(%1) {alpha = 1.0}",
            "{alpha = -0.5}",
            "is_inf(%3) {detect_positive = 1, detect_negative = 0}: bool[3]",
            "is_nan(%3): bool[3]",
            "mish(%3): f32[3]",
        ] {
            assert!(p.contains(want), "missing `{want}` in\n{p}");
        }
        let bad = |attrs: &str, op: &str| {
            let src = format!(
                "graph g {{\n input %x: f32[3]\n %y = {op}(%x) {attrs}\n output y = %y\n}}"
            );
            crate::parse(&src).expect_err(&src).to_string()
        };
        assert!(bad("{detect_positive = 2}", "is_inf").contains("detect_positive"));
        assert!(bad("{detect_negative = 1.0}", "is_inf").contains("detect_negative"));
        assert!(bad("{alpha = 0.0}", "celu").contains("alpha"));
        assert!(bad("{beta = 1.0}", "thresholded_relu").contains("beta"));
        assert!(bad("{alpha = 1.0}", "tan").contains("alpha"));
    }
}
