"""Training: compile/fit/evaluate with Keras's API and History keys, the training graph, gradient
accumulation for shared layers, the emitted program, callbacks and data errors."""
import subprocess
import sys

import numpy as np
import pytest

import gcomp
from gcomp import Input, Model, Sequential, callbacks, layers
from gcomp.autodiff import LossSpec, training_graph
from gcomp.build import build_c
from gcomp.errors import InputDataError
from gcomp.ir import print_graph

from conftest import load_example


def mlp(name="m"):
    x = Input(shape=(6,), name="x")
    h = layers.Dense(8, activation="relu", name=f"{name}_h")(x)
    return Model(x, layers.Dense(3, activation="softmax", name=f"{name}_out")(h), name=name)


def toy_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)
    return x, np.eye(3, dtype="float32")[labels]


def test_history_keys_and_values_follow_keras():
    model = mlp()
    assert model.optimizer is None and model.loss is None  # Keras's attributes before compile()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["acc"])
    assert model.loss == "categorical_crossentropy" and model.optimizer.name == "adam"
    x, y = toy_data()
    history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, shuffle=False, verbose=0)
    assert list(history.history) == ["acc", "loss", "val_acc", "val_loss"]
    assert all(len(v) == 3 and all(isinstance(f, float) for f in v) for v in history.history.values())
    assert history.epoch == [0, 1, 2]
    assert history.params == {"verbose": 0, "epochs": 3, "steps": 3}  # 36 training samples in batches of 16
    assert model.history is history  # Keras sets model.history after each epoch
    # the reported val_loss is evaluate() on the last quarter, before shuffling
    val_loss, val_acc = model.evaluate(x[36:], y[36:], verbose=0)
    assert val_loss == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    assert val_acc == pytest.approx(history.history["val_acc"][-1], rel=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_validation_freq_and_validation_batch_size(backend):
    model = mlp("vf")
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc"])
    x, y = toy_data()
    seen = []
    watch = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(sorted(logs)))
    history = model.fit(x, y, epochs=5, batch_size=8, validation_data=(x[:20], y[:20]), validation_freq=2,
                        validation_batch_size=7, shuffle=False, verbose=0, callbacks=[watch], backend=backend)
    # Keras: epochs 2 and 4 (1-based) validate; the val_ lists hold only those
    assert [len(history.history[k]) for k in ("loss", "val_loss", "val_acc")] == [5, 2, 2]
    assert ["val_loss" in keys for keys in seen] == [False, True, False, True, False]
    # the last validation is evaluate() after epoch 4: any batch size gives the same mean (rounding aside)
    history = model.fit(x, y, epochs=1, batch_size=8, validation_data=(x[:20], y[:20]), validation_freq=[1],
                        validation_batch_size=3, shuffle=False, verbose=0, backend=backend)
    val_loss, _ = model.evaluate(x[:20], y[:20], batch_size=20, verbose=0, backend=backend)
    assert history.history["val_loss"][0] == pytest.approx(val_loss, rel=1e-5)
    with pytest.raises(ValueError, match="Expected `validation_freq` to be a list or int"):
        model.fit(x, y, validation_freq=0.5, verbose=0, backend=backend)
    with pytest.raises(ValueError, match="validation_batch_size must be a positive int, got -1"):
        model.fit(x, y, validation_batch_size=-1, verbose=0, backend=backend)


def test_weighted_metrics_use_the_sample_weights_and_keras_names():
    model = mlp("wm")
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.0), loss="categorical_crossentropy",
                  metrics=["acc"], weighted_metrics=["acc", "mse"])
    x, y = toy_data(n=20)
    weights = np.linspace(0.0, 2.0, 20).astype(np.float32)
    logs = model.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    # Keras: a weighted metric named like a plain one becomes weighted_<name>
    assert sorted(logs) == ["acc", "loss", "mse", "weighted_acc"]
    pred = model.predict(x, backend="numpy")
    hits = (pred.argmax(1) == y.argmax(1)).astype(np.float64)
    assert logs["acc"] == pytest.approx(hits.mean(), rel=1e-6)
    assert logs["weighted_acc"] == pytest.approx((hits * weights).sum() / weights.sum(), rel=1e-6)
    per_sample_mse = ((pred - y) ** 2).mean(axis=1)
    assert logs["mse"] == pytest.approx((per_sample_mse * weights).sum() / weights.sum(), rel=1e-5)
    history = model.fit(x, y, sample_weight=weights, batch_size=20, epochs=1, verbose=0).history
    assert history["weighted_acc"][0] == pytest.approx(logs["weighted_acc"], rel=1e-6)
    # Keras's list (_flatten_metrics_in_order): "loss", then the logs named by each metric's own name,
    # metrics then weighted_metrics, repeats included: "acc" twice, then the rest by name
    as_list = model.evaluate(x, y, sample_weight=weights, verbose=0)
    assert as_list == [logs["loss"], logs["acc"], logs["acc"], logs["mse"], logs["weighted_acc"]]


def test_epoch_loss_is_the_batch_size_weighted_mean_of_batch_losses():
    model = mlp()
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.0), loss="categorical_crossentropy")
    x, y = toy_data(40)
    before = model.get_weights()
    history = model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    batch_losses = [model.test_on_batch(x[i:i + 16], y[i:i + 16]) for i in (0, 16, 32)]
    expected = (16 * batch_losses[0] + 16 * batch_losses[1] + 8 * batch_losses[2]) / 40
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-6)
    for a, b in zip(before, model.get_weights()):  # learning rate 0 changes nothing
        np.testing.assert_array_equal(a, b)


def test_one_sgd_step_equals_the_hand_computed_gradient():
    x_in = Input(shape=(3,), name="x")
    model = Model(x_in, layers.Dense(2, name="d")(x_in))
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.1), loss="mse")
    kernel, bias = model.get_weights()
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], "float32")
    y = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    loss = model.train_on_batch(x, y)
    pred = x @ kernel + bias
    assert loss == pytest.approx(np.mean((pred - y) ** 2), rel=1e-6)
    grad = 2 * (pred - y) / y.size
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, kernel - 0.1 * x.T @ grad, rtol=1e-6)
    np.testing.assert_allclose(new_bias, bias - 0.1 * grad.sum(0), rtol=1e-6)


