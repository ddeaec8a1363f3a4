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
        let g = self.geo;
        let k = self.k;
        let strips = cols.div_ceil(nr);
        let dst = scratch.resize(strips * nr * k);
        // `batch` enumerates (image, group) pairs in the order their channel
        // blocks appear in x, so the group's input starts at batch·C/G·H·W.
        let x = &self.x[batch * self.group_len..][..self.group_len];
        let hw = g.h * g.w;
        for kk in 0..k {
            let kw = kk % g.kw;
            let kh = (kk / g.kw) % g.kh;
            let ci = kk / (g.kw * g.kh);
            let plane = &x[ci * hw..][..hw];
            let cols_ok = Geometry::valid(g.ow, g.w, g.sw, kw * g.dw, g.left);
            for s in 0..strips {
                let d = &mut dst[(s * k + kk) * nr..][..nr];
                let js = j0 + s * nr;
                let je = (js + nr).min(j0 + cols);
                // Walk the strip's columns one output row at a time.
                let mut j = js;
                while j < je {
                    let (oh, ow0) = (j / g.ow, j % g.ow);
                    let len = (g.ow - ow0).min(je - j);
                    let seg = &mut d[j - js..][..len];
                    let ih = (oh * g.sh + kh * g.dh).wrapping_sub(g.top);
                    if ih >= g.h {
                        seg.fill(0.0);
                    } else {
                        let row = &plane[ih * g.w..][..g.w];
                        let lo = cols_ok.start.clamp(ow0, ow0 + len);
                        let hi = cols_ok.end.clamp(lo, ow0 + len);
                        seg[..lo - ow0].fill(0.0);
                        seg[hi - ow0..].fill(0.0);
                        let mid = &mut seg[lo - ow0..hi - ow0];
                        if !mid.is_empty() {
                            let first = lo * g.sw + kw * g.dw - g.left;
                            if g.sw == 1 {
                                mid.copy_from_slice(&row[first..][..mid.len()]);
                            } else {
                                for (t, v) in mid.iter_mut().enumerate() {
                                    *v = row[first + t * g.sw];
                                }
                            }
                        }
                    }
                    j += len;
                }
                d[je - js..].fill(0.0);
            }
        }
        dst
    }
}
