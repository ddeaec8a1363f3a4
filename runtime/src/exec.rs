//! The CPU executor: runs a [`Program`] (from kiln-compiler's codegen or,
//! later, an artifact).
//!
//! [`Executor::new`] JIT-compiles every kernel once, packs the GEMM right
//! operands and convolution weights that are parameters, and builds the
//! thread pool. [`Executor::run`] then takes an arena (a pool of them, so
//! runs may go on at once from several threads), copies the inputs in, runs
//! the steps in order and copies the outputs out:
//!
//! - a kernel step calls the JIT'd function over its iteration space, split
//!   across the pool when it is large (outer rows, or inner chunks of 16);
//! - a GEMM or convolution runs the packed microkernels, with the epilogue
//!   kernel called on each finished tile, on the tile's rows and columns;
//! - a reference step evaluates the node's op on tensors read from the
//!   arena and writes the results back.
//!
//! Results do not depend on the thread count: every element is computed by
//! the same instructions however the work is split (GEMM splits never cut
//! the `k` loop).
//!
//! All `unsafe` here turns arena offsets into pointers; the memory plan
//! guarantees that buffers used by one step do not overlap, except the
//! in-place forms the JIT documents.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::time::Instant;

use kiln_ir::program::{Epilogue as EpiSpec, Loc, Program, Step};
use kiln_ir::{DType, Graph, NodeId, Op, Tensor, ValueId, Weights};

use crate::conv::{Conv2d, Conv2dParams};
use crate::gemm::{self, Ctx, EpilogueTile, Isa, Lhs, MatMut, MatRef, PackedB, Rhs};
use crate::jit::{CompiledKernel, JitModule};
use crate::session::TensorView;
use crate::zero_copy::TensorViewMut;

/// What can go wrong preparing or running a program.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("input `{name}`: {msg}")]
    Input { name: String, msg: String },
    #[error("output `{name}`: {msg}")]
    Output { name: String, msg: String },
    #[error("param `{name}`: {msg}")]
    Param { name: String, msg: String },
    #[error("node {label}: {msg}")]
    Node { label: String, msg: String },
    #[error("program: {0}")]
    Program(String),
    #[error(transparent)]
    Jit(#[from] crate::jit::JitError),
}

/// Executor settings.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Worker threads, this one included (0: all cores).
    pub threads: usize,
    /// The GEMM/conv microkernel family (default: the best this CPU has).
    pub isa: Option<Isa>,
}

/// Per-step timings of a profiled run: `(step, kind, ms)`.
pub type StepTimes = Vec<(String, &'static str, f64)>;

/// Work below this many elements runs on one thread.
const PAR_MIN_ELEMS: usize = 1 << 15;

struct MatMulPlan {
    batches: usize,
    m: usize,
    k: usize,
    n: usize,
    a_stride: usize,
    b_stride: usize,
    packed_b: Option<PackedB>,
}

struct ConvPlan {
    conv: Conv2d,
    nhw: [usize; 3],
    /// Outer rows of the output per image (the channel count).
    channels: usize,
}

enum Native {
    None,
    Pool(kiln_ir::ops::pool::PoolTable),
    MatMul(MatMulPlan),
    Conv(ConvPlan),
}

/// A prepared program. `Send + Sync`: runs may share it.
pub struct Executor {
    prog: Program,
    kernels: Vec<CompiledKernel>,
    /// Per value index: the weight of a param value.
    params: Vec<Option<Tensor>>,
    natives: Vec<Native>,
    pool: Option<rayon::ThreadPool>,
    threads: usize,
    isa: Isa,
    arenas: Mutex<Vec<Vec<f32>>>,
    /// Time spent JIT-compiling and packing, in milliseconds.
    pub prepare_ms: f64,
}

/// Raw pointers shared with worker threads.
#[derive(Clone, Copy)]
struct Ptrs<'a>(&'a [*mut f32]);
// SAFETY: the pointers index the run's arena and the executor's weights,
// both alive for the whole step; the workers write disjoint ranges (the
// kernel's split rules), and weights are only read.
unsafe impl Send for Ptrs<'_> {}
// SAFETY: as above.
unsafe impl Sync for Ptrs<'_> {}

impl<'a> Ptrs<'a> {
    /// Through a method, so closures capture the whole `Ptrs` (not the
    /// non-`Sync` slice inside it).
    fn get(&self) -> &'a [*mut f32] {
        self.0
    }
}

fn dims_of(g: &Graph, v: ValueId) -> Vec<usize> {
    g.value(v).ty.shape.concrete().unwrap_or_default()
}

/// Where a run's inputs come from: named tensors, or views in graph-input
/// order (already checked).
#[derive(Clone, Copy)]
enum Inputs<'a, 'b> {
    Named(&'a HashMap<String, Tensor>),
    Views(&'a [TensorView<'b>]),
}

fn value_name(g: &Graph, v: ValueId) -> String {
    g.value(v).name.clone().unwrap_or_default()
}

/// A caller's view against value `v`'s declared type: dtype, shape, then
/// byte length.
fn check_view(
    g: &Graph,
    v: ValueId,
    dtype: DType,
    shape: &[usize],
    bytes: usize,
) -> Result<(), String> {
    let ty = &g.value(v).ty;
    let dims = dims_of(g, v);
    if dtype != ty.dtype || shape != dims.as_slice() {
        return Err(format!(
            "expected {ty}, got {}",
            kiln_ir::TensorType::concrete(dtype, shape)
        ));
    }
    let want = dims
        .iter()
        .try_fold(ty.dtype.size_bytes(), |a, &d| a.checked_mul(d));
    if want != Some(bytes) {
        return Err(format!(
            "{ty} needs {} bytes, the buffer has {bytes}",
            want.map_or("too many".to_string(), |w| w.to_string())
        ));
    }
    Ok(())
}

