//! The Reduce* family and ArgMax/ArgMin.

use kiln_ir::ops::elementwise::{Binary, BinaryKind, Unary, UnaryKind};
use kiln_ir::ops::reduce::{ArgReduce, Reduce, ReduceKind};

use super::{Row, MAX_OPSET};
use crate::onnx::import::{CResult, Ctx, Val};

pub const OPS: &[Row] = &[
    ("ReduceSum", 1, MAX_OPSET, |c| {
        reduce(c, ReduceKind::Sum, Pre::None, Post::None, 13)
    }),
    ("ReduceMean", 1, MAX_OPSET, |c| {
        reduce(c, ReduceKind::Mean, Pre::None, Post::None, 18)
    }),
    ("ReduceMax", 1, MAX_OPSET, |c| {
        reduce(c, ReduceKind::Max, Pre::None, Post::None, 18)
    }),
    ("ReduceMin", 1, MAX_OPSET, |c| {
        reduce(c, ReduceKind::Min, Pre::None, Post::None, 18)
    }),
    ("ReduceProd", 1, MAX_OPSET, |c| {
        reduce(c, ReduceKind::Prod, Pre::None, Post::None, 18)
    }),
    ("ReduceL1", 1, MAX_OPSET, |c| {
        reduce(c, ReduceKind::Sum, Pre::Abs, Post::None, 18)
    }),
    ("ReduceL2", 1, MAX_OPSET, |c| {
        reduce(c, ReduceKind::Sum, Pre::Square, Post::Sqrt, 18)
    }),
    ("ReduceSumSquare", 1, MAX_OPSET, |c| {
        reduce(c, ReduceKind::Sum, Pre::Square, Post::None, 18)
    }),
    ("ReduceLogSum", 1, MAX_OPSET, |c| {
        reduce(c, ReduceKind::Sum, Pre::None, Post::Log, 18)
    }),
    ("ReduceLogSumExp", 1, MAX_OPSET, |c| {
        reduce(c, ReduceKind::Sum, Pre::Exp, Post::Log, 18)
    }),
    ("ArgMax", 1, MAX_OPSET, |c| arg(c, true)),
    ("ArgMin", 1, MAX_OPSET, |c| arg(c, false)),
];

#[derive(Clone, Copy)]
enum Pre {
    None,
    Abs,
    Square,
    Exp,
}
#[derive(Clone, Copy)]
enum Post {
    None,
    Sqrt,
    Log,
}

/// A reduction, optionally composed with an elementwise op before and after
/// (ReduceL2 = sqrt(sum(x*x)), ReduceLogSumExp = log(sum(exp(x))), ...).
/// `axes_input_from` is the opset where `axes` moved from attribute to input.
fn reduce(
    c: &mut Ctx,
    kind: ReduceKind,
    pre: Pre,
    post: Post,
    axes_input_from: i64,
) -> CResult<()> {
    let axes = if c.opset >= axes_input_from {
        c.const_ints(1, "axes")?
    } else {
        c.attr_ints("axes")?
    };
    let keepdims = c.attr_int("keepdims", 1)? != 0;
    let noop = c.attr_int("noop_with_empty_axes", 0)? != 0;
    let mut x = c.input(0)?;
    let axes = axes.unwrap_or_default();
    if axes.is_empty() && noop {
        // Reduce nothing: only the elementwise parts apply.
        x = apply_pre(c, x, pre)?;
        x = apply_post(c, x, post)?;
        c.set_output(0, x);
        return Ok(());
    }
    x = apply_pre(c, x, pre)?;
    let mut y = c.apply(Reduce::new(kind, axes, keepdims), vec![x])?;
    y = apply_post(c, y, post)?;
    c.set_output(0, y);
    Ok(())
}

fn apply_pre(c: &mut Ctx, x: Val, pre: Pre) -> CResult<Val> {
    match pre {
        Pre::None => Ok(x),
        Pre::Abs => c.apply(Unary::new(UnaryKind::Abs), vec![x]),
        Pre::Exp => c.apply(Unary::new(UnaryKind::Exp), vec![x]),
        Pre::Square => c.apply(Binary::new(BinaryKind::Mul), vec![x.clone(), x]),
    }
}

fn apply_post(c: &mut Ctx, x: Val, post: Post) -> CResult<Val> {
    match post {
        Post::None => Ok(x),
        Post::Sqrt => c.apply(Unary::new(UnaryKind::Sqrt), vec![x]),
        Post::Log => c.apply(Unary::new(UnaryKind::Log), vec![x]),
    }
}

fn arg(c: &mut Ctx, max: bool) -> CResult<()> {
    let axis = c.attr_int("axis", 0)?;
    let keepdims = c.attr_int("keepdims", 1)? != 0;
    let last = c.attr_int("select_last_index", 0)? != 0;
    let v = c.apply_inputs(ArgReduce::new(max, axis, keepdims, last), &[0])?;
    c.set_output(0, v);
    Ok(())
}
