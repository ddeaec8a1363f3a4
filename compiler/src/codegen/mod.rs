//! Code generation for the CPU backend: a fused, verified graph to a
//! [`Program`] (steps, kernel IR, memory plan) that kiln-runtime executes.
//!
//! Each fusion group (see `passes::fusion`) becomes one step:
//!
//! - a group around a matmul or conv becomes a native GEMM/conv step whose
//!   elementwise consumers form an *epilogue* kernel, applied per output tile;
//! - a group around a reduction (softmax, log_softmax, reduce_*, layer_norm,
//!   global pools) becomes one kernel with `Reduce` statements;
//! - an elementwise/injective group becomes one kernel.
//!
//! A group that does not lower as a whole (an op without a kernel
//! expression, a non-f32 value...) is split into its nodes, each lowered
//! alone where it can be, and otherwise run through its reference semantics
//! (a `Ref` step). Reshape-like nodes over an arena value are free: the
//! output aliases the input's memory. Then [`memory::plan`] places every
//! materialised f32 value in one arena.

mod lower;
mod memory;

use std::collections::BTreeMap;

use kiln_ir::kernel::{KBinary, KReduce, KUnary, Kernel};
use kiln_ir::ops::pool::PoolKind;
use kiln_ir::ops::reduce::ReduceKind;
use kiln_ir::program::{Epilogue, Program, Step};
use kiln_ir::{DType, FusionKind, Graph, NodeId, Op, ValueDef, ValueId, Weights};

use lower::{Builder, Map, Reject};

/// The graph cannot be compiled at all (its shapes are not bound, or it
/// has a cycle). Individual ops never cause this: they fall back to `Ref`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("codegen: {0}")]
pub struct CodegenError(pub String);

/// How a program was put together, for `kiln run --stats` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodegenStats {
    /// Groups that lowered whole, and groups split into single nodes.
    pub groups_fused: usize,
    pub groups_split: usize,
    /// Why each split group did not lower (first reason per group).
    pub rejects: Vec<String>,
}

/// Compile `g` (all dims bound; fusion annotations optional) for the CPU
/// backend. `w` supplies constant values some lowerings need (exponents).
pub fn compile(g: &Graph, w: &Weights) -> Result<(Program, CodegenStats), CodegenError> {
    let mut vals: Vec<ValueId> = g.inputs().to_vec();
    for n in g.node_ids() {
        vals.extend(g.node(n).outputs.iter().copied());
    }
    for v in vals {
        if !g.value(v).ty.shape.is_concrete() {
            return Err(CodegenError(format!(
                "value {} has unbound dimensions ({}); bind them first",
                g.value(v).name.as_deref().unwrap_or("?"),
                g.value(v).ty
            )));
        }
    }
    let order = g
        .order()
        .map_err(|n| CodegenError(format!("{} is part of a cycle", g.label(n))))?;
    // Groups, in order of their last member (a group's root). A group is
    // emitted as one step at its root only if nothing outside it reads any
    // other member's result (the fusion pass guarantees this; annotations
    // left stale by a later rewrite are not trusted): otherwise its nodes run
    // one by one in graph order.
    let mut members: BTreeMap<u32, Vec<NodeId>> = BTreeMap::new();
    for &n in &order {
        if let Some(k) = g.node(n).group {
            members.entry(k).or_default().push(n);
        }
    }
    let closed = |ms: &[NodeId]| {
        let root = ms[ms.len() - 1];
        ms.iter().filter(|&&m| m != root).all(|&m| {
            g.node(m).outputs.iter().all(|&v| {
                !g.outputs().iter().any(|(_, o)| *o == v)
                    && g.users(v).iter().all(|(u, _)| ms.contains(u))
            })
        })
    };
    let is_closed: BTreeMap<u32, bool> = members.iter().map(|(k, ms)| (*k, closed(ms))).collect();
    let mut groups: Vec<Vec<NodeId>> = Vec::new();
    for &n in &order {
        match g.node(n).group.map(|k| (&members[&k], is_closed[&k])) {
            Some((ms, true)) => {
                if ms.last() == Some(&n) {
                    groups.push(ms.clone());
                }
            }
            _ => groups.push(vec![n]),
        }
    }
    let mut cx = Cx {
        g,
        w,
        kernels: Vec::new(),
        steps: Vec::new(),
        stats: CodegenStats::default(),
    };
    for grp in &groups {
        if grp.len() > 1 {
            match cx.group(grp) {
                Ok(step) => {
                    cx.stats.groups_fused += 1;
                    cx.steps.push(step);
                    continue;
                }
                Err(Reject(why)) => {
                    tracing::debug!("group of {} split: {why}", g.label(grp[grp.len() - 1]));
                    cx.stats.groups_split += 1;
                    cx.stats.rejects.push(why);
                }
            }
        }
        for &n in grp {
            // A constant is not a step: the executor holds its value like a
            // weight.
            if !matches!(g.node(n).op, Op::Constant(_)) {
                let step = cx.single(n);
                cx.steps.push(step);
            }
        }
    }
    let Cx {
        kernels,
        steps,
        stats,
        ..
    } = cx;
    let program = memory::plan(g.clone(), kernels, steps);
    Ok((program, stats))
}

