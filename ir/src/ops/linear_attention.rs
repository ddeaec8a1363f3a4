//! `linear_attention`: recurrent linear attention with an optional decay gate
//! and delta-rule correction (ONNX LinearAttention, opset 27).
//!
//! Per step `t`, per KV head, with state `S [Dk, Dv]`:
//! gated: `S *= exp(g_t)` (g per head or per key feature);
//! delta: `v_t = beta_t * (v_t - S^T k_t)`;
//! then `S += k_t v_t^T` and `o_t = scale * q_t^T S` for each query head of the
//! group. Inputs `q [B, T, Hq*Dk]`, `k [B, T, Hkv*Dk]`, `v [B, T, Hkv*Dv]`, then
//! in order the past state `[B, Hkv, Dk, Dv]` (when given), the decay
//! `[B, T, Hkv or Hkv*Dk]` (gated rules) and beta `[B, T, Hkv or 1]` (delta
//! rules). Outputs `o [B, T, Hq*Dv]` and the final state.

use ndarray::{ArrayD, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::op::{dtype_err, expect_arity_range, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::concrete;
use crate::shape::TensorType;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpdateRule {
    Linear,
    Gated,
    Delta,
    GatedDelta,
}

impl UpdateRule {
    pub fn name(self) -> &'static str {
        match self {
            UpdateRule::Linear => "linear",
            UpdateRule::Gated => "gated",
            UpdateRule::Delta => "delta",
            UpdateRule::GatedDelta => "gated_delta",
        }
    }
    pub fn from_name(s: &str) -> Option<UpdateRule> {
        [
            UpdateRule::Linear,
            UpdateRule::Gated,
            UpdateRule::Delta,
            UpdateRule::GatedDelta,
        ]
        .into_iter()
        .find(|r| r.name() == s)
    }
    fn gated(self) -> bool {
        matches!(self, UpdateRule::Gated | UpdateRule::GatedDelta)
    }
    fn delta(self) -> bool {
        matches!(self, UpdateRule::Delta | UpdateRule::GatedDelta)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LinearAttention {
    pub rule: UpdateRule,
    pub q_heads: i64,
    pub kv_heads: i64,
    /// `None` = `1 / sqrt(Dk)`.
    pub scale: Option<F64>,
}

/// The dimensions every check needs: (B, T, Dk, Dv).
struct Dims {
    b: usize,
    t: usize,
    dk: usize,
    dv: usize,
}

impl LinearAttention {
    /// Input positions of (past state, decay, beta) for `n` inputs.
    fn slots(&self, n: usize) -> OpResult<(Option<usize>, Option<usize>, Option<usize>)> {
        let extra = usize::from(self.rule.gated()) + usize::from(self.rule.delta());
        let has_state = match n.checked_sub(3 + extra) {
            Some(0) => false,
            Some(1) => true,
            _ => {
                return Err(OpError::Arity {
                    expected: format!("{} or {}", 3 + extra, 4 + extra),
                    found: n,
                })
            }
        };
        let mut next = 3;
        let mut take = |on: bool| {
            on.then(|| {
                next += 1;
                next - 1
            })
        };
        let s = take(has_state);
        let g = take(self.rule.gated());
        let b = take(self.rule.delta());
        Ok((s, g, b))
    }
    fn dims(&self, shapes: &[Vec<usize>]) -> OpResult<Dims> {
        let (hq, hkv) = (self.q_heads as usize, self.kv_heads as usize);
        if self.q_heads <= 0 || self.kv_heads <= 0 || hq % hkv != 0 {
            return crate::op::attr_err(
                "q_heads",
                format!(
                    "must be a positive multiple of kv_heads, found {} and {}",
                    self.q_heads, self.kv_heads
                ),
            );
        }
        let (q, k, v) = (&shapes[0], &shapes[1], &shapes[2]);
        let ok3 = q.len() == 3 && k.len() == 3 && v.len() == 3;
        if !ok3 || k[..2] != q[..2] || v[..2] != q[..2] || q[2] % hq != 0 || v[2] % hkv != 0 {
            return shape_err(format!(
                "linear_attention q, k, v must be [B, T, heads*D] with matching B, T, found {q:?}, {k:?}, {v:?}"
            ));
        }
        let (dk, dv) = (q[2] / hq, v[2] / hkv);
        if k[2] != hkv * dk {
            return shape_err(format!(
                "linear_attention key {k:?} must be [B, T, {}]",
                hkv * dk
            ));
        }
        let d = Dims {
            b: q[0],
            t: q[1],
            dk,
            dv,
        };
        let (s, g, be) = self.slots(shapes.len())?;
        if let Some(i) = s {
            if shapes[i] != [d.b, hkv, dk, dv] {
                return shape_err(format!(
                    "linear_attention past state must be [{}, {hkv}, {dk}, {dv}], found {:?}",
                    d.b, shapes[i]
                ));
            }
        }
        if let Some(i) = g {
            let gs = &shapes[i];
            if gs.len() != 3 || gs[..2] != q[..2] || (gs[2] != hkv && gs[2] != hkv * dk) {
                return shape_err(format!(
                    "linear_attention decay must be [B, T, {hkv} or {}], found {gs:?}",
                    hkv * dk
                ));
            }
        }
        if let Some(i) = be {
            let bs = &shapes[i];
            if bs.len() != 3 || bs[..2] != q[..2] || (bs[2] != hkv && bs[2] != 1) {
                return shape_err(format!(
                    "linear_attention beta must be [B, T, {hkv} or 1], found {bs:?}"
                ));
            }
        }
        Ok(d)
    }
}

impl OpDef for LinearAttention {
    const SPELLINGS: &'static [&'static str] = &["linear_attention"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let r = attrs.str("update_rule", "gated_delta")?;
        let rule = UpdateRule::from_name(&r).ok_or_else(|| AttrError {
            attr: "update_rule".into(),
            msg: format!("must be linear, gated, delta or gated_delta, found {r:?}"),
        })?;
        Ok(LinearAttention {
            rule,
            q_heads: attrs.req_int("q_heads")?,
            kv_heads: attrs.req_int("kv_heads")?,
            scale: attrs.opt_float("scale")?.map(F64),
        })
    }
    fn spelling(&self) -> &'static str {
        "linear_attention"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.str("update_rule", self.rule.name());
        w.int("q_heads", self.q_heads);
        w.int("kv_heads", self.kv_heads);
        if let Some(s) = self.scale {
            w.float("scale", s.0);
        }
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity_range(inputs, 3, 6)?;
        let q = inputs[0];
        crate::ops::require_float(q, "linear_attention query")?;
        let (s, _, _) = self.slots(inputs.len())?;
        for (i, t) in inputs.iter().enumerate() {
            if Some(i) != s && t.dtype != q.dtype {
                return dtype_err(format!(
                    "linear_attention input {i} must be {} like the query, found {}",
                    q.dtype, t.dtype
                ));
            }
        }
        let shapes = inputs
            .iter()
            .map(|t| concrete(t, "linear_attention input"))
            .collect::<OpResult<Vec<_>>>()?;
        let d = self.dims(&shapes)?;
        let state_dt = s.map_or(q.dtype, |i| inputs[i].dtype);
        crate::ops::require_float(
            &TensorType::concrete(state_dt, &[]),
            "linear_attention state",
        )?;
        Ok(vec![
            TensorType::concrete(q.dtype, &[d.b, d.t, self.q_heads as usize * d.dv]),
            TensorType::concrete(state_dt, &[d.b, self.kv_heads as usize, d.dk, d.dv]),
        ])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity_range(inputs, 3, 6)?;
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let Dims { b, t, dk, dv } = self.dims(&shapes)?;
        let (si, gi, bi) = self.slots(inputs.len())?;
        let (hq, hkv) = (self.q_heads as usize, self.kv_heads as usize);
        let group = hq / hkv;
        let flat = |i: usize| -> Vec<f64> { inputs[i].to_f64().iter().copied().collect() };
        let (q, k, v) = (flat(0), flat(1), flat(2));
        let mut state = si.map_or_else(|| vec![0.0; b * hkv * dk * dv], flat);
        let decay = gi.map(|i| (flat(i), shapes[i][2]));
        let beta = bi.map(|i| (flat(i), shapes[i][2]));
        let scale = self.scale.map_or(1.0 / (dk as f64).sqrt(), |s| s.0);
        let mut out = vec![0.0; b * t * hq * dv];
        let mut vt = vec![0.0; dv];
        for bb in 0..b {
            for step in 0..t {
                let row = bb * t + step;
                for h in 0..hkv {
                    let s = &mut state[(bb * hkv + h) * dk * dv..][..dk * dv];
                    let kt = &k[row * hkv * dk + h * dk..][..dk];
                    vt.copy_from_slice(&v[row * hkv * dv + h * dv..][..dv]);
                    if let Some((g, w)) = &decay {
                        for i in 0..dk {
                            let gv = if *w == hkv {
                                g[row * hkv + h]
                            } else {
                                g[row * hkv * dk + h * dk + i]
                            };
                            let e = gv.exp();
                            s[i * dv..(i + 1) * dv].iter_mut().for_each(|x| *x *= e);
                        }
                    }
                    if let Some((be, w)) = &beta {
                        let bv = be[row * w + if *w == 1 { 0 } else { h }];
                        for (m, x) in vt.iter_mut().enumerate() {
                            let retrieved: f64 = (0..dk).map(|i| s[i * dv + m] * kt[i]).sum();
                            *x = bv * (*x - retrieved);
                        }
                    }
                    for i in 0..dk {
                        for m in 0..dv {
                            s[i * dv + m] += kt[i] * vt[m];
                        }
                    }
                    for qh in h * group..(h + 1) * group {
                        let qt = &q[row * hq * dk + qh * dk..][..dk];
                        for m in 0..dv {
                            let acc: f64 = (0..dk).map(|i| qt[i] * s[i * dv + m]).sum();
                            out[row * hq * dv + qh * dv + m] = scale * acc;
                        }
                    }
                }
            }
        }
        let err = |e: ndarray::ShapeError| OpError::Eval(e.to_string());
        let state_dt = si.map_or(inputs[0].dtype(), |i| inputs[i].dtype());
        Ok(vec![
            Tensor::from_f64(
                inputs[0].dtype(),
                ArrayD::from_shape_vec(IxDyn(&[b, t, hq * dv]), out).map_err(err)?,
            ),
            Tensor::from_f64(
                state_dt,
                ArrayD::from_shape_vec(IxDyn(&[b, hkv, dk, dv]), state).map_err(err)?,
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::roundtrip;

    fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    #[test]
    fn linear_and_delta_by_hand() {
        // B = 1, T = 2, one head, Dk = Dv = 1, scale 1.
        // linear: S1 = k1 v1 = 2, o1 = q1 S1 = 2; S2 = 2 + 1*3 = 5, o2 = 2*5 = 10.
        let q = f64t(&[1, 2, 1], &[1., 2.]);
        let k = f64t(&[1, 2, 1], &[1., 1.]);
        let v = f64t(&[1, 2, 1], &[2., 3.]);
        let op = LinearAttention {
            rule: UpdateRule::Linear,
            q_heads: 1,
            kv_heads: 1,
            scale: Some(F64(1.0)),
        };
        let out = op.eval(&[&q, &k, &v]).unwrap();
        assert_eq!(out[0].values_f64(), [2., 10.]);
        assert_eq!(out[1].values_f64(), [5.]);
        // delta with beta 1: v1' = 2 - 0 = 2, S1 = 2; v2' = 3 - 2 = 1, S2 = 3.
        let beta = f64t(&[1, 2, 1], &[1., 1.]);
        let op = LinearAttention {
            rule: UpdateRule::Delta,
            ..op
        };
        let tys: Vec<TensorType> = [&q, &k, &v, &beta].iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        assert_eq!(
            op.infer(&refs).unwrap()[1].shape.concrete().unwrap(),
            [1, 1, 1, 1]
        );
        let out = op.eval(&[&q, &k, &v, &beta]).unwrap();
        assert_eq!(out[0].values_f64(), [2., 6.]);
        // Missing beta is an arity error.
        assert!(op.eval(&[&q, &k, &v]).is_err());
    }

    #[test]
    fn attrs_roundtrip() {
        roundtrip(&LinearAttention {
            rule: UpdateRule::GatedDelta,
            q_heads: 8,
            kv_heads: 4,
            scale: None,
        });
        roundtrip(&LinearAttention {
            rule: UpdateRule::Gated,
            q_heads: 2,
            kv_heads: 2,
            scale: Some(F64(0.25)),
        });
    }
}
