//! Common-subexpression elimination: two nodes with equal ops (attributes
//! included, compared through `Op: Eq + Hash`, never through strings) and the
//! same inputs compute the same values, so the later one is replaced by the
//! earlier. Constants compare bit for bit.

use std::collections::HashMap;

use kiln_ir::{Graph, NodeId, Op, ValueId};

use super::util::replace_node;
use super::{Pass, PassCtx, PassFailure};

pub struct Cse;

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }
    fn description(&self) -> &'static str {
        "merge nodes with the same op, attributes and inputs"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassFailure> {
        let order = g
            .order()
            .map_err(|n| PassFailure(format!("{} is part of a cycle", g.label(n))))?;
        let mut seen: HashMap<(Op, Vec<ValueId>), NodeId> = HashMap::new();
        let mut changed = false;
        // Canonical order visits producers first, so inputs are already merged.
        for n in order {
            if !g.contains_node(n) {
                continue;
            }
            let node = g.node(n);
            let key = (node.op.clone(), node.inputs.to_vec());
            match seen.get(&key) {
                Some(&first) => {
                    let keep = g.node(first).outputs.clone();
                    replace_node(g, cx.weights, n, &keep);
                    changed = true;
                }
                None => {
                    seen.insert(key, n);
                }
            }
        }
        Ok(changed)
    }
}
