//! The JIT against `Kernel::eval`: every op, odd sizes, broadcast,
//! transposed and negative strides, reductions, selects, outputs read
//! back, random expression DAGs, and thread splits.
//!
//! Tolerances: exact ops (arithmetic, max/min, select, sqrt, recip,
//! floor/ceil, abs/neg) must match bitwise (NaN matching any NaN, and
//! -0 == +0 where eval's `f32::max` leaves the sign of zero open); the
//! polynomials within their documented ulps (`src/jit/math.rs`); sums within
//! a bound that grows with the row length, since the JIT adds in 16 partial
//! sums and eval in order.

mod common;
use common::*;
use kiln_ir::kernel::{Expr, KBinary, KReduce, KUnary, Kernel, Stmt};
use kiln_runtime::jit::{split_range, Buf, JitError, JitModule};
use rand::RngExt;

const SIZES: [usize; 5] = [1, 3, 17, 64, 1023];

/// Documented max error per unary op, in ulps, with FMA (and without).
fn unary_ulps(op: KUnary) -> u64 {
    match op {
        KUnary::Exp | KUnary::Log | KUnary::Erf => 1,
        KUnary::Sigmoid => 2,
        KUnary::Tanh => 7,
        _ => 0,
    }
}

use kiln_ir::kernel::{ALL_BINARY as BINARY, ALL_CMP as CMP, ALL_UNARY as UNARY};

const SPECIAL: [f32; 10] = [
    0.0,
    -0.0,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    1e-40,
    -3e-39,
    f32::MAX,
    1.0,
    -1.0,
];

/// Random inputs with special values sprinkled in.
fn with_specials(k: &Kernel, seed: u64) -> Vec<Vec<f32>> {
    let mut b = buffers(k, seed, -5.0, 5.0);
    let mut r = rng(seed ^ 0x5eed);
    for (n, d) in k.bufs.iter().enumerate() {
        if d.role == kiln_ir::kernel::Role::Input {
            for v in b[n].iter_mut() {
                if r.random_range(0..8) == 0 {
                    *v = SPECIAL[r.random_range(0..SPECIAL.len())];
                }
            }
        }
    }
    b
}

fn check(k: &Kernel, bufs: &[Vec<f32>], ulps: u64) {
    assert_outputs(k, &jit_run(k, bufs), &eval_run(k, bufs), ulps, 0.0);
}

/// `out[i] = op(x[i])` on n elements.
fn unary_kernel(op: KUnary, n: usize) -> Kernel {
    let mut e = Ex::default();
    let x = e.load(acc(0, 0, vec![], 1));
    let y = e.un(op, x);
    Kernel {
        name: format!("{op:?}"),
        bufs: vec![input(n), output(n)],
        outer: vec![],
        inner: n,
        exprs: e.0,
        stmts: vec![Stmt::Store {
            dst: acc(1, 0, vec![], 1),
            expr: y,
        }],
    }
}

#[test]
fn every_unary_op() {
    for op in UNARY {
        for n in SIZES {
            let k = unary_kernel(op, n);
            check(&k, &with_specials(&k, n as u64), unary_ulps(op));
        }
    }
}

#[test]
fn every_binary_op_with_nan_and_constants() {
    for op in BINARY {
        for n in SIZES {
            // a op b, a op 0.5 and 0.5 op a (the constant fast paths of
            // max/min), each on 2 rows.
            let mut e = Ex::default();
            let a = e.load(acc(0, 0, vec![n as i64], 1));
            let b = e.load(acc(1, 0, vec![n as i64], 1));
            let half = e.c(0.5);
            let ab = e.bin(op, a, b);
            let ac = e.bin(op, a, half);
            let ca = e.bin(op, half, a);
            let o = |buf| acc(buf, 0, vec![n as i64], 1);
            let k = Kernel {
                name: format!("{op:?}"),
                bufs: vec![
                    input(2 * n),
                    input(2 * n),
                    output(2 * n),
                    output(2 * n),
                    output(2 * n),
                ],
                outer: vec![2],
                inner: n,
                exprs: e.0,
                stmts: vec![
                    Stmt::Store {
                        dst: o(2),
                        expr: ab,
                    },
                    Stmt::Store {
                        dst: o(3),
                        expr: ac,
                    },
                    Stmt::Store {
                        dst: o(4),
                        expr: ca,
                    },
                ],
            };
            check(&k, &with_specials(&k, 7 + n as u64), 0);
        }
    }
}

