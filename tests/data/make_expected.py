#!/usr/bin/env python3
"""Independent expected outputs for the example models, computed with numpy.

Reads each model's committed weights (examples/models/NAME.safetensors),
draws an input with numpy's own generator, computes the model by hand in
float64, and writes NAME_x.npy and NAME_expected.npy here. The model structure
below is transcribed from the .kir files by hand; nothing here uses kiln.

    pip install numpy safetensors
    python3 tests/data/make_expected.py
"""
import os

import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "..", "examples", "models")


def conv2d(x, w, b=None, pad=0, stride=1):
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, m, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            out += np.einsum("nchw,mc->nmhw", patch, w[:, :, i, j])
    if b is not None:
        out += b[None, :, None, None]
    return out


def maxpool2(x):
    n, c, h, w = x.shape
    return x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def batchnorm(x, p, eps=1e-5):
    g, b, m, v = (p[k][None, :, None, None] for k in ("gamma", "beta", "mean", "var"))
    return g * (x - m) / np.sqrt(v + eps) + b


def relu(x):
    return np.maximum(x, 0)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def load(name):
    w = load_file(os.path.join(MODELS, name + ".safetensors"))
    return {k: v.astype(np.float64) for k, v in w.items()}


def sub(w, prefix):
    return {k[len(prefix) + 1 :]: v for k, v in w.items() if k.startswith(prefix + ".")}


def mlp(w, x):
    h = relu(x @ w["fc1.weight"] + w["fc1.bias"])
    h = relu(h @ w["fc2.weight"] + w["fc2.bias"])
    logits = h @ w["fc3.weight"] + w["fc3.bias"]
    return {"logits": logits, "probs": softmax(logits)}


def lenet5(w, x):
    h = maxpool2(relu(conv2d(x, w["conv1.weight"], w["conv1.bias"], pad=2)))
    h = maxpool2(relu(conv2d(h, w["conv2.weight"], w["conv2.bias"])))
    h = h.reshape(h.shape[0], -1)
    h = relu(h @ w["fc1.weight"] + w["fc1.bias"])
    h = relu(h @ w["fc2.weight"] + w["fc2.bias"])
    return {"logits": h @ w["fc3.weight"] + w["fc3.bias"]}


def vgg_small(w, x):
    h = x
    for s in (1, 2, 3):
        for k in (1, 2):
            h = conv2d(h, w[f"s{s}c{k}.weight"], pad=1)
            h = relu(batchnorm(h, sub(w, f"s{s}bn{k}")))
        h = maxpool2(h)
    h = h.mean(axis=(2, 3))
    return {"logits": h @ w["fc.weight"] + w["fc.bias"]}


def resnet_block(w, x):
    h = relu(batchnorm(conv2d(x, w["conv1.weight"], pad=1), sub(w, "bn1")))
    h = batchnorm(conv2d(h, w["conv2.weight"], pad=1), sub(w, "bn2"))
    return {"y": relu(h + x)}


CASES = {
    "mlp": (mlp, (3, 784)),
    "lenet5": (lenet5, (2, 1, 28, 28)),
    "vgg_small": (vgg_small, (2, 3, 32, 32)),
    "resnet_block": (resnet_block, (2, 32, 16, 16)),
}


def main():
    rng = np.random.default_rng(20261124)
    for name, (fn, shape) in CASES.items():
        x = rng.standard_normal(shape).astype(np.float32)
        outs = fn(load(name), x.astype(np.float64))
        np.save(os.path.join(HERE, f"{name}_x.npy"), x)
        for k, v in outs.items():
            np.save(os.path.join(HERE, f"{name}_expected_{k}.npy"), v.astype(np.float32))
        print(name, {k: v.shape for k, v in outs.items()})


if __name__ == "__main__":
    main()
