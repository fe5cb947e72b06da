"""Variable: one weight array owned by a layer, shared by every call of that layer."""
from __future__ import annotations

import numpy as np


class Variable:
    """A named weight (``path`` is "<layer>/<name>", as in Keras) holding a NumPy array."""

    def __init__(self, value: np.ndarray, name: str, layer, trainable: bool = True, regularizer=None):
        self._value = np.ascontiguousarray(value)
        self.regularizer = regularizer
        """A gcomp.regularizers object or None: its penalty joins the training loss (as in Keras)."""
        self.constraint: dict | None = None
        """A gcomp.constraints spec or None: the projection after each optimizer update."""
        self.version = 0
        """Incremented by assign(): compiled forms that baked the value in know to rebuild."""
        self.name = name
        self._layer = layer
        self._trainable = trainable

    @property
    def path(self) -> str:
        """"<layer>/<name>"; a wrapped layer's weights have the wrapper's name in front, as in Keras
        ("bidirectional/forward_lstm/kernel"), so two wrappers of one layer do not clash."""
        parent = self._layer._parent
        return f"{parent.name + '/' if parent is not None else ''}{self._layer.name}/{self.name}"

    @property
    def trainable(self) -> bool:
        return self._trainable and self._layer.trainable

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._value.shape)

    @property
    def dtype(self) -> str:
        return str(self._value.dtype)

    @property
    def value(self) -> np.ndarray:
        return self._value

    def numpy(self) -> np.ndarray:
        return self._value.copy()

    def assign(self, value) -> None:
        value = np.asarray(value)
        if value.shape != self._value.shape:
            raise ValueError(f"cannot assign a value of shape {value.shape} to variable {self.path!r} "
                             f"of shape {self._value.shape}")
        np.copyto(self._value, value, casting="unsafe")  # in place: a training program may hold a view
        self.version += 1

    def __array__(self, dtype=None, copy=None):
        return self._value if dtype is None else self._value.astype(dtype)

    def __repr__(self) -> str:
        return f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}>"