struct Cx<'g> {
    g: &'g Graph,
    w: &'g Weights,
    kernels: Vec<Kernel>,
    steps: Vec<Step>,
    stats: CodegenStats,
}

fn is_f32(g: &Graph, v: ValueId) -> bool {
    g.value(v).ty.dtype == DType::F32
}

fn dims(g: &Graph, v: ValueId) -> Vec<usize> {
    g.value(v).ty.shape.concrete().unwrap_or_default()
}

fn is_param(g: &Graph, v: ValueId) -> bool {
    matches!(g.value(v).def, ValueDef::Param)
}

/// Whether the runtime's GEMM runs this matmul: f32, both operands at least
/// 2-D, and the batch dims of one side all 1 or equal to the other's.
pub fn native_matmul(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    if !matches!(node.op, Op::MatMul(_)) || node.inputs.len() != 2 {
        return false;
    }
    let (a, b) = (node.inputs[0], node.inputs[1]);
    if !(is_f32(g, a) && is_f32(g, b)) {
        return false;
    }
    let (sa, sb) = (dims(g, a), dims(g, b));
    if sa.len() < 2 || sb.len() < 2 || sa.contains(&0) || sb.contains(&0) {
        return false;
    }
    let (ba, bb) = (&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
    let r = ba.len().max(bb.len());
    let pad = |v: &[usize]| {
        let mut p = vec![1; r - v.len()];
        p.extend_from_slice(v);
        p
    };
    let (ba, bb) = (pad(ba), pad(bb));
    ba.iter().all(|&d| d == 1) || bb.iter().all(|&d| d == 1) || ba == bb
}

/// Whether the runtime's convolution runs this conv: f32, 1-D or 2-D,
/// weight (and bias) parameters.
pub fn native_conv(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    let Op::Conv(_) = &node.op else { return false };
    let x = node.inputs[0];
    let rank = g.value(x).ty.rank();
    node.inputs.iter().all(|&v| is_f32(g, v))
        && (rank == 3 || rank == 4)
        && node.inputs[1..].iter().all(|&v| is_param(g, v))
        && !dims(g, x).contains(&0)
}

/// Reshape-like ops whose output can share the input's memory.
fn is_view(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_)
    )
}

