"""gcomp's training (compile / fit / evaluate / train_on_batch) against Keras 3 itself.

    python bench/keras_training_parity.py [--cases a,b,...] [--backends tensorflow,jax] [--venv DIR]
                                          [--workdir DIR] [--verbose] [--gcomp-backend numpy|c]
                                          [--random N [--seed S]]

--random N adds N random cases random_S ... random_<S+N-1> (bench/_random_cases.py): each crosses a
random model with random heads, losses, metrics, optimizer options and fit() arguments, drawn from
its seed on both sides, and is compared as the others are.

For every case below, the same model source runs twice: once against Keras (in the throwaway venv,
default /tmp/gcomp-bench-keras-venv, via bench/_keras_train_side.py; Keras 3 + TensorFlow, and JAX as
a second opinion when the venv has it) and once against gcomp in this process. `build(K)` and
`compile_kw(K)` receive a namespace K with Input, layers, Model, Sequential, losses and optimizers
taken from `keras` or from `gcomp`, so both models come from one piece of code.

1. This process draws the data of each case (fixed seeds) and pickles it into the work directory.
2. The Keras side builds the model (keras.utils.set_random_seed(1234)), gives every all-zero weight
   (biases) small random values so they take part, saves the initial weights, its predictions on the
   evaluation data, then compile(), fit(shuffle=False, verbose=0) (or train_on_batch / test_on_batch
   for the "tob" cases), evaluate() (list and return_dict=True) and the final weights.
3. gcomp builds the same model, set_weights() with Keras's initial arrays (Keras's order and
   layouts), checks its predictions against Keras's (column pred0: forward pass only), then trains
   with the same arguments and is compared:

   - hist: History keys must be identical; max relative difference over every value of every key
     (|g - k| / max(|k|, 1e-6)); PASS needs <= HIST_RTOL.
   - eval: evaluate()'s list (same length) and its return_dict keys; max relative difference.
   - w abs / w rel: max |g - k| over the final weights, and that divided by max |k| of the same
     array (the worst array); PASS needs w rel <= WEIGHT_RTOL. "moved" is max |final - initial| of
     Keras's weights, so a tiny weight difference means something.

Known differences of one Keras backend from the other and from Keras's own formulas; a case marked
with `expect=` shows "DIFF(<reason>)" instead of FAIL on the backend its tag names ("tf-" or "jax-")
when all its problems are numeric ones (keys, forms and orders always FAIL):

- tf-logits: a softmax/sigmoid output saturates (a probability beyond [1e-7, 1 - 1e-7]). TF computes
  crossentropy from the logits it stashes on the activation's output (`_keras_logits`), so nothing is
  clipped: the loss is not capped at -log(1e-7) and the gradient does not vanish. JAX (and gcomp)
  clip the probabilities as the Keras formula says. Without saturation the two agree to float
  rounding (every other case).
- tf-sparse: an Embedding's gradient is a tf.IndexedSlices with one row per occurrence of a token;
  RMSprop and Adam square it row by row before the rows of a repeated token are summed, so their
  second-moment slots get sum(g_i^2) instead of (sum g_i)^2. SGD is linear in g and agrees
  (qa_list_sgd). JAX and gcomp use the dense gradient.
- tf-output-loss: with several outputs, Keras's per-output loss trackers (`<output>_loss`) are updated
  with sample_weight = y_pred.shape[0], which is None inside tf.function, so on TF each batch counts
  once (an unweighted mean of batch losses) while `loss` is weighted by batch size; with a short last
  batch the per-output losses no longer add up to `loss`. JAX and gcomp weight every tracker by batch
  size (multi_output_sgd_dicts uses equal batches and agrees on TF too).
- jax-l1-zero: an L1 penalty on a weight holding exact zeros (an LSTM bias with unit_forget_bias
  keeps its i, c and o parts at 0). JAX differentiates |w| at 0 as +1 (select(w >= 0, 1, -1)), TF as
  sign(0) = 0; gcomp takes TF's (and PyTorch's) subgradient 0, so such a weight is not pushed off 0.

Seen once, not tagged: Keras on JAX reported evaluate() of `activity_regularizers` without part of
its activity penalty (1.807 against 1.928; the History's val_loss and the weights agreed) when that
case ran after regularizers, regularizers_multi_output and regularizers_loss_scale in one Keras
process. Alone, after any two of those, in the full run and on TensorFlow, Keras gives 1.928,
gcomp's value.

Prints one row per case and backend. The exit status is 0 whatever the comparison says; it is
non-zero only when something failed to run (the Keras side could not start, or a case raised on
either side: those rows say ERROR, with the traceback after the table).
"""
from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KERAS_SIDE = HERE / "_keras_train_side.py"
DEFAULT_VENV = Path("/tmp/gcomp-bench-keras-venv")
HIST_RTOL = 1e-5
EVAL_RTOL = 1e-5
WEIGHT_RTOL = 1e-4
PRED_RTOL = 1e-5
SEED = 1234


# ---- the cases ------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    group: str
    build: Callable[[Any], Any]           # K -> model
    compile_kw: Callable[[Any], dict]     # K -> compile() kwargs
    data: Callable[[np.random.Generator], dict]   # x, y, x_eval, y_eval, [sample_weight, class_weight, validation_data, batches]
    fit_kw: dict = field(default_factory=dict)
    mode: str = "fit"                     # "fit" or "tob" (train_on_batch / test_on_batch)
    expect: str = ""                      # known Keras-backend differences (see the module doc)
    may_refuse: bool = False              # gcomp may refuse the compile() arguments with a clear error
    callbacks: Callable[[Any], list] | None = None   # K -> fit()'s callbacks


def _onehot(labels, n):
    return np.eye(n, dtype=np.float32)[labels]


def _mlp_data(n=70, d=8, classes=3, scale=1.0):
    def data(rng):
        x = (rng.normal(size=(n, d)) * scale).astype(np.float32)
        labels = rng.integers(0, classes, size=n)
        xe = (rng.normal(size=(20, d)) * scale).astype(np.float32)
        le = rng.integers(0, classes, size=20)
        return {"x": x, "y": _onehot(labels, classes), "x_eval": xe, "y_eval": _onehot(le, classes),
                "labels": labels, "labels_eval": le}
    return data


def _mlp(K, classes=3, out_activation="softmax", d=8, dropout=None, frozen=False, sequential=False):
    if sequential:
        model = K.Sequential([K.Input(shape=(d,)), K.layers.Dense(16, activation="relu", name="hidden"),
                              K.layers.Dense(classes, activation=out_activation, name="out")])
        return model
    inp = K.Input(shape=(d,), name="x")
    h = K.layers.Dense(16, activation="relu", name="hidden")(inp)
    if dropout is not None:
        h = K.layers.Dropout(dropout, name="drop")(h)
    h2 = K.layers.Dense(12, activation="tanh", name="hidden2")(h)
    out = K.layers.Dense(classes, activation=out_activation, name="out")(h2)
    model = K.Model(inp, out)
    if frozen:
        model.get_layer("hidden").trainable = False
    return model


def _shallow(K, classes=3, d=8):
    """Dense relu -> Dense softmax: with inputs scaled up, the logits grow without bound (no tanh)."""
    inp = K.Input(shape=(d,), name="x")
    h = K.layers.Dense(16, activation="relu", name="hidden")(inp)
    return K.Model(inp, K.layers.Dense(classes, activation="softmax", name="out")(h))


def _cce_compile(opt):
    return lambda K: {"optimizer": opt(K), "loss": "categorical_crossentropy", "metrics": ["acc"]}


MLP_FIT = {"batch_size": 16, "epochs": 3}

OPTIMIZER_CASES = {
    "sgd": lambda K: K.optimizers.SGD(learning_rate=0.05),
    "sgd_nesterov": lambda K: K.optimizers.SGD(learning_rate=0.02, momentum=0.9, nesterov=True),
    "rmsprop": lambda K: K.optimizers.RMSprop(),
    "rmsprop_centered_mom": lambda K: K.optimizers.RMSprop(learning_rate=0.003, centered=True, momentum=0.5),
    "adam": lambda K: K.optimizers.Adam(learning_rate=0.01),
    "adam_amsgrad": lambda K: K.optimizers.Adam(learning_rate=0.01, amsgrad=True),
    "adamw": lambda K: K.optimizers.AdamW(learning_rate=0.01, weight_decay=0.05),
    "adagrad": lambda K: K.optimizers.Adagrad(learning_rate=0.05),
}


def _qa(K):
    text = K.Input(shape=(None,), dtype="int32", name="text")
    question = K.Input(shape=(None,), dtype="int32", name="question")
    t = K.layers.LSTM(8)(K.layers.Embedding(50, 16)(text))
    q = K.layers.LSTM(4)(K.layers.Embedding(50, 8)(question))
    answer = K.layers.Dense(20, activation="softmax")(K.layers.concatenate([t, q], axis=-1))
    return K.Model([text, question], answer)


