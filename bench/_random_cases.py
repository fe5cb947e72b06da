"""Random training cases for bench/keras_training_parity.py (`--random N --seed S`).

A case named `random_<seed>` is drawn from np.random.default_rng(seed), so the Keras side (another
process, another venv) rebuilds exactly the case this process drew. The hand-written cases check
one feature each; these cross them: a trunk (Dense stack, Conv1D, Conv2D, Embedding + LSTM / Conv1D /
average, float LSTM, two inputs joined by a merge or a shared layer) under one to three heads
(regression, binary, categorical, sparse; probabilities or logits), a random optimizer with random
options, the loss / loss_weights / metrics in every form compile() takes, and fit() with random
batch sizes, sample or class weights, validation splits or data, or a train_on_batch run.

Known backend differences are tagged as the hand-written cases are (see the parity module's doc):
tf-sparse when an Embedding trains under an optimizer or clipping that is not linear in the
gradient, tf-output-loss when a multi-output fit() has a short batch, jax-l1-zero when an L1 penalty
meets a NonNeg constraint (which leaves weights at exactly 0). Nothing here needs more than NumPy
at import time.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

HIDDEN_ACTIVATIONS = ["relu", "tanh", "sigmoid", "elu", "selu", "softplus", "softsign", "gelu", "silu",
                      "linear", "leaky_relu", "mish", "relu6", "hard_sigmoid", None]
MERGES = ["concatenate", "add", "subtract", "multiply", "average", "maximum", "minimum"]
EVAL_SAMPLES = 16  # evaluate() runs with batch_size 8: whole batches only


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _chance(rng, p):
    return bool(rng.random() < p)


# ---- trunks: (inputs [(name, shape, vocabulary or None)], build(K) -> (input tensors, features)) ----

def _dense_stack(rng):
    layers = [(int(rng.integers(3, 13)), _pick(rng, HIDDEN_ACTIVATIONS), _chance(rng, 0.8))
              for _ in range(int(rng.integers(1, 4)))]
    residual = len(layers) >= 2 and _chance(rng, 0.4)
    if residual:  # the last layer's output is added to the one before it: equal widths
        layers[-1] = (layers[-2][0],) + layers[-1][1:]

    def make(K, prefix):
        return [K.layers.Dense(units, activation=act, use_bias=bias, name=f"{prefix}{i}")
                for i, (units, act, bias) in enumerate(layers)]

    def apply(K, x, prefix):
        outs = []
        for layer in make(K, prefix):
            x = layer(x)
            outs.append(x)
        if residual:
            x = K.layers.add([outs[-2], outs[-1]])
        return x
    apply.sequential = None if residual else make  # the layers alone, for a Sequential model
    return apply, f"dense{[u for u, _, _ in layers]}{'+res' if residual else ''}"


def _trunk_dense(rng):
    d = int(rng.integers(3, 9))
    stack, desc = _dense_stack(rng)

    def build(K):
        x = K.Input(shape=(d,), name="x")
        return [x], stack(K, x, "h")
    if stack.sequential is not None:
        build.sequential = lambda K: [K.Input(shape=(d,))] + stack.sequential(K, "h")
    return [("x", (d,), None)], build, desc


def _conv1d_layer(rng, length):
    """Conv1D arguments valid for an input of `length` steps, and the output length."""
    kernel = int(rng.integers(1, 4))
    strides = int(rng.integers(1, 3))
    padding = _pick(rng, ["valid", "same", "causal"])
    dilation = int(rng.integers(1, 3)) if strides == 1 else 1
    span = (kernel - 1) * dilation + 1
    if padding == "valid" and span > length:
        padding = "same"
    out = -(-length // strides) if padding in ("same", "causal") else (length - span) // strides + 1
    kw = dict(filters=int(rng.integers(2, 7)), kernel_size=kernel, strides=strides, padding=padding,
              dilation_rate=dilation, activation=_pick(rng, HIDDEN_ACTIVATIONS), use_bias=_chance(rng, 0.8))
    return kw, out


def _pool1d(rng, length):
    kind = _pick(rng, ["MaxPooling1D", "AveragePooling1D"])
    padding = _pick(rng, ["valid", "same"]) if length >= 2 else "same"
    out = -(-length // 2) if padding == "same" else (length - 2) // 2 + 1
    return kind, padding, out


def _reduce_sequence(rng, length):
    return _pick(rng, ["GlobalMaxPooling1D", "GlobalAveragePooling1D"] + (["Flatten"] if length <= 12 else []))


def _trunk_conv1d(rng):
    length, channels = int(rng.integers(8, 17)), int(rng.integers(1, 5))
    first, n = _conv1d_layer(rng, length)
    pool = _pool1d(rng, n) if _chance(rng, 0.5) else None
    if pool:
        n = pool[2]
    second = None
    if _chance(rng, 0.4):
        second, n = _conv1d_layer(rng, n)
    reduce = _reduce_sequence(rng, n)

    def build(K):
        seq = K.Input(shape=(length, channels), name="seq")
        x = K.layers.Conv1D(**first)(seq)
        if pool:
            x = getattr(K.layers, pool[0])(2, padding=pool[1])(x)
        if second:
            x = K.layers.Conv1D(**second)(x)
        return [seq], getattr(K.layers, reduce)()(x)
    return [("seq", (length, channels), None)], build, f"conv1d{(length, channels)}->{reduce}"


def _trunk_conv2d(rng):
    h, w, c = int(rng.integers(5, 10)), int(rng.integers(5, 10)), int(rng.integers(1, 4))
    kernel, strides = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    padding = _pick(rng, ["valid", "same"])
    dilation = int(rng.integers(1, 3)) if strides == 1 and kernel > 1 and min(h, w) >= 7 else 1
    conv = dict(filters=int(rng.integers(2, 6)), kernel_size=kernel, strides=strides, padding=padding,
                dilation_rate=dilation, activation=_pick(rng, HIDDEN_ACTIVATIONS), use_bias=_chance(rng, 0.8))
    span = (kernel - 1) * dilation + 1
    side = -(-min(h, w) // strides) if padding == "same" else (min(h, w) - span) // strides + 1
    pool = _pick(rng, [None, "MaxPooling2D", "AveragePooling2D"])
    pool_padding = _pick(rng, ["valid", "same"]) if side >= 2 else "same"
    reduce = _pick(rng, ["Flatten", "GlobalMaxPooling2D", "GlobalAveragePooling2D"])

    def build(K):
        img = K.Input(shape=(h, w, c), name="img")
        x = K.layers.Conv2D(**conv)(img)
        if pool:
            x = getattr(K.layers, pool)(2, padding=pool_padding)(x)
        return [img], getattr(K.layers, reduce)()(x)
    return [("img", (h, w, c), None)], build, f"conv2d{(h, w, c)} k{kernel} s{strides} {padding} {pool} {reduce}"


def _trunk_text(rng):
    steps, vocab, dim = int(rng.integers(4, 11)), int(rng.integers(10, 50)), int(rng.integers(3, 9))
    ragged = _chance(rng, 0.5)  # Input(shape=(None,)): the length comes with the data
    body = _pick(rng, ["lstm", "lstm2", "conv", "bag"])
    units = int(rng.integers(2, 8))
    lstm_kw = dict(return_sequences=False, go_backwards=_chance(rng, 0.3), use_bias=_chance(rng, 0.9),
                   unit_forget_bias=_chance(rng, 0.8))
    if _chance(rng, 0.2):
        lstm_kw.update(activation=_pick(rng, ["tanh", "relu", "softsign"]),
                       recurrent_activation=_pick(rng, ["sigmoid", "hard_sigmoid"]))
    conv, n = _conv1d_layer(rng, steps)
    reduce = _pick(rng, ["GlobalMaxPooling1D", "GlobalAveragePooling1D"])

    def build(K):
        tokens = K.Input(shape=(None if ragged else steps,), dtype="int32", name="tokens")
        x = K.layers.Embedding(vocab, dim)(tokens)
        if body == "lstm":
            x = K.layers.LSTM(units, **lstm_kw)(x)
        elif body == "lstm2":
            x = K.layers.LSTM(units, return_sequences=True)(x)
            x = K.layers.LSTM(max(units - 1, 2), **lstm_kw)(x)
        elif body == "conv":
            x = getattr(K.layers, reduce)()(K.layers.Conv1D(**conv)(x))
        else:
            x = K.layers.GlobalAveragePooling1D()(x)
        return [tokens], x
    return [("tokens", (steps,), vocab)], build, f"text T{steps} V{vocab} {body}"


def _trunk_sequence(rng):
    steps, channels, units = int(rng.integers(3, 9)), int(rng.integers(1, 5)), int(rng.integers(2, 7))
    sequences = _chance(rng, 0.4)
    states = _chance(rng, 0.3)
    backwards = _chance(rng, 0.3)

    def build(K):
        seq = K.Input(shape=(steps, channels), name="seq")
        out = K.layers.LSTM(units, return_sequences=sequences, return_state=states, go_backwards=backwards)(seq)
        if states:
            out, _, c = out
        x = K.layers.GlobalAveragePooling1D()(out) if sequences else out
        if states:
            x = K.layers.concatenate([x, c])
        return [seq], x
    return [("seq", (steps, channels), None)], build, f"lstm T{steps} seq={sequences} states={states}"


def _trunk_two_inputs(rng):
    d1, d2 = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    width = int(rng.integers(3, 9))
    merge = _pick(rng, MERGES)
    shared = _chance(rng, 0.4)
    if shared:
        d2 = d1
    acts = [_pick(rng, HIDDEN_ACTIVATIONS) for _ in range(2)]

    def build(K):
        a, b = K.Input(shape=(d1,), name="left"), K.Input(shape=(d2,), name="right")
        if shared:
            layer = K.layers.Dense(width, activation=acts[0], name="shared")
            ha, hb = layer(a), layer(b)
        else:
            ha = K.layers.Dense(width, activation=acts[0], name="left_dense")(a)
            hb = K.layers.Dense(width, activation=acts[1], name="right_dense")(b)
        return [a, b], getattr(K.layers, merge)([ha, hb])
    return [("left", (d1,), None), ("right", (d2,), None)], build, f"two inputs {merge}{' shared' if shared else ''}"


def _trunk_branches(rng):
    """One input read by two branches (Dense, Activation and ReLU layers), concatenated."""
    d, width = int(rng.integers(3, 8)), int(rng.integers(2, 7))
    act = _pick(rng, HIDDEN_ACTIVATIONS[:-1])
    relu_kw = _pick(rng, [{}, {"max_value": 6.0}])  # gcomp refuses other max_value, negative_slope, threshold

    def build(K):
        x = K.Input(shape=(d,), name="x")
        a = K.layers.Activation(act)(K.layers.Dense(width, name="branch_a")(x))
        b = K.layers.ReLU(**relu_kw)(K.layers.Dense(width + 1, name="branch_b")(x))
        return [x], K.layers.concatenate([a, b, x])
    return [("x", (d,), None)], build, f"branches {act} relu{relu_kw}"


def _trunk_tokens_dense(rng):
    """A Dense over an Embedding's last axis (a 3-D input), then a pooling or a Reshape + Flatten."""
    steps, vocab, dim, units = int(rng.integers(3, 8)), int(rng.integers(10, 30)), int(rng.integers(2, 6)), int(rng.integers(2, 6))
    act = _pick(rng, HIDDEN_ACTIVATIONS)
    reduce = _pick(rng, ["GlobalMaxPooling1D", "GlobalAveragePooling1D", "Flatten", "Reshape"])
    pool = _pick(rng, [None, ("MaxPooling1D", 2, 1), ("AveragePooling1D", 3, 2)]) if steps >= 4 else None

    def build(K):
        tokens = K.Input(shape=(steps,), dtype="int32", name="tokens")
        x = K.layers.Dense(units, activation=act)(K.layers.Embedding(vocab, dim)(tokens))
        length = steps
        if pool:
            x = getattr(K.layers, pool[0])(pool[1], strides=pool[2])(x)
            length = (steps - pool[1]) // pool[2] + 1
        if reduce == "Reshape":
            return [tokens], K.layers.Reshape((length * units,))(x)
        return [tokens], getattr(K.layers, reduce)()(x)
    return [("tokens", (steps,), vocab)], build, f"text dense T{steps} {pool} {reduce}"


