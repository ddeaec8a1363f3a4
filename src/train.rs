//! Training sessions: the compiled training step
//! ([`kiln_compiler::train::build_training_graph`]) prepared once on a
//! backend, with the params and optimizer state kept between steps.
//!
//! Each step feeds the params and state as graph inputs and takes their new
//! values from the outputs `next.<name>`; the executor writes outputs into
//! fresh tensors and reads inputs in place, so moving each output into the
//! next step's inputs copies nothing.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use kiln_compiler::passes::{PassManager, PassOptions, Pipeline};
use kiln_compiler::train::{
    build_eval_graph, build_training_graph, initial_state, TrainGraph, TrainSpec,
};
use kiln_ir::program::Program;
use kiln_ir::{Graph, Model, Tensor, Weights};
use kiln_runtime::exec::{ExecOptions, Executor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::backend::Backend;
use crate::data::{one_hot, permutation, Dataset};

/// How a session runs.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub backend: Backend,
    /// Worker threads for the CPU backend (0 = all cores).
    pub threads: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            backend: Backend::Cpu,
            threads: 0,
        }
    }
}

enum Engine {
    Cpu(Box<Executor>),
    Ref(Box<(Graph, Weights)>),
}

impl Engine {
    /// Optimise `g` at -O2 with params kept live, then prepare it.
    fn new(mut g: Graph, frozen: Weights, opts: &TrainOptions) -> Result<Engine> {
        let mut weights = frozen;
        match opts.backend {
            Backend::Ref => Ok(Engine::Ref(Box::new((g, weights)))),
            Backend::CpuArtifact => {
                bail!("training runs in memory on the cpu or ref backend, not through an artifact")
            }
            Backend::Cpu => {
                let mut pm = PassManager::new(Pipeline::level("O2")?);
                pm.opts = PassOptions {
                    fold_params: false,
                    ..PassOptions::default()
                };
                pm.run(&mut g, &mut weights)?;
                let (program, _) = kiln_compiler::codegen::compile(&g, &weights)?;
                let exec = Executor::new(
                    program,
                    &weights,
                    &ExecOptions {
                        threads: opts.threads,
                        isa: None,
                    },
                )?;
                Ok(Engine::Cpu(Box::new(exec)))
            }
        }
    }

    fn run(&self, feeds: &HashMap<String, Tensor>) -> Result<Vec<(String, Tensor)>> {
        match self {
            Engine::Cpu(e) => Ok(e.run(feeds)?),
            Engine::Ref(gw) => Ok(kiln_ir::run(&gw.0, &gw.1, feeds)?),
        }
    }
}

/// What one step returns.
#[derive(Clone, Debug)]
pub struct StepOut {
    pub loss: f64,
    /// The learning rate this step used.
    pub lr: f64,
    /// The model's output on the batch (before the update).
    pub logits: Tensor,
}

/// A training session: the training step prepared once, params and
/// optimizer state carried from step to step.
pub struct Trainer {
    spec: TrainSpec,
    opts: TrainOptions,
    model: Graph,
    train: TrainGraph,
    engine: Engine,
    /// Params, optimizer state and `step`, by input name.
    feeds: HashMap<String, Tensor>,
    frozen: Weights,
    steps: u64,
    dropout_seed: u64,
    /// Evaluation graphs by batch size.
    evals: HashMap<usize, (TrainGraph, Engine)>,
    sample_dims: Vec<usize>,
    classes: usize,
}

