//! The blocked GEMM loop nest, its work units and threads.

use std::cell::Cell;

use rayon::prelude::*;

use super::kernels::{axpy, kernels, params, MAX_MR, MAX_NR};
use super::pack::{pack_a_panel, pack_b, packed_len};
use super::{Ctx, Epilogue, EpilogueTile, Isa, MatRef, PackedB};

/// Bytes of packed B (one unit's columns over one K block) meant to stay in
/// L2 while the unit's row blocks pass over it.
const B_BLOCK_BYTES: usize = 192 * 1024;
/// Below this many multiply-adds a GEMM runs on the calling thread: waking
/// the pool costs more than it saves.
const PAR_MIN_MACS: usize = 1 << 16;

/// A growable f32 buffer whose contents start on a 64-byte boundary.
#[derive(Debug, Clone, Default)]
pub(crate) struct AlignedBuf {
    buf: Vec<f32>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    /// The first `len` floats, contents unspecified (callers overwrite them).
    pub(crate) fn resize(&mut self, len: usize) -> &mut [f32] {
        if self.buf.len() < len + 16 {
            self.buf = vec![0.0; len + 16];
        }
        self.off = self.buf.as_ptr().align_offset(64).min(15);
        self.len = len;
        &mut self.buf[self.off..self.off + len]
    }

    pub(crate) fn as_slice(&self) -> &[f32] {
        &self.buf[self.off..self.off + self.len]
    }
}

thread_local! {
    /// Each thread's B panel buffer, reused across calls. Taken out while in
    /// use, so a re-entrant GEMM (from an epilogue) just allocates its own.
    static SCRATCH: Cell<AlignedBuf> = Cell::new(AlignedBuf::default());
}

/// Where a unit gets its packed B panel.
pub(crate) trait PanelSource: Sync {
    /// Columns `j0..j0+cols` of batch `batch`'s B, all of K, packed in
    /// `nr`-column strips (`j0` is a multiple of `nr`): borrowed, or packed
    /// into `scratch`.
    fn panel<'s>(
        &'s self,
        batch: usize,
        j0: usize,
        cols: usize,
        nr: usize,
        scratch: &'s mut AlignedBuf,
    ) -> &'s [f32];
}

/// A pre-packed B: panels are slices of it.
pub(crate) struct PrepackedB<'a>(pub &'a PackedB);

impl PanelSource for PrepackedB<'_> {
    fn panel<'s>(
        &'s self,
        _batch: usize,
        j0: usize,
        _cols: usize,
        _nr: usize,
        _scratch: &'s mut AlignedBuf,
    ) -> &'s [f32] {
        &self.0.data.as_slice()[j0 * self.0.k..]
    }
}

/// A strided B packed per unit.
pub(crate) struct RawB<'a> {
    pub view: MatRef<'a>,
    pub bstride: usize,
}

impl PanelSource for RawB<'_> {
    fn panel<'s>(
        &'s self,
        batch: usize,
        j0: usize,
        cols: usize,
        nr: usize,
        scratch: &'s mut AlignedBuf,
    ) -> &'s [f32] {
        let view = self.view.offset(batch * self.bstride);
        let len = packed_len(cols, nr, view.rows()).expect("sized when the GEMM was checked");
        let dst = scratch.resize(len);
        pack_b(&view, j0, cols, nr, dst);
        dst
    }
}

/// One GEMM (or a batch of them) with packed A, a B panel source and C.
pub(crate) struct Job<'a> {
    pub isa: Isa,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batches: usize,
    /// Batch `b`'s A packed in `MR`-row panels (see `pack.rs`).
    pub a: &'a (dyn Fn(usize) -> &'a [f32] + Sync),
    pub b: &'a dyn PanelSource,
    /// C's element `(b, i, j)` is `c[c_offset(b) + i * ldc + j]`; every one
    /// of them lies below `c_len`, and batches do not overlap.
    pub c: CPtr,
    pub c_len: usize,
    pub ldc: usize,
    pub c_offset: &'a (dyn Fn(usize) -> usize + Sync),
    pub accumulate: bool,
    pub epilogue: Option<&'a Epilogue<'a>>,
}

/// A piece of the output one thread computes: batch, rows `r0..r1` (`r0` a
/// multiple of MR), columns `j0..j0+cols` (`j0` a multiple of NR).
#[derive(Clone, Copy, Debug)]
struct Unit {
    batch: usize,
    r0: usize,
    r1: usize,
    j0: usize,
    cols: usize,
}

