//! Dense f32 matrix multiplication: packed SGEMM with register-blocked
//! microkernels, pre-packed weights, a fused per-tile epilogue and threads.
//!
//! `C = A·B` (or `C += A·B` with `accumulate`), with A (`m × k`) and B
//! (`k × n`) given as strided views (any row and column stride, so transposed
//! operands cost nothing) or pre-packed once ([`PackedA`], [`PackedB`]), and C
//! row-major with a row stride. [`sgemm_batched`] runs many such products
//! with per-batch offsets (a stride of 0 broadcasts an operand).
//!
//! ## How it runs
//! A is packed whole into `MR`-row panels (or comes pre-packed). The output
//! is cut into *units*: a batch, a block of columns whose packed B slice for
//! one K block (`KC × cols`) fits in L2, and a range of rows. A unit packs
//! its B columns for all of K (or borrows them from a [`PackedB`]); then for
//! each K block, for each block of `MC` rows, for each `NR`-column strip,
//! for each `MR`-row panel, the ISA's microkernel updates an `MR × NR` tile
//! of C held in registers (loading it first after the first K block). A row
//! block is finished by its pass over the last K block, and the epilogue (if
//! any) is called on it right then, while it is still in cache.
//!
//! A product with at most 4 rows and a raw row-major B (a GEMV, a decoder
//! step) is bound by reading B, so it skips packing: each column block of C
//! stays in L1 while B's rows stream past once, `C[i, :] += A[i, k]·B[k, :]`.
//!
//! ## Threads and determinism
//! Units are independent and run on the caller's rayon pool ([`Ctx::with_pool`]),
//! or on the calling thread without one. Work is split only over output
//! tiles (rows, columns, batches), **never over K**: every element of C is one
//! chain of multiply-adds in increasing `k`, started from 0 (or from C's value
//! when accumulating), whatever the tiling. Results with 1 and N threads are
//! therefore bitwise identical, for a given [`Isa`]. Different ISAs may differ
//! in the last bits (the SIMD kernels use fused multiply-add, the portable one
//! does not).
//!
//! ## Epilogue
//! The epilogue is called once per finished tile, from the thread that
//! computed it, with an [`EpilogueTile`]. Tile boundaries depend on the
//! problem size and on the number of threads, so an epilogue must treat each
//! element independently (bias, activation, residual, scaling, requantize).

mod driver;
mod kernels;
mod pack;

use std::marker::PhantomData;

pub(crate) use driver::{run_job, AlignedBuf, CPtr, Job, PanelSource, RawB};
pub(crate) use kernels::params;

/// The instruction set a kernel family uses. Chosen at run time with
/// [`Isa::detect`], or forced (tests, artifacts built for older CPUs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust, vectorised by the compiler for the baseline target. Any CPU.
    Portable,
    /// x86-64 AVX2 + FMA, 6×16 microtiles (Haswell and later, Zen).
    Avx2,
    /// x86-64 AVX-512F, 12×32 microtiles.
    Avx512,
}

impl Isa {
    /// Every ISA, slowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The fastest ISA this CPU supports.
    pub fn detect() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|isa| isa.is_available())
            .unwrap_or(Isa::Portable)
    }

    /// The ISAs this CPU supports, slowest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// Whether this CPU can run the kernels of `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The name [`Isa::parse`] accepts: `portable`, `avx2`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The ISA called `name` (see [`Isa::name`]).
    pub fn parse(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }

    /// The fastest available ISA that is not faster than `self`: what an
    /// artifact built for `self` runs with on this CPU.
    pub fn at_most(self) -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .filter(|i| *i as u8 <= self as u8)
            .find(|i| i.is_available())
            .unwrap_or(Isa::Portable)
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a GEMM or convolution was refused. Nothing is written to C then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GemmError {
    #[error("the {0} kernels need CPU features this machine lacks")]
    IsaUnavailable(Isa),
    #[error("{what} was packed for {packed}, but the GEMM runs with {ctx}")]
    IsaMismatch {
        what: &'static str,
        packed: Isa,
        ctx: Isa,
    },
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error("{what}: a {rows}×{cols} view with strides ({rs}, {cs}) needs {need} elements, the buffer has {len}")]
    OutOfBounds {
        what: &'static str,
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
        need: usize,
        len: usize,
    },
    #[error("{0}")]
    Layout(String),
    #[error("size overflow: {0}")]
    Overflow(String),
}

