//! `resize`: nearest, linear and cubic interpolation of any axes, with ONNX's
//! coordinate transformations, antialiasing and crop-and-resize.
//!
//! The op carries everything static: the output size of every axis and the
//! scale each axis's coordinate transform uses (ONNX passes the given scales
//! through; when sizes are given the scale is `out / in`). Interpolation is
//! separable, so it runs one axis at a time, as the ONNX reference does.

use ndarray::{ArrayD, Axis, IxDyn, Zip};

use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::op::{attr_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::require_numeric;
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($v:ident => $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($v),* }
        impl $name {
            pub fn spelling(self) -> &'static str {
                match self { $($name::$v => $s),* }
            }
            pub fn from_spelling(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$v),)* _ => None }
            }
            const ALL: &'static [&'static str] = &[$($s),*];
        }
    };
}

str_enum!(
    /// Interpolation kernel.
    ResizeMode { Nearest => "nearest", Linear => "linear", Cubic => "cubic" }
);
str_enum!(
    /// How an output index maps back to an input coordinate.
    CoordMode {
        HalfPixel => "half_pixel",
        HalfPixelSymmetric => "half_pixel_symmetric",
        PytorchHalfPixel => "pytorch_half_pixel",
        AlignCorners => "align_corners",
        Asymmetric => "asymmetric",
        TfCropAndResize => "tf_crop_and_resize",
    }
);
str_enum!(
    /// How `nearest` rounds a fractional coordinate.
    NearestMode {
        RoundPreferFloor => "round_prefer_floor",
        RoundPreferCeil => "round_prefer_ceil",
        Floor => "floor",
        Ceil => "ceil",
    }
);

fn read_enum<T>(
    a: &mut AttrReader,
    name: &str,
    default: &str,
    parse: fn(&str) -> Option<T>,
    all: &[&str],
) -> Result<T, AttrError> {
    let s = a.str(name, default)?;
    parse(&s).ok_or_else(|| AttrError {
        attr: name.into(),
        msg: format!("expected one of {}, found {s:?}", all.join(", ")),
    })
}

/// `resize(x)`: the output has shape `sizes`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resize {
    pub mode: ResizeMode,
    pub coord: CoordMode,
    pub nearest: NearestMode,
    pub cubic_coeff_a: F64,
    pub exclude_outside: bool,
    pub extrapolation_value: F64,
    pub antialias: bool,
    /// Output size of every axis.
    pub sizes: Vec<i64>,
    /// The scale of every axis's coordinate transform.
    pub scales: Vec<F64>,
    /// Crop box for `tf_crop_and_resize`: every start, then every end, as
    /// fractions of the input; empty means the whole input.
    pub roi: Vec<F64>,
}

impl Resize {
    /// A resize to `sizes` with the given per-axis scales; other attributes
    /// take ONNX's defaults.
    pub fn new(mode: ResizeMode, sizes: Vec<i64>, scales: Vec<f64>) -> Resize {
        Resize {
            mode,
            coord: CoordMode::HalfPixel,
            nearest: NearestMode::RoundPreferFloor,
            cubic_coeff_a: F64(-0.75),
            exclude_outside: false,
            extrapolation_value: F64(0.0),
            antialias: false,
            sizes,
            scales: scales.into_iter().map(F64).collect(),
            roi: vec![],
        }
    }

    fn out_dims(&self, rank: usize) -> OpResult<Vec<usize>> {
        if self.sizes.len() != rank {
            return attr_err(
                "sizes",
                format!(
                    "expected {rank} values (one per axis), found {}",
                    self.sizes.len()
                ),
            );
        }
        if self.scales.len() != rank {
            return attr_err(
                "scales",
                format!(
                    "expected {rank} values (one per axis), found {}",
                    self.scales.len()
                ),
            );
        }
        if !self.roi.is_empty() && self.roi.len() != 2 * rank {
            return attr_err(
                "roi",
                format!(
                    "expected {} values or none, found {}",
                    2 * rank,
                    self.roi.len()
                ),
            );
        }
        if let Some(s) = self.scales.iter().find(|s| !(s.0 > 0.0 && s.0.is_finite())) {
            return attr_err(
                "scales",
                format!("must be positive and finite, found {}", s.0),
            );
        }
        self.sizes
            .iter()
            .map(|&s| {
                usize::try_from(s).or_else(|_| attr_err("sizes", format!("negative size {s}")))
            })
            .collect()
    }

