//! Batch-norm folding. Inference batch norm is `y = x·s + t` per channel,
//! with `s = γ/√(σ²+ε)` and `t = β − μ·s`, so it folds into the constant
//! weights of a neighbouring linear op:
//!
//! - **conv → batch_norm**: `w'[m] = w[m]·s[m]`, `b' = b·s + t`;
//! - **matmul (+ bias) → batch_norm** on `[N, M]`: `w'[:, m] = w[:, m]·s[m]`, `b' = b·s + t`;
//! - **batch_norm → conv** without padding: `w'[m, c] = w[m, c]·s[c]`,
//!   `b'[m] = b[m] + Σ w[m, c, k]·t[c]` (with padding the zeros would not be
//!   normalised, so it is not exact and is left alone);
//! - **batch_norm → matmul** on `[N, K]`: `w'[k] = s[k]·w[k]`, plus a bias `t·w`.
//!
//! Everything is computed in f64 and rounded once to the weight's dtype. The
//! folded-away op's result must have no other reader.

use kiln_ir::ops::elementwise::{Binary, BinaryKind};
use kiln_ir::ops::linalg::MatMul;
use kiln_ir::{Graph, NodeId, Op, Tensor, ValueId};
use ndarray::{Array1, ArrayD, Axis, IxDyn};

use super::util::{self, const_value, replace_node, single_user, value_base_name};
use super::{Pass, PassCtx, PassFailure};

pub struct BnFold;

impl Pass for BnFold {
    fn name(&self) -> &'static str {
        "bn-fold"
    }
    fn description(&self) -> &'static str {
        "fold inference batch norm into the weights of an adjacent conv or matmul"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassFailure> {
        let mut changed = false;
        for n in g.node_ids() {
            if !g.contains_node(n) || !matches!(g.node(n).op, Op::BatchNorm(_)) {
                continue;
            }
            let done = fold_into_producer(g, cx, n) || fold_into_consumer(g, cx, n);
            changed |= done;
        }
        Ok(changed)
    }
}

/// Per-channel `(s, t)` of a batch norm with constant statistics.
fn coeffs(g: &Graph, cx: &PassCtx, bn: NodeId) -> Option<(Array1<f64>, Array1<f64>)> {
    let node = g.node(bn);
    let Op::BatchNorm(op) = &node.op else {
        return None;
    };
    if node.inputs.len() != 5 || node.outputs.len() != 1 {
        return None;
    }
    let get = |i: usize| -> Option<Array1<f64>> {
        let t = const_value(g, cx.weights, cx.opts, node.inputs[i])?;
        t.to_f64().into_shape_with_order(t.len()).ok()
    };
    let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
    let s: Array1<f64> = ndarray::Zip::from(&gamma)
        .and(&var)
        .map_collect(|&g, &v| g / (v + op.epsilon.0).sqrt());
    let t = &beta - &(&mean * &s);
    Some((s, t))
}

fn konst(g: &Graph, cx: &PassCtx, v: ValueId) -> Option<(ArrayD<f64>, kiln_ir::DType)> {
    let t = const_value(g, cx.weights, cx.opts, v)?;
    Some((t.to_f64(), t.dtype()))
}

/// Scale `w` along `axis` by `s`.
fn scale_axis(w: &ArrayD<f64>, axis: usize, s: &Array1<f64>) -> ArrayD<f64> {
    let mut out = w.clone();
    for (i, mut lane) in out.axis_iter_mut(Axis(axis)).enumerate() {
        lane.mapv_inplace(|x| x * s[i]);
    }
    out
}

fn add_weight(
    g: &mut Graph,
    cx: &mut PassCtx,
    a: ArrayD<f64>,
    dtype: kiln_ir::DType,
    base: &str,
) -> ValueId {
    cx.folded += 1;
    util::add_weight(g, cx, Tensor::from_f64(dtype, a), base)
}

/// Names for the folded weight and bias: `conv1.weight` → `conv1.weight.bn`,
/// `conv1.bias.bn`.
fn names(g: &Graph, w: ValueId) -> (String, String) {
    let base = value_base_name(g, w);
    let stem = base.strip_suffix(".weight").unwrap_or(&base);
    (format!("{base}.bn"), format!("{stem}.bias.bn"))
}

/// conv → bn, or matmul (+ bias) → bn.
fn fold_into_producer(g: &mut Graph, cx: &mut PassCtx, bn: NodeId) -> bool {
    let x = g.node(bn).inputs[0];
    let Some(p) = g.producer(x) else { return false };
    if single_user(g, x).is_none() {
        return false;
    }
    let Some((s, t)) = coeffs(g, cx, bn) else {
        return false;
    };
    match g.node(p).op.clone() {
        Op::Conv(conv) => {
            let pin = g.node(p).inputs.clone();
            let Some((w, dt)) = konst(g, cx, pin[1]) else {
                return false;
            };
            if w.shape()[0] != s.len() {
                return false;
            }
            let b = match pin.get(2) {
                Some(&bv) => match konst(g, cx, bv) {
                    Some((b, _)) => b,
                    None => return false,
                },
                None => ArrayD::zeros(IxDyn(&[s.len()])),
            };
            let w2 = scale_axis(&w, 0, &s);
            let b2 = (&b * &s.clone().into_dyn()) + &t.clone().into_dyn();
            let (wn, bn_name) = names(g, pin[1]);
            let wv = add_weight(g, cx, w2, dt, &wn);
            let bv = add_weight(g, cx, b2, dt, &bn_name);
            let Ok(y) = g.add(conv, &[pin[0], wv, bv]) else {
                return false;
            };
            replace_node(g, cx.weights, bn, &[y]);
            true
        }
        Op::MatMul(_) => fold_matmul_bias(g, cx, bn, p, None, &s, &t),
        Op::Binary(b) if b.kind == BinaryKind::Add => {
            // matmul → add(bias) → bn
            let pin = g.node(p).inputs.clone();
            for (mm_side, bias_side) in [(0, 1), (1, 0)] {
                let Some(mm) = g.producer(pin[mm_side]) else {
                    continue;
                };
                if matches!(g.node(mm).op, Op::MatMul(_)) && single_user(g, pin[mm_side]).is_some()
                {
                    return fold_matmul_bias(g, cx, bn, mm, Some(pin[bias_side]), &s, &t);
                }
            }
            false
        }
        _ => false,
    }
}

