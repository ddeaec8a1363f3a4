#!/usr/bin/env python3
"""The benchmark models of bench/compare.py, written with onnx.helper.

    python3 bench/gen_models.py [--out bench/models] [--only NAME,...] [--force]

Each model NAME becomes OUT/NAME.onnx (opset 17, static shapes, float32,
weights as initializers) and OUT/NAME/INPUT.npy (its inputs). Everything is
drawn from a fixed seed, so the files are the same on every machine.

`MODELS` maps each name to a builder returning a `Spec`: the model, its
inputs, and its analytic FLOP count (see `flops` below) for the GFLOP/s columns.
"""
import argparse
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
SEED = 20240517


@dataclass
class Spec:
    name: str
    model: onnx.ModelProto
    inputs: dict  # input name -> np.ndarray
    flops: float  # analytic FLOPs of one run
    desc: str


@dataclass
class G:
    """A tiny graph builder: initializers, nodes, fresh names, FLOP count.

    FLOPs: 2 per multiply-add of matmul/Gemm/conv/LSTM gate products, plus 1
    per element for each elementwise op of the elementwise-chain model. Batch
    norm, pooling, softmax, layer norm and activations elsewhere are not
    counted: they are a few percent of the total for every other model.
    """

    rng: np.random.Generator
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    flops: float = 0.0
    n: int = 0

    def fresh(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def init(self, base, arr):
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def init_i64(self, base, vals):
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(vals, dtype=np.int64), name))
        return name

    def uniform(self, shape, bound):
        return self.rng.uniform(-bound, bound, size=shape).astype(np.float32)

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0] if n_out == 1 else outs

    # Layers -----------------------------------------------------------------

    def gemm(self, x, batch, fin, fout):
        """torch.nn.Linear as exported: Gemm(x, W[out,in]^T) + b."""
        b = 1 / math.sqrt(fin)
        w = self.init("fc_w", self.uniform((fout, fin), b))
        bias = self.init("fc_b", self.uniform((fout,), b))
        self.flops += 2 * batch * fin * fout
        return self.op("Gemm", [x, w, bias], transB=1)

    def matmul_bias(self, x, rows, fin, fout):
        b = 1 / math.sqrt(fin)
        w = self.init("mm_w", self.uniform((fin, fout), b))
        bias = self.init("mm_b", self.uniform((fout,), b))
        self.flops += 2 * rows * fin * fout
        return self.op("Add", [self.op("MatMul", [x, w]), bias])

    def conv(self, x, n, cin, cout, hw_out, k, stride=1, pad=0, bias=True):
        b = 1 / math.sqrt(cin * k * k)
        w = self.init("conv_w", self.uniform((cout, cin, k, k), b))
        ins = [x, w]
        if bias:
            ins.append(self.init("conv_b", self.uniform((cout,), b)))
        self.flops += 2 * n * cout * hw_out * hw_out * cin * k * k
        return self.op("Conv", ins, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def bn(self, x, c):
        """BatchNormalization in inference form (running statistics)."""
        scale = self.init("bn_scale", self.rng.uniform(0.8, 1.2, c))
        beta = self.init("bn_beta", self.rng.uniform(-0.1, 0.1, c))
        mean = self.init("bn_mean", self.rng.uniform(-0.2, 0.2, c))
        var = self.init("bn_var", self.rng.uniform(0.5, 1.5, c))
        return self.op("BatchNormalization", [x, scale, beta, mean, var], epsilon=1e-5)

    def relu(self, x):
        return self.op("Relu", [x])

    def maxpool(self, x, k, s, pad=0):
        return self.op("MaxPool", [x], kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4)

    def finish(self, name, inputs, outputs):
        """inputs/outputs: [(graph name, internal name or None, shape)]."""
        for gname, internal, _ in outputs:
            self.nodes.append(helper.make_node("Identity", [internal], [gname]))
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, _, s in inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, _, s in outputs],
            initializer=self.inits,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kiln-bench")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def x_input(rng, shape):
    return rng.uniform(-1, 1, size=shape).astype(np.float32)


# Models ---------------------------------------------------------------------


def mlp(batch):
    def build(rng):
        g = G(rng)
        h = g.relu(g.gemm("x", batch, 784, 512))
        h = g.relu(g.gemm(h, batch, 512, 256))
        y = g.gemm(h, batch, 256, 10)
        m = g.finish(f"mlp_b{batch}", [("x", None, [batch, 784])], [("y", y, [batch, 10])])
        return m, {"x": x_input(rng, (batch, 784))}, g.flops

    return build, f"MLP 784-512-256-10 (Gemm+Relu), batch {batch}"


def lenet5(rng, batch=64):
    g = G(rng)
    h = g.maxpool(g.relu(g.conv("x", batch, 1, 6, 28, 5, pad=2)), 2, 2)  # 6x14x14
    h = g.maxpool(g.relu(g.conv(h, batch, 6, 16, 10, 5)), 2, 2)  # 16x5x5
    h = g.op("Flatten", [h], axis=1)
    h = g.relu(g.gemm(h, batch, 400, 120))
    h = g.relu(g.gemm(h, batch, 120, 84))
    y = g.gemm(h, batch, 84, 10)
    m = g.finish("lenet5", [("x", None, [batch, 1, 28, 28])], [("y", y, [batch, 10])])
    return m, {"x": x_input(rng, (batch, 1, 28, 28))}, g.flops


