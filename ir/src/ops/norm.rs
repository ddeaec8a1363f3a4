//! Normalisation ops: softmax / log_softmax, batch_norm (inference form),
//! layer_norm, rms_norm, and dropout (identity at inference).

use crate::grad::{unsupported, GradCtx, GradResult};
use crate::graph::ValueId;
use ndarray::{ArrayD, Axis, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::dtype::DType;
use crate::op::{
    expect_arity, expect_arity_range, shape_err, FusionKind, OpDef, OpError, OpResult,
};
use crate::ops::attention::{accumulate, round_to};
use crate::ops::{axis_or_err, broadcast_shapes, require_float, same_dtype};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

/// Softmax (or log-softmax) along one axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Softmax {
    pub axis: i64,
    pub log: bool,
}

impl Softmax {
    pub fn new(axis: i64, log: bool) -> Softmax {
        Softmax { axis, log }
    }
}

impl OpDef for Softmax {
    const SPELLINGS: &'static [&'static str] = &["softmax", "log_softmax"];

    fn parse(spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Softmax {
            axis: attrs.int("axis", -1)?,
            log: spelling == "log_softmax",
        })
    }
    fn spelling(&self) -> &'static str {
        if self.log {
            "log_softmax"
        } else {
            "softmax"
        }
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        require_float(x, &format!("{} input", self.spelling()))?;
        axis_or_err("axis", self.axis, x.rank())?;
        Ok(vec![x.clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Reduction
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["softmax", "log_softmax"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = (outputs, inputs);
        let Some(dy) = dout[0] else {
            return Ok(vec![None]);
        };
        let y = outputs[0];
        let ax = axis_or_err("axis", self.axis, cx.ty(y).rank())
            .or_else(|e| unsupported(self.spelling(), e.to_string()))?;
        let gx = if self.log {
            // dy - softmax * sum(dy)
            let s = cx.reduce_sum(dy, &[ax], true)?;
            let p = cx.unary(crate::ops::elementwise::UnaryKind::Exp, y)?;
            let ps = cx.mul(p, s)?;
            cx.sub(dy, ps)?
        } else {
            // y * (dy - sum(dy * y))
            let dyy = cx.mul(dy, y)?;
            let s = cx.reduce_sum(dyy, &[ax], true)?;
            let d = cx.sub(dy, s)?;
            cx.mul(y, d)?
        };
        Ok(vec![Some(gx)])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        let ax = axis_or_err("axis", self.axis, x.shape().len())?;
        let mut a = x.to_f64();
        let dt = x.dtype();
        // Half types round each stage (x - max, exp, the sum, the quotient) as
        // ONNX's reference does, so results match it to the ulp; wider types
        // compute in f64 and round once.
        if !self.log && matches!(dt, DType::F16 | DType::BF16) {
            let r = |v: f64| round_to(dt, v);
            for mut lane in a.lanes_mut(Axis(ax)) {
                let m = lane.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                lane.mapv_inplace(|v| r(r(v - m).exp()));
                let e: Vec<f64> = lane.iter().copied().collect();
                let s = accumulate(dt, &e);
                lane.mapv_inplace(|e| e / s);
            }
            return Ok(vec![Tensor::from_f64(dt, a)]);
        }
        for mut lane in a.lanes_mut(Axis(ax)) {
            // Shifting by the lane max keeps exp() from overflowing; the result
            // is unchanged mathematically.
            let m = lane.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let s: f64 = lane.iter().map(|&v| (v - m).exp()).sum();
            if self.log {
                let ls = s.ln();
                lane.mapv_inplace(|v| v - m - ls);
            } else {
                lane.mapv_inplace(|v| (v - m).exp() / s);
            }
        }
        Ok(vec![Tensor::from_f64(x.dtype(), a)])
    }
}

fn check_epsilon(eps: f64) -> Result<(), AttrError> {
    if eps >= 0.0 && eps.is_finite() {
        Ok(())
    } else {
        Err(AttrError {
            attr: "epsilon".into(),
            msg: format!("must be finite and >= 0, found {eps}"),
        })
    }
}

/// Batch normalisation with running statistics (inference form):
/// inputs x [N,C,...], scale, bias, mean, var (each [C]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BatchNorm {
    pub epsilon: F64,
}

