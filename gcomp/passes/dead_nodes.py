"""Dead-node elimination."""
from __future__ import annotations

from gcomp.ir.graph import Graph, ValueRef
from gcomp.ops.recurrent import RECURRENT_STATES
from gcomp.passes.manager import graph_pass


def _trim_recurrent_states(g: Graph, n: str) -> None:
    """An LSTM or GRU whose states nobody reads stops returning them (h duplicates a last output)."""
    data = g.node(n)
    if data["op"] not in RECURRENT_STATES or not data["attrs"]["return_state"]:
        return
    if not data["attrs"]["return_sequences"] and g.consumers(ValueRef(n, 1)):
        g.replace_uses(ValueRef(n, 1), ValueRef(n, 0))  # output 0 is h already
        g.notes.append(f'{n} (layer "{data["layer"]}"): readers of state h read the equal output 0')
    states = range(1, 1 + len(RECURRENT_STATES[data["op"]]))
    if any(g.consumers(ValueRef(n, p)) or any(r == ValueRef(n, p) for _, r in g.outputs) for p in states):
        return
    data["attrs"] = {**data["attrs"], "return_state": False}
    data["outputs"] = data["outputs"][:1]
    g.notes.append(f'{n} (layer "{data["layer"]}"): dropped the unused {data["op"].upper()} states '
                   f'{", ".join(RECURRENT_STATES[data["op"]])}')


@graph_pass(keeps_training_params=True)
def eliminate_dead_nodes(graph: Graph) -> Graph:
    """Remove ops no output depends on, parameters no op reads, and unused LSTM/GRU state outputs."""
    g = graph.copy()
    live: set[str] = set()
    stack = [ref.node for _, ref in g.outputs]
    while stack:  # iterative: deep models must not hit the recursion limit
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(g.nx.predecessors(n))
    for n in g.topological_order():
        data = g.node(n)
        if n in live or data["kind"] == "input":
            continue
        what = f'op {n} (layer "{data["layer"]}")' if data["kind"] == "op" else f"parameter {n}"
        g.notes.append(f"removed {what}: no output depends on it")
        g.remove_node(n)
    for n in list(g.nodes("op")):
        _trim_recurrent_states(g, n)
    return g
