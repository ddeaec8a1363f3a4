//! Shape ops that move no data, or move it by a fixed rule: reshape, flatten,
//! transpose, expand, squeeze, unsqueeze; plus cast and constant. Ops that
//! select or combine data along an axis live in [`crate::ops::movement`] and are
//! re-exported here.
//!
//! Every data-movement `eval` works on the tensor's own element type (through
//! `map_array!`), never through f64, so i64 values above 2^53 survive.

use crate::grad::{unsupported, GradCtx, GradResult};
use crate::graph::ValueId;
use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::dtype::{DType, Narrow};
use crate::map_array;
use crate::narrow::RoundMode;
use crate::op::{
    attr_err, dtype_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult,
};
use crate::ops::{axis_or_err, broadcast_shapes, concrete};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

pub use crate::ops::movement::{Concat, Gather, Pad, PadMode, Slice, Split};

/// Copy `a` into row-major order with dims `dims` (same element count).
pub(crate) fn reshape_arr<A: Clone>(a: &ArrayD<A>, dims: &[usize]) -> OpResult<ArrayD<A>> {
    a.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(dims))
        .map_err(|e| OpError::Eval(format!("cannot reshape {:?} to {dims:?}: {e}", a.shape())))
}

/// Run `infer` on the runtime types and return the first output's dims, so
/// that `eval` re-checks everything it relies on instead of panicking.
pub(crate) fn out_dims<T: OpDef>(op: &T, inputs: &[&Tensor]) -> OpResult<Vec<usize>> {
    let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let refs: Vec<&TensorType> = tys.iter().collect();
    let out = op.infer(&refs)?;
    out.first()
        .and_then(|t| t.shape.concrete())
        .ok_or_else(|| OpError::Eval(format!("{} produced no concrete output", op.spelling())))
}

/// An element count as a known factor times a multiset of symbols.
fn count_of<'a>(dims: impl IntoIterator<Item = &'a Dim>) -> OpResult<(usize, Vec<Arc<str>>)> {
    let mut known = 1usize;
    let mut syms = Vec::new();
    for d in dims {
        match d {
            Dim::Known(n) => {
                known = known
                    .checked_mul(*n)
                    .ok_or_else(|| OpError::Shape("element count overflows".into()))?
            }
            Dim::Sym(s) => syms.push(s.clone()),
        }
    }
    syms.sort();
    Ok((known, syms))
}

/// The product of `dims` as one dim: a number, or a lone symbol times ones.
fn dim_product(dims: &[Dim]) -> OpResult<Option<Dim>> {
    let (known, syms) = count_of(dims)?;
    Ok(match syms.as_slice() {
        [] => Some(Dim::Known(known)),
        _ if known == 0 => Some(Dim::Known(0)),
        [s] if known == 1 => Some(Dim::Sym(s.clone())),
        _ => None,
    })
}

/// Reshape to `shape`: `0` copies the input dim at that position, `-1` is
/// inferred from the element count (at most one).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reshape {
    pub shape: Vec<i64>,
}

