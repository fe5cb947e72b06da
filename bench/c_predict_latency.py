"""Latency of gcomp's generated C forward pass against onnxruntime (CPU), batch 1 and 64.

    python bench/c_predict_latency.py [--repeats N] [--rounds R] [--spin] [--models mlp5,mlp,...]
                                      [--batches 1,64] [--cflags "-O3 -march=native"]

Models: the seed models (examples/) and a 5-layer MLP 256-384-384-256-128-32. The C side is the
code `gcomp build --target c` writes, compiled with the given CFLAGS (and -fopenmp when the
compiler has it) into a small timing program that calls <model>_forward in a loop and reports the
median per call; onnxruntime runs the same weights (gcomp's ONNX for the CPU) in this process,
its default thread pool (one thread per core), median of session.run. Both sides use every core
and neither spins between calls: onnxruntime with session.intra_op.allow_spinning=0 (its workers
sleep between operators too: its calling thread starts each operator's work without waiting for
them), the C program with OMP_WAIT_POLICY=passive (libgomp's default spins, and on a shared machine
a spinning thread waiting for a descheduled one can cost a whole scheduler tick per parallel
region), where a forward pass large enough runs as one session whose helpers spin between the
kernels until the call returns (gk_session); --spin gives both their default spinning. The two
alternate for R rounds (so that a change in the machine's load hits both), each round a median over
N calls; printed: the median of the rounds, and the ratio C / ORT.
"""
from __future__ import annotations

import argparse
import gc
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _seed_models import fixed_inputs  # noqa: E402

HARNESS = r"""
#include "{prefix}.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {{ struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }}
static int cmp(const void *a, const void *b) {{ double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }}

int main(int argc, char **argv) {{
    int repeats = atoi(argv[1]), i, k;
    gc_tensor in[{n_in}], out[{n_out}];
    double *times = malloc(sizeof(double) * (size_t)repeats);
    {prefix}_model *m = {prefix}_create();
    if ({prefix}_load_weights(m, "weights.bin") != GC_OK) {{ fprintf(stderr, "%s\n", {prefix}_error(m)); return 1; }}
    memset(in, 0, sizeof in); memset(out, 0, sizeof out);
    for (i = 0; i < {n_in}; i++) {{
        FILE *f; char name[64]; long bytes;
        snprintf(name, sizeof name, "in%d.raw", i);
        f = fopen(name, "rb"); fseek(f, 0, SEEK_END); bytes = ftell(f); fseek(f, 0, SEEK_SET);
        in[i].data = malloc((size_t)bytes); if (fread(in[i].data, 1, (size_t)bytes, f) != (size_t)bytes) return 1; fclose(f);
    }}
{shapes}
    for (i = 0; i < {n_out}; i++) {{ out[i].capacity = 1L << 26; out[i].data = malloc(sizeof(float) << 26); }}
    for (k = 0; k < 3; k++) if ({prefix}_forward(m, in, out) != GC_OK) {{ fprintf(stderr, "%s\n", {prefix}_error(m)); return 1; }}
    for (k = 0; k < repeats; k++) {{ double t = now(); {prefix}_forward(m, in, out); times[k] = now() - t; }}
    qsort(times, (size_t)repeats, sizeof(double), cmp);
    printf("%.9f\n", times[repeats / 2]);
    return 0;
}}
"""


def mlp5():
    from gcomp import Input, Model, layers
    x = Input(shape=(256,), name="features")
    h = x
    for units in (384, 384, 256, 128):
        h = layers.Dense(units, activation="relu")(h)
    return Model(x, layers.Dense(32)(h), name="mlp5")


def build_harness(model, name, arrays, cflags, workdir: Path) -> Path:
    from gcomp.backends.c_backend import c_prefix
    from gcomp.backends.c_runtime import _openmp_flags, compiler
    from gcomp.build import build_c
    lengths = [a.shape[1] for a, t in zip(arrays, model.inputs) if len(t.shape) > 1 and t.shape[1] is None]
    folder, _ = build_c(model, workdir / name, max_batch=arrays[0].shape[0], max_len=max(lengths, default=1))
    prefix = c_prefix(model.name)
    shapes = []
    for i, a in enumerate(arrays):
        (folder / f"in{i}.raw").write_bytes(np.ascontiguousarray(a).tobytes())
        shapes.append(f"    in[{i}].ndim = {a.ndim};")
        shapes += [f"    in[{i}].shape[{d}] = {n};" for d, n in enumerate(a.shape)]
    (folder / "harness.c").write_text(HARNESS.format(prefix=prefix, n_in=len(arrays), n_out=len(model.outputs),
                                                     shapes="\n".join(shapes)))
    cc = compiler()
    flags = cflags.split() + list(_openmp_flags(cc))
    subprocess.run([cc, "-std=c99", *flags, "-D_POSIX_C_SOURCE=199309L", "-o", "harness", "harness.c",
                    f"{prefix}.c", "gcomp_kernels.c", "-lm"], cwd=folder, check=True)
    return folder


def time_c(folder: Path, repeats: int, spin: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if not spin:
        env["OMP_WAIT_POLICY"] = "passive"
    out = subprocess.run(["./harness", str(repeats)], cwd=folder, capture_output=True, text=True, check=True,
                         env=env)
    return float(out.stdout)


def time_ort(onnx: bytes, name: str, arrays, repeats: int, spin: bool) -> float:
    from gcomp import runtime
    session = runtime.from_bytes(onnx, name, device="cpu", allow_spinning=spin)
    feeds = dict(zip(session.input_names, arrays))
    for _ in range(3):
        session._session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session._session.run(None, feeds)
        times.append(time.perf_counter() - start)
    del session, feeds  # its thread pool must not compete with the next C run
    gc.collect()
    return statistics.median(times)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--models", default="mlp5,mlp,qa_two_inputs,multi_output,inception,residual,siamese_lstm")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--cflags", default="-O3 -march=native")
    parser.add_argument("--rounds", type=int, default=3, help="C and onnxruntime runs alternate this many times")
    parser.add_argument("--spin", action="store_true", help="idle threads spin (each side's default)")
    args = parser.parse_args()
    print(f"# {load()}; idle threads {'spin' if args.spin else 'sleep'}; {args.rounds} rounds", flush=True)
    print(f"{'model':15} {'batch':>5} {'C us':>12} {'onnxruntime us':>15} {'C/ort':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model = mlp5() if name == "mlp5" else runpy.run_path(str(ROOT / "examples" / f"{name}.py"))["model"]
            for batch in (int(b) for b in args.batches.split(",")):
                arrays = fixed_inputs(model, name, batch)
                repeats = args.repeats if batch == 1 or name.startswith("mlp") else max(5, args.repeats // 10)
                folder = build_harness(model, f"{name}_{batch}", arrays, args.cflags, Path(tmp))
                onnx = model.to_onnx(device="cpu").SerializeToString()
                c_runs, ort_runs = [], []
                for _ in range(max(1, args.rounds)):
                    c_runs.append(time_c(folder, repeats, args.spin))
                    ort_runs.append(time_ort(onnx, model.name, arrays, repeats, args.spin))
                c_s, ort_s = statistics.median(c_runs), statistics.median(ort_runs)
                print(f"{name:15} {batch:5d} {c_s * 1e6:12.1f} {ort_s * 1e6:15.1f} {c_s / ort_s:7.3f}", flush=True)
    print(f"# {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
