//! Convolution, pooling, normalisation, softmax and dropout.

use kiln_ir::ops::conv::{Conv, ConvTranspose};
use kiln_ir::ops::elementwise::{Binary, BinaryKind};
use kiln_ir::ops::norm::{BatchNorm, Dropout, LayerNorm, Softmax};
use kiln_ir::ops::pool::{GlobalPool, Pool, PoolKind};
use kiln_ir::ops::reduce::{Reduce, ReduceKind};
use kiln_ir::ops::shape::{Cast, Flatten, Reshape};
use kiln_ir::{DType, Tensor};

use super::{Row, MAX_OPSET};
use crate::onnx::import::{model_dtype, CResult, Ctx, Val};

pub const OPS: &[Row] = &[
    ("Conv", 1, MAX_OPSET, conv),
    ("ConvTranspose", 1, MAX_OPSET, conv_transpose),
    ("MaxPool", 1, MAX_OPSET, |c| pool(c, PoolKind::Max)),
    ("AveragePool", 1, MAX_OPSET, |c| pool(c, PoolKind::Avg)),
    ("GlobalMaxPool", 1, MAX_OPSET, |c| {
        global_pool(c, PoolKind::Max)
    }),
    ("GlobalAveragePool", 1, MAX_OPSET, |c| {
        global_pool(c, PoolKind::Avg)
    }),
    ("BatchNormalization", 6, MAX_OPSET, batch_norm),
    ("LayerNormalization", 17, MAX_OPSET, layer_norm),
    ("Softmax", 1, MAX_OPSET, |c| softmax(c, false)),
    ("LogSoftmax", 1, MAX_OPSET, |c| softmax(c, true)),
    ("Dropout", 7, MAX_OPSET, dropout),
];

/// Explicit pads for `auto_pad` SAME_UPPER / SAME_LOWER / VALID / NOTSET.
/// `kernel` is the effective kernel extent ((k-1)*dilation + 1) per axis.
pub(super) fn auto_pads(
    c: &Ctx,
    spatial: &[usize],
    kernel: &[usize],
    strides: &[i64],
    given: Option<Vec<i64>>,
) -> CResult<Vec<i64>> {
    let n = spatial.len();
    let mode = c.attr_str("auto_pad", "NOTSET")?;
    match mode.as_str() {
        "NOTSET" => Ok(given.unwrap_or_else(|| vec![0; 2 * n])),
        "VALID" => Ok(vec![0; 2 * n]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = vec![0i64; 2 * n];
            for i in 0..n {
                let s = strides.get(i).copied().unwrap_or(1).max(1) as usize;
                let out = spatial[i].div_ceil(s);
                let total =
                    ((out.saturating_sub(1)) * s + kernel[i]).saturating_sub(spatial[i]) as i64;
                let (small, big) = (total / 2, total - total / 2);
                let (b, e) = if mode == "SAME_UPPER" {
                    (small, big)
                } else {
                    (big, small)
                };
                pads[i] = b;
                pads[i + n] = e;
            }
            Ok(pads)
        }
        other => c.invalid(format!("unknown auto_pad {other:?}")),
    }
}

pub(super) fn spatial_of(c: &Ctx, i: usize) -> CResult<Vec<usize>> {
    let dims = c.input_dims(i)?;
    if dims.len() < 3 {
        return c.invalid(format!("input {i} must have rank >= 3, found {dims:?}"));
    }
    Ok(dims[2..].to_vec())
}

pub(super) fn effective_kernel(kernel: &[usize], dilations: &[i64]) -> Vec<usize> {
    kernel
        .iter()
        .enumerate()
        .map(|(i, &k)| (k.max(1) - 1) * dilations.get(i).copied().unwrap_or(1).max(1) as usize + 1)
        .collect()
}

fn conv(c: &mut Ctx) -> CResult<()> {
    let op = conv_op(c, 0, 1)?;
    let idx: Vec<usize> = (0..c.num_inputs()).collect();
    let v = c.apply_inputs(op, &idx)?;
    c.set_output(0, v);
    Ok(())
}

