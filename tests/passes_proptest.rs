//! Property test of the passes: random small graphs compute the same outputs
//! before and after every pass, and after the whole `-O1` and `-O2` pipelines.
//!
//! The generator builds `f32[2,3]` values from two inputs, a weight and a few
//! constants (ones, zeros, a random constant) with ops chosen so that the
//! rewrites have something to find: double negations and transposes, reshape
//! and unsqueeze/squeeze round trips, casts to the same dtype, dropout, x*1,
//! x+0, duplicated subexpressions, constant-only chains, matmuls with a
//! transposed weight and reductions of an expand.

use std::collections::HashMap;

use kiln::compiler::passes::{registry, PassManager, Pipeline};
use kiln::ir::ops::elementwise::{Binary, BinaryKind, Unary, UnaryKind};
use kiln::ir::ops::linalg::MatMul;
use kiln::ir::ops::norm::Dropout;
use kiln::ir::ops::reduce::{Reduce, ReduceKind};
use kiln::ir::ops::shape::{Cast, Constant, Expand, Reshape, Squeeze, Transpose, Unsqueeze};
use kiln::ir::{self, DType, Graph, Tensor, TensorType, ValueId, Weights};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Unary(u8, usize),
    Binary(u8, usize, usize),
    DoubleNeg(usize),
    DoubleTranspose(usize),
    ReshapeRoundTrip(usize),
    UnsqueezeSqueeze(usize),
    CastSame(usize),
    Dropout(usize),
    Duplicate(usize),
    MatMulTransposedWeight(usize),
    ReduceOfExpand(u8, usize),
    /// x op unit or unit op x, with unit = 1 or 0: some are identities, some not.
    WithUnit(u8, bool, usize),
}

fn step() -> impl Strategy<Value = Step> {
    let i = 0usize..64;
    prop_oneof![
        (0u8..4, i.clone()).prop_map(|(k, a)| Step::Unary(k, a)),
        (0u8..4, i.clone(), i.clone()).prop_map(|(k, a, b)| Step::Binary(k, a, b)),
        i.clone().prop_map(Step::DoubleNeg),
        i.clone().prop_map(Step::DoubleTranspose),
        i.clone().prop_map(Step::ReshapeRoundTrip),
        i.clone().prop_map(Step::UnsqueezeSqueeze),
        i.clone().prop_map(Step::CastSame),
        i.clone().prop_map(Step::Dropout),
        i.clone().prop_map(Step::Duplicate),
        i.clone().prop_map(Step::MatMulTransposedWeight),
        (0u8..3, i.clone()).prop_map(|(k, a)| Step::ReduceOfExpand(k, a)),
        (0u8..4, any::<bool>(), i).prop_map(|(k, f, a)| Step::WithUnit(k, f, a)),
    ]
}

fn konst(g: &mut Graph, vals: &[f32]) -> ValueId {
    let t = Tensor::f32(&[2, 3], vals.to_vec());
    g.add(Constant { value: t }, &[]).unwrap()
}

