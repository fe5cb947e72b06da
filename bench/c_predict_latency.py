"""Latency of gcomp's generated C forward pass against onnxruntime (CPU), batch 1 and 64.

    python bench/c_predict_latency.py [--repeats N] [--models mlp5,mlp,qa_two_inputs,...] [--cflags "-O3 -march=native"]

Models: the seed models (examples/) and a 5-layer MLP 256-384-384-256-128-32. The C side is the
code `gcomp build --target c` writes, compiled with the given CFLAGS (and -fopenmp when the
compiler has it) into a small timing program that calls <model>_forward in a loop and reports the
median per call; onnxruntime runs the same weights (gcomp's ONNX for the CPU) in this process,
one thread pool, spinning off, median of session.run. Prints both and the ratio C / onnxruntime.
"""
from __future__ import annotations

import argparse
import gc
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


def time_c(model, name, arrays, repeats, cflags, workdir: Path) -> float:
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
    out = subprocess.run(["./harness", str(repeats)], cwd=folder, capture_output=True, text=True, check=True)
    return float(out.stdout)


def time_ort(model, arrays, repeats) -> float:
    from gcomp import runtime
    session = runtime.from_bytes(model.to_onnx(device="cpu").SerializeToString(), model.name, device="cpu",
                                 allow_spinning=False)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--models", default="mlp5,mlp,qa_two_inputs,multi_output,inception,residual,siamese_lstm")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--cflags", default="-O3 -march=native")
    args = parser.parse_args()
    print(f"{'model':15} {'batch':>5} {'C us':>12} {'onnxruntime us':>15} {'C/ort':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model = mlp5() if name == "mlp5" else runpy.run_path(str(ROOT / "examples" / f"{name}.py"))["model"]
            for batch in (int(b) for b in args.batches.split(",")):
                arrays = fixed_inputs(model, name, batch)
                repeats = args.repeats if batch == 1 or name.startswith("mlp") else max(5, args.repeats // 10)
                c_s = time_c(model, f"{name}_{batch}", arrays, repeats, args.cflags, Path(tmp))
                ort_s = time_ort(model, arrays, repeats)
                print(f"{name:15} {batch:5d} {c_s * 1e6:12.1f} {ort_s * 1e6:15.1f} {c_s / ort_s:7.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