/// The Conv op for a conv-like node whose data is input `x` and weights input
/// `w` (shared with ConvInteger and QLinearConv).
pub(crate) fn conv_op(c: &Ctx, x: usize, w: usize) -> CResult<Conv> {
    let strides = c.attr_ints("strides")?.unwrap_or_default();
    let dilations = c.attr_ints("dilations")?.unwrap_or_default();
    let groups = c.attr_int("group", 1)?;
    let spatial = spatial_of(c, x)?;
    let wdims = c.input_dims(w)?;
    let kernel: Vec<usize> = match c.attr_ints("kernel_shape")? {
        Some(k) => k.iter().map(|&x| x.max(0) as usize).collect(),
        None => wdims.get(2..).unwrap_or_default().to_vec(),
    };
    let pads = auto_pads(
        c,
        &spatial,
        &effective_kernel(&kernel, &dilations),
        &strides,
        c.attr_ints("pads")?,
    )?;
    Ok(Conv::new(&strides, &pads, &dilations, groups))
}

fn conv_transpose(c: &mut Ctx) -> CResult<()> {
    let strides = c.attr_ints("strides")?.unwrap_or_default();
    let dilations = c.attr_ints("dilations")?.unwrap_or_default();
    let groups = c.attr_int("group", 1)?;
    let spatial = spatial_of(c, 0)?;
    let n = spatial.len();
    let wdims = c.input_dims(1)?;
    let kernel: Vec<usize> = match c.attr_ints("kernel_shape")? {
        Some(k) => k.iter().map(|&x| x.max(0) as usize).collect(),
        None => wdims.get(2..).unwrap_or_default().to_vec(),
    };
    let ek = effective_kernel(&kernel, &dilations);
    let mut out_pad = c.attr_ints("output_padding")?.unwrap_or_else(|| vec![0; n]);
    let auto = c.attr_str("auto_pad", "NOTSET")?;
    let output_shape = c.attr_ints("output_shape")?;
    let stride = |i: usize| strides.get(i).copied().unwrap_or(1);
    let pads = if output_shape.is_some() || auto == "SAME_UPPER" || auto == "SAME_LOWER" {
        let target: Vec<i64> = match &output_shape {
            // output_shape may include the N and C dims.
            Some(s) => s[s.len().saturating_sub(n)..].to_vec(),
            None => (0..n).map(|i| spatial[i] as i64 * stride(i)).collect(),
        };
        if out_pad.len() != n {
            out_pad = vec![0; n];
        }
        let mut pads = vec![0i64; 2 * n];
        for i in 0..n {
            let total = stride(i) * (spatial[i] as i64 - 1) + out_pad[i] + ek[i] as i64 - target[i];
            if total < 0 {
                // The target is larger than the natural output: grow output_padding.
                out_pad[i] -= total;
                continue;
            }
            let (b, e) = if auto == "SAME_LOWER" {
                (total - total / 2, total / 2)
            } else {
                (total / 2, total - total / 2)
            };
            pads[i] = b;
            pads[i + n] = e;
        }
        pads
    } else if auto == "VALID" {
        vec![0; 2 * n]
    } else {
        c.attr_ints("pads")?.unwrap_or_default()
    };
    let op = ConvTranspose::new(&strides, &pads, &dilations, &out_pad, groups);
    let idx: Vec<usize> = (0..c.num_inputs()).collect();
    let v = c.apply_inputs(op, &idx)?;
    c.set_output(0, v);
    Ok(())
}

