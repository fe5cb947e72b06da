"""Eager layer calls: `Dense(3)(np.ones((2, 4)))` runs that one layer through the NumPy backend."""
from __future__ import annotations

from typing import Any

import numpy as np

from gcomp.errors import InputDataError, ShapeError
from gcomp.ir.graph import Graph
from gcomp.ir.types import TensorType
from gcomp.passes import infer_shapes, run_passes


def run_layer(layer, data: Any, call_site: str | None):
    """One call of ``layer`` on concrete arrays, without recording a call in any model."""
    from gcomp.backends.numpy_backend import compile_graph
    arrays = [np.asarray(d) for d in (data if isinstance(data, (list, tuple)) else [data])]
    for a in arrays:
        if a.dtype.kind not in "biuf":
            raise InputDataError(f"{layer._describe(call_site)}: cannot run on data of dtype {a.dtype}")
    types = [TensorType(a.shape, "float32" if a.dtype.kind == "f" else str(a.dtype)) for a in arrays]
    try:
        if not layer.built:
            layer.build(types)
            layer.built = True
    except ShapeError as e:
        raise ShapeError(f"{layer._describe(call_site)}: {e}") from None
    graph = Graph(layer.name)
    inputs = [graph.add_input(f"x{i}", a.shape, t.dtype) for i, (a, t) in enumerate(zip(arrays, types))]
    added = {}

    def param(v):  # each weight once, even when parts of the layer share it
        if id(v) not in added:
            added[id(v)] = graph.add_param(v.path, v.value, role=v.name, layer=v._layer.name)
        return added[id(v)]
    refs = layer.lower_call(graph, param, inputs, layer.name, "", call_site, len(layer.compute_output_types(types)))
    for i, ref in enumerate(refs):
        graph.add_output(f"y{i}", ref)
    try:
        graph = run_passes(graph, [infer_shapes])
    except ShapeError as e:
        raise ShapeError(f"{layer._describe(call_site)}: {e}") from None
    outs = compile_graph(graph)(dict(graph.params), [a.astype(t.dtype) for a, t in zip(arrays, types)])
    return outs[0] if len(outs) == 1 else outs