impl Trainer {
    /// Build the training step of `model` and prepare it. The model's
    /// weights are the starting params.
    pub fn new(model: &Model, spec: TrainSpec, opts: &TrainOptions) -> Result<Trainer> {
        let tg = build_training_graph(&model.graph, &spec)?;
        if tg.data.len() != 1 {
            bail!(
                "training needs a model with one data input, found {} ({})",
                tg.data.len(),
                tg.data.join(", ")
            );
        }
        let input_ty = tg
            .graph
            .inputs()
            .iter()
            .map(|&v| tg.graph.value(v))
            .find(|v| v.name.as_deref() == Some(tg.data[0].as_str()))
            .map(|v| v.ty.clone())
            .ok_or_else(|| anyhow!("the data input is missing"))?;
        if input_ty.dtype != kiln_ir::DType::F32 {
            bail!(
                "the data input `{}` is {input_ty}; training feeds f32",
                tg.data[0]
            );
        }
        let dims = input_ty.shape.concrete().unwrap_or_default();
        let Some((_, sample)) = dims.split_first() else {
            bail!(
                "the data input `{}` is {input_ty}; training needs a batch dimension",
                tg.data[0]
            );
        };
        let sample_dims = sample.to_vec();
        let tgt = tg
            .graph
            .inputs()
            .iter()
            .map(|&v| tg.graph.value(v))
            .find(|v| v.name.as_deref() == Some("target"))
            .map(|v| v.ty.shape.concrete().unwrap_or_default())
            .unwrap_or_default();
        let classes = tgt.last().copied().unwrap_or(1);
        let mut feeds = HashMap::new();
        for p in tg.params.iter().chain(&tg.buffers) {
            let w = model
                .weights
                .get(p)
                .ok_or_else(|| anyhow!("no weight for param `{p}`"))?;
            feeds.insert(p.clone(), w.clone());
        }
        for (n, t) in initial_state(&tg) {
            feeds.insert(n, t);
        }
        let mut frozen = Weights::default();
        for f in &tg.frozen {
            if let Some(t) = model.weights.get(f) {
                frozen.insert(f.clone(), t.clone());
            }
        }
        let engine = Engine::new(tg.graph.clone(), frozen.clone(), opts)?;
        Ok(Trainer {
            spec,
            opts: opts.clone(),
            model: model.graph.clone(),
            train: tg,
            engine,
            feeds,
            frozen,
            steps: 0,
            dropout_seed: 0,
            evals: HashMap::new(),
            sample_dims,
            classes,
        })
    }

    /// The batch size of a step.
    pub fn batch(&self) -> usize {
        self.spec.batch
    }
    /// The width of the model's output (classes, for a classifier).
    pub fn classes(&self) -> usize {
        self.classes
    }
    /// The shape of one sample.
    pub fn sample_dims(&self) -> &[usize] {
        &self.sample_dims
    }
    /// Updates taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// The training graph (before -O2).
    pub fn graph(&self) -> &TrainGraph {
        &self.train
    }
    /// The CPU backend's program (steps and kernels) of the training step.
    pub fn program(&self) -> Option<&Program> {
        match &self.engine {
            Engine::Cpu(e) => Some(e.program()),
            Engine::Ref(_) => None,
        }
    }
    /// A param's or state tensor's current value.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.feeds.get(name)
    }

    /// One update on a batch: `x` shaped like the model input, `target`
    /// like its output.
    pub fn step(&mut self, x: Tensor, target: Tensor) -> Result<StepOut> {
        let data = self.train.data[0].clone();
        self.feeds.insert(data.clone(), x);
        self.feeds.insert(self.train.target.clone(), target);
        self.feeds.insert(
            "step".into(),
            Tensor::f32(&[], vec![(self.steps + 1) as f32]),
        );
        if let Some(s) = &self.train.seed {
            // A fresh dropout mask every step, reproducible from the
            // session's seed.
            let seed = self.dropout_seed.wrapping_add(self.steps) as i64;
            self.feeds
                .insert(s.clone(), Tensor::I64(ndarray::arr0(seed).into_dyn()));
        }
        let outs = self.engine.run(&self.feeds);
        self.feeds.remove(&data);
        self.feeds.remove(&self.train.target);
        let outs = outs?;
        let mut loss = f64::NAN;
        let mut lr = f64::NAN;
        let mut logits = None;
        let mut next: HashMap<String, Tensor> = outs.into_iter().collect();
        for (out, input) in &self.train.feedback {
            let t = next
                .remove(out)
                .ok_or_else(|| anyhow!("the step did not return `{out}`"))?;
            self.feeds.insert(input.clone(), t);
        }
        if let Some(t) = next.remove("loss") {
            loss = t.values_f64()[0];
        }
        if let Some(t) = next.remove("lr") {
            lr = t.values_f64()[0];
        }
        if let Some(t) = next.remove("logits") {
            logits = Some(t);
        }
        self.steps += 1;
        Ok(StepOut {
            loss,
            lr,
            logits: logits.ok_or_else(|| anyhow!("the step did not return logits"))?,
        })
    }

    /// One update on the samples `idx` of `ds` (class labels as one-hot targets).
    pub fn step_on(&mut self, ds: &Dataset, idx: &[usize]) -> Result<(StepOut, usize)> {
        let (x, y) = ds.gather(idx, &self.sample_dims)?;
        let t = one_hot(&y, self.classes)?;
        let out = self.step(x, t)?;
        let correct = count_correct(&out.logits, &y);
        Ok((out, correct))
    }

    /// Mean loss and accuracy over `ds` with the current params (no update),
    /// in batches of the training batch size.
    pub fn evaluate(&mut self, ds: &Dataset) -> Result<(f64, f64)> {
        if ds.is_empty() {
            bail!("evaluating on an empty dataset");
        }
        let mut loss_sum = 0.0;
        let mut correct = 0;
        let mut start = 0;
        while start < ds.len() {
            let n = self.spec.batch.min(ds.len() - start);
            let idx: Vec<usize> = (start..start + n).collect();
            let (x, y) = ds.gather(&idx, &self.sample_dims)?;
            let t = one_hot(&y, self.classes)?;
            if !self.evals.contains_key(&n) {
                let mut spec = self.spec.clone();
                spec.batch = n;
                let eg = build_eval_graph(&self.model, &spec)?;
                let eng = Engine::new(eg.graph.clone(), self.frozen.clone(), &self.opts)?;
                self.evals.insert(n, (eg, eng));
            }
            let (eg, eng) = &self.evals[&n];
            let mut feeds: HashMap<String, Tensor> = HashMap::new();
            for p in &eg.params {
                feeds.insert(p.clone(), self.feeds[p].clone());
            }
            feeds.insert(eg.data[0].clone(), x);
            feeds.insert(eg.target.clone(), t);
            let outs = eng.run(&feeds)?;
            for (name, t) in &outs {
                match name.as_str() {
                    "loss" => loss_sum += t.values_f64()[0] * n as f64,
                    "logits" => correct += count_correct(t, &y),
                    _ => {}
                }
            }
            start += n;
        }
        Ok((loss_sum / ds.len() as f64, correct as f64 / ds.len() as f64))
    }

    /// The seed of the dropout masks: step `k` (0-based) uses `seed + k`.
    pub fn set_dropout_seed(&mut self, seed: u64) {
        self.dropout_seed = seed;
    }

    /// The trained params, the updated running statistics and any frozen
    /// params, as weights for the model.
    pub fn weights(&self) -> Weights {
        let mut w = self.frozen.clone();
        for p in self.train.params.iter().chain(&self.train.buffers) {
            w.insert(p.clone(), self.feeds[p].clone());
        }
        w
    }

    /// Write the weights as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.weights()
            .save(path)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Samples whose largest output is at their label.
