//! Worked examples from the lecture notes (`seed-checklist.md` §7), run as
//! whole graphs through the parser, verifier and reference interpreter.
//!
//! Each case is data: a `.kir` graph whose inputs are inline constants, and the
//! expected value of each output.

use std::collections::HashMap;

use kiln::ir::{self, Weights};

/// Run a graph with no inputs and compare each named output to `expected`
/// (row-major values) within `tol`.
fn check(src: &str, expected: &[(&str, &[usize], &[f64])], tol: f64) {
    let g = ir::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let outs =
        ir::run(&g, &Weights::default(), &HashMap::new()).unwrap_or_else(|e| panic!("{e}\n{src}"));
    for (name, shape, want) in expected {
        let (_, t) = outs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no output {name}"));
        assert_eq!(t.shape(), *shape, "output {name}");
        let got = t.values_f64();
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "output {name}[{i}]: got {g}, expected {w} (all: {got:?})"
            );
        }
    }
}

/// Multiclass SVM hinge loss: sum over j != y of max(0, s_j - s_y + 1), with
/// the correct class given as a one-hot mask.
fn hinge_graph(scores: &str, onehot: &str, n: usize) -> String {
    format!(
        "graph hinge {{
  %s = constant() {{value = tensor<f64[{n}]>[{scores}]}}
  %y = constant() {{value = tensor<f64[{n}]>[{onehot}]}}
  %one = constant() {{value = tensor<f64[]>[1.0]}}
  %sy = mul(%s, %y)
  %correct = reduce_sum(%sy) {{axes = [0], keepdims = 1}}
  %d = sub(%s, %correct)
  %m = add(%d, %one)
  %h = relu(%m)
  %notm = sub(%one, %y)
  %masked = mul(%h, %notm)
  %loss = reduce_sum(%masked) {{axes = [], keepdims = 0}}
  output loss = %loss
}}"
    )
}

#[test]
fn hinge_loss_cs231n_695_45() {
    // Cat is the correct class with score -96.8; the others 437.9 and 61.95.
    check(
        &hinge_graph("-96.8, 437.9, 61.95", "1.0, 0.0, 0.0", 3),
        &[("loss", &[], &[695.45])],
        1e-9,
    );
}

#[test]
fn hinge_loss_cs7643_2_9_and_derived_columns() {
    check(
        &hinge_graph("3.2, 5.1, -1.7", "1.0, 0.0, 0.0", 3),
        &[("loss", &[], &[2.9])],
        1e-9,
    );
    // Derived (not printed in the notes): car column → 0, frog column → 12.9.
    check(
        &hinge_graph("1.3, 4.9, 2.0", "0.0, 1.0, 0.0", 3),
        &[("loss", &[], &[0.0])],
        1e-9,
    );
    check(
        &hinge_graph("2.2, 2.5, -3.1", "0.0, 0.0, 1.0", 3),
        &[("loss", &[], &[12.9])],
        1e-9,
    );
}

/// The same seed vectors through the `hinge_loss` op (scores [N, C], integer
/// labels): 695.45; the CS7643 table's columns as rows give 2.9, 0 and 12.9,
/// mean 15.8 / 3; squared hinge squares each term.
#[test]
fn hinge_loss_op_seed_vectors() {
    check(
        "graph h {
  %s = constant() {value = tensor<f64[1,3]>[-96.8, 437.9, 61.95]}
  %y = constant() {value = tensor<i64[1]>[0]}
  %l = hinge_loss(%s, %y)
  output loss = %l
}",
        &[("loss", &[], &[695.45])],
        1e-9,
    );
    check(
        "graph h {
  %s = constant() {value = tensor<f64[3,3]>[3.2, 5.1, -1.7, 1.3, 4.9, 2.0, 2.2, 2.5, -3.1]}
  %y = constant() {value = tensor<i64[3]>[0, 1, 2]}
  %each = hinge_loss(%s, %y) {reduction = \"none\"}
  %mean = hinge_loss(%s, %y)
  %sq = squared_hinge_loss(%s, %y) {reduction = \"none\"}
  output each = %each
  output mean = %mean
  output sq = %sq
}",
        &[
            ("each", &[3], &[2.9, 0.0, 12.9]),
            ("mean", &[], &[15.8 / 3.0]),
            ("sq", &[3], &[2.9 * 2.9, 0.0, 6.3 * 6.3 + 6.6 * 6.6]),
        ],
        1e-9,
    );
}

