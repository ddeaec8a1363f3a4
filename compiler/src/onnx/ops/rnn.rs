//! Recurrent layers: `RNN`, `GRU` and `LSTM`, each to one kiln layer op with
//! every optional input made explicit (zero biases, states and peepholes; full
//! sequence lengths).

use kiln_ir::attr::F64;
use kiln_ir::ops::rnn::{activation_defaults, CellKind, Direction, Recurrent, ACTIVATIONS};
use kiln_ir::{DType, Tensor};

use super::{Row, MAX_OPSET};
use crate::onnx::import::{CResult, Ctx, Val};

pub const OPS: &[Row] = &[
    ("RNN", 7, MAX_OPSET, |c| recurrent(c, CellKind::Rnn)),
    ("GRU", 7, MAX_OPSET, |c| recurrent(c, CellKind::Gru)),
    ("LSTM", 7, MAX_OPSET, |c| recurrent(c, CellKind::Lstm)),
];

fn zeros(dtype: DType, shape: &[usize]) -> Val {
    let n = shape.iter().product();
    Val::Const {
        t: Tensor::from_vec_f64(dtype, shape, vec![0.0; n]).expect("shape matches"),
        param: None,
    }
}

fn recurrent(c: &mut Ctx, kind: CellKind) -> CResult<()> {
    let hidden = match c.attr_opt_int("hidden_size")? {
        Some(h) if h > 0 => h,
        _ => return c.invalid("hidden_size must be given and positive"),
    };
    let dir_s = c.attr_str("direction", "forward")?;
    let Some(direction) = Direction::from_spelling(&dir_s) else {
        return c.invalid(format!("unknown direction {dir_s:?}"));
    };
    if c.attr_int("input_forget", 0)? != 0 {
        return c.unsupported("input_forget = 1");
    }
    let mut op = Recurrent::new(kind, hidden, direction);
    let layout = c.attr_int("layout", 0)?;
    op.layout = layout;
    op.linear_before_reset = c.attr_int("linear_before_reset", 0)? != 0;
    if c.has_attr("clip") {
        op.clip = F64(f64::from(c.attr_float("clip", 0.0)?));
    }
    let per_dir = kind.num_activations();
    if let Some(acts) = c.attr_strs("activations")? {
        let mut acts: Vec<String> = acts.iter().map(|a| a.to_lowercase()).collect();
        if acts.len() == per_dir && direction == Direction::Bidirectional {
            acts.extend_from_within(..);
        }
        if acts.len() != per_dir * direction.count() {
            return c.invalid(format!(
                "expected {} activations, found {acts:?}",
                op.activations.len()
            ));
        }
        if let Some(a) = acts.iter().find(|a| !ACTIVATIONS.contains(&a.as_str())) {
            return c.unsupported(format!("activation {a:?}"));
        }
        let alphas = c.attr_floats("activation_alpha")?.unwrap_or_default();
        let betas = c.attr_floats("activation_beta")?.unwrap_or_default();
        let (mut ai, mut bi) = (alphas.iter(), betas.iter());
        op.alphas.clear();
        op.betas.clear();
        for a in &acts {
            let (da, db) = activation_defaults(a);
            let uses_alpha = !matches!(
                a.as_str(),
                "relu" | "tanh" | "sigmoid" | "softsign" | "softplus"
            );
            let uses_beta = matches!(a.as_str(), "affine" | "scaledtanh" | "hardsigmoid");
            let alpha = if uses_alpha {
                ai.next().map_or(da, |&x| f64::from(x))
            } else {
                da
            };
            let beta = if uses_beta {
                bi.next().map_or(db, |&x| f64::from(x))
            } else {
                db
            };
            op.alphas.push(F64(alpha));
            op.betas.push(F64(beta));
        }
        op.activations = acts;
    }
    let xd = c.input_dims(0)?;
    if xd.len() != 3 {
        return c.invalid(format!("X must have rank 3, found {xd:?}"));
    }
    let (seq, batch) = if layout == 0 {
        (xd[0], xd[1])
    } else {
        (xd[1], xd[0])
    };
    let dtype = c.input_type(0)?.dtype;
    let (d, g, h) = (direction.count(), kind.gates(), hidden as usize);
    let state = if layout == 0 {
        [d, batch, h]
    } else {
        [batch, d, h]
    };
    let mut ins = vec![c.input(0)?, c.input(1)?, c.input(2)?];
    ins.push(
        c.opt_input(3)?
            .unwrap_or_else(|| zeros(dtype, &[d, 2 * g * h])),
    );
    ins.push(c.opt_input(4)?.unwrap_or_else(|| Val::Const {
        t: Tensor::from_vec_f64(DType::I32, &[batch], vec![seq as f64; batch]).expect("1-D"),
        param: None,
    }));
    ins.push(c.opt_input(5)?.unwrap_or_else(|| zeros(dtype, &state)));
    if kind == CellKind::Lstm {
        ins.push(c.opt_input(6)?.unwrap_or_else(|| zeros(dtype, &state)));
        ins.push(c.opt_input(7)?.unwrap_or_else(|| zeros(dtype, &[d, 3 * h])));
    }
    let outs = c.apply_multi(op, ins)?;
    for (i, v) in outs.into_iter().enumerate() {
        c.set_output(i, v);
    }
    Ok(())
}
