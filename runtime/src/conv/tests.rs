//! Convolution against a naive direct convolution in f64.

use super::*;
use crate::gemm::tests::rand_vec;

/// Direct NCHW convolution in f64.
fn naive(
    p: &Conv2dParams,
    x: &[f32],
    [n, h, w]: [usize; 3],
    wt: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f64> {
    let [oh, ow] = p.output_size(h, w).unwrap();
    let (c, m, g) = (p.in_channels, p.out_channels, p.groups);
    let (cg, mg) = (c / g, m / g);
    let [kh, kw] = p.kernel;
    let mut y = vec![0.0f64; n * m * oh * ow];
    for b in 0..n {
        for o in 0..m {
            let grp = o / mg;
            for i in 0..oh {
                for j in 0..ow {
                    let mut s = bias.map_or(0.0, |bb| bb[o] as f64);
                    for ci in 0..cg {
                        let ch = grp * cg + ci;
                        for a in 0..kh {
                            for e in 0..kw {
                                let ih = (i * p.strides[0] + a * p.dilations[0]) as isize
                                    - p.pads[0] as isize;
                                let iw = (j * p.strides[1] + e * p.dilations[1]) as isize
                                    - p.pads[1] as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                    continue;
                                }
                                let xv =
                                    x[((b * c + ch) * h + ih as usize) * w + iw as usize] as f64;
                                let wv = wt[((o * cg + ci) * kh + a) * kw + e] as f64;
                                s += xv * wv;
                            }
                        }
                    }
                    y[((b * m + o) * oh + i) * ow + j] = s;
                }
            }
        }
    }
    y
}

#[allow(clippy::too_many_arguments)]
fn params(
    c: usize,
    m: usize,
    g: usize,
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    pads: [usize; 4],
) -> Conv2dParams {
    Conv2dParams {
        in_channels: c,
        out_channels: m,
        groups: g,
        kernel: k,
        strides: s,
        dilations: d,
        pads,
    }
}

/// Runs `p` on every ISA, with and without a pool, checks against the
/// naive result and that all thread counts agree bitwise.
fn check(p: &Conv2dParams, [n, h, w]: [usize; 3], with_bias: bool) {
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let x = rand_vec(21, n * p.in_channels * h * w);
    let wt = rand_vec(
        22,
        p.out_channels * p.in_channels / p.groups * p.kernel[0] * p.kernel[1],
    );
    let bias = rand_vec(23, p.out_channels);
    let bias = with_bias.then_some(&bias[..]);
    let want = naive(p, &x, [n, h, w], &wt, bias);
    let [oh, ow] = p.output_size(h, w).unwrap();
    let kdim = p.in_channels / p.groups * p.kernel[0] * p.kernel[1];
    for isa in Isa::available() {
        let conv = Conv2d::new(isa, p.clone(), &wt, bias).unwrap();
        let mut first: Option<Vec<f32>> = None;
        for ctx in [Ctx::new(isa), Ctx::new(isa).with_pool(&two)] {
            let mut y = vec![f32::NAN; n * p.out_channels * oh * ow];
            // Epilogue: relu, and count visits (each element exactly once).
            let visits = std::sync::Mutex::new(vec![0u8; y.len()]);
            let epi = |mut t: EpilogueTile<'_>| {
                let (b, r0, c0) = (t.batch, t.row0, t.col0);
                let mut v = visits.lock().unwrap();
                t.for_each_row(|i, row| {
                    for (j, x) in row.iter_mut().enumerate() {
                        v[((b * p.out_channels + r0 + i) * oh * ow) + c0 + j] += 1;
                        *x = x.max(0.0);
                    }
                });
            };
            conv.run(&ctx, &x, [n, h, w], &mut y, Some(&epi)).unwrap();
            assert!(
                visits.lock().unwrap().iter().all(|&v| v == 1),
                "{conv:?}: visits"
            );
            for (idx, (&g, &r)) in y.iter().zip(&want).enumerate() {
                let r = r.max(0.0);
                let tol = 1e-5 * (kdim as f64 + 1.0).sqrt() * (1.0 + r.abs()) + 1e-6;
                assert!(
                    (g as f64 - r).abs() <= tol,
                    "{isa} {conv:?}: y[{idx}] = {g}, want {r}"
                );
            }
            match &first {
                None => first = Some(y),
                Some(f) => assert!(
                    f.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa} {conv:?}: threads differ"
                ),
            }
        }
        // The one-shot entry point agrees with the prepared one.
        let mut y1 = vec![0.0; n * p.out_channels * oh * ow];
        let mut y2 = y1.clone();
        conv.run(&Ctx::new(isa), &x, [n, h, w], &mut y1, None)
            .unwrap();
        conv2d(
            &Ctx::new(isa),
            p.clone(),
            &x,
            [n, h, w],
            &wt,
            bias,
            &mut y2,
            None,
        )
        .unwrap();
        assert_eq!(y1, y2);
    }
}

