//! The compiled training step: each optimizer against hand-computed updates
//! (f64 loops over a tiny least-squares problem), the learning-rate
//! schedules against their formulas, clipping, weight decay, fusion of the
//! update kernels, and training to a stated accuracy.

use kiln::backend::Backend;
use kiln::compiler::train::{Loss, OptKind, Optimizer, Regularizer, Schedule, TrainSpec};
use kiln::data::{spiral, Dataset};
use kiln::ir::{Model, Tensor, Weights};
use kiln::train::{fit, TrainOptions, Trainer};

const LIN: &str = "graph lin {\n  input %x: f32[N,3]\n  param %w: f32[3,2]\n  param %b: f32[2]\n  %m = matmul(%x, %w)\n  %z = add(%m, %b)\n  output logits = %z\n}\n";

const X: [[f64; 3]; 4] = [
    [0.5, -1.0, 2.0],
    [1.5, 0.25, -0.5],
    [-0.75, 0.8, 0.1],
    [0.3, -0.2, -1.2],
];
const T: [[f64; 2]; 4] = [[1.0, -1.0], [0.5, 2.0], [-1.5, 0.0], [0.25, 0.75]];
const W0: [f64; 6] = [0.1, -0.2, 0.3, 0.05, -0.15, 0.25];
const B0: [f64; 2] = [0.02, -0.03];

fn lin_model() -> Model {
    let graph = kiln::ir::parse(LIN).unwrap();
    let mut weights = Weights::default();
    weights.insert(
        "w",
        Tensor::f32(&[3, 2], W0.iter().map(|&v| v as f32).collect()),
    );
    weights.insert(
        "b",
        Tensor::f32(&[2], B0.iter().map(|&v| v as f32).collect()),
    );
    Model { graph, weights }
}

fn batch() -> (Tensor, Tensor) {
    let x = Tensor::f32(&[4, 3], X.iter().flatten().map(|&v| v as f32).collect());
    let t = Tensor::f32(&[4, 2], T.iter().flatten().map(|&v| v as f32).collect());
    (x, t)
}

fn spec(opt: Optimizer) -> TrainSpec {
    TrainSpec {
        loss: Loss::Mse,
        regularizer: Regularizer::default(),
        optimizer: opt,
        output: None,
        batch: 4,
        bn_momentum: 0.1,
    }
}

/// The MSE loss and its gradient with respect to `[w (6), b (2)]`, in f64.
fn loss_grad(p: &[f64]) -> (f64, Vec<f64>) {
    let (w, b) = (&p[..6], &p[6..]);
    let mut g = vec![0.0; 8];
    let mut loss = 0.0;
    let n = 8.0; // elements of z
    for (x, t) in X.iter().zip(&T) {
        for j in 0..2 {
            let z: f64 = (0..3).map(|k| x[k] * w[k * 2 + j]).sum::<f64>() + b[j];
            let d = z - t[j];
            loss += d * d / n;
            for k in 0..3 {
                g[k * 2 + j] += 2.0 * d * x[k] / n;
            }
            g[6 + j] += 2.0 * d / n;
        }
    }
    (loss, g)
}

