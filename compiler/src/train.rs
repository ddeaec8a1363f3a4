//! The compiled training step: one graph that runs the forward pass, the loss,
//! the backward pass (through [`crate::passes::autodiff::gradients`]) and the
//! optimizer's update.
//!
//! [`build_training_graph`] turns an inference model (graph + weights whose
//! output is the logits or prediction) into a graph whose
//!
//! - inputs are the data (the model's input), `target` (the same shape as the
//!   model's output: one-hot rows for class labels, or regression targets),
//!   every float param (now a graph input, so it can change between steps),
//!   the optimizer state (`<param>.<slot>`, e.g. `fc1.weight.m`) and `step`,
//!   the 1-based number of the update being taken (an f32 scalar);
//! - outputs are `loss`, `logits`, `lr` (the learning rate the schedule gave
//!   for this step), and `next.<name>` for every param and state tensor.
//!
//! Feeding `next.<name>` back as `<name>` (and `step + 1`) runs the next step.
//! The learning-rate schedule and Adam's bias correction (`1 - β^t`) are
//! computed inside the graph from `step`. The graph goes through the ordinary
//! `-O2` pipeline with [`crate::passes::PassOptions::fold_params`] off and is
//! code-generated like any other; the elementwise update of each tensor
//! becomes fused kernels.
//!
//! Losses are composites of ordinary ops (log_softmax, reductions,
//! elementwise), so they differentiate with the existing rules and fuse.

use std::collections::{BTreeMap, HashMap};
use std::f64::consts::PI;
use std::fmt;

use kiln_ir::dtype::DType;
use kiln_ir::grad::{GradCtx, GradError};
use kiln_ir::ops::binary::BinaryKind;
use kiln_ir::ops::elementwise::UnaryKind;
use kiln_ir::ops::norm::Softmax;
use kiln_ir::ops::norm_train::{BatchNormTrain, DropoutTrain};
use kiln_ir::ops::reduce::{Reduce, ReduceKind};
use kiln_ir::shape::{Shape, TensorType};
use kiln_ir::{Graph, Op, Tensor, ValueId};

use crate::passes::autodiff::{gradients, AutodiffError};

/// Why a training graph could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Spec(String),
    #[error("the model: {0}")]
    Model(String),
    #[error("building the loss/update: {0}")]
    Build(#[from] GradError),
    #[error("differentiating the loss: {0}")]
    Autodiff(#[from] AutodiffError),
}

/// The loss between the model's output `z` and `target` (same shape). Class
/// losses read `target` as one row per sample (one-hot for integer labels,
/// any distribution for cross-entropy).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Softmax cross-entropy over the last axis: `-Σ t·log_softmax(z)`, mean
    /// over the samples.
    CrossEntropy,
    /// Mean squared error over every element.
    Mse,
    /// Mean absolute error over every element.
    L1,
    /// Multiclass SVM hinge (margin 1): `Σ_{j≠y} max(0, z_j − z_y + 1)`,
    /// mean over the samples (one-hot `target`).
    Hinge,
    /// The same with each margin squared.
    SquaredHinge,
    /// Binary cross-entropy with logits, per element, mean over every element:
    /// `max(z, 0) − z·t + log(1 + exp(−|z|))`.
    BceWithLogits,
}

impl Loss {
    pub const NAMES: &'static [&'static str] = &[
        "cross_entropy",
        "mse",
        "l1",
        "hinge",
        "squared_hinge",
        "bce_with_logits",
    ];
    pub fn from_name(s: &str) -> Option<Loss> {
        Some(match s {
            "cross_entropy" | "ce" | "softmax_cross_entropy" => Loss::CrossEntropy,
            "mse" | "l2" => Loss::Mse,
            "l1" | "mae" => Loss::L1,
            "hinge" | "svm" => Loss::Hinge,
            "squared_hinge" => Loss::SquaredHinge,
            "bce_with_logits" | "bce" => Loss::BceWithLogits,
            _ => return None,
        })
    }
    /// Whether the target is a class (one-hot row per sample).
    pub fn is_classification(self) -> bool {
        matches!(
            self,
            Loss::CrossEntropy | Loss::Hinge | Loss::SquaredHinge | Loss::Mse | Loss::L1
        )
    }
}

/// A penalty on the weights (every float param of rank ≥ 2; biases and
/// other vectors are not penalised), added to the loss.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Regularizer {
    /// `l1 · Σ|w|`.
    pub l1: f64,
    /// `l2 · Σ w²` (note: no ½).
    pub l2: f64,
}

