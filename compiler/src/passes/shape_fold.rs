//! Shape folding: remove shape and data-movement ops that leave their input
//! unchanged — a reshape, flatten, expand, squeeze or unsqueeze to the same
//! type; an identity transpose; a slice that keeps every element in order; a
//! pad of zero width; a concat of one input. The ONNX importer already
//! evaluates shape *computations* (Shape → Gather → Concat → Reshape); what
//! it leaves behind are these no-op ops, which this pass removes.

use kiln_ir::{Graph, NodeId, Op, ValueId};

use super::util::replace_node;
use super::{Pass, PassCtx, PassFailure};

pub struct ShapeFold;

/// The value `n` forwards unchanged, if it is a no-op.
fn forwarded(g: &Graph, n: NodeId) -> Option<ValueId> {
    let node = g.node(n);
    if node.outputs.len() != 1 || node.inputs.is_empty() {
        return None;
    }
    let x = node.inputs[0];
    let (xt, ot) = (&g.value(x).ty, &g.value(node.outputs[0]).ty);
    if xt != ot {
        return None;
    }
    let rank = xt.rank();
    let noop = match &node.op {
        Op::Reshape(_) | Op::Flatten(_) | Op::Expand(_) | Op::Squeeze(_) | Op::Unsqueeze(_) => true,
        Op::Transpose(t) => {
            if t.perm.is_empty() {
                rank <= 1
            } else {
                t.perm
                    .iter()
                    .enumerate()
                    .all(|(i, &a)| a == i as i64 || a == i as i64 - rank as i64)
            }
        }
        // Same length along every axis with forward steps = every element, in order.
        Op::Slice(s) => s.steps.iter().all(|&st| st >= 1),
        Op::Pad(p) => p.pads.iter().all(|&v| v == 0),
        Op::Concat(_) => node.inputs.len() == 1,
        _ => false,
    };
    noop.then_some(x)
}

impl Pass for ShapeFold {
    fn name(&self) -> &'static str {
        "shape-fold"
    }
    fn description(&self) -> &'static str {
        "remove reshapes, transposes, slices, pads and concats that leave their input unchanged"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassFailure> {
        let mut changed = false;
        for n in g.node_ids() {
            if !g.contains_node(n) {
                continue;
            }
            if let Some(x) = forwarded(g, n) {
                replace_node(g, cx.weights, n, &[x]);
                changed = true;
            }
        }
        Ok(changed)
    }
}
