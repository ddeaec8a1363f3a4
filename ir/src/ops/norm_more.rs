//! More normalisation-family ops: `hardmax` (one-hot of the first maximum
//! along an axis) and `lrn` (local response normalisation across channels).

use ndarray::{ArrayD, Axis, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::op::{expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::{axis_or_err, require_float, require_numeric};
use crate::shape::TensorType;
use crate::tensor::Tensor;

/// 1 at the first maximum of each lane along `axis`, 0 elsewhere (ONNX Hardmax, opset 13+).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Hardmax {
    pub axis: i64,
}

impl OpDef for Hardmax {
    const SPELLINGS: &'static [&'static str] = &["hardmax"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Hardmax {
            axis: attrs.int("axis", -1)?,
        })
    }
    fn spelling(&self) -> &'static str {
        "hardmax"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        require_numeric(inputs[0], "hardmax input")?;
        axis_or_err("axis", self.axis, inputs[0].rank())?;
        Ok(vec![inputs[0].clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Reduction
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        let ax = axis_or_err("axis", self.axis, x.shape().len())?;
        let mut a = x.to_f64();
        for mut lane in a.lanes_mut(Axis(ax)) {
            // NaN never wins (`>` is false for it), so the first non-NaN maximum does.
            let mut best: Option<(usize, f64)> = None;
            for (i, &v) in lane.iter().enumerate() {
                if best.is_none_or(|(_, b)| v > b) && !v.is_nan() {
                    best = Some((i, v));
                }
            }
            lane.fill(0.0);
            if let Some((i, _)) = best {
                lane[i] = 1.0;
            }
        }
        Ok(vec![Tensor::from_f64(x.dtype(), a)])
    }
}

/// Local response normalisation over channels of `x [N, C, ...]`:
/// `y = x / (bias + alpha / size * sum(x^2 over the channel window))^beta`,
/// the window covering channels `c - floor((size-1)/2) ..= c + ceil((size-1)/2)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lrn {
    pub size: i64,
    pub alpha: F64,
    pub beta: F64,
    pub bias: F64,
}

impl Lrn {
    pub fn new(size: i64, alpha: f64, beta: f64, bias: f64) -> Lrn {
        Lrn {
            size,
            alpha: F64(alpha),
            beta: F64(beta),
            bias: F64(bias),
        }
    }
}

impl OpDef for Lrn {
    const SPELLINGS: &'static [&'static str] = &["lrn"];

    fn parse(_spelling: &str, attrs: &mut AttrReader) -> Result<Self, AttrError> {
        let size = attrs.req_int("size")?;
        if size < 1 {
            return Err(AttrError {
                attr: "size".into(),
                msg: format!("must be >= 1, found {size}"),
            });
        }
        Ok(Lrn::new(
            size,
            attrs.float("alpha", 1e-4)?,
            attrs.float("beta", 0.75)?,
            attrs.float("bias", 1.0)?,
        ))
    }
    fn spelling(&self) -> &'static str {
        "lrn"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("size", self.size);
        w.float("alpha", self.alpha.0);
        w.float("beta", self.beta.0);
        w.float("bias", self.bias.0);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        require_float(inputs[0], "lrn input")?;
        if self.size < 1 {
            return crate::op::attr_err("size", format!("must be >= 1, found {}", self.size));
        }
        if inputs[0].rank() < 2 {
            return shape_err(format!(
                "lrn input must be [N, C, ...], found {}",
                inputs[0].shape
            ));
        }
        Ok(vec![inputs[0].clone()])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        let dims = x.shape().to_vec();
        if dims.len() < 2 || self.size < 1 {
            return Err(OpError::Eval("lrn needs [N, C, ...] and size >= 1".into()));
        }
        let a = x.to_f64();
        let (n, c) = (dims[0], dims[1]);
        let inner: usize = dims[2..].iter().product();
        let flat: Vec<f64> = a.iter().copied().collect();
        let lo = (self.size - 1) / 2;
        let hi = self.size - 1 - lo;
        let k = self.alpha.0 / self.size as f64;
        let mut out = vec![0.0; flat.len()];
        for ni in 0..n {
            for ci in 0..c {
                let c0 = (ci as i64 - lo).max(0) as usize;
                let c1 = ((ci as i64 + hi) as usize).min(c - 1);
                for p in 0..inner {
                    let sq: f64 = (c0..=c1)
                        .map(|cc| flat[(ni * c + cc) * inner + p].powi(2))
                        .sum();
                    let idx = (ni * c + ci) * inner + p;
                    out[idx] = flat[idx] / (self.bias.0 + k * sq).powf(self.beta.0);
                }
            }
        }
        let arr =
            ArrayD::from_shape_vec(IxDyn(&dims), out).map_err(|e| OpError::Eval(e.to_string()))?;
        Ok(vec![Tensor::from_f64(x.dtype(), arr)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::roundtrip;
    use crate::tensor::allclose;

    fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    #[test]
    fn hardmax_first_max() {
        let x = f64t(&[2, 3], &[1., 3., 3., -1., -5., -2.]);
        let y = Hardmax { axis: -1 }.eval(&[&x]).unwrap().remove(0);
        allclose(&y, &f64t(&[2, 3], &[0., 1., 0., 1., 0., 0.]), 0.0, 0.0).unwrap();
        let y = Hardmax { axis: 0 }.eval(&[&x]).unwrap().remove(0);
        allclose(&y, &f64t(&[2, 3], &[1., 1., 1., 0., 0., 0.]), 0.0, 0.0).unwrap();
        assert!(Hardmax { axis: 2 }.infer(&[&x.ty()]).is_err());
    }

    #[test]
    fn lrn_by_hand() {
        // Two channels, size 2: channel 0 sums channels 0..=1, channel 1 only itself.
        // alpha 2, beta 1, bias 1: y0 = 1 / (1 + 1*(1+4)) = 1/6, y1 = 2 / (1 + 4) = 0.4.
        let x = f64t(&[1, 2, 1], &[1., 2.]);
        let op = Lrn::new(2, 2.0, 1.0, 1.0);
        let y = op.eval(&[&x]).unwrap().remove(0);
        allclose(&y, &f64t(&[1, 2, 1], &[1. / 6., 0.4]), 0.0, 1e-12).unwrap();
        assert_eq!(op.infer(&[&x.ty()]).unwrap()[0], x.ty());
        let v = f64t(&[2], &[1., 2.]);
        assert!(matches!(op.infer(&[&v.ty()]), Err(OpError::Shape(_))));
    }

    #[test]
    fn attrs_roundtrip() {
        roundtrip(&Hardmax { axis: 1 });
        roundtrip(&Lrn::new(3, 1e-4, 0.75, 2.0));
        let mut r = AttrReader::default();
        assert!(Lrn::parse("lrn", &mut r).is_err(), "size is required");
    }
}