def _qa_data(as_dict):
    def data(rng):
        def draw(n):
            text = rng.integers(1, 50, size=(n, 12)).astype(np.int32)
            question = rng.integers(1, 50, size=(n, 12)).astype(np.int32)
            ans = _onehot(rng.integers(0, 20, size=n), 20)
            x = {"text": text, "question": question} if as_dict else [text, question]
            return x, ans
        x, y = draw(40)
        xe, ye = draw(16)
        return {"x": x, "y": y, "x_eval": xe, "y_eval": ye}
    return data


def _multi_output(K):
    posts = K.Input(shape=(None,), dtype="int32", name="posts")
    x = K.layers.Embedding(100, 16)(posts)
    x = K.layers.Conv1D(8, 5, activation="relu")(x)
    x = K.layers.MaxPooling1D(5)(x)
    x = K.layers.Conv1D(16, 5, activation="relu")(x)
    x = K.layers.GlobalMaxPooling1D()(x)
    x = K.layers.Dense(16, activation="relu")(x)
    age = K.layers.Dense(1, name="age")(x)
    income = K.layers.Dense(3, activation="softmax", name="income")(x)
    gender = K.layers.Dense(1, activation="sigmoid", name="gender")(x)
    return K.Model(posts, [age, income, gender])


def _multi_output_data(rng, n_eval=12):
    def draw(n):
        posts = rng.integers(1, 100, size=(n, 60)).astype(np.int32)
        age = rng.normal(3.0, 1.0, size=(n, 1)).astype(np.float32)
        income = _onehot(rng.integers(0, 3, size=n), 3)
        gender = rng.integers(0, 2, size=(n, 1)).astype(np.float32)
        return posts, [age, income, gender]
    x, y = draw(40)
    xe, ye = draw(n_eval)
    return {"x": x, "y": y, "x_eval": xe, "y_eval": ye}


def _siamese(K):
    lstm = K.layers.LSTM(8)
    left = K.Input(shape=(None, 6), name="left")
    right = K.Input(shape=(None, 6), name="right")
    merged = K.layers.concatenate([lstm(left), lstm(right)], axis=-1)
    return K.Model([left, right], K.layers.Dense(1, activation="sigmoid", name="similarity")(merged))


def _siamese_data(rng):
    def draw(n):
        return ([rng.normal(size=(n, 10, 6)).astype(np.float32), rng.normal(size=(n, 10, 6)).astype(np.float32)],
                rng.integers(0, 2, size=(n, 1)).astype(np.float32))
    x, y = draw(36)
    xe, ye = draw(12)
    return {"x": x, "y": y, "x_eval": xe, "y_eval": ye}


def _conv2d(K):
    img = K.Input(shape=(11, 11, 2), name="img")
    x = K.layers.Conv2D(4, 3, activation="relu")(img)                      # 9x9
    x = K.layers.MaxPooling2D(2)(x)                                          # 4x4
    x = K.layers.AveragePooling2D(3, strides=2, padding="same")(x)           # 2x2, padded windows
    x = K.layers.Flatten()(x)
    return K.Model(img, K.layers.Dense(3, activation="softmax")(x))


def _conv2d_data(rng):
    def draw(n):
        return rng.normal(size=(n, 11, 11, 2)).astype(np.float32), _onehot(rng.integers(0, 3, size=n), 3)
    x, y = draw(30)
    xe, ye = draw(10)
    return {"x": x, "y": y, "x_eval": xe, "y_eval": ye}


def _regression(K, out_activation=None):
    inp = K.Input(shape=(5,), name="x")
    h = K.layers.Dense(10, activation="relu")(inp)
    return K.Model(inp, K.layers.Dense(2, activation=out_activation, name="out")(h))


def _regression_data(rng):
    def draw(n):
        x = rng.normal(size=(n, 5)).astype(np.float32)
        y = np.stack([x[:, 0] - 2 * x[:, 1], np.sin(x[:, 2])], axis=1).astype(np.float32) + 0.1
        return x, y
    x, y = draw(50)
    xe, ye = draw(20)
    return {"x": x, "y": y, "x_eval": xe, "y_eval": ye}


def _binary(K):
    inp = K.Input(shape=(6,), name="x")
    h = K.layers.Dense(10, activation="relu")(inp)
    return K.Model(inp, K.layers.Dense(1, activation="sigmoid", name="out")(h))


def _binary_data(scale=1.0):
    def data(rng):
        def draw(n):
            x = (rng.normal(size=(n, 6)) * scale).astype(np.float32)
            return x, (x[:, :1] + 0.5 * rng.normal(size=(n, 1)) > 0).astype(np.float32)
        x, y = draw(50)
        xe, ye = draw(20)
        return {"x": x, "y": y, "x_eval": xe, "y_eval": ye}
    return data


def _sparse_data(label_shape):
    base = _mlp_data()

    def data(rng):
        d = base(rng)
        shape = (-1,) if label_shape == "n" else (-1, 1)
        return {"x": d["x"], "y": d["labels"].reshape(shape).astype(np.int32), "x_eval": d["x_eval"],
                "y_eval": d["labels_eval"].reshape(shape).astype(np.int32)}
    return data


def _with(base, **extra):
    """The base data plus extra entries computed from it: extra values are f(d, rng)."""
    def data(rng):
        d = base(rng)
        for k, f in extra.items():
            d[k] = f(d, rng)
        return d
    return data



def _residual(K):
    """The seed's residual connection: a same-padded convolution added to its input, twice."""
    img = K.Input(shape=(6, 6, 3), name="img")
    y = K.layers.Conv2D(3, 3, padding="same", name="res1")(img)
    z = K.layers.add([img, y])
    y2 = K.layers.Conv2D(3, 3, padding="same", activation="relu", name="res2")(z)
    z2 = K.layers.add([z, y2])
    x = K.layers.GlobalAveragePooling2D()(z2)
    return K.Model(img, K.layers.Dense(2, activation="softmax", name="out")(x))


def _inception(K):
    """The seed's Inception module in miniature: 1x1 branches, strided and same-padded convolutions,
    average pooling, channel concatenation."""
    img = K.Input(shape=(8, 8, 3), name="img")
    a = K.layers.Conv2D(4, 1, strides=2, padding="same", activation="relu")(img)
    b = K.layers.Conv2D(4, 1, padding="same", activation="relu")(img)
    b = K.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(b)
    c = K.layers.AveragePooling2D(3, strides=2, padding="same")(img)
    c = K.layers.Conv2D(4, 3, padding="same", activation="relu")(c)
    x = K.layers.concatenate([a, b, c], axis=-1)
    x = K.layers.Flatten()(x)
    return K.Model(img, K.layers.Dense(3, activation="softmax", name="out")(x))


def _image_data(shape, classes):
    def data(rng):
        def draw(n):
            return rng.normal(size=(n,) + shape).astype(np.float32), _onehot(rng.integers(0, classes, size=n), classes)
        x, y = draw(30)
        xe, ye = draw(10)
        return {"x": x, "y": y, "x_eval": xe, "y_eval": ye}
    return data


def _conv1d_variants(K):
    """Conv1D's other arguments: strides with same padding, causal padding with dilation, no bias."""
    seq = K.Input(shape=(16, 3), name="seq")
    x = K.layers.Conv1D(4, 3, strides=2, padding="same", activation="relu")(seq)
    x = K.layers.Conv1D(5, 2, padding="causal", dilation_rate=2, activation="tanh", use_bias=False)(x)
    x = K.layers.MaxPooling1D(2)(x)
    x = K.layers.GlobalAveragePooling1D()(x)
    return K.Model(seq, K.layers.Dense(3, activation="softmax", name="out")(x))


def _shared_merges(K):
    """One Dense layer called on two inputs (its gradient sums both calls), joined by every merge."""
    left = K.Input(shape=(5,), name="left")
    right = K.Input(shape=(5,), name="right")
    shared = K.layers.Dense(6, activation="tanh", name="shared")
    a, b = shared(left), shared(right)
    merged = K.layers.concatenate([K.layers.add([a, b]), K.layers.subtract([a, b]), K.layers.multiply([a, b]),
                                   K.layers.maximum([a, b]), K.layers.minimum([a, b]), K.layers.average([a, b])])
    return K.Model([left, right], K.layers.Dense(1, name="out")(merged))


def _shared_merges_data(rng):
    def draw(n):
        left, right = rng.normal(size=(n, 5)).astype(np.float32), rng.normal(size=(n, 5)).astype(np.float32)
        return [left, right], (left[:, :1] * right[:, 1:2]).astype(np.float32)
    x, y = draw(40)
    xe, ye = draw(12)
    return {"x": x, "y": y, "x_eval": xe, "y_eval": ye}


