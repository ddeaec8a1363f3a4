//! Shape and data-movement ops, and the ops that compute shapes (Shape, Size,
//! ConstantOfShape, Range), which are evaluated at import time.

use kiln_ir::narrow::RoundMode;
use kiln_ir::ops::shape::{
    Cast, Concat, Expand, Flatten, Gather, Pad, PadMode, Reshape, Slice, Split, Squeeze, Transpose,
    Unsqueeze,
};
use kiln_ir::{DType, Tensor};
use ndarray::{ArrayD, IxDyn};

use super::{Row, MAX_OPSET};
use crate::onnx::import::{CResult, Ctx, Val};

pub const OPS: &[Row] = &[
    ("Reshape", 5, MAX_OPSET, reshape),
    ("Flatten", 1, MAX_OPSET, |c| {
        let axis = c.attr_int("axis", 1)?;
        out(c, Flatten { axis }, &[0])
    }),
    ("Transpose", 1, MAX_OPSET, |c| {
        let perm = c.attr_ints("perm")?.unwrap_or_default();
        out(c, Transpose::new(perm), &[0])
    }),
    ("Concat", 4, MAX_OPSET, |c| {
        let Some(axis) = c.attr_opt_int("axis")? else {
            return c.invalid("axis is required");
        };
        let idx: Vec<usize> = (0..c.num_inputs()).collect();
        out(c, Concat { axis }, &idx)
    }),
    ("Split", 2, MAX_OPSET, split),
    ("Slice", 1, MAX_OPSET, slice),
    ("Gather", 1, MAX_OPSET, |c| {
        let axis = c.attr_int("axis", 0)?;
        out(c, Gather { axis }, &[0, 1])
    }),
    ("Pad", 2, MAX_OPSET, pad),
    ("Expand", 8, MAX_OPSET, |c| {
        let Some(shape) = c.const_ints(1, "shape")? else {
            return c.invalid("shape is required");
        };
        out(c, Expand { shape }, &[0])
    }),
    ("Squeeze", 1, MAX_OPSET, |c| {
        let axes = if c.opset >= 13 {
            c.const_ints(1, "axes")?
        } else {
            c.attr_ints("axes")?
        };
        out(
            c,
            Squeeze {
                axes: axes.unwrap_or_default(),
            },
            &[0],
        )
    }),
    ("Unsqueeze", 1, MAX_OPSET, |c| {
        let axes = if c.opset >= 13 {
            c.const_ints(1, "axes")?
        } else {
            c.attr_ints("axes")?
        };
        let Some(axes) = axes else {
            return c.invalid("axes is required");
        };
        out(c, Unsqueeze { axes }, &[0])
    }),
    ("Cast", 6, MAX_OPSET, |c| {
        let to = c.attr_int("to", 0)?;
        let Some(to) = crate::onnx::import::model_dtype(to as i32) else {
            return c.unsupported(format!("cast to ONNX type {to}"));
        };
        cast(c, to)
    }),
    ("CastLike", 15, MAX_OPSET, |c| {
        let to = c.input_type(1)?.dtype;
        cast(c, to)
    }),
    ("Constant", 1, MAX_OPSET, constant),
    ("Shape", 1, MAX_OPSET, shape),
    ("Size", 1, MAX_OPSET, |c| {
        let n: usize = c.input_dims(0)?.iter().product();
        let v = c.scalar(DType::I64, n as f64);
        c.set_output(0, v);
        Ok(())
    }),
    ("ConstantOfShape", 9, MAX_OPSET, constant_of_shape),
    ("Range", 11, MAX_OPSET, range),
];

fn out(c: &mut Ctx, op: impl Into<kiln_ir::Op>, idx: &[usize]) -> CResult<()> {
    let v = c.apply_inputs(op, idx)?;
    c.set_output(0, v);
    Ok(())
}

/// Cast and CastLike: `saturate` (opset 19) and `round_mode` (opset 24).
fn cast(c: &mut Ctx, to: DType) -> CResult<()> {
    let saturate = match c.attr_int("saturate", 1)? {
        0 => false,
        1 => true,
        v => return c.invalid(format!("saturate must be 0 or 1, found {v}")),
    };
    let mode = c.attr_str("round_mode", "up")?;
    let Some(round_mode) = RoundMode::from_name(&mode) else {
        return c.invalid(format!("unknown round_mode {mode:?}"));
    };
    out(c, Cast::with_modes(to, saturate, round_mode), &[0])
}