def _trunk_per_step(rng):
    """Per-step features (batch, steps, units): the heads then predict at every step (a tagger)."""
    steps, vocab = int(rng.integers(3, 8)), int(rng.integers(10, 30))
    body = _pick(rng, ["lstm", "conv", "lstm_conv"])
    units, filters = int(rng.integers(2, 7)), int(rng.integers(2, 6))

    def build(K):
        tokens = K.Input(shape=(steps,), dtype="int32", name="tokens")
        x = K.layers.Embedding(vocab, 4)(tokens)
        if body in ("conv", "lstm_conv"):
            x = K.layers.Conv1D(filters, 3, padding="same", activation="relu")(x)
        if body in ("lstm", "lstm_conv"):
            x = K.layers.LSTM(units, return_sequences=True)(x)
        return [tokens], x
    build.steps = steps
    return [("tokens", (steps,), vocab)], build, f"text per-step T{steps} {body}"


TRUNKS = [_trunk_per_step, _trunk_dense, _trunk_conv1d, _trunk_conv2d, _trunk_text, _trunk_sequence, _trunk_two_inputs,
          _trunk_branches, _trunk_tokens_dense]


# ---- heads: the output layer, its loss and metrics, its targets ---------------------------------

def _head(rng, name):
    task = _pick(rng, ["regression", "binary", "categorical", "sparse"])
    logits = task != "regression" and _chance(rng, 0.25)
    classes = int(rng.integers(2, 6))
    head: dict[str, Any] = {"name": name, "task": task, "logits": logits}
    if task == "regression":
        head.update(units=int(rng.integers(1, 4)), activation=_pick(rng, [None, "linear", "tanh"]),
                    loss=_pick(rng, ["mse", "mae", "mean_squared_error", "MSE", ("MeanSquaredError", {}),
                                     ("MeanAbsoluteError", {}), ("MeanSquaredError", {"reduction": "sum"}),
                                     ("MeanAbsoluteError", {"reduction": "mean"})]),
                    metrics=_pick(rng, [[], ["mae"], ["mse", "mae"], [("MeanSquaredError", {"name": "m2"})]]))
    elif task == "binary":
        smoothing = _pick(rng, [0.0, 0.0, 0.1])
        head.update(units=1, activation=None if logits else "sigmoid",
                    loss=("BinaryCrossentropy", {"from_logits": True, "label_smoothing": smoothing}) if logits
                    else _pick(rng, ["binary_crossentropy", "bce", ("BinaryCrossentropy", {"label_smoothing": smoothing})]),
                    metrics=_pick(rng, [[], ["accuracy"], ["binary_accuracy"], [("BinaryAccuracy", {"threshold": 0.6})],
                                        ["acc", "mse"]]))
    elif task == "categorical":
        smoothing = _pick(rng, [0.0, 0.0, 0.2])
        head.update(units=classes, activation=None if logits else "softmax",
                    loss=("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": smoothing}) if logits
                    else _pick(rng, ["categorical_crossentropy", ("CategoricalCrossentropy", {"label_smoothing": smoothing})]),
                    metrics=_pick(rng, [[], ["acc"], ["accuracy"], ["categorical_accuracy"], ["accuracy", "mae"]]))
    else:
        head.update(units=classes, activation=None if logits else "softmax",
                    loss=("SparseCategoricalCrossentropy", {"from_logits": True}) if logits
                    else _pick(rng, ["sparse_categorical_crossentropy", ("SparseCategoricalCrossentropy", {})]),
                    metrics=_pick(rng, [[], ["acc"], ["sparse_categorical_accuracy"]]),
                    label_rank=_pick(rng, [1, 2]))
    head["layer_kw"] = {}
    if _chance(rng, 0.15):
        head["layer_kw"]["kernel_regularizer"] = _pick(rng, [("L2", {"l2": 0.01}), ("L1", {"l1": 0.005}),
                                                              ("L1L2", {"l1": 0.002, "l2": 0.02})])
    if _chance(rng, 0.05):
        head["layer_kw"]["activity_regularizer"] = ("L2", {"l2": 0.01})
    if _chance(rng, 0.1):
        head["layer_kw"]["kernel_constraint"] = _pick(rng, [("MaxNorm", {"max_value": 0.5}), ("NonNeg", {}),
                                                             ("UnitNorm", {}), ("MinMaxNorm", {"min_value": 0.2, "max_value": 0.6})])
    return head


