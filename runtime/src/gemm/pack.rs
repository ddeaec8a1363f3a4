//! Packing operands into the layouts the microkernels stream.
//!
//! A is packed in panels of `mr` rows: panel `q` holds rows `q*mr..` for all
//! of K, step `p` at `[(q*K + p) * mr ..][..mr]`. B is packed in strips of
//! `nr` columns: strip `s` holds columns `s*nr..` for all of K, step `p` at
//! `[(s*K + p) * nr ..][..nr]`. Rows and columns past the matrix's edge are
//! zero, so every panel and strip is full.

use super::MatRef;

/// Floats in a packing of `len` rows (A) or columns (B) in groups of `r`
/// over `k`: `ceil(len / r) * r * k`.
pub(crate) fn packed_len(len: usize, r: usize, k: usize) -> Option<usize> {
    len.div_ceil(r).checked_mul(r)?.checked_mul(k)
}

/// Packs all of `a` in `mr`-row panels into `dst` (`packed_len(m, mr, k)`).
pub(crate) fn pack_a(a: &MatRef<'_>, mr: usize, dst: &mut [f32]) {
    let k = a.cols();
    if k == 0 {
        return;
    }
    for (q, panel) in dst.chunks_exact_mut(mr * k).enumerate() {
        pack_a_panel(a, q * mr, mr, panel);
    }
}

/// Packs rows `i0..i0+mr` of `a` (those that exist) into one panel.
pub(crate) fn pack_a_panel(a: &MatRef<'_>, i0: usize, mr: usize, dst: &mut [f32]) {
    let k = a.cols();
    let rows = a.rows().saturating_sub(i0).min(mr);
    let (rs, cs) = a.strides();
    let data = a.data();
    if rows < mr {
        dst.fill(0.0);
    }
    if cs == 1 {
        // Rows are contiguous: read each row once, scatter with stride mr.
        for i in 0..rows {
            let row = &data[(i0 + i) * rs..][..k];
            for (p, &x) in row.iter().enumerate() {
                dst[p * mr + i] = x;
            }
        }
    } else {
        for (p, step) in dst.chunks_exact_mut(mr).enumerate() {
            for (i, d) in step[..rows].iter_mut().enumerate() {
                *d = data[(i0 + i) * rs + p * cs];
            }
        }
    }
}

/// Packs columns `j0..j0+cols` of `b` (all of K) in `nr`-column strips into
/// `dst` (`packed_len(cols, nr, k)` floats).
pub(crate) fn pack_b(b: &MatRef<'_>, j0: usize, cols: usize, nr: usize, dst: &mut [f32]) {
    let k = b.rows();
    if k == 0 {
        return;
    }
    let (rs, cs) = b.strides();
    if cs == 1 {
        // Row-major: read each row's segment once, left to right, and deal
        // it out to the strips (long contiguous reads suit the prefetchers).
        let strips = cols.div_ceil(nr);
        if !cols.is_multiple_of(nr) {
            dst[(strips - 1) * nr * k..].fill(0.0);
        }
        match nr {
            8 => deal_rows::<8>(b.data(), rs, j0, cols, k, dst),
            16 => deal_rows::<16>(b.data(), rs, j0, cols, k, dst),
            32 => deal_rows::<32>(b.data(), rs, j0, cols, k, dst),
            _ => unreachable!("no ISA has NR = {nr}"),
        }
        return;
    }
    for (s, strip) in dst.chunks_exact_mut(nr * k).enumerate() {
        let js = j0 + s * nr;
        pack_b_strip(b, js, (j0 + cols - js).min(nr), nr, strip);
    }
}

/// Row-major B: row `p`'s columns `j0..j0+cols` go to step `p` of each strip
/// (full strips as fixed-size copies the compiler turns into vector moves).
fn deal_rows<const NR: usize>(
    data: &[f32],
    rs: usize,
    j0: usize,
    cols: usize,
    k: usize,
    dst: &mut [f32],
) {
    let full = cols / NR;
    for p in 0..k {
        let row = &data[p * rs + j0..][..cols];
        let (body, tail) = row.split_at(full * NR);
        for (s, chunk) in body.chunks_exact(NR).enumerate() {
            let src: &[f32; NR] = chunk.try_into().expect("NR");
            let d: &mut [f32; NR] = (&mut dst[(s * k + p) * NR..][..NR]).try_into().expect("NR");
            *d = *src;
        }
        if !tail.is_empty() {
            dst[(full * k + p) * NR..][..tail.len()].copy_from_slice(tail);
        }
    }
}

/// Packs columns `j0..j0+w` (`w <= nr`) of `b` into one zero-padded strip.
fn pack_b_strip(b: &MatRef<'_>, j0: usize, w: usize, nr: usize, dst: &mut [f32]) {
    let (rs, cs) = b.strides();
    let data = b.data();
    if w < nr {
        dst.fill(0.0);
    }
    if rs == 1 {
        // Columns are contiguous (a transposed matrix): read each once.
        let k = b.rows();
        for j in 0..w {
            let col = &data[(j0 + j) * cs..][..k];
            for (p, &x) in col.iter().enumerate() {
                dst[p * nr + j] = x;
            }
        }
    } else {
        for (p, step) in dst.chunks_exact_mut(nr).enumerate() {
            for (j, d) in step[..w].iter_mut().enumerate() {
                *d = b.at(p, j0 + j);
            }
        }
    }
}
