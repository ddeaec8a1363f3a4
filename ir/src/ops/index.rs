//! Indexed data movement: gather and scatter by element (`gather_elements`,
//! `scatter_elements`), by index tuple (`gather_nd`, `scatter_nd`), and the
//! KV-cache write `tensor_scatter`. Also the flat-index helpers that the
//! `scan` family shares.
//!
//! Each op computes, for every output element, the row-major position it is
//! read from; the elements then move in their own type (`take_flat`), so no
//! dtype needs its own code. Scatters with a reduction combine in the wide
//! type (f64 or i64) and round once.

use ndarray::{ArrayD, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::dtype::DType;
use crate::map_array;
use crate::op::{
    attr_err, dtype_err, expect_arity, expect_arity_range, shape_err, FusionKind, OpDef, OpError,
    OpResult,
};
use crate::ops::shape::{out_dims, Concat, Reshape};
use crate::ops::{axis_or_err, concrete};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

// ---------------------------------------------------------------------------
// Flat-index helpers.

/// Row-major strides of `dims`.
pub(crate) fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Call `f` with every multi-index of `dims`, in row-major order.
pub(crate) fn for_each_index(
    dims: &[usize],
    mut f: impl FnMut(&[usize]) -> OpResult<()>,
) -> OpResult<()> {
    if dims.contains(&0) {
        return Ok(());
    }
    let mut idx = vec![0usize; dims.len()];
    loop {
        f(&idx)?;
        let mut k = dims.len();
        loop {
            if k == 0 {
                return Ok(());
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// An index into an axis of length `n`; negative values count from the end.
pub(crate) fn resolve_index(i: i64, n: usize, what: &str) -> OpResult<usize> {
    let j = if i < 0 { i.saturating_add(n as i64) } else { i };
    if (0..n as i64).contains(&j) {
        Ok(j as usize)
    } else {
        Err(OpError::Eval(format!(
            "{what} index {i} is out of range for a size of {n}"
        )))
    }
}

/// The elements of `t` at row-major positions `idx`, as a tensor of `dims`,
/// in `t`'s own type.
pub(crate) fn take_flat(t: &Tensor, idx: &[usize], dims: &[usize]) -> OpResult<Tensor> {
    let n = t.len();
    if let Some(&bad) = idx.iter().find(|&&i| i >= n) {
        return Err(OpError::Eval(format!(
            "flat index {bad} is out of range for {n} elements"
        )));
    }
    let shape_err = |e: ndarray::ShapeError| OpError::Eval(format!("take: {e}"));
    Ok(map_array!(t, a => {
        let v: Vec<_> = a.iter().collect();
        ArrayD::from_shape_vec(IxDyn(dims), idx.iter().map(|&i| *v[i]).collect())
            .map_err(shape_err)?
    }))
}

/// The elements of `a` followed by those of `b`, as one flat tensor (same dtype).
pub(crate) fn join_flat(a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    let flat = Reshape::new(vec![-1]);
    let fa = flat.eval(&[a])?.remove(0);
    let fb = flat.eval(&[b])?.remove(0);
    Ok(Concat { axis: 0 }.eval(&[&fa, &fb])?.remove(0))
}

/// A zero of `dtype` (false for bool), as a scalar tensor.
pub(crate) fn zero_of(dtype: DType) -> Tensor {
    Tensor::from_f64(dtype, ArrayD::from_elem(IxDyn(&[]), 0.0))
}

pub(crate) fn require_index_dtype(t: &TensorType, what: &str) -> OpResult<()> {
    if matches!(t.dtype, DType::I32 | DType::I64) {
        Ok(())
    } else {
        dtype_err(format!("{what} must be i32 or i64, found {}", t.dtype))
    }
}

/// The flat values of an index tensor.
fn index_values(t: &Tensor) -> Vec<i64> {
    t.to_i64().iter().copied().collect()
}

// ---------------------------------------------------------------------------
// Scatter reductions.

/// How a scatter combines an update with the value already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScatterReduction {
    /// Overwrite; with duplicate indices the last update wins.
    None,
    Add,
    Mul,
    Max,
    Min,
}

const REDUCTIONS: &[(ScatterReduction, &str)] = &[
    (ScatterReduction::None, "none"),
    (ScatterReduction::Add, "add"),
    (ScatterReduction::Mul, "mul"),
    (ScatterReduction::Max, "max"),
    (ScatterReduction::Min, "min"),
];

impl ScatterReduction {
    pub fn as_str(self) -> &'static str {
        REDUCTIONS
            .iter()
            .find(|(r, _)| *r == self)
            .map(|(_, s)| *s)
            .expect("every reduction has a name")
    }
    pub fn from_name(s: &str) -> Option<ScatterReduction> {
        REDUCTIONS.iter().find(|(_, n)| *n == s).map(|(r, _)| *r)
    }
    fn read(attrs: &mut AttrReader) -> Result<ScatterReduction, AttrError> {
        let name = attrs.str("reduction", "none")?;
        ScatterReduction::from_name(&name).ok_or_else(|| AttrError {
            attr: "reduction".into(),
            msg: format!("expected none, add, mul, max or min, found {name:?}"),
        })
    }
    fn check(self, dtype: DType) -> OpResult<()> {
        if self != ScatterReduction::None && !dtype.is_numeric() {
            return dtype_err(format!(
                "scatter reduction {} needs a numeric dtype, found {dtype}",
                self.as_str()
            ));
        }
        Ok(())
    }
}

fn shaped<T>(dims: &[usize], v: Vec<T>) -> OpResult<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(dims), v).map_err(|e| OpError::Eval(format!("scatter: {e}")))
}

/// Write `updates` into a copy of `data`: each pair is (position in data,
/// position in updates), applied in order.
fn scatter(
    data: &Tensor,
    updates: &Tensor,
    pairs: &[(usize, usize)],
    red: ScatterReduction,
) -> OpResult<Tensor> {
    let (n, m) = (data.len(), updates.len());
    if pairs.iter().any(|&(o, s)| o >= n || s >= m) {
        return Err(OpError::Eval("scatter: position out of range".into()));
    }
    let dims = data.shape().to_vec();
    let dtype = data.dtype();
    if red == ScatterReduction::None {
        let mut map: Vec<usize> = (0..n).collect();
        for &(o, s) in pairs {
            map[o] = n + s;
        }
        return take_flat(&join_flat(data, updates)?, &map, &dims);
    }
    if dtype.is_float() {
        let mut d: Vec<f64> = data.to_f64().iter().copied().collect();
        let u: Vec<f64> = updates.to_f64().iter().copied().collect();
        for &(o, s) in pairs {
            d[o] = match red {
                ScatterReduction::Add => d[o] + u[s],
                ScatterReduction::Mul => d[o] * u[s],
                ScatterReduction::Max => d[o].max(u[s]),
                ScatterReduction::Min => d[o].min(u[s]),
                ScatterReduction::None => u[s],
            };
        }
        Ok(Tensor::from_f64(dtype, shaped(&dims, d)?))
    } else {
        let mut d: Vec<i64> = data.to_i64().iter().copied().collect();
        let u: Vec<i64> = updates.to_i64().iter().copied().collect();
        for &(o, s) in pairs {
            d[o] = match red {
                ScatterReduction::Add => d[o].wrapping_add(u[s]),
                ScatterReduction::Mul => d[o].wrapping_mul(u[s]),
                ScatterReduction::Max => d[o].max(u[s]),
                ScatterReduction::Min => d[o].min(u[s]),
                ScatterReduction::None => u[s],
            };
        }
        Ok(Tensor::from_i64(dtype, shaped(&dims, d)?))
    }
}

// ---------------------------------------------------------------------------
// gather_elements / scatter_elements.

/// Check that `idx` has the rank of `data` and fits it on every axis but `ax`.
fn check_elementwise_index(data: &TensorType, idx: &TensorType, ax: usize) -> OpResult<()> {
    if idx.rank() != data.rank() {
        return shape_err(format!(
            "indices {} must have the rank of data {}",
            idx.shape, data.shape
        ));
    }
    for (i, (a, b)) in idx.shape.dims().iter().zip(data.shape.dims()).enumerate() {
        if let (Dim::Known(a), Dim::Known(b)) = (a, b) {
            if i != ax && a > b {
                return shape_err(format!(
                    "indices {} exceed data {} on axis {i}",
                    idx.shape, data.shape
                ));
            }
        }
    }
    Ok(())
}

/// For each element of `idx` (row-major), its position in `data` with the
/// coordinate on `ax` replaced by the index value.
fn elementwise_targets(data_dims: &[usize], idx: &Tensor, ax: usize) -> OpResult<Vec<usize>> {
    let st = strides(data_dims);
    let vals = index_values(idx);
    let mut out = Vec::with_capacity(vals.len());
    let mut k = 0;
    for_each_index(idx.shape(), |m| {
        let mut flat = 0;
        for (i, &c) in m.iter().enumerate() {
            let c = if i == ax {
                resolve_index(vals[k], data_dims[i], "element")?
            } else if c < data_dims[i] {
                c
            } else {
                return Err(OpError::Eval(format!(
                    "indices position {c} exceeds data axis {i} of size {}",
                    data_dims[i]
                )));
            };
            flat += c * st[i];
        }
        out.push(flat);
        k += 1;
        Ok(())
    })?;
    Ok(out)
}

/// ONNX GatherElements: `out[m] = data[m with m[axis] = indices[m]]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GatherElements {
    pub axis: i64,
}