#[test]
fn select_with_every_comparison() {
    for cmp in CMP {
        for n in SIZES {
            let mut e = Ex::default();
            let a = e.load(acc(0, 0, vec![], 1));
            let b = e.load(acc(1, 0, vec![], 1));
            let t = e.un(KUnary::Neg, a);
            let s = e.push(Expr::Select {
                cmp,
                a,
                b,
                on_true: t,
                on_false: b,
            });
            let k = Kernel {
                name: format!("select_{cmp:?}"),
                bufs: vec![input(n), input(n), output(n)],
                outer: vec![],
                inner: n,
                exprs: e.0,
                stmts: vec![Stmt::Store {
                    dst: acc(2, 0, vec![], 1),
                    expr: s,
                }],
            };
            let mut bufs = with_specials(&k, 11 + n as u64);
            // Make some pairs equal so that Eq/Le/Ge are exercised.
            for i in (0..n).step_by(3) {
                bufs[1][i] = bufs[0][i];
            }
            check(&k, &bufs, 0);
        }
    }
}

#[test]
fn reference_kernels() {
    for n in SIZES {
        let k = chain(n);
        check(&k, &buffers(&k, 1, -3.0, 3.0), unary_ulps(KUnary::Tanh));
        let k = softmax(3, n);
        check(&k, &buffers(&k, 2, -30.0, 30.0), 8 + n as u64 / 4);
        let k = bias_relu(5, n);
        check(&k, &with_specials(&k, 3), 0);
    }
}

#[test]
fn broadcast_over_multi_dim_outer() {
    // out[a, b, i] = x[a, b, i] * row[i] + col[a, b] - per_a[a], outer [a, b]:
    // stride-0 inner (col, per_a: hoisted per outer iteration), stride-0
    // outer (row), and dims that merge (x, out) or do not (col, per_a).
    for (da, db) in [(1, 1), (2, 3), (3, 1), (1, 5), (4, 7)] {
        for n in SIZES {
            let mut e = Ex::default();
            let (sa, sb) = ((db * n) as i64, n as i64);
            let x = e.load(acc(0, 0, vec![sa, sb], 1));
            let row = e.load(acc(1, 0, vec![0, 0], 1));
            let col = e.load(acc(2, 0, vec![db as i64, 1], 0));
            let pa = e.load(acc(3, 1, vec![1, 0], 0));
            let m = e.bin(KBinary::Mul, x, row);
            let s = e.bin(KBinary::Add, m, col);
            let y = e.bin(KBinary::Sub, s, pa);
            let k = Kernel {
                name: "broadcast".into(),
                bufs: vec![
                    input(da * db * n),
                    input(n),
                    input(da * db),
                    input(da + 1),
                    output(da * db * n),
                ],
                outer: vec![da, db],
                inner: n,
                exprs: e.0,
                stmts: vec![Stmt::Store {
                    dst: acc(4, 0, vec![sa, sb], 1),
                    expr: y,
                }],
            };
            check(&k, &buffers(&k, 5, -2.0, 2.0), 0);
        }
    }
}

#[test]
fn scalar_broadcast_everywhere() {
    // Every access stride 0: out[o, i] (stride 1 inner) = exp(x[0]) + y[o].
    for n in SIZES {
        let mut e = Ex::default();
        let x = e.load(acc(0, 2, vec![0], 0));
        let ex = e.un(KUnary::Exp, x);
        let y = e.load(acc(1, 0, vec![1], 0));
        let s = e.bin(KBinary::Add, ex, y);
        let k = Kernel {
            name: "scalars".into(),
            bufs: vec![input(3), input(4), output(4 * n)],
            outer: vec![4],
            inner: n,
            exprs: e.0,
            stmts: vec![Stmt::Store {
                dst: acc(2, 0, vec![n as i64], 1),
                expr: s,
            }],
        };
        check(&k, &buffers(&k, 9, -2.0, 2.0), 1);
    }
}

