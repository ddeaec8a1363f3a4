//! Gradient checks: every op with a gradient rule against central finite
//! differences.
//!
//! Each case is a tiny graph in `.kir` text over f64 tensors (the reference
//! interpreter computes in f64 and f64 results round to themselves, so the
//! differences are taken in full double precision). Shapes are drawn at
//! random per case (a fixed seed, several draws), broadcasting included. The
//! harness reduces the case's output `y` to a scalar with random weights,
//! `loss = reduce_sum(y * r)`, runs `autodiff` with respect to every float
//! input, evaluates the gradients with the reference interpreter and compares
//! each element with `(L(x + h) - L(x - h)) / 2h`, h = 1e-6, within
//! `|analytic - numeric| <= 1e-6 + 1e-5 * |numeric|`.
//!
//! `every_rule_has_a_case` fails when an op declares a rule
//! (`OpDef::GRAD_SPELLINGS`) that no case here exercises.

use std::collections::{BTreeSet, HashMap};

use kiln_compiler::passes::autodiff::{autodiff, gradients};
use kiln_ir::ops::reduce::{Reduce, ReduceKind};
use kiln_ir::{DType, Graph, Op, Shape, Tensor, TensorType, ValueId, Weights};

/// A small deterministic generator (xorshift64*), so the checks need no
/// extra dependency and every run draws the same shapes and values.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// One check: graph text (inputs and `output y`), the range float inputs are
/// drawn from, and fixed values for integer or bool inputs.
struct Case {
    text: String,
    lo: f64,
    hi: f64,
    fixed: Vec<(&'static str, Tensor)>,
}

fn case(text: impl Into<String>) -> Case {
    Case {
        text: text.into(),
        lo: -2.0,
        hi: 2.0,
        fixed: vec![],
    }
}
impl Case {
    fn range(mut self, lo: f64, hi: f64) -> Case {
        self.lo = lo;
        self.hi = hi;
        self
    }
    fn fixed(mut self, name: &'static str, t: Tensor) -> Case {
        self.fixed.push((name, t));
        self
    }
}

fn dims_str(d: &[usize]) -> String {
    d.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn i64_tensor(shape: &[usize], v: Vec<i64>) -> Tensor {
    Tensor::from_i64(
        DType::I64,
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), v).unwrap(),
    )
}
fn bool_tensor(shape: &[usize], v: Vec<bool>) -> Tensor {
    Tensor::Bool(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), v).unwrap())
}

/// Random dims of rank `lo..=hi`, each 1..=4.
fn rand_dims(rng: &mut Rng, lo: usize, hi: usize) -> Vec<usize> {
    let r = rng.int(lo, hi);
    (0..r).map(|_| rng.int(1, 4)).collect()
}

/// `b` a broadcasting partner of `a`: a suffix of `a` with some dims set to 1.
fn bcast_partner(rng: &mut Rng, a: &[usize]) -> Vec<usize> {
    let keep = rng.int(0, a.len());
    a[a.len() - keep..]
        .iter()
        .map(|&d| if rng.int(0, 2) == 0 { 1 } else { d })
        .collect()
}

fn unary_case(op: &str, attrs: &str, dims: &[usize], lo: f64, hi: f64) -> Case {
    case(format!(
        "input %x: f64[{}]\n  %y = {op}(%x){attrs}\n  output y = %y",
        dims_str(dims)
    ))
    .range(lo, hi)
}