/// The reference optimizer, one plain f64 loop per rule.
fn reference(opt: &Optimizer, steps: usize) -> Vec<(f64, Vec<f64>)> {
    let mut p: Vec<f64> = W0.iter().chain(&B0).copied().collect();
    let mut s1 = [0.0; 8];
    let mut s2 = [0.0; 8];
    let mut out = Vec::new();
    for t in 1..=steps {
        let (loss, mut g) = loss_grad(&p);
        if let Some(c) = opt.clip_norm {
            let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            let scale = c / norm.max(c);
            g.iter_mut().for_each(|v| *v *= scale);
        }
        let lr = opt.schedule.lr_at(opt.lr, t as u64);
        for i in 0..8 {
            let mut gi = g[i];
            if !opt.decoupled_decay {
                gi += opt.weight_decay * p[i];
            }
            let delta = match opt.kind {
                OptKind::Sgd => lr * gi,
                OptKind::Momentum { mu } => {
                    s1[i] = mu * s1[i] + gi;
                    lr * s1[i]
                }
                OptKind::Nesterov { mu } => {
                    s1[i] = mu * s1[i] + gi;
                    lr * (gi + mu * s1[i])
                }
                OptKind::AdaGrad { eps } => {
                    s1[i] += gi * gi;
                    lr * gi / (s1[i].sqrt() + eps)
                }
                OptKind::RmsProp { rho, eps } => {
                    s1[i] = rho * s1[i] + (1.0 - rho) * gi * gi;
                    lr * gi / (s1[i].sqrt() + eps)
                }
                OptKind::Adam { beta1, beta2, eps } => {
                    s1[i] = beta1 * s1[i] + (1.0 - beta1) * gi;
                    s2[i] = beta2 * s2[i] + (1.0 - beta2) * gi * gi;
                    let mh = s1[i] / (1.0 - beta1.powi(t as i32));
                    let vh = s2[i] / (1.0 - beta2.powi(t as i32));
                    lr * mh / (vh.sqrt() + eps)
                }
            };
            if opt.decoupled_decay {
                p[i] *= 1.0 - lr * opt.weight_decay;
            }
            p[i] -= delta;
        }
        out.push((loss, p.clone()));
    }
    out
}

/// Run `steps` steps on `backend` and compare loss and params after each
/// with the reference.
fn check(opt: Optimizer, steps: usize, backend: Backend) {
    let model = lin_model();
    let mut tr = Trainer::new(
        &model,
        spec(opt),
        &TrainOptions {
            backend,
            threads: 1,
        },
    )
    .unwrap();
    let want = reference(&opt, steps);
    for (k, (loss, p)) in want.iter().enumerate() {
        let (x, t) = batch();
        let out = tr.step(x, t).unwrap();
        assert!(
            (out.loss - loss).abs() <= 1e-5 * loss.abs().max(1.0),
            "{opt:?} step {}: loss {} vs {loss}",
            k + 1,
            out.loss
        );
        let got: Vec<f64> = tr
            .tensor("w")
            .unwrap()
            .values_f64()
            .into_iter()
            .chain(tr.tensor("b").unwrap().values_f64())
            .collect();
        for (i, (a, b)) in got.iter().zip(p).enumerate() {
            assert!(
                (a - b).abs() <= 2e-5 * b.abs().max(0.1),
                "{opt:?} on {backend:?}, step {}, param {i}: {a} vs {b}",
                k + 1
            );
        }
    }
    assert_eq!(tr.steps(), steps as u64);
}

fn all_kinds() -> Vec<OptKind> {
    ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]
        .iter()
        .map(|n| OptKind::from_name(n).unwrap())
        .collect()
}

#[test]
fn every_optimizer_matches_hand_computed_updates() {
    for kind in all_kinds() {
        let lr = match kind {
            OptKind::Sgd | OptKind::Momentum { .. } | OptKind::Nesterov { .. } => 0.1,
            _ => 0.05,
        };
        check(Optimizer::new(kind, lr), 5, Backend::Cpu);
    }
    // The reference interpreter runs the same graph.
    check(
        Optimizer::new(OptKind::from_name("adam").unwrap(), 0.05),
        3,
        Backend::Ref,
    );
}

#[test]
fn optimizer_hyper_parameters_are_used() {
    check(
        Optimizer::new(
            OptKind::Adam {
                beta1: 0.5,
                beta2: 0.75,
                eps: 1e-3,
            },
            0.05,
        ),
        4,
        Backend::Cpu,
    );
    check(
        Optimizer::new(OptKind::RmsProp { rho: 0.5, eps: 0.1 }, 0.05),
        4,
        Backend::Cpu,
    );
    check(
        Optimizer::new(OptKind::Momentum { mu: 0.5 }, 0.1),
        4,
        Backend::Cpu,
    );
}