pub fn count_correct(logits: &Tensor, labels: &[usize]) -> usize {
    let v = logits.values_f64();
    let c = v.len() / labels.len().max(1);
    labels
        .iter()
        .enumerate()
        .filter(|&(i, &l)| {
            let row = &v[i * c..(i + 1) * c];
            let mut best = 0;
            for (j, &x) in row.iter().enumerate() {
                if x > row[best] {
                    best = j;
                }
            }
            best == l
        })
        .count()
}

/// One epoch's summary.
#[derive(Clone, Debug)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training loss over the epoch's steps (params changing).
    pub loss: f64,
    /// Training accuracy over the epoch's batches (before each update).
    pub accuracy: f64,
    pub lr: f64,
}

/// Train for `epochs` over `ds`, shuffled each epoch with `seed`; full
/// batches only (the remainder of a shuffled epoch waits for the next).
/// `on_step` sees every step, `on_epoch` every epoch.
pub fn fit(
    t: &mut Trainer,
    ds: &Dataset,
    epochs: usize,
    seed: u64,
    mut on_step: impl FnMut(&StepOut),
    mut on_epoch: impl FnMut(&EpochStats),
) -> Result<Vec<EpochStats>> {
    let b = t.batch();
    if ds.len() < b {
        bail!(
            "the dataset has {} samples, fewer than the batch size {b}",
            ds.len()
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut stats = Vec::with_capacity(epochs);
    for epoch in 1..=epochs {
        let perm = permutation(ds.len(), &mut rng);
        let (mut loss, mut correct, mut seen, mut lr) = (0.0, 0usize, 0usize, f64::NAN);
        for chunk in perm.chunks_exact(b) {
            let (out, c) = t.step_on(ds, chunk)?;
            loss += out.loss;
            correct += c;
            seen += b;
            lr = out.lr;
            on_step(&out);
        }
        let s = EpochStats {
            epoch,
            loss: loss / (seen / b) as f64,
            accuracy: correct as f64 / seen as f64,
            lr,
        };
        on_epoch(&s);
        stats.push(s);
    }
    Ok(stats)
}