def _lstm_variants(K):
    """LSTM's other arguments: a returned sequence into a second LSTM read backwards, returned states."""
    seq = K.Input(shape=(7, 3), name="seq")
    x = K.layers.LSTM(5, return_sequences=True)(seq)
    out, h, c = K.layers.LSTM(4, go_backwards=True, return_state=True)(x)
    x = K.layers.concatenate([out, c], axis=-1)
    return K.Model(seq, K.layers.Dense(2, activation="softmax", name="out")(x))

# Learning-rate schedules (keras.optimizers.schedules), each on another optimizer, crossing their
# boundaries, restarts and warm-ups within the cases' 15 steps.
SCHEDULE_CASES = {
    "exponential_staircase": lambda K: K.optimizers.SGD(learning_rate=K.optimizers.schedules.ExponentialDecay(
        0.1, decay_steps=3, decay_rate=0.7, staircase=True), momentum=0.9),
    "piecewise_constant": lambda K: K.optimizers.Adam(learning_rate=K.optimizers.schedules.PiecewiseConstantDecay(
        [4, 9], [0.01, 0.005, 0.001])),
    "polynomial_cycle": lambda K: K.optimizers.RMSprop(learning_rate=K.optimizers.schedules.PolynomialDecay(
        0.01, decay_steps=4, end_learning_rate=0.001, power=2.0, cycle=True)),
    "inverse_time": lambda K: K.optimizers.Adagrad(learning_rate=K.optimizers.schedules.InverseTimeDecay(
        0.1, decay_steps=2, decay_rate=0.5)),
    "cosine_warmup": lambda K: K.optimizers.AdamW(learning_rate=K.optimizers.schedules.CosineDecay(
        0.001, decay_steps=10, alpha=0.1, warmup_target=0.01, warmup_steps=3)),
    "cosine_restarts": lambda K: K.optimizers.SGD(learning_rate=K.optimizers.schedules.CosineDecayRestarts(
        0.1, first_decay_steps=3, t_mul=2.0, m_mul=0.8, alpha=0.05)),
}

CASES: list[Case] = []
for _name, _make in SCHEDULE_CASES.items():
    CASES.append(Case(f"schedule_{_name}", "9 schedules", _mlp, _cce_compile(_make), _mlp_data(), dict(MLP_FIT)))
for _i, (_opt, _make) in enumerate(OPTIMIZER_CASES.items()):
    CASES.append(Case(f"mlp_{_opt}", "1 optimizers", (lambda K: _mlp(K, sequential=True)) if _opt == "sgd" else _mlp,
                      _cce_compile(_make), _mlp_data(), dict(MLP_FIT)))
CASES += [
    Case("bce_sigmoid", "2 losses", _binary,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "binary_crossentropy",
                    "metrics": ["accuracy"]}, _binary_data(), {"batch_size": 16, "epochs": 3}),
    Case("metric_objects", "2 losses", _binary,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "binary_crossentropy",
                    "metrics": [K.metrics.BinaryAccuracy(threshold=0.7, name="acc70"), K.metrics.BinaryAccuracy(),
                                K.metrics.mean_squared_error, K.metrics.MeanAbsoluteError(name="l1")]},
         _binary_data(), {"batch_size": 16, "epochs": 3, "validation_split": 0.2}),
    Case("cce_label_smoothing", "2 losses", _mlp,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01),
                    "loss": K.losses.CategoricalCrossentropy(label_smoothing=0.1), "metrics": ["acc"]},
         _mlp_data(), dict(MLP_FIT)),
    Case("bce_label_smoothing", "2 losses", _binary,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.05),
                    "loss": K.losses.BinaryCrossentropy(label_smoothing=0.2), "metrics": ["accuracy"]},
         _binary_data(), {"batch_size": 16, "epochs": 3}),
    Case("bce_label_smoothing_logits", "2 losses", lambda K: _regression(K),
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.05),
                    "loss": K.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.3)},
         _with(_regression_data, y=lambda d, rng: (d["y"] > 0).astype(np.float32),
               y_eval=lambda d, rng: (d["y_eval"] > 0).astype(np.float32)), {"batch_size": 16, "epochs": 3}),
    Case("mse_regression", "2 losses", _regression,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.02), "loss": "mse", "metrics": ["mae"]},
         _regression_data, {"batch_size": 16, "epochs": 3}),
    Case("mae_regression", "2 losses", _regression,
         lambda K: {"optimizer": K.optimizers.RMSprop(learning_rate=0.003), "loss": "mae"},
         _regression_data, {"batch_size": 16, "epochs": 3}),
    Case("sparse_cce_labels_n", "3 sparse", _mlp,
         lambda K: {"optimizer": "rmsprop", "loss": "sparse_categorical_crossentropy", "metrics": ["acc"]},
         _sparse_data("n"), dict(MLP_FIT)),
    Case("sparse_cce_labels_n1", "3 sparse", _mlp,
         lambda K: {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["acc"]},
         _sparse_data("n1"), dict(MLP_FIT)),
    Case("sparse_cce_from_logits", "3 sparse", lambda K: _mlp(K, out_activation=None),
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01),
                    "loss": K.losses.SparseCategoricalCrossentropy(from_logits=True), "metrics": ["acc"]},
         _sparse_data("n"), dict(MLP_FIT)),
    Case("cce_from_logits", "3 sparse", lambda K: _mlp(K, out_activation=None),
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.05),
                    "loss": K.losses.CategoricalCrossentropy(from_logits=True), "metrics": ["acc"]},
         _mlp_data(), dict(MLP_FIT)),
    Case("bce_from_logits", "3 sparse", lambda K: _regression(K),
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.05),
                    "loss": K.losses.BinaryCrossentropy(from_logits=True)},
         _with(_regression_data, y=lambda d, rng: (d["y"] > 0).astype(np.float32),
               y_eval=lambda d, rng: (d["y_eval"] > 0).astype(np.float32)), {"batch_size": 16, "epochs": 3}),
    Case("qa_list", "4 qa", _qa, lambda K: {"optimizer": "rmsprop", "loss": "categorical_crossentropy",
                                              "metrics": ["acc"]}, _qa_data(False), {"batch_size": 16, "epochs": 3},
         expect="tf-sparse"),
    Case("qa_dict", "4 qa", _qa, lambda K: {"optimizer": "rmsprop", "loss": "categorical_crossentropy",
                                              "metrics": ["acc"]}, _qa_data(True), {"batch_size": 16, "epochs": 3},
         expect="tf-sparse"),
    Case("qa_list_sgd", "4 qa", _qa, lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.5),
                                                  "loss": "categorical_crossentropy", "metrics": ["acc"]},
         _qa_data(False), {"batch_size": 16, "epochs": 3}),
    Case("multi_output", "5 multi", _multi_output,
         lambda K: {"optimizer": "rmsprop", "loss": ["mse", "categorical_crossentropy", "binary_crossentropy"],
                    "loss_weights": [0.25, 1.0, 10.0], "metrics": {"income": ["acc"], "gender": ["acc"]}},
         _multi_output_data, {"batch_size": 8, "epochs": 3, "validation_split": 0.25},
         expect="tf-sparse,tf-output-loss"),
    Case("multi_output_sgd_dicts", "5 multi", _multi_output,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.01),
                    "loss": {"gender": "binary_crossentropy", "age": "mse", "income": "categorical_crossentropy"},
                    "loss_weights": {"age": 0.25, "income": 1.0, "gender": 10.0},
                    "metrics": {"gender": ["acc"], "income": ["acc"]}},
         # every batch of 8 (32 train, 8 validation, 16 evaluation): Keras-TF's per-output losses agree
         _with(lambda rng: _multi_output_data(rng, n_eval=16),
               y=lambda d, rng: dict(zip(["age", "income", "gender"], d["y"])),
               y_eval=lambda d, rng: dict(zip(["age", "income", "gender"], d["y_eval"]))),
         {"batch_size": 8, "epochs": 3, "validation_split": 0.2}),
    Case("siamese_lstm", "6 models", _siamese,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "binary_crossentropy",
                    "metrics": ["accuracy"]}, _siamese_data, {"batch_size": 8, "epochs": 3}),
    Case("conv2d_pool", "6 models", _conv2d,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.05, momentum=0.9), "loss": "categorical_crossentropy",
                    "metrics": ["acc"]}, _conv2d_data, {"batch_size": 8, "epochs": 3}),
    Case("dropout_0", "6 models", lambda K: _mlp(K, dropout=0.0), _cce_compile(OPTIMIZER_CASES["adam"]),
         _mlp_data(), dict(MLP_FIT)),
    Case("sample_weight", "6 weights", _mlp, _cce_compile(OPTIMIZER_CASES["sgd"]),
         _with(_mlp_data(), sample_weight=lambda d, rng: rng.uniform(0.0, 2.0, size=len(d["x"])).astype(np.float32)),
         dict(MLP_FIT)),
    Case("sample_weight_no_metric", "6 weights", _mlp,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.05), "loss": "categorical_crossentropy"},
         _with(_mlp_data(), sample_weight=lambda d, rng: rng.uniform(0.0, 2.0, size=len(d["x"])).astype(np.float32)),
         dict(MLP_FIT)),
    Case("weighted_metrics", "6 weights", _mlp,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.05), "loss": "categorical_crossentropy",
                    "weighted_metrics": ["acc"]},
         _with(_mlp_data(), sample_weight=lambda d, rng: rng.uniform(0.0, 2.0, size=len(d["x"])).astype(np.float32)),
         dict(MLP_FIT), may_refuse=True),
    Case("class_weight", "6 weights", _mlp, _cce_compile(OPTIMIZER_CASES["adam"]),
         _with(_mlp_data(), class_weight=lambda d, rng: {0: 1.0, 1: 2.5, 2: 0.5}), dict(MLP_FIT)),
    Case("class_weight_no_metric", "6 weights", _mlp,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "categorical_crossentropy"},
         _with(_mlp_data(), class_weight=lambda d, rng: {0: 1.0, 1: 2.5, 2: 0.5}), dict(MLP_FIT)),
    Case("validation_data", "6 weights", _mlp, _cce_compile(OPTIMIZER_CASES["rmsprop"]),
         _with(_mlp_data(), validation_data=lambda d, rng: (d["x_eval"], d["y_eval"])), dict(MLP_FIT)),
    Case("validation_freq", "6 weights", _mlp, _cce_compile(OPTIMIZER_CASES["adam"]),
         _with(_mlp_data(), validation_data=lambda d, rng: (d["x_eval"], d["y_eval"])),
         {"batch_size": 16, "epochs": 4, "validation_freq": 2, "validation_batch_size": 5}),
    Case("frozen_layer", "7 frozen", lambda K: _mlp(K, frozen=True), _cce_compile(OPTIMIZER_CASES["adam"]),
         _mlp_data(), dict(MLP_FIT)),
    Case("train_on_batch", "7 frozen", _mlp, _cce_compile(OPTIMIZER_CASES["rmsprop_centered_mom"]),
         _with(_mlp_data(), batches=lambda d, rng: [(0, 16), (16, 32), (32, 48), (48, 70), (0, 10)]),
         mode="tob"),
    Case("lr_scheduler", "9 callbacks", _mlp, _cce_compile(OPTIMIZER_CASES["adam"]), _mlp_data(),
         {"batch_size": 16, "epochs": 4},
         callbacks=lambda K: [K.callbacks.LearningRateScheduler(lambda epoch, lr: lr if epoch < 1 else lr * 0.5)]),
    Case("reduce_lr_on_plateau", "9 callbacks", _mlp, _cce_compile(OPTIMIZER_CASES["sgd_nesterov"]),
         _with(_mlp_data(), validation_data=lambda d, rng: (d["x_eval"], d["y_eval"])),
         {"batch_size": 16, "epochs": 6},
         # min_delta 1.0 > any change of val_loss here: no epoch after the first improves, so the rate
         # drops after every `patience` epochs outside the cooldown
         callbacks=lambda K: [K.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1,
                                                            min_delta=1.0, cooldown=1, min_lr=0.004)]),
    Case("cce_saturated", "8 tf-logits", _shallow, _cce_compile(OPTIMIZER_CASES["sgd"]), _mlp_data(scale=60.0),
         dict(MLP_FIT), expect="tf-logits"),
    Case("bce_saturated", "8 tf-logits", _binary,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.01), "loss": "binary_crossentropy",
                    "metrics": ["accuracy"]}, _binary_data(scale=60.0), {"batch_size": 16, "epochs": 3},
         expect="tf-logits"),
]
# The optimizers' other arguments (clipping, weight decay on any optimizer, loss scaling, betas...)
OPTION_CASES = {
    "sgd_clipnorm": lambda K: K.optimizers.SGD(learning_rate=0.1, momentum=0.5, clipnorm=0.05),
    "adam_global_clipnorm": lambda K: K.optimizers.Adam(learning_rate=0.01, global_clipnorm=0.1),
    "rmsprop_clipvalue": lambda K: K.optimizers.RMSprop(learning_rate=0.003, clipvalue=0.02),
    "sgd_weight_decay": lambda K: K.optimizers.SGD(learning_rate=0.05, weight_decay=0.01),
    "adam_betas_weight_decay": lambda K: K.optimizers.Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.95,
                                                           epsilon=1e-4, weight_decay=0.02),
    "adagrad_initial_accumulator": lambda K: K.optimizers.Adagrad(learning_rate=0.05, initial_accumulator_value=0.5,
                                                                  epsilon=1e-5),
    "rmsprop_rho_momentum": lambda K: K.optimizers.RMSprop(learning_rate=0.005, rho=0.8, momentum=0.3),
    "adamw_amsgrad": lambda K: K.optimizers.AdamW(learning_rate=0.01, weight_decay=0.1, amsgrad=True),
    "adam_loss_scale": lambda K: K.optimizers.Adam(learning_rate=0.01, loss_scale_factor=128.0),
}
for _name, _make in OPTION_CASES.items():
    CASES.append(Case(f"option_{_name}", "10 options", _mlp, _cce_compile(_make), _mlp_data(), dict(MLP_FIT)))