#[test]
fn weight_decay_coupled_and_decoupled() {
    for kind in all_kinds() {
        let mut o = Optimizer::new(kind, 0.05);
        o.weight_decay = 0.3;
        check(o, 4, Backend::Cpu);
    }
    let mut o = Optimizer::new(OptKind::from_name("adam").unwrap(), 0.05);
    o.weight_decay = 0.3;
    o.decoupled_decay = true;
    check(o, 4, Backend::Cpu);
}

#[test]
fn gradient_clipping_by_global_norm() {
    // The initial gradient norm is about 1.9: a bound of 0.5 clips every
    // step, one of 100 never does.
    let (_, g) = loss_grad(&W0.iter().chain(&B0).copied().collect::<Vec<_>>());
    let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(norm > 1.0, "{norm}");
    for c in [0.5, 100.0] {
        for kind in all_kinds() {
            let mut o = Optimizer::new(kind, 0.1);
            o.clip_norm = Some(c);
            check(o, 4, Backend::Cpu);
        }
    }
    // Clipping changes the SGD step by exactly c/‖g‖.
    let mut o = Optimizer::new(OptKind::Sgd, 1.0);
    o.clip_norm = Some(0.5);
    let mut tr = Trainer::new(&lin_model(), spec(o), &TrainOptions::default()).unwrap();
    let (x, t) = batch();
    tr.step(x, t).unwrap();
    let w = tr.tensor("w").unwrap().values_f64();
    for i in 0..6 {
        let want = W0[i] - g[i] * 0.5 / norm;
        assert!((w[i] - want).abs() < 1e-6, "{} vs {want}", w[i]);
    }
}

#[test]
fn schedules_follow_their_formulas() {
    let cases = [
        Schedule::Constant,
        Schedule::Step {
            every: 3,
            gamma: 0.5,
        },
        Schedule::Exponential { gamma: 0.9 },
        Schedule::Cosine {
            total: 8,
            min_lr: 0.01,
        },
    ];
    for s in cases {
        let mut o = Optimizer::new(OptKind::Sgd, 0.2);
        o.schedule = s;
        // The graph's own rate, step by step, against the formula.
        let mut tr = Trainer::new(&lin_model(), spec(o), &TrainOptions::default()).unwrap();
        for t in 1..=12u64 {
            let (x, b) = batch();
            let out = tr.step(x, b).unwrap();
            let k = (t - 1) as f64;
            let want = match s {
                Schedule::Constant => 0.2,
                Schedule::Step { .. } => 0.2 * 0.5f64.powi((k / 3.0).floor() as i32),
                Schedule::Exponential { .. } => 0.2 * 0.9f64.powf(k),
                Schedule::Cosine { .. } => {
                    0.01 + 0.19 * (1.0 + (std::f64::consts::PI * k.min(8.0) / 8.0).cos()) / 2.0
                }
            };
            assert!(
                (out.lr - want).abs() < 1e-6,
                "{s}: step {t}: lr {} vs {want}",
                out.lr
            );
        }
        // And the updates use it.
        check(o, 6, Backend::Cpu);
    }
    assert_eq!(
        Schedule::parse("step:3:0.5").unwrap(),
        Schedule::Step {
            every: 3,
            gamma: 0.5
        }
    );
    assert_eq!(
        Schedule::parse("cosine:100").unwrap(),
        Schedule::Cosine {
            total: 100,
            min_lr: 0.0
        }
    );
    for bad in ["step:0:0.5", "exp:-1", "cosine", "warp:3", "step:2:x"] {
        assert!(Schedule::parse(bad).is_err(), "{bad}");
    }
}

const MLP: &str = "graph mlp {\n  input %x: f32[N,2]\n  param %fc1.weight: f32[2,100]\n  param %fc1.bias: f32[100]\n  param %fc2.weight: f32[100,3]\n  param %fc2.bias: f32[3]\n  %0 = matmul(%x, %fc1.weight)\n  %1 = add(%0, %fc1.bias)\n  %2 = relu(%1)\n  %3 = matmul(%2, %fc2.weight)\n  %4 = add(%3, %fc2.bias)\n  output logits = %4\n}\n";

