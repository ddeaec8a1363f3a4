//! Spectral ops: `dft` (a discrete Fourier transform along one axis) and
//! `stft` (windowed transforms of overlapping frames).
//!
//! Complex tensors follow ONNX: a trailing dimension of 2 holds (real,
//! imaginary); a trailing 1 is a real signal. The transforms are computed
//! directly from the definition in f64 (exact up to rounding, O(n²) per line).

use std::f64::consts::PI;

use ndarray::{ArrayD, Axis, IxDyn, Zip};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::op::{attr_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::{concrete, require_float};
use crate::shape::TensorType;
use crate::tensor::Tensor;

/// Split `[..., 1|2]` into real and imaginary arrays of shape `[...]`.
fn split_complex(t: &Tensor) -> OpResult<(ArrayD<f64>, ArrayD<f64>)> {
    let a = t.to_f64();
    let last = a.ndim() - 1;
    let re = a.index_axis(Axis(last), 0).to_owned();
    let im = if a.shape()[last] == 2 {
        a.index_axis(Axis(last), 1).to_owned()
    } else {
        ArrayD::zeros(re.raw_dim())
    };
    Ok((re, im))
}

/// Join real (and imaginary, if `complex`) arrays into `[..., 1|2]`.
fn join_complex(re: ArrayD<f64>, im: ArrayD<f64>, complex: bool) -> OpResult<ArrayD<f64>> {
    let last = Axis(re.ndim());
    let parts = if complex {
        vec![re.insert_axis(last), im.insert_axis(last)]
    } else {
        vec![re.insert_axis(last)]
    };
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(views[0].ndim() - 1), &views)
        .map_err(|e| OpError::Eval(e.to_string()))
}

/// `out[k] = sum_t x[t] exp(sign * 2πi k t / n)` for `k < out.len()`, with
/// `x` zero-padded or truncated to `n`.
fn dft_line(re: &[f64], im: &[f64], n: usize, sign: f64, ore: &mut [f64], oim: &mut [f64]) {
    let m = re.len().min(n);
    for k in 0..ore.len() {
        let (mut sr, mut si) = (0.0, 0.0);
        for t in 0..m {
            // Reduce k*t mod n first so the angle stays small and exact.
            let ang = sign * 2.0 * PI * ((k * t) % n) as f64 / n as f64;
            let (s, c) = ang.sin_cos();
            sr += re[t] * c - im[t] * s;
            si += re[t] * s + im[t] * c;
        }
        ore[k] = sr;
        oim[k] = si;
    }
}

/// `dft(x [..., 1|2])`: transform along `axis` (a signal axis, not the last).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dft {
    pub axis: i64,
    /// Transform length; the input is zero-padded or truncated to it.
    pub length: i64,
    pub inverse: bool,
    /// Forward: keep bins `0..=length/2`. Inverse: the input holds those
    /// bins of a Hermitian spectrum and the output is real.
    pub onesided: bool,
}

impl Dft {
    fn plan(&self, x: &TensorType) -> OpResult<(usize, usize, TensorType)> {
        require_float(x, "dft input")?;
        let dims = concrete(x, "dft input")?;
        let r = dims.len();
        if r < 2 || !(1..=2).contains(&dims[r - 1]) {
            return shape_err(format!("dft input must be [..., 1 or 2], found {x}"));
        }
        let axis = usize::try_from(self.axis)
            .ok()
            .filter(|&a| a < r - 1)
            .map_or_else(|| attr_err("axis", format!("must be in 0..{}", r - 1)), Ok)?;
        let n = usize::try_from(self.length)
            .ok()
            .filter(|&n| n > 0)
            .map_or_else(|| attr_err("length", "must be positive"), Ok)?;
        let mut out = dims.clone();
        let (len, last) = match (self.inverse, self.onesided) {
            (false, true) => (n / 2 + 1, 2),
            (true, true) => (n, 1),
            _ => (n, 2),
        };
        if self.inverse && self.onesided && dims[r - 1] != 2 {
            return shape_err("an inverse one-sided dft needs a complex input");
        }
        out[axis] = len;
        out[r - 1] = last;
        Ok((axis, n, TensorType::concrete(x.dtype, &out)))
    }
}