CASES += [
    Case("residual", "11 seed models", _residual,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "categorical_crossentropy",
                    "metrics": ["acc"]}, _image_data((6, 6, 3), 2), {"batch_size": 8, "epochs": 3}),
    Case("inception", "11 seed models", _inception,
         lambda K: {"optimizer": "rmsprop", "loss": "categorical_crossentropy", "metrics": ["accuracy"]},
         _image_data((8, 8, 3), 3), {"batch_size": 8, "epochs": 3}),
    Case("conv1d_variants", "11 seed models", _conv1d_variants,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.05, momentum=0.9), "loss": "categorical_crossentropy",
                    "metrics": ["acc"]}, _image_data((16, 3), 3), {"batch_size": 8, "epochs": 3}),
    Case("shared_merges", "11 seed models", _shared_merges,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "mse", "metrics": ["mae"]},
         _shared_merges_data, {"batch_size": 8, "epochs": 3}),
    Case("lstm_variants", "11 seed models", _lstm_variants,
         lambda K: {"optimizer": K.optimizers.RMSprop(learning_rate=0.01), "loss": "categorical_crossentropy",
                    "metrics": ["acc"]}, _image_data((7, 3), 2), {"batch_size": 8, "epochs": 3}),
    Case("initial_epoch", "12 fit", _mlp, _cce_compile(OPTIMIZER_CASES["adam"]),
         _with(_mlp_data(), validation_data=lambda d, rng: (d["x_eval"], d["y_eval"])),
         {"batch_size": 16, "epochs": 4, "initial_epoch": 2}),
    Case("early_stopping", "12 fit", _mlp, _cce_compile(OPTIMIZER_CASES["sgd_nesterov"]),
         _with(_mlp_data(), validation_data=lambda d, rng: (d["x_eval"], d["y_eval"])),
         {"batch_size": 16, "epochs": 6},
         # min_delta 1.0: no epoch after the first improves, so training stops after `patience` more
         # epochs and the first epoch's weights come back
         callbacks=lambda K: [K.callbacks.EarlyStopping(monitor="val_loss", patience=2, min_delta=1.0,
                                                        restore_best_weights=True)]),
    Case("validation_split_batches", "12 fit", _mlp, _cce_compile(OPTIMIZER_CASES["rmsprop"]), _mlp_data(),
         {"batch_size": 12, "epochs": 3, "validation_split": 0.3, "validation_batch_size": 7}),
]
# compile()'s other spellings: string optimizers, loss and metric functions, metrics per output as
# lists, sparse and binary metric names, loss reductions, weights with several outputs
CASES += [
    Case("string_optimizer_adagrad", "13 compile forms", lambda K: _mlp(K, sequential=True),
         lambda K: {"optimizer": "adagrad", "loss": "categorical_crossentropy",
                    "metrics": ["categorical_accuracy", "mse"]}, _mlp_data(), dict(MLP_FIT)),
    Case("string_optimizer_adamw", "13 compile forms", _mlp,
         lambda K: {"optimizer": "adamw", "loss": K.losses.categorical_crossentropy,
                    "metrics": [K.metrics.categorical_accuracy, "mae"]}, _mlp_data(), dict(MLP_FIT)),
    Case("sparse_metric_names", "13 compile forms", _mlp,
         lambda K: {"optimizer": "sgd", "loss": K.losses.SparseCategoricalCrossentropy(),
                    "metrics": ["accuracy", "sparse_categorical_accuracy"]}, _sparse_data("n1"), dict(MLP_FIT)),
    Case("binary_metric_names", "13 compile forms", _binary,
         lambda K: {"optimizer": "rmsprop", "loss": K.losses.BinaryCrossentropy(),
                    "metrics": ["acc", "binary_accuracy", "mse", "mae"]}, _binary_data(), {"batch_size": 16, "epochs": 3}),
    Case("loss_reduction_sum", "13 compile forms", _regression,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.002),
                    "loss": K.losses.MeanSquaredError(reduction="sum"), "metrics": ["mae"]},
         _regression_data, {"batch_size": 16, "epochs": 3}),
    Case("multi_output_metric_lists", "13 compile forms", _multi_output,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.005),
                    "loss": ["mae", K.losses.CategoricalCrossentropy(), "binary_crossentropy"],
                    "metrics": [["mse"], ["acc", "categorical_accuracy"], ["acc", "mse"]]},
         lambda rng: _multi_output_data(rng, n_eval=16), {"batch_size": 8, "epochs": 3}, expect="tf-sparse"),
    Case("multi_output_sample_weight", "13 compile forms", _multi_output,
         lambda K: {"optimizer": "sgd", "loss": ["mse", "categorical_crossentropy", "binary_crossentropy"],
                    "loss_weights": [0.5, 1.0, 2.0], "metrics": {"income": "acc"}},
         _with(lambda rng: _multi_output_data(rng, n_eval=16),
               sample_weight=lambda d, rng: rng.uniform(0.0, 2.0, size=len(d["x"])).astype(np.float32)),
         {"batch_size": 8, "epochs": 3}),
    Case("sparse_class_weight", "13 compile forms", _mlp,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "sparse_categorical_crossentropy",
                    "metrics": ["acc"]},
         _with(_sparse_data("n"), class_weight=lambda d, rng: {0: 0.5, 1: 2.0, 2: 1.5}), dict(MLP_FIT)),
]


