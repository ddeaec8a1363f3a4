//! Data movement along axes: concat, split, slice, gather, pad. Re-exported
//! from [`crate::ops::shape`], where the op table looks for them.
//!
//! As in `shape`, every `eval` moves elements in their own type.

use crate::grad::{unsupported, GradCtx, GradResult};
use crate::graph::ValueId;
use ndarray::{ArrayD, Axis, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::dtype::DType;
use crate::map_array;
use crate::op::{
    attr_err, dtype_err, expect_arity, expect_arity_range, shape_err, FusionKind, OpDef, OpError,
    OpResult,
};
use crate::ops::shape::{out_dims, reshape_arr};
use crate::ops::{axis_or_err, concrete, same_dtype};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

/// Join inputs along `axis`; all other dims must agree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Concat {
    pub axis: i64,
}

/// Match `$inputs[0]`'s variant and collect every input's array of that
/// variant as `$views`, failing if any input has another dtype.
macro_rules! concat_variants {
    ($inputs:expr, $ax:expr; $($v:ident),*) => {
        match $inputs[0] {
            $(Tensor::$v(_) => {
                let mut views = Vec::with_capacity($inputs.len());
                for t in $inputs.iter() {
                    match t {
                        Tensor::$v(a) => views.push(a.view()),
                        other => {
                            return Err(OpError::Eval(format!(
                                "concat inputs must share a dtype, found {}",
                                other.dtype()
                            )))
                        }
                    }
                }
                Tensor::$v(
                    ndarray::concatenate(Axis($ax), &views)
                        .map_err(|e| OpError::Eval(format!("concat: {e}")))?,
                )
            })*
            Tensor::Narrow(k, _) => {
                let mut views = Vec::with_capacity($inputs.len());
                for t in $inputs.iter() {
                    match t {
                        Tensor::Narrow(k2, a) if *k2 == *k => views.push(a.view()),
                        other => {
                            return Err(OpError::Eval(format!(
                                "concat inputs must share a dtype, found {}",
                                other.dtype()
                            )))
                        }
                    }
                }
                Tensor::Narrow(
                    *k,
                    ndarray::concatenate(Axis($ax), &views)
                        .map_err(|e| OpError::Eval(format!("concat: {e}")))?,
                )
            }
        }
    };
}

impl OpDef for Concat {
    const SPELLINGS: &'static [&'static str] = &["concat"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Concat {
            axis: attrs.req_int("axis")?,
        })
    }
    fn spelling(&self) -> &'static str {
        "concat"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        if inputs.is_empty() {
            return Err(OpError::Arity {
                expected: "at least 1".into(),
                found: 0,
            });
        }
        let dtype = same_dtype(inputs)?;
        let first = inputs[0];
        let ax = axis_or_err("axis", self.axis, first.rank())?;
        for t in &inputs[1..] {
            if t.rank() != first.rank() {
                return shape_err(format!(
                    "concat inputs differ in rank: {} vs {}",
                    first.shape, t.shape
                ));
            }
            for i in (0..first.rank()).filter(|&i| i != ax) {
                if t.shape.dims()[i] != first.shape.dims()[i] {
                    return shape_err(format!(
                        "concat inputs differ in dimension {i}: {} vs {}",
                        first.shape, t.shape
                    ));
                }
            }
        }
        let along: Option<usize> = inputs.iter().map(|t| t.shape.dims()[ax].known()).sum();
        let d = match along {
            Some(n) => Dim::Known(n),
            None if inputs.len() == 1 => first.shape.dims()[ax].clone(),
            None => {
                let sizes: Vec<String> = inputs
                    .iter()
                    .map(|t| t.shape.dims()[ax].to_string())
                    .collect();
                return shape_err(format!(
                    "concat along axis {ax} needs static sizes there, found {}; bind the symbols with --dim",
                    sizes.join(" + ")
                ));
            }
        };
        let mut dims = first.shape.0.clone();
        dims[ax] = d;
        Ok(vec![TensorType::new(dtype, Shape(dims))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["concat"];
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
        let dims = cx.dims(dy)?;
        let ax = axis_or_err("axis", self.axis, dims.len())
            .or_else(|e| unsupported("concat", e.to_string()))?;
        let mut at = 0i64;
        let mut out = Vec::with_capacity(inputs.len());
        for &x in inputs {
            let n = cx.dims(x)?[ax] as i64;
            if cx.ty(x).dtype.is_float() {
                let s = Slice::new(vec![at], vec![at + n], vec![ax as i64], vec![]);
                out.push(Some(cx.add(s, &[dy])?));
            } else {
                out.push(None);
            }
            at += n;
        }
        Ok(out)
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        out_dims(self, inputs)?;
        let ax = axis_or_err("axis", self.axis, inputs[0].shape().len())?;
        let out = concat_variants!(
            inputs, ax; F32, F64, F16, BF16, I8, U8, I16, I32, I64, Bool, U16, U32, U64
        );
        Ok(vec![out])
    }
}

/// Cut the input along `axis` into pieces of the given `sizes`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Split {
    pub axis: i64,
    pub sizes: Vec<i64>,
}