#[test]
fn plain_3x3_with_padding() {
    check(
        &params(3, 8, 1, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        [2, 9, 11],
        true,
    );
    check(
        &params(1, 1, 1, [3, 3], [1, 1], [1, 1], [0; 4]),
        [1, 3, 3],
        false,
    );
    check(
        &params(17, 3, 1, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        [1, 17, 17],
        true,
    );
}

#[test]
fn strides_dilations_asymmetric_pads() {
    check(
        &params(4, 6, 1, [3, 2], [2, 3], [1, 1], [0, 1, 2, 0]),
        [2, 13, 10],
        true,
    );
    check(
        &params(5, 7, 1, [3, 3], [1, 1], [2, 3], [2, 3, 2, 3]),
        [1, 12, 14],
        false,
    );
    check(
        &params(3, 64, 1, [7, 7], [2, 2], [1, 1], [3, 3, 3, 3]),
        [1, 32, 32],
        true,
    );
    // Padding wider than the kernel: some output rows see only zeros.
    check(
        &params(2, 3, 1, [2, 2], [1, 1], [1, 1], [3, 3, 3, 3]),
        [1, 3, 4],
        true,
    );
}

#[test]
fn grouped() {
    check(
        &params(8, 12, 4, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        [2, 7, 9],
        true,
    );
    check(
        &params(6, 4, 2, [1, 1], [1, 1], [1, 1], [0; 4]),
        [3, 5, 5],
        true,
    );
    check(
        &params(6, 6, 3, [3, 1], [2, 1], [1, 2], [1, 0, 1, 0]),
        [1, 9, 6],
        false,
    );
}

#[test]
fn depthwise() {
    check(
        &params(8, 8, 8, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        [2, 17, 19],
        true,
    );
    check(
        &params(5, 5, 5, [5, 5], [2, 2], [1, 1], [2, 2, 2, 2]),
        [1, 16, 15],
        false,
    );
    check(
        &params(3, 3, 3, [3, 3], [1, 2], [2, 1], [0, 1, 2, 1]),
        [2, 11, 13],
        true,
    );
    // Channel multiplier 2 is grouped, not depthwise-direct; still right.
    check(
        &params(4, 8, 4, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        [1, 6, 6],
        true,
    );
}

#[test]
fn pointwise() {
    check(
        &params(16, 24, 1, [1, 1], [1, 1], [1, 1], [0; 4]),
        [2, 14, 14],
        true,
    );
    check(
        &params(3, 1023, 1, [1, 1], [1, 1], [1, 1], [0; 4]),
        [1, 3, 1],
        true,
    );
    // Strided 1×1 (ResNet downsample) goes through im2col.
    check(
        &params(8, 16, 1, [1, 1], [2, 2], [1, 1], [0; 4]),
        [1, 9, 9],
        true,
    );
}

#[test]
fn larger_than_one_block() {
    // K = 64·9 > KC, M > MC, OH·OW over several units.
    check(
        &params(64, 80, 1, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        [1, 20, 20],
        true,
    );
}

#[test]
fn one_dimensional_is_height_one() {
    let p = Conv2dParams::from_spatial(4, 6, 2, &[3], &[2], &[1], &[1, 2]).unwrap();
    assert_eq!(p.kernel, [1, 3]);
    assert_eq!(p.pads, [0, 1, 0, 2]);
    check(&p, [2, 1, 23], true);
    assert!(matches!(
        Conv2dParams::from_spatial(4, 6, 1, &[3, 3, 3], &[1; 3], &[1; 3], &[0; 6]),
        Err(ConvError::Unsupported(_))
    ));
    assert!(matches!(
        Conv2dParams::from_spatial(4, 6, 1, &[3, 3], &[1], &[1; 2], &[0; 4]),
        Err(ConvError::Invalid(_))
    ));
}

#[test]
fn empty_input_planes_give_the_bias() {
    // H = 0 with enough padding still has outputs: only padding is read.
    check(
        &params(2, 4, 1, [2, 2], [1, 1], [1, 1], [1, 1, 1, 1]),
        [1, 0, 3],
        true,
    );
    check(
        &params(3, 3, 3, [2, 2], [1, 1], [1, 1], [1, 1, 1, 1]),
        [2, 1, 0],
        true,
    );
    // No images: nothing to do.
    check(
        &params(2, 4, 1, [1, 1], [1, 1], [1, 1], [0; 4]),
        [0, 3, 3],
        true,
    );
}

#[test]
fn bad_input_is_an_error() {
    let isa = Isa::Portable;
    let ok = params(4, 6, 2, [3, 3], [1, 1], [1, 1], [0; 4]);
    let wt = vec![0.0; 6 * 2 * 9];
    let invalid = |r: Result<Conv2d, ConvError>| assert!(matches!(r, Err(ConvError::Invalid(_))));
    invalid(Conv2d::new(
        isa,
        params(4, 6, 3, [3, 3], [1, 1], [1, 1], [0; 4]),
        &wt,
        None,
    ));
    invalid(Conv2d::new(
        isa,
        params(4, 6, 0, [3, 3], [1, 1], [1, 1], [0; 4]),
        &wt,
        None,
    ));
    invalid(Conv2d::new(
        isa,
        params(4, 6, 2, [3, 3], [0, 1], [1, 1], [0; 4]),
        &wt,
        None,
    ));
    invalid(Conv2d::new(isa, ok.clone(), &wt[1..], None));
    invalid(Conv2d::new(isa, ok.clone(), &wt, Some(&[0.0; 5])));
    let conv = Conv2d::new(isa, ok.clone(), &wt, None).unwrap();
    let ctx = Ctx::new(isa);
    let x = vec![0.0; 4 * 5 * 5];
    let mut y = vec![0.0; 6 * 3 * 3];
    conv.run(&ctx, &x, [1, 5, 5], &mut y, None).unwrap();
    // Wrong buffer sizes, input smaller than the kernel, overflow.
    assert!(conv.run(&ctx, &x[1..], [1, 5, 5], &mut y, None).is_err());
    assert!(conv.run(&ctx, &x, [1, 5, 5], &mut y[1..], None).is_err());
    assert!(conv.run(&ctx, &x, [1, 2, 50], &mut y, None).is_err());
    assert!(conv
        .run(&ctx, &x, [usize::MAX, 5, 5], &mut y, None)
        .is_err());
    // Weights packed for another ISA.
    if let Some(other) = Isa::available().into_iter().find(|&i| i != isa) {
        let err = conv.run(&Ctx::new(other), &x, [1, 5, 5], &mut y, None);
        assert!(matches!(
            err,
            Err(ConvError::Gemm(GemmError::IsaMismatch { .. }))
        ));
    }
}