def _tagger(K):
    """Per-step outputs: an LSTM sequence into a Dense over its last axis, a softmax per time step."""
    tokens = K.Input(shape=(9,), dtype="int32", name="tokens")
    x = K.layers.Embedding(30, 6)(tokens)
    x = K.layers.Conv1D(5, 3, padding="same", activation="relu")(x)
    x = K.layers.LSTM(7, return_sequences=True)(x)
    return K.Model(tokens, K.layers.Dense(4, activation="softmax", name="tags")(x))


def _bidirectional_tagger(K):
    """Bidirectional LSTMs returning sequences (the backward copy's flipped back into input order):
    a summed pair, then a concatenated pair with a backward layer of its own (other options; Keras's
    output shape assumes equal units), per-step softmax tags."""
    tokens = K.Input(shape=(9,), dtype="int32", name="tokens")
    x = K.layers.Embedding(30, 6)(tokens)
    x = K.layers.Bidirectional(K.layers.LSTM(5, return_sequences=True), merge_mode="sum")(x)
    x = K.layers.Bidirectional(K.layers.LSTM(4, return_sequences=True),
                               backward_layer=K.layers.LSTM(4, return_sequences=True, go_backwards=True,
                                                                            unit_forget_bias=False))(x)
    return K.Model(tokens, K.layers.Dense(4, activation="softmax", name="tags")(x))


def _bidirectional_states(K):
    """A Bidirectional LSTM's states as outputs' inputs: merge_mode "ave" for the output, the four
    states (forward h, c, backward h, c) concatenated beside it."""
    tokens = K.Input(shape=(9,), dtype="int32", name="tokens")
    out, fh, fc, bh, bc = K.layers.Bidirectional(K.layers.LSTM(5, return_state=True), merge_mode="ave")(
        K.layers.Embedding(30, 6)(tokens))
    x = K.layers.concatenate([out, fh, fc, bh, bc])
    return K.Model(tokens, K.layers.Dense(1, activation="sigmoid", name="out")(x))


def _gru_stack(K):
    """GRUs: Keras's default reset_after=True returning its sequence into reset_after=False read from
    the end, and a Bidirectional GRU's output and states beside it."""
    tokens = K.Input(shape=(9,), dtype="int32", name="tokens")
    x = K.layers.Embedding(30, 6)(tokens)
    seq = K.layers.GRU(5, return_sequences=True)(x)
    last = K.layers.GRU(4, reset_after=False, go_backwards=True)(seq)
    both, fh, bh = K.layers.Bidirectional(K.layers.GRU(3, return_state=True), merge_mode="mul")(seq)
    return K.Model(tokens, K.layers.Dense(1, activation="sigmoid", name="out")(
        K.layers.concatenate([last, both, fh, bh])))


def _tagger_data(rng):
    def draw(n):
        tokens = rng.integers(0, 30, size=(n, 9)).astype(np.int32)
        return tokens, (tokens % 4).astype(np.int32)
    x, y = draw(32)
    xe, ye = draw(12)
    return {"x": x, "y": y, "x_eval": xe, "y_eval": ye}


# one 0/1 label per sequence: the parity of its first tag
_tagger_parity_data = _with(_tagger_data, y=lambda d, rng: (d["y"][:, :1] % 2).astype(np.float32),
                            y_eval=lambda d, rng: (d["y_eval"][:, :1] % 2).astype(np.float32))


# Outputs without a loss, per-step outputs
CASES += [
    Case("loss_for_some_outputs", "14 outputs", _multi_output,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.01),
                    "loss": [None, "categorical_crossentropy", "binary_crossentropy"],
                    "loss_weights": [1.0, 2.0, 0.5], "metrics": [[], [], ["acc"]]},
         lambda rng: _multi_output_data(rng, n_eval=16), {"batch_size": 8, "epochs": 3}),
    Case("bidirectional_tagging", "14 outputs", _bidirectional_tagger,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01),
                    "loss": "sparse_categorical_crossentropy", "metrics": ["acc"]},
         _tagger_data, {"batch_size": 8, "epochs": 3}, expect="tf-sparse"),
    Case("bidirectional_states", "14 outputs", _bidirectional_states,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.1, momentum=0.9), "loss": "binary_crossentropy",
                    "metrics": ["acc"]},
         _tagger_parity_data,
         {"batch_size": 8, "epochs": 3}),
    Case("gru_stack", "14 outputs", _gru_stack,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.1, momentum=0.9), "loss": "binary_crossentropy",
                    "metrics": ["acc"]},
         _tagger_parity_data,
         {"batch_size": 8, "epochs": 3}),
    Case("gru_adam", "14 outputs", _gru_stack,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "binary_crossentropy",
                    "metrics": ["acc"]},
         _tagger_parity_data,
         {"batch_size": 8, "epochs": 3}, expect="tf-sparse"),
    Case("sequence_tagging", "14 outputs", _tagger,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.1, momentum=0.9),
                    "loss": "sparse_categorical_crossentropy", "metrics": ["acc"]},
         _tagger_data, {"batch_size": 8, "epochs": 3, "validation_split": 0.25}),
]


def _activations(K):
    """Every activation gcomp knows, one Dense each, all feeding the output (their gradients too)."""
    inp = K.Input(shape=(6,), name="x")
    names = ["elu", "exponential", "gelu", "hard_sigmoid", "hard_silu", "leaky_relu", "linear", "log_softmax",
             "mish", "relu6", "selu", "sigmoid", "silu", "softplus", "softsign", "tanh", "softmax"]
    branches = [K.layers.Dense(3, activation=name, name=f"act_{name}")(inp) for name in names]
    return K.Model(inp, K.layers.Dense(2, name="out")(K.layers.concatenate(branches)))


def _relu_layers(K):
    """ReLU's options, LeakyReLU (its own default slope and a given one) and Softmax as layers, each
    on a Dense branch (pre-activations on both sides of every threshold and clip)."""
    inp = K.Input(shape=(5,), name="x")
    relus = [K.layers.ReLU(max_value=1.0), K.layers.ReLU(negative_slope=0.2), K.layers.ReLU(threshold=0.3),
             K.layers.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.5),
             K.layers.ReLU(max_value=6.0, negative_slope=0.05), K.layers.LeakyReLU(), K.layers.LeakyReLU(0.01),
             K.layers.Softmax()]
    branches = [layer(K.layers.Dense(4, name=f"pre_{k}")(inp)) for k, layer in enumerate(relus)]
    return K.Model(inp, K.layers.Dense(2, name="out")(K.layers.concatenate(branches)))


def _bag_of_embeddings(K):
    """fastText-style text classification: the average of a text's embeddings into a Dense."""
    text = K.Input(shape=(10,), dtype="int32", name="text")
    x = K.layers.GlobalAveragePooling1D()(K.layers.Embedding(40, 8)(text))
    x = K.layers.Dense(6, activation="relu", use_bias=False)(x)
    return K.Model(text, K.layers.Dense(1, activation="sigmoid", name="out")(x))