/// The gradient check itself. Returns the spellings of the ops in the case.
fn check(name: &str, c: &Case, rng: &mut Rng) -> Vec<&'static str> {
    let src = format!("graph t {{\n  {}\n}}\n", c.text);
    let mut g: Graph = kiln_ir::parse(&src).unwrap_or_else(|e| panic!("{name}: {e}\n{src}"));
    let ops: Vec<&'static str> = g
        .node_ids()
        .into_iter()
        .map(|n| g.node(n).op.spelling())
        .collect();
    let y = g.outputs()[0].1;
    let yty = g.value(y).ty.clone();
    let r = g.add_input("r__", yty.clone());
    let prod = g
        .add(
            kiln_ir::ops::binary::Binary::new(kiln_ir::ops::binary::BinaryKind::Mul),
            &[y, r],
        )
        .unwrap();
    let loss = g
        .add(Reduce::new(ReduceKind::Sum, vec![], false), &[prod])
        .unwrap();
    g.set_output("loss", loss);

    let mut feeds: HashMap<String, Tensor> = HashMap::new();
    let mut wrt: Vec<ValueId> = Vec::new();
    for &v in g.inputs() {
        let val = g.value(v);
        let vname = val.name.clone().unwrap();
        if let Some((_, t)) = c.fixed.iter().find(|(n, _)| *n == vname) {
            feeds.insert(vname, t.clone());
            continue;
        }
        let dims = val.ty.shape.concrete().unwrap();
        let n: usize = dims.iter().product();
        let (lo, hi) = if vname == "r__" {
            (-1.0, 1.0)
        } else {
            (c.lo, c.hi)
        };
        let data: Vec<f64> = (0..n).map(|_| rng.range(lo, hi)).collect();
        feeds.insert(
            vname.clone(),
            Tensor::from_vec_f64(val.ty.dtype, &dims, data).unwrap(),
        );
        if vname != "r__" {
            wrt.push(v);
        }
    }
    let forward = g.clone();
    let grads = autodiff(&mut g, loss, &wrt).unwrap_or_else(|e| panic!("{name}: {e}\n{src}"));
    kiln_ir::verify(&g).unwrap_or_else(|e| panic!("{name}: invalid gradient graph: {e}\n{g}"));
    // Also through the text format: the gradient graph prints and parses back.
    let text = kiln_ir::print(&g);
    kiln_ir::parse(&text).unwrap_or_else(|e| panic!("{name}: reparse: {e}\n{text}"));
    let w = Weights::default();
    let outs = kiln_ir::run(&g, &w, &feeds).unwrap_or_else(|e| panic!("{name}: {e}\n{g}"));
    let get = |n: &str| outs.iter().find(|(k, _)| k == n).unwrap().1.clone();
    let loss_of = |feeds: &HashMap<String, Tensor>| -> f64 {
        let o = kiln_ir::run(&forward, &w, feeds).unwrap();
        o.iter()
            .find(|(k, _)| k == "loss")
            .unwrap()
            .1
            .to_f64()
            .iter()
            .copied()
            .next()
            .unwrap()
    };
    let h = 1e-6;
    for (&v, &gv) in wrt.iter().zip(&grads) {
        let vname = g.value(v).name.clone().unwrap();
        let analytic = get(&format!("grad_{vname}")).to_f64();
        assert_eq!(g.value(gv).ty, g.value(v).ty, "{name}: gradient type");
        let base = feeds[&vname].clone();
        let dims = base.shape().to_vec();
        let vals = base.to_f64().iter().copied().collect::<Vec<_>>();
        for (i, a) in analytic.iter().enumerate() {
            let mut f = feeds.clone();
            let mut p = vals.clone();
            p[i] += h;
            f.insert(
                vname.clone(),
                Tensor::from_vec_f64(DType::F64, &dims, p).unwrap(),
            );
            let up = loss_of(&f);
            let mut m = vals.clone();
            m[i] -= h;
            f.insert(
                vname.clone(),
                Tensor::from_vec_f64(DType::F64, &dims, m).unwrap(),
            );
            let down = loss_of(&f);
            let num = (up - down) / (2.0 * h);
            assert!(
                (a - num).abs() <= 1e-6 + 1e-5 * num.abs(),
                "{name}: d loss / d {vname}[{i}]: autodiff {a}, finite differences {num}\n{g}"
            );
        }
    }
    ops
}

