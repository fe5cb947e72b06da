"""Weight constraints: Keras's formulas and names, the axes they accept, and the projection after
each optimizer update on both training backends."""
from __future__ import annotations

import numpy as np
import pytest

import gcomp
from gcomp import Input, Model, constraints, layers
from gcomp.errors import LayerConfigError

EPS = 1e-7


def _norms(w, axis):
    return np.sqrt(np.sum(np.square(w.astype(np.float64)), axis=axis, keepdims=True))


@pytest.mark.parametrize("constraint, formula", [
    (constraints.MaxNorm(0.8), lambda w: w * np.clip(_norms(w, 0), 0, 0.8) / (EPS + _norms(w, 0))),
    (constraints.MaxNorm(1.5, axis=1), lambda w: w * np.clip(_norms(w, 1), 0, 1.5) / (EPS + _norms(w, 1))),
    (constraints.UnitNorm(axis=[0, 1]), lambda w: w / (EPS + _norms(w, (0, 1)))),
    (constraints.MinMaxNorm(0.5, 1.0, rate=0.25, axis=-1),
     lambda w: w * (0.25 * np.clip(_norms(w, -1), 0.5, 1.0) + 0.75 * _norms(w, -1)) / (EPS + _norms(w, -1))),
    (constraints.NonNeg(), lambda w: np.maximum(w, 0)),
])
def test_each_constraint_is_kerass_formula(constraint, formula):
    w = np.random.default_rng(0).normal(size=(3, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(constraint(w), formula(w), rtol=1e-6, atol=1e-7)


def test_names_defaults_and_configs():
    assert constraints.get("max_norm").get_config() == {"max_value": 2, "axis": 0}
    assert constraints.get("min_max_norm").get_config() == {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}
    assert isinstance(constraints.get("non_neg"), constraints.NonNeg) and constraints.unit_norm is constraints.UnitNorm
    again = constraints.get(constraints.serialize(constraints.MaxNorm(3, axis=[0, 1])))
    assert isinstance(again, constraints.MaxNorm) and again.get_config() == {"max_value": 3, "axis": [0, 1]}
    with pytest.raises(LayerConfigError, match='Dense "con_bad": kernel_constraint: Could not interpret'):
        layers.Dense(2, kernel_constraint="maxnorm", name="con_bad")


@pytest.mark.parametrize("axis, match", [([0, 2], "adjacent axes"), (3, "out of range")])
def test_axes_that_do_not_fit_the_weight_name_the_layer_and_weight(axis, match):
    layer = layers.Conv1D(2, 3, kernel_constraint=constraints.MaxNorm(1.0, axis=axis), name="con_axes")
    with pytest.raises(LayerConfigError, match=f'"con_axes": the constraint of kernel \\(3, 4, 2\\): .*{match}'):
        layer(Input(shape=(8, 4)))


@pytest.mark.parametrize("backend", ["numpy", "c"])
@pytest.mark.parametrize("constraint", [constraints.MaxNorm(0.5), constraints.UnitNorm(axis=1),
                                        constraints.MinMaxNorm(0.2, 0.6, rate=0.7), constraints.NonNeg()])
def test_the_update_ends_with_the_projection(backend, constraint):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32)
    inp = Input(shape=(3,), name="x")
    model = Model(inp, layers.Dense(2, name="d", kernel_constraint=constraint, bias_constraint="non_neg")(inp))
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.1), loss="mse")
    kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    err = x @ kernel + bias - y
    stepped = (kernel - 0.1 * x.T @ err / 8).astype(np.float32)  # mse over 2 outputs: 2 e / (8 * 2)
    model.train_on_batch(x, y, backend=backend)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, constraint(stepped), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_bias, np.maximum(bias - 0.1 * err.sum(0) / 8, 0), rtol=1e-5, atol=1e-6)


def test_frozen_weights_are_not_projected():
    inp = Input(shape=(3,), name="x")
    frozen = layers.Dense(2, name="frozen", kernel_constraint="non_neg", kernel_initializer="random_normal")
    model = Model(inp, layers.Dense(1, name="head")(frozen(inp)))
    frozen.trainable = False
    model.compile(optimizer="sgd", loss="mse")
    before = frozen.get_weights()[0]
    assert (before < 0).any()  # Keras projects the weights the optimizer updates, and only those
    model.train_on_batch(np.ones((4, 3), np.float32), np.ones((4, 1), np.float32))
    np.testing.assert_array_equal(frozen.get_weights()[0], before)
