//! Training losses and regularisers (issue 7).
//!
//! Every loss takes a `reduction` attribute like PyTorch: `mean` (default),
//! `sum` or `none` (the per-sample or per-element losses). `kl_div` also has
//! `batchmean` (the sum divided by the first dimension).
//!
//! - `hinge_loss(scores [N, C], labels int [N]) {margin = 1}`: the multiclass
//!   SVM loss of the lecture notes, `L_i = Σ_{j≠y_i} max(0, s_j − s_{y_i} + Δ)`
//!   (no division by C, unlike torch's MultiMarginLoss); `mean` divides by N.
//!   `squared_hinge_loss` squares each term (the L2-SVM).
//! - `bce_with_logits(logits, targets)`: binary cross-entropy of
//!   `sigmoid(logits)` in the stable form `max(x, 0) − x·t + ln(1 + e^{−|x|})`
//!   (torch BCEWithLogitsLoss), per element.
//! - `mse_loss(a, b)`: `(a − b)²`; `l1_loss(a, b)`: `|a − b|`, per element.
//! - `kl_div(input, target) {log_target = 0}`: torch KLDivLoss, `input` holding
//!   log-probabilities `log q`: `target · (ln target − input)` (0 where the
//!   target is 0), or `e^target · (target − input)` with `log_target = 1`.
//! - `soft_cross_entropy(logits [N, C, ...], probs [N, C, ...])`: softmax
//!   cross-entropy with probability targets over axis 1,
//!   `−Σ_c p_c · log_softmax(x)_c` per position; `mean` divides by the number
//!   of positions (N·d1·…), as torch CrossEntropyLoss does for probabilities.
//! - `l1_norm(x)` = `Σ|x|` and `l2_norm_sq(x)` = `Σx²`, scalar regularisers
//!   (elastic net is `a·l1_norm + b·l2_norm_sq`).
//!
//! Gradient rules build ordinary elementwise ops and reductions.

use ndarray::{ArrayD, Axis, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::dtype::DType;
use crate::grad::{GradCtx, GradResult};
use crate::graph::ValueId;
use crate::op::{
    attr_err, dtype_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult,
};
use crate::ops::binary::BinaryKind;
use crate::ops::elementwise::UnaryKind;
use crate::ops::loss::Reduction;
use crate::ops::norm::Softmax;
use crate::ops::require_float;
use crate::ops::scan::OneHot;
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

fn parse_reduction(attrs: &mut AttrReader) -> Result<Reduction, AttrError> {
    let r = attrs.str("reduction", "mean")?;
    Reduction::from_name(&r).ok_or_else(|| AttrError {
        attr: "reduction".into(),
        msg: format!("must be none, sum or mean, found {r:?}"),
    })
}

/// The loss type: the per-element type for `none`, else a scalar.
fn loss_type(red: Reduction, dtype: DType, none_shape: Shape) -> TensorType {
    match red {
        Reduction::None => TensorType::new(dtype, none_shape),
        _ => TensorType::new(dtype, Shape::scalar()),
    }
}

/// Combine per-element losses (f64) into the output tensor.
fn reduce_losses(red: Reduction, per: ArrayD<f64>, dtype: DType) -> Tensor {
    let out = match red {
        Reduction::None => per,
        Reduction::Sum => ArrayD::from_elem(IxDyn(&[]), per.sum()),
        // 0/0 = NaN for an empty batch, as in torch.
        Reduction::Mean => ArrayD::from_elem(IxDyn(&[]), per.sum() / per.len() as f64),
    };
    Tensor::from_f64(dtype, out)
}

/// The factor each per-element gradient is multiplied by: the output
/// gradient (reshaped to `none_dims` for `none`), divided by the element
/// count for `mean`. The result broadcasts against the per-element gradient.
fn loss_scale(
    cx: &mut GradCtx,
    red: Reduction,
    dy: ValueId,
    count: usize,
    none_dims: &[usize],
) -> GradResult<ValueId> {
    match red {
        Reduction::None => cx.reshape(dy, none_dims),
        Reduction::Sum => Ok(dy),
        Reduction::Mean => cx.scale(dy, 1.0 / count as f64),
    }
}

/// Two float inputs of one dtype and one shape (the pairwise losses).
fn infer_pair(what: &str, inputs: &[&TensorType]) -> OpResult<()> {
    expect_arity(inputs, 2)?;
    let (a, b) = (inputs[0], inputs[1]);
    require_float(a, &format!("{what} input"))?;
    if b.dtype != a.dtype {
        return dtype_err(format!(
            "{what} target must be {} like the input, found {}",
            a.dtype, b.dtype
        ));
    }
    if a.shape != b.shape {
        return shape_err(format!(
            "{what} input {} and target {} must have the same shape",
            a.shape, b.shape
        ));
    }
    Ok(())
}

fn check_pair_eval(what: &str, inputs: &[&Tensor]) -> OpResult<(ArrayD<f64>, ArrayD<f64>)> {
    expect_arity(inputs, 2)?;
    if inputs[0].shape() != inputs[1].shape() {
        return Err(OpError::Eval(format!(
            "{what}: input {:?} and target {:?} differ in shape",
            inputs[0].shape(),
            inputs[1].shape()
        )));
    }
    Ok((inputs[0].to_f64(), inputs[1].to_f64()))
}

// ---------------------------------------------------------------------------
// hinge_loss / squared_hinge_loss.

/// Multiclass SVM hinge loss (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HingeLoss {
    pub squared: bool,
    pub margin: F64,
    pub reduction: Reduction,
}

