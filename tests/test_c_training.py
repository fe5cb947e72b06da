"""Training in C against the NumPy program: every op's backward through one SGD step, every
optimizer, the seed models step by step, fit's History, the command-line trainer, strict warnings
and a sanitizer build of a training run."""
import struct
import subprocess

import numpy as np
import pytest

import gcomp
from gcomp import Input, Model, constraints, layers, regularizers
from gcomp.backends.c_backend import KERNEL_SOURCES
from gcomp.backends.c_training import c_program_class, render_training_c
from gcomp.backends.numpy_backend import load_module
from gcomp.build import build_c
from gcomp.errors import EmbeddingIndexError, InputDataError

from c_harness import CC, runs_with
from conftest import load_example
from test_onnx import random_inputs

pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")


def programs(model, seed=7):
    """The NumPy program and the C program of a compiled model, from the same weights and seed."""
    module = load_module(model.training_source())
    params = model._param_values()
    numpy_program = module.Program(params, seed=seed)
    c_program = c_program_class(module)(params, model._current_graph(), model._compile_config, seed=seed)
    return numpy_program, c_program


def targets_for(model, x, losses):
    preds = model.predict(x, backend="numpy")
    preds = preds if isinstance(preds, list) else [preds]
    rng = np.random.default_rng(3)
    ys = []
    for loss, p in zip(losses, preds):
        if loss == "sparse_categorical_crossentropy":
            ys.append(rng.integers(0, p.shape[-1], p.shape[:-1]).astype(np.int32))
        elif loss == "categorical_crossentropy":
            ys.append(np.eye(p.shape[-1], dtype=np.float32)[rng.integers(0, p.shape[-1], p.shape[:-1])])
        elif loss == "binary_crossentropy":
            ys.append(rng.integers(0, 2, p.shape).astype(np.float32))
        else:
            ys.append((p * 0.5 + 0.3).astype(np.float32))
    return ys


def assert_steps_agree(model, x, y, steps=3, rtol=2e-4, atol=2e-6, sample_weight=None):
    """Each train_on_batch gives the same losses in C and NumPy, and so do the weights after it."""
    numpy_program, c_program = programs(model)
    for _ in range(steps):
        a = numpy_program.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)
        b = c_program.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=rtol, abs=atol), key
        for name, value in numpy_program.params.items():
            np.testing.assert_allclose(c_program.params[name], value, rtol=rtol, atol=atol, err_msg=name)
    assert c_program.library.iterations == steps


def one_layer_model(make, shape, dtype="float32", head=True):
    x = Input(shape=shape, dtype=dtype, name="x")
    y = make()(x)
    if head:  # every gradient reaches the layer through a dense head
        y = layers.Dense(3, name="head")(layers.Flatten()(y) if len(y.shape) > 2 else y)
    return Model(x, y, name="one")


