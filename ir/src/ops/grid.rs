//! Sampling grids: `affine_grid` builds one from affine matrices, and
//! `grid_sample` reads an input at a grid's points (ONNX / PyTorch semantics,
//! any number of spatial dims).
//!
//! Grid coordinates are normalised to [-1, 1] and list the *last* spatial dim
//! first (x, then y, then z). With `align_corners` the extremes are the
//! centres of the corner pixels; without it, their outer edges.

use ndarray::{ArrayD, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::op::{attr_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult};
use crate::ops::{concrete, require_float};
use crate::shape::{Shape, TensorType};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleMode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaddingMode {
    Zeros,
    Border,
    Reflection,
}

const MODES: &[(SampleMode, &str)] = &[
    (SampleMode::Nearest, "nearest"),
    (SampleMode::Linear, "linear"),
    (SampleMode::Cubic, "cubic"),
];
const PADDINGS: &[(PaddingMode, &str)] = &[
    (PaddingMode::Zeros, "zeros"),
    (PaddingMode::Border, "border"),
    (PaddingMode::Reflection, "reflection"),
];

fn lookup<T: Copy + PartialEq>(
    table: &[(T, &str)],
    a: &mut AttrReader,
    name: &str,
    default: &str,
) -> Result<T, AttrError> {
    let s = a.str(name, default)?;
    table
        .iter()
        .find(|(_, n)| *n == s)
        .map(|(v, _)| *v)
        .ok_or_else(|| AttrError {
            attr: name.into(),
            msg: format!(
                "expected one of {}, found {s:?}",
                table.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
            ),
        })
}
fn name_of<T: Copy + PartialEq>(table: &[(T, &'static str)], v: T) -> &'static str {
    table.iter().find(|(k, _)| *k == v).map_or("", |(_, n)| n)
}

/// Normalised coordinate → pixel coordinate along an axis of `len` pixels.
fn denormalize(n: f64, len: usize, align: bool) -> f64 {
    let l = len as f64;
    if align {
        (n + 1.0) / 2.0 * (l - 1.0)
    } else {
        ((n + 1.0) * l - 1.0) / 2.0
    }
}

/// Reflect `x` into `[lo, hi]` by bouncing off the nearer border.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    let (dx, from_lo) = if x < lo {
        (lo - x, true)
    } else if x > hi {
        (x - hi, false)
    } else {
        return x;
    };
    let n = (dx / range).trunc();
    let r = dx - n * range;
    let even = n % 2.0 == 0.0;
    if even == from_lo {
        lo + r
    } else {
        hi - r
    }
}

fn keys_cubic(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let k = |x: f64| {
        let x = x.abs();
        if x <= 1.0 {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
        } else {
            0.0
        }
    };
    [k(t + 1.0), k(t), k(1.0 - t), k(2.0 - t)]
}

/// `grid_sample(x [N, C, D1..Dk], grid [N, O1..Ok, k]) -> [N, C, O1..Ok]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GridSample {
    pub mode: SampleMode,
    pub padding: PaddingMode,
    pub align_corners: bool,
}

impl GridSample {
    fn out_type(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity(inputs, 2)?;
        let (x, g) = (inputs[0], inputs[1]);
        require_float(x, "grid_sample input")?;
        require_float(g, "grid_sample grid")?;
        let k = x.rank().saturating_sub(2);
        if x.rank() < 3 || g.rank() != k + 2 {
            return shape_err(format!(
                "grid_sample needs x [N, C, spatial...] and grid [N, spatial..., {k}], found {x} and {g}"
            ));
        }
        let (xd, gd) = (x.shape.dims(), g.shape.dims());
        if xd[0] != gd[0] || gd[k + 1] != crate::shape::Dim::Known(k) {
            return shape_err(format!(
                "grid_sample grid must be [N, spatial..., {k}] matching x's N, found {g} for {x}"
            ));
        }
        let mut dims = xd[..2].to_vec();
        dims.extend_from_slice(&gd[1..=k]);
        Ok(x.with_shape(Shape::from(dims)))
    }

    /// The taps of one axis: (pixel index or None for a zero pad, weight).
    fn axis_taps(&self, n: f64, len: usize) -> Vec<(Option<usize>, f64)> {
        let (lo, hi) = if self.align_corners {
            (0.0, len as f64 - 1.0)
        } else {
            (-0.5, len as f64 - 0.5)
        };
        let mut x = denormalize(n, len, self.align_corners);
        if self.mode == SampleMode::Nearest {
            x = x.round_ties_even();
        }
        if x < lo || x > hi {
            match self.padding {
                PaddingMode::Border => x = x.clamp(0.0, len as f64 - 1.0),
                PaddingMode::Reflection => x = reflect(x, lo, hi),
                PaddingMode::Zeros => {}
            }
        }
        let pixel = |i: i64| -> Option<usize> {
            let last = len as i64 - 1;
            match self.padding {
                PaddingMode::Zeros => (0..=last).contains(&i).then_some(i as usize),
                PaddingMode::Border => Some(i.clamp(0, last) as usize),
                PaddingMode::Reflection => {
                    Some((reflect(i as f64, lo, hi) as i64).clamp(0, last) as usize)
                }
            }
        };
        match self.mode {
            SampleMode::Nearest => vec![(pixel(x as i64), 1.0)],
            SampleMode::Linear => {
                let x0 = x.floor();
                let t = x - x0;
                vec![(pixel(x0 as i64), 1.0 - t), (pixel(x0 as i64 + 1), t)]
            }
            SampleMode::Cubic => {
                let x0 = x.floor();
                let c = keys_cubic(x - x0);
                (0..4)
                    .map(|j| (pixel(x0 as i64 - 1 + j as i64), c[j]))
                    .collect()
            }
        }
    }
}

impl OpDef for GridSample {
    const SPELLINGS: &'static [&'static str] = &["grid_sample"];

    fn parse(_spelling: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(GridSample {
            mode: lookup(MODES, a, "mode", "linear")?,
            padding: lookup(PADDINGS, a, "padding_mode", "zeros")?,
            align_corners: a.int("align_corners", 0)? != 0,
        })
    }
    fn spelling(&self) -> &'static str {
        "grid_sample"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.str("mode", name_of(MODES, self.mode));
        w.str("padding_mode", name_of(PADDINGS, self.padding));
        w.int("align_corners", self.align_corners as i64);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        Ok(vec![self.out_type(inputs)?])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let ty = self.out_type(&[&tys[0], &tys[1]])?;
        let out_dims = concrete(&ty, "grid_sample output")?;
        let (x, g) = (inputs[0].to_f64(), inputs[1].to_f64());
        let xs = x.shape().to_vec();
        let k = xs.len() - 2;
        let spatial = &xs[2..];
        let plane: usize = spatial.iter().product();
        let points: usize = out_dims[2..].iter().product();
        let (xf, gf) = (
            x.as_standard_layout()
                .into_owned()
                .into_raw_vec_and_offset()
                .0,
            g.as_standard_layout()
                .into_owned()
                .into_raw_vec_and_offset()
                .0,
        );
        let (nb, nc) = (xs[0], xs[1]);
        let mut y = vec![0.0; nb * nc * points];
        for b in 0..nb {
            for p in 0..points {
                let coords = &gf[(b * points + p) * k..(b * points + p + 1) * k];
                // Grid components run x (last axis) first.
                let taps: Vec<Vec<(Option<usize>, f64)>> = (0..k)
                    .map(|d| self.axis_taps(coords[k - 1 - d], spatial[d]))
                    .collect();
                // Every combination of one tap per axis.
                let mut combo: Vec<(usize, f64)> = vec![(0, 1.0)];
                for (d, t) in taps.iter().enumerate() {
                    let mut next = Vec::with_capacity(combo.len() * t.len());
                    for &(off, w) in &combo {
                        for &(i, tw) in t {
                            if let Some(i) = i {
                                next.push((off * spatial[d] + i, w * tw));
                            }
                        }
                    }
                    combo = next;
                }
                for c in 0..nc {
                    let base = (b * nc + c) * plane;
                    y[(b * nc + c) * points + p] =
                        combo.iter().map(|&(off, w)| w * xf[base + off]).sum();
                }
            }
        }
        let y = ArrayD::from_shape_vec(IxDyn(&out_dims), y)
            .map_err(|e| OpError::Eval(e.to_string()))?;
        Ok(vec![Tensor::from_f64(ty.dtype, y)])
    }
}