def test_shared_layer_gradients_are_summed():
    shared = layers.Dense(2, name="shared", use_bias=False)
    a, b = Input(shape=(3,), name="a"), Input(shape=(3,), name="b")
    model = Model([a, b], layers.add([shared(a), shared(b)], name="sum"))
    graph, layout = training_graph(model._current_graph(), [LossSpec("sum", "mse")])
    text = print_graph(graph)
    assert "%shared/kernel/grad_sum = add_n(%shared#1/vjp, %shared/vjp)" in text
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=1.0), loss="mse")
    (kernel,) = model.get_weights()
    xa, xb = np.ones((1, 3), "float32"), np.full((1, 3), 2.0, "float32")
    y = np.zeros((1, 2), "float32")
    model.train_on_batch([xa, xb], y)
    pred = xa @ kernel + xb @ kernel
    grad_out = 2 * pred / 2
    np.testing.assert_allclose(model.get_weights()[0], kernel - (xa.T @ grad_out + xb.T @ grad_out), rtol=1e-5)


def test_nothing_is_computed_for_integer_inputs_and_frozen_layers():
    t = Input(shape=(None,), dtype="int32", name="t")
    emb = layers.Embedding(10, 4, name="emb")
    emb.trainable = False
    model = Model(t, layers.Dense(1, name="d")(layers.GlobalAveragePooling1D(name="g")(emb(t))))
    graph, layout = training_graph(model._current_graph(), [LossSpec("d", "mse")])
    text = print_graph(graph)
    assert "emb/vjp" not in text and "g/vjp" not in text  # frozen embedding: no backward below d
    assert layout.trainable == ["d/kernel", "d/bias"]
    model.compile(optimizer="sgd", loss="mse")
    frozen = emb.get_weights()[0].copy()
    model.fit(np.array([[1, 2, 3]]), np.ones((1, 1)), verbose=0)
    np.testing.assert_array_equal(emb.get_weights()[0], frozen)


def test_multi_output_keys_loss_weights_and_dict_targets():
    x = Input(shape=(4,), name="x")
    h = layers.Dense(5, activation="relu", name="h")(x)
    model = Model(x, [layers.Dense(1, name="age")(h), layers.Dense(3, activation="softmax", name="income")(h),
                      layers.Dense(1, activation="sigmoid", name="gender")(h)])
    model.compile(optimizer="rmsprop", loss={"age": "mse", "income": "categorical_crossentropy",
                                             "gender": "binary_crossentropy"},
                  loss_weights={"age": 0.25, "income": 1.0, "gender": 10.0},
                  metrics={"income": ["acc"], "gender": ["acc"]})
    rng = np.random.default_rng(0)
    data = rng.normal(size=(20, 4)).astype("float32")
    y = {"age": rng.normal(size=(20, 1)), "income": np.eye(3)[rng.integers(0, 3, 20)],
         "gender": rng.integers(0, 2, (20, 1)).astype("float32")}
    history = model.fit(data, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    assert sorted(history.history) == ["age_loss", "gender_acc", "gender_loss", "income_acc", "income_loss", "loss",
                                       "val_age_loss", "val_gender_acc", "val_gender_loss", "val_income_acc",
                                       "val_income_loss", "val_loss"]
    results = model.evaluate(data, [y["age"], y["income"], y["gender"]], verbose=0, return_dict=True)
    total = 0.25 * results["age_loss"] + results["income_loss"] + 10 * results["gender_loss"]
    assert results["loss"] == pytest.approx(total, rel=1e-5)


@pytest.mark.parametrize("name, epochs, rate", [("mlp", 12, 0.003), ("qa_two_inputs", 10, 0.02),
                                                ("siamese_lstm", 8, 0.003), ("multi_output", 5, 0.001),
                                                ("inception", 5, 3e-4), ("residual", 5, 3e-4)])
def test_loss_decreases_on_a_learnable_task_for_every_seed_model(name, epochs, rate):
    from test_onnx import random_inputs
    model = load_example(name)["model"]
    lengths = {"qa_two_inputs": 12, "siamese_lstm": 6, "multi_output": 300}
    x = random_inputs(model, 16 if name in ("multi_output", "inception", "residual") else 32, lengths.get(name, 0))
    # a target the model can fit: its own initial predictions shifted, so the loss starts high
    targets = model.predict(x, backend="numpy")
    targets = targets if isinstance(targets, list) else [targets]
    losses = []
    for out, t in zip(model.outputs, targets):
        if out.shape[-1] > 1 and "softmax" in str(out._keras_history.layer.op_attrs().get("activation")):
            losses.append("categorical_crossentropy")
        else:
            losses.append("mse")
    y = [np.eye(t.shape[-1])[np.argmin(t, axis=-1)] if l == "categorical_crossentropy" else t * 0.5 + 0.3
         for l, t in zip(losses, targets)]
    model.compile(optimizer=gcomp.optimizers.Adam(learning_rate=rate), loss=losses)
    history = model.fit(x, y if len(y) > 1 else y[0], epochs=epochs, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.9 * history.history["loss"][0], history.history["loss"]


def test_emitted_program_gives_the_same_losses_as_fit(tmp_path):
    model = mlp("prog")
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["acc"])
    x, y = toy_data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    from gcomp.build import build_numpy
    path, trains = build_numpy(model, tmp_path / "prog")
    assert trains and sorted(p.name for p in path.iterdir()) == ["README.md", "model.py", "weights.npz"]
    history = model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    script = ("import sys, json, numpy as np; sys.modules['gcomp'] = None; import model; m = model.load(); "
              "h = m.fit(np.load('../x.npy'), np.load('../y.npy'), epochs=3, batch_size=16, shuffle=False, "
              "verbose=0); print(json.dumps(h))")
    run = subprocess.run([sys.executable, "-c", script], cwd=path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    import json
    emitted = json.loads(run.stdout)
    assert emitted.keys() == history.history.keys()
    for key in emitted:
        np.testing.assert_allclose(emitted[key], history.history[key], rtol=1e-6)


def test_build_of_an_uncompiled_model_says_it_is_inference_only(tmp_path):
    from test_cli import EXAMPLES, run_cli
    run = run_cli("build", str(EXAMPLES / "mlp.py"), "--target", "numpy", "-o", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert "inference only: the model was never compiled with a loss" in run.stdout
    script = ("import sys, numpy as np; import model; m = model.load(); print(m.predict(np.ones((2, 64))).shape); "
              "m.train_on_batch(np.ones((2, 64)), np.ones((2, 10)))")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "out", capture_output=True, text=True)
    assert "(2, 10)" in done.stdout and "never compiled" in done.stderr


def test_callbacks(tmp_path):
    model = mlp("cb")
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.0), loss="categorical_crossentropy")
    x, y = toy_data()
    seen = []
    stopper = callbacks.EarlyStopping(monitor="loss", patience=1)
    log = tmp_path / "log.csv"
    checkpoint = tmp_path / "w{epoch}.npz"
    history = model.fit(x, y, epochs=10, verbose=0, shuffle=False, callbacks=[
        stopper, callbacks.CSVLogger(log), callbacks.ModelCheckpoint(checkpoint),
        callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append((epoch, round(logs["loss"], 6))))])
    assert len(history.history["loss"]) == 2 and stopper.stopped_epoch == 1  # no improvement at lr 0
    assert [e for e, _ in seen] == [0, 1]
    assert log.read_text().splitlines()[0] == "epoch,loss" and len(log.read_text().splitlines()) == 3
    model2 = mlp("cb")
    model2.load_weights(tmp_path / "w2.npz")
    for a, b in zip(model.get_weights(), model2.get_weights()):
        np.testing.assert_array_equal(a, b)


