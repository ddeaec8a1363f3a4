//! Algebraic simplification, as a table of rewrite rules.
//!
//! Each [`Rule`] looks at one node and either declines or returns values that
//! replace the node's results (adding any new nodes it needs). The pass tries
//! every rule on every node in canonical order and repeats until nothing fires
//! (bounded by `max_iterations`). A rule fires only where the rewrite keeps the
//! result's type and value; the one exception is documented on `add-zero`.

use kiln_ir::ops::elementwise::{BinaryKind, UnaryKind};
use kiln_ir::ops::linalg::MatMul;
use kiln_ir::ops::reduce::ReduceKind;
use kiln_ir::ops::shape::{Expand, Reshape};
use kiln_ir::{Graph, NodeId, Op, OpDef, Tensor, TensorType, ValueId};
use ndarray::{ArrayD, IxDyn};

use super::util::{add_weight, const_value, is_all, materialize, replace_node, value_base_name};
use super::{Pass, PassCtx, PassFailure};

/// A rewrite: `apply` returns replacements for the node's results, or `None`.
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
    pub apply: fn(&mut Graph, &mut PassCtx, NodeId) -> Option<Vec<ValueId>>,
}

/// The rule table, tried in this order.
pub const RULES: &[Rule] = &[
    Rule {
        name: "mul-one",
        description: "x * 1 and 1 * x → x, when the result has x's type",
        apply: |g, cx, n| binary_identity(g, cx, n, BinaryKind::Mul, 1.0, true),
    },
    Rule {
        name: "add-zero",
        description: "x + 0 and 0 + x → x (also turns -0.0 + 0 into -0.0, which compares equal)",
        apply: |g, cx, n| binary_identity(g, cx, n, BinaryKind::Add, 0.0, true),
    },
    Rule {
        name: "sub-zero",
        description: "x - 0 → x",
        apply: |g, cx, n| binary_identity(g, cx, n, BinaryKind::Sub, 0.0, false),
    },
    Rule {
        name: "div-one",
        description: "x / 1 → x",
        apply: |g, cx, n| binary_identity(g, cx, n, BinaryKind::Div, 1.0, false),
    },
    Rule {
        name: "sub-self",
        description: "x - x → 0 for integer x (not floats: inf - inf and NaN - NaN are NaN)",
        apply: sub_self,
    },
    Rule {
        name: "neg-neg",
        description: "neg(neg(x)) → x",
        apply: neg_neg,
    },
    Rule {
        name: "transpose-transpose",
        description: "transpose(transpose(x)) → one transpose, or x when the perms cancel",
        apply: transpose_transpose,
    },
    Rule {
        name: "squeeze-unsqueeze",
        description: "squeeze(unsqueeze(x)) and unsqueeze(squeeze(x)) on the same axes → x",
        apply: squeeze_unsqueeze,
    },
    Rule {
        name: "reshape-chain",
        description: "a chain of reshape/flatten/squeeze/unsqueeze → one reshape, or x",
        apply: reshape_chain,
    },
    Rule {
        name: "dropout-inference",
        description: "dropout(x) → x (inference)",
        apply: dropout,
    },
    Rule {
        name: "cast-same",
        description: "cast(x) to x's own dtype → x",
        apply: cast_same,
    },
    Rule {
        name: "matmul-transposed-const",
        description: "matmul(a, transpose(W)) with constant W → matmul(a, Wᵀ) with Wᵀ pre-computed",
        apply: matmul_transposed_const,
    },
    Rule {
        name: "reduce-broadcast",
        description: "a sum/mean/max/min over axes an expand only broadcast → reshape (times the count for sum)",
        apply: reduce_broadcast,
    },
];

pub struct Simplify;

impl Pass for Simplify {
    fn name(&self) -> &'static str {
        "simplify"
    }
    fn description(&self) -> &'static str {
        "algebraic rewrite rules (x*1, double transpose, reshape chains, cast-to-same, ...)"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassFailure> {
        let mut changed = false;
        for _ in 0..cx.opts.max_iterations.max(1) {
            let mut fired = false;
            let order = g
                .order()
                .map_err(|n| PassFailure(format!("{} is part of a cycle", g.label(n))))?;
            for n in order {
                // Every rule reads the node's first input.
                if !g.contains_node(n) || g.node(n).inputs.is_empty() {
                    continue;
                }
                for rule in RULES {
                    if let Some(new) = (rule.apply)(g, cx, n) {
                        tracing::debug!(rule = rule.name, node = %g.label(n), "simplify");
                        replace_node(g, cx.weights, n, &new);
                        fired = true;
                        break;
                    }
                }
            }
            if !fired {
                break;
            }
            changed = true;
        }
        Ok(changed)
    }
}

fn ty(g: &Graph, v: ValueId) -> &TensorType {
    &g.value(v).ty
}

fn out0(g: &Graph, n: NodeId) -> ValueId {
    g.node(n).outputs[0]
}

