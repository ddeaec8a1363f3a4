//! `deform_conv`: 2-D convolution whose kernel taps are moved by learned
//! per-position offsets (and scaled by a mask), sampled bilinearly with zeros
//! outside the input (ONNX `DeformConv`, torchvision's `deform_conv2d`).

use ndarray::{ArrayD, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::op::{attr_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::pool::Geometry;
use crate::ops::{concrete, require_float, same_dtype};
use crate::shape::TensorType;
use crate::tensor::Tensor;

/// `deform_conv(x [N, C, H, W], w [M, C/group, kH, kW], offset [N, G*2*kH*kW, oH, oW],
/// b [M], mask [N, G*kH*kW, oH, oW]) -> [N, M, oH, oW]`, G = `offset_group`.
/// Offsets are (dy, dx) pairs per offset group and kernel tap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeformConv {
    pub strides: Vec<i64>,
    pub pads: Vec<i64>,
    pub dilations: Vec<i64>,
    pub group: i64,
    pub offset_group: i64,
}

struct Plan {
    geom: Geometry,
    x: Vec<usize>,
    k: [usize; 2],
    out: [usize; 2],
    group: usize,
    offset_group: usize,
    ty: TensorType,
}

/// Bilinear sample of a `h x w` plane at (y, x); taps outside read zero.
fn bilinear(plane: &[f64], h: usize, w: usize, y: f64, x: f64) -> f64 {
    let (y0, x0) = (y.floor(), x.floor());
    let (ly, lx) = (y - y0, x - x0);
    let at = |yy: f64, xx: f64| -> f64 {
        if yy >= 0.0 && xx >= 0.0 && (yy as usize) < h && (xx as usize) < w {
            plane[yy as usize * w + xx as usize]
        } else {
            0.0
        }
    };
    (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x0 + 1.0))
        + ly * ((1.0 - lx) * at(y0 + 1.0, x0) + lx * at(y0 + 1.0, x0 + 1.0))
}

impl DeformConv {
    fn plan(&self, inputs: &[&TensorType]) -> OpResult<Plan> {
        expect_arity(inputs, 5)?;
        require_float(inputs[0], "deform_conv input")?;
        same_dtype(inputs)?;
        let d: Vec<Vec<usize>> = inputs
            .iter()
            .map(|t| concrete(t, "deform_conv operand"))
            .collect::<OpResult<_>>()?;
        let (x, w, off, b, mask) = (&d[0], &d[1], &d[2], &d[3], &d[4]);
        if x.len() != 4 || w.len() != 4 {
            return shape_err(
                "deform_conv supports 2-D inputs [N, C, H, W] and weights [M, C/group, kH, kW]",
            );
        }
        let group = usize::try_from(self.group).ok().filter(|&g| g > 0);
        let og = usize::try_from(self.offset_group).ok().filter(|&g| g > 0);
        let (Some(group), Some(og)) = (group, og) else {
            return attr_err("group", "group and offset_group must be positive");
        };
        if x[1] != w[1] * group || w[0] % group != 0 || x[1] % og != 0 {
            return shape_err(format!(
                "deform_conv channels do not fit: x {x:?}, w {w:?}, group {group}, offset_group {og}"
            ));
        }
        let geom = Geometry::resolve(2, &self.strides, &self.pads, &self.dilations)?;
        let k = [w[2], w[3]];
        let out = [
            geom.sliding_out("deform_conv", 0, x[2], k[0], false)?,
            geom.sliding_out("deform_conv", 1, x[3], k[1], false)?,
        ];
        let kk = k[0] * k[1];
        let want_off = [x[0], og * 2 * kk, out[0], out[1]];
        let want_mask = [x[0], og * kk, out[0], out[1]];
        if off.as_slice() != want_off || mask.as_slice() != want_mask || b.as_slice() != [w[0]] {
            return shape_err(format!(
                "deform_conv needs offset {want_off:?}, mask {want_mask:?} and bias [{}], found {off:?}, {mask:?}, {b:?}",
                w[0]
            ));
        }
        let ty = TensorType::concrete(inputs[0].dtype, &[x[0], w[0], out[0], out[1]]);
        Ok(Plan {
            geom,
            x: x.clone(),
            k,
            out,
            group,
            offset_group: og,
            ty,
        })
    }
}

