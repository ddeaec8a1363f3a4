//! Convolutions (`conv`, `conv_transpose`) over any number of spatial dims.
//!
//! Layouts follow ONNX: `x [N, C, spatial...]`; `pads` lists every begin pad and
//! then every end pad. An empty attribute list means the default (strides and
//! dilations 1, pads 0); the op keeps the list exactly as given so that printing
//! round-trips.

use crate::grad::{GradCtx, GradResult};
use crate::graph::ValueId;
use ndarray::{s, Array2, Array3, Ix2, Ix3};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::op::{attr_err, expect_arity_range, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::pool::{check_nc_input, dim_list, known_dim, output, reshaped, Geometry, Tap};
use crate::ops::{concrete, same_dtype};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

fn parse_groups(g: i64) -> OpResult<usize> {
    match usize::try_from(g) {
        Ok(u) if u > 0 => Ok(u),
        _ => attr_err("groups", format!("must be positive, found {g}")),
    }
}

fn check_divisible(what: &str, channels: usize, groups: usize) -> OpResult<()> {
    if channels.is_multiple_of(groups) {
        return Ok(());
    }
    attr_err(
        "groups",
        format!("{what} channels {channels} are not divisible by groups {groups}"),
    )
}

/// The shared input checks of both convolutions: arity, dtypes, ranks, static
/// channel count and weight shape. Returns `(x [C, spatial...], w dims)`.
fn check_conv_inputs(inputs: &[&TensorType], op: &str) -> OpResult<(Vec<usize>, Vec<usize>)> {
    expect_arity_range(inputs, 2, 3)?;
    same_dtype(inputs)?;
    let spatial = check_nc_input(inputs[0], None, op)?;
    let mut xs = vec![known_dim(inputs[0], 1, &format!("{op} input"))?];
    xs.extend(spatial);
    let w = concrete(inputs[1], &format!("{op} weight"))?;
    if w.len() != inputs[0].rank() {
        return shape_err(format!(
            "{op} weight must have the input's rank {}, found {}",
            inputs[0].rank(),
            inputs[1]
        ));
    }
    Ok((xs, w))
}

fn check_bias(inputs: &[&TensorType], m: usize, op: &str) -> OpResult<()> {
    if let Some(b) = inputs.get(2) {
        let dims = concrete(b, &format!("{op} bias"))?;
        if dims != [m] {
            return shape_err(format!(
                "{op} bias must be [{m}] (one per output channel), found {b}"
            ));
        }
    }
    Ok(())
}

/// What `infer` works out for a convolution, reused by `eval`.
struct Plan {
    geom: Geometry,
    ty: TensorType,
    groups: usize,
    /// Input `[C, spatial...]`.
    xs: Vec<usize>,
    /// Weight dims.
    w: Vec<usize>,
    /// Output spatial dims.
    out: Vec<usize>,
}

fn out_type(x: &TensorType, m: usize, spatial: &[usize]) -> TensorType {
    let mut dims = vec![x.shape.dims()[0].clone(), Dim::Known(m)];
    dims.extend(spatial.iter().map(|&d| Dim::Known(d)));
    x.with_shape(Shape::from(dims))
}

fn product(dims: &[usize]) -> usize {
    dims.iter().product()
}

fn add_bias(out: &mut Array3<f64>, bias: Option<&&Tensor>) {
    if let Some(b) = bias {
        for (m, bv) in b.to_f64().iter().enumerate() {
            out.slice_mut(s![.., m, ..]).mapv_inplace(|v| v + bv);
        }
    }
}

/// `conv(x, w, bias?)`: cross-correlation (no kernel flip), as ONNX and PyTorch.
/// `x [N, C, spatial...]`, `w [M, C/groups, kernel...]`, `bias [M]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conv {
    pub strides: Vec<i64>,
    pub pads: Vec<i64>,
    pub dilations: Vec<i64>,
    pub groups: i64,
}

impl Default for Conv {
    fn default() -> Self {
        Conv::new(&[], &[], &[], 1)
    }
}

fn geom_err(op: &'static str) -> impl Fn(OpError) -> crate::grad::GradError {
    move |e| crate::grad::GradError::Unsupported {
        op,
        msg: e.to_string(),
    }
}

/// The bias gradient of both convolutions: dy summed over all but axis 1.
fn bias_grad(cx: &mut GradCtx, dy: ValueId) -> GradResult<ValueId> {
    let r = cx.ty(dy).rank();
    let axes: Vec<usize> = (0..r).filter(|&a| a != 1).collect();
    cx.reduce_sum(dy, &axes, false)
}

