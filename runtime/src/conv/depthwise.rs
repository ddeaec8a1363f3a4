//! Depthwise convolution (`groups == C == M`): one small filter per channel,
//! run directly, vectorised along output rows.

use super::for_each_plane;
use super::im2col::Geometry;
use crate::gemm::{Ctx, Epilogue, EpilogueTile, Isa};

/// `y[n][c] = bias[c] + Σ_kh Σ_kw w[c][kh][kw] · x[n][c][..]`, summed in that
/// order (multiply, then add: the same bits on every ISA), then `epilogue`
/// on each finished channel plane (a 1-row tile).
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

#[inline(always)]
fn plane(g: &Geometry, x: &[f32], w: &[f32], bias: f32, out: &mut [f32]) {
    // Per kernel column: the output columns it reaches and the input column
    // of the first (independent of the output row, so computed once).
    let mut cols = [(0usize, 0usize, 0usize); 16];
    let mut cols_vec = Vec::new();
    let taps: &mut [(usize, usize, usize)] = if g.kw <= cols.len() {
        &mut cols[..g.kw]
    } else {
        cols_vec.resize(g.kw, (0, 0, 0));
        &mut cols_vec
    };
    for (kw, t) in taps.iter_mut().enumerate() {
        let r = Geometry::valid(g.ow, g.w, g.sw, kw * g.dw, g.left);
        let first = if r.is_empty() {
            0
        } else {
            r.start * g.sw + kw * g.dw - g.left
        };
        *t = (r.start, r.end, first);
    }
    for (oh, yrow) in out.chunks_exact_mut(g.ow).enumerate() {
        yrow.fill(bias);
        for kh in 0..g.kh {
            let ih = (oh * g.sh + kh * g.dh).wrapping_sub(g.top);
            if ih >= g.h {
                continue;
            }
            let xrow = &x[ih * g.w..][..g.w];
            for (kw, &(lo, hi, first)) in taps.iter().enumerate() {
                if lo >= hi {
                    continue;
                }
                let wt = w[kh * g.kw + kw];
                let ys = &mut yrow[lo..hi];
                if g.sw == 1 {
                    for (yv, xv) in ys.iter_mut().zip(&xrow[first..][..hi - lo]) {
                        *yv += wt * xv;
                    }
                } else {
                    for (t, yv) in ys.iter_mut().enumerate() {
                        *yv += wt * xrow[first + t * g.sw];
                    }
                }
            }
        }
    }
}
