//! `Gradient` (domain `ai.onnx.preview.training`): the gradient of a value
//! `y` with respect to earlier values `xs`, built at import time by the
//! `autodiff` pass's `gradients` on the graph imported so far.

use super::{Row, MAX_OPSET};
use crate::onnx::import::{CResult, Ctx, Val};
use crate::passes::autodiff::gradients;

pub const OPS: &[Row] = &[("Gradient", 1, MAX_OPSET, gradient)];

fn gradient(c: &mut Ctx) -> CResult<()> {
    if c.has_attr("zs") {
        return c.unsupported("the `zs` attribute (values held constant)");
    }
    let Some(xs) = c.attr_strs("xs")? else {
        return c.invalid("the `xs` attribute is required");
    };
    let y = c.attr_str("y", "")?;
    if y.is_empty() {
        return c.invalid("the `y` attribute is required");
    }
    let runtime = |c: &Ctx, name: &str| -> CResult<kiln_ir::ValueId> {
        match c.named(name)? {
            Val::Value(v) => Ok(v),
            Val::Const { .. } => c.unsupported(format!(
                "`{name}` is known at import time; gradients are taken of graph values"
            )),
        }
    };
    let yv = runtime(c, &y)?;
    let xv: Vec<kiln_ir::ValueId> = xs.iter().map(|x| runtime(c, x)).collect::<CResult<_>>()?;
    let grads = match gradients(c.graph_mut(), yv, &xv) {
        Ok(g) => g,
        Err(e) => return c.unsupported(format!("autodiff: {e}")),
    };
    for (k, g) in grads.into_iter().enumerate() {
        c.set_output(k, Val::Value(g));
    }
    Ok(())
}
