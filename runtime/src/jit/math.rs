//! f32x4 arithmetic for the kernel JIT: the NaN-propagating max/min, masks
//! and selects, and inline polynomial `exp`, `log`, `tanh`, `sigmoid`, `erf`
//! (Cranelift has none of them, and a libm call per lane is ~3x slower).
//!
//! Every value is an `f32x4`, even in scalar loops (which use lane 0), so the
//! vector body and the scalar tail run the same instructions and give
//! bitwise-equal results per element: splitting a range never changes
//! a result.
//!
//! # Measured error (`tests/jit_math.rs`, against f64 libm)
//!
//! Measured on every 2^11-th f32 bit pattern (2M values over the whole
//! range), 1M evenly spaced points in [-20, 20], and edge values (±0, ±inf,
//! NaN, denormals, ±FLT_MAX, the branch points); in ulps of the exact
//! result rounded to f32, counting denormal steps as ulps. The test asserts
//! these bounds.
//!
//! | op | method | max error, FMA / no FMA |
//! |---|---|---|
//! | `exp` | Cody-Waite reduction by ln 2, Cephes degree-5 polynomial, 2^n applied in two halves so results fall gracefully into denormals | 1 / 1 ulp |
//! | `log` | exponent/mantissa split with mantissa in [√½, √2), Cephes degree-8 polynomial; denormals rescaled by 2^23 | 1 / 1 ulp |
//! | `tanh` | rational `x·P(x²)/Q(x²)` (Eigen's and MLAS's coefficients, degrees 13/6) on x clamped to ±7.905; `x` below 4e-4 | 5 / 7 ulp |
//! | `sigmoid` | `e = e^{-\|x\|}`, then `1/(1+e)` for x ≥ 0 and `e/(1+e)` below, so tiny results keep their digits | 2 / 2 ulp |
//! | `erf` | `x + x·P(x²)` (degree 6) for \|x\| < 1; `1 - e^{-x²}·Q(1/x)` (degree 8) up to 3.92, where erf rounds to 1 | 1 / 1 ulp |
//!
//! `sqrt`, `recip` (a true division), `floor`, `ceil`, `abs`, `neg` are exact.
//! NaN in gives NaN out for every op (as the all-ones pattern, a negative
//! quiet NaN, where a fix-up is needed). The `erf` fits are minimax
//! (Lawson's algorithm in f64 against mpmath), rounded to f32.
//!
//! `tanh` trades accuracy for speed: an exp-based form (`1 - 2/(e^{2x}+1)`
//! with a polynomial below 0.625) measured 1 ulp but took ~65 instructions
//! per vector against ~25, which made the fused elementwise chain
//! compute-bound rather than memory-bound.