LAYERS = {
    "dense_relu": (lambda: layers.Dense(5, activation="relu"), (4,)),
    "dense_rank3": (lambda: layers.Dense(5, activation="tanh"), (3, 4)),
    "dense_no_bias": (lambda: layers.Dense(5, use_bias=False), (4,)),
    "conv1d_same_stride2": (lambda: layers.Conv1D(4, 3, strides=2, padding="same", activation="relu"), (9, 3)),
    "conv1d_causal_dilated": (lambda: layers.Conv1D(4, 3, padding="causal", dilation_rate=2), (10, 3)),
    "conv2d_valid": (lambda: layers.Conv2D(4, (3, 2), activation="sigmoid"), (6, 5, 3)),
    "conv2d_same_1x1": (lambda: layers.Conv2D(4, 1, padding="same"), (4, 4, 3)),
    "maxpool1d": (lambda: layers.MaxPooling1D(2), (8, 3)),
    "maxpool2d_same": (lambda: layers.MaxPooling2D(3, strides=2, padding="same"), (7, 6, 2)),
    "avgpool2d": (lambda: layers.AveragePooling2D(2), (6, 6, 2)),
    "avgpool1d_same": (lambda: layers.AveragePooling1D(3, strides=2, padding="same"), (7, 2)),
    "global_max": (lambda: layers.GlobalMaxPooling1D(), (6, 3)),
    "global_avg2d": (lambda: layers.GlobalAveragePooling2D(), (4, 5, 3)),
    "lstm_seq": (lambda: layers.LSTM(4, return_sequences=True), (5, 3)),
    "gru_seq_backwards": (lambda: layers.GRU(4, return_sequences=True, go_backwards=True), (5, 3)),
    "gru_reset_before_relu": (lambda: layers.GRU(3, reset_after=False, activation="relu"), (4, 2)),
    "bidirectional_gru": (lambda: layers.Bidirectional(layers.GRU(3, use_bias=False)), (5, 2)),
    "bidirectional_seq": (lambda: layers.Bidirectional(layers.LSTM(3, return_sequences=True)), (5, 2)),
    "bidirectional_ave": (lambda: layers.Bidirectional(layers.LSTM(3), merge_mode="ave"), (5, 2)),
    "lstm_last_backwards": (lambda: layers.LSTM(4, go_backwards=True), (6, 3)),
    "lstm_no_bias": (lambda: layers.LSTM(3, use_bias=False, activation="relu"), (4, 2)),
    "activation_softmax": (lambda: layers.Activation("softmax"), (6,)),
    "activation_gelu": (lambda: layers.Activation("gelu"), (6,)),
    "activation_elu": (lambda: layers.Activation("elu"), (6,)),
    "relu": (lambda: layers.ReLU(), (6,)),
    "relu_every_option": (lambda: layers.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.2), (6,)),
    "leaky_relu": (lambda: layers.LeakyReLU(), (6,)),
    "reshape": (lambda: layers.Reshape((2, 3)), (6,)),
    "dropout": (lambda: layers.Dropout(0.4), (8,)),
}


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_each_layer_trains_in_c_as_in_numpy(case):
    make, shape = LAYERS[case]
    model = one_layer_model(make, shape)
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.5), loss="mse")
    x = np.random.default_rng(0).normal(size=(3,) + shape).astype(np.float32)
    assert_steps_agree(model, x, targets_for(model, x, ["mse"])[0])


def test_embedding_gradients_touch_the_rows_used():
    t = Input(shape=(None,), dtype="int32", name="t")
    h = layers.GlobalAveragePooling1D()(layers.Embedding(20, 4, name="emb")(t))
    model = Model(t, layers.Dense(2, activation="softmax")(h))
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=1.0), loss="categorical_crossentropy")
    x = np.array([[1, 3, 3, 0], [5, 1, 2, 2]], np.int32)
    y = np.eye(2, dtype=np.float32)[[0, 1]]
    before = model.get_weights()[0].copy()
    assert_steps_agree(model, x, y, steps=2)
    numpy_program, c_program = programs(model)
    c_program.train_on_batch(x, y)
    changed = np.flatnonzero(np.any(c_program.params[next(iter(c_program.params))] != before, axis=1))
    assert set(changed) <= {0, 1, 2, 3, 5}


@pytest.mark.parametrize("merge", ["add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate"])
def test_merges_train_in_c_as_in_numpy(merge):
    a, b = Input(shape=(4,), name="a"), Input(shape=(4,), name="b")
    shared = layers.Dense(4, activation="tanh", name="shared")  # a shared layer: gradients summed
    ha, hb = shared(a), shared(b)
    merged = getattr(layers, merge)([ha, hb]) if merge != "concatenate" else layers.concatenate([ha, hb])
    model = Model([a, b], layers.Dense(2)(merged))
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.3), loss="mse")
    rng = np.random.default_rng(1)
    x = [rng.normal(size=(5, 4)).astype(np.float32) for _ in range(2)]
    assert_steps_agree(model, x, targets_for(model, x, ["mse"])[0])


