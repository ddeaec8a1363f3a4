//! Pooling companions: `max_pool_with_indices` (max pooling that also
//! returns where each maximum came from), `max_unpool` (its inverse scatter)
//! and `col2im` (sums sliding blocks back into an image).
//!
//! Indices are flat offsets into the whole `[N, C, spatial...]` input, as
//! ONNX defines them; with `storage_order = 1` the spatial part is counted
//! column-major.

use ndarray::{ArrayD, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter};
use crate::dtype::DType;
use crate::op::{
    attr_err, dtype_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult,
};
use crate::ops::pool::{dim_list, Geometry, Pool, PoolKind, PoolPlan, Tap};
use crate::ops::{concrete, require_float};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

/// Spatial offset of row-major flat index `flat` counted column-major instead.
fn column_major(mut flat: usize, dims: &[usize]) -> usize {
    let mut idx = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        idx[d] = flat % dims[d];
        flat /= dims[d];
    }
    let mut off = 0;
    for d in (0..dims.len()).rev() {
        off = off * dims[d] + idx[d];
    }
    off
}

fn flag(a: &mut AttrReader, name: &str) -> Result<bool, AttrError> {
    match a.int(name, 0)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(AttrError {
            attr: name.into(),
            msg: format!("expected 0 or 1, found {v}"),
        }),
    }
}

/// `max_pool_with_indices(x) -> (values, indices: i64)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MaxPoolWithIndices {
    /// The pooling window (its kind is always max).
    pub pool: Pool,
    pub storage_order: bool,
}

impl MaxPoolWithIndices {
    fn plan(&self, inputs: &[&TensorType]) -> OpResult<PoolPlan> {
        if self.pool.kind != PoolKind::Max {
            return attr_err("kind", "must be max pooling");
        }
        self.pool.plan(inputs)
    }
}

impl OpDef for MaxPoolWithIndices {
    const SPELLINGS: &'static [&'static str] = &["max_pool_with_indices"];

    fn parse(_spelling: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(MaxPoolWithIndices {
            pool: Pool::parse("max_pool", a)?,
            storage_order: flag(a, "storage_order")?,
        })
    }
    fn spelling(&self) -> &'static str {
        "max_pool_with_indices"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        self.pool.write_attrs(w);
        w.int("storage_order", self.storage_order as i64);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        let ty = self.plan(inputs)?.ty;
        let idx = TensorType::new(DType::I64, ty.shape.clone());
        Ok(vec![ty, idx])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let PoolPlan {
            geom,
            xs,
            kernel,
            out,
            ty,
        } = self.plan(&tys.iter().collect::<Vec<_>>())?;
        let taps = geom.sliding_taps(&xs, &kernel, &out)?;
        let (kp, op, plane) = (
            kernel.iter().product::<usize>(),
            out.iter().product::<usize>(),
            xs.iter().product::<usize>(),
        );
        let x: Vec<f64> = inputs[0].values_f64();
        let planes = x.len().checked_div(plane).unwrap_or(0);
        let (mut vals, mut idx) = (
            Vec::with_capacity(planes * op),
            Vec::with_capacity(planes * op),
        );
        for p in 0..planes {
            let row = &x[p * plane..(p + 1) * plane];
            for o in 0..op {
                // The first maximum wins; NaN propagates, as in `max_pool`.
                let mut best: Option<(f64, usize)> = None;
                for k in 0..kp {
                    if let Tap::At(i) = taps[k * op + o] {
                        let v = row[i];
                        match best {
                            Some((b, _)) if b.is_nan() || !(v > b || v.is_nan()) => {}
                            _ => best = Some((v, i)),
                        }
                    }
                }
                let (v, i) = best.unwrap_or((f64::NEG_INFINITY, usize::MAX));
                vals.push(v);
                idx.push(if i == usize::MAX {
                    -1
                } else {
                    let s = if self.storage_order {
                        column_major(i, &xs)
                    } else {
                        i
                    };
                    (p * plane + s) as i64
                });
            }
        }
        let dims = concrete(&ty, "max_pool_with_indices output")?;
        let shape = IxDyn(&dims);
        let v = ArrayD::from_shape_vec(shape.clone(), vals)
            .map_err(|e| OpError::Eval(e.to_string()))?;
        let i = ArrayD::from_shape_vec(shape, idx).map_err(|e| OpError::Eval(e.to_string()))?;
        Ok(vec![Tensor::from_f64(ty.dtype, v), Tensor::I64(i)])
    }
}

