//! Op declarations, one module per family. Shared type-rule helpers live here.

pub mod binary;
pub mod bitcast;
pub mod conv;
pub mod deform;
pub mod einsum;
pub mod elementwise;
pub mod elementwise_more;
pub mod grid;
pub mod index;
pub mod linalg;
pub mod movement;
pub mod norm;
pub mod pool;
pub mod quant;
pub mod reduce;
pub mod scan;
pub mod shape;
// Attention, losses and more normalisations (issue 3, nn family).
pub mod attention;
pub mod linear_attention;
pub mod loss;
pub mod norm_more;
pub mod pool_extra;
pub mod resample;
pub mod rnn;
pub mod roi;
pub mod signal;
// Gradient-rule support ops (autodiff, issue 7).
pub mod grad_ops;
// Training losses, regularisers, batch_norm_train, dropout_train (issue 7).
pub mod loss_more;
pub mod norm_train;

use crate::dtype::DType;
use crate::op::{dtype_err, shape_err, OpResult};
use crate::shape::{Dim, Shape, TensorType};

/// Numpy broadcasting of two shapes. A symbolic dimension broadcasts against 1
/// or the same symbol; against any other number it cannot be proven equal.
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> OpResult<Shape> {
    let r = a.rank().max(b.rank());
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let da = if i + a.rank() >= r {
            Some(&a.0[i + a.rank() - r])
        } else {
            None
        };
        let db = if i + b.rank() >= r {
            Some(&b.0[i + b.rank() - r])
        } else {
            None
        };
        let d = match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) if x == y => x.clone(),
            (Some(Dim::Known(1)), Some(y)) => y.clone(),
            (Some(x), Some(Dim::Known(1))) => x.clone(),
            (Some(x), Some(y)) => {
                return shape_err(format!(
                    "cannot broadcast {a} with {b} (dimension {x} vs {y})"
                ))
            }
            (None, None) => unreachable!("i < max rank"),
        };
        out.push(d);
    }
    Ok(Shape(out.into()))
}

/// Broadcast several shapes together.
pub fn broadcast_all<'a>(shapes: impl IntoIterator<Item = &'a Shape>) -> OpResult<Shape> {
    let mut acc = Shape::scalar();
    for s in shapes {
        acc = broadcast_shapes(&acc, s)?;
    }
    Ok(acc)
}

/// Normalise a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// Normalise an axis or return an attribute error naming `attr`.
pub fn axis_or_err(attr: &str, axis: i64, rank: usize) -> OpResult<usize> {
    norm_axis(axis, rank).ok_or_else(|| {
        crate::op::OpError::Attr(crate::attr::AttrError {
            attr: attr.into(),
            msg: format!("axis {axis} is out of range for rank {rank}"),
        })
    })
}

/// Require every input to have the same dtype; return it.
pub fn same_dtype(inputs: &[&TensorType]) -> OpResult<DType> {
    let d = inputs[0].dtype;
    for t in &inputs[1..] {
        if t.dtype != d {
            return dtype_err(format!(
                "inputs must share a dtype, found {} and {}",
                d, t.dtype
            ));
        }
    }
    Ok(d)
}

pub fn require_float(t: &TensorType, what: &str) -> OpResult<()> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        dtype_err(format!("{what} must be a float type, found {}", t.dtype))
    }
}

pub fn require_numeric(t: &TensorType, what: &str) -> OpResult<()> {
    if t.dtype.is_numeric() {
        Ok(())
    } else {
        dtype_err(format!("{what} must be numeric, found {}", t.dtype))
    }
}

/// The concrete dimensions of `t`, or a shape error saying which symbol to bind.
pub fn concrete(t: &TensorType, what: &str) -> OpResult<Vec<usize>> {
    t.shape.concrete().ok_or_else(|| {
        let syms: Vec<&str> = t.shape.symbols().collect();
        crate::op::OpError::Shape(format!(
            "{what} needs a static shape, found {} (bind {} with --dim)",
            t.shape,
            syms.join(", ")
        ))
    })
}

/// Helpers shared by the op families' unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use crate::attr::{AttrReader, AttrWriter};
    use crate::op::OpDef;

    /// An op's attributes written and parsed back give the same op, with no
    /// attribute left over.
    pub fn roundtrip<T: OpDef>(op: &T) {
        let mut w = AttrWriter::default();
        op.write_attrs(&mut w);
        let items = w
            .items
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut r = AttrReader::new(items);
        assert_eq!(&T::parse(op.spelling(), &mut r).unwrap(), op);
        assert!(r.unused().is_empty());
    }
}