/// The weight gradient of `conv(x, w)` (strides, pads, dilations of `g`,
/// `groups`) from its output gradient `dy`, shaped `[M, C/groups, kernel...]`:
/// a convolution of the input with the output gradient over the batch, with
/// stride and dilation swapped. x `[N, C, S...]` becomes `[C/G, G*N, S...]`
/// and dy `[N, M, O...]` the weight `[M, N, O...]`; the grouped conv gives
/// `[C/G, M, K'...]` with `K' >= kernel`, which is cropped and transposed.
fn conv_weight_grad(
    cx: &mut GradCtx,
    x: ValueId,
    dy: ValueId,
    g: &Geometry,
    groups: usize,
    kernel: &[usize],
) -> GradResult<ValueId> {
    let xd = cx.dims(x)?;
    let (n, c) = (xd[0], xd[1]);
    let sp = xd.len() - 2;
    let mut d5 = vec![n, groups, c / groups];
    d5.extend(&xd[2..]);
    let xr = cx.reshape(x, &d5)?;
    let mut perm = vec![2, 1, 0];
    perm.extend(3..3 + sp);
    let xt = cx.transpose(xr, &perm)?;
    let mut d4 = vec![c / groups, groups * n];
    d4.extend(&xd[2..]);
    let xt = cx.reshape(xt, &d4)?;
    let mut perm = vec![1, 0];
    perm.extend(2..2 + sp);
    let wt = cx.transpose(dy, &perm)?;
    let i64s = |v: &[usize]| v.iter().map(|&u| u as i64).collect::<Vec<_>>();
    let mut pads = i64s(&g.pads_begin);
    pads.extend(i64s(&g.pads_end));
    let swapped = Conv::new(&i64s(&g.dilations), &pads, &i64s(&g.strides), groups as i64);
    let out = cx.add(swapped, &[xt, wt])?;
    let od = cx.dims(out)?;
    let crop: Vec<usize> = (0..sp).filter(|&d| od[d + 2] != kernel[d]).collect();
    let out = if crop.is_empty() {
        out
    } else {
        let ends: Vec<i64> = crop.iter().map(|&d| kernel[d] as i64).collect();
        let axes: Vec<i64> = crop.iter().map(|&d| d as i64 + 2).collect();
        cx.add(
            crate::ops::shape::Slice::new(vec![0; crop.len()], ends, axes, vec![]),
            &[out],
        )?
    };
    cx.transpose(out, &perm)
}

impl Conv {
    pub fn new(strides: &[i64], pads: &[i64], dilations: &[i64], groups: i64) -> Self {
        Conv {
            strides: strides.to_vec(),
            pads: pads.to_vec(),
            dilations: dilations.to_vec(),
            groups,
        }
    }

    fn plan(&self, inputs: &[&TensorType]) -> OpResult<Plan> {
        let (xs, w) = check_conv_inputs(inputs, "conv")?;
        let n = xs.len() - 1;
        let g = Geometry::resolve(n, &self.strides, &self.pads, &self.dilations)?;
        let groups = parse_groups(self.groups)?;
        let (c, m) = (xs[0], w[0]);
        check_divisible("input", c, groups)?;
        check_divisible("output", m, groups)?;
        if w[1].checked_mul(groups) != Some(c) {
            return shape_err(format!(
                "conv weight {} expects {} input channels per group x {groups} groups, \
                 but the input {} has {c} channels",
                inputs[1], w[1], inputs[0]
            ));
        }
        check_bias(inputs, m, "conv")?;
        let out: Vec<usize> = (0..n)
            .map(|d| g.sliding_out("conv", d, xs[d + 1], w[d + 2], false))
            .collect::<OpResult<_>>()?;
        Ok(Plan {
            geom: g,
            ty: out_type(inputs[0], m, &out),
            groups,
            xs,
            w,
            out,
        })
    }
}

