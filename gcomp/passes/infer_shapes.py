"""Shape inference: symbolic dims for free input dims, then every op's shape rule in order."""
from __future__ import annotations

import re

from gcomp.errors import ShapeError
from gcomp.ir.graph import Graph
from gcomp.ir.types import TensorType
from gcomp.ops import infer_op
from gcomp.passes.manager import graph_pass


def symbolic_input_shape(name: str, shape: tuple, batch_symbol: str = "batch") -> tuple:
    """Name an input's free dims: the batch axis is ``batch``; one free dim after it is
    ``<input>_len`` (a sequence length), several are ``<input>_d<axis>``."""
    stem = re.sub(r"\W", "_", name)
    free = [i for i, d in enumerate(shape) if d is None and i > 0]
    out = []
    for i, d in enumerate(shape):
        if d is not None:
            out.append(d)
        elif i == 0:
            out.append(batch_symbol)
        else:
            out.append(f"{stem}_len" if len(free) == 1 else f"{stem}_d{i}")
    return tuple(out)


@graph_pass(keeps_training_params=True)
def infer_shapes(graph: Graph) -> Graph:
    """Give every value a TensorType: input dims named (batch, <input>_len), then each op's rule."""
    g = graph.copy()
    for n in g.topological_order():
        data = g.node(n)
        kind = data["kind"]
        if kind == "input":
            data["outputs"] = [TensorType(symbolic_input_shape(n, data["shape"]), data["dtype"])]
        elif kind == "op":
            ins = [g.value_type(r) for r in g.op_inputs(n)]
            params = {role: g.node(p)["outputs"][0] for role, p in g.op_params(n).items()}
            try:
                data["outputs"] = infer_op(data["op"], data["attrs"], ins, params)
            except ShapeError as e:
                where = f" (called at {data['call_site']})" if data.get("call_site") else ""
                raise ShapeError(f'op "{n}" ({data["op"]}){where}: {e}') from None
        for _, v, key, d in g.nx.out_edges(n, keys=True, data=True):
            d["type"] = data["outputs"][d["src_port"]]
    return g