/// Every case, named. Shapes are drawn from `rng`.
fn cases(rng: &mut Rng) -> Vec<(String, Case)> {
    let mut v: Vec<(String, Case)> = Vec::new();
    // Unary ops, with the domain each is smooth on.
    let unary: &[(&str, &str, f64, f64)] = &[
        ("neg", "", -2.0, 2.0),
        ("abs", "", -2.0, 2.0),
        ("exp", "", -2.0, 2.0),
        ("log", "", 0.2, 3.0),
        ("sqrt", "", 0.2, 3.0),
        ("rsqrt", "", 0.2, 3.0),
        ("reciprocal", "", 0.3, 3.0),
        ("sin", "", -3.0, 3.0),
        ("cos", "", -3.0, 3.0),
        ("tanh", "", -2.0, 2.0),
        ("sigmoid", "", -3.0, 3.0),
        ("relu", "", -2.0, 2.0),
        ("leaky_relu", " {alpha = 0.1}", -2.0, 2.0),
        ("elu", " {alpha = 0.7}", -2.0, 2.0),
        ("selu", "", -2.0, 2.0),
        ("gelu", "", -3.0, 3.0),
        ("gelu", " {approximate = \"tanh\"}", -3.0, 3.0),
        ("erf", "", -2.0, 2.0),
        ("softplus", "", -3.0, 3.0),
        ("hard_sigmoid", " {alpha = 0.3, beta = 0.4}", -4.0, 4.0),
        ("sign", "", -2.0, 2.0),
        ("floor", "", -2.0, 2.0),
        ("ceil", "", -2.0, 2.0),
        ("round", "", -2.0, 2.0),
        ("tan", "", -1.2, 1.2),
        ("asin", "", -0.9, 0.9),
        ("acos", "", -0.9, 0.9),
        ("atan", "", -3.0, 3.0),
        ("sinh", "", -2.0, 2.0),
        ("cosh", "", -2.0, 2.0),
        ("asinh", "", -2.0, 2.0),
        ("acosh", "", 1.2, 3.0),
        ("atanh", "", -0.9, 0.9),
        ("softsign", "", -2.0, 2.0),
        ("mish", "", -3.0, 3.0),
        ("hard_swish", "", -5.0, 5.0),
        ("celu", " {alpha = 1.5}", -2.0, 2.0),
        ("thresholded_relu", " {alpha = 0.5}", -2.0, 2.0),
    ];
    for &(op, attrs, lo, hi) in unary {
        for _ in 0..2 {
            let d = rand_dims(rng, 0, 3);
            v.push((
                format!("{op}{attrs} {d:?}"),
                unary_case(op, attrs, &d, lo, hi),
            ));
        }
    }
    // Binary ops, same shape and broadcast both ways.
    for op in ["add", "sub", "mul", "div", "pow", "max", "min"] {
        for k in 0..3 {
            let a = rand_dims(rng, 1, 3);
            let b = bcast_partner(rng, &a);
            let (a, b) = if k == 1 {
                (b, a)
            } else if k == 2 {
                (a.clone(), a)
            } else {
                (a, b)
            };
            let (lo, hi) = if op == "pow" || op == "div" {
                (0.5, 2.0)
            } else {
                (-2.0, 2.0)
            };
            v.push((
                format!("{op} {a:?} {b:?}"),
                case(format!(
                    "input %a: f64[{}]\n  input %b: f64[{}]\n  %y = {op}(%a, %b)\n  output y = %y",
                    dims_str(&a),
                    dims_str(&b)
                ))
                .range(lo, hi),
            ));
        }
    }
    v.push((
        "prelu".into(),
        case("input %a: f64[2,3,4]\n  input %s: f64[3,1]\n  %y = prelu(%a, %s)\n  output y = %y"),
    ));
    v.push((
        "where".into(),
        case("input %c: bool[3,1]\n  input %a: f64[3,4]\n  input %b: f64[4]\n  %y = where(%c, %a, %b)\n  output y = %y")
            .fixed("c", bool_tensor(&[3, 1], vec![true, false, true])),
    ));
    // Reductions over random axes, with and without keepdims.
    for op in [
        "reduce_sum",
        "reduce_mean",
        "reduce_max",
        "reduce_min",
        "reduce_prod",
    ] {
        for k in 0..3 {
            let d = rand_dims(rng, 1, 3);
            let axes: Vec<String> = (0..d.len())
                .filter(|_| rng.int(0, 1) == 1)
                .map(|a| a.to_string())
                .collect();
            let (lo, hi) = if op == "reduce_prod" {
                (0.5, 1.5)
            } else {
                (-2.0, 2.0)
            };
            v.push((
                format!("{op} {d:?} axes {axes:?}"),
                unary_case(
                    op,
                    &format!(" {{axes = [{}], keepdims = {}}}", axes.join(", "), k % 2),
                    &d,
                    lo,
                    hi,
                ),
            ));
        }
    }
    // Matrix products: plain, batched with broadcasting, and 1-D operands.
    let (m, k, n) = (rng.int(1, 4), rng.int(1, 4), rng.int(1, 4));
    let b = rng.int(2, 3);
    for (a, bb) in [
        (format!("{m},{k}"), format!("{k},{n}")),
        (format!("{b},{m},{k}"), format!("{k},{n}")),
        (format!("1,{m},{k}"), format!("{b},1,{k},{n}")),
        (format!("{k}"), format!("{b},{k},{n}")),
        (format!("{m},{k}"), format!("{k}")),
        (format!("{k}"), format!("{k}")),
    ] {
        v.push((
            format!("matmul [{a}] [{bb}]"),
            case(format!(
                "input %a: f64[{a}]\n  input %b: f64[{bb}]\n  %y = matmul(%a, %b)\n  output y = %y"
            )),
        ));
    }
    for (op, ax) in [
        ("softmax", -1),
        ("softmax", 0),
        ("log_softmax", 1),
        ("log_softmax", -1),
    ] {
        let d = [rng.int(2, 4), rng.int(2, 4), rng.int(1, 3)];
        v.push((
            format!("{op} {ax}"),
            unary_case(op, &format!(" {{axis = {ax}}}"), &d, -2.0, 2.0),
        ));
    }
    v.push((
        "clip".into(),
        case("input %x: f64[3,4]\n  input %lo: f64[]\n  input %hi: f64[1]\n  %y = clip(%x, %lo, %hi)\n  output y = %y")
            .fixed("lo", Tensor::from_vec_f64(DType::F64, &[], vec![-0.5]).unwrap())
            .fixed("hi", Tensor::from_vec_f64(DType::F64, &[1], vec![0.7]).unwrap()),
    ));
    v.push((
        "clip (bounds differentiated)".into(),
        case("input %x: f64[3,4]\n  input %lo: f64[]\n  %y = clip(%x, %lo)\n  output y = %y")
            .range(-1.0, 1.0),
    ));
    for op in ["sum", "mean", "maximum", "minimum"] {
        v.push((
            op.into(),
            case(format!("input %a: f64[2,3]\n  input %b: f64[3]\n  input %c: f64[2,1]\n  %y = {op}(%a, %b, %c)\n  output y = %y")),
        ));
    }
    // Data movement.
    v.push((
        "reshape".into(),
        unary_case("reshape", " {shape = [3, -1]}", &[2, 3, 2], -1.0, 1.0),
    ));
    v.push((
        "flatten".into(),
        unary_case("flatten", " {axis = 2}", &[2, 3, 2], -1.0, 1.0),
    ));
    v.push((
        "transpose".into(),
        unary_case("transpose", " {perm = [1, 2, 0]}", &[2, 3, 4], -1.0, 1.0),
    ));
    v.push((
        "transpose default".into(),
        unary_case("transpose", "", &[2, 3, 4], -1.0, 1.0),
    ));
    v.push((
        "squeeze".into(),
        unary_case("squeeze", " {axes = [1]}", &[2, 1, 3], -1.0, 1.0),
    ));
    v.push((
        "squeeze all".into(),
        unary_case("squeeze", "", &[1, 2, 1, 3], -1.0, 1.0),
    ));
    v.push((
        "unsqueeze".into(),
        unary_case("unsqueeze", " {axes = [0, -1]}", &[2, 3], -1.0, 1.0),
    ));
    v.push((
        "expand".into(),
        unary_case("expand", " {shape = [2, 3, 4]}", &[3, 1], -1.0, 1.0),
    ));
    v.push((
        // Between float types the rule casts the gradient back; f64 -> f64
        // keeps the check in double precision.
        "cast".into(),
        case("input %x: f64[3]\n  %a = cast(%x) {to = f64}\n  %y = mul(%a, %a)\n  output y = %y"),
    ));
    v.push((
        "concat".into(),
        case("input %a: f64[2,3]\n  input %b: f64[2,1]\n  input %c: f64[2,2]\n  %y = concat(%a, %b, %c) {axis = 1}\n  output y = %y"),
    ));
    v.push((
        "split (one output unused)".into(),
        case("input %x: f64[5,2]\n  %p, %q, %r = split(%x) {axis = 0, sizes = [2, 1, 2]}\n  %y = mul(%p, %r)\n  output y = %y"),
    ));
    for (starts, ends, axes, steps) in [
        ("[1]", "[3]", "[0]", "[]"),
        ("[0, 1]", "[5, 4]", "[0, 1]", "[2, 1]"),
        ("[-1]", "[-100]", "[1]", "[-2]"),
        ("[4, 3]", "[0, 0]", "[0, 2]", "[-1, -3]"),
    ] {
        v.push((
            format!("slice {starts} {ends} {axes} {steps}"),
            unary_case(
                "slice",
                &format!(" {{starts = {starts}, ends = {ends}, axes = {axes}, steps = {steps}}}"),
                &[5, 4, 4],
                -1.0,
                1.0,
            ),
        ));
    }
    v.push((
        "gather (repeated indices)".into(),
        case("input %x: f64[3,4,2]\n  input %i: i64[2,3]\n  %y = gather(%x, %i) {axis = 1}\n  output y = %y")
            .fixed("i", i64_tensor(&[2, 3], vec![0, 3, 3, -1, 1, 0])),
    ));
    v.push((
        "pad (pads and crops)".into(),
        unary_case(
            "pad",
            " {mode = \"constant\", pads = [1, -1, 0, 2], value = 0.5}",
            &[3, 4],
            -1.0,
            1.0,
        ),
    ));
    v.push((
        "pad (fill value as input)".into(),
        case("input %x: f64[2,3]\n  input %v: f64[1]\n  %y = pad(%x, %v) {mode = \"constant\", pads = [0, 1, 1, 0]}\n  output y = %y"),
    ));
    // Convolutions: input, weight and bias gradients, with strides, pads
    // (asymmetric), dilations and groups, 1-D and 2-D.
    for (x, w, b, attrs) in [
        ("1,2,5,5", "3,2,3,3", true, ""),
        (
            "2,4,6,5",
            "4,2,3,2",
            true,
            " {strides = [2, 1], pads = [1, 0, 0, 1], groups = 2}",
        ),
        (
            "1,2,7,7",
            "2,1,2,3",
            false,
            " {strides = [2, 3], dilations = [2, 1], pads = [0, 1, 1, 0], groups = 2}",
        ),
        (
            "2,3,8",
            "2,3,3",
            true,
            " {strides = [3], pads = [2, 1], dilations = [2]}",
        ),
    ] {
        let bias = if b {
            format!("\n  input %b: f64[{}]", &w[..1])
        } else {
            String::new()
        };
        let args = if b { "%x, %w, %b" } else { "%x, %w" };
        v.push((
            format!("conv x[{x}] w[{w}]{attrs}"),
            case(format!("input %x: f64[{x}]\n  input %w: f64[{w}]{bias}\n  %y = conv({args}){attrs}\n  output y = %y")),
        ));
    }
    for (x, w, b, attrs) in [
        ("1,2,3,3", "2,3,3,3", true, ""),
        (
            "2,4,3,2",
            "4,1,2,3",
            true,
            " {strides = [2, 1], pads = [1, 0, 0, 1], groups = 2}",
        ),
        (
            "1,2,3,4",
            "2,2,3,2",
            false,
            " {strides = [3, 2], output_padding = [1, 1], dilations = [1, 2]}",
        ),
        ("2,3,4", "3,2,3", true, " {strides = [2], pads = [1, 2]}"),
    ] {
        let m = w.split(',').nth(1).unwrap().parse::<usize>().unwrap();
        let groups = if attrs.contains("groups = 2") { 2 } else { 1 };
        let bias = if b {
            format!("\n  input %b: f64[{}]", m * groups)
        } else {
            String::new()
        };
        let args = if b { "%x, %w, %b" } else { "%x, %w" };
        v.push((
            format!("conv_transpose x[{x}] w[{w}]{attrs}"),
            case(format!("input %x: f64[{x}]\n  input %w: f64[{w}]{bias}\n  %y = conv_transpose({args}){attrs}\n  output y = %y")),
        ));
    }
    for (op, attrs) in [
        ("max_pool", " {kernel = [2, 2]}"),
        (
            "max_pool",
            " {kernel = [3, 2], strides = [2, 1], pads = [1, 0, 1, 1], dilations = [1, 2]}",
        ),
        (
            "max_pool",
            " {kernel = [2, 2], strides = [2, 2], ceil_mode = 1}",
        ),
        ("avg_pool", " {kernel = [2, 3], strides = [1, 2]}"),
        (
            "avg_pool",
            " {kernel = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1]}",
        ),
        (
            "avg_pool",
            " {kernel = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1], count_include_pad = 1}",
        ),
        (
            "avg_pool",
            " {kernel = [2, 2], strides = [2, 2], ceil_mode = 1}",
        ),
    ] {
        v.push((
            format!("{op}{attrs}"),
            unary_case(op, attrs, &[2, 2, 5, 5], -2.0, 2.0),
        ));
    }
    v.push((
        "max_pool 1-D".into(),
        unary_case(
            "max_pool",
            " {kernel = [3], strides = [2]}",
            &[1, 2, 7],
            -2.0,
            2.0,
        ),
    ));
    for op in ["global_max_pool", "global_avg_pool"] {
        v.push((op.into(), unary_case(op, "", &[2, 3, 3, 2], -2.0, 2.0)));
    }
    // Losses: targets fixed, with class weights and an ignored element.
    for (op, attrs, w) in [
        ("nll_loss", " {reduction = \"mean\"}", false),
        ("nll_loss", " {reduction = \"sum\", ignore_index = 2}", true),
        ("nll_loss", " {reduction = \"none\"}", true),
        (
            "softmax_cross_entropy",
            " {reduction = \"mean\", ignore_index = 1}",
            true,
        ),
        ("softmax_cross_entropy", " {reduction = \"sum\"}", false),
        ("softmax_cross_entropy", " {reduction = \"none\"}", false),
    ] {
        let (win, warg) = if w {
            ("\n  input %cw: f64[4]", ", %cw")
        } else {
            ("", "")
        };
        let body = if op == "softmax_cross_entropy" {
            format!("%y, %lp = {op}(%x, %t{warg}){attrs}")
        } else {
            format!("%y = {op}(%x, %t{warg}){attrs}")
        };
        let mut c = case(format!(
            "input %x: f64[3,4,2]\n  input %t: i64[3,2]{win}\n  {body}\n  output y = %y"
        ))
        .fixed("t", i64_tensor(&[3, 2], vec![0, 3, 2, 1, 1, 2]));
        if w {
            c = c.fixed(
                "cw",
                Tensor::from_vec_f64(DType::F64, &[4], vec![0.5, 1.0, 2.0, 1.5]).unwrap(),
            );
        }
        v.push((format!("{op}{attrs} weights {w}"), c));
    }
    v.push((
        "softmax_cross_entropy (log-probs used too)".into(),
        case("input %x: f64[3,4]\n  input %t: i64[3]\n  %l, %lp = softmax_cross_entropy(%x, %t) {reduction = \"mean\"}\n  %e = reduce_sum(%lp) {axes = [1], keepdims = 0}\n  %y = add(%e, %l)\n  output y = %y")
            .fixed("t", i64_tensor(&[3], vec![2, 0, 3])),
    ));
    v.push((
        "batch_norm (inference form)".into(),
        case("input %x: f64[2,3,2,2]\n  input %s: f64[3]\n  input %b: f64[3]\n  input %m: f64[3]\n  input %v: f64[3]\n  %y = batch_norm(%x, %s, %b, %m, %v) {epsilon = 0.01}\n  output y = %y")
            .range(0.2, 2.0),
    ));
    v.push((
        "layer_norm".into(),
        case("input %x: f64[2,3,4]\n  input %s: f64[3,4]\n  input %b: f64[4]\n  %y = layer_norm(%x, %s, %b) {axis = 1, epsilon = 0.001}\n  output y = %y"),
    ));
    v.push((
        "layer_norm (no bias, last axis)".into(),
        case("input %x: f64[3,5]\n  input %s: f64[5]\n  %y = layer_norm(%x, %s)\n  output y = %y"),
    ));
    v.push((
        "rms_norm".into(),
        case("input %x: f64[2,3,4]\n  input %s: f64[4]\n  %y = rms_norm(%x, %s) {axis = -1, epsilon = 0.001}\n  output y = %y"),
    ));
    v.push((
        "dropout (inference)".into(),
        unary_case("dropout", " {ratio = 0.3}", &[3, 4], -1.0, 1.0),
    ));
    training_cases(rng, &mut v);
    v
}

