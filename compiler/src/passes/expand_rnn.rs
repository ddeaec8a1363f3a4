//! Recurrent-layer expansion. A `rnn`/`gru`/`lstm` node whose sequence is
//! static is rewritten into matmuls and elementwise ops, so the backends run
//! it with their GEMM and fused kernels instead of one opaque reference step:
//!
//! - per direction, one matmul projects every time step's input at once:
//!   `xp = x·Wᵀ + (Wb + Rb)`, as `[seq·batch, gates·hidden]`;
//! - per time step, `h·Rᵀ` plus the step's rows of `xp`, then the gate slices,
//!   the activations (each after `clip` when the clip is finite), the
//!   peepholes (LSTM, left out when they are compile-time zero) and the
//!   state updates, exactly as the reference semantics (`ir/src/ops/rnn.rs`);
//! - `y` is the per-step `h` unsqueezed and concatenated in time order
//!   (`[seq, dirs, batch, hidden]`), `y_h`/`y_c` the last states; `layout = 1`
//!   transposes on the way in and out.
//!
//! GRU keeps `Rbh` out of the projection when `linear_before_reset` is set
//! (it is multiplied by the reset gate), and otherwise splits `R` into the
//! `z, r` block (one matmul with `h`) and the `h` block (a matmul with `r⊙h`).
//!
//! The weight transposes and slices are left to `const-fold`, so the per-step
//! matmuls see a param `B` the backend can pre-pack.
//!
//! The node is left alone unless `sequence_lens` is a compile-time constant
//! equal to the full sequence length for every batch entry, the input is f32
//! or f64, and the unrolled step count is at most [`MAX_STEPS`].

use std::collections::HashMap;

use kiln_ir::attr::F64;
use kiln_ir::ops::elementwise::{Binary, BinaryKind, Unary, UnaryKind};
use kiln_ir::ops::elementwise_more::Clip;
use kiln_ir::ops::linalg::MatMul;
use kiln_ir::ops::movement::{Concat, Slice};
use kiln_ir::ops::rnn::{CellKind, Direction, Recurrent, ACTIVATIONS};
use kiln_ir::ops::shape::{Constant, Reshape, Squeeze, Transpose, Unsqueeze};
use kiln_ir::{DType, Graph, NodeId, Op, Tensor, ValueId};

use super::util::{const_value, is_output, replace_node};
use super::{Pass, PassCtx, PassFailure};

/// Most time steps (sequence length times directions) a node is unrolled to.
pub const MAX_STEPS: usize = 512;

pub struct ExpandRnn;

impl Pass for ExpandRnn {
    fn name(&self) -> &'static str {
        "expand-rnn"
    }
    fn description(&self) -> &'static str {
        "unroll rnn/gru/lstm with full constant sequence lengths into matmuls and elementwise ops"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassFailure> {
        let mut changed = false;
        for n in g.node_ids() {
            if !g.contains_node(n) || !matches!(g.node(n).op, Op::Recurrent(_)) {
                continue;
            }
            changed |= expand(g, cx, n)?;
        }
        Ok(changed)
    }
}

/// Adds nodes of one dtype to the graph.
struct Builder<'g> {
    g: &'g mut Graph,
    dtype: DType,
    /// The node being expanded, for error messages.
    what: String,
    /// Scalar constants made so far, by their bits.
    scalars: HashMap<u64, ValueId>,
}

