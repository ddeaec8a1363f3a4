//! Register-blocked SGEMM microkernels, one family per instruction set.
//!
//! A microkernel multiplies one packed A micro-panel (`kc` steps of `MR`
//! floats, row `i` of step `p` at `a[p * MR + i]`) by one packed B micro-panel
//! (`kc` steps of `NR` floats) into an `R × NR` tile of C (`R <= MR`), keeping
//! the tile in registers for the whole `kc` loop. Each is generic over the
//! number of live rows `R`, so a tile on the bottom edge of C does exactly the
//! work it needs (a GEMV runs the `R = 1` kernel, not a sixth of a full one).
//!
//! Every output element is one chain of multiply-adds in increasing `k`,
//! started from zero or from C's previous value (`load_c`), so its value does
//! not depend on where the tile sits, on `R`, on the blocking or on threads.
//! The SIMD kernels use fused multiply-add; the portable kernel rounds the
//! product and the sum separately (Rust never contracts `a * b + c`).

use super::Isa;

/// `kernel(kc, a, b, c, ldc, load_c)`.
///
/// # Safety
/// `a` must be valid for reading `kc * MR` floats and `b` for `kc * NR`
/// floats (the ISA's MR and NR). `c` must be valid for reading (when
/// `load_c`) and writing `R` rows of `NR` floats at row stride `ldc`, and no
/// other thread may access those floats during the call. The kernel's
/// instruction set must be available on the running CPU.
pub(crate) type KernelFn =
    unsafe fn(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, load_c: bool);

/// Register blocking and cache blocking of one instruction set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    /// Rows of a microtile (and of a packed A panel).
    pub mr: usize,
    /// Columns of a microtile (and of a packed B strip).
    pub nr: usize,
    /// Depth of one pass over a microtile: `kc * nr` floats of B stay in L1.
    pub kc: usize,
    /// Rows of C per block: `mc * kc` floats of A stay in L2.
    pub mc: usize,
}

const PORTABLE: Params = Params {
    mr: 4,
    nr: 8,
    kc: 256,
    mc: 64,
};
const AVX2: Params = Params {
    mr: 6,
    nr: 16,
    kc: 256,
    mc: 72,
};
const AVX512: Params = Params {
    mr: 12,
    nr: 32,
    kc: 192,
    mc: 96,
};

/// The largest MR and NR of any ISA (sizes the edge-tile scratch).
pub(crate) const MAX_MR: usize = 12;
pub(crate) const MAX_NR: usize = 32;

pub(crate) fn params(isa: Isa) -> Params {
    match isa {
        Isa::Portable => PORTABLE,
        Isa::Avx2 => AVX2,
        Isa::Avx512 => AVX512,
    }
}

/// The kernels of `isa`, indexed by `R - 1`. The caller must have checked
/// that `isa` is available (see [`Isa::is_available`]).
pub(crate) fn kernels(isa: Isa) -> &'static [KernelFn] {
    match isa {
        Isa::Portable => &PORTABLE_KERNELS,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => &x86::AVX2_KERNELS,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => &x86::AVX512_KERNELS,
        // Unreachable: only `Portable` is available off x86-64, and every
        // entry point checks availability first.
        #[cfg(not(target_arch = "x86_64"))]
        _ => &PORTABLE_KERNELS,
    }
}

const PMR: usize = PORTABLE.mr;
const PNR: usize = PORTABLE.nr;