/// The training losses, regularisers, batch_norm_train and the seeded
/// random ops (issue 7, part 2).
fn training_cases(rng: &mut Rng, v: &mut Vec<(String, Case)>) {
    // Multiclass hinge: random [N, C], random labels, every reduction.
    for (op, attrs) in [
        ("hinge_loss", ""),
        ("hinge_loss", " {margin = 0.5, reduction = \"sum\"}"),
        ("hinge_loss", " {reduction = \"none\"}"),
        ("squared_hinge_loss", ""),
        ("squared_hinge_loss", " {margin = 2, reduction = \"none\"}"),
    ] {
        let (n, c) = (rng.int(1, 4), rng.int(2, 5));
        let labels: Vec<i64> = (0..n).map(|_| rng.int(0, c - 1) as i64).collect();
        v.push((
            format!("{op}{attrs} [{n},{c}]"),
            case(format!(
                "input %s: f64[{n},{c}]\n  input %t: i64[{n}]\n  %y = {op}(%s, %t){attrs}\n  output y = %y"
            ))
            .fixed("t", i64_tensor(&[n], labels)),
        ));
    }
    // Elementwise losses on random shapes (rank 0 included).
    for op in ["bce_with_logits", "mse_loss", "l1_loss"] {
        for red in ["mean", "sum", "none"] {
            let d = rand_dims(rng, 0, 3);
            v.push((
                format!("{op} {red} {d:?}"),
                case(format!(
                    "input %a: f64[{0}]\n  input %b: f64[{0}]\n  %y = {op}(%a, %b) {{reduction = \"{red}\"}}\n  output y = %y",
                    dims_str(&d)
                )),
            ));
        }
    }
    // KL divergence: positive targets (ln t), or log targets.
    for (red, lt) in [
        ("mean", 0),
        ("batchmean", 0),
        ("none", 0),
        ("sum", 1),
        ("batchmean", 1),
    ] {
        let d = rand_dims(rng, 1, 3);
        let (lo, hi) = if lt == 0 { (0.2, 1.5) } else { (-2.0, 1.0) };
        v.push((
            format!("kl_div {red} log_target {lt} {d:?}"),
            case(format!(
                "input %x: f64[{0}]\n  input %p: f64[{0}]\n  %y = kl_div(%x, %p) {{reduction = \"{red}\", log_target = {lt}}}\n  output y = %y",
                dims_str(&d)
            ))
            .range(lo, hi),
        ));
    }
    for (d, red) in [
        (vec![rng.int(1, 4), rng.int(2, 5)], "mean"),
        (vec![rng.int(1, 3), rng.int(2, 4), rng.int(1, 3)], "none"),
        (vec![rng.int(1, 3), rng.int(2, 4), 2, 2], "sum"),
    ] {
        v.push((
            format!("soft_cross_entropy {red} {d:?}"),
            case(format!(
                "input %x: f64[{0}]\n  input %p: f64[{0}]\n  %y = soft_cross_entropy(%x, %p) {{reduction = \"{red}\"}}\n  output y = %y",
                dims_str(&d)
            )),
        ));
    }
    for op in ["l1_norm", "l2_norm_sq"] {
        let d = rand_dims(rng, 0, 3);
        v.push((format!("{op} {d:?}"), unary_case(op, "", &d, -2.0, 2.0)));
    }
    v.push((
        "elastic net (0.3 l1 + 0.7 l2)".into(),
        case("input %w: f64[3,4]\n  %a = l1_norm(%w)\n  %b = l2_norm_sq(%w)\n  %ka = constant() {value = tensor<f64[]>[0.3]}\n  %kb = constant() {value = tensor<f64[]>[0.7]}\n  %c = mul(%a, %ka)\n  %d = mul(%b, %kb)\n  %y = add(%c, %d)\n  output y = %y"),
    ));
    // Batch norm with batch statistics: y alone, then y with both running
    // statistics folded in, so every output's gradient reaches the inputs.
    for x in ["2,3,2,2", "5,2", "3,2,4"] {
        let c: usize = x.split(',').nth(1).unwrap().parse().unwrap();
        v.push((
            format!("batch_norm_train x[{x}]"),
            case(format!("input %x: f64[{x}]\n  input %s: f64[{c}]\n  input %b: f64[{c}]\n  input %m: f64[{c}]\n  input %v: f64[{c}]\n  %y, %rm, %rv = batch_norm_train(%x, %s, %b, %m, %v) {{epsilon = 0.01, momentum = 0.2}}\n  output y = %y")),
        ));
    }
    v.push((
        "batch_norm_train (running statistics used)".into(),
        case("input %x: f64[2,3,2,2]\n  input %s: f64[3]\n  input %b: f64[3]\n  input %m: f64[3]\n  input %v: f64[3]\n  %y, %rm, %rv = batch_norm_train(%x, %s, %b, %m, %v) {epsilon = 0.001, momentum = 0.3}\n  %t = mul(%rm, %rv)\n  %u = reshape(%t) {shape = [1, 3, 1, 1]}\n  %z = add(%y, %u)\n  output y = %z"),
    ));
    // Seeded random ops: the seed is fixed, so the mask is too.
    let seed = Tensor::from_i64(
        DType::I64,
        ndarray::ArrayD::from_elem(ndarray::IxDyn(&[]), 1234),
    );
    v.push((
        "dropout_train".into(),
        case("input %x: f64[4,5]\n  input %s: i64[]\n  %y, %m = dropout_train(%x, %s) {ratio = 0.4}\n  output y = %y")
            .fixed("s", seed.clone()),
    ));
    v.push((
        "dropout_train (mask used too)".into(),
        case("input %x: f64[3,3]\n  input %s: i64[]\n  %y, %m = dropout_train(%x, %s) {ratio = 0.5}\n  %z = add(%y, %m)\n  %w = mul(%z, %x)\n  output y = %w")
            .fixed("s", seed.clone()),
    ));
    v.push((
        "random_uniform_like".into(),
        case("input %x: f64[2,3]\n  input %s: i64[]\n  %u = random_uniform_like(%x, %s) {low = -1, high = 2}\n  %y = mul(%x, %u)\n  output y = %y")
            .fixed("s", seed),
    ));
}

