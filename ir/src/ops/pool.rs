//! Pooling (`max_pool`, `avg_pool`, and their global forms), and the
//! sliding-window geometry that pooling shares with convolution.
//!
//! Window attributes follow ONNX: `pads` lists every begin pad and then every
//! end pad, and an empty list means the default (strides and dilations 1, pads
//! 0), kept exactly as given so that printing round-trips.

use crate::grad::{GradCtx, GradError, GradResult};
use crate::graph::ValueId;
use ndarray::{Array, Array2, ArrayD, Axis, Dimension, Ix2, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::op::{attr_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::require_float;
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

/// Per-spatial-dimension window attributes with defaults applied.
#[derive(Clone, Debug)]
pub(crate) struct Geometry {
    pub strides: Vec<usize>,
    pub pads_begin: Vec<usize>,
    pub pads_end: Vec<usize>,
    pub dilations: Vec<usize>,
}

/// Check an attribute list's length (`per_dim` entries per spatial dim, or empty
/// for the default) and that every value is at least `min`.
pub(crate) fn dim_list(
    attr: &str,
    v: &[i64],
    n: usize,
    per_dim: usize,
    min: i64,
    default: usize,
) -> OpResult<Vec<usize>> {
    if v.is_empty() {
        return Ok(vec![default; n * per_dim]);
    }
    if v.len() != n * per_dim {
        let want = if per_dim == 1 {
            format!("{n} values (one per spatial dim)")
        } else {
            format!("{} values (begin pads then end pads)", n * per_dim)
        };
        return attr_err(
            attr,
            format!("expected {want} or an empty list, found {}", v.len()),
        );
    }
    v.iter()
        .map(|&x| match usize::try_from(x) {
            Ok(u) if x >= min => Ok(u),
            _ => {
                let bound = if min > 0 { "positive" } else { "non-negative" };
                attr_err(attr, format!("values must be {bound}, found {x}"))
            }
        })
        .collect()
}

impl Geometry {
    pub fn resolve(n: usize, strides: &[i64], pads: &[i64], dilations: &[i64]) -> OpResult<Self> {
        let pads = dim_list("pads", pads, n, 2, 0, 0)?;
        Ok(Geometry {
            strides: dim_list("strides", strides, n, 1, 1, 1)?,
            pads_begin: pads[..n].to_vec(),
            pads_end: pads[n..].to_vec(),
            dilations: dim_list("dilations", dilations, n, 1, 1, 1)?,
        })
    }

    /// Output length of a sliding window along dim `d`. In ceil mode a final
    /// window that would start inside the end padding is dropped (ONNX, PyTorch).
    pub fn sliding_out(
        &self,
        op: &str,
        d: usize,
        input: usize,
        k: usize,
        ceil: bool,
    ) -> OpResult<usize> {
        let (s, pb, pe) = (
            self.strides[d] as i128,
            self.pads_begin[d] as i128,
            self.pads_end[d] as i128,
        );
        let span = self.dilations[d] as i128 * (k as i128 - 1) + 1;
        let room = input as i128 + pb + pe - span;
        if k == 0 || room < 0 {
            return shape_err(format!(
                "{op}: kernel larger than padded input in spatial dim {d} \
                 (input {input} + pads {pb}+{pe} < dilated kernel {span})"
            ));
        }
        let mut out = if ceil {
            (room + s - 1) / s + 1
        } else {
            room / s + 1
        };
        if ceil && (out - 1) * s >= input as i128 + pb {
            out -= 1;
        }
        usize::try_from(out).or_else(|_| shape_err(format!("{op}: output size overflows")))
    }

    /// Output length of a transposed convolution along dim `d`: the full
    /// stamped extent plus `opad`, cropped by the pads.
    pub fn stamp_out(&self, d: usize, input: usize, k: usize, opad: usize) -> OpResult<usize> {
        let (i, k128) = (input as i128, k as i128);
        let full = self.strides[d] as i128 * (i - 1)
            + opad as i128
            + (k128 - 1) * self.dilations[d] as i128
            + 1;
        let size = full - self.pads_begin[d] as i128 - self.pads_end[d] as i128;
        if input < 1 || k < 1 || size < 1 {
            return shape_err(format!(
                "conv_transpose: output size {size} < 1 in spatial dim {d} \
                 (input {input}, kernel {k}; the pads crop away the whole output)"
            ));
        }
        usize::try_from(size).or_else(|_| shape_err("conv_transpose: output size overflows"))
    }

    /// Sliding-window taps, indexed `[kernel offset][output position]`.
    pub fn sliding_taps(
        &self,
        input: &[usize],
        kernel: &[usize],
        out: &[usize],
    ) -> OpResult<Vec<Tap>> {
        check_table(kernel, out)?;
        let per_dim: Vec<Vec<Tap>> = (0..input.len())
            .map(|d| {
                let (s, pb, dil) = (
                    self.strides[d] as i128,
                    self.pads_begin[d] as i128,
                    self.dilations[d] as i128,
                );
                let (len, end) = (input[d] as i128, (input[d] + self.pads_end[d]) as i128);
                let mut v = Vec::with_capacity(kernel[d] * out[d]);
                for k in 0..kernel[d] as i128 {
                    for o in 0..out[d] as i128 {
                        let p = o * s - pb + k * dil;
                        v.push(if (0..len).contains(&p) {
                            Tap::At(p as usize)
                        } else if (-pb..end).contains(&p) {
                            Tap::Pad
                        } else {
                            Tap::Outside
                        });
                    }
                }
                v
            })
            .collect();
        Ok(combine_taps(&per_dim, kernel, out, input))
    }

    /// Transposed-convolution taps, indexed `[kernel offset][input position]`:
    /// where kernel offset `k` of input pixel `i` lands in the cropped output.
    pub fn stamp_taps(
        &self,
        input: &[usize],
        kernel: &[usize],
        out: &[usize],
    ) -> OpResult<Vec<Tap>> {
        check_table(kernel, input)?;
        let per_dim: Vec<Vec<Tap>> = (0..input.len())
            .map(|d| {
                let (s, pb, dil) = (
                    self.strides[d] as i128,
                    self.pads_begin[d] as i128,
                    self.dilations[d] as i128,
                );
                let mut v = Vec::with_capacity(kernel[d] * input[d]);
                for k in 0..kernel[d] as i128 {
                    for i in 0..input[d] as i128 {
                        let p = i * s + k * dil - pb;
                        v.push(if (0..out[d] as i128).contains(&p) {
                            Tap::At(p as usize)
                        } else {
                            Tap::Outside
                        });
                    }
                }
                v
            })
            .collect();
        Ok(combine_taps(&per_dim, kernel, input, out))
    }
}

/// Tap tables beyond this many entries are refused: only absurd attributes
/// (a huge kernel over huge padding) get there, and they must not abort the
/// interpreter with a failed allocation.
const MAX_TAPS: usize = 1 << 30;

fn check_table(kernel: &[usize], pos: &[usize]) -> OpResult<()> {
    let fits = |n: Option<usize>| n.is_some_and(|n| n <= MAX_TAPS);
    let total = kernel
        .iter()
        .chain(pos)
        .try_fold(1usize, |a, &b| a.checked_mul(b));
    if fits(total)
        && kernel
            .iter()
            .zip(pos)
            .all(|(&k, &p)| fits(k.checked_mul(p)))
    {
        Ok(())
    } else {
        Err(OpError::Eval(format!(
            "window of {kernel:?} over {pos:?} positions is too large to evaluate"
        )))
    }
}

/// Where one kernel offset at one window position reads (or writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tap {
    /// Flat row-major offset into the spatial plane.
    At(usize),
    /// Inside the declared padding.
    Pad,
    /// Beyond the padding (ceil-mode windows, cropped transposed output).
    Outside,
}

/// Combine per-dimension taps (each indexed `[k][p]`) into flat taps indexed
/// `[kernel flat][position flat]`, addressing a plane of dims `target`.
fn combine_taps(
    per_dim: &[Vec<Tap>],
    kernel: &[usize],
    pos: &[usize],
    target: &[usize],
) -> Vec<Tap> {
    let n = kernel.len();
    let (kp, pp): (usize, usize) = (kernel.iter().product(), pos.iter().product());
    let mut out = Vec::with_capacity(kp * pp);
    let (mut kk, mut pi) = (vec![0usize; n], vec![0usize; n]);
    for kf in 0..kp {
        unravel(kf, kernel, &mut kk);
        for pf in 0..pp {
            unravel(pf, pos, &mut pi);
            let (mut flat, mut pad) = (0usize, false);
            let mut tap = None;
            for d in 0..n {
                match per_dim[d][kk[d] * pos[d] + pi[d]] {
                    Tap::At(c) => flat = flat * target[d] + c,
                    Tap::Pad => {
                        flat *= target[d];
                        pad = true;
                    }
                    Tap::Outside => {
                        tap = Some(Tap::Outside);
                        break;
                    }
                }
            }
            out.push(tap.unwrap_or(if pad { Tap::Pad } else { Tap::At(flat) }));
        }
    }
    out
}

fn unravel(mut flat: usize, dims: &[usize], out: &mut [usize]) {
    for d in (0..dims.len()).rev() {
        out[d] = flat % dims[d];
        flat /= dims[d];
    }
}

/// Dimension `i` of `t` as a number, or a shape error naming the symbol to bind.
pub(crate) fn known_dim(t: &TensorType, i: usize, what: &str) -> OpResult<usize> {
    match t.shape.dims().get(i) {
        Some(Dim::Known(n)) => Ok(*n),
        None => shape_err(format!("{what} has no dimension {i}: {t}")),
        Some(Dim::Sym(s)) => shape_err(format!(
            "{what} needs a static dimension {i}, found {} (bind {s} with --dim)",
            t.shape
        )),
    }
}

/// Validate a data input `x [N, C, spatial...]` (`n` spatial dims if given):
/// float, with static spatial dims, which are returned.
pub(crate) fn check_nc_input(x: &TensorType, n: Option<usize>, op: &str) -> OpResult<Vec<usize>> {
    require_float(x, &format!("{op} input"))?;
    if x.rank() < 3 || n.is_some_and(|n| x.rank() != n + 2) {
        let want = n.map_or("at least 3".to_string(), |n| (n + 2).to_string());
        return shape_err(format!(
            "{op} input must be [N, C, spatial...] of rank {want}, found {x}"
        ));
    }
    (2..x.rank())
        .map(|i| known_dim(x, i, &format!("{op} input")))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Max,
    Avg,
}

/// Reduce one window's in-bounds values. Max ignores padding (it acts as -inf)
/// and propagates NaN; an all-padding window gives -inf. Avg divides by
/// `divisor`, which the caller chooses according to `count_include_pad`.
fn reduce(kind: PoolKind, vals: impl Iterator<Item = f64>, divisor: usize) -> f64 {
    match kind {
        PoolKind::Max => vals.fold(f64::NEG_INFINITY, |m, v| {
            if m.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                m.max(v)
            }
        }),
        // An empty window divides 0 by 0: NaN, as numpy's mean of nothing.
        PoolKind::Avg => vals.sum::<f64>() / divisor as f64,
    }
}