impl Reshape {
    pub fn new(shape: Vec<i64>) -> Reshape {
        Reshape { shape }
    }
    fn out_shape(&self, x: &TensorType) -> OpResult<Shape> {
        let in_dims = x.shape.dims();
        let mut out: Vec<Option<Dim>> = Vec::with_capacity(self.shape.len());
        let mut infer_at = None;
        for (i, &s) in self.shape.iter().enumerate() {
            match s {
                -1 if infer_at.is_some() => {
                    return attr_err(
                        "shape",
                        format!("at most one -1 is allowed, found {:?}", self.shape),
                    )
                }
                -1 => {
                    infer_at = Some(i);
                    out.push(None);
                }
                0 => match in_dims.get(i) {
                    Some(d) => out.push(Some(d.clone())),
                    None => {
                        return attr_err(
                            "shape",
                            format!(
                                "0 at position {i} copies an input dim, but the input is {}",
                                x.shape
                            ),
                        )
                    }
                },
                s if s < 0 => {
                    return attr_err(
                        "shape",
                        format!("invalid dim {s} (use -1 to infer, 0 to copy)"),
                    )
                }
                s => out.push(Some(Dim::Known(s as usize))),
            }
        }
        let (in_known, in_syms) = count_of(in_dims)?;
        let (out_known, out_syms) = count_of(out.iter().flatten())?;
        let mismatch = || {
            shape_err(format!(
                "cannot reshape {} ({} elements) to {:?}",
                x.shape,
                count_str(in_known, &in_syms),
                self.shape
            ))
        };
        let inferred = if in_known == 0 {
            // Zero elements: any target with a zero factor fits; -1 becomes 0.
            match infer_at {
                Some(_) if out_known == 0 => {
                    return shape_err(format!(
                        "cannot infer -1 in {:?}: the other dims contain 0",
                        self.shape
                    ))
                }
                Some(_) => Some(0),
                None if out_known == 0 => None,
                None => return mismatch(),
            }
        } else {
            if in_syms != out_syms {
                // Symbols that are not copied through cannot be counted.
                concrete(x, "reshape")?;
                return mismatch();
            }
            match infer_at {
                Some(_) if out_known == 0 || in_known % out_known != 0 => return mismatch(),
                Some(_) => Some(in_known / out_known),
                None if in_known != out_known => return mismatch(),
                None => None,
            }
        };
        Ok(Shape(
            out.into_iter()
                .map(|d| d.unwrap_or(Dim::Known(inferred.unwrap_or(0))))
                .collect(),
        ))
    }
}

fn count_str(known: usize, syms: &[Arc<str>]) -> String {
    let mut parts: Vec<String> = syms.iter().map(|s| s.to_string()).collect();
    if known != 1 || parts.is_empty() {
        parts.insert(0, known.to_string());
    }
    parts.join("*")
}

impl OpDef for Reshape {
    const SPELLINGS: &'static [&'static str] = &["reshape"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Reshape {
            shape: attrs.req_ints("shape")?,
        })
    }
    fn spelling(&self) -> &'static str {
        "reshape"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("shape", &self.shape);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        Ok(vec![inputs[0].with_shape(self.out_shape(inputs[0])?)])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["reshape"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        cx.view_grad(inputs[0], dout[0])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        Ok(vec![map_array!(inputs[0], a => reshape_arr(a, &dims)?)])
    }
}

/// Flatten to 2-D: `[prod(dims[..axis]), prod(dims[axis..])]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Flatten {
    pub axis: i64,
}

impl OpDef for Flatten {
    const SPELLINGS: &'static [&'static str] = &["flatten"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Flatten {
            axis: attrs.int("axis", 1)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "flatten"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        let r = x.rank() as i64;
        // Unlike most axes, `rank` itself is valid here (everything goes left).
        let a = if self.axis < 0 {
            self.axis + r
        } else {
            self.axis
        };
        if !(0..=r).contains(&a) {
            return attr_err(
                "axis",
                format!("axis {} is out of range for rank {r}", self.axis),
            );
        }
        let (lo, hi) = x.shape.dims().split_at(a as usize);
        match (dim_product(lo)?, dim_product(hi)?) {
            (Some(p), Some(q)) => Ok(vec![x.with_shape(Shape::from(vec![p, q]))]),
            _ => {
                concrete(x, "flatten")?;
                shape_err("flatten: unrepresentable product")
            }
        }
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["flatten"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        cx.view_grad(inputs[0], dout[0])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        Ok(vec![map_array!(inputs[0], a => reshape_arr(a, &dims)?)])
    }
}

/// Permute dimensions; an empty `perm` reverses them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transpose {
    pub perm: Vec<i64>,
}

impl Transpose {
    pub fn new(perm: Vec<i64>) -> Transpose {
        Transpose { perm }
    }
    fn resolve(&self, rank: usize) -> OpResult<Vec<usize>> {
        if self.perm.is_empty() {
            return Ok((0..rank).rev().collect());
        }
        let bad = || {
            attr_err(
                "perm",
                format!("{:?} is not a permutation of 0..{rank}", self.perm),
            )
        };
        if self.perm.len() != rank {
            return bad();
        }
        let mut seen = vec![false; rank];
        for &p in &self.perm {
            match usize::try_from(p).ok().filter(|&p| p < rank) {
                Some(p) if !seen[p] => seen[p] = true,
                _ => return bad(),
            }
        }
        Ok(self.perm.iter().map(|&p| p as usize).collect())
    }
}

