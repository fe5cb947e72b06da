"""The Keras half of bench/ort_vs_keras_export.py; it runs inside the throwaway venv (Keras 3 on
TensorFlow, tf2onnx), never in the project's environment.

    VENV/bin/python bench/_keras_side.py WORKDIR EXAMPLES_DIR MODEL [MODEL ...]

For each MODEL it runs examples/MODEL.py with a shim package named `gcomp` that re-exports Keras's
Input, layers, Model and Sequential, so the model is defined by the very file gcomp compiles. Then it

- gives every weight that Keras initialised to all zeros (Dense and Conv biases; an LSTM's bias
  holds its unit forget bias and stays) small random values, unless --keep-zero-biases: trained
  models have non-zero biases, and tf2onnx drops an Add of a zero constant, which would make
  Keras's file smaller than any real model's;
- writes WORKDIR/MODEL.weights.npz: `get_weights()` in order (arr_0, arr_1, ...);
- reads WORKDIR/MODEL.inputs.npz (the main process's fixed inputs, in model input order) and writes
  Keras's predictions to WORKDIR/MODEL.keras_pred.npz (outputs in model output order);
- exports WORKDIR/MODEL.keras.onnx with `model.export(path, format="onnx")` (tf2onnx); the model has
  been called by predict(), which the export requires.
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys
import tempfile
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import warnings  # noqa: E402

import numpy as np  # noqa: E402

# Known, harmless: mlp.py's Sequential passes input_shape= (the seed's style), and Keras's patch of
# tf2onnx for NumPy 2 probes np.object.
warnings.filterwarnings("ignore", message="Do not pass an `input_shape`", category=UserWarning)
warnings.filterwarnings("ignore", message="In the future `np.object`", category=FutureWarning)

SHIM_INIT = """\
# A stand-in for gcomp that is Keras itself: the example files run unchanged against Keras 3.
from keras import Input, Model, Sequential, layers, models
"""
SHIM_MODELS = "from keras.models import Model, Sequential\n"


def install_shim(directory: Path) -> None:
    """Write a package `gcomp` (gcomp, gcomp.models) that re-exports Keras, first on sys.path."""
    package = directory / "gcomp"
    package.mkdir()
    (package / "__init__.py").write_text(SHIM_INIT)
    (package / "models.py").write_text(SHIM_MODELS)
    sys.path.insert(0, str(directory))


def as_list(outputs) -> list[np.ndarray]:
    """predict()'s result as a list of arrays in model output order."""
    if isinstance(outputs, dict):
        raise TypeError("dict outputs are not used by the seed models")
    return [np.asarray(o) for o in outputs] if isinstance(outputs, (list, tuple)) else [np.asarray(outputs)]


def run_model(keras, name: str, args) -> None:
    """Build one example with Keras; write its weights, predictions and ONNX export to workdir."""
    keras.utils.set_random_seed(args.seed)  # same Keras initial weights run to run
    model = runpy.run_path(str(args.examples / f"{name}.py"))["model"]

    weights = model.get_weights()
    if not args.keep_zero_biases:
        rng = np.random.default_rng(args.seed)
        weights = [rng.normal(0.0, 0.05, w.shape).astype(w.dtype) if not w.any() else w
                   for w in weights]
        model.set_weights(weights)
    np.savez(args.workdir / f"{name}.weights.npz", *weights)

    with np.load(args.workdir / f"{name}.inputs.npz") as f:
        inputs = [f[f"arr_{i}"] for i in range(len(f.files))]
    if len(inputs) != len(model.inputs):
        raise ValueError(f"{name}: Keras model has {len(model.inputs)} inputs, got {len(inputs)} arrays")
    x = inputs if len(inputs) > 1 else inputs[0]
    predictions = as_list(model.predict(x, batch_size=inputs[0].shape[0], verbose=0))
    np.savez(args.workdir / f"{name}.keras_pred.npz", *predictions)

    model.export(str(args.workdir / f"{name}.keras.onnx"), format="onnx", verbose=False)
    print(f"  {name}: {len(weights)} weight arrays, {model.count_params():,} params, "
          f"outputs {[p.shape for p in predictions]}, exported", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("examples", type=Path)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--keep-zero-biases", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gcomp-shim-") as shim:
        install_shim(Path(shim))
        import keras
        import tensorflow as tf
        tf.get_logger().setLevel("ERROR")  # predict() on one model after another: retracing warnings
        import gcomp  # the shim
        assert gcomp.layers is keras.layers, "the gcomp shim did not resolve to Keras"
        print(f"keras {keras.__version__}, backend {keras.backend.backend()}", flush=True)

        failed = 0
        for name in args.models:
            try:
                run_model(keras, name, args)
            except Exception:  # report it, go on with the other models; the main process skips it
                failed += 1
                message = traceback.format_exc()
                print(f"  {name}: FAILED\n{message}", file=sys.stderr, flush=True)
                (args.workdir / f"{name}.keras_error.txt").write_text(message)
            keras.backend.clear_session()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
