//! Kernel IR → CLIF.
//!
//! The function is `fn(bufs: *const *mut f32, outer_begin, outer_end,
//! inner_begin, inner_end)`:
//!
//! ```text
//! if ob >= oe || ib >= ie: return
//! load buffer bases; compute function-invariant expressions
//! split ob into per-dim indices
//! for o in ob..oe:                       (per-dim counters carried by hand)
//!     for each statement:
//!         compute its outer-invariant expressions (after the reductions they read)
//!         f32x4 loop, U vectors a trip  (SIMD statements)
//!         f32x4 loop, 1 vector a trip   (SIMD statements)
//!         scalar loop, 1 element a trip (lane 0; all that non-SIMD statements have)
//!         a reduction: combine U accumulators, reduce horizontally, fold the tail
//! ```

use std::collections::HashMap;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::Imm64;
use cranelift_codegen::ir::types::{F32, F32X4, I64};
use cranelift_codegen::ir::{
    AbiParam, ExternalName, Function, GlobalValueData, InstBuilder, MemFlagsData, Signature,
    UserExternalName, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use kiln_ir::kernel::{Access, Expr, ExprId, KBinary, KCmp, KReduce, KUnary, Role, Stmt};

use super::math::{Pool, Vx};
use super::plan::{const_not_nan, is_heavy, reachable, Level, Plan};

/// How the code may differ between machines; everything else is fixed, so
/// the CLIF for given options is deterministic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodegenOptions {
    /// Fused multiply-add inside the polynomial approximations.
    pub fma: bool,
}

/// Vectors per trip of the unrolled loop; a reduction keeps one
/// accumulator per vector (the x64 backend has 16 XMM registers; at most
/// 12 accumulators avoids spills).
const UNROLL_REDUCE: usize = 4;
const UNROLL_LIGHT: usize = 4;
const UNROLL_HEAVY: usize = 2;

pub(crate) fn signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..5 {
        sig.params.push(AbiParam::new(I64));
    }
    sig
}

/// Where an expression is being emitted.
#[derive(Clone, Copy)]
enum At {
    Fn,
    Outer,
    /// In an inner loop at index `i` plus `lane` elements; `simd`: four
    /// consecutive elements, otherwise one (in lane 0).
    Inner {
        i: Value,
        lane: i64,
        simd: bool,
    },
}

struct Gen<'p, 'b> {
    p: &'p Plan,
    b: FunctionBuilder<'b>,
    fma: bool,
    pool: Pool,
    base: Vec<Option<Value>>,
    fn_vals: HashMap<ExprId, Value>,
    outer_vals: HashMap<ExprId, Value>,
    rows: HashMap<(u32, i64, Vec<i64>), Value>,
    scalars: Vec<Value>,
    /// Outer index per (merged) dim, for this iteration.
    idx: Vec<Value>,
    ib: Value,
    ie: Value,
}