impl OpDef for Transpose {
    const SPELLINGS: &'static [&'static str] = &["transpose"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Transpose {
            perm: attrs.ints("perm", &[])?,
        })
    }
    fn spelling(&self) -> &'static str {
        "transpose"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("perm", &self.perm);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        let perm = self.resolve(x.rank())?;
        let dims = x.shape.dims();
        Ok(vec![x.with_shape(Shape(
            perm.iter().map(|&p| dims[p].clone()).collect(),
        ))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["transpose"];
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
        if !cx.ty(inputs[0]).dtype.is_float() {
            return Ok(vec![None]);
        }
        let perm = self
            .resolve(cx.ty(inputs[0]).rank())
            .or_else(|e| unsupported("transpose", e.to_string()))?;
        let mut inv = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        Ok(vec![Some(cx.transpose(dy, &inv)?)])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        let perm = self.resolve(inputs[0].shape().len())?;
        let out = map_array!(inputs[0], a => {
            a.view().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned()
        });
        Ok(vec![out])
    }
}

/// Numpy-broadcast the input to `shape` (ONNX Expand).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Expand {
    pub shape: Vec<i64>,
}

impl OpDef for Expand {
    const SPELLINGS: &'static [&'static str] = &["expand"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Expand {
            shape: attrs.req_ints("shape")?,
        })
    }
    fn spelling(&self) -> &'static str {
        "expand"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("shape", &self.shape);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let mut target = Vec::with_capacity(self.shape.len());
        for &d in &self.shape {
            match usize::try_from(d) {
                Ok(n) => target.push(n),
                Err(_) => return attr_err("shape", format!("dims must be >= 0, found {d}")),
            }
        }
        let out = broadcast_shapes(&inputs[0].shape, &Shape::from_dims(&target))?;
        Ok(vec![inputs[0].with_shape(out)])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["expand"];
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
        if !cx.ty(inputs[0]).dtype.is_float() {
            return Ok(vec![None]);
        }
        let s = cx.ty(inputs[0]).shape;
        Ok(vec![Some(cx.sum_to(dy, &s)?)])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        let err = || OpError::Eval(format!("cannot expand {:?} to {dims:?}", inputs[0].shape()));
        let out = map_array!(inputs[0], a => {
            a.broadcast(dims.as_slice()).ok_or_else(err)?.as_standard_layout().into_owned()
        });
        Ok(vec![out])
    }
}

/// Normalise `axes` against `rank`, rejecting duplicates.
fn unique_axes(axes: &[i64], rank: usize) -> OpResult<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = axis_or_err("axes", a, rank)?;
        if out.contains(&n) {
            return attr_err("axes", format!("axis {a} is listed twice in {axes:?}"));
        }
        out.push(n);
    }
    Ok(out)
}

/// Remove size-1 dims: the listed ones, or all of them when `axes` is empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Squeeze {
    pub axes: Vec<i64>,
}

impl OpDef for Squeeze {
    const SPELLINGS: &'static [&'static str] = &["squeeze"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Squeeze {
            axes: attrs.ints("axes", &[])?,
        })
    }
    fn spelling(&self) -> &'static str {
        "squeeze"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("axes", &self.axes);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        let dims = x.shape.dims();
        let axes = if self.axes.is_empty() {
            if dims.iter().any(|d| matches!(d, Dim::Sym(_))) {
                // A symbol might be bound to 1, which would change the result rank.
                concrete(x, "squeeze without axes")?;
            }
            (0..dims.len())
                .filter(|&i| dims[i] == Dim::Known(1))
                .collect()
        } else {
            let axes = unique_axes(&self.axes, x.rank())?;
            for &a in &axes {
                if dims[a] != Dim::Known(1) {
                    return shape_err(format!(
                        "cannot squeeze axis {a} of {}: its size is {}, not 1",
                        x.shape, dims[a]
                    ));
                }
            }
            axes
        };
        let out = dims
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, d)| d.clone());
        Ok(vec![x.with_shape(Shape(out.collect()))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["squeeze"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        cx.view_grad(inputs[0], dout[0])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        Ok(vec![map_array!(inputs[0], a => reshape_arr(a, &dims)?)])
    }
}

/// Insert size-1 dims at `axes`, numbered in the output.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unsqueeze {
    pub axes: Vec<i64>,
}

