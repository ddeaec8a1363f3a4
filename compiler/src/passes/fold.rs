//! Constant folding: a node whose inputs are all known at compile time
//! (`constant` nodes, and params when they are frozen) is evaluated with the
//! reference semantics and replaced by its results. A result more than
//! `fold_budget_bytes` larger than the node's inputs is left alone (an
//! `expand` of a scalar to a large shape stays an `expand`), so folding never
//! bloats the artifact. Nodes whose evaluation fails are left for run time,
//! where the same error is reported.

use kiln_ir::{Graph, Op, Tensor};

use super::util::{const_value, materialize, replace_node, value_base_name};
use super::{Pass, PassCtx, PassFailure};

pub struct ConstFold;

fn bytes(t: &Tensor) -> usize {
    t.len() * t.dtype().size_bytes()
}

impl Pass for ConstFold {
    fn name(&self) -> &'static str {
        "const-fold"
    }
    fn description(&self) -> &'static str {
        "evaluate nodes whose inputs are all constants, within a size budget"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassFailure> {
        let order = g
            .order()
            .map_err(|n| PassFailure(format!("{} is part of a cycle", g.label(n))))?;
        let mut changed = false;
        for n in order {
            if !g.contains_node(n) {
                continue;
            }
            let node = g.node(n);
            if matches!(node.op, Op::Constant(_)) {
                continue;
            }
            let args: Option<Vec<&Tensor>> = node
                .inputs
                .iter()
                .map(|&v| const_value(g, cx.weights, cx.opts, v))
                .collect();
            let Some(args) = args else { continue };
            let in_bytes: usize = args.iter().map(|t| bytes(t)).sum();
            let Ok(outs) = node.op.eval(&args) else {
                continue;
            };
            let out_bytes: usize = outs.iter().map(bytes).sum();
            if out_bytes > in_bytes + cx.opts.fold_budget_bytes {
                continue;
            }
            // Keep declared types: a fold must never change what users see.
            let declared: Vec<_> = node
                .outputs
                .iter()
                .map(|v| g.value(*v).ty.clone())
                .collect();
            if outs.iter().zip(&declared).any(|(t, ty)| t.ty() != *ty) {
                continue;
            }
            let outputs = node.outputs.clone();
            let mut new = Vec::with_capacity(outs.len());
            for (t, v) in outs.into_iter().zip(outputs) {
                let base = value_base_name(g, v);
                new.push(materialize(g, cx, t, &format!("{base}.folded")));
                cx.folded += 1;
            }
            replace_node(g, cx.weights, n, &new);
            changed = true;
        }
        Ok(changed)
    }
}
