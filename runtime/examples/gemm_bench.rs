//! SGEMM throughput: kiln's kernels against the `matrixmultiply` crate.
//!
//! ```text
//! cargo run --release -p kiln-runtime --example gemm_bench [-- SHAPE [ISA]]
//! ```
//!
//! `SHAPE` keeps the shapes whose name contains it (`1024`, `gemv`,
//! `conv` for all convolutions, ...);
//! `ISA` limits kiln to one instruction set (`avx2`, `portable`, `avx512`).
//!
//! For each shape and thread count it prints the median of repeated runs
//! (after warm-up) in ms and GFLOP/s (`2·m·n·k / t`). On a shared machine
//! wall time counts the time other processes held the core; the last column
//! (1 thread only) divides by the median CPU time of the calling thread
//! instead, which does not. Rows: kiln with raw A
//! and B on each available ISA, kiln with B pre-packed (weights), and
//! `matrixmultiply::sgemm`. `matrixmultiply` runs single-threaded here (its
//! `threading` feature would change every user in the workspace), so its
//! 2-thread row splits M (N for a GEMV) in halves over two scoped threads,
//! the way an executor would.

use std::time::{Duration, Instant};

use kiln_runtime::conv::{Conv2d, Conv2dParams};
use kiln_runtime::gemm::{sgemm, Ctx, Isa, MatMut, MatRef, PackedA, PackedB};

fn rand_vec(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Medians of `f`'s wall time and of the calling thread's CPU time, after
/// warm-up, over at least 7 runs and ~1 s.
fn median_secs(mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..3 {
        f();
    }
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    let start = Instant::now();
    while wall.len() < 7 || (start.elapsed() < Duration::from_secs(1) && wall.len() < 500) {
        let (t, c) = (Instant::now(), thread_cpu_secs());
        f();
        cpu.push(thread_cpu_secs() - c);
        wall.push(t.elapsed().as_secs_f64());
    }
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (wall[wall.len() / 2], cpu[cpu.len() / 2])
}

/// `matrixmultiply` on rows `r0..r1` of a row-major product.
fn mm_rows(a: &[f32], b: &[f32], c: &mut [f32], (m, n, k): (usize, usize, usize)) {
    // SAFETY: dense row-major m×k, k×n and m×n buffers of the right sizes.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

/// `matrixmultiply` with the output split in `parts` over scoped threads.
fn mm(a: &[f32], b: &[f32], c: &mut [f32], (m, n, k): (usize, usize, usize), parts: usize) {
    if parts == 1 {
        return mm_rows(a, b, c, (m, n, k));
    }
    if m >= parts {
        let rows = m.div_ceil(parts);
        std::thread::scope(|s| {
            for (i, cc) in c.chunks_mut(rows * n).enumerate() {
                let r = cc.len() / n;
                let aa = &a[i * rows * k..][..r * k];
                s.spawn(move || mm_rows(aa, b, cc, (r, n, k)));
            }
        });
    } else {
        // Skinny: split columns (strided views into B and C).
        let cols = n.div_ceil(parts);
        let cptr = c.as_mut_ptr() as usize;
        std::thread::scope(|s| {
            for j0 in (0..n).step_by(cols) {
                let w = cols.min(n - j0);
                s.spawn(move || {
                    // SAFETY: each thread writes its own column range of C.
                    unsafe {
                        matrixmultiply::sgemm(
                            m,
                            k,
                            w,
                            1.0,
                            a.as_ptr(),
                            k as isize,
                            1,
                            b.as_ptr().add(j0),
                            n as isize,
                            1,
                            0.0,
                            (cptr as *mut f32).add(j0),
                            n as isize,
                            1,
                        )
                    }
                });
            }
        });
    }
}

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let only_isa = std::env::args()
        .nth(2)
        .map(|s| Isa::parse(&s).expect("ISA name"));
    let shapes = [
        ("256^3", 256, 256, 256),
        ("1024^3", 1024, 1024, 1024),
        ("gemv 1x4096x4096", 1, 4096, 4096),
    ];
    println!(
        "CPU ISAs: {:?}; detected: {}",
        Isa::available(),
        Isa::detect()
    );
    println!(
        "{:<18} {:>3}  {:<24} {:>9} {:>8} {:>12}",
        "shape", "thr", "impl", "median ms", "GFLOP/s", "cpu GFLOP/s"
    );
    if filter.is_empty() || filter.contains("conv") || filter.starts_with("dw") {
        bench_convs(&filter, only_isa);
    }
    for (name, m, n, k) in shapes {
        if !name.contains(&filter) {
            continue;
        }
        let a = rand_vec(1, m * k);
        let b = rand_vec(2, k * n);
        let flops = 2.0 * (m * n * k) as f64;
        let mut reference = vec![0.0; m * n];
        mm(&a, &b, &mut reference, (m, n, k), 1);
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            let mut rows: Vec<(String, (f64, f64))> = Vec::new();
            for isa in Isa::available().into_iter().rev() {
                if only_isa.is_some_and(|o| o != isa) {
                    continue;
                }
                let ctx = Ctx::new(isa).with_pool(&pool);
                let av = MatRef::row_major(&a, m, k).unwrap();
                let bv = MatRef::row_major(&b, k, n).unwrap();
                let mut c = vec![0.0; m * n];
                let t = median_secs(|| {
                    let cm = MatMut::row_major(&mut c, m, n).unwrap();
                    sgemm(&ctx, av, bv, cm, false, None).unwrap();
                });
                check(&c, &reference, k);
                rows.push((format!("kiln {isa}"), t));
                let pb = PackedB::new(isa, bv).unwrap();
                let t = median_secs(|| {
                    let cm = MatMut::row_major(&mut c, m, n).unwrap();
                    sgemm(&ctx, av, &pb, cm, false, None).unwrap();
                });
                check(&c, &reference, k);
                rows.push((format!("kiln {isa}, packed B"), t));
            }
            let mut c = vec![0.0; m * n];
            let t = median_secs(|| mm(&a, &b, &mut c, (m, n, k), threads));
            check(&c, &reference, k);
            rows.push(("matrixmultiply".into(), t));
            for (label, (t, cpu)) in rows {
                // The thread's CPU time counts only the calling thread, so
                // it means something for one thread only.
                let cpu_rate = if threads == 1 {
                    format!("{:.1}", flops / cpu / 1e9)
                } else {
                    "-".into()
                };
                println!(
                    "{:<18} {:>3}  {:<24} {:>9.3} {:>8.1} {:>12}",
                    name,
                    threads,
                    label,
                    t * 1e3,
                    flops / t / 1e9,
                    cpu_rate
                );
            }
        }
    }
}

