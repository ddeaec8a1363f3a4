//! Control flow: `If`, `Loop` and `Scan`, lowered at import time.
//!
//! kiln graphs have no control flow, so a subgraph is inlined: `If` with a
//! known condition takes one branch (with a runtime condition both branches
//! are inlined and their results selected with `where`), and `Loop` and `Scan`
//! are unrolled over a trip count or sequence length that must be known at
//! import time. A `Loop` condition computed in the body must fold to a
//! constant after each iteration.

use kiln_ir::ops::elementwise::Where;
use kiln_ir::ops::shape::{Concat, Gather, Reshape, Unsqueeze};
use kiln_ir::{DType, Tensor};

use super::{Row, MAX_OPSET};
use crate::onnx::import::{CResult, Ctx, Item, Val};
use crate::onnx::proto::GraphProto;

pub const OPS: &[Row] = &[
    ("If", 1, MAX_OPSET, if_),
    ("Loop", 1, MAX_OPSET, loop_),
    ("Scan", 8, 8, scan8),
    ("Scan", 9, MAX_OPSET, scan),
];

/// Unrolling stops here: a longer loop is refused rather than inlined.
const MAX_UNROLL: i64 = 4096;

fn konst(dtype: DType, shape: &[usize], v: Vec<f64>) -> Val {
    Val::Const {
        t: Tensor::from_vec_f64(dtype, shape, v).expect("shape matches the data"),
        param: None,
    }
}

fn graph_attr<'a>(c: &Ctx<'a>, name: &str) -> CResult<&'a GraphProto> {
    match c.attr_graph(name)? {
        Some(g) => Ok(g),
        None => c.invalid(format!("attribute `{name}` (a graph) is required")),
    }
}

fn truthy(t: &Tensor) -> Option<bool> {
    (t.len() == 1).then(|| t.values_f64()[0] != 0.0)
}

fn if_(c: &mut Ctx) -> CResult<()> {
    let then_g = graph_attr(c, "then_branch")?;
    let else_g = graph_attr(c, "else_branch")?;
    let outs = match c.input(0)? {
        Val::Const { t, .. } => {
            let Some(b) = truthy(&t) else {
                return c.invalid(format!("condition must have one element, found {}", t.ty()));
            };
            // A known branch may also return sequences.
            let outs = c.inline_graph_items(if b { then_g } else { else_g }, vec![])?;
            for (i, v) in outs.into_iter().enumerate() {
                c.set_item_output(i, v);
            }
            return Ok(());
        }
        cond @ Val::Value(_) => {
            // Both branches are pure, so evaluating both and selecting is exact.
            let a = c.inline_graph(then_g, vec![])?;
            let b = c.inline_graph(else_g, vec![])?;
            if a.len() != b.len() {
                return c.invalid("the branches return different numbers of outputs");
            }
            let ct = c.val_type(&cond);
            if ct.shape.numel() != Some(1) {
                return c.invalid(format!("condition must have one element, found {ct}"));
            }
            let cond = c.apply(Reshape::new(vec![]), vec![cond])?;
            let mut outs = Vec::with_capacity(a.len());
            for (x, y) in a.into_iter().zip(b) {
                let (tx, ty) = (c.val_type(&x), c.val_type(&y));
                if tx != ty {
                    return c.unsupported(format!(
                        "a runtime condition with branch results of different types ({tx} vs {ty})"
                    ));
                }
                outs.push(c.apply(Where, vec![cond.clone(), x, y])?);
            }
            outs
        }
    };
    for (i, v) in outs.into_iter().enumerate() {
        c.set_output(i, v);
    }
    Ok(())
}

/// Stack `vals` along a new `axis`.
fn stack(c: &mut Ctx, vals: Vec<Val>, axis: i64) -> CResult<Val> {
    let mut parts = Vec::with_capacity(vals.len());
    for v in vals {
        parts.push(c.apply(Unsqueeze { axes: vec![axis] }, vec![v])?);
    }
    if parts.len() == 1 {
        return Ok(parts.remove(0));
    }
    c.apply(Concat { axis }, parts)
}

