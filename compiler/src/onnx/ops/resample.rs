//! Resampling: `Resize` and the older `Upsample`, both to kiln's `resize`.
//!
//! `scales`, `sizes` and `roi` must be known at import time (kiln graphs have
//! static shapes); the converter works out the full-rank output size and the
//! scale each axis's coordinate transform uses, as the ONNX reference does.

use kiln_ir::attr::F64;
use kiln_ir::ops::grid::{AffineGrid, GridSample, PaddingMode, SampleMode};
use kiln_ir::ops::resample::{CoordMode, NearestMode, Resize, ResizeMode};

use super::{Row, MAX_OPSET};
use crate::onnx::import::{CResult, Ctx};

pub const OPS: &[Row] = &[
    ("Resize", 10, MAX_OPSET, resize),
    ("Upsample", 7, 9, upsample),
    ("GridSample", 16, MAX_OPSET, grid_sample),
    ("AffineGrid", 20, MAX_OPSET, affine_grid),
];

fn mode(c: &Ctx) -> CResult<ResizeMode> {
    let m = c.attr_str("mode", "nearest")?;
    match m.as_str() {
        "nearest" => Ok(ResizeMode::Nearest),
        "linear" | "bilinear" => Ok(ResizeMode::Linear),
        "cubic" => Ok(ResizeMode::Cubic),
        other => c.invalid(format!("unknown mode {other:?}")),
    }
}

fn floats(c: &Ctx, i: usize, what: &str) -> CResult<Option<Vec<f64>>> {
    Ok(c.const_input(i, what)?
        .map(|t| t.values_f64())
        .filter(|v| !v.is_empty()))
}