fn init_model(src: &str, seed: u64) -> Model {
    let graph = kiln::ir::parse(src).unwrap();
    let mut bound = graph.clone();
    let dims = bound.symbols().into_iter().map(|s| (s, 1)).collect();
    bound.bind_dims(&dims).unwrap();
    let weights = kiln::init::init_weights(&bound, seed).unwrap();
    Model { graph, weights }
}

/// Forward, backward and the Adam update compile to fused kernels: every
/// node computing a new param or moment is inside a `Kernel` step (or a
/// matmul epilogue), and nothing falls back to the reference op.
#[test]
fn adam_update_is_fused() {
    let model = init_model(MLP, 1);
    let s = TrainSpec {
        loss: Loss::CrossEntropy,
        regularizer: Regularizer::default(),
        optimizer: Optimizer::new(OptKind::from_name("adam").unwrap(), 1e-2),
        output: None,
        batch: 30,
        bn_momentum: 0.1,
    };
    let tr = Trainer::new(&model, s, &TrainOptions::default()).unwrap();
    let p = tr.program().unwrap();
    let g = &p.graph;
    let mut kinds = std::collections::HashMap::new();
    for st in &p.steps {
        for n in st.nodes() {
            kinds.insert(n, st.kind());
        }
    }
    let refs = p.steps.iter().filter(|s| s.kind() == "ref").count();
    assert_eq!(refs, 0, "{}", p.summary());
    let mut update_nodes = 0;
    for (name, v) in g.outputs() {
        if !name.starts_with("next.") {
            continue;
        }
        let n = g.producer(*v).expect("computed");
        update_nodes += 1;
        assert_eq!(kinds[&n], "kernel", "{name}: {}", p.summary());
    }
    assert_eq!(update_nodes, 12); // 4 params, 2 moments each
                                  // Each update kernel covers the whole elementwise chain of its output
                                  // (scale, add, sqrt, div, ...), not one op per step.
    let kernel_steps = p.steps.iter().filter(|s| s.kind() == "kernel").count();
    let kernel_nodes: usize = p
        .steps
        .iter()
        .filter(|s| s.kind() == "kernel")
        .map(|s| s.nodes().len())
        .sum();
    assert!(
        kernel_nodes >= 2 * kernel_steps,
        "{kernel_nodes} nodes in {kernel_steps} kernels"
    );
}

fn spiral_spec(batch: usize, lr: f64, l2: f64) -> TrainSpec {
    TrainSpec {
        loss: Loss::CrossEntropy,
        regularizer: Regularizer { l1: 0.0, l2 },
        optimizer: Optimizer::new(OptKind::from_name("adam").unwrap(), lr),
        output: None,
        batch,
        bn_momentum: 0.1,
    }
}

fn example(path: &str, seed: u64) -> Model {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    init_model(&std::fs::read_to_string(p).unwrap(), seed)
}

/// The notes' spiral (the README's settings): a 2-layer ReLU net (hidden
/// 100) reaches ≥ 98% training accuracy (99.3% measured); a linear softmax
/// classifier stays near 50% (50.7% measured).
#[test]
fn spiral_two_layer_net_reaches_98_percent() {
    let ds = spiral(100, 3, 0);
    let mut tr = Trainer::new(
        &example("examples/spiral/mlp.kir", 0),
        spiral_spec(60, 0.01, 1e-4),
        &TrainOptions::default(),
    )
    .unwrap();
    fit(&mut tr, &ds, 300, 0, |_| {}, |_| {}).unwrap();
    let (loss, acc) = tr.evaluate(&ds).unwrap();
    assert!(acc >= 0.98, "accuracy {acc}, loss {loss}");

    let mut tr = Trainer::new(
        &example("examples/spiral/linear.kir", 0),
        spiral_spec(60, 0.05, 1e-3),
        &TrainOptions::default(),
    )
    .unwrap();
    fit(&mut tr, &ds, 200, 0, |_| {}, |_| {}).unwrap();
    let (_, acc) = tr.evaluate(&ds).unwrap();
    assert!((0.4..0.62).contains(&acc), "linear accuracy {acc}");
}