impl BatchNorm {
    pub fn new(epsilon: f64) -> BatchNorm {
        BatchNorm {
            epsilon: F64(epsilon),
        }
    }
}

const BN_PARAMS: [&str; 4] = ["scale", "bias", "mean", "var"];

impl OpDef for BatchNorm {
    const SPELLINGS: &'static [&'static str] = &["batch_norm"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let eps = attrs.float("epsilon", 1e-5)?;
        check_epsilon(eps)?;
        Ok(BatchNorm::new(eps))
    }
    fn spelling(&self) -> &'static str {
        "batch_norm"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.float("epsilon", self.epsilon.0);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 5)?;
        check_epsilon(self.epsilon.0)?;
        let x = inputs[0];
        require_float(x, "batch_norm input")?;
        same_dtype(inputs)?;
        if x.rank() < 2 {
            return shape_err(format!(
                "batch_norm input must be [N,C,...], found {}",
                x.shape
            ));
        }
        let c = &x.shape.dims()[1];
        for (name, t) in BN_PARAMS.iter().zip(&inputs[1..]) {
            if t.rank() != 1 || &t.shape.dims()[0] != c {
                return shape_err(format!(
                    "batch_norm {name} must have shape [{c}] to match input {}, found {}",
                    x.shape, t.shape
                ));
            }
        }
        Ok(vec![x.clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Broadcast
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["batch_norm"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        let Some(dy) = dout[0] else {
            return Ok(vec![None; 5]);
        };
        // Inference form: the statistics are inputs, so y is affine in x.
        let x = inputs[0];
        let r = cx.ty(x).rank();
        let dt = cx.ty(x).dtype;
        let c = cx.dims(inputs[1])?[0];
        let mut pd = vec![c];
        pd.resize(r - 1, 1);
        let [scale, bias, mean, var] = [inputs[1], inputs[2], inputs[3], inputs[4]];
        let _ = bias;
        let eps = cx.scalar(self.epsilon.0, dt)?;
        let ve = cx.add2(var, eps)?;
        let inv = cx.unary(crate::ops::elementwise::UnaryKind::Rsqrt, ve)?;
        let inv_b = cx.reshape(inv, &pd)?;
        let scale_b = cx.reshape(scale, &pd)?;
        let mean_b = cx.reshape(mean, &pd)?;
        let xc = cx.sub(x, mean_b)?;
        let k = cx.mul(scale_b, inv_b)?;
        let gx = cx.mul(dy, k)?;
        let axes: Vec<usize> = (0..r).filter(|&a| a != 1).collect();
        let sdy = cx.reduce_sum(dy, &axes, false)?;
        let dyxc = cx.mul(dy, xc)?;
        let sdyxc = cx.reduce_sum(dyxc, &axes, false)?;
        let gscale = cx.mul(sdyxc, inv)?;
        let si = cx.mul(scale, inv)?;
        let gm = cx.mul(sdy, si)?;
        let gmean = cx.neg(gm)?;
        let inv3 = cx.mul(inv, inv)?;
        let inv3 = cx.mul(inv3, si)?;
        let gv = cx.mul(sdyxc, inv3)?;
        let gvar = cx.scale(gv, -0.5)?;
        Ok(vec![
            Some(gx),
            Some(gscale),
            Some(sdy),
            Some(gmean),
            Some(gvar),
        ])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 5)?;
        let x = inputs[0];
        if x.shape().len() < 2 {
            return Err(OpError::Eval("batch_norm input must have rank >= 2".into()));
        }
        let c = x.shape()[1];
        let mut params = Vec::with_capacity(4);
        for (name, t) in BN_PARAMS.iter().zip(&inputs[1..]) {
            if t.shape() != [c] {
                return Err(OpError::Eval(format!(
                    "batch_norm {name} has shape {:?}, expected [{c}]",
                    t.shape()
                )));
            }
            params.push(t.to_f64().iter().copied().collect::<Vec<f64>>());
        }
        let (s, b, m, v) = (&params[0], &params[1], &params[2], &params[3]);
        let eps = self.epsilon.0;
        let mut a = x.to_f64();
        for (ch, mut sub) in a.axis_iter_mut(Axis(1)).enumerate() {
            let d = (v[ch] + eps).sqrt();
            sub.mapv_inplace(|xv| s[ch] * (xv - m[ch]) / d + b[ch]);
        }
        Ok(vec![Tensor::from_f64(x.dtype(), a)])
    }
}