def _bag_data(rng):
    def draw(n):
        text = rng.integers(0, 40, size=(n, 10)).astype(np.int32)
        return text, (text.mean(axis=1, keepdims=True) > 19.5).astype(np.float32)
    x, y = draw(40)
    xe, ye = draw(12)
    return {"x": x, "y": y, "x_eval": xe, "y_eval": ye}


CASES += [
    Case("activations", "15 more models", _activations,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "mse", "metrics": ["mae"]},
         _with(_regression_data, x=lambda d, rng: np.concatenate([d["x"], d["x"][:, :1]], 1),
               x_eval=lambda d, rng: np.concatenate([d["x_eval"], d["x_eval"][:, :1]], 1)),
         {"batch_size": 16, "epochs": 3}),
    Case("relu_layers", "15 more models", _relu_layers,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "mse", "metrics": ["mae"]},
         _regression_data, {"batch_size": 16, "epochs": 3}),
    Case("bag_of_embeddings", "15 more models", _bag_of_embeddings,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.5), "loss": "binary_crossentropy",
                    "metrics": ["accuracy"]}, _bag_data, {"batch_size": 10, "epochs": 3}),
    Case("validation_sample_weight", "15 more models", _mlp, _cce_compile(OPTIMIZER_CASES["adam"]),
         _with(_mlp_data(), validation_data=lambda d, rng: (d["x_eval"], d["y_eval"],
                                                           rng.uniform(0.0, 2.0, size=len(d["x_eval"])).astype(np.float32))),
         dict(MLP_FIT)),
    Case("batch_larger_than_data", "15 more models", _mlp, _cce_compile(OPTIMIZER_CASES["rmsprop"]), _mlp_data(),
         {"batch_size": 100, "epochs": 3, "validation_split": 0.1}),
]


def _regularized(K):
    """Weight penalties on every kind of weight: Dense kernel and bias, Conv1D, Embedding, LSTM."""
    tokens = K.Input(shape=(9,), dtype="int32", name="tokens")
    x = K.layers.Embedding(30, 6, embeddings_regularizer=K.regularizers.L2(0.001))(tokens)
    x = K.layers.Conv1D(5, 3, activation="relu", kernel_regularizer=K.regularizers.L1L2(l1=0.002, l2=0.01))(x)
    x = K.layers.LSTM(4, kernel_regularizer="l2", recurrent_regularizer=K.regularizers.L1(0.003),
                      bias_regularizer="l1")(x)
    x = K.layers.Dense(6, activation="tanh", kernel_regularizer="l1", bias_regularizer=K.regularizers.L2(0.05))(x)
    return K.Model(tokens, K.layers.Dense(2, activation="softmax", name="out")(x))


def _regularized_data(rng):
    def draw(n):
        tokens = rng.integers(0, 30, size=(n, 9)).astype(np.int32)
        return tokens, _onehot((tokens[:, 0] > 14).astype(int), 2)
    x, y = draw(32)
    xe, ye = draw(12)
    return {"x": x, "y": y, "x_eval": xe, "y_eval": ye}


def _mlp_regularized(K):
    """The MLP with penalties on both hidden layers (every weight nonzero)."""
    inp = K.Input(shape=(8,), name="x")
    h = K.layers.Dense(16, activation="relu", kernel_regularizer="l1", bias_regularizer="l2")(inp)
    h = K.layers.Dense(12, activation="tanh", kernel_regularizer=K.regularizers.L1L2(l1=0.005, l2=0.02))(h)
    return K.Model(inp, K.layers.Dense(3, activation="softmax", name="out")(h))


def _multi_output_regularized(K):
    """The multi-output model with penalties on its head: `loss` includes them, `<output>_loss` not."""
    posts = K.Input(shape=(None,), dtype="int32", name="posts")
    x = K.layers.Embedding(100, 16)(posts)
    x = K.layers.Conv1D(8, 5, activation="relu", kernel_regularizer=K.regularizers.L2(0.02))(x)
    x = K.layers.GlobalMaxPooling1D()(x)
    x = K.layers.Dense(16, activation="relu", kernel_regularizer=K.regularizers.L1L2(l1=0.001, l2=0.001))(x)
    age = K.layers.Dense(1, name="age", bias_regularizer="l2")(x)
    income = K.layers.Dense(3, activation="softmax", name="income")(x)
    gender = K.layers.Dense(1, activation="sigmoid", name="gender", kernel_regularizer="l1")(x)
    return K.Model(posts, [age, income, gender])
CASES += [
    Case("regularizers", "16 regularizers", _regularized,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.1, momentum=0.5), "loss": "categorical_crossentropy",
                    "metrics": ["acc"]}, _regularized_data, {"batch_size": 8, "epochs": 3, "validation_split": 0.25},
         expect="jax-l1-zero"),
    Case("regularizers_multi_output", "16 regularizers", lambda K: _multi_output_regularized(K),
         lambda K: {"optimizer": K.optimizers.RMSprop(learning_rate=0.003, momentum=0.2),
                    "loss": ["mse", "categorical_crossentropy", "binary_crossentropy"], "loss_weights": [0.5, 1.0, 2.0]},
         lambda rng: _multi_output_data(rng, n_eval=16), {"batch_size": 8, "epochs": 3}, expect="tf-sparse"),
    Case("regularizers_loss_scale", "16 regularizers", _mlp_regularized,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01, loss_scale_factor=4.0),
                    "loss": "categorical_crossentropy", "metrics": ["acc"]}, _mlp_data(), dict(MLP_FIT)),
]




def _constrained(K):
    """Every constraint on every kind of weight, tight enough to act at every step."""
    tokens = K.Input(shape=(9,), dtype="int32", name="tokens")
    x = K.layers.Embedding(30, 6, embeddings_constraint=K.constraints.MaxNorm(0.05, axis=1))(tokens)
    x = K.layers.Conv1D(5, 3, activation="relu", kernel_constraint=K.constraints.UnitNorm(axis=[0, 1]),
                        bias_constraint="non_neg")(x)
    x = K.layers.LSTM(4, recurrent_constraint=K.constraints.MinMaxNorm(0.5, 0.8, rate=0.6),
                      kernel_constraint="max_norm")(x)
    x = K.layers.Dense(6, activation="tanh", kernel_constraint=K.constraints.MaxNorm(0.3),
                       bias_constraint=K.constraints.NonNeg())(x)
    return K.Model(tokens, K.layers.Dense(2, activation="softmax", name="out")(x))


CASES += [
    Case("constraints", "17 constraints", _constrained,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.05), "loss": "categorical_crossentropy",
                    "metrics": ["acc"]}, _regularized_data, {"batch_size": 8, "epochs": 3}, expect="tf-sparse"),
    Case("constraints_sgd", "17 constraints", _constrained,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.3, momentum=0.5), "loss": "categorical_crossentropy",
                    "metrics": ["acc"]}, _regularized_data, {"batch_size": 8, "epochs": 3, "validation_split": 0.25}),
]


def _activity_regularized(K):
    """Activity penalties: on a relu convolution read by a max pooling (the penalty sees the relu's
    output, before the pooling), a tanh Dense and a linear output."""
    seq = K.Input(shape=(12, 3), name="seq")
    x = K.layers.Conv1D(4, 3, activation="relu", activity_regularizer=K.regularizers.L1(0.02))(seq)
    x = K.layers.MaxPooling1D(2)(x)
    x = K.layers.Flatten()(x)
    x = K.layers.Dense(5, activation="tanh", activity_regularizer=K.regularizers.L1L2(l1=0.01, l2=0.05))(x)
    return K.Model(seq, K.layers.Dense(2, name="out", activity_regularizer="l2")(x))


