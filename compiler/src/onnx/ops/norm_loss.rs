//! Normalisations, losses and activation functions: RMSNormalization,
//! InstanceNormalization, GroupNormalization, LRN, MeanVarianceNormalization,
//! LpNormalization, Hardmax, Swish, SwiGLU, Shrink, NegativeLogLikelihoodLoss,
//! SoftmaxCrossEntropyLoss.
//!
//! Losses, rms_norm, hardmax and lrn are IR ops; the others are lowered to
//! existing ops following the ONNX function bodies.

use kiln_ir::ops::elementwise::{Binary, BinaryKind, Unary, UnaryKind, Where};
use kiln_ir::ops::loss::{NllLoss, Reduction, SoftmaxCrossEntropy};
use kiln_ir::ops::norm::{LayerNorm, RmsNorm};
use kiln_ir::ops::norm_more::{Hardmax, Lrn};
use kiln_ir::ops::reduce::{Reduce, ReduceKind};
use kiln_ir::ops::shape::{Flatten, Reshape};
use kiln_ir::Tensor;

use super::{Row, MAX_OPSET};
use crate::onnx::import::{CResult, Ctx, Val};

pub const OPS: &[Row] = &[
    ("RMSNormalization", 23, MAX_OPSET, rms_norm),
    ("InstanceNormalization", 6, MAX_OPSET, instance_norm),
    ("GroupNormalization", 21, MAX_OPSET, group_norm),
    ("LRN", 1, MAX_OPSET, lrn),
    ("MeanVarianceNormalization", 9, MAX_OPSET, mvn),
    ("LpNormalization", 1, MAX_OPSET, lp_norm),
    ("Hardmax", 1, MAX_OPSET, hardmax),
    ("Swish", 24, MAX_OPSET, swish),
    ("SwiGLU", 28, MAX_OPSET, swiglu),
    ("Shrink", 9, MAX_OPSET, shrink),
    ("NegativeLogLikelihoodLoss", 12, MAX_OPSET, nll_loss),
    (
        "SoftmaxCrossEntropyLoss",
        12,
        MAX_OPSET,
        softmax_cross_entropy,
    ),
];

fn bin(c: &mut Ctx, kind: BinaryKind, a: Val, b: Val) -> CResult<Val> {
    c.apply(Binary::new(kind), vec![a, b])
}

fn un(c: &mut Ctx, kind: UnaryKind, a: Val) -> CResult<Val> {
    c.apply(Unary::new(kind), vec![a])
}

/// A `[1]` tensor of ones, the neutral scale of layer_norm.
fn ones1(c: &Ctx, v: &Val) -> Val {
    let dt = c.dtype_of(v);
    Val::Const {
        t: Tensor::from_vec_f64(dt, &[1], vec![1.0]).expect("one value"),
        param: None,
    }
}

fn rms_norm(c: &mut Ctx) -> CResult<()> {
    let axis = c.attr_int("axis", -1)?;
    let eps = f64::from(c.attr_float("epsilon", 1e-5)?);
    let v = c.apply_inputs(RmsNorm::new(axis, eps), &[0, 1])?;
    c.set_output(0, v);
    Ok(())
}

/// Per-channel `scale`/`bias` `[C]` reshaped to `[C, 1, ...]` for an input of `rank`.
fn per_channel(c: &mut Ctx, v: Val, rank: usize) -> CResult<Val> {
    let mut shape = vec![-1i64];
    shape.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
    c.apply(Reshape::new(shape), vec![v])
}

/// `y * scale[c] + bias[c]` over the channel axis 1.
fn channel_affine(c: &mut Ctx, y: Val, rank: usize) -> CResult<Val> {
    let s = c.input(1)?;
    let s = per_channel(c, s, rank)?;
    let b = c.input(2)?;
    let b = per_channel(c, b, rank)?;
    let y = bin(c, BinaryKind::Mul, y, s)?;
    bin(c, BinaryKind::Add, y, b)
}

/// Normalise over the spatial axes of each (n, c), then scale and shift per channel.
fn instance_norm(c: &mut Ctx) -> CResult<()> {
    let eps = f64::from(c.attr_float("epsilon", 1e-5)?);
    let rank = c.input_type(0)?.rank();
    if rank < 3 {
        return c.invalid(format!("input must be [N, C, D1, ...], found rank {rank}"));
    }
    let x = c.input(0)?;
    let one = ones1(c, &x);
    let y = c.apply(LayerNorm::new(2, eps), vec![x, one])?;
    let y = channel_affine(c, y, rank)?;
    c.set_output(0, y);
    Ok(())
}