impl HingeLoss {
    pub fn new(squared: bool, margin: f64, reduction: Reduction) -> HingeLoss {
        HingeLoss {
            squared,
            margin: F64(margin),
            reduction,
        }
    }
}

impl OpDef for HingeLoss {
    const SPELLINGS: &'static [&'static str] = &["hinge_loss", "squared_hinge_loss"];

    fn parse(spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let margin = attrs.float("margin", 1.0)?;
        if !margin.is_finite() {
            return Err(AttrError {
                attr: "margin".into(),
                msg: format!("must be finite, found {margin}"),
            });
        }
        Ok(HingeLoss::new(
            spelling == "squared_hinge_loss",
            margin,
            parse_reduction(attrs)?,
        ))
    }
    fn spelling(&self) -> &'static str {
        if self.squared {
            "squared_hinge_loss"
        } else {
            "hinge_loss"
        }
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.float("margin", self.margin.0);
        w.str("reduction", self.reduction.name());
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        let what = self.spelling();
        expect_arity(inputs, 2)?;
        let (s, y) = (inputs[0], inputs[1]);
        require_float(s, &format!("{what} scores"))?;
        if !y.dtype.is_int() {
            return dtype_err(format!(
                "{what} labels must be an integer type, found {}",
                y.dtype
            ));
        }
        if s.rank() != 2 {
            return shape_err(format!("{what} scores must be [N, C], found {}", s.shape));
        }
        if y.rank() != 1 || y.shape.dims()[0] != s.shape.dims()[0] {
            return shape_err(format!(
                "{what} labels must have shape [{}] for scores {}, found {}",
                s.shape.dims()[0],
                s.shape,
                y.shape
            ));
        }
        if !self.margin.0.is_finite() {
            return attr_err("margin", "must be finite");
        }
        Ok(vec![loss_type(
            self.reduction,
            s.dtype,
            Shape(std::iter::once(s.shape.dims()[0].clone()).collect()),
        )])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let what = self.spelling();
        expect_arity(inputs, 2)?;
        let s = inputs[0].to_f64();
        let y = inputs[1].to_i64();
        let (&[n, c], &[ny]) = (s.shape(), y.shape()) else {
            return Err(OpError::Eval(format!(
                "{what}: scores {:?} and labels {:?} are not [N, C] and [N]",
                s.shape(),
                y.shape()
            )));
        };
        if ny != n {
            return Err(OpError::Eval(format!(
                "{what}: {ny} labels for {n} rows of scores"
            )));
        }
        let mut per = Vec::with_capacity(n);
        for (i, row) in s.outer_iter().enumerate() {
            let t = y[[i]];
            if t < 0 || t as usize >= c {
                return Err(OpError::Eval(format!(
                    "{what}: label {t} of row {i} is outside [0, {c})"
                )));
            }
            let sy = row[[t as usize]];
            let mut l = 0.0;
            for (j, &sj) in row.iter().enumerate() {
                if j != t as usize {
                    let m = (sj - sy + self.margin.0).max(0.0);
                    l += if self.squared { m * m } else { m };
                }
            }
            per.push(l);
        }
        let per = ArrayD::from_shape_vec(IxDyn(&[n]), per).expect("n losses");
        Ok(vec![reduce_losses(self.reduction, per, inputs[0].dtype())])
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["hinge_loss", "squared_hinge_loss"];
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
        let (s, y) = (inputs[0], inputs[1]);
        let dims = cx.dims(s)?;
        let (n, c) = (dims[0], dims[1]);
        let dt = cx.ty(s).dtype;
        // One-hot of the labels, [N, C] in the scores' dtype.
        let vals = cx.constant(Tensor::from_vec_f64(dt, &[2], vec![0.0, 1.0]).expect("2"))?;
        let oh = cx.add(
            OneHot {
                axis: -1,
                depth: c as i64,
            },
            &[y, vals],
        )?;
        let soh = cx.mul(s, oh)?;
        let sy = cx.reduce_sum(soh, &[1], true)?;
        let d = cx.sub(s, sy)?;
        let marg = cx.scalar(self.margin.0, dt)?;
        let m = cx.add2(d, marg)?;
        let one = cx.scalar(1.0, dt)?;
        let other = cx.sub(one, oh)?;
        // The derivative of each term with respect to s_j (j ≠ y).
        let a = if self.squared {
            let r = cx.unary(UnaryKind::Relu, m)?;
            let r2 = cx.scale(r, 2.0)?;
            cx.mul(r2, other)?
        } else {
            let zero = cx.scalar(0.0, dt)?;
            let pos = cx.mask(BinaryKind::Gt, m, zero, dt)?;
            cx.mul(pos, other)?
        };
        // s_y receives minus the sum of the others.
        let asum = cx.reduce_sum(a, &[1], true)?;
        let oa = cx.mul(oh, asum)?;
        let g = cx.sub(a, oa)?;
        let k = loss_scale(cx, self.reduction, dy, n, &[n, 1])?;
        let gs = cx.mul(g, k)?;
        Ok(vec![Some(gs), None])
    }
}