/// Seed 7.1 #3 and #4 through `soft_cross_entropy`: the cat column with a
/// one-hot target gives −ln 0.129983 = 2.0404; all-zero scores over C = 10
/// give ln 10 whatever the target distribution.
#[test]
fn soft_cross_entropy_seed_vectors() {
    check(
        "graph s {
  %z = constant() {value = tensor<f32[1,3]>[3.2, 5.1, -1.7]}
  %p = constant() {value = tensor<f32[1,3]>[1.0, 0.0, 0.0]}
  %l = soft_cross_entropy(%z, %p)
  %z0 = constant() {value = tensor<f32[1,10]>[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}
  %p0 = constant() {value = tensor<f32[1,10]>[0.5, 0.5, 0, 0, 0, 0, 0, 0, 0, 0]}
  %l0 = soft_cross_entropy(%z0, %p0)
  output loss = %l
  output init = %l0
}",
        &[
            ("loss", &[], &[2.0404]),
            ("init", &[], &[std::f64::consts::LN_10]),
        ],
        1e-4,
    );
}

#[test]
fn softmax_cross_entropy_0_13_0_87() {
    let src = "graph sm {
  %z = constant() {value = tensor<f32[3]>[3.2, 5.1, -1.7]}
  %p = softmax(%z) {axis = 0}
  %lp = log_softmax(%z) {axis = 0}
  %first = slice(%lp) {starts = [0], ends = [1]}
  %nll = neg(%first)
  output p = %p
  output loss = %nll
}";
    check(
        src,
        &[
            ("p", &[3], &[0.129983, 0.869050, 0.000968]),
            ("loss", &[1], &[2.0404]),
        ],
        1e-4,
    );
}

#[test]
fn initial_loss_is_log_c() {
    // All-zero scores over 10 classes: cross-entropy = ln 10.
    let src = "graph init {
  %z = constant() {value = tensor<f64[1,10]>[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]}
  %lp = log_softmax(%z) {axis = 1}
  %m = reduce_mean(%lp) {axes = [1], keepdims = 0}
  %l = neg(%m)
  output loss = %l
}";
    check(src, &[("loss", &[1], &[std::f64::consts::LN_10])], 1e-12);
}

#[test]
fn elementwise_vectors() {
    let src = "graph ew {
  %y = constant() {value = tensor<f32[3]>[1.0, 2.0, 3.0]}
  %x = constant() {value = tensor<f32[3]>[2.0, 3.0, 4.0]}
  %add = add(%y, %x)
  %sub = sub(%y, %x)
  %div = div(%y, %x)
  %had = mul(%y, %x)
  %dot = reduce_sum(%had) {axes = [0], keepdims = 0}
  output add = %add
  output sub = %sub
  output div = %div
  output had = %had
  output dot = %dot
}";
    check(
        src,
        &[
            ("add", &[3], &[3.0, 5.0, 7.0]),
            ("sub", &[3], &[-1.0, -1.0, -1.0]),
            ("div", &[3], &[0.5, 2.0 / 3.0, 0.75]),
            ("had", &[3], &[2.0, 6.0, 12.0]),
            ("dot", &[], &[20.0]),
        ],
        1e-6,
    );
}

#[test]
fn broadcasting_examples() {
    // a has one column, c has one row; the inputs are solved from the outputs.
    let src = "graph bc {
  %a = constant() {value = tensor<f32[2,1]>[1.0, 2.0]}
  %b = constant() {value = tensor<f32[2,2]>[3.0, 4.0, 5.0, 6.0]}
  %c = constant() {value = tensor<f32[1,2]>[1.0, 2.0]}
  %ab = mul(%a, %b)
  %bc = mul(%b, %c)
  %ac = add(%a, %c)
  %m = constant() {value = tensor<f32[2,2]>[1.0, 2.0, 3.0, 4.0]}
  %mm = add(%m, %m)
  %m0 = sub(%m, %m)
  %mt = transpose(%m) {perm = [1, 0]}
  output ab = %ab
  output bc = %bc
  output ac = %ac
  output mm = %mm
  output m0 = %m0
  output mt = %mt
}";
    check(
        src,
        &[
            ("ab", &[2, 2], &[3.0, 4.0, 10.0, 12.0]),
            ("bc", &[2, 2], &[3.0, 8.0, 5.0, 12.0]),
            ("ac", &[2, 2], &[2.0, 3.0, 3.0, 4.0]),
            ("mm", &[2, 2], &[2.0, 4.0, 6.0, 8.0]),
            ("m0", &[2, 2], &[0.0, 0.0, 0.0, 0.0]),
            ("mt", &[2, 2], &[1.0, 3.0, 2.0, 4.0]),
        ],
        0.0,
    );
}