/// The update rule. Hyper-parameters follow PyTorch's `torch.optim`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptKind {
    /// `p ← p − lr·g`.
    Sgd,
    /// `v ← μv + g; p ← p − lr·v`.
    Momentum { mu: f64 },
    /// `v ← μv + g; p ← p − lr·(g + μv)`.
    Nesterov { mu: f64 },
    /// `s ← s + g²; p ← p − lr·g/(√s + ε)`.
    AdaGrad { eps: f64 },
    /// `s ← ρs + (1−ρ)g²; p ← p − lr·g/(√s + ε)`.
    RmsProp { rho: f64, eps: f64 },
    /// `m ← β1·m + (1−β1)g; v ← β2·v + (1−β2)g²;
    /// p ← p − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + ε)`.
    Adam { beta1: f64, beta2: f64, eps: f64 },
}

impl OptKind {
    pub const NAMES: &'static [&'static str] =
        &["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"];
    /// The kind with its usual defaults.
    pub fn from_name(s: &str) -> Option<OptKind> {
        Some(match s {
            "sgd" => OptKind::Sgd,
            "momentum" => OptKind::Momentum { mu: 0.9 },
            "nesterov" => OptKind::Nesterov { mu: 0.9 },
            "adagrad" => OptKind::AdaGrad { eps: 1e-10 },
            "rmsprop" => OptKind::RmsProp {
                rho: 0.99,
                eps: 1e-8,
            },
            "adam" | "adamw" => OptKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            _ => return None,
        })
    }
    /// The state tensors kept per param, each shaped like it.
    pub fn slots(&self) -> &'static [&'static str] {
        match self {
            OptKind::Sgd => &[],
            OptKind::Momentum { .. } | OptKind::Nesterov { .. } => &["velocity"],
            OptKind::AdaGrad { .. } => &["sum_sq"],
            OptKind::RmsProp { .. } => &["sq_avg"],
            OptKind::Adam { .. } => &["m", "v"],
        }
    }
}

/// The learning rate as a function of `k = step − 1`, the number of updates
/// already taken (so the first update uses the base rate).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Schedule {
    #[default]
    Constant,
    /// `lr · γ^⌊k / every⌋`.
    Step { every: usize, gamma: f64 },
    /// `lr · γ^k`.
    Exponential { gamma: f64 },
    /// `min + (lr − min)·(1 + cos(π·min(k, total)/total))/2`.
    Cosine { total: usize, min_lr: f64 },
}

impl Schedule {
    /// The rate for update `step` (1-based), in f64: the formula the graph
    /// computes.
    pub fn lr_at(&self, lr: f64, step: u64) -> f64 {
        let k = step.saturating_sub(1) as f64;
        match *self {
            Schedule::Constant => lr,
            Schedule::Step { every, gamma } => lr * gamma.powf((k / every as f64).floor()),
            Schedule::Exponential { gamma } => lr * gamma.powf(k),
            Schedule::Cosine { total, min_lr } => {
                let t = total as f64;
                min_lr + (lr - min_lr) * (1.0 + (PI * k.min(t) / t).cos()) / 2.0
            }
        }
    }

    /// `constant`, `step:EVERY:GAMMA`, `exp:GAMMA` or `cosine:TOTAL[:MIN_LR]`.
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize, what: &str| -> Result<f64, String> {
            parts
                .get(i)
                .ok_or_else(|| format!("schedule `{s}`: missing {what}"))?
                .parse::<f64>()
                .map_err(|_| format!("schedule `{s}`: {what} `{}` is not a number", parts[i]))
        };
        let count = |i: usize, what: &str| -> Result<usize, String> {
            let v = num(i, what)?;
            if v < 1.0 || v.fract() != 0.0 {
                return Err(format!("schedule `{s}`: {what} must be a positive integer"));
            }
            Ok(v as usize)
        };
        let sch = match parts[0] {
            "constant" | "none" if parts.len() == 1 => Schedule::Constant,
            "step" if parts.len() == 3 => Schedule::Step {
                every: count(1, "EVERY")?,
                gamma: num(2, "GAMMA")?,
            },
            "exp" | "exponential" if parts.len() == 2 => Schedule::Exponential {
                gamma: num(1, "GAMMA")?,
            },
            "cosine" if (2..=3).contains(&parts.len()) => Schedule::Cosine {
                total: count(1, "TOTAL")?,
                min_lr: if parts.len() == 3 {
                    num(2, "MIN_LR")?
                } else {
                    0.0
                },
            },
            _ => {
                return Err(format!(
                "schedule `{s}`: expected constant, step:EVERY:GAMMA, exp:GAMMA or cosine:TOTAL[:MIN_LR]"
            ))
            }
        };
        sch.check()?;
        Ok(sch)
    }

    fn check(&self) -> Result<(), String> {
        match *self {
            Schedule::Step { every, gamma } if every == 0 || gamma.is_nan() || gamma <= 0.0 => {
                Err("step schedule: EVERY must be ≥ 1 and GAMMA > 0".into())
            }
            Schedule::Exponential { gamma } if gamma.is_nan() || gamma <= 0.0 => {
                Err("exponential schedule: GAMMA must be > 0".into())
            }
            Schedule::Cosine { total: 0, .. } => Err("cosine schedule: TOTAL must be ≥ 1".into()),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Constant => write!(f, "constant"),
            Schedule::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
            Schedule::Exponential { gamma } => write!(f, "exp:{gamma}"),
            Schedule::Cosine { total, min_lr } => write!(f, "cosine:{total}:{min_lr}"),
        }
    }
}

