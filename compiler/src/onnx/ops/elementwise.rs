//! Elementwise ONNX ops: unary math and activations, broadcasting binary ops,
//! comparisons and logic, Where, Clip, and the variadic Sum/Mean/Max/Min.

use kiln_ir::ops::elementwise::{Binary, BinaryKind, Unary, UnaryKind, Where};
use kiln_ir::ops::elementwise_more::{Variadic, VariadicKind};
use kiln_ir::ops::shape::Reshape;
use kiln_ir::F64;

use super::{Row, MAX_OPSET};
use crate::onnx::import::{CResult, Ctx};

pub const OPS: &[Row] = &[
    ("Abs", 6, MAX_OPSET, |c| unary(c, UnaryKind::Abs)),
    ("Neg", 6, MAX_OPSET, |c| unary(c, UnaryKind::Neg)),
    ("Exp", 6, MAX_OPSET, |c| unary(c, UnaryKind::Exp)),
    ("Log", 6, MAX_OPSET, |c| unary(c, UnaryKind::Log)),
    ("Sqrt", 6, MAX_OPSET, |c| unary(c, UnaryKind::Sqrt)),
    ("Reciprocal", 6, MAX_OPSET, |c| {
        unary(c, UnaryKind::Reciprocal)
    }),
    ("Sin", 7, MAX_OPSET, |c| unary(c, UnaryKind::Sin)),
    ("Cos", 7, MAX_OPSET, |c| unary(c, UnaryKind::Cos)),
    ("Tanh", 6, MAX_OPSET, |c| unary(c, UnaryKind::Tanh)),
    ("Sigmoid", 6, MAX_OPSET, |c| unary(c, UnaryKind::Sigmoid)),
    ("Relu", 6, MAX_OPSET, |c| unary(c, UnaryKind::Relu)),
    ("Erf", 9, MAX_OPSET, |c| unary(c, UnaryKind::Erf)),
    ("Softplus", 1, MAX_OPSET, |c| unary(c, UnaryKind::Softplus)),
    ("Sign", 9, MAX_OPSET, |c| unary(c, UnaryKind::Sign)),
    ("Floor", 6, MAX_OPSET, |c| unary(c, UnaryKind::Floor)),
    ("Ceil", 6, MAX_OPSET, |c| unary(c, UnaryKind::Ceil)),
    ("Round", 11, MAX_OPSET, |c| unary(c, UnaryKind::Round)),
    ("Not", 1, MAX_OPSET, |c| unary(c, UnaryKind::Not)),
    ("LeakyRelu", 6, MAX_OPSET, |c| {
        unary_params(c, UnaryKind::LeakyRelu, &[("alpha", 0.01)])
    }),
    ("Elu", 6, MAX_OPSET, |c| {
        unary_params(c, UnaryKind::Elu, &[("alpha", 1.0)])
    }),
    ("Selu", 6, MAX_OPSET, |c| {
        unary_params(
            c,
            UnaryKind::Selu,
            &[("alpha", 1.673_263_2), ("gamma", 1.050_701)],
        )
    }),
    ("HardSigmoid", 6, MAX_OPSET, |c| {
        unary_params(c, UnaryKind::HardSigmoid, &[("alpha", 0.2), ("beta", 0.5)])
    }),
    ("Gelu", 20, MAX_OPSET, gelu),
    ("Identity", 1, MAX_OPSET, identity),
    ("Add", 1, MAX_OPSET, |c| binary(c, BinaryKind::Add)),
    ("Sub", 1, MAX_OPSET, |c| binary(c, BinaryKind::Sub)),
    ("Mul", 1, MAX_OPSET, |c| binary(c, BinaryKind::Mul)),
    ("Div", 1, MAX_OPSET, |c| binary(c, BinaryKind::Div)),
    ("Pow", 1, MAX_OPSET, |c| binary(c, BinaryKind::Pow)),
    ("Equal", 7, MAX_OPSET, |c| binary(c, BinaryKind::Eq)),
    ("Less", 7, MAX_OPSET, |c| binary(c, BinaryKind::Lt)),
    ("LessOrEqual", 12, MAX_OPSET, |c| binary(c, BinaryKind::Le)),
    ("Greater", 7, MAX_OPSET, |c| binary(c, BinaryKind::Gt)),
    ("GreaterOrEqual", 12, MAX_OPSET, |c| {
        binary(c, BinaryKind::Ge)
    }),
    ("And", 7, MAX_OPSET, |c| binary(c, BinaryKind::And)),
    ("Or", 7, MAX_OPSET, |c| binary(c, BinaryKind::Or)),
    ("Where", 9, MAX_OPSET, |c| {
        let v = c.apply_inputs(Where, &[0, 1, 2])?;
        c.set_output(0, v);
        Ok(())
    }),
    ("Max", 6, MAX_OPSET, |c| variadic(c, VariadicKind::Maximum)),
    ("Min", 6, MAX_OPSET, |c| variadic(c, VariadicKind::Minimum)),
    ("Sum", 6, MAX_OPSET, |c| variadic(c, VariadicKind::Sum)),
    ("Mean", 6, MAX_OPSET, |c| variadic(c, VariadicKind::Mean)),
    ("Clip", 1, 10, clip_legacy),
    ("Clip", 11, MAX_OPSET, clip),
    ("Tan", 7, MAX_OPSET, |c| unary(c, UnaryKind::Tan)),
    ("Asin", 7, MAX_OPSET, |c| unary(c, UnaryKind::Asin)),
    ("Acos", 7, MAX_OPSET, |c| unary(c, UnaryKind::Acos)),
    ("Atan", 7, MAX_OPSET, |c| unary(c, UnaryKind::Atan)),
    ("Sinh", 9, MAX_OPSET, |c| unary(c, UnaryKind::Sinh)),
    ("Cosh", 9, MAX_OPSET, |c| unary(c, UnaryKind::Cosh)),
    ("Asinh", 9, MAX_OPSET, |c| unary(c, UnaryKind::Asinh)),
    ("Acosh", 9, MAX_OPSET, |c| unary(c, UnaryKind::Acosh)),
    ("Atanh", 9, MAX_OPSET, |c| unary(c, UnaryKind::Atanh)),
    ("Softsign", 1, MAX_OPSET, |c| unary(c, UnaryKind::Softsign)),
    ("Mish", 18, MAX_OPSET, |c| unary(c, UnaryKind::Mish)),
    ("HardSwish", 14, MAX_OPSET, |c| {
        unary(c, UnaryKind::HardSwish)
    }),
    ("IsNaN", 9, MAX_OPSET, |c| unary(c, UnaryKind::IsNan)),
    ("BitwiseNot", 18, MAX_OPSET, |c| {
        unary(c, UnaryKind::BitwiseNot)
    }),
    ("Celu", 12, MAX_OPSET, |c| {
        unary_params(c, UnaryKind::Celu, &[("alpha", 1.0)])
    }),
    ("ThresholdedRelu", 10, MAX_OPSET, |c| {
        unary_params(c, UnaryKind::ThresholdedRelu, &[("alpha", 1.0)])
    }),
    ("IsInf", 10, MAX_OPSET, |c| {
        let pos = c.attr_int("detect_positive", 1)? != 0;
        let neg = c.attr_int("detect_negative", 1)? != 0;
        let v = c.apply_inputs(Unary::is_inf(pos, neg), &[0])?;
        c.set_output(0, v);
        Ok(())
    }),
    ("Mod", 10, MAX_OPSET, |c| {
        let kind = if c.attr_int("fmod", 0)? != 0 {
            BinaryKind::FMod
        } else {
            BinaryKind::Mod
        };
        binary(c, kind)
    }),
    ("BitShift", 11, MAX_OPSET, |c| {
        let kind = match c.attr_str("direction", "")?.as_str() {
            "LEFT" => BinaryKind::ShiftLeft,
            "RIGHT" => BinaryKind::ShiftRight,
            other => {
                return c.invalid(format!(
                    "direction must be \"LEFT\" or \"RIGHT\", found {other:?}"
                ))
            }
        };
        binary(c, kind)
    }),
    ("BitwiseAnd", 18, MAX_OPSET, |c| {
        binary(c, BinaryKind::BitwiseAnd)
    }),
    ("BitwiseOr", 18, MAX_OPSET, |c| {
        binary(c, BinaryKind::BitwiseOr)
    }),
    ("BitwiseXor", 18, MAX_OPSET, |c| {
        binary(c, BinaryKind::BitwiseXor)
    }),
    ("Xor", 7, MAX_OPSET, |c| binary(c, BinaryKind::Xor)),
    ("PRelu", 1, 6, prelu_legacy),
    ("PRelu", 7, MAX_OPSET, |c| binary(c, BinaryKind::PRelu)),
];