// ---------------------------------------------------------------------------
// Elementwise losses: bce_with_logits, mse_loss, l1_loss.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PairKind {
    BceWithLogits,
    Mse,
    L1,
}

/// An elementwise loss of an input and a same-shaped target (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PairLoss {
    pub kind: PairKind,
    pub reduction: Reduction,
}

impl PairLoss {
    pub fn new(kind: PairKind, reduction: Reduction) -> PairLoss {
        PairLoss { kind, reduction }
    }
}

impl OpDef for PairLoss {
    const SPELLINGS: &'static [&'static str] = &["bce_with_logits", "mse_loss", "l1_loss"];

    fn parse(spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let kind = match spelling {
            "bce_with_logits" => PairKind::BceWithLogits,
            "mse_loss" => PairKind::Mse,
            _ => PairKind::L1,
        };
        Ok(PairLoss::new(kind, parse_reduction(attrs)?))
    }
    fn spelling(&self) -> &'static str {
        match self.kind {
            PairKind::BceWithLogits => "bce_with_logits",
            PairKind::Mse => "mse_loss",
            PairKind::L1 => "l1_loss",
        }
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.str("reduction", self.reduction.name());
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        infer_pair(self.spelling(), inputs)?;
        Ok(vec![loss_type(
            self.reduction,
            inputs[0].dtype,
            inputs[0].shape.clone(),
        )])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (a, b) = check_pair_eval(self.spelling(), inputs)?;
        let f: fn(f64, f64) -> f64 = match self.kind {
            PairKind::BceWithLogits => |x, t| x.max(0.0) - x * t + (-x.abs()).exp().ln_1p(),
            PairKind::Mse => |a, b| (a - b) * (a - b),
            PairKind::L1 => |a, b| (a - b).abs(),
        };
        let mut per = a;
        per.zip_mut_with(&b, |a, &b| *a = f(*a, b));
        Ok(vec![reduce_losses(self.reduction, per, inputs[0].dtype())])
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["bce_with_logits", "mse_loss", "l1_loss"];
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
        let (a, b) = (inputs[0], inputs[1]);
        let dims = cx.dims(a)?;
        let count = dims.iter().product();
        let k = loss_scale(cx, self.reduction, dy, count, &dims)?;
        let (ga, gb) = match self.kind {
            PairKind::BceWithLogits => {
                // d/dx = sigmoid(x) − t, d/dt = −x.
                let sg = cx.unary(UnaryKind::Sigmoid, a)?;
                let d = cx.sub(sg, b)?;
                let ga = cx.mul(d, k)?;
                let gb = if cx.wants(b) {
                    let nx = cx.neg(a)?;
                    Some(cx.mul(nx, k)?)
                } else {
                    None
                };
                (ga, gb)
            }
            PairKind::Mse | PairKind::L1 => {
                let d = cx.sub(a, b)?;
                let dd = if self.kind == PairKind::Mse {
                    cx.scale(d, 2.0)?
                } else {
                    cx.unary(UnaryKind::Sign, d)?
                };
                let ga = cx.mul(dd, k)?;
                let gb = if cx.wants(b) { Some(cx.neg(ga)?) } else { None };
                (ga, gb)
            }
        };
        Ok(vec![Some(ga), gb])
    }
}

