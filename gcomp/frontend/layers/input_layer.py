"""InputLayer and Input(): the model's entry points, with free (None) dims."""
from __future__ import annotations

from typing import Any, Sequence

from gcomp.errors import LayerConfigError
from gcomp.frontend.layer import Layer, Node
from gcomp.frontend.naming import auto_name
from gcomp.frontend.tensor import KerasHistory, KerasTensor
from gcomp.ir.types import DTYPES, TensorType
from gcomp.passes.infer_shapes import symbolic_input_shape


def _standardize_shape(shape: Any, what: str) -> tuple[int | None, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise LayerConfigError(f"{what} must be a tuple of ints or None, got {shape!r}") from None
    for d in dims:
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 0):
            raise LayerConfigError(f"{what} must be a tuple of non-negative ints or None, got {shape!r}")
    return dims


class InputLayer(Layer):
    """The layer behind an Input tensor; it has no weights and no inputs."""

    op = "input"

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None,
                 input_shape=None, batch_input_shape=None, **kwargs):
        name = name or auto_name("input_layer")
        super().__init__(name=name, **kwargs)
        shape = input_shape if shape is None else shape
        batch_shape = batch_input_shape if batch_shape is None else batch_shape
        if batch_shape is not None:
            batch_shape = _standardize_shape(batch_shape, f'Input "{name}" batch_shape')
        elif shape is not None:
            if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                           or batch_size <= 0):
                raise LayerConfigError(f'Input "{name}": batch_size must be a positive int or None, '
                                       f"got {batch_size!r}")
            batch_shape = (batch_size,) + _standardize_shape(shape, f'Input "{name}" shape')
        else:
            raise LayerConfigError(f'Input "{name}": give shape= (without the batch axis) or batch_shape=')
        dtype = dtype or "float32"
        if not isinstance(dtype, str):  # numpy dtype objects and classes
            import numpy as np
            dtype = np.dtype(dtype).name
        if dtype not in DTYPES:
            raise LayerConfigError(f'Input "{name}": unsupported dtype {dtype!r}; use one of {", ".join(DTYPES)}')
        self.batch_shape = batch_shape
        self.dtype = dtype
        self.built = True
        ttype = TensorType(symbolic_input_shape(name, batch_shape), dtype)
        node = Node(self, [], None)
        node.output_tensors = [KerasTensor(ttype, name, KerasHistory(self, 0, 0))]
        self._inbound_nodes.append(node)
        self.output = node.output_tensors[0]

    def __call__(self, *args, **kwargs):
        raise TypeError(f'InputLayer "{self.name}" cannot be called; use gcomp.Input(...) to make inputs')

    def get_config(self) -> dict:
        return {"name": self.name, "batch_shape": self.batch_shape, "dtype": self.dtype}


def Input(shape: Sequence[int | None] | None = None, batch_size: int | None = None,
          dtype: str | None = None, sparse: bool | None = None, batch_shape=None,
          name: str | None = None, tensor=None, optional: bool = False) -> KerasTensor:
    """A symbolic input of shape (batch_size, *shape); None dims are free (e.g. sequence length)."""
    if sparse:
        raise LayerConfigError("sparse inputs are not supported by gcomp")
    if tensor is not None or optional:
        raise LayerConfigError("Input(tensor=...) and optional inputs are not supported by gcomp")
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape, name=name)
    return layer.output
