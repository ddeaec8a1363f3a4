//! What the code generator decides before it emits anything: the outer
//! dims merged, where each expression is computed, which statements get
//! SIMD, and whether threads may split the outer range.

use kiln_ir::kernel::{Access, Expr, ExprId, KUnary, Kernel, Role, Stmt};

/// The loop level an expression varies at; it is computed once per
/// function call, once per outer iteration, or in the inner loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Fn,
    Outer,
    Inner,
}

pub(crate) struct Plan {
    /// The kernel with adjacent contiguous outer dims merged and extent-1
    /// dims dropped: the same linear outer index, fewer counters.
    pub k: Kernel,
    pub level: Vec<Level>,
    /// Per statement: f32x4 body (every access has inner stride 0 or 1).
    pub simd: Vec<bool>,
}

/// Facts the safe wrapper needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts {
    pub has_reduce: bool,
    /// Some load reads an output buffer (so loads cannot be `readonly`, and
    /// ranges cannot be split).
    pub reads_outputs: bool,
    /// Distinct outer indices write disjoint output elements.
    pub outer_disjoint: bool,
    /// Every output element is written at most once in the whole iteration
    /// space (one store per output buffer, injective in `(o, i)`).
    pub inner_disjoint: bool,
}

fn accesses(k: &Kernel) -> Vec<&Access> {
    let loads = k.exprs.iter().filter_map(|e| match e {
        Expr::Load(a) => Some(a),
        _ => None,
    });
    let stores = k.stmts.iter().filter_map(|s| match s {
        Stmt::Store { dst, .. } => Some(dst),
        _ => None,
    });
    loads.chain(stores).collect()
}

fn accesses_mut(k: &mut Kernel) -> Vec<&mut Access> {
    let loads = k.exprs.iter_mut().filter_map(|e| match e {
        Expr::Load(a) => Some(a),
        _ => None,
    });
    let stores = k.stmts.iter_mut().filter_map(|s| match s {
        Stmt::Store { dst, .. } => Some(dst),
        _ => None,
    });
    loads.chain(stores).collect()
}

/// Merge outer dims `d, d+1` wherever every access has
/// `stride[d] == stride[d+1] * extent[d+1]`, and drop extent-1 dims.
fn normalize(k: &Kernel) -> Kernel {
    let mut n = k.clone();
    if n.outer.contains(&0) {
        return n;
    }
    let mut d = 0;
    while d < n.outer.len() {
        if n.outer[d] == 1 {
            n.outer.remove(d);
            for a in accesses_mut(&mut n) {
                a.outer_strides.remove(d);
            }
        } else {
            d += 1;
        }
    }
    let mut d = n.outer.len();
    while d >= 2 {
        d -= 1;
        let ext = n.outer[d] as i64;
        let mergeable = accesses(&n).iter().all(|a| {
            a.outer_strides[d]
                .checked_mul(ext)
                .is_some_and(|m| m == a.outer_strides[d - 1])
        });
        if mergeable {
            n.outer[d - 1] *= n.outer[d];
            n.outer.remove(d);
            for a in accesses_mut(&mut n) {
                a.outer_strides.remove(d - 1);
            }
        }
    }
    n
}