/// Little-endian f32 bytes as f32s in place (None: not aligned, or a
/// big-endian host, so the caller copies).
fn bytes_as_f32(b: &[u8]) -> Option<&[f32]> {
    if cfg!(target_endian = "little") {
        bytemuck::try_cast_slice(b).ok()
    } else {
        None
    }
}

/// As [`bytes_as_f32`], writable.
fn bytes_as_f32_mut(b: &mut [u8]) -> Option<&mut [f32]> {
    if cfg!(target_endian = "little") {
        bytemuck::try_cast_slice_mut(b).ok()
    } else {
        None
    }
}

fn f32s_from_le(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f32s_to_le(src: &[f32], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(4).zip(src) {
        d.copy_from_slice(&s.to_le_bytes());
    }
}

fn label(g: &Graph, n: NodeId) -> String {
    g.label(n)
}

fn f32_slice(t: &Tensor) -> Option<&[f32]> {
    match t {
        Tensor::F32(a) => a.as_slice(),
        _ => None,
    }
}

impl Executor {
    /// Prepare `prog` with its weights.
    pub fn new(prog: Program, weights: &Weights, opts: &ExecOptions) -> Result<Self, ExecError> {
        Executor::prepare(prog, |name| weights.get(name).cloned(), opts)
    }

    /// Like [`Executor::new`], taking the weights by value so that they are
    /// moved rather than copied (what loading an artifact wants).
    pub fn new_owned(
        prog: Program,
        mut weights: Weights,
        opts: &ExecOptions,
    ) -> Result<Self, ExecError> {
        Executor::prepare(prog, |name| weights.0.remove(name), opts)
    }

    fn prepare(
        prog: Program,
        mut take_weight: impl FnMut(&str) -> Option<Tensor>,
        opts: &ExecOptions,
    ) -> Result<Self, ExecError> {
        let t0 = Instant::now();
        let g = &prog.graph;
        if prog.locs.len() != g.num_values() {
            return Err(ExecError::Program(format!(
                "{} locations for {} values",
                prog.locs.len(),
                g.num_values()
            )));
        }
        let isa = opts.isa.unwrap_or_else(Isa::detect);
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            opts.threads
        };
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| ExecError::Program(format!("thread pool: {e}")))?,
            )
        } else {
            None
        };
        let mut params: Vec<Option<Tensor>> = vec![None; g.num_values()];
        for &v in g.params() {
            let val = g.value(v);
            let name = val.name.clone().unwrap_or_default();
            let t = take_weight(&name).ok_or_else(|| ExecError::Param {
                name: name.clone(),
                msg: "no weight given".into(),
            })?;
            let dims = val.ty.shape.concrete().unwrap_or_default();
            if t.shape() != dims.as_slice() || t.dtype() != val.ty.dtype {
                return Err(ExecError::Param {
                    name,
                    msg: format!("expected {}, got {}", val.ty, t.ty()),
                });
            }
            // Kernels read f32 weights as one row-major slice.
            let t = match t {
                Tensor::F32(a) if a.as_slice().is_none() => {
                    Tensor::F32(a.as_standard_layout().into_owned())
                }
                other => other,
            };
            params[v.index()] = Some(t);
        }
        // Constants are held like weights.
        for n in g.node_ids() {
            let node = g.node(n);
            if let (Op::Constant(c), [out]) = (&node.op, node.outputs.as_slice()) {
                if prog.loc(*out) == Loc::Param {
                    params[out.index()] = Some(match &c.value {
                        Tensor::F32(a) => Tensor::F32(a.as_standard_layout().into_owned()),
                        other => other.clone(),
                    });
                }
            }
        }
        let is_input: Vec<bool> = {
            let mut b = vec![false; g.num_values()];
            g.inputs().iter().for_each(|v| b[v.index()] = true);
            b
        };
        let is_output: Vec<bool> = {
            let mut b = vec![false; g.num_values()];
            g.outputs().iter().for_each(|(_, v)| b[v.index()] = true);
            b
        };
        for (i, l) in prog.locs.iter().enumerate() {
            // Kernels, the arena and the caller's buffers hold f32 only, and
            // only graph inputs (outputs) live in the caller's inputs (outputs).
            let v = ValueId::from_index(i);
            let bad = match l {
                Loc::Arena { .. } | Loc::Input | Loc::Output
                    if g.value(v).ty.dtype != DType::F32 =>
                {
                    Some("holds f32 only")
                }
                Loc::Input if !is_input[i] => Some("is not a graph input"),
                Loc::Output if !is_output[i] => Some("is not a graph output"),
                _ => None,
            };
            if let Some(why) = bad {
                return Err(ExecError::Program(format!(
                    "value {i} ({}) at {l:?}: that location {why}",
                    g.value(v).ty
                )));
            }
            if let Loc::Arena { offset, len } = *l {
                if offset % 4 != 0 || offset.checked_add(len).is_none_or(|e| e > prog.arena_bytes) {
                    return Err(ExecError::Program(format!(
                        "value {i} at arena bytes {offset}+{len} is outside the {}-byte arena",
                        prog.arena_bytes
                    )));
                }
            }
        }
        let module = JitModule::compile(&prog.kernels)?;
        let kernels = module.into_kernels();
        let mut natives = Vec::with_capacity(prog.steps.len());
        for s in &prog.steps {
            natives.push(match s {
                Step::MatMul { node, .. } => Native::MatMul(plan_matmul(g, *node, &params, isa)?),
                Step::Conv { node, .. } => Native::Conv(plan_conv(g, *node, &params, isa)?),
                Step::Pool { node } => {
                    let n = g.node(*node);
                    let table = match &n.op {
                        Op::Pool(p) => p.table(&g.value(n.inputs[0]).ty).ok(),
                        _ => None,
                    };
                    Native::Pool(table.ok_or_else(|| ExecError::Node {
                        label: label(g, *node),
                        msg: "not a pool with a gather table".into(),
                    })?)
                }
                _ => Native::None,
            });
        }
        let ex = Executor {
            kernels,
            params,
            natives,
            pool,
            threads,
            isa,
            arenas: Mutex::new(Vec::new()),
            prepare_ms: 0.0,
            prog,
        };
        ex.check_steps()?;
        Ok(Executor {
            prepare_ms: t0.elapsed().as_secs_f64() * 1e3,
            ..ex
        })
    }

    pub fn program(&self) -> &Program {
        &self.prog
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Peak bytes of the tensor arena (one per concurrent run).
    pub fn arena_bytes(&self) -> usize {
        self.prog.arena_bytes
    }

    /// Every buffer a step touches has the right location and size.
    fn check_steps(&self) -> Result<(), ExecError> {
        let g = &self.prog.graph;
        for s in &self.prog.steps {
            let bad = |msg: String| {
                Err(ExecError::Program(format!(
                    "step {} ({}): {msg}",
                    s.kind(),
                    s.nodes().first().map(|&n| label(g, n)).unwrap_or_default()
                )))
            };
            let check_kernel = |k: u32, args: &[Option<ValueId>], anchor: Option<ValueId>| {
                let Some(ck) = self.kernels.get(k as usize) else {
                    return Err(format!("kernel {k} does not exist"));
                };
                let decls = &ck.kernel().bufs;
                if decls.len() != args.len() {
                    return Err(format!("{} args for {} buffers", args.len(), decls.len()));
                }
                for (a, d) in args.iter().zip(decls) {
                    let v = a.or(anchor).ok_or("an unbound buffer")?;
                    let numel: usize = dims_of(g, v).iter().product();
                    if numel != d.len || g.value(v).ty.dtype != DType::F32 {
                        return Err(format!(
                            "buffer of {} elements bound to {}",
                            d.len,
                            g.value(v).ty
                        ));
                    }
                    match (self.prog.loc(v), d.role) {
                        (Loc::Arena { .. } | Loc::Output, _)
                        | (Loc::Param | Loc::Input, kiln_ir::kernel::Role::Input) => {}
                        (l, r) => return Err(format!("{r:?} buffer at {l:?}")),
                    }
                }
                Ok(())
            };
            let res = match s {
                Step::Kernel { kernel, args, .. } => {
                    let a: Vec<Option<ValueId>> = args.iter().copied().map(Some).collect();
                    check_kernel(*kernel, &a, None)
                }
                Step::MatMul {
                    node,
                    out,
                    epilogue,
                    ..
                }
                | Step::Conv {
                    node,
                    out,
                    epilogue,
                    ..
                } => {
                    let anchor = g.node(*node).outputs[0];
                    if dims_of(g, anchor) != dims_of(g, *out)
                        || !matches!(self.prog.loc(*out), Loc::Arena { .. } | Loc::Output)
                    {
                        Err("the output is not an arena tensor of the anchor's shape".into())
                    } else if let Some(e) = epilogue {
                        // The anchor's tile is read from the output buffer.
                        check_kernel(e.kernel, &e.args, Some(*out))
                    } else {
                        Ok(())
                    }
                }
                Step::Ref { .. } => Ok(()),
                Step::Alias { node } => {
                    // Nothing runs: the result must be the input's memory.
                    let n = g.node(*node);
                    match (n.inputs.first(), n.outputs.first()) {
                        (Some(&i), Some(&o))
                            if matches!(self.prog.loc(o), Loc::Arena { .. })
                                && self.prog.loc(i) == self.prog.loc(o) =>
                        {
                            Ok(())
                        }
                        _ => Err("an alias whose result is not its input's memory".into()),
                    }
                }
                Step::Pool { node } => {
                    let n = g.node(*node);
                    let ok = |v: ValueId, out: bool| match self.prog.loc(v) {
                        Loc::Arena { .. } | Loc::Output => true,
                        Loc::Input | Loc::Param => !out,
                        _ => false,
                    };
                    if ok(n.inputs[0], false) && ok(n.outputs[0], true) {
                        Ok(())
                    } else {
                        Err("pool operands must be f32 buffers".into())
                    }
                }
            };
            if let Err(m) = res {
                return bad(m);
            }
        }
        Ok(())
    }

    /// Run on named inputs; the outputs in graph order.
    pub fn run(
        &self,
        inputs: &HashMap<String, Tensor>,
    ) -> Result<Vec<(String, Tensor)>, ExecError> {
        let g = &self.prog.graph;
        for name in inputs.keys() {
            if !g
                .inputs()
                .iter()
                .any(|&v| g.value(v).name.as_deref() == Some(name))
            {
                return Err(ExecError::Input {
                    name: name.clone(),
                    msg: "the graph has no such input".into(),
                });
            }
        }
        self.with_arena(|arena| self.run_in(arena, Inputs::Named(inputs), None, None))
    }

    /// The zero-copy run: `inputs` in graph-input order are read where the
    /// caller keeps them, and each f32 output a step computes is written
    /// straight into its `outputs` buffer (graph-output order); other
    /// outputs (non-f32, weights, inputs passed through, reshapes) are
    /// copied in once at the end. Every view is checked first (count,
    /// dtype, shape, byte length; errors name the input or output). A
    /// buffer not 4-byte aligned is staged through a copy. On error the
    /// output buffers may hold partial results.
    pub fn run_into(
        &self,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<(), ExecError> {
        let g = &self.prog.graph;
        let names = |vs: &mut dyn Iterator<Item = String>| {
            vs.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        };
        if inputs.len() != g.inputs().len() {
            return Err(ExecError::Program(format!(
                "expected {} inputs ({}), got {}",
                g.inputs().len(),
                names(&mut g.inputs().iter().map(|&v| value_name(g, v))),
                inputs.len()
            )));
        }
        if outputs.len() != g.outputs().len() {
            return Err(ExecError::Program(format!(
                "expected {} output buffers ({}), got {}",
                g.outputs().len(),
                names(&mut g.outputs().iter().map(|(n, _)| n.clone())),
                outputs.len()
            )));
        }
        for (&v, t) in g.inputs().iter().zip(inputs) {
            check_view(g, v, t.dtype, t.shape, t.data.len()).map_err(|msg| ExecError::Input {
                name: value_name(g, v),
                msg,
            })?;
        }
        for ((name, v), t) in g.outputs().iter().zip(outputs.iter()) {
            check_view(g, *v, t.dtype, t.shape, t.data.len()).map_err(|msg| ExecError::Output {
                name: name.clone(),
                msg,
            })?;
        }
        self.with_arena(|arena| {
            self.run_in(arena, Inputs::Views(inputs), Some(outputs), None)
                .map(|_| ())
        })
    }

    /// Like [`Executor::run`], also timing each step: `(label, kind, ms)`
    /// per step in order, for `kiln bench --profile`.
    pub fn run_profiled(
        &self,
        inputs: &HashMap<String, Tensor>,
    ) -> Result<(Vec<(String, Tensor)>, StepTimes), ExecError> {
        let mut times = Vec::with_capacity(self.prog.steps.len());
        let outs = self.with_arena(|arena| {
            self.run_in(arena, Inputs::Named(inputs), None, Some(&mut times))
        })?;
        let g = &self.prog.graph;
        let prof = self
            .prog
            .steps
            .iter()
            .zip(times)
            .map(|(s, t)| {
                let nodes = s.nodes();
                let mut l = nodes.last().map(|&n| label(g, n)).unwrap_or_default();
                if nodes.len() > 1 {
                    l = format!("{l} (+{} fused)", nodes.len() - 1);
                }
                (l, s.kind(), t)
            })
            .collect();
        Ok((outs, prof))
    }

    fn with_arena<T>(
        &self,
        f: impl FnOnce(&mut [f32]) -> Result<T, ExecError>,
    ) -> Result<T, ExecError> {
        let mut arena = self
            .arenas
            .lock()
            .map(|mut a| a.pop())
            .unwrap_or(None)
            .unwrap_or_default();
        let want = self.prog.arena_bytes / 4 + 16;
        if arena.len() < want {
            arena.resize(want, 0.0);
        }
        let result = f(&mut arena);
        if let Ok(mut a) = self.arenas.lock() {
            a.push(arena);
        }
        result
    }

    /// Bind the inputs, run every step, and either return the outputs
    /// (`outputs == None`) or leave them in the caller's buffers (then the
    /// result is empty). Views were checked by `run_into`.
    fn run_in(
        &self,
        arena: &mut [f32],
        inputs: Inputs<'_, '_>,
        mut outputs: Option<&mut [TensorViewMut<'_>]>,
        times: Option<&mut Vec<f64>>,
    ) -> Result<Vec<(String, Tensor)>, ExecError> {
        let g = &self.prog.graph;
        // 64-byte-aligned base.
        let skip = arena.as_ptr().align_offset(64).min(15);
        let arena = &mut arena[skip..];
        let mut mem = Mem {
            base: arena.as_mut_ptr(),
            ext: vec![std::ptr::null_mut(); g.num_values()],
        };
        let mut boxed: Vec<Option<Tensor>> = vec![None; g.num_values()];
        // Inputs stay in the caller's memory (copied only if not row-major,
        // or not aligned for f32).
        let mut owned: Vec<Vec<f32>> = Vec::new();
        for (k, &v) in g.inputs().iter().enumerate() {
            let val = g.value(v);
            let name = value_name(g, v);
            let err = |msg: String| ExecError::Input {
                name: name.clone(),
                msg,
            };
            let loc = self.prog.loc(v);
            let p: *const f32 = match inputs {
                Inputs::Named(map) => {
                    let t = map.get(&name).ok_or_else(|| err("not given".into()))?;
                    let dims = dims_of(g, v);
                    if t.dtype() != val.ty.dtype || t.shape() != dims.as_slice() {
                        return Err(err(format!("expected {}, got {}", val.ty, t.ty())));
                    }
                    match (loc, t) {
                        (Loc::Input, Tensor::F32(a)) => match a.as_slice() {
                            Some(sl) => sl.as_ptr(),
                            None => {
                                owned.push(a.iter().copied().collect());
                                owned.last().map_or(std::ptr::null(), |o| o.as_ptr())
                            }
                        },
                        (Loc::Boxed, _) => {
                            boxed[v.index()] = Some(t.clone());
                            std::ptr::null()
                        }
                        _ => std::ptr::null(),
                    }
                }
                Inputs::Views(views) => {
                    let t = views.get(k).ok_or_else(|| err("not given".into()))?;
                    match loc {
                        Loc::Input => match bytes_as_f32(t.data) {
                            Some(sl) => sl.as_ptr(),
                            None => {
                                owned.push(f32s_from_le(t.data));
                                owned.last().map_or(std::ptr::null(), |o| o.as_ptr())
                            }
                        },
                        Loc::Boxed => {
                            boxed[v.index()] =
                                Some(Tensor::from_le_bytes(t.dtype, t.shape, t.data).map_err(err)?);
                            std::ptr::null()
                        }
                        _ => std::ptr::null(),
                    }
                }
            };
            // Only ever read: the plan writes arena and output buffers.
            mem.ext[v.index()] = p as *mut f32;
        }
        // Output buffers: the caller's (zero-copy run) or vectors handed
        // back without a copy. `direct[k]`: output k is written in place.
        let mut out_bufs: Vec<(ValueId, Vec<f32>)> = Vec::new();
        let mut direct = vec![false; g.outputs().len()];
        for (k, (_, v)) in g.outputs().iter().enumerate() {
            if self.prog.loc(*v) != Loc::Output || !mem.ext[v.index()].is_null() {
                continue;
            }
            if let Some(o) = outputs.as_mut().and_then(|o| o.get_mut(k)) {
                if let Some(sl) = bytes_as_f32_mut(o.data) {
                    mem.ext[v.index()] = sl.as_mut_ptr();
                    direct[k] = true;
                    continue;
                }
            }
            let mut buf = vec![0f32; dims_of(g, *v).iter().product()];
            mem.ext[v.index()] = buf.as_mut_ptr();
            out_bufs.push((*v, buf));
        }
        self.run_steps(&mem, &mut boxed, times)?;
        if let Some(outputs) = outputs {
            // Whatever was not written in place is copied in once.
            for (k, (name, v)) in g.outputs().iter().enumerate() {
                if direct[k] {
                    continue;
                }
                let missing = || ExecError::Program(format!("output `{name}` was not computed"));
                let first = g.outputs()[..k].iter().position(|(_, w)| w == v);
                if let Some(j) = first.filter(|&j| direct[j]) {
                    let (head, tail) = outputs.split_at_mut(k);
                    tail[0].data.copy_from_slice(head[j].data);
                    continue;
                }
                let dst = &mut outputs[k].data;
                match out_bufs.iter().find(|(o, _)| o == v) {
                    Some((_, buf)) => f32s_to_le(buf, dst),
                    None => {
                        let t = self.read(&mem, &boxed, *v).ok_or_else(missing)?;
                        let bytes = t.to_le_bytes();
                        if bytes.len() != dst.len() {
                            return Err(ExecError::Output {
                                name: name.clone(),
                                msg: format!(
                                    "{} bytes computed for a {}-byte buffer",
                                    bytes.len(),
                                    dst.len()
                                ),
                            });
                        }
                        dst.copy_from_slice(&bytes);
                    }
                }
            }
            drop(owned);
            return Ok(Vec::new());
        }
        let mut outs: Vec<(String, Tensor)> = Vec::with_capacity(g.outputs().len());
        for (k, (name, v)) in g.outputs().iter().enumerate() {
            // A value listed as two outputs: the second is a copy.
            if let Some(j) = g.outputs()[..k].iter().position(|(_, w)| w == v) {
                let t = outs[j].1.clone();
                outs.push((name.clone(), t));
                continue;
            }
            let t = match out_bufs.iter().position(|(o, _)| o == v) {
                Some(k) => {
                    let (_, buf) = out_bufs.swap_remove(k);
                    mem.ext[v.index()] = std::ptr::null_mut();
                    Some(Tensor::f32(&dims_of(g, *v), buf))
                }
                None => self.read(&mem, &boxed, *v),
            };
            let t = t.ok_or_else(|| {
                ExecError::Program(format!(
                    "output `{name}` was not computed (or listed twice)"
                ))
            })?;
            outs.push((name.clone(), t));
        }
        drop(owned);
        Ok(outs)
    }

    /// Run every step in order over bound memory.
    fn run_steps(
        &self,
        mem: &Mem,
        boxed: &mut [Option<Tensor>],
        mut times: Option<&mut Vec<f64>>,
    ) -> Result<(), ExecError> {
        let g = &self.prog.graph;
        let ctx = match &self.pool {
            Some(p) => Ctx::new(self.isa).with_pool(p),
            None => Ctx::new(self.isa),
        };
        for (i, s) in self.prog.steps.iter().enumerate() {
            let t0 = times.as_ref().map(|_| Instant::now());
            let res = match s {
                Step::Kernel { kernel, args, .. } => {
                    let ptrs: Vec<*mut f32> = args.iter().map(|&v| self.ptr(mem, v)).collect();
                    self.run_kernel(*kernel, &ptrs)
                }
                Step::MatMul {
                    node,
                    out,
                    epilogue,
                    ..
                } => match &self.natives[i] {
                    Native::MatMul(p) => self.run_matmul(&ctx, mem, *node, *out, epilogue, p),
                    _ => Err("no matmul plan".into()),
                },
                Step::Conv {
                    node,
                    out,
                    epilogue,
                    ..
                } => match &self.natives[i] {
                    Native::Conv(p) => self.run_conv(&ctx, mem, *node, *out, epilogue, p),
                    _ => Err("no conv plan".into()),
                },
                Step::Ref { node } => self.run_ref(mem, boxed, *node),
                Step::Pool { node } => match &self.natives[i] {
                    Native::Pool(t) => {
                        let n = g.node(*node);
                        match (self.slice(mem, n.inputs[0]), self.ptr(mem, n.outputs[0])) {
                            (Some(x), y) if !y.is_null() => {
                                let len: usize = dims_of(g, n.outputs[0]).iter().product();
                                // SAFETY: the output's own buffer of `len`
                                // f32s, apart from the input (both live here).
                                let y = unsafe { std::slice::from_raw_parts_mut(y, len) };
                                crate::pool::pool(t, x, y, self.pool.as_ref())
                            }
                            _ => Err("a pool operand has no memory".into()),
                        }
                    }
                    _ => Err("no pool plan".into()),
                },
                Step::Alias { .. } => Ok(()),
            };
            if let Err(msg) = res {
                let label = s.nodes().first().map(|&n| label(g, n)).unwrap_or_default();
                return Err(ExecError::Node { label, msg });
            }
            if let (Some(t), Some(t0)) = (times.as_mut(), t0) {
                t.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok(())
    }

    /// Pointer to value `v`'s f32 data (null if it has none).
    fn ptr(&self, mem: &Mem, v: ValueId) -> *mut f32 {
        match self.prog.loc(v) {
            // SAFETY: `new` proved the offset inside the arena, which
            // `with_arena` sized to `arena_bytes`.
            Loc::Arena { offset, .. } => unsafe { mem.base.add(offset / 4) },
            Loc::Param => self.params[v.index()]
                .as_ref()
                .and_then(f32_slice)
                .map_or(std::ptr::null_mut(), |s| s.as_ptr() as *mut f32),
            Loc::Input | Loc::Output => mem.ext[v.index()],
            Loc::Boxed | Loc::None => std::ptr::null_mut(),
        }
    }

    /// Value `v`'s f32 data as a slice.
    fn slice<'m>(&self, mem: &'m Mem, v: ValueId) -> Option<&'m [f32]> {
        let p = self.ptr(mem, v);
        if p.is_null() {
            return None;
        }
        let n: usize = dims_of(&self.prog.graph, v).iter().product();
        // SAFETY: a non-null pointer from `ptr` is valid for the value's
        // element count for the whole run; no step is writing it now.
        Some(unsafe { std::slice::from_raw_parts(p, n) })
    }

    fn read(&self, mem: &Mem, boxed: &[Option<Tensor>], v: ValueId) -> Option<Tensor> {
        let g = &self.prog.graph;
        match self.prog.loc(v) {
            Loc::Param => self.params[v.index()].clone(),
            Loc::Boxed => boxed[v.index()].clone(),
            _ => self
                .slice(mem, v)
                .map(|s| Tensor::f32(&dims_of(g, v), s.to_vec())),
        }
    }

    /// Run kernel `k` on `ptrs`, split across the pool when it pays.
    fn run_kernel(&self, k: u32, ptrs: &[*mut f32]) -> Result<(), String> {
        let ck = &self.kernels[k as usize];
        if ptrs.iter().any(|p| p.is_null()) {
            return Err("a kernel buffer has no memory".into());
        }
        let (on, inn) = (ck.kernel().outer_len(), ck.kernel().inner);
        let parts = self.parts(ck, on, inn);
        let run = |o: Range<usize>, i: Range<usize>| {
            // SAFETY: one pointer per declared buffer, each to the declared
            // number of f32s (checked by `check_steps`) in the arena or the
            // weights; the plan keeps buffers of one step apart except for
            // the in-place form `run_raw` allows; parts write disjoint
            // elements.
            unsafe { ck.run_raw(ptrs, o, i) }.map_err(|e| e.to_string())
        };
        match (&self.pool, parts.len()) {
            (Some(pool), n) if n > 1 => {
                let shared = Ptrs(ptrs);
                let errs: Mutex<Vec<String>> = Mutex::new(Vec::new());
                pool.scope(|s| {
                    for (o, i) in parts {
                        let errs = &errs;
                        s.spawn(move |_| {
                            let p = shared;
                            // SAFETY: as above.
                            if let Err(e) = unsafe { ck.run_raw(p.get(), o, i) } {
                                if let Ok(mut v) = errs.lock() {
                                    v.push(e.to_string());
                                }
                            }
                        });
                    }
                });
                match errs.into_inner().ok().and_then(|mut v| v.pop()) {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            }
            _ => run(0..on, 0..inn),
        }
    }

    fn parts(
        &self,
        ck: &CompiledKernel,
        on: usize,
        inn: usize,
    ) -> Vec<(Range<usize>, Range<usize>)> {
        if on.saturating_mul(inn) < PAR_MIN_ELEMS {
            vec![(0..on, 0..inn)]
        } else {
            ck.split(self.threads)
        }
    }

    /// Pointer table of an epilogue, with the anchor and output buffers at
    /// `c` (they are the same memory: the epilogue rewrites C in place).
    fn epilogue_ptrs(&self, mem: &Mem, e: &EpiSpec, c: *mut f32) -> Vec<*mut f32> {
        e.args
            .iter()
            .map(|a| match a {
                None => c,
                Some(v) => self.ptr(mem, *v),
            })
            .collect()
    }

    fn run_matmul(
        &self,
        ctx: &Ctx<'_>,
        mem: &Mem,
        node: NodeId,
        out: ValueId,
        epi: &Option<EpiSpec>,
        p: &MatMulPlan,
    ) -> Result<(), String> {
        let g = &self.prog.graph;
        let ins = &g.node(node).inputs;
        let (a_ptr, b_ptr, c_ptr) = (
            self.ptr(mem, ins[0]),
            self.ptr(mem, ins[1]),
            self.ptr(mem, out),
        );
        if a_ptr.is_null() || c_ptr.is_null() || (p.packed_b.is_none() && b_ptr.is_null()) {
            return Err("a matmul operand has no memory".into());
        }
        let a_len = if p.a_stride == 0 {
            p.m * p.k
        } else {
            p.batches * p.m * p.k
        };
        let b_len = if p.b_stride == 0 {
            p.k * p.n
        } else {
            p.batches * p.k * p.n
        };
        let c_len = p.batches * p.m * p.n;
        // SAFETY: the plan placed A, B and C in disjoint arena ranges (or
        // weights) of these lengths, alive for this step.
        let (a, c) = unsafe {
            (
                std::slice::from_raw_parts(a_ptr as *const f32, a_len),
                std::slice::from_raw_parts_mut(c_ptr, c_len),
            )
        };
        let (rows, a_stride, batches) = if p.a_stride != 0 && p.b_stride == 0 {
            // B is shared: one tall GEMM over every batch's rows.
            (p.batches * p.m, 0, 1)
        } else {
            (p.m, p.a_stride, p.batches)
        };
        let am = MatRef::row_major(a, rows, p.k).map_err(|e| e.to_string())?;
        let cm = MatMut::row_major(c, rows, p.n).map_err(|e| e.to_string())?;
        let lhs = Lhs::Raw(am);
        let rhs = match &p.packed_b {
            Some(pb) => Rhs::Packed(pb),
            None => {
                // SAFETY: as above.
                let b = unsafe { std::slice::from_raw_parts(b_ptr as *const f32, b_len) };
                Rhs::Raw(MatRef::row_major(b, p.k, p.n).map_err(|e| e.to_string())?)
            }
        };
        let b_stride = if batches == 1 { 0 } else { p.b_stride };
        let c_stride = rows * p.n;
        match epi {
            None => gemm::sgemm_batched(
                ctx,
                batches,
                (lhs, a_stride),
                (rhs, b_stride),
                (cm, c_stride),
                false,
                None,
            )
            .map_err(|e| e.to_string()),
            Some(e) => {
                let ptrs = self.epilogue_ptrs(mem, e, c_ptr);
                let epi = TileEpilogue::new(&self.kernels[e.kernel as usize], &ptrs, rows);
                let f = |t: EpilogueTile<'_>| epi.tile(t);
                gemm::sgemm_batched(
                    ctx,
                    batches,
                    (lhs, a_stride),
                    (rhs, b_stride),
                    (cm, c_stride),
                    false,
                    Some(&f),
                )
                .map_err(|e| e.to_string())?;
                epi.finish()
            }
        }
    }

    fn run_conv(
        &self,
        ctx: &Ctx<'_>,
        mem: &Mem,
        node: NodeId,
        out: ValueId,
        epi: &Option<EpiSpec>,
        p: &ConvPlan,
    ) -> Result<(), String> {
        let g = &self.prog.graph;
        let x_v = g.node(node).inputs[0];
        let (x_ptr, y_ptr) = (self.ptr(mem, x_v), self.ptr(mem, out));
        if x_ptr.is_null() || y_ptr.is_null() {
            return Err("a conv operand has no memory".into());
        }
        let x_len: usize = dims_of(g, x_v).iter().product();
        let y_len: usize = dims_of(g, out).iter().product();
        // SAFETY: x and y are disjoint arena ranges of these lengths.
        let (x, y) = unsafe {
            (
                std::slice::from_raw_parts(x_ptr as *const f32, x_len),
                std::slice::from_raw_parts_mut(y_ptr, y_len),
            )
        };
        match epi {
            None => p
                .conv
                .run(ctx, x, p.nhw, y, None)
                .map_err(|e| e.to_string()),
            Some(e) => {
                let ptrs = self.epilogue_ptrs(mem, e, y_ptr);
                // Conv tiles are (image, channels, pixels).
                let epi = TileEpilogue::new(&self.kernels[e.kernel as usize], &ptrs, p.channels);
                let f = |t: EpilogueTile<'_>| epi.tile(t);
                p.conv
                    .run(ctx, x, p.nhw, y, Some(&f))
                    .map_err(|e| e.to_string())?;
                epi.finish()
            }
        }
    }

    fn run_ref(&self, mem: &Mem, boxed: &mut [Option<Tensor>], node: NodeId) -> Result<(), String> {
        let g = &self.prog.graph;
        let n = g.node(node);
        let args: Vec<Tensor> = n
            .inputs
            .iter()
            .map(|&v| {
                self.read(mem, boxed, v)
                    .ok_or_else(|| "an input was not computed".to_string())
            })
            .collect::<Result<_, _>>()?;
        let refs: Vec<&Tensor> = args.iter().collect();
        let outs = n.op.eval(&refs).map_err(|e| e.to_string())?;
        if outs.len() != n.outputs.len() {
            return Err(format!(
                "{} results for {} outputs",
                outs.len(),
                n.outputs.len()
            ));
        }
        for (&v, t) in n.outputs.iter().zip(outs) {
            let want = dims_of(g, v);
            if t.shape() != want.as_slice() || t.dtype() != g.value(v).ty.dtype {
                return Err(format!("result is {}, expected {}", t.ty(), g.value(v).ty));
            }
            match self.prog.loc(v) {
                Loc::Boxed => boxed[v.index()] = Some(t),
                Loc::Arena { .. } | Loc::Output => {
                    let Tensor::F32(a) = &t else {
                        unreachable!("dtype checked")
                    };
                    let p = self.ptr(mem, v);
                    if p.is_null() {
                        return Err("a result has no memory".into());
                    }
                    // SAFETY: the value's own buffer (arena range or output
                    // vector) of exactly its element count; the plan keeps it
                    // apart from the inputs just read (copied above).
                    let dst = unsafe { std::slice::from_raw_parts_mut(p, a.len()) };
                    // A contiguous result is one copy; element-wise iteration
                    // over a dynamic-rank array costs several ns per element.
                    match a.as_slice() {
                        Some(src) => dst.copy_from_slice(src),
                        None => dst.iter_mut().zip(a.iter()).for_each(|(d, s)| *d = *s),
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// An epilogue kernel run on each finished GEMM/conv tile. Tiles give
/// (batch, first row, rows, first column, columns); the kernel's outer index
/// is `batch * rows_per_batch + row`, its inner index the column. A failure
/// inside a tile (which cannot return one) is kept for `finish`.
struct TileEpilogue<'a> {
    kernel: &'a CompiledKernel,
    ptrs: Ptrs<'a>,
    rows_per_batch: usize,
    err: Mutex<Option<String>>,
}

impl<'a> TileEpilogue<'a> {
    fn new(kernel: &'a CompiledKernel, ptrs: &'a [*mut f32], rows_per_batch: usize) -> Self {
        TileEpilogue {
            kernel,
            ptrs: Ptrs(ptrs),
            rows_per_batch,
            err: Mutex::new(None),
        }
    }

    fn tile(&self, t: EpilogueTile<'_>) {
        let o0 = t.batch * self.rows_per_batch + t.row0;
        // SAFETY: the tile is ours alone until we return; the epilogue
        // writes only rows o0.. and columns col0.. of the output (its store
        // is the output's own layout), reads the output at the same
        // elements (the anchor's result, in place), and only reads other
        // buffers; `check_steps` matched every buffer's size.
        let r = unsafe {
            self.kernel
                .run_raw(self.ptrs.get(), o0..o0 + t.rows, t.col0..t.col0 + t.cols)
        };
        if let Err(e) = r {
            if let Ok(mut s) = self.err.lock() {
                *s = Some(e.to_string());
            }
        }
    }

    fn finish(self) -> Result<(), String> {
        match self.err.into_inner().ok().flatten() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Where a run's f32 values are: the arena, plus the caller's input tensors
/// and the output vectors (per value index).
struct Mem {
    base: *mut f32,
    ext: Vec<*mut f32>,
}

fn plan_matmul(
    g: &Graph,
    node: NodeId,
    params: &[Option<Tensor>],
    isa: Isa,
) -> Result<MatMulPlan, ExecError> {
    let n = g.node(node);
    let err = |msg: String| ExecError::Node {
        label: label(g, node),
        msg,
    };
    if n.inputs.len() != 2 || !matches!(n.op, Op::MatMul(_)) {
        return Err(err("not a two-operand matmul".into()));
    }
    let (a, b) = (n.inputs[0], n.inputs[1]);
    let (sa, sb) = (dims_of(g, a), dims_of(g, b));
    if sa.len() < 2 || sb.len() < 2 {
        return Err(err("native matmul needs 2-D operands".into()));
    }
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (kb, nn) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if k != kb {
        return Err(err(format!("inner dims {k} and {kb} differ")));
    }
    let ba: usize = sa[..sa.len() - 2].iter().product();
    let bb: usize = sb[..sb.len() - 2].iter().product();
    let batches = ba.max(bb);
    if !(ba == 1 || bb == 1 || ba == bb) {
        return Err(err("batch dims do not broadcast simply".into()));
    }
    let a_stride = if ba == 1 { 0 } else { m * k };
    let b_stride = if bb == 1 { 0 } else { k * nn };
    let packed_b = match (&params[b.index()], bb) {
        (Some(t), 1) => {
            let data = f32_slice(t).ok_or_else(|| err("weight is not f32".into()))?;
            let mr = MatRef::row_major(data, k, nn).map_err(|e| err(e.to_string()))?;
            Some(PackedB::new(isa, mr).map_err(|e| err(e.to_string()))?)
        }
        _ => None,
    };
    Ok(MatMulPlan {
        batches,
        m,
        k,
        n: nn,
        a_stride,
        b_stride,
        packed_b,
    })
}

fn plan_conv(
    g: &Graph,
    node: NodeId,
    params: &[Option<Tensor>],
    isa: Isa,
) -> Result<ConvPlan, ExecError> {
    let n = g.node(node);
    let err = |msg: String| ExecError::Node {
        label: label(g, node),
        msg,
    };
    let Op::Conv(c) = &n.op else {
        return Err(err("not a conv".into()));
    };
    if n.inputs.len() < 2 {
        return Err(err("conv needs an input and a weight".into()));
    }
    let xs = dims_of(g, n.inputs[0]);
    let ws = dims_of(g, n.inputs[1]);
    if !(3..=4).contains(&xs.len()) || ws.len() != xs.len() {
        return Err(err(format!(
            "native conv needs a 1-D or 2-D input and a weight of the same rank, got {xs:?} and {ws:?}"
        )));
    }
    let r = xs.len() - 2;
    let or = |v: &[i64], d: i64, len: usize| -> Vec<usize> {
        if v.is_empty() {
            vec![d as usize; len]
        } else {
            v.iter().map(|&x| x.max(0) as usize).collect()
        }
    };
    let params_c = Conv2dParams::from_spatial(
        xs[1],
        ws[0],
        c.groups.max(1) as usize,
        &ws[2..],
        &or(&c.strides, 1, r),
        &or(&c.dilations, 1, r),
        &or(&c.pads, 0, 2 * r),
    )
    .map_err(|e| err(e.to_string()))?;
    let weight = |v: ValueId| -> Result<&[f32], ExecError> {
        params[v.index()]
            .as_ref()
            .and_then(f32_slice)
            .ok_or_else(|| err("conv weights must be f32 parameters".into()))
    };
    let w = weight(n.inputs[1])?;
    let bias = match n.inputs.get(2) {
        Some(&b) => Some(weight(b)?),
        None => None,
    };
    let conv = Conv2d::new(isa, params_c, w, bias).map_err(|e| err(e.to_string()))?;
    let nhw = if r == 1 {
        [xs[0], 1, xs[2]]
    } else {
        [xs[0], xs[2], xs[3]]
    };
    Ok(ConvPlan {
        conv,
        nhw,
        channels: ws[0],
    })
}
