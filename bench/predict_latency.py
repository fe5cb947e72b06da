"""Latency of the seed models: onnxruntime (the exported ONNX) against gcomp's NumPy backend.

    python bench/predict_latency.py [--repeats N] [--models mlp,qa_two_inputs,...] [--device auto|cpu|cuda]

Both run in this process on the same inputs, interleaved run by run, after a warm-up. onnxruntime's
idle threads do not spin (they would steal the core the NumPy run needs). Prints the median latency
of each and the ratio onnxruntime / NumPy (below 1: onnxruntime is faster).
"""
from __future__ import annotations

import argparse
import runpy
import statistics
import sys
import time
from pathlib import Path

from _seed_models import fixed_inputs

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["mlp", "qa_two_inputs", "multi_output", "inception", "residual", "siamese_lstm"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    from gcomp import runtime
    from gcomp.backends.numpy_backend import compile_graph
    print(f"{'model':15} {'batch':>5} {'onnxruntime ms':>15} {'numpy ms':>10} {'ratio':>7}  provider")
    ratios = []
    for name in args.models.split(","):
        model = runpy.run_path(str(ROOT / "examples" / f"{name}.py"))["model"]
        session = runtime.from_bytes(model.to_onnx().SerializeToString(), name, device=args.device,
                                     allow_spinning=False)
        forward, params = compile_graph(model._inference_graph()), model._param_values()
        for batch in (int(b) for b in args.batches.split(",")):
            arrays = fixed_inputs(model, name, batch)
            feeds = dict(zip(session.input_names, arrays))
            runners = {"ort": lambda: session._session.run(None, feeds), "numpy": lambda: forward(params, arrays)}
            for run in runners.values():  # warm-up
                run()
            times = {k: [] for k in runners}
            for _ in range(args.repeats):
                for key, run in runners.items():
                    start = time.perf_counter()
                    run()
                    times[key].append(time.perf_counter() - start)
            ort_ms, np_ms = (statistics.median(times[k]) * 1e3 for k in ("ort", "numpy"))
            ratios.append(ort_ms / np_ms)
            print(f"{name:15} {batch:5d} {ort_ms:15.3f} {np_ms:10.3f} {ort_ms / np_ms:7.3f}  {session.provider}")
            sys.stdout.flush()
    print(f"geometric mean ratio onnxruntime/numpy: {statistics.geometric_mean(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
