//! Ops that exist for gradient rules: the adjoints that have no reasonable
//! expression in other ops. Each has reference semantics like any op, so the
//! gradient checks and every backend test them the same way.
//!
//! - `max_pool_grad(x, dy)` / `avg_pool_grad(x, dy)`, with the attributes of
//!   the pool: `dx`, the gradient routed back through each window (max: to the
//!   first position holding the window's maximum; avg: spread over the
//!   window's counted positions, divided by the pool's divisor).
//! - `nll_loss_grad(dloss, logp, target[, weight])`, with the attributes of
//!   `nll_loss`: the gradient with respect to the log-probabilities.

use ndarray::{Array2, ArrayD, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::op::{
    expect_arity, expect_arity_range, shape_err, FusionKind, OpDef, OpError, OpResult,
};
use crate::ops::loss::{LossAttrs, Reduction};
use crate::ops::pool::{output, planes, Pool, PoolKind, PoolPlan, Tap};
use crate::shape::TensorType;
use crate::tensor::Tensor;

/// The gradient of `max_pool` / `avg_pool` with respect to its input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolGrad {
    pub pool: Pool,
}

impl OpDef for PoolGrad {
    const SPELLINGS: &'static [&'static str] = &["max_pool_grad", "avg_pool_grad"];

    fn parse(spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let pool = if spelling == "max_pool_grad" {
            "max_pool"
        } else {
            "avg_pool"
        };
        Ok(PoolGrad {
            pool: Pool::parse(pool, attrs)?,
        })
    }
    fn spelling(&self) -> &'static str {
        match self.pool.kind {
            PoolKind::Max => "max_pool_grad",
            PoolKind::Avg => "avg_pool_grad",
        }
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        self.pool.write_attrs(w);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        let plan = self.pool.plan(&inputs[..1])?;
        if inputs[1] != &plan.ty {
            return shape_err(format!(
                "{}: the output gradient must have the pool's output type {}, found {}",
                self.spelling(),
                plan.ty,
                inputs[1]
            ));
        }
        Ok(vec![inputs[0].clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 2)?;
        let xty = inputs[0].ty();
        let PoolPlan {
            geom,
            xs,
            kernel,
            out,
            ..
        } = self.pool.plan(&[&xty])?;
        let taps = geom.sliding_taps(&xs, &kernel, &out)?;
        let (kp, op) = (
            kernel.iter().product::<usize>(),
            out.iter().product::<usize>(),
        );
        let x = planes(inputs[0])?;
        let dy = planes(inputs[1])?;
        if dy.dim() != (x.nrows(), op) {
            return Err(OpError::Eval(format!(
                "{}: output gradient has {:?} planes, expected {:?}",
                self.spelling(),
                dy.dim(),
                (x.nrows(), op)
            )));
        }
        let mut dx = Array2::<f64>::zeros(x.dim());
        for ((xr, dyr), mut dxr) in x.rows().into_iter().zip(dy.rows()).zip(dx.rows_mut()) {
            for o in 0..op {
                let at = (0..kp).filter_map(|k| match taps[k * op + o] {
                    Tap::At(p) => Some(p),
                    _ => None,
                });
                match self.pool.kind {
                    PoolKind::Max => {
                        // The first position holding the maximum.
                        let mut best: Option<usize> = None;
                        for p in at {
                            if best.is_none_or(|b| xr[p] > xr[b]) {
                                best = Some(p);
                            }
                        }
                        if let Some(b) = best {
                            dxr[b] += dyr[o];
                        }
                    }
                    PoolKind::Avg => {
                        let divisor = (0..kp)
                            .filter(|&k| match taps[k * op + o] {
                                Tap::At(_) => true,
                                Tap::Pad => self.pool.count_include_pad,
                                Tap::Outside => false,
                            })
                            .count();
                        for p in at {
                            dxr[p] += dyr[o] / divisor as f64;
                        }
                    }
                }
            }
        }
        output(dx, &xty)
    }
}

/// The gradient of `nll_loss` with respect to its log-probabilities:
/// inputs the loss gradient (the loss's type), the log-probabilities
/// `[N, C, ...]`, the targets and the optional class weights.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NllLossGrad {
    pub attrs: LossAttrs,
}

impl OpDef for NllLossGrad {
    const SPELLINGS: &'static [&'static str] = &["nll_loss_grad"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(NllLossGrad {
            attrs: LossAttrs::parse(attrs)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "nll_loss_grad"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        self.attrs.write(w);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity_range(inputs, 3, 4)?;
        let loss = crate::ops::loss::NllLoss {
            attrs: self.attrs.clone(),
        }
        .infer(&inputs[1..])?
        .remove(0);
        if inputs[0] != &loss {
            return shape_err(format!(
                "nll_loss_grad: the loss gradient must have the loss's type {loss}, found {}",
                inputs[0]
            ));
        }
        Ok(vec![inputs[1].clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity_range(inputs, 3, 4)?;
        let (dl, lp, target) = (inputs[0], inputs[1], inputs[2]);
        let dims = lp.shape().to_vec();
        if dims.len() < 2 {
            return Err(OpError::Eval(
                "nll_loss_grad input must have rank >= 2".into(),
            ));
        }
        let (n, c) = (dims[0], dims[1]);
        let rest: usize = dims[2..].iter().product();
        let ts: Vec<i64> = target.to_i64().iter().copied().collect();
        let dls: Vec<f64> = dl.to_f64().iter().copied().collect();
        let w: Option<Vec<f64>> = inputs.get(3).map(|w| w.to_f64().iter().copied().collect());
        if ts.len() != n * rest || w.as_ref().is_some_and(|w| w.len() != c) {
            return Err(OpError::Eval("nll_loss_grad: input shapes disagree".into()));
        }
        let weight_of = |t: i64| -> OpResult<Option<f64>> {
            if Some(t) == self.attrs.ignore_index {
                return Ok(None);
            }
            if t < 0 || t as usize >= c {
                return Err(OpError::Eval(format!(
                    "nll_loss_grad target {t} is outside [0, {c}) and is not ignore_index"
                )));
            }
            Ok(Some(w.as_ref().map_or(1.0, |w| w[t as usize])))
        };
        let mut wsum = 0.0;
        for &t in &ts {
            wsum += weight_of(t)?.unwrap_or(0.0);
        }
        let mut g = ArrayD::<f64>::zeros(IxDyn(&[n, c, rest]));
        for i in 0..n {
            for d in 0..rest {
                let t = ts[i * rest + d];
                let Some(wt) = weight_of(t)? else { continue };
                let v = match self.attrs.reduction {
                    Reduction::None => dls[i * rest + d] * -wt,
                    Reduction::Sum => dls[0] * -wt,
                    Reduction::Mean => dls[0] * -wt / wsum,
                };
                g[[i, t as usize, d]] = v;
            }
        }
        let g = g
            .into_shape_with_order(IxDyn(&dims))
            .map_err(|e| OpError::Eval(e.to_string()))?;
        Ok(vec![Tensor::from_f64(lp.dtype(), g)])
    }
}
