//! Recurrent layers: `rnn`, `gru` and `lstm`, one op per layer with ONNX's
//! gate layouts and equations.
//!
//! Every input is explicit (the ONNX converter fills absent biases, initial
//! states, peepholes and sequence lengths with their defaults), so the op has
//! a fixed arity: `x, w, r, b, sequence_lens, initial_h` and, for `lstm`,
//! `initial_c, p`. Outputs are `y, y_h` and, for `lstm`, `y_c`.
//!
//! With `layout = 0`, `x` is `[seq, batch, input]`, `y` is
//! `[seq, dirs, batch, hidden]` and the states are `[dirs, batch, hidden]`;
//! `layout = 1` puts batch first in all of them. A batch entry with a shorter
//! sequence length stops early: its later `y` rows are zero and its final
//! state is the one at its last step (for the reverse direction, its first).

use ndarray::{s, Array2, Array3, ArrayD, Axis, Ix3, IxDyn};

use crate::attr::{AttrError, AttrReader, AttrWriter, F64};
use crate::op::{
    attr_err, dtype_err, expect_arity, shape_err, FusionKind, OpDef, OpError, OpResult,
};
use crate::ops::pool::known_dim;
use crate::ops::require_float;
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    Rnn,
    Gru,
    Lstm,
}

impl CellKind {
    /// Gates per direction: rows of `w` and `r` are `gates * hidden`.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Rnn => 1,
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
        }
    }
    /// Activation functions per direction.
    pub fn num_activations(self) -> usize {
        match self {
            CellKind::Rnn => 1,
            CellKind::Gru => 2,
            CellKind::Lstm => 3,
        }
    }
    /// ONNX's default activations, one direction's worth.
    pub fn default_activations(self) -> &'static [&'static str] {
        match self {
            CellKind::Rnn => &["tanh"],
            CellKind::Gru => &["sigmoid", "tanh"],
            CellKind::Lstm => &["sigmoid", "tanh", "tanh"],
        }
    }
    fn spelling(self) -> &'static str {
        match self {
            CellKind::Rnn => "rnn",
            CellKind::Gru => "gru",
            CellKind::Lstm => "lstm",
        }
    }
    fn num_inputs(self) -> usize {
        if self == CellKind::Lstm {
            8
        } else {
            6
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Forward,
    Reverse,
    Bidirectional,
}

impl Direction {
    pub fn from_spelling(s: &str) -> Option<Direction> {
        match s {
            "forward" => Some(Direction::Forward),
            "reverse" => Some(Direction::Reverse),
            "bidirectional" => Some(Direction::Bidirectional),
            _ => None,
        }
    }
    fn spelling(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Reverse => "reverse",
            Direction::Bidirectional => "bidirectional",
        }
    }
    pub fn count(self) -> usize {
        if self == Direction::Bidirectional {
            2
        } else {
            1
        }
    }
}

/// The activation functions ONNX allows in recurrent layers (lower case).
pub const ACTIVATIONS: &[&str] = &[
    "relu",
    "tanh",
    "sigmoid",
    "affine",
    "leakyrelu",
    "thresholdedrelu",
    "scaledtanh",
    "hardsigmoid",
    "elu",
    "softsign",
    "softplus",
];

/// ONNX's default (alpha, beta) for an activation.
pub fn activation_defaults(name: &str) -> (f64, f64) {
    match name {
        "leakyrelu" => (0.01, 0.0),
        "thresholdedrelu" | "elu" | "affine" => (1.0, 0.0),
        "scaledtanh" => (1.0, 1.0),
        "hardsigmoid" => (0.2, 0.5),
        _ => (0.0, 0.0),
    }
}

fn activate(name: &str, alpha: f64, beta: f64, x: f64) -> f64 {
    match name {
        "relu" => x.max(0.0),
        "tanh" => x.tanh(),
        "sigmoid" => 1.0 / (1.0 + (-x).exp()),
        "affine" => alpha * x + beta,
        "leakyrelu" => {
            if x >= 0.0 {
                x
            } else {
                alpha * x
            }
        }
        "thresholdedrelu" => {
            if x > alpha {
                x
            } else {
                0.0
            }
        }
        "scaledtanh" => alpha * (beta * x).tanh(),
        "hardsigmoid" => (alpha * x + beta).clamp(0.0, 1.0),
        "elu" => {
            if x >= 0.0 {
                x
            } else {
                alpha * (x.exp() - 1.0)
            }
        }
        "softsign" => x / (1.0 + x.abs()),
        "softplus" => {
            if x > 0.0 {
                x + (-x).exp().ln_1p()
            } else {
                x.exp().ln_1p()
            }
        }
        _ => f64::NAN, // rejected by `check`
    }
}