def _layer_kw(K, spec):
    """A head's Dense arguments with its regularizer and constraint objects made from K."""
    kw = {}
    for key, (cls, args) in spec.items():
        module = K.constraints if key.endswith("constraint") else K.regularizers
        kw[key] = getattr(module, cls)(**args)
    return kw


def _targets(rng, head, n, steps=None):
    """Targets for n samples (at each of `steps` steps for a per-step trunk)."""
    task = head["task"]
    lead = (n,) if steps is None else (n, steps)
    if task == "regression":
        return rng.normal(0.5, 1.0, size=lead + (head["units"],)).astype(np.float32)
    if task == "binary":
        return rng.integers(0, 2, size=lead + (1,)).astype(np.float32)
    labels = rng.integers(0, head["units"], size=lead)
    if task == "categorical":
        return np.eye(head["units"], dtype=np.float32)[labels]
    return labels.reshape(lead + ((1,) if head["label_rank"] == 2 else ())).astype(np.int32)


def _object(K, module, spec):
    """A loss or metric given as a string, or (class name, kwargs) instantiated from K.<module>."""
    if isinstance(spec, tuple):
        return getattr(getattr(K, module), spec[0])(**spec[1])
    return spec


# ---- optimizer ----------------------------------------------------------------------------------

def _optimizer_spec(rng):
    if _chance(rng, 0.12):
        return _pick(rng, ["sgd", "rmsprop", "adam", "adamw", "adagrad"]), {}
    family = _pick(rng, ["SGD", "RMSprop", "Adam", "AdamW", "Adagrad"])
    kw: dict[str, Any] = {}
    if family == "SGD":
        kw.update(learning_rate=float(_pick(rng, [0.01, 0.05, 0.1])), momentum=float(_pick(rng, [0.0, 0.5, 0.9])))
        kw["nesterov"] = kw["momentum"] > 0 and _chance(rng, 0.5)
    elif family == "RMSprop":
        kw.update(learning_rate=float(_pick(rng, [0.001, 0.003, 0.01])), rho=float(_pick(rng, [0.9, 0.8])),
                  momentum=float(_pick(rng, [0.0, 0.0, 0.3])), centered=_chance(rng, 0.3))
    elif family in ("Adam", "AdamW"):
        kw.update(learning_rate=float(_pick(rng, [0.001, 0.005, 0.01])), beta_1=float(_pick(rng, [0.9, 0.8])),
                  beta_2=float(_pick(rng, [0.999, 0.95])), amsgrad=_chance(rng, 0.3))
        if family == "AdamW":
            kw["weight_decay"] = float(_pick(rng, [0.004, 0.05]))
    else:
        kw.update(learning_rate=float(_pick(rng, [0.01, 0.05])),
                  initial_accumulator_value=float(_pick(rng, [0.1, 0.5])))
    if family != "AdamW" and _chance(rng, 0.15):
        kw["weight_decay"] = float(_pick(rng, [0.01, 0.05]))
    if _chance(rng, 0.25):
        clip = _pick(rng, ["clipnorm", "clipvalue", "global_clipnorm"])
        kw[clip] = float(_pick(rng, [0.05, 0.5]))
    if _chance(rng, 0.1):  # built from K at compile time: ("ExponentialDecay", kwargs)
        kw["learning_rate"] = ("ExponentialDecay", {"initial_learning_rate": kw["learning_rate"], "decay_steps": 3,
                                                    "decay_rate": 0.7, "staircase": _chance(rng, 0.5)})
    return family, kw