fn digits(file: &str) -> Dataset {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/digits")
        .join(file);
    Dataset::load_csv(&p, -1).unwrap()
}

/// The 8x8 digits (1,437 train / 360 test, fixed split): the README's MLP
/// and CNN runs, asserted with a margin below the measured test accuracy
/// (MLP 98.3%, CNN 97.8%; 98.1–98.9% and 97.2–98.6% over seeds 0–2).
#[test]
fn digits_test_accuracy() {
    let (train, test) = (digits("train.csv"), digits("test.csv"));
    assert_eq!((train.len(), test.len(), train.features), (1437, 360, 64));
    for (model, epochs, lr, floor) in [
        ("examples/digits/mlp.kir", 30, 0.003, 0.96),
        ("examples/digits/cnn.kir", 30, 0.005, 0.95),
    ] {
        let mut tr = Trainer::new(
            &example(model, 0),
            spiral_spec(32, lr, 0.0),
            &TrainOptions::default(),
        )
        .unwrap();
        fit(&mut tr, &train, epochs, 0, |_| {}, |_| {}).unwrap();
        let (_, acc) = tr.evaluate(&test).unwrap();
        assert!(acc >= floor, "{model}: test accuracy {acc}");
    }
}

#[test]
fn evaluate_and_save_round_trip() {
    let ds: Dataset = spiral(20, 3, 5);
    let model = init_model(MLP, 3);
    let mut tr =
        Trainer::new(&model, spiral_spec(16, 0.01, 0.0), &TrainOptions::default()).unwrap();
    fit(&mut tr, &ds, 2, 1, |_| {}, |_| {}).unwrap();
    // 60 samples in batches of 16: the last evaluation batch has 12.
    let (loss, acc) = tr.evaluate(&ds).unwrap();
    assert!(loss.is_finite() && (0.0..=1.0).contains(&acc));
    let dir = std::env::temp_dir().join(format!("kiln_train_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("w.safetensors");
    tr.save(&p).unwrap();
    let w = Weights::load(&p).unwrap();
    assert_eq!(w, tr.weights());
    assert_ne!(w, model.weights);
    // The saved weights run the inference model and give the same loss.
    let mut again = Trainer::new(
        &Model {
            graph: model.graph.clone(),
            weights: w,
        },
        spiral_spec(16, 0.01, 0.0),
        &TrainOptions::default(),
    )
    .unwrap();
    let (loss2, acc2) = again.evaluate(&ds).unwrap();
    assert_eq!((loss, acc), (loss2, acc2));
    std::fs::remove_dir_all(&dir).ok();
}

const BN_DROPOUT: &str = "graph bn_mlp {
  input %x: f32[N,2]
  param %fc1.weight: f32[2,64]
  param %bn.gamma: f32[64]
  param %bn.beta: f32[64]
  param %bn.mean: f32[64]
  param %bn.var: f32[64]
  param %fc2.weight: f32[64,3]
  param %fc2.bias: f32[3]
  %1 = matmul(%x, %fc1.weight)
  %2 = batch_norm(%1, %bn.gamma, %bn.beta, %bn.mean, %bn.var) {epsilon = 1e-5}
  %3 = relu(%2)
  %4 = dropout(%3) {ratio = 0.1}
  %5 = matmul(%4, %fc2.weight)
  %6 = add(%5, %fc2.bias)
  output logits = %6
}
";

/// In the training step, `batch_norm` runs on batch statistics and updates
/// its running statistics (buffers fed back, never given to the optimizer),
/// and `dropout` draws a seeded mask that changes every step; evaluation
/// uses the inference forms with the updated running statistics. The CPU
/// backend takes the same steps as the reference interpreter. (The first
/// layer has no bias: batch norm cancels it, so its gradient is rounding
/// noise that Adam would turn into ±lr steps, different on each backend.)
#[test]
fn batch_norm_and_dropout_train_in_training_form() {
    let model = init_model(BN_DROPOUT, 2);
    let spec = spiral_spec(60, 0.01, 0.0);
    let tg = kiln::compiler::train::build_training_graph(&model.graph, &spec).unwrap();
    let text = kiln::ir::print(&tg.graph);
    assert!(text.contains("batch_norm_train(") && text.contains("dropout_train("));
    assert_eq!(tg.buffers, ["bn.mean", "bn.var"]);
    assert_eq!(tg.seed.as_deref(), Some("seed"));
    assert!(!tg.params.iter().any(|p| p == "bn.mean" || p == "bn.var"));

    let ds = spiral(100, 3, 0);
    let idx: Vec<usize> = (0..60).collect();
    let mut cpu = Trainer::new(&model, spec.clone(), &TrainOptions::default()).unwrap();
    let mut refb = Trainer::new(
        &model,
        spec.clone(),
        &TrainOptions {
            backend: Backend::Ref,
            threads: 1,
        },
    )
    .unwrap();
    let mean0 = model.weights.get("bn.mean").unwrap().values_f64();
    let mut losses = vec![];
    for _ in 0..3 {
        let (a, _) = cpu.step_on(&ds, &idx).unwrap();
        let (b, _) = refb.step_on(&ds, &idx).unwrap();
        assert!(
            (a.loss - b.loss).abs() <= 1e-4 * b.loss.abs().max(1.0),
            "cpu {} ref {}",
            a.loss,
            b.loss
        );
        losses.push(a.loss);
    }
    // The same batch gives a different loss each step (new mask, new params).
    assert!(losses[0] != losses[1] && losses[1] != losses[2]);
    // Running mean: (1 - 0.1)^3 of the start plus the batch means' share.
    let mean = cpu.tensor("bn.mean").unwrap().values_f64();
    let moved = mean.iter().zip(&mean0).filter(|(a, b)| a != b).count();
    assert_eq!(moved, mean.len());
    let r = refb.tensor("bn.mean").unwrap().values_f64();
    for (a, b) in mean.iter().zip(&r) {
        assert!((a - b).abs() <= 1e-4, "running mean cpu {a} ref {b}");
    }
    // Trains: evaluation (inference batch_norm on the running statistics,
    // dropout off) separates the spiral well.
    fit(&mut cpu, &ds, 150, 0, |_| {}, |_| {}).unwrap();
    let (loss, acc) = cpu.evaluate(&ds).unwrap();
    assert!(acc >= 0.9, "accuracy {acc}, loss {loss}");
    let w = cpu.weights();
    assert!(w.get("bn.mean").is_some() && w.get("bn.var").is_some());
}

/// A model whose data input has no batch dimension is refused with an
/// error naming the input, not a panic.
#[test]
fn a_scalar_data_input_is_an_error() {
    let src = "graph s {\n  input %x: f32[]\n  param %w: f32[]\n  %y = mul(%x, %w)\n  output logits = %y\n}\n";
    let model = init_model(src, 0);
    let mut spec = spiral_spec(1, 0.1, 0.0);
    spec.loss = Loss::Mse;
    let e = Trainer::new(&model, spec, &TrainOptions::default())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("batch dimension"), "{e}");
}

/// The elastic net `l1·Σ|w| + l2·Σw²` over the weights (rank ≥ 2 params;
/// the bias is not penalised) adds exactly its value to the step's loss.
#[test]
fn elastic_net_adds_its_penalty_over_weights_only() {
    let loss_with = |l1: f64, l2: f64| {
        let mut s = spec(Optimizer::new(OptKind::Sgd, 0.0));
        s.regularizer = Regularizer { l1, l2 };
        let mut tr = Trainer::new(&lin_model(), s, &TrainOptions::default()).unwrap();
        let (x, t) = batch();
        tr.step(x, t).unwrap().loss
    };
    let l1: f64 = W0.iter().map(|w| w.abs()).sum();
    let l2: f64 = W0.iter().map(|w| w * w).sum();
    let want = 0.5 * l1 + 0.25 * l2; // 0.581875
    let got = loss_with(0.5, 0.25) - loss_with(0.0, 0.0);
    assert!((got - want).abs() < 1e-5, "penalty {got}, want {want}");
}