fn unary(c: &mut Ctx, kind: UnaryKind) -> CResult<()> {
    let v = c.apply_inputs(Unary::new(kind), &[0])?;
    c.set_output(0, v);
    Ok(())
}

/// A unary op whose ONNX float attributes map onto `Unary::alpha`/`beta`.
fn unary_params(c: &mut Ctx, kind: UnaryKind, attrs: &[(&str, f32)]) -> CResult<()> {
    let mut op = Unary::new(kind);
    // ONNX stores these as f32; widen exactly, as the ONNX reference does.
    for (i, (name, default)) in attrs.iter().enumerate() {
        let x = F64(f64::from(c.attr_float(name, *default)?));
        if i == 0 {
            op.alpha = x;
        } else {
            op.beta = x;
        }
    }
    let v = c.apply_inputs(op, &[0])?;
    c.set_output(0, v);
    Ok(())
}

fn gelu(c: &mut Ctx) -> CResult<()> {
    let mut op = Unary::new(UnaryKind::Gelu);
    op.approximate = Some(match c.attr_str("approximate", "none")?.as_str() {
        "none" => "none",
        "tanh" => "tanh",
        other => {
            return c.invalid(format!(
                "approximate must be \"none\" or \"tanh\", found {other:?}"
            ))
        }
    });
    let v = c.apply_inputs(op, &[0])?;
    c.set_output(0, v);
    Ok(())
}