CASES += [
    Case("activity_regularizers", "16 regularizers", _activity_regularized,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "mse", "metrics": ["mae"]},
         _with(_image_data((12, 3), 2), y=lambda d, rng: d["y"] * 2 - 1, y_eval=lambda d, rng: d["y_eval"] * 2 - 1),
         {"batch_size": 8, "epochs": 3, "validation_split": 0.2}),
]
# Keras's other names for losses and metrics (keras.losses.get / keras.metrics.get: aliases and class
# names; a metric string is its History key) and 'crossentropy' / 'ce' picked by the targets' shape
CASES += [
    Case("names_bce_metrics", "17 names", _binary,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "bce",
                    "metrics": ["BinaryAccuracy", "ACC", "bce", "MSE", "binary_crossentropy"]},
         _binary_data(), {"batch_size": 16, "epochs": 3, "validation_split": 0.2}),
    Case("names_crossentropy_sparse", "17 names", _mlp,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.05), "loss": "crossentropy",
                    "metrics": ["acc", "sparse_categorical_crossentropy", "SparseCategoricalAccuracy"]},
         _sparse_data("n"), dict(MLP_FIT)),
    Case("names_ce_categorical", "17 names", _mlp,
         lambda K: {"optimizer": K.optimizers.RMSprop(), "loss": "CE",
                    "metrics": ["Accuracy", "CategoricalCrossentropy", "categorical_accuracy"]},
         _mlp_data(), dict(MLP_FIT)),
    Case("names_regression", "17 names", _regression,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.02), "loss": "MeanAbsoluteError",
                    "metrics": ["MSE", "MAE", "MeanSquaredError", "mean_absolute_error"]},
         _regression_data, {"batch_size": 16, "epochs": 3}),
    Case("names_multi_output", "17 names", _multi_output,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.01),
                    "loss": {"age": "MSE", "income": "crossentropy", "gender": "ce"},
                    "metrics": {"income": ["accuracy"], "gender": ["Accuracy", "BCE"]}},
         lambda rng: _multi_output_data(rng, n_eval=16), {"batch_size": 8, "epochs": 2}),
    Case("names_weighted_metrics_repeat", "17 names", _binary,
         lambda K: {"optimizer": K.optimizers.SGD(learning_rate=0.05), "loss": "bce", "metrics": ["acc", "mse"],
                    "weighted_metrics": ["acc", "mae", "mse"]},
         _with(_binary_data(), sample_weight=lambda d, rng: rng.uniform(0.2, 2.0, size=len(d["x"])).astype(np.float32)),
         {"batch_size": 16, "epochs": 2}),
    Case("names_crossentropy_tob", "17 names", _mlp,
         lambda K: {"optimizer": K.optimizers.Adam(learning_rate=0.01), "loss": "crossentropy", "metrics": ["acc"]},
         _with(_sparse_data("n1"), batches=lambda d, rng: [(0, 16), (16, 40), (40, 70)]), mode="tob"),
]
CASE_BY_NAME = {c.name: c for c in CASES}
RANDOM_PREFIX = "random_"


def case_by_name(name: str) -> Case:
    """A hand-written case, or `random_<seed>` drawn by bench/_random_cases.py (both sides draw it)."""
    if name in CASE_BY_NAME:
        return CASE_BY_NAME[name]
    if name.startswith(RANDOM_PREFIX) and name[len(RANDOM_PREFIX):].isdigit():
        sys.path.insert(0, str(HERE))
        from _random_cases import random_case
        CASE_BY_NAME[name] = random_case(int(name[len(RANDOM_PREFIX):]), Case)
        return CASE_BY_NAME[name]
    raise KeyError(name)


def namespace(module) -> SimpleNamespace:
    """Input, layers, Model, Sequential, losses, optimizers, callbacks, metrics, regularizers and
    constraints of `keras` or `gcomp`."""
    return SimpleNamespace(Input=module.Input, layers=module.layers, Model=module.Model,
                           Sequential=module.Sequential, losses=module.losses, optimizers=module.optimizers,
                           callbacks=module.callbacks, metrics=module.metrics, regularizers=module.regularizers,
                           constraints=module.constraints)


def case_data(case: Case) -> dict:
    return case.data(np.random.default_rng(_stable_seed(case.name)))


def _stable_seed(name: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) + 7


def run_training(model, case: Case, data: dict, K, verbose=0, backend_kw: dict | None = None) -> dict:
    """What both sides record after compile(): history / batch results, evaluate, final weights.
    The model must already be compiled; K: its side's namespace(). backend_kw: gcomp's backend= for
    each call (Keras: none)."""
    out: dict[str, Any] = {}
    b = backend_kw or {}
    if case.mode == "fit":
        kw = dict(case.fit_kw)
        if case.callbacks is not None:
            kw["callbacks"] = case.callbacks(K)
        for k in ("sample_weight", "class_weight", "validation_data"):
            if k in data:
                kw[k] = data[k]
        hist = model.fit(data["x"], data["y"], shuffle=False, verbose=verbose, **kw, **b)
        out["history"] = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    else:
        results = []
        for start, stop in data["batches"]:
            xb, yb = data["x"][start:stop], data["y"][start:stop]
            results.append(("train", _floats(model.train_on_batch(xb, yb, **b))))
            results.append(("train_dict", _float_dict(model.train_on_batch(xb, yb, return_dict=True, **b))))
            results.append(("test", _floats(model.test_on_batch(xb, yb, **b))))
        out["batches"] = results
    out["evaluate"] = _floats(model.evaluate(data["x_eval"], data["y_eval"], batch_size=8, verbose=0, **b))
    out["evaluate_dict"] = _float_dict(model.evaluate(data["x_eval"], data["y_eval"], batch_size=8, verbose=0,
                                                      return_dict=True, **b))
    out["final"] = [np.asarray(w) for w in model.get_weights()]
    return out


def _floats(v):
    if isinstance(v, (list, tuple)):
        return [float(np.asarray(e)) for e in v]
    return float(np.asarray(v))


def _float_dict(d):
    return {k: float(np.asarray(v)) for k, v in d.items()}


# ---- the gcomp side -----------------------------------------------------------------------------

class Refused(Exception):
    """gcomp refused the case's compile() arguments with a clear error (a documented limitation)."""


def run_gcomp(case: Case, data: dict, keras_result: dict, backend: str = "numpy") -> dict:
    import gcomp
    K = namespace(gcomp)
    model = case.build(K)
    model.set_weights(keras_result["init"])
    pred = model.predict(data["x_eval"], backend="numpy")
    out = {"pred0": [np.asarray(p) for p in (pred if isinstance(pred, list) else [pred])]}
    try:
        model.compile(**case.compile_kw(K))
    except (ValueError, NotImplementedError) as e:
        if case.may_refuse:
            raise Refused(f"{type(e).__name__}: {e}") from None
        raise
    out.update(run_training(model, case, data, K, backend_kw={"backend": backend}))
    return out


# ---- comparison ---------------------------------------------------------------------------------

def _rel(a, b, floor=1e-6):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor))) if a.size else 0.0


@dataclass
class Row:
    case: str
    backend: str
    pred0: float = float("nan")
    hist: float = float("nan")
    eval: float = float("nan")
    w_abs: float = float("nan")
    w_rel: float = float("nan")
    moved: float = float("nan")
    result: str = "ERROR"
    notes: list = field(default_factory=list)


def _eval_keys(values, as_dict) -> list:
    """The log key at each position of an evaluate()/train_on_batch() list, found by matching its
    values with the return_dict=True result of the same call; None where the value is ambiguous."""
    values = values if isinstance(values, list) else [values]
    keys = []
    for v in values:
        match = [key for key, dv in as_dict.items() if abs(dv - v) <= 1e-7 * max(abs(v), 1e-12)]
        keys.append(match[0] if len(match) == 1 else None)
    return keys


