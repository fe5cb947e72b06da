"""gcomp's ONNX against Keras's own ONNX export (tf2onnx), both run by onnxruntime on the CPU.

    python bench/ort_vs_keras_export.py [--repeats N] [--models mlp,residual,...] [--venv DIR] [--opt-level N]

What it measures, for each seed model in examples/ (mlp, qa_two_inputs, multi_output, inception,
residual, siamese_lstm), at batch 64. gcomp's passes target --device (cpu by default: the timing
runs on the CPU) at --opt-level (gcomp's default unless given), where its Model.to_onnx takes them.

1. Keras side, in a throwaway venv (default /tmp/gcomp-bench-keras-venv, created on first use with
   tensorflow-cpu, keras 3, tf2onnx, onnx and numpy; the project's environment is left alone):
   bench/_keras_side.py runs the example file itself against a shim `gcomp` package that is Keras,
   gives Keras's zero-initialised biases small random values (tf2onnx drops a zero bias Add, which
   would flatter Keras's node counts; --keep-zero-biases keeps them), saves `get_weights()`,
   Keras's predictions on fixed random inputs, and `model.export(path, format="onnx")`.
2. gcomp side, in this process: the same example file compiled by gcomp, `set_weights()` with
   Keras's arrays unchanged (gcomp promises Keras's order and layouts), exported to ONNX.
3. Both files in onnxruntime's CPU provider, one process, identical session options (all graph
   optimizations, `session.intra_op.allow_spinning` = "0"): gcomp's outputs against Keras's
   predictions (max |diff|; a match is max |diff| <= 1e-4 x max |Keras output|), node counts of each
   file (subgraphs included; "conv/mm" counts Conv, ConvTranspose, MatMul and Gemm nodes), then a
   warm-up and `--repeats` interleaved runs (keras, gcomp; gcomp, keras; ...) and median latencies;
   a sub-millisecond model is looped within each timed sample. "(IQR)" is the interquartile range of
   the per-repetition ratios, the machine's noise: a ratio within it of 1.00 is no difference.

It prints a row per model and the targets: geometric mean of gcomp/keras <= 0.90, every ratio
<= 1.00, no more nodes than Keras's file, outputs matching. Missing a target still exits 0 (this is a
report); the exit status is non-zero only when something failed to run.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _seed_models import fixed_inputs

ROOT = Path(__file__).resolve().parent.parent
KERAS_SIDE = Path(__file__).resolve().parent / "_keras_side.py"
DEFAULT_VENV = Path("/tmp/gcomp-bench-keras-venv")
# Installed unpinned: tensorflow-cpu 2.21.0, keras 3.15.1, tf2onnx 1.17.0, onnx 1.23.2 and numpy 2.4.6
# export these models without trouble. Pin here (e.g. "tf2onnx==1.17.0") if a later release breaks.
REQUIREMENTS = ["tensorflow-cpu", "keras", "tf2onnx", "onnx", "numpy"]
VERSIONED = ["tensorflow-cpu", "keras", "tf2onnx", "onnx", "numpy", "protobuf"]
MODELS = ["mlp", "qa_two_inputs", "multi_output", "inception", "residual", "siamese_lstm"]
BATCH = 64
MATCH_RTOL = 1e-4
HEAVY_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
GEOMEAN_TARGET = 0.90
PRODUCED = (".inputs.npz", ".weights.npz", ".keras_pred.npz", ".keras.onnx", ".gcomp.onnx", ".keras_error.txt")
SAMPLE_S = 0.005  # a timed sample of a tiny model loops it for about this long


class BenchError(RuntimeError):
    """Something the benchmark needs failed to run (as opposed to a target being missed)."""


# ---- the venv -------------------------------------------------------------------------------------
def ensure_venv(venv: Path) -> Path:
    """The venv's python, creating the venv and installing REQUIREMENTS on first use. A marker file
    records a finished install of exactly these requirements, so a later run skips pip."""
    python = venv / "bin" / "python"
    if ROOT in venv.resolve().parents or venv.resolve() == ROOT:
        raise BenchError(f"--venv {venv} is inside the repository; use a throwaway path such as {DEFAULT_VENV}")
    marker = venv / ".gcomp-bench-requirements"
    if python.exists() and marker.exists() and marker.read_text().split() == REQUIREMENTS:
        print(f"reusing venv {venv}", flush=True)
        return python
    if not python.exists():
        print(f"creating venv {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {' '.join(REQUIREMENTS)} into {venv} (several minutes the first time)", flush=True)
    log_path = venv / "pip-install.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(python), "-m", "pip", "install", *REQUIREMENTS], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:  # progress: a line per package (the versions in full), all in the log
            log.write(line)
            if line.startswith(("Successfully", "ERROR")):
                print(f"  pip: {line.rstrip()}", flush=True)
            elif line.startswith(("Collecting", "Processing", "Downloading", "Installing")):
                print(f"  pip: {line.rstrip()[:120]}", flush=True)
        if proc.wait() != 0:
            raise BenchError(f"pip install failed in {venv}; see {log_path}")
    marker.write_text("\n".join(REQUIREMENTS) + "\n")
    return python


def venv_versions(python: Path) -> dict[str, str]:
    """The installed versions of the venv's main packages (and protobuf, which tf2onnx is picky about)."""
    code = ("import importlib.metadata as m, json\n"
            f"print(json.dumps({{p: m.version(p) for p in {VERSIONED!r}}}))")
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