pub(super) fn identity(c: &mut Ctx) -> CResult<()> {
    let v = c.input(0)?;
    c.set_output(0, v);
    Ok(())
}

fn binary(c: &mut Ctx, kind: BinaryKind) -> CResult<()> {
    let a = c.input(0)?;
    let mut b = c.input(1)?;
    // Before opset 7, `broadcast = 1` broadcast B onto A, aligned at `axis` when
    // given (B's dims match A's dims axis.. axis+rank(B)); without `axis` that
    // is numpy's suffix alignment. Reshaping B with trailing 1s turns the
    // first form into the second.
    if c.opset < 7 && c.attr_int("broadcast", 0)? != 0 && c.has_attr("axis") {
        let rank_a = c.input_dims(0)?.len() as i64;
        let b_dims = c.input_dims(1)?;
        let mut axis = c.attr_int("axis", 0)?;
        if axis < 0 {
            axis += rank_a;
        }
        let tail = rank_a - axis - b_dims.len() as i64;
        if axis < 0 || tail < 0 {
            return c.invalid(format!(
                "legacy broadcast axis {axis} does not fit B {b_dims:?} into A of rank {rank_a}"
            ));
        }
        let mut shape: Vec<i64> = b_dims.iter().map(|&d| d as i64).collect();
        shape.extend(std::iter::repeat_n(1, tail as usize));
        b = c.apply(Reshape::new(shape), vec![b])?;
    }
    let v = c.apply(Binary::new(kind), vec![a, b])?;
    c.set_output(0, v);
    Ok(())
}

/// PRelu before opset 7: a slope of shape [C] applies per channel (axis 1),
/// not numpy-style to the last axis.
fn prelu_legacy(c: &mut Ctx) -> CResult<()> {
    let x_rank = c.input_dims(0)?.len();
    let slope_dims = c.input_dims(1)?;
    let x = c.input(0)?;
    let mut slope = c.input(1)?;
    if slope_dims.len() == 1 && slope_dims[0] != 1 && x_rank >= 2 {
        let mut shape = vec![slope_dims[0] as i64];
        shape.extend(std::iter::repeat_n(1, x_rank - 2));
        slope = c.apply(Reshape::new(shape), vec![slope])?;
    }
    let v = c.apply(Binary::new(BinaryKind::PRelu), vec![x, slope])?;
    c.set_output(0, v);
    Ok(())
}

/// Clip before opset 11: bounds are the `min`/`max` attributes.
fn clip_legacy(c: &mut Ctx) -> CResult<()> {
    let mut acc = c.input(0)?;
    let dt = c.dtype_of(&acc);
    let lo = c.attr_float("min", f32::MIN)?;
    let hi = c.attr_float("max", f32::MAX)?;
    if c.has_attr("min") {
        let s = c.scalar(dt, f64::from(lo));
        acc = c.apply(Binary::new(BinaryKind::Max), vec![acc, s])?;
    }
    if c.has_attr("max") {
        let s = c.scalar(dt, f64::from(hi));
        acc = c.apply(Binary::new(BinaryKind::Min), vec![acc, s])?;
    }
    c.set_output(0, acc);
    Ok(())
}

/// Sum/Mean/Max/Min of 1..N broadcast inputs.
fn variadic(c: &mut Ctx, kind: VariadicKind) -> CResult<()> {
    let idx: Vec<usize> = (0..c.num_inputs()).collect();
    let v = c.apply_inputs(Variadic::new(kind), &idx)?;
    c.set_output(0, v);
    Ok(())
}

/// Clip(x, min?, max?) = min(max(x, lo), hi), each bound optional.
fn clip(c: &mut Ctx) -> CResult<()> {
    let mut acc = c.input(0)?;
    if let Some(lo) = c.opt_input(1)? {
        acc = c.apply(Binary::new(BinaryKind::Max), vec![acc, lo])?;
    }
    if let Some(hi) = c.opt_input(2)? {
        acc = c.apply(Binary::new(BinaryKind::Min), vec![acc, hi])?;
    }
    c.set_output(0, acc);
    Ok(())
}