/// Where a GEMM runs: the microkernel family and, optionally, the thread
/// pool that shares its work. Cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct Ctx<'p> {
    isa: Isa,
    pool: Option<&'p rayon::ThreadPool>,
}

impl<'p> Ctx<'p> {
    /// Single-threaded, on `isa` (checked when a GEMM runs).
    pub fn new(isa: Isa) -> Ctx<'static> {
        Ctx { isa, pool: None }
    }

    /// Single-threaded, on the fastest ISA of this CPU.
    pub fn detect() -> Ctx<'static> {
        Ctx::new(Isa::detect())
    }

    /// Share work across `pool`'s threads (the caller sizes the pool, e.g.
    /// `rayon::ThreadPoolBuilder::new().num_threads(n).build()`). Small
    /// problems still run on the calling thread.
    pub fn with_pool<'q>(self, pool: &'q rayon::ThreadPool) -> Ctx<'q> {
        Ctx {
            isa: self.isa,
            pool: Some(pool),
        }
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn pool(&self) -> Option<&'p rayon::ThreadPool> {
        self.pool
    }

    /// Threads a GEMM may use.
    pub fn threads(&self) -> usize {
        self.pool.map_or(1, |p| p.current_num_threads().max(1))
    }

    pub(crate) fn check(&self) -> Result<(), GemmError> {
        if self.isa.is_available() {
            Ok(())
        } else {
            Err(GemmError::IsaUnavailable(self.isa))
        }
    }
}

/// The elements `(rows-1)*rs + (cols-1)*cs + 1` a view spans (0 if empty).
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

/// A read-only `rows × cols` matrix: element `(i, j)` is
/// `data[i * rs + j * cs]`. Swapping the strides transposes it for free.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A strided view; every element must lie inside `data`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self, GemmError> {
        let m = MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        };
        m.check_batches("matrix", 1, 0)?;
        Ok(m)
    }

    /// A dense row-major view (`rs = cols`, `cs = 1`).
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, GemmError> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose, a view of the same data.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn strides(&self) -> (usize, usize) {
        (self.rs, self.cs)
    }
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// The same shape and strides starting `off` elements into the data
    /// (a batch). The caller has checked that it fits.
    pub(crate) fn offset(&self, off: usize) -> MatRef<'a> {
        MatRef {
            data: &self.data[off.min(self.data.len())..],
            ..*self
        }
    }

    /// Element `(i, j)`; the caller keeps `i < rows`, `j < cols`.
    #[inline]
    pub(crate) fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }

    /// Checks that `batches` copies at `bstride` apart fit in `data`.
    fn check_batches(
        &self,
        what: &'static str,
        batches: usize,
        bstride: usize,
    ) -> Result<(), GemmError> {
        let need = batched_extent(self.rows, self.cols, self.rs, self.cs, batches, bstride)
            .ok_or_else(|| GemmError::Overflow(format!("{what} view")))?;
        if need > self.data.len() {
            return Err(GemmError::OutOfBounds {
                what,
                rows: self.rows,
                cols: self.cols,
                rs: self.rs,
                cs: self.cs,
                need,
                len: self.data.len(),
            });
        }
        Ok(())
    }
}

fn batched_extent(
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    batches: usize,
    bstride: usize,
) -> Option<usize> {
    let one = extent(rows, cols, rs, cs)?;
    if one == 0 || batches == 0 {
        return Some(0);
    }
    (batches - 1).checked_mul(bstride)?.checked_add(one)
}

/// A writable row-major `rows × cols` matrix with row stride `ld >= cols`:
/// element `(i, j)` is `data[i * ld + j]`.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    ld: usize,
}

impl<'a> MatMut<'a> {
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        ld: usize,
    ) -> Result<Self, GemmError> {
        if rows > 1 && ld < cols {
            return Err(GemmError::Layout(format!(
                "C's row stride {ld} is less than its {cols} columns"
            )));
        }
        let m = MatMut {
            data,
            rows,
            cols,
            ld,
        };
        m.check_batches(1, 0)?;
        Ok(m)
    }

    /// A dense row-major matrix (`ld = cols`).
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, GemmError> {
        Self::new(data, rows, cols, cols)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn ld(&self) -> usize {
        self.ld
    }

    fn check_batches(&self, batches: usize, bstride: usize) -> Result<(), GemmError> {
        let one = extent(self.rows, self.cols, self.ld, 1)
            .ok_or_else(|| GemmError::Overflow("C view".into()))?;
        if batches > 1 && one > 0 && bstride < one {
            return Err(GemmError::Layout(format!(
                "C's batches overlap: batch stride {bstride} < {one} elements per batch"
            )));
        }
        let need = batched_extent(self.rows, self.cols, self.ld, 1, batches, bstride)
            .ok_or_else(|| GemmError::Overflow("C view".into()))?;
        if need > self.data.len() {
            return Err(GemmError::OutOfBounds {
                what: "C",
                rows: self.rows,
                cols: self.cols,
                rs: self.ld,
                cs: 1,
                need,
                len: self.data.len(),
            });
        }
        Ok(())
    }
}