# TensorFlow's C++ start-up lines, which no environment variable silences any more.
TF_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "W0000 ",
            "To enable the following instructions:")


def run_filtered(command: list[str], cwd: Path) -> int:
    """Run the Keras side, echoing its output and errors without TensorFlow's start-up noise."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"})
    for line in proc.stdout:
        if not line.startswith(TF_NOISE):
            print(line, end="", flush=True)
    return proc.wait()


# ---- the models -------------------------------------------------------------------------------------
def load_gcomp_model(name: str):
    """The module-level `model` of examples/NAME.py, built by gcomp."""
    return runpy.run_path(str(ROOT / "examples" / f"{name}.py"))["model"]


def gcomp_export_kwargs(opt_level: int | None, device: str) -> dict:
    """Arguments for gcomp's Model.to_onnx, as far as this gcomp takes them: opt_level when asked for
    (an error if gcomp has none; else gcomp's default) and the device to optimize for (the timing
    runs on the CPU, so "cpu" by default)."""
    from gcomp.frontend.model import Model
    params = inspect.signature(Model.to_onnx).parameters
    kwargs = {}
    if opt_level is not None:
        if "opt_level" not in params:
            raise BenchError("--opt-level given, but this gcomp's Model.to_onnx takes no opt_level")
        kwargs["opt_level"] = opt_level
    if "device" in params:
        kwargs["device"] = device
    return kwargs


def npz_list(path: Path) -> list[np.ndarray]:
    """The arrays of an .npz written by np.savez(path, *arrays), in order."""
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


# ---- measuring ------------------------------------------------------------------------------------
def op_counts(proto) -> Counter:
    """How many nodes of each op type an ONNX model has, nodes of subgraphs (Loop, If) included."""
    import onnx
    counts = Counter()
    stack = [proto.graph]
    while stack:
        graph = stack.pop()
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    stack.append(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(attr.graphs)
    return counts


def max_diff(outputs: list[np.ndarray], reference: list[np.ndarray]) -> tuple[float, bool]:
    """max |out - ref| over all outputs (in order), and whether every output is within
    MATCH_RTOL x max |ref| of its reference."""
    if len(outputs) != len(reference):
        raise BenchError(f"{len(outputs)} outputs against {len(reference)} of Keras")
    worst, ok = 0.0, True
    for out, ref in zip(outputs, reference):
        if out.shape != ref.shape:
            raise BenchError(f"output shape {out.shape} against Keras's {ref.shape}")
        diff = float(np.max(np.abs(out.astype(np.float64) - ref))) if ref.size else 0.0
        worst = max(worst, diff)
        ok &= diff <= MATCH_RTOL * max(float(np.max(np.abs(ref))), 1e-6)
    return worst, ok


def cpu_session(path: Path):
    """onnxruntime on the CPU provider; both files get exactly these options."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds_for(session, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs by position (Keras's file names unnamed inputs its own way), cast to the file's dtypes."""
    infos = session.get_inputs()
    if len(infos) != len(arrays):
        raise BenchError(f"the file takes {len(infos)} inputs, the model {len(arrays)}")
    dtypes = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64}
    return {i.name: a.astype(dtypes.get(i.type, a.dtype)) for i, a in zip(infos, arrays)}


