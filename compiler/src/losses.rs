//! Building losses and regularisers into a graph, for training-step builders.
//!
//! - [`build_loss`] appends a named loss of a prediction and a target
//!   ([`LOSSES`] lists the names and what each expects).
//! - [`regularizer`] appends `l1·Σ l1_norm(p) + l2·Σ l2_norm_sq(p)` over a set
//!   of params (elastic net when both are non-zero), and
//!   [`weight_params`] picks the params the notes regularise: weights, not
//!   biases (rank ≥ 2).
//!
//! Everything is built from the ops of `kiln_ir::ops::loss` and
//! `kiln_ir::ops::loss_more`, so `autodiff` differentiates it like any graph.

use kiln_ir::graph::{Graph, NodeError, ValueId};
use kiln_ir::ops::binary::{Binary, BinaryKind};
use kiln_ir::ops::loss::{Reduction, SoftmaxCrossEntropy};
use kiln_ir::ops::loss_more::{
    HingeLoss, KlDiv, KlReduction, NormPenalty, PairKind, PairLoss, SoftCrossEntropy,
};
use kiln_ir::ops::norm::Softmax;
use kiln_ir::ops::shape::Constant;
use kiln_ir::tensor::Tensor;

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

/// The params the lecture notes regularise: weights (rank ≥ 2), not biases.
pub fn weight_params(g: &Graph) -> Vec<ValueId> {
    g.params()
        .iter()
        .copied()
        .filter(|&p| g.value(p).ty.rank() >= 2 && g.value(p).ty.dtype.is_float())
        .collect()
}

/// Append `l1·Σ_p Σ|p| + l2·Σ_p Σp²` over `params` (a zero coefficient drops
/// its term) as a scalar in the first param's dtype; `None` when there is
/// nothing to add. Add it to the loss with [`add_scalar`].
pub fn regularizer(
    g: &mut Graph,
    params: &[ValueId],
    l1: f64,
    l2: f64,
) -> Result<Option<ValueId>, NodeError> {
    let mut total: Option<ValueId> = None;
    for &p in params {
        let dt = g.value(p).ty.dtype;
        for (coef, norm) in [(l1, 1u8), (l2, 2u8)] {
            if coef == 0.0 {
                continue;
            }
            let n = g.add(NormPenalty { p: norm }, &[p])?;
            let k = g.add(
                Constant {
                    value: Tensor::from_vec_f64(dt, &[], vec![coef]).expect("a scalar"),
                },
                &[],
            )?;
            let t = g.add(Binary::new(BinaryKind::Mul), &[n, k])?;
            total = Some(match total {
                Some(a) => add_scalar(g, a, t)?,
                None => t,
            });
        }
    }
    Ok(total)
}

/// `a + b` (e.g. a loss plus its regulariser).
pub fn add_scalar(g: &mut Graph, a: ValueId, b: ValueId) -> Result<ValueId, NodeError> {
    g.add(Binary::new(BinaryKind::Add), &[a, b])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::{DType, Weights};
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

    #[test]
    fn elastic_net_over_weights_only() {
        let src = "graph t {\n  param %w: f64[2,2]\n  param %b: f64[2]\n  %s = add(%w, %b)\n  output s = %s\n}\n";
        let mut g = kiln_ir::parse(src).unwrap();
        let ps = weight_params(&g);
        assert_eq!(ps, vec![g.params()[0]]);
        let r = regularizer(&mut g, &ps, 0.5, 0.25).unwrap().unwrap();
        g.set_output("reg", r);
        let mut w = Weights::default();
        w.0.insert(
            "w".into(),
            Tensor::from_vec_f64(DType::F64, &[2, 2], vec![1.0, -2.0, 3.0, 0.0]).unwrap(),
        );
        w.0.insert(
            "b".into(),
            Tensor::from_vec_f64(DType::F64, &[2], vec![10.0, 10.0]).unwrap(),
        );
        // 0.5·6 + 0.25·14.
        let v = run1(&g, &w, &HashMap::new(), "reg");
        assert!((v - 6.5).abs() < 1e-12, "{v}");
        assert!(regularizer(&mut g, &ps, 0.0, 0.0).unwrap().is_none());
    }
}
