"""Checks and converts user data for a model's inputs, naming the input and the layers reading it."""
from __future__ import annotations

from typing import Any

import numpy as np

from gcomp.errors import InputDataError


def _readers(model, tensor) -> str:
    """Names of the layers that read a model input (for error messages)."""
    names = [n.layer.name for n in model._graph_map().nodes
             if any(t is tensor for t in n.input_tensors)]
    return f" (read by {', '.join(names)})" if names else ""


def _as_list(model, x: Any) -> list:
    names = model.input_names
    if isinstance(x, dict):
        unknown = [k for k in x if k not in names]
        missing = [n for n in names if n not in x]
        if unknown or missing:
            parts = ([f"unknown key(s) {unknown}"] if unknown else []) + \
                    ([f"missing input(s) {missing}"] if missing else [])
            raise InputDataError(f'model "{model.name}" takes inputs {names}; the data dict has '
                                 + " and ".join(parts))
        return [x[n] for n in names]
    if isinstance(x, (list, tuple)):
        if len(names) > 1 or (len(x) == 1 and hasattr(x[0], "shape")):
            if len(x) != len(names):
                raise InputDataError(f'model "{model.name}" takes {len(names)} input(s) {names}, '
                                     f"got a list of {len(x)} arrays")
            return list(x)
        return [x]
    if len(names) > 1:
        raise InputDataError(f'model "{model.name}" takes {len(names)} inputs {names}: pass a list in that '
                             f"order or a dict by name, not a single {type(x).__name__}")
    return [x]


def _convert(model, tensor, name: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise InputDataError(f'input "{name}"{_readers(model, tensor)}: cannot convert data to an array ({e})') from None
    expected = tensor.shape
    if arr.dtype.kind not in "biuf":
        raise InputDataError(f'input "{name}"{_readers(model, tensor)} expects numbers ({tensor.dtype}), '
                             f"got an array of dtype {arr.dtype}")
    if arr.ndim != len(expected):
        raise InputDataError(f'input "{name}"{_readers(model, tensor)} expects rank {len(expected)} '
                             f"(shape {expected}), got an array of shape {arr.shape}")
    for axis, (want, got) in enumerate(zip(expected, arr.shape)):
        if want is not None and want != got:
            raise InputDataError(f'input "{name}"{_readers(model, tensor)} expects shape {expected}, got an '
                                 f"array of shape {arr.shape} (axis {axis} should be {want})")
    target = np.dtype(tensor.dtype)
    if target.kind in "iu" and arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputDataError(f'input "{name}"{_readers(model, tensor)} expects integer indices '
                                 f"({tensor.dtype}), got non-integer floats")
    return np.ascontiguousarray(arr, dtype=target)


def prepare_inputs(model, x: Any) -> list[np.ndarray]:
    """Arrays in model.inputs order, validated (names, ranks, dims, dtypes, equal batch sizes)."""
    if x is None:
        raise InputDataError(f'model "{model.name}" got no input data (x is None)')
    values = _as_list(model, x)
    arrays = [_convert(model, t, n, v) for t, n, v in zip(model.inputs, model.input_names, values)]
    sizes = {n: a.shape[0] for n, a in zip(model.input_names, arrays)}
    if len(set(sizes.values())) > 1:
        raise InputDataError(f"inputs have different batch sizes: "
                             + ", ".join(f"{n}={s}" for n, s in sizes.items()))
    return arrays