/// Normalise each group of `C / num_groups` channels (with their spatial
/// extent), then scale and shift per channel (opset 21 form).
fn group_norm(c: &mut Ctx) -> CResult<()> {
    let eps = f64::from(c.attr_float("epsilon", 1e-5)?);
    let Some(groups) = c.attr_opt_int("num_groups")? else {
        return c.invalid("num_groups is required");
    };
    let dims = c.input_dims(0)?;
    if dims.len() < 2 || groups <= 0 || dims[1] % groups as usize != 0 {
        return c.invalid(format!(
            "num_groups {groups} must divide the channels of input {dims:?}"
        ));
    }
    let x = c.input(0)?;
    let one = ones1(c, &x);
    let g = c.apply(Reshape::new(vec![dims[0] as i64, groups, -1]), vec![x])?;
    let y = c.apply(LayerNorm::new(2, eps), vec![g, one])?;
    let y = c.apply(
        Reshape::new(dims.iter().map(|&d| d as i64).collect()),
        vec![y],
    )?;
    let y = channel_affine(c, y, dims.len())?;
    c.set_output(0, y);
    Ok(())
}

fn lrn(c: &mut Ctx) -> CResult<()> {
    let Some(size) = c.attr_opt_int("size")? else {
        return c.invalid("size is required");
    };
    let op = Lrn::new(
        size,
        f64::from(c.attr_float("alpha", 1e-4)?),
        f64::from(c.attr_float("beta", 0.75)?),
        f64::from(c.attr_float("bias", 1.0)?),
    );
    let v = c.apply_inputs(op, &[0])?;
    c.set_output(0, v);
    Ok(())
}

/// `(x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9)` over `axes`, as ONNX's function body.
fn mvn(c: &mut Ctx) -> CResult<()> {
    let axes = c.attr_ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]);
    let x = c.input(0)?;
    let dt = c.dtype_of(&x);
    let mean = c.apply(
        Reduce::new(ReduceKind::Mean, axes.clone(), true),
        vec![x.clone()],
    )?;
    let mean_sq = bin(c, BinaryKind::Mul, mean.clone(), mean.clone())?;
    let x_sq = bin(c, BinaryKind::Mul, x.clone(), x.clone())?;
    let e_x_sq = c.apply(Reduce::new(ReduceKind::Mean, axes, true), vec![x_sq])?;
    let var = bin(c, BinaryKind::Sub, e_x_sq, mean_sq)?;
    let std = un(c, UnaryKind::Sqrt, var)?;
    let eps = c.scalar(dt, 1e-9);
    let std = bin(c, BinaryKind::Add, std, eps)?;
    let centred = bin(c, BinaryKind::Sub, x, mean)?;
    let y = bin(c, BinaryKind::Div, centred, std)?;
    c.set_output(0, y);
    Ok(())
}

/// `x / ||x||_p` along `axis` (p = 1 or 2); a zero norm gives 0, not NaN.
fn lp_norm(c: &mut Ctx) -> CResult<()> {
    let axis = c.attr_int("axis", -1)?;
    let p = c.attr_int("p", 2)?;
    let x = c.input(0)?;
    let dt = c.dtype_of(&x);
    let norm = match p {
        1 => {
            let a = un(c, UnaryKind::Abs, x.clone())?;
            c.apply(Reduce::new(ReduceKind::Sum, vec![axis], true), vec![a])?
        }
        2 => {
            let sq = bin(c, BinaryKind::Mul, x.clone(), x.clone())?;
            let s = c.apply(Reduce::new(ReduceKind::Sum, vec![axis], true), vec![sq])?;
            un(c, UnaryKind::Sqrt, s)?
        }
        _ => return c.unsupported(format!("p = {p} (only 1 and 2 are defined)")),
    };
    let zero = c.scalar(dt, 0.0);
    let is_zero = bin(c, BinaryKind::Eq, norm.clone(), zero.clone())?;
    let q = bin(c, BinaryKind::Div, x, norm)?;
    let y = c.apply(Where, vec![is_zero, zero, q])?;
    c.set_output(0, y);
    Ok(())
}

fn hardmax(c: &mut Ctx) -> CResult<()> {
    if c.opset >= 13 {
        let axis = c.attr_int("axis", -1)?;
        let v = c.apply_inputs(Hardmax { axis }, &[0])?;
        c.set_output(0, v);
        return Ok(());
    }
    // Before opset 13 the input is coerced to 2-D at `axis` (default 1).
    let axis = c.attr_int("axis", 1)?;
    let dims = c.input_dims(0)?;
    let x = c.input(0)?;
    let flat = c.apply(Flatten { axis }, vec![x])?;
    let h = c.apply(Hardmax { axis: 1 }, vec![flat])?;
    let back = c.apply(
        Reshape::new(dims.iter().map(|&d| d as i64).collect()),
        vec![h],
    )?;
    c.set_output(0, back);
    Ok(())
}

