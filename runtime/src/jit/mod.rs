//! The Cranelift JIT for kernel IR ([`kiln_ir::kernel::Kernel`]).
//!
//! [`JitModule::compile`] lowers a batch of kernels to machine code for this
//! host once; each [`CompiledKernel`] then runs with buffers checked against
//! its declarations ([`CompiledKernel::run`]), on part of its iteration space
//! ([`CompiledKernel::run_range`], e.g. a GEMM epilogue per tile), or split
//! across threads ([`CompiledKernel::run_parallel`]).
//!
//! Generated code: f32x4 loops (unrolled, with a scalar tail) for statements
//! whose accesses all have inner stride 0 or 1, scalar loops otherwise;
//! values invariant in the inner loop computed once per outer iteration (or
//! once per call); reductions in 4 vector accumulators, reduced across lanes
//! at the end; max/min/select as `bitselect(fcmp)` (`maxps`/`minps`/
//! `blendvps`), NaN-propagating like [`Kernel::eval`]. The polynomial
//! approximations and their measured errors are documented in `math.rs`.
//! Results equal `eval` bitwise except for those approximations and the
//! order of a reduction's sum; they do not depend on how the ranges are
//! split.
//!
//! All `unsafe` of the runtime's kernel JIT is in this module.

mod lower;
mod math;
mod plan;

use std::ops::Range;
use std::sync::{Arc, Mutex};

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{Function, UserFuncName};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, DataDescription, Linkage, Module};
use kiln_ir::kernel::{Kernel, KernelError, Role};

pub use lower::CodegenOptions;
use plan::{Facts, Plan};

/// What can go wrong compiling or running a kernel.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Arguments that do not match the kernel's declarations.
    #[error("kernel `{kernel}`: {msg}")]
    Args { kernel: String, msg: String },
    #[error("Cranelift: {0}")]
    Codegen(String),
}

fn cg<E: std::fmt::Display>(e: E) -> JitError {
    JitError::Codegen(e.to_string())
}

/// A buffer argument: inputs are only read, outputs written (and read).
pub enum Buf<'a> {
    In(&'a [f32]),
    Out(&'a mut [f32]),
}

/// The generated function: `(bufs, outer_begin, outer_end, inner_begin,
/// inner_end)`.
type KernelFn = unsafe extern "C" fn(*const *mut f32, usize, usize, usize, usize);

/// The JIT's code memory, freed when the last kernel using it is dropped.
struct Code(Mutex<Option<JITModule>>);

impl Drop for Code {
    fn drop(&mut self) {
        let module = match self.0.get_mut() {
            Ok(m) => m.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(m) = module {
            // SAFETY: every function pointer into this memory lives in a
            // `CompiledKernel`, which holds an `Arc<Code>`; this is the last
            // one, so no pointer can be called after the memory is freed.
            unsafe { m.free_memory() };
        }
    }
}

/// One kernel, compiled. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct CompiledKernel {
    kernel: Arc<Kernel>,
    func: KernelFn,
    facts: Facts,
    _code: Arc<Code>,
}

impl std::fmt::Debug for CompiledKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledKernel")
            .field("name", &self.kernel.name)
            .finish_non_exhaustive()
    }
}

/// A batch of kernels compiled together into one block of code memory.
#[derive(Clone, Debug)]
pub struct JitModule {
    kernels: Vec<CompiledKernel>,
}

/// The host ISA (through `cranelift-native`, `opt_level=speed`).
fn host_isa() -> Result<OwnedTargetIsa, JitError> {
    let mut flags = settings::builder();
    for (k, v) in [
        ("opt_level", "speed"),
        // cranelift-jit requires these.
        ("is_pic", "false"),
        ("use_colocated_libcalls", "false"),
        // Generated code is tested; verifying it on every load costs time.
        (
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        ),
    ] {
        flags.set(k, v).map_err(cg)?;
    }
    cranelift_native::builder()
        .map_err(cg)?
        .finish(settings::Flags::new(flags))
        .map_err(cg)
}

