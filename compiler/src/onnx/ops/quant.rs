//! Quantization: QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear
//! (IR ops), the integer matmuls lowered onto casts and an i32 matmul, and
//! BitCast.

use kiln_ir::ops::bitcast::BitCast;
use kiln_ir::ops::elementwise::{Binary, BinaryKind};
use kiln_ir::ops::linalg::MatMul;
use kiln_ir::ops::quant::{DequantizeLinear, DynamicQuantizeLinear, QuantizeLinear};
use kiln_ir::ops::shape::{Cast, Reshape, Unsqueeze};
use kiln_ir::{DType, Tensor};

use super::{Row, MAX_OPSET};
use crate::onnx::import::{model_dtype, CResult, Ctx, Val};

pub const OPS: &[Row] = &[
    ("QuantizeLinear", 10, MAX_OPSET, quantize_linear),
    ("DequantizeLinear", 10, MAX_OPSET, dequantize_linear),
    (
        "DynamicQuantizeLinear",
        11,
        MAX_OPSET,
        dynamic_quantize_linear,
    ),
    ("MatMulInteger", 10, MAX_OPSET, matmul_integer),
    ("QLinearMatMul", 10, MAX_OPSET, qlinear_matmul),
    ("ConvInteger", 10, MAX_OPSET, conv_integer),
    ("QLinearConv", 10, MAX_OPSET, qlinear_conv),
    ("BitCast", 26, MAX_OPSET, |c| {
        let to = c.attr_int("to", 0)?;
        let Some(to) = model_dtype(to as i32) else {
            return c.unsupported(format!("bitcast to ONNX type {to}"));
        };
        let v = c.apply_inputs(BitCast { to }, &[0])?;
        c.set_output(0, v);
        Ok(())
    }),
];

/// An ONNX dtype attribute (`output_dtype`, `precision`); 0 means absent.
fn dtype_attr(c: &Ctx, name: &str) -> CResult<Option<DType>> {
    match c.attr_int(name, 0)? {
        0 => Ok(None),
        t => match model_dtype(t as i32) {
            Some(d) => Ok(Some(d)),
            None => c.unsupported(format!("attribute `{name}`: ONNX type {t}")),
        },
    }
}

fn quantize_linear(c: &mut Ctx) -> CResult<()> {
    let zp = c.opt_input(2)?;
    let out_attr = dtype_attr(c, "output_dtype")?;
    let to = match (&zp, out_attr) {
        (Some(z), Some(d)) if c.dtype_of(z) != d => {
            return c.invalid(format!(
                "output_dtype {d} differs from the zero point's dtype {}",
                c.dtype_of(z)
            ))
        }
        (Some(z), _) => c.dtype_of(z),
        (None, Some(d)) => d,
        (None, None) => DType::U8,
    };
    let saturate = match c.attr_int("saturate", 1)? {
        0 => false,
        1 => true,
        v => return c.invalid(format!("saturate must be 0 or 1, found {v}")),
    };
    let op = QuantizeLinear {
        to,
        axis: c.attr_int("axis", 1)?,
        block_size: c.attr_int("block_size", 0)?,
        saturate,
        precision: dtype_attr(c, "precision")?,
    };
    let mut ins = vec![c.input(0)?, c.input(1)?];
    ins.extend(zp);
    let v = c.apply(op, ins)?;
    c.set_output(0, v);
    Ok(())
}

fn dequantize_linear(c: &mut Ctx) -> CResult<()> {
    let scale_dtype = c.input_type(1)?.dtype;
    let op = DequantizeLinear {
        to: dtype_attr(c, "output_dtype")?.unwrap_or(scale_dtype),
        axis: c.attr_int("axis", 1)?,
        block_size: c.attr_int("block_size", 0)?,
    };
    let mut ins = vec![c.input(0)?, c.input(1)?];
    ins.extend(c.opt_input(2)?);
    let v = c.apply(op, ins)?;
    c.set_output(0, v);
    Ok(())
}

fn dynamic_quantize_linear(c: &mut Ctx) -> CResult<()> {
    let x = c.input(0)?;
    let outs = c.apply_multi(DynamicQuantizeLinear, vec![x])?;
    for (i, v) in outs.into_iter().enumerate() {
        c.set_output(i, v);
    }
    Ok(())
}

/// `x` as i32 minus its zero point (if any). A 1-D zero point of the left
/// operand is per row, so it becomes a column.
fn widen_minus_zp(c: &mut Ctx, x: usize, zp: usize, per_row: bool) -> CResult<Val> {
    let v = c.input(x)?;
    let mut acc = c.apply(Cast::new(DType::I32), vec![v])?;
    if let Some(z) = c.opt_input(zp)? {
        let mut z = c.apply(Cast::new(DType::I32), vec![z])?;
        z = column_if_per_row(c, z, per_row)?;
        acc = c.apply(Binary::new(BinaryKind::Sub), vec![acc, z])?;
    }
    Ok(acc)
}

/// A rank-1 parameter with more than one entry, for the left operand of a
/// matmul, applies per row: make it [M, 1] so it broadcasts along columns.
fn column_if_per_row(c: &mut Ctx, v: Val, per_row: bool) -> CResult<Val> {
    let ty = match &v {
        Val::Value(id) => c.ty(*id),
        Val::Const { t, .. } => t.ty(),
    };
    if per_row && ty.rank() == 1 && ty.shape.numel() != Some(1) {
        return c.apply(Unsqueeze { axes: vec![1] }, vec![v]);
    }
    Ok(v)
}

