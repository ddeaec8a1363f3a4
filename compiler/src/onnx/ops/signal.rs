//! Signal processing: `DFT` and `STFT` (kiln ops), and the window and mel
//! filter-bank generators, which depend only on import-time constants and
//! are computed here as constant tensors.

use std::f64::consts::PI;

use kiln_ir::ops::signal::{Dft, Stft};
use kiln_ir::{DType, Tensor};

use super::{Row, MAX_OPSET};
use crate::onnx::import::{model_dtype, CResult, Ctx, Val};

pub const OPS: &[Row] = &[
    ("DFT", 17, MAX_OPSET, dft),
    ("STFT", 17, MAX_OPSET, stft),
    ("HannWindow", 17, MAX_OPSET, |c| window(c, &[0.5, -0.5])),
    ("HammingWindow", 17, MAX_OPSET, |c| {
        window(c, &[25.0 / 46.0, -21.0 / 46.0])
    }),
    ("BlackmanWindow", 17, MAX_OPSET, |c| {
        window(c, &[0.42, -0.5, 0.08])
    }),
    ("MelWeightMatrix", 17, MAX_OPSET, mel_weight_matrix),
];

fn scalar_int(c: &Ctx, i: usize, what: &str) -> CResult<Option<i64>> {
    match c.const_ints(i, what)? {
        None => Ok(None),
        Some(v) if v.len() == 1 => Ok(Some(v[0])),
        Some(v) => c.invalid(format!("{what} must hold one value, found {v:?}")),
    }
}

fn dft(c: &mut Ctx) -> CResult<()> {
    let dims = c.input_dims(0)?;
    let r = dims.len() as i64;
    let axis = if c.opset >= 20 {
        scalar_int(c, 2, "axis")?.unwrap_or(-2)
    } else {
        c.attr_int("axis", 1)?
    };
    if !(-r..r - 1).contains(&axis) || axis == -1 {
        return c.invalid(format!("axis {axis} is not a signal axis of rank {r}"));
    }
    let axis = axis.rem_euclid(r);
    let inverse = c.attr_int("inverse", 0)? != 0;
    let onesided = c.attr_int("onesided", 0)? != 0;
    let length = match scalar_int(c, 1, "dft_length")? {
        Some(n) => n,
        None if inverse && onesided => 2 * (dims[axis as usize] as i64 - 1),
        None => dims[axis as usize] as i64,
    };
    let op = Dft {
        axis,
        length,
        inverse,
        onesided,
    };
    let v = c.apply_inputs(op, &[0])?;
    c.set_output(0, v);
    Ok(())
}

fn stft(c: &mut Ctx) -> CResult<()> {
    let Some(step) = scalar_int(c, 1, "frame_step")? else {
        return c.invalid("frame_step is required");
    };
    let frame_length = scalar_int(c, 3, "frame_length")?;
    let dtype = c.input_type(0)?.dtype;
    let window = match (c.opt_input(2)?, frame_length) {
        (Some(w), fl) => {
            let wd = c.val_type(&w).shape.concrete().unwrap_or_default();
            if fl.is_some_and(|f| wd != [f as usize]) {
                return c.invalid(format!("window {wd:?} does not match frame_length {fl:?}"));
            }
            w
        }
        (None, Some(fl)) if fl > 0 => Val::Const {
            t: Tensor::from_vec_f64(dtype, &[fl as usize], vec![1.0; fl as usize]).expect("1-D"),
            param: None,
        },
        _ => return c.invalid("one of window and a positive frame_length is required"),
    };
    let op = Stft {
        step,
        onesided: c.attr_int("onesided", 1)? != 0,
    };
    let x = c.input(0)?;
    let v = c.apply(op, vec![x, window])?;
    c.set_output(0, v);
    Ok(())
}

fn output_dtype(c: &Ctx) -> CResult<DType> {
    let code = c.attr_int("output_datatype", 1)?;
    match i32::try_from(code).ok().and_then(model_dtype) {
        Some(d) => Ok(d),
        None => c.unsupported(format!("output_datatype {code}")),
    }
}