/// A finished tile of C, handed to the epilogue: rows `row0..row0+rows` and
/// columns `col0..col0+cols` of batch `batch`. Tiles never overlap, so the
/// epilogue may write its tile freely (only its tile).
pub struct EpilogueTile<'a> {
    /// Batch index (0 for a plain GEMM; for a convolution, the image).
    pub batch: usize,
    /// First row of the tile (for a convolution: the output channel).
    pub row0: usize,
    /// First column of the tile (for a convolution: the flattened output pixel).
    pub col0: usize,
    pub rows: usize,
    pub cols: usize,
    ptr: *mut f32,
    ld: usize,
    _c: PhantomData<&'a mut [f32]>,
}

impl<'a> EpilogueTile<'a> {
    /// # Safety
    /// `ptr` must point at element `(row0, col0)` of a matrix with row stride
    /// `ld`, valid for reads and writes of the `rows × cols` tile for `'a`,
    /// and no one else may access that tile meanwhile.
    pub(crate) unsafe fn new(
        batch: usize,
        row0: usize,
        col0: usize,
        rows: usize,
        cols: usize,
        ptr: *mut f32,
        ld: usize,
    ) -> Self {
        EpilogueTile {
            batch,
            row0,
            col0,
            rows,
            cols,
            ptr,
            ld,
            _c: PhantomData,
        }
    }

    /// The same tile under other coordinates (a caller's view of the job).
    pub(crate) fn renamed(self, batch: usize, row0: usize, col0: usize) -> Self {
        EpilogueTile {
            batch,
            row0,
            col0,
            ..self
        }
    }

    /// Row `i` of the tile (`cols` elements). Panics if `i >= rows`.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        assert!(i < self.rows, "tile row {i} of {}", self.rows);
        // SAFETY: `new`'s contract: row `i < rows` of the tile is valid,
        // exclusively ours, and `&mut self` keeps it unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.ld), self.cols) }
    }

    /// Calls `f(row_index, row)` for each row of the tile.
    pub fn for_each_row(&mut self, mut f: impl FnMut(usize, &mut [f32])) {
        for i in 0..self.rows {
            f(i, self.row_mut(i));
        }
    }

    /// Pointer to element `(row0, col0)`; rows are [`ld`](Self::ld) apart.
    /// For JIT'd epilogues, which may touch only the tile's elements.
    pub fn as_mut_ptr(&mut self) -> *mut f32 {
        self.ptr
    }

    /// Row stride of the tile in elements.
    pub fn ld(&self) -> usize {
        self.ld
    }
}

/// What runs on each finished tile. See [`EpilogueTile`].
pub type Epilogue<'a> = dyn Fn(EpilogueTile<'_>) + Sync + 'a;

/// The left operand packed once for an ISA (weights), in `MR`-row panels.
#[derive(Debug, Clone)]
pub struct PackedA {
    isa: Isa,
    m: usize,
    k: usize,
    data: AlignedBuf,
}

impl PackedA {
    /// Packs `a` (`m × k`, any strides) for `isa`.
    pub fn new(isa: Isa, a: MatRef<'_>) -> Result<Self, GemmError> {
        let p = params(isa);
        let len = pack::packed_len(a.rows, p.mr, a.cols)
            .ok_or_else(|| GemmError::Overflow("packed A".into()))?;
        let mut data = AlignedBuf::default();
        pack::pack_a(&a, p.mr, data.resize(len));
        Ok(PackedA {
            isa,
            m: a.rows,
            k: a.cols,
            data,
        })
    }
    pub fn isa(&self) -> Isa {
        self.isa
    }
    pub fn rows(&self) -> usize {
        self.m
    }
    pub fn cols(&self) -> usize {
        self.k
    }
    pub(crate) fn panels(&self) -> &[f32] {
        self.data.as_slice()
    }
}