/// An optimizer: the rule, its base rate and schedule, weight decay and
/// gradient clipping.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Optimizer {
    pub kind: OptKind,
    pub lr: f64,
    pub schedule: Schedule,
    /// Weight decay `λ`. Coupled (the default): `g ← g + λp` before the rule,
    /// as L2 regularisation does. Decoupled (AdamW): `p ← p − lr·λ·p` beside
    /// the rule's update.
    pub weight_decay: f64,
    pub decoupled_decay: bool,
    /// Scale all gradients together by `c / max(‖g‖, c)`, `‖g‖` the global
    /// L2 norm over every param's gradient.
    pub clip_norm: Option<f64>,
}

impl Optimizer {
    pub fn new(kind: OptKind, lr: f64) -> Optimizer {
        Optimizer {
            kind,
            lr,
            schedule: Schedule::Constant,
            weight_decay: 0.0,
            decoupled_decay: false,
            clip_norm: None,
        }
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub struct TrainSpec {
    pub loss: Loss,
    pub regularizer: Regularizer,
    pub optimizer: Optimizer,
    /// The model output to train (default: `logits` if there is one, else the
    /// first output).
    pub output: Option<String>,
    /// The batch size every symbolic dimension is bound to.
    pub batch: usize,
    /// The running-statistics momentum of training-form batch norms
    /// (PyTorch's convention: `new = (1 - m) old + m batch`).
    pub bn_momentum: f64,
}

/// A training (or evaluation) graph and the names that drive it.
#[derive(Clone, Debug)]
pub struct TrainGraph {
    pub graph: Graph,
    /// The data inputs (the model's own inputs).
    pub data: Vec<String>,
    /// The target input (shaped like `logits`).
    pub target: String,
    /// Trainable params, now graph inputs, in the model's param order.
    pub params: Vec<String>,
    /// Float params the step updates without training them (the running
    /// statistics of batch norms): graph inputs fed back like the state.
    pub buffers: Vec<String>,
    /// The dropout seed input (an i64 scalar), to change every step.
    pub seed: Option<String>,
    /// Optimizer state inputs, each with the param it belongs to.
    pub state: Vec<(String, String)>,
    /// `(output, input)`: feed output `next.x` back as input `x`.
    pub feedback: Vec<(String, String)>,
    /// Params that stay params (non-float ones): their weights must be given.
    pub frozen: Vec<String>,
}

/// The state tensor's name for `param` and `slot`.
pub fn state_name(param: &str, slot: &str) -> String {
    format!("{param}.{slot}")
}

/// The output that carries the next value of input `name`.
pub fn next_name(name: &str) -> String {
    format!("next.{name}")
}

struct Core {
    g: Graph,
    data: Vec<String>,
    params: Vec<(String, ValueId)>,
    /// Running statistics of training-form batch norms: `(param, next value)`.
    buffers: Vec<(String, ValueId)>,
    /// The dropout seed input, when the model has a dropout.
    seed: Option<String>,
    frozen: Vec<String>,
    logits: ValueId,
    target: ValueId,
    loss: ValueId,
}

fn f32_scalar(cx: &mut GradCtx, x: f64) -> Result<ValueId, GradError> {
    cx.scalar(x, DType::F32)
}

/// Copy the model with every symbol bound to `batch`, float params made
/// inputs, the output to train as `logits`, and the loss on it as `loss`.
///
/// In training form (`train`), each `batch_norm` becomes `batch_norm_train`
/// (batch statistics; its running mean and variance params are buffers, not
/// trained, whose next values are the op's second and third results) and
/// each `dropout` with a ratio above 0 becomes `dropout_train` on the `seed`
/// input. Otherwise the model's inference forms stay.
fn build_core(model: &Graph, spec: &TrainSpec, train: bool) -> Result<Core, TrainError> {
    if spec.batch == 0 {
        return Err(TrainError::Spec("the batch size must be at least 1".into()));
    }
    let dims: BTreeMap<String, usize> = model
        .symbols()
        .into_iter()
        .map(|s| (s, spec.batch))
        .collect();
    let (out_name, out_v) = match &spec.output {
        Some(n) => model
            .outputs()
            .iter()
            .find(|(k, _)| k == n)
            .cloned()
            .ok_or_else(|| TrainError::Model(format!("no output named `{n}`")))?,
        None => model
            .outputs()
            .iter()
            .find(|(k, _)| k == "logits")
            .or(model.outputs().first())
            .cloned()
            .ok_or_else(|| TrainError::Model("the graph has no outputs".into()))?,
    };
    let order = model
        .order()
        .map_err(|n| TrainError::Model(format!("cycle at {}", model.label(n))))?;

    let mut g = Graph::new(format!("{}_train", model.name));
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    let mut data = Vec::new();
    for &v in model.inputs() {
        let val = model.value(v);
        let name = val.name.clone().unwrap_or_default();
        let ty = val.ty.with_shape(val.ty.shape.bind(&dims));
        if !ty.shape.is_concrete() {
            return Err(TrainError::Model(format!(
                "input `{name}` has shape {} after binding",
                ty.shape
            )));
        }
        map.insert(v, g.add_input(name.clone(), ty));
        data.push(name);
    }
    let mut params = Vec::new();
    let mut frozen = Vec::new();
    for &p in model.params() {
        let val = model.value(p);
        let name = val.name.clone().unwrap_or_default();
        let ty = val.ty.with_shape(val.ty.shape.bind(&dims));
        let nv = if ty.dtype.is_float() {
            let nv = g.add_input(name.clone(), ty);
            params.push((name, nv));
            nv
        } else {
            frozen.push(name.clone());
            g.add_param(name, ty)
        };
        map.insert(p, nv);
    }
    let mut buffers: Vec<(String, ValueId)> = Vec::new();
    let mut seed: Option<ValueId> = None;
    for n in order {
        let node = model.node(n);
        let ins: Vec<ValueId> = node.inputs.iter().map(|v| map[v]).collect();
        let op = match (&node.op, train) {
            (Op::BatchNorm(bn), true) => {
                // The running mean and variance (inputs 3 and 4) must be
                // params: they become buffers the step updates.
                for &stat in &ins[3..] {
                    let Some(i) = params.iter().position(|(_, v)| *v == stat) else {
                        return Err(TrainError::Model(format!(
                            "{}: training needs the running statistics of batch_norm to be params",
                            model.label(n)
                        )));
                    };
                    if buffers.iter().any(|(b, _)| *b == params[i].0) {
                        return Err(TrainError::Model(format!(
                            "{}: running statistics `{}` are shared by two batch norms",
                            model.label(n),
                            params[i].0
                        )));
                    }
                    // The next value is filled in once the node exists.
                    buffers.push((params.remove(i).0, stat));
                }
                Op::BatchNormTrain(BatchNormTrain::new(bn.epsilon.0, spec.bn_momentum))
            }
            (Op::Dropout(d), true) if d.ratio.0 > 0.0 => {
                let s = match seed {
                    Some(s) => s,
                    None => {
                        if data
                            .iter()
                            .chain(params.iter().map(|(p, _)| p))
                            .any(|d| d == "seed")
                        {
                            return Err(TrainError::Model(
                                "the model uses the name `seed`, which a training graph with dropout reserves".into(),
                            ));
                        }
                        let s = g.add_input("seed", TensorType::new(DType::I64, Shape::scalar()));
                        seed = Some(s);
                        s
                    }
                };
                let nn = g
                    .add_node(DropoutTrain::new(d.ratio.0), &[ins[0], s])
                    .map_err(|e| TrainError::Model(format!("{}: {e}", model.label(n))))?;
                g.node_mut(nn).name = node.name.clone();
                let y = g.node(nn).outputs[0];
                g.value_mut(y).name = model.value(node.outputs[0]).name.clone();
                map.insert(node.outputs[0], y);
                continue;
            }
            (op, _) => op.clone(),
        };
        let is_bn_train = matches!(op, Op::BatchNormTrain(_));
        let nn = g
            .add_node(op, &ins)
            .map_err(|e| TrainError::Model(format!("{}: {e}", model.label(n))))?;
        if is_bn_train {
            let outs = g.node(nn).outputs.clone();
            let k = buffers.len();
            buffers[k - 2].1 = outs[1];
            buffers[k - 1].1 = outs[2];
        }
        g.node_mut(nn).name = node.name.clone();
        let outs = g.node(nn).outputs.clone();
        for (&old, &new) in node.outputs.iter().zip(&outs) {
            g.value_mut(new).name = model.value(old).name.clone();
            map.insert(old, new);
        }
    }
    let logits = map[&out_v];
    let lty = g.value(logits).ty.clone();
    if lty.dtype != DType::F32 {
        return Err(TrainError::Model(format!(
            "output `{out_name}` is {lty}; training needs f32"
        )));
    }
    if lty.rank() != 2 && spec.loss.is_classification() && spec.loss != Loss::Mse {
        return Err(TrainError::Model(format!(
            "output `{out_name}` is {lty}; a class loss needs [batch, classes]"
        )));
    }
    let target = g.add_input("target", lty.clone());
    let mut cx = GradCtx::new(&mut g);
    let mut loss = loss_value(&mut cx, spec.loss, logits, target)?;
    let r = spec.regularizer;
    if r.l1 != 0.0 || r.l2 != 0.0 {
        for (_, p) in &params {
            if cx.ty(*p).rank() < 2 {
                continue;
            }
            if r.l1 != 0.0 {
                let a = cx.unary(UnaryKind::Abs, *p)?;
                let s = cx.reduce_sum(a, &all_axes(&cx, a), false)?;
                let s = cx.scale(s, r.l1)?;
                loss = cx.add2(loss, s)?;
            }
            if r.l2 != 0.0 {
                let a = cx.mul(*p, *p)?;
                let s = cx.reduce_sum(a, &all_axes(&cx, a), false)?;
                let s = cx.scale(s, r.l2)?;
                loss = cx.add2(loss, s)?;
            }
        }
    }
    g.set_output("loss", loss);
    g.set_output("logits", logits);
    Ok(Core {
        g,
        data,
        params,
        buffers,
        seed: seed.map(|_| "seed".to_string()),
        frozen,
        logits,
        target,
        loss,
    })
}

fn all_axes(cx: &GradCtx, v: ValueId) -> Vec<usize> {
    (0..cx.ty(v).rank()).collect()
}

/// Sum over every axis to a scalar.
fn total(cx: &mut GradCtx, v: ValueId) -> Result<ValueId, GradError> {
    let axes = all_axes(cx, v);
    if axes.is_empty() {
        return Ok(v);
    }
    cx.add(
        Reduce::new(
            ReduceKind::Sum,
            axes.iter().map(|&a| a as i64).collect(),
            false,
        ),
        &[v],
    )
}

/// Append `loss` of `z` against `target` (same shape) to `g` as ordinary
/// ops; returns the scalar loss.
pub fn build_composite_loss(
    g: &mut Graph,
    loss: Loss,
    z: ValueId,
    target: ValueId,
) -> Result<ValueId, TrainError> {
    let mut cx = GradCtx::new(g);
    Ok(loss_value(&mut cx, loss, z, target)?)
}

/// The loss as ordinary ops.
fn loss_value(cx: &mut GradCtx, loss: Loss, z: ValueId, t: ValueId) -> Result<ValueId, GradError> {
    let dims = cx.dims(z)?;
    let numel: usize = dims.iter().product();
    let rows = dims.first().copied().unwrap_or(1).max(1);
    match loss {
        Loss::CrossEntropy => {
            let ls = cx.add(Softmax::new(-1, true), &[z])?;
            let p = cx.mul(t, ls)?;
            let s = total(cx, p)?;
            cx.scale(s, -1.0 / rows as f64)
        }
        Loss::Mse => {
            let d = cx.sub(z, t)?;
            let d2 = cx.mul(d, d)?;
            let s = total(cx, d2)?;
            cx.scale(s, 1.0 / numel as f64)
        }
        Loss::L1 => {
            let d = cx.sub(z, t)?;
            let a = cx.unary(UnaryKind::Abs, d)?;
            let s = total(cx, a)?;
            cx.scale(s, 1.0 / numel as f64)
        }
        Loss::Hinge | Loss::SquaredHinge => {
            let zt = cx.mul(z, t)?;
            let zy = cx.reduce_sum(zt, &[dims.len() - 1], true)?;
            let d = cx.sub(z, zy)?;
            let one = f32_scalar(cx, 1.0)?;
            let d = cx.add2(d, one)?;
            let m = cx.unary(UnaryKind::Relu, d)?;
            let m = if loss == Loss::SquaredHinge {
                cx.mul(m, m)?
            } else {
                m
            };
            // The true class's own margin is exactly 1: leave it out.
            let not_y = cx.sub(one, t)?;
            let m = cx.mul(m, not_y)?;
            let s = total(cx, m)?;
            cx.scale(s, 1.0 / rows as f64)
        }
        Loss::BceWithLogits => {
            let r = cx.unary(UnaryKind::Relu, z)?;
            let zt = cx.mul(z, t)?;
            let a = cx.unary(UnaryKind::Abs, z)?;
            let na = cx.neg(a)?;
            let e = cx.unary(UnaryKind::Exp, na)?;
            let one = f32_scalar(cx, 1.0)?;
            let e1 = cx.add2(e, one)?;
            let l = cx.unary(UnaryKind::Log, e1)?;
            let d = cx.sub(r, zt)?;
            let per = cx.add2(d, l)?;
            let s = total(cx, per)?;
            cx.scale(s, 1.0 / numel as f64)
        }
    }
}

/// A forward-only graph for evaluation: the same inputs as the training
/// graph minus the optimizer state and `step`; outputs `loss` and `logits`.
pub fn build_eval_graph(model: &Graph, spec: &TrainSpec) -> Result<TrainGraph, TrainError> {
    let core = build_core(model, spec, false)?;
    let _ = (core.logits, core.target, core.loss, core.buffers, core.seed);
    kiln_ir::verify(&core.g).map_err(|e| TrainError::Model(e.to_string()))?;
    Ok(TrainGraph {
        graph: core.g,
        data: core.data,
        target: "target".into(),
        params: core.params.into_iter().map(|(n, _)| n).collect(),
        buffers: vec![],
        seed: None,
        state: vec![],
        feedback: vec![],
        frozen: core.frozen,
    })
}

/// Build the training step of `model` (see the module docs).
pub fn build_training_graph(model: &Graph, spec: &TrainSpec) -> Result<TrainGraph, TrainError> {
    let opt = spec.optimizer;
    opt.schedule.check().map_err(TrainError::Spec)?;
    if !(opt.lr.is_finite() && opt.lr >= 0.0) {
        return Err(TrainError::Spec(format!(
            "the learning rate must be ≥ 0, found {}",
            opt.lr
        )));
    }
    if !(opt.weight_decay.is_finite() && opt.weight_decay >= 0.0) {
        return Err(TrainError::Spec(format!(
            "the weight decay must be ≥ 0, found {}",
            opt.weight_decay
        )));
    }
    if let Some(c) = opt.clip_norm {
        if !(c.is_finite() && c > 0.0) {
            return Err(TrainError::Spec(format!(
                "the clipping norm must be > 0, found {c}"
            )));
        }
    }
    match opt.kind {
        OptKind::Adam { beta1, beta2, .. }
            if !((0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2)) =>
        {
            return Err(TrainError::Spec(
                "Adam's β1 and β2 must lie in [0, 1)".into(),
            ))
        }
        OptKind::RmsProp { rho, .. } if !(0.0..1.0).contains(&rho) => {
            return Err(TrainError::Spec("RMSProp's ρ must lie in [0, 1)".into()))
        }
        _ => {}
    }
    let mut core = build_core(model, spec, true)?;
    if core.params.is_empty() {
        return Err(TrainError::Model(
            "the model has no float params to train".into(),
        ));
    }
    let pvals: Vec<ValueId> = core.params.iter().map(|(_, v)| *v).collect();
    let grads = gradients(&mut core.g, core.loss, &pvals)?;
    let g = &mut core.g;

    // Inputs for the state and the step counter.
    let mut state = Vec::new();
    let mut state_vals: Vec<Vec<ValueId>> = Vec::new();
    for (name, p) in &core.params {
        let ty = g.value(*p).ty.clone();
        let mut vs = Vec::new();
        for slot in opt.kind.slots() {
            let sn = state_name(name, slot);
            if core.data.contains(&sn) || core.params.iter().any(|(n, _)| *n == sn) {
                return Err(TrainError::Model(format!(
                    "optimizer state `{sn}` clashes with a model name"
                )));
            }
            vs.push(g.add_input(sn.clone(), ty.clone()));
            state.push((sn, name.clone()));
        }
        state_vals.push(vs);
    }
    for reserved in ["step", "target"] {
        if core.data.iter().any(|d| d == reserved) || core.params.iter().any(|(n, _)| n == reserved)
        {
            return Err(TrainError::Model(format!(
                "the model uses the name `{reserved}`, which the training graph reserves"
            )));
        }
    }
    let step = g.add_input("step", TensorType::new(DType::F32, Shape::scalar()));
    let mut cx = GradCtx::new(g);

    // k = step - 1, and the learning rate.
    let one = f32_scalar(&mut cx, 1.0)?;
    let k = cx.sub(step, one)?;
    let lr = schedule_value(&mut cx, &opt, k)?;

    // Clipping by the global norm.
    let mut grads = grads;
    if let Some(c) = opt.clip_norm {
        let mut sq: Option<ValueId> = None;
        for &gv in &grads {
            let s = cx.mul(gv, gv)?;
            let s = total(&mut cx, s)?;
            sq = Some(match sq {
                Some(a) => cx.add2(a, s)?,
                None => s,
            });
        }
        let norm = cx.unary(UnaryKind::Sqrt, sq.expect("at least one param"))?;
        let cv = f32_scalar(&mut cx, c)?;
        let den = cx.binary(BinaryKind::Max, norm, cv)?;
        let scale = cx.div(cv, den)?;
        for gv in grads.iter_mut() {
            *gv = cx.mul(*gv, scale)?;
        }
    }

    // Adam's bias corrections, from the step counter: 1 - β^t = 1 - exp(t ln β).
    let adam_scalars = if let OptKind::Adam { beta1, beta2, .. } = opt.kind {
        let pow = |cx: &mut GradCtx, beta: f64| -> Result<ValueId, GradError> {
            if beta == 0.0 {
                return f32_scalar(cx, 1.0);
            }
            let l = f32_scalar(cx, beta.ln())?;
            let e = cx.mul(step, l)?;
            let e = cx.unary(UnaryKind::Exp, e)?;
            cx.sub(one, e)
        };
        let bc1 = pow(&mut cx, beta1)?;
        let bc2 = pow(&mut cx, beta2)?;
        // step size lr / (1 - β1^t), and 1 / (1 - β2^t)
        let alpha = cx.div(lr, bc1)?;
        let inv2 = cx.div(one, bc2)?;
        Some((alpha, inv2))
    } else {
        None
    };

    let mut feedback = Vec::new();
    let mut outputs: Vec<(String, ValueId)> = Vec::new();
    for (i, (name, p)) in core.params.iter().enumerate() {
        let p = *p;
        let mut gv = grads[i];
        if opt.weight_decay != 0.0 && !opt.decoupled_decay {
            let wd = cx.scale(p, opt.weight_decay)?;
            gv = cx.add2(gv, wd)?;
        }
        let st = &state_vals[i];
        let (delta, new_state): (ValueId, Vec<ValueId>) = match opt.kind {
            OptKind::Sgd => (cx.mul(lr, gv)?, vec![]),
            OptKind::Momentum { mu } | OptKind::Nesterov { mu } => {
                let mv = cx.scale(st[0], mu)?;
                let v = cx.add2(mv, gv)?;
                let dir = if let OptKind::Nesterov { .. } = opt.kind {
                    let mv2 = cx.scale(v, mu)?;
                    cx.add2(gv, mv2)?
                } else {
                    v
                };
                (cx.mul(lr, dir)?, vec![v])
            }
            OptKind::AdaGrad { eps } | OptKind::RmsProp { eps, .. } => {
                let g2 = cx.mul(gv, gv)?;
                let s = if let OptKind::RmsProp { rho, .. } = opt.kind {
                    let a = cx.scale(st[0], rho)?;
                    let b = cx.scale(g2, 1.0 - rho)?;
                    cx.add2(a, b)?
                } else {
                    cx.add2(st[0], g2)?
                };
                let r = cx.unary(UnaryKind::Sqrt, s)?;
                let e = f32_scalar(&mut cx, eps)?;
                let den = cx.add2(r, e)?;
                let q = cx.div(gv, den)?;
                (cx.mul(lr, q)?, vec![s])
            }
            OptKind::Adam {
                beta1, beta2, eps, ..
            } => {
                let (alpha, inv2) = adam_scalars.expect("set for Adam");
                let a = cx.scale(st[0], beta1)?;
                let b = cx.scale(gv, 1.0 - beta1)?;
                let m = cx.add2(a, b)?;
                let g2 = cx.mul(gv, gv)?;
                let a = cx.scale(st[1], beta2)?;
                let b = cx.scale(g2, 1.0 - beta2)?;
                let v = cx.add2(a, b)?;
                let vh = cx.mul(v, inv2)?;
                let r = cx.unary(UnaryKind::Sqrt, vh)?;
                let e = f32_scalar(&mut cx, eps)?;
                let den = cx.add2(r, e)?;
                let q = cx.div(m, den)?;
                (cx.mul(alpha, q)?, vec![m, v])
            }
        };
        let mut base = p;
        if opt.weight_decay != 0.0 && opt.decoupled_decay {
            // p (1 - lr λ)
            let lw = cx.scale(lr, opt.weight_decay)?;
            let f = cx.sub(one, lw)?;
            base = cx.mul(p, f)?;
        }
        let np = cx.sub(base, delta)?;
        outputs.push((next_name(name), np));
        feedback.push((next_name(name), name.clone()));
        for (slot, &sv) in opt.kind.slots().iter().zip(&new_state) {
            let sn = state_name(name, slot);
            outputs.push((next_name(&sn), sv));
            feedback.push((next_name(&sn), sn));
        }
    }
    for (name, v) in &core.buffers {
        outputs.push((next_name(name), *v));
        feedback.push((next_name(name), name.clone()));
    }
    g.set_output("lr", lr);
    for (n, v) in outputs {
        g.set_output(n, v);
    }
    // Drop the gradient nodes of values nobody asked about.
    prune(g);
    kiln_ir::verify(g).map_err(|e| TrainError::Model(e.to_string()))?;
    Ok(TrainGraph {
        graph: core.g,
        data: core.data,
        target: "target".into(),
        params: core.params.into_iter().map(|(n, _)| n).collect(),
        buffers: core.buffers.into_iter().map(|(n, _)| n).collect(),
        seed: core.seed,
        state,
        feedback,
        frozen: core.frozen,
    })
}

/// The learning rate for `k` updates already taken.
fn schedule_value(cx: &mut GradCtx, opt: &Optimizer, k: ValueId) -> Result<ValueId, GradError> {
    let lr0 = f32_scalar(cx, opt.lr)?;
    match opt.schedule {
        Schedule::Constant => Ok(lr0),
        Schedule::Step { every, gamma } => {
            let e = f32_scalar(cx, every as f64)?;
            let q = cx.div(k, e)?;
            let q = cx.unary(UnaryKind::Floor, q)?;
            let l = f32_scalar(cx, gamma.ln())?;
            let x = cx.mul(q, l)?;
            let f = cx.unary(UnaryKind::Exp, x)?;
            cx.mul(lr0, f)
        }
        Schedule::Exponential { gamma } => {
            let l = f32_scalar(cx, gamma.ln())?;
            let x = cx.mul(k, l)?;
            let f = cx.unary(UnaryKind::Exp, x)?;
            cx.mul(lr0, f)
        }
        Schedule::Cosine { total, min_lr } => {
            let t = f32_scalar(cx, total as f64)?;
            let kk = cx.binary(BinaryKind::Min, k, t)?;
            let x = cx.scale(kk, PI / total as f64)?;
            let c = cx.unary(UnaryKind::Cos, x)?;
            let one = f32_scalar(cx, 1.0)?;
            let c1 = cx.add2(c, one)?;
            let h = cx.scale(c1, (opt.lr - min_lr) / 2.0)?;
            let m = f32_scalar(cx, min_lr)?;
            cx.add2(h, m)
        }
    }
}

/// Remove nodes that no output reaches.
fn prune(g: &mut Graph) {
    let mut live = std::collections::HashSet::new();
    let mut stack: Vec<ValueId> = g.outputs().iter().map(|(_, v)| *v).collect();
    while let Some(v) = stack.pop() {
        if let Some(n) = g.producer(v) {
            if g.contains_node(n) && live.insert(n) {
                stack.extend(g.node(n).inputs.iter().copied());
            }
        }
    }
    for n in g.node_ids() {
        if !live.contains(&n) {
            g.remove_node(n);
        }
    }
}

/// The zero-initialised optimizer state for `tg`, given the params' weights.
pub fn initial_state(tg: &TrainGraph) -> Vec<(String, Tensor)> {
    tg.state
        .iter()
        .map(|(sn, _)| {
            let v = tg
                .graph
                .inputs()
                .iter()
                .copied()
                .find(|&v| tg.graph.value(v).name.as_deref() == Some(sn.as_str()))
                .expect("state inputs exist");
            let ty = &tg.graph.value(v).ty;
            let dims = ty.shape.concrete().unwrap_or_default();
            let n = dims.iter().product();
            (sn.clone(), Tensor::f32(&dims, vec![0.0; n]))
        })
        .collect()
}