/// One recurrent layer. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Recurrent {
    pub kind: CellKind,
    pub hidden_size: i64,
    pub direction: Direction,
    /// Lower-case activation names, `num_activations` per direction.
    pub activations: Vec<String>,
    /// Alpha and beta of each activation (one entry per activation).
    pub alphas: Vec<F64>,
    pub betas: Vec<F64>,
    /// Pre-activation clipping to `[-clip, clip]`; infinity disables it.
    pub clip: F64,
    /// GRU: apply the reset gate after the recurrent matmul.
    pub linear_before_reset: bool,
    pub layout: i64,
}

impl Recurrent {
    /// A layer with ONNX's default activations and attributes.
    pub fn new(kind: CellKind, hidden_size: i64, direction: Direction) -> Recurrent {
        let acts: Vec<String> = (0..direction.count())
            .flat_map(|_| kind.default_activations().iter().map(|s| s.to_string()))
            .collect();
        let (alphas, betas) = acts
            .iter()
            .map(|a| {
                let (x, y) = activation_defaults(a);
                (F64(x), F64(y))
            })
            .unzip();
        Recurrent {
            kind,
            hidden_size,
            direction,
            activations: acts,
            alphas,
            betas,
            clip: F64(f64::INFINITY),
            linear_before_reset: false,
            layout: 0,
        }
    }

    fn check_attrs(&self) -> OpResult<usize> {
        let h = usize::try_from(self.hidden_size)
            .ok()
            .filter(|&h| h > 0)
            .map_or_else(|| attr_err("hidden_size", "must be positive"), Ok)?;
        let n = self.kind.num_activations() * self.direction.count();
        if self.activations.len() != n {
            return attr_err(
                "activations",
                format!("expected {n}, found {}", self.activations.len()),
            );
        }
        if let Some(a) = self
            .activations
            .iter()
            .find(|a| !ACTIVATIONS.contains(&a.as_str()))
        {
            return attr_err("activations", format!("unknown activation {a:?}"));
        }
        if self.alphas.len() != n || self.betas.len() != n {
            return attr_err("alphas", format!("expected {n} alphas and betas"));
        }
        if self.clip.0.is_nan() || self.clip.0 <= 0.0 {
            return attr_err("clip", "must be positive");
        }
        if self.layout != 0 && self.layout != 1 {
            return attr_err("layout", "must be 0 or 1");
        }
        if self.linear_before_reset && self.kind != CellKind::Gru {
            return attr_err("linear_before_reset", "applies to gru only");
        }
        Ok(h)
    }

    /// (seq, batch, input, hidden), after validating every input's type.
    fn plan(&self, inputs: &[&TensorType]) -> OpResult<(usize, usize, usize, usize)> {
        expect_arity(inputs, self.kind.num_inputs())?;
        let h = self.check_attrs()?;
        let x = inputs[0];
        let op = self.kind.spelling();
        require_float(x, &format!("{op} input"))?;
        if x.rank() != 3 {
            return shape_err(format!("{op} input must have rank 3, found {x}"));
        }
        let (ts, bs) = if self.layout == 0 { (0, 1) } else { (1, 0) };
        let seq = known_dim(x, ts, op)?;
        let batch = known_dim(x, bs, op)?;
        let input = known_dim(x, 2, op)?;
        let (d, g) = (self.direction.count(), self.kind.gates());
        let state = if self.layout == 0 {
            vec![d, batch, h]
        } else {
            vec![batch, d, h]
        };
        let mut want: Vec<(&str, Vec<usize>)> = vec![
            ("w", vec![d, g * h, input]),
            ("r", vec![d, g * h, h]),
            ("b", vec![d, 2 * g * h]),
            ("sequence_lens", vec![batch]),
            ("initial_h", state.clone()),
        ];
        if self.kind == CellKind::Lstm {
            want.push(("initial_c", state));
            want.push(("p", vec![d, 3 * h]));
        }
        for (i, (name, dims)) in want.iter().enumerate() {
            let t = inputs[i + 1];
            let is_lens = *name == "sequence_lens";
            if is_lens && !t.dtype.is_int() {
                return dtype_err(format!("{op} sequence_lens must be integers, found {t}"));
            }
            if !is_lens && t.dtype != x.dtype {
                return dtype_err(format!("{op} {name} must be {}, found {t}", x.dtype));
            }
            if t.shape.concrete().as_deref() != Some(dims.as_slice()) {
                return shape_err(format!("{op} {name} must be {dims:?}, found {t}"));
            }
        }
        Ok((seq, batch, input, h))
    }