/// `x * sigmoid(alpha * x)`.
fn swish_of(c: &mut Ctx, x: Val, alpha: f64) -> CResult<Val> {
    let dt = c.dtype_of(&x);
    let ax = if alpha == 1.0 {
        x.clone()
    } else {
        let a = c.scalar(dt, alpha);
        bin(c, BinaryKind::Mul, x.clone(), a)?
    };
    let s = un(c, UnaryKind::Sigmoid, ax)?;
    bin(c, BinaryKind::Mul, x, s)
}

fn swish(c: &mut Ctx) -> CResult<()> {
    let alpha = f64::from(c.attr_float("alpha", 1.0)?);
    let x = c.input(0)?;
    let y = swish_of(c, x, alpha)?;
    c.set_output(0, y);
    Ok(())
}

/// `swish_alpha(a) * b`, with `a` and `b` of one shape.
fn swiglu(c: &mut Ctx) -> CResult<()> {
    let alpha = f64::from(c.attr_float("alpha", 1.0)?);
    let (ta, tb) = (c.input_type(0)?, c.input_type(1)?);
    if ta != tb {
        return c.invalid(format!(
            "A {ta} and B {tb} must have the same type and shape"
        ));
    }
    let a = c.input(0)?;
    let b = c.input(1)?;
    let s = swish_of(c, a, alpha)?;
    let y = bin(c, BinaryKind::Mul, s, b)?;
    c.set_output(0, y);
    Ok(())
}

/// `x + bias` where `x < -lambd`, `x - bias` where `x > lambd`, else 0.
fn shrink(c: &mut Ctx) -> CResult<()> {
    let bias = f64::from(c.attr_float("bias", 0.0)?);
    let lambd = f64::from(c.attr_float("lambd", 0.5)?);
    let x = c.input(0)?;
    let dt = c.dtype_of(&x);
    if !dt.is_float() && (bias.fract() != 0.0 || lambd.fract() != 0.0) {
        return c.unsupported(format!(
            "fractional bias/lambd on {dt} input (ONNX leaves the rounding unspecified)"
        ));
    }
    let neg_l = c.scalar(dt, -lambd);
    let pos_l = c.scalar(dt, lambd);
    let b = c.scalar(dt, bias);
    let zero = c.scalar(dt, 0.0);
    let below = bin(c, BinaryKind::Lt, x.clone(), neg_l)?;
    let above = bin(c, BinaryKind::Gt, x.clone(), pos_l)?;
    let plus = bin(c, BinaryKind::Add, x.clone(), b.clone())?;
    let minus = bin(c, BinaryKind::Sub, x, b)?;
    let inner = c.apply(Where, vec![above, minus, zero])?;
    let y = c.apply(Where, vec![below, plus, inner])?;
    c.set_output(0, y);
    Ok(())
}

fn loss_attrs(c: &Ctx) -> CResult<(Reduction, Option<i64>)> {
    let r = c.attr_str("reduction", "mean")?;
    let Some(red) = Reduction::from_name(&r) else {
        return c.invalid(format!("reduction must be none, sum or mean, found {r:?}"));
    };
    Ok((red, c.attr_opt_int("ignore_index")?))
}

fn loss_inputs(c: &Ctx) -> CResult<Vec<Val>> {
    let mut ins = vec![c.input(0)?, c.input(1)?];
    if let Some(w) = c.opt_input(2)? {
        ins.push(w);
    }
    Ok(ins)
}

fn nll_loss(c: &mut Ctx) -> CResult<()> {
    let (red, ii) = loss_attrs(c)?;
    let ins = loss_inputs(c)?;
    let v = c.apply(NllLoss::new(red, ii), ins)?;
    c.set_output(0, v);
    Ok(())
}

fn softmax_cross_entropy(c: &mut Ctx) -> CResult<()> {
    let (red, ii) = loss_attrs(c)?;
    let ins = loss_inputs(c)?;
    let mut outs = c.apply_multi(SoftmaxCrossEntropy::new(red, ii), ins)?;
    if outs.len() != 2 {
        return c.invalid("softmax_cross_entropy must give two results");
    }
    let log_prob = outs.pop().expect("two results");
    c.set_output(0, outs.pop().expect("two results"));
    if c.wants_output(1) {
        c.set_output(1, log_prob);
    }
    Ok(())
}