fn options_for(isa: &OwnedTargetIsa) -> CodegenOptions {
    let fma = isa
        .isa_flags()
        .iter()
        .any(|f| f.name == "has_fma" && f.as_bool() == Some(true));
    CodegenOptions { fma }
}

/// The options [`JitModule::compile`] uses on this host.
pub fn host_options() -> Result<CodegenOptions, JitError> {
    Ok(options_for(&host_isa()?))
}

/// The CLIF of `k` as function `n`, its constant table (data object
/// `consts`), and what the wrapper needs to know.
fn function(
    k: &Kernel,
    opts: CodegenOptions,
    n: u32,
    consts: u32,
    isa: &dyn TargetIsa,
) -> (Function, Vec<u8>, Facts) {
    let plan = Plan::new(k);
    let sig = lower::signature(isa.default_call_conv());
    let mut f = Function::with_name_signature(UserFuncName::user(0, n), sig);
    let table = lower::build(&plan, opts, isa.frontend_config(), consts, &mut f);
    (f, table, plan.facts())
}

/// The CLIF of `k` before optimisation, as text (for snapshots and
/// debugging). It depends only on `k` and `opts`.
pub fn clif(k: &Kernel, opts: CodegenOptions) -> Result<String, JitError> {
    k.validate()?;
    let isa = host_isa()?;
    Ok(function(k, opts, 0, 0, &*isa).0.display().to_string())
}

/// The machine code of `k` for this host, disassembled.
pub fn disassemble(k: &Kernel) -> Result<String, JitError> {
    k.validate()?;
    let isa = host_isa()?;
    let (f, _, _) = function(k, options_for(&isa), 0, 0, &*isa);
    let mut ctx = Context::for_function(f);
    ctx.set_disasm(true);
    let code = ctx
        .compile(&*isa, &mut ControlPlane::default())
        .map_err(|e| JitError::Codegen(format!("{:?}", e.inner)))?;
    Ok(code.vcode.clone().unwrap_or_default())
}

impl JitModule {
    /// Validate and compile `kernels` for this host.
    pub fn compile(kernels: &[Kernel]) -> Result<JitModule, JitError> {
        let isa = host_isa()?;
        let opts = options_for(&isa);
        Self::compile_isa(kernels, isa, opts)
    }

    /// As [`JitModule::compile`], with explicit options (`fma: true` needs a
    /// host with FMA, or each fused multiply-add becomes a libm call).
    pub fn compile_with(kernels: &[Kernel], opts: CodegenOptions) -> Result<JitModule, JitError> {
        Self::compile_isa(kernels, host_isa()?, opts)
    }

    fn compile_isa(
        kernels: &[Kernel],
        isa: OwnedTargetIsa,
        opts: CodegenOptions,
    ) -> Result<JitModule, JitError> {
        for k in kernels {
            k.validate()?;
        }
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        let mut ctx = module.make_context();
        let mut defined = Vec::with_capacity(kernels.len());
        for (n, k) in kernels.iter().enumerate() {
            let data = module
                .declare_data(&format!("kiln_consts_{n}"), Linkage::Local, false, false)
                .map_err(cg)?;
            let (f, table, facts) = function(k, opts, n as u32, data.as_u32(), module.isa());
            let mut desc = DataDescription::new();
            desc.set_align(16);
            desc.define(if table.is_empty() {
                vec![0; 16].into()
            } else {
                table.into()
            });
            module.define_data(data, &desc).map_err(cg)?;
            let id = module
                .declare_function(&format!("kiln_kernel_{n}"), Linkage::Local, &f.signature)
                .map_err(cg)?;
            ctx.func = f;
            module
                .define_function(id, &mut ctx)
                .map_err(|e| JitError::Codegen(format!("kernel `{}`: {e:?}", k.name)))?;
            module.clear_context(&mut ctx);
            defined.push((id, facts));
        }
        module.finalize_definitions().map_err(cg)?;
        let ptrs: Vec<*const u8> = defined
            .iter()
            .map(|(id, _)| module.get_finalized_function(*id))
            .collect();
        let code = Arc::new(Code(Mutex::new(Some(module))));
        let kernels = kernels
            .iter()
            .zip(defined)
            .zip(ptrs)
            .map(|((k, (_, facts)), ptr)| CompiledKernel {
                kernel: Arc::new(k.clone()),
                // SAFETY: `ptr` is a finalized function built with
                // `lower::signature` under the host's default calling
                // convention, which is `extern "C"`, with 5 pointer-sized
                // integer parameters and no result, i.e. `KernelFn`.
                func: unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) },
                facts,
                _code: code.clone(),
            })
            .collect();
        Ok(JitModule { kernels })
    }

    pub fn kernels(&self) -> &[CompiledKernel] {
        &self.kernels
    }

    pub fn into_kernels(self) -> Vec<CompiledKernel> {
        self.kernels
    }
}