impl OpDef for Split {
    const SPELLINGS: &'static [&'static str] = &["split"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let axis = attrs.int("axis", 0)?;
        let sizes = attrs.req_ints("sizes")?;
        Ok(Split { axis, sizes })
    }
    fn spelling(&self) -> &'static str {
        "split"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
        w.ints("sizes", &self.sizes);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        let ax = axis_or_err("axis", self.axis, x.rank())?;
        if self.sizes.is_empty() {
            return attr_err("sizes", "needs at least one size");
        }
        if let Some(s) = self.sizes.iter().find(|&&s| s < 0) {
            return attr_err("sizes", format!("sizes must be >= 0, found {s}"));
        }
        let total: i64 = self.sizes.iter().fold(0i64, |a, &s| a.saturating_add(s));
        let d = &x.shape.dims()[ax];
        match d {
            Dim::Known(n) if *n as i64 == total => {}
            Dim::Known(n) => {
                return shape_err(format!(
                    "split sizes {:?} sum to {total}, but axis {ax} of {} has size {n}",
                    self.sizes, x.shape
                ))
            }
            Dim::Sym(s) => {
                return shape_err(format!(
                    "split along axis {ax} of {} needs its size; bind {s} with --dim",
                    x.shape
                ))
            }
        }
        Ok(self
            .sizes
            .iter()
            .map(|&s| {
                let mut dims = x.shape.0.clone();
                dims[ax] = Dim::Known(s as usize);
                x.with_shape(Shape(dims))
            })
            .collect())
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["split"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        if !cx.ty(inputs[0]).dtype.is_float() {
            return Ok(vec![None]);
        }
        let mut parts = Vec::with_capacity(outputs.len());
        for (&o, &d) in outputs.iter().zip(dout) {
            parts.push(cx.or_zeros(d, o)?);
        }
        if parts.len() == 1 {
            return Ok(vec![Some(parts[0])]);
        }
        Ok(vec![Some(cx.add(Concat { axis: self.axis }, &parts)?)])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        out_dims(self, inputs)?;
        let x = inputs[0];
        let ax = axis_or_err("axis", self.axis, x.shape().len())?;
        let mut start = 0usize;
        let mut outs = Vec::with_capacity(self.sizes.len());
        for &s in &self.sizes {
            let end = start + s as usize;
            let part = ndarray::Slice::from(start..end);
            outs.push(
                map_array!(x, a => a.slice_axis(Axis(ax), part).as_standard_layout().into_owned()),
            );
            start = end;
        }
        Ok(outs)
    }
}

/// ONNX Slice with constant starts/ends/axes/steps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Slice {
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    pub axes: Vec<i64>,
    pub steps: Vec<i64>,
}

/// Endpoints at or beyond this magnitude mean "to the end" even on a symbolic
/// axis; exporters write i32::MAX or i64::MAX there.
const HUGE: i64 = i32::MAX as i64;

/// ONNX's clamping: the first index taken and the element count, for an axis
/// of length `n`.
fn slice_range(start: i64, end: i64, step: i64, n: usize) -> (i64, usize) {
    let n = n as i64;
    if n == 0 {
        return (0, 0);
    }
    let wrap = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let (s, e) = if step > 0 {
        (wrap(start).clamp(0, n), wrap(end).clamp(0, n))
    } else {
        (wrap(start).clamp(0, n - 1), wrap(end).clamp(-1, n - 1))
    };
    let span = if step > 0 { e - s } else { s - e };
    let k = step.unsigned_abs().min(i64::MAX as u64) as i64;
    let len = if span > 0 { (span - 1) / k + 1 } else { 0 };
    (s, len as usize)
}

impl Slice {
    pub fn new(starts: Vec<i64>, ends: Vec<i64>, axes: Vec<i64>, steps: Vec<i64>) -> Slice {
        Slice {
            starts,
            ends,
            axes,
            steps,
        }
    }
    /// `(axis, first index, step)` per sliced axis of an input of `shape`:
    /// output index `j` on `axis` reads input index `first + step·j`.
    pub fn starts_and_steps(&self, shape: &[usize]) -> OpResult<Vec<(usize, i64, i64)>> {
        Ok(self
            .plan(shape.len())?
            .into_iter()
            .map(|(ax, start, end, step)| {
                let (first, _) = slice_range(start, end, step, shape[ax]);
                (ax, first, step)
            })
            .collect())
    }

    /// `(axis, start, end, step)` per sliced axis, validated against `rank`.
    fn plan(&self, rank: usize) -> OpResult<Vec<(usize, i64, i64, i64)>> {
        let k = self.starts.len();
        if self.ends.len() != k {
            return attr_err(
                "ends",
                format!("has {} entries but starts has {k}", self.ends.len()),
            );
        }
        let axes: Vec<i64> = if self.axes.is_empty() {
            (0..k as i64).collect()
        } else {
            self.axes.clone()
        };
        if axes.len() != k {
            return attr_err(
                "axes",
                format!("has {} entries but starts has {k}", axes.len()),
            );
        }
        if !self.steps.is_empty() && self.steps.len() != k {
            return attr_err(
                "steps",
                format!("has {} entries but starts has {k}", self.steps.len()),
            );
        }
        let mut out: Vec<(usize, i64, i64, i64)> = Vec::with_capacity(k);
        for i in 0..k {
            let ax = axis_or_err("axes", axes[i], rank)?;
            if out.iter().any(|p| p.0 == ax) {
                return attr_err(
                    "axes",
                    format!("axis {} is listed twice in {axes:?}", axes[i]),
                );
            }
            let step = self.steps.get(i).copied().unwrap_or(1);
            if step == 0 {
                return attr_err("steps", "a step of 0 is invalid");
            }
            out.push((ax, self.starts[i], self.ends[i], step));
        }
        Ok(out)
    }
}

