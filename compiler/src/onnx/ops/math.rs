//! MatMul and Gemm.

use kiln_ir::ops::elementwise::{Binary, BinaryKind};
use kiln_ir::ops::linalg::MatMul;
use kiln_ir::ops::shape::Transpose;

use super::{Row, MAX_OPSET};
use crate::onnx::import::{CResult, Ctx};

pub const OPS: &[Row] = &[
    ("MatMul", 1, MAX_OPSET, matmul),
    ("Gemm", 1, MAX_OPSET, gemm),
];

fn matmul(c: &mut Ctx) -> CResult<()> {
    let v = c.apply_inputs(MatMul, &[0, 1])?;
    c.set_output(0, v);
    Ok(())
}

/// Y = alpha * A' B' + beta * C, with A' = transA ? Aᵀ : A (same for B).
/// Before opset 7, C broadcasts only with `broadcast = 1`; numpy broadcasting
/// of C onto [M, N] covers both forms.
fn gemm(c: &mut Ctx) -> CResult<()> {
    let alpha = f64::from(c.attr_float("alpha", 1.0)?);
    let beta = f64::from(c.attr_float("beta", 1.0)?);
    let mut a = c.input(0)?;
    let mut b = c.input(1)?;
    if c.attr_int("transA", 0)? != 0 {
        a = c.apply(Transpose::new(vec![1, 0]), vec![a])?;
    }
    if c.attr_int("transB", 0)? != 0 {
        b = c.apply(Transpose::new(vec![1, 0]), vec![b])?;
    }
    let mut y = c.apply(MatMul, vec![a, b])?;
    if alpha != 1.0 {
        let s = c.scalar(c.dtype_of(&y), alpha);
        y = c.apply(Binary::new(BinaryKind::Mul), vec![y, s])?;
    }
    if let Some(mut bias) = c.opt_input(2)? {
        if beta != 1.0 {
            let s = c.scalar(c.dtype_of(&bias), beta);
            bias = c.apply(Binary::new(BinaryKind::Mul), vec![bias, s])?;
        }
        y = c.apply(Binary::new(BinaryKind::Add), vec![y, bias])?;
    }
    c.set_output(0, y);
    Ok(())
}