impl OpDef for Dft {
    const SPELLINGS: &'static [&'static str] = &["dft"];

    fn parse(_spelling: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Dft {
            axis: a.req_int("axis")?,
            length: a.req_int("length")?,
            inverse: a.int("inverse", 0)? != 0,
            onesided: a.int("onesided", 0)? != 0,
        })
    }
    fn spelling(&self) -> &'static str {
        "dft"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("axis", self.axis);
        w.int("length", self.length);
        w.int("inverse", self.inverse as i64);
        w.int("onesided", self.onesided as i64);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        Ok(vec![self.plan(inputs[0])?.2])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        let (axis, n, ty) = self.plan(&inputs[0].ty())?;
        let (mut re, mut im) = split_complex(inputs[0])?;
        let out_dims = concrete(&ty, "dft output")?;
        let mut sig = out_dims[..out_dims.len() - 1].to_vec();
        let len = sig[axis];
        if self.inverse && self.onesided {
            // Rebuild the full Hermitian spectrum from bins 0..=n/2.
            let half = n / 2 + 1;
            let mut dims = re.shape().to_vec();
            dims[axis] = n;
            let (mut fre, mut fim) = (ArrayD::zeros(IxDyn(&dims)), ArrayD::zeros(IxDyn(&dims)));
            Zip::from(fre.lanes_mut(Axis(axis)))
                .and(fim.lanes_mut(Axis(axis)))
                .and(re.lanes(Axis(axis)))
                .and(im.lanes(Axis(axis)))
                .for_each(|mut fr, mut fi, r, i| {
                    let have = r.len().min(half);
                    for k in 0..n {
                        let (src, conj) = if k < half { (k, false) } else { (n - k, true) };
                        if src < have {
                            fr[k] = r[src];
                            fi[k] = if conj { -i[src] } else { i[src] };
                        }
                    }
                });
            re = fre;
            im = fim;
        }
        sig[axis] = len;
        let (mut ore, mut oim) = (ArrayD::zeros(IxDyn(&sig)), ArrayD::zeros(IxDyn(&sig)));
        let sign = if self.inverse { 1.0 } else { -1.0 };
        let scale = if self.inverse { 1.0 / n as f64 } else { 1.0 };
        Zip::from(ore.lanes_mut(Axis(axis)))
            .and(oim.lanes_mut(Axis(axis)))
            .and(re.lanes(Axis(axis)))
            .and(im.lanes(Axis(axis)))
            .for_each(|mut or, mut oi, r, i| {
                let (r, i) = (r.to_vec(), i.to_vec());
                let (mut br, mut bi) = (vec![0.0; or.len()], vec![0.0; or.len()]);
                dft_line(&r, &i, n, sign, &mut br, &mut bi);
                for k in 0..or.len() {
                    or[k] = br[k] * scale;
                    oi[k] = bi[k] * scale;
                }
            });
        let complex = !(self.inverse && self.onesided);
        let y = join_complex(ore, oim, complex)?;
        Ok(vec![Tensor::from_f64(ty.dtype, y)])
    }
}

/// `stft(signal [batch, len, 1|2], window [frame]) -> [batch, frames, bins, 2]`:
/// the DFT of each windowed frame, frames `step` apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stft {
    pub step: i64,
    pub onesided: bool,
}

impl Stft {
    fn plan(&self, s: &TensorType, w: &TensorType) -> OpResult<(usize, TensorType)> {
        require_float(s, "stft signal")?;
        if w.dtype != s.dtype {
            return crate::op::dtype_err(format!("stft window must be {}, found {w}", s.dtype));
        }
        let sd = concrete(s, "stft signal")?;
        let wd = concrete(w, "stft window")?;
        if sd.len() != 3 || !(1..=2).contains(&sd[2]) || wd.len() != 1 || wd[0] == 0 {
            return shape_err(format!(
                "stft needs signal [batch, len, 1 or 2] and a non-empty window [frame], found {s} and {w}"
            ));
        }
        let step = usize::try_from(self.step)
            .ok()
            .filter(|&s| s > 0)
            .map_or_else(|| attr_err("step", "must be positive"), Ok)?;
        let frame = wd[0];
        if frame > sd[1] {
            return shape_err(format!(
                "stft frame {frame} is longer than the signal {}",
                sd[1]
            ));
        }
        let frames = 1 + (sd[1] - frame) / step;
        let bins = if self.onesided { frame / 2 + 1 } else { frame };
        Ok((
            step,
            TensorType::concrete(s.dtype, &[sd[0], frames, bins, 2]),
        ))
    }
}