fn resize(c: &mut Ctx) -> CResult<()> {
    let dims = c.input_dims(0)?;
    let r = dims.len();
    let (roi, scales, sizes) = if c.opset < 11 {
        (None, floats(c, 1, "scales")?, None)
    } else {
        let sizes = c.const_ints(3, "sizes")?.filter(|v| !v.is_empty());
        let scales = if sizes.is_some() {
            None
        } else {
            floats(c, 2, "scales")?
        };
        (floats(c, 1, "roi")?, scales, sizes)
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
    let n = axes.len();
    let mut out = dims.clone();
    let mut scale = vec![1.0f64; r];
    match (&scales, &sizes) {
        (_, Some(sizes)) => {
            if sizes.len() != n {
                return c.invalid(format!("sizes has {} values for {n} axes", sizes.len()));
            }
            if axes.iter().any(|&a| dims[a] == 0) {
                return c.invalid("cannot resize an empty axis to a given size");
            }
            let policy = c.attr_str("keep_aspect_ratio_policy", "stretch")?;
            let ratios: Vec<f64> = axes
                .iter()
                .zip(sizes)
                .map(|(&a, &s)| s as f64 / dims[a] as f64)
                .collect();
            let keep = match policy.as_str() {
                "stretch" => None,
                "not_larger" => Some(ratios.iter().copied().fold(f64::INFINITY, f64::min)),
                "not_smaller" => Some(ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                other => return c.invalid(format!("unknown keep_aspect_ratio_policy {other:?}")),
            };
            for (i, &a) in axes.iter().enumerate() {
                match keep {
                    None => {
                        out[a] = usize::try_from(sizes[i])
                            .or_else(|_| c.invalid(format!("negative size {}", sizes[i])))?;
                        scale[a] = ratios[i];
                    }
                    Some(s) => {
                        out[a] = (s * dims[a] as f64 + 0.5) as usize;
                        scale[a] = s;
                    }
                }
            }
        }
        (Some(scales), None) => {
            if scales.len() != n {
                return c.invalid(format!("scales has {} values for {n} axes", scales.len()));
            }
            for (i, &a) in axes.iter().enumerate() {
                if !(scales[i] > 0.0 && scales[i].is_finite()) {
                    return c.invalid(format!("scales must be positive, found {}", scales[i]));
                }
                scale[a] = scales[i];
                out[a] = (scales[i] * dims[a] as f64).floor() as usize;
            }
        }
        (None, None) => return c.invalid("one of scales and sizes is required"),
    }
    let full_roi = match roi {
        None => vec![],
        Some(roi) if roi.len() == 2 * n => {
            let mut full = [vec![0.0; r], vec![1.0; r]].concat();
            for (i, &a) in axes.iter().enumerate() {
                full[a] = roi[i];
                full[r + a] = roi[n + i];
            }
            full
        }
        Some(roi) => return c.invalid(format!("roi has {} values for {n} axes", roi.len())),
    };
    let mut op = Resize::new(mode(c)?, out.iter().map(|&d| d as i64).collect(), scale);
    if c.opset < 11 {
        // Resize-10 is Upsample's semantics; the ONNX version converter maps it so.
        op.coord = CoordMode::Asymmetric;
        op.nearest = NearestMode::Floor;
    } else {
        let coord = c.attr_str("coordinate_transformation_mode", "half_pixel")?;
        op.coord = CoordMode::from_spelling(&coord).map_or_else(
            || c.invalid(format!("unknown coordinate_transformation_mode {coord:?}")),
            Ok,
        )?;
        let nearest = c.attr_str("nearest_mode", "round_prefer_floor")?;
        op.nearest = NearestMode::from_spelling(&nearest).map_or_else(
            || c.invalid(format!("unknown nearest_mode {nearest:?}")),
            Ok,
        )?;
        op.cubic_coeff_a = F64(f64::from(c.attr_float("cubic_coeff_a", -0.75)?));
        op.exclude_outside = c.attr_int("exclude_outside", 0)? != 0;
        op.extrapolation_value = F64(f64::from(c.attr_float("extrapolation_value", 0.0)?));
        op.antialias = c.attr_int("antialias", 0)? != 0;
    }
    op.roi = full_roi.into_iter().map(F64).collect();
    let v = c.apply_inputs(op, &[0])?;
    c.set_output(0, v);
    Ok(())
}

fn upsample(c: &mut Ctx) -> CResult<()> {
    let dims = c.input_dims(0)?;
    let scales = if c.opset >= 9 {
        floats(c, 1, "scales")?
    } else {
        c.attr_floats("scales")?
            .map(|v| v.into_iter().map(f64::from).collect())
    };
    let Some(scales) = scales.filter(|s| s.len() == dims.len()) else {
        return c.invalid(format!("scales must give one value per axis of {dims:?}"));
    };
    if scales.iter().any(|&s| !(s >= 1.0 && s.is_finite())) {
        return c.invalid(format!("scales must be >= 1, found {scales:?}"));
    }
    let out = dims
        .iter()
        .zip(&scales)
        .map(|(&d, &s)| (d as f64 * s).floor() as i64)
        .collect();
    let mut op = Resize::new(mode(c)?, out, scales);
    op.coord = CoordMode::Asymmetric;
    op.nearest = NearestMode::Floor;
    let v = c.apply_inputs(op, &[0])?;
    c.set_output(0, v);
    Ok(())
}

fn grid_sample(c: &mut Ctx) -> CResult<()> {
    let mode = match c
        .attr_str("mode", if c.opset < 20 { "bilinear" } else { "linear" })?
        .as_str()
    {
        "bilinear" | "linear" => SampleMode::Linear,
        "nearest" => SampleMode::Nearest,
        "bicubic" | "cubic" => SampleMode::Cubic,
        other => return c.invalid(format!("unknown mode {other:?}")),
    };
    let padding = match c.attr_str("padding_mode", "zeros")?.as_str() {
        "zeros" => PaddingMode::Zeros,
        "border" => PaddingMode::Border,
        "reflection" => PaddingMode::Reflection,
        other => return c.invalid(format!("unknown padding_mode {other:?}")),
    };
    let op = GridSample {
        mode,
        padding,
        align_corners: c.attr_int("align_corners", 0)? != 0,
    };
    let v = c.apply_inputs(op, &[0, 1])?;
    c.set_output(0, v);
    Ok(())
}

fn affine_grid(c: &mut Ctx) -> CResult<()> {
    let Some(size) = c.const_ints(1, "size")? else {
        return c.invalid("size is required");
    };
    let op = AffineGrid {
        size,
        align_corners: c.attr_int("align_corners", 0)? != 0,
    };
    let v = c.apply_inputs(op, &[0])?;
    c.set_output(0, v);
    Ok(())
}
