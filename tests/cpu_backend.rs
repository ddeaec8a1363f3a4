//! Differential tests of the CPU backend against the reference interpreter.
//!
//! Each case is a small graph in the text format. It is prepared on
//! `--backend ref` and on `--backend cpu` at 1 and 2 threads and run on the
//! same inputs: the two CPU runs must agree bitwise (threads never change
//! results, see ARCHITECTURE.md) and agree with the reference within a
//! tolerance. The default tolerance, rtol 1e-5 and atol 1e-6, covers the
//! JIT's inline exp/log/tanh/sigmoid/erf (1 to 5 ulp) and the reference's
//! f64-then-round evaluation of each op; reductions and matmuls over long
//! axes add the f32 summation error (order-dependent, about `√K·ε·Σ|x|`),
//! and those cases say so where they widen it.
//!
//! Every case also checks that the ops under test really ran natively (a
//! `Ref` fallback step would make the comparison trivially pass), and
//! sizes include odd ones (1, 3, 17, 1023) and tensors above the executor's
//! one-thread threshold (2^15 elements), so the 2-thread runs split work.

use std::collections::HashMap;

use kiln::backend::{Backend, PrepareOptions, Prepared};
use kiln::compiler::codegen;
use kiln::compiler::passes;
use kiln::ir::program::{Loc, Program, Step};
use kiln::ir::{self, DType, Graph, Model, Tensor, TensorType};

const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

fn parse(src: &str) -> Graph {
    ir::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

fn model(src: &str) -> Model {
    let graph = parse(src);
    let weights = kiln::init::init_weights(&graph, 7).unwrap();
    Model { graph, weights }
}

/// Deterministic inputs, uniform in `[lo, hi)`.
fn feeds(g: &Graph, lo: f64, hi: f64) -> HashMap<String, Tensor> {
    g.inputs()
        .iter()
        .map(|&v| {
            let val = g.value(v);
            let name = val.name.clone().unwrap();
            let t = kiln::init::uniform(&name, 42, &val.ty, lo, hi).unwrap();
            (name, t)
        })
        .collect()
}

/// The program the CPU backend builds for `m` (what `Prepared` does).
fn program(m: &Model) -> Program {
    let (mut g, mut w) = (m.graph.clone(), m.weights.clone());
    passes::optimize("O2", &mut g, &mut w).unwrap();
    codegen::compile(&g, &w).unwrap().0
}

fn run(
    m: &Model,
    backend: Backend,
    threads: usize,
    x: &HashMap<String, Tensor>,
) -> Vec<(String, Tensor)> {
    let p = Prepared::new(m.clone(), backend, &PrepareOptions { threads })
        .unwrap_or_else(|e| panic!("prepare on {backend:?}: {e:#}\n{}", m.graph));
    p.run(x)
        .unwrap_or_else(|e| panic!("run on {backend:?}: {e:#}\n{}", m.graph))
}

/// Which step kinds the program has, e.g. `["kernel", "matmul"]`.
fn kinds(p: &Program) -> Vec<&'static str> {
    p.steps.iter().map(Step::kind).collect()
}

/// Panics if a step of `p` runs through the reference semantics.
fn assert_native(p: &Program) {
    for s in &p.steps {
        if let Step::Ref { node } = s {
            // Constants are data, not computation.
            if matches!(p.graph.node(*node).op, ir::Op::Constant(_)) {
                continue;
            }
            panic!(
                "{} runs on the reference path in\n{}",
                p.graph.label(*node),
                p.graph
            );
        }
    }
}

