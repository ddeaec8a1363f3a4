//! Indexing, scatter/gather, scans and data-movement ops: GatherElements,
//! ScatterElements/Scatter, GatherND, ScatterND, TensorScatter, Trilu,
//! CumSum/CumProd, TopK, OneHot, Einsum, Tile, DepthToSpace/SpaceToDepth
//! (lowered to reshape + transpose), EyeLike (a constant), ReverseSequence.
//! NonZero, Compress and Unique have data-dependent output shapes: they are
//! folded when their inputs are known at import time and refused otherwise.

use kiln_ir::op::OpDef;
use kiln_ir::ops::einsum::Einsum;
use kiln_ir::ops::index::{
    GatherElements, GatherNd, ScatterElements, ScatterNd, ScatterReduction, TensorScatter,
};
use kiln_ir::ops::scan::{Cumulative, OneHot, ReverseSequence, Tile, TopK, Trilu};
use kiln_ir::ops::shape::{Reshape, Transpose};
use kiln_ir::Tensor;
use ndarray::{ArrayD, Dimension, IxDyn};

use super::{Row, MAX_OPSET};
use crate::onnx::import::{CResult, Ctx, Val};

pub const OPS: &[Row] = &[
    ("GatherElements", 11, MAX_OPSET, |c| {
        let axis = c.attr_int("axis", 0)?;
        out(c, GatherElements { axis }, &[0, 1])
    }),
    ("ScatterElements", 11, MAX_OPSET, scatter_elements),
    ("Scatter", 9, 10, scatter_elements),
    ("GatherND", 11, MAX_OPSET, |c| {
        let batch_dims = c.attr_int("batch_dims", 0)?;
        out(c, GatherNd { batch_dims }, &[0, 1])
    }),
    ("ScatterND", 11, MAX_OPSET, |c| {
        let reduction = reduction(c)?;
        out(c, ScatterNd { reduction }, &[0, 1, 2])
    }),
    ("TensorScatter", 24, MAX_OPSET, tensor_scatter),
    ("Trilu", 14, MAX_OPSET, trilu),
    ("CumSum", 11, MAX_OPSET, |c| cumulative(c, false)),
    ("CumProd", 26, MAX_OPSET, |c| cumulative(c, true)),
    ("TopK", 1, MAX_OPSET, top_k),
    ("OneHot", 9, MAX_OPSET, one_hot),
    ("Einsum", 12, MAX_OPSET, |c| {
        let equation = c.attr_str("equation", "")?;
        if equation.is_empty() {
            return c.invalid("equation is required");
        }
        let idx: Vec<usize> = (0..c.num_inputs()).collect();
        out(c, Einsum { equation }, &idx)
    }),
    ("Tile", 6, MAX_OPSET, |c| {
        let Some(repeats) = c.const_ints(1, "repeats")? else {
            return c.invalid("repeats is required");
        };
        out(c, Tile { repeats }, &[0])
    }),
    ("DepthToSpace", 1, MAX_OPSET, |c| block_rearrange(c, true)),
    ("SpaceToDepth", 1, MAX_OPSET, |c| block_rearrange(c, false)),
    ("EyeLike", 9, MAX_OPSET, eye_like),
    ("ReverseSequence", 10, MAX_OPSET, |c| {
        let batch_axis = c.attr_int("batch_axis", 1)?;
        let time_axis = c.attr_int("time_axis", 0)?;
        out(
            c,
            ReverseSequence {
                batch_axis,
                time_axis,
            },
            &[0, 1],
        )
    }),
    ("NonZero", 9, MAX_OPSET, non_zero),
    ("Compress", 9, MAX_OPSET, compress),
    ("Unique", 11, MAX_OPSET, unique),
];

fn out(c: &mut Ctx, op: impl Into<kiln_ir::Op>, idx: &[usize]) -> CResult<()> {
    let v = c.apply_inputs(op, idx)?;
    c.set_output(0, v);
    Ok(())
}

