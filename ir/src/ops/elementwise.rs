//! Elementwise ops: the unary table, broadcasting binary ops, and `where`.

use ndarray::{ArrayD, Zip};

use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::dtype::DType;
use crate::op::{dtype_err, expect_arity, FusionKind, OpDef, OpResult};
use crate::ops::{broadcast_all, broadcast_shapes, same_dtype};
use crate::shape::{Shape, TensorType};
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
}

/// A unary elementwise op. `alpha`/`beta` hold the parameters of the ops that
/// have them (leaky_relu, elu, selu, hard_sigmoid); `approximate` is gelu's form.
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
            UnaryKind::Elu => (1.0, 0.0),
            UnaryKind::Selu => (SELU_ALPHA, SELU_GAMMA),
            UnaryKind::HardSigmoid => (0.2, 0.5),
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
    /// The attribute names this kind carries.
    fn param_names(kind: UnaryKind) -> (&'static str, &'static str) {
        match kind {
            UnaryKind::Selu => ("alpha", "gamma"),
            _ => ("alpha", "beta"),
        }
    }
    fn params(kind: UnaryKind) -> usize {
        match kind {
            UnaryKind::LeakyRelu | UnaryKind::Elu => 1,
            UnaryKind::Selu | UnaryKind::HardSigmoid => 2,
            _ => 0,
        }
    }
    /// Reference function on one element.
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
            UnaryKind::Relu => x.max(0.0),
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
            // log(1 + e^x) without overflow for large x.
            UnaryKind::Softplus => {
                if x > 0.0 {
                    x + (-x).exp().ln_1p()
                } else {
                    x.exp().ln_1p()
                }
            }
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
            UnaryKind::Not => unreachable!("not is evaluated on bools"),
        }
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
        let (na, nb) = Unary::param_names(kind);
        let n = Unary::params(kind);
        if n >= 1 {
            op.alpha = F64(attrs.float(na, op.alpha.0)?);
        }
        if n >= 2 {
            op.beta = F64(attrs.float(nb, op.beta.0)?);
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
        let (na, nb) = Unary::param_names(self.kind);
        let n = Unary::params(self.kind);
        if n >= 1 {
            w.float(na, self.alpha.0);
        }
        if n >= 2 {
            w.float(nb, self.beta.0);
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
            _ => (t.dtype.is_float(), "a float type"),
        };
        if !ok {
            return dtype_err(format!(
                "{} takes {want}, found {}",
                self.spelling(),
                t.dtype
            ));
        }
        Ok(vec![t.clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Elementwise
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let x = inputs[0];
        let out = match self.kind {
            UnaryKind::Not => Tensor::Bool(x.to_bool().mapv(|b| !b)),
            _ if x.dtype().is_int() => {
                let f = |v: i64| match self.kind {
                    UnaryKind::Neg => v.wrapping_neg(),
                    UnaryKind::Abs => v.wrapping_abs(),
                    UnaryKind::Sign => v.signum(),
                    UnaryKind::Relu => v.max(0),
                    _ => unreachable!("infer admits only these on integers"),
                };
                Tensor::from_i64(x.dtype(), x.to_i64().mapv(f))
            }
            _ => Tensor::from_f64(x.dtype(), x.to_f64().mapv(|v| self.apply(v))),
        };
        Ok(vec![out])
    }
}

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
}

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
];

impl BinaryKind {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryKind::Eq | BinaryKind::Lt | BinaryKind::Le | BinaryKind::Gt | BinaryKind::Ge
        )
    }
    pub fn is_logical(self) -> bool {
        matches!(self, BinaryKind::And | BinaryKind::Or)
    }
    fn arith_f64(self, a: f64, b: f64) -> f64 {
        match self {
            BinaryKind::Add => a + b,
            BinaryKind::Sub => a - b,
            BinaryKind::Mul => a * b,
            BinaryKind::Div => a / b,
            BinaryKind::Pow => a.powf(b),
            // NaN-propagating, like numpy's maximum/minimum and ONNX Max/Min.
            BinaryKind::Max => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.max(b)
                }
            }
            BinaryKind::Min => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.min(b)
                }
            }
            _ => unreachable!("not arithmetic"),
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
            _ => unreachable!("not arithmetic"),
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

/// A binary op with numpy broadcasting.
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

impl OpDef for Binary {
    const SPELLINGS: &'static [&'static str] = &[
        "add", "sub", "mul", "div", "pow", "max", "min", "eq", "lt", "le", "gt", "ge", "and", "or",
    ];
    fn parse(spelling: &str, _attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let kind = BINARY
            .iter()
            .find(|(_, s)| *s == spelling)
            .map(|(k, _)| *k)
            .expect("known spelling");
        Ok(Binary { kind })
    }
    fn spelling(&self) -> &'static str {
        BINARY
            .iter()
            .find(|(k, _)| *k == self.kind)
            .map(|(_, s)| *s)
            .expect("every kind has a spelling")
    }
    fn write_attrs(&self, _w: &mut AttrWriter) {}
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        let shape = broadcast_shapes(&inputs[0].shape, &inputs[1].shape)?;
        let dtype = if self.kind == BinaryKind::Pow {
            // ONNX Pow allows a different exponent type; the result has the base's type.
            if !inputs[0].dtype.is_numeric() || !inputs[1].dtype.is_numeric() {
                return dtype_err("pow takes numeric inputs");
            }
            inputs[0].dtype
        } else {
            same_dtype(inputs)?
        };
        let out = if self.kind.is_logical() {
            if dtype != DType::Bool {
                return dtype_err(format!(
                    "{} takes bool inputs, found {dtype}",
                    self.spelling()
                ));
            }
            DType::Bool
        } else if self.kind.is_comparison() {
            if dtype.is_quantized() {
                return dtype_err("comparison of quantized values is not defined");
            }
            DType::Bool
        } else {
            if !dtype.is_numeric() {
                return dtype_err(format!(
                    "{} takes numeric inputs, found {dtype}",
                    self.spelling()
                ));
            }
            dtype
        };
        Ok(vec![TensorType::new(out, shape)])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Broadcast
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (x, y) = (inputs[0], inputs[1]);
        let k = self.kind;
        let out = if k.is_logical() {
            let (a, b) = bcast2(&x.to_bool(), &y.to_bool())?;
            let f = |p: &bool, q: &bool| {
                if k == BinaryKind::And {
                    *p && *q
                } else {
                    *p || *q
                }
            };
            Tensor::Bool(Zip::from(&a).and(&b).map_collect(f))
        } else if k.is_comparison() {
            if x.dtype().is_float() {
                let (a, b) = bcast2(&x.to_f64(), &y.to_f64())?;
                Tensor::Bool(Zip::from(&a).and(&b).map_collect(|p, q| k.compare(*p, *q)))
            } else {
                let (a, b) = bcast2(&x.to_i64(), &y.to_i64())?;
                Tensor::Bool(Zip::from(&a).and(&b).map_collect(|p, q| k.compare(*p, *q)))
            }
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
}