/// `max_unpool(x, indices) -> y` of spatial shape `output`: a zero tensor
/// with every `x` value written at its flat index (later writes win).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MaxUnpool {
    /// Output spatial dims.
    pub output: Vec<i64>,
}

impl OpDef for MaxUnpool {
    const SPELLINGS: &'static [&'static str] = &["max_unpool"];

    fn parse(_spelling: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(MaxUnpool {
            output: a.req_ints("output")?,
        })
    }
    fn spelling(&self) -> &'static str {
        "max_unpool"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("output", &self.output);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        expect_arity(inputs, 2)?;
        let (x, i) = (inputs[0], inputs[1]);
        require_float(x, "max_unpool input")?;
        if i.dtype != DType::I64 {
            return dtype_err(format!("max_unpool indices must be i64, found {i}"));
        }
        if x.shape != i.shape || x.rank() != self.output.len() + 2 {
            return shape_err(format!(
                "max_unpool needs x and indices of one shape [N, C, {} spatial dims], found {x} and {i}",
                self.output.len()
            ));
        }
        let mut dims = x.shape.dims()[..2].to_vec();
        for &o in &self.output {
            match usize::try_from(o) {
                Ok(o) => dims.push(Dim::Known(o)),
                Err(_) => return attr_err("output", format!("negative size {o}")),
            }
        }
        Ok(vec![x.with_shape(Shape::from(dims))])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let ty = self.infer(&[&inputs[0].ty(), &inputs[1].ty()])?.remove(0);
        let dims = concrete(&ty, "max_unpool output")?;
        let total: usize = dims.iter().product();
        let mut y = vec![0.0; total];
        for (v, &i) in inputs[0].values_f64().iter().zip(inputs[1].to_i64().iter()) {
            match usize::try_from(i).ok().filter(|&i| i < total) {
                Some(i) => y[i] = *v,
                None => {
                    return Err(OpError::Eval(format!(
                        "max_unpool index {i} is outside the output of {total} elements"
                    )))
                }
            }
        }
        let y =
            ArrayD::from_shape_vec(IxDyn(&dims), y).map_err(|e| OpError::Eval(e.to_string()))?;
        Ok(vec![Tensor::from_f64(ty.dtype, y)])
    }
}

/// `col2im(x [N, C * prod(block), L]) -> [N, C, image...]`: the adjoint of
/// extracting sliding blocks; overlapping entries add up.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Col2Im {
    pub image: Vec<i64>,
    pub block: Vec<i64>,
    pub strides: Vec<i64>,
    pub pads: Vec<i64>,
    pub dilations: Vec<i64>,
}

struct Col2ImPlan {
    geom: Geometry,
    image: Vec<usize>,
    block: Vec<usize>,
    blocks: Vec<usize>,
    ty: TensorType,
}

impl Col2Im {
    fn plan(&self, inputs: &[&TensorType]) -> OpResult<Col2ImPlan> {
        expect_arity(inputs, 1)?;
        let x = inputs[0];
        require_float(x, "col2im input")?;
        let n = self.image.len();
        if n == 0 || self.block.len() != n {
            return attr_err(
                "block",
                "must give one size per image dim (and at least one)",
            );
        }
        let image = dim_list("image", &self.image, n, 1, 1, 1)?;
        let block = dim_list("block", &self.block, n, 1, 1, 1)?;
        let geom = Geometry::resolve(n, &self.strides, &self.pads, &self.dilations)?;
        let blocks: Vec<usize> = (0..n)
            .map(|d| geom.sliding_out("col2im", d, image[d], block[d], false))
            .collect::<OpResult<_>>()?;
        let xd = concrete(x, "col2im input")?;
        let bp: usize = block.iter().product();
        let l: usize = blocks.iter().product();
        if xd.len() != 3 || xd[1] % bp != 0 || xd[2] != l {
            return shape_err(format!(
                "col2im input must be [N, C * {bp}, {l}] for these blocks, found {x}"
            ));
        }
        let mut out = vec![xd[0], xd[1] / bp];
        out.extend_from_slice(&image);
        Ok(Col2ImPlan {
            geom,
            image,
            block,
            blocks,
            ty: TensorType::concrete(x.dtype, &out),
        })
    }
}