fn reduction(c: &Ctx) -> CResult<ScatterReduction> {
    let name = c.attr_str("reduction", "none")?;
    match ScatterReduction::from_name(&name) {
        Some(r) => Ok(r),
        None => c.unsupported(format!("reduction {name:?}")),
    }
}

fn scatter_elements(c: &mut Ctx) -> CResult<()> {
    let axis = c.attr_int("axis", 0)?;
    let reduction = reduction(c)?;
    out(c, ScatterElements { axis, reduction }, &[0, 1, 2])
}

fn tensor_scatter(c: &mut Ctx) -> CResult<()> {
    let axis = c.attr_int("axis", -2)?;
    let circular = match c.attr_str("mode", "linear")?.as_str() {
        "linear" => false,
        "circular" => true,
        other => return c.unsupported(format!("mode {other:?}")),
    };
    let idx: Vec<usize> = (0..c.num_inputs().min(3)).collect();
    out(c, TensorScatter { axis, circular }, &idx)
}

/// A scalar (or one-element) integer input, if given.
fn const_scalar(c: &Ctx, i: usize, what: &str) -> CResult<Option<i64>> {
    match c.const_ints(i, what)? {
        None => Ok(None),
        Some(v) if v.len() == 1 => Ok(Some(v[0])),
        Some(v) => c.invalid(format!("{what} must hold one value, found {}", v.len())),
    }
}

fn trilu(c: &mut Ctx) -> CResult<()> {
    let upper = c.attr_int("upper", 1)? != 0;
    let k = const_scalar(c, 1, "k")?.unwrap_or(0);
    out(c, Trilu { upper, k }, &[0])
}

fn cumulative(c: &mut Ctx, product: bool) -> CResult<()> {
    let Some(axis) = const_scalar(c, 1, "axis")? else {
        return c.invalid("axis is required");
    };
    let op = Cumulative {
        product,
        axis,
        exclusive: c.attr_int("exclusive", 0)? != 0,
        reverse: c.attr_int("reverse", 0)? != 0,
    };
    out(c, op, &[0])
}

fn top_k(c: &mut Ctx) -> CResult<()> {
    let axis = c.attr_int("axis", -1)?;
    let k = if c.opset >= 10 {
        const_scalar(c, 1, "k")?
    } else {
        c.attr_opt_int("k")?
    };
    let Some(k) = k else {
        return c.invalid("k is required");
    };
    let largest = c.attr_int("largest", 1)? != 0;
    // sorted = 0 leaves the order unspecified, so sorted output conforms too.
    let x = c.input(0)?;
    let outs = c.apply_multi(TopK { axis, k, largest }, vec![x])?;
    for (i, v) in outs.into_iter().enumerate() {
        c.set_output(i, v);
    }
    Ok(())
}

fn one_hot(c: &mut Ctx) -> CResult<()> {
    let axis = c.attr_int("axis", -1)?;
    let Some(depth) = c.const_input(1, "depth")? else {
        return c.invalid("depth is required");
    };
    let d = depth.values_f64();
    if d.len() != 1 || !d[0].is_finite() {
        return c.invalid("depth must be one finite number");
    }
    // ONNX casts a float depth to an integer.
    let depth = d[0] as i64;
    out(c, OneHot { axis, depth }, &[0, 2])
}

