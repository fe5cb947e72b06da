"""verify(): the IR's invariants, checked after lowering and after every pass."""
from __future__ import annotations

import networkx as nx

from gcomp.errors import IRVerificationError
from gcomp.ir.graph import Graph
from gcomp.ops import get_op


def _fail(node: str, what: str) -> None:
    raise IRVerificationError(f"IR node {node!r}: {what}")


def verify(graph: Graph) -> Graph:
    """Check the graph's structure; return it unchanged or raise IRVerificationError naming the node."""
    g = graph.nx
    if not nx.is_directed_acyclic_graph(g):
        cycle = nx.find_cycle(g)
        raise IRVerificationError(f"graph {graph.name!r} has a cycle through {[e[0] for e in cycle]}")
    declared_inputs = set(graph.inputs)
    if len(declared_inputs) != len(graph.inputs):
        raise IRVerificationError(f"graph {graph.name!r} lists an input twice: {graph.inputs}")
    for node, data in g.nodes(data=True):
        kind = data.get("kind")
        if kind in ("input", "param"):
            if g.in_degree(node):
                _fail(node, f"{kind} node has incoming edges")
            if kind == "input" and node not in declared_inputs:
                _fail(node, "input node is not among graph.inputs")
            if kind == "param":
                value = graph.params.get(node)
                if value is None:
                    _fail(node, "param node has no value in graph.params")
                t = data["outputs"][0]
                if tuple(value.shape) != tuple(t.shape) or str(value.dtype) != t.dtype:
                    _fail(node, f"param value is {value.dtype}{list(value.shape)}, node says {t}")
            continue
        if kind != "op":
            _fail(node, f"unknown node kind {kind!r}")
        _verify_op(graph, node, data)
    for name in graph.inputs:
        if name not in g or g.nodes[name]["kind"] != "input":
            raise IRVerificationError(f"graph input {name!r} is not an input node")
    names = [name for name, _ in graph.outputs]
    if len(set(names)) != len(names):
        raise IRVerificationError(f"graph {graph.name!r} has duplicate output names: {names}")
    for name, ref in graph.outputs:
        if ref.node not in g or ref.port >= len(g.nodes[ref.node]["outputs"]):
            raise IRVerificationError(f"graph output {name!r} refers to missing value {ref}")
    stray = set(graph.params) - set(g.nodes)
    if stray:
        raise IRVerificationError(f"graph.params holds values of no node: {sorted(stray)}")
    return graph


def _verify_op(graph: Graph, node: str, data: dict) -> None:
    try:
        op = get_op(data["op"])
    except KeyError as e:
        _fail(node, str(e))
    edges = graph.in_edges(node)
    ports = [d["port"] for _, d in edges]
    if ports != list(range(len(ports))):
        _fail(node, f"input ports are {ports}, expected 0..{len(ports) - 1}")
    n_data = 0
    for u, d in edges:
        producer = graph.node(u)
        if producer["kind"] == "param":
            continue
        if n_data != d["port"]:
            _fail(node, "data inputs must come before parameters")
        n_data += 1
        if d["src_port"] >= len(producer["outputs"]):
            _fail(node, f"reads output {d['src_port']} of {u!r}, which has {len(producer['outputs'])}")
        produced = producer["outputs"][d["src_port"]]
        if d["type"] is not None and produced is not None and d["type"] != produced:
            _fail(node, f"edge from {u!r} carries {d['type']} but {u!r} produces {produced}")
    if n_data < op.min_inputs or (op.max_inputs is not None and n_data > op.max_inputs):
        _fail(node, f"op {op.name} takes {op.min_inputs}..{op.max_inputs} data inputs, has {n_data}")
    roles = tuple(graph.op_params(node))
    expected = op.param_roles(data["attrs"])
    if roles != expected:
        _fail(node, f"op {op.name} reads params {expected}, has {roles}")
