//! Depthwise convolution (`groups == C == M`): one small filter per channel,
//! run directly, vectorised along output rows.

use super::for_each_plane;
use super::im2col::Geometry;
use crate::gemm::{Ctx, Epilogue, EpilogueTile, Isa};

/// `y[n][c] = bias[c] + Σ_kh Σ_kw w[c][kh][kw] · x[n][c][..]`, summed in that
/// order over every tap, padding included (multiply, then add: the same bits
/// on every ISA and thread count), then `epilogue` on each finished channel
/// plane (a 1-row tile).
pub(crate) fn run(
    ctx: &Ctx<'_>,
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    epilogue: Option<&Epilogue<'_>>,
) {
    let c = g.groups;
    let (hw, ohw, kk) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
    let avx2 = ctx.isa() != Isa::Portable && Isa::Avx2.is_available();
    let work = y.len() * kk;
    for_each_plane(ctx, y, ohw, work, |idx, out| {
        let ch = idx % c;
        let xin = &x[idx * hw..][..hw];
        let wt = &w[ch * kk..][..kk];
        let b = bias.map_or(0.0, |b| b[ch]);
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: AVX2 and FMA are available (checked just above).
            unsafe { plane_avx2(g, xin, wt, b, out) };
        } else {
            plane(g, xin, wt, b, out);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = avx2;
            plane(g, xin, wt, b, out);
        }
        if let Some(e) = epilogue {
            // SAFETY: `out` is this plane, exclusively borrowed for the call.
            let tile = unsafe { EpilogueTile::new(idx / c, ch, 0, 1, ohw, out.as_mut_ptr(), ohw) };
            e(tile);
        }
    });
}

/// [`plane`] compiled for AVX2 (wider vectors; no contraction into FMA).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(g: &Geometry, x: &[f32], w: &[f32], bias: f32, out: &mut [f32]) {
    plane(g, x, w, bias, out)
}

/// One channel plane. The input is first copied into a zero-padded plane,
/// so every tap of every output is a plain load; then each tap adds its
/// contribution to a whole output row (a loop the compiler vectorises).
#[inline(always)]
fn plane(g: &Geometry, x: &[f32], w: &[f32], bias: f32, out: &mut [f32]) {
    // Padded extents: everything any tap reads.
    let ph = (g.top + g.h).max((g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1);
    let pw = (g.left + g.w).max((g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1);
    // One spare row: the stride-1 path below reads a little past the last.
    let mut padded = vec![0.0f32; (ph + 1) * pw];
    if g.w > 0 {
        for (ih, row) in x.chunks_exact(g.w).enumerate() {
            padded[(g.top + ih) * pw + g.left..][..g.w].copy_from_slice(row);
        }
    }
    if g.sh == 1 && g.sw == 1 {
        // Compute `OH` rows of the padded width as one long vector: each tap
        // is then one shifted multiply-add over the whole plane, and the
        // `pw - OW` extra columns per row are dropped at the end.
        let n = g.oh * pw;
        let mut acc = vec![bias; n];
        for kh in 0..g.kh {
            for (kw, &wt) in w[kh * g.kw..][..g.kw].iter().enumerate() {
                let xs = &padded[kh * g.dh * pw + kw * g.dw..][..n];
                for (y, &x) in acc.iter_mut().zip(xs) {
                    *y += wt * x;
                }
            }
        }
        for (yrow, arow) in out.chunks_exact_mut(g.ow).zip(acc.chunks_exact(pw)) {
            yrow.copy_from_slice(&arow[..g.ow]);
        }
        return;
    }
    for (oh, yrow) in out.chunks_exact_mut(g.ow).enumerate() {
        yrow.fill(bias);
        for kh in 0..g.kh {
            let prow = &padded[(oh * g.sh + kh * g.dh) * pw..][..pw];
            for (kw, &wt) in w[kh * g.kw..][..g.kw].iter().enumerate() {
                let xs = &prow[kw * g.dw..];
                if g.sw == 1 {
                    for (y, &x) in yrow.iter_mut().zip(&xs[..g.ow]) {
                        *y += wt * x;
                    }
                } else {
                    for (y, &x) in yrow.iter_mut().zip(xs.iter().step_by(g.sw)) {
                        *y += wt * x;
                    }
                }
            }
        }
    }
}
