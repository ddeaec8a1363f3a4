//! The ONNX importer on hand-built models: every problem reported at once with
//! node names, and shape computations folded away at import time.

mod common;
use common::*;

use kiln_compiler::onnx::import::{import_model, ImportOptions, Problem};
use kiln_compiler::onnx::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, type_proto, AttributeProto, ModelProto,
    NodeProto,
};
use kiln_ir::{Op, Tensor};

#[test]
fn every_unsupported_op_is_reported_at_once_with_node_names() {
    let m = model(
        vec![
            named_node("Relu", "r", &["x"], &["a"], vec![]),
            named_node("FancyOp", "fancy1", &["a"], &["b"], vec![]),
            named_node("Relu", "r2", &["b"], &["c"], vec![]),
            named_node("OtherOp", "other", &["c"], &["d"], vec![]),
            named_node(
                "LpPool",
                "pool",
                &["x"],
                &["e"],
                vec![
                    AttributeProto {
                        name: Some("kernel_shape".into()),
                        ints: vec![2, 2],
                        r#type: Some(AttributeType::Ints as i32),
                        ..Default::default()
                    },
                    int_attr("ceil_mode", 1),
                ],
            ),
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
    // LpPool itself is supported, but not in ceil mode.
    assert!(
        names[2].contains("\"pool\" (LpPool): unsupported ceil_mode = 1"),
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
            named_node("Shape", "shape", &["x"], &["s"], vec![]),
            named_node(
                "Gather",
                "gather",
                &["s", "i0"],
                &["n"],
                vec![int_attr("axis", 0)],
            ),
            named_node("Unsqueeze", "unsq", &["n", "ax"], &["n1"], vec![]),
            named_node(
                "Concat",
                "concat",
                &["n1", "m1"],
                &["target"],
                vec![int_attr("axis", 0)],
            ),
            named_node("Reshape", "reshape", &["x", "target"], &["y"], vec![]),
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
        vec![named_node("MatMul", "mm", &["x", "W"], &["y"], vec![])],
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

fn run(m: &ModelProto, opts: &ImportOptions, feeds: &[(&str, Tensor)]) -> Vec<Vec<f64>> {
    let imp = import_model(m, opts).unwrap_or_else(|e| panic!("{e}"));
    let feeds = feeds
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let outs = kiln_ir::run(&imp.graph, &imp.weights, &feeds).unwrap();
    outs.iter().map(|(_, t)| t.values_f64()).collect()
}

#[test]
fn if_inlines_a_branch_or_selects_between_both() {
    // then: x + one (an outer-scope value); else: -x.
    let then_g = body(
        vec![named_node("Add", "add", &["x", "one"], &["t"], vec![])],
        &[],
        &["t"],
    );
    let else_g = body(
        vec![named_node("Neg", "neg", &["x"], &["e"], vec![])],
        &[],
        &["e"],
    );
    let m = model(
        vec![named_node(
            "If",
            "if",
            &["c"],
            &["y"],
            vec![
                graph_attr("then_branch", then_g),
                graph_attr("else_branch", else_g),
            ],
        )],
        vec![vi("x", &[2])],
        &["y"],
        vec![
            ("one", Tensor::f32(&[], vec![1.0])),
            ("c", Tensor::Bool(ndarray::arr0(false).into_dyn())),
        ],
    );
    let x = Tensor::f32(&[2], vec![1.0, 2.0]);
    // A constant condition inlines only the chosen branch.
    let imp = import_model(&m, &ImportOptions::default()).unwrap();
    assert!(!kiln_ir::print(&imp.graph).contains("where"));
    assert_eq!(
        run(&m, &ImportOptions::default(), &[("x", x.clone())]),
        [[-1.0, -2.0]]
    );
    // A runtime condition computes both and selects.
    let mut m = m;
    let g = m.graph.as_mut().unwrap();
    g.initializer.retain(|t| t.name() != "c");
    let mut cvi = vi("c", &[]);
    if let Some(type_proto::Value::TensorType(t)) =
        cvi.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = Some(DataType::Bool as i32);
    }
    g.input.push(cvi);
    let c = |b: bool| Tensor::Bool(ndarray::arr0(b).into_dyn());
    let opts = ImportOptions::default();
    assert_eq!(
        run(&m, &opts, &[("x", x.clone()), ("c", c(true))]),
        [[2.0, 3.0]]
    );
    assert_eq!(run(&m, &opts, &[("x", x), ("c", c(false))]), [[-1.0, -2.0]]);
}

#[test]
fn loop_and_scan_unroll() {
    // Loop 3 times: y += x, and emit y each iteration.
    let loop_body = body(
        vec![
            named_node("Identity", "cond", &["c_in"], &["c_out"], vec![]),
            named_node("Add", "acc", &["y_in", "x"], &["y_out"], vec![]),
            named_node("Identity", "emit", &["y_out"], &["s"], vec![]),
        ],
        &["i", "c_in", "y_in"],
        &["c_out", "y_out", "s"],
    );
    let trip = Tensor::I64(ndarray::arr0(3i64).into_dyn());
    let m = model(
        vec![named_node(
            "Loop",
            "loop",
            &["n", "", "y0"],
            &["y", "ys"],
            vec![graph_attr("body", loop_body)],
        )],
        vec![vi("x", &[2]), vi("y0", &[2])],
        &["y", "ys"],
        vec![("n", trip)],
    );
    let x = Tensor::f32(&[2], vec![1.0, 10.0]);
    let y0 = Tensor::f32(&[2], vec![0.5, 0.5]);
    let outs = run(
        &m,
        &ImportOptions::default(),
        &[("x", x), ("y0", y0.clone())],
    );
    assert_eq!(outs[0], [3.5, 30.5]);
    assert_eq!(outs[1], [1.5, 10.5, 2.5, 20.5, 3.5, 30.5]);

    // Scan the rows of xs in reverse, keeping a running sum.
    let scan_body = body(
        vec![
            named_node("Add", "acc", &["s_in", "row"], &["s_out"], vec![]),
            named_node("Identity", "emit", &["s_out"], &["e"], vec![]),
        ],
        &["s_in", "row"],
        &["s_out", "e"],
    );
    let m = model(
        vec![named_node(
            "Scan",
            "scan",
            &["y0", "xs"],
            &["s", "es"],
            vec![
                graph_attr("body", scan_body),
                int_attr("num_scan_inputs", 1),
                AttributeProto {
                    name: Some("scan_input_directions".into()),
                    ints: vec![1],
                    r#type: Some(AttributeType::Ints as i32),
                    ..Default::default()
                },
            ],
        )],
        vec![vi("y0", &[2]), vi("xs", &[3, 2])],
        &["s", "es"],
        vec![],
    );
    let xs = Tensor::f32(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let outs = run(&m, &ImportOptions::default(), &[("y0", y0), ("xs", xs)]);
    assert_eq!(outs[0], [9.5, 12.5]);
    assert_eq!(outs[1], [5.5, 6.5, 8.5, 10.5, 9.5, 12.5]);
}

fn strings_attr(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        r#type: Some(AttributeType::Strings as i32),
        ..Default::default()
    }
}

fn str_attr(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(v.as_bytes().to_vec()),
        r#type: Some(AttributeType::String as i32),
        ..Default::default()
    }
}

/// `Gradient` (training preview domain) of `c = a·b + a` with respect to
/// `a` and `b`: built at import by the autodiff pass.
#[test]
fn gradient_op_differentiates_the_graph_so_far() {
    let grad = |attrs: Vec<AttributeProto>| NodeProto {
        domain: Some("ai.onnx.preview.training".into()),
        ..named_node("Gradient", "g", &["a", "b"], &["da", "db"], attrs)
    };
    let nodes = |g: NodeProto| {
        vec![
            named_node("Mul", "m", &["a", "b"], &["p"], vec![]),
            named_node("Add", "s", &["p", "a"], &["c"], vec![]),
            g,
        ]
    };
    let m = model(
        nodes(grad(vec![
            strings_attr("xs", &["a", "b"]),
            str_attr("y", "c"),
        ])),
        vec![vi("a", &[]), vi("b", &[])],
        &["c", "da", "db"],
        vec![],
    );
    let s = |x: f32| Tensor::f32(&[], vec![x]);
    let outs = run(
        &m,
        &ImportOptions::default(),
        &[("a", s(3.0)), ("b", s(5.0))],
    );
    // c = 3·5 + 3; dc/da = b + 1; dc/db = a.
    assert_eq!(outs, vec![vec![18.0], vec![6.0], vec![3.0]]);

    // Held-constant values (`zs`) are not supported: a clear error.
    let m = model(
        nodes(grad(vec![
            strings_attr("xs", &["a"]),
            strings_attr("zs", &["b"]),
            str_attr("y", "c"),
        ])),
        vec![vi("a", &[]), vi("b", &[])],
        &["c", "da"],
        vec![],
    );
    let e = import_model(&m, &ImportOptions::default())
        .err()
        .expect("refused");
    assert!(e.is_unsupported() && e.to_string().contains("zs"), "{e}");
}