/// The op and inputs of `v`'s producer.
fn producer(g: &Graph, v: ValueId) -> Option<(NodeId, &Op, ValueId)> {
    let p = g.producer(v)?;
    let node = g.node(p);
    Some((p, &node.op, *node.inputs.first()?))
}

fn binary_identity(
    g: &mut Graph,
    cx: &mut PassCtx,
    n: NodeId,
    kind: BinaryKind,
    unit: f64,
    commutes: bool,
) -> Option<Vec<ValueId>> {
    let node = g.node(n);
    let Op::Binary(b) = &node.op else { return None };
    if b.kind != kind {
        return None;
    }
    let (a, c) = (node.inputs[0], node.inputs[1]);
    let out = ty(g, out0(g, n));
    let is_unit =
        |v: ValueId| const_value(g, cx.weights, cx.opts, v).is_some_and(|t| is_all(t, unit));
    if is_unit(c) && ty(g, a) == out {
        return Some(vec![a]);
    }
    if commutes && is_unit(a) && ty(g, c) == out {
        return Some(vec![c]);
    }
    None
}

fn sub_self(g: &mut Graph, cx: &mut PassCtx, n: NodeId) -> Option<Vec<ValueId>> {
    let node = g.node(n);
    let Op::Binary(b) = &node.op else { return None };
    if b.kind != BinaryKind::Sub || node.inputs[0] != node.inputs[1] {
        return None;
    }
    let out = ty(g, out0(g, n)).clone();
    if !out.dtype.is_int() {
        return None;
    }
    let dims = out.shape.concrete()?;
    let zeros = Tensor::from_i64(out.dtype, ArrayD::zeros(IxDyn(&dims)));
    let base = value_base_name(g, out0(g, n));
    Some(vec![materialize(g, cx, zeros, &base)])
}

fn neg_neg(g: &mut Graph, _cx: &mut PassCtx, n: NodeId) -> Option<Vec<ValueId>> {
    let node = g.node(n);
    let Op::Unary(u) = &node.op else { return None };
    if u.kind != UnaryKind::Neg {
        return None;
    }
    let (_, inner, x) = producer(g, node.inputs[0])?;
    match inner {
        Op::Unary(i) if i.kind == UnaryKind::Neg => Some(vec![x]),
        _ => None,
    }
}

/// A transpose's permutation resolved for `rank` (empty = reverse).
fn perm_of(perm: &[i64], rank: usize) -> Option<Vec<usize>> {
    if perm.is_empty() {
        return Some((0..rank).rev().collect());
    }
    let p: Vec<usize> = perm
        .iter()
        .map(|&a| usize::try_from(if a < 0 { a + rank as i64 } else { a }).ok())
        .collect::<Option<_>>()?;
    (p.len() == rank).then_some(p)
}

fn transpose_transpose(g: &mut Graph, _cx: &mut PassCtx, n: NodeId) -> Option<Vec<ValueId>> {
    let node = g.node(n);
    let Op::Transpose(outer) = &node.op else {
        return None;
    };
    let (_, inner_op, x) = producer(g, node.inputs[0])?;
    let Op::Transpose(inner) = inner_op else {
        return None;
    };
    let rank = ty(g, x).rank();
    let (p1, p2) = (perm_of(&inner.perm, rank)?, perm_of(&outer.perm, rank)?);
    // z[i] = y[p2[i]] = x[p1[p2[i]]].
    let q: Vec<usize> = p2.iter().map(|&i| p1[i]).collect();
    if q.iter().enumerate().all(|(i, &a)| i == a) {
        return Some(vec![x]);
    }
    let t = kiln_ir::ops::shape::Transpose::new(q.into_iter().map(|a| a as i64).collect());
    Some(vec![g.add(t, &[x]).ok()?])
}

fn is_reshape_like(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_)
    )
}

fn squeeze_unsqueeze(g: &mut Graph, _cx: &mut PassCtx, n: NodeId) -> Option<Vec<ValueId>> {
    let node = g.node(n);
    let (_, inner, x) = producer(g, node.inputs[0])?;
    let pair = matches!(
        (&node.op, inner),
        (Op::Squeeze(_), Op::Unsqueeze(_)) | (Op::Unsqueeze(_), Op::Squeeze(_))
    );
    // Both keep the row-major element order, so equal types mean equal values.
    (pair && ty(g, x) == ty(g, out0(g, n))).then(|| vec![x])
}

