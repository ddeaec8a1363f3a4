//! More elementwise ops: `clip` and the variadic `sum`, `mean`, `maximum`,
//! `minimum` (ONNX Clip, Sum, Mean, Max, Min).

use crate::grad::{GradCtx, GradError, GradResult};
use crate::graph::ValueId;
use ndarray::ArrayD;

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::op::{expect_arity_range, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::binary::{nan_max, nan_min};
use crate::ops::{broadcast_all, require_float, require_numeric, same_dtype};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

/// `clip(x)`, `clip(x, min)`, `clip(x, min, max)`: ONNX Clip (opset 11+, bounds
/// as inputs). The bounds are single-element tensors of x's dtype, read
/// positionally; a bound not given is unbounded. The result is
/// `minimum(maximum(x, min), max)`, NaN-propagating as numpy's `clip`, so
/// `min > max` gives `max` everywhere. kiln has no empty operand, so a clip
/// with only a max takes the dtype's lowest value as its min (`-inf` for
/// floats), which leaves every x, NaN included, as it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Clip;

/// The single value of a bound tensor, as f64 and as i64.
fn scalar_of(t: &Tensor) -> OpResult<(f64, i64)> {
    if t.len() != 1 {
        return shape_err(format!(
            "clip's bounds must have one element, found shape {:?}",
            t.shape()
        ));
    }
    let f = t.to_f64().iter().copied().next().unwrap_or_default();
    let i = t.to_i64().iter().copied().next().unwrap_or_default();
    Ok((f, i))
}

impl OpDef for Clip {
    const SPELLINGS: &'static [&'static str] = &["clip"];
    fn parse(_: &str, _: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Clip)
    }
    fn spelling(&self) -> &'static str {
        "clip"
    }
    fn write_attrs(&self, _w: &mut AttrWriter) {}
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity_range(inputs, 1, 3)?;
        let x = inputs[0];
        require_numeric(x, "clip's input")?;
        same_dtype(inputs)?;
        for (b, name) in inputs[1..].iter().zip(["min", "max"]) {
            let one = b.shape.0.iter().all(|d| *d == Dim::Known(1));
            if !one || b.shape.rank() > x.shape.rank() {
                return shape_err(format!(
                    "clip's {name} must be a single element that broadcasts to x's shape {}, found {}",
                    x.shape, b.shape
                ));
            }
        }
        Ok(vec![x.clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Broadcast
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["clip"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        let Some(dy) = dout[0] else {
            return Ok(vec![None; inputs.len()]);
        };
        let x = inputs[0];
        let tx = cx.ty(x);
        if !tx.dtype.is_float() {
            return Ok(vec![None; inputs.len()]);
        }
        use crate::ops::binary::BinaryKind as B;
        let zero = cx.scalar(0.0, tx.dtype)?;
        let mut gx = dy;
        let mut out = vec![None];
        // A bound takes the gradient where it clipped; x keeps the rest.
        for (&bound, kind) in inputs[1..].iter().zip([B::Lt, B::Gt]) {
            let m = cx.binary(kind, x, bound)?;
            gx = cx.add(crate::ops::elementwise::Where, &[m, zero, gx])?;
            let gb = cx.add(crate::ops::elementwise::Where, &[m, dy, zero])?;
            let all: Vec<usize> = (0..tx.rank()).collect();
            let gb = cx.reduce_sum(gb, &all, false)?;
            out.push(Some(cx.reshape_like(gb, bound)?));
        }
        out[0] = Some(gx);
        Ok(out)
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let x = inputs[0];
        let lo = inputs.get(1).map(|t| scalar_of(t)).transpose()?;
        let hi = inputs.get(2).map(|t| scalar_of(t)).transpose()?;
        let out = if x.dtype().is_float() {
            let f = |v: f64| {
                let v = lo.map_or(v, |(l, _)| nan_max(v, l));
                hi.map_or(v, |(h, _)| nan_min(v, h))
            };
            Tensor::from_f64(x.dtype(), x.to_f64().mapv(f))
        } else {
            let f = |v: i64| {
                let v = lo.map_or(v, |(_, l)| v.max(l));
                hi.map_or(v, |(_, h)| v.min(h))
            };
            Tensor::from_i64(x.dtype(), x.to_i64().mapv(f))
        };
        Ok(vec![out])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VariadicKind {
    /// `sum`: ONNX Sum.
    Sum,
    /// `mean`: ONNX Mean (floats only).
    Mean,
    /// `maximum`: ONNX Max, NaN-propagating.
    Maximum,
    /// `minimum`: ONNX Min, NaN-propagating.
    Minimum,
}

const VARIADIC: &[(VariadicKind, &str)] = &[
    (VariadicKind::Sum, "sum"),
    (VariadicKind::Mean, "mean"),
    (VariadicKind::Maximum, "maximum"),
    (VariadicKind::Minimum, "minimum"),
];

/// `sum`, `mean`, `maximum`, `minimum` of one or more tensors of one dtype,
/// all broadcast together (numpy rules). With two inputs `maximum`/`minimum`
/// equal the binary `max`/`min`; they are the n-ary forms ONNX Max/Min import
/// to. Floats accumulate in f64 and round once; `sum` on integers wraps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Variadic {
    pub kind: VariadicKind,
}

impl Variadic {
    pub fn new(kind: VariadicKind) -> Variadic {
        Variadic { kind }
    }
}

/// Every input broadcast to the common shape.
fn broadcast_each<T: Clone>(arrays: &[ArrayD<T>]) -> OpResult<Vec<ArrayD<T>>> {
    let shapes: Vec<Shape> = arrays.iter().map(|a| Shape::from_dims(a.shape())).collect();
    let dims = broadcast_all(&shapes)?
        .concrete()
        .expect("runtime shapes are concrete");
    arrays
        .iter()
        .map(|a| {
            a.broadcast(dims.as_slice())
                .map(|v| v.to_owned())
                .ok_or_else(|| OpError::Shape("cannot broadcast".into()))
        })
        .collect()
}

/// Fold `f` over equally shaped arrays.
fn fold<T: Copy>(arrays: Vec<ArrayD<T>>, f: impl Fn(T, T) -> T) -> ArrayD<T> {
    let mut it = arrays.into_iter();
    let mut acc = it.next().expect("at least one input");
    for a in it {
        acc.zip_mut_with(&a, |p, q| *p = f(*p, *q));
    }
    acc
}

impl OpDef for Variadic {
    const SPELLINGS: &'static [&'static str] = &["sum", "mean", "maximum", "minimum"];
    fn parse(spelling: &str, _: &mut AttrReader) -> Result<Self, AttrError> {
        let kind = VARIADIC
            .iter()
            .find(|(_, s)| *s == spelling)
            .map(|(k, _)| *k)
            .expect("known spelling");
        Ok(Variadic { kind })
    }
    fn spelling(&self) -> &'static str {
        VARIADIC
            .iter()
            .find(|(k, _)| *k == self.kind)
            .map(|(_, s)| *s)
            .expect("every kind has a spelling")
    }
    fn write_attrs(&self, _w: &mut AttrWriter) {}
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        if inputs.is_empty() {
            return Err(OpError::Arity {
                expected: "at least 1".into(),
                found: 0,
            });
        }
        let dtype = same_dtype(inputs)?;
        let what = format!("{}'s inputs", self.spelling());
        if self.kind == VariadicKind::Mean {
            require_float(inputs[0], &what)?;
        } else {
            require_numeric(inputs[0], &what)?;
        }
        let shape = broadcast_all(inputs.iter().map(|t| &t.shape))?;
        Ok(vec![TensorType::new(dtype, shape)])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Broadcast
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["sum", "mean", "maximum", "minimum"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        let Some(dy) = dout[0] else {
            return Ok(vec![None; inputs.len()]);
        };
        let y = outputs[0];
        if !cx.ty(y).dtype.is_float() {
            return Err(GradError::NoRule(self.spelling()));
        }
        let n = inputs.len();
        let g = match self.kind {
            VariadicKind::Sum => dy,
            VariadicKind::Mean => cx.scale(dy, 1.0 / n as f64)?,
            VariadicKind::Maximum | VariadicKind::Minimum => {
                // Shared evenly among the inputs equal to the result.
                let dt = cx.ty(y).dtype;
                let mut masks = Vec::with_capacity(n);
                for &x in inputs {
                    masks.push(cx.mask(crate::ops::binary::BinaryKind::Eq, x, y, dt)?);
                }
                let mut cnt = masks[0];
                for &m in &masks[1..] {
                    cnt = cx.add2(cnt, m)?;
                }
                let share = cx.div(dy, cnt)?;
                let mut out = Vec::with_capacity(n);
                for (&x, &m) in inputs.iter().zip(&masks) {
                    let gi = cx.mul(share, m)?;
                    out.push(Some(cx.sum_to(gi, &cx.ty(x).shape)?));
                }
                return Ok(out);
            }
        };
        let mut out = Vec::with_capacity(n);
        for &x in inputs {
            out.push(Some(cx.sum_to(g, &cx.ty(x).shape)?));
        }
        Ok(out)
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dtype = inputs[0].dtype();
        let n = inputs.len() as f64;
        let out = if dtype.is_float() {
            let arrays: Vec<ArrayD<f64>> = inputs.iter().map(|t| t.to_f64()).collect();
            let each = broadcast_each(&arrays)?;
            let r = match self.kind {
                VariadicKind::Sum => fold(each, |a, b| a + b),
                VariadicKind::Mean => fold(each, |a, b| a + b).mapv(|s| s / n),
                VariadicKind::Maximum => fold(each, nan_max),
                VariadicKind::Minimum => fold(each, nan_min),
            };
            Tensor::from_f64(dtype, r)
        } else {
            let arrays: Vec<ArrayD<i64>> = inputs.iter().map(|t| t.to_i64()).collect();
            let each = broadcast_each(&arrays)?;
            // u64 keeps its bits in i64; order it as u64.
            let unsigned = dtype == crate::dtype::DType::U64;
            let max = |a: i64, b: i64| {
                if unsigned {
                    (a as u64).max(b as u64) as i64
                } else {
                    a.max(b)
                }
            };
            let min = |a: i64, b: i64| {
                if unsigned {
                    (a as u64).min(b as u64) as i64
                } else {
                    a.min(b)
                }
            };
            let r = match self.kind {
                VariadicKind::Sum => fold(each, i64::wrapping_add),
                VariadicKind::Maximum => fold(each, max),
                VariadicKind::Minimum => fold(each, min),
                VariadicKind::Mean => {
                    return Err(OpError::Eval("mean takes floats".into()));
                }
            };
            Tensor::from_i64(dtype, r)
        };
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use ndarray::{arr0, arr1, arr2};

    fn clip(inputs: &[&Tensor]) -> Tensor {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let ty = Clip.infer(&refs).unwrap().remove(0);
        let out = Clip.eval(inputs).unwrap().remove(0);
        assert_eq!(out.ty(), ty);
        out
    }
    fn f32s(t: &Tensor) -> Vec<f32> {
        match t {
            Tensor::F32(a) => a.iter().copied().collect(),
            other => panic!("{other:?}"),
        }
    }
    fn scalar(x: f32) -> Tensor {
        Tensor::F32(arr0(x).into_dyn())
    }

    #[test]
    fn clip_bounds() {
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        let x = Tensor::f32(&[6], vec![-inf, -1.5, 0.25, 3.0, inf, nan]);
        let same = |got: Vec<f32>, want: [f32; 6]| {
            let ok = got
                .iter()
                .zip(want)
                .all(|(g, w)| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()));
            assert!(ok, "{got:?} vs {want:?}");
        };
        // Both bounds; NaN stays NaN, as numpy's clip.
        let both = clip(&[&x, &scalar(-1.0), &scalar(1.0)]);
        same(f32s(&both), [-1.0, -1.0, 0.25, 1.0, 1.0, nan]);
        // Only a min (ONNX test_clip_default_min's form): the max is unbounded.
        same(
            f32s(&clip(&[&x, &scalar(0.0)])),
            [0.0, 0.0, 0.25, 3.0, inf, nan],
        );
        // Only a max: min = -inf changes nothing, not even -inf or NaN.
        let only_max = clip(&[&x, &scalar(-inf), &scalar(0.0)]);
        same(f32s(&only_max), [-inf, -1.5, 0.0, 0.0, 0.0, nan]);
        // No bounds: the identity.
        assert_eq!(clip(&[&x]), x);
        // min > max gives max everywhere (ONNX test_clip_min_greater_than_max).
        let y = Tensor::f32(&[3], vec![-2.0, 0.0, 6.0]);
        assert_eq!(f32s(&clip(&[&y, &scalar(2.0), &scalar(1.0)])), [1.0; 3]);
        // A one-element bound of rank 1 against a [2,2] input.
        let m = Tensor::f32(&[2, 2], vec![-5.0, 5.0, 0.5, -0.5]);
        let lo = Tensor::f32(&[1], vec![-1.0]);
        assert_eq!(f32s(&clip(&[&m, &lo])), [-1.0, 5.0, 0.5, -0.5]);
    }

    #[test]
    fn clip_integers() {
        let i8s = |v: &[i64]| Tensor::from_i64(DType::I8, arr1(v).into_dyn());
        let s = |v: i64| Tensor::from_i64(DType::I8, arr0(v).into_dyn());
        let x = i8s(&[-128, -5, 0, 5, 127]);
        assert_eq!(clip(&[&x, &s(-3), &s(4)]), i8s(&[-3, -3, 0, 4, 4]));
        assert_eq!(clip(&[&x, &s(0)]), i8s(&[0, 0, 0, 5, 127]));
        // Only a max, with the dtype's lowest value as min.
        assert_eq!(clip(&[&x, &s(-128), &s(0)]), i8s(&[-128, -5, 0, 0, 0]));
        let u = Tensor::from_i64(DType::U8, arr1(&[0, 200, 255]).into_dyn());
        let b = |v: i64| Tensor::from_i64(DType::U8, arr0(v).into_dyn());
        assert_eq!(
            clip(&[&u, &b(10), &b(250)]).values_f64(),
            [10.0, 200.0, 250.0]
        );
    }

    #[test]
    fn clip_type_rules() {
        let t = |d: DType, s: &[usize]| TensorType::concrete(d, s);
        let x = t(DType::F32, &[4]);
        let s = t(DType::F32, &[]);
        assert_eq!(Clip.infer(&[&x, &s, &s]).unwrap()[0], x);
        assert!(matches!(
            Clip.infer(&[&x, &s, &s, &s]),
            Err(OpError::Arity { .. })
        ));
        assert!(matches!(Clip.infer(&[]), Err(OpError::Arity { .. })));
        let b = t(DType::Bool, &[4]);
        assert!(matches!(Clip.infer(&[&b]), Err(OpError::DType(_))));
        let si = t(DType::I32, &[]);
        assert!(
            matches!(Clip.infer(&[&x, &si]), Err(OpError::DType(_))),
            "bounds share x's dtype"
        );
        for bad in [t(DType::F32, &[2]), t(DType::F32, &[1, 1])] {
            assert!(
                matches!(Clip.infer(&[&x, &s, &bad]), Err(OpError::Shape(_))),
                "{bad}"
            );
        }
        assert_eq!(Clip.fusion_kind(), FusionKind::Broadcast);
    }

    fn var(k: VariadicKind, inputs: &[&Tensor]) -> Tensor {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let ty = Variadic::new(k).infer(&refs).unwrap().remove(0);
        let out = Variadic::new(k).eval(inputs).unwrap().remove(0);
        assert_eq!(out.ty(), ty);
        out
    }

    #[test]
    fn variadic_values() {
        use VariadicKind::*;
        // ONNX test_sum_example / test_mean_example / test_max_example / test_min_example.
        let a = Tensor::f32(&[3], vec![3.0, 0.0, 2.0]);
        let b = Tensor::f32(&[3], vec![1.0, 3.0, 4.0]);
        let c = Tensor::f32(&[3], vec![2.0, 6.0, 6.0]);
        let three = [&a, &b, &c];
        assert_eq!(f32s(&var(Sum, &three)), [6.0, 9.0, 12.0]);
        assert_eq!(f32s(&var(Mean, &three)), [2.0, 3.0, 4.0]);
        assert_eq!(f32s(&var(Maximum, &three)), [3.0, 6.0, 6.0]);
        assert_eq!(f32s(&var(Minimum, &three)), [1.0, 0.0, 2.0]);
        // One input: the identity.
        for k in [Sum, Mean, Maximum, Minimum] {
            assert_eq!(var(k, &[&a]), a, "{k:?}");
        }
        // Three inputs broadcast: [2,1], [3] and a scalar give [2,3].
        let col = Tensor::F32(arr2(&[[1.0f32], [10.0]]).into_dyn());
        let row = Tensor::f32(&[3], vec![0.5, -1.0, 2.0]);
        let s = Tensor::F32(arr0(100.0f32).into_dyn());
        let sum = var(Sum, &[&col, &row, &s]);
        assert_eq!(sum.shape(), [2, 3]);
        assert_eq!(f32s(&sum), [101.5, 100.0, 103.0, 110.5, 109.0, 112.0]);
        let mx = var(Maximum, &[&row, &col, &Tensor::f32(&[1], vec![1.5])]);
        assert_eq!(f32s(&mx), [1.5, 1.5, 2.0, 10.0, 10.0, 10.0]);
        // The mean accumulates in f64 and rounds once: (0.1 + 0.2 + 0.4) / 3
        // over the f32 inputs, rounded to f32.
        let xs = [0.1f32, 0.2, 0.4].map(|v| Tensor::f32(&[1], vec![v]));
        let want = ((0.1f32 as f64 + 0.2f32 as f64 + 0.4f32 as f64) / 3.0) as f32;
        assert_eq!(f32s(&var(Mean, &[&xs[0], &xs[1], &xs[2]])), [want]);
        // maximum/minimum propagate NaN.
        let n = Tensor::f32(&[2], vec![f32::NAN, 1.0]);
        let m = Tensor::f32(&[2], vec![0.0, f32::NAN]);
        assert!(f32s(&var(Maximum, &[&n, &m])).iter().all(|v| v.is_nan()));
        assert!(f32s(&var(Minimum, &[&m, &n])).iter().all(|v| v.is_nan()));
    }

    #[test]
    fn variadic_integers() {
        let i8s = |v: &[i64]| Tensor::from_i64(DType::I8, arr1(v).into_dyn());
        let (a, b, c) = (i8s(&[100, -7, 3]), i8s(&[100, 8, -3]), i8s(&[1, -128, 0]));
        assert_eq!(
            var(VariadicKind::Sum, &[&a, &b, &c]),
            i8s(&[-55, -127, 0]),
            "wraps"
        );
        assert_eq!(var(VariadicKind::Maximum, &[&a, &b, &c]), i8s(&[100, 8, 3]));
        assert_eq!(
            var(VariadicKind::Minimum, &[&a, &b, &c]),
            i8s(&[1, -128, -3])
        );
    }

    #[test]
    fn variadic_type_rules() {
        let t = |d: DType, s: &[usize]| TensorType::concrete(d, s);
        let infer = |k: VariadicKind, ins: &[&TensorType]| Variadic::new(k).infer(ins);
        let (f, i, b) = (
            t(DType::F32, &[3]),
            t(DType::I32, &[3]),
            t(DType::Bool, &[3]),
        );
        assert!(matches!(
            infer(VariadicKind::Sum, &[]),
            Err(OpError::Arity { .. })
        ));
        assert!(matches!(
            infer(VariadicKind::Mean, &[&i]),
            Err(OpError::DType(_))
        ));
        assert_eq!(infer(VariadicKind::Sum, &[&i, &i]).unwrap()[0], i);
        for k in [VariadicKind::Sum, VariadicKind::Maximum] {
            assert!(matches!(infer(k, &[&b]), Err(OpError::DType(_))));
            assert!(matches!(infer(k, &[&f, &i]), Err(OpError::DType(_))));
            let bad = t(DType::F32, &[2]);
            assert!(matches!(infer(k, &[&f, &f, &bad]), Err(OpError::Shape(_))));
        }
        assert_eq!(
            Variadic::new(VariadicKind::Mean).fusion_kind(),
            FusionKind::Broadcast
        );
    }

    #[test]
    fn clip_and_variadic_roundtrip_and_run() {
        let src = "graph g {\n input %x: f32[2,3]\n input %lo: f32[]\n input %hi: f32[1]\n \
                   %a = clip(%x, %lo, %hi)\n %b = clip(%x, %lo)\n %c = clip(%x)\n \
                   %s = sum(%a, %b, %c)\n %m = mean(%s)\n %p = maximum(%a, %lo)\n \
                   %q = minimum(%p, %b, %hi, %lo)\n output m = %m\n output q = %q\n}";
        let g = crate::parse(src).unwrap_or_else(|e| panic!("{e}"));
        let p = crate::print(&g);
        assert_eq!(crate::print(&crate::parse(&p).unwrap()), p);
        for want in [
            "clip(%x, %lo, %hi): f32[2,3]",
            "clip(%x, %lo): f32[2,3]",
            "clip(%x): f32[2,3]",
            "sum(%0, %1, %2): f32[2,3]",
            "mean(%3): f32[2,3]",
            "maximum(%0, %lo): f32[2,3]",
            "minimum(%5, %1, %hi, %lo): f32[2,3]",
        ] {
            assert!(p.contains(want), "missing `{want}` in\n{p}");
        }
        let inputs = [
            (
                "x".to_string(),
                Tensor::f32(&[2, 3], vec![-3.0, -0.5, 0.0, 0.5, 2.0, 9.0]),
            ),
            ("lo".to_string(), scalar(-1.0)),
            ("hi".to_string(), Tensor::f32(&[1], vec![1.0])),
        ]
        .into();
        let out = crate::run(&g, &crate::Weights::default(), &inputs).unwrap();
        // sum of clip(x,-1,1), clip(x,-1) and x.
        assert_eq!(f32s(&out[0].1), [-5.0, -1.5, 0.0, 1.5, 5.0, 19.0]);
        assert_eq!(f32s(&out[1].1), [-1.0, -1.0, -1.0, -1.0, -1.0, -1.0]);
        let e = crate::parse("graph g {\n input %x: f32[2]\n %y = sum()\n output y = %y\n}")
            .expect_err("no inputs");
        assert!(e.to_string().contains("at least 1"), "{e}");
    }
}
