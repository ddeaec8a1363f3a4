//! Backends behind `kiln run`, `kiln bench` and `kiln conformance`: prepare a
//! model once (optimise, plan, JIT), then run it many times.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{anyhow, bail};
use kiln_compiler::codegen::{self, CodegenStats};
use kiln_ir::{Model, Tensor};
use kiln_runtime::artifact::WriteOptions;
use kiln_runtime::exec::{ExecOptions, Executor};
use kiln_runtime::session::{Session, SessionOptions, TensorView};

/// Which engine runs a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The reference interpreter: every op's defining semantics, no planning.
    Ref,
    /// The CPU backend: fused kernels JIT-compiled with Cranelift, packed
    /// GEMM/conv, a static memory arena.
    Cpu,
    /// The CPU backend through a `.kiln` round trip: compile, write the
    /// artifact's bytes, load them into a [`Session`], run.
    CpuArtifact,
}

#[derive(Clone, Debug, Default)]
pub struct PrepareOptions {
    /// Worker threads (0 = all cores).
    pub threads: usize,
}

enum Engine {
    Ref(Model),
    Cpu(Box<Executor>, CodegenStats),
    Session(Box<Session>),
}

/// Compile `model` into `.kiln` artifact bytes: optimise at `level` (`O0`,
/// `O1`, `O2`), generate kernels and the memory plan, and write them with
/// the weights. The model's dimensions must all be bound.
pub fn compile_artifact(
    model: Model,
    level: &str,
    opts: &WriteOptions,
) -> anyhow::Result<(Vec<u8>, CodegenStats)> {
    let Model {
        mut graph,
        mut weights,
    } = model;
    let level = level.trim_start_matches('-');
    kiln_compiler::passes::optimize(level, &mut graph, &mut weights)?;
    let (program, stats) = codegen::compile(&graph, &weights)?;
    let bytes = kiln_runtime::artifact::write(&program, &weights, opts)?;
    Ok((bytes, stats))
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
            Backend::CpuArtifact => {
                let (bytes, _) = compile_artifact(model, "O2", &WriteOptions::default())?;
                let s = Session::from_bytes(
                    &bytes,
                    &SessionOptions {
                        threads: opts.threads,
                    },
                )?;
                Engine::Session(Box::new(s))
            }
        };
        Ok(Prepared {
            engine,
            compile_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Load `.kiln` artifact bytes (timed as the preparation).
    pub fn from_artifact(bytes: &[u8], opts: &PrepareOptions) -> anyhow::Result<Self> {
        let t0 = Instant::now();
        let s = Session::from_bytes(
            bytes,
            &SessionOptions {
                threads: opts.threads,
            },
        )?;
        Ok(Prepared {
            engine: Engine::Session(Box::new(s)),
            compile_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The session, when the model came from an artifact.
    pub fn session(&self) -> Option<&Session> {
        match &self.engine {
            Engine::Session(s) => Some(s),
            _ => None,
        }
    }

    /// Run on named inputs; returns the outputs in graph order.
    pub fn run(&self, inputs: &HashMap<String, Tensor>) -> anyhow::Result<Vec<(String, Tensor)>> {
        match &self.engine {
            Engine::Ref(m) => Ok(kiln_ir::run(&m.graph, &m.weights, inputs)?),
            Engine::Cpu(e, _) => Ok(e.run(inputs)?),
            Engine::Session(s) => {
                for name in inputs.keys() {
                    if !s.inputs().iter().any(|i| &i.name == name) {
                        bail!("input `{name}`: the model has no such input");
                    }
                }
                // Views need row-major memory; copy the rare tensor that is not.
                let owned: Vec<Tensor> = s
                    .inputs()
                    .iter()
                    .map(|i| {
                        let t = inputs
                            .get(&i.name)
                            .ok_or_else(|| anyhow!("input `{}`: not given", i.name))?;
                        Ok(match TensorView::from_tensor(t) {
                            Ok(_) => t.clone(),
                            Err(_) => {
                                kiln_ir::map_array!(t, a => a.as_standard_layout().into_owned())
                            }
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
                let views = owned
                    .iter()
                    .map(TensorView::from_tensor)
                    .collect::<Result<Vec<_>, _>>()?;
                let outs = s.run(&views)?;
                Ok(s.outputs()
                    .iter()
                    .map(|o| o.name.clone())
                    .zip(outs)
                    .collect())
            }
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
            Engine::Session(s) => Ok(Some(s.executor().run_profiled(inputs)?.1)),
        }
    }

    /// Peak bytes of the tensor arena, when the backend plans memory.
    pub fn peak_bytes(&self) -> Option<usize> {
        match &self.engine {
            Engine::Ref(_) => None,
            Engine::Cpu(e, _) => Some(e.arena_bytes()),
            Engine::Session(s) => Some(s.executor().arena_bytes()),
        }
    }

    /// The arena next to the sum of every planned tensor's size, and the
    /// steps by kind (CPU backend only).
    pub fn plan_summary(&self) -> Option<String> {
        let (e, st) = match &self.engine {
            Engine::Ref(_) => return None,
            Engine::Cpu(e, st) => (&**e, Some(st)),
            Engine::Session(s) => (s.executor(), None),
        };
        {
            {
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
                let groups = match st {
                    Some(st) => format!(
                        "groups fused {}, split {}",
                        st.groups_fused, st.groups_split
                    ),
                    None => "loaded from an artifact".to_string(),
                };
                Some(format!(
                    "peak arena {} bytes; all tensors of the graph {} bytes; arena-placed tensors without reuse {} bytes ({:.1}x the arena); steps: {}; {groups}; {} threads",
                    p.arena_bytes,
                    all,
                    p.unplanned_bytes,
                    p.unplanned_bytes as f64 / p.arena_bytes.max(1) as f64,
                    p.summary(),
                    e.threads()
                ))
            }
        }
    }
}