/// A generalised cosine window: `sum_j a_j cos(2π j n / N)`, with `N` the
/// size (periodic) or size - 1 (symmetric).
fn window(c: &mut Ctx, coeffs: &[f64]) -> CResult<()> {
    let Some(size) = scalar_int(c, 0, "size")? else {
        return c.invalid("size is required");
    };
    let Ok(size) = usize::try_from(size) else {
        return c.invalid(format!("size must be non-negative, found {size}"));
    };
    let periodic = c.attr_int("periodic", 1)? != 0;
    let denom = if periodic {
        size
    } else {
        size.saturating_sub(1)
    } as f64;
    let v: Vec<f64> = (0..size)
        .map(|n| {
            coeffs
                .iter()
                .enumerate()
                .map(|(j, a)| a * (2.0 * PI * j as f64 * n as f64 / denom).cos())
                .sum()
        })
        .collect();
    let t = Tensor::from_vec_f64(output_dtype(c)?, &[size], v).expect("1-D");
    c.set_output(0, Val::Const { t, param: None });
    Ok(())
}

/// Triangular mel filters over the one-sided DFT bins, as the ONNX reference
/// builds them (HTK mel scale, bin edges rounded down).
fn mel_weight_matrix(c: &mut Ctx) -> CResult<()> {
    let mut ints = [0i64; 3];
    for (i, what) in ["num_mel_bins", "dft_length", "sample_rate"]
        .iter()
        .enumerate()
    {
        ints[i] =
            scalar_int(c, i, what)?.map_or_else(|| c.invalid(format!("{what} is required")), Ok)?;
    }
    let [bins, dft_length, rate] = ints;
    let mut edges = [0f64; 2];
    for (k, what) in ["lower_edge_hertz", "upper_edge_hertz"].iter().enumerate() {
        edges[k] = match c.const_input(3 + k, what)? {
            Some(t) if t.len() == 1 => t.values_f64()[0],
            _ => return c.invalid(format!("{what} must be one value")),
        };
    }
    if bins <= 0 || dft_length <= 0 || rate <= 0 {
        return c.invalid("num_mel_bins, dft_length and sample_rate must be positive");
    }
    let (bins, spec) = (bins as usize, dft_length as usize / 2 + 1);
    let mel = |hz: f64| 2595.0 * (hz / 700.0).ln_1p() / 10f64.ln();
    let (lo, hi) = (mel(edges[0]), mel(edges[1]));
    let step = (hi - lo) / (bins + 2) as f64;
    let points: Vec<i64> = (0..bins + 2)
        .map(|i| {
            let hz = 700.0 * ((i as f64 * step + lo) / 2595.0 * 10f64.ln()).exp_m1();
            ((dft_length + 1) as f64 * hz / rate as f64).floor() as i64
        })
        .collect();
    let mut out = vec![0.0; spec * bins];
    let mut set = |j: i64, i: usize, v: f64| -> CResult<()> {
        match usize::try_from(j).ok().filter(|&j| j < spec) {
            Some(j) => {
                out[j * bins + i] = v;
                Ok(())
            }
            None => Err(crate::onnx::import::Problem::Unsupported {
                node: String::new(),
                op_type: "MelWeightMatrix".into(),
                what: format!("a filter edge at bin {j}, outside the {spec} spectrum bins"),
            }),
        }
    };
    for i in 0..bins {
        let (l, m, h) = (points[i], points[i + 1], points[i + 2]);
        if m == l {
            set(m, i, 1.0)?;
        } else {
            for j in l..=m {
                set(j, i, (j - l) as f64 / (m - l) as f64)?;
            }
        }
        for j in m..h {
            set(j, i, (h - j) as f64 / (h - m) as f64)?;
        }
    }
    let t = Tensor::from_vec_f64(output_dtype(c)?, &[spec, bins], out).expect("2-D");
    c.set_output(0, Val::Const { t, param: None });
    Ok(())
}
