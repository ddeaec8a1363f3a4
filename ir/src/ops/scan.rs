//! Scans and index-pattern ops: cumulative sum/product along an axis, top-k,
//! triangular masks (`tril`/`triu`), `one_hot`, `tile` and
//! `reverse_sequence`.
//!
//! Cumulative ops compute in the wide type and round once; the others move
//! elements in their own type through the flat-index helpers of
//! [`crate::ops::index`].

use std::cmp::Ordering;

use ndarray::{ArrayD, Axis, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::dtype::DType;
use crate::op::{attr_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::index::{
    for_each_index, join_flat, require_index_dtype, strides, take_flat, zero_of,
};
use crate::ops::reduce::read_flag;
use crate::ops::shape::out_dims;
use crate::ops::{axis_or_err, require_numeric};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

// ---------------------------------------------------------------------------
// cumsum / cumprod.

/// ONNX CumSum / CumProd along `axis`. `exclusive` leaves each element out of
/// its own result; `reverse` scans from the end.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cumulative {
    pub product: bool,
    pub axis: i64,
    pub exclusive: bool,
    pub reverse: bool,
}

/// Scan every lane of `a` along `ax` with `op`, starting from `id`.
fn scan_lanes<T: Copy>(
    a: &mut ArrayD<T>,
    ax: usize,
    exclusive: bool,
    reverse: bool,
    id: T,
    op: impl Fn(T, T) -> T,
) {
    for mut lane in a.lanes_mut(Axis(ax)) {
        let n = lane.len();
        let mut acc = id;
        for k in 0..n {
            let i = if reverse { n - 1 - k } else { k };
            let x = lane[i];
            let next = op(acc, x);
            lane[i] = if exclusive { acc } else { next };
            acc = next;
        }
    }
}

impl OpDef for Cumulative {
    const SPELLINGS: &'static [&'static str] = &["cumsum", "cumprod"];

    fn parse(spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Cumulative {
            product: spelling == "cumprod",
            axis: attrs.req_int("axis")?,
            exclusive: read_flag(attrs, "exclusive", false)?,
            reverse: read_flag(attrs, "reverse", false)?,
        })
    }
    fn spelling(&self) -> &'static str {
        if self.product {
            "cumprod"
        } else {
            "cumsum"
        }
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
        w.int("exclusive", i64::from(self.exclusive));
        w.int("reverse", i64::from(self.reverse));
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        require_numeric(inputs[0], self.spelling())?;
        axis_or_err("axis", self.axis, inputs[0].rank())?;
        Ok(vec![inputs[0].clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        out_dims(self, inputs)?;
        let x = inputs[0];
        let ax = axis_or_err("axis", self.axis, x.shape().len())?;
        let (ex, rev) = (self.exclusive, self.reverse);
        Ok(vec![if x.dtype().is_float() {
            let mut a = x.to_f64();
            if self.product {
                scan_lanes(&mut a, ax, ex, rev, 1.0, |p, v| p * v);
            } else {
                scan_lanes(&mut a, ax, ex, rev, 0.0, |p, v| p + v);
            }
            Tensor::from_f64(x.dtype(), a)
        } else {
            let mut a = x.to_i64();
            if self.product {
                scan_lanes(&mut a, ax, ex, rev, 1, i64::wrapping_mul);
            } else {
                scan_lanes(&mut a, ax, ex, rev, 0, i64::wrapping_add);
            }
            Tensor::from_i64(x.dtype(), a)
        }])
    }
}

// ---------------------------------------------------------------------------
// top_k.

/// ONNX TopK: the `k` largest (or smallest) elements along `axis`, sorted,
/// and their indices (i64). Ties go to the lower index; NaN counts as larger
/// than every number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopK {
    pub axis: i64,
    pub k: i64,
    pub largest: bool,
}

/// Compare two keys, NaN above everything.
fn cmp_nan_last(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b)
        .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
}

