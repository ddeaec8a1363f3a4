//! Pooling and image-layout extras: `LpPool` (lowered to a depthwise sum
//! convolution), `MaxUnpool`, `Col2Im` and `CenterCropPad` (lowered to slice
//! and pad). `MaxPool`'s indices output lives with `MaxPool` in `nn.rs`.

use kiln_ir::attr::F64;
use kiln_ir::ops::binary::{Binary, BinaryKind};
use kiln_ir::ops::conv::Conv;
use kiln_ir::ops::deform::DeformConv;
use kiln_ir::ops::elementwise::{Unary, UnaryKind};
use kiln_ir::ops::movement::PadMode;
use kiln_ir::ops::pool_extra::{Col2Im, MaxUnpool};
use kiln_ir::ops::roi::RoiAlign;
use kiln_ir::ops::shape::{Pad, Slice};
use kiln_ir::Tensor;

use super::nn::{auto_pads, effective_kernel, spatial_of};
use super::{Row, MAX_OPSET};
use crate::onnx::import::{CResult, Ctx, Val};

pub const OPS: &[Row] = &[
    ("LpPool", 2, MAX_OPSET, lp_pool),
    ("MaxUnpool", 9, MAX_OPSET, max_unpool),
    ("Col2Im", 18, MAX_OPSET, col2im),
    ("CenterCropPad", 18, MAX_OPSET, center_crop_pad),
    ("RoiAlign", 10, MAX_OPSET, roi_align),
    ("DeformConv", 19, MAX_OPSET, deform_conv),
];

/// `(sum over the window of |x|^p)^(1/p)`: zero padding adds nothing to the
/// sum, so a depthwise convolution with a kernel of ones computes it exactly.
fn lp_pool(c: &mut Ctx) -> CResult<()> {
    let Some(kernel) = c.attr_ints("kernel_shape")? else {
        return c.invalid("kernel_shape is required");
    };
    if c.attr_int("ceil_mode", 0)? != 0 {
        return c.unsupported("ceil_mode = 1");
    }
    let p = if c.opset >= 11 {
        c.attr_int("p", 2)? as f64
    } else {
        f64::from(c.attr_float("p", 2.0)?)
    };
    if !(p > 0.0 && p.is_finite()) {
        return c.invalid(format!("p must be positive, found {p}"));
    }
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
    let dims = c.input_dims(0)?;
    let dtype = c.input_type(0)?.dtype;
    let channels = dims[1];
    let mut wshape = vec![channels, 1];
    wshape.extend(&ku);
    let n: usize = wshape.iter().product();
    let ones = Val::Const {
        t: Tensor::from_vec_f64(dtype, &wshape, vec![1.0; n]).expect("shape matches"),
        param: None,
    };
    let x = c.input(0)?;
    let mut a = c.apply(Unary::new(UnaryKind::Abs), vec![x])?;
    if p != 1.0 {
        a = c.apply(Binary::new(BinaryKind::Pow), vec![a, c.scalar(dtype, p)])?;
    }
    let conv = Conv::new(&strides, &pads, &dilations, channels as i64);
    let mut y = c.apply(conv, vec![a, ones])?;
    if p != 1.0 {
        y = c.apply(
            Binary::new(BinaryKind::Pow),
            vec![y, c.scalar(dtype, 1.0 / p)],
        )?;
    }
    c.set_output(0, y);
    Ok(())
}

fn max_unpool(c: &mut Ctx) -> CResult<()> {
    let Some(kernel) = c.attr_ints("kernel_shape")? else {
        return c.invalid("kernel_shape is required");
    };
    let spatial = spatial_of(c, 0)?;
    let n = spatial.len();
    let strides = c.attr_ints("strides")?.unwrap_or_else(|| vec![1; n]);
    let pads = c.attr_ints("pads")?.unwrap_or_else(|| vec![0; 2 * n]);
    if kernel.len() != n || strides.len() != n || pads.len() != 2 * n {
        return c.invalid("kernel_shape, strides and pads must match the spatial rank");
    }
    // Indices address the natural unpooled shape; a larger output_shape
    // pads it at the end (as the ONNX reference does).
    let natural: Vec<i64> = (0..n)
        .map(|d| (spatial[d] as i64 - 1) * strides[d] + kernel[d] - pads[d] - pads[n + d])
        .collect();
    let mut v = c.apply_inputs(
        MaxUnpool {
            output: natural.clone(),
        },
        &[0, 1],
    )?;
    if let Some(s) = c.const_ints(2, "output_shape")? {
        if s.len() < n {
            return c.invalid(format!("output_shape {s:?} is too short"));
        }
        let target = &s[s.len() - n..];
        if target.iter().zip(&natural).any(|(t, m)| t < m) {
            return c.unsupported(format!(
                "output_shape {s:?} smaller than the unpooled shape {natural:?}"
            ));
        }
        if target != natural.as_slice() {
            let mut pads = vec![0i64; 2 * (n + 2)];
            for d in 0..n {
                pads[n + 2 + 2 + d] = target[d] - natural[d];
            }
            v = c.apply(Pad::new(PadMode::Constant, pads, 0.0), vec![v])?;
        }
    }
    c.set_output(0, v);
    Ok(())
}