def _optimizer(K, family, kw):
    if not kw:
        return family
    kw = dict(kw)
    if isinstance(kw["learning_rate"], tuple):
        cls, args = kw["learning_rate"]
        kw["learning_rate"] = getattr(K.optimizers.schedules, cls)(**args)
    return getattr(K.optimizers, family)(**kw)


def _nonlinear_in_gradient(family, kw):
    """Whether the update of a row depends on the row's gradient other than linearly (TF applies it
    to an Embedding's gradient occurrence by occurrence: the tf-sparse difference)."""
    plain_sgd = family.lower() == "sgd"
    return not plain_sgd or any(k in kw for k in ("clipnorm", "clipvalue", "global_clipnorm"))


# ---- the case -----------------------------------------------------------------------------------

def _draw(seed: int) -> SimpleNamespace:
    """Every random choice of case `random_<seed>` (the order of the draws fixes what a seed means)."""
    rng = np.random.default_rng(seed)
    c = SimpleNamespace()
    c.inputs, c.trunk, c.desc = _pick(rng, TRUNKS)(rng)
    c.n_heads = 1 if _chance(rng, 0.65) else int(rng.integers(2, 4))
    c.heads = [_head(rng, f"out{i}") for i in range(c.n_heads)]
    c.sequential = c.n_heads == 1 and getattr(c.trunk, "sequential", None) is not None and _chance(rng, 0.4)
    named = "h0" if c.desc.startswith("dense") else "shared" if "shared" in c.desc else \
        "left_dense" if c.desc.startswith("two inputs") else None  # a trunk layer with a name on both sides
    c.frozen = named if _chance(rng, 0.15) else None
    c.family, c.opt_kw = _optimizer_spec(rng)
    if c.desc.startswith("text") and c.opt_kw.get("centered"):
        # Keras on TensorFlow raised InvalidArgumentError (a GatherV2 index out of range in the
        # centered RMSprop's sparse update) for two such cases in the parity runs; JAX trained them
        # as gcomp does. Not drawn, so that a run's ERROR rows mean something.
        c.opt_kw["centered"] = False
    c.n_train = int(rng.integers(24, 49))
    batch = int(rng.integers(4, 17))
    epochs = int(rng.integers(2, 4))
    c.mode = "tob" if _chance(rng, 0.12) else "fit"
    if len(c.inputs) > 1 or c.n_heads > 1:
        c.mode = "fit"  # the train_on_batch runs slice x and y as single arrays
    c.loss_form = _pick(rng, ["list", "dict"]) if c.n_heads > 1 else _pick(rng, ["single", "single", "list"])
    c.metric_form = _pick(rng, ["per_output", "dict"]) if c.n_heads > 1 else _pick(rng, ["single", "dict"])
    c.loss_weights = None
    if c.n_heads > 1 and _chance(rng, 0.5):
        weights = [float(_pick(rng, [0.25, 0.5, 1.0, 2.0])) for _ in c.heads]
        c.loss_weights = weights if _chance(rng, 0.5) else {h["name"]: w for h, w in zip(c.heads, weights)}
    elif c.n_heads == 1 and _chance(rng, 0.1):
        c.loss_weights = 0.5
    c.fit_kw = {"batch_size": batch, "epochs": epochs}
    c.extra = _pick(rng, ["none", "none", "validation_split", "validation_data", "sample_weight", "class_weight"])
    c.steps = getattr(c.trunk, "steps", None)
    if c.extra == "class_weight" and (c.n_heads > 1 or c.heads[0]["task"] == "regression" or c.steps):
        c.extra = "sample_weight"
    if c.extra == "sample_weight" and c.steps:
        c.extra = "validation_data"  # Keras 3 cannot weigh per-step losses by sample (see the README)
    if c.extra == "validation_split":
        c.fit_kw["validation_split"] = float(_pick(rng, [0.2, 0.25]))
    c.callback = None
    if c.mode == "fit" and _chance(rng, 0.15):
        c.callback = _pick(rng, [("EarlyStopping", {"monitor": "loss", "patience": 0, "min_delta": 0.01,
                                                    "restore_best_weights": _chance(rng, 0.5)}),
                                 ("ReduceLROnPlateau", {"monitor": "loss", "factor": 0.5, "patience": 0,
                                                        "min_delta": 0.01})])
    if "validation_split" in c.fit_kw or c.extra == "validation_data":
        if _chance(rng, 0.3):
            c.fit_kw["validation_freq"] = 2
        if _chance(rng, 0.3):
            c.fit_kw["validation_batch_size"] = int(rng.integers(3, 9))
    c.per_output_weights = c.n_heads > 1 and c.extra == "sample_weight" and _chance(rng, 0.5)
    if c.callback is not None and c.callback[0] == "ReduceLROnPlateau" and \
            isinstance(c.opt_kw.get("learning_rate"), tuple):
        c.callback = None  # a schedule's rate is not settable: Keras and gcomp raise the same TypeError
    if c.mode == "fit" and _chance(rng, 0.1):
        c.fit_kw["initial_epoch"] = 1
        c.fit_kw["epochs"] = epochs + 1
    c.weighted = c.n_heads == 1 and c.extra in ("sample_weight", "class_weight") and _chance(rng, 0.5)
    c.data_seed = int(rng.integers(1 << 31))
    return c