impl OpDef for Unsqueeze {
    const SPELLINGS: &'static [&'static str] = &["unsqueeze"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Unsqueeze {
            axes: attrs.req_ints("axes")?,
        })
    }
    fn spelling(&self) -> &'static str {
        "unsqueeze"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("axes", &self.axes);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        let rank = x.rank() + self.axes.len();
        let axes = unique_axes(&self.axes, rank)?;
        let mut rest = x.shape.dims().iter();
        let out = (0..rank).map(|i| {
            if axes.contains(&i) {
                Dim::Known(1)
            } else {
                rest.next().cloned().unwrap_or(Dim::Known(1))
            }
        });
        Ok(vec![x.with_shape(Shape(out.collect()))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Injective
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["unsqueeze"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        cx.view_grad(inputs[0], dout[0])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let dims = out_dims(self, inputs)?;
        Ok(vec![map_array!(inputs[0], a => reshape_arr(a, &dims)?)])
    }
}

/// Element type conversion with ONNX Cast semantics (see [`Tensor::cast_with`]).
/// `saturate` matters only for the float8 and e8m0 targets and `round_mode`
/// only for e8m0; elsewhere they hold their defaults (1 and "up") and are not
/// printed, so equal casts print equally.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cast {
    pub to: DType,
    pub saturate: bool,
    pub round_mode: RoundMode,
}

impl Cast {
    /// A cast with the ONNX defaults (saturating, e8m0 rounding up).
    pub fn new(to: DType) -> Cast {
        Cast {
            to,
            saturate: true,
            round_mode: RoundMode::Up,
        }
    }
    /// A cast with explicit saturation and e8m0 rounding, normalised to the
    /// defaults where the target ignores them.
    pub fn with_modes(to: DType, saturate: bool, round_mode: RoundMode) -> Cast {
        Cast {
            to,
            saturate: saturate || !Cast::uses_saturate(to),
            round_mode: if Cast::uses_round_mode(to) {
                round_mode
            } else {
                RoundMode::Up
            },
        }
    }
    /// Targets whose overflow behaviour `saturate` chooses.
    pub fn uses_saturate(to: DType) -> bool {
        matches!(
            to,
            DType::Narrow(
                Narrow::F8E4M3FN
                    | Narrow::F8E4M3FNUZ
                    | Narrow::F8E5M2
                    | Narrow::F8E5M2FNUZ
                    | Narrow::F8E8M0
            )
        )
    }
    pub fn uses_round_mode(to: DType) -> bool {
        to == DType::Narrow(Narrow::F8E8M0)
    }
}

