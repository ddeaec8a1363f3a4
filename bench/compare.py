#!/usr/bin/env python3
"""kiln against ONNX Runtime, side by side, in one run.

    cargo build --release
    python3 bench/compare.py [--backend cpu|ref] [--threads 1,2] [--iters N]
                             [--warmup W] [--only NAME,...] [--write BENCHMARKS.md]

For each model of bench/gen_models.py (written to bench/models/ on first use,
from a fixed seed) it:
  1. runs ONNX Runtime once and kiln once (`kiln run --output-dir`) on the same
     saved inputs and compares the outputs (max abs error; a mismatch or a
     kiln error is a loud FAIL line in the table);
  2. for each thread count t, times ORT (intra_op_num_threads=t, inter_op 1,
     ORT_ENABLE_ALL, sequential; warmup, then each of N runs timed) and
     `kiln bench MODEL --threads t --json` with the same inputs.

It prints a Markdown table (medians, the kiln/ORT latency ratio, GFLOP/s from
analytic FLOP counts, kiln's compile+JIT time and peak arena bytes) with the
machine, the ONNX Runtime version and the date. `--write FILE` replaces only
the section between `<!-- compare.py begin -->` and `<!-- compare.py end -->`
in FILE (appending the markers and section when FILE has none).
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gen_models  # noqa: E402

BEGIN = "<!-- compare.py begin -->"
END = "<!-- compare.py end -->"
# Outputs match when max|kiln - ORT| <= ATOL + RTOL * max|ORT| (over each output).
RTOL = 1e-3
ATOL = 1e-4


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def machine():
    cpu, cores = platform.processor() or "unknown CPU", os.cpu_count()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {cores} logical cores ({platform.system()} {platform.machine()})"


def git_commit():
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def ort_session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_bench(path, inputs, threads, warmup, iters):
    sess = ort_session(path, threads)
    for _ in range(warmup):
        sess.run(None, inputs)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run(None, inputs)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def input_args(spec, model_dir):
    _, in_dir = gen_models.paths(model_dir, spec.name)
    args = []
    for k in spec.inputs:
        args += ["--input", f"{k}={os.path.join(in_dir, k + '.npy')}"]
    return args


def first_error_line(p):
    lines = [ln for ln in (p.stderr or "").splitlines() if ln.strip()]
    err = [ln for ln in lines if ln.startswith("error:")]
    return (err or lines or [f"exit status {p.returncode}"])[0][:200]


def sanitize(name):
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in name)


def check(kiln, spec, model_path, model_dir, backend, threads, timeout):
    """Run kiln and ORT once on the same inputs. Returns (ok, text)."""
    sess = ort_session(model_path, 1)
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, spec.inputs)))
    out_dir = tempfile.mkdtemp(prefix=f"kiln-bench-{spec.name}-")
    try:
        cmd = [kiln, "run", model_path, "--backend", backend, "--threads", str(threads), "--output-dir", out_dir]
        cmd += input_args(spec, model_dir)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False, f"kiln run timed out after {timeout} s"
        if p.returncode != 0:
            return False, f"kiln run failed: {first_error_line(p)}"
        worst = 0.0
        for name, ref in want.items():
            f = os.path.join(out_dir, sanitize(name) + ".npy")
            if not os.path.isfile(f):
                return False, f"kiln wrote no output `{name}`"
            got = np.load(f)
            if got.shape != ref.shape:
                return False, f"output `{name}`: shape {got.shape}, ORT {ref.shape}"
            if not np.all(np.isfinite(got)):
                return False, f"output `{name}`: non-finite values"
            err = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)), initial=0.0))
            scale = float(np.max(np.abs(ref), initial=0.0))
            if err > ATOL + RTOL * scale:
                return False, f"output `{name}`: max abs error {err:.3g} (max |ORT| {scale:.3g})"
            worst = max(worst, err)
        return True, f"{worst:.1e}"
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def kiln_bench(kiln, spec, model_path, model_dir, backend, threads, warmup, iters, timeout):
    cmd = [kiln, "bench", model_path, "--backend", backend, "--threads", str(threads)]
    cmd += ["--iters", str(iters), "--warmup", str(warmup), "--json"] + input_args(spec, model_dir)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"kiln bench timed out after {timeout} s"
    if p.returncode != 0:
        return None, f"kiln bench failed: {first_error_line(p)}"
    try:
        return json.loads(p.stdout), None
    except json.JSONDecodeError:
        return None, f"kiln bench printed no JSON: {p.stdout[:200]!r}"


def gflops(flops, ms):
    g = flops / (ms * 1e6)
    return f"{g:.1f}" if g >= 1 else f"{g:.2f}"


def fmt_bytes(b):
    if b is None:
        return "–"
    return f"{b / 2**20:.1f} MiB"


def table(rows, args, backend):
    ortv = ort.__version__
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        f"**Machine:** {machine()}. **ONNX Runtime** {ortv} (CPUExecutionProvider, ORT_ENABLE_ALL, "
        f"sequential, inter-op 1). **kiln** `--backend {backend}` at commit {git_commit()}. **Date:** {date}.",
        "",
        f"Median of {args.iters} timed runs after {args.warmup} warmup runs, each side; ratio = kiln median / ORT "
        "median (below 1 means kiln is faster). GFLOP/s from analytic FLOP counts (2 per multiply-add of "
        "matmul/conv/LSTM, 5 per element for the elementwise chain). Outputs checked against ORT once per "
        f"model: max abs error, passing when ≤ {ATOL:g} + {RTOL:g}·max|ORT|.",
        "",
        f"Reproduce: `cargo build --release && python3 bench/compare.py {shlex.join(sys.argv[1:])}`. "
        f"Load average when the run began: {args.load}.",
        "",
        "| model | threads | kiln ms | ORT ms | kiln/ORT | kiln GFLOP/s | ORT GFLOP/s | compile+JIT ms | peak arena | check |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    fails = []
    for r in rows:
        spec = r["spec"]
        check_txt = r["check"] if r["ok"] else f"**FAIL**: {r['check']}"
        if not r["ok"]:
            fails.append(f"{spec.name}: {r['check']}")
        ort_ms = r["ort_ms"]
        ort_gf = gflops(spec.flops, ort_ms)
        if r["kiln"] is None:
            fails.append(f"{spec.name} ({r['threads']} threads): {r['kiln_err']}")
            out.append(
                f"| {spec.name} | {r['threads']} | **FAIL** | {ort_ms:.3f} | – | – | {ort_gf} | – | – | "
                f"{check_txt}; {r['kiln_err']} |"
            )
            continue
        k = r["kiln"]
        kms = k["median_ms"]
        out.append(
            f"| {spec.name} | {r['threads']} | {kms:.3f} | {ort_ms:.3f} | {kms / ort_ms:.2f}× | "
            f"{gflops(spec.flops, kms)} | {ort_gf} | {k['compile_ms']:.2f} | "
            f"{fmt_bytes(k.get('peak_bytes'))} | {check_txt} |"
        )
    out.append("")
    out.append("Models (bench/gen_models.py):")
    out.append("")
    seen = set()
    for r in rows:
        s = r["spec"]
        if s.name not in seen:
            seen.add(s.name)
            out.append(f"- `{s.name}`: {s.desc}; {s.flops / 1e9:.3f} GFLOP per run.")
    return "\n".join(out) + "\n", fails


def write_section(path, body):
    section = f"{BEGIN}\n{body}{END}\n"
    text = open(path).read() if os.path.exists(path) else ""
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        a = text.index(BEGIN)
        b = text.index(END) + len(END)
        if text[b : b + 1] == "\n":
            b += 1
        text = text[:a] + section + text[b:]
    else:
        text = text + ("\n" if text and not text.endswith("\n") else "") + section
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="cpu", choices=["cpu", "ref"])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--iters", type=int, default=20, help="timed runs per side (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    ap.add_argument("--only", help="comma-separated model names (default: all)")
    ap.add_argument("--skip", help="comma-separated model names to leave out")
    ap.add_argument("--write", metavar="FILE.md", help="rewrite the marked section of FILE.md")
    ap.add_argument("--kiln", default=os.path.join(ROOT, "target", "release", "kiln"))
    ap.add_argument("--models", default=os.path.join(HERE, "models"), help="model folder (default bench/models)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per kiln command (default 600)")
    ap.add_argument("--no-check", action="store_true", help="skip the output check against ORT")
    args = ap.parse_args()

    if args.iters < 1 or args.warmup < 0:
        sys.exit("error: --iters must be at least 1 and --warmup at least 0")
    try:
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        sys.exit(f"error: --threads {args.threads}: expected a comma-separated list of numbers")
    if any(t < 1 for t in threads):
        sys.exit("error: --threads: each count must be at least 1")
    names = args.only.split(",") if args.only else list(gen_models.MODELS)
    skip = set(args.skip.split(",")) if args.skip else set()
    for n in names + sorted(skip):
        if n not in gen_models.MODELS:
            sys.exit(f"error: no model `{n}` (have: {', '.join(gen_models.MODELS)})")
    names = [n for n in names if n not in skip]
    if not os.access(args.kiln, os.X_OK):
        sys.exit(f"error: {args.kiln} not found; run `cargo build --release` first")

    args.load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = []
    for name in names:
        spec = gen_models.ensure(name, args.models)
        model_path, _ = gen_models.paths(args.models, name)
        if args.no_check:
            ok, check_txt = True, "not checked"
        else:
            log(f"{name}: checking kiln ({args.backend}) against ORT")
            ok, check_txt = check(args.kiln, spec, model_path, args.models, args.backend, max(threads), args.timeout)
            if not ok:
                log(f"FAIL {name}: {check_txt}")
        for t in threads:
            log(f"{name}: {t} thread(s): ORT")
            ort_ms = ort_bench(model_path, spec.inputs, t, args.warmup, args.iters)
            log(f"{name}: {t} thread(s): kiln")
            k, err = kiln_bench(
                args.kiln, spec, model_path, args.models, args.backend, t, args.warmup, args.iters, args.timeout
            )
            if err:
                log(f"FAIL {name}: {err}")
            rows.append({"spec": spec, "threads": t, "ort_ms": ort_ms, "kiln": k, "kiln_err": err, "ok": ok,
                         "check": check_txt})

    body, fails = table(rows, args, args.backend)
    print(body)
    if fails:
        print("FAILURES:\n" + "\n".join(f"  FAIL {f}" for f in fails))
    if args.write:
        write_section(args.write, body)
        log(f"wrote the section of {args.write}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
