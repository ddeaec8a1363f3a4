//! SGEMM against a naive f64 product, on every ISA this CPU has.

use super::*;

/// Deterministic values in [-1, 1).
pub(crate) fn rand_vec(seed: u64, len: usize) -> Vec<f32> {
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

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

/// How an operand is laid out in memory.
#[derive(Clone, Copy, Debug)]
enum Layout {
    RowMajor,
    /// Stored as the transpose (column-major).
    Transposed,
    /// Row-major with padded rows and every other column (cs = 2).
    Strided,
}

/// A `rows × cols` matrix with values from `seed`, stored per `layout`.
fn make(seed: u64, rows: usize, cols: usize, layout: Layout) -> (Vec<f32>, usize, usize, Vec<f64>) {
    let vals = rand_vec(seed, rows * cols);
    let logical: Vec<f64> = vals.iter().map(|&x| x as f64).collect();
    let (rs, cs, len) = match layout {
        Layout::RowMajor => (cols, 1, rows * cols),
        Layout::Transposed => (1, rows, rows * cols),
        Layout::Strided => (2 * cols + 3, 2, rows * (2 * cols + 3)),
    };
    let mut data = vec![f32::NAN; len.max(1)];
    for i in 0..rows {
        for j in 0..cols {
            data[i * rs + j * cs] = vals[i * cols + j];
        }
    }
    (data, rs, cs, logical)
}

/// Checks `got` against `c0 (if acc) + A·B` in f64 with a forward error bound.
fn check_close(
    got: &[f32],
    ldc: usize,
    a: &[f64],
    b: &[f64],
    c0: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
    what: &str,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = c0.map_or(0.0, |c| c[i * ldc + j] as f64);
            let mut mag = s.abs();
            for p in 0..k {
                let t = a[i * k + p] * b[p * n + j];
                s += t;
                mag += t.abs();
            }
            let g = got[i * ldc + j] as f64;
            let tol = (k as f64 + 2.0) * f32::EPSILON as f64 * mag + 1e-30;
            assert!(
                (g - s).abs() <= tol,
                "{what}: C[{i},{j}] = {g}, want {s} (tol {tol})"
            );
        }
    }
}

const SIZES: [(usize, usize, usize); 12] = [
    (1, 1, 1),
    (3, 17, 64),
    (17, 3, 1),
    (64, 64, 17),
    (17, 64, 3),
    (1, 1023, 17),
    (3, 1023, 64),
    (1023, 3, 17),
    (1023, 17, 1),
    (17, 3, 1023),
    (64, 17, 1023),
    (1, 64, 1023),
];

fn run_case(isa: Isa, (m, n, k): (usize, usize, usize), la: Layout, lb: Layout, acc: bool) {
    let (ad, ars, acs, al) = make(1 + m as u64, m, k, la);
    let (bd, brs, bcs, bl) = make(2 + n as u64 * 7, k, n, lb);
    let ldc = n + 5;
    let c0 = rand_vec(3, m * ldc);
    let mut c = c0.clone();
    let a = MatRef::new(&ad, m, k, ars, acs).unwrap();
    let b = MatRef::new(&bd, k, n, brs, bcs).unwrap();
    let cm = MatMut::new(&mut c, m, n, ldc).unwrap();
    sgemm(&Ctx::new(isa), a, b, cm, acc, None).unwrap();
    let what = format!("{isa} {m}x{n}x{k} A {la:?} B {lb:?} acc {acc}");
    check_close(&c, ldc, &al, &bl, acc.then_some(&c0[..]), (m, n, k), &what);
    // The padding between rows of C is never touched.
    for i in 0..m {
        for j in n..ldc {
            assert_eq!(
                c[i * ldc + j].to_bits(),
                c0[i * ldc + j].to_bits(),
                "{what}: pad"
            );
        }
    }
}

#[test]
fn matches_f64_reference_on_every_isa() {
    for isa in Isa::available() {
        for &size in &SIZES {
            run_case(isa, size, Layout::RowMajor, Layout::RowMajor, false);
        }
    }
}