/// Build the graph and its weights from the steps.
fn build(steps: &[Step], consts: &[f32]) -> (Graph, Weights) {
    let ty = TensorType::concrete(DType::F32, &[2, 3]);
    let mut g = Graph::new("random");
    let mut w = Weights::default();
    let x = g.add_input("x", ty.clone());
    let y = g.add_input("y", ty);
    let wt = g.add_param("w1", TensorType::concrete(DType::F32, &[4, 3]));
    let w2 = g.add_param("w2", TensorType::concrete(DType::F32, &[4, 3]));
    w.insert(
        "w1",
        Tensor::f32(&[4, 3], (0..12).map(|i| (i as f32 - 5.5) / 8.0).collect()),
    );
    w.insert(
        "w2",
        Tensor::f32(
            &[4, 3],
            (0..12).map(|i| ((i * 7) % 5) as f32 / 4.0 - 0.5).collect(),
        ),
    );
    let ones = konst(&mut g, &[1.0; 6]);
    let zeros = konst(&mut g, &[0.0; 6]);
    let c = konst(&mut g, consts);
    let mut vals = vec![x, y, ones, zeros, c];
    for s in steps {
        let pick = |i: usize| vals[i % vals.len()];
        let v = match *s {
            Step::Unary(k, a) => {
                let kind = [
                    UnaryKind::Neg,
                    UnaryKind::Relu,
                    UnaryKind::Tanh,
                    UnaryKind::Abs,
                ][k as usize];
                g.add(Unary::new(kind), &[pick(a)]).unwrap()
            }
            Step::Binary(k, a, b) => {
                let kind = [
                    BinaryKind::Add,
                    BinaryKind::Sub,
                    BinaryKind::Mul,
                    BinaryKind::Max,
                ][k as usize];
                g.add(Binary::new(kind), &[pick(a), pick(b)]).unwrap()
            }
            Step::DoubleNeg(a) => {
                let n = g.add(Unary::new(UnaryKind::Neg), &[pick(a)]).unwrap();
                g.add(Unary::new(UnaryKind::Neg), &[n]).unwrap()
            }
            Step::DoubleTranspose(a) => {
                let t = g.add(Transpose::new(vec![1, 0]), &[pick(a)]).unwrap();
                g.add(Transpose::new(vec![]), &[t]).unwrap()
            }
            Step::ReshapeRoundTrip(a) => {
                let r = g.add(Reshape::new(vec![6]), &[pick(a)]).unwrap();
                g.add(Reshape::new(vec![2, -1]), &[r]).unwrap()
            }
            Step::UnsqueezeSqueeze(a) => {
                let u = g.add(Unsqueeze { axes: vec![1] }, &[pick(a)]).unwrap();
                g.add(Squeeze { axes: vec![1] }, &[u]).unwrap()
            }
            Step::CastSame(a) => g.add(Cast::new(DType::F32), &[pick(a)]).unwrap(),
            Step::Dropout(a) => g.add(Dropout::new(0.25), &[pick(a)]).unwrap(),
            Step::Duplicate(a) => {
                let p = pick(a);
                let e1 = g.add(Unary::new(UnaryKind::Sigmoid), &[p]).unwrap();
                let e2 = g.add(Unary::new(UnaryKind::Sigmoid), &[p]).unwrap();
                g.add(Binary::new(BinaryKind::Sub), &[e1, e2]).unwrap()
            }
            Step::MatMulTransposedWeight(a) => {
                let t = g.add(Transpose::new(vec![1, 0]), &[wt]).unwrap();
                let m = g.add(MatMul, &[pick(a), t]).unwrap(); // [2,4]
                g.add(MatMul, &[m, w2]).unwrap() // [2,3]
            }
            Step::ReduceOfExpand(k, a) => {
                let kind = [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max][k as usize];
                let u = g.add(Unsqueeze { axes: vec![2] }, &[pick(a)]).unwrap();
                let e = g
                    .add(
                        Expand {
                            shape: vec![2, 3, 4],
                        },
                        &[u],
                    )
                    .unwrap();
                g.add(Reduce::new(kind, vec![2], false), &[e]).unwrap()
            }
            Step::WithUnit(k, flip, a) => {
                let (kind, unit) = [
                    (BinaryKind::Mul, ones),
                    (BinaryKind::Add, zeros),
                    (BinaryKind::Sub, zeros),
                    (BinaryKind::Div, ones),
                ][k as usize];
                let (l, r) = if flip {
                    (unit, pick(a))
                } else {
                    (pick(a), unit)
                };
                if kind == BinaryKind::Div && flip {
                    // 1 / x could divide by zero; keep the identity orientation.
                    g.add(Binary::new(kind), &[r, l]).unwrap()
                } else {
                    g.add(Binary::new(kind), &[l, r]).unwrap()
                }
            }
        };
        vals.push(v);
    }
    let n = vals.len();
    g.set_output("out", vals[n - 1]);
    g.set_output("mid", vals[n / 2]);
    g.set_output("early", vals[n / 3]);
    (g, w)
}

fn run(g: &Graph, w: &Weights) -> Vec<(String, Tensor)> {
    let feeds: HashMap<String, Tensor> = [
        (
            "x",
            Tensor::f32(&[2, 3], vec![0.5, -1.25, 2.0, -0.75, 0.0, 1.5]),
        ),
        (
            "y",
            Tensor::f32(&[2, 3], vec![-0.3, 0.8, -1.1, 0.25, 1.75, -2.0]),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ir::run(g, w, &feeds).unwrap()
}

fn check(pipeline: Pipeline, what: &str, g0: &Graph, w0: &Weights) -> Result<(), TestCaseError> {
    let want = run(g0, w0);
    let (mut g, mut w) = (g0.clone(), w0.clone());
    let mut pm = PassManager::new(pipeline);
    pm.run(&mut g, &mut w)
        .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
    let got = run(&g, &w);
    for ((name, a), (_, b)) in want.iter().zip(&got) {
        ir::tensor::allclose(b, a, 1e-5, 1e-6).map_err(|e| {
            TestCaseError::fail(format!(
                "{what}: output {name}: {e}\nbefore:\n{g0}\nafter:\n{g}"
            ))
        })?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn passes_preserve_outputs(
        steps in prop::collection::vec(step(), 1..12),
        consts in prop::collection::vec(-2.0f32..2.0, 6),
    ) {
        let (g, w) = build(&steps, &consts);
        ir::verify(&g).unwrap();
        // `autodiff` adds outputs rather than preserving them; its results are
        // checked against finite differences in compiler/tests/gradcheck.rs.
        for p in registry().into_iter().filter(|p| p.name() != "autodiff") {
            check(Pipeline::from_list(p.name()).unwrap(), p.name(), &g, &w)?;
        }
        check(Pipeline::level("O1").unwrap(), "O1", &g, &w)?;
        check(Pipeline::level("O2").unwrap(), "O2", &g, &w)?;
    }
}
