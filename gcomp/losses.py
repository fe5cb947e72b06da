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
    """A loss by Keras's name and arguments. `kind` is the computation, `name` Keras's name for the
    object; compile() reads `gcomp_loss`. Calling it gives the reduced loss, as a Keras loss object."""

    kind = ""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str = "sum_over_batch_size", name: str | None = None, dtype=None):
        if reduction not in _rt.REDUCTIONS:
            raise ValueError(f"gcomp's losses reduce by {', '.join(repr(r) for r in _rt.REDUCTIONS)}, got "
                             f"reduction={reduction!r}" + _UNSUPPORTED.get(reduction, ""))
        if axis != -1:
            raise ValueError(f"gcomp's losses reduce the last axis (axis=-1), got axis={axis!r}")
        if not 0 <= label_smoothing <= 1:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self.from_logits, self.label_smoothing = bool(from_logits), float(label_smoothing)
        self.reduction = reduction
        self.name, self.dtype = name or self.kind, dtype

    @property
    def gcomp_loss(self) -> tuple[str, bool, float, str]:
        return self.kind, self.from_logits, self.label_smoothing, self.reduction

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_true = _rt.smooth_labels(self.kind, y_true, self.label_smoothing)
        return _rt.loss_and_grad(self.kind, np.asarray(y_true), np.asarray(y_pred, np.float32), sample_weight,
                                 self.from_logits, reduction=self.reduction)[0]


# Keras's other reductions, and why gcomp has none of them yet
_UNSUPPORTED = {
    None: " (Keras's unreduced per-sample losses: compile() needs a scalar)",
    "none": " (Keras's unreduced per-sample losses: compile() needs a scalar)",
    "mean_with_sample_weight": " (dividing by the sum of sample weights is not supported by gcomp yet)",
}


class MeanSquaredError(Loss):
    kind = "mse"

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)


class MeanAbsoluteError(Loss):
    kind = "mae"

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)


class BinaryCrossentropy(Loss):
    kind = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_crossentropy", dtype=None):
        super().__init__(from_logits, label_smoothing, axis, reduction, name, dtype)


class CategoricalCrossentropy(Loss):
    kind = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="categorical_crossentropy", dtype=None):
        super().__init__(from_logits, label_smoothing, axis, reduction, name, dtype)


class SparseCategoricalCrossentropy(Loss):
    kind = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy", dtype=None):
        if ignore_class is not None:
            raise ValueError(f"gcomp's SparseCategoricalCrossentropy has no ignore_class (got {ignore_class!r})")
        super().__init__(from_logits, reduction=reduction, name=name, dtype=dtype)


def _named(function, name: str, loss: str):
    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"Keras's {name}: per-sample values (the last axis reduced)."
    function.gcomp_loss = (loss, False, 0.0, "sum_over_batch_size")  # compile(loss=<this function>): Keras's defaults
    return function


def _regression_loss(name: str, loss: str):
    return _named(lambda y_true, y_pred: _rt.per_sample_loss(loss, np.asarray(y_true), np.asarray(y_pred)),
                  name, loss)


def _crossentropy(name: str):
    def function(y_true, y_pred, from_logits=False, label_smoothing=0.0):
        # smooth_labels refuses a nonzero label_smoothing for the sparse loss, which Keras lacks
        return _rt.per_sample_loss(name, np.asarray(_rt.smooth_labels(name, y_true, label_smoothing)),
                                   np.asarray(y_pred), from_logits)
    return _named(function, name, name)


# The kinds compile() stores (and the code generators read) for Keras's long names
_KIND_OF_CANONICAL = {"mean_squared_error": "mse", "mean_absolute_error": "mae"}
SHAPE_RESOLVED = "crossentropy"
"""The kind stored for 'crossentropy' / 'ce' until the targets' shape picks binary, categorical or
sparse categorical crossentropy (Keras's compile_utils.get_loss)."""


def kind_of(name: str) -> str | None:
    """The loss kind a Keras loss string stands for ('mse', 'MSE', 'mean_squared_error',
    'MeanSquaredError', 'bce', ...: what keras.losses.get takes), SHAPE_RESOLVED for 'crossentropy'
    and 'ce' in any case, None for a name gcomp does not know."""
    if name.lower() in _rt._SHAPE_RESOLVED_LOSSES:
        return SHAPE_RESOLVED
    canonical = _rt._LOSS_ALIASES.get(name)
    return None if canonical is None else _KIND_OF_CANONICAL.get(canonical, canonical)


def resolve_by_shapes(y_true_shape: tuple, y_pred_shape: tuple) -> str:
    """The crossentropy 'crossentropy' stands for, by Keras's rule on the target's and the
    prediction's shapes."""
    binary, sparse = _rt._binary_or_sparse(tuple(y_true_shape), tuple(y_pred_shape))
    if binary:
        return "binary_crossentropy"
    return "sparse_categorical_crossentropy" if sparse else "categorical_crossentropy"


mean_squared_error = _regression_loss("mean_squared_error", "mse")
mean_absolute_error = _regression_loss("mean_absolute_error", "mae")
binary_crossentropy = _crossentropy("binary_crossentropy")
categorical_crossentropy = _crossentropy("categorical_crossentropy")
sparse_categorical_crossentropy = _crossentropy("sparse_categorical_crossentropy")
mse, mae = mean_squared_error, mean_absolute_error