fn flag(a: &mut AttrReader, name: &str) -> Result<bool, AttrError> {
    match a.int(name, 0)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(AttrError {
            attr: name.into(),
            msg: format!("expected 0 or 1, found {v}"),
        }),
    }
}

/// Flatten `x [N, C, spatial...]` to one row per (n, c) plane.
pub(crate) fn planes(x: &Tensor) -> OpResult<Array2<f64>> {
    let sh = x.shape();
    reshaped(
        &x.to_f64(),
        Ix2(sh[..2].iter().product(), sh[2..].iter().product()),
    )
}

/// Reshape a checked array to a fixed rank, or fail with an eval error.
pub(crate) fn reshaped<D: Dimension>(a: &ArrayD<f64>, shape: D) -> OpResult<Array<f64, D>> {
    a.to_shape(shape)
        .map(|v| v.into_owned())
        .map_err(|e| OpError::Eval(format!("reshape failed: {e}")))
}

/// Reshape a result to the inferred output type and round it to its dtype.
pub(crate) fn output<D: Dimension>(a: Array<f64, D>, ty: &TensorType) -> OpResult<Vec<Tensor>> {
    let dims = ty
        .shape
        .concrete()
        .ok_or_else(|| OpError::Eval("symbolic output".into()))?;
    let out = a
        .into_shape_with_order(IxDyn(&dims))
        .map_err(|e| OpError::Eval(e.to_string()))?;
    Ok(vec![Tensor::from_f64(ty.dtype, out)])
}

