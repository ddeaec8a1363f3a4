//! Helpers shared by the passes.

use kiln_ir::{Graph, NodeId, Op, Tensor, ValueDef, ValueId, Weights};

use super::{PassCtx, PassOptions};

/// The value of `v` if it is known at compile time: a `constant` node's result,
/// or (when params are frozen) a param's weight.
pub fn const_value<'a>(
    g: &'a Graph,
    w: &'a Weights,
    opts: &PassOptions,
    v: ValueId,
) -> Option<&'a Tensor> {
    let val = g.value(v);
    match val.def {
        ValueDef::Node { node, .. } if g.contains_node(node) => match &g.node(node).op {
            Op::Constant(c) => Some(&c.value),
            _ => None,
        },
        ValueDef::Param if opts.fold_params => w.get(val.name.as_deref()?),
        _ => None,
    }
}

/// Whether every element of `t` equals `x` (false for an empty tensor).
pub fn is_all(t: &Tensor, x: f64) -> bool {
    !t.is_empty() && t.to_f64().iter().all(|&e| e == x)
}

/// Whether `v` is a graph output.
pub fn is_output(g: &Graph, v: ValueId) -> bool {
    g.outputs().iter().any(|(_, o)| *o == v)
}

/// The only reader of `v` (node and slot), if it has exactly one and is not a
/// graph output.
pub fn single_user(g: &Graph, v: ValueId) -> Option<(NodeId, usize)> {
    let users = g.users(v);
    (users.len() == 1 && !is_output(g, v)).then(|| users[0])
}

/// A param name not used by any input or param, derived from `base`.
pub fn fresh_name(g: &Graph, w: &Weights, base: &str) -> String {
    let taken = |n: &str| {
        w.get(n).is_some()
            || g.inputs()
                .iter()
                .chain(g.params())
                .any(|&v| g.value(v).name.as_deref() == Some(n))
    };
    if !taken(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}.{i}"))
        .find(|n| !taken(n))
        .expect("an unused name exists")
}

/// A readable base name for a value: its own name, or its producer's, or its id.
pub fn value_base_name(g: &Graph, v: ValueId) -> String {
    if let Some(n) = &g.value(v).name {
        return n.clone();
    }
    if let Some(p) = g.producer(v) {
        if let Some(n) = &g.node(p).name {
            return n.clone();
        }
        return format!("{}{}", g.node(p).op.spelling(), v.index());
    }
    format!("v{}", v.index())
}

/// Put a compile-time tensor into the graph: small tensors inline as a
/// `constant` node, larger ones as a new weight named `base` (made unique).
pub fn materialize(g: &mut Graph, cx: &mut PassCtx, t: Tensor, base: &str) -> ValueId {
    if t.len() <= cx.opts.inline_max_elems {
        let n = g.add_node_typed(
            Op::Constant(kiln_ir::ops::shape::Constant { value: t.clone() }),
            &[],
            vec![t.ty()],
            None,
        );
        g.node(n).outputs[0]
    } else {
        add_weight(g, cx, t, base)
    }
}

/// Add `t` as a new weight named `base` (made unique).
pub fn add_weight(g: &mut Graph, cx: &mut PassCtx, t: Tensor, base: &str) -> ValueId {
    let name = fresh_name(g, cx.weights, base);
    let v = g.add_param(name.clone(), t.ty());
    cx.weights.insert(name, t);
    v
}

/// Point every use of `node`'s results at `new` (same arity), remove it, and
/// remove whatever that leaves unused (nodes, and params with their weights),
/// so each pass leaves a clean graph without waiting for `dce`.
pub fn replace_node(g: &mut Graph, w: &mut Weights, node: NodeId, new: &[ValueId]) {
    let outs = g.node(node).outputs.clone();
    for (old, &n) in outs.iter().zip(new) {
        g.replace_all_uses(*old, n);
    }
    remove_dead(g, w, node);
}

/// Remove `node` if none of its results is read, then its inputs' producers
/// (and params) that this leaves unread.
pub fn remove_dead(g: &mut Graph, w: &mut Weights, node: NodeId) {
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if !g.contains_node(n) {
            continue;
        }
        let outs = g.node(n).outputs.clone();
        if outs
            .iter()
            .any(|&v| is_output(g, v) || !g.users(v).is_empty())
        {
            continue;
        }
        let inputs = g.remove_node(n).map(|n| n.inputs).unwrap_or_default();
        for v in inputs {
            if is_output(g, v) || !g.users(v).is_empty() {
                continue;
            }
            match g.value(v).def {
                ValueDef::Node { node, .. } => stack.push(node),
                ValueDef::Param => {
                    if let Some(name) = g.value(v).name.clone() {
                        g.remove_param(v);
                        w.0.remove(&name);
                    }
                }
                ValueDef::Input(_) => {}
            }
        }
    }
}
