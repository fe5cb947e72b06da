"""Compile time of deep models: `gcomp build` on residual Dense stacks of 1,000 and 2,000 layers.

    python bench/compile_time.py [--layers 1000,2000] [--repeats 3]

Each model is a chain of blocks x -> Dense -> Dense -> add(x, .) (three layers per block), written to
a model file and built with the `gcomp build` command in a fresh process, as a user would; the
time includes starting Python and importing gcomp. Prints seconds per build (best of the repeats)
and the ratio between the sizes, which should stay near the ratio of layer counts (linear cost).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL_FILE = """\
from gcomp import Input, Model, layers

x = inputs = Input(shape=(32,), name="features")
for _ in range({blocks}):
    y = layers.Dense(32, activation="relu")(x)
    y = layers.Dense(32)(y)
    x = layers.add([x, y])
model = Model(inputs, x, name="deep_{layers}")
"""


def time_build(folder: Path, layers: int, repeats: int, extra: list[str]) -> float:
    source = folder / f"deep_{layers}.py"
    source.write_text(MODEL_FILE.format(blocks=layers // 3, layers=layers))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run = subprocess.run(["gcomp", "build", str(source), "-o", str(folder / f"deep_{layers}.onnx"), *extra],
                             capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if run.returncode:
            sys.exit(f"gcomp build failed for {layers} layers: {run.stderr.strip()}")
        best = min(best, elapsed)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="1000,2000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="extra arguments for gcomp build")
    args = parser.parse_args()
    sizes = [int(n) for n in args.layers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import gcomp.cli, onnx, onnxruntime"], check=True)
        print(f"python start + imports: {time.perf_counter() - start:.2f} s")
        times = {n: time_build(Path(tmp), n, args.repeats, args.extra) for n in sizes}
    for n, t in times.items():
        print(f"{n:6d} layers: {t:.2f} s")
    if len(sizes) >= 2:
        a, b = sizes[0], sizes[-1]
        print(f"ratio {b}/{a} layers: {times[b] / times[a]:.2f}x (layer ratio {b / a:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
