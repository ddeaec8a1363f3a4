//! Backends behind `kiln run`, `kiln bench` and `kiln conformance`: prepare a
//! model once (optimise, plan, JIT), then run it many times.

use std::collections::HashMap;
use std::time::Instant;

use kiln_compiler::codegen::{self, CodegenStats};
use kiln_ir::{Model, Tensor};
use kiln_runtime::exec::{ExecOptions, Executor};

/// Which engine runs a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The reference interpreter: every op's defining semantics, no planning.
    Ref,
    /// The CPU backend: fused kernels JIT-compiled with Cranelift, packed
    /// GEMM/conv, a static memory arena.
    Cpu,
}

#[derive(Clone, Debug, Default)]
pub struct PrepareOptions {
    /// Worker threads (0 = all cores).
    pub threads: usize,
}

enum Engine {
    Ref(Model),
    Cpu(Box<Executor>, CodegenStats),
}

/// A model ready to run: its dimensions must all be bound.
pub struct Prepared {
    engine: Engine,
    /// Time spent preparing (optimising, planning, JIT), in milliseconds.
    pub compile_ms: f64,
}

impl Prepared {
    /// Prepare `model` for `backend`. The CPU backend optimises it at -O2
    /// (fusion included), generates its kernels and memory plan, and JITs.
    pub fn new(model: Model, backend: Backend, opts: &PrepareOptions) -> anyhow::Result<Self> {
        let t0 = Instant::now();
        let engine = match backend {
            Backend::Ref => Engine::Ref(model),
            Backend::Cpu => {
                let Model {
                    mut graph,
                    mut weights,
                } = model;
                kiln_compiler::passes::optimize("O2", &mut graph, &mut weights)?;
                let (program, stats) = codegen::compile(&graph, &weights)?;
                let exec = Executor::new(
                    program,
                    &weights,
                    &ExecOptions {
                        threads: opts.threads,
                        isa: None,
                    },
                )?;
                Engine::Cpu(Box::new(exec), stats)
            }
        };
        Ok(Prepared {
            engine,
            compile_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Run on named inputs; returns the outputs in graph order.
    pub fn run(&self, inputs: &HashMap<String, Tensor>) -> anyhow::Result<Vec<(String, Tensor)>> {
        match &self.engine {
            Engine::Ref(m) => Ok(kiln_ir::run(&m.graph, &m.weights, inputs)?),
            Engine::Cpu(e, _) => Ok(e.run(inputs)?),
        }
    }

    /// Per-step times of one run, `(step, kind, ms)` in execution order
    /// (CPU backend only; `None` on the reference backend).
    pub fn profile(
        &self,
        inputs: &HashMap<String, Tensor>,
    ) -> anyhow::Result<Option<kiln_runtime::exec::StepTimes>> {
        match &self.engine {
            Engine::Ref(_) => Ok(None),
            Engine::Cpu(e, _) => Ok(Some(e.run_profiled(inputs)?.1)),
        }
    }

    /// Peak bytes of the tensor arena, when the backend plans memory.
    pub fn peak_bytes(&self) -> Option<usize> {
        match &self.engine {
            Engine::Ref(_) => None,
            Engine::Cpu(e, _) => Some(e.arena_bytes()),
        }
    }

    /// The arena next to the sum of every planned tensor's size, and the
    /// steps by kind (CPU backend only).
    pub fn plan_summary(&self) -> Option<String> {
        match &self.engine {
            Engine::Ref(_) => None,
            Engine::Cpu(e, st) => {
                let p = e.program();
                let g = &p.graph;
                // Every tensor the graph defines (inputs and node results),
                // what an unfused, unplanned run would hold at once.
                let all: usize = g
                    .inputs()
                    .iter()
                    .copied()
                    .chain(
                        g.node_ids()
                            .into_iter()
                            .flat_map(|n| g.node(n).outputs.to_vec()),
                    )
                    .map(|v| g.value(v).ty.size_bytes().unwrap_or(0))
                    .sum();
                Some(format!(
                    "peak arena {} bytes; all tensors of the graph {} bytes; arena-placed tensors without reuse {} bytes ({:.1}x the arena); steps: {}; groups fused {}, split {}; {} threads",
                    p.arena_bytes,
                    all,
                    p.unplanned_bytes,
                    p.unplanned_bytes as f64 / p.arena_bytes.max(1) as f64,
                    p.summary(),
                    st.groups_fused,
                    st.groups_split,
                    e.threads()
                ))
            }
        }
    }
}
