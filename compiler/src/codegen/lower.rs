//! One fusion group (or one node) to one kernel IR program.
//!
//! Expressions are generated backwards from the group's result. Every value
//! is asked for at an affine *index map* from the kernel's iteration index
//! (one coordinate per iteration dim) to the value's own multi-index:
//!
//! - a value from outside the group becomes a `Load` whose strides are the
//!   map composed with the value's row-major layout;
//! - an elementwise op asks its inputs at the same map, with broadcast dims
//!   zeroed (numpy broadcasting is a map that drops coordinates);
//! - transpose permutes the map's rows, slice offsets and scales them,
//!   expand zeroes them: injective ops fuse as index arithmetic;
//! - reshape-like ops (reshape, flatten, squeeze, unsqueeze) only keep the
//!   *flat* index, so below them values are asked for at a flat map, which
//!   elementwise ops over same-sized inputs pass through unchanged.
//!
//! When the accesses are known, trailing iteration dims that every access
//! walks contiguously merge into the kernel's inner loop; the rest become
//! outer dims. Anything outside these rules (an op without an expression, a
//! non-f32 value, a broadcast under a reshape) is a [`Reject`], and the
//! caller runs those nodes another way.

use std::collections::{HashMap, HashSet};

use kiln_ir::kernel::{
    Access, BufDecl, Expr, ExprId, KBinary, KCmp, KReduce, KUnary, Kernel, Role, Stmt,
};
use kiln_ir::ops::elementwise::{BinaryKind, UnaryKind};
use kiln_ir::ops::elementwise_more::VariadicKind;
use kiln_ir::{DType, Graph, NodeId, Op, ValueDef, ValueId, Weights};

/// Why a group did not lower (kept for `tracing` and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject(pub String);

type R<T> = Result<T, Reject>;

fn reject<T>(msg: impl Into<String>) -> R<T> {
    Err(Reject(msg.into()))
}

/// Affine map from the iteration index to a value's multi-index: coordinate
/// `k` is `off[k] + Σ_d coef[k][d]·it[d]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Map {
    /// Iteration rank (the length of every row).
    it: usize,
    off: Vec<i64>,
    coef: Vec<Vec<i64>>,
}

impl Map {
    /// The identity over `rank` iteration dims.
    pub(crate) fn identity(rank: usize) -> Map {
        Map {
            it: rank,
            off: vec![0; rank],
            coef: (0..rank)
                .map(|k| (0..rank).map(|d| i64::from(k == d)).collect())
                .collect(),
        }
    }
    /// Coordinate `k` of the value is iteration dim `dims[k]` (`None`: 0).
    pub(crate) fn select(dims: &[Option<usize>], it_rank: usize) -> Map {
        Map {
            it: it_rank,
            off: vec![0; dims.len()],
            coef: dims
                .iter()
                .map(|d| (0..it_rank).map(|j| i64::from(*d == Some(j))).collect())
                .collect(),
        }
    }
    fn zero_row(&self) -> Vec<i64> {
        vec![0; self.it]
    }
}

/// Affine map from the iteration index to a flat (row-major) element index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Flat {
    off: i64,
    coef: Vec<i64>,
}

fn row_major(shape: &[usize]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1] as i64;
    }
    s
}

/// Builds one kernel. See the module docs.
pub(crate) struct Builder<'g> {
    g: &'g Graph,
    w: &'g Weights,
    members: HashSet<NodeId>,
    /// The iteration space, before merging.
    it: Vec<usize>,
    /// Kernel buffer `k` is bound to `args[k]` (`None`: the anchor's result).
    args: Vec<Option<ValueId>>,
    roles: Vec<Role>,
    exprs: Vec<Expr>,
    dedup: HashMap<Expr, ExprId>,
    memo: HashMap<(ValueId, Map), ExprId>,
    memo_flat: HashMap<(ValueId, Flat), ExprId>,
    stmts: Vec<Stmt>,
    reductions: u32,
    /// The GEMM/conv result an epilogue reads (buffer arg `None`).
    anchor: Option<ValueId>,
}