def linear_model(name="lin"):
    x = Input(shape=(3,), name="x")
    return Model(x, layers.Dense(1, name=f"{name}_out")(x), name=name)


def sgd_step(weights, x, y, rate):
    """One plain SGD step of mse on a Dense(1), by hand: d/dW mean((xW + b - y)^2) = 2 x^T e / n."""
    kernel, bias = (w.astype(np.float64) for w in weights)
    error = x @ kernel + bias - y
    return [kernel - rate * 2 * x.T @ error / len(x), bias - rate * 2 * error.sum(0) / len(x)]


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_model_optimizer_is_the_one_that_trains(backend):
    # Keras: model.optimizer is the object given to compile; its learning_rate, set between calls,
    # is the rate of the next step, and its iterations count the steps taken
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(16, 3)).astype(np.float32), rng.normal(size=(16, 1)).astype(np.float32)
    model = linear_model()
    optimizer = gcomp.optimizers.SGD(learning_rate=0.1)
    model.compile(optimizer=optimizer, loss="mse")
    assert model.optimizer is optimizer
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, backend=backend)
    assert optimizer.iterations == 4
    for rate in (0.0, 0.05):
        optimizer.learning_rate = rate
        expected = sgd_step(model.get_weights(), x, y, np.float32(rate))
        model.train_on_batch(x, y, backend=backend)
        for got, want in zip(model.get_weights(), expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert optimizer.iterations == 6


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_input_dropout_acts_in_training_only_and_the_c_backend_refuses_it(kind):
    from gcomp.backends.c_backend import CBackendError
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(6, 5, 3)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)

    def model(rate):
        inp = Input(shape=(5, 3), name="seq")
        return Model(inp, getattr(layers, kind)(2, dropout=rate, name="rnn")(inp))
    dropped, plain = model(0.5), model(0.0)
    plain.set_weights(dropped.get_weights())
    np.testing.assert_array_equal(dropped.predict(x), plain.predict(x))  # inference: no dropout
    for m in (dropped, plain):
        m.compile(optimizer="sgd", loss="mse")
    with pytest.raises(CBackendError, match=f'{kind} "rnn": the C backend does not train with dropout'):
        dropped.train_on_batch(x, y, backend="c")
    assert dropped.train_on_batch(x, y) != pytest.approx(plain.train_on_batch(x, y), rel=1e-6)