#[test]
fn gradcheck_all_cases() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let cs = cases(&mut rng);
    for (name, c) in &cs {
        check(name, c, &mut rng);
    }
}

#[test]
fn every_rule_has_a_case() {
    let mut rng = Rng(1);
    let mut covered: BTreeSet<&'static str> = BTreeSet::new();
    for (name, c) in &cases(&mut rng) {
        let src = format!("graph t {{\n  {}\n}}\n", c.text);
        let g = kiln_ir::parse(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
        for n in g.node_ids() {
            covered.insert(g.node(n).op.spelling());
        }
    }
    let missing: Vec<&str> = Op::grad_spellings()
        .into_iter()
        .filter(|s| !covered.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "ops with a gradient rule but no gradcheck case: {missing:?}"
    );
}

#[test]
fn missing_rule_is_an_error_naming_the_op() {
    let src = "graph t {\n  input %x: f32[4]\n  %y = cumsum(%x) {axis = 0}\n  %l = reduce_sum(%y) {keepdims = 0}\n  output loss = %l\n}\n";
    let mut g = kiln_ir::parse(src).unwrap();
    let (x, l) = (g.inputs()[0], g.outputs()[0].1);
    let err = gradients(&mut g, l, &[x]).unwrap_err().to_string();
    assert!(
        err.contains("cumsum") && err.contains("no gradient rule"),
        "{err}"
    );
}

#[test]
fn loss_must_be_a_float_scalar() {
    let src = "graph t {\n  input %x: f32[4]\n  %y = exp(%x)\n  output y = %y\n}\n";
    let mut g = kiln_ir::parse(src).unwrap();
    let (x, y) = (g.inputs()[0], g.outputs()[0].1);
    let err = gradients(&mut g, y, &[x]).unwrap_err().to_string();
    assert!(err.contains("scalar"), "{err}");
    let _ = (Shape::scalar(), TensorType::concrete(DType::F32, &[]));
}

/// Run `src` (its inputs fed from `feeds`, f64 scalars or vectors), take
/// the gradient of its `loss` output w.r.t. every input, and return them.
fn grads_of(src: &str, feeds: &[(&str, Vec<f64>, Vec<usize>)]) -> Vec<(String, Vec<f64>)> {
    let mut g = kiln_ir::parse(src).unwrap();
    let loss = g.outputs().iter().find(|(n, _)| n == "loss").unwrap().1;
    let wrt = g.inputs().to_vec();
    autodiff(&mut g, loss, &wrt).unwrap();
    kiln_ir::verify(&g).unwrap();
    let f: HashMap<String, Tensor> = feeds
        .iter()
        .map(|(n, v, d)| {
            (
                n.to_string(),
                Tensor::from_vec_f64(DType::F64, d, v.clone()).unwrap(),
            )
        })
        .collect();
    kiln_ir::run(&g, &Weights::default(), &f)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.to_f64().iter().copied().collect()))
        .collect()
}