/// The right operand packed once for an ISA (weights), in `NR`-column strips.
#[derive(Debug, Clone)]
pub struct PackedB {
    isa: Isa,
    k: usize,
    n: usize,
    data: AlignedBuf,
}

impl PackedB {
    /// Packs `b` (`k × n`, any strides) for `isa`.
    pub fn new(isa: Isa, b: MatRef<'_>) -> Result<Self, GemmError> {
        let p = params(isa);
        let len = pack::packed_len(b.cols, p.nr, b.rows)
            .ok_or_else(|| GemmError::Overflow("packed B".into()))?;
        let mut data = AlignedBuf::default();
        pack::pack_b(&b, 0, b.cols, p.nr, data.resize(len));
        Ok(PackedB {
            isa,
            k: b.rows,
            n: b.cols,
            data,
        })
    }
    pub fn isa(&self) -> Isa {
        self.isa
    }
    pub fn rows(&self) -> usize {
        self.k
    }
    pub fn cols(&self) -> usize {
        self.n
    }
}

/// The left operand of a GEMM.
#[derive(Clone, Copy, Debug)]
pub enum Lhs<'a> {
    Raw(MatRef<'a>),
    Packed(&'a PackedA),
}

/// The right operand of a GEMM.
#[derive(Clone, Copy, Debug)]
pub enum Rhs<'a> {
    Raw(MatRef<'a>),
    Packed(&'a PackedB),
}

impl<'a> From<MatRef<'a>> for Lhs<'a> {
    fn from(m: MatRef<'a>) -> Self {
        Lhs::Raw(m)
    }
}
impl<'a> From<&'a PackedA> for Lhs<'a> {
    fn from(p: &'a PackedA) -> Self {
        Lhs::Packed(p)
    }
}
impl<'a> From<MatRef<'a>> for Rhs<'a> {
    fn from(m: MatRef<'a>) -> Self {
        Rhs::Raw(m)
    }
}
impl<'a> From<&'a PackedB> for Rhs<'a> {
    fn from(p: &'a PackedB) -> Self {
        Rhs::Packed(p)
    }
}

impl Lhs<'_> {
    fn dims(&self) -> (usize, usize) {
        match self {
            Lhs::Raw(m) => (m.rows, m.cols),
            Lhs::Packed(p) => (p.m, p.k),
        }
    }
}
impl Rhs<'_> {
    fn dims(&self) -> (usize, usize) {
        match self {
            Rhs::Raw(m) => (m.rows, m.cols),
            Rhs::Packed(p) => (p.k, p.n),
        }
    }
}

/// `C = A·B`, or `C += A·B` when `accumulate`, then `epilogue` on each
/// finished tile. A is `m × k`, B is `k × n`, C is `m × n`.
///
/// ```
/// use kiln_runtime::gemm::{sgemm, Ctx, MatMut, MatRef};
/// let a = [1.0, 2.0, 3.0, 4.0]; // 2×2
/// let b = [5.0, 6.0, 7.0, 8.0]; // 2×2
/// let mut c = [0.0; 4];
/// sgemm(
///     &Ctx::detect(),
///     MatRef::row_major(&a, 2, 2).unwrap(),
///     MatRef::row_major(&b, 2, 2).unwrap().t(), // Bᵀ, no copy
///     MatMut::row_major(&mut c, 2, 2).unwrap(),
///     false,
///     Some(&|mut t: kiln_runtime::gemm::EpilogueTile| {
///         t.for_each_row(|_, row| row.iter_mut().for_each(|x| *x = x.max(20.0)))
///     }),
/// )
/// .unwrap();
/// assert_eq!(c, [20.0, 23.0, 39.0, 53.0]);
/// ```
pub fn sgemm<'a>(
    ctx: &Ctx<'_>,
    a: impl Into<Lhs<'a>>,
    b: impl Into<Rhs<'a>>,
    c: MatMut<'_>,
    accumulate: bool,
    epilogue: Option<&Epilogue<'_>>,
) -> Result<(), GemmError> {
    sgemm_batched(
        ctx,
        1,
        (a.into(), 0),
        (b.into(), 0),
        (c, 0),
        accumulate,
        epilogue,
    )
}

