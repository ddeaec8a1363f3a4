//! The 4M-element elementwise chain `x*w + b → relu → *s → tanh`:
//! the fused JIT kernel against a plain Rust loop and against the same
//! chain as separate passes (what an unfused runtime does).
//!
//! `cargo run --release -p kiln-runtime --example eltwise_bench [n] [runs]`
//! prints the median and minimum time of each variant.

use std::time::Instant;

use kiln_ir::kernel::{Access, BufDecl, Expr, KBinary, KUnary, Kernel, Role, Stmt};
use kiln_runtime::jit::{Buf, JitModule};

fn contiguous(buf: u32) -> Access {
    Access {
        buf,
        offset: 0,
        outer_strides: vec![],
        inner_stride: 1,
    }
}

fn decl(role: Role, len: usize) -> BufDecl {
    BufDecl { role, len }
}

/// The fused chain: out = tanh(max(x*w + b, 0) * s).
fn fused(n: usize, s: f32) -> Kernel {
    Kernel {
        name: "chain".into(),
        bufs: vec![
            decl(Role::Input, n),
            decl(Role::Input, n),
            decl(Role::Input, n),
            decl(Role::Output, n),
        ],
        outer: vec![],
        inner: n,
        exprs: vec![
            Expr::Load(contiguous(0)),
            Expr::Load(contiguous(1)),
            Expr::Load(contiguous(2)),
            Expr::Binary(KBinary::Mul, 0, 1),
            Expr::Binary(KBinary::Add, 3, 2),
            Expr::Const(0f32.to_bits()),
            Expr::Binary(KBinary::Max, 4, 5),
            Expr::Const(s.to_bits()),
            Expr::Binary(KBinary::Mul, 6, 7),
            Expr::Unary(KUnary::Tanh, 8),
        ],
        stmts: vec![Stmt::Store {
            dst: contiguous(3),
            expr: 9,
        }],
    }
}

/// One step of the chain as its own kernel: `out = f(a[, b])`.
fn step(name: &str, n: usize, inputs: usize, exprs: Vec<Expr>) -> Kernel {
    let mut bufs: Vec<BufDecl> = (0..inputs).map(|_| decl(Role::Input, n)).collect();
    bufs.push(decl(Role::Output, n));
    let root = exprs.len() as u32 - 1;
    Kernel {
        name: name.into(),
        bufs,
        outer: vec![],
        inner: n,
        exprs,
        stmts: vec![Stmt::Store {
            dst: contiguous(inputs as u32),
            expr: root,
        }],
    }
}

fn median_min(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0])
}

fn time(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    median_min(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1 << 22);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(31);
    let s = 0.5f32;
    let gen = |seed: u32| -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 6.0 - 3.0
            })
            .collect()
    };
    let (x, w, b) = (gen(1), gen(2), gen(3));
    let mut out = vec![0f32; n];

    let t0 = Instant::now();
    let m = JitModule::compile(&[fused(n, s)]).expect("compiles");
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;
    let k = &m.kernels()[0];
    let c = |v: f32| Expr::Const(v.to_bits());
    let l = |i| Expr::Load(contiguous(i));
    let unfused = JitModule::compile(&[
        step(
            "mul",
            n,
            2,
            vec![l(0), l(1), Expr::Binary(KBinary::Mul, 0, 1)],
        ),
        step(
            "add",
            n,
            2,
            vec![l(0), l(1), Expr::Binary(KBinary::Add, 0, 1)],
        ),
        step(
            "relu",
            n,
            1,
            vec![l(0), c(0.0), Expr::Binary(KBinary::Max, 0, 1)],
        ),
        step(
            "scale",
            n,
            1,
            vec![l(0), c(s), Expr::Binary(KBinary::Mul, 0, 1)],
        ),
        step("tanh", n, 1, vec![l(0), Expr::Unary(KUnary::Tanh, 0)]),
    ])
    .expect("compiles");
    let uk = unfused.kernels();

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
            k.run_parallel(
                &mut [Buf::In(&x), Buf::In(&w), Buf::In(&b), Buf::Out(&mut out)],
                2,
            )
            .unwrap()
        }),
    ));
    rows.push((
        "Rust loop, fused (libm tanhf)",
        time(runs, || {
            for i in 0..n {
                out[i] = ((x[i] * w[i] + b[i]).max(0.0) * s).tanh();
            }
        }),
    ));
    let rust_out = out.clone();
    let (mut t1, mut t2) = (vec![0f32; n], vec![0f32; n]);
    rows.push((
        "Rust, 5 separate passes",
        time(runs, || {
            for i in 0..n {
                t1[i] = x[i] * w[i];
            }
            for i in 0..n {
                t2[i] = t1[i] + b[i];
            }
            for i in 0..n {
                t1[i] = t2[i].max(0.0);
            }
            for i in 0..n {
                t2[i] = t1[i] * s;
            }
            for i in 0..n {
                out[i] = t2[i].tanh();
            }
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
    let max_diff = jit_out
        .iter()
        .zip(&rust_out)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("elementwise chain x*w+b -> relu -> *s -> tanh, n = {n}, {runs} runs");
    println!("compile + JIT of the fused kernel: {compile_ms:.2} ms");
    println!(
        "{:<32} {:>10} {:>10} {:>10}",
        "variant", "median ms", "min ms", "Gelem/s"
    );
    let base = rows[0].1 .0;
    for (name, (med, min)) in &rows {
        println!(
            "{name:<32} {med:>10.3} {min:>10.3} {:>10.2}   ({:.2}x the fused JIT)",
            n as f64 / med / 1e6,
            med / base
        );
    }
    println!("max |JIT - Rust| = {max_diff:e}");
}