// ---------------------------------------------------------------------------
// kl_div.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KlReduction {
    None,
    Sum,
    Mean,
    /// The sum divided by the first dimension (the true KL per sample).
    BatchMean,
}

impl KlReduction {
    pub fn name(self) -> &'static str {
        match self {
            KlReduction::None => "none",
            KlReduction::Sum => "sum",
            KlReduction::Mean => "mean",
            KlReduction::BatchMean => "batchmean",
        }
    }
}

/// KL divergence with log-probability input (torch KLDivLoss; see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KlDiv {
    pub reduction: KlReduction,
    pub log_target: bool,
}

impl OpDef for KlDiv {
    const SPELLINGS: &'static [&'static str] = &["kl_div"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let r = attrs.str("reduction", "mean")?;
        let reduction = match r.as_str() {
            "none" => KlReduction::None,
            "sum" => KlReduction::Sum,
            "mean" => KlReduction::Mean,
            "batchmean" => KlReduction::BatchMean,
            _ => {
                return Err(AttrError {
                    attr: "reduction".into(),
                    msg: format!("must be none, sum, mean or batchmean, found {r:?}"),
                })
            }
        };
        let lt = attrs.int("log_target", 0)?;
        if lt != 0 && lt != 1 {
            return Err(AttrError {
                attr: "log_target".into(),
                msg: format!("must be 0 or 1, found {lt}"),
            });
        }
        Ok(KlDiv {
            reduction,
            log_target: lt == 1,
        })
    }
    fn spelling(&self) -> &'static str {
        "kl_div"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.str("reduction", self.reduction.name());
        w.int("log_target", i64::from(self.log_target));
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        infer_pair("kl_div", inputs)?;
        let x = inputs[0];
        if self.reduction == KlReduction::BatchMean && x.rank() == 0 {
            return shape_err("kl_div with batchmean needs an input of rank >= 1");
        }
        Ok(vec![match self.reduction {
            KlReduction::None => x.clone(),
            _ => TensorType::new(x.dtype, Shape::scalar()),
        }])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (x, t) = check_pair_eval("kl_div", inputs)?;
        let mut per = t;
        if self.log_target {
            per.zip_mut_with(&x, |t, &x| *t = t.exp() * (*t - x));
        } else {
            // xlogy: 0 · ln 0 = 0.
            per.zip_mut_with(&x, |t, &x| {
                *t = if *t == 0.0 { 0.0 } else { *t * (t.ln() - x) };
            });
        }
        let dt = inputs[0].dtype();
        let out = match self.reduction {
            KlReduction::None => return Ok(vec![Tensor::from_f64(dt, per)]),
            KlReduction::Sum => per.sum(),
            KlReduction::Mean => per.sum() / per.len() as f64,
            KlReduction::BatchMean => {
                let Some(&n) = per.shape().first() else {
                    return Err(OpError::Eval("kl_div batchmean of a scalar".into()));
                };
                per.sum() / n as f64
            }
        };
        Ok(vec![Tensor::from_f64(
            dt,
            ArrayD::from_elem(IxDyn(&[]), out),
        )])
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["kl_div"];
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
        let (x, t) = (inputs[0], inputs[1]);
        let dims = cx.dims(x)?;
        let k = match self.reduction {
            KlReduction::None | KlReduction::Sum => dy,
            KlReduction::Mean => cx.scale(dy, 1.0 / dims.iter().product::<usize>() as f64)?,
            KlReduction::BatchMean => cx.scale(dy, 1.0 / dims[0] as f64)?,
        };
        // The target's weight p (e^t with log targets).
        let p = if self.log_target {
            cx.unary(UnaryKind::Exp, t)?
        } else {
            t
        };
        let pk = cx.mul(p, k)?;
        let gx = cx.neg(pk)?;
        let gt = if cx.wants(t) {
            // d/dt: ln t + 1 − x, or e^t (t − x + 1) with log targets.
            let one = cx.scalar(1.0, cx.ty(t).dtype)?;
            let g = if self.log_target {
                let d = cx.sub(t, x)?;
                let d1 = cx.add2(d, one)?;
                cx.mul(p, d1)?
            } else {
                let lt = cx.unary(UnaryKind::Log, t)?;
                let d = cx.sub(lt, x)?;
                cx.add2(d, one)?
            };
            Some(cx.mul(g, k)?)
        } else {
            None
        };
        Ok(vec![Some(gx), gt])
    }
}