def test_gru_input_dropout_gradients_use_the_steps_mask():
    """One mask per sequence multiplies the GRU's input at every step; the input gradient (into
    the Dense before it) carries the same mask: float64 gradients against central differences with
    the masks of a fixed stream."""
    from differential import check_gradients
    x = Input(shape=(4, 3), name="x")
    h = layers.GRU(3, dropout=0.5, return_sequences=True)(layers.Dense(3, activation="tanh")(x))
    model = Model(x, layers.Dense(2)(layers.Flatten()(h)))
    data = np.random.default_rng(8).normal(size=(3, 4, 3)).astype(np.float32)
    check_gradients(model, [data], seed=5)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_freezing_a_layer_then_compiling_again_freezes_it(backend):
    # the transfer-learning workflow: train, set layer.trainable = False, compile, train on
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    inp = Input(shape=(3,), name="x")
    base = layers.Dense(4, activation="tanh", name="base")
    model = Model(inp, layers.Dense(1, name="head")(base(inp)))
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch(x, y, backend=backend)
    base.trainable = False
    model.compile(optimizer="adam", loss="mse")
    frozen, head = base.get_weights(), model.get_layer("head").get_weights()
    model.fit(x, y, epochs=2, verbose=0, backend=backend)
    for before, after in zip(frozen, base.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert not np.array_equal(head[0], model.get_layer("head").get_weights()[0])


@pytest.mark.parametrize("backend", ["numpy", "c"])
@pytest.mark.parametrize("scale", [128.0, 0.3])
def test_loss_scale_factor_scales_the_loss_that_the_optimizer_unscales(backend, scale):
    # Keras differentiates optimizer.scale_loss(loss) and the optimizer divides the gradients by the
    # factor: the step is the unscaled one (to float32 rounding) and the reported loss is unscaled
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    model = linear_model()
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.1, loss_scale_factor=scale), loss="mse")
    kernel, bias = model.get_weights()
    expected = sgd_step([kernel, bias], x, y, np.float32(0.1))
    loss = model.train_on_batch(x, y, backend=backend)
    assert loss == pytest.approx(np.mean((x @ kernel + bias - y) ** 2), rel=1e-5)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_learning_rate_scheduler_sets_each_epochs_rate(backend):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    model = linear_model()
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.1), loss="mse")
    expected, rates = model.get_weights(), [0.1, 0.05, 0.025]
    for rate in rates:  # one full batch per epoch
        expected = sgd_step(expected, x, y, np.float32(rate))
    seen = []
    schedule = callbacks.LearningRateScheduler(lambda epoch, lr: seen.append(lr) or (lr if epoch == 0 else lr / 2))
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[schedule], backend=backend)
    # logs get the rate as Keras reads its float32 variable; the schedule sees the previous one
    assert history.history["learning_rate"] == [float(np.float32(r)) for r in rates]
    assert seen == [float(np.float32(r)) for r in [0.1, 0.1, 0.05]]
    assert list(history.history) == ["loss", "learning_rate"]  # added after the epoch's logs, as in Keras
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_learning_rate_scheduler_takes_one_argument_schedules_and_wants_floats():
    model = linear_model()
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.1), loss="mse")
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda e: 0.5 ** e)])
    assert history.history["learning_rate"] == [1.0, 0.5]
    with pytest.raises(ValueError, match="should be a float. Got: 1"):
        model.fit(x, y, verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda e, lr: 1)])


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_a_schedule_gives_every_step_its_rate(backend):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(12, 3)).astype(np.float32), rng.normal(size=(12, 1)).astype(np.float32)
    model = linear_model()
    schedule = gcomp.optimizers.schedules.ExponentialDecay(0.2, decay_steps=2, decay_rate=0.5, staircase=True)
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=schedule), loss="mse")
    expected = model.get_weights()
    for step in range(6):  # batches of 4, two epochs: rates 0.2, 0.2, 0.1, 0.1, 0.05, 0.05
        batch = slice(4 * (step % 3), 4 * (step % 3) + 4)
        expected = sgd_step(expected, x[batch], y[batch], np.float32(0.2 * 0.5 ** (step // 2)))
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False, backend=backend)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert model.optimizer.learning_rate == float(np.float32(0.025))  # the rate of step 6, the next one
    with pytest.raises(TypeError, match="not settable"):
        model.optimizer.learning_rate = 0.1


def test_schedules_the_programs_cannot_hold_are_refused_clearly(tmp_path):
    class Halving(gcomp.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return 0.1 / 2 ** step
    with pytest.raises(ValueError, match="Halving is not one of Keras's"):
        linear_model().compile(optimizer=gcomp.optimizers.SGD(learning_rate=Halving()), loss="mse")
    with pytest.raises(ValueError, match="not a plain callable"):
        gcomp.optimizers.SGD(learning_rate=lambda: 0.1)
    # the standalone C program trains at one rate: a schedule is a one-line error, and no folder
    source = tmp_path / "model.py"
    source.write_text("import gcomp\nfrom gcomp import Input, Model, layers\ni = Input(shape=(3,))\n"
                      "m = Model(i, layers.Dense(1)(i))\nm.compile(optimizer=gcomp.optimizers.SGD(learning_rate="
                      "gcomp.optimizers.schedules.CosineDecay(0.1, 10)), loss='mse')\n")
    run = subprocess.run([sys.executable, "-m", "gcomp.cli", "build", str(source), "--target", "c", "-o",
                          str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and "learning-rate schedule (CosineDecay)" in run.stderr
    assert not (tmp_path / "out").exists()
    # the NumPy program holds the schedule and trains with it
    run = subprocess.run([sys.executable, "-m", "gcomp.cli", "build", str(source), "--target", "numpy", "-o",
                          str(tmp_path / "py")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "CosineDecay" in (tmp_path / "py" / "model.py").read_text()


class ScriptedLogs(callbacks.Callback):
    """Replaces each epoch's val_loss with the next value of a script (before the callbacks after it)."""

    def __init__(self, values):
        super().__init__()
        self.values = list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def test_early_stopping_restores_the_best_weights_even_without_stopping():
    # Keras 3: restore_best_weights restores at the end of training, stopped early or not; a
    # baseline the best does not beat keeps the wait running
    model = linear_model()
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.1), loss="mse")
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    after = []
    keep = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: after.append(model.get_weights()))
    stopper = callbacks.EarlyStopping(patience=5, restore_best_weights=True)
    model.fit(x, y, epochs=4, verbose=0, callbacks=[ScriptedLogs([1.0, 0.5, 0.8, 0.9]), keep, stopper])
    assert stopper.stopped_epoch == 0 and stopper.best_epoch == 1
    for got, want in zip(model.get_weights(), after[1]):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(after[1][0], after[3][0])
    script = [1.0, 0.5, 0.6, 0.7, 0.8, 0.9]  # without a baseline, epoch 1 restarts the wait: stop at 3
    for baseline, stopped in ((None, 3), (0.1, 2)):
        stopper = callbacks.EarlyStopping(patience=2, baseline=baseline)
        history = model.fit(x, y, epochs=6, verbose=0, callbacks=[ScriptedLogs(script), stopper])
        assert stopper.stopped_epoch == stopped and len(history.history["loss"]) == stopped + 1
    with pytest.warns(UserWarning, match="`val_acc` which is not available"):
        history = model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.EarlyStopping(monitor="val_acc")])
    assert len(history.history["loss"]) == 2


def test_model_checkpoint_keeps_the_best_by_monitor(tmp_path):
    model = linear_model()
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.1), loss="mse")
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    saved = []
    checkpoint = callbacks.ModelCheckpoint(tmp_path / "w{epoch}.npz", save_best_only=True, initial_value_threshold=0.9)
    watch = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: saved.append(sorted(p.name for p in tmp_path.iterdir())))
    model.fit(x, y, epochs=4, verbose=0, callbacks=[ScriptedLogs([1.0, 0.5, 0.7, 0.4]), checkpoint, watch])
    # 1.0 does not beat the threshold 0.9; 0.5 and 0.4 improve, 0.7 does not
    assert saved == [[], ["w2.npz"], ["w2.npz"], ["w2.npz", "w4.npz"]]
    assert checkpoint.best == 0.4


def test_reduce_lr_on_plateau_follows_keras_patience_cooldown_and_min_lr():
    model = linear_model()
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.4), loss="mse")
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    # epoch 0 improves (the first always does); 1.0 -> 0.95 is within min_delta 0.1, no improvement
    script = [1.0, 0.95, 0.95, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6]
    reduce = callbacks.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.1, cooldown=1, min_lr=0.06)
    history = model.fit(x, y, epochs=len(script), verbose=0, callbacks=[ScriptedLogs(script), reduce])
    # epochs 1, 2 wait -> 0.2 after epoch 2; 3 (cooldown) improves; 4, 5 wait -> 0.1 after 5;
    # 6 ends the cooldown and, out of it by then, waits (Keras's order); 7 waits -> max(0.05, 0.06).
    # Logs hold the rate each epoch trained with.
    rates = [0.4, 0.4, 0.4, 0.2, 0.2, 0.2, 0.1, 0.1, 0.06]
    assert history.history["learning_rate"] == [float(np.float32(r)) for r in rates]
    assert model.optimizer.learning_rate == float(np.float32(0.06))
    with pytest.raises(ValueError, match="factor >= 1.0"):
        callbacks.ReduceLROnPlateau(factor=1.0)
    with pytest.warns(UserWarning, match="`nothing` which is not available"):
        model.fit(x, y, verbose=0, callbacks=[callbacks.ReduceLROnPlateau(monitor="nothing")])


