"""The IR graph: a networkx.MultiDiGraph of input, param and op nodes.

One op node stands for one layer *call*; the parameter nodes of a layer are shared by all its calls,
so weight sharing is an edge, never a copy. Edges go from a producer to a consumer and carry
``port`` (the consumer's input slot), ``src_port`` (which output of the producer) and, once shapes
are inferred, ``type`` (a TensorType). A multigraph because one value may feed two slots of one op
(``add([x, x])``).
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Any, Iterator

import networkx as nx
import numpy as np

from gcomp.ir.types import TensorType


@dataclass(frozen=True)
class ValueRef:
    """One value of the graph: output ``port`` of node ``node``."""

    node: str
    port: int = 0

    def __str__(self) -> str:
        return f"%{self.node}" if self.port == 0 else f"%{self.node}:{self.port}"


class Graph:
    """A model in IR form: nodes on networkx plus the ordered graph inputs, outputs and parameters."""

    def __init__(self, name: str):
        self.name = name
        self.nx = nx.MultiDiGraph()
        self.inputs: list[str] = []
        self.outputs: list[tuple[str, ValueRef]] = []
        self.params: dict[str, np.ndarray] = {}
        self.notes: list[str] = []
        """What passes rewrote, in order (the pass manager reports them)."""
        self._counter = itertools.count()

    # ---- construction -------------------------------------------------------------------------
    def _add_node(self, node_id: str, **attrs: Any) -> None:
        if node_id in self.nx:
            raise ValueError(f"IR node {node_id!r} already exists")
        self.nx.add_node(node_id, order=next(self._counter), **attrs)

    def add_input(self, name: str, shape: tuple, dtype: str) -> ValueRef:
        """A graph input; ``shape`` may hold None (free dims) until shapes are inferred."""
        self._add_node(name, kind="input", shape=tuple(shape), dtype=dtype,
                       outputs=[TensorType(tuple(shape), dtype)])
        self.inputs.append(name)
        return ValueRef(name)

    def add_param(self, name: str, value: np.ndarray, *, role: str, layer: str,
                  trainable: bool = True, regularizer: tuple[float, float] | None = None,
                  constraint: dict | None = None) -> ValueRef:
        """A weight; ``regularizer`` (l1, l2) makes training add l1 sum|w| + l2 sum w^2 to the loss,
        ``constraint`` (a gcomp.constraints spec) projects it after each optimizer update."""
        extra = {"regularizer": tuple(regularizer)} if regularizer is not None else {}
        if constraint is not None:
            extra["constraint"] = dict(constraint)
        self._add_node(name, kind="param", role=role, layer=layer, trainable=trainable,
                       outputs=[TensorType(tuple(value.shape), str(value.dtype))], **extra)
        self.params[name] = value
        return ValueRef(name)

    def add_op(self, name: str, op: str, inputs: list[ValueRef], params: dict[str, ValueRef],
               attrs: dict, *, num_outputs: int = 1, layer: str | None = None,
               call_site: str | None = None) -> list[ValueRef]:
        """An op node reading ``inputs`` then ``params`` (in the order given); returns its outputs."""
        self._add_node(name, kind="op", op=op, attrs=dict(attrs), layer=layer or name,
                       call_site=call_site, outputs=[None] * num_outputs)
        for port, ref in enumerate(list(inputs) + list(params.values())):
            self.nx.add_edge(ref.node, name, port=port, src_port=ref.port, type=None)
        return [ValueRef(name, i) for i in range(num_outputs)]

    def add_output(self, name: str, ref: ValueRef) -> None:
        self.outputs.append((name, ref))

    # ---- rewriting (for passes, on their own copy) -----------------------------------------------
    def remove_node(self, node_id: str) -> None:
        self.nx.remove_node(node_id)
        self.params.pop(node_id, None)

    def replace_uses(self, old: ValueRef, new: ValueRef, keep: str | None = None) -> None:
        """Make every reader of ``old`` (ops and graph outputs) read ``new`` instead; the op ``keep``
        (typically the one computing ``new`` from ``old``) goes on reading ``old``."""
        for consumer, port in self.consumers(old):
            if consumer == keep:
                continue
            key = next(k for u, _, k, d in self.nx.in_edges(consumer, keys=True, data=True)
                       if u == old.node and d["port"] == port)
            self.nx.remove_edge(old.node, consumer, key)
            self.nx.add_edge(new.node, consumer, port=port, src_port=new.port, type=None)
        self.outputs = [(name, new if ref == old else ref) for name, ref in self.outputs]

    def unique_name(self, hint: str) -> str:
        name, i = hint, 1
        while name in self.nx:
            name, i = f"{hint}_{i}", i + 1
        return name

    def param_bytes(self) -> int:
        return sum(v.nbytes for v in self.params.values())

    # ---- queries ------------------------------------------------------------------------------
    def node(self, node_id: str) -> dict:
        return self.nx.nodes[node_id]

    def kind(self, node_id: str) -> str:
        return self.nx.nodes[node_id]["kind"]

    def in_edges(self, node_id: str) -> list[tuple[str, dict]]:
        """(producer, edge data) of a node's inputs, sorted by port."""
        edges = [(u, d) for u, _, d in self.nx.in_edges(node_id, data=True)]
        return sorted(edges, key=lambda e: e[1]["port"])

    def op_inputs(self, node_id: str) -> list[ValueRef]:
        """The data inputs of an op (parameters excluded), in port order."""
        return [ValueRef(u, d["src_port"]) for u, d in self.in_edges(node_id)
                if self.kind(u) != "param"]

    def op_params(self, node_id: str) -> dict[str, str]:
        """role -> param node id, in port order."""
        return {self.node(u)["role"]: u for u, d in self.in_edges(node_id) if self.kind(u) == "param"}

    def value_type(self, ref: ValueRef) -> TensorType:
        t = self.node(ref.node)["outputs"][ref.port]
        if t is None:
            raise ValueError(f"type of {ref} is unknown: run shape inference first")
        return t

    def consumers(self, ref: ValueRef) -> list[tuple[str, int]]:
        """(consumer node, port) pairs reading ``ref``."""
        return sorted(((v, d["port"]) for _, v, d in self.nx.out_edges(ref.node, data=True)
                       if d["src_port"] == ref.port), key=lambda c: self.node(c[0])["order"])

    def nodes(self, kind: str | None = None) -> Iterator[str]:
        for n in self.topological_order():
            if kind is None or self.kind(n) == kind:
                yield n

    def topological_order(self) -> list[str]:
        """A deterministic topological order: ties broken by creation order (Kahn's algorithm)."""
        g = self.nx
        pending = {n: d for n, d in g.in_degree()}
        ready = [(g.nodes[n]["order"], n) for n, d in pending.items() if d == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            _, n = heapq.heappop(ready)
            order.append(n)
            for succ in g.successors(n):
                pending[succ] -= g.number_of_edges(n, succ)
                if pending[succ] == 0:
                    heapq.heappush(ready, (g.nodes[succ]["order"], succ))
        if len(order) != len(pending):
            raise ValueError(f"graph {self.name!r} has a cycle")
        return order

    def copy(self) -> "Graph":
        """A structural copy: attribute dicts and their mutable values (attrs, outputs) are new;
        TensorTypes and parameter arrays are immutable by convention and shared."""
        g = Graph(self.name)
        g.nx = self.nx.copy()  # new attribute dicts, shared values
        for _, data in g.nx.nodes(data=True):
            data["outputs"] = list(data["outputs"])
            if "attrs" in data:
                data["attrs"] = dict(data["attrs"])
        g.inputs = list(self.inputs)
        g.outputs = list(self.outputs)
        g.params = dict(self.params)
        g.notes = list(self.notes)
        g._counter = itertools.count(max((d["order"] for _, d in self.nx.nodes(data=True)), default=-1) + 1)
        return g

    def __repr__(self) -> str:
        ops = sum(1 for _ in self.nodes("op"))
        return f"<gcomp.ir.Graph {self.name!r}: {len(self.inputs)} inputs, {ops} ops, {len(self.params)} params>"