/// How a job is cut into units: `strips` NR-strips per unit, `rows` rows
/// per unit.
struct Plan {
    strips: usize,
    rows: usize,
    col_blocks: usize,
    row_blocks: usize,
}

fn plan(job: &Job<'_>, threads: usize) -> Plan {
    let p = params(job.isa);
    let nstrips = job.n.div_ceil(p.nr);
    let strip_bytes = (job.k.min(p.kc) * p.nr * 4).max(1);
    let mut strips = (B_BLOCK_BYTES / strip_bytes).clamp(1, nstrips);
    if threads > 1 {
        // Enough column units to balance the threads, if N allows.
        let want = 4 * threads;
        let per = (job.batches * nstrips).div_ceil(want).max(1);
        strips = strips.min(per);
    }
    let col_blocks = nstrips.div_ceil(strips);
    let mut rows = job.m.div_ceil(p.mr) * p.mr;
    let units = job.batches * col_blocks;
    if threads > 1 && units < 2 * threads {
        // Too few column units: split rows too (each row block repacks its
        // B panel, which is cheap next to the arithmetic of a tall M).
        let chunks = (2 * threads).div_ceil(units);
        rows = job.m.div_ceil(chunks).div_ceil(p.mr) * p.mr;
        rows = rows.max(p.mc.min(job.m.div_ceil(p.mr) * p.mr));
    }
    let row_blocks = job.m.div_ceil(rows);
    Plan {
        strips,
        rows,
        col_blocks,
        row_blocks,
    }
}

/// A `*mut f32` that may cross threads: units write disjoint parts of C.
#[derive(Clone, Copy)]
pub(crate) struct CPtr(pub *mut f32);
// SAFETY: the pointer is only used to write disjoint tiles of C, one unit
// per thread, while the caller's `&mut` borrow of C is held.
unsafe impl Send for CPtr {}
// SAFETY: as above.
unsafe impl Sync for CPtr {}

/// Runs every unit of `job`, on `ctx`'s pool when it is worth it.
pub(crate) fn run_job(ctx: &Ctx<'_>, job: &Job<'_>) {
    if job.batches == 0 || job.m == 0 || job.n == 0 {
        return;
    }
    let macs = job
        .m
        .saturating_mul(job.n)
        .saturating_mul(job.k.max(1))
        .saturating_mul(job.batches);
    let pool = ctx
        .pool
        .filter(|p| p.current_num_threads() > 1 && macs >= PAR_MIN_MACS);
    let threads = pool.map_or(1, |p| p.current_num_threads());
    let plan = plan(job, threads);
    let p = params(job.isa);
    let nunits = job.batches * plan.col_blocks * plan.row_blocks;
    let c = job.c;
    let unit = |u: usize| {
        let batch = u / (plan.col_blocks * plan.row_blocks);
        let rest = u % (plan.col_blocks * plan.row_blocks);
        let (cb, rb) = (rest / plan.row_blocks, rest % plan.row_blocks);
        let j0 = cb * plan.strips * p.nr;
        let r0 = rb * plan.rows;
        let unit = Unit {
            batch,
            r0,
            r1: (r0 + plan.rows).min(job.m),
            j0,
            cols: (plan.strips * p.nr).min(job.n - j0),
        };
        let mut scratch = SCRATCH.with(|s| s.take());
        run_unit(job, c, unit, &mut scratch);
        SCRATCH.with(|s| s.set(scratch));
    };
    match pool {
        Some(pool) => pool.install(|| (0..nunits).into_par_iter().for_each(unit)),
        None => (0..nunits).for_each(unit),
    }
}