impl OpDef for GatherElements {
    const SPELLINGS: &'static [&'static str] = &["gather_elements"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(GatherElements {
            axis: attrs.int("axis", 0)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "gather_elements"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        let (data, idx) = (inputs[0], inputs[1]);
        require_index_dtype(idx, "gather_elements indices")?;
        let ax = axis_or_err("axis", self.axis, data.rank())?;
        check_elementwise_index(data, idx, ax)?;
        Ok(vec![data.with_shape(idx.shape.clone())])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        let data = inputs[0];
        let ax = axis_or_err("axis", self.axis, data.shape().len())?;
        let src = elementwise_targets(data.shape(), inputs[1], ax)?;
        Ok(vec![take_flat(data, &src, &dims)?])
    }
}

/// ONNX ScatterElements (and the older Scatter): a copy of `data` with
/// `out[m with m[axis] = indices[m]] (reduction)= updates[m]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScatterElements {
    pub axis: i64,
    pub reduction: ScatterReduction,
}

impl OpDef for ScatterElements {
    const SPELLINGS: &'static [&'static str] = &["scatter_elements"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(ScatterElements {
            axis: attrs.int("axis", 0)?,
            reduction: ScatterReduction::read(attrs)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "scatter_elements"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
        w.str("reduction", self.reduction.as_str());
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 3)?;
        let (data, idx, upd) = (inputs[0], inputs[1], inputs[2]);
        require_index_dtype(idx, "scatter_elements indices")?;
        if upd.dtype != data.dtype {
            return dtype_err(format!(
                "updates must have the dtype of data {}, found {}",
                data.dtype, upd.dtype
            ));
        }
        self.reduction.check(data.dtype)?;
        if upd.shape != idx.shape {
            return shape_err(format!(
                "updates {} must have the shape of indices {}",
                upd.shape, idx.shape
            ));
        }
        let ax = axis_or_err("axis", self.axis, data.rank())?;
        check_elementwise_index(data, idx, ax)?;
        Ok(vec![data.clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        out_dims(self, inputs)?;
        let data = inputs[0];
        let ax = axis_or_err("axis", self.axis, data.shape().len())?;
        let dst = elementwise_targets(data.shape(), inputs[1], ax)?;
        let pairs: Vec<(usize, usize)> = dst.into_iter().enumerate().map(|(s, o)| (o, s)).collect();
        Ok(vec![scatter(data, inputs[2], &pairs, self.reduction)?])
    }
}

// ---------------------------------------------------------------------------
// gather_nd / scatter_nd.

/// The length of the index tuples (the last dim of `indices`), which must be known.
fn tuple_len(idx: &TensorType) -> OpResult<usize> {
    match idx.shape.dims().last() {
        Some(Dim::Known(m)) => Ok(*m),
        Some(Dim::Sym(s)) => shape_err(format!(
            "the last dim of indices {} needs its size; bind {s} with --dim",
            idx.shape
        )),
        None => shape_err("indices must have rank >= 1"),
    }
}

/// The flat position in `dims` (from axis `from` on) of an index tuple.
fn tuple_offset(tuple: &[i64], dims: &[usize], st: &[usize]) -> OpResult<usize> {
    let mut off = 0;
    for (i, &v) in tuple.iter().enumerate() {
        off += resolve_index(v, dims[i], "tuple")? * st[i];
    }
    Ok(off)
}

/// ONNX GatherND: slices of `data` addressed by the index tuples in the last
/// dim of `indices`, after `batch_dims` leading dims they share.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GatherNd {
    pub batch_dims: i64,
}

impl OpDef for GatherNd {
    const SPELLINGS: &'static [&'static str] = &["gather_nd"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(GatherNd {
            batch_dims: attrs.int("batch_dims", 0)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "gather_nd"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("batch_dims", self.batch_dims);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        let (data, idx) = (inputs[0], inputs[1]);
        require_index_dtype(idx, "gather_nd indices")?;
        let m = tuple_len(idx)?;
        let (r, q) = (data.rank(), idx.rank());
        let b = self.batch_dims;
        if b < 0 || b as usize >= q || b as usize >= r {
            return attr_err(
                "batch_dims",
                format!("{b} must be in 0..min(rank data {r}, rank indices {q})"),
            );
        }
        let b = b as usize;
        if b + m > r {
            return shape_err(format!(
                "index tuples of length {m} after {b} batch dims exceed data rank {r}"
            ));
        }
        if idx.shape.dims()[..b] != data.shape.dims()[..b] {
            return shape_err(format!(
                "the first {b} dims of indices {} and data {} must agree",
                idx.shape, data.shape
            ));
        }
        let dims: Vec<Dim> = idx.shape.dims()[..q - 1]
            .iter()
            .chain(&data.shape.dims()[b + m..])
            .cloned()
            .collect();
        Ok(vec![data.with_shape(Shape::from(dims))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let out = out_dims(self, inputs)?;
        let (data, idx) = (inputs[0], inputs[1]);
        let b = self.batch_dims as usize;
        let dd = data.shape();
        let m = idx.shape().last().copied().unwrap_or(0);
        let inner = &dd[b..];
        let st = strides(inner);
        let batch_size: usize = inner.iter().product();
        let slice: usize = dd[b + m..].iter().product();
        let n_batch: usize = dd[..b].iter().product();
        let vals = index_values(idx);
        let tuples: usize = idx.shape()[..idx.shape().len() - 1].iter().product();
        let per_batch = tuples / n_batch.max(1);
        let mut src = Vec::with_capacity(tuples * slice);
        for t in 0..tuples {
            let batch = t / per_batch.max(1);
            let off = batch * batch_size + tuple_offset(&vals[t * m..(t + 1) * m], inner, &st)?;
            src.extend(off..off + slice);
        }
        Ok(vec![take_flat(data, &src, &out)?])
    }
}

/// ONNX ScatterND: a copy of `data` with the slices addressed by the index
/// tuples of `indices` (reduction)= the matching slices of `updates`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScatterNd {
    pub reduction: ScatterReduction,
}

impl OpDef for ScatterNd {
    const SPELLINGS: &'static [&'static str] = &["scatter_nd"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(ScatterNd {
            reduction: ScatterReduction::read(attrs)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "scatter_nd"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.str("reduction", self.reduction.as_str());
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 3)?;
        let (data, idx, upd) = (inputs[0], inputs[1], inputs[2]);
        require_index_dtype(idx, "scatter_nd indices")?;
        if upd.dtype != data.dtype {
            return dtype_err(format!(
                "updates must have the dtype of data {}, found {}",
                data.dtype, upd.dtype
            ));
        }
        self.reduction.check(data.dtype)?;
        let m = tuple_len(idx)?;
        if m > data.rank() {
            return shape_err(format!(
                "index tuples of length {m} exceed data rank {}",
                data.rank()
            ));
        }
        let want: Vec<Dim> = idx.shape.dims()[..idx.rank() - 1]
            .iter()
            .chain(&data.shape.dims()[m..])
            .cloned()
            .collect();
        if upd.shape.dims() != want.as_slice() {
            return shape_err(format!(
                "updates must have shape {}, found {}",
                Shape::from(want),
                upd.shape
            ));
        }
        Ok(vec![data.clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        out_dims(self, inputs)?;
        let (data, idx, upd) = (inputs[0], inputs[1], inputs[2]);
        let dd = data.shape();
        let m = idx.shape().last().copied().unwrap_or(0);
        let st = strides(dd);
        let slice: usize = dd[m..].iter().product();
        let vals = index_values(idx);
        let outer: usize = idx.shape()[..idx.shape().len() - 1].iter().product();
        let mut pairs = Vec::with_capacity(outer * slice);
        for j in 0..outer {
            let tuple = &vals[j * m..(j + 1) * m];
            let off = tuple_offset(tuple, dd, &st)?;
            pairs.extend((0..slice).map(|s| (off + s, j * slice + s)));
        }
        Ok(vec![scatter(data, upd, &pairs, self.reduction)?])
    }
}

// ---------------------------------------------------------------------------
// tensor_scatter.

/// ONNX TensorScatter (opset 24): write `update` into a copy of the cache
/// along `axis`, starting at `write_indices[b]` for batch `b` (0 when absent);
/// `circular` wraps positions modulo the cache length.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorScatter {
    pub axis: i64,
    pub circular: bool,
}

impl OpDef for TensorScatter {
    const SPELLINGS: &'static [&'static str] = &["tensor_scatter"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let axis = attrs.int("axis", -2)?;
        let mode = attrs.str("mode", "linear")?;
        let circular = match mode.as_str() {
            "linear" => false,
            "circular" => true,
            other => {
                return Err(AttrError {
                    attr: "mode".into(),
                    msg: format!("expected \"linear\" or \"circular\", found {other:?}"),
                })
            }
        };
        Ok(TensorScatter { axis, circular })
    }
    fn spelling(&self) -> &'static str {
        "tensor_scatter"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
        w.str("mode", if self.circular { "circular" } else { "linear" });
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity_range(inputs, 2, 3)?;
        let (cache, upd) = (inputs[0], inputs[1]);
        if upd.dtype != cache.dtype {
            return dtype_err(format!(
                "update must have the dtype of the cache {}, found {}",
                cache.dtype, upd.dtype
            ));
        }
        let ax = axis_or_err("axis", self.axis, cache.rank())?;
        if ax == 0 {
            return attr_err("axis", "axis 0 is the batch axis");
        }
        if upd.rank() != cache.rank() {
            return shape_err(format!(
                "update {} must have the rank of the cache {}",
                upd.shape, cache.shape
            ));
        }
        let (cd, ud) = (
            concrete(cache, "tensor_scatter")?,
            concrete(upd, "tensor_scatter")?,
        );
        for i in 0..cd.len() {
            if (i != ax && cd[i] != ud[i]) || (i == ax && ud[i] > cd[i]) {
                return shape_err(format!(
                    "update {} does not fit the cache {} along axis {ax}",
                    upd.shape, cache.shape
                ));
            }
        }
        if let Some(w) = inputs.get(2) {
            require_index_dtype(w, "write_indices")?;
            if w.shape.dims() != [Dim::Known(cd[0])] {
                return shape_err(format!(
                    "write_indices must have shape [{}], found {}",
                    cd[0], w.shape
                ));
            }
        }
        Ok(vec![cache.clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        out_dims(self, inputs)?;
        let (cache, upd) = (inputs[0], inputs[1]);
        let cd = cache.shape();
        let ax = axis_or_err("axis", self.axis, cd.len())?;
        let starts = match inputs.get(2) {
            Some(w) => index_values(w),
            None => vec![0; cd[0]],
        };
        let (max, len) = (cd[ax], upd.shape()[ax]);
        let trail: usize = cd[ax + 1..].iter().product();
        let prefix = &cd[..ax];
        let per_batch: usize = prefix[1..].iter().product();
        let mut pairs = Vec::new();
        let mut p = 0usize;
        for_each_index(prefix, |_| {
            let b = p / per_batch.max(1);
            for s in 0..len {
                let pos = starts[b].wrapping_add(s as i64);
                let pos = if self.circular && max > 0 {
                    pos.rem_euclid(max as i64)
                } else {
                    pos
                };
                if !(0..max as i64).contains(&pos) {
                    return Err(OpError::Eval(format!(
                        "write position {pos} is outside the cache length {max}"
                    )));
                }
                let o = (p * max + pos as usize) * trail;
                let u = (p * len + s) * trail;
                pairs.extend((0..trail).map(|t| (o + t, u + t)));
            }
            p += 1;
            Ok(())
        })?;
        Ok(vec![scatter(cache, upd, &pairs, ScatterReduction::None)?])
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
    fn run<T: OpDef>(op: &T, inputs: &[&Tensor]) -> Tensor {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let want = op.infer(&refs).unwrap();
        let out = op.eval(inputs).unwrap();
        assert_eq!(out[0].ty(), want[0], "eval agrees with infer");
        out.into_iter().next().unwrap()
    }

    #[test]
    fn gather_elements_spec_examples() {
        let data = f64t(&[2, 2], &[1., 2., 3., 4.]);
        let idx = i64t(&[2, 2], &[0, 0, 1, 0]);
        let y = run(&GatherElements { axis: 1 }, &[&data, &idx]);
        assert_eq!(y, f64t(&[2, 2], &[1., 1., 4., 3.]));
        let data = f64t(&[3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let idx = i64t(&[2, 3], &[1, 2, 0, 2, 0, 0]);
        let y = run(&GatherElements { axis: 0 }, &[&data, &idx]);
        assert_eq!(y, f64t(&[2, 3], &[4., 8., 3., 7., 2., 3.]));
        let neg = i64t(&[2, 3], &[-1, -2, 0, -2, 0, 0]);
        let y = run(&GatherElements { axis: 0 }, &[&data, &neg]);
        assert_eq!(y, f64t(&[2, 3], &[7., 5., 3., 4., 2., 3.]));
        // i64 values beyond 2^53 move exactly.
        let big = i64t(&[2], &[i64::MAX, (1 << 53) + 1]);
        let y = run(&GatherElements { axis: 0 }, &[&big, &i64t(&[1], &[1])]);
        assert_eq!(y, i64t(&[1], &[(1 << 53) + 1]));
    }

    #[test]
    fn gather_elements_errors() {
        let data = f64t(&[2, 2], &[1., 2., 3., 4.]);
        let e = GatherElements { axis: 0 }
            .eval(&[&data, &i64t(&[1, 2], &[0, 2])])
            .unwrap_err();
        assert!(
            matches!(&e, OpError::Eval(m) if m.contains("index 2")),
            "{e}"
        );
        let t = data.ty();
        let bad_rank = TensorType::concrete(DType::I64, &[2]);
        assert!(matches!(
            GatherElements { axis: 0 }.infer(&[&t, &bad_rank]),
            Err(OpError::Shape(_))
        ));
        let too_wide = TensorType::concrete(DType::I64, &[1, 3]);
        assert!(matches!(
            GatherElements { axis: 0 }.infer(&[&t, &too_wide]),
            Err(OpError::Shape(_))
        ));
        let float_idx = TensorType::concrete(DType::F32, &[2, 2]);
        assert!(matches!(
            GatherElements { axis: 0 }.infer(&[&t, &float_idx]),
            Err(OpError::DType(_))
        ));
        assert!(matches!(
            GatherElements { axis: 2 }.infer(&[&t, &t.with_dtype(DType::I64)]),
            Err(OpError::Attr(_))
        ));
    }

    #[test]
    fn scatter_elements_spec_examples() {
        let data = f64t(&[3, 3], &[0.; 9]);
        let idx = i64t(&[2, 3], &[1, 0, 2, 0, 2, 1]);
        let upd = f64t(&[2, 3], &[1.0, 1.1, 1.2, 2.0, 2.1, 2.2]);
        let op = ScatterElements {
            axis: 0,
            reduction: ScatterReduction::None,
        };
        #[rustfmt::skip]
        let want = [2.0, 1.1, 0.0,
                    1.0, 0.0, 2.2,
                    0.0, 2.1, 1.2];
        assert_eq!(run(&op, &[&data, &idx, &upd]), f64t(&[3, 3], &want));
        let data = f64t(&[1, 5], &[1., 2., 3., 4., 5.]);
        let upd = f64t(&[1, 2], &[1.1, 2.1]);
        let at = |axis, reduction, idx: &[i64]| {
            run(
                &ScatterElements { axis, reduction },
                &[&data, &i64t(&[1, 2], idx), &upd],
            )
        };
        assert_eq!(
            at(1, ScatterReduction::None, &[1, 3]),
            f64t(&[1, 5], &[1., 1.1, 3., 2.1, 5.])
        );
        assert_eq!(
            at(-1, ScatterReduction::None, &[1, -3]),
            f64t(&[1, 5], &[1., 1.1, 2.1, 4., 5.])
        );
        // Duplicates: the last write wins, or the reduction combines them.
        assert_eq!(
            at(1, ScatterReduction::None, &[1, 1]),
            f64t(&[1, 5], &[1., 2.1, 3., 4., 5.])
        );
        let add = at(1, ScatterReduction::Add, &[1, 1]);
        assert!((add.values_f64()[1] - 5.2).abs() < 1e-12);
        let mul = at(1, ScatterReduction::Mul, &[1, 1]);
        assert!((mul.values_f64()[1] - 2. * 1.1 * 2.1).abs() < 1e-12);
        assert_eq!(
            at(1, ScatterReduction::Max, &[1, 1]),
            f64t(&[1, 5], &[1., 2.1, 3., 4., 5.])
        );
        assert_eq!(
            at(1, ScatterReduction::Min, &[1, 1]),
            f64t(&[1, 5], &[1., 1.1, 3., 4., 5.])
        );
        // Integer reductions wrap.
        let op = ScatterElements {
            axis: 0,
            reduction: ScatterReduction::Add,
        };
        let y = run(
            &op,
            &[
                &i64t(&[1], &[i64::MAX]),
                &i64t(&[1], &[0]),
                &i64t(&[1], &[1]),
            ],
        );
        assert_eq!(y, i64t(&[1], &[i64::MIN]));
    }

    #[test]
    fn scatter_elements_errors() {
        let t = TensorType::concrete(DType::F32, &[3, 3]);
        let idx = TensorType::concrete(DType::I64, &[2, 3]);
        let op = |r| ScatterElements {
            axis: 0,
            reduction: r,
        };
        let wrong_upd = TensorType::concrete(DType::F32, &[2, 2]);
        assert!(matches!(
            op(ScatterReduction::None).infer(&[&t, &idx, &wrong_upd]),
            Err(OpError::Shape(_))
        ));
        let upd64 = TensorType::concrete(DType::F64, &[2, 3]);
        assert!(matches!(
            op(ScatterReduction::None).infer(&[&t, &idx, &upd64]),
            Err(OpError::DType(_))
        ));
        let b = TensorType::concrete(DType::Bool, &[3, 3]);
        let bu = TensorType::concrete(DType::Bool, &[2, 3]);
        assert!(op(ScatterReduction::None).infer(&[&b, &idx, &bu]).is_ok());
        assert!(matches!(
            op(ScatterReduction::Add).infer(&[&b, &idx, &bu]),
            Err(OpError::DType(_))
        ));
        let e = op(ScatterReduction::None)
            .eval(&[
                &f64t(&[2], &[0., 0.]),
                &i64t(&[1], &[5]),
                &f64t(&[1], &[1.]),
            ])
            .unwrap_err();
        assert!(matches!(e, OpError::Eval(_)), "{e}");
    }

    #[test]
    fn gather_nd_spec_examples() {
        let data = i64t(&[2, 2], &[0, 1, 2, 3]);
        let g = |b, d: &Tensor, idx: &Tensor| run(&GatherNd { batch_dims: b }, &[d, idx]);
        assert_eq!(
            g(0, &data, &i64t(&[2, 2], &[0, 0, 1, 1])),
            i64t(&[2], &[0, 3])
        );
        assert_eq!(
            g(0, &data, &i64t(&[2, 1], &[1, 0])),
            i64t(&[2, 2], &[2, 3, 0, 1])
        );
        let d3 = i64t(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            g(0, &d3, &i64t(&[2, 1, 2], &[0, 1, 1, 0])),
            i64t(&[2, 1, 2], &[2, 3, 4, 5])
        );
        assert_eq!(
            g(1, &d3, &i64t(&[2, 1], &[1, 0])),
            i64t(&[2, 2], &[2, 3, 4, 5])
        );
        assert_eq!(g(0, &data, &i64t(&[1, 2], &[-1, -2])), i64t(&[1], &[2]));
        let t = data.ty();
        let long = TensorType::concrete(DType::I64, &[1, 3]);
        assert!(matches!(
            GatherNd { batch_dims: 0 }.infer(&[&t, &long]),
            Err(OpError::Shape(_))
        ));
        let idx = TensorType::concrete(DType::I64, &[2, 1]);
        assert!(matches!(
            GatherNd { batch_dims: 2 }.infer(&[&t, &idx]),
            Err(OpError::Attr(_))
        ));
        assert!(GatherNd { batch_dims: 0 }
            .eval(&[&data, &i64t(&[1, 2], &[0, 2])])
            .is_err());
    }

    #[test]
    fn scatter_nd_spec_examples() {
        let data = f64t(&[8], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let idx = i64t(&[4, 1], &[4, 3, 1, 7]);
        let upd = f64t(&[4], &[9., 10., 11., 12.]);
        let op = |r| ScatterNd { reduction: r };
        assert_eq!(
            run(&op(ScatterReduction::None), &[&data, &idx, &upd]),
            f64t(&[8], &[1., 11., 3., 10., 9., 6., 7., 12.])
        );
        // Whole rows: indices address the first axis of a [2, 2] tensor.
        let m = f64t(&[2, 2], &[1., 2., 3., 4.]);
        let rows = i64t(&[2, 1], &[1, 1]);
        let upd = f64t(&[2, 2], &[10., 20., 30., 40.]);
        assert_eq!(
            run(&op(ScatterReduction::Add), &[&m, &rows, &upd]),
            f64t(&[2, 2], &[1., 2., 43., 64.])
        );
        assert_eq!(
            run(
                &op(ScatterReduction::Max),
                &[&m, &i64t(&[1, 2], &[0, 1]), &f64t(&[1], &[-5.])]
            ),
            m
        );
        let t = m.ty();
        let bad_upd = TensorType::concrete(DType::F64, &[2]);
        assert!(matches!(
            op(ScatterReduction::None).infer(&[&t, &rows.ty(), &bad_upd]),
            Err(OpError::Shape(_))
        ));
        let long = TensorType::concrete(DType::I64, &[1, 3]);
        assert!(matches!(
            op(ScatterReduction::None).infer(&[&t, &long, &bad_upd]),
            Err(OpError::Shape(_))
        ));
    }

    #[test]
    fn tensor_scatter_linear_and_circular() {
        let cache = f64t(&[2, 3, 1], &[0.; 6]);
        let lin = TensorScatter {
            axis: 1,
            circular: false,
        };
        let circ = TensorScatter {
            axis: 1,
            circular: true,
        };
        let one = f64t(&[2, 1, 1], &[5., 7.]);
        let w = i64t(&[2], &[1, 2]);
        assert_eq!(
            run(&lin, &[&cache, &one, &w]),
            f64t(&[2, 3, 1], &[0., 5., 0., 0., 0., 7.])
        );
        assert_eq!(
            run(&lin, &[&cache, &one]),
            f64t(&[2, 3, 1], &[5., 0., 0., 7., 0., 0.])
        );
        let two = f64t(&[2, 2, 1], &[5., 6., 7., 8.]);
        assert_eq!(
            run(&circ, &[&cache, &two, &w]),
            f64t(&[2, 3, 1], &[0., 5., 6., 8., 0., 7.])
        );
        assert!(matches!(
            lin.eval(&[&cache, &two, &w]),
            Err(OpError::Eval(_))
        ));
        let t = cache.ty();
        assert!(matches!(
            TensorScatter {
                axis: 0,
                circular: false
            }
            .infer(&[&t, &t]),
            Err(OpError::Attr(_))
        ));
        let big = TensorType::concrete(DType::F64, &[2, 4, 1]);
        assert!(matches!(lin.infer(&[&t, &big]), Err(OpError::Shape(_))));
        let w3 = TensorType::concrete(DType::I64, &[3]);
        assert!(matches!(
            lin.infer(&[&t, &one.ty(), &w3]),
            Err(OpError::Shape(_))
        ));
    }

    #[test]
    fn attrs_roundtrip() {
        roundtrip(&GatherElements { axis: -1 });
        for r in [
            ScatterReduction::None,
            ScatterReduction::Add,
            ScatterReduction::Mul,
            ScatterReduction::Max,
            ScatterReduction::Min,
        ] {
            roundtrip(&ScatterElements {
                axis: 1,
                reduction: r,
            });
            roundtrip(&ScatterNd { reduction: r });
        }
        roundtrip(&GatherNd { batch_dims: 1 });
        roundtrip(&TensorScatter {
            axis: -2,
            circular: true,
        });
        let mut r = AttrReader::new(vec![(
            "reduction".into(),
            crate::attr::AttrValue::Str("avg".into()),
        )]);
        assert!(ScatterNd::parse("scatter_nd", &mut r).is_err());
        let mut r = AttrReader::default();
        assert_eq!(
            TensorScatter::parse("tensor_scatter", &mut r).unwrap(),
            TensorScatter {
                axis: -2,
                circular: false
            }
        );
    }
}
