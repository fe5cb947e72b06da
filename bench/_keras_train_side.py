"""The Keras half of bench/keras_training_parity.py; it runs inside the throwaway venv (Keras 3 with
the backend KERAS_BACKEND names: tensorflow, or jax), never in the project's environment.

    VENV/bin/python bench/_keras_train_side.py WORKDIR OUT.pkl CASE [CASE ...]

For each CASE (defined in bench/keras_training_parity.py, imported here by path: that module needs
only NumPy at import time) it reads WORKDIR/CASE.data.pkl, builds the model with Keras
(keras.utils.set_random_seed(1234)), replaces every all-zero initial weight by small random values
(so biases take part), records the initial weights and the predictions on the evaluation data, then
compiles, trains and evaluates exactly as the gcomp side will (keras_training_parity.run_training),
and pickles {case: {"init", "pred0", "history" | "batches", "evaluate", "evaluate_dict", "final",
"error"}} to OUT.pkl. A case that raises records its traceback under "error" and the others go on.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import sys
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402


def load_cases():
    path = Path(__file__).resolve().parent / "keras_training_parity.py"
    spec = importlib.util.spec_from_file_location("keras_training_parity", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["keras_training_parity"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> int:
    workdir, out, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    import keras
    parity = load_cases()
    K = parity.namespace(keras)
    results = {}
    for name in names:
        case = parity.case_by_name(name)
        try:
            with open(workdir / f"{name}.data.pkl", "rb") as f:
                data = pickle.load(f)
            keras.utils.set_random_seed(parity.SEED)
            model = case.build(K)
            rng = np.random.default_rng(parity.SEED)
            weights = [rng.normal(0.0, 0.05, w.shape).astype(w.dtype) if not w.any() else w
                       for w in model.get_weights()]
            model.set_weights(weights)
            pred = model.predict(data["x_eval"], verbose=0)
            result = {"init": [np.asarray(w) for w in model.get_weights()],
                      "pred0": [np.asarray(p) for p in (pred if isinstance(pred, (list, tuple)) else [pred])]}
            model.compile(**case.compile_kw(K))
            result.update(parity.run_training(model, case, data, K))
            result["error"] = None
        except Exception:
            result = {"error": traceback.format_exc()}
        results[name] = result
    with open(out, "wb") as f:
        pickle.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
