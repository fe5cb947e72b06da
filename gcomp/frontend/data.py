"""Checks and converts data for a model's inputs, naming the input (and the layers reading it).

The same checks serve Model.predict and gcomp.runtime sessions, so both say the same things.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gcomp.errors import InputDataError


@dataclass(frozen=True)
class InputSpec:
    """What one input takes: its name, shape (None = free) and dtype; ``readers`` names its layers."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    readers: tuple[str, ...] = ()
    index_limits: tuple[tuple[str, int], ...] = ()
    """(Embedding layer, input_dim) for each Embedding reading this input directly."""

    def describe(self) -> str:
        return f'input "{self.name}"' + (f" (read by {', '.join(self.readers)})" if self.readers else "")


def batch_size_or_default(name: str, value: Any) -> int:
    """A batch size argument (an int or NumPy integer, at least 1) or Keras's default 32 for None."""
    if value is None:
        return 32
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _as_list(owner: str, specs: list[InputSpec], x: Any) -> list:
    names = [s.name for s in specs]
    if isinstance(x, dict):
        unknown = [k for k in x if k not in names]
        missing = [n for n in names if n not in x]
        if unknown or missing:
            parts = ([f"unknown key(s) {unknown}"] if unknown else []) + \
                    ([f"missing input(s) {missing}"] if missing else [])
            raise InputDataError(f"{owner} takes inputs {names}; the data dict has " + " and ".join(parts))
        return [x[n] for n in names]
    if isinstance(x, (list, tuple)):
        if len(names) > 1 or (len(x) == 1 and hasattr(x[0], "shape")):
            if len(x) != len(names):
                raise InputDataError(f"{owner} takes {len(names)} input(s) {names}, got a list of {len(x)} arrays")
            return list(x)
        return [x]
    if len(names) > 1:
        raise InputDataError(f"{owner} takes {len(names)} inputs {names}: pass a list in that order or a dict "
                             f"by name, not a single {type(x).__name__}")
    return [x]


def _convert(spec: InputSpec, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise InputDataError(f"{spec.describe()}: cannot convert data to an array ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise InputDataError(f"{spec.describe()} expects numbers ({spec.dtype}), got an array of dtype {arr.dtype}")
    if arr.ndim != len(spec.shape):
        raise InputDataError(f"{spec.describe()} expects rank {len(spec.shape)} (shape {spec.shape}), got an array "
                             f"of shape {arr.shape}")
    for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
        if want is not None and want != got:
            raise InputDataError(f"{spec.describe()} expects shape {spec.shape}, got an array of shape {arr.shape} "
                                 f"(axis {axis} should be {want})")
    target = np.dtype(spec.dtype)
    if target.kind in "iu" and arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputDataError(f"{spec.describe()} expects integer indices ({spec.dtype}), got non-integer floats")
    if target.kind in "iu" and arr.dtype.kind in "iuf" and arr.size:
        info = np.iinfo(target)
        low, high = arr.min(), arr.max()
        if low < info.min or high > info.max:  # a cast would wrap around silently
            bad = low if low < info.min else high
            raise InputDataError(f"{spec.describe()} expects {spec.dtype} values, got {bad}, outside "
                                 f"[{info.min}, {info.max}]")
    arr = np.ascontiguousarray(arr, dtype=target)
    if spec.index_limits:
        from gcomp.codegen import numpy_runtime
        for layer, input_dim in spec.index_limits:
            numpy_runtime().check_indices(arr, input_dim, layer, f'input "{spec.name}"')
    return arr


def check_inputs(owner: str, specs: list[InputSpec], x: Any) -> list[np.ndarray]:
    """Arrays in ``specs`` order, validated: names, ranks, fixed dims, dtypes, equal batch sizes."""
    if x is None:
        raise InputDataError(f"{owner} got no input data (x is None)")
    arrays = [_convert(s, v) for s, v in zip(specs, _as_list(owner, specs, x))]
    sizes = {s.name: a.shape[0] for s, a in zip(specs, arrays) if a.ndim}
    if len(set(sizes.values())) > 1:
        raise InputDataError("inputs have different batch sizes: " + ", ".join(f"{n}={s}" for n, s in sizes.items()))
    return arrays


_INDEX_PRESERVING = ("reshape", "flatten", "dropout")


def embedding_index_limits(graph) -> dict[str, list[tuple[str, int]]]:
    """For each graph input, the Embeddings that index with its values (through reshapes and nested
    models): checking them up front gives every backend the same error, and ONNX's Gather would
    otherwise read negative indices from the end."""
    limits: dict[str, list[tuple[str, int]]] = {}
    for n in graph.nodes("op"):
        data = graph.node(n)
        if data["op"] != "embedding":
            continue
        ref = graph.op_inputs(n)[0]
        while graph.kind(ref.node) == "op" and graph.node(ref.node)["op"] in _INDEX_PRESERVING:
            ref = graph.op_inputs(ref.node)[0]
        if graph.kind(ref.node) == "input":
            limits.setdefault(ref.node, []).append((data["layer"], data["attrs"]["input_dim"]))
    return limits


def model_input_specs(model) -> list[InputSpec]:
    limits = embedding_index_limits(model._inference_graph())
    specs = []
    for name, t in zip(model.input_names, model.inputs):
        readers = tuple(n.layer.name for n in model._graph_map().nodes if any(i is t for i in n.input_tensors))
        specs.append(InputSpec(name, t.shape, t.dtype, readers, tuple(limits.get(name, ()))))
    return specs


def prepare_inputs(model, x: Any) -> list[np.ndarray]:
    """Arrays in model.inputs order, validated against the model's inputs."""
    cache = model._compiled_cache
    if "input_specs" not in cache:
        cache["input_specs"] = model_input_specs(model)
    return check_inputs(f'model "{model.name}"', cache["input_specs"], x)
