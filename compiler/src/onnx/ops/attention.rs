//! Attention (opset 23+), RotaryEmbedding (opset 23+) and CausalConvWithState
//! and LinearAttention (opset 27+, the blocks of linear-attention and
//! state-space models).
//!
//! Both IR ops work on 4-D `[B, heads, S, D]` tensors: 3-D inputs
//! `[B, S, heads * D]` are reshaped and transposed around them here, and the
//! KV cache (`past_key`/`past_value`) is concatenated before attention.

use kiln_ir::attr::F64;
use kiln_ir::ops::attention::{Attention, QkOutput, RotaryEmbedding};
use kiln_ir::ops::conv::Conv;
use kiln_ir::ops::elementwise::{Binary, BinaryKind, Unary, UnaryKind};
use kiln_ir::ops::linear_attention::{LinearAttention, UpdateRule};
use kiln_ir::ops::movement::{Concat, Gather, Slice};
use kiln_ir::ops::shape::{Cast, Reshape, Transpose};
use kiln_ir::{DType, Tensor};

use super::{Row, MAX_OPSET};
use crate::onnx::import::{model_dtype, CResult, Ctx, Val};

pub const OPS: &[Row] = &[
    ("Attention", 23, MAX_OPSET, attention),
    ("RotaryEmbedding", 23, MAX_OPSET, rotary_embedding),
    ("CausalConvWithState", 27, MAX_OPSET, causal_conv_with_state),
    ("LinearAttention", 27, MAX_OPSET, linear_attention),
];

/// `[B, S, H * D]` → `[B, H, S, D]`.
fn split_heads(c: &mut Ctx, v: Val, heads: i64) -> CResult<Val> {
    let t = c.apply(Reshape::new(vec![0, 0, heads, -1]), vec![v])?;
    c.apply(Transpose::new(vec![0, 2, 1, 3]), vec![t])
}

/// `[B, H, S, D]` → `[B, S, H * D]`.
fn merge_heads(c: &mut Ctx, v: Val) -> CResult<Val> {
    let t = c.apply(Transpose::new(vec![0, 2, 1, 3]), vec![v])?;
    c.apply(Reshape::new(vec![0, 0, -1]), vec![t])
}

fn attention(c: &mut Ctx) -> CResult<()> {
    let rank = c.input_type(0)?.rank();
    for i in [1, 2] {
        if c.input_type(i)?.rank() != rank {
            return c.invalid("Q, K and V must have the same rank");
        }
    }
    let (mut q, mut k, mut v) = (c.input(0)?, c.input(1)?, c.input(2)?);
    match rank {
        3 => {
            let (Some(hq), Some(hkv)) = (
                c.attr_opt_int("q_num_heads")?,
                c.attr_opt_int("kv_num_heads")?,
            ) else {
                return c.invalid("3-D inputs need q_num_heads and kv_num_heads");
            };
            if hq <= 0 || hkv <= 0 {
                return c.invalid(format!("bad head counts {hq}, {hkv}"));
            }
            q = split_heads(c, q, hq)?;
            k = split_heads(c, k, hkv)?;
            v = split_heads(c, v, hkv)?;
        }
        4 => {}
        r => return c.invalid(format!("Q, K, V must be 3-D or 4-D, found rank {r}")),
    }
    let past_k = c.opt_input(4)?;
    let past_v = c.opt_input(5)?;
    let mut offset = 0;
    match (past_k, past_v) {
        (Some(pk), Some(pv)) => {
            offset = c
                .input_type(4)?
                .shape
                .dims()
                .get(2)
                .and_then(|d| d.known())
                .map_or_else(
                    || c.unsupported("a symbolic past sequence length"),
                    |n| Ok(n as i64),
                )?;
            k = c.apply(Concat { axis: 2 }, vec![pk, k])?;
            v = c.apply(Concat { axis: 2 }, vec![pv, v])?;
        }
        (None, None) => {}
        _ => return c.invalid("past_key and past_value must be given together"),
    }
    let lens = c.opt_input(6)?;
    if lens.is_some() && offset != 0 {
        return c.invalid("nonpad_kv_seqlen cannot be combined with past_key/past_value");
    }
    let softmax_dtype = match c.attr_opt_int("softmax_precision")? {
        None => None,
        Some(p) => match model_dtype(p as i32) {
            Some(d) if d.is_float() => Some(d),
            _ => return c.unsupported(format!("softmax_precision {p}")),
        },
    };
    let mode = c.attr_int("qk_matmul_output_mode", 0)?;
    let qk_output = if c.wants_output(3) {
        match QkOutput::from_mode(mode) {
            Some(m) => Some(m),
            None => return c.invalid(format!("qk_matmul_output_mode {mode}")),
        }
    } else {
        None
    };
    let op = Attention {
        scale: if c.has_attr("scale") {
            Some(F64(f64::from(c.attr_float("scale", 1.0)?)))
        } else {
            None
        },
        softcap: F64(f64::from(c.attr_float("softcap", 0.0)?)),
        causal: c.attr_int("is_causal", 0)? != 0,
        window_left: c.attr_int("left_window_size", -1)?,
        window_right: c.attr_int("right_window_size", -1)?,
        offset,
        softmax_dtype,
        qk_output,
    };
    let mut ins = vec![q, k.clone(), v.clone()];
    if let Some(m) = c.opt_input(3)? {
        ins.push(m);
    }
    if let Some(l) = lens {
        ins.push(l);
    }
    let mut outs = c.apply_multi(op, ins)?;
    let y = outs.remove(0);
    let y = if rank == 3 { merge_heads(c, y)? } else { y };
    c.set_output(0, y);
    c.set_output(1, k);
    c.set_output(2, v);
    if !outs.is_empty() {
        c.set_output(3, outs.remove(0));
    }
    Ok(())
}