def time_interleaved(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, list[float]]:
    """Seconds per run of each callable, one sample per repetition. After the warm-up, each repetition
    times the callables in turn, alternating which goes first; a sample of a sub-millisecond model
    loops it (the same count for all) so that it lasts about SAMPLE_S and the timer's cost vanishes."""
    single = {}
    for _ in range(warmup):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            single[key] = time.perf_counter() - start
    loops = max(1, min(1000, int(SAMPLE_S / max(min(single.values()), 1e-7))))
    keys = list(runs)
    times = {k: [] for k in keys}
    for i in range(repeats):
        for key in keys if i % 2 == 0 else keys[::-1]:
            run = runs[key]
            start = time.perf_counter()
            for _ in range(loops):
                run()
            times[key].append((time.perf_counter() - start) / loops)
    return times


def bench_model(name: str, workdir: Path, model, inputs, export_kwargs: dict, repeats: int) -> dict:
    """One model: set Keras's weights into gcomp's model, export, compare, count, time."""
    import onnx
    weights = npz_list(workdir / f"{name}.weights.npz")
    ours = [tuple(w.shape) for w in model.get_weights()]
    theirs = [tuple(w.shape) for w in weights]
    if ours != theirs:
        raise BenchError(f"weight shapes differ: gcomp {ours}, Keras {theirs}")
    model.set_weights(weights)
    gcomp_path = workdir / f"{name}.gcomp.onnx"
    gcomp_path.write_bytes(model.to_onnx(**export_kwargs).SerializeToString())
    keras_path = workdir / f"{name}.keras.onnx"

    reference = npz_list(workdir / f"{name}.keras_pred.npz")
    sessions = {"keras": cpu_session(keras_path), "gcomp": cpu_session(gcomp_path)}
    feeds = {k: feeds_for(s, inputs) for k, s in sessions.items()}
    outputs = {k: s.run(None, feeds[k]) for k, s in sessions.items()}
    diff, match = max_diff(outputs["gcomp"], reference)
    keras_file_diff, keras_file_match = max_diff(outputs["keras"], reference)

    times = time_interleaved({k: (lambda s=s, f=feeds[k]: s.run(None, f)) for k, s in sessions.items()},
                             repeats)
    medians = {k: statistics.median(v) for k, v in times.items()}
    # Noise: the spread (interquartile range) of the per-repetition ratios gcomp/keras.
    paired = [g / k for g, k in zip(times["gcomp"], times["keras"])]
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
    ops = {k: op_counts(onnx.load(str(p))) for k, p in (("keras", keras_path), ("gcomp", gcomp_path))}
    nodes = {k: (c.total(), sum(c[op] for op in HEAVY_OPS)) for k, c in ops.items()}
    return {"keras_ms": medians["keras"] * 1e3, "gcomp_ms": medians["gcomp"] * 1e3,
            "ratio": medians["gcomp"] / medians["keras"], "spread": quartiles[2] - quartiles[0],
            "nodes": nodes, "ops": ops, "diff": diff, "match": match,
            "keras_file_diff": keras_file_diff, "keras_file_match": keras_file_match}