#[test]
fn transposed_and_negative_strides() {
    for (rows, cols) in [(1, 1), (3, 17), (17, 3), (5, 64), (2, 1023)] {
        // out[r, c] = sigmoid(x[c, r]) - rev[cols-1-c]: inner stride `rows`
        // (scalar loop) and -1 (reversed).
        let mut e = Ex::default();
        let x = e.load(acc(0, 0, vec![1], rows as i64));
        let sg = e.un(KUnary::Sigmoid, x);
        let rev = e.load(acc(1, cols as i64 - 1, vec![0], -1));
        let y = e.bin(KBinary::Sub, x, rev);
        let k = Kernel {
            name: "transpose".into(),
            bufs: vec![
                input(rows * cols),
                input(cols),
                output(rows * cols),
                output(rows * cols),
            ],
            outer: vec![rows],
            inner: cols,
            exprs: e.0,
            stmts: vec![
                Stmt::Store {
                    dst: acc(2, 0, vec![cols as i64], 1),
                    expr: sg,
                },
                Stmt::Store {
                    dst: acc(3, 0, vec![cols as i64], 1),
                    expr: y,
                },
            ],
        };
        check(&k, &buffers(&k, 13, -4.0, 4.0), 2);
        // Transposed store: out[c, r] = x[r, c] * 2, written column by column,
        // and a reversed store.
        let mut e = Ex::default();
        let x = e.load(acc(0, 0, vec![cols as i64], 1));
        let two = e.c(2.0);
        let y = e.bin(KBinary::Mul, x, two);
        let k = Kernel {
            name: "transpose_store".into(),
            bufs: vec![input(rows * cols), output(rows * cols), output(rows * cols)],
            outer: vec![rows],
            inner: cols,
            exprs: e.0,
            stmts: vec![
                Stmt::Store {
                    dst: acc(1, 0, vec![1], rows as i64),
                    expr: y,
                },
                Stmt::Store {
                    dst: acc(2, (rows * cols) as i64 - 1, vec![-(cols as i64)], -1),
                    expr: y,
                },
            ],
        };
        check(&k, &with_specials(&k, 17), 0);
    }
}

fn reduce_kernel(kind: KReduce, rows: usize, cols: usize, col_stride: i64) -> Kernel {
    // out[r] = reduce_c x[r, c]; then y[r, c] = x[r, c] - #0.
    let rs = if col_stride == 1 { cols as i64 } else { 1 };
    let mut e = Ex::default();
    let x = e.load(acc(0, 0, vec![rs], col_stride));
    let s = e.push(Expr::Scalar(0));
    let d = e.bin(KBinary::Sub, x, s);
    Kernel {
        name: format!("reduce_{kind:?}"),
        bufs: vec![input(rows * cols), output(rows), output(rows * cols)],
        outer: vec![rows],
        inner: cols,
        exprs: e.0,
        stmts: vec![
            Stmt::Reduce { kind, expr: x },
            Stmt::Store {
                dst: acc(1, 0, vec![1], 0),
                expr: s,
            },
            Stmt::Store {
                dst: acc(2, 0, vec![cols as i64], 1),
                expr: d,
            },
        ],
    }
}