impl<'g> Builder<'g> {
    pub(crate) fn new(g: &'g Graph, w: &'g Weights, members: &[NodeId], it: Vec<usize>) -> Self {
        Builder {
            g,
            w,
            members: members.iter().copied().collect(),
            it,
            args: Vec::new(),
            roles: Vec::new(),
            exprs: Vec::new(),
            dedup: HashMap::new(),
            memo: HashMap::new(),
            memo_flat: HashMap::new(),
            stmts: Vec::new(),
            reductions: 0,
            anchor: None,
        }
    }

    pub(crate) fn shape(&self, v: ValueId) -> R<Vec<usize>> {
        let ty = &self.g.value(v).ty;
        if ty.dtype != DType::F32 {
            return reject(format!("{} is {}, kernels are f32", self.name(v), ty.dtype));
        }
        ty.shape
            .concrete()
            .ok_or_else(|| Reject(format!("{} has unbound dims", self.name(v))))
    }

    fn name(&self, v: ValueId) -> String {
        match &self.g.value(v).name {
            Some(n) => format!("%{n}"),
            None => format!("%{}", v.index()),
        }
    }

    fn numel(&self, v: ValueId) -> R<usize> {
        Ok(self.shape(v)?.iter().product())
    }

    // ---- expressions -------------------------------------------------

    fn push(&mut self, e: Expr) -> ExprId {
        if let Some(&id) = self.dedup.get(&e) {
            return id;
        }
        let id = self.exprs.len() as ExprId;
        self.exprs.push(e.clone());
        self.dedup.insert(e, id);
        id
    }
    pub(crate) fn c(&mut self, x: f32) -> ExprId {
        self.push(Expr::Const(x.to_bits()))
    }
    pub(crate) fn un(&mut self, k: KUnary, a: ExprId) -> ExprId {
        self.push(Expr::Unary(k, a))
    }
    pub(crate) fn bin(&mut self, k: KBinary, a: ExprId, b: ExprId) -> ExprId {
        self.push(Expr::Binary(k, a, b))
    }
    fn sel(&mut self, cmp: KCmp, a: ExprId, b: ExprId, t: ExprId, f: ExprId) -> ExprId {
        self.push(Expr::Select {
            cmp,
            a,
            b,
            on_true: t,
            on_false: f,
        })
    }
    pub(crate) fn scalar(&mut self) -> ExprId {
        // Reductions are numbered in statement order.
        self.push(Expr::Scalar(self.reductions - 1))
    }
    pub(crate) fn reduce(&mut self, kind: KReduce, expr: ExprId) -> ExprId {
        self.stmts.push(Stmt::Reduce { kind, expr });
        self.reductions += 1;
        self.scalar()
    }

    fn buf(&mut self, arg: Option<ValueId>, role: Role) -> u32 {
        if role == Role::Input {
            if let Some(k) = self
                .args
                .iter()
                .zip(&self.roles)
                .position(|(a, r)| *a == arg && *r == Role::Input)
            {
                return k as u32;
            }
        }
        self.args.push(arg);
        self.roles.push(role);
        (self.args.len() - 1) as u32
    }

    fn flat_of(&self, shape: &[usize], m: &Map) -> Flat {
        let rs = row_major(shape);
        let mut coef = m.zero_row();
        let mut off = 0;
        for (k, r) in rs.iter().enumerate() {
            off += r * m.off[k];
            for (c, x) in coef.iter_mut().zip(&m.coef[k]) {
                *c += r * x;
            }
        }
        Flat { off, coef }
    }

    fn load(&mut self, arg: Option<ValueId>, f: Flat) -> ExprId {
        let buf = self.buf(arg, Role::Input);
        self.push(Expr::Load(Access {
            buf,
            offset: f.off,
            outer_strides: f.coef,
            inner_stride: 0,
        }))
    }

    /// The anchor's result (a GEMM/conv output tile) at `m`.
    pub(crate) fn bind_anchor(&mut self, v: ValueId, m: &Map) -> R<()> {
        let f = self.flat_of(&self.shape(v)?, m);
        self.anchor = Some(v);
        let e = self.load(None, f);
        self.memo.insert((v, m.clone()), e);
        Ok(())
    }

