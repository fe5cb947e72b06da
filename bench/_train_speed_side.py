"""One framework training one workload, for bench/train_speed.py; always its own process.

    PYTHON bench/_train_speed_side.py FRAMEWORK WORKLOAD DATA.npz OUT.json --epochs N [--backend numpy|c]

FRAMEWORK is one of
- gcomp: the project's python. examples/WORKLOAD.py run by runpy, compile(), fit(backend=...);
- keras-jax: the peers' venv, KERAS_BACKEND=jax. The same example file run against a shim package
  named `gcomp` that re-exports Keras's Input, layers and Model, so Keras builds the very model
  gcomp compiles; then the same compile() and fit() arguments;
- torch: the peers' venv. An equivalent nn.Module (below) and a plain minibatch loop.

Every framework trains 1 + N epochs over the same arrays (DATA.npz, drawn by the main script from a
fixed seed), batch size and shuffling as Keras's fit (a new permutation each epoch, last batch
smaller); the first epoch is the warm-up (JAX compiles there). Seconds per epoch are taken from
epoch begin to epoch end (a callback for gcomp and Keras, the loop itself for PyTorch), and written
to OUT.json with the framework's versions, thread counts and the last epoch's loss (a sanity check:
the three minimise the same objective, so their losses should be of one size).

This file imports only NumPy at the top level: the main script imports WORKLOADS from it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import runpy
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXAMPLES = ROOT / "examples"

# The seed's two training workloads. "inputs" and "targets" are in the model's input / output order;
# each target is ("onehot", classes) | ("binary",) | ("normal",).
WORKLOADS = {
    "qa": {
        "example": "qa_two_inputs",
        "samples": 1000, "length": 100, "batch_size": 128,
        "inputs": [("text", 10000), ("question", 10000)],       # (name, vocabulary)
        "targets": [("answer", ("onehot", 500))],
        "compile": {"optimizer": "rmsprop", "loss": "categorical_crossentropy", "metrics": ["acc"]},
    },
    "multi_output": {
        "example": "multi_output",
        "samples": 256, "length": 500, "batch_size": 64,
        "inputs": [("posts", 50000)],
        "targets": [("age", ("normal",)), ("income", ("onehot", 10)), ("gender", ("binary",))],
        "compile": {"optimizer": "rmsprop",
                    "loss": ["mse", "categorical_crossentropy", "binary_crossentropy"],
                    "loss_weights": [0.25, 1.0, 10.0]},
    },
}
# --quick: fewer samples (same lengths, so the same models) for fast iterations on the script itself.
QUICK_SAMPLES = {"qa": 256, "multi_output": 64}


def make_data(workload: str, samples: int, seed: int) -> dict[str, np.ndarray]:
    """Random inputs and targets for a workload from a fixed seed: indices in [1, vocabulary), one-hot
    classes, 0/1 labels, normal regression targets. Keys: x0, x1, ..., y0, y1, ..."""
    spec = WORKLOADS[workload]
    rng = np.random.default_rng(seed)
    data = {}
    for i, (_, vocab) in enumerate(spec["inputs"]):
        data[f"x{i}"] = rng.integers(1, vocab, size=(samples, spec["length"])).astype(np.int32)
    for i, (_, kind) in enumerate(spec["targets"]):
        if kind[0] == "onehot":
            data[f"y{i}"] = np.eye(kind[1], dtype=np.float32)[rng.integers(0, kind[1], size=samples)]
        elif kind[0] == "binary":
            data[f"y{i}"] = rng.integers(0, 2, size=(samples, 1)).astype(np.float32)
        else:
            data[f"y{i}"] = rng.normal(size=(samples, 1)).astype(np.float32)
    return data


def load_data(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(path) as f:
        xs = [f[f"x{i}"] for i in range(sum(k.startswith("x") for k in f.files))]
        ys = [f[f"y{i}"] for i in range(sum(k.startswith("y") for k in f.files))]
    return xs, ys


def keras_style(arrays: list[np.ndarray]):
    """A single array as itself, several as a list (what fit() takes for x and y)."""
    return arrays[0] if len(arrays) == 1 else arrays


def last_loss(history) -> float | None:
    values = history.history.get("loss")
    return float(values[-1]) if values else None


# ---- gcomp ----------------------------------------------------------------------------------------
def run_gcomp(workload: str, xs, ys, epochs: int, backend: str) -> dict:
    sys.path.insert(0, str(ROOT))
    import gcomp
    from gcomp.callbacks import Callback
    spec = WORKLOADS[workload]

    class EpochTimer(Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._start)

    gcomp.utils.set_random_seed(0)
    start = time.perf_counter()
    model = runpy.run_path(str(EXAMPLES / f"{spec['example']}.py"))["model"]
    model.compile(**spec["compile"])
    timer = EpochTimer()
    fit_start = time.perf_counter()
    history = model.fit(keras_style(xs), keras_style(ys), batch_size=spec["batch_size"], epochs=1 + epochs,
                        verbose=0, callbacks=[timer], backend=backend)
    total = time.perf_counter() - fit_start
    return {"epoch_s": timer.times, "fit_s": total, "build_s": fit_start - start, "loss": last_loss(history),
            "versions": {"gcomp": gcomp.__version__, "numpy": np.__version__, "python": platform.python_version()},
            "threads": blas_threads(), "backend": backend}


def blas_threads() -> str:
    """NumPy's BLAS and its thread count where threadpoolctl is installed; else the BLAS NumPy was
    built with and the thread settings in the environment."""
    try:
        from threadpoolctl import threadpool_info
        return ", ".join(f"{i.get('internal_api')} {i.get('num_threads')} threads" for i in threadpool_info())
    except ImportError:
        try:
            blas = np.__config__.CONFIG["Build Dependencies"]["blas"]["name"]
        except (AttributeError, KeyError, TypeError):
            blas = "BLAS"
        env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")
               if k in os.environ}
        return f"{blas}, default threads{f' ({env})' if env else ''}"


# ---- Keras 3 on JAX -------------------------------------------------------------------------------
SHIM_INIT = """\
# A stand-in for gcomp that is Keras itself: the example files run unchanged against Keras 3.
from keras import Input, Model, Sequential, layers, models, utils
"""
SHIM_MODELS = "from keras.models import Model, Sequential\n"


def run_keras(workload: str, xs, ys, epochs: int) -> dict:
    if os.environ.get("KERAS_BACKEND") != "jax":
        raise RuntimeError(f"KERAS_BACKEND must be jax here, got {os.environ.get('KERAS_BACKEND')!r}")
    spec = WORKLOADS[workload]
    with tempfile.TemporaryDirectory(prefix="gcomp-shim-") as shim:
        package = Path(shim) / "gcomp"
        package.mkdir()
        (package / "__init__.py").write_text(SHIM_INIT)
        (package / "models.py").write_text(SHIM_MODELS)
        sys.path.insert(0, shim)
        import jax
        import keras
        import gcomp  # the shim
        assert gcomp.layers is keras.layers, "the gcomp shim did not resolve to Keras"
        if keras.backend.backend() != "jax":
            raise RuntimeError(f"Keras runs on {keras.backend.backend()}, not jax")

        class EpochTimer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                # JAX dispatches asynchronously: wait for the epoch's metrics and the updated
                # variables (Keras's trainer has synced its state into them before this hook).
                jax.block_until_ready([v.value for v in self.model.variables])
                for value in (logs or {}).values():
                    float(value)
                self.times.append(time.perf_counter() - self._start)

        keras.utils.set_random_seed(0)
        start = time.perf_counter()
        model = runpy.run_path(str(EXAMPLES / f"{spec['example']}.py"))["model"]
        model.compile(**spec["compile"])
        timer = EpochTimer()
        fit_start = time.perf_counter()
        history = model.fit(keras_style(xs), keras_style(ys), batch_size=spec["batch_size"], epochs=1 + epochs,
                            verbose=0, callbacks=[timer])
        total = time.perf_counter() - fit_start
    devices = ", ".join(str(d) for d in jax.devices())
    return {"epoch_s": timer.times, "fit_s": total, "build_s": fit_start - start, "loss": last_loss(history),
            "versions": {"keras": keras.__version__, "jax": jax.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            "threads": f"XLA CPU ({devices}), its own thread pool"}


# ---- PyTorch --------------------------------------------------------------------------------------
def torch_model(workload: str):
    """nn.Modules equivalent to the example files (returning logits where Keras applies softmax or
    sigmoid: the losses below fold the activation in, which is the same function)."""
    import torch
    from torch import nn

    class QA(nn.Module):
        # Embedding(10000, 64) -> LSTM(32); Embedding(10000, 32) -> LSTM(16); concat -> Dense(500).
        def __init__(self):
            super().__init__()
            self.text_embedding = nn.Embedding(10000, 64)
            self.text_lstm = nn.LSTM(64, 32, batch_first=True)
            self.question_embedding = nn.Embedding(10000, 32)
            self.question_lstm = nn.LSTM(32, 16, batch_first=True)
            self.answer = nn.Linear(32 + 16, 500)

        def forward(self, text, question):
            _, (t, _) = self.text_lstm(self.text_embedding(text))       # h_n: (1, batch, 32)
            _, (q, _) = self.question_lstm(self.question_embedding(question))
            return self.answer(torch.cat([t[-1], q[-1]], dim=-1))       # logits of the softmax

    class MultiOutput(nn.Module):
        # Embedding(50000, 256) -> Conv1D(128, 5) relu -> MaxPool(5) -> Conv1D(256, 5) relu x2 -> MaxPool(5)
        # -> Conv1D(256, 5) relu x2 -> global max -> Dense(128) relu -> age, income, gender.
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(50000, 256)
            self.conv1 = nn.Conv1d(256, 128, 5)
            self.conv2 = nn.Conv1d(128, 256, 5)
            self.conv3 = nn.Conv1d(256, 256, 5)
            self.conv4 = nn.Conv1d(256, 256, 5)
            self.conv5 = nn.Conv1d(256, 256, 5)
            self.pool = nn.MaxPool1d(5)
            self.dense = nn.Linear(256, 128)
            self.age = nn.Linear(128, 1)
            self.income = nn.Linear(128, 10)
            self.gender = nn.Linear(128, 1)

        def forward(self, posts):
            relu = torch.relu
            x = self.embedding(posts).transpose(1, 2)                  # channels first: (batch, 256, len)
            x = self.pool(relu(self.conv1(x)))
            x = self.pool(relu(self.conv3(relu(self.conv2(x)))))
            x = relu(self.conv5(relu(self.conv4(x)))).amax(dim=2)     # GlobalMaxPooling1D
            x = relu(self.dense(x))
            return self.age(x), self.income(x), self.gender(x)         # income, gender: logits

    model = {"qa": QA, "multi_output": MultiOutput}[workload]()
    keras_initialization(model)
    return model


def keras_initialization(model) -> None:
    """Keras's initializers instead of PyTorch's, so that the three frameworks start alike and their
    losses can be compared: uniform(-0.05, 0.05) embeddings, glorot_uniform kernels, zero biases;
    LSTM: glorot_uniform input kernels, orthogonal recurrent kernels, forget-gate bias 1."""
    import torch
    from torch import nn
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Embedding):
                nn.init.uniform_(m.weight, -0.05, 0.05)
            elif isinstance(m, (nn.Linear, nn.Conv1d)):
                nn.init.xavier_uniform_(m.weight)  # fans as Keras's: (in [x k], out [x k])
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LSTM):
                hidden = m.hidden_size
                for name, p in m.named_parameters():
                    if name.startswith("weight_ih"):
                        nn.init.xavier_uniform_(p)
                    elif name.startswith("weight_hh"):
                        nn.init.orthogonal_(p)
                    else:  # two biases are added; PyTorch's gate order is i, f, g, o
                        nn.init.zeros_(p)
                        if name.startswith("bias_ih"):
                            p[hidden:2 * hidden] = 1.0


def torch_loss(workload: str, outputs, targets):
    """Keras's losses on the logits: categorical crossentropy of softmax(logits) against one-hot
    targets is F.cross_entropy with probability targets (log_softmax inside), binary crossentropy of
    sigmoid(logit) is binary_cross_entropy_with_logits, each averaged over the batch like Keras."""
    import torch.nn.functional as F
    if workload == "qa":
        return F.cross_entropy(outputs, targets[0])
    age, income, gender = outputs
    return (0.25 * F.mse_loss(age, targets[0]) + 1.0 * F.cross_entropy(income, targets[1])
            + 10.0 * F.binary_cross_entropy_with_logits(gender, targets[2]))


def run_torch(workload: str, xs, ys, epochs: int) -> dict:
    import torch
    spec = WORKLOADS[workload]
    torch.manual_seed(0)
    start = time.perf_counter()
    model = torch_model(workload)
    # Keras's rmsprop: learning_rate 0.001, rho 0.9, epsilon 1e-7, no momentum, not centered.
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.001, alpha=0.9, eps=1e-7)
    inputs = [torch.from_numpy(x.astype(np.int64)) for x in xs]
    targets = [torch.from_numpy(y) for y in ys]
    n, batch = len(xs[0]), spec["batch_size"]
    times, loss_value = [], None
    model.train()
    fit_start = time.perf_counter()
    for _ in range(1 + epochs):
        epoch_start = time.perf_counter()
        order = torch.randperm(n)  # shuffled each epoch, as Keras's fit
        total, correct = torch.zeros(()), torch.zeros(())
        for begin in range(0, n, batch):
            index = order[begin:begin + batch]
            outputs = model(*(x[index] for x in inputs))
            batch_targets = [y[index] for y in targets]
            loss = torch_loss(workload, outputs, batch_targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # the running loss (and accuracy for QA) that Keras's fit reports
                total += loss.detach() * len(index)
                if workload == "qa":
                    correct += (outputs.argmax(-1) == batch_targets[0].argmax(-1)).sum()
        loss_value = float(total) / n
        times.append(time.perf_counter() - epoch_start)
    total_s = time.perf_counter() - fit_start
    return {"epoch_s": times, "fit_s": total_s, "build_s": fit_start - start, "loss": loss_value,
            "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
            "threads": f"{torch.get_num_threads()} intra-op threads, {torch.get_num_interop_threads()} inter-op"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=["gcomp", "keras-jax", "torch"])
    parser.add_argument("workload", choices=list(WORKLOADS))
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--backend", default="numpy")
    args = parser.parse_args()
    xs, ys = load_data(args.data)
    try:
        if args.framework == "gcomp":
            result = run_gcomp(args.workload, xs, ys, args.epochs, args.backend)
        elif args.framework == "keras-jax":
            result = run_keras(args.workload, xs, ys, args.epochs)
        else:
            result = run_torch(args.workload, xs, ys, args.epochs)
        result["error"] = None
    except Exception:  # noqa: BLE001 -- the main script reports it
        traceback.print_exc()
        result = {"error": traceback.format_exc(limit=-3)}
    args.out.write_text(json.dumps(result))
    return 1 if result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
