//! Classification losses: `nll_loss` (negative log-likelihood of given
//! log-probabilities) and `softmax_cross_entropy` (log-softmax over the class
//! axis followed by the same loss, also returning the log-probabilities).
//!
//! Both take `x [N, C, d1..dk]`, integer targets `[N, d1..dk]` and optional
//! class weights `[C]`. Per element, `loss = -w[t] * logp[n, t, d]`, where `w[t]`
//! is the class weight (1 without weights) and is 0 when `t == ignore_index`.
//! `mean` divides the summed loss by the summed weights (so ignored elements
//! count in neither), as ONNX and PyTorch do.

use crate::grad::{unsupported, GradCtx, GradResult};
use crate::graph::ValueId;
use ndarray::{ArrayD, Axis, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::dtype::DType;
use crate::op::{dtype_err, expect_arity_range, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::require_float;
use crate::shape::{Shape, TensorType};
use crate::tensor::Tensor;

/// How the per-element losses are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduction {
    None,
    Sum,
    Mean,
}

impl Reduction {
    pub fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Sum => "sum",
            Reduction::Mean => "mean",
        }
    }
    pub fn from_name(s: &str) -> Option<Reduction> {
        match s {
            "none" => Some(Reduction::None),
            "sum" => Some(Reduction::Sum),
            "mean" => Some(Reduction::Mean),
            _ => None,
        }
    }
}

/// The attributes both losses share.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LossAttrs {
    pub reduction: Reduction,
    /// Targets equal to this contribute nothing (no loss, no weight).
    pub ignore_index: Option<i64>,
}

impl LossAttrs {
    pub(crate) fn parse(attrs: &mut AttrReader) -> Result<LossAttrs, AttrError> {
        let r = attrs.str("reduction", "mean")?;
        let reduction = Reduction::from_name(&r).ok_or_else(|| AttrError {
            attr: "reduction".into(),
            msg: format!("must be none, sum or mean, found {r:?}"),
        })?;
        Ok(LossAttrs {
            reduction,
            ignore_index: attrs.opt_int("ignore_index")?,
        })
    }
    pub(crate) fn write(&self, w: &mut AttrWriter) {
        w.str("reduction", self.reduction.name());
        if let Some(i) = self.ignore_index {
            w.int("ignore_index", i);
        }
    }
}

/// Type rule shared by both losses: the loss type.
fn infer_loss(what: &str, red: Reduction, inputs: &[&TensorType]) -> OpResult<TensorType> {
    expect_arity_range(inputs, 2, 3)?;
    let (x, t) = (inputs[0], inputs[1]);
    require_float(x, &format!("{what} input"))?;
    if !t.dtype.is_int() {
        return dtype_err(format!(
            "{what} target must be an integer type, found {}",
            t.dtype
        ));
    }
    if x.rank() < 2 {
        return shape_err(format!(
            "{what} input must be [N, C, ...], found {}",
            x.shape
        ));
    }
    let xd = x.shape.dims();
    let want: Vec<_> = std::iter::once(xd[0].clone())
        .chain(xd[2..].iter().cloned())
        .collect();
    if t.shape.dims() != want.as_slice() {
        return shape_err(format!(
            "{what} target must have shape {} for input {}, found {}",
            Shape(want.into_iter().collect()),
            x.shape,
            t.shape
        ));
    }
    if let Some(w) = inputs.get(2) {
        if w.dtype != x.dtype {
            return dtype_err(format!(
                "{what} weight must be {} like the input, found {}",
                x.dtype, w.dtype
            ));
        }
        if w.rank() != 1 || w.shape.dims()[0] != xd[1] {
            return shape_err(format!(
                "{what} weight must have shape [{}], found {}",
                xd[1], w.shape
            ));
        }
    }
    Ok(match red {
        Reduction::None => t.with_dtype(x.dtype),
        _ => TensorType::new(x.dtype, Shape::scalar()),
    })
}