/// `max_pool(x)` / `avg_pool(x)` over the spatial dims of `x [N, C, spatial...]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel: Vec<i64>,
    pub strides: Vec<i64>,
    pub pads: Vec<i64>,
    pub dilations: Vec<i64>,
    pub ceil_mode: bool,
    pub count_include_pad: bool,
}

/// What `infer` works out for a pool, reused by `eval`.
pub(crate) struct PoolPlan {
    pub geom: Geometry,
    /// Input spatial dims.
    pub xs: Vec<usize>,
    pub kernel: Vec<usize>,
    /// Output spatial dims.
    pub out: Vec<usize>,
    pub ty: TensorType,
}

/// A pool as a gather table, for backends: output position `o` of a plane
/// reduces the input elements `idx[o * taps + k]` of the same plane (`-1`:
/// padding, skipped), and an average divides by `divisors[o]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolTable {
    pub kind: PoolKind,
    /// Elements of one input plane (`H·W...`) and of one output plane.
    pub in_plane: usize,
    pub out_plane: usize,
    /// Window positions per output element.
    pub taps: usize,
    pub idx: Vec<i32>,
    pub divisors: Vec<u32>,
}

impl Pool {
    /// A pool with the given kernel and every other attribute at its default.
    pub fn new(kind: PoolKind, kernel: &[i64]) -> Pool {
        Pool {
            kind,
            kernel: kernel.to_vec(),
            strides: vec![],
            pads: vec![],
            dilations: vec![],
            ceil_mode: false,
            count_include_pad: false,
        }
    }

