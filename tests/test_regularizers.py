"""Weight regularizers: Keras's names and defaults, their penalty in the training loss and its
gradient (by hand and by finite differences), on both training backends."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import gcomp
from gcomp import Input, Model, layers, regularizers
from gcomp.errors import LayerConfigError
from gcomp.ir import print_graph

_TEMPLATES = Path(__file__).parents[1] / "templates" / "numpy"


def _runtime() -> SimpleNamespace:
    namespace: dict = {"__name__": "gcomp_penalty_under_test"}
    for part in ("prelude.py", "losses.py", "vjp.py"):
        exec(compile((_TEMPLATES / part).read_text(), part, "exec"), namespace)
    return SimpleNamespace(**namespace)


rt = _runtime()


def test_names_defaults_and_configs_follow_keras():
    assert regularizers.get("l1").get_config() == {"l1": 0.01}
    assert regularizers.get("l2").get_config() == {"l2": 0.01}
    assert regularizers.get("L1L2").get_config() == {"l1": 0.0, "l2": 0.0}  # Keras: L1L2() penalizes nothing
    assert regularizers.l1_l2 is regularizers.L1L2 and regularizers.l2 is regularizers.L2
    assert regularizers.L1L2(l2=0.1).factors == (0.0, 0.1)
    again = regularizers.get(regularizers.serialize(regularizers.L1L2(l1=0.2, l2=0.3)))
    assert isinstance(again, regularizers.L1L2) and again.factors == (0.2, 0.3)
    assert regularizers.get(None) is None
    w = np.array([[1.5, -2.0], [0.0, 0.25]], np.float32)
    assert float(regularizers.L1L2(l1=0.1, l2=0.5)(w)) == pytest.approx(0.1 * 3.75 + 0.5 * 6.3125, rel=1e-6)


@pytest.mark.parametrize("identifier, match", [
    ("l1_l2", "Could not interpret regularizer identifier"),  # not a Keras 3 name either
    ({"class_name": "Orthogonal"}, "Could not interpret"),
    (lambda w: 0.0, "Could not interpret"),
])
def test_unknown_regularizers_are_refused_naming_the_layer(identifier, match):
    with pytest.raises(LayerConfigError, match=f'Dense "pen_dense": kernel_regularizer: {match}'):
        layers.Dense(2, kernel_regularizer=identifier, name="pen_dense")


def test_invalid_factors_and_activity_regularizers_are_refused():
    with pytest.raises(LayerConfigError, match="l2"):
        regularizers.L2(-0.1)

    class Mine(regularizers.L2):
        pass
    with pytest.raises(LayerConfigError, match="L1, L2 and L1L2 only"):
        layers.Conv1D(2, 3, bias_regularizer=Mine(), name="mine")
    with pytest.raises(LayerConfigError, match='"act_reg".*activity_regularizer'):
        layers.LSTM(2, activity_regularizer="l2", name="act_reg")  # Dense and Conv take them


def test_penalty_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3))
    w[0, 0] = 0.0  # |w| has subgradient 0 there (TF's and PyTorch's convention)
    l1, l2, scale = 0.03, 0.2, 4.0

    def penalty(v):
        return scale * (l1 * np.abs(v).sum() + l2 * np.square(v).sum())
    grad = rt.weight_penalty_grad(w, l1, l2, scale)
    numeric = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        if w[i] == 0.0:
            continue
        plus, minus = w.copy(), w.copy()
        plus[i] += 1e-6
        minus[i] -= 1e-6
        numeric[i] = (penalty(plus) - penalty(minus)) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    assert grad[0, 0] == scale * 2 * l2 * 0.0
    assert rt.weight_penalty(w.astype(np.float32), l1, l2) == pytest.approx(penalty(w) / scale, rel=1e-6)


def _dense_model(**regs):
    x = Input(shape=(3,), name="x")
    return Model(x, layers.Dense(1, name="d", **regs)(x))


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_a_step_adds_the_penalties_gradient_and_the_loss_reports_them(backend):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    model = _dense_model(kernel_regularizer=regularizers.L1L2(l1=0.01, l2=0.1), bias_regularizer="l2")
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.1), loss="mse")
    kernel, bias = (w.astype(np.float64) for w in model.get_weights())

    def loss_and_grads(k, b):
        err = x @ k + b - y
        loss = np.mean(err ** 2) + 0.01 * np.abs(k).sum() + 0.1 * np.square(k).sum() + 0.01 * np.square(b).sum()
        return loss, 2 * x.T @ err / 8 + 0.01 * np.sign(k) + 0.2 * k, 2 * err.sum(0) / 8 + 0.02 * b
    want_loss, gk, gb = loss_and_grads(kernel, bias)
    assert model.train_on_batch(x, y, backend=backend) == pytest.approx(want_loss, rel=1e-5)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, kernel - 0.1 * gk, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new_bias, bias - 0.1 * gb, rtol=1e-5, atol=1e-7)
    # evaluate's loss includes the penalties of the weights as they are now, as Keras's does
    want_eval = loss_and_grads(new_kernel.astype(np.float64), new_bias.astype(np.float64))[0]
    assert model.evaluate(x, y, verbose=0, backend=backend) == pytest.approx(want_eval, rel=1e-5)


def test_output_losses_exclude_the_penalty_and_frozen_weights_have_none():
    rng = np.random.default_rng(2)
    x = Input(shape=(4,), name="x")
    hidden = layers.Dense(5, activation="tanh", name="hidden", kernel_regularizer=regularizers.L2(0.5))
    h = hidden(x)
    model = Model(x, [layers.Dense(1, name="a", bias_regularizer="l1")(h), layers.Dense(2, name="b")(h)])
    model.compile(optimizer="sgd", loss=["mse", "mae"], loss_weights=[2.0, 0.5])
    data = rng.normal(size=(6, 4)).astype(np.float32)
    targets = [rng.normal(size=(6, 1)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)]
    logs = model.test_on_batch(data, targets, return_dict=True)
    penalty = 0.5 * np.square(hidden.kernel.value).sum() + 0.01 * np.abs(model.get_layer("a").bias.value).sum()
    assert logs["loss"] == pytest.approx(2.0 * logs["a_loss"] + 0.5 * logs["b_loss"] + penalty, rel=1e-5)
    hidden.trainable = False  # Keras penalizes trainable weights only
    model.compile(optimizer="sgd", loss=["mse", "mae"], loss_weights=[2.0, 0.5])
    logs = model.test_on_batch(data, targets, return_dict=True)
    penalty = 0.01 * np.abs(model.get_layer("a").bias.value).sum()
    assert logs["loss"] == pytest.approx(2.0 * logs["a_loss"] + 0.5 * logs["b_loss"] + penalty, rel=1e-5)


def test_the_ir_shows_penalties_and_the_training_graph_differentiates_them():
    from gcomp.autodiff import LossSpec, training_graph
    model = _dense_model(kernel_regularizer="l2")
    graph = model._current_graph()
    assert "param %d/kernel: float32[3, 1] regularizer(l1=0.0, l2=0.01)" in print_graph(graph)
    train, layout = training_graph(graph, [LossSpec("d", "mse")])
    ops = [train.node(n)["op"] for n in train.nodes("op")]
    assert ops.count("regularization") == 1 and ops.count("regularization_vjp") == 1
    assert [name for name, _ in train.outputs] == ["d_loss", "d", "regularization", "step"]
    assert layout.regularization is not None


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_activity_penalties_divide_by_the_batch_and_reach_the_layer_output(backend):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    inp = Input(shape=(3,), name="x")
    hidden = layers.Dense(4, activation="relu", name="h", activity_regularizer=regularizers.L1L2(l1=0.05, l2=0.1))
    model = Model(inp, layers.Dense(1, name="o")(hidden(inp)))
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.1), loss="mse")
    k1, b1, k2, b2 = (w.astype(np.float64) for w in model.get_weights())
    pre = x @ k1 + b1
    h = np.maximum(pre, 0)  # Keras penalizes the layer's output: after its activation
    err = h @ k2 + b2 - y
    want_loss = np.mean(err ** 2) + (0.05 * np.abs(h).sum() + 0.1 * np.square(h).sum()) / 8
    dh = (2 * err / 8) @ k2.T + (0.05 * np.sign(h) + 0.2 * h) / 8
    assert model.train_on_batch(x, y, backend=backend) == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(model.get_weights()[0], k1 - 0.1 * x.T @ (dh * (pre > 0)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.get_weights()[2], k2 - 0.1 * h.T @ (2 * err / 8), rtol=1e-5, atol=1e-7)


def test_an_activity_penalty_keeps_a_relu_before_its_max_pooling():
    # the backward moves a relu read only by a max pooling after it; the penalty needs the relu's
    # own output, so a penalized layer keeps its order
    from gcomp.autodiff import LossSpec, training_graph
    inp = Input(shape=(6, 2), name="s")
    conv = layers.Conv1D(3, 2, activation="relu", name="c", activity_regularizer="l1")
    model = Model(inp, layers.GlobalMaxPooling1D(name="g")(layers.MaxPooling1D(name="p")(conv(inp))))
    train, _ = training_graph(model._current_graph(), [LossSpec("g", "mse")])
    (penalty,) = [n for n in train.nodes("op") if train.node(n)["op"] == "activity_regularization"]
    (source,) = train.op_inputs(penalty)
    assert train.node(source.node)["op"] == "activation" and train.op_inputs(source.node)[0].node == "c"
    # the runtime's penalty and gradient, against the formula (factors rounded to float32 as Keras's)
    y = np.random.default_rng(4).normal(size=(5, 3, 2))
    grad = rt.activity_penalty_grad(y, 0.3, 0.2, 2.0)
    np.testing.assert_allclose(grad, 2.0 * (0.3 * np.sign(y) + 0.4 * y) / 5, rtol=1e-6)
    assert rt.activity_penalty(y.astype(np.float32), 0.3, 0.2) == pytest.approx(
        (0.3 * np.abs(y).sum() + 0.2 * np.square(y).sum()) / 5, rel=1e-6)