impl Builder<'_> {
    fn op(&mut self, op: impl Into<Op>, ins: &[ValueId]) -> Result<ValueId, PassFailure> {
        self.g
            .add(op, ins)
            .map_err(|e| PassFailure(format!("expanding {}: {e}", self.what)))
    }
    fn scalar(&mut self, v: f64) -> Result<ValueId, PassFailure> {
        if let Some(&c) = self.scalars.get(&v.to_bits()) {
            return Ok(c);
        }
        let t = Tensor::from_vec_f64(self.dtype, &[], vec![v]).map_err(PassFailure)?;
        let c = self.op(Constant { value: t }, &[])?;
        self.scalars.insert(v.to_bits(), c);
        Ok(c)
    }
    fn bin(&mut self, kind: BinaryKind, a: ValueId, b: ValueId) -> Result<ValueId, PassFailure> {
        self.op(Binary::new(kind), &[a, b])
    }
    fn add(&mut self, a: ValueId, b: ValueId) -> Result<ValueId, PassFailure> {
        self.bin(BinaryKind::Add, a, b)
    }
    fn mul(&mut self, a: ValueId, b: ValueId) -> Result<ValueId, PassFailure> {
        self.bin(BinaryKind::Mul, a, b)
    }
    fn unary(&mut self, kind: UnaryKind, x: ValueId) -> Result<ValueId, PassFailure> {
        self.op(Unary::new(kind), &[x])
    }
    /// `x[.., start..end, ..]` along `axis`.
    fn slice(
        &mut self,
        x: ValueId,
        axis: i64,
        start: usize,
        end: usize,
    ) -> Result<ValueId, PassFailure> {
        let s = Slice::new(vec![start as i64], vec![end as i64], vec![axis], vec![1]);
        self.op(s, &[x])
    }
    /// Direction `d` of a tensor whose first axis is the direction.
    fn dir(&mut self, x: ValueId, d: usize) -> Result<ValueId, PassFailure> {
        let s = self.slice(x, 0, d, d + 1)?;
        self.op(Squeeze { axes: vec![0] }, &[s])
    }
    fn transpose(&mut self, x: ValueId, perm: &[i64]) -> Result<ValueId, PassFailure> {
        self.op(Transpose::new(perm.to_vec()), &[x])
    }
    fn concat(&mut self, xs: &[ValueId], axis: i64) -> Result<ValueId, PassFailure> {
        if let [x] = xs {
            return Ok(*x);
        }
        self.op(Concat { axis }, xs)
    }
}

/// What the expansion needs from the op, checked before anything is built.
struct Plan {
    op: Recurrent,
    seq: usize,
    batch: usize,
    input: usize,
    hidden: usize,
    /// Whether the LSTM peepholes are not all compile-time zero.
    peepholes: bool,
}

fn plan(g: &Graph, cx: &PassCtx, n: NodeId) -> Option<Plan> {
    let node = g.node(n);
    let Op::Recurrent(op) = &node.op else {
        return None;
    };
    let ins = &node.inputs;
    let x = &g.value(ins[0]).ty;
    if !matches!(x.dtype, DType::F32 | DType::F64) {
        return None;
    }
    let xd = x.shape.concrete()?;
    let [a, b, input] = xd[..] else { return None };
    let (seq, batch) = if op.layout == 0 { (a, b) } else { (b, a) };
    let hidden = usize::try_from(op.hidden_size).ok()?;
    let n_acts = op.kind.num_activations() * op.direction.count();
    if op.activations.len() != n_acts
        || op.alphas.len() != n_acts
        || op.betas.len() != n_acts
        || !op
            .activations
            .iter()
            .all(|a| ACTIVATIONS.contains(&a.as_str()))
        || op.clip.0.is_nan()
        || op.clip.0 <= 0.0
        || !matches!(op.layout, 0 | 1)
    {
        return None;
    }
    let steps = seq.checked_mul(op.direction.count())?;
    if seq == 0 || batch == 0 || steps > MAX_STEPS {
        return None;
    }
    let lens = const_value(g, cx.weights, cx.opts, ins[4])?;
    if lens.len() != batch || lens.to_i64().iter().any(|&l| l != seq as i64) {
        return None;
    }
    let peepholes = op.kind == CellKind::Lstm
        && !const_value(g, cx.weights, cx.opts, ins[7])
            .is_some_and(|t| t.to_f64().iter().all(|&v| v == 0.0));
    Some(Plan {
        op: op.clone(),
        seq,
        batch,
        input,
        hidden,
        peepholes,
    })
}

/// One direction's weights, as the per-step ops read them.
struct DirWeights {
    /// `[batch, hidden]` initial states.
    h0: ValueId,
    c0: Option<ValueId>,
    /// `[seq·batch, gates·hidden]`: every step's input projection plus biases.
    xp: ValueId,
    /// `Rᵀ`, `[hidden, gates·hidden]` (GRU without `linear_before_reset`:
    /// only the `z, r` columns, `[hidden, 2·hidden]`).
    rt: ValueId,
    /// GRU without `linear_before_reset`: `R_hᵀ`, `[hidden, hidden]`.
    rt_h: Option<ValueId>,
    /// GRU with `linear_before_reset`: `Rbh`, `[hidden]`.
    rbh: Option<ValueId>,
    /// LSTM peepholes `(i, o, f)`, each `[hidden]`.
    peep: Option<[ValueId; 3]>,
}