#[test]
fn reductions_sum_max_min_with_nan_and_inf() {
    for kind in [KReduce::Sum, KReduce::Max, KReduce::Min] {
        for cols in SIZES {
            for stride in [1, 4] {
                let rows = 4;
                let k = reduce_kernel(kind, rows, cols, if stride == 1 { 1 } else { rows as i64 });
                let mut bufs = buffers(&k, cols as u64, -10.0, 10.0);
                // Row 1 has a NaN (at the end: in the tail), row 2 an inf,
                // row 3 a NaN at the start.
                bufs[0][(cols - 1) * if stride == 1 { 1 } else { rows }
                    + if stride == 1 { cols } else { 1 }] = f32::NAN;
                let at = |c: usize, r: usize| {
                    if stride == 1 {
                        r * cols + c
                    } else {
                        c * rows + r
                    }
                };
                bufs[0][at(cols / 2, 2)] = f32::INFINITY;
                bufs[0][at(0, 3)] = f32::NAN;
                let ulps = if kind == KReduce::Sum {
                    4 + cols as u64
                } else {
                    0
                };
                let (got, want) = (jit_run(&k, &bufs), eval_run(&k, &bufs));
                // Sums: compare relative to the sum of magnitudes.
                if kind == KReduce::Sum {
                    for r in 0..rows {
                        let (g, w) = (got[1][r], want[1][r]);
                        let mag: f32 = (0..cols).map(|c| bufs[0][at(c, r)].abs()).sum();
                        assert!(
                            (g.is_nan() && w.is_nan())
                                || g == w
                                || (g - w).abs() <= mag * cols as f32 * 1.2e-7,
                            "sum row {r}: {g} vs {w}"
                        );
                    }
                    assert!(got[1][1].is_nan() && got[1][3].is_nan());
                    assert_eq!(got[1][2], f32::INFINITY);
                } else {
                    assert_outputs(&k, &got, &want, ulps, 0.0);
                    assert!(got[1][1].is_nan() && got[1][3].is_nan(), "{:?}", got[1]);
                }
            }
        }
    }
}

#[test]
fn empty_rows_reduce_to_the_identity() {
    for kind in [KReduce::Sum, KReduce::Max, KReduce::Min] {
        let mut k = reduce_kernel(kind, 3, 1, 1);
        k.inner = 0;
        k.bufs[0].len = 0;
        k.bufs[2].len = 0;
        let b = vec![vec![], vec![5.0; 3], vec![]];
        // inner = 0 runs nothing, not even the reduction's store.
        check(&k, &b, 0);
    }
}

#[test]
fn reading_outputs_back_is_sequential() {
    // A running sum along the row: out[i] = out[i-1] + x[i] (out[0] = x[0]
    // by a first statement), then a second statement reads out reversed.
    for n in [2, 3, 17, 1023] {
        let mut e = Ex::default();
        let x0 = e.load(acc(0, 0, vec![], 0));
        let x = e.load(acc(0, 1, vec![], 1));
        let prev = e.load(acc(1, 0, vec![], 1));
        let s = e.bin(KBinary::Add, prev, x);
        let back = e.load(acc(1, n as i64 - 1, vec![], -1));
        let m = e.c(2.0);
        let y = e.bin(KBinary::Mul, back, m);
        let k = Kernel {
            name: "scan".into(),
            bufs: vec![input(n), output(n), output(n)],
            outer: vec![],
            inner: n - 1,
            exprs: e.0,
            stmts: vec![
                Stmt::Store {
                    dst: acc(1, 0, vec![], 0),
                    expr: x0,
                },
                Stmt::Store {
                    dst: acc(1, 1, vec![], 1),
                    expr: s,
                },
                Stmt::Store {
                    dst: acc(2, 0, vec![], 1),
                    expr: y,
                },
            ],
        };
        check(&k, &buffers(&k, 21, -1.0, 1.0), 0);
        let m = JitModule::compile(&[k]).unwrap();
        assert!(!m.kernels()[0].outer_splittable() && !m.kernels()[0].inner_splittable());
    }
}