    fn act(&self, dir: usize, k: usize, x: f64) -> f64 {
        let i = dir * self.kind.num_activations() + k;
        let c = self.clip.0;
        activate(
            &self.activations[i],
            self.alphas[i].0,
            self.betas[i].0,
            x.clamp(-c, c),
        )
    }
}

/// `m` is `[rows, cols]`; returns `m · v`.
fn matvec(m: &Array2<f64>, v: &[f64]) -> Vec<f64> {
    m.rows()
        .into_iter()
        .map(|r| r.iter().zip(v).map(|(a, b)| a * b).sum())
        .collect()
}

impl OpDef for Recurrent {
    const SPELLINGS: &'static [&'static str] = &["rnn", "gru", "lstm"];

    fn parse(spelling: &str, a: &mut AttrReader) -> Result<Self, AttrError> {
        let kind = match spelling {
            "rnn" => CellKind::Rnn,
            "gru" => CellKind::Gru,
            _ => CellKind::Lstm,
        };
        let hidden = a.req_int("hidden_size")?;
        let dir_s = a.str("direction", "forward")?;
        let direction = Direction::from_spelling(&dir_s).ok_or_else(|| AttrError {
            attr: "direction".into(),
            msg: format!("expected forward, reverse or bidirectional, found {dir_s:?}"),
        })?;
        let mut op = Recurrent::new(kind, hidden, direction);
        if let Some(s) = a.opt_str("activations")? {
            op.activations = s.split(',').map(|x| x.trim().to_string()).collect();
        }
        let floats = |v: Option<Vec<f64>>, d: &[F64]| {
            v.map_or_else(|| d.to_vec(), |v| v.into_iter().map(F64).collect())
        };
        op.alphas = floats(a.opt_floats("alphas")?, &op.alphas);
        op.betas = floats(a.opt_floats("betas")?, &op.betas);
        op.clip = F64(a.float("clip", f64::INFINITY)?);
        op.linear_before_reset = a.int("linear_before_reset", 0)? != 0;
        op.layout = a.int("layout", 0)?;
        Ok(op)
    }
    fn spelling(&self) -> &'static str {
        self.kind.spelling()
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        let f = |v: &[F64]| v.iter().map(|x| x.0).collect::<Vec<_>>();
        w.int("hidden_size", self.hidden_size);
        w.str("direction", self.direction.spelling());
        w.str("activations", &self.activations.join(","));
        w.floats("alphas", &f(&self.alphas));
        w.floats("betas", &f(&self.betas));
        w.float("clip", self.clip.0);
        w.int("linear_before_reset", self.linear_before_reset as i64);
        w.int("layout", self.layout);
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<Vec<TensorType>> {
        let (seq, batch, _, h) = self.plan(inputs)?;
        let d = self.direction.count();
        let k = Dim::Known;
        let (y, state) = if self.layout == 0 {
            (
                vec![k(seq), k(d), k(batch), k(h)],
                vec![k(d), k(batch), k(h)],
            )
        } else {
            (
                vec![k(batch), k(seq), k(d), k(h)],
                vec![k(batch), k(d), k(h)],
            )
        };
        let x = inputs[0];
        let mut outs = vec![
            x.with_shape(Shape::from(y)),
            x.with_shape(Shape::from(state.clone())),
        ];
        if self.kind == CellKind::Lstm {
            outs.push(x.with_shape(Shape::from(state)));
        }
        Ok(outs)
    }
    fn fusion_kind(&self) -> FusionKind {
        FusionKind::Opaque
    }
    fn eval(&self, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let out_tys = self.infer(&tys.iter().collect::<Vec<_>>())?;
        let (seq, batch, _, h) = self.plan(&tys.iter().collect::<Vec<_>>())?;
        let (dirs, g) = (self.direction.count(), self.kind.gates());
        let three = |t: &Tensor| -> OpResult<Array3<f64>> {
            t.to_f64()
                .into_dimensionality::<Ix3>()
                .map_err(|e| OpError::Eval(e.to_string()))
        };
        // Work in layout 0; batch-first tensors are permuted on the way in and out.
        let mut x = three(inputs[0])?;
        let (mut h0, mut c0) = (three(inputs[5])?, None);
        if self.kind == CellKind::Lstm {
            c0 = Some(three(inputs[6])?);
        }
        if self.layout == 1 {
            x = x.permuted_axes([1, 0, 2]);
            h0 = h0.permuted_axes([1, 0, 2]);
            c0 = c0.map(|c| c.permuted_axes([1, 0, 2]));
        }
        let w = three(inputs[1])?;
        let r = three(inputs[2])?;
        let b = inputs[3].to_f64();
        let lens: Vec<usize> = inputs[4]
            .to_i64()
            .iter()
            .map(|&l| l.clamp(0, seq as i64) as usize)
            .collect();
        let p = (self.kind == CellKind::Lstm).then(|| inputs[7].to_f64());
        let mut y = ArrayD::<f64>::zeros(IxDyn(&[seq, dirs, batch, h]));
        let mut yh = Array3::<f64>::zeros((dirs, batch, h));
        let mut yc = Array3::<f64>::zeros((dirs, batch, h));
        for d in 0..dirs {
            let reverse = self.direction == Direction::Reverse || d == 1;
            let wd = w.index_axis(Axis(0), d).to_owned();
            let rd = r.index_axis(Axis(0), d).to_owned();
            let bd: Vec<f64> = b.index_axis(Axis(0), d).iter().copied().collect();
            let (wb, rb) = bd.split_at(g * h);
            let pd: Vec<f64> = p.as_ref().map_or_else(Vec::new, |p| {
                p.index_axis(Axis(0), d).iter().copied().collect()
            });
            for bi in 0..batch {
                let mut hs: Vec<f64> = h0.slice(s![d, bi, ..]).to_vec();
                let mut cs: Vec<f64> = c0
                    .as_ref()
                    .map_or_else(Vec::new, |c| c.slice(s![d, bi, ..]).to_vec());
                let len = lens[bi];
                for step in 0..len {
                    let t = if reverse { len - 1 - step } else { step };
                    let xt: Vec<f64> = x.slice(s![t, bi, ..]).to_vec();
                    let mut xw = matvec(&wd, &xt);
                    xw.iter_mut().zip(wb).for_each(|(a, b)| *a += b);
                    let mut hr = matvec(&rd, &hs);
                    hr.iter_mut().zip(rb).for_each(|(a, b)| *a += b);
                    match self.kind {
                        CellKind::Rnn => {
                            hs = (0..h).map(|j| self.act(d, 0, xw[j] + hr[j])).collect();
                        }
                        CellKind::Gru => {
                            // Gate order z, r, h.
                            let z: Vec<f64> =
                                (0..h).map(|j| self.act(d, 0, xw[j] + hr[j])).collect();
                            let rg: Vec<f64> = (0..h)
                                .map(|j| self.act(d, 0, xw[h + j] + hr[h + j]))
                                .collect();
                            let cand: Vec<f64> = if self.linear_before_reset {
                                (0..h)
                                    .map(|j| self.act(d, 1, xw[2 * h + j] + rg[j] * hr[2 * h + j]))
                                    .collect()
                            } else {
                                let rh: Vec<f64> = (0..h).map(|j| rg[j] * hs[j]).collect();
                                let rr = rd.slice(s![2 * h..3 * h, ..]).to_owned();
                                let m = matvec(&rr, &rh);
                                (0..h)
                                    .map(|j| self.act(d, 1, xw[2 * h + j] + m[j] + rb[2 * h + j]))
                                    .collect()
                            };
                            hs = (0..h)
                                .map(|j| (1.0 - z[j]) * cand[j] + z[j] * hs[j])
                                .collect();
                        }
                        CellKind::Lstm => {
                            // Gate order i, o, f, c; peepholes i, o, f.
                            let pre = |k: usize, j: usize| xw[k * h + j] + hr[k * h + j];
                            let mut hn = vec![0.0; h];
                            for j in 0..h {
                                let i = self.act(d, 0, pre(0, j) + pd[j] * cs[j]);
                                let f = self.act(d, 0, pre(2, j) + pd[2 * h + j] * cs[j]);
                                let cc = self.act(d, 1, pre(3, j));
                                let c = f * cs[j] + i * cc;
                                let o = self.act(d, 0, pre(1, j) + pd[h + j] * c);
                                cs[j] = c;
                                hn[j] = o * self.act(d, 2, c);
                            }
                            hs = hn;
                        }
                    }
                    for j in 0..h {
                        y[[t, d, bi, j]] = hs[j];
                    }
                }
                for j in 0..h {
                    yh[[d, bi, j]] = hs[j];
                    if self.kind == CellKind::Lstm {
                        yc[[d, bi, j]] = cs[j];
                    }
                }
            }
        }
        let (mut y, mut yh, mut yc) = (y, yh.into_dyn(), yc.into_dyn());
        if self.layout == 1 {
            y = y.permuted_axes(IxDyn(&[2, 0, 1, 3]));
            yh = yh.permuted_axes(IxDyn(&[1, 0, 2]));
            yc = yc.permuted_axes(IxDyn(&[1, 0, 2]));
        }
        let mut outs = vec![y, yh];
        if self.kind == CellKind::Lstm {
            outs.push(yc);
        }
        Ok(outs
            .into_iter()
            .zip(out_tys)
            .map(|(a, ty)| Tensor::from_f64(ty.dtype, a.as_standard_layout().into_owned()))
            .collect())
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
    fn zeros(shape: &[usize]) -> Tensor {
        t(shape, &vec![0.0; shape.iter().product()])
    }
    fn lens(v: &[i64]) -> Tensor {
        Tensor::from_vec_f64(
            DType::I32,
            &[v.len()],
            v.iter().map(|&x| x as f64).collect(),
        )
        .unwrap()
    }
    fn eval(op: &Recurrent, ins: &[Tensor]) -> Vec<Tensor> {
        let refs: Vec<&Tensor> = ins.iter().collect();
        let tys: Vec<TensorType> = ins.iter().map(|t| t.ty()).collect();
        let want = op.infer(&tys.iter().collect::<Vec<_>>()).unwrap();
        let out = op.eval(&refs).unwrap();
        assert_eq!(out.iter().map(|t| t.ty()).collect::<Vec<_>>(), want);
        out
    }

    #[test]
    fn rnn_identity_cell_accumulates() {
        // hidden 1, input 1, w = r = 1, activation affine(1, 0): h_t = x_t + h_{t-1}.
        let mut op = Recurrent::new(CellKind::Rnn, 1, Direction::Forward);
        op.activations = vec!["affine".into()];
        op.alphas = vec![F64(1.0)];
        op.betas = vec![F64(0.0)];
        let x = t(&[3, 2, 1], &[1., 10., 2., 20., 3., 30.]);
        let ins = [
            x,
            t(&[1, 1, 1], &[1.]),
            t(&[1, 1, 1], &[1.]),
            zeros(&[1, 2]),
            lens(&[3, 2]),
            t(&[1, 2, 1], &[100., 0.]),
        ];
        let out = eval(&op, &ins);
        // Batch 1 stops after two steps: its third y row is zero.
        assert_eq!(out[0].values_f64(), [101., 10., 103., 30., 106., 0.]);
        assert_eq!(out[1].values_f64(), [106., 30.]);
        // Reverse: batch 0 runs 3, 2, 1; batch 1 runs 20, 10 (its length is 2).
        op.direction = Direction::Reverse;
        let out = eval(&op, &ins);
        assert_eq!(out[0].values_f64(), [106., 30., 105., 20., 103., 0.]);
        assert_eq!(out[1].values_f64(), [106., 30.]);
    }

    #[test]
    fn lstm_one_step_by_hand() {
        // All weights zero, biases set so every gate's pre-activation is known:
        // i = o = f = sigmoid(0) = 0.5, c~ = tanh(0) = 0; c = 0.5 * c0, h = 0.5 tanh(c).
        let op = Recurrent::new(CellKind::Lstm, 1, Direction::Forward);
        let ins = [
            zeros(&[1, 1, 1]),
            zeros(&[1, 4, 1]),
            zeros(&[1, 4, 1]),
            zeros(&[1, 8]),
            lens(&[1]),
            zeros(&[1, 1, 1]),
            t(&[1, 1, 1], &[2.0]),
            zeros(&[1, 3]),
        ];
        let out = eval(&op, &ins);
        let h = 0.5 * 1f64.tanh();
        assert!((out[1].values_f64()[0] - h).abs() < 1e-12);
        assert_eq!(out[2].values_f64(), [1.0]);
    }

    #[test]
    fn gru_reset_variants_and_layout() {
        // hidden 1, input 1. z gate bias pushes z to sigmoid(0) = 0.5.
        let mut op = Recurrent::new(CellKind::Gru, 1, Direction::Forward);
        op.layout = 1;
        let ins = [
            t(&[1, 1, 1], &[1.0]),                 // x [batch, seq, input]
            t(&[1, 3, 1], &[0., 0., 1.]),          // w: only the candidate sees x
            t(&[1, 3, 1], &[0., 0., 1.]),          // r: candidate sees r * h
            t(&[1, 6], &[0., 0., 0., 0., 0., 1.]), // Rbh = 1
            lens(&[1]),
            t(&[1, 1, 1], &[2.0]), // h0 [batch, dirs, hidden]
        ];
        let before = eval(&op, &ins);
        // r = 0.5; candidate = tanh(x + (r*h0)*1 + Rbh) = tanh(1 + 1 + 1).
        let want = 0.5 * 3f64.tanh() + 0.5 * 2.0;
        assert!((before[1].values_f64()[0] - want).abs() < 1e-12);
        op.linear_before_reset = true;
        // candidate = tanh(x + r * (h0*1 + Rbh)) = tanh(1 + 1.5).
        let after = eval(&op, &ins);
        let want = 0.5 * 2.5f64.tanh() + 0.5 * 2.0;
        assert!((after[1].values_f64()[0] - want).abs() < 1e-12);
        assert_eq!(after[0].shape(), [1, 1, 1, 1]);
    }

    #[test]
    fn errors_and_round_trip() {
        let mut op = Recurrent::new(CellKind::Lstm, 2, Direction::Bidirectional);
        op.clip = F64(3.0);
        roundtrip(&op);
        let mut g = Recurrent::new(CellKind::Gru, 3, Direction::Reverse);
        g.linear_before_reset = true;
        g.layout = 1;
        roundtrip(&g);
        let x = TensorType::concrete(DType::F32, &[2, 1, 3]);
        let w = TensorType::concrete(DType::F32, &[1, 1, 3]);
        let r = TensorType::concrete(DType::F32, &[1, 1, 1]);
        let b = TensorType::concrete(DType::F32, &[1, 2]);
        let l = TensorType::concrete(DType::I32, &[1]);
        let h = TensorType::concrete(DType::F32, &[1, 1, 1]);
        let rnn = Recurrent::new(CellKind::Rnn, 1, Direction::Forward);
        assert!(rnn.infer(&[&x, &w, &r, &b, &l, &h]).is_ok());
        assert!(matches!(
            rnn.infer(&[&x, &r, &r, &b, &l, &h]),
            Err(OpError::Shape(_))
        ));
        assert!(matches!(
            rnn.infer(&[&x, &w, &r, &b, &h, &h]),
            Err(OpError::DType(_))
        ));
        assert!(matches!(rnn.infer(&[&x]), Err(OpError::Arity { .. })));
        let bad = |op: Recurrent| match op.infer(&[&x, &w, &r, &b, &l, &h]) {
            Err(OpError::Attr(a)) => a.attr,
            other => panic!("expected an attribute error, got {other:?}"),
        };
        assert_eq!(
            bad(Recurrent {
                hidden_size: 0,
                ..rnn.clone()
            }),
            "hidden_size"
        );
        assert_eq!(
            bad(Recurrent {
                activations: vec!["gelu".into()],
                ..rnn.clone()
            }),
            "activations"
        );
        assert_eq!(
            bad(Recurrent {
                layout: 2,
                ..rnn.clone()
            }),
            "layout"
        );
        assert_eq!(
            bad(Recurrent {
                clip: F64(0.0),
                ..rnn
            }),
            "clip"
        );
    }
}