/// Seed checklist 7.4 #30: f = ln x1 + x1 x2 - sin x2, where x2 reaches f
/// along two paths whose gradients add: at (2, 5), f = 11.6521 and
/// grad = (1/x1 + x2, x1 - cos x2) = (5.5, 1.7163).
#[test]
fn notes_ln_x1_plus_x1x2_minus_sin_x2() {
    let src = "graph f {\n  input %x1: f64[]\n  input %x2: f64[]\n  %a = log(%x1)\n  %b = mul(%x1, %x2)\n  %c = sin(%x2)\n  %d = add(%a, %b)\n  %e = sub(%d, %c)\n  output loss = %e\n}\n";
    let out = grads_of(src, &[("x1", vec![2.0], vec![]), ("x2", vec![5.0], vec![])]);
    let get = |n: &str| out.iter().find(|(k, _)| k == n).unwrap().1[0];
    assert!((get("loss") - 11.6521).abs() < 1e-4, "{}", get("loss"));
    assert!((get("grad_x1") - 5.5).abs() < 1e-12);
    assert!((get("grad_x2") - (2.0 - 5f64.cos())).abs() < 1e-12);
    assert!((get("grad_x2") - 1.7163).abs() < 1e-4);
}

/// Seed checklist 7.4 #31: max(5, 1) = 5 routes the whole gradient to the
/// first argument (the max gate is a router).
#[test]
fn notes_max_router() {
    let src = "graph f {\n  input %a: f64[]\n  input %b: f64[]\n  %m = max(%a, %b)\n  output loss = %m\n}\n";
    let out = grads_of(src, &[("a", vec![5.0], vec![]), ("b", vec![1.0], vec![])]);
    let get = |n: &str| out.iter().find(|(k, _)| k == n).unwrap().1[0];
    assert_eq!((get("grad_a"), get("grad_b")), (1.0, 0.0));
    let out = grads_of(src, &[("a", vec![1.0], vec![]), ("b", vec![5.0], vec![])]);
    let get = |n: &str| out.iter().find(|(k, _)| k == n).unwrap().1[0];
    assert_eq!((get("grad_a"), get("grad_b")), (0.0, 1.0));
}