fn reshape(c: &mut Ctx) -> CResult<()> {
    let Some(shape) = c.const_ints(1, "shape")? else {
        return c.invalid("shape is required");
    };
    if c.attr_int("allowzero", 0)? != 0 && shape.contains(&0) {
        return c.unsupported("allowzero = 1 with a zero in the shape");
    }
    out(c, Reshape::new(shape), &[0])
}

fn split(c: &mut Ctx) -> CResult<()> {
    let axis = c.attr_int("axis", 0)?;
    let given = if c.opset >= 13 {
        c.const_ints(1, "split")?
    } else {
        c.attr_ints("split")?
    };
    let n_out = c.node.output.len().max(1);
    let sizes = match given {
        Some(s) => s,
        None => {
            let dims = c.input_dims(0)?;
            let Some(a) = kiln_ir::ops::norm_axis(axis, dims.len()) else {
                return c.invalid(format!("axis {axis} out of range"));
            };
            let len = dims[a];
            let parts = c
                .attr_opt_int("num_outputs")?
                .map_or(n_out, |n| n.max(1) as usize);
            // Equal parts; with num_outputs (opset 18) the last part may be smaller.
            let chunk = len.div_ceil(parts);
            let mut v = Vec::with_capacity(parts);
            let mut left = len;
            for _ in 0..parts {
                let take = chunk.min(left);
                v.push(take as i64);
                left -= take;
            }
            v
        }
    };
    let x = c.input(0)?;
    let outs = c.apply_multi(Split { axis, sizes }, vec![x])?;
    for (i, v) in outs.into_iter().enumerate() {
        c.set_output(i, v);
    }
    Ok(())
}

fn slice(c: &mut Ctx) -> CResult<()> {
    let (starts, ends, axes, steps) = if c.opset >= 10 {
        let Some(s) = c.const_ints(1, "starts")? else {
            return c.invalid("starts is required");
        };
        let Some(e) = c.const_ints(2, "ends")? else {
            return c.invalid("ends is required");
        };
        (
            s,
            e,
            c.const_ints(3, "axes")?.unwrap_or_default(),
            c.const_ints(4, "steps")?.unwrap_or_default(),
        )
    } else {
        let Some(s) = c.attr_ints("starts")? else {
            return c.invalid("starts is required");
        };
        let Some(e) = c.attr_ints("ends")? else {
            return c.invalid("ends is required");
        };
        (s, e, c.attr_ints("axes")?.unwrap_or_default(), vec![])
    };
    out(c, Slice::new(starts, ends, axes, steps), &[0])
}

fn pad(c: &mut Ctx) -> CResult<()> {
    let mode = match c.attr_str("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        other => return c.unsupported(format!("pad mode {other:?}")),
    };
    let rank = c.input_type(0)?.rank();
    // A constant_value known only at run time becomes the op's second input.
    let mut fill = None;
    let (pads, value) = if c.opset >= 11 {
        let Some(p) = c.const_ints(1, "pads")? else {
            return c.invalid("pads is required");
        };
        let value = match c.opt_input(2)? {
            Some(Val::Const { t, .. }) => t.values_f64().first().copied().unwrap_or(0.0),
            Some(v @ Val::Value(_)) => {
                fill = Some(v);
                0.0
            }
            None => 0.0,
        };
        let pads = match c.const_ints(3, "axes")? {
            None => p,
            Some(axes) => {
                // Pads are given for `axes` only: spread them over every axis.
                let mut full = vec![0i64; 2 * rank];
                let k = axes.len();
                if p.len() != 2 * k {
                    return c.invalid(format!("pads has {} values for {k} axes", p.len()));
                }
                for (j, &a) in axes.iter().enumerate() {
                    let Some(a) = kiln_ir::ops::norm_axis(a, rank) else {
                        return c.invalid(format!("axis {a} out of range"));
                    };
                    full[a] = p[j];
                    full[a + rank] = p[j + k];
                }
                full
            }
        };
        (pads, value)
    } else {
        let Some(p) = c.attr_ints("pads")? else {
            return c.invalid("pads is required");
        };
        (p, f64::from(c.attr_float("value", 0.0)?))
    };
    let mut ins = vec![c.input(0)?];
    ins.extend(fill);
    let v = c.apply(Pad::new(mode, pads, value), ins)?;
    c.set_output(0, v);
    Ok(())
}

