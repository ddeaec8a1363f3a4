//! Kernel IR: the loop-level description of one fused CPU/GPU kernel.
//!
//! The fusion pass (kiln-compiler) turns a group of graph ops into one
//! [`Kernel`]; the Cranelift backend (kiln-runtime) and later the PTX emitter
//! lower it to machine code; the artifact carries it. [`Kernel::eval`] is its
//! reference semantics, which both code generators are tested against.
//!
//! # Shape of a kernel
//!
//! A kernel runs a two-level loop nest: an *outer* index `o` over
//! `outer` (row-major, several dims, parallel: any split of the outer range
//! across threads is valid) and, inside, a sequence of statements, each of
//! which loops an *inner* index `i` over `0..inner`:
//!
//! - [`Stmt::Reduce`] folds an expression over `i` into scalar `#k` (k counts
//!   the reductions of the kernel, in order); later statements of the same
//!   outer iteration can read it with [`Expr::Scalar`];
//! - [`Stmt::Store`] writes an expression to a buffer for every `i`.
//!
//! Elementwise chains are `outer = []`, `inner = n` with one store; a row
//! softmax is `outer = [rows]`, `inner = cols`, with a max reduction, a sum
//! reduction and a store; a matmul epilogue is `outer = [M]`, `inner = N`.
//!
//! Buffers are flat f32 arrays. Every access is affine in the loop indices:
//! `offset + Σ outer_strides[d]·o_d + inner_stride·i`, in elements. Stride 0
//! broadcasts; permuted strides transpose; offsets and steps slice. This is
//! how injective ops fuse into their consumer's index arithmetic.

use std::fmt;

mod codec;
pub use codec::{DecodeError, KERNEL_FORMAT_VERSION};

/// Which side of the kernel a buffer is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Input,
    Output,
}

/// A buffer argument: `len` f32 elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BufDecl {
    pub role: Role,
    pub len: usize,
}

