//! Sequence ops (opset 11+; `SequenceMap` 17+), resolved at import time.
//!
//! kiln graphs are static and hold only tensors, so a sequence is a list of
//! tensor values that the importer keeps (`Ctx::seq_input`,
//! `Ctx::set_seq_output`); it never becomes a runtime value. Lengths are
//! therefore always known, and every position or split size must be known at
//! import time too (a runtime one is reported as unsupported, naming the
//! input, so that `kiln conformance` can bind it). Only the tensors taken out
//! of a sequence (`SequenceAt`, `ConcatFromSequence`) reach the graph.

use kiln_ir::ops::shape::{Concat, Split, Squeeze, Unsqueeze};
use kiln_ir::{DType, Tensor};

use super::{Row, MAX_OPSET};
use crate::onnx::import::{CResult, Ctx, Item, Val};

pub const OPS: &[Row] = &[
    ("SequenceEmpty", 11, MAX_OPSET, sequence_empty),
    ("SequenceConstruct", 11, MAX_OPSET, sequence_construct),
    ("SequenceInsert", 11, MAX_OPSET, sequence_insert),
    ("SequenceErase", 11, MAX_OPSET, sequence_erase),
    ("SequenceAt", 11, MAX_OPSET, sequence_at),
    ("SequenceLength", 11, MAX_OPSET, sequence_length),
    ("SplitToSequence", 11, MAX_OPSET, split_to_sequence),
    ("ConcatFromSequence", 11, MAX_OPSET, concat_from_sequence),
    ("SequenceMap", 17, MAX_OPSET, sequence_map),
];

fn sequence_empty(c: &mut Ctx) -> CResult<()> {
    // `dtype` only types the (empty) sequence; elements bring their own.
    c.attr_opt_int("dtype")?;
    c.set_seq_output(0, Vec::new());
    Ok(())
}

/// Every element of a sequence has the same dtype.
fn check_dtype(c: &Ctx, seq: &[Val], v: &Val) -> CResult<()> {
    match seq.first() {
        Some(first) if c.dtype_of(first) != c.dtype_of(v) => c.invalid(format!(
            "a {} tensor in a sequence of {}",
            c.dtype_of(v),
            c.dtype_of(first)
        )),
        _ => Ok(()),
    }
}

fn sequence_construct(c: &mut Ctx) -> CResult<()> {
    let n = c.num_inputs();
    if n == 0 {
        return c.invalid("SequenceConstruct needs at least one input");
    }
    let mut seq = Vec::with_capacity(n);
    for i in 0..n {
        let v = c.input(i)?;
        check_dtype(c, &seq, &v)?;
        seq.push(v);
    }
    c.set_seq_output(0, seq);
    Ok(())
}

/// The position given by input `i` (a scalar known at import time), or
/// `None` when absent. Negative positions count from the end; the last
/// accepted position is `len` when `inclusive_end` (inserting at the back),
/// else `len - 1`.
fn position(c: &Ctx, i: usize, len: usize, inclusive_end: bool) -> CResult<Option<usize>> {
    let Some(p) = c.const_ints(i, "position")? else {
        return Ok(None);
    };
    let [p] = p[..] else {
        return c.invalid(format!(
            "position must be a scalar, found {} values",
            p.len()
        ));
    };
    let n = len as i64;
    let hi = if inclusive_end { n } else { n - 1 };
    if p < -n || p > hi {
        let range = if inclusive_end {
            "[-n, n]"
        } else {
            "[-n, n-1]"
        };
        return c.invalid(format!(
            "position {p} is out of range {range} for a sequence of length {len}"
        ));
    }
    Ok(Some(if p < 0 { p + n } else { p } as usize))
}

fn sequence_insert(c: &mut Ctx) -> CResult<()> {
    let mut seq = c.seq_input(0)?;
    let v = c.input(1)?;
    check_dtype(c, &seq, &v)?;
    let at = position(c, 2, seq.len(), true)?.unwrap_or(seq.len());
    seq.insert(at, v);
    c.set_seq_output(0, seq);
    Ok(())
}

fn sequence_erase(c: &mut Ctx) -> CResult<()> {
    let mut seq = c.seq_input(0)?;
    if seq.is_empty() {
        return c.invalid("SequenceErase on an empty sequence");
    }
    let at = position(c, 1, seq.len(), false)?.unwrap_or(seq.len() - 1);
    seq.remove(at);
    c.set_seq_output(0, seq);
    Ok(())
}

fn sequence_at(c: &mut Ctx) -> CResult<()> {
    let seq = c.seq_input(0)?;
    let Some(at) = position(c, 1, seq.len(), false)? else {
        return c.invalid("position (input 1) is required");
    };
    c.set_output(0, seq[at].clone());
    Ok(())
}