/// `0..n` cut into at most `parts` contiguous, non-empty, near-equal ranges.
pub fn split_range(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|p| (n * p / parts)..(n * (p + 1) / parts))
        .filter(|r| !r.is_empty())
        .collect()
}

/// The pointer table, shared by the threads of one `run_parallel`.
struct Table<'a>(&'a [*mut f32]);

// SAFETY: the table is only read. Threads write through its output pointers
// only at the elements of their own part of the iteration space, and
// `run_parallel` cuts it only where those do not overlap and no output is
// read: whole outer indices when `Facts::outer_disjoint`, or inner ranges of
// a kernel without reductions whose stores write each element at most once
// (`Facts::inner_disjoint`). Input pointers are only read.
unsafe impl Sync for Table<'_> {}

impl CompiledKernel {
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Whether different outer indices write disjoint elements and no output
    /// is read, so the outer range can be split across threads.
    pub fn outer_splittable(&self) -> bool {
        self.facts.outer_disjoint && !self.facts.reads_outputs
    }

    /// Whether the inner range can be run in parts, also at once on several
    /// threads (no reductions, no output read back, each output element
    /// written once): a GEMM epilogue applied per tile.
    pub fn inner_splittable(&self) -> bool {
        !self.facts.has_reduce && !self.facts.reads_outputs && self.facts.inner_disjoint
    }

    fn args_err<T>(&self, msg: impl Into<String>) -> Result<T, JitError> {
        Err(JitError::Args {
            kernel: self.kernel.name.clone(),
            msg: msg.into(),
        })
    }

    /// Check `bufs` against the declarations; the pointer table.
    fn table(&self, bufs: &mut [Buf]) -> Result<Vec<*mut f32>, JitError> {
        let decls = &self.kernel.bufs;
        if bufs.len() != decls.len() {
            return self.args_err(format!(
                "{} buffers given, {} declared",
                bufs.len(),
                decls.len()
            ));
        }
        let mut table = Vec::with_capacity(bufs.len());
        for (n, (b, d)) in bufs.iter_mut().zip(decls).enumerate() {
            let (ptr, len, role) = match b {
                // Never written: validation allows stores to outputs only.
                Buf::In(s) => (s.as_ptr() as *mut f32, s.len(), Role::Input),
                Buf::Out(s) => (s.as_mut_ptr(), s.len(), Role::Output),
            };
            if role != d.role {
                return self.args_err(format!(
                    "buffer {n} is declared {:?}, given as {role:?}",
                    d.role
                ));
            }
            if len != d.len {
                return self.args_err(format!("buffer {n} has {len} elements, {} declared", d.len));
            }
            table.push(ptr);
        }
        Ok(table)
    }

    fn check_ranges(&self, outer: &Range<usize>, inner: &Range<usize>) -> Result<(), JitError> {
        let (on, inn) = (self.kernel.outer_len(), self.kernel.inner);
        if outer.start > outer.end || outer.end > on {
            return self.args_err(format!("outer range {outer:?} is not within 0..{on}"));
        }
        if inner.start > inner.end || inner.end > inn {
            return self.args_err(format!("inner range {inner:?} is not within 0..{inn}"));
        }
        if !inner.is_empty() && *inner != (0..inn) && !self.inner_splittable() {
            return self.args_err(format!(
                "inner range {inner:?}: this kernel runs whole rows (0..{inn}): it has reductions, reads an output, or writes an element twice"
            ));
        }
        Ok(())
    }