/// `affine_grid(theta [N, k, k+1]) -> [N, D1..Dk, k]` for `size = [N, C, D1..Dk]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AffineGrid {
    pub size: Vec<i64>,
    pub align_corners: bool,
}

impl AffineGrid {
    fn plan(&self, inputs: &[&TensorType]) -> OpResult<(Vec<usize>, TensorType)> {
        expect_arity(inputs, 1)?;
        let t = inputs[0];
        require_float(t, "affine_grid theta")?;
        if self.size.len() != 4 && self.size.len() != 5 {
            return attr_err("size", "must be [N, C, H, W] or [N, C, D, H, W]");
        }
        let size: Vec<usize> = self
            .size
            .iter()
            .map(|&s| usize::try_from(s).or_else(|_| attr_err("size", "must be non-negative")))
            .collect::<OpResult<_>>()?;
        let k = size.len() - 2;
        let td = concrete(t, "affine_grid theta")?;
        if td != [size[0], k, k + 1] {
            return shape_err(format!(
                "affine_grid theta must be [{}, {k}, {}], found {t}",
                size[0],
                k + 1
            ));
        }
        let mut out = vec![size[0]];
        out.extend_from_slice(&size[2..]);
        out.push(k);
        Ok((size, TensorType::concrete(t.dtype, &out)))
    }
}

