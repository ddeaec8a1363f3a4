//! Implicit im2col: packing a GEMM panel of the columns matrix straight from
//! an NCHW input.
//!
//! Row `kk = (ci·KH + kh)·KW + kw` and column `j = oh·OW + ow` of the columns
//! matrix hold `x[ci][oh·SH + kh·DH − top][ow·SW + kw·DW − left]`, or 0 in
//! the padding.

use super::Conv2dParams;
use crate::gemm::{AlignedBuf, PanelSource};

/// The sizes a convolution's inner loops need, as plain numbers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub top: usize,
    pub left: usize,
    pub groups: usize,
}

impl Geometry {
    pub(crate) fn new(p: &Conv2dParams, h: usize, w: usize, oh: usize, ow: usize) -> Self {
        Geometry {
            h,
            w,
            oh,
            ow,
            kh: p.kernel[0],
            kw: p.kernel[1],
            sh: p.strides[0],
            sw: p.strides[1],
            dh: p.dilations[0],
            dw: p.dilations[1],
            top: p.pads[0],
            left: p.pads[1],
            groups: p.groups,
        }
    }

    /// The output positions `o` whose input index `o·s + off − pad` lies in
    /// `0..len`, as a range clipped to `0..out`.
    pub(crate) fn valid(
        out: usize,
        len: usize,
        s: usize,
        off: usize,
        pad: usize,
    ) -> std::ops::Range<usize> {
        // o·s + off >= pad  and  o·s + off < len + pad
        let lo = pad.saturating_sub(off).div_ceil(s);
        let hi = (len + pad).saturating_sub(off).div_ceil(s);
        lo.min(out)..hi.min(out)
    }
}

/// The columns matrix of batch `b = image·G + group` of a convolution.
pub(crate) struct Im2col<'a> {
    pub geo: &'a Geometry,
    /// The whole NCHW input.
    pub x: &'a [f32],
    /// Elements of one group's channels of one image: `C/G · H · W`.
    pub group_len: usize,
    /// Rows of the columns matrix: `C/G · KH · KW`.
    pub k: usize,
}

impl PanelSource for Im2col<'_> {
    fn panel<'s>(
        &'s self,
        batch: usize,
        j0: usize,
        cols: usize,
        nr: usize,
        scratch: &'s mut AlignedBuf,
    ) -> &'s [f32] {
        let strips = cols.div_ceil(nr);
        let dst = scratch.resize(strips * nr * self.k);
        // `batch` enumerates (image, group) pairs in the order their channel
        // blocks appear in x, so the group's input starts at batch·C/G·H·W.
        let x = &self.x[batch * self.group_len..][..self.group_len];
        match nr {
            8 => pack::<8>(self.geo, x, self.k, j0, cols, dst),
            16 => pack::<16>(self.geo, x, self.k, j0, cols, dst),
            32 => pack::<32>(self.geo, x, self.k, j0, cols, dst),
            _ => unreachable!("no ISA has NR = {nr}"),
        }
        dst
    }
}

/// A run of panel columns inside one strip and one output row.
#[derive(Clone, Copy)]
struct Seg {
    /// Index in the panel of the run's first element for row `kk = 0`.
    dst: usize,
    oh: usize,
    ow: usize,
    len: usize,
}

/// Packs columns `j0..j0+cols` of the columns matrix in `NR`-wide strips.
fn pack<const NR: usize>(
    g: &Geometry,
    x: &[f32],
    k: usize,
    j0: usize,
    cols: usize,
    dst: &mut [f32],
) {
    // The runs depend only on the columns: cut them once per panel.
    let mut segs = Vec::with_capacity(cols.div_ceil(NR) * 2 + 2);
    let mut jj = 0;
    while jj < cols {
        let (s, lane) = (jj / NR, jj % NR);
        let (oh, ow) = ((j0 + jj) / g.ow, (j0 + jj) % g.ow);
        let len = (NR - lane).min(g.ow - ow).min(cols - jj);
        segs.push(Seg {
            dst: s * k * NR + lane,
            oh,
            ow,
            len,
        });
        jj += len;
    }
    if !cols.is_multiple_of(NR) {
        // Lanes past the last column stay zero for every row.
        dst[(cols / NR) * k * NR..].fill(0.0);
    }
    let hw = g.h * g.w;
    let mut kk = 0;
    for ci in 0..k / (g.kh * g.kw) {
        let plane = &x[ci * hw..][..hw];
        for kh in 0..g.kh {
            for kw in 0..g.kw {
                let ok = Geometry::valid(g.ow, g.w, g.sw, kw * g.dw, g.left);
                let off = kk * NR;
                for sg in &segs {
                    let d = &mut dst[sg.dst + off..][..sg.len];
                    let ih = (sg.oh * g.sh + kh * g.dh).wrapping_sub(g.top);
                    if ih >= g.h {
                        d.fill(0.0);
                        continue;
                    }
                    let row = &plane[ih * g.w..][..g.w];
                    let (lo, hi) = (ok.start.max(sg.ow), ok.end.min(sg.ow + sg.len));
                    if lo >= hi {
                        d.fill(0.0);
                        continue;
                    }
                    let first = lo * g.sw + kw * g.dw - g.left;
                    if sg.len == NR && lo == sg.ow && hi == sg.ow + NR {
                        // A whole strip from one input row, no padding:
                        // fixed-size loops the compiler unrolls.
                        let d: &mut [f32; NR] = d.try_into().expect("NR");
                        if g.sw == 1 {
                            let src: &[f32; NR] = row[first..first + NR].try_into().expect("NR");
                            *d = *src;
                        } else {
                            let src = &row[first..first + (NR - 1) * g.sw + 1];
                            for (t, v) in d.iter_mut().enumerate() {
                                *v = src[t * g.sw];
                            }
                        }
                        continue;
                    }
                    d[..lo - sg.ow].fill(0.0);
                    d[hi - sg.ow..].fill(0.0);
                    let mid = &mut d[lo - sg.ow..hi - sg.ow];
                    if g.sw == 1 {
                        mid.copy_from_slice(&row[first..][..hi - lo]);
                    } else {
                        for (t, v) in mid.iter_mut().enumerate() {
                            *v = row[first + t * g.sw];
                        }
                    }
                }
                kk += 1;
            }
        }
    }
}
