//! The training ops (losses, regularisers, `batch_norm_train`,
//! `dropout_train`, `random_uniform_like`) on the CPU backend: a small
//! training graph using every one of them, forward alone and with its
//! `autodiff` gradients, prepared on `--backend ref` and `--backend cpu`
//! (1 and 2 threads) and run on the same inputs. The ops without a kernel
//! expression run as `Ref` steps; the backward graph's elementwise ops and
//! reductions run as native kernels. CPU results must agree with the
//! reference, and bitwise across thread counts.

use std::collections::HashMap;

use kiln::backend::{Backend, PrepareOptions, Prepared};
use kiln::compiler::codegen;
use kiln::compiler::passes;
use kiln::compiler::passes::autodiff::autodiff;
use kiln::ir::program::Step;
use kiln::ir::{self, DType, Model, Tensor};

const SRC: &str = "graph train {
  input %x: f32[8,5]
  input %t: i64[8]
  input %q: f32[8,4]
  input %seed: i64[]
  param %w: f32[5,4]
  param %b: f32[4]
  param %g: f32[4]
  param %beta: f32[4]
  param %rm: f32[4]
  param %rv: f32[4]
  %h = matmul(%x, %w)
  %a = add(%h, %b)
  %n, %nm, %nv = batch_norm_train(%a, %g, %beta, %rm, %rv) {epsilon = 0.001, momentum = 0.1}
  %r = relu(%n)
  %d, %mask = dropout_train(%r, %seed) {ratio = 0.25}
  %u = random_uniform_like(%d, %seed) {low = 0, high = 0.01}
  %e = add(%d, %u)
  %l1 = hinge_loss(%e, %t)
  %l2 = squared_hinge_loss(%e, %t) {margin = 0.5}
  %l3 = bce_with_logits(%e, %q)
  %l4 = mse_loss(%e, %q) {reduction = \"sum\"}
  %l5 = l1_loss(%e, %q)
  %ls = log_softmax(%e) {axis = 1}
  %l6 = kl_div(%ls, %q) {reduction = \"batchmean\"}
  %l7 = soft_cross_entropy(%e, %q)
  %r1 = l1_norm(%w)
  %r2 = l2_norm_sq(%w)
  %s1 = sum(%l1, %l2, %l3, %l4, %l5, %l6, %l7)
  %k1 = constant() {value = tensor<f32[]>[0.001]}
  %k2 = constant() {value = tensor<f32[]>[0.01]}
  %p1 = mul(%r1, %k1)
  %p2 = mul(%r2, %k2)
  %s2 = add(%s1, %p1)
  %loss = add(%s2, %p2)
  output loss = %loss
  output new_mean = %nm
  output new_var = %nv
  output mask = %mask
}";

fn feeds(g: &ir::Graph) -> HashMap<String, Tensor> {
    let ty = |n: &str| {
        let v = g
            .inputs()
            .iter()
            .copied()
            .find(|&v| g.value(v).name.as_deref() == Some(n))
            .unwrap();
        g.value(v).ty.clone()
    };
    let labels: Vec<i64> = (0..8).map(|i| (i * 3 % 4) as i64).collect();
    HashMap::from([
        (
            "x".to_string(),
            kiln::init::uniform("x", 42, &ty("x"), -1.0, 1.0).unwrap(),
        ),
        (
            "q".to_string(),
            kiln::init::uniform("q", 42, &ty("q"), 0.05, 1.0).unwrap(),
        ),
        (
            "t".to_string(),
            Tensor::from_i64(
                DType::I64,
                ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[8]), labels).unwrap(),
            ),
        ),
        (
            "seed".to_string(),
            Tensor::from_i64(
                DType::I64,
                ndarray::ArrayD::from_elem(ndarray::IxDyn(&[]), 2024),
            ),
        ),
    ])
}

fn run(
    m: &Model,
    backend: Backend,
    threads: usize,
    x: &HashMap<String, Tensor>,
) -> Vec<(String, Tensor)> {
    let p = Prepared::new(m.clone(), backend, &PrepareOptions { threads })
        .unwrap_or_else(|e| panic!("prepare on {backend:?}: {e:#}"));
    p.run(x)
        .unwrap_or_else(|e| panic!("run on {backend:?}: {e:#}"))
}

/// Ref vs cpu@1 vs cpu@2; returns the program's step kinds.
fn compare(m: &Model) -> Vec<&'static str> {
    let x = feeds(&m.graph);
    let want = run(m, Backend::Ref, 1, &x);
    let one = run(m, Backend::Cpu, 1, &x);
    let two = run(m, Backend::Cpu, 2, &x);
    assert_eq!(want.len(), one.len());
    for (((name, w), (_, a)), (_, b)) in want.iter().zip(&one).zip(&two) {
        assert_eq!(
            a.to_le_bytes(),
            b.to_le_bytes(),
            "{name}: 1 and 2 threads differ"
        );
        ir::tensor::allclose(a, w, 1e-4, 1e-5).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            w.to_f64().iter().all(|v| v.is_finite()),
            "{name} is not finite"
        );
    }
    let (mut g, mut w) = (m.graph.clone(), m.weights.clone());
    passes::optimize("O2", &mut g, &mut w).unwrap();
    let p = codegen::compile(&g, &w).unwrap().0;
    p.steps.iter().map(Step::kind).collect()
}

#[test]
fn training_ops_forward_on_cpu() {
    let graph = ir::parse(SRC).unwrap();
    let weights = kiln::init::init_weights(&graph, 7).unwrap();
    let kinds = compare(&Model { graph, weights });
    assert!(kinds.contains(&"matmul"), "{kinds:?}");
}

#[test]
fn training_ops_backward_on_cpu() {
    let mut graph = ir::parse(SRC).unwrap();
    let loss = graph.outputs()[0].1;
    autodiff(&mut graph, loss, &[]).unwrap();
    let names: Vec<&str> = graph.outputs().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "loss",
            "new_mean",
            "new_var",
            "mask",
            "grad_w",
            "grad_b",
            "grad_g",
            "grad_beta",
            "grad_rm",
            "grad_rv"
        ]
    );
    let weights = kiln::init::init_weights(&graph, 7).unwrap();
    let kinds = compare(&Model { graph, weights });
    // The backward pass runs fused kernels, not only reference steps.
    let kernels = kinds.iter().filter(|&&k| k == "kernel").count();
    assert!(kernels >= 5, "{kinds:?}");
}