/// The ids `root` depends on (itself included), ascending: an evaluation order.
pub(crate) fn reachable(k: &Kernel, root: ExprId) -> Vec<ExprId> {
    let mut seen = vec![false; k.exprs.len()];
    let mut stack = vec![root];
    while let Some(e) = stack.pop() {
        if std::mem::replace(&mut seen[e as usize], true) {
            continue;
        }
        match &k.exprs[e as usize] {
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
    (0..k.exprs.len() as u32)
        .filter(|&e| seen[e as usize])
        .collect()
}

impl Plan {
    /// `k` must have passed [`Kernel::validate`].
    pub fn new(k: &Kernel) -> Plan {
        let k = normalize(k);
        let is_output = |b: u32| k.bufs[b as usize].role == Role::Output;
        let mut level = Vec::with_capacity(k.exprs.len());
        for e in &k.exprs {
            let l = match e {
                // An output may change while the kernel runs: reload it
                // wherever it is used.
                Expr::Load(a) if is_output(a.buf) || a.inner_stride != 0 => Level::Inner,
                Expr::Load(a) if a.outer_strides.iter().any(|&s| s != 0) => Level::Outer,
                Expr::Load(_) | Expr::Const(_) => Level::Fn,
                Expr::Scalar(_) => Level::Outer,
                Expr::Unary(_, a) => level[*a as usize],
                Expr::Binary(_, a, b) => level[*a as usize].max(level[*b as usize]),
                Expr::Select {
                    a,
                    b,
                    on_true,
                    on_false,
                    ..
                } => [a, b, on_true, on_false]
                    .iter()
                    .map(|&&x| level[x as usize])
                    .max()
                    .unwrap_or(Level::Fn),
            };
            level.push(l);
        }
        let simd = k
            .stmts
            .iter()
            .map(|s| {
                let (root, dst) = match s {
                    Stmt::Reduce { expr, .. } => (*expr, None),
                    Stmt::Store { dst, expr } => (*expr, Some(dst)),
                };
                if dst.is_some_and(|d| d.inner_stride != 1) {
                    return false;
                }
                reachable(&k, root)
                    .iter()
                    .all(|&e| match &k.exprs[e as usize] {
                        Expr::Load(a) if level[e as usize] == Level::Inner => {
                            // A statement that writes the buffer it reads
                            // elsewhere must run one element at a time, in order.
                            let conflict = dst.is_some_and(|d| d.buf == a.buf && d != a);
                            (a.inner_stride == 0 || a.inner_stride == 1) && !conflict
                        }
                        _ => true,
                    })
            })
            .collect();
        Plan { k, level, simd }
    }

    pub fn facts(&self) -> Facts {
        let k = &self.k;
        let has_reduce = k.num_reductions() > 0;
        let reads_outputs = k
            .exprs
            .iter()
            .any(|e| matches!(e, Expr::Load(a) if k.bufs[a.buf as usize].role == Role::Output));
        let inner_disjoint = (0..k.bufs.len() as u32).all(|b| self.injective(b));
        // A store that writes each element once writes disjoint sets for
        // distinct outer indices, even when they interleave (a transpose).
        let outer_disjoint =
            (0..k.bufs.len() as u32).all(|b| self.injective(b) || self.outer_disjoint(b));
        Facts {
            has_reduce,
            reads_outputs,
            outer_disjoint,
            inner_disjoint,
        }
    }

    /// Whether the elements that the stores to buffer `b` write for one
    /// outer index are disjoint from those of every other outer index:
    /// every store shares the outer strides, and each dim's stride clears
    /// the footprint of one iteration plus the reach of the smaller dims.
    fn outer_disjoint(&self, b: u32) -> bool {
        let k = &self.k;
        let stores: Vec<&Access> = k
            .stmts
            .iter()
            .filter_map(|s| match s {
                Stmt::Store { dst, .. } if dst.buf == b => Some(dst),
                _ => None,
            })
            .collect();
        let Some(first) = stores.first() else {
            return true;
        };
        if stores
            .iter()
            .any(|a| a.outer_strides != first.outer_strides)
        {
            return false;
        }
        if k.inner == 0 || k.outer.contains(&0) {
            return true;
        }
        let (mut lo, mut hi) = (i128::MAX, i128::MIN);
        for a in &stores {
            let span = (k.inner as i128 - 1) * a.inner_stride as i128;
            lo = lo.min(a.offset as i128 + span.min(0));
            hi = hi.max(a.offset as i128 + span.max(0));
        }
        let dims = k
            .outer
            .iter()
            .copied()
            .zip(first.outer_strides.iter().copied());
        separated(dims, hi - lo + 1)
    }

    /// Whether buffer `b` has at most one store, and it writes a different
    /// element at every `(o, i)`.
    fn injective(&self, b: u32) -> bool {
        let k = &self.k;
        let mut stores = k.stmts.iter().filter_map(|s| match s {
            Stmt::Store { dst, .. } if dst.buf == b => Some(dst),
            _ => None,
        });
        match (stores.next(), stores.next()) {
            (None, _) => true,
            (Some(_), Some(_)) => false,
            (Some(a), None) => {
                let dims = k.outer.iter().copied().zip(a.outer_strides.iter().copied());
                separated(dims.chain([(k.inner, a.inner_stride)]), 1)
            }
        }
    }
}

/// Whether `Σ s_d·x_d` (0 <= x_d < n_d) differs by at least `width` between
/// any two distinct index tuples: sorted by |stride|, each stride must clear
/// `width` plus the reach of the smaller dims.
fn separated(dims: impl Iterator<Item = (usize, i64)>, width: i128) -> bool {
    let mut dims: Vec<(i128, i128)> = dims
        .filter(|&(n, _)| n > 1)
        .map(|(n, s)| (n as i128, (s as i128).abs()))
        .collect();
    dims.sort_by_key(|d| d.1);
    let mut reach = width;
    for (n, s) in dims {
        if s < reach {
            return false;
        }
        reach = reach.saturating_add((n - 1) * s);
    }
    true
}

/// Whether an expression is a constant that is not NaN (max/min against it
/// need no NaN fix-up).
pub(crate) fn const_not_nan(k: &Kernel, e: ExprId) -> bool {
    matches!(k.exprs[e as usize], Expr::Const(bits) if !f32::from_bits(bits).is_nan())
}

/// Whether a statement's expression calls a polynomial (a long body, so the
/// loop is unrolled less).
pub(crate) fn is_heavy(k: &Kernel, root: ExprId) -> bool {
    reachable(k, root).iter().any(|&e| {
        matches!(
            k.exprs[e as usize],
            Expr::Unary(
                KUnary::Exp | KUnary::Log | KUnary::Tanh | KUnary::Sigmoid | KUnary::Erf,
                _
            )
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::kernel::{BufDecl, KBinary};

    fn acc(buf: u32, offset: i64, outer: Vec<i64>, inner: i64) -> Access {
        Access {
            buf,
            offset,
            outer_strides: outer,
            inner_stride: inner,
        }
    }

    fn kernel(outer: Vec<usize>, inner: usize, load: Access, dst: Access) -> Kernel {
        let decl = |role, len| BufDecl { role, len };
        Kernel {
            name: "k".into(),
            bufs: vec![decl(Role::Input, 1000), decl(Role::Output, 1000)],
            outer,
            inner,
            exprs: vec![Expr::Load(load), Expr::Binary(KBinary::Add, 0, 0)],
            stmts: vec![Stmt::Store { dst, expr: 1 }],
        }
    }

    #[test]
    fn contiguous_outer_dims_merge_and_unit_dims_drop() {
        // [2, 1, 3, 4] x 5, row-major everywhere: one dim of 24.
        let s = vec![60, 60, 20, 5];
        let k = kernel(
            vec![2, 1, 3, 4],
            5,
            acc(0, 0, s.clone(), 1),
            acc(1, 0, s, 1),
        );
        let p = Plan::new(&k);
        assert_eq!(p.k.outer, vec![24]);
        assert_eq!(
            p.k.stmts[0],
            Stmt::Store {
                dst: acc(1, 0, vec![5], 1),
                expr: 1
            }
        );
        // A transposed read keeps the dims apart.
        let k = kernel(
            vec![3, 4],
            5,
            acc(0, 0, vec![5, 15], 1),
            acc(1, 0, vec![20, 5], 1),
        );
        assert_eq!(Plan::new(&k).k.outer, vec![3, 4]);
    }

    #[test]
    fn levels_and_simd() {
        let k = kernel(vec![4], 8, acc(0, 0, vec![8], 0), acc(1, 0, vec![8], 1));
        let p = Plan::new(&k);
        assert_eq!(p.level, vec![Level::Outer, Level::Outer]);
        assert_eq!(p.simd, vec![true]);
        let k = kernel(vec![4], 8, acc(0, 0, vec![1], 4), acc(1, 0, vec![8], 1));
        assert_eq!(Plan::new(&k).simd, vec![false]);
        let k = kernel(vec![4], 8, acc(0, 0, vec![8], 1), acc(1, 0, vec![1], 4));
        assert_eq!(Plan::new(&k).simd, vec![false]);
    }

    #[test]
    fn disjointness() {
        let f = |outer, inner, dst| {
            Plan::new(&kernel(outer, inner, acc(0, 0, vec![0], 0), dst)).facts()
        };
        // Rows of 8 at stride 8: disjoint both ways.
        let x = f(vec![4], 8, acc(1, 0, vec![8], 1));
        assert!(x.outer_disjoint && x.inner_disjoint);
        // Overlapping rows (stride 4, width 8): neither.
        let x = f(vec![4], 8, acc(1, 0, vec![4], 1));
        assert!(!x.outer_disjoint && !x.inner_disjoint);
        // Every i writes the same element of its row: rows disjoint, but an
        // element is written 8 times.
        let x = f(vec![4], 8, acc(1, 0, vec![1], 0));
        assert!(x.outer_disjoint && !x.inner_disjoint);
        // Transposed store: out[i, o], rows interleaved but disjoint.
        let x = f(vec![4], 8, acc(1, 0, vec![1], 4));
        assert!(x.outer_disjoint && x.inner_disjoint);
        // Two stores to one buffer: rows of 4 at stride 8, at offsets 0 and
        // 4, disjoint between rows; at offsets 0 and 5 they overlap.
        let mut k = kernel(vec![4], 4, acc(0, 0, vec![0], 0), acc(1, 0, vec![8], 1));
        k.stmts.push(Stmt::Store {
            dst: acc(1, 4, vec![8], 1),
            expr: 1,
        });
        let x = Plan::new(&k).facts();
        assert!(x.outer_disjoint && !x.inner_disjoint);
        k.stmts[1] = Stmt::Store {
            dst: acc(1, 5, vec![8], 1),
            expr: 1,
        };
        assert!(!Plan::new(&k).facts().outer_disjoint);
    }
}
