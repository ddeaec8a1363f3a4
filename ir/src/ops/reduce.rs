//! Reductions over axes (`reduce_*`) and index reductions (`argmax`, `argmin`).

use ndarray::{ArrayD, ArrayView1, Axis};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::dtype::DType;
use crate::grad::{GradCtx, GradResult};
use crate::graph::ValueId;
use crate::op::{attr_err, expect_arity, FusionKind, OpDef, OpError, OpResult};
use crate::ops::{axis_or_err, require_numeric};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
}

const REDUCE: &[(ReduceKind, &str)] = &[
    (ReduceKind::Sum, "reduce_sum"),
    (ReduceKind::Mean, "reduce_mean"),
    (ReduceKind::Max, "reduce_max"),
    (ReduceKind::Min, "reduce_min"),
    (ReduceKind::Prod, "reduce_prod"),
];

impl ReduceKind {
    pub fn spelling(self) -> &'static str {
        REDUCE
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, s)| *s)
            .expect("every kind has a spelling")
    }
}

/// Reads a 0/1 flag; bools are stored as ints in the text format, as in ONNX.
pub(crate) fn read_flag(
    attrs: &mut AttrReader,
    name: &str,
    default: bool,
) -> Result<bool, AttrError> {
    match attrs.int(name, i64::from(default))? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(AttrError {
            attr: name.into(),
            msg: format!("expected 0 or 1, found {v}"),
        }),
    }
}

/// Normalise an axis list against `rank`, rejecting duplicates; sorted ascending.
fn resolve_axes(attr: &str, axes: &[i64], rank: usize) -> OpResult<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = axis_or_err(attr, a, rank)?;
        if out.contains(&n) {
            return attr_err(attr, format!("axis {a} is listed twice in {axes:?}"));
        }
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

/// `shape` with `axes` reduced: kept as 1 or dropped. Other dims, symbolic or
/// not, are copied.
fn reduced_shape(shape: &Shape, axes: &[usize], keepdims: bool) -> Shape {
    Shape(
        shape
            .dims()
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                if axes.contains(&i) {
                    keepdims.then_some(Dim::Known(1))
                } else {
                    Some(d.clone())
                }
            })
            .collect(),
    )
}

/// Reduce `axes` (sorted ascending) one at a time, innermost first so that the
/// remaining axis numbers stay valid, then reinsert unit axes if asked.
fn reduce_axes<T: Clone>(
    a: ArrayD<T>,
    axes: &[usize],
    keepdims: bool,
    f: impl Fn(ArrayView1<T>) -> T,
) -> ArrayD<T> {
    let mut r = a;
    for &ax in axes.iter().rev() {
        r = r.map_axis(Axis(ax), &f);
    }
    if keepdims {
        for &ax in axes {
            r = r.insert_axis(Axis(ax));
        }
    }
    standard(r)
}

/// `map_axis` may hand back a column-major array; consumers that read raw
/// memory expect row-major.
fn standard<T: Clone>(a: ArrayD<T>) -> ArrayD<T> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// A reduction over `axes` (empty = all axes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reduce {
    pub kind: ReduceKind,
    pub axes: Vec<i64>,
    pub keepdims: bool,
}

impl Reduce {
    pub fn new(kind: ReduceKind, axes: Vec<i64>, keepdims: bool) -> Reduce {
        Reduce {
            kind,
            axes,
            keepdims,
        }
    }
    fn axes_for(&self, rank: usize) -> OpResult<Vec<usize>> {
        if self.axes.is_empty() {
            Ok((0..rank).collect())
        } else {
            resolve_axes("axes", &self.axes, rank)
        }
    }
}

// NaN-propagating, like numpy's max/min and ONNX ReduceMax/ReduceMin.
fn fmax(m: f64, v: f64) -> f64 {
    if m.is_nan() || v.is_nan() {
        f64::NAN
    } else {
        m.max(v)
    }
}
fn fmin(m: f64, v: f64) -> f64 {
    if m.is_nan() || v.is_nan() {
        f64::NAN
    } else {
        m.min(v)
    }
}