    /// Say that `v` at `m` is `e` (a reduction's result).
    pub(crate) fn bind(&mut self, v: ValueId, m: &Map, e: ExprId) {
        self.memo.insert((v, m.clone()), e);
    }

    fn internal(&self, v: ValueId) -> Option<NodeId> {
        match self.g.value(v).def {
            ValueDef::Node { node, .. } if self.members.contains(&node) => Some(node),
            _ => None,
        }
    }

    /// Map for input `u` of an op whose output (shape `out`) is at `m`,
    /// under numpy broadcasting.
    pub(crate) fn bcast(&self, u: ValueId, out: &[usize], m: &Map) -> R<Map> {
        let s = self.shape(u)?;
        if s.len() > out.len() {
            return reject("broadcast input has a higher rank than the output");
        }
        let lead = out.len() - s.len();
        let mut r = Map {
            it: m.it,
            off: Vec::with_capacity(s.len()),
            coef: Vec::with_capacity(s.len()),
        };
        for (j, &n) in s.iter().enumerate() {
            if n == 1 && out[lead + j] != 1 {
                r.off.push(0);
                r.coef.push(m.zero_row());
            } else {
                r.off.push(m.off[lead + j]);
                r.coef.push(m.coef[lead + j].clone());
            }
        }
        Ok(r)
    }

    fn const_scalar(&self, v: ValueId) -> Option<f64> {
        let val = self.g.value(v);
        let t = match val.def {
            ValueDef::Param => self.w.get(val.name.as_deref()?)?,
            ValueDef::Node { node, .. } if self.g.contains_node(node) => {
                match &self.g.node(node).op {
                    Op::Constant(c) => &c.value,
                    _ => return None,
                }
            }
            _ => return None,
        };
        (t.len() == 1).then(|| t.to_f64().iter().next().copied())?
    }

    /// `v` at iteration map `m`.
    pub(crate) fn gen(&mut self, v: ValueId, m: &Map) -> R<ExprId> {
        if let Some(&e) = self.memo.get(&(v, m.clone())) {
            return Ok(e);
        }
        let shape = self.shape(v)?;
        let e = match self.internal(v) {
            None => {
                let f = self.flat_of(&shape, m);
                self.load(Some(v), f)
            }
            Some(n) => self.node_expr(n, &shape, m)?,
        };
        self.memo.insert((v, m.clone()), e);
        Ok(e)
    }