def test_nan_loss_is_a_clear_error_and_terminate_on_nan_stops():
    model = mlp("nan")
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = toy_data()
    x[20] = np.nan
    with pytest.raises(FloatingPointError, match="batch 1: the loss of output 'nan_out'"):
        model.fit(x, y, batch_size=16, shuffle=False, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0,
                        callbacks=[callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1


@pytest.mark.parametrize("call, error, message", [
    (lambda m, x, y: m.fit(x, y[:, :2], verbose=0), ValueError, 'output "t_out"'),
    (lambda m, x, y: m.fit(x, y[:10], verbose=0), InputDataError, "different numbers of samples"),
    (lambda m, x, y: m.fit({"wrong": x}, y, verbose=0), InputDataError, "unknown key(s) ['wrong']"),
    (lambda m, x, y: m.fit(x, {"nope": y}, verbose=0), InputDataError, "unknown output name(s) ['nope']"),
])
def test_data_errors_name_what_is_wrong(call, error, message):
    model = mlp("t")
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = toy_data()
    with pytest.raises(error) as e:
        call(model, x, y)
    assert message in str(e.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(optimizer="adamm", loss="mse"), "unknown optimizer 'adamm'"),
    (dict(optimizer="sgd", loss="mse_typo"), "unknown loss 'mse_typo'"),
    (dict(optimizer="sgd", loss="mse", metrics=["acuracy"]), "unknown metric 'acuracy'"),
    (dict(optimizer="sgd", loss={"nope": "mse"}), "loss has key(s) ['nope'], which are not outputs"),
    (dict(optimizer="sgd", loss="mse", loss_weights=[1.0, 2.0]), "loss_weights has 2 entries but the model has 1"),
])
def test_compile_errors(kwargs, message):
    with pytest.raises(ValueError) as e:
        mlp("c").compile(**kwargs)
    assert message in str(e.value)


@pytest.mark.parametrize("alias, canonical", [("MSE", "mse"), ("mean_squared_error", "mse"), ("MeanSquaredError", "mse"),
                                              ("MAE", "mae"), ("MeanAbsoluteError", "mae"),
                                              ("bce", "binary_crossentropy"), ("BCE", "binary_crossentropy"),
                                              ("BinaryCrossentropy", "binary_crossentropy"),
                                              ("CategoricalCrossentropy", "categorical_crossentropy")])
def test_keras_loss_names_train_as_the_loss_they_name(alias, canonical):
    """keras.losses.get's aliases and class names: the same History and weights as the plain name."""
    x, y = toy_data()
    results = []
    for loss in (alias, canonical):
        gcomp.utils.set_random_seed(3)
        model = mlp("a")
        model.compile(optimizer="sgd", loss=loss)
        history = model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
        results.append((history["loss"], model.get_weights()))
    assert results[0][0] == results[1][0]
    assert all(np.array_equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_keras_metric_strings_are_their_history_keys():
    """A metric string is its History key in Keras, whatever alias or class name it is."""
    model = mlp("k")
    model.compile(optimizer="sgd", loss="categorical_crossentropy",
                  metrics=["Accuracy", "MSE", "CategoricalAccuracy", "categorical_crossentropy"])
    x, y = toy_data()
    p = model.predict(x, backend="numpy")  # one batch: the epoch's metrics are those of these predictions
    history = model.fit(x, y, epochs=1, batch_size=48, shuffle=False, verbose=0).history
    assert sorted(history) == ["Accuracy", "CategoricalAccuracy", "MSE", "categorical_crossentropy", "loss"]
    accuracy = np.mean(p.argmax(1) == y.argmax(1))
    assert history["Accuracy"] == history["CategoricalAccuracy"] == [pytest.approx(accuracy)]
    assert history["MSE"] == [pytest.approx(np.mean((p - y) ** 2), rel=1e-5)]
    crossentropy = -np.mean(np.log(np.clip(p[y == 1], 1e-7, 1 - 1e-7)))
    assert history["categorical_crossentropy"] == history["loss"] == [pytest.approx(crossentropy, rel=1e-5)]


@pytest.mark.parametrize("name, units, targets, picked", [
    ("crossentropy", 3, "labels", "sparse_categorical_crossentropy"),
    ("ce", 3, "labels_column", "sparse_categorical_crossentropy"),
    ("CE", 3, "onehot", "categorical_crossentropy"),
    ("Crossentropy", 1, "binary", "binary_crossentropy"),
])
def test_crossentropy_is_picked_by_the_shapes_of_targets_and_predictions(name, units, targets, picked):
    """Keras's get_loss: binary when the prediction has one unit, sparse when the targets have a lower
    rank or a last dim of 1, else categorical; decided by the first targets, then kept."""
    x, y = toy_data()
    labels = y.argmax(1)
    y = {"labels": labels, "labels_column": labels[:, None], "onehot": y,
         "binary": (labels > 0).astype("float32")[:, None]}[targets]
    inp = Input(shape=(6,), name="x")
    model = Model(inp, layers.Dense(units, activation="sigmoid" if units == 1 else "softmax", name="out")(inp))
    model.compile(optimizer="sgd", loss=name)
    if units == 1:  # decided at compile
        assert model._compile_config["losses"][0]["loss"] == picked
    model.train_on_batch(x, y)
    assert model._compile_config["losses"][0]["loss"] == picked
    assert f"'{picked}'" in model.training_source() or f'"{picked}"' in model.training_source()


def test_an_undecided_crossentropy_cannot_be_built_without_targets():
    model = mlp("u")
    model.compile(optimizer="sgd", loss="crossentropy")
    with pytest.raises(ValueError, match="loss 'crossentropy' for output 'u_out' is categorical or sparse"):
        model.training_source()


def test_a_metric_whose_shapes_do_not_fit_the_targets_is_a_clear_error():
    """mae of sparse labels against class probabilities: Keras raises for (N,) labels; gcomp names the
    metric, the output and both shapes (also for (N, 1) labels, where Keras broadcasts them)."""
    model = mlp("s")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["mae"])
    x, y = toy_data(n=10)
    with pytest.raises(InputDataError, match=r"metric 'mae' of output 's_out' cannot compare targets of shape "
                                             r"\(5,\) with predictions of shape \(5, 3\)"):
        model.fit(x, y.argmax(1)[:, None], batch_size=5, verbose=0)


def test_a_sample_weight_weighs_every_step_of_a_per_step_output():
    """(N,) sample weights against an (N, T, d) output: sample n's weight on each of its steps, the sum
    divided by N T (sum over batch size). Keras 3 raises here (it cannot broadcast (N,) against the
    (N, T) losses); per-step (N, T) weights are refused with a clear error."""
    rng = np.random.default_rng(0)
    seq = Input(shape=(5, 3), name="seq")
    model = Model(seq, layers.Dense(2, name="per_step")(seq))
    model.compile(optimizer="sgd", loss="mse")
    x, y = rng.normal(size=(4, 5, 3)).astype("float32"), rng.normal(size=(4, 5, 2)).astype("float32")
    weights = np.array([0.5, 1.0, 2.0, 0.0], "float32")
    per_step = ((model.predict(x, backend="numpy") - y) ** 2).mean(-1)
    expected = (per_step * weights[:, None]).sum() / per_step.size
    assert model.evaluate(x, y, sample_weight=weights, verbose=0) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(InputDataError, match=r"sample_weight for 'per_step' has shape \(4, 5\): per-step"):
        model.evaluate(x, y, sample_weight=np.ones((4, 5), "float32"), verbose=0)