# ---- the report -----------------------------------------------------------------------------------
def git_revision() -> str:
    """The commit gcomp is at, and whether gcomp/ has uncommitted changes (they are what runs)."""
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "gcomp"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (gcomp/ modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def print_report(results: dict[str, dict], failures: dict[str, str], show_ops: bool = False) -> None:
    """The table, one row per model, then the targets."""
    header = (f"{'model':14} {'keras ms':>9} {'gcomp ms':>9} {'ratio':>6} {'(IQR)':>7}  {'nodes k/g':>9}  "
              f"{'conv/mm k/g':>11}  {'max|diff|':>9}  match")
    print("\n" + header + "\n" + "-" * len(header))
    for name, r in results.items():
        (kn, kh), (gn, gh) = r["nodes"]["keras"], r["nodes"]["gcomp"]
        spread, nodes, heavy = f"({r['spread']:.3f})", f"{kn}/{gn}", f"{kh}/{gh}"
        print(f"{name:14} {r['keras_ms']:9.3f} {r['gcomp_ms']:9.3f} {r['ratio']:6.3f} {spread:>7}  {nodes:>9}  "
              f"{heavy:>11}  {r['diff']:9.2e}  {'yes' if r['match'] else 'NO'}")
    for name, why in failures.items():
        print(f"{name:14} FAILED: {why}")
    for name, r in results.items():
        if show_ops:
            for side in ("keras", "gcomp"):
                listed = ", ".join(f"{op} {n}" for op, n in sorted(r["ops"][side].items()))
                print(f"ops: {name} {side}: {listed}")
        if not r["keras_file_match"]:
            print(f"note: {name}: Keras's own ONNX file differs from Keras's predictions by "
                  f"{r['keras_file_diff']:.2e}")
    if not results:
        return

    ratios = {n: r["ratio"] for n, r in results.items()}
    geomean = statistics.geometric_mean(ratios.values())
    slower = [n for n, x in ratios.items() if x > 1.0]
    bigger = [n for n, r in results.items() if r["nodes"]["gcomp"][0] > r["nodes"]["keras"][0]]
    mismatched = [n for n, r in results.items() if not r["match"]]

    def verdict(ok: bool, detail: str = "") -> str:
        return "PASS" if ok else f"MISS{f' ({detail})' if detail else ''}"

    print(f"\ngeometric mean ratio gcomp/keras: {geomean:.3f}")
    print(f"targets{' (over the models that ran)' if failures else ''}:")
    print(f"  geomean <= {GEOMEAN_TARGET:.2f}:         {verdict(geomean <= GEOMEAN_TARGET, f'{geomean:.3f}')}")
    print(f"  every ratio <= 1.00:     {verdict(not slower, ', '.join(slower))}")
    print(f"  node counts no larger:   {verdict(not bigger, ', '.join(bigger))}")
    print(f"  outputs match Keras:     {verdict(not mismatched, ', '.join(mismatched))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs of each file (default 20)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: all six)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"Keras venv (default {DEFAULT_VENV})")
    parser.add_argument("--opt-level", type=int, default=None,
                        help="passed to gcomp's Model.to_onnx as opt_level (default: gcomp's default)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="the device gcomp optimizes for, where its to_onnx takes one (default cpu)")
    parser.add_argument("--show-ops", action="store_true", help="also print each file's op types")
    parser.add_argument("--keep-zero-biases", action="store_true",
                        help="keep Keras's zero-initialised biases (tf2onnx then drops their Adds)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep weights, predictions and both ONNX files here (default: a temp dir)")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if not (ROOT / "examples" / f"{m}.py").is_file()]
    if unknown or args.repeats < 1:
        parser.error(f"no example file for {unknown}" if unknown else "--repeats must be at least 1")

    try:
        export_kwargs = gcomp_export_kwargs(args.opt_level, args.device)
        python = ensure_venv(args.venv)
        versions = venv_versions(python)
    except (BenchError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    import onnxruntime
    import gcomp
    print("keras venv: " + ", ".join(f"{p} {v}" for p, v in versions.items()))
    print(f"gcomp {gcomp.__version__} at {git_revision()}, export arguments {export_kwargs or 'default'}; "
          f"onnxruntime {onnxruntime.__version__}, CPU provider, batch {BATCH}, {args.repeats} repeats, "
          f"{os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory(prefix="gcomp-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        # gcomp builds each model first: it fixes the inputs (Embedding limits come from gcomp's graph).
        gcomp_models, failures = {}, {}
        for name in models:
            for stale in workdir.glob(f"{name}.*"):  # a kept --workdir: no file from an earlier run counts
                if stale.name.endswith(PRODUCED):
                    stale.unlink()
            try:
                gcomp_models[name] = load_gcomp_model(name)
                inputs = fixed_inputs(gcomp_models[name], name, BATCH)
                np.savez(workdir / f"{name}.inputs.npz", *inputs)
            except Exception as e:  # noqa: BLE001 -- report and go on with the other models
                traceback.print_exc()
                failures[name] = f"gcomp could not build it: {type(e).__name__}: {e}"
        keras_models = [m for m in models if m in gcomp_models]

        print(f"\nKeras side ({python}):", flush=True)
        command = [str(python), str(KERAS_SIDE), str(workdir), str(ROOT / "examples"), *keras_models]
        if args.keep_zero_biases:
            command.append("--keep-zero-biases")
        if keras_models and run_filtered(command, workdir) != 0:
            print("(the Keras side reported failures; see above)", flush=True)

        results = {}
        for name in keras_models:
            if (workdir / f"{name}.keras_error.txt").exists() or not (workdir / f"{name}.keras.onnx").exists():
                failures[name] = "the Keras side failed (traceback above)"
                continue
            print(f"timing {name} ...", flush=True)
            try:
                inputs = npz_list(workdir / f"{name}.inputs.npz")
                results[name] = bench_model(name, workdir, gcomp_models[name], inputs, export_kwargs, args.repeats)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                failures[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        print_report(results, failures, args.show_ops)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