impl OpDef for Stft {
    const SPELLINGS: &'static [&'static str] = &["stft"];

    fn parse(_spelling: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Stft {
            step: a.req_int("step")?,
            onesided: a.int("onesided", 1)? != 0,
        })
    }
    fn spelling(&self) -> &'static str {
        "stft"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.int("step", self.step);
        w.int("onesided", self.onesided as i64);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        Ok(vec![self.plan(inputs[0], inputs[1])?.1])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 2)?;
        let (step, ty) = self.plan(&inputs[0].ty(), &inputs[1].ty())?;
        let dims = concrete(&ty, "stft output")?;
        let (batch, frames, bins) = (dims[0], dims[1], dims[2]);
        let (re, im) = split_complex(inputs[0])?;
        let w = inputs[1].values_f64();
        let frame = w.len();
        let mut out = Vec::with_capacity(batch * frames * bins * 2);
        let (mut br, mut bi) = (vec![0.0; bins], vec![0.0; bins]);
        for b in 0..batch {
            for f in 0..frames {
                let at = |a: &ArrayD<f64>, t: usize| a[[b, f * step + t]];
                let fr: Vec<f64> = (0..frame).map(|t| at(&re, t) * w[t]).collect();
                let fi: Vec<f64> = (0..frame).map(|t| at(&im, t) * w[t]).collect();
                dft_line(&fr, &fi, frame, -1.0, &mut br, &mut bi);
                for k in 0..bins {
                    out.push(br[k]);
                    out.push(bi[k]);
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

    fn t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::from_vec_f64(DType::F64, shape, v.to_vec()).unwrap()
    }
    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn dft_of_a_real_signal_and_back() {
        // [1, 2, 3, 4]: X = [10, -2+2i, -2, -2-2i].
        let x = t(&[1, 4, 1], &[1., 2., 3., 4.]);
        let fwd = Dft {
            axis: 1,
            length: 4,
            inverse: false,
            onesided: false,
        };
        let y = fwd.eval(&[&x]).unwrap().remove(0);
        assert_eq!(y.shape(), [1, 4, 2]);
        close(&y.values_f64(), &[10., 0., -2., 2., -2., 0., -2., -2.]);
        let inv = Dft {
            inverse: true,
            ..fwd.clone()
        };
        close(
            &inv.eval(&[&y]).unwrap()[0].values_f64(),
            &[1., 0., 2., 0., 3., 0., 4., 0.],
        );
        // One-sided forward keeps bins 0..=2; the inverse one-sided rebuilds the signal.
        let rfft = Dft {
            onesided: true,
            ..fwd.clone()
        };
        let half = rfft.eval(&[&x]).unwrap().remove(0);
        close(&half.values_f64(), &[10., 0., -2., 2., -2., 0.]);
        let irfft = Dft {
            inverse: true,
            onesided: true,
            ..fwd
        };
        let back = irfft.eval(&[&half]).unwrap().remove(0);
        assert_eq!(back.shape(), [1, 4, 1]);
        close(&back.values_f64(), &[1., 2., 3., 4.]);
        roundtrip(&irfft);
    }

    #[test]
    fn stft_frames_and_window() {
        // Frames [1, 2] and [3, 4] (step 2), window [1, 0]: each bin holds the first sample.
        let s = t(&[1, 4, 1], &[1., 2., 3., 4.]);
        let w = t(&[2], &[1., 0.]);
        let op = Stft {
            step: 2,
            onesided: true,
        };
        let y = op.eval(&[&s, &w]).unwrap().remove(0);
        assert_eq!(y.shape(), [1, 2, 2, 2]);
        close(&y.values_f64(), &[1., 0., 1., 0., 3., 0., 3., 0.]);
        roundtrip(&op);
    }

    #[test]
    fn errors() {
        let x = TensorType::concrete(DType::F32, &[1, 4, 3]);
        let op = Dft {
            axis: 1,
            length: 4,
            inverse: false,
            onesided: false,
        };
        assert!(matches!(op.infer(&[&x]), Err(OpError::Shape(_))));
        let x = TensorType::concrete(DType::F32, &[1, 4, 1]);
        let bad_axis = Dft {
            axis: 2,
            ..op.clone()
        };
        assert!(matches!(bad_axis.infer(&[&x]), Err(OpError::Attr(_))));
        let bad_len = Dft { length: 0, ..op };
        assert!(matches!(bad_len.infer(&[&x]), Err(OpError::Attr(_))));
        let st = Stft {
            step: 1,
            onesided: true,
        };
        let w = TensorType::concrete(DType::F32, &[8]);
        assert!(matches!(st.infer(&[&x, &w]), Err(OpError::Shape(_))));
    }
}
