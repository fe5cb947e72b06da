"""KerasTensor: a symbolic tensor, the output of an Input or of a layer call."""
from __future__ import annotations

from typing import NamedTuple

from gcomp.ir.types import TensorType


class KerasHistory(NamedTuple):
    layer: object
    node_index: int
    tensor_index: int


class KerasTensor:
    """A symbolic tensor: a shape (None for free dims, the batch first), a dtype and the layer call
    that produced it. Layers called on KerasTensors record the call instead of computing."""

    def __init__(self, ttype: TensorType, name: str, history: KerasHistory):
        self._type = ttype
        self.name = name
        self._keras_history = history

    @property
    def shape(self) -> tuple[int | None, ...]:
        return self._type.keras_shape()

    @property
    def dtype(self) -> str:
        return self._type.dtype

    @property
    def ndim(self) -> int:
        return self._type.rank

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    # Arithmetic builds merge layers, as Keras's symbolic tensors do.
    def _merge(self, other, cls_name: str, swap: bool = False):
        from gcomp.frontend.layers import merge
        if not isinstance(other, KerasTensor):
            return NotImplemented
        pair = [other, self] if swap else [self, other]
        return getattr(merge, cls_name)()(pair)

    def __add__(self, other):
        return self._merge(other, "Add")

    def __radd__(self, other):
        return self._merge(other, "Add", swap=True)

    def __sub__(self, other):
        return self._merge(other, "Subtract")

    def __rsub__(self, other):
        return self._merge(other, "Subtract", swap=True)

    def __mul__(self, other):
        return self._merge(other, "Multiply")

    def __rmul__(self, other):
        return self._merge(other, "Multiply", swap=True)

    __hash__ = object.__hash__