    fn node_expr(&mut self, n: NodeId, out: &[usize], m: &Map) -> R<ExprId> {
        let node = self.g.node(n);
        if node.outputs.len() != 1 {
            return reject(format!("{} has several results", node.op.spelling()));
        }
        let ins: Vec<ValueId> = node.inputs.to_vec();
        let op = node.op.clone();
        // Elementwise ops: inputs at the broadcast map, then the expression.
        let mut args = Vec::with_capacity(ins.len());
        // `where(cmp(a, b), x, y)` and `cast(cmp(a, b))` with the f32
        // comparison in the group: a select (gradient rules build these).
        if let Op::Where(_) = &op {
            if let Some((k, a, b)) = self.compare(ins[0], out, m)? {
                let xm = self.bcast(ins[1], out, m)?;
                let x = self.gen(ins[1], &xm)?;
                let ym = self.bcast(ins[2], out, m)?;
                let y = self.gen(ins[2], &ym)?;
                return Ok(self.sel(k, a, b, x, y));
            }
        }
        if let Op::Cast(c) = &op {
            if c.to == DType::F32 {
                if let Some((k, a, b)) = self.compare(ins[0], out, m)? {
                    let (one, zero) = (self.c(1.0), self.c(0.0));
                    return Ok(self.sel(k, a, b, one, zero));
                }
            }
        }
        let elementwise = matches!(
            op,
            Op::Unary(_) | Op::Binary(_) | Op::Variadic(_) | Op::Clip(_) | Op::BatchNorm(_)
        ) || matches!(&op, Op::Dropout(_) | Op::Cast(_));
        if elementwise {
            if let Op::Cast(c) = &op {
                if c.to != DType::F32 {
                    return reject("cast to another dtype");
                }
            }
            if let Op::Binary(b) = &op {
                if b.kind == BinaryKind::Pow {
                    return self.pow(&ins, out, m);
                }
            }
            if let Op::BatchNorm(b) = &op {
                return self.batch_norm(&ins, b.epsilon.0, out, m);
            }
            for &u in &ins {
                let um = self.bcast(u, out, m)?;
                args.push(self.gen(u, &um)?);
            }
            return self.elementwise(&op, &args);
        }
        match &op {
            Op::Transpose(t) => {
                let rank = out.len();
                let perm: Vec<usize> = if t.perm.is_empty() {
                    (0..rank).rev().collect()
                } else {
                    t.perm.iter().map(|&p| p as usize).collect()
                };
                if perm.len() != rank || perm.iter().any(|&p| p >= rank) {
                    return reject("transpose perm does not match the rank");
                }
                let mut im = Map {
                    it: m.it,
                    off: vec![0; rank],
                    coef: vec![m.zero_row(); rank],
                };
                for (k, &p) in perm.iter().enumerate() {
                    im.off[p] = m.off[k];
                    im.coef[p] = m.coef[k].clone();
                }
                self.gen(ins[0], &im)
            }
            Op::Expand(_) => {
                let im = self.bcast(ins[0], out, m)?;
                self.gen(ins[0], &im)
            }
            Op::Slice(s) => {
                let in_shape = self.shape(ins[0])?;
                let plan = s
                    .starts_and_steps(&in_shape)
                    .map_err(|e| Reject(e.to_string()))?;
                let mut im = m.clone();
                for (ax, start, step) in plan {
                    im.off[ax] = start + step * m.off[ax];
                    for c in im.coef[ax].iter_mut() {
                        *c *= step;
                    }
                }
                self.gen(ins[0], &im)
            }
            Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) => {
                let f = self.flat_of(out, m);
                self.gen_flat(ins[0], &f)
            }
            other => reject(format!("no kernel expression for {}", other.spelling())),
        }
    }

    /// `v` at flat map `f`: only through ops that keep the flat index.
    fn gen_flat(&mut self, v: ValueId, f: &Flat) -> R<ExprId> {
        if let Some(&e) = self.memo_flat.get(&(v, f.clone())) {
            return Ok(e);
        }
        let numel = self.numel(v)?;
        let e = match self.internal(v) {
            None => self.load(Some(v), f.clone()),
            Some(n) => {
                let node = self.g.node(n);
                let op = node.op.clone();
                let ins: Vec<ValueId> = node.inputs.to_vec();
                match &op {
                    Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) => {
                        self.gen_flat(ins[0], f)?
                    }
                    Op::Unary(_)
                    | Op::Binary(_)
                    | Op::Variadic(_)
                    | Op::Clip(_)
                    | Op::Dropout(_) => {
                        if node.outputs.len() != 1 {
                            return reject("several results");
                        }
                        if matches!(&op, Op::Binary(b) if b.kind == BinaryKind::Pow) {
                            return reject("pow under a reshape");
                        }
                        let mut args = Vec::new();
                        for &u in &ins {
                            let un = self.numel(u)?;
                            let uf = if un == numel {
                                f.clone()
                            } else if un == 1 {
                                Flat {
                                    off: 0,
                                    coef: vec![0; f.coef.len()],
                                }
                            } else {
                                return reject("broadcast under a reshape");
                            };
                            args.push(self.gen_flat(u, &uf)?);
                        }
                        self.elementwise(&op, &args)?
                    }
                    other => return reject(format!("{} under a reshape", other.spelling())),
                }
            }
        };
        self.memo_flat.insert((v, f.clone()), e);
        Ok(e)
    }

    fn pow(&mut self, ins: &[ValueId], out: &[usize], m: &Map) -> R<ExprId> {
        let Some(p) = self.const_scalar(ins[1]) else {
            return reject("pow with a non-constant exponent");
        };
        let xm = self.bcast(ins[0], out, m)?;
        let x = self.gen(ins[0], &xm)?;
        Ok(match p {
            1.0 => x,
            2.0 => self.bin(KBinary::Mul, x, x),
            3.0 => {
                let sq = self.bin(KBinary::Mul, x, x);
                self.bin(KBinary::Mul, sq, x)
            }
            0.5 => self.un(KUnary::Sqrt, x),
            -1.0 => self.un(KUnary::Recip, x),
            _ => return reject(format!("pow with exponent {p}")),
        })
    }

    fn batch_norm(&mut self, ins: &[ValueId], eps: f64, out: &[usize], m: &Map) -> R<ExprId> {
        if ins.len() != 5 || out.len() < 2 {
            return reject("batch_norm form");
        }
        let x = self.gen(ins[0], m)?;
        // Per-channel parameters: coordinate 1 of the output.
        let ch = Map {
            it: m.it,
            off: vec![m.off[1]],
            coef: vec![m.coef[1].clone()],
        };
        let mut p = Vec::new();
        for &u in &ins[1..] {
            if self.shape(u)? != [out[1]] {
                return reject("batch_norm parameters are not per channel");
            }
            p.push(self.gen(u, &ch)?);
        }
        let (scale, bias, mean, var) = (p[0], p[1], p[2], p[3]);
        let e = self.c(eps as f32);
        let ve = self.bin(KBinary::Add, var, e);
        let sd = self.un(KUnary::Sqrt, ve);
        let k = self.bin(KBinary::Div, scale, sd);
        let d = self.bin(KBinary::Sub, x, mean);
        let y = self.bin(KBinary::Mul, d, k);
        Ok(self.bin(KBinary::Add, y, bias))
    }

    /// The operands and comparison of a bool value `v` (at map `m` of an
    /// output of shape `out`) computed in the group by an f32 `lt`/`le`/
    /// `gt`/`ge`/`eq`; `None` for anything else.
    fn compare(&mut self, v: ValueId, out: &[usize], m: &Map) -> R<Option<(KCmp, ExprId, ExprId)>> {
        let Some(n) = self.internal(v) else {
            return Ok(None);
        };
        let node = self.g.node(n);
        let Op::Binary(bin) = &node.op else {
            return Ok(None);
        };
        let k = match bin.kind {
            BinaryKind::Lt => KCmp::Lt,
            BinaryKind::Le => KCmp::Le,
            BinaryKind::Gt => KCmp::Gt,
            BinaryKind::Ge => KCmp::Ge,
            BinaryKind::Eq => KCmp::Eq,
            _ => return Ok(None),
        };
        let (l, r) = (node.inputs[0], node.inputs[1]);
        let Some(cs) = self.g.value(v).ty.shape.concrete() else {
            return Ok(None);
        };
        if self.g.value(l).ty.dtype != DType::F32 || self.g.value(r).ty.dtype != DType::F32 {
            return Ok(None);
        }
        // The comparison's own broadcast: bool shape `cs` inside `out`.
        let s = cs.len();
        if s > out.len() {
            return Ok(None);
        }
        let lead = out.len() - s;
        let mut cm = Map {
            it: m.it,
            off: Vec::with_capacity(s),
            coef: Vec::with_capacity(s),
        };
        for (j, &d) in cs.iter().enumerate() {
            if d == 1 && out[lead + j] != 1 {
                cm.off.push(0);
                cm.coef.push(m.zero_row());
            } else {
                cm.off.push(m.off[lead + j]);
                cm.coef.push(m.coef[lead + j].clone());
            }
        }
        let lm = self.bcast(l, &cs, &cm)?;
        let a = self.gen(l, &lm)?;
        let rm = self.bcast(r, &cs, &cm)?;
        let b = self.gen(r, &rm)?;
        Ok(Some((k, a, b)))
    }

    fn elementwise(&mut self, op: &Op, a: &[ExprId]) -> R<ExprId> {
        match op {
            Op::Unary(u) => self.unary(
                u.kind,
                u.alpha.0 as f32,
                u.beta.0 as f32,
                u.approximate,
                a[0],
            ),
            Op::Binary(b) => {
                let k = match b.kind {
                    BinaryKind::Add => KBinary::Add,
                    BinaryKind::Sub => KBinary::Sub,
                    BinaryKind::Mul => KBinary::Mul,
                    BinaryKind::Div => KBinary::Div,
                    BinaryKind::Max => KBinary::Max,
                    BinaryKind::Min => KBinary::Min,
                    BinaryKind::PRelu => {
                        let z = self.c(0.0);
                        let sx = self.bin(KBinary::Mul, a[1], a[0]);
                        return Ok(self.sel(KCmp::Lt, a[0], z, sx, a[0]));
                    }
                    other => return reject(format!("binary {other:?}")),
                };
                Ok(self.bin(k, a[0], a[1]))
            }
            Op::Variadic(v) => {
                let k = match v.kind {
                    VariadicKind::Sum | VariadicKind::Mean => KBinary::Add,
                    VariadicKind::Maximum => KBinary::Max,
                    VariadicKind::Minimum => KBinary::Min,
                };
                let mut acc = a[0];
                for &x in &a[1..] {
                    acc = self.bin(k, acc, x);
                }
                if v.kind == VariadicKind::Mean {
                    let n = self.c(a.len() as f32);
                    acc = self.bin(KBinary::Div, acc, n);
                }
                Ok(acc)
            }
            Op::Clip(_) => {
                let mut x = a[0];
                if let Some(&lo) = a.get(1) {
                    x = self.bin(KBinary::Max, x, lo);
                }
                if let Some(&hi) = a.get(2) {
                    x = self.bin(KBinary::Min, x, hi);
                }
                Ok(x)
            }
            Op::Dropout(_) | Op::Cast(_) => Ok(a[0]),
            other => reject(format!("no kernel expression for {}", other.spelling())),
        }
    }

    fn unary(
        &mut self,
        kind: UnaryKind,
        alpha: f32,
        beta: f32,
        approximate: Option<&str>,
        x: ExprId,
    ) -> R<ExprId> {
        use KBinary::{Add, Div, Max, Min, Mul, Sub};
        let direct = match kind {
            UnaryKind::Neg => Some(KUnary::Neg),
            UnaryKind::Abs => Some(KUnary::Abs),
            UnaryKind::Exp => Some(KUnary::Exp),
            UnaryKind::Log => Some(KUnary::Log),
            UnaryKind::Sqrt => Some(KUnary::Sqrt),
            UnaryKind::Reciprocal => Some(KUnary::Recip),
            UnaryKind::Tanh => Some(KUnary::Tanh),
            UnaryKind::Sigmoid => Some(KUnary::Sigmoid),
            UnaryKind::Erf => Some(KUnary::Erf),
            UnaryKind::Floor => Some(KUnary::Floor),
            UnaryKind::Ceil => Some(KUnary::Ceil),
            _ => None,
        };
        if let Some(k) = direct {
            return Ok(self.un(k, x));
        }
        let zero = self.c(0.0);
        let one = self.c(1.0);
        Ok(match kind {
            UnaryKind::Rsqrt => {
                let s = self.un(KUnary::Sqrt, x);
                self.un(KUnary::Recip, s)
            }
            UnaryKind::Relu => self.bin(Max, x, zero),
            UnaryKind::LeakyRelu => {
                let a = self.c(alpha);
                let ax = self.bin(Mul, x, a);
                self.sel(KCmp::Lt, x, zero, ax, x)
            }
            UnaryKind::Elu | UnaryKind::Selu => {
                let ex = self.un(KUnary::Exp, x);
                let em1 = self.bin(Sub, ex, one);
                let a = self.c(alpha);
                let neg = self.bin(Mul, a, em1);
                let y = self.sel(KCmp::Gt, x, zero, x, neg);
                if kind == UnaryKind::Selu {
                    let gm = self.c(beta);
                    self.bin(Mul, gm, y)
                } else {
                    y
                }
            }
            UnaryKind::Celu => {
                let a = self.c(alpha);
                let xa = self.bin(Div, x, a);
                let ex = self.un(KUnary::Exp, xa);
                let em1 = self.bin(Sub, ex, one);
                let neg = self.bin(Mul, a, em1);
                let lo = self.bin(Min, neg, zero);
                let hi = self.bin(Max, x, zero);
                self.bin(Add, hi, lo)
            }
            UnaryKind::Gelu => {
                let half = self.c(0.5);
                let hx = self.bin(Mul, half, x);
                let inner = if approximate == Some("tanh") {
                    let k = self.c((2.0f64 / std::f64::consts::PI).sqrt() as f32);
                    let c = self.c(0.044715);
                    let x2 = self.bin(Mul, x, x);
                    let x3 = self.bin(Mul, x2, x);
                    let cx3 = self.bin(Mul, c, x3);
                    let s = self.bin(Add, x, cx3);
                    let ks = self.bin(Mul, k, s);
                    self.un(KUnary::Tanh, ks)
                } else {
                    let r = self.c(std::f32::consts::FRAC_1_SQRT_2);
                    let xr = self.bin(Mul, x, r);
                    self.un(KUnary::Erf, xr)
                };
                let one_p = self.bin(Add, one, inner);
                self.bin(Mul, hx, one_p)
            }
            UnaryKind::Softplus | UnaryKind::Mish => {
                // max(x, 0) + log(1 + exp(-|x|)): no overflow.
                let ax = self.un(KUnary::Abs, x);
                let nax = self.un(KUnary::Neg, ax);
                let e = self.un(KUnary::Exp, nax);
                let l = self.bin(Add, one, e);
                let lg = self.un(KUnary::Log, l);
                let mx = self.bin(Max, x, zero);
                let sp = self.bin(Add, mx, lg);
                if kind == UnaryKind::Mish {
                    let t = self.un(KUnary::Tanh, sp);
                    self.bin(Mul, x, t)
                } else {
                    sp
                }
            }
            UnaryKind::HardSigmoid => {
                let a = self.c(alpha);
                let b = self.c(beta);
                let ax = self.bin(Mul, a, x);
                let y = self.bin(Add, ax, b);
                let y = self.bin(Min, y, one);
                self.bin(Max, y, zero)
            }
            UnaryKind::HardSwish => {
                let s = self.c(1.0 / 6.0);
                let h = self.c(0.5);
                let xs = self.bin(Mul, x, s);
                let y = self.bin(Add, xs, h);
                let y = self.bin(Min, y, one);
                let y = self.bin(Max, y, zero);
                self.bin(Mul, x, y)
            }
            UnaryKind::Softsign => {
                let ax = self.un(KUnary::Abs, x);
                let d = self.bin(Add, one, ax);
                self.bin(Div, x, d)
            }
            UnaryKind::ThresholdedRelu => {
                let a = self.c(alpha);
                self.sel(KCmp::Gt, x, a, x, zero)
            }
            other => return reject(format!("no kernel expression for {}", other.spelling())),
        })
    }

    // ---- statements and the kernel -----------------------------------

    /// Store `e` to `v`, which is at map `m`.
    pub(crate) fn store(&mut self, v: ValueId, m: &Map, e: ExprId) -> R<()> {
        let f = self.flat_of(&self.shape(v)?, m);
        let buf = self.buf(Some(v), Role::Output);
        self.stmts.push(Stmt::Store {
            dst: Access {
                buf,
                offset: f.off,
                outer_strides: f.coef,
                inner_stride: 0,
            },
            expr: e,
        });
        Ok(())
    }

    /// Drop expressions no statement reads (helpers such as the constants
    /// `unary` prepares), renumbering the rest in order.
    fn prune(&mut self) {
        let n = self.exprs.len();
        let mut live = vec![false; n];
        let mut stack: Vec<ExprId> = self
            .stmts
            .iter()
            .map(|s| match s {
                Stmt::Reduce { expr, .. } | Stmt::Store { expr, .. } => *expr,
            })
            .collect();
        while let Some(e) = stack.pop() {
            if std::mem::replace(&mut live[e as usize], true) {
                continue;
            }
            match &self.exprs[e as usize] {
                Expr::Unary(_, a) => stack.push(*a),
                Expr::Binary(_, a, b) => stack.extend([*a, *b]),
                Expr::Select {
                    a,
                    b,
                    on_true,
                    on_false,
                    ..
                } => stack.extend([*a, *b, *on_true, *on_false]),
                Expr::Load(_) | Expr::Const(_) | Expr::Scalar(_) => {}
            }
        }
        let mut new_id = vec![0 as ExprId; n];
        let mut kept = Vec::with_capacity(n);
        for (i, e) in std::mem::take(&mut self.exprs).into_iter().enumerate() {
            if live[i] {
                new_id[i] = kept.len() as ExprId;
                kept.push(e);
            }
        }
        let m = |x: &mut ExprId| *x = new_id[*x as usize];
        for e in kept.iter_mut() {
            match e {
                Expr::Unary(_, a) => m(a),
                Expr::Binary(_, a, b) => {
                    m(a);
                    m(b)
                }
                Expr::Select {
                    a,
                    b,
                    on_true,
                    on_false,
                    ..
                } => {
                    m(a);
                    m(b);
                    m(on_true);
                    m(on_false)
                }
                Expr::Load(_) | Expr::Const(_) | Expr::Scalar(_) => {}
            }
        }
        for s in self.stmts.iter_mut() {
            match s {
                Stmt::Reduce { expr, .. } | Stmt::Store { expr, .. } => m(expr),
            }
        }
        self.exprs = kept;
        self.dedup.clear();
    }

    /// The kernel, with the last `inner_dims` iteration dims (all of them
    /// that merge when `None`) as its inner loop. Returns it with the value
    /// bound to each buffer.
    pub(crate) fn finish(
        mut self,
        name: String,
        inner_dims: Option<usize>,
    ) -> R<(Kernel, Vec<Option<ValueId>>)> {
        if self.it.contains(&0) {
            return reject("empty iteration space");
        }
        self.prune();
        let r = self.it.len();
        // Drop extent-1 dims: their index is always 0.
        let keep: Vec<usize> = (0..r).filter(|&d| self.it[d] != 1).collect();
        let forced = inner_dims.map(|k| keep.iter().filter(|&&d| d >= r - k.min(r)).count());
        let dims: Vec<usize> = keep.iter().map(|&d| self.it[d]).collect();
        let mut accesses: Vec<&mut Access> = Vec::new();
        for e in self.exprs.iter_mut() {
            if let Expr::Load(a) = e {
                accesses.push(a);
            }
        }
        for s in self.stmts.iter_mut() {
            if let Stmt::Store { dst, .. } = s {
                accesses.push(dst);
            }
        }
        for a in accesses.iter_mut() {
            a.outer_strides = keep.iter().map(|&d| a.outer_strides[d]).collect();
        }
        let n = dims.len();
        let mergeable = |d: usize, accs: &[&mut Access]| {
            accs.iter()
                .all(|a| a.outer_strides[d] == a.outer_strides[d + 1] * dims[d + 1] as i64)
        };
        let k = match forced {
            Some(k) => {
                if (n - k..n.saturating_sub(1)).any(|d| !mergeable(d, &accesses)) {
                    return reject("the inner dims do not merge");
                }
                k
            }
            None => {
                let mut k = n.min(1);
                while k < n && mergeable(n - k - 1, &accesses) {
                    k += 1;
                }
                k
            }
        };
        let inner: usize = dims[n - k..].iter().product();
        for a in accesses.iter_mut() {
            a.inner_stride = if k == 0 { 0 } else { a.outer_strides[n - 1] };
            a.outer_strides.truncate(n - k);
        }
        let bufs = self
            .args
            .iter()
            .zip(&self.roles)
            .map(|(a, &role)| {
                let v = a
                    .or(self.anchor)
                    .ok_or_else(|| Reject("no anchor bound".into()))?;
                let len = self.numel(v)?;
                Ok(BufDecl { role, len })
            })
            .collect::<R<Vec<_>>>()?;
        let kernel = Kernel {
            name,
            bufs,
            outer: dims[..n - k].to_vec(),
            inner,
            exprs: self.exprs,
            stmts: self.stmts,
        };
        Ok((kernel, self.args))
    }
}
