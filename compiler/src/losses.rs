//! Building the loss ops into a graph by name.
//!
//! [`build_loss`] appends a named loss of a prediction and a target
//! ([`LOSSES`] lists the names and what each expects). The training step
//! (`crate::train`) builds the same losses, and the L1/L2 penalties, from
//! ordinary ops so they fuse; `compiler/tests/train_losses.rs` checks the
//! two forms agree.
//!
//! Everything is built from the ops of `kiln_ir::ops::loss` and
//! `kiln_ir::ops::loss_more`, so `autodiff` differentiates it like any graph.

use kiln_ir::graph::{Graph, NodeError, ValueId};
use kiln_ir::ops::loss::{Reduction, SoftmaxCrossEntropy};
use kiln_ir::ops::loss_more::{
    HingeLoss, KlDiv, KlReduction, PairKind, PairLoss, SoftCrossEntropy,
};
use kiln_ir::ops::norm::Softmax;

/// The losses [`build_loss`] knows: name, and what prediction and target it takes.
pub const LOSSES: &[(&str, &str)] = &[
    (
        "cross_entropy",
        "softmax cross-entropy: logits [N, C, ...], integer labels [N, ...]",
    ),
    (
        "soft_cross_entropy",
        "softmax cross-entropy: logits [N, C, ...], probabilities of the same shape",
    ),
    (
        "hinge",
        "multiclass SVM hinge: scores [N, C], integer labels [N]",
    ),
    (
        "squared_hinge",
        "squared multiclass hinge: scores [N, C], integer labels [N]",
    ),
    (
        "bce",
        "binary cross-entropy with logits: logits, 0..1 targets of the same shape",
    ),
    (
        "mse",
        "mean squared error: prediction, target of the same shape",
    ),
    (
        "l1",
        "mean absolute error: prediction, target of the same shape",
    ),
    (
        "kl",
        "KL(target ‖ softmax(logits)) per sample: logits [N, C], probabilities [N, C]",
    ),
];

/// Why a loss could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error("unknown loss `{0}` (known: {1})")]
    Unknown(String, String),
    #[error("building the `{0}` loss: {1}")]
    Node(String, NodeError),
}

/// Append loss `name` (see [`LOSSES`]) of `pred` against `target`, reduced
/// to its mean; returns the scalar loss.
pub fn build_loss(
    g: &mut Graph,
    name: &str,
    pred: ValueId,
    target: ValueId,
) -> Result<ValueId, LossError> {
    let err = |e| LossError::Node(name.to_string(), e);
    let mean = Reduction::Mean;
    let v = match name {
        "cross_entropy" => {
            let n = g
                .add_node(SoftmaxCrossEntropy::new(mean, None), &[pred, target])
                .map_err(err)?;
            g.node(n).outputs[0]
        }
        "soft_cross_entropy" => g
            .add(SoftCrossEntropy { reduction: mean }, &[pred, target])
            .map_err(err)?,
        "hinge" | "squared_hinge" => g
            .add(
                HingeLoss::new(name == "squared_hinge", 1.0, mean),
                &[pred, target],
            )
            .map_err(err)?,
        "bce" | "mse" | "l1" => {
            let kind = match name {
                "bce" => PairKind::BceWithLogits,
                "mse" => PairKind::Mse,
                _ => PairKind::L1,
            };
            g.add(PairLoss::new(kind, mean), &[pred, target])
                .map_err(err)?
        }
        "kl" => {
            let lq = g.add(Softmax::new(1, true), &[pred]).map_err(err)?;
            g.add(
                KlDiv {
                    reduction: KlReduction::BatchMean,
                    log_target: false,
                },
                &[lq, target],
            )
            .map_err(err)?
        }
        _ => {
            let known: Vec<&str> = LOSSES.iter().map(|(n, _)| *n).collect();
            return Err(LossError::Unknown(name.to_string(), known.join(", ")));
        }
    };
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::{DType, Tensor, Weights};
    use std::collections::HashMap;

    fn run1(g: &Graph, w: &Weights, feeds: &HashMap<String, Tensor>, out: &str) -> f64 {
        let o = kiln_ir::run(g, w, feeds).unwrap();
        o.iter().find(|(n, _)| n == out).unwrap().1.to_f64()[[]]
    }

    #[test]
    fn every_loss_builds_and_matches_its_op() {
        let src = "graph t {\n  input %x: f64[2,3]\n  input %y: i64[2]\n  input %p: f64[2,3]\n  output x = %x\n}\n";
        let base = kiln_ir::parse(src).unwrap();
        let (x, y, p) = (base.inputs()[0], base.inputs()[1], base.inputs()[2]);
        let feeds = HashMap::from([
            (
                "x".to_string(),
                Tensor::from_vec_f64(DType::F64, &[2, 3], vec![3.2, 5.1, -1.7, 1.3, 4.9, 2.0])
                    .unwrap(),
            ),
            (
                "y".to_string(),
                Tensor::from_i64(
                    DType::I64,
                    ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2]), vec![0, 1]).unwrap(),
                ),
            ),
            (
                "p".to_string(),
                Tensor::from_vec_f64(DType::F64, &[2, 3], vec![0.2, 0.3, 0.5, 0.1, 0.8, 0.1])
                    .unwrap(),
            ),
        ]);
        let w = Weights::default();
        for (name, _) in LOSSES {
            let mut g = base.clone();
            let target = match *name {
                "cross_entropy" | "hinge" | "squared_hinge" => y,
                _ => p,
            };
            let l = build_loss(&mut g, name, x, target).unwrap();
            g.set_output("loss", l);
            kiln_ir::verify(&g).unwrap();
            let v = run1(&g, &w, &feeds, "loss");
            assert!(v.is_finite(), "{name}: {v}");
            if *name == "hinge" {
                // (2.9 + 0) / 2.
                assert!((v - 1.45).abs() < 1e-12, "{v}");
            }
        }
        let mut g = base.clone();
        assert!(matches!(
            build_loss(&mut g, "focal", x, y),
            Err(LossError::Unknown(..))
        ));
        // A label tensor where probabilities are expected is a node error.
        assert!(matches!(
            build_loss(&mut g, "mse", x, y),
            Err(LossError::Node(..))
        ));
    }
}