/// Seed checklist 7.4 #32: L = -log sigma(w^T x) gives
/// dL/dw = -(1 - sigma(w^T x)) x^T, through the chain
/// p = sigma(u), dL/dp = -1/p, du = dp * sigma(u)(1 - sigma(u)), dw = du x^T.
#[test]
fn notes_logistic_regression_chain() {
    let src = "graph f {\n  input %w: f64[3]\n  input %x: f64[3]\n  %u = matmul(%w, %x)\n  %p = sigmoid(%u)\n  %l = log(%p)\n  %n = neg(%l)\n  output loss = %n\n}\n";
    let (w, x) = (vec![0.5, -1.0, 0.25], vec![1.0, 2.0, -3.0]);
    let out = grads_of(src, &[("w", w.clone(), vec![3]), ("x", x.clone(), vec![3])]);
    let get = |n: &str| out.iter().find(|(k, _)| k == n).unwrap().1.clone();
    let u: f64 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
    let s = 1.0 / (1.0 + (-u).exp());
    for (gw, xi) in get("grad_w").iter().zip(&x) {
        assert!((gw - (-(1.0 - s) * xi)).abs() < 1e-12, "{gw}");
    }
    for (gx, wi) in get("grad_x").iter().zip(&w) {
        assert!((gx - (-(1.0 - s) * wi)).abs() < 1e-12, "{gx}");
    }
}