def _model(K, c: SimpleNamespace):
    def head_layer(h):
        return K.layers.Dense(h["units"], activation=h["activation"], name=h["name"], **_layer_kw(K, h["layer_kw"]))

    if c.sequential:
        model = K.Sequential(c.trunk.sequential(K) + [head_layer(c.heads[0])])
    else:
        tensors, features = c.trunk(K)
        outputs = [head_layer(h)(features) for h in c.heads]
        model = K.Model(tensors if len(tensors) > 1 else tensors[0], outputs if c.n_heads > 1 else outputs[0])
    if c.frozen is not None:
        model.get_layer(c.frozen).trainable = False
    return model


def _compile_kw(K, c: SimpleNamespace) -> dict:
    losses = [_object(K, "losses", h["loss"]) for h in c.heads]
    metrics = [[_object(K, "metrics", m) for m in h["metrics"]] for h in c.heads]
    names = [h["name"] for h in c.heads]
    kw: dict[str, Any] = {"optimizer": _optimizer(K, c.family, c.opt_kw)}
    kw["loss"] = {"single": losses[0], "list": losses, "dict": dict(zip(names, losses))}[c.loss_form]
    if c.metric_form == "single":
        kw["metrics"] = metrics[0]
    elif c.metric_form == "per_output":
        kw["metrics"] = metrics
    else:
        kw["metrics"] = {n: m for n, m in zip(names, metrics) if m}
    if c.loss_weights is not None:
        kw["loss_weights"] = c.loss_weights
    if c.weighted:
        kw["weighted_metrics"] = [_object(K, "metrics", m) for m in c.heads[0]["metrics"]] or \
            ["mae" if c.heads[0]["task"] == "regression" else "acc"]  # mae of sparse labels: Keras raises
    return kw