impl OpDef for Conv {
    const SPELLINGS: &'static [&'static str] = &["conv"];

    fn parse(_: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Conv {
            strides: a.ints("strides", &[])?,
            pads: a.ints("pads", &[])?,
            dilations: a.ints("dilations", &[])?,
            groups: a.int("groups", 1)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "conv"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("strides", &self.strides);
        w.ints("pads", &self.pads);
        w.ints("dilations", &self.dilations);
        w.int("groups", self.groups);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        Ok(vec![self.plan(inputs)?.ty])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::OutFusable
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["conv"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        let Some(dy) = dout[0] else {
            return Ok(vec![None; inputs.len()]);
        };
        let (x, w) = (inputs[0], inputs[1]);
        let wd = cx.dims(w)?;
        let xd = cx.dims(x)?;
        let sp = wd.len() - 2;
        let g = Geometry::resolve(sp, &self.strides, &self.pads, &self.dilations)
            .map_err(geom_err("conv"))?;
        let groups = parse_groups(self.groups).map_err(geom_err("conv"))?;
        let od = cx.dims(dy)?;
        // dx: the transposed convolution with the same weight, its output
        // padding restoring the rows the forward stride skipped.
        let mut opad = Vec::with_capacity(sp);
        for d in 0..sp {
            let full = g.strides[d] * (od[d + 2] - 1) + g.dilations[d] * (wd[d + 2] - 1) + 1;
            let covered = full as i64 - (g.pads_begin[d] + g.pads_end[d]) as i64;
            opad.push(xd[d + 2] as i64 - covered);
        }
        let i64s = |v: &[usize]| v.iter().map(|&u| u as i64).collect::<Vec<_>>();
        let mut pads = i64s(&g.pads_begin);
        pads.extend(i64s(&g.pads_end));
        let ct = ConvTranspose::new(
            &i64s(&g.strides),
            &pads,
            &i64s(&g.dilations),
            &opad,
            groups as i64,
        );
        let gx = if cx.wants(x) {
            Some(cx.add(ct, &[dy, w])?)
        } else {
            None
        };
        let gw = if cx.wants(w) {
            Some(conv_weight_grad(cx, x, dy, &g, groups, &wd[2..])?)
        } else {
            None
        };
        let mut out = vec![gx, gw];
        if inputs.len() == 3 {
            out.push(Some(bias_grad(cx, dy)?));
        }
        Ok(out)
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let plan = self.plan(&tys.iter().collect::<Vec<_>>())?;
        let (xs, w, groups) = (&plan.xs, &plan.w, plan.groups);
        let (nb, c, m) = (inputs[0].shape()[0], xs[0], w[0]);
        let (cg, mg) = (c / groups, m / groups);
        let (ip, kp, op) = (product(&xs[1..]), product(&w[2..]), product(&plan.out));
        let taps = plan.geom.sliding_taps(&xs[1..], &w[2..], &plan.out)?;
        let x: Array3<f64> = reshaped(&inputs[0].to_f64(), Ix3(nb, c, ip))?;
        let wt: Array2<f64> = reshaped(&inputs[1].to_f64(), Ix2(m, cg * kp))?;
        let mut out = Array3::<f64>::zeros((nb, m, op));
        // im2col: gather receptive fields into a matrix so one matrix product
        // computes many output positions; chunking the positions bounds the
        // buffer (32 MiB) on large feature maps.
        let chunk = ((1usize << 22) / (cg * kp).max(1)).clamp(1, op.max(1));
        let mut col = Array2::<f64>::zeros((cg * kp, chunk));
        for (b, gi) in (0..nb).flat_map(|b| (0..groups).map(move |g| (b, g))) {
            for o0 in (0..op).step_by(chunk) {
                let len = chunk.min(op - o0);
                for ci in 0..cg {
                    let plane = x.slice(s![b, gi * cg + ci, ..]);
                    for k in 0..kp {
                        let mut row = col.row_mut(ci * kp + k);
                        for (j, r) in row.iter_mut().take(len).enumerate() {
                            *r = match taps[k * op + o0 + j] {
                                Tap::At(p) => plane[p],
                                _ => 0.0,
                            };
                        }
                    }
                }
                let wg = wt.slice(s![gi * mg..(gi + 1) * mg, ..]);
                let y = wg.dot(&col.slice(s![.., ..len]));
                out.slice_mut(s![b, gi * mg..(gi + 1) * mg, o0..o0 + len])
                    .assign(&y);
            }
        }
        add_bias(&mut out, inputs.get(2));
        output(out, &plan.ty)
    }
}

/// `conv_transpose(x, w, bias?)`: the gradient of `conv` with respect to its
/// input. Each input pixel stamps the kernel, scaled by its value, onto the
/// output; overlaps add, and `pads` then crop the result.
/// `x [N, C, spatial...]`, `w [C, M/groups, kernel...]`, `bias [M]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConvTranspose {
    pub strides: Vec<i64>,
    pub pads: Vec<i64>,
    pub dilations: Vec<i64>,
    pub output_padding: Vec<i64>,
    pub groups: i64,
}

impl Default for ConvTranspose {
    fn default() -> Self {
        ConvTranspose::new(&[], &[], &[], &[], 1)
    }
}

impl ConvTranspose {
    pub fn new(
        strides: &[i64],
        pads: &[i64],
        dilations: &[i64],
        output_padding: &[i64],
        groups: i64,
    ) -> Self {
        ConvTranspose {
            strides: strides.to_vec(),
            pads: pads.to_vec(),
            dilations: dilations.to_vec(),
            output_padding: output_padding.to_vec(),
            groups,
        }
    }

    fn plan(&self, inputs: &[&TensorType]) -> OpResult<Plan> {
        let (xs, w) = check_conv_inputs(inputs, "conv_transpose")?;
        let n = xs.len() - 1;
        let g = Geometry::resolve(n, &self.strides, &self.pads, &self.dilations)?;
        let opad = dim_list("output_padding", &self.output_padding, n, 1, 0, 0)?;
        let groups = parse_groups(self.groups)?;
        let c = xs[0];
        check_divisible("input", c, groups)?;
        if w[0] != c {
            return shape_err(format!(
                "conv_transpose weight {} must have the input's {c} channels first (input {})",
                inputs[1], inputs[0]
            ));
        }
        let m = w[1]
            .checked_mul(groups)
            .ok_or_else(|| OpError::Shape("conv_transpose: output channels overflow".into()))?;
        check_bias(inputs, m, "conv_transpose")?;
        let out: Vec<usize> = (0..n)
            .map(|d| g.stamp_out(d, xs[d + 1], w[d + 2], opad[d]))
            .collect::<OpResult<_>>()?;
        Ok(Plan {
            geom: g,
            ty: out_type(inputs[0], m, &out),
            groups,
            xs,
            w,
            out,
        })
    }
}

