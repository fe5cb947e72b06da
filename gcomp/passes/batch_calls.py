"""Running the calls of one shared layer as one call on inputs stacked along the batch axis."""
from __future__ import annotations

from collections import defaultdict

import networkx as nx

from gcomp.ir.graph import Graph, ValueRef
from gcomp.ops import infer_op
from gcomp.passes.manager import graph_pass

BATCHABLE = ("dense", "conv", "lstm", "gru", "embedding")


def _call_groups(g: Graph) -> list[list[str]]:
    """Calls of one op with one set of parameters and attributes, in graph order."""
    groups = defaultdict(list)
    for n in g.nodes("op"):
        data = g.node(n)
        if data["op"] in BATCHABLE:
            key = (data["op"], tuple(g.op_params(n).values()), repr(sorted(data["attrs"].items())))
            groups[key].append(n)
    return [calls for calls in groups.values() if len(calls) >= 2]


def _stackable(g: Graph, calls: list[str]) -> list[str]:
    """The calls whose inputs have exactly one type (batch included), none depending on another."""
    types = [g.value_type(g.op_inputs(c)[0]) for c in calls]
    chosen = [c for c, t in zip(calls, types) if t == types[0]]
    independent = []
    for c in chosen:
        if not any(nx.has_path(g.nx, other, c) or nx.has_path(g.nx, c, other) for other in independent):
            independent.append(c)
    return independent


def _typed(g: Graph, refs: list[ValueRef]) -> list[ValueRef]:
    """Type the outputs of the op just added (a later group's calls may read them in this pass)."""
    n = refs[0].node
    data = g.node(n)
    params = {role: g.node(p)["outputs"][0] for role, p in g.op_params(n).items()}
    data["outputs"] = infer_op(data["op"], data["attrs"], [g.value_type(r) for r in g.op_inputs(n)], params)
    return refs


@graph_pass(keeps_training_params=True)
def batch_shared_calls(graph: Graph) -> Graph:
    """Calls of one shared layer on independent inputs of one shape -> one call on the inputs stacked
    along the batch axis, then the outputs cut apart: one kernel, one weight read, a larger GEMM.

    Cost rule: only inputs of identical type (the same fixed dims or the same symbols) are stacked,
    so stacking is one Concat and unstacking one Split. Inputs of independent free lengths (two
    sentences) would need padding and per-sample lengths, whose extra nodes cost more than the
    launch they save."""
    g = graph.copy()
    for calls in _call_groups(g):
        calls = _stackable(g, calls)
        if len(calls) < 2:
            continue
        first = g.node(calls[0])
        name = "+".join(calls)
        layer = first["layer"]
        (stacked,) = _typed(g, g.add_op(g.unique_name(f"{name}/stacked"), "stack_batch",
                                        [g.op_inputs(c)[0] for c in calls], {}, {}, layer=layer))
        params = {role: ValueRef(p) for role, p in g.op_params(calls[0]).items()}
        outs = _typed(g, g.add_op(g.unique_name(name), first["op"], [stacked], params, dict(first["attrs"]),
                                  num_outputs=len(first["outputs"]), layer=layer))
        for port, out in enumerate(outs):
            parts = _typed(g, g.add_op(g.unique_name(f"{name}/unstacked{port or ''}"), "unstack_batch", [out], {},
                                       {"parts": len(calls)}, num_outputs=len(calls), layer=layer))
            for c, part in zip(calls, parts):
                g.replace_uses(ValueRef(c, port), part)
        for c in calls:
            g.remove_node(c)
        g.notes.append(f'{", ".join(calls)} (layer "{layer}"): {len(calls)} calls of one layer run as one call '
                       f"{name} on their inputs stacked along the batch axis")
    return g