/// DepthToSpace (`to_space`) or SpaceToDepth as reshape, transpose, reshape.
fn block_rearrange(c: &mut Ctx, to_space: bool) -> CResult<()> {
    let bs = c.attr_int("blocksize", 0)?;
    if bs < 1 {
        return c.invalid(format!("blocksize must be >= 1, found {bs}"));
    }
    let mode = c.attr_str("mode", "DCR")?;
    let crd = match mode.as_str() {
        "DCR" => false,
        "CRD" => true,
        other => return c.unsupported(format!("mode {other:?}")),
    };
    let dims = c.input_dims(0)?;
    let &[n, ch, h, w] = dims.as_slice() else {
        return c.invalid(format!("input must have rank 4, found {dims:?}"));
    };
    let (n, ch, h, w) = (n as i64, ch as i64, h as i64, w as i64);
    let (mid, perm, last): (Vec<i64>, Vec<i64>, Vec<i64>) = if to_space {
        if ch % (bs * bs) != 0 {
            return c.invalid(format!("channels {ch} not divisible by blocksize^2"));
        }
        let co = ch / (bs * bs);
        let last = vec![n, co, h * bs, w * bs];
        if crd {
            (vec![n, co, bs, bs, h, w], vec![0, 1, 4, 2, 5, 3], last)
        } else {
            (vec![n, bs, bs, co, h, w], vec![0, 3, 4, 1, 5, 2], last)
        }
    } else {
        if h % bs != 0 || w % bs != 0 {
            return c.invalid(format!("spatial dims {h}x{w} not divisible by {bs}"));
        }
        let mid = vec![n, ch, h / bs, bs, w / bs, bs];
        let last = vec![n, ch * bs * bs, h / bs, w / bs];
        if crd {
            (mid, vec![0, 1, 3, 5, 2, 4], last)
        } else {
            (mid, vec![0, 3, 5, 1, 2, 4], last)
        }
    };
    let x = c.input(0)?;
    let v = c.apply(Reshape::new(mid), vec![x])?;
    let v = c.apply(Transpose::new(perm), vec![v])?;
    let v = c.apply(Reshape::new(last), vec![v])?;
    c.set_output(0, v);
    Ok(())
}

fn eye_like(c: &mut Ctx) -> CResult<()> {
    let dims = c.input_dims(0)?;
    let &[rows, cols] = dims.as_slice() else {
        return c.invalid(format!("input must have rank 2, found {dims:?}"));
    };
    let dtype = match c.attr_opt_int("dtype")? {
        None => c.input_type(0)?.dtype,
        Some(d) => match crate::onnx::import::model_dtype(d as i32) {
            Some(d) => d,
            None => return c.unsupported(format!("dtype {d}")),
        },
    };
    let k = c.attr_int("k", 0)?;
    let a = ArrayD::from_shape_fn(IxDyn(&[rows, cols]), |ix| {
        f64::from(u8::from(ix[1] as i64 - ix[0] as i64 == k))
    });
    let t = Tensor::from_f64(dtype, a);
    c.set_output(0, Val::Const { t, param: None });
    Ok(())
}

/// NonZero of a constant: the indices of the non-zero elements, one row per axis.
fn non_zero(c: &mut Ctx) -> CResult<()> {
    let Some(x) = c.const_input(0, "X (NonZero's output shape depends on its values)")? else {
        return c.invalid("X is required");
    };
    let b = x.to_bool();
    let hits: Vec<Vec<usize>> = b
        .indexed_iter()
        .filter(|(_, &v)| v)
        .map(|(ix, _)| ix.slice().to_vec())
        .collect();
    let r = x.shape().len();
    let mut v = vec![0i64; r * hits.len()];
    for (j, ix) in hits.iter().enumerate() {
        for (a, &i) in ix.iter().enumerate() {
            v[a * hits.len() + j] = i as i64;
        }
    }
    let t =
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[r, hits.len()]), v).expect("r * hits elements"));
    c.set_output(0, Val::Const { t, param: None });
    Ok(())
}