impl OpDef for Slice {
    const SPELLINGS: &'static [&'static str] = &["slice"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let starts = attrs.req_ints("starts")?;
        let ends = attrs.req_ints("ends")?;
        let axes = attrs.ints("axes", &[])?;
        let steps = attrs.ints("steps", &[])?;
        Ok(Slice {
            starts,
            ends,
            axes,
            steps,
        })
    }
    fn spelling(&self) -> &'static str {
        "slice"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("starts", &self.starts);
        w.ints("ends", &self.ends);
        w.ints("axes", &self.axes);
        w.ints("steps", &self.steps);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        let mut dims = x.shape.0.clone();
        for (ax, start, end, step) in self.plan(x.rank())? {
            dims[ax] = match &dims[ax] {
                Dim::Known(n) => Dim::Known(slice_range(start, end, step, *n).1),
                Dim::Sym(s) => {
                    let whole = (step == 1 && (start == 0 || start <= -HUGE) && end >= HUGE)
                        || (step == -1 && (start == -1 || start >= HUGE) && end < -HUGE);
                    if !whole {
                        return shape_err(format!(
                            "slicing axis {ax} of {} needs its size; bind {s} with --dim",
                            x.shape
                        ));
                    }
                    dims[ax].clone()
                }
            };
        }
        Ok(vec![x.with_shape(Shape(dims))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["slice"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        let Some(dy) = dout[0] else {
            return Ok(vec![None]);
        };
        let x = inputs[0];
        if !cx.ty(x).dtype.is_float() {
            return Ok(vec![None]);
        }
        let xd = cx.dims(x)?;
        let plan = self
            .plan(xd.len())
            .or_else(|e| unsupported("slice", e.to_string()))?;
        let mut cur = dy;
        for (ax, start, end, step) in plan {
            let n = xd[ax];
            let (s, len) = slice_range(start, end, step, n);
            if len == 0 {
                let ty = cx.ty(x);
                return Ok(vec![Some(cx.zeros(&ty)?)]);
            }
            let k = step.unsigned_abs() as usize;
            let mut first = s as usize;
            if step < 0 {
                // Reverse, so the taken elements ascend from the lowest one.
                let rev = Slice::new(vec![-1], vec![-HUGE * 2], vec![ax as i64], vec![-1]);
                cur = cx.add(rev, &[cur])?;
                first = s as usize - (len - 1) * k;
            }
            if k > 1 {
                // Interleave k - 1 zeros after each element: a new axis of
                // length k padded at its end, merged, and the tail cut.
                let mut d = cx.dims(cur)?;
                let u = cx.add(
                    crate::ops::shape::Unsqueeze {
                        axes: vec![ax as i64 + 1],
                    },
                    &[cur],
                )?;
                let r = d.len() + 1;
                let mut pads = vec![0i64; 2 * r];
                pads[r + ax + 1] = k as i64 - 1;
                let p = cx.add(Pad::new(PadMode::Constant, pads, 0.0), &[u])?;
                d[ax] = len * k;
                let m = cx.reshape(p, &d)?;
                let span = (len - 1) * k + 1;
                cur = cx.add(
                    Slice::new(vec![0], vec![span as i64], vec![ax as i64], vec![]),
                    &[m],
                )?;
            }
            let span = (len - 1) * k + 1;
            let r = xd.len();
            let mut pads = vec![0i64; 2 * r];
            pads[ax] = first as i64;
            pads[r + ax] = (n - first - span) as i64;
            if pads.iter().any(|&p| p != 0) {
                cur = cx.add(Pad::new(PadMode::Constant, pads, 0.0), &[cur])?;
            }
        }
        Ok(vec![Some(cur)])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        let mut picks = Vec::new();
        for (ax, start, end, step) in self.plan(x.shape().len())? {
            let (s, len) = slice_range(start, end, step, x.shape()[ax]);
            // In range by construction of slice_range's clamping.
            let idx: Vec<usize> = (0..len as i64).map(|i| (s + i * step) as usize).collect();
            picks.push((ax, idx));
        }
        let out = map_array!(x, a => {
            let mut r = a.clone();
            for (ax, idx) in &picks {
                r = r.select(Axis(*ax), idx);
            }
            r.as_standard_layout().into_owned()
        });
        Ok(vec![out])
    }
}

/// `data[..., indices, ...]` along `axis` (ONNX Gather).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Gather {
    pub axis: i64,
}