fn expand(g: &mut Graph, cx: &mut PassCtx, n: NodeId) -> Result<bool, PassFailure> {
    let Some(p) = plan(g, cx, n) else {
        return Ok(false);
    };
    let ins = g.node(n).inputs.clone();
    let outs = g.node(n).outputs.clone();
    let used = |v: ValueId| is_output(g, v) || !g.users(v).is_empty();
    let (want_y, want_h, want_c) = (
        used(outs[0]),
        used(outs[1]),
        p.op.kind == CellKind::Lstm && used(outs[2]),
    );
    let what = g.label(n);
    let mut b = Builder {
        dtype: g.value(ins[0]).ty.dtype,
        g,
        what,
        scalars: HashMap::new(),
    };
    let op = &p.op;
    let (s, bt, h) = (p.seq, p.batch, p.hidden);
    let lstm = op.kind == CellKind::Lstm;

    // Work in layout 0.
    let (mut x, mut h0, mut c0) = (ins[0], ins[5], lstm.then(|| ins[6]));
    if op.layout == 1 {
        x = b.transpose(x, &[1, 0, 2])?;
        h0 = b.transpose(h0, &[1, 0, 2])?;
        c0 = c0.map(|c| b.transpose(c, &[1, 0, 2])).transpose()?;
    }
    let x2 = b.op(Reshape::new(vec![(s * bt) as i64, p.input as i64]), &[x])?;
    let clip = op.clip.0.is_finite().then_some(op.clip.0);

    let mut ys: Vec<ValueId> = Vec::new();
    let (mut yh, mut yc) = (Vec::new(), Vec::new());
    for d in 0..op.direction.count() {
        let wd = dir_weights(&mut b, &p, &ins, d, x2, h0, c0)?;
        let reverse = op.direction == Direction::Reverse || d == 1;
        let mut hs = wd.h0;
        let mut cs = wd.c0;
        let mut by_time: Vec<Option<ValueId>> = vec![None; s];
        let acts = Acts { op, d, clip };
        for step in 0..s {
            let t = if reverse { s - 1 - step } else { step };
            let xt = b.slice(wd.xp, 0, t * bt, (t + 1) * bt)?;
            match op.kind {
                CellKind::Rnn => {
                    let hr = b.op(MatMul, &[hs, wd.rt])?;
                    let pre = b.add(hr, xt)?;
                    hs = acts.apply(&mut b, 0, pre)?;
                }
                CellKind::Gru => {
                    let hr = b.op(MatMul, &[hs, wd.rt])?;
                    let xz = b.slice(xt, 1, 0, h)?;
                    let xr = b.slice(xt, 1, h, 2 * h)?;
                    let xh = b.slice(xt, 1, 2 * h, 3 * h)?;
                    let hz = b.slice(hr, 1, 0, h)?;
                    let hrr = b.slice(hr, 1, h, 2 * h)?;
                    let zp = b.add(xz, hz)?;
                    let z = acts.apply(&mut b, 0, zp)?;
                    let rp = b.add(xr, hrr)?;
                    let r = acts.apply(&mut b, 0, rp)?;
                    let cand_pre = match (wd.rt_h, wd.rbh) {
                        (Some(rt_h), _) => {
                            let rh = b.mul(r, hs)?;
                            let m = b.op(MatMul, &[rh, rt_h])?;
                            b.add(xh, m)?
                        }
                        (None, Some(rbh)) => {
                            let hh = b.slice(hr, 1, 2 * h, 3 * h)?;
                            let hb = b.add(hh, rbh)?;
                            let m = b.mul(r, hb)?;
                            b.add(xh, m)?
                        }
                        (None, None) => {
                            return Err(PassFailure(format!(
                                "expanding {}: GRU weights incomplete",
                                b.what
                            )))
                        }
                    };
                    let cand = acts.apply(&mut b, 1, cand_pre)?;
                    // (1 − z)·cand + z·h
                    let one = b.scalar(1.0)?;
                    let nz = b.bin(BinaryKind::Sub, one, z)?;
                    let a = b.mul(nz, cand)?;
                    let zh = b.mul(z, hs)?;
                    hs = b.add(a, zh)?;
                }
                CellKind::Lstm => {
                    let Some(c_prev) = cs else {
                        return Err(PassFailure(format!(
                            "expanding {}: LSTM without a cell state",
                            b.what
                        )));
                    };
                    let hr = b.op(MatMul, &[hs, wd.rt])?;
                    let gates = b.add(hr, xt)?;
                    // Gate order i, o, f, c; peepholes i, o, f.
                    let mut gi = b.slice(gates, 1, 0, h)?;
                    let mut go = b.slice(gates, 1, h, 2 * h)?;
                    let mut gf = b.slice(gates, 1, 2 * h, 3 * h)?;
                    let gc = b.slice(gates, 1, 3 * h, 4 * h)?;
                    if let Some([pi, _, pf]) = wd.peep {
                        let m = b.mul(c_prev, pi)?;
                        gi = b.add(gi, m)?;
                        let m = b.mul(c_prev, pf)?;
                        gf = b.add(gf, m)?;
                    }
                    let i = acts.apply(&mut b, 0, gi)?;
                    let f = acts.apply(&mut b, 0, gf)?;
                    let cc = acts.apply(&mut b, 1, gc)?;
                    let fc = b.mul(f, c_prev)?;
                    let ic = b.mul(i, cc)?;
                    let c = b.add(fc, ic)?;
                    if let Some([_, po, _]) = wd.peep {
                        let m = b.mul(c, po)?;
                        go = b.add(go, m)?;
                    }
                    let o = acts.apply(&mut b, 0, go)?;
                    let ac = acts.apply(&mut b, 2, c)?;
                    hs = b.mul(o, ac)?;
                    cs = Some(c);
                }
            }
            by_time[t] = Some(hs);
        }
        if want_y {
            let mut steps = Vec::with_capacity(s);
            for v in by_time.into_iter().flatten() {
                steps.push(b.op(Unsqueeze { axes: vec![0, 1] }, &[v])?);
            }
            ys.push(b.concat(&steps, 0)?);
        }
        if want_h {
            yh.push(b.op(Unsqueeze { axes: vec![0] }, &[hs])?);
        }
        if let (true, Some(c)) = (want_c, cs) {
            yc.push(b.op(Unsqueeze { axes: vec![0] }, &[c])?);
        }
    }
    let mut new = Vec::with_capacity(outs.len());
    new.push(if want_y {
        let y = b.concat(&ys, 1)?;
        if op.layout == 1 {
            b.transpose(y, &[2, 0, 1, 3])?
        } else {
            y
        }
    } else {
        outs[0]
    });
    let state = |b: &mut Builder, vs: &[ValueId]| -> Result<ValueId, PassFailure> {
        let v = b.concat(vs, 0)?;
        if op.layout == 1 {
            b.transpose(v, &[1, 0, 2])
        } else {
            Ok(v)
        }
    };
    new.push(if want_h { state(&mut b, &yh)? } else { outs[1] });
    if lstm {
        new.push(if want_c { state(&mut b, &yc)? } else { outs[2] });
    }
    for (old, &nv) in outs.iter().zip(&new) {
        if b.g.value(*old).ty != b.g.value(nv).ty {
            return Err(PassFailure(format!(
                "expanding {}: built {} for {}",
                b.what,
                b.g.value(nv).ty,
                b.g.value(*old).ty
            )));
        }
    }
    replace_node(b.g, cx.weights, n, &new);
    Ok(true)
}

