//! Snapshots of what codegen makes of representative fusion groups: the
//! kernel IR of each kernel (`Kernel`'s Display) and the step list. Each
//! snapshot's comment says what the fusion rules promise for it.

use std::fmt::Write;

use kiln_compiler::codegen;
use kiln_compiler::passes;
use kiln_ir::program::{Program, Step};
use kiln_ir::{Graph, Weights};

/// `src` at -O2 through codegen. Weights are small values, never 0 or 1,
/// so that no `x + 0` or `x * 1` simplifies away.
fn compile(src: &str) -> Program {
    let mut g = kiln_ir::parse(src).unwrap_or_else(|e| panic!("{e}"));
    let mut w = Weights::default();
    for &p in g.params() {
        let v = g.value(p);
        let dims = v.ty.shape.concrete().unwrap();
        let n: usize = dims.iter().product();
        let vals = (0..n).map(|i| (i % 7) as f64 * 0.1 - 0.25).collect();
        let t = kiln_ir::Tensor::from_vec_f64(v.ty.dtype, &dims, vals).unwrap();
        w.insert(v.name.clone().unwrap(), t);
    }
    passes::optimize("O2", &mut g, &mut w).unwrap();
    codegen::compile(&g, &w).unwrap().0
}

fn steps(g: &Graph, p: &Program) -> String {
    let mut s = String::new();
    for st in &p.steps {
        let nodes: Vec<String> = st.nodes().iter().map(|&n| g.label(n)).collect();
        let extra = match st {
            Step::Kernel { kernel, .. } => format!(" k{kernel}"),
            Step::MatMul { epilogue, .. } | Step::Conv { epilogue, .. } => match epilogue {
                Some(e) => format!(" epilogue k{}", e.kernel),
                None => String::new(),
            },
            _ => String::new(),
        };
        writeln!(s, "{}{extra}: {}", st.kind(), nodes.join(", ")).unwrap();
    }
    s
}

/// Steps, then every kernel.
fn render(p: &Program) -> String {
    let mut s = steps(&p.graph, p);
    for (k, kern) in p.kernels.iter().enumerate() {
        write!(s, "\nk{k}: {kern}").unwrap();
    }
    s
}

#[test]
fn elementwise_chain_with_broadcast() {
    // One kernel: x * s + b → relu, s and b broadcast per channel (zero
    // strides over N, H, W), the H·W dims merged into the inner loop.
    let p = compile(
        "graph t {\n  input %x: f32[2,3,4,5]\n  input %s: f32[1,3,1,1]\n  input %b: f32[3,1,1]\n  %m = mul(%x, %s)\n  %a = add(%m, %b)\n  %r = relu(%a)\n  output y = %r\n}",
    );
    insta::assert_snapshot!(render(&p));
}

#[test]
fn transpose_into_consumer() {
    // One kernel: the transpose is a strided load, no copy.
    let p = compile(
        "graph t {\n  input %x: f32[3,4]\n  input %y: f32[4,3]\n  %t = transpose(%x) {perm = [1, 0]}\n  %a = add(%t, %y)\n  output y = %a\n}",
    );
    insta::assert_snapshot!(render(&p));
}

#[test]
fn softmax_with_producer_and_consumer() {
    // One kernel with two reductions (max, then sum of exp(x - max)) over
    // the inner loop; the producer (x / t) and consumer (* t) are inside.
    let p = compile(
        "graph t {\n  input %x: f32[4,10]\n  input %t: f32[]\n  %d = div(%x, %t)\n  %s = softmax(%d) {axis = -1}\n  %m = mul(%s, %t)\n  output y = %m\n}",
    );
    insta::assert_snapshot!(render(&p));
}

#[test]
fn softmax_middle_axis() {
    // The reduced axis (1) becomes the inner loop with stride 5; axes 0 and
    // 2 are the outer loops.
    let p = compile(
        "graph t {\n  input %x: f32[2,3,5]\n  %s = softmax(%x) {axis = 1}\n  output y = %s\n}",
    );
    insta::assert_snapshot!(render(&p));
}

#[test]
fn layer_norm_with_bias() {
    // One kernel: mean and variance as two sum reductions over the last
    // axis, scale and bias loaded per column.
    let p = compile(
        "graph t {\n  input %x: f32[4,8]\n  param %ln.scale: f32[8]\n  param %ln.bias: f32[8]\n  %y = layer_norm(%x, %ln.scale, %ln.bias) {axis = -1, epsilon = 1e-5}\n  output y = %y\n}",
    );
    insta::assert_snapshot!(render(&p));
}

#[test]
fn matmul_epilogue() {
    // One matmul step; bias, relu and the residual add are its epilogue,
    // which reads the GEMM result (its anchor buffer) and writes the output.
    let p = compile(
        "graph t {\n  input %x: f32[4,8]\n  input %res: f32[4,16]\n  param %w: f32[8,16]\n  param %fc.bias: f32[16]\n  %m = matmul(%x, %w)\n  %a = add(%m, %fc.bias)\n  %r = relu(%a)\n  %s = add(%r, %res)\n  output y = %s\n}",
    );
    insta::assert_snapshot!(render(&p));
}

#[test]
fn conv_epilogue() {
    // One conv step (its bias is the conv's own); relu and the residual add
    // are the epilogue, iterating image·channel outside, pixels inside.
    let p = compile(
        "graph t {\n  input %x: f32[1,4,6,6]\n  param %c.weight: f32[4,4,3,3]\n  param %c.bias: f32[4]\n  %c = conv(%x, %c.weight, %c.bias) {pads = [1, 1, 1, 1]}\n  %r = relu(%c)\n  %a = add(%r, %x)\n  output y = %a\n}",
    );
    insta::assert_snapshot!(render(&p));
}

#[test]
fn resnet_block_steps() {
    // After -O2 (batch norms folded into the convs): two conv steps, the
    // first with relu as its epilogue, the second with the residual add
    // and relu.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/models/resnet_block.kir"
    );
    let src = std::fs::read_to_string(path).unwrap().replace("[N,", "[1,");
    let mut g = kiln_ir::parse(&src).unwrap();
    let wpath = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/models/resnet_block.safetensors"
    );
    let mut w = Weights::load(std::path::Path::new(wpath)).unwrap();
    passes::optimize("O2", &mut g, &mut w).unwrap();
    let (p, stats) = codegen::compile(&g, &w).unwrap();
    insta::assert_snapshot!(format!(
        "{}; groups fused {}, split {}\n{}",
        p.summary(),
        stats.groups_fused,
        stats.groups_split,
        render(&p)
    ));
}