impl OpDef for Gather {
    const SPELLINGS: &'static [&'static str] = &["gather"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Gather {
            axis: attrs.int("axis", 0)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "gather"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        let (data, idx) = (inputs[0], inputs[1]);
        if !matches!(idx.dtype, DType::I32 | DType::I64) {
            return dtype_err(format!(
                "gather indices must be i32 or i64, found {}",
                idx.dtype
            ));
        }
        let ax = axis_or_err("axis", self.axis, data.rank())?;
        let d = data.shape.dims();
        let dims: Vec<Dim> = d[..ax]
            .iter()
            .chain(idx.shape.dims())
            .chain(&d[ax + 1..])
            .cloned()
            .collect();
        Ok(vec![data.with_shape(Shape::from(dims))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["gather"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        let Some(dy) = dout[0] else {
            return Ok(vec![None, None]);
        };
        let (data, idx) = (inputs[0], inputs[1]);
        let tdata = cx.ty(data);
        if !tdata.dtype.is_float() {
            return Ok(vec![None, None]);
        }
        let dd = cx.dims(data)?;
        let id = cx.dims(idx)?;
        let ax = axis_or_err("axis", self.axis, dd.len())
            .or_else(|e| unsupported("gather", e.to_string()))?;
        let pre: usize = dd[..ax].iter().product();
        let post: usize = dd[ax + 1..].iter().product();
        let ni: usize = id.iter().product();
        // Scatter-add the gradient rows back to the rows they were read from.
        let g = cx.reshape(dy, &[pre, ni, post])?;
        let i = cx.reshape(idx, &[1, ni, 1])?;
        let i = cx.add(
            crate::ops::shape::Expand {
                shape: vec![pre as i64, ni as i64, post as i64],
            },
            &[i],
        )?;
        let z = cx.zeros(&tdata.with_shape(Shape::from_dims(&[pre, dd[ax], post])))?;
        let s = cx.add(
            crate::ops::index::ScatterElements {
                axis: 1,
                reduction: crate::ops::index::ScatterReduction::Add,
            },
            &[z, i, g],
        )?;
        Ok(vec![Some(cx.reshape(s, &dd)?), None])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        let data = inputs[0];
        let ax = axis_or_err("axis", self.axis, data.shape().len())?;
        let n = data.shape()[ax];
        let flat = inputs[1]
            .to_i64()
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + n as i64 } else { i };
                if (0..n as i64).contains(&j) {
                    Ok(j as usize)
                } else {
                    Err(OpError::Eval(format!(
                        "gather index {i} is out of range for axis {ax} of size {n}"
                    )))
                }
            })
            .collect::<OpResult<Vec<usize>>>()?;
        Ok(vec![
            map_array!(data, a => reshape_arr(&a.select(Axis(ax), &flat), &dims)?),
        ])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    /// Repeat the input periodically, as numpy "wrap".
    Wrap,
}

impl PadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
            PadMode::Wrap => "wrap",
        }
    }
    pub fn from_name(s: &str) -> Option<PadMode> {
        [
            PadMode::Constant,
            PadMode::Reflect,
            PadMode::Edge,
            PadMode::Wrap,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// ONNX Pad with constant pads `[begin_0.., end_0..]`; negative pads crop.
/// An optional second input (a one-element tensor of the input's dtype)
/// gives the constant fill at run time, in place of `value`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pad {
    pub mode: PadMode,
    pub pads: Vec<i64>,
    pub value: F64,
}

impl Pad {
    pub fn new(mode: PadMode, pads: Vec<i64>, value: f64) -> Pad {
        Pad {
            mode,
            pads,
            value: F64(value),
        }
    }
}

/// Build the padded array: each output index maps back to an input index per
/// axis, or to the fill value. Indices that would fall outside the input give
/// the fill rather than a panic (infer has already rejected those cases).
fn pad_arr<A: Clone>(
    a: &ArrayD<A>,
    fill: &ArrayD<A>,
    pads: &[i64],
    mode: PadMode,
    out: &[usize],
) -> OpResult<ArrayD<A>> {
    let fill = fill
        .first()
        .cloned()
        .ok_or_else(|| OpError::Eval("pad: no fill value".into()))?;
    let r = a.ndim();
    if pads.len() != 2 * r || out.len() != r {
        return Err(OpError::Eval(format!(
            "pad: {} pads for rank {r}",
            pads.len()
        )));
    }
    let mut src = vec![0usize; r];
    Ok(ArrayD::from_shape_fn(IxDyn(out), |idx| {
        for i in 0..r {
            let n = a.shape()[i] as i64;
            let o = (idx[i] as i64).saturating_sub(pads[i]);
            let s = if (0..n).contains(&o) {
                o
            } else {
                match mode {
                    PadMode::Constant => return fill.clone(),
                    // Mirror without repeating the edge element, as numpy "reflect".
                    PadMode::Reflect if o < 0 => o.saturating_neg(),
                    PadMode::Reflect => (2 * (n - 1)).saturating_sub(o),
                    PadMode::Edge => o.max(0).min(n - 1),
                    PadMode::Wrap => o.rem_euclid(n),
                }
            };
            match usize::try_from(s) {
                Ok(s) => src[i] = s,
                Err(_) => return fill.clone(),
            }
        }
        a.get(IxDyn(&src)).cloned().unwrap_or_else(|| fill.clone())
    }))
}

macro_rules! pad_variants {
    ($x:expr, $fill:expr, |$a:ident, $f:ident| $body:expr; $($v:ident),*) => {
        match ($x, $fill) {
            $((Tensor::$v($a), Tensor::$v($f)) => Tensor::$v($body),)*
            _ => return Err(OpError::Eval("pad: fill value has the wrong dtype".into())),
        }
    };
}

impl OpDef for Pad {
    const SPELLINGS: &'static [&'static str] = &["pad"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let name = attrs.str("mode", "constant")?;
        let mode = PadMode::from_name(&name).ok_or_else(|| AttrError {
            attr: "mode".into(),
            msg: format!(
                "expected \"constant\", \"reflect\", \"edge\" or \"wrap\", found {name:?}"
            ),
        })?;
        let pads = attrs.req_ints("pads")?;
        let value = attrs.float("value", 0.0)?;
        Ok(Pad::new(mode, pads, value))
    }
    fn spelling(&self) -> &'static str {
        "pad"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.str("mode", self.mode.as_str());
        w.ints("pads", &self.pads);
        w.float("value", self.value.0);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity_range(inputs, 1, 2)?;
        let x = inputs[0];
        if let Some(v) = inputs.get(1) {
            if v.dtype != x.dtype {
                return dtype_err(format!(
                    "the pad value must have the input's dtype {}, found {}",
                    x.dtype, v.dtype
                ));
            }
            if v.shape.numel() != Some(1) {
                return shape_err(format!(
                    "the pad value must hold one element, found {}",
                    v.shape
                ));
            }
        }
        let r = x.rank();
        if self.pads.len() != 2 * r {
            return attr_err(
                "pads",
                format!(
                    "needs 2 * rank = {} entries, found {}",
                    2 * r,
                    self.pads.len()
                ),
            );
        }
        let mut dims = x.shape.0.clone();
        for (i, d) in dims.iter_mut().enumerate() {
            let (b, e) = (self.pads[i], self.pads[i + r]);
            if b == 0 && e == 0 {
                continue;
            }
            let Dim::Known(n) = *d else {
                concrete(x, &format!("padding axis {i}"))?;
                return shape_err(format!("padding axis {i} of {} needs its size", x.shape));
            };
            let len = (n as i64)
                .checked_add(b)
                .and_then(|v| v.checked_add(e))
                .unwrap_or(-1);
            if len < 0 {
                return shape_err(format!(
                    "pads {b}, {e} on axis {i} of size {n} leave a negative size"
                ));
            }
            match self.mode {
                PadMode::Reflect if b >= n as i64 || e >= n as i64 => {
                    return shape_err(format!(
                        "reflect pads {b}, {e} on axis {i} must be smaller than its size {n}"
                    ))
                }
                PadMode::Edge | PadMode::Wrap if n == 0 && (b > 0 || e > 0) => {
                    return shape_err(format!(
                        "{} padding axis {i} of size 0 has nothing to copy",
                        self.mode.as_str()
                    ))
                }
                _ => {}
            }
            *d = Dim::Known(len as usize);
        }
        Ok(vec![x.with_shape(Shape(dims))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["pad"];
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
        if !cx.ty(x).dtype.is_float() {
            return Ok(vec![None; inputs.len()]);
        }
        if self.mode != PadMode::Constant {
            return unsupported(
                "pad",
                format!("mode {} (only constant)", self.mode.as_str()),
            );
        }
        // Negative pads crop: the adjoint of padding is cropping, and back.
        let neg: Vec<i64> = self.pads.iter().map(|p| -p).collect();
        let gx = cx.add(Pad::new(PadMode::Constant, neg, 0.0), &[dy])?;
        let mut out = vec![Some(gx)];
        if let Some(&v) = inputs.get(1) {
            // The fill value receives every padded element's gradient.
            let all: Vec<usize> = (0..cx.ty(dy).rank()).collect();
            let total = cx.reduce_sum(dy, &all, false)?;
            let inner = cx.reduce_sum(gx, &all, false)?;
            let d = cx.sub(total, inner)?;
            out.push(Some(cx.reshape_like(d, v)?));
        }
        Ok(out)
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        let x = inputs[0];
        let fill = match inputs.get(1) {
            Some(v) => (*v).clone(),
            None => Tensor::from_f64(x.dtype(), ArrayD::from_elem(IxDyn(&[]), self.value.0)),
        };
        let (pads, mode) = (&self.pads, self.mode);
        let out = pad_variants!(x, &fill, |a, f| pad_arr(a, f, pads, mode, &dims)?;
            F32, F64, F16, BF16, I8, U8, I16, I32, I64, Bool);
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }
    fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }
    fn sym(dims: &[&str]) -> TensorType {
        let d = dims
            .iter()
            .map(|s| s.parse().map_or_else(|_| Dim::sym(s), Dim::Known))
            .collect::<Vec<_>>();
        TensorType::new(DType::F32, Shape::from(d))
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
    fn run1<T: OpDef>(op: &T, x: &Tensor) -> Tensor {
        run(op, &[x]).remove(0)
    }
    use crate::ops::test_util::roundtrip;
    // [[1, 2, 3], [4, 5, 6]]
    fn m23() -> Tensor {
        f64t(&[2, 3], &[1., 2., 3., 4., 5., 6.])
    }

    #[test]
    fn concat_values_and_shapes() {
        let a = m23();
        let b = f64t(&[1, 3], &[7., 8., 9.]);
        let y = run(&Concat { axis: 0 }, &[&a, &b]).remove(0);
        assert_eq!(y, f64t(&[3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]));
        let c = f64t(&[2, 1], &[0., -1.]);
        let y = run(&Concat { axis: -1 }, &[&a, &c]).remove(0);
        assert_eq!(y, f64t(&[2, 4], &[1., 2., 3., 0., 4., 5., 6., -1.]));
        assert_eq!(run(&Concat { axis: 1 }, &[&a]).remove(0), a);
        let big = i64t(&[1], &[i64::MAX - 1]);
        assert_eq!(
            run(&Concat { axis: 0 }, &[&big, &big]).remove(0),
            i64t(&[2], &[i64::MAX - 1; 2])
        );
        let (x, z) = (sym(&["N", "3"]), sym(&["N", "5"]));
        assert_eq!(
            Concat { axis: 1 }.infer(&[&x, &z]).unwrap()[0].to_string(),
            "f32[N,8]"
        );
        assert!(matches!(
            Concat { axis: 0 }.infer(&[&x, &z]),
            Err(OpError::Shape(_))
        ));
    }

    #[test]
    fn concat_errors() {
        let (a, b) = (
            TensorType::concrete(DType::F32, &[2, 3]),
            TensorType::concrete(DType::F32, &[2, 4]),
        );
        assert!(matches!(
            Concat { axis: 0 }.infer(&[&a, &b]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            Concat { axis: 2 }.infer(&[&a, &b]),
            Err(OpError::Attr(_))
        ));
        let c = TensorType::concrete(DType::F32, &[2]);
        assert!(matches!(
            Concat { axis: 0 }.infer(&[&a, &c]),
            Err(OpError::Shape(_))
        ));
        let d = TensorType::concrete(DType::I32, &[2, 3]);
        assert!(matches!(
            Concat { axis: 0 }.infer(&[&a, &d]),
            Err(OpError::DType(_))
        ));
        assert!(matches!(
            Concat { axis: 0 }.infer(&[]),
            Err(OpError::Arity { .. })
        ));
        assert!(Concat { axis: 0 }
            .eval(&[&m23(), &i64t(&[1, 3], &[1, 2, 3])])
            .is_err());
    }

    #[test]
    fn split_values_and_errors() {
        let parts = run(
            &Split {
                axis: 1,
                sizes: vec![1, 2],
            },
            &[&m23()],
        );
        assert_eq!(
            parts,
            vec![f64t(&[2, 1], &[1., 4.]), f64t(&[2, 2], &[2., 3., 5., 6.])]
        );
        let parts = run(
            &Split {
                axis: 0,
                sizes: vec![1, 0, 1],
            },
            &[&m23()],
        );
        assert_eq!(parts[0], f64t(&[1, 3], &[1., 2., 3.]));
        assert_eq!(parts[1].shape(), [0, 3]);
        assert_eq!(parts[2], f64t(&[1, 3], &[4., 5., 6.]));
        let t = m23().ty();
        assert!(matches!(
            Split {
                axis: 1,
                sizes: vec![1, 1]
            }
            .infer(&[&t]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            Split {
                axis: 1,
                sizes: vec![4, -1]
            }
            .infer(&[&t]),
            Err(OpError::Attr(_))
        ));
        assert!(matches!(
            Split {
                axis: 2,
                sizes: vec![3]
            }
            .infer(&[&t]),
            Err(OpError::Attr(_))
        ));
        let s = Split {
            axis: 1,
            sizes: vec![3, 5],
        }
        .infer(&[&sym(&["N", "8"])])
        .unwrap();
        assert_eq!(s[1].to_string(), "f32[N,5]");
        assert!(matches!(
            Split {
                axis: 0,
                sizes: vec![1]
            }
            .infer(&[&sym(&["N", "8"])]),
            Err(OpError::Shape(_))
        ));
    }

    #[test]
    fn slice_onnx_semantics() {
        let v = f64t(&[5], &[0., 1., 2., 3., 4.]);
        let s = |st: i64, en: i64, step: i64| {
            run1(&Slice::new(vec![st], vec![en], vec![], vec![step]), &v)
        };
        assert_eq!(s(1, 3, 1), f64t(&[2], &[1., 2.]));
        assert_eq!(s(-2, i64::MAX, 1), f64t(&[2], &[3., 4.]));
        assert_eq!(s(0, 100, 2), f64t(&[3], &[0., 2., 4.]));
        assert_eq!(s(-1, i64::MIN, -1), f64t(&[5], &[4., 3., 2., 1., 0.]));
        assert_eq!(s(4, 0, -2), f64t(&[2], &[4., 2.]));
        assert_eq!(s(100, -100, -3), f64t(&[2], &[4., 1.]));
        assert_eq!(s(3, 1, 1).shape(), [0]);
        assert_eq!(s(0, 5, i64::MIN), f64t(&[0], &[]));
        // 2-D with explicit axes: rows reversed, columns 1.. of [[1,2,3],[4,5,6]].
        let y = run1(
            &Slice::new(
                vec![-1, 1],
                vec![i64::MIN, i64::MAX],
                vec![0, -1],
                vec![-1, 1],
            ),
            &m23(),
        );
        assert_eq!(y, f64t(&[2, 2], &[5., 6., 2., 3.]));
        let big = i64t(&[3], &[i64::MIN, 1, i64::MAX]);
        assert_eq!(
            run1(&Slice::new(vec![0], vec![3], vec![], vec![2]), &big),
            i64t(&[2], &[i64::MIN, i64::MAX])
        );
    }

    #[test]
    fn slice_infer() {
        let x = sym(&["N", "10"]);
        let op = Slice::new(vec![2], vec![-2], vec![1], vec![]);
        assert_eq!(op.infer(&[&x]).unwrap()[0].to_string(), "f32[N,6]");
        let whole = Slice::new(vec![0], vec![i64::MAX], vec![0], vec![]);
        assert_eq!(whole.infer(&[&x]).unwrap()[0].to_string(), "f32[N,10]");
        let part = Slice::new(vec![1], vec![i64::MAX], vec![0], vec![]);
        assert!(matches!(part.infer(&[&x]), Err(OpError::Shape(_))));
        let t = m23().ty();
        let bad = |op: Slice| matches!(op.infer(&[&t]), Err(OpError::Attr(_)));
        assert!(bad(Slice::new(vec![0], vec![1], vec![0], vec![0])));
        assert!(bad(Slice::new(vec![0], vec![1, 2], vec![], vec![])));
        assert!(bad(Slice::new(vec![0, 0], vec![1, 1], vec![1, -1], vec![])));
        assert!(bad(Slice::new(vec![0], vec![1], vec![2], vec![])));
        assert!(bad(Slice::new(vec![0], vec![1], vec![0], vec![1, 1])));
    }

    #[test]
    fn gather_axes_and_errors() {
        let data = f64t(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
        let idx = i64t(&[2, 2], &[0, -1, 1, 0]);
        let y = run(&Gather { axis: 0 }, &[&data, &idx]).remove(0);
        assert_eq!(y, f64t(&[2, 2, 2], &[1., 2., 5., 6., 3., 4., 1., 2.]));
        let idx1 = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[3]), vec![1, -2, 1]).unwrap());
        let y = run(&Gather { axis: 1 }, &[&data, &idx1]).remove(0);
        assert_eq!(y, f64t(&[3, 3], &[2., 1., 2., 4., 3., 4., 6., 5., 6.]));
        let scalar = i64t(&[], &[-1]);
        assert_eq!(
            run(&Gather { axis: 0 }, &[&data, &scalar]).remove(0),
            f64t(&[2], &[5., 6.])
        );
        let big = i64t(&[2], &[i64::MAX, (1 << 53) + 1]);
        assert_eq!(
            run(&Gather { axis: 0 }, &[&big, &i64t(&[1], &[1])]).remove(0),
            i64t(&[1], &[(1 << 53) + 1])
        );
        let e = Gather { axis: 0 }
            .eval(&[&data, &i64t(&[2], &[0, 3])])
            .unwrap_err();
        assert!(
            matches!(&e, OpError::Eval(m) if m.contains("index 3")),
            "{e}"
        );
        let e = Gather { axis: 1 }
            .eval(&[&data, &i64t(&[1], &[-3])])
            .unwrap_err();
        assert!(matches!(&e, OpError::Eval(m) if m.contains("-3")), "{e}");
        let t = data.ty();
        let f = TensorType::concrete(DType::F32, &[1]);
        assert!(matches!(
            Gather { axis: 0 }.infer(&[&t, &f]),
            Err(OpError::DType(_))
        ));
        assert!(matches!(
            Gather { axis: 2 }.infer(&[&t, &idx.ty()]),
            Err(OpError::Attr(_))
        ));
        let ids = sym(&["N", "S"]).with_dtype(DType::I64);
        let emb = Gather { axis: 0 }
            .infer(&[&sym(&["100", "16"]), &ids])
            .unwrap();
        assert_eq!(emb[0].to_string(), "f32[N,S,16]");
    }

    #[test]
    fn pad_modes_by_hand() {
        let x = f64t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        // One row above, one column on each side.
        let pads = vec![1, 1, 0, 1];
        let c = run1(&Pad::new(PadMode::Constant, pads.clone(), 9.0), &x);
        #[rustfmt::skip]
        let want = [9., 9., 9., 9., 9.,
                    9., 1., 2., 3., 9.,
                    9., 4., 5., 6., 9.];
        assert_eq!(c, f64t(&[3, 5], &want));
        let r = run1(&Pad::new(PadMode::Reflect, pads.clone(), 0.0), &x);
        #[rustfmt::skip]
        let want = [5., 4., 5., 6., 5.,
                    2., 1., 2., 3., 2.,
                    5., 4., 5., 6., 5.];
        assert_eq!(r, f64t(&[3, 5], &want));
        let e = run1(&Pad::new(PadMode::Edge, vec![0, 2, 1, 0], 0.0), &x);
        #[rustfmt::skip]
        let want = [1., 1., 1., 2., 3.,
                    4., 4., 4., 5., 6.,
                    4., 4., 4., 5., 6.];
        assert_eq!(e, f64t(&[3, 5], &want));
        // Negative pads crop: drop the first column, add a zero row below.
        let n = run1(&Pad::new(PadMode::Constant, vec![0, -1, 1, 0], 0.0), &x);
        assert_eq!(n, f64t(&[3, 2], &[2., 3., 5., 6., 0., 0.]));
        let b = Tensor::Bool(ArrayD::from_shape_vec(IxDyn(&[1]), vec![true]).unwrap());
        let pb = run1(&Pad::new(PadMode::Constant, vec![1, 0], 0.0), &b);
        assert_eq!(
            pb,
            Tensor::Bool(ArrayD::from_shape_vec(IxDyn(&[2]), vec![false, true]).unwrap())
        );
        let big = i64t(&[1], &[i64::MAX]);
        assert_eq!(
            run1(&Pad::new(PadMode::Edge, vec![0, 1], 0.0), &big),
            i64t(&[2], &[i64::MAX; 2])
        );
    }

    #[test]
    fn pad_wrap_and_runtime_fill() {
        let x = f64t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let w = run1(&Pad::new(PadMode::Wrap, vec![0, 1, 1, 2], 0.0), &x);
        #[rustfmt::skip]
        let want = [3., 1., 2., 3., 1., 2.,
                    6., 4., 5., 6., 4., 5.,
                    3., 1., 2., 3., 1., 2.];
        assert_eq!(w, f64t(&[3, 6], &want));
        // The second input overrides the `value` attribute.
        let fill = f64t(&[], &[-7.]);
        let c = run(
            &Pad::new(PadMode::Constant, vec![0, 0, 0, 1], 9.0),
            &[&x, &fill],
        )
        .remove(0);
        assert_eq!(c, f64t(&[2, 4], &[1., 2., 3., -7., 4., 5., 6., -7.]));
        let t = x.ty();
        let pad = Pad::new(PadMode::Constant, vec![0, 0, 0, 1], 0.0);
        let f32_fill = TensorType::concrete(DType::F32, &[]);
        assert!(matches!(
            pad.infer(&[&t, &f32_fill]),
            Err(OpError::DType(_))
        ));
        let two = TensorType::concrete(DType::F64, &[2]);
        assert!(matches!(pad.infer(&[&t, &two]), Err(OpError::Shape(_))));
        let e = Pad::new(PadMode::Wrap, vec![1, 0], 0.0)
            .infer(&[&TensorType::concrete(DType::F32, &[0])]);
        assert!(matches!(e, Err(OpError::Shape(_))));
        roundtrip(&Pad::new(PadMode::Wrap, vec![1, 1], 0.0));
    }

    #[test]
    fn pad_errors() {
        let t = TensorType::concrete(DType::F32, &[2, 3]);
        let err = |m: PadMode, p: Vec<i64>| Pad::new(m, p, 0.0).infer(&[&t]).unwrap_err();
        assert!(matches!(
            err(PadMode::Reflect, vec![2, 0, 0, 0]),
            OpError::Shape(_)
        ));
        assert!(matches!(
            err(PadMode::Reflect, vec![0, 0, 0, 3]),
            OpError::Shape(_)
        ));
        assert!(matches!(
            err(PadMode::Constant, vec![0, 0, 0]),
            OpError::Attr(_)
        ));
        assert!(matches!(
            err(PadMode::Constant, vec![0, -4, 0, 0]),
            OpError::Shape(_)
        ));
        let e = Pad::new(PadMode::Edge, vec![1, 0], 0.0)
            .infer(&[&TensorType::concrete(DType::F32, &[0])]);
        assert!(matches!(e, Err(OpError::Shape(_))));
        let s = sym(&["N", "3"]);
        let ok = Pad::new(PadMode::Constant, vec![0, 1, 0, 1], 0.0)
            .infer(&[&s])
            .unwrap();
        assert_eq!(ok[0].to_string(), "f32[N,5]");
        assert!(matches!(
            Pad::new(PadMode::Constant, vec![1, 0, 0, 0], 0.0).infer(&[&s]),
            Err(OpError::Shape(_))
        ));
    }

    #[test]
    fn attrs_roundtrip_and_defaults() {
        roundtrip(&Concat { axis: -1 });
        roundtrip(&Split {
            axis: 1,
            sizes: vec![2, 3],
        });
        roundtrip(&Slice::new(
            vec![0, -1],
            vec![i64::MAX, i64::MIN],
            vec![],
            vec![],
        ));
        roundtrip(&Slice::new(vec![1], vec![2], vec![1], vec![-1]));
        roundtrip(&Gather { axis: 1 });
        roundtrip(&Pad::new(PadMode::Reflect, vec![1, 1], 0.0));
        roundtrip(&Pad::new(PadMode::Constant, vec![0, 2], -1.5));
        let mut r = AttrReader::new(vec![(
            "pads".into(),
            crate::attr::AttrValue::Ints(vec![1, 1]),
        )]);
        assert_eq!(
            Pad::parse("pad", &mut r).unwrap(),
            Pad::new(PadMode::Constant, vec![1, 1], 0.0)
        );
        let mut r = AttrReader::new(vec![
            ("mode".into(), crate::attr::AttrValue::Str("mirror".into())),
            ("pads".into(), crate::attr::AttrValue::Ints(vec![])),
        ]);
        assert!(Pad::parse("pad", &mut r).is_err());
        let mut r = AttrReader::default();
        assert!(Concat::parse("concat", &mut r).is_err());
        assert!(Split::parse("split", &mut r).is_err());
        assert_eq!(Gather::parse("gather", &mut r).unwrap(), Gather { axis: 0 });
        let mut w = AttrWriter::default();
        Pad::new(PadMode::Edge, vec![0, 0], 0.0).write_attrs(&mut w);
        let names: Vec<&str> = w.items.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["mode", "pads", "value"]);
        assert_eq!(w.items[0].1, crate::attr::AttrValue::Str("edge".into()));
        let mut w = AttrWriter::default();
        Slice::new(vec![0], vec![1], vec![], vec![]).write_attrs(&mut w);
        let names: Vec<&str> = w.items.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["starts", "ends", "axes", "steps"]);
    }
}