def test_fit_before_compile():
    x, y = toy_data()
    with pytest.raises(RuntimeError, match="You must call compile"):
        mlp("u").fit(x, y)


def test_optimizer_objects_and_keras_refusing_lr():
    with pytest.raises(ValueError, match="Keras 3 refuses `lr`"):
        gcomp.optimizers.Adam(lr=0.1)
    opt = gcomp.optimizers.RMSprop(learning_rate=0.01, rho=0.8)
    model = mlp("o")
    model.compile(optimizer=opt, loss="categorical_crossentropy")
    assert model._compile_config["optimizer"]["class_name"] == "RMSprop"
    assert model._compile_config["optimizer"]["config"]["rho"] == pytest.approx(0.8)


def test_sequential_trains_and_predict_backends_agree_after_fit():
    model = Sequential([Input(shape=(6,)), layers.Dense(4, activation="tanh"), layers.Dropout(0.3), layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    x, y = toy_data()
    model.fit(x, y, epochs=2, verbose=0)
    np.testing.assert_allclose(model.predict(x), model.predict(x, backend="numpy"), rtol=1e-5, atol=1e-6)


def test_evaluate_list_order_follows_keras_for_several_outputs():
    """Keras: loss, per-output losses in output order, then the per-output metric keys sorted by name."""
    x = Input(shape=(4,), name="x")
    model = Model(x, [layers.Dense(3, activation="softmax", name="income")(x),
                      layers.Dense(1, activation="sigmoid", name="gender")(x)])
    model.compile("sgd", ["categorical_crossentropy", "binary_crossentropy"],
                  metrics={"income": ["mse", "acc"], "gender": ["acc"]})
    rng = np.random.default_rng(0)
    data = rng.normal(size=(10, 4)).astype("float32")
    y = [np.eye(3, dtype="float32")[rng.integers(0, 3, 10)], rng.integers(0, 2, (10, 1)).astype("float32")]
    as_list = model.evaluate(data, y, verbose=0)
    as_dict = model.evaluate(data, y, verbose=0, return_dict=True)
    keys = ["loss", "income_loss", "gender_loss", "gender_acc", "income_acc", "income_mse"]
    assert as_list == pytest.approx([as_dict[k] for k in keys])


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_set_random_seed_makes_fit_repeat_exactly(backend):
    # fit's shuffling and the dropout masks come from streams set_random_seed seeds: a second run
    # gives the same bits, and another seed another run
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 6)).astype(np.float32), rng.normal(size=(24, 1)).astype(np.float32)

    def run(seed):
        gcomp.utils.set_random_seed(seed)
        inputs = Input((6,))
        hidden = layers.Dropout(0.5)(layers.Dense(8, activation="relu")(inputs))
        model = Model(inputs, layers.Dense(1)(hidden))
        model.compile("sgd", "mse")
        history = model.fit(x, y, batch_size=5, epochs=3, verbose=0, backend=backend)
        return history.history["loss"], model.get_weights()

    (loss_a, weights_a), (loss_b, weights_b) = run(7), run(7)
    assert loss_a == loss_b
    assert all(np.array_equal(a, b) for a, b in zip(weights_a, weights_b))
    assert run(8)[0] != loss_a


def test_training_programs_keep_freed_memory_for_the_next_step(monkeypatch):
    # glibc's malloc is told once to keep large freed blocks in the heap (mallopt); GCOMP_KEEP_FREED_MEMORY=0
    # leaves it alone, and a C library without mallopt is left as it is
    model = mlp()
    model.compile("sgd", "mse")
    runtime = model._training_program().__class__.__init__.__globals__
    calls = []

    class FakeLibc:
        def mallopt(self, parameter, value):
            calls.append((parameter, value))
            return 1

    monkeypatch.setitem(runtime, "_freed_memory_kept", False)
    monkeypatch.setenv("GCOMP_KEEP_FREED_MEMORY", "0")
    assert runtime["keep_freed_memory"](FakeLibc()) is False and calls == []
    monkeypatch.delenv("GCOMP_KEEP_FREED_MEMORY")
    assert runtime["keep_freed_memory"](FakeLibc()) is True
    assert calls == [(-3, 512 << 20), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    assert runtime["keep_freed_memory"](FakeLibc()) is True and len(calls) == 2  # once per process
    monkeypatch.setitem(runtime, "_freed_memory_kept", False)
    assert runtime["keep_freed_memory"](object()) is False  # no mallopt there


@pytest.mark.parametrize("pool", ["max", "global_max"])
def test_relu_after_a_max_pooling_trains_as_before_it(pool):
    # a conv's relu read only by a max pooling runs after the pooling in training graphs: the same
    # losses and weights, bit for bit, as the relu kept before it (an Activation layer stays put)
    def model(fused):
        inputs = Input((12, 3))
        x = layers.Conv1D(4, 3, activation="relu" if fused else None, name="conv")(inputs)
        x = x if fused else layers.Activation("relu")(x)
        x = layers.MaxPooling1D(2)(x) if pool == "max" else layers.GlobalMaxPooling1D()(x)
        m = Model(inputs, layers.Dense(2, name="out")(layers.Flatten()(x)))
        m.compile("rmsprop", "mse")
        return m

    moved, kept = model(True), model(False)
    kept.set_weights(moved.get_weights())
    graph, _ = training_graph(moved._current_graph(), [LossSpec("out", "mse")])
    pooling = next(n for n in graph.nodes("op") if graph.node(n)["op"].endswith("max_pool"))
    assert graph.op_inputs("conv/relu") == [gcomp.ir.ValueRef(pooling)]
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, size=(6, 12, 3)).astype(np.float32)  # small integers: ties, zeros, negatives
    y = rng.normal(size=(6, 2)).astype(np.float32)
    for _ in range(3):
        assert moved.train_on_batch(x, y) == kept.train_on_batch(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(moved.get_weights(), kept.get_weights()))