/// `batches` independent products `C_i = A_i·B_i` (or `+=`), for attention
/// and grouped convolutions. Each operand comes with its batch stride in
/// elements: batch `i` of a raw view starts `i * stride` elements into its
/// data. A stride of 0 broadcasts the operand (a packed operand is always
/// broadcast and its stride is ignored); C's batches must not overlap.
/// Epilogue tiles carry the batch index.
pub fn sgemm_batched<'a>(
    ctx: &Ctx<'_>,
    batches: usize,
    (a, a_stride): (Lhs<'a>, usize),
    (b, b_stride): (Rhs<'a>, usize),
    (c, c_stride): (MatMut<'_>, usize),
    accumulate: bool,
    epilogue: Option<&Epilogue<'_>>,
) -> Result<(), GemmError> {
    ctx.check()?;
    let (m, k) = a.dims();
    let (kb, n) = b.dims();
    if kb != k {
        return Err(GemmError::Shape(format!("A is {m}×{k} but B is {kb}×{n}")));
    }
    if (c.rows, c.cols) != (m, n) {
        return Err(GemmError::Shape(format!(
            "A·B is {m}×{n} but C is {}×{}",
            c.rows, c.cols
        )));
    }
    match a {
        Lhs::Raw(v) => v.check_batches("A", batches, a_stride)?,
        Lhs::Packed(p) if p.isa != ctx.isa => {
            return Err(GemmError::IsaMismatch {
                what: "A",
                packed: p.isa,
                ctx: ctx.isa,
            })
        }
        Lhs::Packed(_) => {}
    }
    match b {
        Rhs::Raw(v) => v.check_batches("B", batches, b_stride)?,
        Rhs::Packed(p) if p.isa != ctx.isa => {
            return Err(GemmError::IsaMismatch {
                what: "B",
                packed: p.isa,
                ctx: ctx.isa,
            })
        }
        Rhs::Packed(_) => {}
    }
    c.check_batches(batches, c_stride)?;
    // Broadcast (stride-0) views can describe huge operands in a small
    // buffer; make sure their packings are addressable before anything runs.
    let p = params(ctx.isa);
    if pack::packed_len(m, p.mr, k).is_none() || pack::packed_len(n, p.nr, k).is_none() {
        return Err(GemmError::Overflow(format!(
            "packing a {m}×{k} by {k}×{n} product"
        )));
    }
    if batches == 0 || m == 0 || n == 0 {
        return Ok(());
    }

    if let (Lhs::Raw(av), Rhs::Raw(bv)) = (a, b) {
        if m <= driver::SMALL_M && bv.cs == 1 {
            // A few rows times a row-major B: stream B's rows once instead
            // of packing it (GEMV and small batches are bound by reading B).
            let job = driver::SmallM {
                isa: ctx.isa,
                m,
                n,
                k,
                batches,
                a: av,
                a_stride,
                b: bv,
                b_stride,
                c: CPtr(c.data.as_mut_ptr()),
                c_len: c.data.len(),
                ldc: c.ld,
                c_stride,
                accumulate,
                epilogue,
            };
            driver::run_small_m(ctx, &job);
            return Ok(());
        }
    }
    // A: borrowed when pre-packed, else packed whole (all batches) up front,
    // so each A panel is packed once however the output is split.
    let mut a_buf = AlignedBuf::default();
    let (a_panels, a_bstride): (&[f32], usize) = match a {
        Lhs::Packed(pa) => (pa.panels(), 0),
        Lhs::Raw(v) => {
            let per = pack::packed_len(m, p.mr, k)
                .ok_or_else(|| GemmError::Overflow("packed A".into()))?;
            let nb = if a_stride == 0 { 1 } else { batches };
            let total = per
                .checked_mul(nb)
                .ok_or_else(|| GemmError::Overflow("packed A".into()))?;
            let dst = a_buf.resize(total);
            driver::pack_a_batches(ctx, &v, a_stride, p.mr, per, dst);
            (a_buf.as_slice(), if nb == 1 { 0 } else { per })
        }
    };
    let a_of = |batch: usize| &a_panels[batch * a_bstride..];

    let source: Box<dyn PanelSource + '_> = match b {
        Rhs::Packed(pb) => Box::new(driver::PrepackedB(pb)),
        Rhs::Raw(v) => Box::new(driver::RawB {
            view: v,
            bstride: b_stride,
        }),
    };
    let ld = c.ld;
    let job = Job {
        isa: ctx.isa,
        m,
        n,
        k,
        batches,
        a: &a_of,
        b: &*source,
        c: CPtr(c.data.as_mut_ptr()),
        c_len: c.data.len(),
        ldc: ld,
        c_offset: &|batch| batch * c_stride,
        accumulate,
        epilogue,
    };
    run_job(ctx, &job);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
