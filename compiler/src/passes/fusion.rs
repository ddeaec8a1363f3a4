//! Fusion: decide which nodes become one kernel, by fusion kind (TVM-style).
//!
//! - Chains of elementwise and broadcast ops fuse into one kernel.
//! - Injective ops (reshape, transpose, slice, pad, expand...) fuse into their
//!   consumer, which reads through their index arithmetic.
//! - A reduction (reduce, softmax, layer norm...) fuses with its elementwise or
//!   injective producers and with elementwise consumers of its result.
//! - A matmul or conv takes its elementwise consumers (bias, activation,
//!   residual add, scaling) as a fused epilogue over its output.
//! - Opaque ops stay alone.
//!
//! A producer joins its consumer's group only when that consumer is its only
//! reader (and it is not a graph output), so every group is a tree whose
//! results other than the root's never leave it: groups are convex and a
//! kernel never has to write an intermediate. A group holds at most one
//! reduction or matmul/conv, and an epilogue must have the anchor's output
//! shape. The pass only annotates (`Node::group`); code generation reads it.

use std::collections::HashMap;

use kiln_ir::{FusionKind, Graph, NodeId};

use super::util::is_output;
use super::{Pass, PassCtx, PassFailure};

pub struct Fusion;

struct Group {
    members: Vec<NodeId>,
    /// The reduction, matmul/conv or opaque op the group is built around.
    anchor: Option<(NodeId, FusionKind)>,
}

/// `p`'s results are read by `n` alone.
fn sole_consumer(g: &Graph, p: NodeId, n: NodeId) -> bool {
    g.node(p)
        .outputs
        .iter()
        .all(|&v| !is_output(g, v) && g.users(v).iter().all(|&(u, _)| u == n))
}

impl Pass for Fusion {
    fn name(&self) -> &'static str {
        "fusion"
    }
    fn description(&self) -> &'static str {
        "group nodes into kernels: elementwise chains, injective producers, reductions, matmul/conv epilogues"
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCtx) -> Result<bool, PassFailure> {
        let order = g
            .order()
            .map_err(|n| PassFailure(format!("{} is part of a cycle", g.label(n))))?;
        let mut groups: Vec<Group> = Vec::new();
        let mut group_of: HashMap<NodeId, usize> = HashMap::new();
        for &n in &order {
            let kind = g.node(n).op.fusion_kind();
            let anchor = match kind {
                FusionKind::Reduction | FusionKind::OutFusable | FusionKind::Opaque => {
                    Some((n, kind))
                }
                _ => None,
            };
            group_of.insert(n, groups.len());
            groups.push(Group {
                members: vec![n],
                anchor,
            });
            if kind == FusionKind::Opaque {
                continue;
            }
            let producers: Vec<NodeId> = g
                .node(n)
                .inputs
                .iter()
                .filter_map(|&v| g.producer(v))
                .collect();
            for p in producers {
                let (pg, ng) = (group_of[&p], group_of[&n]);
                if pg == ng || !sole_consumer(g, p, n) {
                    continue;
                }
                let ok = match (groups[pg].anchor, kind) {
                    (Some((_, FusionKind::Opaque)), _) => false,
                    // Input side: elementwise/injective producers into any
                    // consumer except a matmul/conv (which reads plain buffers).
                    (None, FusionKind::OutFusable) => false,
                    (None, _) => true,
                    // Output side: an elementwise consumer of a reduction or a
                    // matmul/conv, over the anchor's own output shape.
                    (Some((a, _)), FusionKind::Elementwise | FusionKind::Broadcast) => {
                        let anchor_ty = &g.value(g.node(a).outputs[0]).ty;
                        let n_ty = &g.value(g.node(n).outputs[0]).ty;
                        groups[ng].anchor.is_none() && anchor_ty.shape == n_ty.shape
                    }
                    (Some(_), _) => false,
                };
                if !ok {
                    continue;
                }
                let moved = std::mem::take(&mut groups[pg].members);
                for m in &moved {
                    group_of.insert(*m, ng);
                }
                groups[ng].members.extend(moved);
                if groups[ng].anchor.is_none() {
                    groups[ng].anchor = groups[pg].anchor.take();
                }
            }
        }
        let mut changed = false;
        for (k, grp) in groups.iter().enumerate() {
            for &m in &grp.members {
                let id = Some(k as u32);
                if g.node(m).group != id {
                    g.node_mut(m).group = id;
                    changed = true;
                }
            }
        }
        Ok(changed)
    }
}