/// A random kernel of exact ops over loads with random strides (possibly
/// 0, negative or transposed) on a random outer shape.
fn random_kernel(seed: u64) -> Kernel {
    let mut r = rng(seed);
    let outer: Vec<usize> = (0..r.random_range(0..3))
        .map(|_| r.random_range(1..5))
        .collect();
    let inner = [1, 2, 3, 5, 8, 17, 33][r.random_range(0..7)];
    let dims: Vec<usize> = outer.iter().copied().chain([inner]).collect();
    // Buffer 0 and 1: inputs shaped like the iteration space, read through
    // a random permutation/broadcast/reversal of it.
    let len: usize = dims.iter().product();
    let row_major: Vec<i64> = (0..dims.len())
        .map(|d| dims[d + 1..].iter().product::<usize>() as i64)
        .collect();
    let random_access = |buf: u32, r: &mut rand_chacha::ChaCha8Rng| {
        // Row-major strides with dims of equal extent randomly swapped: a
        // transpose that stays in bounds.
        let mut strides = row_major.clone();
        for d1 in 0..dims.len() {
            for d2 in d1 + 1..dims.len() {
                if dims[d1] == dims[d2] && r.random_range(0..2) == 0 {
                    strides.swap(d1, d2);
                }
            }
        }
        let mut offset = 0i64;
        for (d, s) in strides.iter_mut().enumerate() {
            match r.random_range(0..6) {
                0 => *s = 0,
                1 => {
                    offset += *s * (dims[d] as i64 - 1);
                    *s = -*s;
                }
                _ => {}
            }
        }
        let inner_stride = strides.pop().unwrap();
        acc(buf, offset, strides, inner_stride)
    };
    let mut e = Ex::default();
    let mut pool = Vec::new();
    for _ in 0..3 {
        let b = r.random_range(0..2u32);
        let a = random_access(b, &mut r);
        pool.push(e.load(a));
    }
    pool.push(e.c([0.0, 1.5, -2.0, f32::INFINITY][r.random_range(0..4)]));
    for _ in 0..r.random_range(3..12) {
        let pick =
            |r: &mut rand_chacha::ChaCha8Rng, pool: &Vec<u32>| pool[r.random_range(0..pool.len())];
        let id = match r.random_range(0..10) {
            0..=5 => {
                let op = BINARY[r.random_range(0..BINARY.len())];
                let (a, b) = (pick(&mut r, &pool), pick(&mut r, &pool));
                e.bin(op, a, b)
            }
            6..=7 => {
                let op = [
                    KUnary::Neg,
                    KUnary::Abs,
                    KUnary::Sqrt,
                    KUnary::Recip,
                    KUnary::Floor,
                    KUnary::Ceil,
                ][r.random_range(0..6)];
                let a = pick(&mut r, &pool);
                e.un(op, a)
            }
            _ => {
                let cmp = CMP[r.random_range(0..CMP.len())];
                let (a, b, t, f) = (
                    pick(&mut r, &pool),
                    pick(&mut r, &pool),
                    pick(&mut r, &pool),
                    pick(&mut r, &pool),
                );
                e.push(Expr::Select {
                    cmp,
                    a,
                    b,
                    on_true: t,
                    on_false: f,
                })
            }
        };
        pool.push(id);
    }
    let root = *pool.last().unwrap();
    let mut stmts = Vec::new();
    if r.random_range(0..2) == 0 {
        let kind = [KReduce::Sum, KReduce::Max, KReduce::Min][r.random_range(0..3)];
        // Only max/min: they are exact in any order.
        if kind != KReduce::Sum {
            stmts.push(Stmt::Reduce { kind, expr: root });
            let s = e.push(Expr::Scalar(0));
            let y = e.bin(KBinary::Add, root, s);
            stmts.push(Stmt::Store {
                dst: acc(3, 0, row_major[..outer.len()].to_vec(), 1),
                expr: y,
            });
        }
    }
    let dst = acc(2, 0, row_major[..outer.len()].to_vec(), 1);
    stmts.push(Stmt::Store { dst, expr: root });
    Kernel {
        name: format!("random_{seed}"),
        bufs: vec![input(len), input(len), output(len), output(len)],
        outer,
        inner,
        exprs: e.0,
        stmts,
    }
}

#[test]
fn random_kernels_match_eval_bitwise() {
    for seed in 0..300 {
        let k = random_kernel(seed);
        k.validate().unwrap_or_else(|e| panic!("{e}\n{k}"));
        check(&k, &with_specials(&k, seed), 0);
    }
}

fn run_split(
    k: &Kernel,
    bufs: &[Vec<f32>],
    how: &dyn Fn(&kiln_runtime::jit::CompiledKernel, &mut [Buf]),
) -> Vec<Vec<f32>> {
    let m = JitModule::compile(std::slice::from_ref(k)).unwrap();
    let mut out = bufs.to_vec();
    let mut args: Vec<Buf> = out
        .iter_mut()
        .zip(&k.bufs)
        .map(|(v, d)| match d.role {
            kiln_ir::kernel::Role::Input => Buf::In(&v[..]),
            kiln_ir::kernel::Role::Output => Buf::Out(&mut v[..]),
        })
        .collect();
    how(&m.kernels()[0], &mut args);
    out
}