#[test]
fn all_small_size_combinations() {
    let dims = [1, 3, 17, 64];
    for isa in Isa::available() {
        for &m in &dims {
            for &n in &dims {
                for &k in &dims {
                    run_case(isa, (m, n, k), Layout::RowMajor, Layout::RowMajor, false);
                }
            }
        }
    }
}

#[test]
fn strided_transposed_and_accumulating_operands() {
    let layouts = [Layout::RowMajor, Layout::Transposed, Layout::Strided];
    for isa in Isa::available() {
        for la in layouts {
            for lb in layouts {
                for acc in [false, true] {
                    run_case(isa, (17, 33, 70), la, lb, acc);
                    run_case(isa, (1, 40, 300), la, lb, acc);
                }
            }
        }
    }
}

#[test]
fn prepacked_operands_match_raw_bitwise() {
    for isa in Isa::available() {
        for &(m, n, k) in &SIZES {
            let ad = rand_vec(4, m * k);
            let bd = rand_vec(5, k * n);
            let a = MatRef::row_major(&ad, m, k).unwrap();
            let b = MatRef::row_major(&bd, k, n).unwrap();
            let ctx = Ctx::new(isa);
            let mut raw = vec![0.0; m * n];
            sgemm(
                &ctx,
                a,
                b,
                MatMut::row_major(&mut raw, m, n).unwrap(),
                false,
                None,
            )
            .unwrap();
            let pa = PackedA::new(isa, a).unwrap();
            let pb = PackedB::new(isa, b).unwrap();
            for (lhs, rhs) in [
                (Lhs::Packed(&pa), Rhs::Raw(b)),
                (Lhs::Raw(a), Rhs::Packed(&pb)),
                (Lhs::Packed(&pa), Rhs::Packed(&pb)),
            ] {
                let mut c = vec![7.0; m * n];
                sgemm(
                    &ctx,
                    lhs,
                    rhs,
                    MatMut::row_major(&mut c, m, n).unwrap(),
                    false,
                    None,
                )
                .unwrap();
                assert!(
                    c.iter().zip(&raw).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{isa} {m}x{n}x{k}"
                );
            }
        }
    }
}

#[test]
fn one_and_two_threads_are_bitwise_equal() {
    let two = pool(2);
    let three = pool(3);
    let sizes = [
        (64, 64, 64),
        (1, 1023, 64),
        (1023, 17, 64),
        (130, 300, 600),
        (5, 4000, 20),
    ];
    let epi = |mut t: EpilogueTile<'_>| {
        let r0 = t.row0;
        t.for_each_row(|i, row| {
            for x in row {
                *x = (*x + 0.01 * (r0 + i) as f32).max(0.0);
            }
        })
    };
    for isa in Isa::available() {
        for &(m, n, k) in &sizes {
            let ad = rand_vec(6, m * k);
            let bd = rand_vec(7, k * n);
            let a = MatRef::row_major(&ad, m, k).unwrap();
            let b = MatRef::row_major(&bd, k, n).unwrap();
            let pb = PackedB::new(isa, b).unwrap();
            let mut outs = Vec::new();
            for ctx in [
                Ctx::new(isa),
                Ctx::new(isa).with_pool(&two),
                Ctx::new(isa).with_pool(&three),
            ] {
                for rhs in [Rhs::Raw(b), Rhs::Packed(&pb)] {
                    let mut c = vec![0.0; m * n];
                    let cm = MatMut::row_major(&mut c, m, n).unwrap();
                    sgemm(&ctx, a, rhs, cm, false, Some(&epi)).unwrap();
                    outs.push(c);
                }
            }
            for o in &outs[1..] {
                assert!(
                    o.iter()
                        .zip(&outs[0])
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{isa} {m}x{n}x{k}"
                );
            }
        }
    }
}