#[test]
fn matmul_13_16() {
    let src = "graph mm {
  %a = constant() {value = tensor<f32[1,2]>[1.0, 2.0]}
  %b = constant() {value = tensor<f32[2,2]>[3.0, 4.0, 5.0, 6.0]}
  %c = matmul(%a, %b)
  output c = %c
}";
    check(src, &[("c", &[1, 2], &[13.0, 16.0])], 0.0);
}

#[test]
fn binary_image_convolution() {
    let src = "graph conv {
  %img = constant() {value = tensor<f32[1,1,5,5]>[1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]}
  %k = constant() {value = tensor<f32[1,1,3,3]>[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]}
  %y = conv(%img, %k)
  output y = %y
}";
    check(
        src,
        &[(
            "y",
            &[1, 1, 3, 3],
            &[4.0, 3.0, 4.0, 2.0, 4.0, 3.0, 2.0, 3.0, 4.0],
        )],
        0.0,
    );
}

#[test]
fn sobel_cross_correlation_65_plus_bias() {
    let src = "graph sobel {
  %x = constant() {value = tensor<f32[1,1,3,3]>[200.0, 150.0, 150.0, 100.0, 50.0, 100.0, 25.0, 25.0, 10.0]}
  %k = constant() {value = tensor<f32[1,1,3,3]>[1.0, 0.0, -1.0, 2.0, 0.0, -2.0, 1.0, 0.0, -1.0]}
  %b = constant() {value = tensor<f32[1]>[0.5]}
  %y = conv(%x, %k)
  %yb = conv(%x, %k, %b)
  output y = %y
  output yb = %yb
}";
    check(
        src,
        &[
            ("y", &[1, 1, 1, 1], &[65.0]),
            ("yb", &[1, 1, 1, 1], &[65.5]),
        ],
        0.0,
    );
}

#[test]
fn max_200_and_average_90_pooling() {
    let src = "graph pool {
  %x = constant() {value = tensor<f32[1,1,3,3]>[200.0, 150.0, 150.0, 100.0, 50.0, 100.0, 25.0, 25.0, 10.0]}
  %mx = max_pool(%x) {kernel = [3, 3]}
  %av = avg_pool(%x) {kernel = [3, 3]}
  %gav = global_avg_pool(%x)
  output mx = %mx
  output av = %av
  output gav = %gav
}";
    check(
        src,
        &[
            ("mx", &[1, 1, 1, 1], &[200.0]),
            ("av", &[1, 1, 1, 1], &[90.0]),
            ("gav", &[1, 1, 1, 1], &[90.0]),
        ],
        1e-9,
    );
}

#[test]
fn max_pool_stride_1_unpool_example_forward() {
    let src = "graph pool {
  %x = constant() {value = tensor<f32[1,1,3,3]>[120.0, 150.0, 120.0, 100.0, 50.0, 110.0, 25.0, 25.0, 10.0]}
  %y = max_pool(%x) {kernel = [2, 2], strides = [1, 1]}
  output y = %y
}";
    check(
        src,
        &[("y", &[1, 1, 2, 2], &[150.0, 150.0, 100.0, 110.0])],
        0.0,
    );
}

#[test]
fn transposed_convolution_stamps() {
    let src = "graph tconv {
  %x = constant() {value = tensor<f32[1,1,3,3]>[120.0, 150.0, 120.0, 100.0, 50.0, 110.0, 25.0, 25.0, 10.0]}
  %k = constant() {value = tensor<f32[1,1,2,2]>[1.0, -1.0, 2.0, -2.0]}
  %y = conv_transpose(%x, %k)
  output y = %y
}";
    let want = [
        120.0, 30.0, -30.0, -120.0, 340.0, 10.0, 0.0, -350.0, 225.0, -100.0, 105.0, -230.0, 50.0,
        0.0, -30.0, -20.0,
    ];
    check(src, &[("y", &[1, 1, 4, 4], &want)], 0.0);
}