impl OpDef for TopK {
    const SPELLINGS: &'static [&'static str] = &["top_k"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(TopK {
            axis: attrs.int("axis", -1)?,
            k: attrs.req_int("k")?,
            largest: read_flag(attrs, "largest", true)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "top_k"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
        w.int("k", self.k);
        w.int("largest", i64::from(self.largest));
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        require_numeric(x, "top_k input")?;
        let ax = axis_or_err("axis", self.axis, x.rank())?;
        let n = match &x.shape.dims()[ax] {
            Dim::Known(n) => *n as i64,
            Dim::Sym(s) => {
                return shape_err(format!(
                    "top_k along axis {ax} of {} needs its size; bind {s} with --dim",
                    x.shape
                ))
            }
        };
        if !(0..=n).contains(&self.k) {
            return attr_err(
                "k",
                format!("{} is out of range for axis {ax} of size {n}", self.k),
            );
        }
        let mut dims = x.shape.0.clone();
        dims[ax] = Dim::Known(self.k as usize);
        let shape = Shape(dims);
        Ok(vec![
            x.with_shape(shape.clone()),
            TensorType::new(DType::I64, shape),
        ])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        let x = inputs[0];
        let xd = x.shape();
        let ax = axis_or_err("axis", self.axis, xd.len())?;
        let (n, k) = (xd[ax], self.k as usize);
        let st = strides(xd);
        // Integers compare exactly in i64; floats in f64.
        let ints: Vec<i64> = x.to_i64().iter().copied().collect();
        let floats: Vec<f64> = x.to_f64().iter().copied().collect();
        let is_float = x.dtype().is_float();
        let cmp = |a: usize, b: usize| {
            let o = if is_float {
                cmp_nan_last(floats[a], floats[b])
            } else {
                ints[a].cmp(&ints[b])
            };
            if self.largest {
                o.reverse()
            } else {
                o
            }
        };
        let mut lanes_dims = xd.to_vec();
        lanes_dims[ax] = 1;
        let mut picked = vec![0usize; dims.iter().product()];
        let mut idx = vec![0i64; picked.len()];
        let ost = strides(&dims);
        for_each_index(&lanes_dims, |m| {
            let base: usize = m.iter().zip(&st).map(|(a, b)| a * b).sum();
            let obase: usize = m.iter().zip(&ost).map(|(a, b)| a * b).sum();
            let mut order: Vec<usize> = (0..n).collect();
            // A stable sort keeps equal keys in index order.
            order.sort_by(|&i, &j| cmp(base + i * st[ax], base + j * st[ax]));
            for (r, &i) in order.iter().take(k).enumerate() {
                picked[obase + r * ost[ax]] = base + i * st[ax];
                idx[obase + r * ost[ax]] = i as i64;
            }
            Ok(())
        })?;
        let values = take_flat(x, &picked, &dims)?;
        let indices = ArrayD::from_shape_vec(IxDyn(&dims), idx)
            .map_err(|e| OpError::Eval(format!("top_k: {e}")))?;
        Ok(vec![values, Tensor::I64(indices)])
    }
}

// ---------------------------------------------------------------------------
// tril / triu.

/// ONNX Trilu: keep the lower (`tril`) or upper (`triu`) triangle of the last
/// two dims, counted from diagonal `k` (positive is above the main one);
/// zero the rest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Trilu {
    pub upper: bool,
    pub k: i64,
}

impl OpDef for Trilu {
    const SPELLINGS: &'static [&'static str] = &["tril", "triu"];

    fn parse(spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Trilu {
            upper: spelling == "triu",
            k: attrs.int("k", 0)?,
        })
    }
    fn spelling(&self) -> &'static str {
        if self.upper {
            "triu"
        } else {
            "tril"
        }
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("k", self.k);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        if inputs[0].rank() < 2 {
            return shape_err(format!(
                "{} needs rank >= 2, found {}",
                self.spelling(),
                inputs[0].shape
            ));
        }
        Ok(vec![inputs[0].clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Elementwise
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        let x = inputs[0];
        let r = dims.len();
        let (rows, cols) = (dims[r - 2], dims[r - 1]);
        let n = x.len();
        let src: Vec<usize> = (0..n)
            .map(|p| {
                let (i, j) = ((p / cols.max(1)) % rows.max(1), p % cols.max(1));
                let d = j as i64 - i as i64;
                let keep = if self.upper { d >= self.k } else { d <= self.k };
                if keep {
                    p
                } else {
                    n
                }
            })
            .collect();
        Ok(vec![take_flat(
            &join_flat(x, &zero_of(x.dtype()))?,
            &src,
            &dims,
        )?])
    }
}

// ---------------------------------------------------------------------------
// one_hot.