def vgg(rng, batch=16):
    g = G(rng)
    h, c, hw = "x", 3, 32
    for cout in (32, 64, 128):
        for _ in range(2):
            h = g.relu(g.bn(g.conv(h, batch, c, cout, hw, 3, pad=1, bias=False), cout))
            c = cout
        h = g.maxpool(h, 2, 2)
        hw //= 2
    h = g.op("Flatten", [h], axis=1)  # 128*4*4 = 2048
    h = g.relu(g.gemm(h, batch, c * hw * hw, 256))
    y = g.gemm(h, batch, 256, 10)
    m = g.finish("vgg_bn", [("x", None, [batch, 3, 32, 32])], [("y", y, [batch, 10])])
    return m, {"x": x_input(rng, (batch, 3, 32, 32))}, g.flops


def resnet18(rng, batch=1):
    """torchvision's resnet18 topology: BasicBlocks [2,2,2,2], random weights."""
    g = G(rng)
    h = g.relu(g.bn(g.conv("x", batch, 3, 64, 112, 7, stride=2, pad=3, bias=False), 64))
    h = g.maxpool(h, 3, 2, pad=1)  # 64x56x56
    c, hw = 64, 56
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for blk in range(2):
            s = stride if blk == 0 else 1
            out_hw = hw // s
            y = g.relu(g.bn(g.conv(h, batch, c, cout, out_hw, 3, stride=s, pad=1, bias=False), cout))
            y = g.bn(g.conv(y, batch, cout, cout, out_hw, 3, pad=1, bias=False), cout)
            if s != 1 or c != cout:
                short = g.bn(g.conv(h, batch, c, cout, out_hw, 1, stride=s, bias=False), cout)
            else:
                short = h
            h = g.relu(g.op("Add", [y, short]))
            c, hw = cout, out_hw
    h = g.op("Flatten", [g.op("GlobalAveragePool", [h])], axis=1)
    y = g.gemm(h, batch, 512, 1000)
    m = g.finish("resnet18", [("x", None, [batch, 3, 224, 224])], [("y", y, [batch, 1000])])
    return m, {"x": x_input(rng, (batch, 3, 224, 224))}, g.flops


def lstm(rng, seq=32, batch=8, inp=256, hidden=256):
    g = G(rng)
    b = 1 / math.sqrt(hidden)
    w = g.init("lstm_W", g.uniform((1, 4 * hidden, inp), b))
    r = g.init("lstm_R", g.uniform((1, 4 * hidden, hidden), b))
    bias = g.init("lstm_B", g.uniform((1, 8 * hidden), b))
    y, y_h, _ = g.op("LSTM", ["x", w, r, bias], n_out=3, hidden_size=hidden)
    g.flops += 2 * seq * batch * 4 * hidden * (inp + hidden)
    m = g.finish(
        "lstm",
        [("x", None, [seq, batch, inp])],
        [("y", y, [seq, 1, batch, hidden]), ("y_h", y_h, [1, batch, hidden])],
    )
    return m, {"x": x_input(rng, (seq, batch, inp))}, g.flops


def transformer(rng, batch=1, seq=128, d=256, heads=4, ffn=1024):
    """A post-norm encoder block (torch.nn.TransformerEncoderLayer's default
    form): x = LN(x + MHA(x)); x = LN(x + W2 gelu(W1 x)). GELU is written with
    Erf, as exporters do before opset 20."""
    g = G(rng)
    dh = d // heads
    rows = batch * seq

    def ln(x):
        scale = g.init("ln_scale", rng.uniform(0.8, 1.2, d))
        bias = g.init("ln_bias", rng.uniform(-0.1, 0.1, d))
        return g.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=1e-5)

    split = g.init_i64("shape_heads", [batch, seq, heads, dh])
    merge = g.init_i64("shape_merge", [batch, seq, d])

    def heads_of(x, perm):
        return g.op("Transpose", [g.op("Reshape", [x, split])], perm=perm)

    q = heads_of(g.matmul_bias("x", rows, d, d), [0, 2, 1, 3])  # b,h,s,dh
    k = heads_of(g.matmul_bias("x", rows, d, d), [0, 2, 3, 1])  # b,h,dh,s
    v = heads_of(g.matmul_bias("x", rows, d, d), [0, 2, 1, 3])
    scores = g.op("Mul", [g.op("MatMul", [q, k]), g.init("inv_sqrt_dh", np.float32(1 / math.sqrt(dh)))])
    g.flops += 2 * batch * heads * seq * seq * dh
    att = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])  # b,h,s,dh
    g.flops += 2 * batch * heads * seq * seq * dh
    att = g.op("Reshape", [g.op("Transpose", [att], perm=[0, 2, 1, 3]), merge])
    h = ln(g.op("Add", ["x", g.matmul_bias(att, rows, d, d)]))
    f = g.matmul_bias(h, rows, d, ffn)
    erf = g.op("Erf", [g.op("Mul", [f, g.init("inv_sqrt2", np.float32(1 / math.sqrt(2)))])])
    gelu = g.op("Mul", [g.op("Mul", [f, g.init("half", np.float32(0.5))]), g.op("Add", [erf, g.init("one", np.float32(1))])])
    y = ln(g.op("Add", [h, g.matmul_bias(gelu, rows, ffn, d)]))
    m = g.finish("transformer", [("x", None, [batch, seq, d])], [("y", y, [batch, seq, d])])
    return m, {"x": x_input(rng, (batch, seq, d))}, g.flops