#[allow(clippy::too_many_arguments)]
fn fold_matmul_bias(
    g: &mut Graph,
    cx: &mut PassCtx,
    bn: NodeId,
    mm: NodeId,
    bias: Option<ValueId>,
    s: &Array1<f64>,
    t: &Array1<f64>,
) -> bool {
    let mout = g.node(mm).outputs[0];
    if g.value(mout).ty.rank() != 2 {
        return false;
    }
    let min = g.node(mm).inputs.clone();
    let Some((w, dt)) = konst(g, cx, min[1]) else {
        return false;
    };
    if w.ndim() != 2 || w.shape()[1] != s.len() {
        return false;
    }
    let b = match bias {
        Some(bv) => match konst(g, cx, bv) {
            Some((b, _)) if b.len() == s.len() => b.into_shape_with_order(IxDyn(&[s.len()])).ok(),
            _ => None,
        },
        None => Some(ArrayD::zeros(IxDyn(&[s.len()]))),
    };
    let Some(b) = b else { return false };
    let w2 = scale_axis(&w, 1, s);
    let b2 = (&b * &s.clone().into_dyn()) + &t.clone().into_dyn();
    let (wn, bn_name) = names(g, min[1]);
    let wv = add_weight(g, cx, w2, dt, &wn);
    let bv = add_weight(g, cx, b2, dt, &bn_name);
    let Ok(y) = g.add(MatMul, &[min[0], wv]) else {
        return false;
    };
    let Ok(z) = g.add(Binary::new(BinaryKind::Add), &[y, bv]) else {
        return false;
    };
    if g.value(z).ty != g.value(g.node(bn).outputs[0]).ty {
        return false;
    }
    replace_node(g, cx.weights, bn, &[z]);
    true
}

/// bn → conv (no padding), or bn → matmul.
fn fold_into_consumer(g: &mut Graph, cx: &mut PassCtx, bn: NodeId) -> bool {
    let y = g.node(bn).outputs[0];
    let Some((c, 0)) = single_user(g, y) else {
        return false;
    };
    let Some((s, t)) = coeffs(g, cx, bn) else {
        return false;
    };
    let x = g.node(bn).inputs[0];
    let cin = g.node(c).inputs.clone();
    // Only conv and matmul consumers fold; both take a second input.
    if cin.len() < 2 {
        return false;
    }
    let (wn, bn_name) = names(g, cin[1]);
    match g.node(c).op.clone() {
        Op::Conv(conv) => {
            if conv.pads.iter().any(|&p| p != 0) || conv.groups < 1 {
                return false;
            }
            let Some((w, dt)) = konst(g, cx, cin[1]) else {
                return false;
            };
            let (m, cg) = (w.shape()[0], w.shape()[1]);
            let groups = conv.groups as usize;
            if cg * groups != s.len() || m % groups != 0 {
                return false;
            }
            let b = match cin.get(2) {
                Some(&bv) => match konst(g, cx, bv) {
                    Some((b, _)) => b,
                    None => return false,
                },
                None => ArrayD::zeros(IxDyn(&[m])),
            };
            let mut w2 = w.clone();
            let mut b2 = b.clone();
            let per_group = m / groups;
            for (mi, mut filt) in w2.axis_iter_mut(Axis(0)).enumerate() {
                let off = (mi / per_group) * cg;
                for (ci, mut lane) in filt.axis_iter_mut(Axis(0)).enumerate() {
                    let ch = off + ci;
                    b2[[mi]] += lane.sum() * t[ch];
                    lane.mapv_inplace(|v| v * s[ch]);
                }
            }
            let wv = add_weight(g, cx, w2, dt, &wn);
            let bv = add_weight(g, cx, b2, dt, &bn_name);
            let Ok(z) = g.add(conv, &[x, wv, bv]) else {
                return false;
            };
            replace_node(g, cx.weights, c, &[z]);
            true
        }
        Op::MatMul(_) => {
            if g.value(x).ty.rank() != 2 {
                return false;
            }
            let Some((w, dt)) = konst(g, cx, cin[1]) else {
                return false;
            };
            if w.ndim() != 2 || w.shape()[0] != s.len() {
                return false;
            }
            let w2 = scale_axis(&w, 0, &s);
            let Ok(w2d) = w.clone().into_dimensionality::<ndarray::Ix2>() else {
                return false;
            };
            let b2 = t.dot(&w2d).into_dyn();
            let wv = add_weight(g, cx, w2, dt, &wn);
            let bv = add_weight(g, cx, b2, dt, &bn_name);
            let Ok(mmv) = g.add(MatMul, &[x, wv]) else {
                return false;
            };
            let Ok(z) = g.add(Binary::new(BinaryKind::Add), &[mmv, bv]) else {
                return false;
            };
            if g.value(z).ty != g.value(g.node(c).outputs[0]).ty {
                return false;
            }
            replace_node(g, cx.weights, c, &[z]);
            true
        }
        _ => false,
    }
}