/// Params are the default `wrt`; a param the loss does not reach gets zeros;
/// the training graph survives -O2's cleanup passes with params kept live.
#[test]
fn default_wrt_is_params_and_o2_runs() {
    use kiln_compiler::passes::{PassManager, PassOptions, Pipeline};
    let src = "graph mlp {\n  input %x: f32[4,3]\n  param %w: f32[3,2]\n  param %b: f32[2]\n  param %unused: f32[2]\n  %m = matmul(%x, %w)\n  %a = add(%m, %b)\n  %r = relu(%a)\n  %s = reduce_mean(%r) {keepdims = 0}\n  output loss = %s\n}\n";
    let mut g = kiln_ir::parse(src).unwrap();
    let loss = g.outputs()[0].1;
    autodiff(&mut g, loss, &[]).unwrap();
    let names: Vec<&str> = g.outputs().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["loss", "grad_w", "grad_b", "grad_unused"]);
    let mut weights = Weights::default();
    for (n, d) in [("w", vec![3, 2]), ("b", vec![2]), ("unused", vec![2])] {
        let len = d.iter().product();
        let vals = (0..len).map(|i| (i as f64 * 0.37).sin()).collect();
        weights.0.insert(
            n.into(),
            Tensor::from_vec_f64(DType::F32, &d, vals).unwrap(),
        );
    }
    let x: Vec<f64> = (0..12).map(|i| (i as f64 * 0.61).cos()).collect();
    let feeds = HashMap::from([(
        "x".to_string(),
        Tensor::from_vec_f64(DType::F32, &[4, 3], x).unwrap(),
    )]);
    let before = kiln_ir::run(&g, &weights, &feeds).unwrap();
    assert!(before[3].1.to_f64().iter().all(|&v| v == 0.0));
    let mut pm = PassManager::new(Pipeline::level("O2").unwrap());
    pm.opts = PassOptions {
        fold_params: false,
        ..PassOptions::default()
    };
    pm.run(&mut g, &mut weights).unwrap();
    let after = kiln_ir::run(&g, &weights, &feeds).unwrap();
    for ((n, a), (_, b)) in before.iter().zip(&after) {
        kiln_ir::tensor::allclose(b, a, 1e-6, 1e-7).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
}