fn loop_(c: &mut Ctx) -> CResult<()> {
    let body = graph_attr(c, "body")?;
    let trip = match c.const_ints(0, "trip count")? {
        None => None,
        Some(v) if v.len() == 1 => Some(v[0]),
        Some(v) => return c.invalid(format!("trip count must be a scalar, found {v:?}")),
    };
    let mut cond = match c.const_input(1, "loop condition")? {
        None => true,
        Some(t) => match truthy(&t) {
            Some(b) => b,
            None => return c.invalid("the loop condition must have one element"),
        },
    };
    // Carried state may be a sequence (a list built up over the iterations).
    let mut carried = (2..c.node.input.len())
        .map(|i| c.item_input(i))
        .collect::<CResult<Vec<_>>>()?;
    let n = carried.len();
    let k = body.output.len().checked_sub(1 + n).map_or_else(
        || c.invalid("the body returns fewer outputs than the loop carries"),
        Ok,
    )?;
    let mut scans: Vec<Vec<Val>> = vec![Vec::new(); k];
    let mut i = 0i64;
    while cond && trip.is_none_or(|t| i < t) {
        if i >= MAX_UNROLL {
            return c.unsupported(format!("a loop of more than {MAX_UNROLL} iterations"));
        }
        let mut ins = vec![
            Item::Tensor(konst(DType::I64, &[], vec![i as f64])),
            Item::Tensor(konst(DType::Bool, &[], vec![1.0])),
        ];
        ins.append(&mut carried);
        let mut outs = c.inline_graph_items(body, ins)?;
        let rest = outs.split_off(1);
        cond = match &outs[0] {
            Item::Tensor(Val::Const { t, .. }) => match truthy(t) {
                Some(b) => b,
                None => return c.invalid("the body's condition must have one element"),
            },
            Item::Tensor(Val::Value(_)) => {
                return c.unsupported("a loop condition computed at run time (cannot unroll)")
            }
            Item::Seq(_) => return c.invalid("the body's condition is a sequence"),
        };
        let mut rest = rest.into_iter();
        carried = rest.by_ref().take(n).collect();
        for (s, v) in scans.iter_mut().zip(rest) {
            match v {
                Item::Tensor(v) => s.push(v),
                Item::Seq(_) => return c.unsupported("a sequence as a loop scan output"),
            }
        }
        i += 1;
    }
    for (j, v) in carried.into_iter().enumerate() {
        c.set_item_output(j, v);
    }
    for (j, s) in scans.into_iter().enumerate() {
        if s.is_empty() {
            return c.unsupported("scan outputs of a loop that runs zero times");
        }
        let v = stack(c, s, 0)?;
        c.set_output(n + j, v);
    }
    Ok(())
}

/// How one Scan unrolls: per-input and per-output axes and directions.
struct ScanSpec<'g> {
    body: &'g GraphProto,
    in_axes: Vec<i64>,
    in_rev: Vec<bool>,
    out_axes: Vec<i64>,
    out_rev: Vec<bool>,
}

fn axis_in(c: &Ctx, axis: i64, rank: usize) -> CResult<usize> {
    match kiln_ir::ops::norm_axis(axis, rank) {
        Some(a) => Ok(a),
        None => c.invalid(format!("axis {axis} is out of range for rank {rank}")),
    }
}

/// Run the scan over `states` and `xs`; returns final states then scan outputs.
fn unroll_scan(
    c: &mut Ctx,
    spec: &ScanSpec,
    mut states: Vec<Val>,
    xs: Vec<Val>,
) -> CResult<Vec<Val>> {
    let n = states.len();
    let mut len = None;
    let mut axes = Vec::with_capacity(xs.len());
    for (j, x) in xs.iter().enumerate() {
        let ty = c.val_type(x);
        let a = axis_in(c, spec.in_axes[j], ty.rank())?;
        let Some(l) = ty.shape.concrete().map(|d| d[a]) else {
            return c.unsupported(format!("a scan over a symbolic length ({ty})"));
        };
        if len.is_some_and(|m| m != l) {
            return c.invalid("scan inputs have different sequence lengths");
        }
        len = Some(l);
        axes.push(a);
    }
    let Some(len) = len else {
        return c.invalid("Scan needs at least one scan input");
    };
    if len as i64 > MAX_UNROLL {
        return c.unsupported(format!("a scan of more than {MAX_UNROLL} steps"));
    }
    let k = spec.body.output.len().checked_sub(n).map_or_else(
        || c.invalid("the body returns fewer outputs than states"),
        Ok,
    )?;
    let mut scans: Vec<Vec<Val>> = vec![Vec::new(); k];
    for t in 0..len {
        let mut ins = std::mem::take(&mut states);
        for (j, x) in xs.iter().enumerate() {
            let at = if spec.in_rev[j] { len - 1 - t } else { t };
            let idx = konst(DType::I64, &[], vec![at as f64]);
            let gather = Gather {
                axis: axes[j] as i64,
            };
            ins.push(c.apply(gather, vec![x.clone(), idx])?);
        }
        let outs = c.inline_graph(spec.body, ins)?;
        let mut outs = outs.into_iter();
        states = outs.by_ref().take(n).collect();
        for (s, v) in scans.iter_mut().zip(outs) {
            s.push(v);
        }
    }
    let mut result = states;
    for (j, mut s) in scans.into_iter().enumerate() {
        if s.is_empty() {
            return c.unsupported("scan outputs of an empty sequence");
        }
        if spec.out_rev.get(j).copied().unwrap_or(false) {
            s.reverse();
        }
        let rank = c.val_type(&s[0]).rank() + 1;
        let a = axis_in(c, spec.out_axes.get(j).copied().unwrap_or(0), rank)?;
        result.push(stack(c, s, a as i64)?);
    }
    Ok(result)
}