impl OpDef for Col2Im {
    const SPELLINGS: &'static [&'static str] = &["col2im"];

    fn parse(_spelling: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        Ok(Col2Im {
            image: a.req_ints("image")?,
            block: a.req_ints("block")?,
            strides: a.ints("strides", &[])?,
            pads: a.ints("pads", &[])?,
            dilations: a.ints("dilations", &[])?,
        })
    }
    fn spelling(&self) -> &'static str {
        "col2im"
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("image", &self.image);
        w.ints("block", &self.block);
        w.ints("strides", &self.strides);
        w.ints("pads", &self.pads);
        w.ints("dilations", &self.dilations);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        Ok(vec![self.plan(inputs)?.ty])
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let Col2ImPlan {
            geom,
            image,
            block,
            blocks,
            ty,
        } = self.plan(&[&inputs[0].ty()])?;
        let taps = geom.sliding_taps(&image, &block, &blocks)?;
        let (bp, l, plane) = (
            block.iter().product::<usize>(),
            blocks.iter().product::<usize>(),
            image.iter().product::<usize>(),
        );
        let x = inputs[0].values_f64();
        let dims = concrete(&ty, "col2im output")?;
        let planes = dims[0] * dims[1];
        let mut y = vec![0.0; planes * plane];
        // Row (c, k) of x holds kernel offset k of channel c for every block.
        for p in 0..planes {
            for k in 0..bp {
                let row = &x[(p * bp + k) * l..(p * bp + k + 1) * l];
                for (o, v) in row.iter().enumerate() {
                    if let Tap::At(i) = taps[k * l + o] {
                        y[p * plane + i] += v;
                    }
                }
            }
        }
        let y =
            ArrayD::from_shape_vec(IxDyn(&dims), y).map_err(|e| OpError::Eval(e.to_string()))?;
        Ok(vec![Tensor::from_f64(ty.dtype, y)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::roundtrip;

    fn t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::from_vec_f64(DType::F32, shape, v.to_vec()).unwrap()
    }

    #[test]
    fn argmax_indices_row_and_column_major() {
        let x = t(&[1, 2, 2, 2], &[1., 4., 3., 2., 5., 5., 7., 6.]);
        let mut op = MaxPoolWithIndices {
            pool: Pool::new(PoolKind::Max, &[2, 2]),
            storage_order: false,
        };
        let out = op.eval(&[&x]).unwrap();
        assert_eq!(out[0].values_f64(), [4., 7.]);
        // Channel 1 starts at offset 4; its max 7 sits at (1, 0).
        assert_eq!(out[1].values_f64(), [1., 6.]);
        op.storage_order = true;
        // Column-major: (0, 1) -> 2, (1, 0) -> 1.
        assert_eq!(op.eval(&[&x]).unwrap()[1].values_f64(), [2., 5.]);
        roundtrip(&op);
        let tys = op.infer(&[&x.ty()]).unwrap();
        assert_eq!(tys[1].dtype, DType::I64);
    }

    #[test]
    fn unpool_scatters() {
        let op = MaxUnpool { output: vec![2, 2] };
        let x = t(&[1, 1, 1, 2], &[5., 6.]);
        let i = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[1, 1, 1, 2]), vec![1, 2]).unwrap());
        let y = op.eval(&[&x, &i]).unwrap().remove(0);
        assert_eq!(
            (y.shape().to_vec(), y.values_f64()),
            (vec![1, 1, 2, 2], vec![0., 5., 6., 0.])
        );
        let bad = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[1, 1, 1, 2]), vec![1, 9]).unwrap());
        assert!(matches!(op.eval(&[&x, &bad]), Err(OpError::Eval(_))));
        roundtrip(&op);
    }

    #[test]
    fn col2im_adds_overlaps() {
        // A 1x3 image from 2-wide blocks at stride 1: two blocks, the middle
        // pixel is covered twice.
        let op = Col2Im {
            image: vec![1, 3],
            block: vec![1, 2],
            strides: vec![],
            pads: vec![],
            dilations: vec![],
        };
        // Rows: kernel offset 0 then 1; columns: block 0, block 1.
        let x = t(&[1, 2, 2], &[1., 2., 10., 20.]);
        let y = op.eval(&[&x]).unwrap().remove(0);
        assert_eq!(
            (y.shape().to_vec(), y.values_f64()),
            (vec![1, 1, 1, 3], vec![1., 12., 20.])
        );
        roundtrip(&op);
        let wrong = t(&[1, 3, 2], &[0.; 6]);
        assert!(matches!(op.infer(&[&wrong.ty()]), Err(OpError::Shape(_))));
    }
}