    /// How to cut the iteration space into up to `threads` parts that write
    /// disjoint elements: the outer range when [`CompiledKernel::outer_splittable`]
    /// and long enough, else the inner range when
    /// [`CompiledKernel::inner_splittable`] (cut at multiples of 16
    /// elements, one unrolled trip, so each part's vector loop stays
    /// aligned), else one part. Every element is computed by the same
    /// instructions however the ranges are cut.
    pub fn split(&self, threads: usize) -> Vec<(Range<usize>, Range<usize>)> {
        let (on, inn) = (self.kernel.outer_len(), self.kernel.inner);
        if threads > 1 && self.outer_splittable() && (on >= threads || !self.inner_splittable()) {
            split_range(on, threads)
                .into_iter()
                .map(|r| (r, 0..inn))
                .collect()
        } else if threads > 1 && self.inner_splittable() {
            split_range(inn.div_ceil(16), threads)
                .into_iter()
                .map(|r| (0..on, 16 * r.start..(16 * r.end).min(inn)))
                .collect()
        } else {
            vec![(0..on, 0..inn)]
        }
    }

    /// Run the whole iteration space on this thread.
    pub fn run(&self, bufs: &mut [Buf]) -> Result<(), JitError> {
        self.run_range(bufs, 0..self.kernel.outer_len(), 0..self.kernel.inner)
    }

    /// Run outer indices `outer` (row-major over the kernel's `outer`) and
    /// inner indices `inner` (the whole row unless
    /// [`CompiledKernel::inner_splittable`]).
    pub fn run_range(
        &self,
        bufs: &mut [Buf],
        outer: Range<usize>,
        inner: Range<usize>,
    ) -> Result<(), JitError> {
        let table = self.table(bufs)?;
        self.check_ranges(&outer, &inner)?;
        // SAFETY: the table holds one pointer per declared buffer, each to
        // exactly the declared number of elements, borrowed for this call
        // (inputs shared, outputs exclusively, so outputs alias nothing);
        // validation put every access of the ranges checked above in bounds.
        unsafe {
            (self.func)(
                table.as_ptr(),
                outer.start,
                outer.end,
                inner.start,
                inner.end,
            )
        };
        Ok(())
    }

    /// Run the whole iteration space on up to `threads` scoped threads
    /// (this one included): the outer range split across them when
    /// [`CompiledKernel::outer_splittable`] and long enough, else the inner
    /// range when [`CompiledKernel::inner_splittable`] (a flat elementwise
    /// kernel has one outer index), else on this thread. Every element is
    /// computed by the same instructions however the ranges are cut, so the
    /// result is bitwise that of [`CompiledKernel::run`].
    pub fn run_parallel(&self, bufs: &mut [Buf], threads: usize) -> Result<(), JitError> {
        let table = self.table(bufs)?;
        let (on, inn) = (self.kernel.outer_len(), self.kernel.inner);
        let parts = self.split(threads);
        if parts.len() <= 1 {
            return self.run_range(bufs, 0..on, 0..inn);
        }
        let shared = Table(&table);
        let (shared, f) = (&shared, self.func);
        std::thread::scope(|s| {
            for (o, i) in &parts[1..] {
                let (o, i) = (o.clone(), i.clone());
                s.spawn(move || {
                    // SAFETY: as in `run_range` (the table was checked above,
                    // and `bufs` stays borrowed until every thread has
                    // joined); the parts write disjoint elements (see
                    // `Table`).
                    unsafe { f(shared.0.as_ptr(), o.start, o.end, i.start, i.end) }
                });
            }
            let (o, i) = &parts[0];
            // SAFETY: as above.
            unsafe { f(shared.0.as_ptr(), o.start, o.end, i.start, i.end) }
        });
        Ok(())
    }