fn reshape_chain(g: &mut Graph, _cx: &mut PassCtx, n: NodeId) -> Option<Vec<ValueId>> {
    let node = g.node(n);
    if !is_reshape_like(&node.op) {
        return None;
    }
    let (_, inner, x) = producer(g, node.inputs[0])?;
    if !is_reshape_like(inner) {
        return None;
    }
    let out = ty(g, out0(g, n)).clone();
    if *ty(g, x) == out {
        return Some(vec![x]);
    }
    let target: Vec<i64> = match (out.shape.concrete(), &node.op) {
        (Some(d), _) => d.iter().map(|&d| d as i64).collect(),
        // `0` copies the input's dim, which changes meaning when the input changes.
        (None, Op::Reshape(r)) if !r.shape.contains(&0) => r.shape.clone(),
        _ => return None,
    };
    let v = g.add(Reshape::new(target), &[x]).ok()?;
    if *ty(g, v) == out {
        return Some(vec![v]);
    }
    if let Some(p) = g.producer(v) {
        g.remove_node(p);
    }
    None
}

fn dropout(g: &mut Graph, _cx: &mut PassCtx, n: NodeId) -> Option<Vec<ValueId>> {
    let node = g.node(n);
    match &node.op {
        Op::Dropout(_) if node.outputs.len() == 1 => Some(vec![node.inputs[0]]),
        _ => None,
    }
}

fn cast_same(g: &mut Graph, _cx: &mut PassCtx, n: NodeId) -> Option<Vec<ValueId>> {
    let node = g.node(n);
    match &node.op {
        Op::Cast(c) if ty(g, node.inputs[0]).dtype == c.to => Some(vec![node.inputs[0]]),
        _ => None,
    }
}

fn matmul_transposed_const(g: &mut Graph, cx: &mut PassCtx, n: NodeId) -> Option<Vec<ValueId>> {
    let node = g.node(n);
    if !matches!(node.op, Op::MatMul(_)) {
        return None;
    }
    let (a, b) = (node.inputs[0], node.inputs[1]);
    let (_, inner, w) = producer(g, b)?;
    let Op::Transpose(t) = inner else { return None };
    let wt = const_value(g, cx.weights, cx.opts, w)?;
    let folded = t.eval(&[wt]).ok()?.pop()?;
    let base = format!("{}.T", value_base_name(g, w));
    // A weight stays a weight; a transposed inline constant stays inline if small.
    let wv = if matches!(g.value(w).def, kiln_ir::ValueDef::Param) {
        add_weight(g, cx, folded, &base)
    } else {
        materialize(g, cx, folded, &base)
    };
    cx.folded += 1;
    Some(vec![g.add(MatMul, &[a, wv]).ok()?])
}

fn reduce_broadcast(g: &mut Graph, cx: &mut PassCtx, n: NodeId) -> Option<Vec<ValueId>> {
    let node = g.node(n);
    let Op::Reduce(r) = &node.op else { return None };
    let (_, inner, x) = producer(g, node.inputs[0])?;
    if !matches!(inner, Op::Expand(_)) {
        return None;
    }
    let kind = r.kind;
    if !matches!(
        kind,
        ReduceKind::Sum | ReduceKind::Mean | ReduceKind::Max | ReduceKind::Min
    ) {
        return None;
    }
    let es = ty(g, node.inputs[0]).shape.concrete()?;
    let xty = ty(g, x).clone();
    let xd = xty.shape.concrete()?;
    let out = ty(g, out0(g, n)).clone();
    let outd = out.shape.concrete()?;
    let rank = es.len();
    let mut xs = vec![1usize; rank - xd.len()];
    xs.extend(&xd);
    let axes: Vec<usize> = if r.axes.is_empty() {
        (0..rank).collect()
    } else {
        r.axes
            .iter()
            .map(|&a| usize::try_from(if a < 0 { a + rank as i64 } else { a }).ok())
            .collect::<Option<_>>()?
    };
    // Every reduced axis must be one the expand broadcast (size 1 in x).
    if axes.iter().any(|&a| a >= rank || xs[a] != 1) {
        return None;
    }
    let count: usize = axes.iter().map(|&a| es[a]).product();
    let mut reduced: Vec<i64> = Vec::new();
    for (i, &d) in xs.iter().enumerate() {
        if !axes.contains(&i) {
            reduced.push(d as i64);
        } else if r.keepdims {
            reduced.push(1);
        }
    }
    let mut v = x;
    if kind == ReduceKind::Sum && count != 1 {
        if !xty.dtype.is_numeric() {
            return None;
        }
        let c = Tensor::from_f64(xty.dtype, ArrayD::from_elem(IxDyn(&[]), count as f64));
        let cv = materialize(g, cx, c, "count");
        v = g
            .add(
                kiln_ir::ops::elementwise::Binary::new(BinaryKind::Mul),
                &[v, cv],
            )
            .ok()?;
    }
    let reduced_u: Vec<usize> = reduced.iter().map(|&d| d as usize).collect();
    if xd != reduced_u {
        v = g.add(Reshape::new(reduced), &[v]).ok()?;
    }
    if reduced_u != outd {
        v = g
            .add(
                Expand {
                    shape: outd.iter().map(|&d| d as i64).collect(),
                },
                &[v],
            )
            .ok()?;
    }
    (*ty(g, v) == out).then(|| vec![v])
}