use std::collections::HashMap;

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::types::{F32X4, I32X4, I8X16};
use cranelift_codegen::ir::{ConstantData, Endianness, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;

/// The function's vector constants, in a read-only table next to the code.
///
/// `vconst` would be simpler, but the optimiser hoists it out of the loop,
/// where thirty polynomial coefficients then live in registers, spill, and
/// come back as separate reloads; loaded where it is used, a constant is
/// the memory operand of the instruction that uses it, for free.
///
/// A load that may move is pure, though, and the optimiser hoists pure
/// values out of loops. So inside a loop body the table is addressed from
/// `base + (i >> 63)`: zero at run time (indices are below 2^63), but
/// varying with the loop as far as the optimiser can tell, and different
/// for each unrolled copy, so that each copy's loads have one use each and
/// fold into it.
pub(crate) struct Pool {
    pub bytes: Vec<u8>,
    map: HashMap<[u8; 16], u32>,
    /// The table's address.
    pub base: Value,
    /// Where loads address it from at the current emission point.
    pub anchor: Value,
}

impl Pool {
    pub fn new(base: Value) -> Pool {
        Pool {
            bytes: Vec::new(),
            map: HashMap::new(),
            base,
            anchor: base,
        }
    }

    fn intern(&mut self, v: [u8; 16]) -> i32 {
        let n = self.bytes.len() as u32;
        let off = *self.map.entry(v).or_insert(n);
        if off == n {
            self.bytes.extend_from_slice(&v);
        }
        off as i32
    }
}

/// Emits f32x4 arithmetic into a function being built.
pub(crate) struct Vx<'a, 'b> {
    pub b: &'a mut FunctionBuilder<'b>,
    pub pool: &'a mut Pool,
    /// Fuse multiply-adds inside the polynomials (never in the kernel's own
    /// arithmetic, which must round like [`kiln_ir::kernel::Kernel::eval`]).
    pub fma: bool,
}

fn le() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

impl Vx<'_, '_> {
    /// An f32x4 constant with every lane `v`.
    pub fn c(&mut self, v: f32) -> Value {
        self.ci(v.to_bits() as i32, F32X4)
    }

    fn ci(&mut self, bits: i32, ty: cranelift_codegen::ir::Type) -> Value {
        let mut v = [0u8; 16];
        for lane in v.chunks_mut(4) {
            lane.copy_from_slice(&bits.to_le_bytes());
        }
        let off = self.pool.intern(v);
        let flags = MemFlagsData::trusted().with_readonly().with_can_move();
        self.b.ins().load(ty, flags, self.pool.anchor, off)
    }

    /// An i32x4 constant with every lane `v`.
    fn int(&mut self, v: i32) -> Value {
        self.ci(v, I32X4)
    }

    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    pub fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    pub fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    pub fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }

    /// `a*b + c`, fused where the target has FMA.
    fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let p = self.b.ins().fmul(a, b);
            self.b.ins().fadd(p, c)
        }
    }

    /// `Σ coef[k]·x^k` by Horner's rule.
    fn poly(&mut self, x: Value, coef: &[f32]) -> Value {
        let mut acc = self.c(coef[coef.len() - 1]);
        for &k in coef[..coef.len() - 1].iter().rev() {
            let kk = self.c(k);
            acc = self.mul_add(acc, x, kk);
        }
        acc
    }

    fn as_int(&mut self, v: Value) -> Value {
        self.b.ins().bitcast(I32X4, le(), v)
    }
    fn as_float(&mut self, v: Value) -> Value {
        self.b.ins().bitcast(F32X4, le(), v)
    }

    /// All-ones lanes where `a <cc> b`, as f32x4 (the form the x64 backend
    /// matches to `minps`/`maxps`/`blendvps`).
    pub fn mask(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        let m = self.b.ins().fcmp(cc, a, b);
        self.as_float(m)
    }

    /// `mask ? t : f`, lane by lane.
    pub fn select(&mut self, mask: Value, t: Value, f: Value) -> Value {
        self.b.ins().bitselect(mask, t, f)
    }

    /// `x < y ? x : y`, `y` where unordered: one `minps`.
    fn minps(&mut self, x: Value, y: Value) -> Value {
        let m = self.mask(FloatCC::LessThan, x, y);
        self.select(m, x, y)
    }
    /// `y < x ? x : y`, `y` where unordered: one `maxps`.
    fn maxps(&mut self, x: Value, y: Value) -> Value {
        let m = self.mask(FloatCC::LessThan, y, x);
        self.select(m, x, y)
    }

    /// `r`, but NaN in every lane where `x` is NaN.
    fn nan_if_nan(&mut self, x: Value, r: Value) -> Value {
        let m = self.mask(FloatCC::Unordered, x, x);
        self.b.ins().bor(r, m)
    }

    /// max that propagates NaN from either side (`Kernel::eval`'s `max_nan`).
    /// `b_not_nan`: `b` is known not to be NaN (a constant), which saves
    /// the fix-up: `max(x, 0.0)` (relu) is a single `maxps`.
    pub fn max(&mut self, a: Value, b: Value, b_not_nan: bool) -> Value {
        // maxps(b, a) = a < b ? b : a, which is `a` (NaN) when a is NaN.
        let r = self.maxps(b, a);
        if b_not_nan {
            r
        } else {
            self.nan_if_nan(b, r)
        }
    }

    /// min that propagates NaN from either side.
    pub fn min(&mut self, a: Value, b: Value, b_not_nan: bool) -> Value {
        let r = self.minps(b, a);
        if b_not_nan {
            r
        } else {
            self.nan_if_nan(b, r)
        }
    }

    fn abs(&mut self, x: Value) -> Value {
        self.b.ins().fabs(x)
    }

    /// `mag` (non-negative) with the sign of `x`.
    fn with_sign_of(&mut self, mag: Value, x: Value) -> Value {
        let sign = self.c(-0.0);
        let s = self.b.ins().band(x, sign);
        self.b.ins().bor(mag, s)
    }

    /// Lanes rotated so that lane k holds lane `perm[k]` (a byte shuffle).
    pub fn permute(&mut self, v: Value, perm: [u8; 4]) -> Value {
        let bytes: Vec<u8> = perm
            .iter()
            .flat_map(|&l| (0..4).map(move |b| l * 4 + b))
            .collect();
        let imm = self.b.func.dfg.immediates.push(ConstantData::from(bytes));
        let v8 = self.b.ins().bitcast(I8X16, le(), v);
        let s = self.b.ins().shuffle(v8, v8, imm);
        self.b.ins().bitcast(F32X4, le(), s)
    }

    /// Lane 0 in every lane.
    pub fn broadcast0(&mut self, v: Value) -> Value {
        let s = self.b.ins().extractlane(v, 0);
        self.b.ins().splat(F32X4, s)
    }

    /// e^x.
    pub fn exp(&mut self, x: Value) -> Value {
        let r = self.exp_no_nan(x);
        self.nan_if_nan(x, r)
    }

    /// e^x, but NaN lanes give 0.
    fn exp_no_nan(&mut self, x: Value) -> Value {
        // Below -104 the result rounds to 0; above 88.8 it is inf. The clamp
        // keeps n in [-150, 128], so each half of 2^n is a normal float.
        let lo = self.c(-104.0);
        let hi = self.c(88.8);
        let x = self.maxps(x, lo);
        let x = self.minps(x, hi);
        // n = round(x / ln 2) by the 1.5*2^23 trick; its low bits are n.
        let log2e = self.c(std::f32::consts::LOG2_E);
        let magic = self.c(12_582_912.0);
        let t = self.mul_add(x, log2e, magic);
        let n = self.sub(t, magic);
        // r = x - n ln 2, ln 2 split in two so n*C1 is exact.
        let c1 = self.c(-0.693_359_4);
        let c2 = self.c(2.121_944_4e-4);
        let r = self.mul_add(n, c1, x);
        let r = self.mul_add(n, c2, r);
        let p = self.poly(
            r,
            &[
                0.5,
                1.666_666_5e-1,
                4.166_579_6e-2,
                8.333_452e-3,
                1.398_2e-3,
                1.987_569_1e-4,
            ],
        );
        let z = self.mul(r, r);
        let p = self.mul_add(p, z, r);
        let one = self.c(1.0);
        let p = self.add(p, one);
        // 2^n = 2^(n>>1) * 2^(n - n>>1).
        let ti = self.as_int(t);
        let bias = self.int(127 - 0x4B40_0000);
        let nb = self.b.ins().iadd(ti, bias); // n + 127
        let n1 = self.b.ins().sshr_imm_u(ti, 1); // (n + 0x4B400000) >> 1 ...
        let half_magic = self.int(0x4B40_0000 >> 1);
        let n1 = self.b.ins().isub(n1, half_magic); // ... = n >> 1
        let n2b = self.b.ins().isub(nb, n1); // n - n1 + 127
        let k127 = self.int(127);
        let n1b = self.b.ins().iadd(n1, k127);
        let s1 = self.b.ins().ishl_imm_u(n1b, 23);
        let s2 = self.b.ins().ishl_imm_u(n2b, 23);
        let s1 = self.as_float(s1);
        let s2 = self.as_float(s2);
        let p = self.mul(p, s1);
        self.mul(p, s2)
    }

    /// ln x.
    pub fn log(&mut self, x: Value) -> Value {
        // Denormals: scale into the normal range first.
        let min_normal = self.c(f32::MIN_POSITIVE);
        let den = self.mask(FloatCC::LessThan, x, min_normal);
        let two23 = self.c(8_388_608.0);
        let xs = self.mul(x, two23);
        let xs = self.select(den, xs, x);
        let k23 = self.c(23.0);
        let zero = self.c(0.0);
        let eadj = self.select(den, k23, zero);
        // x = m * 2^e, m in [0.5, 1).
        let bits = self.as_int(xs);
        let eb = self.b.ins().ushr_imm_u(bits, 23);
        let k126 = self.int(126);
        let ei = self.b.ins().isub(eb, k126);
        let e = self.b.ins().fcvt_from_sint(F32X4, ei);
        let e = self.sub(e, eadj);
        let mant = self.int(0x007F_FFFF);
        let m = self.b.ins().band(bits, mant);
        let half = self.int(0x3F00_0000);
        let m = self.b.ins().bor(m, half);
        let m = self.as_float(m);
        // m < sqrt(1/2): m = 2m, e -= 1, so that f = m - 1 is in [-0.29, 0.41].
        let sqrthf = self.c(std::f32::consts::FRAC_1_SQRT_2);
        let small = self.mask(FloatCC::LessThan, m, sqrthf);
        let one = self.c(1.0);
        let f = self.sub(m, one);
        let mf = self.select(small, m, zero);
        let f = self.add(f, mf);
        let de = self.select(small, one, zero);
        let e = self.sub(e, de);
        let z = self.mul(f, f);
        let p = self.poly(
            f,
            &[
                0.333_333_3,
                -2.499_999_4e-1,
                2.000_071_5e-1,
                -1.666_805_8e-1,
                1.424_932_3e-1,
                -1.242_014_1e-1,
                1.167_699_9e-1,
                -1.151_461e-1,
                7.037_683_6e-2,
            ],
        );
        let fz = self.mul(f, z);
        let y = self.mul(p, fz);
        let c2 = self.c(-2.121_944_4e-4);
        let y = self.mul_add(e, c2, y);
        let mhalf = self.c(-0.5);
        let y = self.mul_add(z, mhalf, y);
        let r = self.add(f, y);
        let c1 = self.c(0.693_359_4);
        let r = self.mul_add(e, c1, r);
        // log(±0) = -inf, log(inf) = inf, log(<0) = log(NaN) = NaN.
        let is0 = self.mask(FloatCC::Equal, x, zero);
        let ninf = self.c(f32::NEG_INFINITY);
        let r = self.select(is0, ninf, r);
        let inf = self.c(f32::INFINITY);
        let isinf = self.mask(FloatCC::Equal, x, inf);
        let r = self.select(isinf, inf, r);
        let bad = self.mask(FloatCC::UnorderedOrLessThan, x, zero);
        self.b.ins().bor(r, bad)
    }

    /// tanh x: the rational `x P(x^2) / Q(x^2)` of Eigen and MLAS (degrees 13
    /// and 6), on x clamped to ±7.905 where tanh rounds to ±1; x itself below
    /// 0.0004 (the rational's relative error grows for denormals).
    pub fn tanh(&mut self, x: Value) -> Value {
        // Constant first: NaN passes both clamps and gives NaN.
        let lo = self.c(-7.905_311);
        let hi = self.c(7.905_311);
        let xc = self.maxps(lo, x);
        let xc = self.minps(hi, xc);
        let z = self.mul(xc, xc);
        let p = self.poly(
            z,
            &[
                4.893_524_6e-3,
                6.372_619_3e-4,
                1.485_722_4e-5,
                5.122_297e-8,
                -8.604_672e-11,
                2.000_188e-13,
                -2.760_768_5e-16,
            ],
        );
        let p = self.mul(p, xc);
        let q = self.poly(
            z,
            &[4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6],
        );
        let r = self.div(p, q);
        let ax = self.abs(x);
        let tiny = self.c(0.0004);
        let is_tiny = self.mask(FloatCC::LessThan, ax, tiny);
        self.select(is_tiny, x, r)
    }

    /// 1 / (1 + e^-x).
    pub fn sigmoid(&mut self, x: Value) -> Value {
        let ax = self.abs(x);
        let nax = self.b.ins().fneg(ax);
        let e = self.exp(nax);
        let one = self.c(1.0);
        let d = self.add(one, e);
        let zero = self.c(0.0);
        // 1/(1+e) for x >= 0, e/(1+e) below (NaN compares false: e is NaN).
        let pos = self.mask(FloatCC::GreaterThanOrEqual, x, zero);
        let num = self.select(pos, one, e);
        self.div(num, d)
    }

    /// erf x.
    pub fn erf(&mut self, x: Value) -> Value {
        let ax = self.abs(x);
        // |x| < 1: x P(x^2).
        let z = self.mul(x, x);
        // The leading 2/sqrt(pi) - 1 keeps x exact in x + x*P'(x^2).
        let p = self.poly(
            z,
            &[
                0.128_379_17,
                -0.376_126_26,
                0.112_835_854,
                -0.026_853_813,
                0.005_188_328,
                -0.000_801_019_37,
                7.853_861_5e-5,
            ],
        );
        let small = self.mul_add(x, p, x);
        // 1 <= |x| <= 3.92: 1 - e^{-x^2} Q(1/|x|); erf rounds to 1 beyond.
        let cap = self.c(3.92);
        let a = self.minps(ax, cap);
        let one = self.c(1.0);
        let u = self.div(one, a);
        let q = self.poly(
            u,
            &[
                0.000_264_984_76,
                0.559_131_7,
                0.041_367_058,
                -0.469_049_36,
                0.490_579_84,
                -0.232_250_88,
                0.014_985_055,
                0.032_926_977,
                -0.010_371_795,
            ],
        );
        let a2 = self.mul(a, a);
        let na2 = self.b.ins().fneg(a2);
        let e = self.exp_no_nan(na2);
        let ne = self.b.ins().fneg(e);
        let big = self.mul_add(ne, q, one);
        let big = self.with_sign_of(big, x);
        let is_small = self.mask(FloatCC::LessThan, ax, one);
        let r = self.select(is_small, small, big);
        self.nan_if_nan(x, r)
    }
}