/// MatMulInteger(A, B, a_zp?, b_zp?) = (A - a_zp) @ (B - b_zp) in i32.
fn matmul_integer(c: &mut Ctx) -> CResult<()> {
    let a = widen_minus_zp(c, 0, 2, true)?;
    let b = widen_minus_zp(c, 1, 3, false)?;
    let y = c.apply(MatMul, vec![a, b])?;
    c.set_output(0, y);
    Ok(())
}

/// QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp):
/// the i32 product of the zero-point-shifted operands, times
/// a_scale * b_scale / y_scale (computed in the scales' type, then applied in
/// f64), quantized with scale 1 and y's zero point.
fn qlinear_matmul(c: &mut Ctx) -> CResult<()> {
    let a = widen_minus_zp(c, 0, 2, true)?;
    let b = widen_minus_zp(c, 3, 5, false)?;
    let acc = c.apply(MatMul, vec![a, b])?;
    let acc = c.apply(Cast::new(DType::F64), vec![acc])?;
    let a_scale = c.input(1)?;
    let a_scale = column_if_per_row(c, a_scale, true)?;
    let b_scale = c.input(4)?;
    let y_scale = c.input(6)?;
    let k = c.apply(Binary::new(BinaryKind::Mul), vec![a_scale, b_scale])?;
    let k = c.apply(Binary::new(BinaryKind::Div), vec![k, y_scale])?;
    let k = c.apply(Cast::new(DType::F64), vec![k])?;
    let d = c.apply(Binary::new(BinaryKind::Mul), vec![acc, k])?;
    let y_zp = c.input(7)?;
    let to = c.dtype_of(&y_zp);
    let one = Val::Const {
        t: Tensor::from_vec_f64(DType::F64, &[], vec![1.0]).expect("a scalar"),
        param: None,
    };
    let y = c.apply(QuantizeLinear::new(to), vec![d, one, y_zp])?;
    c.set_output(0, y);
    Ok(())
}

/// A per-output-channel parameter ([M], M > 1) reshaped to [M, 1, ..., 1]
/// with `trailing` ones, so it lines up with dimension 0 of the weights (or,
/// with one fewer, dimension 1 of the output).
fn per_channel(c: &mut Ctx, v: Val, trailing: usize) -> CResult<Val> {
    let ty = match &v {
        Val::Value(id) => c.ty(*id),
        Val::Const { t, .. } => t.ty(),
    };
    if ty.rank() == 1 && ty.shape.numel() != Some(1) {
        let mut shape = vec![-1];
        shape.extend(std::iter::repeat_n(1, trailing));
        return c.apply(Reshape::new(shape), vec![v]);
    }
    Ok(v)
}

/// The integer convolution (as f64) of the zero-point-shifted operands (x at
/// input `x`, its zero point at input `x_zp`, the same for w), plus an
/// optional i32 bias.
fn shifted_conv(
    c: &mut Ctx,
    (x, x_zp): (usize, usize),
    (w, w_zp): (usize, usize),
    bias: Option<usize>,
) -> CResult<Val> {
    let op = super::nn::conv_op(c, x, w)?;
    let rank = c.input_type(w)?.rank();
    let xs = widen_minus_zp(c, x, x_zp, false)?;
    let wv = c.input(w)?;
    let mut ws = c.apply(Cast::new(DType::I32), vec![wv])?;
    if let Some(z) = c.opt_input(w_zp)? {
        let z = c.apply(Cast::new(DType::I32), vec![z])?;
        let z = per_channel(c, z, rank.saturating_sub(1))?;
        ws = c.apply(Binary::new(BinaryKind::Sub), vec![ws, z])?;
    }
    // kiln's conv is defined on floats; f64 sums of these integer products
    // are exact (below 2^53), so the result is the integer convolution.
    let xs = c.apply(Cast::new(DType::F64), vec![xs])?;
    let ws = c.apply(Cast::new(DType::F64), vec![ws])?;
    let mut ins = vec![xs, ws];
    if let Some(b) = bias.map(|b| c.opt_input(b)).transpose()?.flatten() {
        ins.push(c.apply(Cast::new(DType::F64), vec![b])?);
    }
    c.apply(op, ins)
}

/// ConvInteger(x, w, x_zp?, w_zp?) = conv(x - x_zp, w - w_zp) in i32.
fn conv_integer(c: &mut Ctx) -> CResult<()> {
    let y = shifted_conv(c, (0, 2), (1, 3), None)?;
    let y = c.apply(Cast::new(DType::I32), vec![y])?;
    c.set_output(0, y);
    Ok(())
}

/// QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B?): the i32
/// convolution (plus bias) times x_scale * w_scale / y_scale, quantized with
/// scale 1 and y's zero point (w_scale may be per output channel).
fn qlinear_conv(c: &mut Ctx) -> CResult<()> {
    let rank = c.input_type(3)?.rank();
    let acc = shifted_conv(c, (0, 2), (3, 5), Some(8))?;
    let x_scale = c.input(1)?;
    let w_scale = c.input(4)?;
    let w_scale = per_channel(c, w_scale, rank.saturating_sub(2))?;
    let y_scale = c.input(6)?;
    let k = c.apply(Binary::new(BinaryKind::Mul), vec![x_scale, w_scale])?;
    let k = c.apply(Binary::new(BinaryKind::Div), vec![k, y_scale])?;
    let k = c.apply(Cast::new(DType::F64), vec![k])?;
    let d = c.apply(Binary::new(BinaryKind::Mul), vec![acc, k])?;
    let y_zp = c.input(7)?;
    let to = c.dtype_of(&y_zp);
    let one = Val::Const {
        t: Tensor::from_vec_f64(DType::F64, &[], vec![1.0]).expect("a scalar"),
        param: None,
    };
    let y = c.apply(QuantizeLinear::new(to), vec![d, one, y_zp])?;
    c.set_output(0, y);
    Ok(())
}
