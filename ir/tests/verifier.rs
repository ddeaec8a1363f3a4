//! Each kind of invalid graph gets its own, specific verifier error that names
//! the node.

use kiln_ir::ops::elementwise::{Binary, BinaryKind, Unary, UnaryKind};
use kiln_ir::ops::shape::Transpose;
use kiln_ir::{verify, DType, Graph, OpError, TensorType, VerifyErrorKind};

fn f32s(dims: &[usize]) -> TensorType {
    TensorType::concrete(DType::F32, dims)
}

/// x → exp → neg → out, returning the graph and the node ids.
fn chain() -> (Graph, kiln_ir::NodeId, kiln_ir::NodeId) {
    let mut g = Graph::new("chain");
    let x = g.add_input("x", f32s(&[2, 3]));
    let a = g.add_node(Unary::new(UnaryKind::Exp), &[x]).unwrap();
    let av = g.node(a).outputs[0];
    let b = g.add_node(Unary::new(UnaryKind::Neg), &[av]).unwrap();
    let bv = g.node(b).outputs[0];
    g.set_output("y", bv);
    (g, a, b)
}

#[test]
fn a_valid_graph_verifies() {
    let (g, _, _) = chain();
    verify(&g).unwrap();
}

#[test]
fn dangling_value_after_removing_its_producer() {
    let (mut g, a, b) = chain();
    g.remove_node(a);
    let e = verify(&g).unwrap_err();
    assert_eq!(e.node, Some(b));
    assert!(
        matches!(e.kind, VerifyErrorKind::DanglingValue { .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "node #1 (neg): input 0 uses a value that is not defined"
    );
}

#[test]
fn dangling_graph_output() {
    let (mut g, _, b) = chain();
    g.remove_node(b);
    let e = verify(&g).unwrap_err();
    assert_eq!(e.to_string(), "output `y` uses a value that is not defined");
}

#[test]
fn cycle_is_detected_and_named() {
    let (mut g, a, b) = chain();
    let bv = g.node(b).outputs[0];
    g.set_node_input(a, 0, bv); // exp now reads neg's result: a cycle
    let e = verify(&g).unwrap_err();
    assert_eq!(e.kind, VerifyErrorKind::Cycle);
    assert!(e.node == Some(a) || e.node == Some(b));
    assert!(e.to_string().contains("cycle"), "{e}");
}

#[test]
fn recorded_type_mismatch() {
    let (mut g, a, _) = chain();
    let av = g.node(a).outputs[0];
    g.value_mut(av).ty = f32s(&[3, 2]);
    let e = verify(&g).unwrap_err();
    assert_eq!(e.node, Some(a));
    assert!(
        matches!(e.kind, VerifyErrorKind::TypeMismatch { output: 0, .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "node #0 (exp): result 0 is declared f32[3,2] but the op produces f32[2,3]"
    );
}

#[test]
fn shape_mismatch_between_inputs() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32s(&[2, 3]));
    let y = g.add_input("y", f32s(&[4]));
    // add_node refuses it outright...
    let err = g
        .add_node(Binary::new(BinaryKind::Add), &[x, y])
        .unwrap_err();
    assert!(matches!(err.err, OpError::Shape(_)), "{err}");
    // ...and a node inserted unchecked is caught by the verifier.
    let n = g.add_node_typed(
        Binary::new(BinaryKind::Add).into(),
        &[x, y],
        vec![f32s(&[2, 3])],
        Some("bad_add".into()),
    );
    let v = g.node(n).outputs[0];
    g.set_output("z", v);
    let e = verify(&g).unwrap_err();
    assert!(
        matches!(e.kind, VerifyErrorKind::Op(OpError::Shape(_))),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("node \"bad_add\" (add): shape error: cannot broadcast [2,3] with [4]"),
        "{e}"
    );
}

#[test]
fn dtype_mismatch() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32s(&[2]));
    let y = g.add_input("y", TensorType::concrete(DType::I32, &[2]));
    let n = g.add_node_typed(
        Binary::new(BinaryKind::Mul).into(),
        &[x, y],
        vec![f32s(&[2])],
        None,
    );
    let v = g.node(n).outputs[0];
    g.set_output("z", v);
    let e = verify(&g).unwrap_err();
    assert!(
        matches!(e.kind, VerifyErrorKind::Op(OpError::DType(_))),
        "{e}"
    );
}

#[test]
fn wrong_arity() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32s(&[2]));
    let n = g.add_node_typed(
        Unary::new(UnaryKind::Relu).into(),
        &[x, x],
        vec![f32s(&[2])],
        None,
    );
    let v = g.node(n).outputs[0];
    g.set_output("z", v);
    let e = verify(&g).unwrap_err();
    assert!(
        matches!(e.kind, VerifyErrorKind::Op(OpError::Arity { .. })),
        "{e}"
    );
}

#[test]
fn invalid_attribute() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32s(&[2, 3]));
    let bad = Transpose { perm: vec![0, 0] };
    let n = g.add_node_typed(bad.into(), &[x], vec![f32s(&[2, 3])], None);
    let v = g.node(n).outputs[0];
    g.set_output("z", v);
    let e = verify(&g).unwrap_err();
    assert!(
        matches!(e.kind, VerifyErrorKind::Op(OpError::Attr(_))),
        "{e}"
    );
    assert!(e.to_string().contains("perm"), "{e}");
}

#[test]
fn wrong_result_count() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32s(&[2]));
    let n = g.add_node_typed(
        Unary::new(UnaryKind::Relu).into(),
        &[x],
        vec![f32s(&[2]), f32s(&[2])],
        None,
    );
    let v = g.node(n).outputs[0];
    g.set_output("z", v);
    let e = verify(&g).unwrap_err();
    assert_eq!(
        e.kind,
        VerifyErrorKind::OutputCount {
            declared: 2,
            inferred: 1
        }
    );
}

#[test]
fn duplicate_input_names() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32s(&[2]));
    g.add_param("x", f32s(&[2]));
    g.set_output("z", x);
    let e = verify(&g).unwrap_err();
    assert_eq!(e.kind, VerifyErrorKind::DuplicateName("x".into()));
}

#[test]
fn no_outputs() {
    let mut g = Graph::new("g");
    g.add_input("x", f32s(&[2]));
    assert_eq!(verify(&g).unwrap_err().kind, VerifyErrorKind::NoOutputs);
}

#[test]
fn symbolic_dims_bind_and_reinfer() {
    let mut g = Graph::new("g");
    let x = g.add_input(
        "x",
        TensorType::new(
            DType::F32,
            vec![kiln_ir::Dim::sym("N"), kiln_ir::Dim::Known(3)].into(),
        ),
    );
    let y = g.add(Unary::new(UnaryKind::Exp), &[x]).unwrap();
    g.set_output("y", y);
    assert_eq!(g.value(y).ty.to_string(), "f32[N,3]");
    g.bind_dims(&[("N".to_string(), 5)].into_iter().collect())
        .unwrap();
    assert_eq!(g.value(y).ty.to_string(), "f32[5,3]");
    verify(&g).unwrap();
}