fn bitwise_eq(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()))
}

#[test]
fn thread_splits_equal_one_thread_bitwise() {
    let kernels = [
        softmax(37, 1023),
        chain(1023 * 5 + 3),
        bias_relu(9, 17),
        chain(5),
        softmax(1, 3),
    ];
    for k in &kernels {
        let bufs = buffers(k, 31, -4.0, 4.0);
        let one = run_split(k, &bufs, &|ck, a| ck.run(a).unwrap());
        for threads in [2, 3, 7, 64] {
            let par = run_split(k, &bufs, &|ck, a| ck.run_parallel(a, threads).unwrap());
            assert!(bitwise_eq(&one, &par), "{} on {threads} threads", k.name);
        }
        // Tiles: any cut of the ranges, run one after the other.
        let ck_tiles = |ck: &kiln_runtime::jit::CompiledKernel, a: &mut [Buf]| {
            let (on, inn) = (k.outer_len(), k.inner);
            for o in split_range(on, 3) {
                if ck.inner_splittable() {
                    for i in [0..inn / 3, inn / 3..inn / 2 + 1, inn / 2 + 1..inn] {
                        ck.run_range(a, o.clone(), i).unwrap();
                    }
                } else {
                    ck.run_range(a, o, 0..inn).unwrap();
                }
            }
        };
        let tiles = run_split(k, &bufs, &ck_tiles);
        assert!(bitwise_eq(&one, &tiles), "{} in tiles", k.name);
    }
}

#[test]
fn bad_arguments_are_errors() {
    let k = softmax(2, 3);
    let m = JitModule::compile(std::slice::from_ref(&k)).unwrap();
    let ck = &m.kernels()[0];
    let (x, mut y) = (vec![0f32; 6], vec![0f32; 6]);
    let mut short = vec![0f32; 5];
    let msg = |r: Result<(), JitError>| r.unwrap_err().to_string();
    assert!(msg(ck.run(&mut [Buf::In(&x)])).contains("1 buffers given, 2 declared"));
    assert!(
        msg(ck.run(&mut [Buf::In(&x), Buf::Out(&mut short)])).contains("5 elements, 6 declared")
    );
    let mut x2 = x.clone();
    assert!(msg(ck.run(&mut [Buf::Out(&mut x2), Buf::Out(&mut y)])).contains("declared Input"));
    assert!(
        msg(ck.run_range(&mut [Buf::In(&x), Buf::Out(&mut y)], 0..3, 0..3)).contains("outer range")
    );
    assert!(
        msg(ck.run_range(&mut [Buf::In(&x), Buf::Out(&mut y)], 0..2, 0..4)).contains("inner range")
    );
    assert!(
        msg(ck.run_range(&mut [Buf::In(&x), Buf::Out(&mut y)], 0..2, 1..3)).contains("whole rows")
    );
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 2..1;
    assert!(
        msg(ck.run_range(&mut [Buf::In(&x), Buf::Out(&mut y)], backwards, 0..3))
            .contains("outer range")
    );
    // An invalid kernel does not compile.
    let mut bad = k;
    bad.stmts.swap(0, 2);
    assert!(matches!(
        JitModule::compile(&[bad]),
        Err(JitError::Kernel(_))
    ));
}

#[test]
fn many_kernels_in_one_module_and_kernels_outlive_it() {
    let ks: Vec<Kernel> = (1..20).map(|n| chain(n * 7)).collect();
    let kernels = JitModule::compile(&ks).unwrap().into_kernels();
    let keep = kernels[5].clone();
    drop(kernels);
    let k = &ks[5];
    let bufs = buffers(k, 3, -1.0, 1.0);
    let out = run_split(k, &bufs, &|_, a| keep.run(a).unwrap());
    assert_outputs(k, &out, &eval_run(k, &bufs), unary_ulps(KUnary::Tanh), 0.0);
}