fn constant(c: &mut Ctx) -> CResult<()> {
    let t = if let Some(t) = c.attr_tensor("value")? {
        t
    } else if c.has_attr("value_float") {
        Tensor::from_vec_f64(
            DType::F32,
            &[],
            vec![f64::from(c.attr_float("value_float", 0.0)?)],
        )
        .expect("scalar")
    } else if let Some(v) = c.attr_floats("value_floats")? {
        Tensor::from_vec_f64(
            DType::F32,
            &[v.len()],
            v.iter().map(|&x| f64::from(x)).collect(),
        )
        .expect("1-D")
    } else if let Some(i) = c.attr_opt_int("value_int")? {
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[]), vec![i]).expect("scalar"))
    } else if let Some(v) = c.attr_ints("value_ints")? {
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-D"))
    } else {
        return c.unsupported(
            "Constant without a tensor, float or int value (sparse or string constants)",
        );
    };
    // Kept known at import time; it becomes a `constant` node only if read at run time.
    c.set_output(0, Val::Const { t, param: None });
    Ok(())
}

fn shape(c: &mut Ctx) -> CResult<()> {
    let dims = c.input_dims(0)?;
    let r = dims.len() as i64;
    let clamp = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
    let start = clamp(c.attr_int("start", 0)?);
    let end = clamp(c.attr_int("end", r)?);
    let v: Vec<i64> = dims[start..end.max(start)]
        .iter()
        .map(|&d| d as i64)
        .collect();
    let t = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-D"));
    c.set_output(0, Val::Const { t, param: None });
    Ok(())
}

fn constant_of_shape(c: &mut Ctx) -> CResult<()> {
    let Some(shape) = c.const_ints(0, "shape")? else {
        return c.invalid("shape is required");
    };
    let fill = match c.attr_tensor("value")? {
        Some(t) => t,
        None => Tensor::from_vec_f64(DType::F32, &[1], vec![0.0]).expect("1 value"),
    };
    if fill.len() != 1 {
        return c.invalid("value must hold exactly one element");
    }
    // A scalar expanded to the shape: folded when small, an `expand` node otherwise.
    let scalar = c.apply(
        Reshape::new(vec![]),
        vec![Val::Const {
            t: fill,
            param: None,
        }],
    )?;
    let v = c.apply(Expand { shape }, vec![scalar])?;
    c.set_output(0, v);
    Ok(())
}

fn range(c: &mut Ctx) -> CResult<()> {
    let get = |c: &Ctx, i: usize, what: &str| -> CResult<Tensor> {
        c.const_input(i, what)?
            .map_or_else(|| c.invalid(format!("{what} is required")), Ok)
    };
    let (start, limit, delta) = (
        get(c, 0, "start")?,
        get(c, 1, "limit")?,
        get(c, 2, "delta")?,
    );
    if [&start, &limit, &delta].iter().any(|t| t.len() != 1) {
        return c.invalid("start, limit and delta must each hold one value");
    }
    let dtype = start.dtype();
    let t = if dtype.is_float() {
        let (s, l, d) = (
            start.values_f64()[0],
            limit.values_f64()[0],
            delta.values_f64()[0],
        );
        if d == 0.0 {
            return c.invalid("delta is 0");
        }
        let n = ((l - s) / d).ceil().max(0.0) as usize;
        Tensor::from_vec_f64(dtype, &[n], (0..n).map(|i| s + i as f64 * d).collect()).expect("1-D")
    } else {
        let one = |t: &Tensor| t.to_i64().iter().next().copied().unwrap_or(0);
        let (s, l, d) = (one(&start), one(&limit), one(&delta));
        if d == 0 {
            return c.invalid("delta is 0");
        }
        let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as usize;
        let v: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
        Tensor::from_i64(dtype, ArrayD::from_shape_vec(IxDyn(&[n]), v).expect("1-D"))
    };
    c.set_output(0, Val::Const { t, param: None });
    Ok(())
}