    /// The gather table of this pool over an input of type `x`, exactly as
    /// `eval` walks it.
    pub fn table(&self, x: &TensorType) -> OpResult<PoolTable> {
        let PoolPlan {
            geom: g,
            xs,
            kernel,
            out,
            ..
        } = self.plan(&[x])?;
        let taps = g.sliding_taps(&xs, &kernel, &out)?;
        let (kp, op) = (
            kernel.iter().product::<usize>(),
            out.iter().product::<usize>(),
        );
        let in_plane: usize = xs.iter().product();
        if i32::try_from(in_plane).is_err() {
            return Err(OpError::Eval("plane too large for a gather table".into()));
        }
        let mut idx = Vec::with_capacity(kp * op);
        let mut divisors = Vec::with_capacity(op);
        for o in 0..op {
            let mut d = 0u32;
            for k in 0..kp {
                match taps[k * op + o] {
                    Tap::At(p) => {
                        idx.push(p as i32);
                        d += 1;
                    }
                    Tap::Pad => {
                        idx.push(-1);
                        d += u32::from(self.count_include_pad);
                    }
                    Tap::Outside => idx.push(-1),
                }
            }
            divisors.push(d);
        }
        Ok(PoolTable {
            kind: self.kind,
            in_plane,
            out_plane: op,
            taps: kp,
            idx,
            divisors,
        })
    }

    pub(crate) fn plan(&self, inputs: &[&TensorType]) -> OpResult<PoolPlan> {
        expect_arity(inputs, 1)?;
        let op = self.spelling();
        let n = self.kernel.len();
        if n == 0 {
            return attr_err(
                "kernel",
                "must list one size per spatial dim, found an empty list",
            );
        }
        // Max pooling is exact on integers too (ONNX allows int8 and uint8).
        let x = inputs[0];
        let small_int = matches!(x.dtype, crate::dtype::DType::I8 | crate::dtype::DType::U8);
        let xs = if self.kind == PoolKind::Max && small_int {
            check_nc_input(
                &TensorType::new(crate::dtype::DType::F64, x.shape.clone()),
                Some(n),
                op,
            )?
        } else {
            check_nc_input(x, Some(n), op)?
        };
        let kernel = dim_list("kernel", &self.kernel, n, 1, 1, 1)?;
        let g = Geometry::resolve(n, &self.strides, &self.pads, &self.dilations)?;
        let out: Vec<usize> = (0..n)
            .map(|d| g.sliding_out(op, d, xs[d], kernel[d], self.ceil_mode))
            .collect::<OpResult<_>>()?;
        let mut dims: Vec<Dim> = inputs[0].shape.dims()[..2].to_vec();
        dims.extend(out.iter().map(|&d| Dim::Known(d)));
        let ty = inputs[0].with_shape(Shape::from(dims));
        Ok(PoolPlan {
            geom: g,
            xs,
            kernel,
            out,
            ty,
        })
    }
}

