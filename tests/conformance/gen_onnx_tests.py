#!/usr/bin/env python3
"""Regenerate the ONNX backend test data kiln's conformance tests read.

    pip install onnx==1.23.2 numpy
    python3 tests/conformance/gen_onnx_tests.py OUT_DIR
    export KILN_ONNX_TESTS=OUT_DIR

Writes OUT_DIR/node/<test>/ from onnx's own test-case generators, copies the
suites that ship inside the onnx wheel (pytorch-converted, pytorch-operator,
simple), and writes INDEX.tsv (suite, test, ops, opset, input dtypes, data sets).
"""
import os
import shutil
import sys

import onnx
from onnx import numpy_helper
from onnx.backend.test.case.node import collect_testcases


def write_case(dst, model, data_sets):
    os.makedirs(dst, exist_ok=True)
    onnx.save(model, os.path.join(dst, "model.onnx"))
    for i, (inputs, outputs) in enumerate(data_sets):
        d = os.path.join(dst, f"test_data_set_{i}")
        os.makedirs(d, exist_ok=True)
        for prefix, tensors, infos in (("input", inputs, model.graph.input), ("output", outputs, model.graph.output)):
            for k, t in enumerate(tensors):
                name = infos[k].name if k < len(infos) else ""
                proto = numpy_helper.from_array(t, name)
                with open(os.path.join(d, f"{prefix}_{k}.pb"), "wb") as f:
                    f.write(proto.SerializeToString())


def index_row(suite, name, path):
    m = onnx.load(os.path.join(path, "model.onnx"))
    ops = []
    for n in m.graph.node:
        op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
        if op not in ops:
            ops.append(op)
    opset = ",".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in m.opset_import)
    inits = {t.name for t in m.graph.initializer}
    dtypes = ",".join(
        onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type).name
        if i.type.HasField("tensor_type") else "other"
        for i in m.graph.input if i.name not in inits
    )
    sets = len([d for d in os.listdir(path) if d.startswith("test_data_set_")])
    return f"{suite}\t{name}\t{' '.join(ops)}\t{opset}\t{dtypes}\t{sets}"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    rows = []
    for case in collect_testcases():
        if case.model is None:
            continue
        dst = os.path.join(out, "node", case.name)
        write_case(dst, case.model, case.data_sets)
    data = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    for suite in ("pytorch-converted", "pytorch-operator", "simple"):
        src = os.path.join(data, suite)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(out, suite), dirs_exist_ok=True)
    for suite in sorted(os.listdir(out)):
        sd = os.path.join(out, suite)
        if not os.path.isdir(sd):
            continue
        for name in sorted(os.listdir(sd)):
            if os.path.isfile(os.path.join(sd, name, "model.onnx")):
                rows.append(index_row(suite, name, os.path.join(sd, name)))
    with open(os.path.join(out, "INDEX.tsv"), "w") as f:
        f.write("suite\ttest\tops\topset\tinput_dtypes\tdata_sets\n")
        f.write("\n".join(rows) + "\n")
    print(f"wrote {len(rows)} tests to {out}")


if __name__ == "__main__":
    main()
