//! The ONNX importer on hand-built models: every problem reported at once with
//! node names, and shape computations folded away at import time.

use kiln_compiler::onnx::import::{import_model, ImportOptions, Problem};
use kiln_compiler::onnx::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use kiln_compiler::onnx::tensor_to_proto;
use kiln_ir::{Op, Tensor};

fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(AttributeType::Int as i32),
        ..Default::default()
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: &[&str],
    inits: Vec<(&str, Tensor)>,
) -> ModelProto {
    ModelProto {
        ir_version: Some(9),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: nodes,
            input: inputs,
            output: outputs.iter().map(|o| vi(o, &[])).collect(),
            initializer: inits
                .into_iter()
                .map(|(n, t)| tensor_to_proto(n, &t))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn every_unsupported_op_is_reported_at_once_with_node_names() {
    let m = model(
        vec![
            node("Relu", "r", &["x"], &["a"], vec![]),
            node("FancyOp", "fancy1", &["a"], &["b"], vec![]),
            node("Relu", "r2", &["b"], &["c"], vec![]),
            node("OtherOp", "other", &["c"], &["d"], vec![]),
            node("MaxPool", "pool", &["x"], &["e", "idx"], vec![]),
        ],
        vec![vi("x", &[1, 1, 4, 4])],
        &["d", "e"],
        vec![],
    );
    let err = import_model(&m, &ImportOptions::default())
        .err()
        .expect("import fails");
    let names: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    assert!(err.is_unsupported(), "{names:?}");
    assert_eq!(err.problems.len(), 3, "{names:?}");
    assert!(
        matches!(&err.problems[0], Problem::UnsupportedOp { node, op_type, .. } if node == "fancy1" && op_type == "FancyOp")
    );
    assert!(
        matches!(&err.problems[1], Problem::UnsupportedOp { node, op_type, .. } if node == "other" && op_type == "OtherOp")
    );
    // MaxPool itself is supported, but not its second (indices) output.
    assert!(
        names[2].contains("\"pool\" (MaxPool): unsupported output 1"),
        "{names:?}"
    );
    // The dependent Relu "r2" is skipped, not reported as a cascade.
    assert!(!names.iter().any(|n| n.contains("r2")), "{names:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("cannot import the ONNX model:"), "{msg}");
}

#[test]
fn shape_computations_fold_into_a_static_reshape() {
    // y = Reshape(x, Concat(Gather(Shape(x), 0), [-1])): the classic flatten
    // subgraph exporters emit. It must import as one static reshape.
    let idx0 = Tensor::I64(ndarray::arr0(0i64).into_dyn());
    let minus1 = Tensor::I64(ndarray::arr1(&[-1i64]).into_dyn());
    let m = model(
        vec![
            node("Shape", "shape", &["x"], &["s"], vec![]),
            node(
                "Gather",
                "gather",
                &["s", "i0"],
                &["n"],
                vec![int_attr("axis", 0)],
            ),
            node("Unsqueeze", "unsq", &["n", "ax"], &["n1"], vec![]),
            node(
                "Concat",
                "concat",
                &["n1", "m1"],
                &["target"],
                vec![int_attr("axis", 0)],
            ),
            node("Reshape", "reshape", &["x", "target"], &["y"], vec![]),
        ],
        vec![vi("x", &[2, 3, 4])],
        &["y"],
        vec![
            ("i0", idx0),
            ("m1", minus1),
            ("ax", Tensor::I64(ndarray::arr1(&[0i64]).into_dyn())),
        ],
    );
    let imp = import_model(&m, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let g = &imp.graph;
    let ops: Vec<&Op> = g.node_ids().into_iter().map(|n| &g.node(n).op).collect();
    assert_eq!(ops.len(), 1, "{}", kiln_ir::print(g));
    assert_eq!(ops[0].spelling(), "reshape");
    assert_eq!(g.value(g.outputs()[0].1).ty.to_string(), "f32[2,12]");
    assert!(
        imp.weights.0.is_empty(),
        "the shape constants must not become weights"
    );
    kiln_ir::verify(g).unwrap();
}

#[test]
fn initializers_become_named_params() {
    let w = Tensor::f32(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let m = model(
        vec![node("MatMul", "mm", &["x", "W"], &["y"], vec![])],
        vec![vi("x", &[1, 3])],
        &["y"],
        vec![("W", w.clone())],
    );
    let imp = import_model(&m, &ImportOptions::default()).unwrap();
    assert_eq!(imp.weights.get("W"), Some(&w));
    let text = kiln_ir::print(&imp.graph);
    assert!(text.contains("param %W: f32[3,2]"), "{text}");
    assert!(text.contains("matmul(%x, %W)"), "{text}");
    assert!(text.contains("@mm"), "the ONNX node name is kept: {text}");
}

#[test]
fn garbage_bytes_are_an_error_not_a_panic() {
    for bytes in [
        &b""[..],
        b"\x08",
        b"\xff\xff\xff\xff\xff",
        b"not a model at all",
    ] {
        if let Ok(m) = kiln_compiler::onnx::read_model(bytes) {
            // Some byte strings decode as an (empty) model: import must then fail cleanly.
            assert!(import_model(&m, &ImportOptions::default()).is_err());
        }
    }
}