/// The loss from log-probabilities `logp [N, C, rest]` (f64).
fn nll(
    what: &str,
    attrs: &LossAttrs,
    logp: &ArrayD<f64>,
    target: &Tensor,
    weight: Option<&Tensor>,
    dtype: DType,
) -> OpResult<Tensor> {
    let dims = logp.shape();
    if dims.len() < 2 {
        return Err(OpError::Eval(format!("{what} input must have rank >= 2")));
    }
    let (n, c) = (dims[0], dims[1]);
    let rest: usize = dims[2..].iter().product();
    let tdims = target.shape().to_vec();
    if tdims.iter().product::<usize>() != n * rest {
        return Err(OpError::Eval(format!(
            "{what} target {tdims:?} does not match input {dims:?}"
        )));
    }
    let w: Option<Vec<f64>> = weight.map(|w| w.to_f64().iter().copied().collect());
    if w.as_ref().is_some_and(|w| w.len() != c) {
        return Err(OpError::Eval(format!(
            "{what} weight must have {c} entries"
        )));
    }
    let lp = logp
        .view()
        .into_shape_with_order(IxDyn(&[n, c, rest]))
        .map_err(|e| OpError::Eval(e.to_string()))?;
    let ts: Vec<i64> = target.to_i64().iter().copied().collect();
    let mut losses = Vec::with_capacity(n * rest);
    let mut wsum = 0.0;
    for i in 0..n {
        for d in 0..rest {
            let t = ts[i * rest + d];
            if Some(t) == attrs.ignore_index {
                losses.push(0.0);
                continue;
            }
            if t < 0 || t as usize >= c {
                return Err(OpError::Eval(format!(
                    "{what} target {t} is outside [0, {c}) and is not ignore_index"
                )));
            }
            let wt = w.as_ref().map_or(1.0, |w| w[t as usize]);
            wsum += wt;
            losses.push(-wt * lp[[i, t as usize, d]]);
        }
    }
    let out = match attrs.reduction {
        Reduction::None => ArrayD::from_shape_vec(IxDyn(&tdims), losses)
            .map_err(|e| OpError::Eval(e.to_string()))?,
        Reduction::Sum => ArrayD::from_elem(IxDyn(&[]), losses.iter().sum()),
        // 0/0 = NaN when every element is ignored, as in ONNX and PyTorch.
        Reduction::Mean => ArrayD::from_elem(IxDyn(&[]), losses.iter().sum::<f64>() / wsum),
    };
    Ok(Tensor::from_f64(dtype, out))
}

/// Negative log-likelihood of log-probabilities `x` (ONNX
/// NegativeLogLikelihoodLoss): inputs x, target, optional weight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NllLoss {
    pub attrs: LossAttrs,
}

impl NllLoss {
    pub fn new(reduction: Reduction, ignore_index: Option<i64>) -> NllLoss {
        NllLoss {
            attrs: LossAttrs {
                reduction,
                ignore_index,
            },
        }
    }
}

impl OpDef for NllLoss {
    const SPELLINGS: &'static [&'static str] = &["nll_loss"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(NllLoss {
            attrs: LossAttrs::parse(attrs)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "nll_loss"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        self.attrs.write(w);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        Ok(vec![infer_loss("nll_loss", self.attrs.reduction, inputs)?])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Reduction
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["nll_loss"];
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
        if inputs.len() == 3 && cx.wants(inputs[2]) {
            return unsupported("nll_loss", "no gradient with respect to the class weights");
        }
        let g = crate::ops::grad_ops::NllLossGrad {
            attrs: self.attrs.clone(),
        };
        let mut args = vec![dy];
        args.extend_from_slice(inputs);
        let gx = cx.add(g, &args)?;
        let mut out = vec![Some(gx), None];
        out.resize(inputs.len(), None);
        Ok(out)
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity_range(inputs, 2, 3)?;
        let x = inputs[0];
        let out = nll(
            "nll_loss",
            &self.attrs,
            &x.to_f64(),
            inputs[1],
            inputs.get(2).copied(),
            x.dtype(),
        )?;
        Ok(vec![out])
    }
}

/// Softmax cross-entropy of scores `x` (ONNX SoftmaxCrossEntropyLoss): inputs
/// scores, target, optional weight; outputs the loss and the log-probabilities
/// (log-softmax of the scores over axis 1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SoftmaxCrossEntropy {
    pub attrs: LossAttrs,
}

