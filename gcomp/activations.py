"""Activation functions by Keras name; the functions compute on NumPy arrays.

Layers store the activation's name: the compiler lowers names, never Python callables, so a custom
Python function as an activation is refused with a clear error.
"""
from __future__ import annotations

from gcomp.codegen import numpy_runtime
from gcomp.errors import LayerConfigError

_rt = numpy_runtime()
ALIASES = {"swish": "silu", "hard_swish": "hard_silu", None: "linear"}
NAMES = tuple(sorted(set(_rt.ACTIVATIONS) | {k for k in ALIASES if k}))

for _name, _fn in _rt.ACTIVATIONS.items():
    globals()[_name] = _fn
swish = _rt.silu
hard_swish = _rt.hard_silu


def get(identifier) -> str:
    """The canonical activation name for a Keras identifier (None, a name, or a gcomp.activations function)."""
    if identifier is None or isinstance(identifier, str):
        name = ALIASES.get(identifier, identifier)
        if name not in _rt.ACTIVATIONS:
            raise LayerConfigError(f"unknown activation {identifier!r}; known: {', '.join(NAMES)}")
        return name
    for name, fn in _rt.ACTIVATIONS.items():
        if identifier is fn:
            return name
    raise LayerConfigError(
        f"cannot compile activation {getattr(identifier, '__name__', identifier)!r}: gcomp compiles "
        f"activations by name; use one of {', '.join(NAMES)}")