fn sequence_length(c: &mut Ctx) -> CResult<()> {
    let n = c.seq_input(0)?.len();
    let t = Tensor::from_vec_f64(DType::I64, &[], vec![n as f64]).expect("a scalar");
    c.set_output(0, Val::Const { t, param: None });
    Ok(())
}

fn split_to_sequence(c: &mut Ctx) -> CResult<()> {
    let axis = c.attr_int("axis", 0)?;
    let keepdims = c.attr_int("keepdims", 1)?;
    let dims = c.input_dims(0)?;
    let Some(a) = kiln_ir::ops::norm_axis(axis, dims.len()) else {
        return c.invalid(format!(
            "axis {axis} is out of range for rank {}",
            dims.len()
        ));
    };
    let len = dims[a];
    let split = c.const_input(1, "split")?;
    // Without `split`, every piece has length 1 and `keepdims` may drop the axis.
    let squeeze = split.is_none() && keepdims == 0;
    let sizes: Vec<i64> = match &split {
        None => vec![1; len],
        Some(t) if t.ty().rank() == 0 => {
            let k = t.to_i64().iter().copied().next().unwrap_or(0);
            if k <= 0 {
                return c.invalid(format!("split size {k} must be positive"));
            }
            let k = k as usize;
            (0..len).step_by(k).map(|s| k.min(len - s) as i64).collect()
        }
        Some(t) if t.ty().rank() == 1 => {
            let s: Vec<i64> = t.to_i64().iter().copied().collect();
            if s.iter().any(|&k| k < 0) || s.iter().sum::<i64>() != len as i64 {
                return c.invalid(format!(
                    "split sizes {s:?} do not add up to the axis length {len}"
                ));
            }
            s
        }
        Some(t) => {
            return c.invalid(format!("split must be a scalar or 1-D, found {}", t.ty()));
        }
    };
    let x = c.input(0)?;
    let mut parts = if sizes.is_empty() {
        Vec::new()
    } else {
        c.apply_multi(
            Split {
                axis: a as i64,
                sizes,
            },
            vec![x],
        )?
    };
    if squeeze {
        parts = parts
            .into_iter()
            .map(|p| {
                c.apply(
                    Squeeze {
                        axes: vec![a as i64],
                    },
                    vec![p],
                )
            })
            .collect::<CResult<_>>()?;
    }
    c.set_seq_output(0, parts);
    Ok(())
}

fn concat_from_sequence(c: &mut Ctx) -> CResult<()> {
    let Some(axis) = c.attr_opt_int("axis")? else {
        return c.invalid("attribute `axis` is required");
    };
    let new_axis = c.attr_int("new_axis", 0)?;
    if new_axis != 0 && new_axis != 1 {
        return c.invalid(format!("new_axis must be 0 or 1, found {new_axis}"));
    }
    let seq = c.seq_input(0)?;
    let Some(first) = seq.first() else {
        return c.invalid("ConcatFromSequence of an empty sequence");
    };
    let rank = c.val_type(first).rank() + new_axis as usize;
    if kiln_ir::ops::norm_axis(axis, rank).is_none() {
        return c.invalid(format!("axis {axis} is out of range for rank {rank}"));
    }
    let parts = if new_axis == 1 {
        seq.into_iter()
            .map(|v| c.apply(Unsqueeze { axes: vec![axis] }, vec![v]))
            .collect::<CResult<Vec<_>>>()?
    } else {
        seq
    };
    let out = if parts.len() == 1 {
        parts.into_iter().next().expect("one part")
    } else {
        c.apply(Concat { axis }, parts)?
    };
    c.set_output(0, out);
    Ok(())
}

/// The body runs once per element: sequence inputs give their i-th element,
/// tensor inputs are passed whole, and output k collects into sequence k.
fn sequence_map(c: &mut Ctx) -> CResult<()> {
    let Some(body) = c.attr_graph("body")? else {
        return c.invalid("attribute `body` (a graph) is required");
    };
    let ins = (0..c.num_inputs())
        .map(|i| c.item_input(i))
        .collect::<CResult<Vec<_>>>()?;
    let Some(Item::Seq(first)) = ins.first() else {
        return c.invalid("input 0 must be a sequence");
    };
    let len = first.len();
    for it in &ins {
        if let Item::Seq(s) = it {
            if s.len() != len {
                return c.invalid(format!(
                    "input sequences have different lengths ({len} and {})",
                    s.len()
                ));
            }
        }
    }
    let mut outs: Vec<Vec<Val>> = vec![Vec::with_capacity(len); body.output.len()];
    for i in 0..len {
        let args = ins
            .iter()
            .map(|it| match it {
                Item::Seq(s) => s[i].clone(),
                Item::Tensor(v) => v.clone(),
            })
            .collect();
        for (o, v) in outs.iter_mut().zip(c.inline_graph(body, args)?) {
            o.push(v);
        }
    }
    for (k, o) in outs.into_iter().enumerate() {
        c.set_seq_output(k, o);
    }
    Ok(())
}