#[test]
fn epilogue_sees_every_element_once() {
    let two = pool(2);
    for isa in Isa::available() {
        for &(m, n, k) in &[(1, 1, 1), (17, 1023, 3), (1023, 17, 64), (64, 64, 1023)] {
            let ad = rand_vec(8, m * k);
            let bd = rand_vec(9, k * n);
            let bias = rand_vec(10, n);
            let al: Vec<f64> = ad.iter().map(|&x| x as f64).collect();
            let bl: Vec<f64> = bd.iter().map(|&x| x as f64).collect();
            let a = MatRef::row_major(&ad, m, k).unwrap();
            let b = MatRef::row_major(&bd, k, n).unwrap();
            for ctx in [Ctx::new(isa), Ctx::new(isa).with_pool(&two)] {
                let mut c = vec![0.0; m * n];
                let mut plain = vec![0.0; m * n];
                let epi = |mut t: EpilogueTile<'_>| {
                    assert_eq!(t.batch, 0);
                    assert!(t.row0 + t.rows <= m && t.col0 + t.cols <= n);
                    let c0 = t.col0;
                    t.for_each_row(|_, row| {
                        for (j, x) in row.iter_mut().enumerate() {
                            *x = (*x + bias[c0 + j]).max(0.0);
                        }
                    })
                };
                sgemm(
                    &ctx,
                    a,
                    b,
                    MatMut::row_major(&mut c, m, n).unwrap(),
                    false,
                    Some(&epi),
                )
                .unwrap();
                sgemm(
                    &ctx,
                    a,
                    b,
                    MatMut::row_major(&mut plain, m, n).unwrap(),
                    false,
                    None,
                )
                .unwrap();
                check_close(&plain, n, &al, &bl, None, (m, n, k), "plain");
                for i in 0..m {
                    for j in 0..n {
                        let want = (plain[i * n + j] + bias[j]).max(0.0);
                        assert_eq!(c[i * n + j].to_bits(), want.to_bits(), "{isa} {i},{j}");
                    }
                }
            }
        }
    }
}

#[test]
fn batched_with_broadcast_operands() {
    let two = pool(2);
    let (batches, m, n, k) = (5, 17, 33, 20);
    for isa in Isa::available() {
        let ad = rand_vec(11, batches * m * k);
        let bd = rand_vec(12, k * n); // broadcast: one B for every batch
        let a = MatRef::row_major(&ad, m, k).unwrap();
        // Bᵀ stored, used transposed.
        let bt: Vec<f32> = (0..n * k).map(|x| bd[(x % k) * n + x / k]).collect();
        let b = MatRef::new(&bt, k, n, 1, k).unwrap();
        let cstride = m * n + 4;
        for ctx in [Ctx::new(isa), Ctx::new(isa).with_pool(&two)] {
            let mut c = vec![1.0; batches * cstride];
            let seen = std::sync::Mutex::new(vec![0usize; batches]);
            let epi = |t: EpilogueTile<'_>| seen.lock().unwrap()[t.batch] += t.rows * t.cols;
            sgemm_batched(
                &ctx,
                batches,
                (a.into(), m * k),
                (b.into(), 0),
                (MatMut::row_major(&mut c, m, n).unwrap(), cstride),
                true,
                Some(&epi),
            )
            .unwrap();
            assert_eq!(*seen.lock().unwrap(), vec![m * n; batches]);
            let bl: Vec<f64> = bd.iter().map(|&x| x as f64).collect();
            let ones = vec![1.0f32; m * n];
            for bi in 0..batches {
                let al: Vec<f64> = ad[bi * m * k..][..m * k]
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                let got = &c[bi * cstride..][..m * n];
                check_close(got, n, &al, &bl, Some(&ones), (m, n, k), "batched");
                if bi + 1 < batches {
                    assert_eq!(&c[bi * cstride + m * n..][..4], &[1.0; 4]);
                }
            }
        }
    }
}