impl OpDef for Pool {
    const SPELLINGS: &'static [&'static str] = &["max_pool", "avg_pool"];

    fn parse(spelling: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        let kind = if spelling == "max_pool" {
            PoolKind::Max
        } else {
            PoolKind::Avg
        };
        Ok(Pool {
            kind,
            kernel: a.req_ints("kernel")?,
            strides: a.ints("strides", &[])?,
            pads: a.ints("pads", &[])?,
            dilations: a.ints("dilations", &[])?,
            ceil_mode: flag(a, "ceil_mode")?,
            count_include_pad: flag(a, "count_include_pad")?,
        })
    }
    fn spelling(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "max_pool",
            PoolKind::Avg => "avg_pool",
        }
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("kernel", &self.kernel);
        w.ints("strides", &self.strides);
        w.ints("pads", &self.pads);
        w.ints("dilations", &self.dilations);
        w.int("ceil_mode", self.ceil_mode as i64);
        w.int("count_include_pad", self.count_include_pad as i64);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        Ok(vec![self.plan(inputs)?.ty])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["max_pool", "avg_pool"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        let Some(dy) = dout[0] else {
            return Ok(vec![None]);
        };
        if !cx.ty(inputs[0]).dtype.is_float() {
            return Err(GradError::NoRule(self.spelling()));
        }
        let g = crate::ops::grad_ops::PoolGrad { pool: self.clone() };
        Ok(vec![Some(cx.add(g, &[inputs[0], dy])?)])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let PoolPlan {
            geom: g,
            xs,
            kernel,
            out,
            ty,
        } = self.plan(&tys.iter().collect::<Vec<_>>())?;
        let taps = g.sliding_taps(&xs, &kernel, &out)?;
        let (kp, op) = (
            kernel.iter().product::<usize>(),
            out.iter().product::<usize>(),
        );
        // The divisor depends only on the window position, not the plane.
        let divisors: Vec<usize> = (0..op)
            .map(|o| {
                (0..kp)
                    .filter(|&k| match taps[k * op + o] {
                        Tap::At(_) => true,
                        Tap::Pad => self.count_include_pad,
                        Tap::Outside => false,
                    })
                    .count()
            })
            .collect();
        let x = planes(inputs[0])?;
        let mut y = Array2::<f64>::zeros((x.nrows(), op));
        for (xr, mut yr) in x.rows().into_iter().zip(y.rows_mut()) {
            for (o, v) in yr.iter_mut().enumerate() {
                let vals = (0..kp).filter_map(|k| match taps[k * op + o] {
                    Tap::At(p) => Some(xr[p]),
                    _ => None,
                });
                *v = reduce(self.kind, vals, divisors[o]);
            }
        }
        output(y, &ty)
    }
}

/// `global_max_pool(x)` / `global_avg_pool(x)`: reduce every spatial dim of
/// `x [N, C, spatial...]` to 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GlobalPool {
    pub kind: PoolKind,
}

