"""Losses with Keras's names: strings ('mse', 'categorical_crossentropy', ...), these classes, or
Keras's loss functions (mean_squared_error, ..., which give per-sample values and which compile()
takes by name).

The formulas (Keras 3's clipping, from_logits, sum-over-batch-size reduction) live in
templates/numpy/losses.py, which the generated training programs run.
"""
from __future__ import annotations

import numpy as np

from gcomp.codegen import runtime_file

_rt = runtime_file("losses")


class Loss:
    """A loss by name, with from_logits where Keras has it; compile() reads `gcomp_loss`."""

    name = ""

    def __init__(self, from_logits: bool = False, reduction: str = "sum_over_batch_size", name: str | None = None):
        if reduction != "sum_over_batch_size":
            raise ValueError(f"gcomp supports Keras's default reduction 'sum_over_batch_size', got {reduction!r}")
        self.from_logits = bool(from_logits)

    @property
    def gcomp_loss(self) -> tuple[str, bool]:
        return self.name, self.from_logits


class MeanSquaredError(Loss):
    name = "mse"

    def __init__(self, reduction="sum_over_batch_size", name=None):
        super().__init__(False, reduction, name)


class MeanAbsoluteError(Loss):
    name = "mae"

    def __init__(self, reduction="sum_over_batch_size", name=None):
        super().__init__(False, reduction, name)


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"


def _named(function, name: str, loss: str):
    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"Keras's {name}: per-sample values (the last axis reduced)."
    function.gcomp_loss = (loss, False)  # compile(loss=<this function>): Keras's default from_logits
    return function


def _regression_loss(name: str, loss: str):
    return _named(lambda y_true, y_pred: _rt.per_sample_loss(loss, np.asarray(y_true), np.asarray(y_pred)),
                  name, loss)


def _crossentropy(name: str):
    return _named(lambda y_true, y_pred, from_logits=False: _rt.per_sample_loss(
        name, np.asarray(y_true), np.asarray(y_pred), from_logits), name, name)


mean_squared_error = _regression_loss("mean_squared_error", "mse")
mean_absolute_error = _regression_loss("mean_absolute_error", "mae")
binary_crossentropy = _crossentropy("binary_crossentropy")
categorical_crossentropy = _crossentropy("categorical_crossentropy")
sparse_categorical_crossentropy = _crossentropy("sparse_categorical_crossentropy")
mse, mae = mean_squared_error, mean_absolute_error