impl OpDef for Cast {
    const SPELLINGS: &'static [&'static str] = &["cast"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let to = attrs.req_dtype("to")?;
        let saturate = match attrs.int("saturate", 1)? {
            0 => false,
            1 => true,
            v => {
                return Err(AttrError {
                    attr: "saturate".into(),
                    msg: format!("expected 0 or 1, found {v}"),
                })
            }
        };
        let mode = attrs.str("round_mode", "up")?;
        let Some(round_mode) = RoundMode::from_name(&mode) else {
            return Err(AttrError {
                attr: "round_mode".into(),
                msg: format!("expected \"up\", \"down\" or \"nearest\", found {mode:?}"),
            });
        };
        Ok(Cast::with_modes(to, saturate, round_mode))
    }
    fn spelling(&self) -> &'static str {
        "cast"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.dtype("to", self.to);
        if Cast::uses_saturate(self.to) {
            w.int("saturate", i64::from(self.saturate));
        }
        if Cast::uses_round_mode(self.to) {
            w.str("round_mode", self.round_mode.name());
        }
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let from = inputs[0].dtype;
        // A cast would have to invent or drop scale and zero point.
        if from.is_quantized() || self.to.is_quantized() {
            return dtype_err(format!(
                "cast from {from} to {} involves a quantized type; use quantize/dequantize",
                self.to
            ));
        }
        Ok(vec![inputs[0].with_dtype(self.to)])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Elementwise
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["cast"];
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
        let tx = cx.ty(inputs[0]);
        if !tx.dtype.is_float() || !cx.ty(dy).dtype.is_float() {
            return Ok(vec![None]);
        }
        if tx.dtype == cx.ty(dy).dtype {
            return Ok(vec![Some(dy)]);
        }
        Ok(vec![Some(cx.add(Cast::new(tx.dtype), &[dy])?)])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        if self.to.is_quantized() || inputs[0].dtype().is_quantized() {
            return Err(OpError::Eval(format!(
                "cannot cast between {} and quantized {}",
                inputs[0].dtype(),
                self.to
            )));
        }
        Ok(vec![inputs[0].cast_with(
            self.to,
            self.saturate,
            self.round_mode,
        )])
    }
}

/// A constant tensor; no inputs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Constant {
    pub value: Tensor,
}

