"""Merge layers (Concatenate, Add, Subtract, ...) and their functional forms (concatenate, add, ...)."""
from __future__ import annotations

from gcomp.frontend.layer import Layer


class Concatenate(Layer):
    """Joins a list of tensors along `axis` (default -1)."""

    op = "concat"
    takes_list = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise self._config_error(f"axis must be an int, got {axis!r}")
        self.axis = axis

    def op_attrs(self):
        return {"axis": self.axis}


class _Merge(Layer):
    takes_list = True


class Add(_Merge):
    op = "add"


class Subtract(_Merge):
    op = "subtract"


class Multiply(_Merge):
    op = "multiply"


class Average(_Merge):
    op = "average"


class Maximum(_Merge):
    op = "maximum"


class Minimum(_Merge):
    op = "minimum"


def concatenate(inputs, axis=-1, **kwargs):
    """Functional form of Concatenate: concatenate([a, b], axis=-1)."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def add(inputs, **kwargs):
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)