#[test]
fn conv_output_sizes() {
    // N=7, F=3: stride 1 → 5, stride 2 → 3, pad 1 → 7; 32x32x3 with ten 5x5
    // filters and pad 2 → 32x32x10; AlexNet CONV1 → 55x55x96.
    let cases: &[(&str, &str, &str, &str)] = &[
        ("f32[1,1,7,7]", "f32[1,1,3,3]", "", "f32[1,1,5,5]"),
        (
            "f32[1,1,7,7]",
            "f32[1,1,3,3]",
            "{strides = [2, 2]}",
            "f32[1,1,3,3]",
        ),
        (
            "f32[1,1,7,7]",
            "f32[1,1,3,3]",
            "{pads = [1, 1, 1, 1]}",
            "f32[1,1,7,7]",
        ),
        (
            "f32[1,3,32,32]",
            "f32[10,3,5,5]",
            "{pads = [2, 2, 2, 2]}",
            "f32[1,10,32,32]",
        ),
        (
            "f32[1,3,227,227]",
            "f32[96,3,11,11]",
            "{strides = [4, 4]}",
            "f32[1,96,55,55]",
        ),
        ("f32[1,3,32,32]", "f32[6,3,5,5]", "", "f32[1,6,28,28]"),
        ("f32[1,6,28,28]", "f32[10,6,5,5]", "", "f32[1,10,24,24]"),
    ];
    for (x, w, attrs, want) in cases {
        let src = format!("graph c {{\n input %x: {x}\n input %w: {w}\n %y = conv(%x, %w) {attrs}\n output y = %y\n}}");
        let g = ir::parse(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        let y = g.outputs()[0].1;
        assert_eq!(g.value(y).ty.to_string(), *want, "{src}");
    }
    // 7x7 with a 3x3 filter at stride 3 does not tile exactly; like PyTorch and
    // ONNX the last partial window is dropped (output 2x2).
    let src = "graph c {\n input %x: f32[1,1,7,7]\n input %w: f32[1,1,3,3]\n %y = conv(%x, %w) {strides = [3, 3]}\n output y = %y\n}";
    let g = ir::parse(src).unwrap();
    assert_eq!(g.value(g.outputs()[0].1).ty.to_string(), "f32[1,1,2,2]");
}

#[test]
fn pooling_shape_224_to_112() {
    let src = "graph p {\n input %x: f32[1,64,224,224]\n %y = max_pool(%x) {kernel = [2, 2], strides = [2, 2]}\n output y = %y\n}";
    let g = ir::parse(src).unwrap();
    assert_eq!(
        g.value(g.outputs()[0].1).ty.to_string(),
        "f32[1,64,112,112]"
    );
}

#[test]
fn weight_sharing_cluster_mean_is_2() {
    let src = "graph q {
  %w = constant() {value = tensor<f64[4]>[2.09, 2.12, 1.92, 1.87]}
  %c = reduce_mean(%w) {axes = [0], keepdims = 0}
  output c = %c
}";
    check(src, &[("c", &[], &[2.0])], 1e-12);
}

#[test]
fn max_routes_and_perplexity_of_uniform() {
    // max(5, 1) = 5; perplexity of a uniform distribution over 6 = exp(H) = 6.
    let src = "graph m {
  %a = constant() {value = tensor<f32[]>[5.0]}
  %b = constant() {value = tensor<f32[]>[1.0]}
  %m = max(%a, %b)
  %p = constant() {value = tensor<f64[6]>[0.16666666666666666, 0.16666666666666666, 0.16666666666666666, 0.16666666666666666, 0.16666666666666666, 0.16666666666666666]}
  %lp = log(%p)
  %plp = mul(%p, %lp)
  %s = reduce_sum(%plp) {axes = [0], keepdims = 0}
  %h = neg(%s)
  %ppl = exp(%h)
  output m = %m
  output ppl = %ppl
}";
    check(src, &[("m", &[], &[5.0]), ("ppl", &[], &[6.0])], 1e-9);
}