/// An affine access into buffer `buf`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub buf: u32,
    pub offset: i64,
    /// One stride per outer dim.
    pub outer_strides: Vec<i64>,
    pub inner_stride: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KUnary {
    Neg,
    Abs,
    Sqrt,
    Recip,
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Erf,
    Floor,
    Ceil,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KBinary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KCmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// Every unary op, in encoding order.
pub const ALL_UNARY: [KUnary; 11] = [
    KUnary::Neg,
    KUnary::Abs,
    KUnary::Sqrt,
    KUnary::Recip,
    KUnary::Exp,
    KUnary::Log,
    KUnary::Tanh,
    KUnary::Sigmoid,
    KUnary::Erf,
    KUnary::Floor,
    KUnary::Ceil,
];
/// Every binary op, in encoding order.
pub const ALL_BINARY: [KBinary; 6] = [
    KBinary::Add,
    KBinary::Sub,
    KBinary::Mul,
    KBinary::Div,
    KBinary::Max,
    KBinary::Min,
];
/// Every comparison, in encoding order.
pub const ALL_CMP: [KCmp; 5] = [KCmp::Lt, KCmp::Le, KCmp::Gt, KCmp::Ge, KCmp::Eq];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KReduce {
    Sum,
    Max,
    Min,
}

/// Index of an [`Expr`] in [`Kernel::exprs`]; an expression only refers to
/// earlier ones.
pub type ExprId = u32;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// A buffer element at the access for the current `(o, i)`.
    Load(Access),
    /// A constant, as f32 bits (so kernels are `Eq + Hash`).
    Const(u32),
    /// Reduction result `#k` of the current outer iteration.
    Scalar(u32),
    Unary(KUnary, ExprId),
    Binary(KBinary, ExprId, ExprId),
    /// `if a <cmp> b { t } else { f }`.
    Select {
        cmp: KCmp,
        a: ExprId,
        b: ExprId,
        on_true: ExprId,
        on_false: ExprId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Stmt {
    Reduce { kind: KReduce, expr: ExprId },
    Store { dst: Access, expr: ExprId },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub name: String,
    pub bufs: Vec<BufDecl>,
    pub outer: Vec<usize>,
    pub inner: usize,
    pub exprs: Vec<Expr>,
    pub stmts: Vec<Stmt>,
}

/// A kernel that breaks the rules above.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("kernel `{kernel}`: {msg}")]
pub struct KernelError {
    pub kernel: String,
    pub msg: String,
}

impl Kernel {
    /// Total outer iterations.
    pub fn outer_len(&self) -> usize {
        self.outer.iter().product()
    }

    pub fn num_reductions(&self) -> usize {
        self.stmts
            .iter()
            .filter(|s| matches!(s, Stmt::Reduce { .. }))
            .count()
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, KernelError> {
        Err(KernelError {
            kernel: self.name.clone(),
            msg: msg.into(),
        })
    }

    /// Check every reference, and that every access stays inside its buffer
    /// for the whole iteration space (so generated code needs no bounds checks).
    pub fn validate(&self) -> Result<(), KernelError> {
        let total = self
            .outer
            .iter()
            .chain(std::iter::once(&self.inner))
            .try_fold(1usize, |a, &n| a.checked_mul(n));
        if total.is_none() {
            return self.err(format!(
                "iteration space {:?} x {} overflows usize",
                self.outer, self.inner
            ));
        }
        for (id, e) in self.exprs.iter().enumerate() {
            let refs: Vec<ExprId> = match e {
                Expr::Load(a) => {
                    self.check_access(a, false)?;
                    vec![]
                }
                Expr::Const(_) => vec![],
                Expr::Scalar(k) => {
                    if *k as usize >= self.num_reductions() {
                        return self.err(format!("e{id} reads scalar #{k}, which does not exist"));
                    }
                    vec![]
                }
                Expr::Unary(_, a) => vec![*a],
                Expr::Binary(_, a, b) => vec![*a, *b],
                Expr::Select {
                    a,
                    b,
                    on_true,
                    on_false,
                    ..
                } => vec![*a, *b, *on_true, *on_false],
            };
            if let Some(r) = refs.iter().find(|&&r| r as usize >= id) {
                return self.err(format!("e{id} refers to e{r}, which is not earlier"));
            }
        }
        let mut reductions = 0u32;
        for (k, s) in self.stmts.iter().enumerate() {
            let expr = match s {
                Stmt::Reduce { expr, .. } => *expr,
                Stmt::Store { dst, expr } => {
                    self.check_access(dst, true)?;
                    *expr
                }
            };
            if expr as usize >= self.exprs.len() {
                return self.err(format!("statement {k} uses e{expr}, which does not exist"));
            }
            // A statement may only read reductions computed before it.
            // (Expressions form a DAG: visit each once.)
            let mut seen = vec![false; self.exprs.len()];
            let mut stack = vec![expr];
            while let Some(e) = stack.pop() {
                if std::mem::replace(&mut seen[e as usize], true) {
                    continue;
                }
                match &self.exprs[e as usize] {
                    Expr::Scalar(s) if *s >= reductions => {
                        return self.err(format!(
                            "statement {k} reads scalar #{s} before it is computed"
                        ))
                    }
                    Expr::Unary(_, a) => stack.push(*a),
                    Expr::Binary(_, a, b) => stack.extend([*a, *b]),
                    Expr::Select {
                        a,
                        b,
                        on_true,
                        on_false,
                        ..
                    } => stack.extend([*a, *b, *on_true, *on_false]),
                    _ => {}
                }
            }
            if matches!(s, Stmt::Reduce { .. }) {
                reductions += 1;
            }
        }
        Ok(())
    }

    fn check_access(&self, a: &Access, write: bool) -> Result<(), KernelError> {
        let Some(b) = self.bufs.get(a.buf as usize) else {
            return self.err(format!("access to buffer {} of {}", a.buf, self.bufs.len()));
        };
        if write && b.role != Role::Output {
            return self.err(format!("store to input buffer {}", a.buf));
        }
        if a.outer_strides.len() != self.outer.len() {
            return self.err(format!(
                "access to buffer {} has {} outer strides for {} outer dims",
                a.buf,
                a.outer_strides.len(),
                self.outer.len()
            ));
        }
        if self.outer_len() == 0 || self.inner == 0 {
            return Ok(());
        }
        // The extremes of an affine form over a box are at its corners.
        let mut lo = a.offset as i128;
        let mut hi = a.offset as i128;
        let dims = self
            .outer
            .iter()
            .zip(&a.outer_strides)
            .chain(std::iter::once((&self.inner, &a.inner_stride)));
        for (&n, &s) in dims {
            // |span| < 2^127; the sums are checked (a hostile kernel could
            // otherwise overflow i128 with many huge dims).
            let span = (n as i128 - 1) * s as i128;
            let side = if span < 0 { &mut lo } else { &mut hi };
            match side.checked_add(span) {
                Some(v) => *side = v,
                None => return self.err(format!("access to buffer {} overflows", a.buf)),
            }
        }
        if lo < 0 || hi >= b.len as i128 {
            return self.err(format!(
                "access to buffer {} reaches [{lo}, {hi}] outside [0, {})",
                a.buf, b.len
            ));
        }
        Ok(())
    }

    /// Reference semantics, in f32 (what generated code computes, up to the
    /// documented error of its polynomial approximations). `bufs[k]` must have
    /// `self.bufs[k].len` elements.
    pub fn eval(&self, bufs: &mut [Vec<f32>]) -> Result<(), KernelError> {
        self.validate()?;
        if bufs.len() != self.bufs.len() {
            return self.err(format!(
                "{} buffers given, {} declared",
                bufs.len(),
                self.bufs.len()
            ));
        }
        for (k, (b, d)) in bufs.iter().zip(&self.bufs).enumerate() {
            if b.len() != d.len {
                return self.err(format!(
                    "buffer {k} has {} elements, {} declared",
                    b.len(),
                    d.len
                ));
            }
        }
        let mut o_idx = vec![0usize; self.outer.len()];
        let mut vals = vec![0f32; self.exprs.len()];
        let mut scalars = vec![0f32; self.num_reductions()];
        for _ in 0..self.outer_len() {
            let mut k = 0usize;
            for s in &self.stmts {
                match s {
                    Stmt::Reduce { kind, expr } => {
                        let mut acc = match kind {
                            KReduce::Sum => 0.0,
                            KReduce::Max => f32::NEG_INFINITY,
                            KReduce::Min => f32::INFINITY,
                        };
                        for i in 0..self.inner {
                            let v = self.eval_expr(*expr, &o_idx, i, bufs, &scalars, &mut vals);
                            acc = match kind {
                                KReduce::Sum => acc + v,
                                KReduce::Max => max_nan(acc, v),
                                KReduce::Min => min_nan(acc, v),
                            };
                        }
                        scalars[k] = acc;
                        k += 1;
                    }
                    Stmt::Store { dst, expr } => {
                        for i in 0..self.inner {
                            let v = self.eval_expr(*expr, &o_idx, i, bufs, &scalars, &mut vals);
                            let at = offset(dst, &o_idx, i);
                            bufs[dst.buf as usize][at] = v;
                        }
                    }
                }
            }
            // Next outer index, row-major.
            for d in (0..o_idx.len()).rev() {
                o_idx[d] += 1;
                if o_idx[d] < self.outer[d] {
                    break;
                }
                o_idx[d] = 0;
            }
        }
        Ok(())
    }

    fn eval_expr(
        &self,
        root: ExprId,
        o: &[usize],
        i: usize,
        bufs: &[Vec<f32>],
        scalars: &[f32],
        vals: &mut [f32],
    ) -> f32 {
        // Expressions only refer to earlier ones: evaluate the prefix in order.
        for id in 0..=root as usize {
            vals[id] = match &self.exprs[id] {
                Expr::Load(a) => bufs[a.buf as usize][offset(a, o, i)],
                Expr::Const(bits) => f32::from_bits(*bits),
                Expr::Scalar(k) => scalars[*k as usize],
                Expr::Unary(op, a) => unary(*op, vals[*a as usize]),
                Expr::Binary(op, a, b) => binary(*op, vals[*a as usize], vals[*b as usize]),
                Expr::Select {
                    cmp,
                    a,
                    b,
                    on_true,
                    on_false,
                } => {
                    let (x, y) = (vals[*a as usize], vals[*b as usize]);
                    let c = match cmp {
                        KCmp::Lt => x < y,
                        KCmp::Le => x <= y,
                        KCmp::Gt => x > y,
                        KCmp::Ge => x >= y,
                        KCmp::Eq => x == y,
                    };
                    if c {
                        vals[*on_true as usize]
                    } else {
                        vals[*on_false as usize]
                    }
                }
            };
        }
        vals[root as usize]
    }
}

fn offset(a: &Access, o: &[usize], i: usize) -> usize {
    let mut at = a.offset + a.inner_stride * i as i64;
    for (s, &x) in a.outer_strides.iter().zip(o) {
        at += s * x as i64;
    }
    at as usize
}

/// max that propagates NaN, like the graph ops.
fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}
fn min_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.min(b)
    }
}