fn pool(c: &mut Ctx, kind: PoolKind) -> CResult<()> {
    let Some(kernel) = c.attr_ints("kernel_shape")? else {
        return c.invalid("kernel_shape is required");
    };
    let strides = c.attr_ints("strides")?.unwrap_or_default();
    let dilations = c.attr_ints("dilations")?.unwrap_or_default();
    let spatial = spatial_of(c, 0)?;
    let ku: Vec<usize> = kernel.iter().map(|&k| k.max(1) as usize).collect();
    let pads = auto_pads(
        c,
        &spatial,
        &effective_kernel(&ku, &dilations),
        &strides,
        c.attr_ints("pads")?,
    )?;
    let mut op = Pool::new(kind, &kernel);
    op.strides = strides;
    op.pads = pads;
    op.dilations = dilations;
    op.ceil_mode = c.attr_int("ceil_mode", 0)? != 0;
    op.count_include_pad = c.attr_int("count_include_pad", 0)? != 0;
    if c.wants_output(1) {
        // The argmax indices (MaxPool only: AveragePool has one output).
        let storage_order = c.attr_int("storage_order", 0)? != 0;
        let op = kiln_ir::ops::pool_extra::MaxPoolWithIndices {
            pool: op,
            storage_order,
        };
        let x = c.input(0)?;
        let mut outs = c.apply_multi(op, vec![x])?.into_iter();
        for i in 0..2 {
            if let Some(v) = outs.next() {
                c.set_output(i, v);
            }
        }
        return Ok(());
    }
    let v = c.apply_inputs(op, &[0])?;
    c.set_output(0, v);
    Ok(())
}

fn global_pool(c: &mut Ctx, kind: PoolKind) -> CResult<()> {
    let v = c.apply_inputs(GlobalPool { kind }, &[0])?;
    c.set_output(0, v);
    Ok(())
}

fn batch_norm(c: &mut Ctx) -> CResult<()> {
    if c.attr_int("spatial", 1)? != 1 {
        return c.unsupported("spatial = 0");
    }
    let eps = f64::from(c.attr_float("epsilon", 1e-5)?);
    // Opset 14+ says training with `training_mode`; earlier opsets by asking for
    // the running statistics.
    let training =
        c.attr_int("training_mode", 0)? != 0 || (c.opset < 14 && (1..5).any(|i| c.wants_output(i)));
    if !training {
        let v = c.apply_inputs(BatchNorm::new(eps), &[0, 1, 2, 3, 4])?;
        c.set_output(0, v);
        return Ok(());
    }
    if c.opset < 14 && (c.wants_output(3) || c.wants_output(4)) {
        return c.unsupported("the saved mean / variance outputs of training mode");
    }
    // Training: normalise with the batch statistics over every axis but 1, and
    // blend them into the running ones: run * momentum + batch * (1 - momentum).
    let momentum = f64::from(c.attr_float("momentum", 0.9)?);
    let rank = c.input_type(0)?.rank();
    if rank < 2 {
        return c.invalid("input must be [N, C, ...]");
    }
    let axes: Vec<i64> = (0..rank as i64).filter(|&a| a != 1).collect();
    let x = c.input(0)?;
    let dt = c.dtype_of(&x);
    let mean_k = c.apply(
        Reduce::new(ReduceKind::Mean, axes.clone(), true),
        vec![x.clone()],
    )?;
    let centred = c.apply(
        Binary::new(BinaryKind::Sub),
        vec![x.clone(), mean_k.clone()],
    )?;
    let sq = c.apply(Binary::new(BinaryKind::Mul), vec![centred.clone(), centred])?;
    let var_k = c.apply(Reduce::new(ReduceKind::Mean, axes, true), vec![sq])?;
    let mean = c.apply(Reshape::new(vec![-1]), vec![mean_k])?;
    let var = c.apply(Reshape::new(vec![-1]), vec![var_k])?;
    let (scale, bias) = (c.input(1)?, c.input(2)?);
    let y = c.apply(
        BatchNorm::new(eps),
        vec![x, scale, bias, mean.clone(), var.clone()],
    )?;
    c.set_output(0, y);
    for (out, run_idx, batch) in [(1, 3, mean), (2, 4, var)] {
        if !c.wants_output(out) {
            continue;
        }
        let run = c.input(run_idx)?;
        let m = c.scalar(dt, momentum);
        let run = c.apply(Binary::new(BinaryKind::Mul), vec![run, m])?;
        let one_m = c.scalar(dt, 1.0 - momentum);
        let b = c.apply(Binary::new(BinaryKind::Mul), vec![batch, one_m])?;
        let v = c.apply(Binary::new(BinaryKind::Add), vec![run, b])?;
        c.set_output(out, v);
    }
    Ok(())
}