/// The loop nest of one unit; see the module docs of `gemm`.
fn run_unit(job: &Job<'_>, c: CPtr, u: Unit, scratch: &mut AlignedBuf) {
    let p = params(job.isa);
    let k = job.k;
    let panel = job.b.panel(u.batch, u.j0, u.cols, p.nr, scratch);
    let a = (job.a)(u.batch);
    let c_off = (job.c_offset)(u.batch);
    debug_assert!(panel.len() >= u.cols.div_ceil(p.nr) * k * p.nr);
    let epilogue = |ic: usize, ic_end: usize| {
        if let Some(epi) = job.epilogue {
            // SAFETY: rows `ic..ic_end`, columns `u.j0..u.j0+u.cols` of this
            // batch are inside C, finished, and owned by this unit.
            let tile = unsafe {
                EpilogueTile::new(
                    u.batch,
                    ic,
                    u.j0,
                    ic_end - ic,
                    u.cols,
                    c.0.add(c_off + ic * job.ldc + u.j0),
                    job.ldc,
                )
            };
            epi(tile);
        }
    };
    if k == 0 {
        for i in u.r0..u.r1 {
            let start = c_off + i * job.ldc + u.j0;
            assert!(start + u.cols <= job.c_len);
            if !job.accumulate {
                // SAFETY: C's extent was checked against `c_len` (asserted
                // again above) and this unit alone owns these elements.
                unsafe { std::slice::from_raw_parts_mut(c.0.add(start), u.cols) }.fill(0.0);
            }
        }
        for ic in (u.r0..u.r1).step_by(p.mc) {
            epilogue(ic, (ic + p.mc).min(u.r1));
        }
        return;
    }
    // K blocks outermost: the unit's `kc × cols` slice of B stays in L2
    // while every row block passes over it, and each row block's tile of C
    // is finished (and handed to the epilogue) right after its last pass.
    let mut pc = 0;
    while pc < k {
        let kc = p.kc.min(k - pc);
        let last = pc + kc == k;
        let mut ic = u.r0;
        while ic < u.r1 {
            let ic_end = (ic + p.mc).min(u.r1);
            block(job, c, &u, panel, a, c_off, (ic, ic_end), (pc, kc));
            if last {
                epilogue(ic, ic_end);
            }
            ic = ic_end;
        }
        pc += kc;
    }
}

/// Rows `ic..ic_end` × the unit's columns, K steps `pc..pc+kc`: the
/// microkernels over every `MR × NR` tile of the block.
#[allow(clippy::too_many_arguments)]
fn block(
    job: &Job<'_>,
    c: CPtr,
    u: &Unit,
    panel: &[f32],
    a: &[f32],
    c_off: usize,
    (ic, ic_end): (usize, usize),
    (pc, kc): (usize, usize),
) {
    let p = params(job.isa);
    let kerns = kernels(job.isa);
    let (k, ldc) = (job.k, job.ldc);
    let load_c = pc > 0 || job.accumulate;
    for s in 0..u.cols.div_ceil(p.nr) {
        let bp = panel[(s * k + pc) * p.nr..][..kc * p.nr].as_ptr();
        let jcol = u.j0 + s * p.nr;
        let w = p.nr.min(job.n - jcol);
        let mut ir = ic;
        while ir < ic_end {
            let rows = p.mr.min(ic_end - ir);
            let ap = a[((ir / p.mr) * k + pc) * p.mr..][..kc * p.mr].as_ptr();
            let kern = kerns[rows - 1];
            let start = c_off + ir * ldc + jcol;
            assert!(start + (rows - 1) * ldc + w <= job.c_len);
            if w == p.nr {
                // SAFETY: `ap`/`bp` are slices of `kc` packed steps
                // (bounds-checked above); the `rows × NR` tile of C at
                // `start` is inside C (asserted) and owned by this unit; the
                // ISA was checked by the caller.
                unsafe { kern(kc, ap, bp, c.0.add(start), ldc, load_c) };
            } else {
                // Right edge: run the kernel on a full-width copy.
                let mut tmp = [0.0f32; MAX_MR * MAX_NR];
                for i in 0..rows {
                    if load_c {
                        // SAFETY: row `i` of the tile, `w` elements, inside C
                        // (asserted) and owned by this unit.
                        let src =
                            unsafe { std::slice::from_raw_parts(c.0.add(start + i * ldc), w) };
                        tmp[i * p.nr..][..w].copy_from_slice(src);
                    }
                }
                // SAFETY: as above, with `tmp` as a `rows × NR` tile at
                // stride NR (MAX_MR * MAX_NR >= rows * NR).
                unsafe { kern(kc, ap, bp, tmp.as_mut_ptr(), p.nr, load_c) };
                for i in 0..rows {
                    // SAFETY: as for the read above.
                    let dst =
                        unsafe { std::slice::from_raw_parts_mut(c.0.add(start + i * ldc), w) };
                    dst.copy_from_slice(&tmp[i * p.nr..][..w]);
                }
            }
            ir += rows;
        }
    }
}