/// Layer normalisation over axes `[axis, rank)`, with scale and optional bias
/// broadcast over those trailing dimensions. With `stats`, it also returns the
/// mean and the inverse standard deviation of each normalised group, shaped
/// like the input with the normalised dimensions set to 1 (ONNX's optional
/// `Mean` / `InvStdDev` outputs, which a backward pass reuses).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LayerNorm {
    pub axis: i64,
    pub epsilon: F64,
    pub stats: bool,
}

impl LayerNorm {
    pub fn new(axis: i64, epsilon: f64) -> LayerNorm {
        LayerNorm {
            axis,
            epsilon: F64(epsilon),
            stats: false,
        }
    }
    /// The same normalisation, also returning the mean and inverse std-dev.
    pub fn with_stats(mut self) -> LayerNorm {
        self.stats = true;
        self
    }
}

/// Type rule shared by layer_norm and rms_norm: x float, scale (and bias)
/// broadcastable to the normalised trailing dims. Returns the normalised axis.
fn infer_trailing_norm(what: &str, axis: i64, inputs: &[&TensorType]) -> OpResult<usize> {
    let x = inputs[0];
    require_float(x, &format!("{what} input"))?;
    same_dtype(inputs)?;
    let ax = axis_or_err("axis", axis, x.rank())?;
    let trailing = Shape(x.shape.dims()[ax..].iter().cloned().collect());
    for (name, t) in ["scale", "bias"].iter().zip(&inputs[1..]) {
        let fits = t.rank() <= trailing.rank()
            && broadcast_shapes(&t.shape, &trailing).is_ok_and(|s| s == trailing);
        if !fits {
            return shape_err(format!(
                "{what} {name} {} does not broadcast to the normalised dims {trailing}",
                t.shape
            ));
        }
    }
    Ok(ax)
}

/// Normalise each group of the trailing dims `[axis, rank)` of `x`:
/// `(x - mean) / sqrt(var + eps) * scale + bias` (`center`), or
/// `x / sqrt(mean(x^2) + eps) * scale` (RMS). Returns y, the per-group means and
/// inverse std-devs (all f64; the stats have the leading dims, then 1s).
fn eval_trailing_norm(
    what: &str,
    axis: i64,
    eps: f64,
    center: bool,
    inputs: &[&Tensor],
) -> OpResult<(ArrayD<f64>, ArrayD<f64>, ArrayD<f64>)> {
    let x = inputs[0];
    let dims = x.shape().to_vec();
    let ax = axis_or_err("axis", axis, dims.len())?;
    let trailing = &dims[ax..];
    let inner: usize = trailing.iter().product();
    let spread = |t: &Tensor, name: &str| -> OpResult<Vec<f64>> {
        let a = t.to_f64();
        let b = a.broadcast(trailing).ok_or_else(|| {
            OpError::Eval(format!(
                "{what} {name} {:?} does not broadcast to {trailing:?}",
                t.shape()
            ))
        })?;
        Ok(b.iter().copied().collect())
    };
    let scale = spread(inputs[1], "scale")?;
    let bias = match inputs.get(2) {
        Some(t) => spread(t, "bias")?,
        None => vec![0.0; inner],
    };
    let xs: Vec<f64> = x.to_f64().iter().copied().collect();
    let mut out = Vec::with_capacity(xs.len());
    let mut means = Vec::new();
    let mut inv_stds = Vec::new();
    if inner > 0 {
        let n = inner as f64;
        for row in xs.chunks(inner) {
            let mean = if center {
                row.iter().sum::<f64>() / n
            } else {
                0.0
            };
            // Population variance, as ONNX LayerNormalization and PyTorch use.
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let d = (var + eps).sqrt();
            means.push(mean);
            inv_stds.push(1.0 / d);
            out.extend(
                row.iter()
                    .enumerate()
                    .map(|(j, v)| (v - mean) / d * scale[j] + bias[j]),
            );
        }
    }
    let stat_dims: Vec<usize> = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < ax { d } else { 1 })
        .collect();
    let err = |e: ndarray::ShapeError| OpError::Eval(e.to_string());
    if inner == 0 {
        let groups: usize = dims[..ax].iter().product();
        means = vec![f64::NAN; groups];
        inv_stds = vec![f64::NAN; groups];
    }
    Ok((
        ArrayD::from_shape_vec(IxDyn(&dims), out).map_err(err)?,
        ArrayD::from_shape_vec(IxDyn(&stat_dims), means).map_err(err)?,
        ArrayD::from_shape_vec(IxDyn(&stat_dims), inv_stds).map_err(err)?,
    ))
}