/// Convolutions from ResNet-18 and MobileNet, against the GEMM of the same
/// M, N, K on operands already packed (what the im2col packing costs).
fn bench_convs(filter: &str, only_isa: Option<Isa>) {
    // (name, C, M, groups, kernel, stride, pad, H)
    let cases = [
        ("conv7x7 s2 3->64 224", 3, 64, 1, 7, 2, 3, 224),
        ("conv3x3 64->64 56", 64, 64, 1, 3, 1, 1, 56),
        ("conv3x3 256->256 14", 256, 256, 1, 3, 1, 1, 14),
        ("conv1x1 256->64 56", 256, 64, 1, 1, 1, 0, 56),
        ("dw3x3 128 56", 128, 128, 128, 3, 1, 1, 56),
    ];
    for (name, c, m, g, k, s, pad, h) in cases {
        if !name.contains(filter) && !filter.is_empty() && filter != "conv" {
            continue;
        }
        let p = Conv2dParams {
            in_channels: c,
            out_channels: m,
            groups: g,
            kernel: [k, k],
            strides: [s, s],
            dilations: [1, 1],
            pads: [pad; 4],
        };
        let [oh, ow] = p.output_size(h, h).unwrap();
        let kdim = c / g * k * k;
        let flops = 2.0 * (m * oh * ow * kdim) as f64;
        let x = rand_vec(3, c * h * h);
        let w = rand_vec(4, m * kdim);
        let bias = rand_vec(5, m);
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            for isa in Isa::available().into_iter().rev() {
                if only_isa.is_some_and(|o| o != isa)
                    || (only_isa.is_none() && isa == Isa::Portable)
                {
                    continue;
                }
                let ctx = Ctx::new(isa).with_pool(&pool);
                let conv = Conv2d::new(isa, p.clone(), &w, Some(&bias)).unwrap();
                let mut y = vec![0.0; m * oh * ow];
                let relu = |mut t: kiln_runtime::gemm::EpilogueTile<'_>| {
                    t.for_each_row(|_, r| r.iter_mut().for_each(|v| *v = v.max(0.0)))
                };
                let (t, cpu) = median_secs(|| {
                    conv.run(&ctx, &x, [1, h, h], &mut y, Some(&relu)).unwrap();
                });
                let mut rows = vec![(format!("kiln {isa} conv+bias+relu"), t, cpu)];
                if g == 1 {
                    let pa = PackedA::new(isa, MatRef::row_major(&w, m, kdim).unwrap()).unwrap();
                    let cols = rand_vec(6, kdim * oh * ow);
                    let pb = PackedB::new(isa, MatRef::row_major(&cols, kdim, oh * ow).unwrap())
                        .unwrap();
                    let (t, cpu) = median_secs(|| {
                        let cm = MatMut::row_major(&mut y, m, oh * ow).unwrap();
                        sgemm(&ctx, &pa, &pb, cm, false, None).unwrap();
                    });
                    rows.push((format!("kiln {isa} same GEMM, packed"), t, cpu));
                }
                for (label, t, cpu) in rows {
                    let cpu_rate = if threads == 1 {
                        format!("{:.1}", flops / cpu / 1e9)
                    } else {
                        "-".into()
                    };
                    println!(
                        "{:<22} {:>3}  {:<30} {:>9.3} {:>8.1} {:>12}",
                        name,
                        threads,
                        label,
                        t * 1e3,
                        flops / t / 1e9,
                        cpu_rate
                    );
                }
            }
        }
    }
}

fn check(c: &[f32], reference: &[f32], k: usize) {
    let tol = 1e-5 * (k as f32).sqrt() * 4.0;
    for (x, y) in c.iter().zip(reference) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
    }
}
