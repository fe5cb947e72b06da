"""Parameter deduplication by content."""
from __future__ import annotations

import hashlib

from gcomp.ir.graph import Graph, ValueRef
from gcomp.passes.manager import graph_pass


@graph_pass(keeps_training_params=False)
def dedupe_weights(graph: Graph) -> Graph:
    """Parameters equal by content (dtype, shape, bytes) -> one parameter read by all their readers.

    Not for training: two weights that are equal now (zero biases at initialization) must still
    train apart. A shared layer's weights are one parameter already: lowering makes them so."""
    g = graph.copy()
    first: dict[tuple, str] = {}
    for n in list(g.nodes("param")):
        value = g.params[n]
        role = g.node(n)["role"]  # ops find their parameters by role: only merge like with like
        key = (role, str(value.dtype), value.shape, hashlib.sha256(value.tobytes()).hexdigest())
        keep = first.setdefault(key, n)
        if keep == n:
            continue
        for consumer, port in g.consumers(ValueRef(n)):
            g.nx.add_edge(keep, consumer, port=port, src_port=0, type=None)
        g.notes.append(f"parameter {n} equals {keep} ({value.nbytes:,} bytes): stored once")
        g.remove_node(n)
    return g