/// Gradients of layer_norm (`center`) or rms_norm over the trailing axes
/// from `ax`, with respect to x and scale: with xhat the normalised input,
/// r the inverse deviation and g = dy * scale,
/// `dx = r * (g - mean(g) - xhat * mean(g * xhat))` (rms: without `mean(g)`),
/// `dscale = sum_to(dy * xhat)`.
fn trailing_norm_grad(
    cx: &mut GradCtx,
    x: ValueId,
    scale: ValueId,
    dy: ValueId,
    ax: usize,
    eps: f64,
    center: bool,
) -> GradResult<(ValueId, ValueId)> {
    use crate::ops::reduce::{Reduce, ReduceKind};
    let r = cx.ty(x).rank();
    let dt = cx.ty(x).dtype;
    let axes: Vec<i64> = (ax..r).map(|a| a as i64).collect();
    let mean = |cx: &mut GradCtx, v: ValueId| {
        cx.add(Reduce::new(ReduceKind::Mean, axes.clone(), true), &[v])
    };
    let xc = if center {
        let mu = mean(cx, x)?;
        cx.sub(x, mu)?
    } else {
        x
    };
    let sq = cx.mul(xc, xc)?;
    let var = mean(cx, sq)?;
    let e = cx.scalar(eps, dt)?;
    let ve = cx.add2(var, e)?;
    let inv = cx.unary(crate::ops::elementwise::UnaryKind::Rsqrt, ve)?;
    let xhat = cx.mul(xc, inv)?;
    let g = cx.mul(dy, scale)?;
    let gx = cx.mul(g, xhat)?;
    let mgx = mean(cx, gx)?;
    let t = cx.mul(xhat, mgx)?;
    let mut inner = cx.sub(g, t)?;
    if center {
        let mg = mean(cx, g)?;
        inner = cx.sub(inner, mg)?;
    }
    let dx = cx.mul(inv, inner)?;
    let dyx = cx.mul(dy, xhat)?;
    let dscale = cx.sum_to(dyx, &cx.ty(scale).shape)?;
    Ok((dx, dscale))
}

impl OpDef for LayerNorm {
    const SPELLINGS: &'static [&'static str] = &["layer_norm"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let axis = attrs.int("axis", -1)?;
        let eps = attrs.float("epsilon", 1e-5)?;
        check_epsilon(eps)?;
        let stats = attrs.int("stats", 0)? != 0;
        Ok(LayerNorm {
            stats,
            ..LayerNorm::new(axis, eps)
        })
    }
    fn spelling(&self) -> &'static str {
        "layer_norm"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
        w.float("epsilon", self.epsilon.0);
        w.int("stats", i64::from(self.stats));
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity_range(inputs, 2, 3)?;
        check_epsilon(self.epsilon.0)?;
        let ax = infer_trailing_norm("layer_norm", self.axis, inputs)?;
        let x = inputs[0];
        let mut out = vec![x.clone()];
        if self.stats {
            let sd: Shape = Shape(
                x.shape
                    .dims()
                    .iter()
                    .enumerate()
                    .map(|(i, d)| if i < ax { d.clone() } else { Dim::Known(1) })
                    .collect(),
            );
            out.push(x.with_shape(sd.clone()));
            out.push(x.with_shape(sd));
        }
        Ok(out)
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Reduction
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["layer_norm"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        if dout.len() > 1 && dout[1..].iter().any(Option::is_some) {
            return unsupported(
                "layer_norm",
                "no gradient through the mean / inv_std outputs",
            );
        }
        let Some(dy) = dout[0] else {
            return Ok(vec![None; inputs.len()]);
        };
        let x = inputs[0];
        let ax = axis_or_err("axis", self.axis, cx.ty(x).rank())
            .or_else(|e| unsupported("layer_norm", e.to_string()))?;
        let g = trailing_norm_grad(cx, x, inputs[1], dy, ax, self.epsilon.0, true)?;
        let mut out = vec![Some(g.0), Some(g.1)];
        if let Some(&b) = inputs.get(2) {
            out.push(Some(cx.sum_to(dy, &cx.ty(b).shape)?));
        }
        Ok(out)
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity_range(inputs, 2, 3)?;
        let (y, mean, inv_std) =
            eval_trailing_norm("layer_norm", self.axis, self.epsilon.0, true, inputs)?;
        let dt = inputs[0].dtype();
        let mut out = vec![Tensor::from_f64(dt, y)];
        if self.stats {
            out.push(Tensor::from_f64(dt, mean));
            out.push(Tensor::from_f64(dt, inv_std));
        }
        Ok(out)
    }
}