def test_an_embedding_gradient_is_computed_in_the_gradient_buffer():
    # the table's gradient goes straight into the program's flat gradient buffer when apply_gradients
    # alone reads it (a shared table's gradients are summed first: no), with the same training
    def model(shared):
        gcomp.utils.set_random_seed(3)
        tokens = Input((6,), dtype="int32")
        table = layers.Embedding(20, 4, name="table")
        x = table(tokens)
        x = layers.add([x, table(tokens)]) if shared else x
        m = Model(tokens, layers.Dense(2, name="out")(layers.Flatten()(x)))
        m.compile("rmsprop", "mse")
        return m

    assert "out=gradient_buffer(ctx, " in model(False).training_source()
    assert "out=gradient_buffer(ctx, " not in model(True).training_source()
    rng = np.random.default_rng(2)
    in_place, copied = model(False), model(False)
    copied._training_program().gradient_buffer = None  # a context without buffers: the plain path
    for step in range(4):  # each batch uses other rows: the buffer clears the last step's rows
        x, y = rng.integers(4 * step, 4 * step + 8, size=(8, 6)), rng.normal(size=(8, 2)).astype(np.float32)
        assert in_place.train_on_batch(x, y) == copied.train_on_batch(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(in_place.get_weights(), copied.get_weights()))
    assert not np.array_equal(in_place.get_weights()[0], model(False).get_weights()[0])  # it trained


def test_to_categorical_follows_keras():
    one_hot = gcomp.utils.to_categorical([2, 0, 1])
    np.testing.assert_array_equal(one_hot, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert one_hot.dtype == np.float64  # Keras's NumPy path: np.zeros' default
    assert gcomp.utils.to_categorical(np.array([[1], [3]]), num_classes=5).shape == (2, 5)  # (n, 1) drops the 1
    grid = gcomp.utils.to_categorical([[1, 2], [0, 0]])
    assert grid.shape == (2, 2, 3) and grid[0, 1, 2] == 1 and grid.sum() == 4
    with pytest.raises(InputDataError, match=r"label -1 is outside \[0, 3\)"):
        gcomp.utils.to_categorical([0, -1, 2], num_classes=3)


def test_metric_objects_and_functions_name_their_history_keys():
    x_in = Input(shape=(4,))
    model = Model(x_in, layers.Dense(1, activation="sigmoid")(x_in))
    model.compile("sgd", "binary_crossentropy", metrics=[
        gcomp.metrics.BinaryAccuracy(threshold=0.7, name="acc70"), gcomp.metrics.BinaryAccuracy(),
        gcomp.metrics.mean_squared_error, gcomp.metrics.MeanAbsoluteError(name="l1")])
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(32, 4)).astype(np.float32), (rng.random((32, 1)) > 0.5).astype(np.float32)
    result = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert sorted(result) == ["acc70", "binary_accuracy", "l1", "loss", "mean_squared_error"]
    p = model.predict(x, backend="numpy")
    assert result["acc70"] == pytest.approx(np.mean((p > 0.7) == y))
    assert result["binary_accuracy"] == pytest.approx(np.mean((p > 0.5) == y))
    assert result["mean_squared_error"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-5)
    assert result["l1"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-5)
    np.testing.assert_allclose(gcomp.metrics.binary_accuracy(y, p, threshold=0.7), ((p > 0.7) == y)[:, 0])
    with pytest.raises(ValueError, match="unknown metric <object"):
        model.compile("sgd", "binary_crossentropy", metrics=[object()])


def test_keras_loss_functions_give_per_sample_values_and_compile():
    y, p = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_allclose(gcomp.losses.categorical_crossentropy(y, p), -np.log([0.8, 0.6]))
    np.testing.assert_allclose(gcomp.losses.mse(y, p), [0.04, 0.16])
    np.testing.assert_allclose(gcomp.losses.mean_absolute_error(y, p), [0.2, 0.4])
    np.testing.assert_allclose(gcomp.losses.binary_crossentropy([[1.0], [0.0]], [[0.9], [0.2]]), -np.log([0.9, 0.8]))
    np.testing.assert_allclose(gcomp.losses.sparse_categorical_crossentropy([1, 0], [[0.0, 2.0], [0.0, 0.0]],
                                                                             from_logits=True),
                               [np.log1p(np.exp(-2.0)), np.log(2.0)], rtol=1e-6)
    model = mlp("lf")
    model.compile("sgd", loss=gcomp.losses.categorical_crossentropy)
    x, target = toy_data(16)
    loss = model.evaluate(x, target, verbose=0)
    probs = model.predict(x, backend="numpy")
    assert loss == pytest.approx(np.mean(-np.log(np.sum(target * probs, axis=-1))), rel=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_label_smoothing_smooths_the_loss_targets_not_the_metrics(backend):
    x_in = Input(shape=(4,))
    model = Model(x_in, layers.Dense(1, activation="sigmoid")(x_in))
    # Keras's positional order: from_logits, then label_smoothing
    model.compile("sgd", gcomp.losses.BinaryCrossentropy(False, 0.2), metrics=["accuracy"])
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(16, 4)).astype(np.float32), (rng.random((16, 1)) > 0.5).astype(np.float32)
    loss, accuracy = model.evaluate(x, y, batch_size=16, verbose=0, backend=backend)
    p = model.predict(x, backend="numpy").astype(np.float64)
    smoothed = y * 0.8 + 0.1
    assert loss == pytest.approx(np.mean(-(smoothed * np.log(p) + (1 - smoothed) * np.log(1 - p))), rel=1e-5)
    assert accuracy == pytest.approx(np.mean((p > 0.5) == y))  # against the labels as given
    # one SGD step moves the weights along the smoothed loss's gradient: dL/dz = (p - t) / n
    kernel, bias = model.get_weights()
    error = (p - smoothed) / len(x)
    model.train_on_batch(x, y, backend=backend)
    np.testing.assert_allclose(model.get_weights()[0], kernel - 0.01 * x.T @ error, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.get_weights()[1], bias - 0.01 * error.sum(0), rtol=1e-5, atol=1e-7)


def test_loss_objects_follow_keras_signatures():
    y, p = np.array([[0.0, 1.0, 0.0]]), np.array([[0.2, 0.7, 0.1]])
    smoothed = y * 0.9 + 0.1 / 3
    assert gcomp.losses.CategoricalCrossentropy(label_smoothing=0.1)(y, p) == pytest.approx(
        -np.sum(smoothed * np.log(p)), rel=1e-6)
    np.testing.assert_allclose(gcomp.losses.categorical_crossentropy(y, p, label_smoothing=0.1),
                               [-np.sum(smoothed * np.log(p))], rtol=1e-6)
    assert gcomp.losses.MeanSquaredError().name == "mean_squared_error"
    for make, match in ((lambda: gcomp.losses.CategoricalCrossentropy(axis=1), "axis=-1"),
                        (lambda: gcomp.losses.BinaryCrossentropy(label_smoothing=1.5), "label_smoothing"),
                        (lambda: gcomp.losses.SparseCategoricalCrossentropy(ignore_class=0), "ignore_class")):
        with pytest.raises(ValueError, match=match):
            make()


