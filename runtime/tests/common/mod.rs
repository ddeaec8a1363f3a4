//! Kernel builders and comparison helpers shared by the JIT tests.
#![allow(dead_code)]

use kiln_ir::kernel::{
    Access, BufDecl, Expr, ExprId, KBinary, KReduce, KUnary, Kernel, Role, Stmt,
};
use kiln_runtime::jit::{Buf, JitModule};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn acc(buf: u32, offset: i64, outer: Vec<i64>, inner: i64) -> Access {
    Access {
        buf,
        offset,
        outer_strides: outer,
        inner_stride: inner,
    }
}

pub fn input(len: usize) -> BufDecl {
    BufDecl {
        role: Role::Input,
        len,
    }
}

pub fn output(len: usize) -> BufDecl {
    BufDecl {
        role: Role::Output,
        len,
    }
}

pub fn c(v: f32) -> Expr {
    Expr::Const(v.to_bits())
}

/// Builds the expression list of a kernel.
#[derive(Default)]
pub struct Ex(pub Vec<Expr>);

impl Ex {
    pub fn push(&mut self, e: Expr) -> ExprId {
        self.0.push(e);
        (self.0.len() - 1) as ExprId
    }
    pub fn load(&mut self, a: Access) -> ExprId {
        self.push(Expr::Load(a))
    }
    pub fn c(&mut self, v: f32) -> ExprId {
        self.push(c(v))
    }
    pub fn un(&mut self, op: KUnary, a: ExprId) -> ExprId {
        self.push(Expr::Unary(op, a))
    }
    pub fn bin(&mut self, op: KBinary, a: ExprId, b: ExprId) -> ExprId {
        self.push(Expr::Binary(op, a, b))
    }
}

/// `out[i] = x*w + b → relu → *s → tanh` over `n` elements: the benchmark chain.
pub fn chain(n: usize) -> Kernel {
    let mut e = Ex::default();
    let x = e.load(acc(0, 0, vec![], 1));
    let w = e.load(acc(1, 0, vec![], 1));
    let b = e.load(acc(2, 0, vec![], 1));
    let xw = e.bin(KBinary::Mul, x, w);
    let xwb = e.bin(KBinary::Add, xw, b);
    let zero = e.c(0.0);
    let r = e.bin(KBinary::Max, xwb, zero);
    let s = e.c(0.5);
    let rs = e.bin(KBinary::Mul, r, s);
    let t = e.un(KUnary::Tanh, rs);
    Kernel {
        name: "chain".into(),
        bufs: vec![input(n), input(n), input(n), output(n)],
        outer: vec![],
        inner: n,
        exprs: e.0,
        stmts: vec![Stmt::Store {
            dst: acc(3, 0, vec![], 1),
            expr: t,
        }],
    }
}

/// Row softmax of a `[rows, cols]` matrix.
pub fn softmax(rows: usize, cols: usize) -> Kernel {
    let mut e = Ex::default();
    let x = e.load(acc(0, 0, vec![cols as i64], 1));
    let m = e.push(Expr::Scalar(0));
    let d = e.bin(KBinary::Sub, x, m);
    let ex = e.un(KUnary::Exp, d);
    let s = e.push(Expr::Scalar(1));
    let one = e.c(1.0);
    let inv = e.bin(KBinary::Div, one, s);
    let y = e.bin(KBinary::Mul, ex, inv);
    Kernel {
        name: "softmax".into(),
        bufs: vec![input(rows * cols), output(rows * cols)],
        outer: vec![rows],
        inner: cols,
        exprs: e.0,
        stmts: vec![
            Stmt::Reduce {
                kind: KReduce::Max,
                expr: x,
            },
            Stmt::Reduce {
                kind: KReduce::Sum,
                expr: ex,
            },
            Stmt::Store {
                dst: acc(1, 0, vec![cols as i64], 1),
                expr: y,
            },
        ],
    }
}

/// `out[m, n] = relu(acc[m, n] + bias[n])`: a GEMM epilogue.
pub fn bias_relu(m: usize, n: usize) -> Kernel {
    let mut e = Ex::default();
    let a = e.load(acc(0, 0, vec![n as i64], 1));
    let b = e.load(acc(1, 0, vec![0], 1));
    let s = e.bin(KBinary::Add, a, b);
    let zero = e.c(0.0);
    let r = e.bin(KBinary::Max, s, zero);
    Kernel {
        name: "bias_relu".into(),
        bufs: vec![input(m * n), input(n), output(m * n)],
        outer: vec![m],
        inner: n,
        exprs: e.0,
        stmts: vec![Stmt::Store {
            dst: acc(2, 0, vec![n as i64], 1),
            expr: r,
        }],
    }
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Random buffers for `k`: inputs uniform in [lo, hi), outputs filled with a
/// marker so unwritten elements show.
pub fn buffers(k: &Kernel, seed: u64, lo: f32, hi: f32) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    k.bufs
        .iter()
        .map(|b| match b.role {
            Role::Input => (0..b.len).map(|_| r.random_range(lo..hi)).collect(),
            Role::Output => vec![-7.25; b.len],
        })
        .collect()
}

/// Run `k` through the JIT on a copy of `bufs`.
pub fn jit_run(k: &Kernel, bufs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let m = JitModule::compile(std::slice::from_ref(k)).expect("compiles");
    let ck = &m.kernels()[0];
    let mut out = bufs.to_vec();
    let mut args: Vec<Buf> = out
        .iter_mut()
        .zip(&k.bufs)
        .map(|(v, d)| match d.role {
            Role::Input => Buf::In(&v[..]),
            Role::Output => Buf::Out(&mut v[..]),
        })
        .collect();
    ck.run(&mut args).expect("runs");
    out
}

pub fn eval_run(k: &Kernel, bufs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mut out = bufs.to_vec();
    k.eval(&mut out).expect("evaluates");
    out
}

/// Distance in ulps between two floats of the same sign (across 0 counts
/// both sides).
pub fn ulps(a: f32, b: f32) -> u64 {
    let key = |x: f32| {
        let i = x.to_bits() as i32;
        if i < 0 {
            -(i & 0x7fff_ffff) as i64
        } else {
            i as i64
        }
    };
    (key(a) - key(b)).unsigned_abs()
}

/// `got` matches `want` within `max_ulps`, or within `abs`; NaN matches NaN.
pub fn close(got: f32, want: f32, max_ulps: u64, abs: f32) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    got == want || ulps(got, want) <= max_ulps || (got - want).abs() <= abs
}

/// Compare JIT and reference results of every output buffer.
pub fn assert_outputs(k: &Kernel, got: &[Vec<f32>], want: &[Vec<f32>], max_ulps: u64, abs: f32) {
    for (n, d) in k.bufs.iter().enumerate() {
        if d.role != Role::Output {
            continue;
        }
        for (j, (&g, &w)) in got[n].iter().zip(&want[n]).enumerate() {
            assert!(
                close(g, w, max_ulps, abs),
                "kernel {}: buffer {n}[{j}]: jit {g:e} ({:#x}), eval {w:e} ({:#x})\n{k}",
                k.name,
                g.to_bits(),
                w.to_bits()
            );
        }
    }
}