def compare(case: Case, backend: str, k: dict, g: dict) -> Row:
    """The row for one case; problems are ("struct", msg) (keys, forms, order: always a FAIL) or
    ("num", msg) (values: excused on TensorFlow for cases that expect a TF-backend difference)."""
    row = Row(case.name, backend)
    problems: list[tuple[str, str]] = []
    kp, gp = k["pred0"], g["pred0"]
    if len(kp) != len(gp) or any(np.shape(a) != np.shape(b) for a, b in zip(kp, gp)):
        row.pred0 = float("inf")
        problems.append(("struct", "predict() returns a different number or shape of outputs"))
    else:
        row.pred0 = max(float(np.max(np.abs(a.astype(np.float64) - b))) / max(float(np.max(np.abs(b))), 1e-12)
                        for a, b in zip(gp, kp))
        if row.pred0 > PRED_RTOL:
            problems.append(("num", f"initial predictions differ (rel {row.pred0:.2e}): forward pass / weight layout"))
    if case.mode == "fit":
        kh, gh = k["history"], g["history"]
        if sorted(kh) != sorted(gh):
            problems.append(("struct", f"History keys differ: keras {sorted(kh)} gcomp {sorted(gh)}"))
        worst = sorted(((_rel(gh[key], kh[key]), key) for key in kh if key in gh), reverse=True)
        row.hist = worst[0][0] if worst else float("inf")
        if row.hist > HIST_RTOL and worst:
            key = worst[0][1]
            problems.append(("num", f"history[{key!r}] keras {_fmt(kh[key])} gcomp {_fmt(gh[key])}"))
    else:
        kb, gb = k["batches"], g["batches"]
        diffs = []
        for (kind, kv), (_, gv) in zip(kb, gb):
            if isinstance(kv, dict):
                if sorted(kv) != sorted(gv):
                    problems.append(("struct", f"{kind} keys differ: keras {sorted(kv)} gcomp {sorted(gv)}"))
                    continue
                diffs.append(max(_rel(gv[key], kv[key]) for key in kv))
            elif np.shape(kv) != np.shape(gv):
                problems.append(("struct", f"{kind} returns differ in form: keras {kv} gcomp {gv}"))
            else:
                diffs.append(_rel(gv, kv))
        row.hist = max(diffs or [float("inf")])
        if row.hist > HIST_RTOL and diffs:
            i = int(np.argmax(diffs))
            problems.append(("num", f"batch result {kb[i][0]} keras {kb[i][1]} gcomp {gb[i][1]}"))
    ke, ge, kd, gd = k["evaluate"], g["evaluate"], k["evaluate_dict"], g["evaluate_dict"]
    if sorted(kd) != sorted(gd):
        problems.append(("struct", f"evaluate(return_dict=True) keys: keras {sorted(kd)} gcomp {sorted(gd)}"))
    if np.shape(ke) != np.shape(ge):
        problems.append(("struct", f"evaluate() forms differ: keras {ke} gcomp {ge}"))
        row.eval = float("inf")
    else:
        k_order, g_order = _eval_keys(ke, kd), _eval_keys(ge, gd)
        wrong = [i for i, key in enumerate(k_order) if key is not None and key in gd
                 and abs(np.atleast_1d(ge)[i] - gd[key]) > 1e-7 * max(abs(gd[key]), 1e-12)]
        if wrong:
            names = lambda order: "[" + ", ".join(o or "?" for o in order) + "]"
            problems.append(("struct", f"evaluate() list order: keras {names(k_order)} gcomp {names(g_order)}"))
            # compare the values key by key, as Keras orders them
            ge = [gd.get(key, float("nan")) if key is not None else v for key, v in zip(k_order, np.atleast_1d(ge))]
            ge = ge if isinstance(ke, list) else ge[0]
        row.eval = _rel(ge, ke)
        if row.eval > EVAL_RTOL:
            problems.append(("num", f"evaluate keras {ke} gcomp {ge}"))
    kw, gw = k["final"], g["final"]
    if len(kw) != len(gw) or any(a.shape != b.shape for a, b in zip(kw, gw)):
        problems.append(("struct", "final weights differ in number or shapes"))
        row.w_abs = row.w_rel = float("inf")
    else:
        abs_d = [float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0 for a, b in zip(gw, kw)]
        rel_d = [d / max(float(np.max(np.abs(b))), 1e-12) if b.size else 0.0 for d, b in zip(abs_d, kw)]
        row.w_abs, row.w_rel = max(abs_d), max(rel_d)
        row.moved = max(float(np.max(np.abs(a - b))) for a, b in zip(kw, k["init"]) if a.size)
        if row.w_rel > WEIGHT_RTOL:
            i = int(np.argmax(rel_d))
            problems.append(("num", f"weight #{i} {kw[i].shape}: max abs diff {abs_d[i]:.3g} (rel {rel_d[i]:.3g})"))
        frozen_moved = [i for i, (a, b) in enumerate(zip(gw, k["init"])) if a.size and np.array_equal(kw[i], b)
                        and not np.array_equal(a, b)]
        if frozen_moved:
            problems.append(("struct", f"weights {frozen_moved} stay fixed in Keras but move in gcomp"))
    row.notes = [f"[{kind}] {msg}" for kind, msg in problems]
    if not problems:
        row.result = "PASS"
    elif _expected(case, backend) and all(kind == "num" for kind, _ in problems):
        row.result = f"DIFF({','.join(_expected(case, backend))})"
    else:
        row.result = "FAIL"
    return row


def _expected(case: Case, backend: str) -> list[str]:
    """The case's known differences of this Keras backend ("tf-..." or "jax-..." tags)."""
    prefix = {"tensorflow": "tf-", "jax": "jax-"}.get(backend, "?")
    return [tag for tag in case.expect.split(",") if tag.startswith(prefix)]


def _fmt(values):
    return "[" + ", ".join(f"{v:.8g}" for v in values) + "]"


# ---- driver -------------------------------------------------------------------------------------

def run_keras_side(venv: Path, workdir: Path, backend: str, names: list[str]) -> tuple[dict | None, str]:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               JAX_PLATFORMS="cpu", PYTHONHASHSEED="0")
    out = workdir / f"keras_{backend}.pkl"
    proc = subprocess.run([str(venv / "bin" / "python"), str(KERAS_SIDE), str(workdir), str(out), *names],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        return None, proc.stderr[-4000:] + proc.stdout[-2000:]
    with open(out, "rb") as f:
        return pickle.load(f), proc.stderr


def venv_has(venv: Path, module: str) -> bool:
    r = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {module}"], capture_output=True)
    return r.returncode == 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--backends", default="tensorflow,jax", help="Keras backends to compare against")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--verbose", action="store_true", help="print every problem of every row")
    ap.add_argument("--gcomp-backend", default="numpy", choices=["numpy", "c"],
                    help="where gcomp trains: the NumPy program or the generated C (fit(backend=...))")
    ap.add_argument("--random", type=int, default=0, metavar="N",
                    help="add N random cases random_<seed> (bench/_random_cases.py), seeds from --seed on")
    ap.add_argument("--seed", type=int, default=1, help="the first random case's seed")
    args = ap.parse_args(argv)

    names = [n for n in args.cases.split(",") if n]
    if args.random:
        names += [f"{RANDOM_PREFIX}{args.seed + i}" for i in range(args.random)]
    names = names or [c.name for c in CASES]
    unknown = []
    for n in names:
        try:
            case_by_name(n)
        except KeyError:
            unknown.append(n)
    if unknown:
        print(f"unknown case(s) {unknown}; known: {', '.join(CASE_BY_NAME)}, {RANDOM_PREFIX}<seed>", file=sys.stderr)
        return 2
    if not (args.venv / "bin" / "python").exists():
        print(f"no venv at {args.venv} (Keras 3 + TensorFlow): see bench/ort_vs_keras_export.py", file=sys.stderr)
        return 2
    backends = [b for b in args.backends.split(",") if b]
    if "jax" in backends and not venv_has(args.venv, "jax"):
        print("(jax is not installed in the venv: comparing against TensorFlow only)")
        backends.remove("jax")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gcomp-train-parity-"))
    workdir.mkdir(parents=True, exist_ok=True)
    datas = {}
    for n in names:
        datas[n] = case_data(case_by_name(n))
        with open(workdir / f"{n}.data.pkl", "wb") as f:
            pickle.dump(datas[n], f)

    rows: list[Row] = []
    errors: list[str] = []
    failed_to_run = False
    for backend in backends:
        t0 = time.perf_counter()
        keras_results, log = run_keras_side(args.venv, workdir, backend, names)
        if keras_results is None:
            print(f"Keras side ({backend}) failed to run:\n{log}", file=sys.stderr)
            failed_to_run = True
            continue
        print(f"Keras ({backend}) side: {time.perf_counter() - t0:.1f}s")
        for n in names:
            case = case_by_name(n)
            k = keras_results[n]
            if k.get("error"):
                rows.append(Row(n, backend, notes=["Keras side raised"]))
                errors.append(f"{n} [{backend}] Keras side:\n{k['error']}")
                failed_to_run = True
                continue
            try:
                t1 = time.perf_counter()
                g = run_gcomp(case, datas[n], k, args.gcomp_backend)
                dt = time.perf_counter() - t1
            except Refused as e:
                rows.append(Row(n, backend, result="REFUSED", notes=[f"gcomp refuses compile(): {e}"]))
                continue
            except Exception:
                rows.append(Row(n, backend, notes=["gcomp side raised"]))
                errors.append(f"{n} [{backend}] gcomp side:\n{traceback.format_exc()}")
                failed_to_run = True
                continue
            row = compare(case, backend, k, g)
            row.notes.append(f"time: gcomp side {dt:.1f}s")
            rows.append(row)

    header = f"{'case':<26} {'backend':<10} {'pred0':>8} {'hist rel':>9} {'eval rel':>9} {'w abs':>9} " \
             f"{'w rel':>9} {'moved':>8}  result"
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.case:<26} {r.backend:<10} {r.pred0:8.1e} {r.hist:9.2e} {r.eval:9.2e} {r.w_abs:9.2e} "
              f"{r.w_rel:9.2e} {r.moved:8.2e}  {r.result}")
    print(f"\nPASS: history and evaluate within {HIST_RTOL:g} relative, final weights within {WEIGHT_RTOL:g} "
          f"of each array's max |w|, initial predictions within {PRED_RTOL:g}, identical keys.")
    problems = [r for r in rows if r.result != "PASS" or args.verbose]
    for r in problems:
        notes = [n for n in r.notes if args.verbose or not n.startswith("time: ")]
        if notes:
            print(f"\n{r.case} [{r.backend}] {r.result}:")
            for note in notes:
                print(f"  - {note}")
    for e in errors:
        print(f"\n{e}", file=sys.stderr)
    print(f"\nwork directory: {workdir}")
    return 1 if failed_to_run else 0


if __name__ == "__main__":
    sys.exit(main())