impl OpDef for ConvTranspose {
    const SPELLINGS: &'static [&'static str] = &["conv_transpose"];

    fn parse(_: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(ConvTranspose {
            strides: a.ints("strides", &[])?,
            pads: a.ints("pads", &[])?,
            dilations: a.ints("dilations", &[])?,
            output_padding: a.ints("output_padding", &[])?,
            groups: a.int("groups", 1)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "conv_transpose"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("strides", &self.strides);
        w.ints("pads", &self.pads);
        w.ints("dilations", &self.dilations);
        w.ints("output_padding", &self.output_padding);
        w.int("groups", self.groups);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        Ok(vec![self.plan(inputs)?.ty])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::OutFusable
    }
    const GRAD_SPELLINGS: &'static [&'static str] = &["conv_transpose"];
    fn grad(
        &self,
        cx: &mut GradCtx,
        inputs: &[ValueId],
        outputs: &[ValueId],
        dout: &[Option<ValueId>],
    ) -> GradResult<Vec<Option<ValueId>>> {
        let _ = outputs;
        let Some(dy) = dout[0] else {
            return Ok(vec![None; inputs.len()]);
        };
        let (x, w) = (inputs[0], inputs[1]);
        let wd = cx.dims(w)?;
        let sp = wd.len() - 2;
        let g = Geometry::resolve(sp, &self.strides, &self.pads, &self.dilations)
            .map_err(geom_err("conv_transpose"))?;
        let groups = parse_groups(self.groups).map_err(geom_err("conv_transpose"))?;
        // The adjoint of a transposed convolution is the convolution.
        let i64s = |v: &[usize]| v.iter().map(|&u| u as i64).collect::<Vec<_>>();
        let mut pads = i64s(&g.pads_begin);
        pads.extend(i64s(&g.pads_end));
        let c = Conv::new(&i64s(&g.strides), &pads, &i64s(&g.dilations), groups as i64);
        let gx = if cx.wants(x) {
            Some(cx.add(c, &[dy, w])?)
        } else {
            None
        };
        // Its weight gradient is the conv weight gradient with the roles of
        // input and output swapped.
        let gw = if cx.wants(w) {
            Some(conv_weight_grad(cx, dy, x, &g, groups, &wd[2..])?)
        } else {
            None
        };
        let mut out = vec![gx, gw];
        if inputs.len() == 3 {
            out.push(Some(bias_grad(cx, dy)?));
        }
        Ok(out)
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let plan = self.plan(&tys.iter().collect::<Vec<_>>())?;
        let (xs, w, groups) = (&plan.xs, &plan.w, plan.groups);
        let (nb, c) = (inputs[0].shape()[0], xs[0]);
        let (cg, mg) = (c / groups, w[1]);
        let (ip, kp, op) = (product(&xs[1..]), product(&w[2..]), product(&plan.out));
        let taps = plan.geom.stamp_taps(&xs[1..], &w[2..], &plan.out)?;
        let x: Array3<f64> = reshaped(&inputs[0].to_f64(), Ix3(nb, c, ip))?;
        let wt: Array2<f64> = reshaped(&inputs[1].to_f64(), Ix2(c, mg * kp))?;
        let mut out = Array3::<f64>::zeros((nb, mg * groups, op));
        for b in 0..nb {
            for gi in 0..groups {
                let xg = x.slice(s![b, gi * cg..(gi + 1) * cg, ..]);
                // cols[(m, k), i]: the contribution of input pixel i through kernel
                // offset k to output channel m; col2im then scatters and sums.
                let cols = wt.slice(s![gi * cg..(gi + 1) * cg, ..]).t().dot(&xg);
                for mi in 0..mg {
                    let mut plane = out.slice_mut(s![b, gi * mg + mi, ..]);
                    for k in 0..kp {
                        let row = cols.row(mi * kp + k);
                        for (i, v) in row.iter().enumerate() {
                            if let Tap::At(p) = taps[k * ip + i] {
                                plane[p] += v;
                            }
                        }
                    }
                }
            }
        }
        add_bias(&mut out, inputs.get(2));
        output(out, &plan.ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttrValue;
    use crate::dtype::DType;
    use crate::op::Op;

    fn t(shape: &[usize], data: &[f64]) -> Tensor {
        Tensor::from_vec_f64(DType::F32, shape, data.to_vec()).unwrap()
    }
    fn t64(shape: &[usize], data: &[f64]) -> Tensor {
        Tensor::from_vec_f64(DType::F64, shape, data.to_vec()).unwrap()
    }
    fn ty(shape: &[usize]) -> TensorType {
        TensorType::concrete(DType::F32, shape)
    }
    /// Deterministic pseudo-random values in [-1, 1).
    fn seq(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 2000) as f64 / 1000.0 - 1.0
        };
        (0..n).map(|_| next()).collect()
    }
    fn eval1(op: &impl OpDef, inputs: &[&Tensor]) -> Tensor {
        op.eval(inputs).unwrap().remove(0)
    }
    fn out_dims(op: &impl OpDef, inputs: &[&TensorType]) -> Vec<usize> {
        op.infer(inputs).unwrap()[0].shape.concrete().unwrap()
    }
    fn close(got: &Tensor, want: &[f64], shape: &[usize]) {
        assert_eq!(got.shape(), shape);
        for (i, (g, w)) in got.values_f64().iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-9, "element {i}: got {g}, want {w}");
        }
    }

    /// A 2-D case for the naive loops; pads are [top, left, bottom, right].
    #[derive(Clone, Copy)]
    struct Case {
        x: [usize; 4],
        w: [usize; 4],
        s: [usize; 2],
        p: [usize; 4],
        d: [usize; 2],
        opad: [usize; 2],
        groups: usize,
    }
    const BASE: Case = Case {
        x: [1; 4],
        w: [1; 4],
        s: [1; 2],
        p: [0; 4],
        d: [1; 2],
        opad: [0; 2],
        groups: 1,
    };

    /// Direct convolution: every output sums its receptive field.
    fn naive_conv(k: &Case, x: &[f64], w: &[f64]) -> (Vec<f64>, Vec<usize>) {
        let ([n, c, h, wd], [m, cg, kh, kw], s, p, d) = (k.x, k.w, k.s, k.p, k.d);
        let oh = (h + p[0] + p[2] - d[0] * (kh - 1) - 1) / s[0] + 1;
        let ow = (wd + p[1] + p[3] - d[1] * (kw - 1) - 1) / s[1] + 1;
        let mut out = Vec::new();
        for b in 0..n {
            for mo in 0..m {
                for (oy, ox) in (0..oh).flat_map(|y| (0..ow).map(move |x| (y, x))) {
                    let mut acc = 0.0;
                    for (ci, ky, kx) in (0..cg)
                        .flat_map(|c| (0..kh).flat_map(move |y| (0..kw).map(move |x| (c, y, x))))
                    {
                        let iy = (oy * s[0] + ky * d[0]) as isize - p[0] as isize;
                        let ix = (ox * s[1] + kx * d[1]) as isize - p[1] as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                            continue;
                        }
                        let ch = (mo / (m / k.groups)) * cg + ci;
                        let xi = ((b * c + ch) * h + iy as usize) * wd + ix as usize;
                        acc += x[xi] * w[((mo * cg + ci) * kh + ky) * kw + kx];
                    }
                    out.push(acc);
                }
            }
        }
        (out, vec![n, m, oh, ow])
    }

    /// Transposed convolution by stamping: each input pixel adds the scaled
    /// kernel into an uncropped canvas, which the pads then crop.
    fn naive_stamp(k: &Case, x: &[f64], w: &[f64]) -> (Vec<f64>, Vec<usize>) {
        let ([n, c, h, wd], [_, mg, kh, kw], s, p, d) = (k.x, k.w, k.s, k.p, k.d);
        let fh = s[0] * (h - 1) + k.opad[0] + d[0] * (kh - 1) + 1;
        let fw = s[1] * (wd - 1) + k.opad[1] + d[1] * (kw - 1) + 1;
        let (m, cg) = (mg * k.groups, c / k.groups);
        let mut canvas = vec![0.0; n * m * fh * fw];
        for (b, ci) in (0..n).flat_map(|b| (0..c).map(move |ci| (b, ci))) {
            for (iy, ix) in (0..h).flat_map(|y| (0..wd).map(move |x| (y, x))) {
                let v = x[((b * c + ci) * h + iy) * wd + ix];
                for (mi, ky, kx) in
                    (0..mg).flat_map(|m| (0..kh).flat_map(move |y| (0..kw).map(move |x| (m, y, x))))
                {
                    let mo = (ci / cg) * mg + mi;
                    let (y, xx) = (iy * s[0] + ky * d[0], ix * s[1] + kx * d[1]);
                    canvas[((b * m + mo) * fh + y) * fw + xx] +=
                        v * w[((ci * mg + mi) * kh + ky) * kw + kx];
                }
            }
        }
        let (oh, ow) = (fh - p[0] - p[2], fw - p[1] - p[3]);
        let mut out = Vec::new();
        for plane in 0..n * m {
            for (y, xx) in (0..oh).flat_map(|y| (0..ow).map(move |x| (y, x))) {
                out.push(canvas[(plane * fh + y + p[0]) * fw + xx + p[1]]);
            }
        }
        (out, vec![n, m, oh, ow])
    }

    /// Run the op with a bias on pseudo-random data, compare with the naive
    /// loop, and return the output shape.
    fn check(k: Case, transpose: bool) -> Vec<usize> {
        let (xv, wv) = (seq(k.x.iter().product(), 1), seq(k.w.iter().product(), 2));
        let m = if transpose { k.w[1] * k.groups } else { k.w[0] };
        let bv = seq(m, 3);
        let ints = |v: &[usize]| v.iter().map(|&u| u as i64).collect::<Vec<_>>();
        let (s, p, d, g) = (ints(&k.s), ints(&k.p), ints(&k.d), k.groups as i64);
        let ins = [t64(&k.x, &xv), t64(&k.w, &wv), t64(&[m], &bv)];
        let ins: Vec<&Tensor> = ins.iter().collect();
        let (y, (mut want, shape)) = if transpose {
            let op = ConvTranspose::new(&s, &p, &d, &ints(&k.opad), g);
            (eval1(&op, &ins), naive_stamp(&k, &xv, &wv))
        } else {
            (
                eval1(&Conv::new(&s, &p, &d, g), &ins),
                naive_conv(&k, &xv, &wv),
            )
        };
        let per_m = shape[2] * shape[3];
        want.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v += bv[(i / per_m) % m]);
        close(&y, &want, &shape);
        shape
    }

    #[test]
    fn binary_image_feature_map() {
        let img = [1., 1., 1., 0., 0., 0., 1., 1., 1., 0., 0., 0., 1., 1., 1.];
        let img: Vec<f64> = img
            .iter()
            .chain(&[0., 0., 1., 1., 0., 0., 1., 1., 0., 0.])
            .copied()
            .collect();
        let k = [1., 0., 1., 0., 1., 0., 1., 0., 1.];
        let y = eval1(
            &Conv::default(),
            &[&t(&[1, 1, 5, 5], &img), &t(&[1, 1, 3, 3], &k)],
        );
        close(&y, &[4., 3., 4., 2., 4., 3., 2., 3., 4.], &[1, 1, 3, 3]);
    }

    #[test]
    fn sobel_patch_with_and_without_bias() {
        let x = t(
            &[1, 1, 3, 3],
            &[200., 150., 150., 100., 50., 100., 25., 25., 10.],
        );
        let k = t(&[1, 1, 3, 3], &[1., 0., -1., 2., 0., -2., 1., 0., -1.]);
        let conv = Conv::default();
        close(&eval1(&conv, &[&x, &k]), &[65.], &[1, 1, 1, 1]);
        close(
            &eval1(&conv, &[&x, &k, &t(&[1], &[7.])]),
            &[72.],
            &[1, 1, 1, 1],
        );
    }

    #[test]
    fn output_sizes() {
        let (x7, f3) = (ty(&[1, 1, 7, 7]), ty(&[1, 1, 3, 3]));
        let conv = |s: &[i64], p: &[i64]| Conv::new(s, p, &[], 1);
        assert_eq!(out_dims(&conv(&[], &[]), &[&x7, &f3]), [1, 1, 5, 5]);
        assert_eq!(out_dims(&conv(&[2, 2], &[]), &[&x7, &f3]), [1, 1, 3, 3]);
        assert_eq!(out_dims(&conv(&[], &[1; 4]), &[&x7, &f3]), [1, 1, 7, 7]);
        let (x, w) = (ty(&[1, 3, 32, 32]), ty(&[10, 3, 5, 5]));
        assert_eq!(
            out_dims(&conv(&[1, 1], &[2; 4]), &[&x, &w]),
            [1, 10, 32, 32]
        );
        let (x, w) = (ty(&[1, 3, 227, 227]), ty(&[96, 3, 11, 11]));
        assert_eq!(out_dims(&conv(&[4, 4], &[]), &[&x, &w]), [1, 96, 55, 55]);
    }

    #[test]
    fn one_dimensional_matches_naive_loop() {
        // stride 2, pads [1, 2], dilation 2, bias; x [2, 3, 9], w [4, 3, 3].
        let (xv, wv, bv) = (seq(54, 1), seq(36, 2), seq(4, 3));
        let op = Conv::new(&[2], &[1, 2], &[2], 1);
        let ins = [t64(&[2, 3, 9], &xv), t64(&[4, 3, 3], &wv), t64(&[4], &bv)];
        let y = eval1(&op, &ins.iter().collect::<Vec<_>>());
        let ol = (9 + 3 - 2 * 2 - 1) / 2 + 1;
        let mut want = Vec::new();
        for (b, m, o) in
            (0..2).flat_map(|b| (0..4).flat_map(move |m| (0..ol).map(move |o| (b, m, o))))
        {
            let mut acc = bv[m];
            for (c, k) in (0..3).flat_map(|c| (0..3).map(move |k| (c, k))) {
                let i = (o * 2 + k * 2) as isize - 1;
                if (0..9).contains(&i) {
                    acc += xv[(b * 3 + c) * 9 + i as usize] * wv[(m * 3 + c) * 3 + k];
                }
            }
            want.push(acc);
        }
        close(&y, &want, &[2, 4, ol]);
    }

    #[test]
    fn long_signal_spans_several_im2col_chunks() {
        let (xv, wv) = (seq(6000, 4), seq(2048, 5));
        let y = eval1(
            &Conv::default(),
            &[&t64(&[1, 1, 6000], &xv), &t64(&[1, 1, 2048], &wv)],
        );
        let want: Vec<f64> = (0..3953)
            .map(|o| (0..2048).map(|k| xv[o + k] * wv[k]).sum())
            .collect();
        close(&y, &want, &[1, 1, 3953]);
    }

    #[test]
    fn grouped_matches_naive_loop() {
        let k = Case {
            x: [2, 4, 5, 6],
            w: [6, 2, 3, 3],
            s: [2, 1],
            p: [1, 0, 1, 2],
            groups: 2,
            ..BASE
        };
        assert_eq!(check(k, false), [2, 6, 3, 6]);
        // Depthwise: one group per channel.
        check(
            Case {
                x: [2, 4, 5, 6],
                w: [4, 1, 3, 3],
                groups: 4,
                ..BASE
            },
            false,
        );
    }

    #[test]
    fn dilated_matches_naive_loop() {
        let k = Case {
            x: [1, 2, 7, 7],
            w: [3, 2, 3, 3],
            s: [1, 2],
            p: [2, 1, 0, 3],
            d: [2, 3],
            ..BASE
        };
        assert_eq!(check(k, false), [1, 3, 5, 3]);
    }

    #[test]
    fn three_spatial_dims() {
        let (x, w) = (
            t(&[1, 2, 3, 3, 3], &[1.; 54]),
            t(&[1, 2, 2, 2, 2], &[1.; 16]),
        );
        close(
            &eval1(&Conv::default(), &[&x, &w]),
            &[16.; 8],
            &[1, 1, 2, 2, 2],
        );
    }

    #[test]
    fn symbolic_dims() {
        let sym = |d: &[Dim]| TensorType::new(DType::F32, Shape::from(d.to_vec()));
        let k = |v: usize| Dim::Known(v);
        let x = sym(&[Dim::sym("N"), k(3), k(8), k(8)]);
        let out = Conv::default().infer(&[&x, &ty(&[4, 3, 3, 3])]).unwrap();
        assert_eq!(out[0].shape.to_string(), "[N,4,6,6]");
        let bad_h = sym(&[k(1), k(3), Dim::sym("H"), k(8)]);
        for bad in [bad_h, sym(&[k(1), Dim::sym("C"), k(8), k(8)])] {
            match Conv::default().infer(&[&bad, &ty(&[4, 3, 3, 3])]) {
                Err(OpError::Shape(m)) => assert!(m.contains("--dim"), "{m}"),
                other => panic!("expected a shape error, got {other:?}"),
            }
        }
    }

    #[test]
    fn errors() {
        let err = |op: &Conv, x: &[usize], w: &[usize]| op.infer(&[&ty(x), &ty(w)]).unwrap_err();
        let attr_name = |e: OpError| match e {
            OpError::Attr(a) => a.attr,
            other => panic!("expected an attribute error, got {other:?}"),
        };
        let d = Conv::default();
        // Channel mismatch: the weight expects 2 input channels, the input has 3.
        assert!(matches!(
            err(&d, &[1, 3, 5, 5], &[4, 2, 3, 3]),
            OpError::Shape(_)
        ));
        let g2 = Conv::new(&[], &[], &[], 2);
        assert_eq!(attr_name(err(&g2, &[1, 3, 5, 5], &[4, 1, 3, 3])), "groups");
        assert_eq!(attr_name(err(&g2, &[1, 4, 5, 5], &[3, 2, 3, 3])), "groups");
        let g0 = Conv::new(&[], &[], &[], 0);
        assert_eq!(attr_name(err(&g0, &[1, 4, 5, 5], &[4, 4, 3, 3])), "groups");
        let e = err(&d, &[1, 1, 3, 3], &[1, 1, 5, 5]);
        assert!(
            matches!(&e, OpError::Shape(m) if m.contains("kernel larger")),
            "{e}"
        );
        let bad = |s: &[i64], p: &[i64], dl: &[i64]| {
            attr_name(err(&Conv::new(s, p, dl, 1), &[1, 1, 5, 5], &[1, 1, 3, 3]))
        };
        assert_eq!(bad(&[1], &[], &[]), "strides");
        assert_eq!(bad(&[0, 1], &[], &[]), "strides");
        assert_eq!(bad(&[], &[0, -1, 0, 0], &[]), "pads");
        assert_eq!(bad(&[], &[1, 1], &[]), "pads");
        assert_eq!(bad(&[], &[], &[1, 0]), "dilations");
        let (x, w) = (ty(&[1, 1, 5, 5]), ty(&[2, 1, 3, 3]));
        let bias = d.infer(&[&x, &w, &ty(&[3])]);
        assert!(matches!(bias, Err(OpError::Shape(m)) if m.contains("bias")));
        assert!(matches!(
            d.infer(&[&x]),
            Err(OpError::Arity { found: 1, .. })
        ));
        assert!(matches!(
            d.infer(&[&x, &w, &w, &x]),
            Err(OpError::Arity { found: 4, .. })
        ));
        assert!(matches!(
            d.infer(&[&x, &ty(&[2, 1, 3])]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            d.infer(&[&ty(&[5, 5]), &ty(&[5, 5])]),
            Err(OpError::Shape(_))
        ));
        let xi = TensorType::concrete(DType::I32, &[1, 1, 5, 5]);
        assert!(matches!(d.infer(&[&xi, &xi]), Err(OpError::DType(_))));
        let w64 = w.with_dtype(DType::F64);
        assert!(matches!(d.infer(&[&x, &w64]), Err(OpError::DType(_))));
        // eval re-checks rather than panicking.
        let r = d.eval(&[&t(&[1, 2, 3, 3], &[0.; 18]), &t(&[1, 1, 2, 2], &[0.; 4])]);
        assert!(matches!(r, Err(OpError::Shape(_))));
    }

    #[test]
    fn attributes_round_trip_in_order() {
        let given = vec![
            ("groups".into(), AttrValue::Int(2)),
            ("strides".into(), AttrValue::Ints(vec![2, 2])),
        ];
        let op = Op::parse("conv", &mut AttrReader::new(given)).unwrap();
        assert_eq!(op, Op::Conv(Conv::new(&[2, 2], &[], &[], 2)));
        let names: Vec<&str> = op.attrs().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["strides", "pads", "dilations", "groups"]);
        assert_eq!(op.attrs()[1].1, AttrValue::Ints(vec![]));
        assert_eq!(op.fusion_kind(), FusionKind::OutFusable);
        let ct = Op::parse("conv_transpose", &mut AttrReader::new(vec![])).unwrap();
        let names: Vec<&str> = ct.attrs().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["strides", "pads", "dilations", "output_padding", "groups"]
        );
        assert_eq!(ct.attrs()[4].1, AttrValue::Int(1));
        let typo = vec![("stride".to_string(), AttrValue::Ints(vec![2]))];
        assert!(Op::parse("conv", &mut AttrReader::new(typo)).is_err());
    }

    #[test]
    fn conv_transpose_worked_example() {
        let x = t(
            &[1, 1, 3, 3],
            &[120., 150., 120., 100., 50., 110., 25., 25., 10.],
        );
        let k = t(&[1, 1, 2, 2], &[1., -1., 2., -2.]);
        let want = [
            120., 30., -30., -120., 340., 10., 0., -350., 225., -100., 105., -230.,
        ];
        let want: Vec<f64> = want.iter().chain(&[50., 0., -30., -20.]).copied().collect();
        close(
            &eval1(&ConvTranspose::default(), &[&x, &k]),
            &want,
            &[1, 1, 4, 4],
        );
    }

    #[test]
    fn conv_transpose_matches_stamping() {
        let k = Case {
            x: [2, 2, 3, 6],
            w: [2, 3, 3, 3],
            s: [2, 2],
            p: [1, 0, 0, 1],
            ..BASE
        };
        assert_eq!(check(Case { opad: [1, 1], ..k }, true), [2, 3, 7, 13]);
        let k = Case {
            x: [1, 4, 4, 4],
            w: [4, 2, 2, 4],
            s: [3, 1],
            p: [0, 2, 1, 0],
            d: [2, 1],
            ..BASE
        };
        assert_eq!(check(Case { groups: 2, ..k }, true), [1, 4, 11, 5]);
    }

    #[test]
    fn conv_transpose_shapes_and_errors() {
        let dims = vec![Dim::sym("N"), 8.into(), 4.into(), 4.into()];
        let x = TensorType::new(DType::F32, Shape::from(dims));
        let op = ConvTranspose::new(&[2, 2], &[1; 4], &[], &[1, 1], 1);
        let out = op.infer(&[&x, &ty(&[8, 3, 3, 3])]).unwrap();
        assert_eq!(out[0].shape.to_string(), "[N,3,8,8]");
        let d = ConvTranspose::default();
        let (x, w) = (ty(&[1, 4, 3, 3]), ty(&[4, 2, 2, 2]));
        assert!(matches!(
            d.infer(&[&x, &ty(&[3, 2, 2, 2])]),
            Err(OpError::Shape(_))
        ));
        let g3 = ConvTranspose::new(&[], &[], &[], &[], 3);
        assert!(matches!(g3.infer(&[&x, &w]), Err(OpError::Attr(_))));
        let crop = ConvTranspose::new(&[], &[2, 2, 2, 2], &[], &[], 1);
        assert!(matches!(crop.infer(&[&x, &w]), Err(OpError::Shape(_))));
        let neg = ConvTranspose::new(&[], &[], &[], &[-1, 0], 1);
        let e = neg.infer(&[&x, &w]);
        assert!(matches!(e, Err(OpError::Attr(a)) if a.attr == "output_padding"));
        let g2 = ConvTranspose::new(&[], &[], &[], &[], 2);
        assert_eq!(out_dims(&g2, &[&x, &w, &ty(&[4])]), [1, 4, 4, 4]);
        assert!(matches!(
            g2.infer(&[&x, &w, &ty(&[2])]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(d.infer(&[&x]), Err(OpError::Arity { .. })));
        // One spatial dim: stride 2 places the two stamps side by side.
        let (x1, w1) = (t(&[1, 1, 2], &[1., 2.]), t(&[1, 1, 2], &[1., 3.]));
        let y = eval1(&ConvTranspose::new(&[2], &[], &[], &[], 1), &[&x1, &w1]);
        close(&y, &[1., 3., 2., 6.], &[1, 1, 4]);
    }
}
