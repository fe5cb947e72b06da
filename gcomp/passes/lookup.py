"""Folding the linear op that reads an Embedding into the embedding's table.

An Embedding looks rows up; a Dense or a valid Conv1D reading it is linear in those rows. So
``dense(embedding(x))`` is a lookup in the table ``E @ W + b``, and a Conv1D with K taps is the sum of
K lookups, tap k in ``E @ W[k]`` at index ``x[t*strides + k*dilation]``. Per token that replaces
K*C*F multiply-adds by K*F additions: the seed's multi-output model's first Conv1D (K=5, C=256,
F=128) is 60% of its multiply-adds at length 500. The price is memory: K tables of (input_dim, F)
instead of one of (input_dim, C), so the cost rule bounds their growth.
"""
from __future__ import annotations

import numpy as np

from gcomp.ir.graph import Graph, ValueRef
from gcomp.passes.manager import graph_pass
from gcomp.passes.pointwise import drop_unread_params

MAX_TABLE_GROWTH = 4
"""Fold only while the new tables take at most this many times the embedding table's bytes."""
MAX_TABLE_BYTES = 1 << 30
"""...and at most 1 GiB, far from protobuf's 2 GiB limit on an ONNX file."""


def _tap_kernels(g: Graph, n: str) -> tuple[np.ndarray, dict] | None:
    """(kernel as (taps, in, out), attrs of the folded op) if op ``n`` is a Dense or valid Conv1D."""
    data = g.node(n)
    a = data["attrs"]
    kernel = g.params[g.op_params(n)["kernel"]]
    if data["op"] == "dense":
        return kernel[None], {"strides": 1, "dilation_rate": 1, "activation": a["activation"]}
    if data["op"] == "conv" and a["rank"] == 1 and a["padding"] == "valid":
        return kernel, {"strides": a["strides"][0], "dilation_rate": a["dilation_rate"][0],
                        "activation": a["activation"]}
    return None


@graph_pass(keeps_training_params=False)
def fold_embedding_projections(graph: Graph) -> Graph:
    """embedding -> dense or valid conv1d: one lookup table per kernel tap, summed (bias in tap 0)."""
    g = graph.copy()
    for n in list(g.nodes("op")):
        if g.node(n)["op"] not in ("dense", "conv"):
            continue
        (x,) = g.op_inputs(n)
        if g.kind(x.node) != "op" or g.node(x.node)["op"] != "embedding":
            continue
        folded = _tap_kernels(g, n)
        if folded is None:
            continue
        kernel, attrs = folded
        table = g.params[g.op_params(x.node)["embeddings"]]
        table_bytes = kernel.shape[0] * table.shape[0] * kernel.shape[2] * 4
        if table_bytes > min(MAX_TABLE_GROWTH * table.nbytes, MAX_TABLE_BYTES):
            continue
        # In float32, as the convolution itself sums: on the seed's tables float64 took 1.2 s instead
        # of 0.25 s and moved results by 1e-6 relative, float32 rounding's own size.
        tables = np.matmul(table.astype(np.float32), kernel.astype(np.float32))  # (taps, input_dim, units)
        if "bias" in g.op_params(n):
            tables[0] += g.params[g.op_params(n)["bias"]]
        emb_layer, layer = g.node(x.node)["layer"], g.node(n)["layer"]
        name = g.unique_name(f"{x.node}+{n}")
        ref = g.add_param(g.unique_name(f"{name}/tables"), tables, role="tables",
                          layer=layer, trainable=False)
        # The op is the reading layer's (a window too long for the input is its error); an index
        # outside the table is the Embedding's error, so its name stays in the attributes.
        (y,) = g.add_op(name, "embedding_conv", g.op_inputs(x.node), {"tables": ref},
                        {**attrs, "embedding": emb_layer}, layer=layer)
        g.replace_uses(ValueRef(n), y)
        g.remove_node(n)
        if not g.consumers(x) and all(r != x for _, r in g.outputs):
            g.remove_node(x.node)
        g.notes.append(f'{x.node} -> {n} (layers "{emb_layer}", "{layer}"): folded into {kernel.shape[0]} '
                       f"lookup table(s) of {tables.shape[1]}x{tables.shape[2]} in {name}")
    return drop_unread_params(g)
