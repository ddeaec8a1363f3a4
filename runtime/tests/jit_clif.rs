//! Snapshots of the CLIF the JIT generates for three representative kernels,
//! so that a change to the generated code shows up as a diff. The CLIF
//! depends only on the kernel and the options (FMA on here), not on the host.
//! Update with `INSTA_UPDATE=always` (or `cargo insta review`), and read the diff.

mod common;
use common::*;
use kiln_runtime::jit::{clif, CodegenOptions};

fn check(name: &str, k: &kiln_ir::kernel::Kernel) {
    let text = clif(k, CodegenOptions { fma: true }).unwrap();
    insta::assert_snapshot!(name, format!("{k}\n{text}"));
}

/// `x*w + b → relu → *s → tanh`: one f32x4 loop unrolled twice, a
/// one-vector loop, a scalar tail; relu is a single `maxps` pattern.
#[test]
fn elementwise_chain() {
    check("chain", &chain(1000));
}

/// Max and sum reductions in 4 accumulators, horizontal reduction,
/// then the store that uses both scalars (1/sum hoisted per row).
#[test]
fn row_softmax() {
    check("softmax", &softmax(8, 100));
}

/// A GEMM epilogue: the bias row is broadcast over the outer dim.
#[test]
fn bias_add_relu_epilogue() {
    check("bias_relu", &bias_relu(64, 128));
}