    /// The kernel weights for fractional position `ratio` in (0, 1].
    fn coeffs(&self, ratio: f64, scale: f64) -> Vec<f64> {
        let a = self.cubic_coeff_a.0;
        match self.mode {
            ResizeMode::Nearest => {
                let up = if ratio == 1.0 {
                    true
                } else {
                    match self.nearest {
                        NearestMode::RoundPreferFloor => ratio > 0.5,
                        NearestMode::RoundPreferCeil => ratio >= 0.5,
                        NearestMode::Floor => false,
                        NearestMode::Ceil => true,
                    }
                };
                if up {
                    vec![0.0, 1.0]
                } else {
                    vec![1.0, 0.0]
                }
            }
            ResizeMode::Linear if self.antialias => {
                let s = scale.min(1.0);
                let start = (-1.0 / s).floor() as i64 + 1;
                let footprint = 2 - 2 * start;
                let c: Vec<f64> = (start..start + footprint)
                    .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
                    .collect();
                normalised(c)
            }
            ResizeMode::Linear => vec![1.0 - ratio, ratio],
            ResizeMode::Cubic if self.antialias => {
                let s = scale.min(1.0);
                let start = (-2.0 / s).floor() as i64 + 1;
                let c: Vec<f64> = (start..2 - start)
                    .map(|i| cubic(a, s * (i as f64 - ratio)))
                    .collect();
                normalised(c)
            }
            ResizeMode::Cubic => vec![
                cubic(a, ratio + 1.0),
                cubic(a, ratio),
                cubic(a, 1.0 - ratio),
                cubic(a, 2.0 - ratio),
            ],
        }
    }

    /// Where output index `y` of an axis reads: `None` for a crop-and-resize
    /// extrapolation, else (input index, weight) pairs.
    fn taps(&self, axis: usize, y: usize, len: usize, out: usize) -> Option<Vec<(usize, f64)>> {
        let scale = self.scales[axis].0;
        let (inw, yf) = (len as f64, y as f64);
        let outw = scale * inw;
        let x = match self.coord {
            CoordMode::AlignCorners if outw == 1.0 => 0.0,
            CoordMode::AlignCorners => yf * (inw - 1.0) / (outw - 1.0),
            CoordMode::Asymmetric => yf / scale,
            CoordMode::PytorchHalfPixel if outw == 1.0 => -0.5,
            CoordMode::PytorchHalfPixel | CoordMode::HalfPixel => (yf + 0.5) / scale - 0.5,
            CoordMode::HalfPixelSymmetric => {
                let offset = inw / 2.0 * (1.0 - out as f64 / outw);
                offset + (yf + 0.5) / scale - 0.5
            }
            CoordMode::TfCropAndResize => {
                let r = self.roi.len() / 2;
                let (r0, r1) = if r == 0 {
                    (0.0, 1.0)
                } else {
                    (self.roi[axis].0, self.roi[r + axis].0)
                };
                let x = if outw == 1.0 {
                    (r1 - r0) * (inw - 1.0) / 2.0
                } else {
                    yf * (r1 - r0) * (inw - 1.0) / (outw - 1.0)
                } + r0 * (inw - 1.0);
                if x < 0.0 || x > inw - 1.0 {
                    return None;
                }
                x
            }
        };
        let fl = x.floor();
        let ratio = if x == fl { 1.0 } else { x - fl };
        let mut c = self.coeffs(ratio, scale);
        let n = c.len() as i64;
        // The n inputs nearest to x, ties to the left, as the reference picks them.
        let pad = (n + 1) / 2;
        let xp = x + pad as f64;
        let p = xp.floor();
        let frac = xp - p;
        let off = if n % 2 == 0 {
            if frac == 0.0 {
                -(n / 2)
            } else {
                -(n / 2) + 1
            }
        } else if frac <= 0.5 {
            -((n - 1) / 2)
        } else {
            -((n - 1) / 2) + 1
        };
        let start = p as i64 + off - pad;
        let idx: Vec<i64> = (start..start + n).collect();
        if self.exclude_outside {
            for (w, &i) in c.iter_mut().zip(&idx) {
                if i < 0 || i >= len as i64 {
                    *w = 0.0;
                }
            }
            let sum: f64 = c.iter().sum();
            let sum = if sum == 0.0 { 1.0 } else { sum };
            c.iter_mut().for_each(|w| *w /= sum);
        }
        let last = len as i64 - 1;
        Some(
            idx.into_iter()
                .zip(c)
                .map(|(i, w)| (i.clamp(0, last) as usize, w))
                .collect(),
        )
    }