impl OpDef for GlobalPool {
    const SPELLINGS: &'static [&'static str] = &["global_max_pool", "global_avg_pool"];

    fn parse(spelling: &str, _: &mut AttrReader) -> Result<Self, AttrError> {
        let kind = if spelling == "global_max_pool" {
            PoolKind::Max
        } else {
            PoolKind::Avg
        };
        Ok(GlobalPool { kind })
    }
    fn spelling(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "global_max_pool",
            PoolKind::Avg => "global_avg_pool",
        }
    }
    fn write_attrs(&self, _w: &mut AttrWriter) {}
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        require_float(x, &format!("{} input", self.spelling()))?;
        if x.rank() < 3 {
            return shape_err(format!(
                "{} input must be [N, C, spatial...] of rank at least 3, found {x}",
                self.spelling()
            ));
        }
        // Every dim is copied or set to 1, so symbolic dims are fine anywhere.
        let mut dims: Vec<Dim> = x.shape.dims()[..2].to_vec();
        dims.resize(x.rank(), Dim::Known(1));
        Ok(vec![x.with_shape(Shape::from(dims))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Reduction
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["global_max_pool", "global_avg_pool"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        let Some(dy) = dout[0] else {
            return Ok(vec![None]);
        };
        let (x, y) = (inputs[0], outputs[0]);
        let xd = cx.dims(x)?;
        let spatial: Vec<usize> = (2..xd.len()).collect();
        let gx = match self.kind {
            PoolKind::Avg => {
                let count: usize = xd[2..].iter().product();
                let g = cx.scale(dy, 1.0 / count as f64)?;
                cx.expand_like(g, x)?
            }
            // To the maximum, shared evenly on ties.
            PoolKind::Max => {
                let dt = cx.ty(x).dtype;
                let m = cx.mask(crate::ops::binary::BinaryKind::Eq, x, y, dt)?;
                let cnt = cx.reduce_sum(m, &spatial, true)?;
                let share = cx.div(dy, cnt)?;
                cx.mul(m, share)?
            }
        };
        Ok(vec![Some(gx)])
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let ty = self.infer(&tys.iter().collect::<Vec<_>>())?.remove(0);
        let x = planes(inputs[0])?;
        let n = x.ncols();
        let y = x.map_axis(Axis(1), |r| reduce(self.kind, r.iter().copied(), n));
        output(y, &ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttrValue;
    use crate::dtype::DType;
    use crate::op::{Op, ParseOpError};

    fn t(shape: &[usize], data: &[f64]) -> Tensor {
        Tensor::from_vec_f64(DType::F32, shape, data.to_vec()).unwrap()
    }
    fn ty(shape: &[usize]) -> TensorType {
        TensorType::concrete(DType::F32, shape)
    }
    fn pool(kind: PoolKind, kernel: &[i64], strides: &[i64], pads: &[i64]) -> Pool {
        Pool {
            strides: strides.to_vec(),
            pads: pads.to_vec(),
            ..Pool::new(kind, kernel)
        }
    }
    fn run(op: &impl OpDef, x: &Tensor) -> (Vec<usize>, Vec<f64>) {
        let y = op.eval(&[x]).unwrap().remove(0);
        assert_eq!(y.ty(), op.infer(&[&x.ty()]).unwrap()[0]);
        (y.shape().to_vec(), y.values_f64())
    }
    fn sym(dims: &[&str]) -> TensorType {
        let d = dims
            .iter()
            .map(|s| s.parse().map_or_else(|_| Dim::sym(s), Dim::Known));
        TensorType::new(DType::F32, Shape::from(d.collect::<Vec<_>>()))
    }

    #[test]
    fn max_pool_two_by_two_stride_one() {
        let x = t(
            &[1, 1, 3, 3],
            &[120., 150., 120., 100., 50., 110., 25., 25., 10.],
        );
        let op = pool(PoolKind::Max, &[2, 2], &[1, 1], &[]);
        assert_eq!(
            run(&op, &x),
            (vec![1, 1, 2, 2], vec![150., 150., 100., 110.])
        );
    }

    #[test]
    fn max_200_avg_90() {
        let x = t(
            &[1, 1, 3, 3],
            &[200., 150., 150., 100., 50., 100., 25., 25., 10.],
        );
        assert_eq!(run(&Pool::new(PoolKind::Max, &[3, 3]), &x).1, [200.]);
        assert_eq!(run(&Pool::new(PoolKind::Avg, &[3, 3]), &x).1, [90.]);
    }

    #[test]
    fn padding_and_count_include_pad() {
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let op = pool(PoolKind::Avg, &[2, 2], &[], &[1, 1, 1, 1]);
        let (shape, excl) = run(&op, &x);
        assert_eq!(shape, [1, 1, 3, 3]);
        assert_eq!(excl, [1., 1.5, 2., 2., 2.5, 3., 3., 3.5, 4.]);
        let incl = Pool {
            count_include_pad: true,
            ..op.clone()
        };
        assert_eq!(
            run(&incl, &x).1,
            [0.25, 0.75, 0.5, 1., 2.5, 1.5, 0.75, 1.75, 1.]
        );
        // Max treats padding as -inf, so negative inputs still win.
        let neg = t(&[1, 1, 2, 2], &[-1., -2., -3., -4.]);
        let max = Pool {
            kind: PoolKind::Max,
            ..op
        };
        assert_eq!(
            run(&max, &neg).1,
            [-1., -1., -2., -1., -1., -2., -3., -3., -4.]
        );
    }

    #[test]
    fn ceil_mode() {
        let x = t(&[1, 1, 5], &[1., 2., 3., 4., 5.]);
        let floor = pool(PoolKind::Max, &[2], &[2], &[]);
        assert_eq!(run(&floor, &x), (vec![1, 1, 2], vec![2., 4.]));
        let ceil = Pool {
            ceil_mode: true,
            ..floor
        };
        assert_eq!(run(&ceil, &x), (vec![1, 1, 3], vec![2., 4., 5.]));
        // The last window covers x[4], one end pad and one cell beyond the padding:
        // only the pad counts towards count_include_pad's divisor.
        let avg = Pool {
            ceil_mode: true,
            ..pool(PoolKind::Avg, &[3], &[2], &[0, 1])
        };
        assert_eq!(run(&avg, &x).1, [2., 4., 5.]);
        let incl = Pool {
            count_include_pad: true,
            ..avg.clone()
        };
        assert_eq!(run(&incl, &x).1, [2., 4., 2.5]);
        assert_eq!(
            run(
                &Pool {
                    ceil_mode: false,
                    ..avg
                },
                &x
            )
            .1,
            [2., 4.]
        );
        // A window that would start inside the end padding is dropped.
        let edge = Pool {
            ceil_mode: true,
            ..pool(PoolKind::Max, &[2], &[2], &[1, 1])
        };
        assert_eq!(run(&edge, &x), (vec![1, 1, 3], vec![1., 3., 5.]));
    }

    #[test]
    fn dilation_and_nan() {
        let x = t(&[1, 1, 5], &[1., 5., 2., 4., 3.]);
        let op = Pool {
            dilations: vec![2],
            ..Pool::new(PoolKind::Max, &[2])
        };
        assert_eq!(run(&op, &x), (vec![1, 1, 3], vec![2., 5., 3.]));
        let y = run(
            &Pool::new(PoolKind::Max, &[2]),
            &t(&[1, 1, 3], &[1., f64::NAN, 0.]),
        )
        .1;
        assert!(y[0].is_nan() && y[1].is_nan());
    }

    #[test]
    fn global_pools() {
        let x = t(&[1, 2, 2, 2], &[1., 2., 3., 4., -1., -2., -3., -8.]);
        let max = GlobalPool {
            kind: PoolKind::Max,
        };
        let avg = GlobalPool {
            kind: PoolKind::Avg,
        };
        assert_eq!(run(&max, &x), (vec![1, 2, 1, 1], vec![4., -1.]));
        assert_eq!(run(&avg, &x), (vec![1, 2, 1, 1], vec![2.5, -3.5]));
        assert_eq!(
            run(&avg, &t(&[2, 1, 3], &[1., 2., 6., 0., 0., 3.])).1,
            [3., 1.]
        );
        let out = max.infer(&[&sym(&["N", "C", "H", "W"])]).unwrap();
        assert_eq!(out[0].shape.to_string(), "[N,C,1,1]");
        assert_eq!(max.fusion_kind(), FusionKind::Reduction);
        assert!(matches!(avg.infer(&[&ty(&[2, 3])]), Err(OpError::Shape(_))));
        let xi = TensorType::concrete(DType::I32, &[1, 1, 2]);
        assert!(matches!(avg.infer(&[&xi]), Err(OpError::DType(_))));
        assert!(matches!(avg.infer(&[&xi, &xi]), Err(OpError::Arity { .. })));
    }

    #[test]
    fn symbolic_dims() {
        let op = pool(PoolKind::Avg, &[2, 2], &[2, 2], &[]);
        let out = op.infer(&[&sym(&["N", "C", "4", "5"])]).unwrap();
        assert_eq!(out[0].shape.to_string(), "[N,C,2,2]");
        match op.infer(&[&sym(&["1", "3", "H", "5"])]) {
            Err(OpError::Shape(m)) => assert!(m.contains("--dim"), "{m}"),
            other => panic!("expected a shape error, got {other:?}"),
        }
    }

    #[test]
    fn errors() {
        let m = Pool::new(PoolKind::Max, &[2, 2]);
        assert!(matches!(
            m.infer(&[&ty(&[1, 1, 4])]),
            Err(OpError::Shape(_))
        ));
        let e = Pool::new(PoolKind::Max, &[5, 5]).infer(&[&ty(&[1, 1, 3, 3])]);
        assert!(matches!(e, Err(OpError::Shape(s)) if s.contains("kernel larger")));
        let attr = |op: Pool| match op.infer(&[&ty(&[1, 1, 4, 4])]) {
            Err(OpError::Attr(a)) => a.attr,
            other => panic!("expected an attribute error, got {other:?}"),
        };
        assert_eq!(attr(Pool::new(PoolKind::Max, &[])), "kernel");
        assert_eq!(attr(Pool::new(PoolKind::Max, &[2, 0])), "kernel");
        assert_eq!(attr(pool(PoolKind::Max, &[2, 2], &[0, 1], &[])), "strides");
        assert_eq!(attr(pool(PoolKind::Max, &[2, 2], &[], &[1, 1])), "pads");
        let xi = TensorType::concrete(DType::I32, &[1, 1, 4, 4]);
        assert!(matches!(m.infer(&[&xi]), Err(OpError::DType(_))));
        assert!(matches!(m.infer(&[]), Err(OpError::Arity { found: 0, .. })));
        assert!(matches!(
            m.eval(&[&t(&[1, 1, 2], &[0.; 2])]),
            Err(OpError::Shape(_))
        ));
        let parse = |attrs: Vec<(&str, AttrValue)>| {
            let attrs = attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            Op::parse("avg_pool", &mut AttrReader::new(attrs))
        };
        assert!(matches!(parse(vec![]), Err(ParseOpError::Attr(a)) if a.attr == "kernel"));
        let bad = parse(vec![
            ("kernel", AttrValue::Ints(vec![2])),
            ("ceil_mode", AttrValue::Int(2)),
        ]);
        assert!(matches!(bad, Err(ParseOpError::Attr(a)) if a.attr == "ceil_mode"));
    }

    #[test]
    fn attributes_round_trip_in_order() {
        let given = vec![
            ("count_include_pad".to_string(), AttrValue::Int(1)),
            ("kernel".into(), AttrValue::Ints(vec![3, 3])),
        ];
        let op = Op::parse("avg_pool", &mut AttrReader::new(given)).unwrap();
        let want = Pool {
            count_include_pad: true,
            ..Pool::new(PoolKind::Avg, &[3, 3])
        };
        assert_eq!(op, Op::Pool(want));
        let names: Vec<&str> = op.attrs().iter().map(|(n, _)| *n).collect();
        let order = [
            "kernel",
            "strides",
            "pads",
            "dilations",
            "ceil_mode",
            "count_include_pad",
        ];
        assert_eq!(names, order);
        assert_eq!(op.attrs()[5].1, AttrValue::Int(1));
        assert_eq!(op.fusion_kind(), FusionKind::Opaque);
        for s in ["max_pool", "avg_pool"] {
            let kernel = vec![("kernel".to_string(), AttrValue::Ints(vec![2]))];
            assert_eq!(
                Op::parse(s, &mut AttrReader::new(kernel))
                    .unwrap()
                    .spelling(),
                s
            );
        }
        for s in ["global_max_pool", "global_avg_pool"] {
            let op = Op::parse(s, &mut AttrReader::new(vec![])).unwrap();
            assert_eq!((op.spelling(), op.attrs().len()), (s, 0));
        }
    }
}