impl OpDef for Reduce {
    const SPELLINGS: &'static [&'static str] = &[
        "reduce_sum",
        "reduce_mean",
        "reduce_max",
        "reduce_min",
        "reduce_prod",
    ];

    fn parse(spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let kind = REDUCE
            .iter()
            .find(|(_, s)| *s == spelling)
            .map(|(k, _)| *k)
            .expect("spelling is one of SPELLINGS");
        let axes = attrs.ints("axes", &[])?;
        let keepdims = read_flag(attrs, "keepdims", true)?;
        Ok(Reduce {
            kind,
            axes,
            keepdims,
        })
    }
    fn spelling(&self) -> &'static str {
        self.kind.spelling()
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("axes", &self.axes);
        w.int("keepdims", i64::from(self.keepdims));
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        // max/min of bools are any/all (ONNX ReduceMax/ReduceMin, opset 20+).
        let bool_ok =
            x.dtype == DType::Bool && matches!(self.kind, ReduceKind::Max | ReduceKind::Min);
        if !bool_ok {
            require_numeric(x, &format!("{} input", self.spelling()))?;
        }
        let axes = self.axes_for(x.rank())?;
        Ok(vec![x.with_shape(reduced_shape(
            &x.shape,
            &axes,
            self.keepdims,
        ))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Reduction
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &[
        "reduce_sum",
        "reduce_mean",
        "reduce_max",
        "reduce_min",
        "reduce_prod",
    ];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let Some(dy) = dout[0] else {
            return Ok(vec![None]);
        };
        let (x, y) = (inputs[0], outputs[0]);
        let tx = cx.ty(x);
        if !tx.dtype.is_float() {
            return Err(crate::grad::GradError::NoRule(self.spelling()));
        }
        let axes = self
            .axes_for(tx.rank())
            .map_err(|e| crate::grad::GradError::Unsupported {
                op: self.spelling(),
                msg: e.to_string(),
            })?;
        let g = cx.keep_dims(dy, &axes, self.keepdims)?;
        let gx = match self.kind {
            ReduceKind::Sum => cx.expand_like(g, x)?,
            ReduceKind::Mean => {
                let dims = cx.dims(x)?;
                let count: usize = axes.iter().map(|&a| dims[a]).product();
                let g = cx.scale(g, 1.0 / count as f64)?;
                cx.expand_like(g, x)?
            }
            // To the elements equal to the extreme, shared evenly on ties.
            ReduceKind::Max | ReduceKind::Min => {
                let yk = cx.keep_dims(y, &axes, self.keepdims)?;
                let m = cx.mask(crate::ops::binary::BinaryKind::Eq, x, yk, tx.dtype)?;
                let cnt = cx.reduce_sum(m, &axes, true)?;
                let share = cx.div(g, cnt)?;
                cx.mul(m, share)?
            }
            // y / x: the product of the others (inputs must be nonzero).
            ReduceKind::Prod => {
                let yk = cx.keep_dims(y, &axes, self.keepdims)?;
                let gy = cx.mul(g, yk)?;
                cx.div(gy, x)?
            }
        };
        Ok(vec![Some(gx)])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        let axes = self.axes_for(x.shape().len())?;
        let count: usize = axes.iter().map(|&a| x.shape()[a]).product();
        let kd = self.keepdims;
        let out = if x.dtype() == DType::Bool {
            // Empty sets give the identities: false for max (any), true for min (all).
            let a = x.to_bool();
            let r = match self.kind {
                ReduceKind::Max => reduce_axes(a, &axes, kd, |l| l.iter().any(|&v| v)),
                ReduceKind::Min => reduce_axes(a, &axes, kd, |l| l.iter().all(|&v| v)),
                _ => {
                    return Err(OpError::DType(format!(
                        "{} input must be numeric, found bool",
                        self.spelling()
                    )))
                }
            };
            Tensor::Bool(r)
        } else if x.dtype().is_float() {
            let a = x.to_f64();
            let r = match self.kind {
                ReduceKind::Sum | ReduceKind::Mean => reduce_axes(a, &axes, kd, |l| l.sum()),
                ReduceKind::Prod => reduce_axes(a, &axes, kd, |l| l.iter().product()),
                ReduceKind::Max => reduce_axes(a, &axes, kd, |l| {
                    l.iter().fold(f64::NEG_INFINITY, |m, &v| fmax(m, v))
                }),
                ReduceKind::Min => reduce_axes(a, &axes, kd, |l| {
                    l.iter().fold(f64::INFINITY, |m, &v| fmin(m, v))
                }),
            };
            // Mean of an empty set is 0/0 = NaN, as in numpy.
            let r = if self.kind == ReduceKind::Mean {
                r.mapv(|v| v / count as f64)
            } else {
                r
            };
            Tensor::from_f64(x.dtype(), r)
        } else {
            let out_len: usize = reduced_shape(&x.ty().shape, &axes, false)
                .concrete()
                .map_or(0, |d| d.iter().product());
            // Integers have no identity for max/min and no value for an empty mean.
            if count == 0
                && out_len > 0
                && self.kind != ReduceKind::Sum
                && self.kind != ReduceKind::Prod
            {
                return Err(OpError::Eval(format!(
                    "{} of an empty set of integers is undefined",
                    self.spelling()
                )));
            }
            let a = x.to_i64();
            let sum = |l: ArrayView1<i64>| l.iter().fold(0i64, |s, &v| s.wrapping_add(v));
            let r = match self.kind {
                ReduceKind::Sum => reduce_axes(a, &axes, kd, sum),
                // Integer mean truncates toward zero, as integer division does.
                ReduceKind::Mean => {
                    reduce_axes(a, &axes, kd, sum).mapv(|v| v / count.max(1) as i64)
                }
                ReduceKind::Prod => reduce_axes(a, &axes, kd, |l| {
                    l.iter().fold(1i64, |p, &v| p.wrapping_mul(v))
                }),
                ReduceKind::Max => reduce_axes(a, &axes, kd, |l| {
                    l.iter().copied().max().unwrap_or(i64::MIN)
                }),
                ReduceKind::Min => reduce_axes(a, &axes, kd, |l| {
                    l.iter().copied().min().unwrap_or(i64::MAX)
                }),
            };
            Tensor::from_i64(x.dtype(), r)
        };
        Ok(vec![out])
    }
}