/// Build the CLIF of `plan`'s kernel into `func` (whose signature must be
/// [`signature`]); returns the contents of its constant table, which it
/// addresses as data object `consts` (cranelift-module's namespace 1).
pub(crate) fn build(
    plan: &Plan,
    opts: CodegenOptions,
    fcfg: TargetFrontendConfig,
    consts: u32,
    func: &mut Function,
) -> Vec<u8> {
    let name = func.declare_imported_user_function(UserExternalName {
        namespace: 1,
        index: consts,
    });
    let table_gv = func.create_global_value(GlobalValueData::Symbol {
        name: ExternalName::user(name),
        offset: Imm64::new(0),
        // Code and data are separate allocations: use an absolute address.
        colocated: false,
        tls: false,
    });
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(func, &mut fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let (bufs, ob, oe, ib, ie) = (params[0], params[1], params[2], params[3], params[4]);
    let start = b.create_block();
    let exit = b.create_block();
    let c1 = b.ins().icmp(IntCC::UnsignedLessThan, ob, oe);
    let c2 = b.ins().icmp(IntCC::UnsignedLessThan, ib, ie);
    let go = b.ins().band(c1, c2);
    b.ins().brif(go, start, &[], exit, &[]);
    b.switch_to_block(start);

    let k = &plan.k;
    let pool_base = b.ins().symbol_value(I64, table_gv);
    // The pointer table is valid for the whole call.
    let table = MemFlagsData::trusted().with_readonly().with_can_move();
    let mut used = vec![false; k.bufs.len()];
    for e in &k.exprs {
        if let Expr::Load(a) = e {
            used[a.buf as usize] = true;
        }
    }
    for s in &k.stmts {
        if let Stmt::Store { dst, .. } = s {
            used[dst.buf as usize] = true;
        }
    }
    let base = used
        .iter()
        .enumerate()
        .map(|(n, &u)| u.then(|| b.ins().load(I64, table, bufs, (8 * n) as i32)))
        .collect();
    let mut g = Gen {
        p: plan,
        b,
        fma: opts.fma,
        pool: Pool::new(pool_base),
        base,
        fn_vals: HashMap::new(),
        outer_vals: HashMap::new(),
        rows: HashMap::new(),
        scalars: Vec::new(),
        idx: Vec::new(),
        ib,
        ie,
    };
    for s in &k.stmts {
        let root = match s {
            Stmt::Reduce { expr, .. } | Stmt::Store { expr, .. } => *expr,
        };
        g.prepare(root, Level::Fn);
    }
    g.outer_loop(ob, oe, exit);
    g.b.switch_to_block(exit);
    g.b.ins().return_(&[]);
    g.b.seal_all_blocks();
    g.b.finalize(fcfg);
    g.pool.bytes
}

impl<'b> Gen<'_, 'b> {
    fn vx(&mut self) -> Vx<'_, 'b> {
        Vx {
            b: &mut self.b,
            pool: &mut self.pool,
            fma: self.fma,
        }
    }

    /// Address constants from `base + ((i + lane) >> 63)` (see `Pool`).
    fn anchor_at(&mut self, i: Value, lane: i64) {
        let j = if lane == 0 {
            i
        } else {
            self.b.ins().iadd_imm_s(i, lane)
        };
        let zero = self.b.ins().ushr_imm_u(j, 63);
        self.pool.anchor = self.b.ins().iadd(self.pool.base, zero);
    }

    /// `for o in ob..oe { body }`, keeping one index per outer dim.
    fn outer_loop(&mut self, ob: Value, oe: Value, exit: cranelift_codegen::ir::Block) {
        let dims = self.p.k.outer.clone();
        let o = self.b.declare_var(I64);
        self.b.def_var(o, ob);
        // Split ob into per-dim indices (row-major); dim 0 needs no modulo
        // because ob < outer_len.
        // With one dim, its index is o itself.
        let idx: Vec<Variable> = if dims.len() == 1 {
            vec![o]
        } else {
            dims.iter().map(|_| self.b.declare_var(I64)).collect()
        };
        let mut rest = ob;
        for d in (0..dims.len()).rev().filter(|_| dims.len() > 1) {
            let v = if d == 0 {
                rest
            } else {
                let n = self.b.ins().iconst(I64, dims[d] as i64);
                let r = self.b.ins().urem(rest, n);
                rest = self.b.ins().udiv(rest, n);
                r
            };
            self.b.def_var(idx[d], v);
        }
        let header = self.b.create_block();
        let body = self.b.create_block();
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let ov = self.b.use_var(o);
        let oe_ok = self.b.ins().icmp(IntCC::UnsignedLessThan, ov, oe);
        self.b.ins().brif(oe_ok, body, &[], exit, &[]);
        self.b.switch_to_block(body);
        self.idx = idx.iter().map(|&v| self.b.use_var(v)).collect();
        self.outer_vals.clear();
        self.rows.clear();
        self.scalars.clear();
        let stmts = self.p.k.stmts.clone();
        for (n, s) in stmts.iter().enumerate() {
            self.stmt(n, s);
        }
        // o += 1, carrying through the dims from the innermost.
        let ov = self.b.use_var(o);
        let next = self.b.ins().iadd_imm_s(ov, 1);
        self.b.def_var(o, next);
        for d in (0..dims.len()).rev().filter(|_| dims.len() > 1) {
            let cur = self.b.use_var(idx[d]);
            let inc = self.b.ins().iadd_imm_s(cur, 1);
            if d == 0 {
                self.b.def_var(idx[d], inc);
                break;
            }
            let in_range = self
                .b
                .ins()
                .icmp_imm_s(IntCC::UnsignedLessThan, inc, dims[d] as i64);
            let keep = self.b.create_block();
            let wrap = self.b.create_block();
            self.b.ins().brif(in_range, keep, &[], wrap, &[]);
            self.b.switch_to_block(keep);
            self.b.def_var(idx[d], inc);
            self.b.ins().jump(header, &[]);
            self.b.switch_to_block(wrap);
            let zero = self.b.ins().iconst(I64, 0);
            self.b.def_var(idx[d], zero);
        }
        self.b.ins().jump(header, &[]);
    }

    /// Compute the expressions of `level` that `root` needs and that are not
    /// computed yet, here (in straight-line code that dominates their uses).
    fn prepare(&mut self, root: ExprId, level: Level) {
        for e in reachable(&self.p.k, root) {
            if self.p.level[e as usize] != level
                || matches!(self.p.k.exprs[e as usize], Expr::Const(_))
            {
                continue;
            }
            let cache = match level {
                Level::Fn => &self.fn_vals,
                Level::Outer => &self.outer_vals,
                Level::Inner => unreachable!("inner values are not cached"),
            };
            if cache.contains_key(&e) {
                continue;
            }
            let at = if level == Level::Fn {
                At::Fn
            } else {
                At::Outer
            };
            let v = self.compute(e, at, &HashMap::new());
            match level {
                Level::Fn => self.fn_vals.insert(e, v),
                _ => self.outer_vals.insert(e, v),
            };
        }
    }

    /// An operand's value: from the caches below the inner level, else from
    /// `local` (the current loop body).
    fn get(&mut self, e: ExprId, local: &HashMap<ExprId, Value>) -> Value {
        // Constants are loaded where they are used (see `Pool`).
        if let Expr::Const(bits) = self.p.k.exprs[e as usize] {
            return self.vx().c(f32::from_bits(bits));
        }
        match self.p.level[e as usize] {
            Level::Fn => self.fn_vals[&e],
            Level::Outer => self.outer_vals[&e],
            Level::Inner => local[&e],
        }
    }

    /// Evaluate `root` in an inner loop body.
    fn inner_value(&mut self, root: ExprId, at: At) -> Value {
        let mut local = HashMap::new();
        for e in reachable(&self.p.k, root) {
            if self.p.level[e as usize] == Level::Inner {
                let v = self.compute(e, at, &local);
                local.insert(e, v);
            }
        }
        self.get(root, &local)
    }

    /// This iteration's address of element 0 of `a`'s row.
    fn row(&mut self, a: &Access) -> Value {
        let key = (a.buf, a.offset, a.outer_strides.clone());
        if let Some(&v) = self.rows.get(&key) {
            return v;
        }
        let mut off = self.b.ins().iconst(I64, a.offset);
        for (d, &s) in a.outer_strides.iter().enumerate() {
            if s != 0 {
                let t = self.b.ins().imul_imm_s(self.idx[d], s);
                off = self.b.ins().iadd(off, t);
            }
        }
        let bytes = self.b.ins().ishl_imm_u(off, 2);
        let base = self.base[a.buf as usize].expect("every accessed buffer has a base");
        let v = self.b.ins().iadd(base, bytes);
        self.rows.insert(key, v);
        v
    }

    /// Row pointers for every access `root` and `dst` make, here.
    fn prepare_rows(&mut self, root: ExprId, dst: Option<&Access>) {
        let k = &self.p.k;
        let loads: Vec<Access> = reachable(k, root)
            .into_iter()
            .filter_map(|e| match &k.exprs[e as usize] {
                Expr::Load(a) if self.p.level[e as usize] != Level::Fn => Some(a.clone()),
                _ => None,
            })
            .collect();
        for a in loads.iter().chain(dst) {
            self.row(a);
        }
    }

    /// The address of `a` at inner index `i` (+`lane` elements) as a base and
    /// a constant byte offset.
    fn addr(&mut self, a: &Access, i: Value, lane: i64) -> (Value, i32) {
        let row = self.rows[&(a.buf, a.offset, a.outer_strides.clone())];
        let s = a.inner_stride;
        if s == 0 {
            return (row, 0);
        }
        let step = if s == 1 {
            self.b.ins().ishl_imm_u(i, 2)
        } else {
            // Wraps only when inner == 1, where i is 0.
            self.b.ins().imul_imm_s(i, s.wrapping_mul(4))
        };
        let p = self.b.ins().iadd(row, step);
        // lane < 16 and |s| = 1 here (SIMD), so the offset is small.
        (p, if s == 1 { (4 * lane) as i32 } else { 0 })
    }

    fn load(&mut self, a: &Access, at: At) -> Value {
        let input = self.p.k.bufs[a.buf as usize].role == Role::Input;
        let mut flags = MemFlagsData::new().with_notrap();
        if input {
            flags = flags.with_readonly();
        }
        match at {
            At::Fn => {
                // Runs only when the range is non-empty, so the kernel's
                // iteration space is, and validation put the element in bounds.
                let base = self.base[a.buf as usize].expect("buffer base");
                let p = self.b.ins().iadd_imm_s(base, a.offset.wrapping_mul(4));
                let x = self.b.ins().load(F32, flags.with_can_move(), p, 0);
                self.b.ins().splat(F32X4, x)
            }
            At::Outer => {
                let row = self.row(a);
                let x = self.b.ins().load(F32, flags.with_can_move(), row, 0);
                self.b.ins().splat(F32X4, x)
            }
            At::Inner { i, lane, simd } => {
                // Not `readonly`: an in-place kernel's output may overlap
                // the input it reads at the same element (see `run_raw`).
                let flags = MemFlagsData::new().with_notrap();
                let (p, off) = self.addr(a, i, lane);
                if simd && a.inner_stride == 1 {
                    self.b.ins().load(F32X4, flags, p, off)
                } else {
                    let x = self.b.ins().load(F32, flags, p, off);
                    self.b.ins().splat(F32X4, x)
                }
            }
        }
    }

    fn compute(&mut self, e: ExprId, at: At, local: &HashMap<ExprId, Value>) -> Value {
        let expr = self.p.k.exprs[e as usize].clone();
        match expr {
            Expr::Load(a) => self.load(&a, at),
            Expr::Const(bits) => self.vx().c(f32::from_bits(bits)),
            Expr::Scalar(s) => self.scalars[s as usize],
            Expr::Unary(op, a) => {
                let x = self.get(a, local);
                let mut v = self.vx();
                match op {
                    KUnary::Neg => v.b.ins().fneg(x),
                    KUnary::Abs => v.b.ins().fabs(x),
                    KUnary::Sqrt => v.b.ins().sqrt(x),
                    KUnary::Recip => {
                        let one = v.c(1.0);
                        v.div(one, x)
                    }
                    KUnary::Exp => v.exp(x),
                    KUnary::Log => v.log(x),
                    KUnary::Tanh => v.tanh(x),
                    KUnary::Sigmoid => v.sigmoid(x),
                    KUnary::Erf => v.erf(x),
                    KUnary::Floor => v.b.ins().floor(x),
                    KUnary::Ceil => v.b.ins().ceil(x),
                }
            }
            Expr::Binary(op, a, b) => {
                let (x, y) = (self.get(a, local), self.get(b, local));
                let (a_c, b_c) = (const_not_nan(&self.p.k, a), const_not_nan(&self.p.k, b));
                let mut v = self.vx();
                match op {
                    KBinary::Add => v.add(x, y),
                    KBinary::Sub => v.sub(x, y),
                    KBinary::Mul => v.mul(x, y),
                    KBinary::Div => v.div(x, y),
                    KBinary::Max if a_c && !b_c => v.max(y, x, true),
                    KBinary::Max => v.max(x, y, b_c),
                    KBinary::Min if a_c && !b_c => v.min(y, x, true),
                    KBinary::Min => v.min(x, y, b_c),
                }
            }
            Expr::Select {
                cmp,
                a,
                b,
                on_true,
                on_false,
            } => {
                let (x, y) = (self.get(a, local), self.get(b, local));
                let (t, f) = (self.get(on_true, local), self.get(on_false, local));
                let cc = match cmp {
                    KCmp::Lt => FloatCC::LessThan,
                    KCmp::Le => FloatCC::LessThanOrEqual,
                    KCmp::Gt => FloatCC::GreaterThan,
                    KCmp::Ge => FloatCC::GreaterThanOrEqual,
                    KCmp::Eq => FloatCC::Equal,
                };
                let mut v = self.vx();
                let m = v.mask(cc, x, y);
                v.select(m, t, f)
            }
        }
    }

    fn fold(&mut self, kind: KReduce, acc: Value, x: Value) -> Value {
        let mut v = self.vx();
        match kind {
            KReduce::Sum => v.add(acc, x),
            KReduce::Max => v.max(acc, x, false),
            KReduce::Min => v.min(acc, x, false),
        }
    }

    fn stmt(&mut self, n: usize, s: &Stmt) {
        let (root, dst, kind) = match s {
            Stmt::Reduce { kind, expr } => (*expr, None, Some(*kind)),
            Stmt::Store { dst, expr } => (*expr, Some(dst), None),
        };
        self.prepare(root, Level::Outer);
        self.prepare_rows(root, dst);
        let simd = self.p.simd[n];
        let unroll = match (kind, is_heavy(&self.p.k, root)) {
            (Some(_), _) => UNROLL_REDUCE,
            (None, false) => UNROLL_LIGHT,
            (None, true) => UNROLL_HEAVY,
        };
        let init = kind.map(|k| match k {
            KReduce::Sum => 0.0,
            KReduce::Max => f32::NEG_INFINITY,
            KReduce::Min => f32::INFINITY,
        });
        let i = self.b.declare_var(I64);
        self.b.def_var(i, self.ib);
        let accs: Vec<Variable> = match init {
            Some(x) => (0..unroll)
                .map(|_| {
                    let var = self.b.declare_var(F32X4);
                    let c = self.vx().c(x);
                    self.b.def_var(var, c);
                    var
                })
                .collect(),
            None => Vec::new(),
        };
        // One element (or vector) of the statement at `at`.
        let step = |g: &mut Self, at: At, acc: Option<Variable>| {
            if let At::Inner { i, lane, .. } = at {
                g.anchor_at(i, lane);
            }
            let v = if g.p.level[root as usize] == Level::Inner {
                g.inner_value(root, at)
            } else {
                g.get(root, &HashMap::new())
            };
            let At::Inner { i, lane, simd } = at else {
                unreachable!()
            };
            match (dst, kind, acc) {
                (Some(d), _, _) => {
                    let (p, off) = g.addr(d, i, lane);
                    let flags = MemFlagsData::new().with_notrap();
                    if simd {
                        g.b.ins().store(flags, v, p, off);
                    } else {
                        let x = g.b.ins().extractlane(v, 0);
                        g.b.ins().store(flags, x, p, off);
                    }
                }
                (None, Some(kind), Some(acc)) => {
                    let a = g.b.use_var(acc);
                    let a = g.fold(kind, a, v);
                    g.b.def_var(acc, a);
                }
                _ => unreachable!("a reduction folds into an accumulator"),
            }
        };
        if simd {
            for width in [unroll, 1] {
                if width == 1 && unroll == 1 {
                    break;
                }
                let elems = 4 * width as i64;
                let (header, body, next) = (
                    self.b.create_block(),
                    self.b.create_block(),
                    self.b.create_block(),
                );
                self.b.ins().jump(header, &[]);
                self.b.switch_to_block(header);
                let iv = self.b.use_var(i);
                let end = self.b.ins().iadd_imm_s(iv, elems);
                let fits = self
                    .b
                    .ins()
                    .icmp(IntCC::UnsignedLessThanOrEqual, end, self.ie);
                self.b.ins().brif(fits, body, &[], next, &[]);
                self.b.switch_to_block(body);
                for u in 0..width {
                    let at = At::Inner {
                        i: iv,
                        lane: 4 * u as i64,
                        simd: true,
                    };
                    step(self, at, accs.get(u).copied());
                }
                let iv2 = self.b.ins().iadd_imm_s(iv, elems);
                self.b.def_var(i, iv2);
                self.b.ins().jump(header, &[]);
                self.b.switch_to_block(next);
            }
        }
        // Reductions: combine the accumulators and reduce across lanes; the
        // scalar loop folds into lane 0 (all lanes equal).
        let tail_acc = kind.map(|kind| {
            let mut vals: Vec<Value> = accs.iter().map(|&a| self.b.use_var(a)).collect();
            let all = if simd {
                while vals.len() > 1 {
                    let pairs: Vec<Value> = vals
                        .chunks(2)
                        .map(|c| {
                            if c.len() == 2 {
                                self.fold(kind, c[0], c[1])
                            } else {
                                c[0]
                            }
                        })
                        .collect();
                    vals = pairs;
                }
                let h = vals[0];
                let sw = self.vx().permute(h, [2, 3, 0, 1]);
                let h = self.fold(kind, h, sw);
                let sw = self.vx().permute(h, [1, 0, 3, 2]);
                let h = self.fold(kind, h, sw);
                self.vx().broadcast0(h)
            } else {
                vals[0]
            };
            self.b.def_var(accs[0], all);
            accs[0]
        });
        let (header, body, done) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let iv = self.b.use_var(i);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, iv, self.ie);
        self.b.ins().brif(more, body, &[], done, &[]);
        self.b.switch_to_block(body);
        let at = At::Inner {
            i: iv,
            lane: 0,
            simd: false,
        };
        step(self, at, tail_acc);
        let iv2 = self.b.ins().iadd_imm_s(iv, 1);
        self.b.def_var(i, iv2);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(done);
        self.pool.anchor = self.pool.base;
        if let Some(acc) = tail_acc {
            let r = self.b.use_var(acc);
            self.scalars.push(r);
        }
    }
}