impl OpDef for DeformConv {
    const SPELLINGS: &'static [&'static str] = &["deform_conv"];

    fn parse(_spelling: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(DeformConv {
            strides: a.ints("strides", &[])?,
            pads: a.ints("pads", &[])?,
            dilations: a.ints("dilations", &[])?,
            group: a.int("group", 1)?,
            offset_group: a.int("offset_group", 1)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "deform_conv"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("strides", &self.strides);
        w.ints("pads", &self.pads);
        w.ints("dilations", &self.dilations);
        w.int("group", self.group);
        w.int("offset_group", self.offset_group);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        Ok(vec![self.plan(inputs)?.ty])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let Plan {
            geom,
            x: xd,
            k,
            out,
            group,
            offset_group,
            ty,
        } = self.plan(&tys.iter().collect::<Vec<_>>())?;
        let [x, w, off, b, mask] = [0, 1, 2, 3, 4].map(|i| inputs[i].values_f64());
        let (n, c, h, wd) = (xd[0], xd[1], xd[2], xd[3]);
        let m = ty.shape.concrete().map_or(0, |d| d[1]);
        let (kk, op) = (k[0] * k[1], out[0] * out[1]);
        let (cpg, mpg, cpo) = (c / group, m / group, c / offset_group);
        let mut y = vec![0.0; n * m * op];
        for bn in 0..n {
            for oc in 0..m {
                let g = oc / mpg;
                for (p, yv) in y[(bn * m + oc) * op..(bn * m + oc + 1) * op]
                    .iter_mut()
                    .enumerate()
                {
                    let (oy, ox) = (p / out[1], p % out[1]);
                    let mut acc = b[oc];
                    for icg in 0..cpg {
                        let ic = g * cpg + icg;
                        let og = ic / cpo;
                        let plane = &x[(bn * c + ic) * h * wd..(bn * c + ic + 1) * h * wd];
                        for t in 0..kk {
                            let (ky, kx) = (t / k[1], t % k[1]);
                            let oi =
                                |j: usize| ((bn * offset_group + og) * 2 * kk + 2 * t + j) * op + p;
                            let yy = (oy * geom.strides[0] + ky * geom.dilations[0]) as f64
                                - geom.pads_begin[0] as f64
                                + off[oi(0)];
                            let xx = (ox * geom.strides[1] + kx * geom.dilations[1]) as f64
                                - geom.pads_begin[1] as f64
                                + off[oi(1)];
                            let mv = mask[((bn * offset_group + og) * kk + t) * op + p];
                            let wv = w[(oc * cpg + icg) * kk + t];
                            acc += wv * mv * bilinear(plane, h, wd, yy, xx);
                        }
                    }
                    *yv = acc;
                }
            }
        }
        let dims = concrete(&ty, "deform_conv output")?;
        let y =
            ArrayD::from_shape_vec(IxDyn(&dims), y).map_err(|e| OpError::Eval(e.to_string()))?;
        Ok(vec![Tensor::from_f64(ty.dtype, y)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::ops::test_util::roundtrip;

    fn t(shape: &[usize], v: Vec<f64>) -> Tensor {
        Tensor::from_vec_f64(DType::F32, shape, v).unwrap()
    }

    #[test]
    fn zero_offsets_are_a_plain_conv_and_half_offsets_interpolate() {
        let op = DeformConv {
            strides: vec![],
            pads: vec![],
            dilations: vec![],
            group: 1,
            offset_group: 1,
        };
        // 1x1 kernel of weight 2 over a 1x2 image [1, 3].
        let x = t(&[1, 1, 1, 2], vec![1., 3.]);
        let w = t(&[1, 1, 1, 1], vec![2.]);
        let b = t(&[1], vec![0.5]);
        let mask = t(&[1, 1, 1, 2], vec![1., 1.]);
        let zero = t(&[1, 2, 1, 2], vec![0.; 4]);
        let y = op.eval(&[&x, &w, &zero, &b, &mask]).unwrap().remove(0);
        assert_eq!(y.values_f64(), [2.5, 6.5]);
        // dx = 0.5 reads halfway to the right neighbour; past the edge reads half of zero.
        let half = t(&[1, 2, 1, 2], vec![0., 0., 0.5, 0.5]);
        let y = op.eval(&[&x, &w, &half, &b, &mask]).unwrap().remove(0);
        assert_eq!(y.values_f64(), [4.5, 3.5]);
        roundtrip(&op);
        let bad = t(&[1, 1, 1, 2], vec![0.; 2]);
        assert!(matches!(
            op.infer(&[&x.ty(), &w.ty(), &bad.ty(), &b.ty(), &mask.ty()]),
            Err(OpError::Shape(_))
        ));
    }
}