impl OpDef for AffineGrid {
    const SPELLINGS: &'static [&'static str] = &["affine_grid"];

    fn parse(_spelling: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(AffineGrid {
            size: a.req_ints("size")?,
            align_corners: a.int("align_corners", 0)? != 0,
        })
    }
    fn spelling(&self) -> &'static str {
        "affine_grid"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("size", &self.size);
        w.int("align_corners", self.align_corners as i64);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        Ok(vec![self.plan(inputs)?.1])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let (size, ty) = self.plan(&[&inputs[0].ty()])?;
        let k = size.len() - 2;
        let spatial = &size[2..];
        let theta: Vec<f64> = inputs[0].values_f64();
        // Base coordinate of index i along an axis of `len` points.
        let base = |i: usize, len: usize| -> f64 {
            let (i, l) = (i as f64, len as f64);
            if self.align_corners {
                if len <= 1 {
                    0.0
                } else {
                    -1.0 + 2.0 * i / (l - 1.0)
                }
            } else {
                (2.0 * i + 1.0) / l - 1.0
            }
        };
        let points: usize = spatial.iter().product();
        let mut out = Vec::with_capacity(size[0] * points * k);
        let mut idx = vec![0usize; k];
        for n in 0..size[0] {
            let th = &theta[n * k * (k + 1)..(n + 1) * k * (k + 1)];
            for p in 0..points {
                let mut rem = p;
                for d in (0..k).rev() {
                    idx[d] = rem % spatial[d];
                    rem /= spatial[d];
                }
                // Homogeneous point (x, y[, z], 1): x runs along the last axis.
                let mut v: Vec<f64> = (0..k)
                    .map(|j| base(idx[k - 1 - j], spatial[k - 1 - j]))
                    .collect();
                v.push(1.0);
                for row in 0..k {
                    out.push((0..=k).map(|j| th[row * (k + 1) + j] * v[j]).sum());
                }
            }
        }
        let dims = concrete(&ty, "affine_grid output")?;
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
        Tensor::from_vec_f64(DType::F32, shape, v.to_vec()).unwrap()
    }
    fn gs(mode: SampleMode, padding: PaddingMode, align: bool) -> GridSample {
        GridSample {
            mode,
            padding,
            align_corners: align,
        }
    }

    #[test]
    fn bilinear_corners_and_centre() {
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        // Corners with align_corners are exact pixels; (0, 0) is the mean.
        let g = t(&[1, 1, 3, 2], &[-1., -1., 1., 1., 0., 0.]);
        let op = gs(SampleMode::Linear, PaddingMode::Zeros, true);
        let y = op.eval(&[&x, &g]).unwrap().remove(0);
        assert_eq!(y.shape(), [1, 1, 1, 3]);
        assert_eq!(y.values_f64(), [1., 4., 2.5]);
        // Without align_corners, -1 is the outer edge: half of each tap is padding.
        let op = gs(SampleMode::Linear, PaddingMode::Zeros, false);
        let g = t(&[1, 1, 1, 2], &[-1., -1.]);
        assert_eq!(op.eval(&[&x, &g]).unwrap()[0].values_f64(), [0.25]);
        let border = gs(SampleMode::Linear, PaddingMode::Border, false);
        assert_eq!(border.eval(&[&x, &g]).unwrap()[0].values_f64(), [1.]);
        // x = 0.75 picks the second column, y = -1 the first row.
        let g = t(&[1, 1, 1, 2], &[0.75, -1.]);
        let near = gs(SampleMode::Nearest, PaddingMode::Zeros, true);
        assert_eq!(near.eval(&[&x, &g]).unwrap()[0].values_f64(), [2.]);
    }

    #[test]
    fn reflection_and_cubic() {
        assert_eq!(reflect(-1.0, -0.5, 2.5), 0.0);
        assert_eq!(reflect(3.0, -0.5, 2.5), 2.0);
        assert_eq!(reflect(6.0, -0.5, 2.5), -0.5 + 0.5);
        // Cubic weights sum to 1 and reproduce a constant.
        let x = t(&[1, 1, 1, 4], &[5.; 4]);
        let g = t(&[1, 1, 1, 2], &[0.1, 0.0]);
        let op = gs(SampleMode::Cubic, PaddingMode::Border, false);
        let y = op.eval(&[&x, &g]).unwrap()[0].values_f64()[0];
        assert!((y - 5.0).abs() < 1e-6);
    }

    #[test]
    fn affine_identity_grid() {
        let theta = t(&[1, 2, 3], &[1., 0., 0., 0., 1., 0.]);
        let op = AffineGrid {
            size: vec![1, 1, 2, 2],
            align_corners: true,
        };
        let g = op.eval(&[&theta]).unwrap().remove(0);
        assert_eq!(g.shape(), [1, 2, 2, 2]);
        assert_eq!(g.values_f64(), [-1., -1., 1., -1., -1., 1., 1., 1.]);
        let half = AffineGrid {
            align_corners: false,
            ..op.clone()
        };
        assert_eq!(
            half.eval(&[&theta]).unwrap()[0].values_f64(),
            [-0.5, -0.5, 0.5, -0.5, -0.5, 0.5, 0.5, 0.5]
        );
        // Sampling x with its own identity grid (align_corners) returns x.
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let s = gs(SampleMode::Linear, PaddingMode::Zeros, true);
        assert_eq!(s.eval(&[&x, &g]).unwrap()[0].values_f64(), [1., 2., 3., 4.]);
    }

    #[test]
    fn errors_and_round_trip() {
        roundtrip(&gs(SampleMode::Cubic, PaddingMode::Reflection, true));
        roundtrip(&AffineGrid {
            size: vec![2, 3, 4, 5, 6],
            align_corners: true,
        });
        let op = gs(SampleMode::Linear, PaddingMode::Zeros, false);
        let x = TensorType::concrete(DType::F32, &[1, 1, 4, 4]);
        let bad = TensorType::concrete(DType::F32, &[1, 3, 3, 3]);
        assert!(matches!(op.infer(&[&x, &bad]), Err(OpError::Shape(_))));
        let ok = TensorType::concrete(DType::F32, &[1, 3, 5, 2]);
        assert_eq!(
            op.infer(&[&x, &ok]).unwrap()[0].shape.to_string(),
            "[1,1,3,5]"
        );
        let a = AffineGrid {
            size: vec![1, 1, 2],
            align_corners: false,
        };
        let th = TensorType::concrete(DType::F32, &[1, 2, 3]);
        assert!(matches!(a.infer(&[&th]), Err(OpError::Attr(_))));
        let a = AffineGrid {
            size: vec![2, 1, 2, 2],
            align_corners: false,
        };
        assert!(matches!(a.infer(&[&th]), Err(OpError::Shape(_))));
    }
}