/// Plain Rust; LLVM vectorises the `PNR`-wide rows with the baseline ISA.
#[allow(clippy::needless_range_loop)]
unsafe fn portable_kernel<const R: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    load_c: bool,
) {
    let mut acc = [[0.0f32; PNR]; R];
    if load_c {
        for i in 0..R {
            // SAFETY: the caller guarantees `c` holds R rows of PNR floats at
            // stride `ldc`; `[f32; PNR]` has the alignment of `f32`.
            acc[i] = unsafe { c.add(i * ldc).cast::<[f32; PNR]>().read() };
        }
    }
    for p in 0..kc {
        // SAFETY: `b` holds `kc * PNR` floats and `a` holds `kc * PMR`
        // floats (caller contract), and `p < kc`, `i < R <= PMR`.
        let bv = unsafe { b.add(p * PNR).cast::<[f32; PNR]>().read() };
        for i in 0..R {
            let ai = unsafe { *a.add(p * PMR + i) };
            for j in 0..PNR {
                acc[i][j] += ai * bv[j];
            }
        }
    }
    for i in 0..R {
        // SAFETY: as for the loads above; the caller owns these floats.
        unsafe { c.add(i * ldc).cast::<[f32; PNR]>().write(acc[i]) };
    }
}

static PORTABLE_KERNELS: [KernelFn; PMR] = [
    portable_kernel::<1>,
    portable_kernel::<2>,
    portable_kernel::<3>,
    portable_kernel::<4>,
];

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::KernelFn;
    use std::arch::x86_64::*;

    /// One SIMD microkernel: `NV` vectors of `W` lanes per row, `MR` rows per
    /// packed A step. The accumulator array is fully unrolled by LLVM and
    /// lives in registers (`R * NV` of them).
    macro_rules! simd_kernel {
        (
            $name:ident, feature = $feat:literal, mr = $mr:expr, nv = $nv:expr, lanes = $w:expr,
            zero = $zero:ident, load = $load:ident, store = $store:ident,
            splat = $splat:ident, fma = $fma:ident
        ) => {
            #[target_feature(enable = $feat)]
            #[allow(clippy::needless_range_loop)]
            unsafe fn $name<const R: usize>(
                kc: usize,
                a: *const f32,
                b: *const f32,
                c: *mut f32,
                ldc: usize,
                load_c: bool,
            ) {
                let mut acc = [[$zero(); $nv]; R];
                if load_c {
                    for i in 0..R {
                        for v in 0..$nv {
                            // SAFETY: the caller guarantees `c` holds R rows
                            // of NV * W floats at stride `ldc`.
                            acc[i][v] = unsafe { $load(c.add(i * ldc + v * $w)) };
                        }
                    }
                }
                // Declared before `step!` so that its hygiene sees these.
                let mut a = a;
                let mut b = b;
                // One step of the k loop: broadcast A's R values of step
                // `q`, multiply by B's NV vectors of step `q`, accumulate.
                macro_rules! step {
                    ($q:expr) => {{
                        let mut bv = [$zero(); $nv];
                        for v in 0..$nv {
                            // SAFETY: `b` holds `kc` steps of NV * W floats
                            // and step `$q` of the current group is < kc.
                            bv[v] = unsafe { $load(b.add($q * $nv * $w + v * $w)) };
                        }
                        for i in 0..R {
                            // SAFETY: `a` holds `kc` steps of MR floats, i < R <= MR.
                            let ai = $splat(unsafe { *a.add($q * $mr + i) });
                            for v in 0..$nv {
                                acc[i][v] = $fma(ai, bv[v], acc[i][v]);
                            }
                        }
                    }};
                }
                // Four steps per iteration: fewer loop instructions between
                // the FMAs. The order of the steps is unchanged.
                for _ in 0..kc / 4 {
                    step!(0);
                    step!(1);
                    step!(2);
                    step!(3);
                    // SAFETY: at most one past the last step of the buffers.
                    a = unsafe { a.add(4 * $mr) };
                    b = unsafe { b.add(4 * $nv * $w) };
                }
                for _ in 0..kc % 4 {
                    step!(0);
                    // SAFETY: as above.
                    a = unsafe { a.add($mr) };
                    b = unsafe { b.add($nv * $w) };
                }
                for i in 0..R {
                    for v in 0..$nv {
                        // SAFETY: as for the loads of C above.
                        unsafe { $store(c.add(i * ldc + v * $w), acc[i][v]) };
                    }
                }
            }
        };
    }

    simd_kernel!(
        avx2_kernel,
        feature = "avx2,fma",
        mr = 6,
        nv = 2,
        lanes = 8,
        zero = _mm256_setzero_ps,
        load = _mm256_loadu_ps,
        store = _mm256_storeu_ps,
        splat = _mm256_set1_ps,
        fma = _mm256_fmadd_ps
    );

    simd_kernel!(
        avx512_kernel,
        feature = "avx512f,fma",
        mr = 12,
        nv = 2,
        lanes = 16,
        zero = _mm512_setzero_ps,
        load = _mm512_loadu_ps,
        store = _mm512_storeu_ps,
        splat = _mm512_set1_ps,
        fma = _mm512_fmadd_ps
    );

    /// `c = fma(x, b, c)`, for the AVX2 and AVX-512 ISAs (both fuse).
    pub(super) fn axpy_fma(x: f32, b: &[f32], c: &mut [f32]) {
        // SAFETY: only handed out for ISAs whose availability implies AVX2
        // and FMA (`Isa::is_available` checks FMA for both; AVX-512F CPUs
        // have AVX2), and callers check availability first.
        unsafe { super::x86_axpy::axpy_fma_impl(x, b, c) }
    }

    // The macro's shapes must be the ones the packing uses.
    const _: () = assert!(super::AVX2.mr == 6 && super::AVX2.nr == 2 * 8);
    const _: () = assert!(super::AVX512.mr == 12 && super::AVX512.nr == 2 * 16);
    const _: () = assert!(super::MAX_MR >= super::AVX512.mr && super::MAX_NR >= super::AVX512.nr);

    pub(super) static AVX2_KERNELS: [KernelFn; 6] = [
        avx2_kernel::<1>,
        avx2_kernel::<2>,
        avx2_kernel::<3>,
        avx2_kernel::<4>,
        avx2_kernel::<5>,
        avx2_kernel::<6>,
    ];

    pub(super) static AVX512_KERNELS: [KernelFn; 12] = [
        avx512_kernel::<1>,
        avx512_kernel::<2>,
        avx512_kernel::<3>,
        avx512_kernel::<4>,
        avx512_kernel::<5>,
        avx512_kernel::<6>,
        avx512_kernel::<7>,
        avx512_kernel::<8>,
        avx512_kernel::<9>,
        avx512_kernel::<10>,
        avx512_kernel::<11>,
        avx512_kernel::<12>,
    ];
}

