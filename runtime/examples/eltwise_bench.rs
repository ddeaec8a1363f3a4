//! The 4M-element elementwise chain `x*w + b → relu → *s → tanh`: the fused
//! JIT kernel against a plain Rust loop and against the same chain as
//! separate passes (what an unfused runtime does). Two shapes: `w` and `b`
//! as large as `x` (a memory-bound 16 bytes per element), and `w`, `b` one
//! row of 1024 broadcast over 4096 rows (8 bytes per element).
//!
//! `cargo run --release -p kiln-runtime --example eltwise_bench [runs]`
//! prints the median and minimum of each variant.

use std::time::Instant;

use kiln_ir::kernel::{Access, BufDecl, Expr, KBinary, KUnary, Kernel, Role, Stmt};
use kiln_runtime::jit::{Buf, CompiledKernel, JitModule};

const ROWS: usize = 4096;
const COLS: usize = 1024;
const N: usize = ROWS * COLS;
const S: f32 = 0.5;

/// Row-major `[ROWS, COLS]`, or one `[COLS]` row broadcast over the rows.
fn access(buf: u32, broadcast: bool) -> Access {
    Access {
        buf,
        offset: 0,
        outer_strides: vec![if broadcast { 0 } else { COLS as i64 }],
        inner_stride: 1,
    }
}

fn decl(role: Role, len: usize) -> BufDecl {
    BufDecl { role, len }
}

/// `out = f(inputs)` over `[ROWS, COLS]`; `inputs[k]`: whether input k is a
/// broadcast row.
fn kernel(name: &str, inputs: &[bool], exprs: Vec<Expr>) -> Kernel {
    let mut bufs: Vec<BufDecl> = inputs
        .iter()
        .map(|&row| decl(Role::Input, if row { COLS } else { N }))
        .collect();
    bufs.push(decl(Role::Output, N));
    let mut all: Vec<Expr> = inputs
        .iter()
        .enumerate()
        .map(|(k, &row)| Expr::Load(access(k as u32, row)))
        .collect();
    all.extend(exprs);
    Kernel {
        name: name.into(),
        bufs,
        outer: vec![ROWS],
        inner: COLS,
        stmts: vec![Stmt::Store {
            dst: access(inputs.len() as u32, false),
            expr: all.len() as u32 - 1,
        }],
        exprs: all,
    }
}

fn c(v: f32) -> Expr {
    Expr::Const(v.to_bits())
}

/// The fused chain: out = tanh(max(x*w + b, 0) * s).
fn fused(row: bool) -> Kernel {
    kernel(
        "chain",
        &[false, row, row],
        vec![
            Expr::Binary(KBinary::Mul, 0, 1),
            Expr::Binary(KBinary::Add, 3, 2),
            c(0.0),
            Expr::Binary(KBinary::Max, 4, 5),
            c(S),
            Expr::Binary(KBinary::Mul, 6, 7),
            Expr::Unary(KUnary::Tanh, 8),
        ],
    )
}

fn unfused(row: bool) -> Vec<Kernel> {
    vec![
        kernel("mul", &[false, row], vec![Expr::Binary(KBinary::Mul, 0, 1)]),
        kernel("add", &[false, row], vec![Expr::Binary(KBinary::Add, 0, 1)]),
        kernel(
            "relu",
            &[false],
            vec![c(0.0), Expr::Binary(KBinary::Max, 0, 1)],
        ),
        kernel(
            "scale",
            &[false],
            vec![c(S), Expr::Binary(KBinary::Mul, 0, 1)],
        ),
        kernel("tanh", &[false], vec![Expr::Unary(KUnary::Tanh, 0)]),
    ]
}

fn time(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0])
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 6.0 - 3.0
        })
        .collect()
}

