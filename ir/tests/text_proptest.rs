//! Property test: random graphs print canonically, parse back to the same text,
//! and evaluate to bitwise-identical results before and after the round trip.

use std::collections::HashMap;

use kiln_ir::ops::elementwise::{Binary, BinaryKind, Unary, UnaryKind, Where};
use kiln_ir::{parse, print, run, DType, Graph, Op, Tensor, TensorType, Weights, F64};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Unary(usize, u8, f64),
    Binary(usize, usize, u8),
    Select(usize, usize, usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (any::<usize>(), any::<u8>(), -2.0f64..2.0).prop_map(|(a, k, p)| Step::Unary(a, k, p)),
        (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(a, b, k)| Step::Binary(a, b, k)),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(a, b, c)| Step::Select(a, b, c)),
    ]
}

const UNARY: &[UnaryKind] = &[
    UnaryKind::Neg,
    UnaryKind::Abs,
    UnaryKind::Tanh,
    UnaryKind::Sigmoid,
    UnaryKind::Relu,
    UnaryKind::LeakyRelu,
    UnaryKind::Elu,
    UnaryKind::Gelu,
    UnaryKind::Sin,
    UnaryKind::Floor,
    UnaryKind::HardSigmoid,
    UnaryKind::Atan,
    UnaryKind::Softsign,
    UnaryKind::Mish,
    UnaryKind::HardSwish,
    UnaryKind::ThresholdedRelu,
];
const BINARY: &[BinaryKind] = &[
    BinaryKind::Add,
    BinaryKind::Sub,
    BinaryKind::Mul,
    BinaryKind::Max,
    BinaryKind::Min,
];

/// Build a graph over f32 values broadcast among [2,3], [3] and [1,3].
fn build(steps: &[Step], n_out: usize) -> Graph {
    let mut g = Graph::new("random");
    let mut vals = vec![
        g.add_input("a", TensorType::concrete(DType::F32, &[2, 3])),
        g.add_input("b", TensorType::concrete(DType::F32, &[3])),
        g.add_param("w", TensorType::concrete(DType::F32, &[1, 3])),
    ];
    for s in steps {
        let pick = |i: usize| vals[i % vals.len()];
        let op: (Op, Vec<_>) = match *s {
            Step::Unary(a, k, p) => {
                let mut u = Unary::new(UNARY[k as usize % UNARY.len()]);
                if matches!(
                    u.kind,
                    UnaryKind::LeakyRelu | UnaryKind::Elu | UnaryKind::ThresholdedRelu
                ) {
                    u.alpha = F64(p);
                }
                (u.into(), vec![pick(a)])
            }
            Step::Binary(a, b, k) => (
                Binary::new(BINARY[k as usize % BINARY.len()]).into(),
                vec![pick(a), pick(b)],
            ),
            Step::Select(a, b, c) => {
                let cond = g
                    .add(Binary::new(BinaryKind::Gt), &[pick(a), pick(b)])
                    .unwrap();
                (Where.into(), vec![cond, pick(b), pick(c)])
            }
        };
        vals.push(g.add(op.0, &op.1).unwrap());
    }
    for k in 0..n_out.max(1) {
        let v = vals[vals.len() - 1 - (k * 7) % vals.len()];
        g.set_output(format!("o{k}"), v);
    }
    g
}

fn eval(g: &Graph) -> Vec<(String, Tensor)> {
    let inputs: HashMap<String, Tensor> = [
        (
            "a".to_string(),
            Tensor::f32(&[2, 3], vec![-1.5, -0.25, 0.0, 0.5, 1.25, 3.0]),
        ),
        ("b".to_string(), Tensor::f32(&[3], vec![0.75, -2.0, 1.0])),
    ]
    .into();
    let mut w = Weights::default();
    w.insert("w", Tensor::f32(&[1, 3], vec![0.1, -0.2, 0.3]));
    run(g, &w, &inputs).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn random_graphs_roundtrip(steps in prop::collection::vec(step(), 1..24), n_out in 1usize..4) {
        let g = build(&steps, n_out);
        kiln_ir::verify(&g).unwrap();
        let p1 = print(&g);
        let g2 = parse(&p1).unwrap_or_else(|e| panic!("{e}\n{p1}"));
        prop_assert_eq!(&p1, &print(&g2));
        let (r1, r2) = (eval(&g), eval(&g2));
        prop_assert_eq!(r1, r2);
    }
}
