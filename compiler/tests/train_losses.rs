//! The training builder's composite losses (ordinary ops, so they fuse)
//! against the dedicated loss ops of `losses::build_loss`, on the reference
//! interpreter: same values for one-hot targets of the same labels.

use std::collections::HashMap;

use kiln_compiler::losses::build_loss;
use kiln_compiler::train::{build_composite_loss, Loss};
use kiln_ir::{DType, Graph, Shape, Tensor, TensorType, Weights};

#[test]
fn composite_losses_match_the_loss_ops() {
    let (n, c) = (6usize, 4usize);
    let labels: Vec<i64> = vec![0, 3, 1, 2, 3, 1];
    let z: Vec<f64> = (0..n * c)
        .map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.37)
        .collect();
    let mut onehot = vec![0.0; n * c];
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * c + l as usize] = 1.0;
    }
    for (ours, theirs, int_labels) in [
        (Loss::CrossEntropy, "cross_entropy", true),
        (Loss::CrossEntropy, "soft_cross_entropy", false),
        (Loss::Hinge, "hinge", true),
        (Loss::SquaredHinge, "squared_hinge", true),
        (Loss::Mse, "mse", false),
        (Loss::L1, "l1", false),
        (Loss::BceWithLogits, "bce", false),
    ] {
        let mut g = Graph::new("t");
        let zt = TensorType::new(DType::F32, Shape::from_dims(&[n, c]));
        let zv = g.add_input("z", zt.clone());
        let tv = g.add_input("t", zt);
        let lv = g.add_input(
            "labels",
            TensorType::new(DType::I64, Shape::from_dims(&[n])),
        );
        let a = build_composite_loss(&mut g, ours, zv, tv).unwrap();
        let b = build_loss(&mut g, theirs, zv, if int_labels { lv } else { tv }).unwrap();
        g.set_output("ours", a);
        g.set_output("theirs", b);
        kiln_ir::verify(&g).unwrap();
        let feeds = HashMap::from([
            (
                "z".to_string(),
                Tensor::from_vec_f64(DType::F32, &[n, c], z.clone()).unwrap(),
            ),
            (
                "t".to_string(),
                Tensor::from_vec_f64(DType::F32, &[n, c], onehot.clone()).unwrap(),
            ),
            (
                "labels".to_string(),
                Tensor::from_i64(
                    DType::I64,
                    ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), labels.clone()).unwrap(),
                ),
            ),
        ]);
        let out = kiln_ir::run(&g, &Weights::default(), &feeds).unwrap();
        let (x, y) = (out[0].1.values_f64()[0], out[1].1.values_f64()[0]);
        assert!(
            (x - y).abs() <= 1e-5 * y.abs().max(1.0),
            "{ours:?} vs {theirs}: {x} vs {y}"
        );
    }
}