    fn resize_axis(&self, x: &ArrayD<f64>, axis: usize, out: usize) -> OpResult<ArrayD<f64>> {
        let len = x.shape()[axis];
        let mut dims = x.shape().to_vec();
        dims[axis] = out;
        let mut y = ArrayD::<f64>::zeros(IxDyn(&dims));
        if out == 0 || y.is_empty() {
            return Ok(y);
        }
        if len == 0 {
            return Err(OpError::Eval(format!(
                "resize: cannot interpolate an empty axis {axis} to {out} elements"
            )));
        }
        let taps: Vec<Option<Vec<(usize, f64)>>> =
            (0..out).map(|o| self.taps(axis, o, len, out)).collect();
        let ext = self.extrapolation_value.0;
        Zip::from(y.lanes_mut(Axis(axis)))
            .and(x.lanes(Axis(axis)))
            .for_each(|mut yl, xl| {
                for (o, t) in taps.iter().enumerate() {
                    yl[o] = match t {
                        None => ext,
                        Some(t) => t.iter().map(|&(i, w)| w * xl[i]).sum(),
                    };
                }
            });
        Ok(y)
    }
}

/// The Keys cubic convolution kernel with parameter `a`.
fn cubic(a: f64, x: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

fn normalised(mut c: Vec<f64>) -> Vec<f64> {
    let sum: f64 = c.iter().sum();
    c.iter_mut().for_each(|w| *w /= sum);
    c
}

fn is_close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

impl OpDef for Resize {
    const SPELLINGS: &'static [&'static str] = &["resize"];

    fn parse(_spelling: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        let floats = |a: &mut AttrReader, n: &str| -> Result<Vec<F64>, AttrError> {
            Ok(a.opt_floats(n)?
                .unwrap_or_default()
                .into_iter()
                .map(F64)
                .collect())
        };
        Ok(Resize {
            mode: read_enum(
                a,
                "mode",
                "nearest",
                ResizeMode::from_spelling,
                ResizeMode::ALL,
            )?,
            coord: read_enum(
                a,
                "coordinate_transformation_mode",
                "half_pixel",
                CoordMode::from_spelling,
                CoordMode::ALL,
            )?,
            nearest: read_enum(
                a,
                "nearest_mode",
                "round_prefer_floor",
                NearestMode::from_spelling,
                NearestMode::ALL,
            )?,
            cubic_coeff_a: F64(a.float("cubic_coeff_a", -0.75)?),
            exclude_outside: a.int("exclude_outside", 0)? != 0,
            extrapolation_value: F64(a.float("extrapolation_value", 0.0)?),
            antialias: a.int("antialias", 0)? != 0,
            sizes: a.req_ints("sizes")?,
            scales: floats(a, "scales")?,
            roi: floats(a, "roi")?,
        })
    }
    fn spelling(&self) -> &'static str {
        "resize"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        let f = |v: &[F64]| v.iter().map(|x| x.0).collect::<Vec<_>>();
        w.str("mode", self.mode.spelling());
        w.str("coordinate_transformation_mode", self.coord.spelling());
        w.str("nearest_mode", self.nearest.spelling());
        w.float("cubic_coeff_a", self.cubic_coeff_a.0);
        w.int("exclude_outside", self.exclude_outside as i64);
        w.float("extrapolation_value", self.extrapolation_value.0);
        w.int("antialias", self.antialias as i64);
        w.ints("sizes", &self.sizes);
        w.floats("scales", &f(&self.scales));
        w.floats("roi", &f(&self.roi));
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        require_numeric(x, "resize input")?;
        let out = self.out_dims(x.rank())?;
        for (i, (d, &o)) in x.shape.dims().iter().zip(&out).enumerate() {
            if *d == Dim::Known(0) && o > 0 {
                return shape_err(format!("resize: axis {i} is empty but the output is not"));
            }
        }
        if self.antialias && self.mode == ResizeMode::Nearest {
            return attr_err("antialias", "applies to linear and cubic modes only");
        }
        let dims: Vec<Dim> = out.into_iter().map(Dim::Known).collect();
        Ok(vec![x.with_shape(Shape::from(dims))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        expect_arity(inputs, 1)?;
        let ty = self.infer(&[&inputs[0].ty()])?.remove(0);
        let out = self.out_dims(inputs[0].shape().len())?;
        let r = out.len();
        let mut y = inputs[0].to_f64();
        for (axis, &o) in out.iter().enumerate() {
            let roi_default = self.roi.is_empty()
                || (is_close(self.roi[axis].0, 0.0) && is_close(self.roi[r + axis].0, 1.0));
            if is_close(self.scales[axis].0, 1.0) && o == y.shape()[axis] && roi_default {
                continue; // identity along this axis, as in the reference
            }
            y = self.resize_axis(&y, axis, o)?;
        }
        if !ty.dtype.is_float() {
            y.mapv_inplace(f64::round_ties_even);
        }
        Ok(vec![Tensor::from_f64(ty.dtype, y)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::ops::test_util::roundtrip;

    fn t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::from_vec_f64(DType::F32, shape, v.to_vec()).unwrap()
    }
    fn run(op: &Resize, x: &Tensor) -> Vec<f64> {
        let y = op.eval(&[x]).unwrap().remove(0);
        assert_eq!(y.ty(), op.infer(&[&x.ty()]).unwrap()[0]);
        y.values_f64()
    }

    #[test]
    fn nearest_upsample_doubles_each_pixel() {
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let op = Resize::new(ResizeMode::Nearest, vec![1, 1, 4, 4], vec![1., 1., 2., 2.]);
        let want = [
            1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.,
        ];
        assert_eq!(run(&op, &x), want);
    }

    #[test]
    fn linear_half_pixel_and_align_corners() {
        let x = t(&[1, 4], &[0., 1., 2., 3.]);
        // Half-pixel downsample by 2: centres at 0.5 and 2.5.
        let op = Resize::new(ResizeMode::Linear, vec![1, 2], vec![1., 0.5]);
        assert_eq!(run(&op, &x), [0.5, 2.5]);
        // Align corners up to 7 samples: steps of 0.5.
        let mut ac = Resize::new(ResizeMode::Linear, vec![1, 7], vec![1., 1.75]);
        ac.coord = CoordMode::AlignCorners;
        assert_eq!(run(&ac, &x), [0., 0.5, 1., 1.5, 2., 2.5, 3.]);
        // Half-pixel upsampling clamps at the edges.
        let up = Resize::new(ResizeMode::Linear, vec![1, 8], vec![1., 2.]);
        assert_eq!(run(&up, &x), [0., 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.]);
    }

    #[test]
    fn cubic_reproduces_samples_and_lines() {
        // The Keys kernel interpolates: at integer coordinates it returns the input.
        let x = t(&[5], &[3., -1., 4., 1., 5.]);
        let mut op = Resize::new(ResizeMode::Cubic, vec![5], vec![1.]);
        op.coord = CoordMode::Asymmetric;
        op.scales = vec![F64(1.0 + 1e-12)];
        let y = run(&op, &x);
        for (a, b) in y.iter().zip([3., -1., 4., 1., 5.]) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
        // A line stays a line away from the edges (weights sum to 1, odd moments vanish).
        let line = t(&[6], &[0., 1., 2., 3., 4., 5.]);
        let mut up = Resize::new(ResizeMode::Cubic, vec![12], vec![2.]);
        up.coord = CoordMode::Asymmetric;
        let y = run(&up, &line);
        assert!(
            (y[5] - 2.5).abs() < 1e-6 && (y[4] - 2.0).abs() < 1e-6,
            "{y:?}"
        );
    }

    #[test]
    fn nearest_modes_and_crop() {
        let x = t(&[4], &[10., 20., 30., 40.]);
        let mut op = Resize::new(ResizeMode::Nearest, vec![8], vec![2.]);
        op.coord = CoordMode::Asymmetric;
        op.nearest = NearestMode::Ceil;
        assert_eq!(run(&op, &x), [10., 20., 20., 30., 30., 40., 40., 40.]);
        op.nearest = NearestMode::Floor;
        assert_eq!(run(&op, &x), [10., 10., 20., 20., 30., 30., 40., 40.]);
        // Crop [0.5, 1.5] of the input: coordinates 1.5, 3 and 4.5, the last outside.
        let mut crop = Resize::new(ResizeMode::Linear, vec![3], vec![0.75]);
        crop.coord = CoordMode::TfCropAndResize;
        crop.roi = vec![F64(0.5), F64(1.5)];
        crop.extrapolation_value = F64(-1.0);
        assert_eq!(run(&crop, &x), [25., 40., -1.]);
    }

    #[test]
    fn antialias_widens_the_kernel() {
        let x = t(&[4], &[0., 0., 4., 0.]);
        let mut op = Resize::new(ResizeMode::Linear, vec![2], vec![0.5]);
        assert_eq!(run(&op, &x), [0., 2.]);
        op.antialias = true;
        // Tent of half-width 2 at 0.5 and 2.5: weights 1/8, 3/8, 3/8, 1/8.
        assert_eq!(run(&op, &x), [0.5, 1.5]);
    }

    #[test]
    fn integer_inputs_round() {
        let x = Tensor::from_vec_f64(DType::U8, &[2], vec![0., 3.]).unwrap();
        let mut op = Resize::new(ResizeMode::Linear, vec![3], vec![1.5]);
        op.coord = CoordMode::AlignCorners;
        let y = op.eval(&[&x]).unwrap().remove(0);
        assert_eq!((y.dtype(), y.values_f64()), (DType::U8, vec![0., 2., 3.]));
    }

    #[test]
    fn errors_and_round_trip() {
        let x = TensorType::concrete(DType::F32, &[1, 4]);
        let op = Resize::new(ResizeMode::Linear, vec![1, 2], vec![1., 0.5]);
        roundtrip(&op);
        let mut full = op.clone();
        full.coord = CoordMode::TfCropAndResize;
        full.roi = vec![F64(0.), F64(0.1), F64(1.), F64(0.9)];
        full.antialias = true;
        roundtrip(&full);
        let bad = |op: Resize| match op.infer(&[&x]) {
            Err(OpError::Attr(a)) => a.attr,
            other => panic!("expected an attribute error, got {other:?}"),
        };
        assert_eq!(
            bad(Resize {
                sizes: vec![2],
                ..op.clone()
            }),
            "sizes"
        );
        assert_eq!(
            bad(Resize {
                sizes: vec![1, -2],
                ..op.clone()
            }),
            "sizes"
        );
        assert_eq!(
            bad(Resize {
                scales: vec![F64(1.), F64(0.)],
                ..op.clone()
            }),
            "scales"
        );
        assert_eq!(
            bad(Resize {
                roi: vec![F64(0.)],
                ..op.clone()
            }),
            "roi"
        );
        let mut aa = Resize::new(ResizeMode::Nearest, vec![1, 2], vec![1., 0.5]);
        aa.antialias = true;
        assert_eq!(bad(aa), "antialias");
        let s = TensorType::concrete(DType::Bool, &[1, 4]);
        assert!(matches!(op.infer(&[&s]), Err(OpError::DType(_))));
        assert!(matches!(op.infer(&[]), Err(OpError::Arity { .. })));
        let empty = TensorType::concrete(DType::F32, &[1, 0]);
        assert!(matches!(op.infer(&[&empty]), Err(OpError::Shape(_))));
        let attrs = vec![
            ("sizes".to_string(), crate::attr::AttrValue::Ints(vec![2])),
            (
                "mode".to_string(),
                crate::attr::AttrValue::Str("bilinear".into()),
            ),
        ];
        let e = Resize::parse("resize", &mut AttrReader::new(attrs)).unwrap_err();
        assert_eq!(e.attr, "mode");
    }
}