fn flags(c: &Ctx, name: &str, n: usize) -> CResult<Vec<bool>> {
    let v = c.attr_ints(name)?.unwrap_or_else(|| vec![0; n]);
    if v.len() != n || v.iter().any(|&d| d != 0 && d != 1) {
        return c.invalid(format!(
            "`{name}` must list {n} values of 0 or 1, found {v:?}"
        ));
    }
    Ok(v.into_iter().map(|d| d == 1).collect())
}

fn scan(c: &mut Ctx) -> CResult<()> {
    let body = graph_attr(c, "body")?;
    let m = c.attr_int("num_scan_inputs", 0)?;
    let total = c.node.input.len();
    let Some(n) = usize::try_from(m)
        .ok()
        .filter(|&m| m >= 1 && m <= total)
        .map(|m| total - m)
    else {
        return c.invalid(format!("num_scan_inputs {m} does not fit {total} inputs"));
    };
    let m = total - n;
    let k = body.output.len().saturating_sub(n);
    let spec = ScanSpec {
        body,
        in_axes: c
            .attr_ints("scan_input_axes")?
            .unwrap_or_else(|| vec![0; m]),
        in_rev: flags(c, "scan_input_directions", m)?,
        out_axes: c
            .attr_ints("scan_output_axes")?
            .unwrap_or_else(|| vec![0; k]),
        out_rev: flags(c, "scan_output_directions", k)?,
    };
    if spec.in_axes.len() != m || spec.out_axes.len() != k {
        return c.invalid("scan_input_axes / scan_output_axes have the wrong length");
    }
    let ins = (0..total)
        .map(|i| c.input(i))
        .collect::<CResult<Vec<_>>>()?;
    let (states, xs) = (ins[..n].to_vec(), ins[n..].to_vec());
    for (i, v) in unroll_scan(c, &spec, states, xs)?.into_iter().enumerate() {
        c.set_output(i, v);
    }
    Ok(())
}

/// Opset 8: every input has a leading batch dim, the sequence axis is 1, and
/// an optional `sequence_lens` (input 0) may shorten sequences per batch item.
fn scan8(c: &mut Ctx) -> CResult<()> {
    let body = graph_attr(c, "body")?;
    let m = c.attr_int("num_scan_inputs", 0)?;
    let total = c.node.input.len().saturating_sub(1);
    let Some(n) = usize::try_from(m)
        .ok()
        .filter(|&m| m >= 1 && m <= total)
        .map(|m| total - m)
    else {
        return c.invalid(format!("num_scan_inputs {m} does not fit {total} inputs"));
    };
    let m = total - n;
    let k = body.output.len().saturating_sub(n);
    let spec = ScanSpec {
        body,
        in_axes: vec![0; m],
        in_rev: flags(c, "directions", m)?,
        out_axes: vec![0; k],
        out_rev: vec![false; k],
    };
    let ins = (1..=total)
        .map(|i| c.input(i))
        .collect::<CResult<Vec<_>>>()?;
    let dims = c.val_type(&ins[n]).shape.concrete();
    let Some(dims) = dims.filter(|d| d.len() >= 2) else {
        return c.unsupported("scan input without a static [batch, sequence, ...] shape");
    };
    let (batch, len) = (dims[0], dims[1]);
    if let Some(lens) = c.const_ints(0, "sequence_lens")? {
        if lens.iter().any(|&l| l != len as i64) {
            return c.unsupported("sequence_lens shorter than the sequence");
        }
    }
    let mut per_batch: Vec<Vec<Val>> = Vec::with_capacity(batch);
    for b in 0..batch {
        let idx = konst(DType::I64, &[], vec![b as f64]);
        let mut pick = Vec::with_capacity(ins.len());
        for v in &ins {
            pick.push(c.apply(Gather { axis: 0 }, vec![v.clone(), idx.clone()])?);
        }
        let xs = pick.split_off(n);
        per_batch.push(unroll_scan(c, &spec, pick, xs)?);
    }
    for i in 0..n + k {
        let vals: Vec<Val> = per_batch.iter().map(|r| r[i].clone()).collect();
        let v = stack(c, vals, 0)?;
        c.set_output(i, v);
    }
    Ok(())
}