OPTIMIZERS = {
    "sgd": lambda: gcomp.optimizers.SGD(learning_rate=0.1),
    "sgd_nesterov": lambda: gcomp.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
    "rmsprop_centered_momentum": lambda: gcomp.optimizers.RMSprop(momentum=0.5, centered=True),
    "rmsprop_clipnorm": lambda: gcomp.optimizers.RMSprop(clipnorm=0.01),
    "adam_amsgrad": lambda: gcomp.optimizers.Adam(learning_rate=0.01, amsgrad=True),
    "adam_global_clipnorm": lambda: gcomp.optimizers.Adam(global_clipnorm=0.05),
    "adamw": lambda: gcomp.optimizers.AdamW(learning_rate=0.01),
    "adagrad_clipvalue": lambda: gcomp.optimizers.Adagrad(learning_rate=0.1, clipvalue=0.01),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_steps_in_c_as_in_numpy(name):
    x = Input(shape=(6,), name="x")
    model = Model(x, layers.Dense(3, activation="softmax")(layers.Dense(8, activation="relu")(x)))
    model.compile(optimizer=OPTIMIZERS[name](), loss="categorical_crossentropy")
    data = np.random.default_rng(2).normal(size=(10, 6)).astype(np.float32)
    assert_steps_agree(model, data, targets_for(model, data, ["categorical_crossentropy"])[0], steps=4)


@pytest.mark.parametrize("loss", ["mse", "mae", "binary_crossentropy", "categorical_crossentropy",
                                  "sparse_categorical_crossentropy"])
def test_every_loss_with_sample_weights(loss):
    x = Input(shape=(5,), name="x")
    act = "sigmoid" if loss == "binary_crossentropy" else "softmax"
    model = Model(x, layers.Dense(4, activation=act, name="out")(x))
    model.compile(optimizer="adam", loss=loss, metrics=["acc"])
    data = np.random.default_rng(4).normal(size=(6, 5)).astype(np.float32)
    weights = np.array([1, 0, 2, 0.5, 1, 3], np.float32)
    assert_steps_agree(model, data, targets_for(model, data, [loss])[0], sample_weight=weights)


SEEDS = {"mlp": 0, "qa_two_inputs": 12, "multi_output": 300, "inception": 0, "residual": 0, "siamese_lstm": 7}


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_models_step_by_step(name):
    model = load_example(name)["model"]
    x = random_inputs(model, 2 if name in ("inception", "residual", "multi_output") else 8, SEEDS[name])
    losses = []
    for out in model.outputs:
        act = str(out._keras_history.layer.op_attrs().get("activation"))
        losses.append("categorical_crossentropy" if "softmax" in act and out.shape[-1] > 1 else "mse")
    model.compile(optimizer="rmsprop", loss=losses, loss_weights=[1.0 + i for i in range(len(losses))])
    y = targets_for(model, x, losses)
    assert_steps_agree(model, x, y if len(y) > 1 else y[0], steps=2, rtol=1e-3, atol=1e-5)


def test_fit_history_and_weights_match_the_numpy_backend():
    def make():
        t = Input(shape=(None,), dtype="int32", name="tokens")
        h = layers.LSTM(6)(layers.Embedding(30, 5)(t))
        model = Model(t, [layers.Dense(3, activation="softmax", name="cls")(h), layers.Dense(1, name="val")(h)])
        model.compile(optimizer="rmsprop", loss=["categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
                      metrics={"cls": ["acc"]})
        return model
    rng = np.random.default_rng(5)
    x = rng.integers(0, 30, (37, 9)).astype(np.int32)
    y = [np.eye(3, dtype=np.float32)[rng.integers(0, 3, 37)], rng.normal(size=(37, 1)).astype(np.float32)]
    a, b = make(), make()
    b.set_weights(a.get_weights())
    ha = a.fit(x, y, batch_size=8, epochs=3, shuffle=False, validation_split=0.2, verbose=0).history
    hb = b.fit(x, y, batch_size=8, epochs=3, shuffle=False, validation_split=0.2, verbose=0, backend="c").history
    assert ha.keys() == hb.keys()
    for key in ha:
        np.testing.assert_allclose(hb[key], ha[key], rtol=1e-4, err_msg=key)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wb, wa, rtol=1e-3, atol=1e-5)
    # evaluate and predict on the C program agree with NumPy too
    np.testing.assert_allclose(b.evaluate(x, y, verbose=0, backend="c"), a.evaluate(x, y, verbose=0), rtol=1e-4)


def test_switching_backends_keeps_weights_and_optimizer_state():
    def make():
        x = Input(shape=(4,), name="x")
        return Model(x, layers.Dense(2)(x))
    a = make()
    data = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    y = np.ones((8, 2), np.float32)
    a.compile(optimizer="adam", loss="mse")
    start = a.get_weights()
    a.train_on_batch(data, y)
    a.train_on_batch(data, y, backend="c")
    a.train_on_batch(data, y)
    reference = make()
    reference.set_weights(start)
    reference.compile(optimizer="adam", loss="mse")
    for _ in range(3):
        reference.train_on_batch(data, y)
    for wa, wr in zip(a.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(wa, wr, rtol=1e-5, atol=1e-7)


def test_c_training_errors_are_clear():
    t = Input(shape=(3,), dtype="int32", name="t")
    model = Model(t, layers.Dense(1)(layers.Flatten()(layers.Embedding(5, 2, name="emb")(t))))
    model.compile(optimizer="sgd", loss="mse")
    _, c_program = programs(model)
    with pytest.raises((EmbeddingIndexError, InputDataError), match="emb"):
        c_program.train_on_batch(np.array([[1, 2, 9]], np.int32), np.zeros((1, 1), np.float32))


def _write_tensor(path, array):
    dtype = {np.float32: 0, np.int32: 1, np.int64: 2}[array.dtype.type]
    with open(path, "wb") as f:
        f.write(b"GCT1" + struct.pack("<II", dtype, array.ndim) + struct.pack(f"<{array.ndim}Q", *array.shape))
        f.write(np.ascontiguousarray(array).tobytes())


def _make(folder, *flags):
    run = subprocess.run(["make", "-s", f"CC={CC}", *flags], cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("regularized", [False, True])
def test_cli_trains_on_files_as_fit_does(tmp_path, regularized):
    # with regularizers, the printed loss includes the weights' penalties, as fit's does; with
    # constraints, each update ends with their projections
    extras = {"kernel_regularizer": "l2", "recurrent_regularizer": regularizers.L1(0.02),
              "recurrent_constraint": constraints.MaxNorm(0.4)} if regularized else {}
    t = Input(shape=(7,), dtype="int32", name="tokens")
    h = layers.LSTM(5, **extras)(layers.Embedding(40, 6)(t))
    model = Model(t, layers.Dense(4, activation="softmax", name="label", bias_regularizer="l1" if regularized else None,
                                  kernel_constraint="non_neg" if regularized else None)(h), name="clf")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(8)
    x = rng.integers(0, 40, (21, 7)).astype(np.int32)
    y = rng.integers(0, 4, 21).astype(np.int32)
    folder, trains = build_c(model, tmp_path / "clf", max_batch=8, max_len=16)
    assert trains
    _make(folder, "CFLAGS=-O2 -Werror")
    _write_tensor(tmp_path / "x.bin", x)
    _write_tensor(tmp_path / "y.bin", y)
    run = subprocess.run(["./clf_cli", "train", "weights.bin", str(tmp_path / "trained.bin"), "2", "8",
                          str(tmp_path / "x.bin"), str(tmp_path / "y.bin")], cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    printed = [float(line.split("loss: ")[1]) for line in run.stdout.splitlines()]
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, backend="c").history
    np.testing.assert_allclose(printed, history["loss"], rtol=1e-5)
    # the trained weights file holds fit's weights
    run = subprocess.run(["./clf_cli", "predict", str(tmp_path / "trained.bin"), str(tmp_path / "p.bin"),
                          str(tmp_path / "x.bin")], cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    raw = (tmp_path / "p.bin").read_bytes()
    predicted = np.frombuffer(raw[12 + 16:], np.float32).reshape(21, 4)
    np.testing.assert_allclose(predicted, model.predict(x, backend="numpy"), rtol=1e-4, atol=1e-6)
    bad = subprocess.run(["./clf_cli", "train", "weights.bin", str(tmp_path / "t2.bin"), "1", "99",
                          str(tmp_path / "x.bin"), str(tmp_path / "y.bin")], cwd=folder, capture_output=True, text=True)
    assert bad.returncode == 2 and "BATCH_SIZE must be in 1..8" in bad.stderr
    assert not (tmp_path / "t2.bin").exists()


@pytest.mark.parametrize("std", ["c99", "c11"])
def test_training_code_of_every_seed_model_compiles_without_warnings(tmp_path, std):
    for name in SEEDS:
        model = load_example(name)["model"]
        model.compile(optimizer="adam", loss="mse")
        folder = tmp_path / name
        folder.mkdir()
        sources = render_training_c(model._current_graph(), model._compile_config, 4, 64)
        for file, text in sources.items():
            (folder / file).write_text(text)
        units = [f for f in sources if f.endswith(".c") and f[:-2] not in KERNEL_SOURCES]  # kernels: own tests
        run = subprocess.run([CC, f"-std={std}", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O0", "-c", *units],
                             cwd=folder, capture_output=True, text=True)
        assert run.returncode == 0, f"{name}: {run.stderr[:3000]}"


def test_rendering_is_deterministic():
    model = load_example("qa_two_inputs")["model"]
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    graph = model._current_graph()
    assert render_training_c(graph, model._compile_config, 8, 32) == render_training_c(graph, model._compile_config, 8, 32)


def test_training_run_under_address_and_undefined_sanitizers(tmp_path):
    if not runs_with(tmp_path, "-fsanitize=address,undefined"):
        pytest.skip("this compiler has no AddressSanitizer/UBSan runtime")
    t = Input(shape=(None,), dtype="int32", name="tokens")
    x2 = Input(shape=(6, 6, 2), name="image")
    h = layers.LSTM(4, return_sequences=True)(layers.Embedding(12, 3)(t))
    h = layers.GlobalMaxPooling1D()(layers.Conv1D(3, 2, padding="causal")(h))
    g = layers.GlobalAveragePooling2D()(layers.MaxPooling2D(2)(layers.Conv2D(3, 3, padding="same")(x2)))
    merged = layers.concatenate([layers.Dropout(0.3)(h), g])
    model = Model([t, x2], layers.Dense(2, activation="softmax", name="out")(merged), name="san")
    model.compile(optimizer=gcomp.optimizers.Adam(clipnorm=1.0), loss="categorical_crossentropy")
    folder, _ = build_c(model, tmp_path / "san", max_batch=4, max_len=9)
    _make(folder, "CFLAGS=-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all",
          "LDFLAGS=-fsanitize=address,undefined")
    rng = np.random.default_rng(9)
    _write_tensor(tmp_path / "t.bin", rng.integers(0, 12, (7, 9)).astype(np.int32))
    _write_tensor(tmp_path / "i.bin", rng.normal(size=(7, 6, 6, 2)).astype(np.float32))
    _write_tensor(tmp_path / "y.bin", np.eye(2, dtype=np.float32)[rng.integers(0, 2, 7)])
    run = subprocess.run(["./san_cli", "train", "weights.bin", str(tmp_path / "w.bin"), "2", "4",
                          str(tmp_path / "t.bin"), str(tmp_path / "i.bin"), str(tmp_path / "y.bin")],
                         cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("loss:") == 2
