//! Reverse-mode automatic differentiation.
//!
//! [`autodiff`] appends to a graph the nodes that compute the gradient of a
//! scalar loss with respect to chosen values (params, inputs or any internal
//! value) and makes each gradient a graph output named `grad_<name>`.
//!
//! The walk: mark the values that depend on a `wrt` value (forward) and the
//! values the loss depends on (backward); only nodes on a path between the two
//! are differentiated. The loss is seeded with ones; then, in reverse
//! topological order, each such node's output gradients (the contributions of
//! all its consumers, summed) go through its op's gradient rule
//! ([`kiln_ir::OpDef::grad`]), which builds its input gradients as new nodes.
//! A node on the path whose op has no rule is an error naming the node and
//! the op, never a silent zero. A `wrt` value the loss does not depend on gets
//! a zero gradient.
//!
//! The forward values a rule reads (a matmul's operands, an activation's
//! output) simply stay live into the backward nodes, so the memory planner
//! sees them through ordinary liveness.

use std::collections::{HashMap, HashSet};

use kiln_ir::grad::{GradCtx, GradError};
use kiln_ir::{Graph, ValueId};

use super::{Pass, PassCtx, PassFailure};

/// Why the gradient graph could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AutodiffError {
    #[error("the loss must be a float scalar (one element), found {0}")]
    LossNotScalar(String),
    #[error("cannot differentiate with respect to {name}: its type {ty} is not a float type")]
    NotFloat { name: String, ty: String },
    #[error("{node}: {err}")]
    Rule { node: String, err: GradError },
    #[error(
        "{node}: the gradient rule returned {found} for input {slot}, whose type is {expected}"
    )]
    BadGradient {
        node: String,
        slot: usize,
        expected: String,
        found: String,
    },
    #[error("the graph has a cycle")]
    Cycle,
    #[error("{0}")]
    Other(String),
}

/// A readable name for a value: its own name, else `%<id>`.
fn value_label(g: &Graph, v: ValueId) -> String {
    g.value(v)
        .name
        .clone()
        .unwrap_or_else(|| format!("%{}", v.index()))
}

/// Build the gradient of `loss` with respect to each of `wrt`, as new nodes of
/// `g`, and return them in `wrt` order (no outputs are added).
pub fn gradients(
    g: &mut Graph,
    loss: ValueId,
    wrt: &[ValueId],
) -> Result<Vec<ValueId>, AutodiffError> {
    let lty = g.value(loss).ty.clone();
    if !lty.dtype.is_float() || lty.shape.numel() != Some(1) {
        return Err(AutodiffError::LossNotScalar(lty.to_string()));
    }
    for &w in wrt {
        let ty = &g.value(w).ty;
        if !ty.dtype.is_float() {
            return Err(AutodiffError::NotFloat {
                name: value_label(g, w),
                ty: ty.to_string(),
            });
        }
    }
    if wrt.is_empty() {
        return Ok(vec![]);
    }
    let order = g.order().map_err(|_| AutodiffError::Cycle)?;

    // Forward: values that depend on a wrt value.
    let mut fwd: HashSet<ValueId> = wrt.iter().copied().collect();
    for &n in &order {
        let node = g.node(n);
        if node.inputs.iter().any(|v| fwd.contains(v)) {
            fwd.extend(node.outputs.iter().copied());
        }
    }
    // Backward: values the loss depends on.
    let mut to_loss: HashSet<ValueId> = HashSet::from([loss]);
    for &n in order.iter().rev() {
        let node = g.node(n);
        if node.outputs.iter().any(|v| to_loss.contains(v)) {
            to_loss.extend(node.inputs.iter().copied());
        }
    }

    let mut contrib: HashMap<ValueId, Vec<ValueId>> = HashMap::new();
    let mut cx = GradCtx::new(g);
    cx.wanted = Some(fwd.clone());
    let seed = cx.full(&lty, 1.0).map_err(|err| AutodiffError::Rule {
        node: "the loss seed".into(),
        err,
    })?;
    contrib.insert(loss, vec![seed]);

    for &n in order.iter().rev() {
        let node = cx.graph.node(n).clone();
        let on_path = node
            .outputs
            .iter()
            .any(|v| fwd.contains(v) && to_loss.contains(v));
        if !on_path {
            continue;
        }
        let label = cx.graph.label(n);
        let rule_err = |err| AutodiffError::Rule {
            node: label.clone(),
            err,
        };
        let mut dout = Vec::with_capacity(node.outputs.len());
        for &o in &node.outputs {
            let d = sum_contributions(&mut cx, contrib.remove(&o)).map_err(rule_err)?;
            // Kept summed, for an internal value that is also a `wrt`.
            if let Some(d) = d {
                contrib.insert(o, vec![d]);
            }
            dout.push(d);
        }
        if dout.iter().all(Option::is_none) {
            continue;
        }
        let grads = node
            .op
            .grad(&mut cx, &node.inputs, &node.outputs, &dout)
            .map_err(rule_err)?;
        if grads.len() != node.inputs.len() {
            return Err(AutodiffError::Other(format!(
                "{label}: the gradient rule returned {} gradients for {} inputs",
                grads.len(),
                node.inputs.len()
            )));
        }
        for (slot, (&x, gx)) in node.inputs.iter().zip(grads).enumerate() {
            let Some(gx) = gx else { continue };
            if !fwd.contains(&x) {
                continue;
            }
            let (want, got) = (&cx.graph.value(x).ty, &cx.graph.value(gx).ty);
            if want != got {
                return Err(AutodiffError::BadGradient {
                    node: label,
                    slot,
                    expected: want.to_string(),
                    found: got.to_string(),
                });
            }
            contrib.entry(x).or_default().push(gx);
        }
    }

    let mut out = Vec::with_capacity(wrt.len());
    for &w in wrt {
        // A value listed twice takes its gradient once.
        let existing = contrib.get(&w).cloned();
        let gsum = match existing {
            Some(list) => {
                let s =
                    sum_contributions(&mut cx, Some(list)).map_err(|err| AutodiffError::Rule {
                        node: value_label(cx.graph, w),
                        err,
                    })?;
                s.expect("a non-empty list")
            }
            None => {
                let ty = cx.graph.value(w).ty.clone();
                cx.zeros(&ty).map_err(|err| AutodiffError::Rule {
                    node: value_label(cx.graph, w),
                    err,
                })?
            }
        };
        contrib.insert(w, vec![gsum]);
        out.push(gsum);
    }
    Ok(out)
}

