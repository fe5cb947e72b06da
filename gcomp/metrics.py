"""Keras's metric objects and functions for the metrics gcomp computes: accuracies and regression
errors. compile(metrics=[...]) takes them beside the string names; an object's `name` is its History
key (Keras's default names: binary_accuracy, categorical_accuracy, ...), and BinaryAccuracy keeps its
threshold. The values are the generated program's own (templates/numpy/losses.py)."""
from __future__ import annotations

from typing import Any

import numpy as np

from gcomp.codegen import runtime_file

_rt = runtime_file("losses")

__all__ = ["Metric", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy", "MeanSquaredError",
           "MeanAbsoluteError", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
           "mean_squared_error", "mean_absolute_error"]


class Metric:
    """A metric compile() understands: `metric` names the computation, `name` the History key."""

    metric = ""

    def __init__(self, name: str | None = None, dtype: Any = None):
        self.name = name or self.metric
        self.dtype = dtype

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


class BinaryAccuracy(Metric):
    """How often round(y_pred > threshold) equals y_true."""

    metric = "binary_accuracy"

    def __init__(self, name: str = "binary_accuracy", dtype: Any = None, threshold: float = 0.5):
        super().__init__(name, dtype)
        self.threshold = threshold

    def get_config(self) -> dict:
        return dict(super().get_config(), threshold=self.threshold)


class CategoricalAccuracy(Metric):
    """How often argmax(y_pred) equals argmax(y_true) (one-hot targets)."""

    metric = "categorical_accuracy"


class SparseCategoricalAccuracy(Metric):
    """How often argmax(y_pred) equals the integer target."""

    metric = "sparse_categorical_accuracy"


class MeanSquaredError(Metric):
    """The mean of (y_true - y_pred)^2 over the last axis, averaged over samples."""

    metric = "mean_squared_error"


class MeanAbsoluteError(Metric):
    """The mean of |y_true - y_pred| over the last axis, averaged over samples."""

    metric = "mean_absolute_error"


def _per_sample(name: str):
    def metric(y_true, y_pred, **kwargs):
        return _rt.metric_values(name, np.asarray(y_true), np.asarray(y_pred), reduce=False, **kwargs)
    metric.__name__ = metric.__qualname__ = name
    metric.__doc__ = f"Keras's {name}: per-sample values (a mean over the last axis)."
    return metric


binary_accuracy = _per_sample("binary_accuracy")
categorical_accuracy = _per_sample("categorical_accuracy")
sparse_categorical_accuracy = _per_sample("sparse_categorical_accuracy")
mean_squared_error = _per_sample("mean_squared_error")
mean_absolute_error = _per_sample("mean_absolute_error")
_FUNCTIONS = {f.__name__: f for f in (binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
                                      mean_squared_error, mean_absolute_error)}


def known_name(name: str) -> bool:
    """Whether compile() can compute the metric Keras's string `name` stands for: 'acc' /
    'accuracy' in any case (resolved by shapes), and what keras.metrics.get takes for the metrics
    gcomp computes ('mse', 'MAE', 'binary_accuracy', 'BinaryAccuracy', 'bce', a loss name, ...)."""
    return name.lower() in _rt._SHAPE_RESOLVED_METRICS or name in _rt._METRIC_ALIASES


def compile_entry(metric: Any) -> str | dict | None:
    """What compile() stores for one metric: its string name (a metric object or function with its
    default name becomes that name), a {"name", "metric", "threshold"} dict for an object named or
    thresholded otherwise, or None when gcomp does not know it."""
    if isinstance(metric, str):
        return metric
    if callable(metric) and _FUNCTIONS.get(getattr(metric, "__name__", None)) is metric:
        return metric.__name__
    if isinstance(metric, Metric) and metric.metric:
        threshold = getattr(metric, "threshold", 0.5)
        if metric.name == metric.metric and threshold == 0.5:
            return metric.metric
        return {"name": metric.name, "metric": metric.metric, "threshold": float(threshold)}
    return None
