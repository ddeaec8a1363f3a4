//! Dead-code elimination: drop nodes no output depends on, and the params
//! (with their weights) that nothing reads any more.

use std::collections::HashSet;

use kiln_ir::{Graph, ValueId};

use super::{Pass, PassCtx, PassFailure};

pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }
    fn description(&self) -> &'static str {
        "remove nodes and params that no graph output depends on"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassFailure> {
        // Mark backwards from the outputs.
        let mut live_vals: HashSet<ValueId> = g.outputs().iter().map(|(_, v)| *v).collect();
        let mut stack: Vec<ValueId> = live_vals.iter().copied().collect();
        let mut live_nodes = HashSet::new();
        while let Some(v) = stack.pop() {
            if let Some(n) = g.producer(v) {
                if g.contains_node(n) && live_nodes.insert(n) {
                    for &i in &g.node(n).inputs {
                        if live_vals.insert(i) {
                            stack.push(i);
                        }
                    }
                }
            }
        }
        let mut changed = false;
        for n in g.node_ids() {
            if !live_nodes.contains(&n) {
                g.remove_node(n);
                changed = true;
            }
        }
        for p in g.params().to_vec() {
            if !live_vals.contains(&p) {
                let name = g.value(p).name.clone().unwrap_or_default();
                g.remove_param(p);
                cx.weights.0.remove(&name);
                changed = true;
            }
        }
        Ok(changed)
    }
}