/// Direction `d`'s states, input projection and recurrent weights.
#[allow(clippy::too_many_arguments)]
fn dir_weights(
    b: &mut Builder,
    p: &Plan,
    ins: &[ValueId],
    d: usize,
    x2: ValueId,
    h0: ValueId,
    c0: Option<ValueId>,
) -> Result<DirWeights, PassFailure> {
    let op = &p.op;
    let h = p.hidden;
    let gh = op.kind.gates() * h;
    let w = b.dir(ins[1], d)?;
    let wt = b.transpose(w, &[1, 0])?;
    let r = b.dir(ins[2], d)?;
    let bias = b.dir(ins[3], d)?;
    let wb = b.slice(bias, 0, 0, gh)?;
    let rb = b.slice(bias, 0, gh, 2 * gh)?;
    let gru = op.kind == CellKind::Gru;
    let (proj_bias, rbh) = if gru && op.linear_before_reset {
        // Rbh is multiplied by the reset gate: keep it out of the projection.
        let wzr = b.slice(wb, 0, 0, 2 * h)?;
        let rzr = b.slice(rb, 0, 0, 2 * h)?;
        let zr = b.add(wzr, rzr)?;
        let wh = b.slice(wb, 0, 2 * h, 3 * h)?;
        let pb = b.concat(&[zr, wh], 0)?;
        (pb, Some(b.slice(rb, 0, 2 * h, 3 * h)?))
    } else {
        (b.add(wb, rb)?, None)
    };
    let proj = b.op(MatMul, &[x2, wt])?;
    let xp = b.add(proj, proj_bias)?;
    let (rt, rt_h) = if gru && !op.linear_before_reset {
        let rzr = b.slice(r, 0, 0, 2 * h)?;
        let rh = b.slice(r, 0, 2 * h, 3 * h)?;
        (b.transpose(rzr, &[1, 0])?, Some(b.transpose(rh, &[1, 0])?))
    } else {
        (b.transpose(r, &[1, 0])?, None)
    };
    let h0 = b.dir(h0, d)?;
    let c0 = c0.map(|c| b.dir(c, d)).transpose()?;
    let peep = if p.peepholes {
        let pd = b.dir(ins[7], d)?;
        Some([
            b.slice(pd, 0, 0, h)?,
            b.slice(pd, 0, h, 2 * h)?,
            b.slice(pd, 0, 2 * h, 3 * h)?,
        ])
    } else {
        None
    };
    Ok(DirWeights {
        h0,
        c0,
        xp,
        rt,
        rt_h,
        rbh,
        peep,
    })
}