#[test]
fn empty_dimensions() {
    let ctx = Ctx::detect();
    // k = 0: C = 0, or unchanged when accumulating; the epilogue still runs.
    let mut c = vec![3.0; 6];
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let epi = |_t: EpilogueTile<'_>| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let a = MatRef::row_major(&[], 2, 0).unwrap();
    let b = MatRef::row_major(&[], 0, 3).unwrap();
    sgemm(
        &ctx,
        a,
        b,
        MatMut::row_major(&mut c, 2, 3).unwrap(),
        true,
        Some(&epi),
    )
    .unwrap();
    assert_eq!(c, vec![3.0; 6]);
    sgemm(
        &ctx,
        a,
        b,
        MatMut::row_major(&mut c, 2, 3).unwrap(),
        false,
        Some(&epi),
    )
    .unwrap();
    assert_eq!(c, vec![0.0; 6]);
    assert!(calls.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    // m = 0 or n = 0: nothing to do.
    let a = MatRef::row_major(&[], 0, 4).unwrap();
    let b = MatRef::row_major(&[1.0; 8], 4, 2).unwrap();
    sgemm(
        &ctx,
        a,
        b,
        MatMut::row_major(&mut [], 0, 2).unwrap(),
        false,
        None,
    )
    .unwrap();
}

#[test]
fn bad_input_is_an_error() {
    let ctx = Ctx::new(Isa::Portable);
    let d = vec![0.0; 12];
    // A view past the end of its buffer.
    assert!(matches!(
        MatRef::new(&d, 4, 4, 4, 1),
        Err(GemmError::OutOfBounds { .. })
    ));
    assert!(matches!(
        MatRef::new(&d, usize::MAX, 2, usize::MAX, 1),
        Err(GemmError::Overflow(_))
    ));
    let a = MatRef::row_major(&d, 3, 4).unwrap();
    let b = MatRef::row_major(&d, 3, 4).unwrap();
    let mut c = vec![0.0; 16];
    let err = sgemm(
        &ctx,
        a,
        b,
        MatMut::row_major(&mut c, 3, 4).unwrap(),
        false,
        None,
    );
    assert!(matches!(err, Err(GemmError::Shape(_))), "{err:?}");
    let b = MatRef::row_major(&d, 4, 3).unwrap();
    let err = sgemm(
        &ctx,
        a,
        b,
        MatMut::row_major(&mut c, 3, 4).unwrap(),
        false,
        None,
    );
    assert!(matches!(err, Err(GemmError::Shape(_))), "{err:?}");
    assert!(MatMut::new(&mut c, 4, 4, 3).is_err());
    // Overlapping C batches, and batches past the end of A.
    let err = sgemm_batched(
        &ctx,
        2,
        (a.into(), 0),
        (b.into(), 0),
        (MatMut::row_major(&mut c, 3, 3).unwrap(), 4),
        false,
        None,
    );
    assert!(matches!(err, Err(GemmError::Layout(_))), "{err:?}");
    let err = sgemm_batched(
        &ctx,
        2,
        (a.into(), 12),
        (b.into(), 0),
        (MatMut::new(&mut c, 3, 3, 3).unwrap(), 0),
        false,
        None,
    );
    assert!(err.is_err(), "{err:?}");
    // A packed operand must match the context's ISA.
    for isa in Isa::ALL {
        if isa != Isa::Portable {
            let pb = PackedB::new(isa, b).unwrap();
            let err = sgemm(
                &ctx,
                a,
                &pb,
                MatMut::row_major(&mut c, 3, 3).unwrap(),
                false,
                None,
            );
            assert!(matches!(err, Err(GemmError::IsaMismatch { .. })), "{err:?}");
        }
    }
    for isa in Isa::ALL {
        if !isa.is_available() {
            let err = sgemm(
                &Ctx::new(isa),
                a,
                b,
                MatMut::row_major(&mut c, 3, 3).unwrap(),
                false,
                None,
            );
            assert_eq!(err, Err(GemmError::IsaUnavailable(isa)));
        }
    }
}

#[test]
fn isa_names_and_fallbacks() {
    for isa in Isa::ALL {
        assert_eq!(Isa::parse(isa.name()), Some(isa));
        assert!(isa.at_most().is_available());
        assert!(isa.at_most() as u8 <= isa as u8);
    }
    assert_eq!(Isa::Portable.at_most(), Isa::Portable);
    assert!(Isa::detect().is_available());
    assert_eq!(Isa::parse("sse9"), None);
}