/// RMS normalisation over axes `[axis, rank)`: `x / sqrt(mean(x^2) + eps) * scale`
/// (ONNX RMSNormalization), with scale broadcast over the normalised dims.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RmsNorm {
    pub axis: i64,
    pub epsilon: F64,
}

impl RmsNorm {
    pub fn new(axis: i64, epsilon: f64) -> RmsNorm {
        RmsNorm {
            axis,
            epsilon: F64(epsilon),
        }
    }
}

impl OpDef for RmsNorm {
    const SPELLINGS: &'static [&'static str] = &["rms_norm"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let axis = attrs.int("axis", -1)?;
        let eps = attrs.float("epsilon", 1e-5)?;
        check_epsilon(eps)?;
        Ok(RmsNorm::new(axis, eps))
    }
    fn spelling(&self) -> &'static str {
        "rms_norm"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
        w.float("epsilon", self.epsilon.0);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        check_epsilon(self.epsilon.0)?;
        infer_trailing_norm("rms_norm", self.axis, inputs)?;
        Ok(vec![inputs[0].clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Reduction
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["rms_norm"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        let Some(dy) = dout[0] else {
            return Ok(vec![None; 2]);
        };
        let x = inputs[0];
        let ax = axis_or_err("axis", self.axis, cx.ty(x).rank())
            .or_else(|e| unsupported("rms_norm", e.to_string()))?;
        let g = trailing_norm_grad(cx, x, inputs[1], dy, ax, self.epsilon.0, false)?;
        Ok(vec![Some(g.0), Some(g.1)])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 2)?;
        let (y, _, _) = eval_trailing_norm("rms_norm", self.axis, self.epsilon.0, false, inputs)?;
        Ok(vec![Tensor::from_f64(inputs[0].dtype(), y)])
    }
}

/// Dropout at inference: the identity. `ratio` is kept so training export can use it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dropout {
    pub ratio: F64,
}

impl Dropout {
    pub fn new(ratio: f64) -> Dropout {
        Dropout { ratio: F64(ratio) }
    }
}

fn check_ratio(r: f64) -> Result<(), AttrError> {
    if (0.0..1.0).contains(&r) {
        Ok(())
    } else {
        Err(AttrError {
            attr: "ratio".into(),
            msg: format!("must be in [0, 1), found {r}"),
        })
    }
}