def matmul(m_, k, n):
    def build(rng):
        g = G(rng)
        b = g.init("B", g.uniform((k, n), 1 / math.sqrt(k)))
        y = g.op("MatMul", ["a", b])
        g.flops += 2 * m_ * k * n
        m = g.finish(f"matmul_{m_}x{k}x{n}", [("a", None, [m_, k])], [("y", y, [m_, n])])
        return m, {"a": x_input(rng, (m_, k))}, g.flops

    return build


def eltwise(rng, rows=1024, cols=4096):
    """y = tanh(relu(x*w + b) * s): w, b full-size initializers, s a scalar."""
    g = G(rng)
    w = g.init("w", rng.uniform(-1, 1, (rows, cols)))
    b = g.init("b", rng.uniform(-0.5, 0.5, (rows, cols)))
    s = g.init("s", np.float32(0.75))
    h = g.op("Mul", [g.op("Relu", [g.op("Add", [g.op("Mul", ["x", w]), b])]), s])
    y = g.op("Tanh", [h])
    g.flops += 5 * rows * cols
    m = g.finish("eltwise", [("x", None, [rows, cols])], [("y", y, [rows, cols])])
    return m, {"x": x_input(rng, (rows, cols))}, g.flops


MODELS = {
    "mlp_b1": mlp(1),
    "mlp_b64": mlp(64),
    "lenet5_b64": (lenet5, "LeNet-5 (conv5x5/relu/maxpool, Gemm), 1x28x28, batch 64"),
    "vgg_bn_b16": (vgg, "VGG-style: 6 conv3x3+BatchNorm+relu, 3 maxpool, 2 Gemm; 3x32x32, batch 16"),
    "resnet18_b1": (resnet18, "ResNet-18 (torchvision topology, BN in inference form), 3x224x224, batch 1"),
    "lstm": (lstm, "LSTM op: seq 32, batch 8, input 256, hidden 256"),
    "transformer": (transformer, "encoder block: d=256, 4 heads, seq 128, FFN 1024 (GELU via Erf), batch 1"),
    "gemm256": (matmul(256, 256, 256), "MatMul 256x256 by a 256x256 initializer"),
    "gemm1024": (matmul(1024, 1024, 1024), "MatMul 1024x1024 by a 1024x1024 initializer"),
    "gemv4096": (matmul(1, 4096, 4096), "MatMul 1x4096 by a 4096x4096 initializer"),
    "eltwise4m": (eltwise, "tanh(relu(x*w+b)*s), 1024x4096 = 4M elements, w and b full-size"),
}


def build(name):
    fn, desc = MODELS[name]
    # One seed per model (not one stream for all), so adding a model changes no other.
    seed = SEED + sum(ord(c) * 31**i for i, c in enumerate(name)) % 1_000_003
    m, inputs, flops = fn(np.random.default_rng(seed))
    return Spec(name, m, inputs, float(flops), desc)


def paths(out, name):
    return os.path.join(out, f"{name}.onnx"), os.path.join(out, name)


def write(spec, out):
    model_path, in_dir = paths(out, spec.name)
    os.makedirs(in_dir, exist_ok=True)
    onnx.save(spec.model, model_path)
    for k, v in spec.inputs.items():
        np.save(os.path.join(in_dir, f"{k}.npy"), v)


def ensure(name, out, force=False):
    """Write NAME's files unless they exist. Returns the Spec (the model proto
    is rebuilt each time, which is cheap and deterministic)."""
    spec = build(name)
    model_path, in_dir = paths(out, name)
    have = os.path.isfile(model_path) and all(os.path.isfile(os.path.join(in_dir, f"{k}.npy")) for k in spec.inputs)
    if force or not have:
        write(spec, out)
    return spec


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "models"))
    ap.add_argument("--only", help="comma-separated model names (default: all)")
    ap.add_argument("--force", action="store_true", help="rewrite files that exist")
    a = ap.parse_args()
    names = a.only.split(",") if a.only else list(MODELS)
    for n in names:
        if n not in MODELS:
            sys.exit(f"error: no model `{n}` (have: {', '.join(MODELS)})")
    for n in names:
        spec = ensure(n, a.out, a.force)
        print(f"{n:<12} {spec.flops / 1e9:8.3f} GFLOP  {spec.desc}")


if __name__ == "__main__":
    main()