/// The exact (libm) value of a unary op in f32.
pub fn unary(op: KUnary, x: f32) -> f32 {
    let d = x as f64;
    (match op {
        KUnary::Neg => -d,
        KUnary::Abs => d.abs(),
        KUnary::Sqrt => d.sqrt(),
        KUnary::Recip => 1.0 / d,
        KUnary::Exp => d.exp(),
        KUnary::Log => d.ln(),
        KUnary::Tanh => d.tanh(),
        KUnary::Sigmoid => 1.0 / (1.0 + (-d).exp()),
        KUnary::Erf => crate::ops::elementwise::erf(d),
        KUnary::Floor => d.floor(),
        KUnary::Ceil => d.ceil(),
    }) as f32
}

pub fn binary(op: KBinary, a: f32, b: f32) -> f32 {
    match op {
        KBinary::Add => a + b,
        KBinary::Sub => a - b,
        KBinary::Mul => a * b,
        KBinary::Div => a / b,
        KBinary::Max => max_nan(a, b),
        KBinary::Min => min_nan(a, b),
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}[{}", self.buf, self.offset)?;
        for (d, s) in self.outer_strides.iter().enumerate() {
            if *s != 0 {
                write!(f, " + {s}*o{d}")?;
            }
        }
        if self.inner_stride != 0 {
            write!(f, " + {}*i", self.inner_stride)?;
        }
        f.write_str("]")
    }
}

