"""Training speed of the seed's two workloads: gcomp against Keras 3 on JAX and PyTorch, on the CPU.

    python bench/train_speed.py [--epochs N] [--workloads qa,multi_output] [--backend numpy|c]
                                [--frameworks gcomp,keras-jax,torch] [--skip-peers] [--venv DIR] [--quick]

What it measures: seconds per training epoch (median of --epochs measured epochs, after one warm-up
epoch that is not counted: JAX compiles there) of

1. qa: examples/qa_two_inputs.py (text and question of length 100, vocabularies 10,000, Embedding
   64/32, LSTM 32/16, concatenate, Dense 500 softmax) on 1,000 samples, batch 128, rmsprop,
   categorical_crossentropy, metrics ["acc"];
2. multi_output: examples/multi_output.py (posts of length 500, vocabulary 50,000, Embedding 256,
   Conv1D/MaxPooling1D stack, GlobalMaxPooling1D, Dense 128, outputs age, income, gender) on 256
   samples, batch 64, rmsprop, losses mse / categorical_crossentropy / binary_crossentropy with
   loss_weights [0.25, 1, 10];

by each framework, each in its own subprocess (their thread pools must not fight), one after another,
all on the same random arrays (drawn here from --seed and handed over as .npz):

- gcomp: the project's python (sys.executable); the example file via runpy, compile(), then
  fit(backend=--backend) with an epoch-timing callback;
- keras-jax: Keras 3 with KERAS_BACKEND=jax, in a throwaway venv (default /tmp/gcomp-bench-train-venv,
  created on first use with `pip install "jax[cpu]" keras` and `pip install torch==2.13.0`; never the
  project's environment). The same example file runs against a shim package named `gcomp` that
  re-exports Keras, so Keras trains the very model gcomp compiles, with the same compile()/fit()
  arguments and the same callback;
- torch: PyTorch (CPU build) in the same venv: an equivalent nn.Module (Embedding, LSTM
  batch_first, Conv1d channels-first, MaxPool1d, amax for the global max, Linear), with Keras's
  losses written on logits (softmax + categorical crossentropy = cross_entropy with probability
  targets; sigmoid + binary crossentropy = binary_cross_entropy_with_logits) and
  torch.optim.RMSprop(lr=0.001, alpha=0.9, eps=1e-7), Keras's rmsprop; a plain loop over shuffled
  minibatches, timed around each epoch.

The details of each side are in bench/_train_speed_side.py, the venv in bench/_train_speed_venv.py.
It prints the machine's load average first (the timings mean something only on an otherwise idle
machine), the versions that ran, a row per workload and framework, then the ratio gcomp / best peer
per workload and whether the target holds: gcomp no slower than the best peer (ratio <= 1.00) on
both workloads. A missed target still exits 0 (this is a report); the exit status is non-zero only
when something failed to run. --quick shrinks the sample counts (same models and lengths) to try
the script itself; its numbers are not the benchmark.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _train_speed_side import QUICK_SAMPLES, WORKLOADS, make_data  # noqa: E402
from _train_speed_venv import DEFAULT_VENV, VenvError, ensure_venv, venv_versions  # noqa: E402

SIDE = HERE / "_train_speed_side.py"
FRAMEWORKS = ["gcomp", "keras-jax", "torch"]
PEERS = ["keras-jax", "torch"]
TARGET = 1.0
# Lines the peers print at start-up that say nothing about the measurement.
NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "W0000 ")


def git_revision() -> str:
    """The commit gcomp is at, and whether gcomp/ or templates/ have uncommitted changes."""
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "gcomp", "templates"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (gcomp/ or templates/ modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} CPUs"


def run_side(python: Path, framework: str, workload: str, data: Path, out: Path, args) -> dict:
    """One framework on one workload in a fresh process; its result dict (with "error" set on failure)."""
    command = [str(python), str(SIDE), framework, workload, str(data), str(out), "--epochs", str(args.epochs),
               "--backend", args.backend]
    env = dict(os.environ)
    if framework == "keras-jax":
        env.update(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    except OSError as e:
        return {"error": f"could not start {python}: {e}"}
    lines = []
    for line in proc.stdout:
        if not line.startswith(NOISE):
            lines.append(line)
            print(f"    | {line}", end="", flush=True)
    try:
        rc = proc.wait(timeout=max(1.0, args.timeout - (time.perf_counter() - start)))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return {"error": f"timed out after {args.timeout:.0f} s"}
    if not out.exists():
        return {"error": f"exited with status {rc} and wrote no result" + (f": {lines[-1].strip()}" if lines else "")}
    result = json.loads(out.read_text())
    if rc != 0 and not result.get("error"):
        result["error"] = f"exited with status {rc}"
    if not result.get("error"):
        epochs = result.get("epoch_s", [])
        if len(epochs) != 1 + args.epochs:
            result["error"] = f"timed {len(epochs)} epochs, expected {1 + args.epochs}"
        else:
            measured = epochs[1:]
            result["median_s"] = statistics.median(measured)
            result["min_s"], result["max_s"] = min(measured), max(measured)
            result["warmup_s"] = epochs[0]
    return result


def label(framework: str, backend: str) -> str:
    return f"gcomp/{backend}" if framework == "gcomp" else framework


def print_report(workloads: list[str], frameworks: list[str], results: dict, args) -> bool:
    """The table and the target; returns whether everything ran."""
    header = (f"{'workload':13} {'framework':11} {'s/epoch':>8} {'min':>8} {'max':>8} {'warm-up s':>9} "
              f"{'build s':>8} {'loss':>9}")
    print("\n" + header + "\n" + "-" * len(header))
    ok = True
    for workload in workloads:
        for framework in frameworks:
            r = results[(workload, framework)]
            name = label(framework, args.backend)
            if r.get("error"):
                ok = False
                first = r["error"].strip().splitlines()[-1] if r["error"].strip() else "failed"
                print(f"{workload:13} {name:11} FAILED: {first}")
                continue
            loss = f"{r['loss']:9.4f}" if r.get("loss") is not None else f"{'-':>9}"
            print(f"{workload:13} {name:11} {r['median_s']:8.3f} {r['min_s']:8.3f} {r['max_s']:8.3f} "
                  f"{r['warmup_s']:9.3f} {r['build_s']:8.2f} {loss}")

    peers = [f for f in frameworks if f in PEERS]
    if "gcomp" not in frameworks or not peers:
        print("\n(no ratio: it needs gcomp and at least one peer; --skip-peers times gcomp alone)")
        return ok
    print(f"\n{'workload':13} {'gcomp s':>8} {'best peer':>20} {'gcomp/best':>10}  target <= {TARGET:.2f}")
    verdicts = {}
    for workload in workloads:
        ours = results[(workload, "gcomp")]
        ran = {p: results[(workload, p)] for p in peers if not results[(workload, p)].get("error")}
        if ours.get("error") or not ran:
            verdicts[workload] = None
            print(f"{workload:13} {'(gcomp failed)' if ours.get('error') else '(no peer ran)'}")
            continue
        best = min(ran, key=lambda p: ran[p]["median_s"])
        ratio = ours["median_s"] / ran[best]["median_s"]
        verdicts[workload] = ratio
        missing = [p for p in peers if p not in ran]
        note = f"  (best of the peers that ran; {', '.join(missing)} failed)" if missing else ""
        best_text = f"{best} {ran[best]['median_s']:.3f}"
        print(f"{workload:13} {ours['median_s']:8.3f} {best_text:>20} {ratio:10.2f}  "
              f"{'PASS' if ratio <= TARGET else 'MISS'}{note}")
    judged = {w: r for w, r in verdicts.items() if r is not None}
    every = set(workloads) == set(WORKLOADS) and len(judged) == len(WORKLOADS)
    misses = [f"{w} {r:.2f}x" for w, r in judged.items() if r > TARGET]
    if not judged:
        print("target (gcomp <= 1.00x the best peer on both workloads): not judged (nothing to compare)")
    elif misses:
        print(f"target (gcomp <= 1.00x the best peer on both workloads): MISS ({', '.join(misses)})")
    elif every:
        print("target (gcomp <= 1.00x the best peer on both workloads): PASS")
    else:
        print(f"target (gcomp <= 1.00x the best peer on both workloads): not judged (only {', '.join(judged)} "
              f"compared; no miss there)")
    if args.quick:
        print("(--quick: reduced sample counts; these are not the benchmark's numbers)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs after the warm-up (default 3)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, of {', '.join(WORKLOADS)}")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help=f"comma-separated, of {', '.join(FRAMEWORKS)}")
    parser.add_argument("--skip-peers", action="store_true", help="time gcomp only (no venv needed)")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "c"], help="gcomp's fit(backend=...)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"the peers' venv (default {DEFAULT_VENV})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random data (default 0)")
    parser.add_argument("--quick", action="store_true",
                        help=f"fewer samples ({', '.join(f'{w} {n}' for w, n in QUICK_SAMPLES.items())}) to try the script")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per framework and workload (default 3600)")
    args = parser.parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    frameworks = [f for f in args.frameworks.split(",") if f]
    if args.skip_peers:
        frameworks = ["gcomp"]
    unknown = [w for w in workloads if w not in WORKLOADS] + [f for f in frameworks if f not in FRAMEWORKS]
    if unknown or not workloads or not frameworks:
        parser.error(f"unknown {', '.join(unknown)}" if unknown else "no workload or no framework")
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    frameworks = [f for f in FRAMEWORKS if f in frameworks]  # a fixed order: gcomp, keras-jax, torch

    print(load_line() + "; timings are only meaningful on an otherwise idle machine", flush=True)
    import numpy as np
    import gcomp
    print(f"gcomp {gcomp.__version__} at {git_revision()}, backend {args.backend}; python {sys.version.split()[0]}, "
          f"numpy {np.__version__} ({sys.executable})", flush=True)
    pythons = {"gcomp": Path(sys.executable)}
    if any(f in PEERS for f in frameworks):
        try:
            venv_python = ensure_venv(args.venv)
            versions = venv_versions(venv_python)
        except (VenvError, subprocess.CalledProcessError, OSError) as e:
            print(f"error: the peers' venv: {e}", file=sys.stderr)
            return 1
        print("peers' venv: " + ", ".join(f"{p} {v}" for p, v in versions.items()), flush=True)
        pythons.update({p: venv_python for p in PEERS})

    results = {}
    with tempfile.TemporaryDirectory(prefix="gcomp-train-speed-") as tmp:
        for workload in workloads:
            spec = WORKLOADS[workload]
            samples = QUICK_SAMPLES[workload] if args.quick else spec["samples"]
            data = Path(tmp) / f"{workload}.npz"
            np.savez(data, **make_data(workload, samples, args.seed))
            print(f"\n{workload}: {samples} samples of length {spec['length']}, batch {spec['batch_size']}, "
                  f"1 warm-up + {args.epochs} measured epochs", flush=True)
            for framework in frameworks:
                print(f"  {label(framework, args.backend)} ... ({load_line()})", flush=True)
                out = Path(tmp) / f"{workload}.{framework}.json"
                r = results[(workload, framework)] = run_side(pythons[framework], framework, workload, data, out, args)
                if r.get("error"):  # a traceback has been echoed above; its last line again here
                    print(f"  {label(framework, args.backend)} FAILED: {r['error'].strip().splitlines()[-1]}",
                          flush=True)
                else:
                    detail = ", ".join(f"{k} {v}" for k, v in r["versions"].items())
                    print(f"  {label(framework, args.backend)}: epochs {', '.join(f'{t:.3f}' for t in r['epoch_s'])} s "
                          f"({detail}; {r['threads']})", flush=True)
    ok = print_report(workloads, frameworks, results, args)
    print(load_line() + " at the end")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