// ---------------------------------------------------------------------------
// soft_cross_entropy.

/// Softmax cross-entropy with probability targets over axis 1 (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SoftCrossEntropy {
    pub reduction: Reduction,
}

impl OpDef for SoftCrossEntropy {
    const SPELLINGS: &'static [&'static str] = &["soft_cross_entropy"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(SoftCrossEntropy {
            reduction: parse_reduction(attrs)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "soft_cross_entropy"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.str("reduction", self.reduction.name());
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        infer_pair("soft_cross_entropy", inputs)?;
        let x = inputs[0];
        if x.rank() < 2 {
            return shape_err(format!(
                "soft_cross_entropy input must be [N, C, ...], found {}",
                x.shape
            ));
        }
        let mut d: Vec<Dim> = x.shape.dims().to_vec();
        d.remove(1);
        Ok(vec![loss_type(self.reduction, x.dtype, Shape(d.into()))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (mut lp, p) = check_pair_eval("soft_cross_entropy", inputs)?;
        if lp.ndim() < 2 {
            return Err(OpError::Eval(
                "soft_cross_entropy input must have rank >= 2".into(),
            ));
        }
        for mut lane in lp.lanes_mut(Axis(1)) {
            let m = lane.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let ls = lane.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
            lane.mapv_inplace(|v| v - m - ls);
        }
        let prod = &lp * &p;
        let per = prod.sum_axis(Axis(1)).mapv(|v| -v);
        Ok(vec![reduce_losses(self.reduction, per, inputs[0].dtype())])
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["soft_cross_entropy"];
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
        let (x, p) = (inputs[0], inputs[1]);
        let dims = cx.dims(x)?;
        let mut none_dims = dims.clone();
        none_dims[1] = 1;
        let count = dims.iter().product::<usize>() / dims[1].max(1);
        let k = loss_scale(cx, self.reduction, dy, count, &none_dims)?;
        // d/dx = softmax(x)·Σ_c p_c − p; d/dp = −log_softmax(x).
        let lp = cx.add(Softmax::new(1, true), &[x])?;
        let sm = cx.unary(UnaryKind::Exp, lp)?;
        let ps = cx.reduce_sum(p, &[1], true)?;
        let smps = cx.mul(sm, ps)?;
        let d = cx.sub(smps, p)?;
        let gx = cx.mul(d, k)?;
        let gp = if cx.wants(p) {
            let nl = cx.neg(lp)?;
            Some(cx.mul(nl, k)?)
        } else {
            None
        };
        Ok(vec![Some(gx), gp])
    }
}

// ---------------------------------------------------------------------------
// l1_norm / l2_norm_sq.

/// A scalar norm penalty over every element: `l1_norm` = Σ|x|,
/// `l2_norm_sq` = Σx².
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NormPenalty {
    /// 1 for `l1_norm`, 2 for `l2_norm_sq`.
    pub p: u8,
}

impl OpDef for NormPenalty {
    const SPELLINGS: &'static [&'static str] = &["l1_norm", "l2_norm_sq"];

    fn parse(spelling: &str, _attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(NormPenalty {
            p: if spelling == "l1_norm" { 1 } else { 2 },
        })
    }
    fn spelling(&self) -> &'static str {
        if self.p == 1 {
            "l1_norm"
        } else {
            "l2_norm_sq"
        }
    }
    fn write_attrs(&self, _w: &mut AttrWriter) {}
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        require_float(inputs[0], &format!("{} input", self.spelling()))?;
        Ok(vec![TensorType::new(inputs[0].dtype, Shape::scalar())])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0].to_f64();
        let s: f64 = if self.p == 1 {
            x.iter().map(|v| v.abs()).sum()
        } else {
            x.iter().map(|v| v * v).sum()
        };
        Ok(vec![Tensor::from_f64(
            inputs[0].dtype(),
            ArrayD::from_elem(IxDyn(&[]), s),
        )])
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["l1_norm", "l2_norm_sq"];
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
        let d = if self.p == 1 {
            cx.unary(UnaryKind::Sign, x)?
        } else {
            cx.scale(x, 2.0)?
        };
        Ok(vec![Some(cx.mul(d, dy)?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::roundtrip;
    use crate::tensor::allclose;

    fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }
    fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }
    fn run<T: OpDef>(op: &T, inputs: &[&Tensor]) -> Vec<Tensor> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let ty = op.infer(&refs).unwrap();
        let out = op.eval(inputs).unwrap();
        for (o, t) in out.iter().zip(&ty) {
            assert_eq!(&o.ty(), t, "eval agrees with infer");
        }
        out
    }
    fn scalar(t: &Tensor) -> f64 {
        t.to_f64().iter().copied().next().unwrap()
    }

    /// Seed checklist 7.1 #1 and #2: the CS231n 695.45 and the CS7643 table
    /// (2.9, 0, 12.9; mean 15.8 / 3).
    #[test]
    fn hinge_seed_vectors() {
        let hinge = HingeLoss::new(false, 1.0, Reduction::Sum);
        let s = f64t(&[1, 3], &[-96.8, 437.9, 61.95]);
        let out = run(&hinge, &[&s, &i64t(&[1], &[0])]);
        assert!((scalar(&out[0]) - 695.45).abs() < 1e-9, "{:?}", out[0]);
        // Columns of the CS7643 table as rows: cat, car, frog images.
        let s = f64t(&[3, 3], &[3.2, 5.1, -1.7, 1.3, 4.9, 2.0, 2.2, 2.5, -3.1]);
        let y = i64t(&[3], &[0, 1, 2]);
        let none = run(&HingeLoss::new(false, 1.0, Reduction::None), &[&s, &y]);
        allclose(&none[0], &f64t(&[3], &[2.9, 0.0, 12.9]), 0.0, 1e-9).unwrap();
        let mean = run(&HingeLoss::new(false, 1.0, Reduction::Mean), &[&s, &y]);
        assert!((scalar(&mean[0]) - 15.8 / 3.0).abs() < 1e-9);
        // Squared: 2.9² for the cat image; frog 6.3² + 6.6².
        let sq = run(&HingeLoss::new(true, 1.0, Reduction::None), &[&s, &y]);
        allclose(
            &sq[0],
            &f64t(&[3], &[2.9 * 2.9, 0.0, 6.3 * 6.3 + 6.6 * 6.6]),
            0.0,
            1e-9,
        )
        .unwrap();
        // A margin of 0 on the cat image: max(0, 1.9) + 0.
        let m0 = run(&HingeLoss::new(false, 0.0, Reduction::Sum), &[&s, &y]);
        assert!((scalar(&m0[0]) - (1.9 + 0.0 + 5.3 + 5.6)).abs() < 1e-9);
        // Labels outside [0, C) are an error.
        assert!(hinge.eval(&[&s, &i64t(&[3], &[0, 3, 1])]).is_err());
    }

    #[test]
    fn pair_losses_by_hand() {
        let a = f64t(&[2, 2], &[1.0, -2.0, 0.5, 3.0]);
        let b = f64t(&[2, 2], &[0.0, 1.0, 0.5, 1.0]);
        let mse = run(&PairLoss::new(PairKind::Mse, Reduction::Mean), &[&a, &b]);
        assert!((scalar(&mse[0]) - (1.0 + 9.0 + 0.0 + 4.0) / 4.0).abs() < 1e-12);
        let l1 = run(&PairLoss::new(PairKind::L1, Reduction::Sum), &[&a, &b]);
        assert!((scalar(&l1[0]) - 6.0).abs() < 1e-12);
        let l1n = run(&PairLoss::new(PairKind::L1, Reduction::None), &[&a, &b]);
        allclose(&l1n[0], &f64t(&[2, 2], &[1.0, 3.0, 0.0, 2.0]), 0.0, 1e-12).unwrap();
        // BCE with logits: x = 0 gives ln 2 for any target; x = ln 3 (p = 3/4)
        // with t = 1 gives −ln(3/4); a huge logit stays finite.
        let x = f64t(&[4], &[0.0, 3f64.ln(), 800.0, -800.0]);
        let t = f64t(&[4], &[0.3, 1.0, 0.0, 0.0]);
        let bce = run(
            &PairLoss::new(PairKind::BceWithLogits, Reduction::None),
            &[&x, &t],
        );
        allclose(
            &bce[0],
            &f64t(&[4], &[2f64.ln(), -(0.75f64).ln(), 800.0, 0.0]),
            0.0,
            1e-12,
        )
        .unwrap();
        // Shapes must match.
        let c = TensorType::concrete(DType::F64, &[4, 1]);
        let d = TensorType::concrete(DType::F64, &[4]);
        assert!(matches!(
            PairLoss::new(PairKind::Mse, Reduction::Mean).infer(&[&c, &d]),
            Err(OpError::Shape(_))
        ));
    }

    #[test]
    fn kl_div_by_hand() {
        // p = [1/2, 1/2], q = [1/4, 3/4]: KL = ½ ln 2 + ½ ln(2/3).
        let lq = f64t(&[1, 2], &[(0.25f64).ln(), (0.75f64).ln()]);
        let p = f64t(&[1, 2], &[0.5, 0.5]);
        let kl = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        let op = |r| KlDiv {
            reduction: r,
            log_target: false,
        };
        let s = run(&op(KlReduction::Sum), &[&lq, &p]);
        assert!((scalar(&s[0]) - kl).abs() < 1e-12);
        let m = run(&op(KlReduction::Mean), &[&lq, &p]);
        assert!((scalar(&m[0]) - kl / 2.0).abs() < 1e-12);
        let b = run(&op(KlReduction::BatchMean), &[&lq, &p]);
        assert!((scalar(&b[0]) - kl).abs() < 1e-12);
        let lp = f64t(&[1, 2], &[(0.5f64).ln(), (0.5f64).ln()]);
        let lt = run(
            &KlDiv {
                reduction: KlReduction::Sum,
                log_target: true,
            },
            &[&lq, &lp],
        );
        assert!((scalar(&lt[0]) - kl).abs() < 1e-12);
        // A zero target contributes 0, not NaN.
        let z = f64t(&[1, 2], &[0.0, 1.0]);
        let n = run(&op(KlReduction::None), &[&lq, &z]);
        allclose(&n[0], &f64t(&[1, 2], &[0.0, -(0.75f64).ln()]), 0.0, 1e-12).unwrap();
    }

    #[test]
    fn soft_cross_entropy_by_hand() {
        // Seed 7.1 #3: logits (3.2, 5.1, -1.7) with a one-hot target on cat
        // gives −ln 0.129983 = 2.0404.
        let x = f64t(&[1, 3], &[3.2, 5.1, -1.7]);
        let p = f64t(&[1, 3], &[1.0, 0.0, 0.0]);
        let op = SoftCrossEntropy {
            reduction: Reduction::Mean,
        };
        let out = run(&op, &[&x, &p]);
        assert!((scalar(&out[0]) - 2.0404).abs() < 1e-4, "{:?}", out[0]);
        // Uniform logits over C = 10 with any probability target: ln 10.
        let x = f64t(&[2, 10], &[0.0; 20]);
        let mut pv = vec![0.1; 10];
        pv.extend([0.5, 0.5, 0., 0., 0., 0., 0., 0., 0., 0.]);
        let p = f64t(&[2, 10], &pv);
        let out = run(&op, &[&x, &p]);
        assert!((scalar(&out[0]) - 10f64.ln()).abs() < 1e-12);
        // Spatial: [1, 2, 2] → none gives [1, 2].
        let x = f64t(&[1, 2, 2], &[0.0, 0.0, 0.0, 3f64.ln()]);
        let p = f64t(&[1, 2, 2], &[1.0, 0.0, 0.0, 1.0]);
        let none = run(
            &SoftCrossEntropy {
                reduction: Reduction::None,
            },
            &[&x, &p],
        );
        allclose(
            &none[0],
            &f64t(&[1, 2], &[2f64.ln(), -(0.75f64).ln()]),
            0.0,
            1e-12,
        )
        .unwrap();
    }

    #[test]
    fn norm_penalties() {
        let x = f64t(&[3], &[1.0, -2.0, 0.5]);
        let l1 = run(&NormPenalty { p: 1 }, &[&x]);
        assert_eq!(scalar(&l1[0]), 3.5);
        let l2 = run(&NormPenalty { p: 2 }, &[&x]);
        assert_eq!(scalar(&l2[0]), 5.25);
    }

    #[test]
    fn infer_errors_and_attrs() {
        let s = TensorType::concrete(DType::F32, &[4, 3]);
        let y = TensorType::concrete(DType::I64, &[4]);
        let h = HingeLoss::new(false, 1.0, Reduction::None);
        assert_eq!(
            h.infer(&[&s, &y]).unwrap()[0],
            TensorType::concrete(DType::F32, &[4])
        );
        let yf = TensorType::concrete(DType::F32, &[4]);
        assert!(matches!(h.infer(&[&s, &yf]), Err(OpError::DType(_))));
        let y3 = TensorType::concrete(DType::I64, &[3]);
        assert!(matches!(h.infer(&[&s, &y3]), Err(OpError::Shape(_))));
        assert!(matches!(h.infer(&[&s]), Err(OpError::Arity { .. })));
        let mut r = AttrReader::new(vec![(
            "reduction".into(),
            crate::attr::AttrValue::Str("batchmean".into()),
        )]);
        assert!(HingeLoss::parse("hinge_loss", &mut r).is_err());
        roundtrip(&HingeLoss::new(true, 0.5, Reduction::Sum));
        roundtrip(&PairLoss::new(PairKind::BceWithLogits, Reduction::None));
        roundtrip(&KlDiv {
            reduction: KlReduction::BatchMean,
            log_target: true,
        });
        roundtrip(&SoftCrossEntropy {
            reduction: Reduction::Sum,
        });
        roundtrip(&NormPenalty { p: 2 });
        let mut r = AttrReader::default();
        assert_eq!(
            HingeLoss::parse("hinge_loss", &mut r).unwrap(),
            HingeLoss::new(false, 1.0, Reduction::Mean)
        );
        let x1 = TensorType::concrete(DType::F32, &[3]);
        assert!(SoftCrossEntropy {
            reduction: Reduction::Mean
        }
        .infer(&[&x1, &x1])
        .is_err());
    }
}