/// `argmax` / `argmin` along one axis, returning i64 indices.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArgReduce {
    pub max: bool,
    pub axis: i64,
    pub keepdims: bool,
    pub select_last_index: bool,
}

impl ArgReduce {
    pub fn new(max: bool, axis: i64, keepdims: bool, select_last_index: bool) -> ArgReduce {
        ArgReduce {
            max,
            axis,
            keepdims,
            select_last_index,
        }
    }
}

/// Index of the extreme element of `lane`. NaN counts as the extreme, like
/// numpy's argmax/argmin; ties go to the first (or last) occurrence.
fn arg_index<T: PartialOrd + Copy>(
    lane: ArrayView1<T>,
    max: bool,
    last: bool,
    is_nan: impl Fn(T) -> bool,
) -> i64 {
    let mut best: Option<(usize, T)> = None;
    for (i, &v) in lane.iter().enumerate() {
        let take = match best {
            None => true,
            Some((_, b)) if is_nan(b) => last && is_nan(v),
            Some(_) if is_nan(v) => true,
            Some((_, b)) if v == b => last,
            Some((_, b)) => (v > b) == max,
        };
        if take {
            best = Some((i, v));
        }
    }
    best.map_or(0, |(i, _)| i as i64)
}

impl OpDef for ArgReduce {
    const SPELLINGS: &'static [&'static str] = &["argmax", "argmin"];

    fn parse(spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let max = spelling == "argmax";
        let axis = attrs.int("axis", 0)?;
        let keepdims = read_flag(attrs, "keepdims", true)?;
        let select_last_index = read_flag(attrs, "select_last_index", false)?;
        Ok(ArgReduce {
            max,
            axis,
            keepdims,
            select_last_index,
        })
    }
    fn spelling(&self) -> &'static str {
        if self.max {
            "argmax"
        } else {
            "argmin"
        }
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
        w.int("keepdims", i64::from(self.keepdims));
        w.int("select_last_index", i64::from(self.select_last_index));
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        require_numeric(x, &format!("{} input", self.spelling()))?;
        let ax = axis_or_err("axis", self.axis, x.rank())?;
        let shape = reduced_shape(&x.shape, &[ax], self.keepdims);
        Ok(vec![TensorType::new(DType::I64, shape)])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Reduction
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        let ax = axis_or_err("axis", self.axis, x.shape().len())?;
        if x.shape()[ax] == 0 && x.shape().iter().enumerate().all(|(i, &d)| i == ax || d > 0) {
            return Err(OpError::Eval(format!(
                "{} over axis {ax} of length 0 has no answer",
                self.spelling()
            )));
        }
        let (max, last) = (self.max, self.select_last_index);
        let r = if x.dtype().is_float() {
            x.to_f64()
                .map_axis(Axis(ax), |l| arg_index(l, max, last, f64::is_nan))
        } else {
            // i64 comparisons, so integers above 2^53 are still ordered exactly.
            x.to_i64()
                .map_axis(Axis(ax), |l| arg_index(l, max, last, |_| false))
        };
        let r = if self.keepdims {
            r.insert_axis(Axis(ax))
        } else {
            r
        };
        Ok(vec![Tensor::I64(standard(r))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::OpError;
    use crate::tensor::allclose;
    use ndarray::IxDyn;

    fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }
    fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }
    fn red(kind: ReduceKind, axes: &[i64], keepdims: bool, x: &Tensor) -> Tensor {
        let op = Reduce::new(kind, axes.to_vec(), keepdims);
        let ty = op.infer(&[&x.ty()]).unwrap();
        let out = op.eval(&[x]).unwrap().remove(0);
        assert_eq!(out.ty(), ty[0], "eval agrees with infer");
        out
    }
    fn close(a: &Tensor, b: &Tensor) {
        allclose(a, b, 1e-12, 1e-12).unwrap();
    }
    use crate::ops::test_util::roundtrip;

    // [[1, 2, 3], [4, 5, 6]]
    fn m23() -> Tensor {
        f64t(&[2, 3], &[1., 2., 3., 4., 5., 6.])
    }

    #[test]
    fn sum_over_axes() {
        close(
            &red(ReduceKind::Sum, &[0], true, &m23()),
            &f64t(&[1, 3], &[5., 7., 9.]),
        );
        close(
            &red(ReduceKind::Sum, &[1], false, &m23()),
            &f64t(&[2], &[6., 15.]),
        );
        close(
            &red(ReduceKind::Sum, &[-1], true, &m23()),
            &f64t(&[2, 1], &[6., 15.]),
        );
        close(
            &red(ReduceKind::Sum, &[], false, &m23()),
            &f64t(&[], &[21.]),
        );
        close(
            &red(ReduceKind::Sum, &[], true, &m23()),
            &f64t(&[1, 1], &[21.]),
        );
        close(
            &red(ReduceKind::Sum, &[1, 0], false, &m23()),
            &f64t(&[], &[21.]),
        );
    }

    #[test]
    fn mean_max_min_prod() {
        close(
            &red(ReduceKind::Mean, &[1], false, &m23()),
            &f64t(&[2], &[2., 5.]),
        );
        close(
            &red(ReduceKind::Mean, &[0], true, &m23()),
            &f64t(&[1, 3], &[2.5, 3.5, 4.5]),
        );
        close(
            &red(ReduceKind::Max, &[0], false, &m23()),
            &f64t(&[3], &[4., 5., 6.]),
        );
        close(
            &red(ReduceKind::Min, &[1], true, &m23()),
            &f64t(&[2, 1], &[1., 4.]),
        );
        close(
            &red(ReduceKind::Prod, &[1], false, &m23()),
            &f64t(&[2], &[6., 120.]),
        );
        close(
            &red(ReduceKind::Prod, &[], false, &m23()),
            &f64t(&[], &[720.]),
        );
    }

    #[test]
    fn seed_checklist_mean() {
        let x = Tensor::f32(&[4], vec![2.09, 2.12, 1.92, 1.87]);
        let m = red(ReduceKind::Mean, &[], false, &x);
        assert_eq!(m.dtype(), DType::F32);
        assert!((m.values_f64()[0] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn three_d_and_nan() {
        // x[i,j,k] = 4i + 2j + k over [2,2,2]
        let x = f64t(&[2, 2, 2], &[0., 1., 2., 3., 4., 5., 6., 7.]);
        close(
            &red(ReduceKind::Sum, &[0, 2], false, &x),
            &f64t(&[2], &[10., 18.]),
        );
        close(
            &red(ReduceKind::Max, &[1], true, &x),
            &f64t(&[2, 1, 2], &[2., 3., 6., 7.]),
        );
        let n = f64t(&[3], &[1., f64::NAN, 3.]);
        assert!(red(ReduceKind::Max, &[], false, &n).values_f64()[0].is_nan());
    }

    #[test]
    fn integer_reductions_stay_integer() {
        let x = i64t(&[2, 2], &[1 << 60, 1, 3, -8]);
        let s = red(ReduceKind::Sum, &[1], false, &x);
        assert_eq!(s, i64t(&[2], &[(1 << 60) + 1, -5]));
        assert_eq!(
            red(ReduceKind::Mean, &[1], false, &x),
            i64t(&[2], &[1 << 59, -2])
        );
        assert_eq!(
            red(ReduceKind::Max, &[0], false, &x),
            i64t(&[2], &[1 << 60, 1])
        );
        assert_eq!(
            red(ReduceKind::Prod, &[0], false, &x),
            i64t(&[2], &[3 << 60, -8])
        );
        let i = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[3]), vec![1, 2, 4]).unwrap());
        let p = red(ReduceKind::Prod, &[0], false, &i);
        assert_eq!(p.dtype(), DType::I32);
        assert_eq!(p.values_f64(), vec![8.0]);
        let empty = i64t(&[2, 0], &[]);
        assert_eq!(
            red(ReduceKind::Sum, &[1], false, &empty),
            i64t(&[2], &[0, 0])
        );
        let op = Reduce::new(ReduceKind::Max, vec![1], false);
        assert!(matches!(op.eval(&[&empty]), Err(OpError::Eval(_))));
    }

    #[test]
    fn reduce_infer_symbolic_and_errors() {
        let ty = TensorType::new(DType::F32, Shape::from(vec![Dim::sym("N"), Dim::Known(10)]));
        let op = Reduce::new(ReduceKind::Sum, vec![1], false);
        assert_eq!(op.infer(&[&ty]).unwrap()[0].to_string(), "f32[N]");
        let op = Reduce::new(ReduceKind::Mean, vec![0], true);
        assert_eq!(op.infer(&[&ty]).unwrap()[0].to_string(), "f32[1,10]");
        let op = Reduce::new(ReduceKind::Sum, vec![1, -1], true);
        assert!(matches!(op.infer(&[&ty]), Err(OpError::Attr(_))));
        let op = Reduce::new(ReduceKind::Sum, vec![2], true);
        assert!(matches!(op.infer(&[&ty]), Err(OpError::Attr(_))));
        let b = TensorType::concrete(DType::Bool, &[2]);
        assert!(matches!(op.infer(&[&b]), Err(OpError::DType(_))));
        assert!(matches!(op.infer(&[&ty, &ty]), Err(OpError::Arity { .. })));
        // max/min of bools are any/all; over an empty axis, false and true.
        let bt = Tensor::Bool(
            ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![true, false, false, false]).unwrap(),
        );
        let any = Reduce::new(ReduceKind::Max, vec![1], false);
        assert_eq!(any.infer(&[&bt.ty()]).unwrap()[0].dtype, DType::Bool);
        assert_eq!(any.eval(&[&bt]).unwrap()[0].values_f64(), [1., 0.]);
        let all = Reduce::new(ReduceKind::Min, vec![0], false);
        assert_eq!(all.eval(&[&bt]).unwrap()[0].values_f64(), [0., 0.]);
        let empty = Tensor::Bool(ArrayD::from_shape_vec(IxDyn(&[2, 0]), vec![]).unwrap());
        assert_eq!(any.eval(&[&empty]).unwrap()[0].values_f64(), [0., 0.]);
        let all1 = Reduce::new(ReduceKind::Min, vec![1], false);
        assert_eq!(all1.eval(&[&empty]).unwrap()[0].values_f64(), [1., 1.]);
    }

    #[test]
    fn argmax_argmin_ties() {
        let x = f64t(&[2, 3], &[1., 5., 5., 2., 2., 0.]);
        let am = ArgReduce::new(true, 1, false, false);
        assert_eq!(am.eval(&[&x]).unwrap()[0], i64t(&[2], &[1, 0]));
        let am_last = ArgReduce::new(true, 1, false, true);
        assert_eq!(am_last.eval(&[&x]).unwrap()[0], i64t(&[2], &[2, 1]));
        let an = ArgReduce::new(false, 1, true, false);
        assert_eq!(an.eval(&[&x]).unwrap()[0], i64t(&[2, 1], &[0, 2]));
        let an0 = ArgReduce::new(false, 0, true, true);
        assert_eq!(an0.eval(&[&x]).unwrap()[0], i64t(&[1, 3], &[0, 1, 1]));
        let ties = f64t(&[3], &[7., 7., 7.]);
        assert_eq!(
            ArgReduce::new(false, 0, false, false)
                .eval(&[&ties])
                .unwrap()[0],
            i64t(&[], &[0])
        );
        assert_eq!(
            ArgReduce::new(false, 0, false, true)
                .eval(&[&ties])
                .unwrap()[0],
            i64t(&[], &[2])
        );
        // Exact on integers beyond 2^53, where f64 would tie them.
        let big = i64t(&[2], &[(1 << 60) + 1, 1 << 60]);
        assert_eq!(
            ArgReduce::new(true, 0, false, false).eval(&[&big]).unwrap()[0],
            i64t(&[], &[0])
        );
    }

    #[test]
    fn argreduce_infer() {
        let ty = TensorType::new(DType::F32, Shape::from(vec![Dim::sym("N"), Dim::Known(10)]));
        let op = ArgReduce::new(true, -1, false, false);
        assert_eq!(op.infer(&[&ty]).unwrap()[0].to_string(), "i64[N]");
        let op = ArgReduce::new(true, 1, true, false);
        assert_eq!(op.infer(&[&ty]).unwrap()[0].to_string(), "i64[N,1]");
        let op = ArgReduce::new(true, 2, true, false);
        assert!(matches!(op.infer(&[&ty]), Err(OpError::Attr(_))));
        let empty = f64t(&[0], &[]);
        let op = ArgReduce::new(true, 0, true, false);
        assert!(matches!(op.eval(&[&empty]), Err(OpError::Eval(_))));
    }

    #[test]
    fn attrs_roundtrip_and_defaults() {
        roundtrip(&Reduce::new(ReduceKind::Prod, vec![0, -1], false));
        roundtrip(&Reduce::new(ReduceKind::Sum, vec![], true));
        roundtrip(&ArgReduce::new(false, -1, false, true));
        let mut r = AttrReader::default();
        assert_eq!(
            Reduce::parse("reduce_mean", &mut r).unwrap(),
            Reduce::new(ReduceKind::Mean, vec![], true)
        );
        let mut r = AttrReader::default();
        assert_eq!(
            ArgReduce::parse("argmax", &mut r).unwrap(),
            ArgReduce::new(true, 0, true, false)
        );
        let mut r = AttrReader::new(vec![("keepdims".into(), crate::attr::AttrValue::Int(2))]);
        assert!(Reduce::parse("reduce_sum", &mut r).is_err());
        let mut w = AttrWriter::default();
        Reduce::new(ReduceKind::Max, vec![1], false).write_attrs(&mut w);
        let names: Vec<&str> = w.items.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["axes", "keepdims"]);
        assert_eq!(
            Reduce::new(ReduceKind::Max, vec![], true).fusion_kind(),
            FusionKind::Reduction
        );
    }
}
