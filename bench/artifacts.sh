#!/bin/sh
# Artifact size and load time for the benchmark models (BENCHMARKS.md, "Artifacts").
#   sh bench/artifacts.sh [RUNS]      (from the repository root)
# Generates the models if needed, compiles each with `kiln compile` (-O2,
# --target cpu) into bench/out/, and prints one Markdown row per artifact:
# medians over RUNS loads (default 15) of reading and decoding the file as
# Session::load does (checksums, graph parse, kernels, plan, weights streamed
# into their tensors), preparing the executor (weight packing, JIT, thread
# pool), and the total, all in one process.
set -e
RUNS=${1:-15}
[ -d bench/models ] || python3 bench/gen_models.py
cargo build --release -q
cargo build --release -q -p kiln-runtime --example artifact_load
mkdir -p bench/out
set --
for m in mlp_b64 lenet5_b64 vgg_bn_b16 resnet18_b1 lstm transformer gemm1024 gemv4096 eltwise4m; do
  ./target/release/kiln compile bench/models/$m.onnx -o bench/out/$m.kiln >/dev/null 2>&1
  set -- "$@" bench/out/$m.kiln
done
./target/release/examples/artifact_load --runs "$RUNS" "$@"