def test_the_standalone_c_program_refuses_label_smoothing(tmp_path):
    source = tmp_path / "model.py"
    source.write_text("import gcomp\nfrom gcomp import Input, Model, layers\ni = Input(shape=(3,))\n"
                      "m = Model(i, layers.Dense(2, activation='softmax', name='out')(i))\n"
                      "m.compile(loss=gcomp.losses.CategoricalCrossentropy(label_smoothing=0.1))\n")
    with pytest.raises(gcomp.errors.TargetError, match="output\\(s\\) out smooths its labels"):
        build_c(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


class Recorder(callbacks.Callback):
    """Every hook called, in order, with its batch index where it has one."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_") and name not in ("on_train_batch_begin", "on_train_batch_end"):
            calls = object.__getattribute__(self, "calls")
            return lambda *args, **kwargs: calls.append((name, *[a for a in args if isinstance(a, int)]))
        return object.__getattribute__(self, name)


def test_test_and_predict_hooks_and_the_batch_aliases_follow_keras():
    model = mlp("hooks")
    model.compile("sgd", "categorical_crossentropy")
    x, y = toy_data(10)
    recorder = Recorder()
    model.fit(x, y, batch_size=4, epochs=1, validation_data=(x[:5], y[:5]), verbose=0, callbacks=recorder)
    # on_train_batch_* call the older on_batch_* names (Keras's base class); validation runs the test hooks
    assert recorder.calls == [("on_train_begin",), ("on_epoch_begin", 0),
                              ("on_batch_begin", 0), ("on_batch_end", 0), ("on_batch_begin", 1), ("on_batch_end", 1),
                              ("on_batch_begin", 2), ("on_batch_end", 2),
                              ("on_test_begin",), ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
                              ("on_test_batch_begin", 1), ("on_test_batch_end", 1), ("on_test_end",),
                              ("on_epoch_end", 0), ("on_train_end",)]
    assert recorder.params == {"verbose": 0, "epochs": 1, "steps": 3}
    recorder.calls.clear()
    model.evaluate(x, y, batch_size=8, verbose=0, callbacks=[recorder])
    assert recorder.calls == [("on_test_begin",), ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
                              ("on_test_batch_begin", 1), ("on_test_batch_end", 1), ("on_test_end",)]
    seen = []
    catcher = callbacks.LambdaCallback()
    catcher.on_predict_batch_end = lambda batch, logs: seen.append(logs["outputs"].shape)
    model.predict(x, batch_size=6, callbacks=[catcher])
    assert seen == [(6, 3), (4, 3)]


def test_model_checkpoint_every_n_batches(tmp_path):
    model = linear_model()
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.1), loss="mse")
    x, y = np.ones((12, 3), np.float32), np.zeros((12, 1), np.float32)
    weights = []
    keep = callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: weights.append(model.get_weights()))
    checkpoint = callbacks.ModelCheckpoint(tmp_path / "e{epoch}b{batch}.npz", save_freq=4)
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False, callbacks=[keep, checkpoint])
    # 3 batches per epoch, counted across epochs: the 4th and 8th batches (epoch 2 batch 1, epoch 3 batch 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e2b1.npz", "e3b2.npz"]
    saved = linear_model()
    saved.load_weights(tmp_path / "e2b1.npz")
    for a, b in zip(saved.get_weights(), weights[3]):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="Unrecognized save_freq: daily"):
        callbacks.ModelCheckpoint(tmp_path / "w.npz", save_freq="daily")


def test_recompiling_with_the_same_optimizer_keeps_its_state_and_sharing_it_is_refused():
    # Keras: the optimizer keeps its per-variable slots and step count across compile(); here the
    # run split by a recompile equals the run without one, weight for weight
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    results = []
    for recompile in (False, True):
        gcomp.utils.set_random_seed(3)
        model = linear_model()
        optimizer = gcomp.optimizers.Adam(learning_rate=0.05)
        model.compile(optimizer, "mse")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        if recompile:
            model.compile(optimizer, "mse")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        results.append((optimizer.iterations, model.get_weights()))
    assert results[0][0] == results[1][0] == 4
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)
    other = linear_model("other")
    other.compile(optimizer, "mse")
    with pytest.raises(ValueError, match="already trains model 'lin'; .* give model 'other' its own instance"):
        other.fit(x, y, verbose=0)


def test_batch_sizes_take_numpy_integers_and_unknown_monitor_modes_fall_back_to_auto():
    model = mlp("bs")
    x, _ = toy_data(10)
    np.testing.assert_array_equal(model.predict(x, batch_size=np.int64(4), backend="numpy"),
                                  model.predict(x, batch_size=10, backend="numpy"))
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0.5"):
        model.predict(x, batch_size=0.5)
    with pytest.warns(UserWarning, match="EarlyStopping mode 'upward' is unknown, fallback to auto mode"):
        stopper = callbacks.EarlyStopping(monitor="val_acc", mode="upward")
    assert stopper.mode == "max"  # auto: an accuracy goes up


def test_bidirectional_gradients_match_finite_differences_in_every_backend():
    """Both directions' weights, the flip of the backward sequence and the merge, differentiated:
    float64 gradients against central differences, then one SGD step of each training backend."""
    from differential import HAVE_CC, check_gradients
    tokens = Input(shape=(6,), dtype="int32", name="tokens")
    x = layers.Embedding(12, 3)(tokens)
    x = layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="mul")(x)
    out, *states = layers.Bidirectional(layers.LSTM(2, return_state=True))(x)
    model = Model(tokens, layers.Dense(2)(layers.concatenate([out, *states])))
    data = np.random.default_rng(5).integers(0, 12, size=(4, 6)).astype(np.int32)
    check_gradients(model, [data], seed=3, train_backends=("numpy", "c") if HAVE_CC else ("numpy",))


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_gradients_match_finite_differences(reset_after):
    """Every GRU weight (both bias rows with reset_after), the input and the returned state, in
    float64 against central differences, then one SGD step of each training backend."""
    from differential import HAVE_CC, check_gradients
    x = Input(shape=(5, 3), name="x")
    seq, h = layers.GRU(4, return_sequences=True, return_state=True, reset_after=reset_after,
                        bias_initializer="random_normal", name="encoder")(layers.Dense(3, activation="tanh")(x))
    back = layers.GRU(2, go_backwards=True, reset_after=reset_after)(seq)
    model = Model(x, layers.Dense(2)(layers.concatenate([back, h])))
    data = np.random.default_rng(6).normal(size=(3, 5, 3)).astype(np.float32)
    check_gradients(model, [data], seed=4, train_backends=("numpy", "c") if HAVE_CC else ("numpy",))
