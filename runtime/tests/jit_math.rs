//! The JIT's polynomial approximations against f64 libm (`kiln_ir::kernel::unary`,
//! the reference semantics), over the whole f32 range and densely near 0.
//! The bounds asserted here are the ones documented in `src/jit/math.rs`.

mod common;
use common::*;
use kiln_ir::kernel::{self, Expr, KUnary, Kernel, Stmt};
use kiln_runtime::jit::{Buf, CodegenOptions, JitModule};

fn unary_kernel(op: KUnary, n: usize) -> Kernel {
    Kernel {
        name: format!("{op:?}"),
        bufs: vec![input(n), output(n)],
        outer: vec![],
        inner: n,
        exprs: vec![Expr::Load(acc(0, 0, vec![], 1)), Expr::Unary(op, 0)],
        stmts: vec![Stmt::Store {
            dst: acc(1, 0, vec![], 1),
            expr: 1,
        }],
    }
}

/// Every 2^11-th bit pattern (2M values, all signs and exponents), 1M evenly
/// spaced points in [-20, 20], and the edge values.
fn sweep() -> Vec<f32> {
    let mut xs: Vec<f32> = (0..1u64 << 21)
        .map(|k| f32::from_bits((k << 11) as u32 | (k as u32 & 0x7ff)))
        .collect();
    let n = 1 << 20;
    xs.extend((0..n).map(|k| -20.0 + 40.0 * k as f32 / n as f32));
    xs.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1e-45,
        -1e-45,
        1e-40,
        -1e-40,
        1.0,
        -1.0,
        0.625,
        -0.625,
        3.92,
        -3.92,
        88.72,
        88.73,
        -87.33,
        -103.0,
        -104.0,
        -150.0,
        1e30,
        -1e30,
    ]);
    xs
}

/// The largest error of `op` over `xs` in ulps, and where.
fn max_error(op: KUnary, xs: &[f32], fma: bool) -> (u64, f32) {
    let k = unary_kernel(op, xs.len());
    let m = JitModule::compile_with(&[k], CodegenOptions { fma }).unwrap();
    let mut out = vec![0f32; xs.len()];
    m.kernels()[0]
        .run(&mut [Buf::In(xs), Buf::Out(&mut out)])
        .unwrap();
    let mut worst = (0, 0.0);
    for (&x, &y) in xs.iter().zip(&out) {
        let want = kernel::unary(op, x);
        let e = if want.is_nan() || y.is_nan() {
            assert!(
                want.is_nan() && y.is_nan(),
                "{op:?}({x:e}) = {y:e}, want {want:e}"
            );
            0
        } else {
            ulps(y, want)
        };
        if e > worst.0 {
            worst = (e, x);
        }
    }
    worst
}

/// (op, bound with FMA, bound without), in ulps.
const BOUNDS: [(KUnary, u64, u64); 11] = [
    (KUnary::Exp, 1, 1),
    (KUnary::Log, 1, 1),
    (KUnary::Tanh, 5, 7),
    (KUnary::Sigmoid, 2, 2),
    (KUnary::Erf, 1, 1),
    (KUnary::Sqrt, 0, 0),
    (KUnary::Recip, 0, 0),
    (KUnary::Floor, 0, 0),
    (KUnary::Ceil, 0, 0),
    (KUnary::Abs, 0, 0),
    (KUnary::Neg, 0, 0),
];

#[test]
fn approximations_within_documented_error() {
    let xs = sweep();
    let has_fma = kiln_runtime::jit::host_options().unwrap().fma;
    let mut report = String::new();
    let mut failed = false;
    for (op, with_fma, without) in BOUNDS {
        for fma in [true, false] {
            if fma && !has_fma {
                continue;
            }
            let (e, at) = max_error(op, &xs, fma);
            let b = if fma { with_fma } else { without };
            report += &format!("{op:?} fma={fma}: {e} ulp (at {at:e}), bound {b}\n");
            failed |= e > b;
        }
    }
    println!("{report}");
    assert!(!failed, "{report}");
}
