"""One training step (forward, backward, Adam update) of the MLP
784-512-256-10 at batch 64, softmax cross-entropy: kiln's compiled training
step (`kiln train --bench`) against PyTorch eager on the CPU, at 1 and 2
threads, in the same run.

    cargo build --release
    python3 bench/train_step.py --write BENCHMARKS.md

Each engine runs ROUNDS rounds of STEPS steps per thread count, alternating
between the two, and reports the median step time of all rounds (kiln's
rounds are separate processes with `--threads N`; torch's run in this
process under `torch.set_num_threads(N)`). The section of BENCHMARKS.md
between `<!-- train_step.py begin -->` and `<!-- train_step.py end -->` is
replaced.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILN = os.path.join(ROOT, "target", "release", "kiln")
MODEL = os.path.join(ROOT, "examples", "models", "mlp.kir")
BATCH = 64


def kiln_round(threads, steps):
    out = subprocess.run(
        [KILN, "train", MODEL, "--bench", str(steps), "--batch", str(BATCH),
         "--optimizer", "adam", "--lr", "1e-3", "--threads", str(threads), "--json"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def torch_setup():
    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(BATCH, 784) * 2 - 1
    y = torch.arange(BATCH) % 10
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return torch, step


def torch_round(torch, step, threads, steps):
    torch.set_num_threads(threads)
    for _ in range(5):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--write", help="BENCHMARKS.md to update")
    a = ap.parse_args()
    if not os.path.exists(KILN):
        sys.exit("build kiln first: cargo build --release")
    try:
        torch, step = torch_setup()
        torch_version = torch.__version__
    except ImportError:
        torch, step, torch_version = None, None, None
    rows = []
    for threads in (1, 2):
        k_meds, t_times = [], []
        for _ in range(a.rounds):
            k_meds.append(kiln_round(threads, a.steps)["median_ms"])
            if torch:
                t_times.extend(torch_round(torch, step, threads, a.steps))
        k = statistics.median(k_meds)
        t = statistics.median(t_times) if torch else None
        rows.append((threads, k, t))
        print(f"{threads} thread(s): kiln {k:.3f} ms"
              + (f", torch {t:.3f} ms, kiln/torch {k / t:.2f}" if t else ", torch not installed"))
    plan = kiln_round(1, 1)["plan"]
    lines = [
        "| threads | kiln (ms/step) | PyTorch eager (ms/step) | kiln / PyTorch |",
        "|---:|---:|---:|---:|",
    ]
    for threads, k, t in rows:
        if t:
            lines.append(f"| {threads} | {k:.3f} | {t:.3f} | {k / t:.2f} |")
        else:
            lines.append(f"| {threads} | {k:.3f} | (torch not installed) | |")
    body = "\n".join([
        "",
        f"MLP 784-512-256-10, batch 64, softmax cross-entropy, Adam (lr 1e-3): "
        f"one step = forward, backward and update. Medians of {a.rounds} rounds "
        f"× {a.steps} steps after 5 warm-up steps; PyTorch {torch_version or 'absent'} "
        f"eager (`zero_grad`, forward, `backward`, `Adam.step`), kiln's training step "
        f"compiled once (`kiln train --bench`; plan: {plan}). "
        f"{platform.machine()}, {os.cpu_count()} logical CPUs (shared with other jobs).",
        "",
        *lines,
        "",
    ])
    print(body)
    if a.write:
        with open(a.write) as f:
            text = f.read()
        begin, end = "<!-- train_step.py begin -->", "<!-- train_step.py end -->"
        section = f"{begin}\n{body}\n{end}"
        if begin in text and end in text:
            pre, rest = text.split(begin, 1)
            post = rest.split(end, 1)[1]
            text = pre + section + post
        else:
            text = (text.rstrip("\n") + "\n\n## Training step: kiln against PyTorch\n\n"
                    "`python3 bench/train_step.py --write BENCHMARKS.md` (see bench/train_step.py).\n\n"
                    + section + "\n")
        with open(a.write, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