impl OpDef for Constant {
    const SPELLINGS: &'static [&'static str] = &["constant"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Constant {
            value: attrs.req_tensor("value")?,
        })
    }
    fn spelling(&self) -> &'static str {
        "constant"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.tensor("value", &self.value);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 0)?;
        Ok(vec![self.value.ty()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 0)?;
        Ok(vec![self.value.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttrValue;

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
    fn run<T: OpDef>(op: &T, x: &Tensor) -> Tensor {
        let ty = op.infer(&[&x.ty()]).unwrap();
        let out = op.eval(&[x]).unwrap().remove(0);
        assert_eq!(out.ty(), ty[0], "eval agrees with infer");
        out
    }
    fn shape_of<T: OpDef>(op: &T, ty: &TensorType) -> String {
        op.infer(&[ty]).unwrap()[0].to_string()
    }
    use crate::ops::test_util::roundtrip;
    fn seq(n: usize) -> Vec<f64> {
        (0..n).map(|i| i as f64).collect()
    }

    #[test]
    fn reshape_zero_and_minus_one() {
        let x = f64t(&[2, 3, 4], &seq(24));
        let y = run(&Reshape::new(vec![0, -1]), &x);
        assert_eq!(y, f64t(&[2, 12], &seq(24)));
        let y = run(&Reshape::new(vec![-1, 0, 2]), &x);
        assert_eq!(y, f64t(&[4, 3, 2], &seq(24)));
        let y = run(&Reshape::new(vec![24]), &x);
        assert_eq!(y, f64t(&[24], &seq(24)));
        // Scalar and zero-size cases.
        assert_eq!(
            run(&Reshape::new(vec![]), &f64t(&[1, 1], &[7.])),
            f64t(&[], &[7.])
        );
        assert_eq!(
            run(&Reshape::new(vec![-1, 0]), &f64t(&[0, 3], &[])).shape(),
            [0, 3]
        );
        // A row-major read of a transposed (non-standard-layout) input.
        let t = run(&Transpose::new(vec![]), &f64t(&[2, 2], &[1., 2., 3., 4.]));
        assert_eq!(
            run(&Reshape::new(vec![4]), &t),
            f64t(&[4], &[1., 3., 2., 4.])
        );
    }

    #[test]
    fn reshape_symbolic() {
        assert_eq!(
            shape_of(&Reshape::new(vec![0, -1]), &sym(&["N", "1", "28", "28"])),
            "f32[N,784]"
        );
        assert_eq!(
            shape_of(&Reshape::new(vec![0, 0, 2, -1]), &sym(&["N", "S", "8"])),
            "f32[N,S,2,4]"
        );
        assert_eq!(
            shape_of(&Reshape::new(vec![-1, 0]), &sym(&["4", "N"])),
            "f32[4,N]"
        );
        // N is not copied through, so -1 would be 784*N: needs a binding.
        let e = Reshape::new(vec![-1])
            .infer(&[&sym(&["N", "784"])])
            .unwrap_err();
        assert!(
            matches!(&e, OpError::Shape(m) if m.contains("--dim")),
            "{e}"
        );
    }

    #[test]
    fn reshape_errors() {
        let t = TensorType::concrete(DType::F32, &[2, 3]);
        assert!(matches!(
            Reshape::new(vec![4, 2]).infer(&[&t]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            Reshape::new(vec![-1, 4]).infer(&[&t]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            Reshape::new(vec![-1, -1]).infer(&[&t]),
            Err(OpError::Attr(_))
        ));
        assert!(matches!(
            Reshape::new(vec![-2, 3]).infer(&[&t]),
            Err(OpError::Attr(_))
        ));
        assert!(matches!(
            Reshape::new(vec![2, 3, 0]).infer(&[&t]),
            Err(OpError::Attr(_))
        ));
        // Count mismatch is also caught at eval time, without panicking.
        assert!(matches!(
            Reshape::new(vec![5]).eval(&[&f64t(&[2, 3], &seq(6))]),
            Err(OpError::Shape(_))
        ));
    }

    #[test]
    fn flatten_axes() {
        let x = f64t(&[2, 3, 2], &seq(12));
        assert_eq!(run(&Flatten { axis: 1 }, &x), f64t(&[2, 6], &seq(12)));
        assert_eq!(run(&Flatten { axis: 0 }, &x), f64t(&[1, 12], &seq(12)));
        assert_eq!(run(&Flatten { axis: 3 }, &x), f64t(&[12, 1], &seq(12)));
        assert_eq!(run(&Flatten { axis: -1 }, &x), f64t(&[6, 2], &seq(12)));
        assert_eq!(
            shape_of(&Flatten { axis: 1 }, &sym(&["N", "1", "28", "28"])),
            "f32[N,784]"
        );
        assert_eq!(
            shape_of(&Flatten { axis: 2 }, &sym(&["N", "1", "28", "28"])),
            "f32[N,784]"
        );
        assert!(matches!(
            Flatten { axis: 2 }.infer(&[&sym(&["N", "2", "3"])]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            Flatten { axis: 4 }.infer(&[&x.ty()]),
            Err(OpError::Attr(_))
        ));
        assert!(matches!(
            Flatten { axis: -4 }.infer(&[&x.ty()]),
            Err(OpError::Attr(_))
        ));
    }

    #[test]
    fn transpose_values() {
        let x = f64t(&[2, 2], &[1., 2., 3., 4.]);
        assert_eq!(
            run(&Transpose::new(vec![1, 0]), &x),
            f64t(&[2, 2], &[1., 3., 2., 4.])
        );
        assert_eq!(
            run(&Transpose::new(vec![]), &x),
            f64t(&[2, 2], &[1., 3., 2., 4.])
        );
        // x[i,j,k] = 4i + 2j + k; perm [2,0,1] gives y[k,i,j].
        let x = f64t(&[2, 2, 2], &seq(8));
        let y = run(&Transpose::new(vec![2, 0, 1]), &x);
        assert_eq!(y, f64t(&[2, 2, 2], &[0., 2., 4., 6., 1., 3., 5., 7.]));
        assert_eq!(
            shape_of(&Transpose::new(vec![1, 0]), &sym(&["N", "10"])),
            "f32[10,N]"
        );
        let t = TensorType::concrete(DType::F32, &[2, 3, 4]);
        for bad in [vec![0, 1], vec![0, 1, 1], vec![0, 1, 3], vec![0, -1, 1]] {
            assert!(matches!(
                Transpose::new(bad).infer(&[&t]),
                Err(OpError::Attr(_))
            ));
        }
    }

    #[test]
    fn large_i64_survive_movement() {
        let big = [(1i64 << 53) + 1, i64::MAX, i64::MIN, -((1 << 60) + 3)];
        let x = i64t(&[2, 2], &big);
        let y = run(&Reshape::new(vec![4]), &x);
        assert_eq!(y, i64t(&[4], &big));
        let y = run(&Transpose::new(vec![]), &x);
        assert_eq!(y, i64t(&[2, 2], &[big[0], big[2], big[1], big[3]]));
        let y = run(&Unsqueeze { axes: vec![0] }, &x);
        assert_eq!(y, i64t(&[1, 2, 2], &big));
        let y = run(
            &Expand {
                shape: vec![2, 2, 2],
            },
            &x,
        );
        assert_eq!(y.values_f64().len(), 8);
        assert_eq!(y, i64t(&[2, 2, 2], &[big, big].concat()));
    }

    #[test]
    fn expand_broadcasts() {
        let x = f64t(&[3, 1], &[1., 2., 3.]);
        let y = run(
            &Expand {
                shape: vec![2, 1, 4],
            },
            &x,
        );
        let row = |v: f64| [v; 4];
        let want: Vec<f64> = [row(1.), row(2.), row(3.)].concat().repeat(2);
        assert_eq!(y, f64t(&[2, 3, 4], &want));
        // Shape dims of 1 keep the input's size, as in ONNX.
        assert_eq!(run(&Expand { shape: vec![1, 1] }, &x), x);
        assert_eq!(
            shape_of(&Expand { shape: vec![1, 4] }, &sym(&["N", "1"])),
            "f32[N,4]"
        );
        assert!(matches!(
            Expand { shape: vec![2, 4] }.infer(&[&x.ty()]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            Expand { shape: vec![-1] }.infer(&[&x.ty()]),
            Err(OpError::Attr(_))
        ));
    }

    #[test]
    fn squeeze_unsqueeze() {
        let x = f64t(&[1, 3, 1], &[1., 2., 3.]);
        assert_eq!(
            run(&Squeeze { axes: vec![] }, &x),
            f64t(&[3], &[1., 2., 3.])
        );
        assert_eq!(
            run(&Squeeze { axes: vec![-1] }, &x),
            f64t(&[1, 3], &[1., 2., 3.])
        );
        assert!(matches!(
            Squeeze { axes: vec![1] }.infer(&[&x.ty()]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            Squeeze { axes: vec![0, 0] }.infer(&[&x.ty()]),
            Err(OpError::Attr(_))
        ));
        assert!(matches!(
            Squeeze { axes: vec![3] }.infer(&[&x.ty()]),
            Err(OpError::Attr(_))
        ));
        assert_eq!(
            shape_of(&Squeeze { axes: vec![1] }, &sym(&["N", "1", "4"])),
            "f32[N,4]"
        );
        assert!(matches!(
            Squeeze { axes: vec![] }.infer(&[&sym(&["N", "1"])]),
            Err(OpError::Shape(_))
        ));
        let v = f64t(&[3], &[1., 2., 3.]);
        assert_eq!(
            run(&Unsqueeze { axes: vec![0, -1] }, &v),
            f64t(&[1, 3, 1], &[1., 2., 3.])
        );
        assert_eq!(run(&Unsqueeze { axes: vec![1] }, &v).shape(), [3, 1]);
        assert_eq!(
            shape_of(&Unsqueeze { axes: vec![1] }, &sym(&["N", "4"])),
            "f32[N,1,4]"
        );
        assert!(matches!(
            Unsqueeze { axes: vec![2] }.infer(&[&v.ty()]),
            Err(OpError::Attr(_))
        ));
        assert!(matches!(
            Unsqueeze { axes: vec![0, -3] }.infer(&[&v.ty()]),
            Err(OpError::Attr(_))
        ));
    }

    #[test]
    fn cast_semantics() {
        let x = Tensor::f32(&[5], vec![2.7, -2.7, 0.0, 0.4, -0.0]);
        let i = run(&Cast::new(DType::I32), &x);
        assert_eq!(
            i,
            Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[5]), vec![2, -2, 0, 0, 0]).unwrap())
        );
        let b = run(&Cast::new(DType::Bool), &x);
        let want = vec![true, true, false, true, false];
        assert_eq!(
            b,
            Tensor::Bool(ArrayD::from_shape_vec(IxDyn(&[5]), want).unwrap())
        );
        let big = i64t(&[1], &[(1 << 53) + 1]);
        assert_eq!(run(&Cast::new(DType::I64), &big), big);
        assert_eq!(
            run(&Cast::new(DType::F64), &i64t(&[1], &[-3])),
            f64t(&[1], &[-3.])
        );
        let q = DType::QI8(crate::dtype::QuantParams::new(0.5, 0));
        assert!(matches!(
            Cast::new(q).infer(&[&x.ty()]),
            Err(OpError::DType(_))
        ));
        assert_eq!(
            shape_of(&Cast::new(DType::F16), &sym(&["N", "3"])),
            "f16[N,3]"
        );
    }

    #[test]
    fn constant_op() {
        let v = i64t(&[2], &[1, 2]);
        let c = Constant { value: v.clone() };
        assert_eq!(
            c.infer(&[]).unwrap(),
            vec![TensorType::concrete(DType::I64, &[2])]
        );
        assert_eq!(c.eval(&[]).unwrap(), vec![v.clone()]);
        assert!(matches!(c.infer(&[&v.ty()]), Err(OpError::Arity { .. })));
        assert_eq!(c.fusion_kind(), FusionKind::Opaque);
    }

    #[test]
    fn through_the_op_table() {
        use crate::op::Op;
        let mut r = AttrReader::new(vec![("shape".into(), AttrValue::Ints(vec![0, -1]))]);
        let op = Op::parse("reshape", &mut r).unwrap();
        assert_eq!(op, Op::Reshape(Reshape::new(vec![0, -1])));
        assert_eq!(op.attrs(), vec![("shape", AttrValue::Ints(vec![0, -1]))]);
        let out = op.infer(&[&sym(&["N", "1", "28", "28"])]).unwrap();
        assert_eq!(out[0].to_string(), "f32[N,784]");
        let mut r = AttrReader::new(vec![("axis".into(), AttrValue::Int(0))]);
        assert!(Op::parse("squeeze", &mut r).is_err(), "unknown attribute");
        for s in [
            "reduce_prod",
            "argmin",
            "log_softmax",
            "pad",
            "slice",
            "constant",
        ] {
            assert!(Op::all_spellings().contains(&s));
        }
    }

    #[test]
    fn attrs_roundtrip_and_defaults() {
        roundtrip(&Reshape::new(vec![0, -1]));
        roundtrip(&Flatten { axis: -2 });
        roundtrip(&Transpose::new(vec![]));
        roundtrip(&Transpose::new(vec![1, 0]));
        roundtrip(&Expand { shape: vec![3, 1] });
        roundtrip(&Squeeze { axes: vec![] });
        roundtrip(&Unsqueeze { axes: vec![0, 2] });
        roundtrip(&Cast::new(DType::BF16));
        roundtrip(&Constant {
            value: f64t(&[2], &[0.5, -1.0]),
        });
        let mut r = AttrReader::default();
        assert_eq!(
            Flatten::parse("flatten", &mut r).unwrap(),
            Flatten { axis: 1 }
        );
        assert_eq!(
            Transpose::parse("transpose", &mut r).unwrap(),
            Transpose::new(vec![])
        );
        assert_eq!(
            Squeeze::parse("squeeze", &mut r).unwrap(),
            Squeeze { axes: vec![] }
        );
        assert!(Reshape::parse("reshape", &mut r).is_err());
        assert!(Unsqueeze::parse("unsqueeze", &mut r).is_err());
        assert!(Cast::parse("cast", &mut r).is_err());
        assert!(Constant::parse("constant", &mut r).is_err());
        let mut r = AttrReader::new(vec![("to".into(), AttrValue::Int(1))]);
        assert!(Cast::parse("cast", &mut r).is_err());
        assert_eq!(Reshape::new(vec![]).fusion_kind(), FusionKind::Injective);
        assert_eq!(Cast::new(DType::F32).fusion_kind(), FusionKind::Elementwise);
    }
}