/// ONNX OneHot: a new axis of length `depth` at `axis`, holding `values[1]`
/// where it equals the index and `values[0]` elsewhere. Negative indices
/// count from `depth`; indices out of range give a row of `values[0]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OneHot {
    pub axis: i64,
    pub depth: i64,
}

impl OpDef for OneHot {
    const SPELLINGS: &'static [&'static str] = &["one_hot"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(OneHot {
            axis: attrs.int("axis", -1)?,
            depth: attrs.req_int("depth")?,
        })
    }
    fn spelling(&self) -> &'static str {
        "one_hot"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
        w.int("depth", self.depth);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        let (idx, vals) = (inputs[0], inputs[1]);
        require_numeric(idx, "one_hot indices")?;
        if vals.shape.dims() != [Dim::Known(2)] {
            return shape_err(format!(
                "one_hot values must have shape [2] (off, on), found {}",
                vals.shape
            ));
        }
        if self.depth < 1 {
            return attr_err("depth", format!("must be >= 1, found {}", self.depth));
        }
        let ax = axis_or_err("axis", self.axis, idx.rank() + 1)?;
        let mut dims = idx.shape.0.clone();
        dims.insert(ax, Dim::Known(self.depth as usize));
        Ok(vec![vals.with_shape(Shape(dims))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        let idx: Vec<f64> = inputs[0].to_f64().iter().copied().collect();
        let ax = axis_or_err("axis", self.axis, dims.len())?;
        let depth = self.depth as f64;
        let inner: usize = dims[ax + 1..].iter().product();
        let d = dims[ax];
        let n: usize = dims.iter().product();
        let src: Vec<usize> = (0..n)
            .map(|p| {
                let (outer, j, i) = (
                    p / (d * inner).max(1),
                    (p / inner.max(1)) % d,
                    p % inner.max(1),
                );
                let v = idx[outer * inner + i];
                let v = if v < 0.0 { v + depth } else { v };
                usize::from(v == j as f64)
            })
            .collect();
        Ok(vec![take_flat(inputs[1], &src, &dims)?])
    }
}

// ---------------------------------------------------------------------------
// tile.

/// ONNX Tile: repeat the input `repeats[i]` times along each axis `i`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    pub repeats: Vec<i64>,
}

impl OpDef for Tile {
    const SPELLINGS: &'static [&'static str] = &["tile"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Tile {
            repeats: attrs.req_ints("repeats")?,
        })
    }
    fn spelling(&self) -> &'static str {
        "tile"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("repeats", &self.repeats);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        if self.repeats.len() != x.rank() {
            return attr_err(
                "repeats",
                format!(
                    "needs one entry per axis ({}), found {}",
                    x.rank(),
                    self.repeats.len()
                ),
            );
        }
        let mut dims = x.shape.0.clone();
        for (i, (d, &r)) in dims.iter_mut().zip(&self.repeats).enumerate() {
            if r < 0 {
                return attr_err("repeats", format!("must be >= 0, found {r}"));
            }
            *d = match (&*d, r) {
                (_, 1) => d.clone(),
                (_, 0) => Dim::Known(0),
                (Dim::Known(n), r) => Dim::Known(
                    n.checked_mul(r as usize)
                        .ok_or_else(|| OpError::Shape("tile size overflows".into()))?,
                ),
                (Dim::Sym(s), _) => {
                    return shape_err(format!(
                        "tiling axis {i} of {} needs its size; bind {s} with --dim",
                        x.shape
                    ))
                }
            };
        }
        Ok(vec![x.with_shape(Shape(dims))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        let x = inputs[0];
        let xd = x.shape();
        let st = strides(xd);
        let mut src = Vec::with_capacity(dims.iter().product());
        for_each_index(&dims, |m| {
            src.push(
                m.iter()
                    .zip(xd)
                    .zip(&st)
                    .map(|((&o, &n), &s)| (o % n) * s)
                    .sum(),
            );
            Ok(())
        })?;
        Ok(vec![take_flat(x, &src, &dims)?])
    }
}

// ---------------------------------------------------------------------------
// reverse_sequence.

/// ONNX ReverseSequence: for each batch entry `b`, reverse the first
/// `lens[b]` steps along `time_axis`; later steps stay in place.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReverseSequence {
    pub batch_axis: i64,
    pub time_axis: i64,
}