fn col2im(c: &mut Ctx) -> CResult<()> {
    let Some(image) = c.const_ints(1, "image_shape")? else {
        return c.invalid("image_shape is required");
    };
    let Some(block) = c.const_ints(2, "block_shape")? else {
        return c.invalid("block_shape is required");
    };
    let op = Col2Im {
        image,
        block,
        strides: c.attr_ints("strides")?.unwrap_or_default(),
        pads: c.attr_ints("pads")?.unwrap_or_default(),
        dilations: c.attr_ints("dilations")?.unwrap_or_default(),
    };
    let v = c.apply_inputs(op, &[0])?;
    c.set_output(0, v);
    Ok(())
}

/// Crop each listed axis around its centre, or pad it evenly with zeros
/// (the smaller half first), to the target length.
fn center_crop_pad(c: &mut Ctx) -> CResult<()> {
    let dims = c.input_dims(0)?;
    let r = dims.len();
    let Some(shape) = c.const_ints(1, "shape")? else {
        return c.invalid("shape is required");
    };
    let axes: Vec<usize> = match c.attr_ints("axes")? {
        None => (0..r).collect(),
        Some(a) => a
            .iter()
            .map(|&x| match kiln_ir::ops::norm_axis(x, r) {
                Some(a) => Ok(a),
                None => c.invalid(format!("axis {x} is out of range for rank {r}")),
            })
            .collect::<CResult<_>>()?,
    };
    if shape.len() != axes.len() || shape.iter().any(|&s| s < 0) {
        return c.invalid(format!("shape {shape:?} does not fit axes {axes:?}"));
    }
    let (mut starts, mut ends, mut slice_axes) = (vec![], vec![], vec![]);
    let mut pads = vec![0i64; 2 * r];
    for (&a, &target) in axes.iter().zip(&shape) {
        let len = dims[a] as i64;
        if target < len {
            let start = (len - target) / 2;
            starts.push(start);
            ends.push(start + target);
            slice_axes.push(a as i64);
        } else if target > len {
            let extra = target - len;
            pads[a] = extra / 2;
            pads[r + a] = extra - extra / 2;
        }
    }
    let mut v = c.input(0)?;
    if !slice_axes.is_empty() {
        let slice = Slice {
            starts,
            ends,
            axes: slice_axes,
            steps: vec![],
        };
        v = c.apply(slice, vec![v])?;
    }
    if pads.iter().any(|&p| p != 0) {
        v = c.apply(Pad::new(PadMode::Constant, pads, 0.0), vec![v])?;
    }
    c.set_output(0, v);
    Ok(())
}

fn roi_align(c: &mut Ctx) -> CResult<()> {
    let mode = c.attr_str("mode", "avg")?;
    if mode != "avg" && mode != "max" {
        return c.invalid(format!("unknown mode {mode:?}"));
    }
    // Opset 10 had no attribute and behaved as `output_half_pixel`.
    let default = if c.opset < 16 {
        "output_half_pixel"
    } else {
        "half_pixel"
    };
    let half_pixel = match c
        .attr_str("coordinate_transformation_mode", default)?
        .as_str()
    {
        "half_pixel" => true,
        "output_half_pixel" => false,
        other => return c.invalid(format!("unknown coordinate_transformation_mode {other:?}")),
    };
    let op = RoiAlign {
        max: mode == "max",
        output_height: c.attr_int("output_height", 1)?,
        output_width: c.attr_int("output_width", 1)?,
        sampling_ratio: c.attr_int("sampling_ratio", 0)?,
        spatial_scale: F64(f64::from(c.attr_float("spatial_scale", 1.0)?)),
        half_pixel,
    };
    let v = c.apply_inputs(op, &[0, 1, 2])?;
    c.set_output(0, v);
    Ok(())
}

fn deform_conv(c: &mut Ctx) -> CResult<()> {
    let dtype = c.input_type(0)?.dtype;
    let wd = c.input_dims(1)?;
    let od = c.input_dims(2)?;
    if wd.len() != 4 || od.len() != 4 || od[1] % 2 != 0 {
        return c.unsupported(format!(
            "DeformConv with weight {wd:?} and offset {od:?} (2-D only)"
        ));
    }
    if let Some(k) = c.attr_ints("kernel_shape")? {
        if k.iter().map(|&v| v as usize).ne(wd[2..].iter().copied()) {
            return c.invalid(format!(
                "kernel_shape {k:?} does not match the weight {wd:?}"
            ));
        }
    }
    let op = DeformConv {
        strides: c.attr_ints("strides")?.unwrap_or_default(),
        pads: c.attr_ints("pads")?.unwrap_or_default(),
        dilations: c.attr_ints("dilations")?.unwrap_or_default(),
        group: c.attr_int("group", 1)?,
        offset_group: c.attr_int("offset_group", 1)?,
    };
    let fill = |shape: &[usize], v: f64| Val::Const {
        t: Tensor::from_vec_f64(dtype, shape, vec![v; shape.iter().product()]).expect("shape"),
        param: None,
    };
    let b = c.opt_input(3)?.unwrap_or_else(|| fill(&[wd[0]], 0.0));
    let mask = c
        .opt_input(4)?
        .unwrap_or_else(|| fill(&[od[0], od[1] / 2, od[2], od[3]], 1.0));
    let ins = vec![c.input(0)?, c.input(1)?, c.input(2)?, b, mask];
    let v = c.apply(op, ins)?;
    c.set_output(0, v);
    Ok(())
}
