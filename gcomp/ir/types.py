"""Tensor types of the IR: shapes whose dims are ints or symbols, plus dtypes.

A symbolic dim is a string: a name such as ``batch`` or ``text_len``, or an expression over names
such as ``text_len - 4``. Two dims are compatible when they are equal or either is symbolic; whether
two symbols really agree is checked when data arrives.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Union

Dim = Union[int, str]

FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_static(d: Dim) -> bool:
    return isinstance(d, int)


def _atom(d: Dim) -> str:
    """Format a dim so it can sit inside a larger expression."""
    s = str(d)
    return s if isinstance(d, int) or _NAME.match(s) else f"({s})"


def compatible(a: Dim, b: Dim) -> bool:
    return a == b or not is_static(a) or not is_static(b)


def unify(a: Dim, b: Dim) -> Dim:
    """The more precise of two compatible dims (a static one wins)."""
    if is_static(a):
        return a
    return b if is_static(b) else a


def add(d: Dim, k: int) -> Dim:
    if is_static(d):
        return d + k
    if k == 0:
        return d
    return f"{_atom(d)} {'+' if k > 0 else '-'} {abs(k)}"


def product(dims: Iterable[Dim]) -> Dim:
    static, symbols = 1, []
    for d in dims:
        if is_static(d):
            static *= d
        else:
            symbols.append(_atom(d))
    if not symbols:
        return static
    terms = ([str(static)] if static != 1 else []) + symbols
    return "*".join(terms)


def floordiv(d: Dim, k: int) -> Dim:
    if is_static(d):
        return d // k
    return d if k == 1 else f"{_atom(d)} // {k}"


def window_out(n: Dim, kernel: int, stride: int, dilation: int, padding: str) -> Dim:
    """Output length of a convolution or pooling window along one axis (Keras's formulas)."""
    effective = dilation * (kernel - 1) + 1
    if padding in ("same", "causal"):
        if is_static(n):
            return -(-n // stride)
        return n if stride == 1 else f"ceil({_atom(n)} / {stride})"
    if is_static(n):
        return (n - effective) // stride + 1
    if stride == 1:
        return add(n, -(effective - 1))
    return f"({_atom(n)} - {effective}) // {stride} + 1"


def same_padding(n: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of Keras's "same": total = max((ceil(n/s)-1)s + k - n, 0), smaller half first."""
    effective = dilation * (kernel - 1) + 1
    out = math.ceil(n / stride)
    total = max((out - 1) * stride + effective - n, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class TensorType:
    """The static type of one value in the graph: a shape (ints or symbols) and a dtype name."""

    shape: tuple[Dim, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def keras_shape(self) -> tuple[int | None, ...]:
        """The shape as Keras prints it: symbolic dims become None."""
        return tuple(d if is_static(d) else None for d in self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"


def format_keras_shape(shape: Iterable[int | None]) -> str:
    """Keras's summary format: (None, 32); a one-dim shape prints without a trailing comma, as Keras does."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
