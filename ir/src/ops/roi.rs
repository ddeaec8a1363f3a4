//! `roi_align`: pools each region of interest of a feature map into a fixed
//! grid by averaging (or taking the largest of) bilinear samples, as in
//! Mask R-CNN and ONNX `RoiAlign`.

use ndarray::{ArrayD, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::op::{
    attr_err, dtype_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult,
};
use crate::ops::{concrete, require_float};
use crate::shape::TensorType;
use crate::tensor::Tensor;

/// `roi_align(x [N, C, H, W], rois [R, 4], batch [R]) -> [R, C, out_h, out_w]`.
/// Each roi is `(x1, y1, x2, y2)` in input coordinates times `spatial_scale`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoiAlign {
    /// Max instead of average over a bin's samples.
    pub max: bool,
    pub output_height: i64,
    pub output_width: i64,
    /// Samples per bin side; 0 means `ceil(roi size / bins)`.
    pub sampling_ratio: i64,
    pub spatial_scale: F64,
    /// Shift coordinates by half a pixel (ONNX's `half_pixel` mode).
    pub half_pixel: bool,
}

/// Bilinear sample taps (flat offset, weight) at (y, x), the way RoiAlign
/// clamps: samples more than one pixel outside contribute nothing.
fn taps(y: f64, x: f64, h: usize, w: usize) -> [(usize, f64); 4] {
    let (hf, wf) = (h as f64, w as f64);
    if y < -1.0 || y > hf || x < -1.0 || x > wf {
        return [(0, 0.0); 4];
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let (mut yl, mut xl) = (y as usize, x as usize);
    let yh = if yl >= h - 1 {
        yl = h - 1;
        y = yl as f64;
        yl
    } else {
        yl + 1
    };
    let xh = if xl >= w - 1 {
        xl = w - 1;
        x = xl as f64;
        xl
    } else {
        xl + 1
    };
    let (ly, lx) = (y - yl as f64, x - xl as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    [
        (yl * w + xl, hy * hx),
        (yl * w + xh, hy * lx),
        (yh * w + xl, ly * hx),
        (yh * w + xh, ly * lx),
    ]
}

impl RoiAlign {
    fn plan(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity(inputs, 3)?;
        let (x, r, b) = (inputs[0], inputs[1], inputs[2]);
        require_float(x, "roi_align input")?;
        if r.dtype != x.dtype {
            return dtype_err(format!("roi_align rois must be {}, found {r}", x.dtype));
        }
        if !b.dtype.is_int() {
            return dtype_err(format!(
                "roi_align batch indices must be integers, found {b}"
            ));
        }
        let (xd, rd, bd) = (
            concrete(x, "roi_align input")?,
            concrete(r, "roi_align rois")?,
            concrete(b, "roi_align batch indices")?,
        );
        if xd.len() != 4 || rd.len() != 2 || rd[1] != 4 || bd != [rd[0]] {
            return shape_err(format!(
                "roi_align needs x [N, C, H, W], rois [R, 4] and batch [R], found {x}, {r}, {b}"
            ));
        }
        if xd[2] == 0 || xd[3] == 0 {
            return shape_err("roi_align input has an empty spatial dim");
        }
        let oh = usize::try_from(self.output_height).ok().filter(|&v| v > 0);
        let ow = usize::try_from(self.output_width).ok().filter(|&v| v > 0);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return attr_err("output_height", "output sizes must be positive");
        };
        if self.sampling_ratio < 0 {
            return attr_err("sampling_ratio", "must be non-negative");
        }
        Ok(TensorType::concrete(x.dtype, &[rd[0], xd[1], oh, ow]))
    }
}

impl OpDef for RoiAlign {
    const SPELLINGS: &'static [&'static str] = &["roi_align"];

    fn parse(_spelling: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        let mode = a.str("mode", "avg")?;
        if mode != "avg" && mode != "max" {
            return Err(AttrError {
                attr: "mode".into(),
                msg: format!("expected avg or max, found {mode:?}"),
            });
        }
        Ok(RoiAlign {
            max: mode == "max",
            output_height: a.int("output_height", 1)?,
            output_width: a.int("output_width", 1)?,
            sampling_ratio: a.int("sampling_ratio", 0)?,
            spatial_scale: F64(a.float("spatial_scale", 1.0)?),
            half_pixel: a.int("half_pixel", 1)? != 0,
        })
    }
    fn spelling(&self) -> &'static str {
        "roi_align"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.str("mode", if self.max { "max" } else { "avg" });
        w.int("output_height", self.output_height);
        w.int("output_width", self.output_width);
        w.int("sampling_ratio", self.sampling_ratio);
        w.float("spatial_scale", self.spatial_scale.0);
        w.int("half_pixel", self.half_pixel as i64);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        Ok(vec![self.plan(inputs)?])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let ty = self.plan(&tys.iter().collect::<Vec<_>>())?;
        let dims = concrete(&ty, "roi_align output")?;
        let xs = inputs[0].shape().to_vec();
        let (n, ch, h, w) = (xs[0], xs[1], xs[2], xs[3]);
        let (oh, ow) = (dims[2], dims[3]);
        let x = inputs[0].values_f64();
        let rois = inputs[1].values_f64();
        let batch = inputs[2].to_i64();
        let (scale, off) = (
            self.spatial_scale.0,
            if self.half_pixel { 0.5 } else { 0.0 },
        );
        let mut out = Vec::with_capacity(dims.iter().product());
        for (r, &bi) in batch.iter().enumerate() {
            let Some(bi) = usize::try_from(bi).ok().filter(|&b| b < n) else {
                return Err(OpError::Eval(format!(
                    "roi_align batch index {bi} out of range"
                )));
            };
            let roi: Vec<f64> = rois[r * 4..r * 4 + 4]
                .iter()
                .map(|v| v * scale - off)
                .collect();
            let (mut rw, mut rh) = (roi[2] - roi[0], roi[3] - roi[1]);
            if !self.half_pixel {
                rw = rw.max(1.0);
                rh = rh.max(1.0);
            }
            let (bh, bw) = (rh / oh as f64, rw / ow as f64);
            let grid = |size: f64, bins: usize| -> usize {
                if self.sampling_ratio > 0 {
                    self.sampling_ratio as usize
                } else {
                    (size / bins as f64).ceil().max(0.0) as usize
                }
            };
            let (gh, gw) = (grid(rh, oh), grid(rw, ow));
            let count = (gh * gw).max(1) as f64;
            // Taps per output bin, shared by every channel.
            let bins: Vec<Vec<[(usize, f64); 4]>> = (0..oh * ow)
                .map(|p| {
                    let (ph, pw) = (p / ow, p % ow);
                    let mut v = Vec::with_capacity(gh * gw);
                    for iy in 0..gh {
                        let y = roi[1] + ph as f64 * bh + (iy as f64 + 0.5) * bh / gh as f64;
                        for ix in 0..gw {
                            let xx = roi[0] + pw as f64 * bw + (ix as f64 + 0.5) * bw / gw as f64;
                            v.push(taps(y, xx, h, w));
                        }
                    }
                    v
                })
                .collect();
            for c in 0..ch {
                let plane = &x[(bi * ch + c) * h * w..(bi * ch + c + 1) * h * w];
                for samples in &bins {
                    let val = if self.max {
                        samples
                            .iter()
                            .map(|t| {
                                t.iter()
                                    .map(|&(i, wt)| wt * plane[i])
                                    .fold(f64::NEG_INFINITY, f64::max)
                            })
                            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                            .unwrap_or(0.0)
                    } else {
                        samples
                            .iter()
                            .map(|t| t.iter().map(|&(i, wt)| wt * plane[i]).sum::<f64>())
                            .sum::<f64>()
                            / count
                    };
                    out.push(val);
                }
            }
        }
        let y =
            ArrayD::from_shape_vec(IxDyn(&dims), out).map_err(|e| OpError::Eval(e.to_string()))?;
        Ok(vec![Tensor::from_f64(ty.dtype, y)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::ops::test_util::roundtrip;

    #[test]
    fn average_of_a_linear_ramp_is_its_centre() {
        // x[h, w] = w on a 4x4 map; a bilinear ramp averages to its centre.
        let x = Tensor::from_vec_f64(
            DType::F32,
            &[1, 1, 4, 4],
            (0..16).map(|i| (i % 4) as f64).collect(),
        )
        .unwrap();
        let rois = Tensor::from_vec_f64(DType::F32, &[1, 4], vec![1., 1., 3., 3.]).unwrap();
        let b = Tensor::from_vec_f64(DType::I64, &[1], vec![0.]).unwrap();
        let op = RoiAlign {
            max: false,
            output_height: 1,
            output_width: 2,
            sampling_ratio: 2,
            spatial_scale: F64(1.0),
            half_pixel: true,
        };
        let y = op.eval(&[&x, &rois, &b]).unwrap().remove(0);
        assert_eq!(y.shape(), [1, 1, 1, 2]);
        // Half-pixel roi spans x in [0.5, 2.5]: bins centred at 1.0 and 2.0.
        assert_eq!(y.values_f64(), [1.0, 2.0]);
        roundtrip(&op);
        let bad = Tensor::from_vec_f64(DType::I64, &[1], vec![3.]).unwrap();
        assert!(matches!(op.eval(&[&x, &rois, &bad]), Err(OpError::Eval(_))));
        let wrong = Tensor::from_vec_f64(DType::F32, &[1, 3], vec![0.; 3]).unwrap();
        assert!(matches!(
            op.infer(&[&x.ty(), &wrong.ty(), &b.ty()]),
            Err(OpError::Shape(_))
        ));
    }
}