/// The op's activation functions for one direction.
struct Acts<'a> {
    op: &'a Recurrent,
    d: usize,
    clip: Option<f64>,
}

impl Acts<'_> {
    /// Activation `k` of this direction on `x`, after the clip.
    fn apply(&self, b: &mut Builder, k: usize, x: ValueId) -> Result<ValueId, PassFailure> {
        let i = self.d * self.op.kind.num_activations() + k;
        let (alpha, beta) = (self.op.alphas[i].0, self.op.betas[i].0);
        let x = match self.clip {
            Some(c) => {
                let lo = b.scalar(-c)?;
                let hi = b.scalar(c)?;
                b.op(Clip, &[x, lo, hi])?
            }
            None => x,
        };
        let with = |kind: UnaryKind, a: f64, bb: f64| Unary {
            alpha: F64(a),
            beta: F64(bb),
            ..Unary::new(kind)
        };
        match self.op.activations[i].as_str() {
            "relu" => b.unary(UnaryKind::Relu, x),
            "tanh" => b.unary(UnaryKind::Tanh, x),
            "sigmoid" => b.unary(UnaryKind::Sigmoid, x),
            "softsign" => b.unary(UnaryKind::Softsign, x),
            "softplus" => b.unary(UnaryKind::Softplus, x),
            "leakyrelu" => b.op(with(UnaryKind::LeakyRelu, alpha, 0.0), &[x]),
            "thresholdedrelu" => b.op(with(UnaryKind::ThresholdedRelu, alpha, 0.0), &[x]),
            "elu" => b.op(with(UnaryKind::Elu, alpha, 0.0), &[x]),
            "hardsigmoid" => b.op(with(UnaryKind::HardSigmoid, alpha, beta), &[x]),
            "affine" => {
                let a = b.scalar(alpha)?;
                let c = b.scalar(beta)?;
                let m = b.mul(x, a)?;
                b.add(m, c)
            }
            "scaledtanh" => {
                let bv = b.scalar(beta)?;
                let a = b.scalar(alpha)?;
                let m = b.mul(x, bv)?;
                let t = b.unary(UnaryKind::Tanh, m)?;
                b.mul(t, a)
            }
            other => Err(PassFailure(format!(
                "expanding {}: unknown activation {other:?}",
                b.what
            ))),
        }
    }
}