    /// Run on raw buffers (e.g. an executor's arena).
    ///
    /// # Safety
    /// `bufs` holds one pointer per declared buffer, each valid for reads
    /// (inputs) or reads and writes (outputs) of the declared number of
    /// f32s for the whole call. Buffers do not overlap, with one exception,
    /// in-place elementwise: an output may be the same memory as an input
    /// that only the statement storing to it reads, through exactly the
    /// store's access (so each element is read just before it is written;
    /// inner-loop loads are not `readonly` for this reason, which measured
    /// no slower). Threads running the same kernel at once must use ranges
    /// whose writes are disjoint: any split of the outer range when
    /// [`CompiledKernel::outer_splittable`], of the inner range when
    /// [`CompiledKernel::inner_splittable`].
    pub unsafe fn run_raw(
        &self,
        bufs: &[*mut f32],
        outer: Range<usize>,
        inner: Range<usize>,
    ) -> Result<(), JitError> {
        if bufs.len() != self.kernel.bufs.len() {
            return self.args_err(format!(
                "{} buffers given, {} declared",
                bufs.len(),
                self.kernel.bufs.len()
            ));
        }
        self.check_ranges(&outer, &inner)?;
        // SAFETY: the caller's contract above, and the ranges are checked.
        unsafe {
            (self.func)(
                bufs.as_ptr(),
                outer.start,
                outer.end,
                inner.start,
                inner.end,
            )
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::kernel::{Access, BufDecl, Expr, KBinary, KUnary, Stmt};

    fn acc(buf: u32, outer: Vec<i64>) -> Access {
        Access {
            buf,
            offset: 0,
            outer_strides: outer,
            inner_stride: 1,
        }
    }

    /// out[o, i] = tanh(x[o, i] + b[i]) on [3, 37].
    fn epilogue() -> Kernel {
        let decl = |role, len| BufDecl { role, len };
        Kernel {
            name: "epilogue".into(),
            bufs: vec![
                decl(Role::Input, 111),
                decl(Role::Input, 37),
                decl(Role::Output, 111),
            ],
            outer: vec![3],
            inner: 37,
            exprs: vec![
                Expr::Load(acc(0, vec![37])),
                Expr::Load(acc(1, vec![0])),
                Expr::Binary(KBinary::Add, 0, 1),
                Expr::Unary(KUnary::Tanh, 2),
            ],
            stmts: vec![Stmt::Store {
                dst: acc(2, vec![37]),
                expr: 3,
            }],
        }
    }

    #[test]
    fn in_place_through_run_raw_matches_separate_buffers() {
        let k = epilogue();
        let m = JitModule::compile(std::slice::from_ref(&k)).unwrap();
        let ck = &m.kernels()[0];
        let x: Vec<f32> = (0..111).map(|v| (v as f32 * 0.37).sin() * 3.0).collect();
        let b: Vec<f32> = (0..37).map(|v| v as f32 * 0.01).collect();
        let mut out = vec![0f32; 111];
        ck.run(&mut [Buf::In(&x), Buf::In(&b), Buf::Out(&mut out)])
            .unwrap();
        // The output is the input's memory; tiles in an odd order.
        let mut xy = x.clone();
        let p = xy.as_mut_ptr();
        let table = [p, b.as_ptr() as *mut f32, p];
        for (o, i) in [(1..3, 20..37), (0..1, 0..37), (1..3, 0..20)] {
            // SAFETY: the pointers are valid for the declared lengths while
            // `xy` and `b` live; buffer 2 overlaps buffer 0 only as the
            // in-place case `run_raw` allows (same access, one statement).
            unsafe { ck.run_raw(&table, o, i) }.unwrap();
        }
        assert_eq!(
            xy.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // SAFETY: the pointer count is wrong, which is checked before any use.
        let short = unsafe { ck.run_raw(&table[..2], 0..3, 0..37) };
        assert!(short.is_err());
    }

    #[test]
    fn split_range_covers_everything_once() {
        for n in [0, 1, 5, 16, 17] {
            for parts in [0, 1, 2, 3, 8, 40] {
                let rs = split_range(n, parts);
                assert!(rs.len() <= parts.max(1));
                let flat: Vec<usize> = rs.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(flat, (0..n).collect::<Vec<_>>(), "{n} in {parts}");
            }
        }
    }
}