impl OpDef for ReverseSequence {
    const SPELLINGS: &'static [&'static str] = &["reverse_sequence"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(ReverseSequence {
            batch_axis: attrs.int("batch_axis", 1)?,
            time_axis: attrs.int("time_axis", 0)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "reverse_sequence"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("batch_axis", self.batch_axis);
        w.int("time_axis", self.time_axis);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        let (x, lens) = (inputs[0], inputs[1]);
        require_index_dtype(lens, "sequence_lens")?;
        if x.rank() < 2 {
            return shape_err(format!(
                "reverse_sequence needs rank >= 2, found {}",
                x.shape
            ));
        }
        let b = axis_or_err("batch_axis", self.batch_axis, x.rank())?;
        let t = axis_or_err("time_axis", self.time_axis, x.rank())?;
        if b == t {
            return attr_err("time_axis", "must differ from batch_axis");
        }
        if lens.shape.dims() != [x.shape.dims()[b].clone()] {
            return shape_err(format!(
                "sequence_lens must have shape [{}], found {}",
                x.shape.dims()[b],
                lens.shape
            ));
        }
        Ok(vec![x.clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        let x = inputs[0];
        let b = axis_or_err("batch_axis", self.batch_axis, dims.len())?;
        let t = axis_or_err("time_axis", self.time_axis, dims.len())?;
        let lens: Vec<i64> = inputs[1].to_i64().iter().copied().collect();
        let steps = dims[t];
        if let Some(&bad) = lens.iter().find(|&&l| !(0..=steps as i64).contains(&l)) {
            return Err(OpError::Eval(format!(
                "sequence length {bad} is outside 0..={steps}"
            )));
        }
        let st = strides(&dims);
        let mut src = Vec::with_capacity(x.len());
        for_each_index(&dims, |m| {
            let len = lens[m[b]] as usize;
            let mut p: usize = m.iter().zip(&st).map(|(a, s)| a * s).sum();
            if m[t] < len {
                p = p - m[t] * st[t] + (len - 1 - m[t]) * st[t];
            }
            src.push(p);
            Ok(())
        })?;
        Ok(vec![take_flat(x, &src, &dims)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::roundtrip;

    fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }
    fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }
    fn run<T: OpDef>(op: &T, inputs: &[&Tensor]) -> Vec<Tensor> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let want = op.infer(&refs).unwrap();
        let out = op.eval(inputs).unwrap();
        let got: Vec<TensorType> = out.iter().map(Tensor::ty).collect();
        assert_eq!(got, want, "eval agrees with infer");
        out
    }
    fn run1<T: OpDef>(op: &T, inputs: &[&Tensor]) -> Tensor {
        run(op, inputs).remove(0)
    }
    fn cum(product: bool, axis: i64, exclusive: bool, reverse: bool) -> Cumulative {
        Cumulative {
            product,
            axis,
            exclusive,
            reverse,
        }
    }

    #[test]
    fn cumsum_and_cumprod_by_hand() {
        let x = f64t(&[5], &[1., 2., 3., 4., 5.]);
        let s = |ex, rev| run1(&cum(false, 0, ex, rev), &[&x]).values_f64();
        assert_eq!(s(false, false), [1., 3., 6., 10., 15.]);
        assert_eq!(s(true, false), [0., 1., 3., 6., 10.]);
        assert_eq!(s(false, true), [15., 14., 12., 9., 5.]);
        assert_eq!(s(true, true), [14., 12., 9., 5., 0.]);
        let p = |ex, rev| run1(&cum(true, 0, ex, rev), &[&x]).values_f64();
        assert_eq!(p(false, false), [1., 2., 6., 24., 120.]);
        assert_eq!(p(true, false), [1., 1., 2., 6., 24.]);
        assert_eq!(p(true, true), [120., 60., 20., 5., 1.]);
        let m = i64t(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(
            run1(&cum(false, 0, false, false), &[&m]),
            i64t(&[2, 3], &[1, 2, 3, 5, 7, 9])
        );
        assert_eq!(
            run1(&cum(false, -1, false, false), &[&m]),
            i64t(&[2, 3], &[1, 3, 6, 4, 9, 15])
        );
        let i32x = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[2]), vec![i32::MAX, 1]).unwrap());
        let wrapped = run1(&cum(false, 0, false, false), &[&i32x]);
        assert_eq!(
            wrapped.values_f64(),
            [f64::from(i32::MAX), f64::from(i32::MIN)]
        );
        let t = x.ty();
        assert!(matches!(
            cum(false, 1, false, false).infer(&[&t]),
            Err(OpError::Attr(_))
        ));
        let b = TensorType::concrete(DType::Bool, &[2]);
        assert!(matches!(
            cum(false, 0, false, false).infer(&[&b]),
            Err(OpError::DType(_))
        ));
    }

    #[test]
    fn top_k_order_ties_and_nan() {
        let x = f64t(&[3, 4], &[0., 1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11.]);
        let op = TopK {
            axis: 1,
            k: 3,
            largest: true,
        };
        let out = run(&op, &[&x]);
        assert_eq!(
            out[0],
            f64t(&[3, 3], &[3., 2., 1., 7., 6., 5., 11., 10., 9.])
        );
        assert_eq!(out[1], i64t(&[3, 3], &[3, 2, 1, 3, 2, 1, 3, 2, 1]));
        let ties = i64t(&[4], &[1, 3, 3, 2]);
        let out = run(
            &TopK {
                axis: 0,
                k: 2,
                largest: true,
            },
            &[&ties],
        );
        assert_eq!(out, vec![i64t(&[2], &[3, 3]), i64t(&[2], &[1, 2])]);
        let low = i64t(&[4], &[3, 1, 1, 2]);
        let out = run(
            &TopK {
                axis: -1,
                k: 3,
                largest: false,
            },
            &[&low],
        );
        assert_eq!(out, vec![i64t(&[3], &[1, 1, 2]), i64t(&[3], &[1, 2, 3])]);
        let nan = f64t(&[3], &[1., f64::NAN, 3.]);
        let top = TopK {
            axis: 0,
            k: 1,
            largest: true,
        };
        let out = run(&top, &[&nan]);
        assert!(out[0].values_f64()[0].is_nan());
        assert_eq!(out[1], i64t(&[1], &[1]));
        // Column-wise on axis 0.
        let col = run(
            &TopK {
                axis: 0,
                k: 1,
                largest: false,
            },
            &[&x],
        );
        assert_eq!(col[0], f64t(&[1, 4], &[0., 1., 2., 3.]));
        let t = x.ty();
        let k5 = TopK {
            axis: 1,
            k: 5,
            largest: true,
        };
        assert!(matches!(k5.infer(&[&t]), Err(OpError::Attr(_))));
    }

    #[test]
    fn trilu_by_hand() {
        let x = f64t(&[3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let t = |upper, k| run1(&Trilu { upper, k }, &[&x]).values_f64();
        assert_eq!(t(false, 0), [1., 0., 0., 4., 5., 0., 7., 8., 9.]);
        assert_eq!(t(true, 1), [0., 2., 3., 0., 0., 6., 0., 0., 0.]);
        assert_eq!(t(false, -1), [0., 0., 0., 4., 0., 0., 7., 8., 0.]);
        assert_eq!(t(true, -5), x.values_f64());
        // Batched and non-square: the mask uses the last two dims.
        let b = i64t(&[2, 1, 2], &[1, 2, 3, 4]);
        assert_eq!(
            run1(&Trilu { upper: false, k: 0 }, &[&b]),
            i64t(&[2, 1, 2], &[1, 0, 3, 0])
        );
        let v = TensorType::concrete(DType::F32, &[3]);
        assert!(matches!(
            Trilu { upper: true, k: 0 }.infer(&[&v]),
            Err(OpError::Shape(_))
        ));
    }

    #[test]
    fn one_hot_by_hand() {
        let idx = i64t(&[3], &[0, -1, 5]);
        let vals = f64t(&[2], &[0., 1.]);
        let y = run1(&OneHot { axis: -1, depth: 3 }, &[&idx, &vals]);
        assert_eq!(y, f64t(&[3, 3], &[1., 0., 0., 0., 0., 1., 0., 0., 0.]));
        let y = run1(&OneHot { axis: 0, depth: 3 }, &[&idx, &vals]);
        assert_eq!(y, f64t(&[3, 3], &[1., 0., 0., 0., 0., 0., 0., 1., 0.]));
        let onoff = i64t(&[2], &[-2, 7]);
        let y = run1(&OneHot { axis: 1, depth: 2 }, &[&f64t(&[1], &[1.]), &onoff]);
        assert_eq!(y, i64t(&[1, 2], &[-2, 7]));
        let t = idx.ty();
        let bad_vals = TensorType::concrete(DType::F32, &[3]);
        assert!(matches!(
            OneHot { axis: 0, depth: 3 }.infer(&[&t, &bad_vals]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            OneHot { axis: 0, depth: 0 }.infer(&[&t, &vals.ty()]),
            Err(OpError::Attr(_))
        ));
        assert!(matches!(
            OneHot { axis: 2, depth: 3 }.infer(&[&t, &vals.ty()]),
            Err(OpError::Attr(_))
        ));
    }

    #[test]
    fn tile_by_hand() {
        let x = i64t(&[2, 2], &[1, 2, 3, 4]);
        let y = run1(
            &Tile {
                repeats: vec![1, 2],
            },
            &[&x],
        );
        assert_eq!(y, i64t(&[2, 4], &[1, 2, 1, 2, 3, 4, 3, 4]));
        let y = run1(
            &Tile {
                repeats: vec![2, 1],
            },
            &[&x],
        );
        assert_eq!(y, i64t(&[4, 2], &[1, 2, 3, 4, 1, 2, 3, 4]));
        assert_eq!(
            run1(
                &Tile {
                    repeats: vec![0, 3]
                },
                &[&x]
            )
            .shape(),
            [0, 6]
        );
        let t = x.ty();
        assert!(matches!(
            Tile { repeats: vec![2] }.infer(&[&t]),
            Err(OpError::Attr(_))
        ));
        assert!(matches!(
            Tile {
                repeats: vec![1, -1]
            }
            .infer(&[&t]),
            Err(OpError::Attr(_))
        ));
    }

    #[test]
    fn reverse_sequence_spec_example() {
        let x = f64t(&[4, 4], &(0..16).map(f64::from).collect::<Vec<_>>());
        let op = ReverseSequence {
            batch_axis: 1,
            time_axis: 0,
        };
        let y = run1(&op, &[&x, &i64t(&[4], &[4, 3, 2, 1])]);
        #[rustfmt::skip]
        let want = [12., 9., 6., 3.,
                    8., 5., 2., 7.,
                    4., 1., 10., 11.,
                    0., 13., 14., 15.];
        assert_eq!(y, f64t(&[4, 4], &want));
        let op = ReverseSequence {
            batch_axis: 0,
            time_axis: 1,
        };
        let y = run1(&op, &[&x, &i64t(&[4], &[1, 2, 3, 4])]);
        #[rustfmt::skip]
        let want = [0., 1., 2., 3.,
                    5., 4., 6., 7.,
                    10., 9., 8., 11.,
                    15., 14., 13., 12.];
        assert_eq!(y, f64t(&[4, 4], &want));
        assert!(matches!(
            op.eval(&[&x, &i64t(&[4], &[1, 2, 3, 5])]),
            Err(OpError::Eval(_))
        ));
        let t = x.ty();
        let same = ReverseSequence {
            batch_axis: 0,
            time_axis: 0,
        };
        assert!(matches!(
            same.infer(&[&t, &TensorType::concrete(DType::I64, &[4])]),
            Err(OpError::Attr(_))
        ));
        assert!(matches!(
            op.infer(&[&t, &TensorType::concrete(DType::I64, &[3])]),
            Err(OpError::Shape(_))
        ));
    }

    #[test]
    fn attrs_roundtrip() {
        roundtrip(&cum(true, -1, true, false));
        roundtrip(&cum(false, 0, false, true));
        roundtrip(&TopK {
            axis: 0,
            k: 2,
            largest: false,
        });
        roundtrip(&Trilu { upper: true, k: -2 });
        roundtrip(&Trilu { upper: false, k: 1 });
        roundtrip(&OneHot { axis: -1, depth: 4 });
        roundtrip(&Tile {
            repeats: vec![1, 3],
        });
        roundtrip(&ReverseSequence {
            batch_axis: 0,
            time_axis: 1,
        });
        let mut r = AttrReader::default();
        assert!(Cumulative::parse("cumsum", &mut r).is_err());
        assert!(TopK::parse("top_k", &mut r).is_err());
    }
}