impl SoftmaxCrossEntropy {
    pub fn new(reduction: Reduction, ignore_index: Option<i64>) -> SoftmaxCrossEntropy {
        SoftmaxCrossEntropy {
            attrs: LossAttrs {
                reduction,
                ignore_index,
            },
        }
    }
}

impl OpDef for SoftmaxCrossEntropy {
    const SPELLINGS: &'static [&'static str] = &["softmax_cross_entropy"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(SoftmaxCrossEntropy {
            attrs: LossAttrs::parse(attrs)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "softmax_cross_entropy"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        self.attrs.write(w);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        let loss = infer_loss("softmax_cross_entropy", self.attrs.reduction, inputs)?;
        Ok(vec![loss, inputs[0].clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Reduction
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["softmax_cross_entropy"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        if inputs.len() == 3 && cx.wants(inputs[2]) {
            return unsupported(
                "softmax_cross_entropy",
                "no gradient with respect to the class weights",
            );
        }
        let lp = outputs[1];
        // The gradient of the log-probabilities: through the loss, plus any
        // from their own uses.
        let mut dlp = dout[1];
        if let Some(dy) = dout[0] {
            let g = crate::ops::grad_ops::NllLossGrad {
                attrs: self.attrs.clone(),
            };
            let mut args = vec![dy, lp];
            args.extend_from_slice(&inputs[1..]);
            let gl = cx.add(g, &args)?;
            dlp = Some(match dlp {
                Some(d) => cx.add2(d, gl)?,
                None => gl,
            });
        }
        let Some(dlp) = dlp else {
            return Ok(vec![None; inputs.len()]);
        };
        // Back through log_softmax over axis 1.
        let s = cx.reduce_sum(dlp, &[1], true)?;
        let p = cx.unary(crate::ops::elementwise::UnaryKind::Exp, lp)?;
        let ps = cx.mul(p, s)?;
        let gx = cx.sub(dlp, ps)?;
        let mut out = vec![Some(gx), None];
        out.resize(inputs.len(), None);
        Ok(out)
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity_range(inputs, 2, 3)?;
        let x = inputs[0];
        if x.shape().len() < 2 {
            return Err(OpError::Eval(
                "softmax_cross_entropy input must have rank >= 2".into(),
            ));
        }
        let mut lp = x.to_f64();
        for mut lane in lp.lanes_mut(Axis(1)) {
            let m = lane.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let ls = lane.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
            lane.mapv_inplace(|v| v - m - ls);
        }
        let loss = nll(
            "softmax_cross_entropy",
            &self.attrs,
            &lp,
            inputs[1],
            inputs.get(2).copied(),
            x.dtype(),
        )?;
        Ok(vec![loss, Tensor::from_f64(x.dtype(), lp)])
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

    #[test]
    fn nll_by_hand() {
        // x [2, 3] log-probs; targets [2, 0].
        let x = f64t(&[2, 3], &[-1., -2., -3., -4., -5., -6.]);
        let t = i64t(&[2], &[2, 0]);
        let none = run(&NllLoss::new(Reduction::None, None), &[&x, &t]);
        allclose(&none[0], &f64t(&[2], &[3., 4.]), 0.0, 1e-12).unwrap();
        let sum = run(&NllLoss::new(Reduction::Sum, None), &[&x, &t]);
        allclose(&sum[0], &f64t(&[], &[7.]), 0.0, 1e-12).unwrap();
        let mean = run(&NllLoss::new(Reduction::Mean, None), &[&x, &t]);
        allclose(&mean[0], &f64t(&[], &[3.5]), 0.0, 1e-12).unwrap();
        // Weights [1, 2, 3]: losses 3*3 = 9 and 1*4 = 4; mean = 13 / (3 + 1).
        let w = f64t(&[3], &[1., 2., 3.]);
        let mean = run(&NllLoss::new(Reduction::Mean, None), &[&x, &t, &w]);
        allclose(&mean[0], &f64t(&[], &[13. / 4.]), 0.0, 1e-12).unwrap();
        // Ignoring class 2 drops the first element from both sums.
        let mean = run(&NllLoss::new(Reduction::Mean, Some(2)), &[&x, &t, &w]);
        allclose(&mean[0], &f64t(&[], &[4.]), 0.0, 1e-12).unwrap();
        let none = run(&NllLoss::new(Reduction::None, Some(2)), &[&x, &t]);
        allclose(&none[0], &f64t(&[2], &[0., 4.]), 0.0, 1e-12).unwrap();
    }

    #[test]
    fn nll_spatial_and_ignore_outside_range() {
        // x [1, 2, 2]: class axis 1, one spatial dim; target [1, 2] = [[1, -1]].
        let x = f64t(&[1, 2, 2], &[-1., -2., -3., -4.]);
        let t = i64t(&[1, 2], &[1, -1]);
        let none = run(&NllLoss::new(Reduction::None, Some(-1)), &[&x, &t]);
        allclose(&none[0], &f64t(&[1, 2], &[3., 0.]), 0.0, 1e-12).unwrap();
        // Without ignore_index the -1 target is an error, not a silent answer.
        assert!(NllLoss::new(Reduction::None, None).eval(&[&x, &t]).is_err());
    }

    #[test]
    fn sce_by_hand() {
        // Scores [0, ln 3] → probabilities [1/4, 3/4]; target 1.
        let x = f64t(&[1, 2], &[0., 3f64.ln()]);
        let t = i64t(&[1], &[1]);
        let out = run(&SoftmaxCrossEntropy::new(Reduction::Mean, None), &[&x, &t]);
        allclose(&out[0], &f64t(&[], &[-(0.75f64).ln()]), 0.0, 1e-12).unwrap();
        allclose(
            &out[1],
            &f64t(&[1, 2], &[(0.25f64).ln(), (0.75f64).ln()]),
            0.0,
            1e-12,
        )
        .unwrap();
    }

    #[test]
    fn infer_errors() {
        let x = TensorType::concrete(DType::F32, &[2, 3, 4]);
        let t = TensorType::concrete(DType::I64, &[2, 4]);
        let op = NllLoss::new(Reduction::None, None);
        assert_eq!(
            op.infer(&[&x, &t]).unwrap()[0],
            TensorType::concrete(DType::F32, &[2, 4])
        );
        let bad_t = TensorType::concrete(DType::I64, &[2, 3]);
        assert!(matches!(op.infer(&[&x, &bad_t]), Err(OpError::Shape(_))));
        let ft = TensorType::concrete(DType::F32, &[2, 4]);
        assert!(matches!(op.infer(&[&x, &ft]), Err(OpError::DType(_))));
        let w = TensorType::concrete(DType::F32, &[4]);
        assert!(matches!(op.infer(&[&x, &t, &w]), Err(OpError::Shape(_))));
        assert!(matches!(op.infer(&[&x]), Err(OpError::Arity { .. })));
        let mut r = AttrReader::new(vec![(
            "reduction".into(),
            crate::attr::AttrValue::Str("avg".into()),
        )]);
        assert!(NllLoss::parse("nll_loss", &mut r).is_err());
    }

    #[test]
    fn attrs_roundtrip() {
        roundtrip(&NllLoss::new(Reduction::Sum, Some(-100)));
        roundtrip(&NllLoss::new(Reduction::Mean, None));
        roundtrip(&SoftmaxCrossEntropy::new(Reduction::None, Some(3)));
        let mut r = AttrReader::default();
        assert_eq!(
            NllLoss::parse("nll_loss", &mut r).unwrap(),
            NllLoss::new(Reduction::Mean, None)
        );
    }
}
