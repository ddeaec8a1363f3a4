//! Sequence ops on hand-built models: sequences are import-time lists, so each
//! model here imports to a tensor-only graph, and the results are checked by
//! running it on the reference interpreter.

mod common;
use common::*;

use kiln_compiler::onnx::import::{import_model, ImportOptions, Problem};
use kiln_compiler::onnx::proto::{tensor_proto::DataType, ModelProto};
use kiln_ir::Tensor;

fn i64s(v: i64) -> Tensor {
    Tensor::I64(ndarray::arr0(v).into_dyn())
}

/// Import (panicking on failure), check that no sequence is left in the
/// graph, run it, and return each output's shape and values.
fn run(m: &ModelProto, feeds: &[(&str, Tensor)]) -> Vec<(Vec<usize>, Vec<f64>)> {
    let imp = import_model(m, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let feeds = feeds
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let outs = kiln_ir::run(&imp.graph, &imp.weights, &feeds).unwrap();
    outs.iter()
        .map(|(_, t)| (t.ty().shape.concrete().unwrap(), t.values_f64()))
        .collect()
}

fn problems(m: &ModelProto) -> Vec<Problem> {
    import_model(m, &ImportOptions::default())
        .err()
        .expect("import fails")
        .problems
}

fn xyz() -> Vec<(&'static str, Tensor)> {
    vec![
        ("x", Tensor::f32(&[2], vec![1.0, 2.0])),
        ("y", Tensor::f32(&[2], vec![3.0, 4.0])),
        ("z", Tensor::f32(&[2], vec![5.0, 6.0])),
    ]
}

#[test]
fn construct_insert_erase_at_and_length() {
    // [x, y, z] → erase(-3) → [y, z] → insert(z, at -1) → [y, z, z]
    // → insert(x, at the back) → [y, z, z, x]; then read positions 0 and -1.
    let m = model(
        vec![
            node("SequenceConstruct", &["x", "y", "z"], &["s1"], vec![]),
            node("SequenceErase", &["s1", "m3"], &["s2"], vec![]),
            node("SequenceInsert", &["s2", "z", "m1"], &["s3"], vec![]),
            node("SequenceInsert", &["s3", "x"], &["s4"], vec![]),
            node("SequenceAt", &["s4", "zero"], &["first"], vec![]),
            node("SequenceAt", &["s4", "m1"], &["last"], vec![]),
            node("SequenceAt", &["s4", "m2"], &["third"], vec![]),
            node("SequenceLength", &["s4"], &["len"], vec![]),
            // Erase without a position drops the last element.
            node("SequenceErase", &["s4"], &["s5"], vec![]),
            node("SequenceAt", &["s5", "m1"], &["last5"], vec![]),
        ],
        vec![vi("x", &[2]), vi("y", &[2]), vi("z", &[2])],
        &["first", "last", "third", "len", "last5"],
        vec![
            ("zero", i64s(0)),
            ("m1", i64s(-1)),
            ("m2", i64s(-2)),
            ("m3", i64s(-3)),
        ],
    );
    let outs = run(&m, &xyz());
    assert_eq!(outs[0].1, [3.0, 4.0]);
    assert_eq!(outs[1].1, [1.0, 2.0]);
    assert_eq!(outs[2].1, [5.0, 6.0]);
    assert_eq!(outs[3], (vec![], vec![4.0]));
    assert_eq!(outs[4].1, [5.0, 6.0]);
}

#[test]
fn empty_sequence_grows_by_insertion() {
    let m = model(
        vec![
            node("SequenceEmpty", &[], &["e"], vec![int_attr("dtype", 1)]),
            node("SequenceLength", &["e"], &["len0"], vec![]),
            node("SequenceInsert", &["e", "x"], &["s1"], vec![]),
            node("SequenceInsert", &["s1", "y", "zero"], &["s2"], vec![]),
            node("SequenceAt", &["s2", "one"], &["at1"], vec![]),
        ],
        vec![vi("x", &[2]), vi("y", &[2])],
        &["len0", "at1"],
        vec![("zero", i64s(0)), ("one", i64s(1))],
    );
    let outs = run(&m, &xyz()[..2]);
    assert_eq!(outs[0], (vec![], vec![0.0]));
    assert_eq!(outs[1].1, [1.0, 2.0]);
}

#[test]
fn split_to_sequence_and_concat_back() {
    let x = Tensor::f32(&[2, 5], (0..10).map(|v| v as f32).collect());
    let m = model(
        vec![
            // Default: pieces of length 1; keepdims = 0 drops the axis.
            node(
                "SplitToSequence",
                &["x"],
                &["cols"],
                vec![int_attr("axis", -1), int_attr("keepdims", 0)],
            ),
            node("SequenceLength", &["cols"], &["n_cols"], vec![]),
            node("SequenceAt", &["cols", "one"], &["col1"], vec![]),
            // A scalar split: pieces of 2, 2 and 1 along axis 1.
            node(
                "SplitToSequence",
                &["x", "two"],
                &["chunks"],
                vec![int_attr("axis", 1)],
            ),
            node("SequenceLength", &["chunks"], &["n_chunks"], vec![]),
            node("SequenceAt", &["chunks", "m1"], &["tail"], vec![]),
            // Sizes [1, 4]; concatenated back along the same axis.
            node(
                "SplitToSequence",
                &["x", "sizes"],
                &["parts"],
                vec![int_attr("axis", 1)],
            ),
            node(
                "ConcatFromSequence",
                &["parts"],
                &["back"],
                vec![int_attr("axis", 1)],
            ),
            // The squeezed columns stacked on a new last axis give x again.
            node(
                "ConcatFromSequence",
                &["cols"],
                &["stacked"],
                vec![int_attr("axis", -1), int_attr("new_axis", 1)],
            ),
        ],
        vec![vi("x", &[2, 5])],
        &["n_cols", "col1", "n_chunks", "tail", "back", "stacked"],
        vec![
            ("one", i64s(1)),
            ("two", i64s(2)),
            ("m1", i64s(-1)),
            ("sizes", Tensor::I64(ndarray::arr1(&[1i64, 4]).into_dyn())),
        ],
    );
    let outs = run(&m, &[("x", x.clone())]);
    let xs = x.values_f64();
    assert_eq!(outs[0], (vec![], vec![5.0]));
    assert_eq!(outs[1], (vec![2], vec![1.0, 6.0]));
    assert_eq!(outs[2], (vec![], vec![3.0]));
    assert_eq!(outs[3], (vec![2, 1], vec![4.0, 9.0]));
    assert_eq!(outs[4], (vec![2, 5], xs.clone()));
    assert_eq!(outs[5], (vec![2, 5], xs));
}

#[test]
fn concat_from_sequence_new_axis_stacks() {
    let m = model(
        vec![
            node("SequenceConstruct", &["x", "y", "z"], &["s"], vec![]),
            node(
                "ConcatFromSequence",
                &["s"],
                &["rows"],
                vec![int_attr("axis", 0), int_attr("new_axis", 1)],
            ),
            node(
                "ConcatFromSequence",
                &["s"],
                &["flat"],
                vec![int_attr("axis", 0)],
            ),
        ],
        vec![vi("x", &[2]), vi("y", &[2]), vi("z", &[2])],
        &["rows", "flat"],
        vec![],
    );
    let outs = run(&m, &xyz());
    let all = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    assert_eq!(outs[0], (vec![3, 2], all.clone()));
    assert_eq!(outs[1], (vec![6], all));
}

#[test]
fn sequence_map_applies_the_body_per_element() {
    // out[i] = s[i] + t, for the sequence s = [x, y] and the tensor t = z.
    let b = body(
        vec![node("Add", &["e", "t"], &["o"], vec![])],
        &["e", "t"],
        &["o"],
    );
    let m = model(
        vec![
            node("SequenceConstruct", &["x", "y"], &["s"], vec![]),
            node(
                "SequenceMap",
                &["s", "z"],
                &["mapped"],
                vec![graph_attr("body", b)],
            ),
            node(
                "ConcatFromSequence",
                &["mapped"],
                &["out"],
                vec![int_attr("axis", 0)],
            ),
        ],
        vec![vi("x", &[2]), vi("y", &[2]), vi("z", &[2])],
        &["out"],
        vec![],
    );
    let outs = run(&m, &xyz());
    assert_eq!(outs[0].1, [6.0, 8.0, 8.0, 10.0]);
}

#[test]
fn a_loop_carries_a_sequence() {
    // for i in 0..3: seq.insert(x * i); then concatenate.
    let b = body(
        vec![
            node("Identity", &["c_in"], &["c_out"], vec![]),
            node("Cast", &["i"], &["fi"], vec![int_attr("to", 1)]),
            node("Mul", &["x", "fi"], &["xi"], vec![]),
            node("SequenceInsert", &["s_in", "xi"], &["s_out"], vec![]),
        ],
        &["i", "c_in", "s_in"],
        &["c_out", "s_out"],
    );
    let m = model(
        vec![
            node("SequenceEmpty", &[], &["e"], vec![]),
            node("Loop", &["n", "", "e"], &["s"], vec![graph_attr("body", b)]),
            node(
                "ConcatFromSequence",
                &["s"],
                &["out"],
                vec![int_attr("axis", 0)],
            ),
        ],
        vec![vi("x", &[2])],
        &["out"],
        vec![("n", i64s(3))],
    );
    let outs = run(&m, &xyz()[..1]);
    assert_eq!(outs[0], (vec![6], vec![0.0, 0.0, 1.0, 2.0, 2.0, 4.0]));
}

#[test]
fn a_position_out_of_range_is_invalid_and_names_the_node() {
    for (op, ins) in [
        ("SequenceAt", &["s", "pos"][..]),
        ("SequenceErase", &["s", "pos"][..]),
        ("SequenceInsert", &["s", "x", "pos"][..]),
    ] {
        let m = model(
            vec![
                node("SequenceConstruct", &["x", "y"], &["s"], vec![]),
                node(op, ins, &["bad"], vec![]),
                node("SequenceLength", &["s"], &["len"], vec![]),
            ],
            vec![vi("x", &[2]), vi("y", &[2])],
            &["len"],
            vec![("pos", i64s(3))],
        );
        let ps = problems(&m);
        assert_eq!(ps.len(), 1, "{ps:?}");
        let msg = ps[0].to_string();
        assert!(matches!(ps[0], Problem::Invalid { .. }), "{msg}");
        assert!(
            msg.contains("\"bad\"") && msg.contains("position 3"),
            "{msg}"
        );
    }
}

#[test]
fn a_runtime_position_is_unsupported_and_asks_for_binding() {
    let m = model(
        vec![
            node("SequenceConstruct", &["x", "y"], &["s"], vec![]),
            node("SequenceAt", &["s", "p"], &["out"], vec![]),
        ],
        vec![
            vi("x", &[2]),
            vi("y", &[2]),
            vi_of("p", DataType::Int64, &[]),
        ],
        &["out"],
        vec![],
    );
    let err = import_model(&m, &ImportOptions::default()).err().unwrap();
    assert!(err.is_unsupported(), "{err}");
    assert_eq!(err.const_input_names(), ["p"]);
    // Bound at import time, the same model imports.
    let mut opts = ImportOptions::default();
    opts.const_inputs.insert("p".into(), i64s(-1));
    let imp = import_model(&m, &opts).unwrap();
    let feeds = xyz()[..2]
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let outs = kiln_ir::run(&imp.graph, &imp.weights, &feeds).unwrap();
    assert_eq!(outs[0].1.values_f64(), [3.0, 4.0]);
}

#[test]
fn a_sequence_cannot_be_a_graph_output_or_a_tensor_operand() {
    let m = model(
        vec![
            node("SequenceConstruct", &["x", "y"], &["s"], vec![]),
            node("Relu", &["s"], &["r"], vec![]),
        ],
        vec![vi("x", &[2]), vi("y", &[2])],
        &["s", "r"],
        vec![],
    );
    let ps = problems(&m);
    let msgs: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
    assert_eq!(ps.len(), 2, "{msgs:?}");
    assert!(ps.iter().all(Problem::is_unsupported), "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("\"r\"") && m.contains("sequence")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("output `s` is a sequence")),
        "{msgs:?}"
    );
}

#[test]
fn mixed_dtypes_and_bad_splits_are_invalid() {
    let m = model(
        vec![
            node("SequenceConstruct", &["x", "k"], &["s"], vec![]),
            node("SplitToSequence", &["x", "sizes"], &["t"], vec![]),
            node("SplitToSequence", &["x", "zero"], &["u"], vec![]),
            node("SequenceLength", &["t"], &["len"], vec![]),
        ],
        vec![vi("x", &[2])],
        &["len"],
        vec![
            ("k", i64s(1)),
            ("zero", i64s(0)),
            ("sizes", Tensor::I64(ndarray::arr1(&[1i64, 2]).into_dyn())),
        ],
    );
    let ps = problems(&m);
    let msgs: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
    assert_eq!(ps.len(), 3, "{msgs:?}");
    assert!(ps.iter().all(|p| !p.is_unsupported()), "{msgs:?}");
    assert!(msgs[0].contains("\"s\""), "{msgs:?}");
    assert!(
        msgs[1].contains("\"t\"") && msgs[1].contains("add up"),
        "{msgs:?}"
    );
    assert!(
        msgs[2].contains("\"u\"") && msgs[2].contains("positive"),
        "{msgs:?}"
    );
}