/// `c[j] = b[j] · x + c[j]` for every `j`, rounded as the microkernels of
/// the same ISA round (fused on AVX2/AVX-512, separately on portable), so a
/// product computed row by row is bitwise equal to the blocked one.
pub(crate) type AxpyFn = fn(x: f32, b: &[f32], c: &mut [f32]);

pub(crate) fn axpy(isa: Isa) -> AxpyFn {
    match isa {
        Isa::Portable => axpy_portable,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => x86::axpy_fma,
        #[cfg(not(target_arch = "x86_64"))]
        _ => axpy_portable,
    }
}

fn axpy_portable(x: f32, b: &[f32], c: &mut [f32]) {
    for (cv, bv) in c.iter_mut().zip(b) {
        *cv += x * bv;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86_axpy {
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn axpy_fma_impl(x: f32, b: &[f32], c: &mut [f32]) {
        let n = b.len().min(c.len());
        let xv = _mm256_set1_ps(x);
        let mut j = 0;
        while j + 8 <= n {
            // SAFETY: j + 8 <= n, within both slices.
            unsafe {
                let bv = _mm256_loadu_ps(b.as_ptr().add(j));
                let cv = _mm256_loadu_ps(c.as_ptr().add(j));
                _mm256_storeu_ps(c.as_mut_ptr().add(j), _mm256_fmadd_ps(xv, bv, cv));
            }
            j += 8;
        }
        for (cv, bv) in c[j..n].iter_mut().zip(&b[j..n]) {
            *cv = x.mul_add(*bv, *cv);
        }
    }
}
