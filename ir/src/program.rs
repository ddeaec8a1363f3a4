//! An executable program: what the compiler hands the CPU runtime.
//!
//! A [`Program`] is the optimised graph (all dimensions bound) plus a flat
//! list of [`Step`]s in execution order and a memory plan. Each step is one
//! fused kernel (kernel IR, JIT-compiled by the runtime), one GEMM or
//! convolution (packed kernels, with an optional fused epilogue kernel
//! applied per output tile), or one graph node run through its reference
//! semantics (`OpDef::eval`) for ops the native backend does not cover.
//!
//! The memory plan gives every f32 value that a step reads or writes a
//! [`Loc`]: a byte offset in one static arena (offsets are reused once a
//! value is dead, and an elementwise kernel may write over an input it is
//! the last reader of), a weight, the caller's input tensor, the output
//! tensor handed back, or, for the other dtypes, a boxed tensor.
//! Values inside a fused kernel have no location at all: they never reach
//! memory.

use crate::graph::{Graph, NodeId, ValueId};
use crate::kernel::Kernel;

/// Where a value lives while a program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    /// Not materialised (an intermediate of a fused kernel), or unused.
    None,
    /// `len` bytes at `offset` in the arena (offsets are multiples of 64).
    Arena { offset: usize, len: usize },
    /// A weight: the graph's parameter of that name.
    Param,
    /// A tensor of a dtype kernels do not handle (ints, bools...), kept whole.
    Boxed,
    /// An f32 graph input, read in place from the caller's tensor.
    Input,
    /// An f32 graph output, written straight into the tensor the run returns.
    Output,
}

/// The epilogue of a GEMM or convolution: kernel `kernel` runs on each
/// finished output tile. Its outer dims are the output's leading dims (batch
/// and rows for a matmul, image and channel for a convolution) and its inner
/// dim the rest, so a tile is an outer range and an inner range. `args[k]`
/// is the value bound to kernel buffer `k`; `None` marks the anchor's own
/// result, which the epilogue reads from the output buffer it then
/// overwrites (the in-place form the JIT allows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epilogue {
    pub kernel: u32,
    pub args: Vec<Option<ValueId>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run `kernels[kernel]`, buffer `k` bound to `args[k]`. `nodes` are the
    /// graph nodes it computes (for messages and statistics).
    Kernel {
        kernel: u32,
        args: Vec<ValueId>,
        nodes: Vec<NodeId>,
    },
    /// The `matmul` node `node` (f32, rank ≥ 2, batch dims of one side all 1
    /// or equal), writing `out`: the node's result, or the result of its
    /// epilogue.
    MatMul {
        node: NodeId,
        out: ValueId,
        epilogue: Option<Epilogue>,
        nodes: Vec<NodeId>,
    },
    /// The 1-D or 2-D `conv` node `node` with weight (and bias) parameters.
    Conv {
        node: NodeId,
        out: ValueId,
        epilogue: Option<Epilogue>,
        nodes: Vec<NodeId>,
    },
    /// The f32 `max_pool`/`avg_pool` node `node`, through its gather table.
    Pool { node: NodeId },
    /// Node `node` through its reference semantics.
    Ref { node: NodeId },
    /// Reshape-like node `node`: its result is its input's memory, nothing runs.
    Alias { node: NodeId },
}

impl Step {
    /// The graph nodes this step computes.
    pub fn nodes(&self) -> Vec<NodeId> {
        match self {
            Step::Kernel { nodes, .. } | Step::MatMul { nodes, .. } | Step::Conv { nodes, .. } => {
                nodes.clone()
            }
            Step::Ref { node } | Step::Alias { node } | Step::Pool { node } => vec![*node],
        }
    }

    /// Short name of the step kind, for statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Kernel { .. } => "kernel",
            Step::MatMul { .. } => "matmul",
            Step::Conv { .. } => "conv",
            Step::Ref { .. } => "ref",
            Step::Pool { .. } => "pool",
            Step::Alias { .. } => "alias",
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct Program {
    pub graph: Graph,
    pub kernels: Vec<Kernel>,
    pub steps: Vec<Step>,
    /// One per value of `graph` (indexed by `ValueId::index`).
    pub locs: Vec<Loc>,
    /// Arena size in bytes: the peak of live f32 tensors under the plan.
    pub arena_bytes: usize,
    /// What the same tensors would take without reuse: the sum of the sizes
    /// of every arena-placed value.
    pub unplanned_bytes: usize,
}

impl Program {
    pub fn loc(&self, v: ValueId) -> Loc {
        self.locs.get(v.index()).copied().unwrap_or(Loc::None)
    }

    /// Steps per kind, e.g. `kernel 12, matmul 3, ref 1`.
    pub fn summary(&self) -> String {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for s in &self.steps {
            match counts.iter_mut().find(|(k, _)| *k == s.kind()) {
                Some((_, n)) => *n += 1,
                None => counts.push((s.kind(), 1)),
            }
        }
        counts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
