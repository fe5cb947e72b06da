"""A deterministic text form of the IR, for people, golden tests and fixpoint detection."""
from __future__ import annotations

from gcomp.ir.graph import Graph, ValueRef


def _fmt_attr(v) -> str:
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(_fmt_attr(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def _fmt_types(types) -> str:
    if not types:
        return "?"
    parts = ["?" if t is None else str(t) for t in types]
    return parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"


def print_graph(graph: Graph) -> str:
    """Render the graph as text: inputs, params, ops in topological order, outputs."""
    lines = [f'graph "{graph.name}" {{']
    order = graph.topological_order()
    for n in order:
        data = graph.node(n)
        if data["kind"] == "input":
            lines.append(f"  input {ValueRef(n)}: {_fmt_types(data['outputs'])}")
    for n in order:
        data = graph.node(n)
        if data["kind"] == "param":
            frozen = "" if data.get("trainable", True) else " frozen"
            penalty = " regularizer(l1={}, l2={})".format(*data["regularizer"]) if "regularizer" in data else ""
            projection = f" constraint({data['constraint']['kind']})" if "constraint" in data else ""
            lines.append(f"  param {ValueRef(n)}: {_fmt_types(data['outputs'])}{frozen}{penalty}{projection}")
    for n in order:
        data = graph.node(n)
        if data["kind"] != "op":
            continue
        args = ", ".join(str(r) for r in graph.op_inputs(n))
        params = graph.op_params(n)
        pargs = "".join(f", {role}=%{p}" for role, p in params.items())
        attrs = ", ".join(f"{k}={_fmt_attr(v)}" for k, v in sorted(data["attrs"].items()))
        attrs = f" {{{attrs}}}" if attrs else ""
        lines.append(f"  {ValueRef(n)} = {data['op']}({args}{pargs}){attrs} -> {_fmt_types(data['outputs'])}")
    for name, ref in graph.outputs:
        lines.append(f"  output {name} = {ref}")
    lines.append("}")
    return "\n".join(lines) + "\n"
