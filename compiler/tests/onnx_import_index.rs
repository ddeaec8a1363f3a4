//! Import of the data-dependent indexing ops (NonZero, Compress, Unique):
//! folded when their inputs are known at import time, refused with a clear
//! message otherwise. Values are the ONNX spec examples.

mod common;
use common::{int_attr, vi_of as vi};

use std::collections::HashMap;

use kiln_compiler::onnx::import::{import_model, ImportOptions};
use kiln_compiler::onnx::proto::{
    tensor_proto::DataType, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
};
use kiln_ir::Tensor;
use ndarray::{ArrayD, IxDyn};

/// One node over graph inputs `ins`; `outs` are the graph outputs.
fn one_node(
    op: &str,
    ins: &[(&str, DataType, &[i64])],
    outs: &[&str],
    attrs: Vec<AttributeProto>,
) -> ModelProto {
    ModelProto {
        ir_version: Some(9),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: vec![NodeProto {
                op_type: Some(op.into()),
                name: Some("n".into()),
                input: ins.iter().map(|i| i.0.to_string()).collect(),
                output: outs.iter().map(|s| s.to_string()).collect(),
                attribute: attrs,
                ..Default::default()
            }],
            input: ins.iter().map(|&(n, t, d)| vi(n, t, d)).collect(),
            output: outs.iter().map(|o| vi(o, DataType::Float, &[])).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Import with every input bound as a constant, and run.
fn fold(m: &ModelProto, consts: &[(&str, Tensor)]) -> Vec<Tensor> {
    let opts = ImportOptions {
        const_inputs: consts
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
        ..Default::default()
    };
    let imp = import_model(m, &opts).unwrap_or_else(|e| panic!("{e}"));
    kiln_ir::run(&imp.graph, &imp.weights, &HashMap::new())
        .unwrap()
        .into_iter()
        .map(|(_, t)| t)
        .collect()
}

fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
}
fn f32t(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
}
fn boolt(v: &[bool]) -> Tensor {
    Tensor::Bool(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap())
}

#[test]
fn nonzero_folds_a_constant_and_refuses_a_runtime_input() {
    let m = one_node(
        "NonZero",
        &[("x", DataType::Float, &[2, 2])],
        &["y"],
        vec![],
    );
    let x = f32t(&[2, 2], &[1., 0., 1., 1.]);
    assert_eq!(fold(&m, &[("x", x)]), [i64t(&[2, 3], &[0, 1, 1, 0, 0, 1])]);
    let Err(err) = import_model(&m, &ImportOptions::default()) else {
        panic!("a runtime NonZero input must be refused");
    };
    assert!(err.is_unsupported());
    assert!(
        err.to_string()
            .contains("output shape depends on its values"),
        "{err}"
    );
}

#[test]
fn compress_with_a_constant_condition_is_a_gather() {
    let ins: &[(&str, DataType, &[i64])] =
        &[("x", DataType::Float, &[3, 2]), ("c", DataType::Bool, &[3])];
    let x = f32t(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
    let m = one_node("Compress", ins, &["y"], vec![int_attr("axis", 0)]);
    let c = boolt(&[false, true, true]);
    let out = fold(&m, &[("x", x.clone()), ("c", c)]);
    assert_eq!(out, [f32t(&[2, 2], &[3., 4., 5., 6.])]);
    // Without an axis the input is flattened first; a short condition is fine.
    let m = one_node("Compress", ins, &["y"], vec![]);
    let c = boolt(&[false, true, false, false, true]);
    assert_eq!(
        fold(&m, &[("x", x.clone()), ("c", c)]),
        [f32t(&[2], &[2., 5.])]
    );
    // Only the condition needs to be known; x stays a runtime input.
    let opts = ImportOptions {
        const_inputs: [("c".to_string(), boolt(&[true, false, true]))].into(),
        ..Default::default()
    };
    let imp = import_model(&m, &opts).unwrap_or_else(|e| panic!("{e}"));
    let feeds = [("x".to_string(), x)].into();
    let out = kiln_ir::run(&imp.graph, &imp.weights, &feeds).unwrap();
    assert_eq!(out[0].1, f32t(&[2], &[1., 3.]));
}

#[test]
fn unique_of_a_constant() {
    let outs = ["y", "indices", "inverse", "counts"];
    let x = f32t(&[6], &[2., 1., 1., 3., 4., 3.]);
    let ins: &[(&str, DataType, &[i64])] = &[("x", DataType::Float, &[6])];
    let m = one_node("Unique", ins, &outs, vec![int_attr("sorted", 0)]);
    assert_eq!(
        fold(&m, &[("x", x.clone())]),
        [
            f32t(&[4], &[2., 1., 3., 4.]),
            i64t(&[4], &[0, 1, 3, 4]),
            i64t(&[6], &[0, 1, 1, 2, 3, 2]),
            i64t(&[4], &[1, 2, 2, 1]),
        ]
    );
    let m = one_node("Unique", ins, &outs, vec![]);
    assert_eq!(
        fold(&m, &[("x", x)]),
        [
            f32t(&[4], &[1., 2., 3., 4.]),
            i64t(&[4], &[1, 0, 3, 4]),
            i64t(&[6], &[1, 0, 0, 2, 3, 2]),
            i64t(&[4], &[2, 1, 2, 1]),
        ]
    );
    // Rows of [[1, 0, 0], [1, 0, 0], [2, 3, 4]] along axis 0.
    let x = f32t(&[3, 3], &[1., 0., 0., 1., 0., 0., 2., 3., 4.]);
    let ins: &[(&str, DataType, &[i64])] = &[("x", DataType::Float, &[3, 3])];
    let m = one_node("Unique", ins, &outs, vec![int_attr("axis", 0)]);
    assert_eq!(
        fold(&m, &[("x", x)]),
        [
            f32t(&[2, 3], &[1., 0., 0., 2., 3., 4.]),
            i64t(&[2], &[0, 2]),
            i64t(&[3], &[0, 0, 1]),
            i64t(&[2], &[2, 1]),
        ]
    );
}