impl OpDef for Dropout {
    const SPELLINGS: &'static [&'static str] = &["dropout"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let r = attrs.float("ratio", 0.5)?;
        check_ratio(r)?;
        Ok(Dropout::new(r))
    }
    fn spelling(&self) -> &'static str {
        "dropout"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.float("ratio", self.ratio.0);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        check_ratio(self.ratio.0)?;
        require_float(inputs[0], "dropout input")?;
        Ok(vec![inputs[0].clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Elementwise
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["dropout"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        // Inference dropout is the identity.
        let _ = (cx, inputs);
        Ok(vec![dout[0]])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        Ok(vec![inputs[0].clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::shape::Dim;
    use crate::tensor::allclose;

    fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }
    fn run<T: OpDef>(op: &T, inputs: &[&Tensor]) -> Tensor {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let ty = op.infer(&refs).unwrap();
        let out = op.eval(inputs).unwrap().remove(0);
        assert_eq!(out.ty(), ty[0], "eval agrees with infer");
        out
    }
    use crate::ops::test_util::roundtrip;

    #[test]
    fn softmax_seed_logits() {
        let x = Tensor::f32(&[3], vec![3.2, 5.1, -1.7]);
        let p = run(&Softmax::new(-1, false), &[&x]);
        assert_eq!(p.dtype(), DType::F32);
        allclose(&p, &f64t(&[3], &[0.129983, 0.869050, 0.000968]), 0.0, 1e-6).unwrap();
        let lp = run(&Softmax::new(0, true), &[&x]);
        let ln_p: Vec<f64> = p.values_f64().iter().map(|v| v.ln()).collect();
        for (a, b) in lp.values_f64().iter().zip(&ln_p) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // Cross-entropy of class 0.
        assert!((-lp.values_f64()[0] - 2.0404).abs() < 1e-4);
        assert!((-(0.129983f64).ln() - 2.0404).abs() < 1e-4);
    }

    #[test]
    fn softmax_is_stable_and_axis_aware() {
        let x = f64t(&[2], &[1000., 1001.]);
        let p = run(&Softmax::new(-1, false), &[&x]);
        let e = 1.0 / (1.0 + std::f64::consts::E);
        allclose(&p, &f64t(&[2], &[e, 1.0 - e]), 0.0, 1e-12).unwrap();
        let lp = run(&Softmax::new(-1, true), &[&x]);
        allclose(&lp, &f64t(&[2], &[e.ln(), (1.0 - e).ln()]), 0.0, 1e-12).unwrap();
        // Axis 0 of [[0, 0], [ln 3, 0]]: columns are [1/4, 3/4] and [1/2, 1/2].
        let m = f64t(&[2, 2], &[0., 0., 3f64.ln(), 0.]);
        let p = run(&Softmax::new(0, false), &[&m]);
        allclose(&p, &f64t(&[2, 2], &[0.25, 0.5, 0.75, 0.5]), 0.0, 1e-12).unwrap();
    }

    #[test]
    fn softmax_half_rounds_each_stage() {
        // bf16 has 8 significant bits: 1 + 1/256 rounds back to 1, so summing
        // [1, 2^-9 x 4] in order stays at 1; the exact sum 1 + 2^-7 is representable.
        let x = Tensor::from_vec_f64(DType::BF16, &[2], vec![0.0, 0.0]).unwrap();
        let p = run(&Softmax::new(-1, false), &[&x]);
        assert_eq!(p.values_f64(), [0.5, 0.5]);
        let tiny = [1.0, 1.0 / 512.0, 1.0 / 512.0, 1.0 / 512.0, 1.0 / 512.0];
        assert_eq!(accumulate(DType::BF16, &tiny), 1.0);
        assert_eq!(accumulate(DType::F16, &tiny), 1.0 + 1.0 / 128.0);
    }

    #[test]
    fn softmax_infer() {
        let ty = TensorType::new(DType::F32, Shape::from(vec![Dim::sym("N"), Dim::Known(10)]));
        assert_eq!(Softmax::new(-1, false).infer(&[&ty]).unwrap()[0], ty);
        assert!(matches!(
            Softmax::new(2, false).infer(&[&ty]),
            Err(OpError::Attr(_))
        ));
        let i = TensorType::concrete(DType::I32, &[3]);
        assert!(matches!(
            Softmax::new(-1, false).infer(&[&i]),
            Err(OpError::DType(_))
        ));
        assert!(matches!(
            Softmax::new(-1, false).infer(&[]),
            Err(OpError::Arity { .. })
        ));
    }

    #[test]
    fn batch_norm_by_hand() {
        // x [1,2,2]: channel 0 = [1, 3], channel 1 = [2, 6].
        let x = f64t(&[1, 2, 2], &[1., 3., 2., 6.]);
        let scale = f64t(&[2], &[2., 0.5]);
        let bias = f64t(&[2], &[1., -1.]);
        let mean = f64t(&[2], &[2., 4.]);
        let var = f64t(&[2], &[4., 1.]);
        let y = run(&BatchNorm::new(0.0), &[&x, &scale, &bias, &mean, &var]);
        // ch0: 2*(x-2)/2+1 = x-1 → [0, 2]; ch1: 0.5*(x-4)/1-1 → [-2, 0].
        allclose(&y, &f64t(&[1, 2, 2], &[0., 2., -2., 0.]), 0.0, 1e-12).unwrap();
        let y = run(&BatchNorm::new(1e-5), &[&x, &scale, &bias, &mean, &var]);
        let d0 = (4.0f64 + 1e-5).sqrt();
        let d1 = (1.0f64 + 1e-5).sqrt();
        let want = [1. - 2. / d0, 1. + 2. / d0, -1. - 1. / d1, -1. + 1. / d1];
        allclose(&y, &f64t(&[1, 2, 2], &want), 0.0, 1e-12).unwrap();
    }

    #[test]
    fn batch_norm_infer() {
        let x = TensorType::new(
            DType::F32,
            Shape::from(vec![Dim::sym("N"), Dim::Known(3), Dim::Known(4)]),
        );
        let p = TensorType::concrete(DType::F32, &[3]);
        let op = BatchNorm::new(1e-5);
        assert_eq!(op.infer(&[&x, &p, &p, &p, &p]).unwrap()[0], x);
        let bad = TensorType::concrete(DType::F32, &[4]);
        assert!(matches!(
            op.infer(&[&x, &p, &bad, &p, &p]),
            Err(OpError::Shape(_))
        ));
        let pd = TensorType::concrete(DType::F64, &[3]);
        assert!(matches!(
            op.infer(&[&x, &p, &pd, &p, &p]),
            Err(OpError::DType(_))
        ));
        assert!(matches!(
            op.infer(&[&x, &p, &p, &p]),
            Err(OpError::Arity { .. })
        ));
        assert!(matches!(
            BatchNorm::new(-1.0).infer(&[&x, &p, &p, &p, &p]),
            Err(OpError::Attr(_))
        ));
    }

    #[test]
    fn layer_norm_by_hand() {
        // Rows [1,2,3,4] and [2,2,2,2]; mean 2.5, var 1.25; second row var 0.
        let x = f64t(&[2, 4], &[1., 2., 3., 4., 2., 2., 2., 2.]);
        let scale = f64t(&[4], &[1., 1., 2., 2.]);
        let bias = f64t(&[4], &[0., 0., 0., 1.]);
        let y = run(&LayerNorm::new(-1, 0.0), &[&x, &scale, &bias]);
        let s = 1.25f64.sqrt();
        let want = [
            -1.5 / s,
            -0.5 / s,
            2. * 0.5 / s,
            2. * 1.5 / s + 1.,
            0.,
            0.,
            0.,
            1.,
        ];
        // Row 2 has zero variance and eps 0: 0/0 = NaN, which is the honest answer.
        let got = y.values_f64();
        for (g, w) in got[..4].iter().zip(&want[..4]) {
            assert!((g - w).abs() < 1e-12);
        }
        assert!(got[4].is_nan());
        let y = run(&LayerNorm::new(-1, 1e-5), &[&x, &scale]);
        let d = (1.25f64 + 1e-5).sqrt();
        let want = [
            -1.5 / d,
            -0.5 / d,
            2. * 0.5 / d,
            2. * 1.5 / d,
            0.,
            0.,
            0.,
            0.,
        ];
        allclose(&y, &f64t(&[2, 4], &want), 0.0, 1e-12).unwrap();
        // Normalising over both axes of [[1,2],[3,4]] with a scalar-like [1] scale.
        let x = f64t(&[2, 2], &[1., 2., 3., 4.]);
        let y = run(&LayerNorm::new(0, 0.0), &[&x, &f64t(&[1], &[1.])]);
        allclose(
            &y,
            &f64t(&[2, 2], &[-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]),
            0.0,
            1e-12,
        )
        .unwrap();
    }

    #[test]
    fn layer_norm_stats_and_rms_norm() {
        // Rows [1,2,3,4] (mean 2.5, var 1.25) and [2,2,2,2] (mean 2, var 0), eps 1.
        let x = f64t(&[2, 4], &[1., 2., 3., 4., 2., 2., 2., 2.]);
        let one = f64t(&[1], &[1.]);
        let op = LayerNorm::new(1, 1.0).with_stats();
        let tys = op.infer(&[&x.ty(), &one.ty()]).unwrap();
        assert_eq!(tys[1].shape, Shape::from_dims(&[2, 1]));
        let out = op.eval(&[&x, &one]).unwrap();
        allclose(&out[1], &f64t(&[2, 1], &[2.5, 2.0]), 0.0, 1e-12).unwrap();
        allclose(
            &out[2],
            &f64t(&[2, 1], &[1.0 / 2.25f64.sqrt(), 1.0]),
            0.0,
            1e-12,
        )
        .unwrap();
        // RMS of [1,2,3,4] is sqrt(30/4 + eps); of [2,2,2,2] is sqrt(4 + eps).
        let y = run(
            &RmsNorm::new(-1, 0.5),
            &[&x, &f64t(&[4], &[1., 1., 1., 2.])],
        );
        let r1 = 8f64.sqrt();
        let r2 = 4.5f64.sqrt();
        let want = [
            1. / r1,
            2. / r1,
            3. / r1,
            8. / r1,
            2. / r2,
            2. / r2,
            2. / r2,
            4. / r2,
        ];
        allclose(&y, &f64t(&[2, 4], &want), 0.0, 1e-12).unwrap();
        assert!(matches!(
            RmsNorm::new(-1, 0.5).infer(&[&x.ty(), &f64t(&[3], &[1., 1., 1.]).ty()]),
            Err(OpError::Shape(_))
        ));
    }

    #[test]
    fn layer_norm_infer() {
        let x = TensorType::new(
            DType::F32,
            Shape::from(vec![Dim::sym("N"), Dim::Known(8), Dim::Known(16)]),
        );
        let s16 = TensorType::concrete(DType::F32, &[16]);
        let s816 = TensorType::concrete(DType::F32, &[8, 16]);
        assert_eq!(
            LayerNorm::new(-1, 1e-5).infer(&[&x, &s16, &s16]).unwrap()[0],
            x
        );
        assert_eq!(LayerNorm::new(1, 1e-5).infer(&[&x, &s816]).unwrap()[0], x);
        assert!(matches!(
            LayerNorm::new(-1, 1e-5).infer(&[&x, &s816]),
            Err(OpError::Shape(_))
        ));
        let s8 = TensorType::concrete(DType::F32, &[8]);
        assert!(matches!(
            LayerNorm::new(-1, 1e-5).infer(&[&x, &s8]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            LayerNorm::new(3, 1e-5).infer(&[&x, &s16]),
            Err(OpError::Attr(_))
        ));
        assert!(matches!(
            LayerNorm::new(-1, 1e-5).infer(&[&x]),
            Err(OpError::Arity { .. })
        ));
    }

    #[test]
    fn dropout_is_identity() {
        let x = f64t(&[3], &[1., -2., 3.]);
        assert_eq!(run(&Dropout::new(0.5), &[&x]), x);
        let t = x.ty();
        assert!(matches!(
            Dropout::new(1.0).infer(&[&t]),
            Err(OpError::Attr(_))
        ));
        assert!(matches!(
            Dropout::new(-0.1).infer(&[&t]),
            Err(OpError::Attr(_))
        ));
        assert_eq!(Dropout::new(0.5).fusion_kind(), FusionKind::Elementwise);
    }

    #[test]
    fn attrs_roundtrip_and_defaults() {
        roundtrip(&Softmax::new(1, true));
        roundtrip(&BatchNorm::new(1e-3));
        roundtrip(&LayerNorm::new(-2, 1e-6));
        roundtrip(&Dropout::new(0.1));
        let mut r = AttrReader::default();
        assert_eq!(
            Softmax::parse("softmax", &mut r).unwrap(),
            Softmax::new(-1, false)
        );
        assert_eq!(
            BatchNorm::parse("batch_norm", &mut r).unwrap(),
            BatchNorm::new(1e-5)
        );
        assert_eq!(
            LayerNorm::parse("layer_norm", &mut r).unwrap(),
            LayerNorm::new(-1, 1e-5)
        );
        assert_eq!(
            Dropout::parse("dropout", &mut r).unwrap(),
            Dropout::new(0.5)
        );
        let mut r = AttrReader::new(vec![("ratio".into(), crate::attr::AttrValue::Float(1.5))]);
        assert!(Dropout::parse("dropout", &mut r).is_err());
        let mut w = AttrWriter::default();
        LayerNorm::new(-1, 1e-5).write_attrs(&mut w);
        let names: Vec<&str> = w.items.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["axis", "epsilon", "stats"]);
        roundtrip(&LayerNorm::new(1, 1e-5).with_stats());
        roundtrip(&RmsNorm::new(-1, 1e-6));
        assert_eq!(BatchNorm::new(1e-5).fusion_kind(), FusionKind::Broadcast);
        assert_eq!(
            LayerNorm::new(-1, 1e-5).fusion_kind(),
            FusionKind::Reduction
        );
    }
}