def _inputs_data(r, c: SimpleNamespace, n):
    arrays = {}
    for name, shape, vocab in c.inputs:
        arrays[name] = (r.integers(0, vocab, size=(n,) + shape).astype(np.int32) if vocab
                        else r.normal(size=(n,) + shape).astype(np.float32))
    return arrays if len(arrays) > 1 and _chance(r, 0.5) else (
        list(arrays.values()) if len(arrays) > 1 else next(iter(arrays.values())))


def _data(c: SimpleNamespace) -> dict:
    r = np.random.default_rng(c.data_seed)
    d = {"x": _inputs_data(r, c, c.n_train), "x_eval": _inputs_data(r, c, EVAL_SAMPLES)}
    ys = [_targets(r, h, c.n_train, c.steps) for h in c.heads]
    ys_eval = [_targets(r, h, EVAL_SAMPLES, c.steps) for h in c.heads]
    d["y"], d["y_eval"] = (ys, ys_eval) if c.n_heads > 1 else (ys[0], ys_eval[0])
    if c.extra == "validation_data":
        d["validation_data"] = (d["x_eval"], d["y_eval"])
    elif c.extra == "sample_weight":
        d["sample_weight"] = r.uniform(0.2, 2.0, size=c.n_train).astype(np.float32)
        if c.per_output_weights:  # one array per output, as a list
            d["sample_weight"] = [r.uniform(0.2, 2.0, size=c.n_train).astype(np.float32) for _ in c.heads]
    elif c.extra == "class_weight":
        classes = 2 if c.heads[0]["task"] == "binary" else c.heads[0]["units"]
        d["class_weight"] = {k: float(w) for k, w in enumerate(r.uniform(0.3, 2.0, size=classes))}
    if c.mode == "tob":
        edges = sorted({0, c.n_train, *r.integers(1, c.n_train, size=3).tolist()})
        d["batches"] = list(zip(edges[:-1], edges[1:]))
    return d