/// Sum the gradient contributions of one value (`add` nodes, in order).
fn sum_contributions(
    cx: &mut GradCtx,
    list: Option<Vec<ValueId>>,
) -> Result<Option<ValueId>, GradError> {
    let Some(list) = list else { return Ok(None) };
    let mut it = list.into_iter();
    let Some(mut acc) = it.next() else {
        return Ok(None);
    };
    for v in it {
        acc = cx.add2(acc, v)?;
    }
    Ok(Some(acc))
}

/// Append the gradient graph of `loss` with respect to `wrt` (all float
/// params when empty) and add each gradient as an output `grad_<name>`
/// (`grad_<id>` for an unnamed value). Returns the gradient values.
pub fn autodiff(
    g: &mut Graph,
    loss: ValueId,
    wrt: &[ValueId],
) -> Result<Vec<ValueId>, AutodiffError> {
    let wrt: Vec<ValueId> = if wrt.is_empty() {
        g.params()
            .iter()
            .copied()
            .filter(|&p| g.value(p).ty.dtype.is_float())
            .collect()
    } else {
        wrt.to_vec()
    };
    let existing: HashSet<kiln_ir::NodeId> = g.node_ids().into_iter().collect();
    let grads = gradients(g, loss, &wrt)?;
    for (&w, &gv) in wrt.iter().zip(&grads) {
        let name = match &g.value(w).name {
            Some(n) => format!("grad_{n}"),
            None => format!("grad_{}", w.index()),
        };
        g.set_output(name, gv);
    }
    // Rules build every input's gradient; drop the new nodes no output reads
    // (gradients of inputs nobody asked for).
    let mut live: HashSet<kiln_ir::NodeId> = HashSet::new();
    let mut stack: Vec<ValueId> = g.outputs().iter().map(|(_, v)| *v).collect();
    while let Some(v) = stack.pop() {
        if let Some(n) = g.producer(v) {
            if g.contains_node(n) && live.insert(n) {
                stack.extend(g.node(n).inputs.iter().copied());
            }
        }
    }
    for n in g.node_ids() {
        if !existing.contains(&n) && !live.contains(&n) {
            g.remove_node(n);
        }
    }
    Ok(grads)
}

/// The loss `kiln opt --passes autodiff` differentiates: the output named
/// `loss`, else the only output holding one float element.
pub fn find_loss(g: &Graph) -> Result<ValueId, AutodiffError> {
    if let Some((_, v)) = g.outputs().iter().find(|(n, _)| n == "loss") {
        return Ok(*v);
    }
    let scalars: Vec<ValueId> = g
        .outputs()
        .iter()
        .map(|(_, v)| *v)
        .filter(|&v| {
            let ty = &g.value(v).ty;
            ty.dtype.is_float() && ty.shape.numel() == Some(1)
        })
        .collect();
    match scalars.as_slice() {
        [v] => Ok(*v),
        [] => Err(AutodiffError::Other(
            "no output named `loss` and no scalar float output to differentiate".into(),
        )),
        _ => Err(AutodiffError::Other(
            "several scalar float outputs: name the loss output `loss`".into(),
        )),
    }
}

/// The pass: differentiate the loss (see [`find_loss`]) with respect to every
/// float param.
pub struct Autodiff;

impl Pass for Autodiff {
    fn name(&self) -> &'static str {
        "autodiff"
    }
    fn description(&self) -> &'static str {
        "append the reverse-mode gradient of the `loss` output w.r.t. every float param (outputs grad_<param>)"
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCtx) -> Result<bool, PassFailure> {
        let loss = find_loss(g).map_err(|e| PassFailure(e.to_string()))?;
        let grads = autodiff(g, loss, &[]).map_err(|e| PassFailure(e.to_string()))?;
        Ok(!grads.is_empty())
    }
}