/// Packs batch after batch of `a` (`batch i` at `i * stride`, one batch if
/// `stride == 0`) into `dst`, `per` floats per batch, in parallel when large.
pub(crate) fn pack_a_batches(
    ctx: &Ctx<'_>,
    a: &MatRef<'_>,
    stride: usize,
    mr: usize,
    per: usize,
    dst: &mut [f32],
) {
    let k = a.cols();
    if per == 0 || k == 0 {
        return;
    }
    let panel = |(idx, out): (usize, &mut [f32])| {
        let panels_per = per / (mr * k);
        let (b, q) = (idx / panels_per, idx % panels_per);
        pack_a_panel(&a.offset(b * stride), q * mr, mr, out);
    };
    match ctx
        .pool
        .filter(|p| p.current_num_threads() > 1 && dst.len() >= 1 << 16)
    {
        Some(pool) => pool.install(|| dst.par_chunks_mut(mr * k).enumerate().for_each(panel)),
        None => dst.chunks_mut(mr * k).enumerate().for_each(panel),
    }
}

/// Rows up to which a raw, row-major B is streamed rather than packed.
pub(crate) const SMALL_M: usize = 4;
/// Bytes of C per small-M unit, meant to stay in L1 while B streams past.
const SMALL_M_C_BYTES: usize = 24 * 1024;

/// A product with few rows: `C[i, :] (+)= Σ_k A[i, k]·B[k, :]`, B row-major.
pub(crate) struct SmallM<'a> {
    pub isa: Isa,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batches: usize,
    pub a: MatRef<'a>,
    pub a_stride: usize,
    pub b: MatRef<'a>,
    pub b_stride: usize,
    /// Checked like `Job::c`: every element below `c_len`, batches apart.
    pub c: CPtr,
    pub c_len: usize,
    pub ldc: usize,
    pub c_stride: usize,
    pub accumulate: bool,
    pub epilogue: Option<&'a Epilogue<'a>>,
}

/// Runs a [`SmallM`] product in column blocks, on `ctx`'s pool when worth it.
/// Each element is the same multiply-add chain, in increasing `k`, as in the
/// blocked kernels of the ISA, so the result is bitwise the same.
pub(crate) fn run_small_m(ctx: &Ctx<'_>, job: &SmallM<'_>) {
    let macs = job
        .m
        .saturating_mul(job.n)
        .saturating_mul(job.k.max(1))
        .saturating_mul(job.batches);
    let pool = ctx
        .pool
        .filter(|p| p.current_num_threads() > 1 && macs >= PAR_MIN_MACS);
    let threads = pool.map_or(1, |p| p.current_num_threads());
    // Wide blocks keep B's row segments long (the prefetchers stop at page
    // boundaries); with threads, about two blocks per thread.
    let mut cols = (SMALL_M_C_BYTES / (4 * job.m)).max(16).min(job.n);
    if threads > 1 {
        let per = job
            .n
            .div_ceil((2 * threads).div_ceil(job.batches))
            .div_ceil(16)
            * 16;
        cols = cols.min(per.max(64));
    }
    let col_blocks = job.n.div_ceil(cols);
    let f = axpy(job.isa);
    let unit = |u: usize| {
        let (batch, cb) = (u / col_blocks, u % col_blocks);
        let j0 = cb * cols;
        let w = cols.min(job.n - j0);
        let a = job.a.offset(batch * job.a_stride);
        let b = job.b.offset(batch * job.b_stride);
        let (_, brs) = (b.cs, b.rs);
        let c_off = batch * job.c_stride + j0;
        assert!(c_off + (job.m - 1) * job.ldc + w <= job.c_len);
        // SAFETY: the rows `c_off + i·ldc .. + w` lie inside C (asserted),
        // are distinct for distinct `i` (`ldc >= n >= w`, checked by
        // `MatMut`), and belong to this unit alone: units cover disjoint
        // (batch, column block) pairs and C's batches do not overlap.
        let mut rows: Vec<&mut [f32]> = (0..job.m)
            .map(|i| unsafe { std::slice::from_raw_parts_mut(job.c.0.add(c_off + i * job.ldc), w) })
            .collect();
        if !job.accumulate {
            rows.iter_mut().for_each(|r| r.fill(0.0));
        }
        for p in 0..job.k {
            let brow = &b.data()[p * brs + j0..][..w];
            for (i, row) in rows.iter_mut().enumerate() {
                f(a.at(i, p), brow, row);
            }
        }
        drop(rows);
        if let Some(epi) = job.epilogue {
            // SAFETY: as above; the row slices were dropped.
            let tile =
                unsafe { EpilogueTile::new(batch, 0, j0, job.m, w, job.c.0.add(c_off), job.ldc) };
            epi(tile);
        }
    };
    let nunits = job.batches * col_blocks;
    match pool {
        Some(pool) => pool.install(|| (0..nunits).into_par_iter().for_each(unit)),
        None => (0..nunits).for_each(unit),
    }
}