fn layer_norm(c: &mut Ctx) -> CResult<()> {
    let axis = c.attr_int("axis", -1)?;
    let eps = f64::from(c.attr_float("epsilon", 1e-5)?);
    let idx: Vec<usize> = (0..c.num_inputs()).collect();
    if !c.wants_output(1) && !c.wants_output(2) {
        let v = c.apply_inputs(LayerNorm::new(axis, eps), &idx)?;
        c.set_output(0, v);
        return Ok(());
    }
    // Mean / InvStdDev come in stash_type (float by default).
    let stash = c.attr_int("stash_type", 1)?;
    let Some(stash) = model_dtype(stash as i32).filter(|d| d.is_float()) else {
        return c.unsupported(format!("stash_type {stash}"));
    };
    let ins = idx
        .iter()
        .map(|&i| c.input(i))
        .collect::<CResult<Vec<_>>>()?;
    let mut outs = c.apply_multi(LayerNorm::new(axis, eps).with_stats(), ins)?;
    if outs.len() != 3 {
        return c.invalid("layer_norm with stats must give three results");
    }
    for (i, v) in outs.drain(..).enumerate() {
        let v = if i > 0 && c.dtype_of(&v) != stash {
            c.apply(Cast::new(stash), vec![v])?
        } else {
            v
        };
        c.set_output(i, v);
    }
    Ok(())
}

fn softmax(c: &mut Ctx, log: bool) -> CResult<()> {
    if c.opset >= 13 {
        let axis = c.attr_int("axis", -1)?;
        let v = c.apply_inputs(Softmax::new(axis, log), &[0])?;
        c.set_output(0, v);
        return Ok(());
    }
    // Before opset 13 the input is coerced to 2-D at `axis` (default 1), the
    // softmax runs over the second dimension, and the result is reshaped back.
    let axis = c.attr_int("axis", 1)?;
    let dims = c.input_dims(0)?;
    let x = c.input(0)?;
    let flat = c.apply(Flatten { axis }, vec![x])?;
    let s = c.apply(Softmax::new(1, log), vec![flat])?;
    let back = c.apply(
        Reshape::new(dims.iter().map(|&d| d as i64).collect()),
        vec![s],
    )?;
    c.set_output(0, back);
    Ok(())
}

fn dropout(c: &mut Ctx) -> CResult<()> {
    // Dropout is the identity unless training with a ratio above 0; then it is
    // random, which kiln does not model.
    if c.opset >= 12 {
        let training = match c.opt_input(2)? {
            None => false,
            Some(Val::Const { t, .. }) => t.values_f64().first().is_some_and(|&x| x != 0.0),
            Some(Val::Value(_)) => {
                return c.unsupported("training_mode (input 2) that is not known at import time")
            }
        };
        if training {
            let ratio = match c.opt_input(1)? {
                None => 0.5,
                Some(Val::Const { t, .. }) => t.values_f64().first().copied().unwrap_or(0.5),
                Some(Val::Value(_)) => {
                    return c.unsupported(
                        "ratio (input 1) that is not known at import time, in training mode",
                    )
                }
            };
            if ratio != 0.0 {
                return c.unsupported(format!(
                    "training_mode = true with ratio {ratio} (random dropout)"
                ));
            }
        }
    }
    let ratio = if c.opset >= 12 {
        match c.opt_input(1)? {
            Some(Val::Const { t, .. }) => t.values_f64().first().copied().unwrap_or(0.5),
            _ => 0.5,
        }
    } else {
        f64::from(c.attr_float("ratio", 0.5)?)
    };
    let v = c.apply_inputs(Dropout::new(ratio.clamp(0.0, 0.999_999)), &[0])?;
    c.set_output(0, v);
    if c.wants_output(1) {
        // The mask keeps everything.
        let dims = c.input_dims(0)?;
        let n: usize = dims.iter().product();
        let mask =
            Tensor::from_vec_f64(DType::Bool, &dims, vec![1.0; n]).expect("dims match the count");
        c.set_output(
            1,
            Val::Const {
                t: mask,
                param: None,
            },
        );
    }
    Ok(())
}