fn bench(row: bool, runs: usize) {
    let wb_len = if row { COLS } else { N };
    let (x, w, b) = (data(N, 1), data(wb_len, 2), data(wb_len, 3));
    // w[i] and b[i] of element i.
    let at = |i: usize| if row { i % COLS } else { i };
    let mut out = vec![0f32; N];
    let t0 = Instant::now();
    let m = JitModule::compile(&[fused(row)]).expect("compiles");
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;
    let k: &CompiledKernel = &m.kernels()[0];
    let sep = JitModule::compile(&unfused(row)).expect("compiles");
    let uk = sep.kernels();
    let (mut t1, mut t2) = (vec![0f32; N], vec![0f32; N]);

    let mut rows = Vec::new();
    rows.push((
        "JIT fused, 1 thread",
        time(runs, || {
            k.run(&mut [Buf::In(&x), Buf::In(&w), Buf::In(&b), Buf::Out(&mut out)])
                .unwrap()
        }),
    ));
    let jit_out = out.clone();
    rows.push((
        "JIT fused, 2 threads",
        time(runs, || {
            let mut args = [Buf::In(&x), Buf::In(&w), Buf::In(&b), Buf::Out(&mut out)];
            k.run_parallel(&mut args, 2).unwrap()
        }),
    ));
    rows.push((
        "JIT, 5 separate kernels",
        time(runs, || {
            uk[0]
                .run(&mut [Buf::In(&x), Buf::In(&w), Buf::Out(&mut t1)])
                .unwrap();
            uk[1]
                .run(&mut [Buf::In(&t1), Buf::In(&b), Buf::Out(&mut t2)])
                .unwrap();
            uk[2].run(&mut [Buf::In(&t2), Buf::Out(&mut t1)]).unwrap();
            uk[3].run(&mut [Buf::In(&t1), Buf::Out(&mut t2)]).unwrap();
            uk[4].run(&mut [Buf::In(&t2), Buf::Out(&mut out)]).unwrap();
        }),
    ));
    rows.push((
        "Rust loop, fused (libm tanhf)",
        time(runs, || {
            for (i, o) in out.iter_mut().enumerate() {
                *o = ((x[i] * w[at(i)] + b[at(i)]).max(0.0) * S).tanh();
            }
        }),
    ));
    let rust_out = out.clone();
    rows.push((
        "Rust, 5 separate passes",
        time(runs, || {
            for (i, t) in t1.iter_mut().enumerate() {
                *t = x[i] * w[at(i)];
            }
            for (i, t) in t2.iter_mut().enumerate() {
                *t = t1[i] + b[at(i)];
            }
            for (t, &v) in t1.iter_mut().zip(&t2) {
                *t = v.max(0.0);
            }
            for (t, &v) in t2.iter_mut().zip(&t1) {
                *t = v * S;
            }
            for (o, &v) in out.iter_mut().zip(&t2) {
                *o = v.tanh();
            }
        }),
    ));
    rows.push((
        "Rust loop without tanh",
        time(runs, || {
            for (i, o) in out.iter_mut().enumerate() {
                *o = (x[i] * w[at(i)] + b[at(i)]).max(0.0) * S;
            }
        }),
    ));
    let max_diff = jit_out
        .iter()
        .zip(&rust_out)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let shape = if row {
        "w, b: one row of 1024 broadcast"
    } else {
        "w, b: full size"
    };
    println!(
        "\n{N} elements ({ROWS} x {COLS}), {shape}; {runs} runs; compile + JIT {compile_ms:.2} ms"
    );
    println!(
        "{:<32} {:>10} {:>10} {:>9}",
        "variant", "median ms", "min ms", "Gelem/s"
    );
    let base = rows[0].1 .0;
    for (name, (med, min)) in &rows {
        println!(
            "{name:<32} {med:>10.3} {min:>10.3} {:>9.2}   {:.2}x the fused JIT",
            N as f64 / med / 1e6,
            med / base
        );
    }
    println!("max |JIT - Rust| = {max_diff:e}");
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(31);
    bench(false, runs);
    bench(true, runs);
}