fn rotary_embedding(c: &mut Ctx) -> CResult<()> {
    let interleaved = c.attr_int("interleaved", 0)? != 0;
    let rotary_dim = c.attr_int("rotary_embedding_dim", 0)?;
    let rank = c.input_type(0)?.rank();
    let mut x = c.input(0)?;
    if rank == 3 {
        let heads = c.attr_int("num_heads", 0)?;
        if heads <= 0 {
            return c.invalid("3-D input needs num_heads");
        }
        x = split_heads(c, x, heads)?;
    } else if rank != 4 {
        return c.invalid(format!("input must be 3-D or 4-D, found rank {rank}"));
    }
    let (mut cos, mut sin) = (c.input(1)?, c.input(2)?);
    if let Some(pos) = c.opt_input(3)? {
        cos = c.apply(Gather { axis: 0 }, vec![cos, pos.clone()])?;
        sin = c.apply(Gather { axis: 0 }, vec![sin, pos])?;
    }
    let op = RotaryEmbedding {
        interleaved,
        rotary_dim,
    };
    let y = c.apply(op, vec![x, cos, sin])?;
    let y = if rank == 3 { merge_heads(c, y)? } else { y };
    c.set_output(0, y);
    Ok(())
}

/// Causal depthwise 1-D convolution carrying its last `k - 1` inputs as state:
/// `padded = concat(past_state or zeros, input)`, a grouped conv with no
/// padding, the optional fused SiLU (computed in f32 as ONNX's reference
/// does), and `present_state = padded[..., -(k-1):]`.
fn causal_conv_with_state(c: &mut Ctx) -> CResult<()> {
    let act = c.attr_str("activation", "none")?;
    if !matches!(act.as_str(), "none" | "silu" | "swish") {
        return c.invalid(format!("unknown activation {act:?}"));
    }
    let dims = c.input_dims(0)?;
    let wdims = c.input_dims(1)?;
    if dims.len() != 3 || wdims.len() != 3 || wdims[0] != dims[1] || wdims[1] != 1 {
        return c.invalid(format!(
            "input must be [B, C, L] and weight [C, 1, k], found {dims:?} and {wdims:?}"
        ));
    }
    let (b, ch, len, k) = (dims[0], dims[1], dims[2], wdims[2]);
    if k == 0 {
        return c.invalid("kernel size 0");
    }
    let x = c.input(0)?;
    let dt = c.dtype_of(&x);
    let past = match c.opt_input(3)? {
        Some(p) => p,
        None => Val::Const {
            t: Tensor::from_vec_f64(dt, &[b, ch, k - 1], vec![0.0; b * ch * (k - 1)])
                .expect("shape matches"),
            param: None,
        },
    };
    let padded = if k > 1 {
        c.apply(Concat { axis: 2 }, vec![past, x])?
    } else {
        x
    };
    let mut ins = vec![padded.clone(), c.input(1)?];
    if let Some(bias) = c.opt_input(2)? {
        ins.push(bias);
    }
    let conv = Conv::new(&[1], &[0, 0], &[1], ch as i64);
    let mut y = c.apply(conv, ins)?;
    if act != "none" {
        let wide = if dt == DType::F64 { dt } else { DType::F32 };
        let yw = c.apply(Cast::new(wide), vec![y])?;
        let s = c.apply(Unary::new(UnaryKind::Sigmoid), vec![yw.clone()])?;
        let m = c.apply(Binary::new(BinaryKind::Mul), vec![yw, s])?;
        y = c.apply(Cast::new(dt), vec![m])?;
    }
    c.set_output(0, y);
    if c.wants_output(1) {
        let total = (len + k - 1) as i64;
        let state = c.apply(
            Slice::new(vec![total - (k as i64 - 1)], vec![total], vec![2], vec![1]),
            vec![padded],
        )?;
        c.set_output(1, state);
    }
    Ok(())
}

fn linear_attention(c: &mut Ctx) -> CResult<()> {
    let r = c.attr_str("update_rule", "gated_delta")?;
    let Some(rule) = UpdateRule::from_name(&r) else {
        return c.invalid(format!("unknown update_rule {r:?}"));
    };
    let (Some(q_heads), Some(kv_heads)) = (
        c.attr_opt_int("q_num_heads")?,
        c.attr_opt_int("kv_num_heads")?,
    ) else {
        return c.invalid("q_num_heads and kv_num_heads are required");
    };
    let scale = f64::from(c.attr_float("scale", 0.0)?);
    let gated = matches!(rule, UpdateRule::Gated | UpdateRule::GatedDelta);
    let delta = matches!(rule, UpdateRule::Delta | UpdateRule::GatedDelta);
    let (decay, beta) = (c.opt_input(4)?, c.opt_input(5)?);
    if decay.is_some() != gated || beta.is_some() != delta {
        return c.invalid(format!(
            "update_rule {r:?} needs {} decay and {} beta",
            if gated { "a" } else { "no" },
            if delta { "a" } else { "no" }
        ));
    }
    let mut ins = vec![c.input(0)?, c.input(1)?, c.input(2)?];
    ins.extend(c.opt_input(3)?);
    ins.extend(decay);
    ins.extend(beta);
    let op = LinearAttention {
        rule,
        q_heads,
        kv_heads,
        scale: (scale != 0.0).then_some(F64(scale)),
    };
    let mut outs = c.apply_multi(op, ins)?;
    if outs.len() != 2 {
        return c.invalid("linear_attention must give two results");
    }
    let state = outs.pop().expect("two results");
    c.set_output(0, outs.pop().expect("two results"));
    c.set_output(1, state);
    Ok(())
}