def _has_short_batch(c: SimpleNamespace) -> bool:
    """Whether a training or validation batch of the case's fit() is shorter than the others
    (evaluate()'s 16 samples come in whole batches of 8)."""
    n_train, n_val = c.n_train, 0
    if "validation_split" in c.fit_kw:
        n_train = int(c.n_train * (1.0 - c.fit_kw["validation_split"]))
        n_val = c.n_train - n_train
    elif c.extra == "validation_data":
        n_val = EVAL_SAMPLES
    batch = c.fit_kw["batch_size"]
    validation_batch = c.fit_kw.get("validation_batch_size", batch)
    return n_train % batch != 0 or (n_val % validation_batch != 0 if n_val else False)


def _expected_differences(c: SimpleNamespace) -> list[str]:
    expect = []
    if c.desc.startswith("text") and _nonlinear_in_gradient(c.family, c.opt_kw):
        expect.append("tf-sparse")
    if c.n_heads > 1 and _has_short_batch(c):
        expect.append("tf-output-loss")
    if any(h["layer_kw"].get("kernel_regularizer", ("",))[0] in ("L1", "L1L2")
           and h["layer_kw"].get("kernel_constraint", ("",))[0] == "NonNeg" for h in c.heads):
        expect.append("jax-l1-zero")  # NonNeg clips weights to exactly 0, where JAX's |w|' is +1
    return expect


def random_case(seed: int, case_class):
    """The case `random_<seed>`; case_class is keras_training_parity.Case."""
    c = _draw(seed)
    desc = c.desc + (" (Sequential)" if c.sequential else "") + (f" frozen {c.frozen}" if c.frozen else "")
    group = f"random: {desc}; heads {[h['task'] + ('/logits' if h['logits'] else '') for h in c.heads]}; " \
            f"{c.family} {c.opt_kw}; {c.mode} {c.fit_kw} {c.extra}"
    callbacks = None
    if c.callback is not None:
        name, kwargs = c.callback
        callbacks = lambda K: [getattr(K.callbacks, name)(**kwargs)]  # noqa: E731
        group += f" {name}"
    return case_class(f"random_{seed}", group, lambda K: _model(K, c), lambda K: _compile_kw(K, c),
                      lambda _rng: _data(c), c.fit_kw, mode=c.mode, expect=",".join(_expected_differences(c)),
                      may_refuse=True, callbacks=callbacks)
