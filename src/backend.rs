//! Backends behind `kiln run`, `kiln bench` and `kiln conformance`: prepare a
//! model once (optimise, plan, JIT), then run it many times.

use std::collections::HashMap;
use std::time::Instant;

use kiln_ir::{Model, Tensor};

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

/// A model ready to run: its dimensions must all be bound.
pub struct Prepared {
    model: Model,
    /// Time spent preparing (optimising, planning, JIT), in milliseconds.
    pub compile_ms: f64,
}

impl Prepared {
    pub fn new(model: Model, backend: Backend, _opts: &PrepareOptions) -> anyhow::Result<Self> {
        let t0 = Instant::now();
        match backend {
            Backend::Ref => {}
            Backend::Cpu => anyhow::bail!("the CPU backend is not built yet; use --backend ref"),
        }
        Ok(Prepared {
            model,
            compile_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Run on named inputs; returns the outputs in graph order.
    pub fn run(&self, inputs: &HashMap<String, Tensor>) -> anyhow::Result<Vec<(String, Tensor)>> {
        Ok(kiln_ir::run(
            &self.model.graph,
            &self.model.weights,
            inputs,
        )?)
    }

    /// Peak bytes of the tensor arena, when the backend plans memory.
    pub fn peak_bytes(&self) -> Option<usize> {
        None
    }
}