impl Cx<'_> {
    /// Add `k`, or reuse an earlier kernel that differs from it only in
    /// name (an unrolled recurrent layer repeats the same step kernels), so
    /// each distinct body is compiled once.
    fn add_kernel(&mut self, k: Kernel) -> u32 {
        debug_assert!(k.validate().is_ok(), "{:?}", k.validate());
        let same = |o: &Kernel| {
            o.inner == k.inner
                && o.outer == k.outer
                && o.bufs == k.bufs
                && o.exprs == k.exprs
                && o.stmts == k.stmts
        };
        if let Some(i) = self.kernels.iter().position(same) {
            return i as u32;
        }
        self.kernels.push(k);
        (self.kernels.len() - 1) as u32
    }

    fn kernel_name(&self, root: NodeId) -> String {
        let node = self.g.node(root);
        match &node.name {
            Some(n) => format!("{}_{}", node.op.spelling(), n),
            None => format!("{}_{}", node.op.spelling(), root.index()),
        }
    }

    /// One node alone.
    fn single(&mut self, n: NodeId) -> Step {
        let g = self.g;
        let node = g.node(n);
        if native_matmul(g, n) {
            return Step::MatMul {
                node: n,
                out: node.outputs[0],
                epilogue: None,
                nodes: vec![n],
            };
        }
        if native_conv(g, n) {
            return Step::Conv {
                node: n,
                out: node.outputs[0],
                epilogue: None,
                nodes: vec![n],
            };
        }
        if let Op::Pool(p) = &node.op {
            let x = node.inputs[0];
            if is_f32(g, x) && g.value(x).ty.rank() >= 3 && p.table(&g.value(x).ty).is_ok() {
                return Step::Pool { node: n };
            }
        }
        if is_view(&node.op)
            && is_f32(g, node.inputs[0])
            && !is_param(g, node.inputs[0])
            && !matches!(g.value(node.inputs[0]).def, ValueDef::Input(_))
        {
            return Step::Alias { node: n };
        }
        match node.op.fusion_kind() {
            FusionKind::Opaque | FusionKind::OutFusable => Step::Ref { node: n },
            _ => match self.group(&[n]) {
                Ok(s) => s,
                Err(Reject(why)) => {
                    tracing::debug!("{} runs on the reference path: {why}", g.label(n));
                    Step::Ref { node: n }
                }
            },
        }
    }

    /// A whole group as one step.
    fn group(&mut self, ms: &[NodeId]) -> Result<Step, Reject> {
        let g = self.g;
        let root = *ms.last().expect("non-empty");
        let outs = &g.node(root).outputs;
        if outs.len() != 1 {
            return Err(Reject(format!("{} has several results", g.label(root))));
        }
        let out = outs[0];
        let anchor = ms.iter().copied().find(|&m| {
            matches!(
                g.node(m).op.fusion_kind(),
                FusionKind::Reduction | FusionKind::OutFusable | FusionKind::Opaque
            )
        });
        let name = self.kernel_name(root);
        match anchor {
            None => {
                let shape = dims(g, out);
                let mut b = Builder::new(g, self.w, ms, shape.clone());
                let id = Map::identity(shape.len());
                let e = b.gen(out, &id)?;
                b.store(out, &id, e)?;
                let (k, args) = b.finish(name, None)?;
                Ok(self.kernel_step(k, args, ms))
            }
            Some(a) => match g.node(a).op.fusion_kind() {
                FusionKind::OutFusable => self.epilogue_step(a, ms, out, name),
                FusionKind::Reduction => {
                    let (k, args) = self.reduction(a, ms, out, name)?;
                    Ok(self.kernel_step(k, args, ms))
                }
                _ => Err(Reject(format!("{} is opaque", g.label(a)))),
            },
        }
    }

    fn kernel_step(&mut self, k: Kernel, args: Vec<Option<ValueId>>, ms: &[NodeId]) -> Step {
        let args = args
            .into_iter()
            .map(|a| a.expect("plain kernels bind every buffer"))
            .collect();
        let kernel = self.add_kernel(k);
        Step::Kernel {
            kernel,
            args,
            nodes: ms.to_vec(),
        }
    }

    fn epilogue_step(
        &mut self,
        a: NodeId,
        ms: &[NodeId],
        out: ValueId,
        name: String,
    ) -> Result<Step, Reject> {
        let g = self.g;
        let is_mm = native_matmul(g, a);
        if !is_mm && !native_conv(g, a) {
            return Err(Reject(format!("{} has no native kernel", g.label(a))));
        }
        let anchor_out = g.node(a).outputs[0];
        let epilogue = if ms.len() == 1 {
            None
        } else {
            let shape = dims(g, anchor_out);
            // Matmul: rows × the last dim; conv: image·channel × pixels.
            let inner = if is_mm { 1 } else { shape.len() - 2 };
            let mut b = Builder::new(g, self.w, ms, shape.clone());
            let id = Map::identity(shape.len());
            b.bind_anchor(anchor_out, &id)?;
            let e = b.gen(out, &id)?;
            if dims(g, out) != shape {
                return Err(Reject("the epilogue changes the shape".into()));
            }
            b.store(out, &id, e)?;
            let (k, args) = b.finish(format!("{name}_epilogue"), Some(inner))?;
            if k.outer.iter().product::<usize>() * k.inner != shape.iter().product::<usize>() {
                return Err(Reject("epilogue iteration space".into()));
            }
            let kernel = self.add_kernel(k);
            Some(Epilogue { kernel, args })
        };
        Ok(if is_mm {
            Step::MatMul {
                node: a,
                out,
                epilogue,
                nodes: ms.to_vec(),
            }
        } else {
            Step::Conv {
                node: a,
                out,
                epilogue,
                nodes: ms.to_vec(),
            }
        })
    }

    /// A reduction anchor with its producers and elementwise consumers.
    fn reduction(
        &mut self,
        a: NodeId,
        ms: &[NodeId],
        out: ValueId,
        name: String,
    ) -> Result<(Kernel, Vec<Option<ValueId>>), Reject> {
        let g = self.g;
        let node = g.node(a);
        if node.outputs.len() != 1 {
            return Err(Reject(format!("{} has several results", g.label(a))));
        }
        let x = node.inputs[0];
        let shape = dims(g, x);
        let r = shape.len();
        let a_out = node.outputs[0];
        let norm_axis = |axis: i64| -> Result<usize, Reject> {
            let ax = if axis < 0 { axis + r as i64 } else { axis };
            if (0..r as i64).contains(&ax) {
                Ok(ax as usize)
            } else {
                Err(Reject(format!("axis {axis} of rank {r}")))
            }
        };
        // Reduced axes (in order) and how the result is computed.
        enum Kind {
            Softmax {
                log: bool,
            },
            Reduce {
                kind: KReduce,
                mean: bool,
                keep: bool,
            },
            LayerNorm {
                eps: f64,
            },
        }
        let (axes, kind): (Vec<usize>, Kind) = match &node.op {
            Op::Softmax(s) => (vec![norm_axis(s.axis)?], Kind::Softmax { log: s.log }),
            Op::Reduce(rd) => {
                let (kind, mean) = match rd.kind {
                    ReduceKind::Sum => (KReduce::Sum, false),
                    ReduceKind::Mean => (KReduce::Sum, true),
                    ReduceKind::Max => (KReduce::Max, false),
                    ReduceKind::Min => (KReduce::Min, false),
                    ReduceKind::Prod => return Err(Reject("reduce_prod".into())),
                };
                if node.inputs.len() != 1 {
                    return Err(Reject("reduce with an axes input".into()));
                }
                let mut axes: Vec<usize> = if rd.axes.is_empty() {
                    (0..r).collect()
                } else {
                    rd.axes
                        .iter()
                        .map(|&ax| norm_axis(ax))
                        .collect::<Result<_, _>>()?
                };
                axes.sort_unstable();
                axes.dedup();
                (
                    axes,
                    Kind::Reduce {
                        kind,
                        mean,
                        keep: rd.keepdims,
                    },
                )
            }
            Op::GlobalPool(p) if r >= 3 => {
                let (kind, mean) = match p.kind {
                    PoolKind::Avg => (KReduce::Sum, true),
                    PoolKind::Max => (KReduce::Max, false),
                };
                (
                    (2..r).collect(),
                    Kind::Reduce {
                        kind,
                        mean,
                        keep: true,
                    },
                )
            }
            Op::LayerNorm(ln) if !ln.stats && (2..=3).contains(&node.inputs.len()) => {
                let ax = norm_axis(ln.axis)?;
                ((ax..r).collect(), Kind::LayerNorm { eps: ln.epsilon.0 })
            }
            other => return Err(Reject(format!("no kernel for {}", other.spelling()))),
        };
        if axes.is_empty() {
            return Err(Reject("nothing to reduce".into()));
        }
        // Iteration dims: the kept axes, then the reduced ones.
        let kept: Vec<usize> = (0..r).filter(|d| !axes.contains(d)).collect();
        let it: Vec<usize> = kept.iter().chain(&axes).map(|&d| shape[d]).collect();
        let pos = |d: usize| kept.iter().chain(&axes).position(|&e| e == d);
        let xmap = Map::select(&(0..r).map(pos).collect::<Vec<_>>(), r);
        let count: usize = axes.iter().map(|&d| shape[d]).product();
        let mut b = Builder::new(g, self.w, ms, it);
        let xe = b.gen(x, &xmap)?;
        let out_map = match kind {
            Kind::Softmax { log } => {
                let m = b.reduce(KReduce::Max, xe);
                let s = b.bin(KBinary::Sub, xe, m);
                let e = b.un(KUnary::Exp, s);
                let sum = b.reduce(KReduce::Sum, e);
                let y = if log {
                    let l = b.un(KUnary::Log, sum);
                    b.bin(KBinary::Sub, s, l)
                } else {
                    b.bin(KBinary::Div, e, sum)
                };
                b.bind(a_out, &xmap, y);
                xmap.clone()
            }
            Kind::Reduce { kind, mean, keep } => {
                let acc = b.reduce(kind, xe);
                let y = if mean {
                    let n = b.c(count as f32);
                    b.bin(KBinary::Div, acc, n)
                } else {
                    acc
                };
                let out_dims: Vec<Option<usize>> = (0..r)
                    .filter_map(|d| match (axes.contains(&d), keep) {
                        (true, true) => Some(None),
                        (true, false) => None,
                        (false, _) => Some(pos(d)),
                    })
                    .collect();
                let m = Map::select(&out_dims, r);
                b.bind(a_out, &m, y);
                m
            }
            Kind::LayerNorm { eps } => {
                let n = b.c(count as f32);
                let sum = b.reduce(KReduce::Sum, xe);
                let mean = b.bin(KBinary::Div, sum, n);
                let d = b.bin(KBinary::Sub, xe, mean);
                let d2 = b.bin(KBinary::Mul, d, d);
                let ss = b.reduce(KReduce::Sum, d2);
                let var = b.bin(KBinary::Div, ss, n);
                let ep = b.c(eps as f32);
                let ve = b.bin(KBinary::Add, var, ep);
                let sd = b.un(KUnary::Sqrt, ve);
                let xn = b.bin(KBinary::Div, d, sd);
                let sc = node.inputs[1];
                let scm = b.bcast(sc, &shape, &xmap)?;
                let sce = b.gen(sc, &scm)?;
                let mut y = b.bin(KBinary::Mul, xn, sce);
                if let Some(&bias) = node.inputs.get(2) {
                    let bm = b.bcast(bias, &shape, &xmap)?;
                    let be = b.gen(bias, &bm)?;
                    y = b.bin(KBinary::Add, y, be);
                }
                b.bind(a_out, &xmap, y);
                xmap.clone()
            }
        };
        if dims(g, out) != dims(g, a_out) {
            return Err(Reject("the consumers change the shape".into()));
        }
        let e = b.gen(out, &out_map)?;
        b.store(out, &out_map, e)?;
        b.finish(name, Some(axes.len()))
    }
}

#[cfg(test)]
mod tests;