/// A readable listing, used in `kiln opt --print-after fusion` and snapshots.
impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kernel {} outer {:?} inner {} {{",
            self.name, self.outer, self.inner
        )?;
        for (k, b) in self.bufs.iter().enumerate() {
            let role = match b.role {
                Role::Input => "in",
                Role::Output => "out",
            };
            writeln!(f, "  b{k}: {role} f32[{}]", b.len)?;
        }
        for (k, e) in self.exprs.iter().enumerate() {
            write!(f, "  e{k} = ")?;
            match e {
                Expr::Load(a) => writeln!(f, "load {a}")?,
                Expr::Const(bits) => writeln!(f, "const {:?}", f32::from_bits(*bits))?,
                Expr::Scalar(s) => writeln!(f, "scalar #{s}")?,
                Expr::Unary(op, a) => writeln!(f, "{op:?} e{a}")?,
                Expr::Binary(op, a, b) => writeln!(f, "{op:?} e{a}, e{b}")?,
                Expr::Select {
                    cmp,
                    a,
                    b,
                    on_true,
                    on_false,
                } => writeln!(f, "select {cmp:?} e{a}, e{b} ? e{on_true} : e{on_false}")?,
            }
        }
        let mut k = 0;
        for s in &self.stmts {
            match s {
                Stmt::Reduce { kind, expr } => {
                    writeln!(f, "  #{k} = reduce {kind:?} e{expr}")?;
                    k += 1;
                }
                Stmt::Store { dst, expr } => writeln!(f, "  store {dst} = e{expr}")?,
            }
        }
        f.write_str("}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(buf: u32, offset: i64, outer: Vec<i64>, inner: i64) -> Access {
        Access {
            buf,
            offset,
            outer_strides: outer,
            inner_stride: inner,
        }
    }

    /// Row softmax over a [2, 3] matrix: max, sum of exp(x - max), store.
    fn softmax() -> Kernel {
        let x = || Expr::Load(acc(0, 0, vec![3], 1));
        Kernel {
            name: "softmax".into(),
            bufs: vec![
                BufDecl {
                    role: Role::Input,
                    len: 6,
                },
                BufDecl {
                    role: Role::Output,
                    len: 6,
                },
            ],
            outer: vec![2],
            inner: 3,
            exprs: vec![
                x(),                              // e0
                Expr::Scalar(0),                  // e1 max
                Expr::Binary(KBinary::Sub, 0, 1), // e2
                Expr::Unary(KUnary::Exp, 2),      // e3
                Expr::Scalar(1),                  // e4 sum
                Expr::Binary(KBinary::Div, 3, 4), // e5
            ],
            stmts: vec![
                Stmt::Reduce {
                    kind: KReduce::Max,
                    expr: 0,
                },
                Stmt::Reduce {
                    kind: KReduce::Sum,
                    expr: 3,
                },
                Stmt::Store {
                    dst: acc(1, 0, vec![3], 1),
                    expr: 5,
                },
            ],
        }
    }

    #[test]
    fn softmax_kernel_evaluates() {
        let k = softmax();
        let mut bufs = vec![vec![1.0, 2.0, 3.0, 0.0, 0.0, 0.0], vec![0.0; 6]];
        k.eval(&mut bufs).unwrap();
        let e = [1f32.exp(), 2f32.exp(), 3f32.exp()];
        let s: f32 = e.iter().sum();
        for j in 0..3 {
            assert!((bufs[1][j] - e[j] / s).abs() < 1e-6);
            assert!((bufs[1][3 + j] - 1.0 / 3.0).abs() < 1e-6);
        }
        assert!(k.to_string().contains("#0 = reduce Max e0"));
    }

    #[test]
    fn broadcast_and_transpose_through_strides() {
        // out[o, i] = a[i, o] + bias[i]  (a is [3, 2] read transposed, bias broadcast over o)
        let k = Kernel {
            name: "t".into(),
            bufs: vec![
                BufDecl {
                    role: Role::Input,
                    len: 6,
                },
                BufDecl {
                    role: Role::Input,
                    len: 3,
                },
                BufDecl {
                    role: Role::Output,
                    len: 6,
                },
            ],
            outer: vec![2],
            inner: 3,
            exprs: vec![
                Expr::Load(acc(0, 0, vec![1], 2)),
                Expr::Load(acc(1, 0, vec![0], 1)),
                Expr::Binary(KBinary::Add, 0, 1),
            ],
            stmts: vec![Stmt::Store {
                dst: acc(2, 0, vec![3], 1),
                expr: 2,
            }],
        };
        let mut bufs = vec![
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            vec![10.0, 20.0, 30.0],
            vec![0.0; 6],
        ];
        k.eval(&mut bufs).unwrap();
        assert_eq!(bufs[2], vec![11.0, 23.0, 35.0, 12.0, 24.0, 36.0]);
    }

    #[test]
    fn validate_rejects_bad_kernels() {
        let mut k = softmax();
        k.stmts[2] = Stmt::Store {
            dst: acc(1, 1, vec![3], 1),
            expr: 5,
        };
        assert!(k.validate().unwrap_err().msg.contains("outside [0, 6)"));
        let mut k = softmax();
        k.stmts[2] = Stmt::Store {
            dst: acc(0, 0, vec![3], 1),
            expr: 5,
        };
        assert!(k.validate().unwrap_err().msg.contains("store to input"));
        let mut k = softmax();
        k.stmts.swap(0, 1);
        assert!(k
            .validate()
            .unwrap_err()
            .msg
            .contains("before it is computed"));
        let mut k = softmax();
        k.exprs[2] = Expr::Binary(KBinary::Sub, 0, 4);
        assert!(k.validate().unwrap_err().msg.contains("not earlier"));
        let mut k = softmax();
        k.exprs[0] = Expr::Load(acc(0, 0, vec![3, 1], 1));
        assert!(k
            .validate()
            .unwrap_err()
            .msg
            .contains("2 outer strides for 1 outer dims"));
    }
}