/// Compress with a constant condition: a gather of the selected positions.
fn compress(c: &mut Ctx) -> CResult<()> {
    let Some(cond) = c.const_input(1, "condition (Compress's output shape depends on it)")? else {
        return c.invalid("condition is required");
    };
    let keep: Vec<i64> = cond
        .to_bool()
        .iter()
        .enumerate()
        .filter(|(_, &b)| b)
        .map(|(i, _)| i as i64)
        .collect();
    let idx = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[keep.len()]), keep).expect("1-D"));
    let idx = Val::Const {
        t: idx,
        param: None,
    };
    let x = c.input(0)?;
    let (x, axis) = match c.attr_opt_int("axis")? {
        Some(a) => (x, a),
        None => (c.apply(Reshape::new(vec![-1]), vec![x])?, 0),
    };
    let n = match &x {
        Val::Const { t, .. } => t.shape().to_vec(),
        Val::Value(v) => c.ty(*v).shape.concrete().unwrap_or_default(),
    };
    if let Some(a) = kiln_ir::ops::norm_axis(axis, n.len()) {
        if cond.len() > n[a] {
            return c.invalid(format!(
                "condition has {} entries for an axis of size {}",
                cond.len(),
                n[a]
            ));
        }
    }
    let v = c.apply(kiln_ir::ops::shape::Gather { axis }, vec![x, idx])?;
    c.set_output(0, v);
    Ok(())
}

/// Unique of a constant: the distinct elements (or slices along `axis`),
/// sorted or in order of first occurrence, with their first indices, the
/// inverse map and the counts.
fn unique(c: &mut Ctx) -> CResult<()> {
    let Some(x) = c.const_input(0, "X (Unique's output shape depends on its values)")? else {
        return c.invalid("X is required");
    };
    let sorted = c.attr_int("sorted", 1)? != 0;
    let (x, axis) = match c.attr_opt_int("axis")? {
        None => {
            let n = x.len();
            let flat = Reshape::new(vec![n as i64]);
            match flat.eval(&[&x]) {
                Ok(mut v) => (v.remove(0), 0),
                Err(e) => return c.invalid(e.to_string()),
            }
        }
        Some(a) => match kiln_ir::ops::norm_axis(a, x.shape().len()) {
            Some(a) => (x, a),
            None => return c.invalid(format!("axis {a} out of range")),
        },
    };
    let dims = x.shape().to_vec();
    let n = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let outer: usize = dims[..axis].iter().product();
    let at =
        |j: usize| (0..outer).flat_map(move |o| (0..inner).map(move |i| (o * n + j) * inner + i));
    let ints: Vec<i64> = x.to_i64().iter().copied().collect();
    let floats: Vec<f64> = x.to_f64().iter().copied().collect();
    let is_float = x.dtype().is_float();
    let cmp = |j: usize, k: usize| {
        at(j)
            .zip(at(k))
            .map(|(p, q)| {
                if is_float {
                    floats[p].total_cmp(&floats[q])
                } else {
                    ints[p].cmp(&ints[q])
                }
            })
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    // Sort positions by value (stably), then group equal neighbours.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&j, &k| cmp(j, k));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &j in &order {
        match groups.last_mut() {
            Some(g) if cmp(g[0], j).is_eq() => g.push(j),
            _ => groups.push(vec![j]),
        }
    }
    if !sorted {
        groups.sort_by_key(|g| g[0]);
    }
    let mut inverse = vec![0i64; n];
    for (u, g) in groups.iter().enumerate() {
        for &j in g {
            inverse[j] = u as i64;
        }
    }
    let vec_i64 = |v: Vec<i64>| Val::Const {
        t: Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-D")),
        param: None,
    };
    let firsts = vec_i64(groups.iter().map(|g| g[0] as i64).collect());
    let counts = vec_i64(groups.iter().map(|g| g.len() as i64).collect());
    let y = c.apply(
        kiln_ir::ops::shape::Gather { axis: axis as i64 },
        vec![
            Val::Const {
                t: x.clone(),
                param: None,
            },
            firsts.clone(),
        ],
    )?;
    c.set_output(0, y);
    c.set_output(1, firsts);
    c.set_output(2, vec_i64(inverse));
    c.set_output(3, counts);
    Ok(())
}