/// Ref vs cpu@1 vs cpu@2 on `x`; returns the cpu outputs.
fn compare_on(
    m: &Model,
    x: &HashMap<String, Tensor>,
    rtol: f64,
    atol: f64,
) -> Result<Vec<(String, Tensor)>, String> {
    let want = run(m, Backend::Ref, 1, x);
    let one = run(m, Backend::Cpu, 1, x);
    let two = run(m, Backend::Cpu, 2, x);
    if want.len() != one.len() {
        return Err(format!(
            "{} outputs on ref, {} on cpu",
            want.len(),
            one.len()
        ));
    }
    for (((name, w), (n1, a)), (n2, b)) in want.iter().zip(&one).zip(&two) {
        if name != n1 || name != n2 {
            return Err(format!("output order: {name} / {n1} / {n2}"));
        }
        if a.dtype() != w.dtype() {
            return Err(format!(
                "{name}: dtype {} on cpu, {} on ref",
                a.dtype(),
                w.dtype()
            ));
        }
        if a.to_le_bytes() != b.to_le_bytes() || a.shape() != b.shape() {
            return Err(format!("{name}: 1 and 2 threads differ"));
        }
        ir::tensor::allclose(a, w, rtol, atol).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(one)
}

/// Parse, run natively (no `Ref` step) and compare. Returns the program.
fn check(src: &str, lo: f64, hi: f64, rtol: f64, atol: f64) -> Program {
    let m = model(src);
    let p = program(&m);
    assert_native(&p);
    let x = feeds(&m.graph, lo, hi);
    if let Err(e) = compare_on(&m, &x, rtol, atol) {
        panic!("{e}\nsource:\n{src}\nsteps: {}", p.summary());
    }
    p
}

fn check_default(src: &str) -> Program {
    check(src, -1.0, 1.0, RTOL, ATOL)
}

// ---- elementwise ----------------------------------------------------

/// Every unary op the lowering has an expression for, on a tensor above the
/// thread threshold ([3, 17, 1023]) with values over the ops' interesting
/// range.
#[test]
fn unary_ops() {
    let wide = (-6.0, 6.0);
    let positive = (0.01, 8.0);
    let cases: &[(&str, (f64, f64))] = &[
        ("neg", wide),
        ("abs", wide),
        ("exp", (-20.0, 20.0)),
        ("log", positive),
        ("sqrt", positive),
        ("rsqrt", positive),
        ("reciprocal", positive),
        ("tanh", wide),
        ("sigmoid", (-20.0, 20.0)),
        ("erf", (-4.0, 4.0)),
        ("floor", wide),
        ("ceil", wide),
        ("relu", wide),
        ("leaky_relu", wide),
        ("leaky_relu {alpha = 0.2}", wide),
        ("elu", wide),
        ("elu {alpha = 0.5}", wide),
        ("selu", wide),
        ("selu {alpha = 1.5, gamma = 1.1}", wide),
        ("celu", wide),
        ("celu {alpha = 2.0}", wide),
        ("gelu", wide),
        ("gelu {approximate = \"tanh\"}", wide),
        ("softplus", (-30.0, 30.0)),
        ("mish", wide),
        ("hard_sigmoid", wide),
        ("hard_sigmoid {alpha = 0.3, beta = 0.4}", wide),
        ("hard_swish", wide),
        ("softsign", wide),
        ("thresholded_relu", wide),
        ("thresholded_relu {alpha = 0.5}", wide),
    ];
    let mut failed = Vec::new();
    for (op, (lo, hi)) in cases {
        let (name, attrs) = op.split_once(' ').unwrap_or((op, ""));
        let src = format!(
            "graph t {{\n  input %x: f32[3,17,1023]\n  %y = {name}(%x) {attrs}\n  output y = %y\n}}"
        );
        let m = model(&src);
        let p = program(&m);
        assert_eq!(kinds(&p), ["kernel"], "{op}");
        if let Err(e) = compare_on(&m, &feeds(&m.graph, *lo, *hi), RTOL, ATOL) {
            failed.push(format!("{op}: {e}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Values where the polynomial approximations saturate, overflow or
/// underflow: both sides agree (infinities exactly).
#[test]
fn unary_extremes() {
    let vals: Vec<f32> = vec![
        0.0, -0.0, 1e-30, -1e-30, 1e-3, -1e-3, 0.5, -0.5, 9.0, -9.0, 15.0, -15.0, 30.0, -30.0,
        80.0, -80.0, 88.0, -88.0, 89.0, -89.0, 100.0, -100.0, 1e4, -1e4, 1e30, -1e30,
    ];
    let n = vals.len();
    let mut failed = Vec::new();
    for op in [
        "exp", "tanh", "sigmoid", "erf", "relu", "softplus", "gelu", "elu", "softsign", "neg",
        "abs",
    ] {
        let src = format!("graph t {{\n  input %x: f32[{n}]\n  %y = {op}(%x)\n  output y = %y\n}}");
        let m = model(&src);
        assert_native(&program(&m));
        let x: HashMap<String, Tensor> =
            [("x".to_string(), Tensor::f32(&[n], vals.clone()))].into();
        if let Err(e) = compare_on(&m, &x, RTOL, ATOL) {
            failed.push(format!("{op}: {e}"));
        }
    }
    // log on positive values from denormal-adjacent to huge.
    let pos: Vec<f32> = vec![1e-37, 1e-30, 1e-3, 0.5, 1.0, 2.0, 1e4, 1e30, 3e38];
    let src = format!(
        "graph t {{\n  input %x: f32[{}]\n  %y = log(%x)\n  %z = sqrt(%x)\n  output y = %y\n  output z = %z\n}}",
        pos.len()
    );
    let m = model(&src);
    let x: HashMap<String, Tensor> =
        [("x".to_string(), Tensor::f32(&[pos.len()], pos.clone()))].into();
    if let Err(e) = compare_on(&m, &x, RTOL, ATOL) {
        failed.push(format!("log/sqrt: {e}"));
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn binary_ops() {
    for op in ["add", "sub", "mul", "max", "min", "prelu"] {
        check_default(&format!(
            "graph t {{\n  input %x: f32[17,1023]\n  input %y: f32[17,1023]\n  %z = {op}(%x, %y)\n  output z = %z\n}}"
        ));
    }
    // Division by values away from zero.
    check(
        "graph t {\n  input %x: f32[17,1023]\n  input %y: f32[17,1023]\n  %z = div(%x, %y)\n  output z = %z\n}",
        0.25,
        4.0,
        RTOL,
        ATOL,
    );
}

/// pow with the constant exponents the lowering expands (x, x², x³, √x, 1/x).
#[test]
fn pow_constant_exponents() {
    for p in ["1.0", "2.0", "3.0", "0.5", "-1.0"] {
        check(
            &format!(
                "graph t {{\n  input %x: f32[3,1023]\n  %p = constant() {{value = tensor<f32[]>[{p}]}}\n  %y = pow(%x, %p)\n  %z = add(%y, %x)\n  output z = %z\n}}"
            ),
            0.1,
            3.0,
            RTOL,
            ATOL,
        );
    }
}

#[test]
fn variadic_clip_cast_dropout() {
    for op in ["sum", "mean", "maximum", "minimum"] {
        check_default(&format!(
            "graph t {{\n  input %a: f32[17,33]\n  input %b: f32[33]\n  input %c: f32[17,1]\n  %z = {op}(%a, %b, %c)\n  %r = tanh(%z)\n  output z = %r\n}}"
        ));
    }
    check_default(
        "graph t {\n  input %x: f32[1023]\n  input %lo: f32[]\n  input %hi: f32[1]\n  %a = mul(%x, %x)\n  %c = clip(%x, %lo, %hi)\n  %d = clip(%a, %lo)\n  %e = add(%c, %d)\n  output y = %e\n}",
    );
    check_default(
        "graph t {\n  input %x: f32[3,17]\n  %a = cast(%x) {to = f32}\n  %b = dropout(%a) {ratio = 0.25}\n  %c = exp(%b)\n  output y = %c\n}",
    );
}

/// `where(cmp(a, b), x, y)` and `cast(cmp(a, b))` to f32 (what gradient
/// rules build for relu, max and the like) lower to selects, with the
/// comparison broadcasting on its own.
#[test]
fn where_and_mask_of_a_comparison() {
    for cmp in ["lt", "le", "gt", "ge", "eq"] {
        for tail in [
            "%w = where(%c, %x, %y)\n  %e = add(%w, %y)",
            "%m = cast(%c) {to = f32}\n  %e = mul(%m, %y)",
        ] {
            let p = check_default(&format!(
                "graph t {{\n  input %a: f32[17,33]\n  input %b: f32[33]\n  input %x: f32[17,1]\n  input %y: f32[17,33]\n  %r = relu(%a)\n  %q = relu(%b)\n  %c = {cmp}(%r, %q)\n  {tail}\n  output z = %e\n}}"
            ));
            assert_eq!(kinds(&p), ["kernel"], "{cmp}: {tail}");
        }
    }
}

/// Inference batch norm as an elementwise op (batch_norm after an input is
/// not folded into a conv).
#[test]
fn batch_norm_elementwise() {
    check_default(
        "graph t {\n  input %x: f32[3,17,5,7]\n  param %bn.gamma: f32[17]\n  param %bn.beta: f32[17]\n  param %bn.mean: f32[17]\n  param %bn.var: f32[17]\n  %y = batch_norm(%x, %bn.gamma, %bn.beta, %bn.mean, %bn.var) {epsilon = 1e-3}\n  %r = relu(%y)\n  output y = %r\n}",
    );
}

/// x*w+b → relu → *s → tanh is one kernel and matches the reference.
#[test]
fn elementwise_chain_is_one_kernel() {
    let p = check_default(
        "graph t {\n  input %x: f32[3,17,1023]\n  input %w: f32[3,17,1023]\n  input %b: f32[3,17,1023]\n  input %s: f32[]\n  %a = mul(%x, %w)\n  %c = add(%a, %b)\n  %r = relu(%c)\n  %m = mul(%r, %s)\n  %t = tanh(%m)\n  output y = %t\n}",
    );
    assert_eq!(kinds(&p), ["kernel"]);
}

#[test]
fn broadcasting() {
    // [N,C,H,W] with [1,C,1,1], [C,1,1] and a scalar.
    let p = check_default(
        "graph t {\n  input %x: f32[3,17,9,11]\n  input %s: f32[1,17,1,1]\n  input %b: f32[17,1,1]\n  input %k: f32[]\n  %a = mul(%x, %s)\n  %c = add(%a, %b)\n  %d = sub(%c, %k)\n  %e = sigmoid(%d)\n  output y = %e\n}",
    );
    assert_eq!(kinds(&p), ["kernel"]);
    // [C] against [N,C], and [N,1] against [1,M] (both sides broadcast).
    check_default(
        "graph t {\n  input %x: f32[17,1023]\n  input %c: f32[1023]\n  input %r: f32[17,1]\n  input %q: f32[1,1023]\n  %a = add(%x, %c)\n  %o = mul(%r, %q)\n  %b = div(%a, %o)\n  %y = max(%b, %r)\n  output y = %y\n}",
    );
    // Broadcast of size-1 dims at both ends, rank-changing.
    check_default(
        "graph t {\n  input %x: f32[1,3,1]\n  input %y: f32[17,1,1023]\n  %a = add(%x, %y)\n  %b = exp(%a)\n  output y = %b\n}",
    );
    // A scalar parameter and a size-1 tensor everywhere.
    check_default(
        "graph t {\n  input %x: f32[1]\n  input %y: f32[1,1]\n  %a = add(%x, %y)\n  %b = tanh(%a)\n  output y = %b\n}",
    );
}

// ---- injective ops fused into consumers ------------------------------

#[test]
fn transpose_slice_expand_fuse_into_consumers() {
    // A transpose and a slice feeding an add.
    let p = check_default(
        "graph t {\n  input %x: f32[17,1023]\n  input %y: f32[1023,3]\n  %t = transpose(%x) {perm = [1, 0]}\n  %s = slice(%t) {starts = [0], ends = [3], axes = [1], steps = [1]}\n  %a = add(%s, %y)\n  output y = %a\n}",
    );
    assert_eq!(kinds(&p), ["kernel"], "{}", p.graph);
    // A 4-D transpose with a nontrivial permutation.
    check_default(
        "graph t {\n  input %x: f32[3,5,7,17]\n  %t = transpose(%x) {perm = [2, 0, 3, 1]}\n  %e = exp(%t)\n  output y = %e\n}",
    );
    // Strided, offset and reversed slices.
    check_default(
        "graph t {\n  input %x: f32[17,1023]\n  %s = slice(%x) {starts = [1, 3], ends = [17, 1020], axes = [0, 1], steps = [2, 3]}\n  %e = neg(%s)\n  output y = %e\n}",
    );
    check_default(
        "graph t {\n  input %x: f32[17,33]\n  %s = slice(%x) {starts = [-1], ends = [-9223372036854775807], axes = [1], steps = [-1]}\n  %e = add(%s, %x)\n  output y = %e\n}",
    );
    // Expand into a consumer.
    check_default(
        "graph t {\n  input %x: f32[17,1]\n  input %y: f32[17,1023]\n  %e = expand(%x) {shape = [17, 1023]}\n  %a = mul(%e, %y)\n  output y = %a\n}",
    );
    check_default(
        "graph t {\n  input %x: f32[3]\n  %e = expand(%x) {shape = [17, 1, 3]}\n  %a = relu(%e)\n  output y = %a\n}",
    );
}

#[test]
fn reshapes_fuse_into_consumers() {
    // Reshape, flatten, squeeze, unsqueeze of an elementwise result.
    check_default(
        "graph t {\n  input %x: f32[3,17,33]\n  %a = exp(%x)\n  %r = reshape(%a) {shape = [51, 33]}\n  %b = neg(%r)\n  output y = %b\n}",
    );
    check_default(
        "graph t {\n  input %x: f32[3,17,1,33]\n  %a = tanh(%x)\n  %s = squeeze(%a) {axes = [2]}\n  %u = unsqueeze(%s) {axes = [0]}\n  %f = flatten(%u) {axis = 2}\n  %b = sigmoid(%f)\n  output y = %b\n}",
    );
    // A reshape of an input into a broadcasting op.
    check_default(
        "graph t {\n  input %x: f32[17,33]\n  input %b: f32[33]\n  %r = reshape(%x) {shape = [17, 3, 11]}\n  %c = reshape(%b) {shape = [3, 11]}\n  %a = add(%r, %c)\n  output y = %a\n}",
    );
    // A transpose after a reshape (mixed flat and multi-index maps).
    check_default(
        "graph t {\n  input %x: f32[6,35]\n  %a = abs(%x)\n  %r = reshape(%a) {shape = [6, 5, 7]}\n  %t = transpose(%r) {perm = [2, 0, 1]}\n  %s = sqrt(%t)\n  output y = %s\n}",
    );
}

/// Inputs read through a transposed or sliced view by every kind of step.
#[test]
fn non_contiguous_inputs() {
    // Softmax and a reduction over a transposed input.
    check_default(
        "graph t {\n  input %x: f32[1023,17]\n  %t = transpose(%x) {perm = [1, 0]}\n  %s = softmax(%t) {axis = -1}\n  output y = %s\n}",
    );
    check_default(
        "graph t {\n  input %x: f32[33,17,5]\n  %t = transpose(%x) {perm = [2, 0, 1]}\n  %r = reduce_sum(%t) {axes = [1], keepdims = 0}\n  output y = %r\n}",
    );
    // A sliced input into layer_norm.
    check_default(
        "graph t {\n  input %x: f32[17,40]\n  param %ln.scale: f32[33]\n  %s = slice(%x) {starts = [4], ends = [37], axes = [1], steps = [1]}\n  %y = layer_norm(%s, %ln.scale) {axis = -1, epsilon = 1e-5}\n  output y = %y\n}",
    );
    // A transposed operand of a matmul and a transposed weight.
    check(
        "graph t {\n  input %x: f32[33,17]\n  param %w: f32[5,33]\n  %t = transpose(%x) {perm = [1, 0]}\n  %wt = transpose(%w) {perm = [1, 0]}\n  %m = matmul(%t, %wt)\n  %r = relu(%m)\n  output y = %r\n}",
        -1.0,
        1.0,
        RTOL,
        1e-5,
    );
}

// ---- reductions --------------------------------------------------------

#[test]
fn softmax_last_and_middle_axis() {
    for (op, axis) in [
        ("softmax", -1),
        ("softmax", 1),
        ("softmax", 0),
        ("log_softmax", -1),
        ("log_softmax", 1),
    ] {
        let p = check(
            &format!(
                "graph t {{\n  input %x: f32[3,17,1023]\n  %s = {op}(%x) {{axis = {axis}}}\n  output y = %s\n}}"
            ),
            -8.0,
            8.0,
            RTOL,
            ATOL,
        );
        assert_eq!(kinds(&p), ["kernel"], "{op} axis {axis}");
    }
    // Length-1 and length-3 axes.
    check_default(
        "graph t {\n  input %x: f32[17,1]\n  %s = softmax(%x) {axis = -1}\n  output y = %s\n}",
    );
    check_default(
        "graph t {\n  input %x: f32[3,1023]\n  %s = log_softmax(%x) {axis = 0}\n  output y = %s\n}",
    );
    // With an elementwise producer and consumer fused in: one kernel.
    let p = check_default(
        "graph t {\n  input %x: f32[17,1023]\n  input %t: f32[]\n  %d = div(%x, %t)\n  %s = softmax(%d) {axis = -1}\n  %m = mul(%s, %t)\n  output y = %m\n}",
    );
    assert_eq!(kinds(&p), ["kernel"]);
}

#[test]
fn reduces() {
    let mut failed = Vec::new();
    for op in ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min"] {
        for axes in ["[2]", "[1]", "[0]", "[0, 2]", "[-1, -2]", "[0, 1, 2]"] {
            for keep in [0, 1] {
                let src = format!(
                    "graph t {{\n  input %x: f32[17,3,1023]\n  %r = {op}(%x) {{axes = {axes}, keepdims = {keep}}}\n  output y = %r\n}}"
                );
                let m = model(&src);
                let p = program(&m);
                // Non-adjacent reduced axes do not merge into one inner
                // loop; the lowering rejects them and the node runs on
                // the reference path (still compared below).
                if axes != "[0, 2]" {
                    assert_native(&p);
                }
                // Sums of up to 52k terms in [-1, 1): f32 summation error
                // (max and min are exact).
                let atol = if op.ends_with("sum") { 2e-5 } else { ATOL };
                if let Err(e) = compare_on(&m, &feeds(&m.graph, -1.0, 1.0), RTOL, atol) {
                    failed.push(format!("{op} axes {axes} keepdims {keep}: {e}"));
                }
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// A reduction over all axes (empty `axes`), and one with producers and a
/// consumer fused in.
#[test]
fn reduce_all_and_fused() {
    check(
        "graph t {\n  input %x: f32[17,1023]\n  %r = reduce_mean(%x) {axes = [], keepdims = 0}\n  output y = %r\n}",
        -1.0,
        1.0,
        RTOL,
        1e-5,
    );
    let p = check_default(
        "graph t {\n  input %x: f32[4,1023]\n  %e = exp(%x)\n  %s = reduce_sum(%e) {axes = [1], keepdims = 1}\n  %l = log(%s)\n  output y = %l\n}",
    );
    assert_eq!(kinds(&p), ["kernel"]);
}

#[test]
fn layer_norm() {
    for (axis, shape, pshape) in [
        (-1, "[3,17,1023]", "[1023]"),
        (-2, "[3,17,33]", "[17,33]"),
        (1, "[5,3,17]", "[3,17]"),
    ] {
        for bias in [false, true] {
            let (bdecl, barg) = if bias {
                (format!("  param %ln.bias: f32{pshape}\n"), ", %ln.bias")
            } else {
                (String::new(), "")
            };
            let p = check(
                &format!(
                    "graph t {{\n  input %x: f32{shape}\n  param %ln.scale: f32{pshape}\n{bdecl}  %y = layer_norm(%x, %ln.scale{barg}) {{axis = {axis}, epsilon = 1e-5}}\n  output y = %y\n}}"
                ),
                -3.0,
                3.0,
                RTOL,
                1e-5,
            );
            assert_eq!(kinds(&p), ["kernel"], "axis {axis} bias {bias}");
        }
    }
}

#[test]
fn global_pools() {
    for op in ["global_avg_pool", "global_max_pool"] {
        for shape in ["[3,17,7,9]", "[1,3,1,1]", "[2,5,1023]", "[1,1,17,33]"] {
            check_default(&format!(
                "graph t {{\n  input %x: f32{shape}\n  %p = {op}(%x)\n  %r = relu(%p)\n  output y = %r\n}}"
            ));
        }
    }
}

// ---- matmul ------------------------------------------------------------

/// atol for a K-term dot product of values in [-1, 1) (weights Kaiming,
/// inputs uniform): the f32 summation error grows like √K.
fn dot_atol(k: usize) -> f64 {
    1e-6 * (k as f64).sqrt().max(1.0)
}

#[test]
fn matmul_shapes() {
    let mut failed = Vec::new();
    // (a, b, whether b is a parameter)
    let cases: &[(&str, &str, bool)] = &[
        ("[17,33]", "[33,5]", true),
        ("[1,1023]", "[1023,17]", true),
        ("[17,1023]", "[1023,3]", true),
        ("[3,1]", "[1,17]", true),
        ("[1,1]", "[1,1]", true),
        ("[17,33]", "[33,5]", false),
        ("[3,17,33]", "[3,33,5]", false),
        ("[3,17,33]", "[33,5]", true),
        ("[2,3,17,33]", "[33,5]", true),
        ("[2,3,17,33]", "[1,1,33,5]", false),
        ("[17,33]", "[3,33,5]", false),
        ("[1,17,33]", "[3,33,5]", false),
        ("[2,1,17,9]", "[2,1,9,1023]", false),
        ("[64,1023]", "[1023,64]", true),
    ];
    for (a, b, param) in cases {
        let k: usize = a
            .trim_end_matches(']')
            .rsplit(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let decl = if *param { "param %w" } else { "input %w" };
        let src = format!(
            "graph t {{\n  input %x: f32{a}\n  {decl}: f32{b}\n  %m = matmul(%x, %w)\n  output y = %m\n}}"
        );
        let m = model(&src);
        let p = program(&m);
        assert_eq!(kinds(&p), ["matmul"], "{a} x {b}");
        if let Err(e) = compare_on(&m, &feeds(&m.graph, -1.0, 1.0), RTOL, dot_atol(k)) {
            failed.push(format!("{a} x {b}: {e}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn matmul_epilogues() {
    // Bias, relu, residual add: one matmul step with an epilogue.
    let src = "graph t {\n  input %x: f32[17,1023]\n  input %res: f32[17,65]\n  param %w: f32[1023,65]\n  param %fc.bias: f32[65]\n  %m = matmul(%x, %w)\n  %a = add(%m, %fc.bias)\n  %r = relu(%a)\n  %s = add(%r, %res)\n  output y = %s\n}";
    let p = check(src, -1.0, 1.0, RTOL, dot_atol(1023));
    assert_eq!(kinds(&p), ["matmul"]);
    assert!(
        matches!(&p.steps[0], Step::MatMul { epilogue: Some(_), nodes, .. } if nodes.len() == 4),
        "{:?}",
        p.steps
    );
    // Batched with a broadcast weight, scaling and a sigmoid.
    let p = check(
        "graph t {\n  input %x: f32[3,17,33]\n  param %w: f32[33,19]\n  param %b: f32[19]\n  input %s: f32[]\n  %m = matmul(%x, %w)\n  %a = add(%m, %b)\n  %k = mul(%a, %s)\n  %g = sigmoid(%k)\n  output y = %g\n}",
        -1.0,
        1.0,
        RTOL,
        dot_atol(33),
    );
    assert_eq!(kinds(&p), ["matmul"]);
    // Two activations (attention-style scores) with a residual, large
    // enough to split across threads.
    check(
        "graph t {\n  input %q: f32[4,128,64]\n  input %k: f32[4,64,128]\n  input %r: f32[4,128,128]\n  %m = matmul(%q, %k)\n  %a = add(%m, %r)\n  output y = %a\n}",
        -1.0,
        1.0,
        RTOL,
        dot_atol(64),
    );
}

// ---- conv --------------------------------------------------------------

#[test]
fn conv_variants() {
    let mut failed = Vec::new();
    // (x, w, attrs, bias?)
    let cases: &[(&str, &str, &str, bool)] = &[
        ("[2,3,17,17]", "[8,3,3,3]", "pads = [1, 1, 1, 1]", true),
        ("[1,3,17,9]", "[5,3,3,3]", "", false),
        (
            "[2,4,17,17]",
            "[6,2,3,3]",
            "groups = 2, strides = [2, 2]",
            true,
        ),
        (
            "[2,8,17,17]",
            "[8,1,3,3]",
            "groups = 8, pads = [1, 1, 1, 1]",
            true,
        ),
        (
            "[1,8,17,17]",
            "[8,1,3,3]",
            "groups = 8, strides = [2, 2], pads = [1, 1, 1, 1]",
            false,
        ),
        (
            "[2,3,17,17]",
            "[4,3,3,3]",
            "dilations = [2, 2], pads = [2, 1, 0, 3]",
            true,
        ),
        ("[2,16,9,9]", "[7,16,1,1]", "", true),
        ("[2,16,9,9]", "[7,16,1,1]", "strides = [2, 2]", true),
        ("[1,3,1,1]", "[1,3,1,1]", "", true),
        ("[2,3,1023]", "[4,3,5]", "pads = [2, 2]", true),
        (
            "[2,4,33]",
            "[4,1,3]",
            "groups = 4, strides = [2], dilations = [2]",
            true,
        ),
        ("[1,1,17]", "[3,1,17]", "", false),
        ("[1,32,16,16]", "[32,32,3,3]", "pads = [1, 1, 1, 1]", true),
    ];
    for (x, w, attrs, bias) in cases {
        let (bdecl, barg) = if *bias {
            let m = w.trim_start_matches('[').split(',').next().unwrap();
            (format!("  param %c.bias: f32[{m}]\n"), ", %c.bias")
        } else {
            (String::new(), "")
        };
        let src = format!(
            "graph t {{\n  input %x: f32{x}\n  param %c.weight: f32{w}\n{bdecl}  %y = conv(%x, %c.weight{barg}) {{{attrs}}}\n  output y = %y\n}}"
        );
        let m = model(&src);
        let p = program(&m);
        assert_eq!(kinds(&p), ["conv"], "{x} * {w} {{{attrs}}}");
        if let Err(e) = compare_on(&m, &feeds(&m.graph, -1.0, 1.0), RTOL, 1e-5) {
            failed.push(format!("{x} * {w} {{{attrs}}}: {e}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn conv_epilogues() {
    // conv → batch_norm → relu → residual add → relu: batch_norm folds into
    // the conv at -O2 and the rest is the epilogue.
    let p = check(
        "graph t {\n  input %x: f32[2,16,17,17]\n  param %c.weight: f32[16,16,3,3]\n  param %c.bias: f32[16]\n  param %bn.gamma: f32[16]\n  param %bn.beta: f32[16]\n  param %bn.mean: f32[16]\n  param %bn.var: f32[16]\n  %c = conv(%x, %c.weight, %c.bias) {pads = [1, 1, 1, 1]}\n  %b = batch_norm(%c, %bn.gamma, %bn.beta, %bn.mean, %bn.var)\n  %r = relu(%b)\n  %a = add(%r, %x)\n  %y = relu(%a)\n  output y = %y\n}",
        -1.0,
        1.0,
        RTOL,
        1e-5,
    );
    assert_eq!(kinds(&p), ["conv"]);
    assert!(
        matches!(
            &p.steps[0],
            Step::Conv {
                epilogue: Some(_),
                ..
            }
        ),
        "{:?}",
        p.steps
    );
    // Depthwise conv with a per-channel scale from an input and a clip (relu6).
    let p = check(
        "graph t {\n  input %x: f32[1,8,17,17]\n  input %s: f32[1,8,1,1]\n  param %c.weight: f32[8,1,3,3]\n  param %lo: f32[]\n  param %hi: f32[]\n  %c = conv(%x, %c.weight) {groups = 8, pads = [1, 1, 1, 1]}\n  %m = mul(%c, %s)\n  %y = clip(%m, %lo, %hi)\n  output y = %y\n}",
        -1.0,
        1.0,
        RTOL,
        1e-5,
    );
    assert_eq!(kinds(&p), ["conv"]);
    // 1-D conv with a tanh epilogue.
    let p = check(
        "graph t {\n  input %x: f32[2,3,1023]\n  param %c.weight: f32[5,3,3]\n  param %c.bias: f32[5]\n  %c = conv(%x, %c.weight, %c.bias) {pads = [1, 1]}\n  %y = tanh(%c)\n  output y = %y\n}",
        -1.0,
        1.0,
        RTOL,
        1e-5,
    );
    assert_eq!(kinds(&p), ["conv"]);
}

// ---- whole graphs ------------------------------------------------------

/// A transformer-encoder-like block: layer norm, projections, attention
/// with softmax, gelu MLP, residuals. Every step runs natively.
#[test]
fn mixed_attention_block() {
    let src = "graph t {
  input %x: f32[2,17,32]
  param %ln1.scale: f32[32]
  param %ln1.bias: f32[32]
  param %wq: f32[32,32]
  param %wk: f32[32,32]
  param %wv: f32[32,32]
  param %wo: f32[32,32]
  param %ln2.scale: f32[32]
  param %w1: f32[32,64]
  param %b1: f32[64]
  param %w2: f32[64,32]
  param %b2: f32[32]
  param %scale: f32[]
  %h = layer_norm(%x, %ln1.scale, %ln1.bias) {axis = -1, epsilon = 1e-5}
  %q = matmul(%h, %wq)
  %k = matmul(%h, %wk)
  %v = matmul(%h, %wv)
  %kt = transpose(%k) {perm = [0, 2, 1]}
  %s = matmul(%q, %kt)
  %ss = mul(%s, %scale)
  %p = softmax(%ss) {axis = -1}
  %o = matmul(%p, %v)
  %a = matmul(%o, %wo)
  %r1 = add(%a, %x)
  %h2 = layer_norm(%r1, %ln2.scale) {axis = -1, epsilon = 1e-5}
  %f1 = matmul(%h2, %w1)
  %f2 = add(%f1, %b1)
  %g = gelu(%f2)
  %f3 = matmul(%g, %w2)
  %f4 = add(%f3, %b2)
  %y = add(%f4, %r1)
  output y = %y
  output p = %p
}";
    let p = check(src, -1.0, 1.0, RTOL, 2e-5);
    let k = kinds(&p);
    assert!(k.contains(&"matmul") && k.contains(&"kernel"), "{k:?}");
}

/// The example models with their committed weights, ref vs cpu.
#[test]
fn example_models() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/models");
    for name in ["mlp", "lenet5", "vgg_small", "resnet_block"] {
        let src = std::fs::read_to_string(root.join(format!("{name}.kir"))).unwrap();
        let mut graph = parse(&src);
        let weights = ir::Weights::load(&root.join(format!("{name}.safetensors"))).unwrap();
        // Bind the batch dim to 3.
        graph = bind_batch(graph, 3);
        let m = Model { graph, weights };
        let x = feeds(&m.graph, -1.0, 1.0);
        if let Err(e) = compare_on(&m, &x, 1e-4, 1e-5) {
            panic!("{name}: {e}");
        }
    }
}

fn bind_batch(g: Graph, n: usize) -> Graph {
    let text = ir::print(&g).replace("[N,", &format!("[{n},"));
    parse(&text)
}

// ---- memory plan -------------------------------------------------------

/// Sum of every f32 tensor of the graph (inputs and node results), each
/// rounded up to the arena's 64-byte alignment.
fn tensor_bytes(g: &Graph) -> usize {
    let mut vals: Vec<_> = g.inputs().to_vec();
    for n in g.node_ids() {
        vals.extend(g.node(n).outputs.iter().copied());
    }
    vals.iter()
        .map(|&v| &g.value(v).ty)
        .filter(|t| t.dtype == DType::F32)
        .map(|t: &TensorType| t.size_bytes().unwrap().div_ceil(64) * 64)
        .sum()
}

#[test]
fn peak_bytes_at_most_tensor_sum() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/models");
    for name in ["mlp", "lenet5", "vgg_small", "resnet_block"] {
        let src = std::fs::read_to_string(root.join(format!("{name}.kir"))).unwrap();
        let graph = bind_batch(parse(&src), 2);
        let weights = ir::Weights::load(&root.join(format!("{name}.safetensors"))).unwrap();
        let sum = tensor_bytes(&graph);
        let m = Model { graph, weights };
        let p = program(&m);
        let prep = Prepared::new(m, Backend::Cpu, &PrepareOptions { threads: 1 }).unwrap();
        let peak = prep.peak_bytes().unwrap();
        assert!(peak <= sum, "{name}: peak {peak} > tensors {sum}");
        assert_eq!(peak, p.arena_bytes, "{name}");
        assert!(p.arena_bytes <= p.unplanned_bytes.div_ceil(64) * 64 + 64 * p.steps.len());
    }
}

/// A chain of separately-run steps reuses memory: the arena is smaller than
/// the unplanned sum, and an elementwise kernel writes over the input it is
/// the last reader of.
#[test]
fn memory_reuse_and_in_place() {
    // %a is read twice, so it ends a group; the second kernel reads it
    // exactly where it writes %d: in place.
    // (A matmul reads %e, so %e lives in the arena rather than going
    // straight to the returned output.)
    let src = "graph t {\n  input %x: f32[17,1023]\n  param %w: f32[1023,3]\n  %a = exp(%x)\n  %b = neg(%a)\n  %c = sqrt(%a)\n  %d = add(%b, %c)\n  %e = relu(%d)\n  %m = matmul(%e, %w)\n  output y = %m\n}";
    let p = check_default(src);
    assert_eq!(kinds(&p), ["kernel", "kernel", "matmul"], "{}", p.graph);
    let loc = |name: &str| {
        let v = find_value(&p.graph, name);
        p.loc(v)
    };
    let (Loc::Arena { offset: oa, .. }, Loc::Arena { offset: oe, .. }) = (loc("a"), loc("e"))
    else {
        panic!("not in the arena: {:?} {:?}", loc("a"), loc("e"));
    };
    assert_eq!(
        oa,
        oe,
        "the second kernel runs in place\n{}\n{:?}",
        p.kernels.iter().map(|k| k.to_string()).collect::<String>(),
        p.steps
    );
    // %a and %e (%x is read in place from the caller, %m written straight
    // into the returned tensor).
    let t = 17 * 1023 * 4;
    assert_eq!(p.unplanned_bytes, 2 * t);
    assert!(
        p.arena_bytes < p.unplanned_bytes,
        "{} vs {}",
        p.arena_bytes,
        p.unplanned_bytes
    );

    // Four softmaxes in a row: liveness lets buffers be reused.
    let src = "graph t {\n  input %x: f32[64,1023]\n  %a = softmax(%x) {axis = -1}\n  %b = softmax(%a) {axis = 0}\n  %c = softmax(%b) {axis = -1}\n  %d = softmax(%c) {axis = 0}\n  output y = %d\n}";
    let p = check_default(src);
    assert_eq!(kinds(&p), ["kernel"; 4]);
    // %a, %b, %c: the input and the output live outside the arena.
    let t = 64 * 1023 * 4;
    assert_eq!(p.unplanned_bytes, 3 * t);
    assert!(
        p.arena_bytes <= 2 * t.div_ceil(64) * 64,
        "arena {}",
        p.arena_bytes
    );
    let m = model(src);
    let prep = Prepared::new(m, Backend::Cpu, &PrepareOptions { threads: 2 }).unwrap();
    assert_eq!(prep.peak_bytes(), Some(p.arena_bytes));
}

/// Aliased reshapes share their input's memory.
#[test]
fn reshape_alias_shares_memory() {
    let src = "graph t {\n  input %x: f32[4,1023]\n  param %w: f32[1023,8]\n  %m = matmul(%x, %w)\n  %r = reshape(%m) {shape = [32]}\n  %s = softmax(%r) {axis = 0}\n  output y = %s\n}";
    let p = check(src, -1.0, 1.0, RTOL, dot_atol(1023));
    if p.steps.iter().any(|s| matches!(s, Step::Alias { .. })) {
        let (m, r) = (find_value(&p.graph, "m"), find_value(&p.graph, "r"));
        assert_eq!(p.loc(m), p.loc(r));
    }
}

fn find_value(g: &Graph, name: &str) -> ir::ValueId {
    let mut vals: Vec<_> = g.inputs().to_vec();
    for n in g.node_ids() {
        vals.extend(g.node(n).outputs.iter().copied());
    }
    vals.into_iter()
        .find(|&v| g.value(v).name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no value %{name} in\n{g}"))
}

// ---- errors ------------------------------------------------------------

fn cpu(src: &str) -> Prepared {
    Prepared::new(model(src), Backend::Cpu, &PrepareOptions { threads: 1 }).unwrap()
}

#[test]
fn bad_inputs_are_errors_naming_the_input() {
    let p = cpu("graph t {\n  input %x: f32[3,17]\n  input %mask: i64[3]\n  %a = exp(%x)\n  output y = %a\n  output m = %mask\n}");
    let good = || -> HashMap<String, Tensor> {
        [
            ("x".to_string(), Tensor::f32(&[3, 17], vec![0.5; 51])),
            (
                "mask".to_string(),
                Tensor::from_vec_f64(DType::I64, &[3], vec![1.0, 0.0, 1.0]).unwrap(),
            ),
        ]
        .into()
    };
    assert!(p.run(&good()).is_ok());
    let err = |x: HashMap<String, Tensor>| -> String {
        format!("{:#}", p.run(&x).expect_err("bad input accepted"))
    };
    // Missing input.
    let mut x = good();
    x.remove("x");
    let e = err(x);
    assert!(e.contains("x") && e.contains("not given"), "{e}");
    // Wrong shape.
    let mut x = good();
    x.insert("x".into(), Tensor::f32(&[17, 3], vec![0.5; 51]));
    let e = err(x);
    assert!(
        e.contains("`x`") || e.contains(" x") || e.contains("x:"),
        "{e}"
    );
    assert!(e.contains("f32[3,17]"), "{e}");
    let mut x = good();
    x.insert("x".into(), Tensor::f32(&[3, 18], vec![0.5; 54]));
    assert!(err(x).contains("f32[3,17]"));
    // Wrong dtype.
    let mut x = good();
    x.insert(
        "x".into(),
        Tensor::from_vec_f64(DType::F64, &[3, 17], vec![0.5; 51]).unwrap(),
    );
    let e = err(x);
    assert!(e.contains("x") && e.contains("f64"), "{e}");
    let mut x = good();
    x.insert("mask".into(), Tensor::f32(&[3], vec![1.0; 3]));
    let e = err(x);
    assert!(e.contains("mask") && e.contains("i64"), "{e}");
    // An input the graph does not have.
    let mut x = good();
    x.insert("bogus".into(), Tensor::f32(&[1], vec![1.0]));
    let e = err(x);
    assert!(e.contains("bogus"), "{e}");
    // The executor still works after the errors.
    assert!(p.run(&good()).is_ok());
}

#[test]
fn unbound_dims_are_a_prepare_error() {
    let m = model("graph t {\n  input %x: f32[N,3]\n  %a = exp(%x)\n  output y = %a\n}");
    let e = Prepared::new(m, Backend::Cpu, &PrepareOptions { threads: 1 })
        .err()
        .expect("unbound dims accepted");
    let e = format!("{e:#}");
    assert!(e.contains("N") || e.contains("unbound"), "{e}");
}

// ---- random elementwise / broadcast graphs -----------------------------

mod random_graphs {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    pub enum Op {
        Unary(u8, usize),
        Binary(u8, usize, usize),
        /// Expand to the full [A, B, C] shape.
        Expand(usize),
        /// Reverse the dims, an op, reverse back.
        TransposeRoundTrip(u8, usize),
        /// Flatten, an op, reshape back.
        ReshapeRoundTrip(u8, usize),
        /// Reverse along an axis (a slice with step -1).
        Reverse(u8, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let i = 0usize..64;
        prop_oneof![
            3 => (0u8..8, i.clone()).prop_map(|(k, a)| Op::Unary(k, a)),
            4 => (0u8..6, i.clone(), i.clone()).prop_map(|(k, a, b)| Op::Binary(k, a, b)),
            1 => i.clone().prop_map(Op::Expand),
            1 => (0u8..8, i.clone()).prop_map(|(k, a)| Op::TransposeRoundTrip(k, a)),
            1 => (0u8..8, i.clone()).prop_map(|(k, a)| Op::ReshapeRoundTrip(k, a)),
            1 => (0u8..3, i).prop_map(|(k, a)| Op::Reverse(k, a)),
        ]
    }

    const UNARY: [&str; 8] = [
        "neg",
        "relu",
        "tanh",
        "sigmoid",
        "abs",
        "softsign",
        "erf",
        "leaky_relu",
    ];

    fn bcast(a: &[usize], b: &[usize]) -> Vec<usize> {
        let r = a.len().max(b.len());
        let get = |s: &[usize], k: usize| {
            if k + s.len() >= r {
                s[k + s.len() - r]
            } else {
                1
            }
        };
        (0..r).map(|k| get(a, k).max(get(b, k))).collect()
    }

    fn ty(s: &[usize]) -> String {
        format!(
            "f32[{}]",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
    }

    /// The graph's text: inputs of every broadcast form of [A, B, C].
    pub fn build(dims: [usize; 3], ops: &[Op]) -> String {
        let [a, b, c] = dims;
        let mut src = String::from("graph rnd {\n");
        let mut vals: Vec<(String, Vec<usize>)> = Vec::new();
        for (name, s) in [
            ("x", vec![a, b, c]),
            ("y", vec![a, b, c]),
            ("r", vec![1, b, 1]),
            ("c", vec![c]),
            ("s", vec![]),
            ("q", vec![a, 1, c]),
        ] {
            src += &format!("  input %{name}: {}\n", ty(&s));
            vals.push((name.to_string(), s));
        }
        src += "  %one = constant() {value = tensor<f32[]>[1.0]}\n";
        let mut n = 0;
        let mut fresh = || {
            n += 1;
            format!("v{n}")
        };
        for o in ops {
            let pick = |i: usize| vals[i % vals.len()].clone();
            let (out, shape) = match o {
                Op::Unary(k, i) => {
                    let (v, s) = pick(*i);
                    let o = fresh();
                    src += &format!("  %{o} = {}(%{v})\n", UNARY[*k as usize]);
                    (o, s)
                }
                Op::Binary(k, i, j) => {
                    let ((v, s), (w, t)) = (pick(*i), pick(*j));
                    let o = fresh();
                    let shape = bcast(&s, &t);
                    if *k == 5 {
                        // v / (1 + |w|): never divides by zero.
                        let (ab, den) = (fresh(), fresh());
                        src += &format!("  %{ab} = abs(%{w})\n  %{den} = add(%{ab}, %one)\n  %{o} = div(%{v}, %{den})\n");
                    } else {
                        let op = ["add", "sub", "mul", "max", "min"][*k as usize];
                        src += &format!("  %{o} = {op}(%{v}, %{w})\n");
                    }
                    (o, shape)
                }
                Op::Expand(i) => {
                    let (v, _) = pick(*i);
                    let o = fresh();
                    src += &format!("  %{o} = expand(%{v}) {{shape = [{a}, {b}, {c}]}}\n");
                    (o, vec![a, b, c])
                }
                Op::TransposeRoundTrip(k, i) => {
                    let (v, s) = pick(*i);
                    let (t, u, o) = (fresh(), fresh(), fresh());
                    src += &format!(
                        "  %{t} = transpose(%{v}) {{perm = []}}\n  %{u} = {}(%{t})\n  %{o} = transpose(%{u}) {{perm = []}}\n",
                        UNARY[*k as usize]
                    );
                    (o, s)
                }
                Op::ReshapeRoundTrip(k, i) => {
                    let (v, s) = pick(*i);
                    let (t, u, o) = (fresh(), fresh(), fresh());
                    let back = s
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    src += &format!(
                        "  %{t} = reshape(%{v}) {{shape = [-1]}}\n  %{u} = {}(%{t})\n  %{o} = reshape(%{u}) {{shape = [{back}]}}\n",
                        UNARY[*k as usize]
                    );
                    (o, s)
                }
                Op::Reverse(k, i) => {
                    let (v, s) = pick(*i);
                    if s.is_empty() {
                        continue;
                    }
                    let ax = *k as usize % s.len();
                    let o = fresh();
                    src += &format!(
                        "  %{o} = slice(%{v}) {{starts = [-1], ends = [-9223372036854775807], axes = [{ax}], steps = [-1]}}\n"
                    );
                    (o, s)
                }
            };
            vals.push((out, shape));
        }
        let last = vals.len() - 1;
        // The last value, and two earlier results (inputs when there are none).
        let at = |f: usize| 6 + last.saturating_sub(6) / f;
        for (name, k) in [("out", last), ("mid", at(2)), ("early", at(3))] {
            src += &format!("  output {name} = %{}\n", vals[k.min(last)].0);
        }
        src + "}\n"
    }

    fn dim() -> impl Strategy<Value = usize> {
        prop_oneof![Just(1usize), Just(3), Just(17)]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// Random chains of elementwise, broadcast and injective ops compute
        /// the same on cpu (1 and 2 threads, bitwise) as on ref. The last
        /// dim is sometimes 1023, putting tensors above the thread threshold.
        #[test]
        fn random_elementwise_graphs(
            a in dim(),
            b in dim(),
            c in prop_oneof![dim(), Just(1023usize)],
            ops in prop::collection::vec(op(), 1..14),
        ) {
            let src = build([a, b, c], &ops);
            let m = model(&src);
            let p = program(&m);
            assert_native(&p);
            let x = feeds(&m.graph, -2.0, 2.0);
            // Values stay O(1)-O(100) in magnitude: errors of a few ulp of
            // the transcendental ops, carried through the chain.
            compare_on(&m, &x, 1e-5, 1e-5)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{src}\nsteps: {}", p.summary())))?;
        }
    }
}

/// Cases where writing in place would be wrong, or right only with care:
/// the result must still match the reference.
#[test]
fn in_place_hazards() {
    // %a is read at two different places (itself and its transpose): the
    // kernel must not write over it.
    check_default(
        "graph t {\n  input %x: f32[33,33]\n  %a = exp(%x)\n  %b = neg(%a)\n  %t = transpose(%a) {perm = [1, 0]}\n  %c = add(%b, %t)\n  output y = %c\n}",
    );
    // %a is also an output: it must survive the kernel that reads it last.
    check_default(
        "graph t {\n  input %x: f32[17,1023]\n  %a = exp(%x)\n  %b = neg(%a)\n  %c = sqrt(%a)\n  %d = add(%b, %c)\n  output a = %a\n  output y = %d\n}",
    );
    // An alias of %a is read after the kernel: %a's buffer stays live.
    check_default(
        "graph t {\n  input %x: f32[17,1023]\n  param %w: f32[1023,3]\n  %a = exp(%x)\n  %r = reshape(%a) {shape = [17, 1023]}\n  %b = neg(%a)\n  %c = sqrt(%a)\n  %d = add(%b, %c)\n  %m = matmul(%r, %w)\n  output y = %d\n  output m = %m\n}",
    );
    // A reversed read of the same buffer (a different element each time).
    check_default(
        "graph t {\n  input %x: f32[1023]\n  %a = exp(%x)\n  %r = slice(%a) {starts = [-1], ends = [-9223372036854775807], axes = [0], steps = [-1]}\n  %b = sub(%a, %r)\n  output y = %b\n}",
    );
    // A chain of single-use kernels split by reductions: each elementwise
    // kernel may write over its input.
    let p = check_default(
        "graph t {\n  input %x: f32[64,1023]\n  param %w: f32[1023,3]\n  %a = exp(%x)\n  %s = reduce_max(%a) {axes = [1], keepdims = 1}\n  %b = neg(%a)\n  %c = tanh(%a)\n  %d = mul(%b, %c)\n  %e = add(%d, %s)\n  %m = matmul(%e, %w)\n  output y = %m\n}",
    );
    assert!(
        p.arena_bytes < p.unplanned_bytes,
        "{} vs {}",
        p.arena_bytes,
        p.unplanned_bytes
    );
    // Matmul and conv residuals that read the anchor's own input.
    check(
        "graph t {\n  input %x: f32[17,17]\n  param %w: f32[17,17]\n  %m = matmul(%x, %w)\n  %a = add(%m, %x)\n  %e = exp(%a)\n  output y = %e\n}",
        -1.0,
        1.0,
        RTOL,
        dot_atol(17),
    );
}

/// Reductions whose reduced or kept dims have extent 1, and reductions
/// with broadcast or injective producers.
#[test]
fn reduction_edge_shapes() {
    for src in [
        "graph t {\n  input %x: f32[3,1,17]\n  %s = softmax(%x) {axis = 1}\n  output y = %s\n}",
        "graph t {\n  input %x: f32[3,1,17]\n  %s = log_softmax(%x) {axis = 1}\n  output y = %s\n}",
        "graph t {\n  input %x: f32[1,1,1]\n  %s = softmax(%x) {axis = -1}\n  output y = %s\n}",
        "graph t {\n  input %x: f32[3,1,17]\n  %r = reduce_sum(%x) {axes = [1], keepdims = 0}\n  output y = %r\n}",
        "graph t {\n  input %x: f32[3,1,17]\n  %r = reduce_max(%x) {axes = [1, 2], keepdims = 1}\n  output y = %r\n}",
        "graph t {\n  input %x: f32[1,17,1]\n  %r = reduce_mean(%x) {axes = [0], keepdims = 1}\n  output y = %r\n}",
        "graph t {\n  input %x: f32[5,1]\n  param %ln.scale: f32[1]\n  %y = layer_norm(%x, %ln.scale) {axis = -1, epsilon = 1e-5}\n  output y = %y\n}",
        "graph t {\n  input %x: f32[5,3,1]\n  param %ln.scale: f32[3,1]\n  param %ln.bias: f32[3,1]\n  %y = layer_norm(%x, %ln.scale, %ln.bias) {axis = 1, epsilon = 1e-5}\n  output y = %y\n}",
        "graph t {\n  input %x: f32[2,3,1,1]\n  %p = global_avg_pool(%x)\n  output y = %p\n}",
        // Broadcast producers.
        "graph t {\n  input %x: f32[3,17,33]\n  input %b: f32[33]\n  input %c: f32[17,1]\n  %a = add(%x, %b)\n  %m = mul(%a, %c)\n  %s = softmax(%m) {axis = 1}\n  output y = %s\n}",
        "graph t {\n  input %x: f32[17,1]\n  %e = expand(%x) {shape = [17, 33]}\n  %s = softmax(%e) {axis = -1}\n  output y = %s\n}",
        "graph t {\n  input %x: f32[33,17]\n  param %ln.scale: f32[33]\n  %t = transpose(%x) {perm = [1, 0]}\n  %r = relu(%t)\n  %y = layer_norm(%r, %ln.scale) {axis = -1, epsilon = 1e-5}\n  %z = tanh(%y)\n  output y = %z\n}",
        "graph t {\n  input %x: f32[2,3,5,7]\n  %r = relu(%x)\n  %p = global_max_pool(%r)\n  %n = neg(%p)\n  output y = %n\n}",
        "graph t {\n  input %x: f32[6,35]\n  %r = reshape(%x) {shape = [6, 5, 7]}\n  %s = reduce_sum(%r) {axes = [2], keepdims = 0}\n  output y = %s\n}",
    ] {
        check(src, -2.0, 2.0, RTOL, 1e-5);
    }
}

/// Epilogues with broadcast operands that are not parameters.
#[test]
fn epilogue_broadcast_operands() {
    // A per-row ([M, 1]) and a per-column input bias.
    check(
        "graph t {\n  input %x: f32[17,33]\n  input %rb: f32[17,1]\n  input %cb: f32[1,65]\n  param %w: f32[33,65]\n  %m = matmul(%x, %w)\n  %a = add(%m, %rb)\n  %b = mul(%a, %cb)\n  output y = %b\n}",
        -1.0,
        1.0,
        RTOL,
        dot_atol(33),
    );
    // Batched matmul with a per-batch scale.
    check(
        "graph t {\n  input %x: f32[3,17,33]\n  input %y: f32[3,33,5]\n  input %s: f32[3,1,1]\n  %m = matmul(%x, %y)\n  %a = mul(%m, %s)\n  output y = %a\n}",
        -1.0,
        1.0,
        RTOL,
        dot_atol(33),
    );
    // A conv with a per-channel input bias and a per-pixel input mask.
    check(
        "graph t {\n  input %x: f32[2,3,9,9]\n  input %b: f32[4,1,1]\n  input %k: f32[9,9]\n  param %c.weight: f32[4,3,3,3]\n  %c = conv(%x, %c.weight) {pads = [1, 1, 1, 1]}\n  %a = add(%c, %b)\n  %m = mul(%a, %k)\n  output y = %m\n}",
        -1.0,
        1.0,
        RTOL,
        1e-5,
    );
}

/// The executor checks a program before running it (an artifact will hand
/// it programs it did not compile): a bad plan is an error, never a panic.
#[test]
fn executor_refuses_inconsistent_programs() {
    use kiln::runtime::exec::{ExecOptions, Executor};
    // %c is also an output, so the reshape cannot fuse into its producer:
    // it becomes an alias of %c's memory.
    let src = "graph t {\n  input %x: f32[4,8]\n  param %w: f32[4,3]\n  %a = exp(%x)\n  %b = neg(%x)\n  %c = add(%a, %b)\n  %r = reshape(%c) {shape = [8, 4]}\n  %m = matmul(%r, %w)\n  output y = %m\n  output c = %c\n}";
    let m = model(src);
    let p = program(&m);
    assert!(
        p.steps.iter().any(|s| matches!(s, Step::Alias { .. })),
        "{:?}",
        p.steps
    );
    let opts = ExecOptions::default();
    assert!(Executor::new(p.clone(), &m.weights, &opts).is_ok());

    // An alias whose result is elsewhere than its input.
    let mut bad = p.clone();
    let r = find_value(&bad.graph, "r");
    bad.locs[r.index()] = Loc::Arena {
        offset: bad.arena_bytes,
        len: 128,
    };
    bad.arena_bytes += 128;
    let e = Executor::new(bad, &m.weights, &opts)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("alias"), "{e}");

    // An arena offset past the arena.
    let mut bad = p.clone();
    let c = find_value(&bad.graph, "c");
    bad.locs[c.index()] = Loc::Arena {
        offset: p.arena_bytes,
        len: 128,
    };
    let e = Executor::new(bad, &m.weights, &opts)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("outside"), "{e}");

    // A kernel bound to a value of the wrong size.
    let mut bad = p.clone();
    if let Some(Step::Kernel { args, .. }) = bad
        .steps
        .iter_mut()
        .find(|s| matches!(s, Step::Kernel { .. }))
    {
        args[0] = bad.graph.params()[0];
    }
    let e = Executor::new(bad, &m.weights, &opts)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("buffer"), "{e}");

    // Too few locations.
    let mut bad = p;
    bad.locs.pop();
    assert!(Executor::new(bad, &m.weights, &opts).is_err());
}

/// Fusion annotations that are not closed (a member's result read outside
/// its group, as a rewrite after `fusion` could leave them) are not trusted:
/// the nodes run one by one, in order, and the results stay right.
#[test]
fn stale_fusion_groups_run_node_by_node() {
    let src = "graph t {\n  input %x: f32[3,17]\n  %a = exp(%x)\n  %b = neg(%a)\n  %c = tanh(%b)\n  %d = mul(%a, %c)\n  output y = %d\n}";
    let m = model(src);
    let mut g = m.graph.clone();
    // Put %a and %b in one group although %d (outside it) reads %a.
    let prod = |g: &Graph, name: &str| match g.value(find_value(g, name)).def {
        ir::ValueDef::Node { node, .. } => node,
        _ => unreachable!(),
    };
    let (na, nb) = (prod(&g, "a"), prod(&g, "b"));
    g.node_mut(na).group = Some(7);
    g.node_mut(nb).group = Some(7);
    let (p, _) = codegen::compile(&g, &m.weights).unwrap();
    assert!(p.steps.len() >= 3, "{:?}", p.steps);
    let x = feeds(&m.graph, -1.0, 1.0);
    let exec = kiln::runtime::exec::Executor::new(p, &m.weights, &Default::default()).unwrap();
    let got = exec.run(&x).unwrap();
    let want = ir::run(&m.graph, &m.weights, &x).unwrap();
    ir::tensor::allclose(&got[0].1, &want[0].1, 1e-5, 1e-6).unwrap();
}
