"""Keras's model summary table, sized to its content (never truncated)."""
from __future__ import annotations

import math

from gcomp.frontend.layers.input_layer import InputLayer
from gcomp.ir.types import format_keras_shape


def readable_memory_size(size: float) -> str:
    """Keras's byte formatting: 13864 -> "13.54 KB"."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def _output_shape(layer) -> str:
    if not layer._inbound_nodes:
        return "?"
    outs = layer._inbound_nodes[-1].output_tensors
    shapes = [format_keras_shape(t.shape) for t in outs]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def _params(layer) -> str:
    if not layer.built:
        return "0 (unbuilt)"
    return f"{layer.count_params():,}"


def _connections(layer, model_nodes: set) -> list[str]:
    out = []
    for node in layer._inbound_nodes:
        if node not in model_nodes:
            continue
        for t in node.input_tensors:
            h = t._keras_history
            out.append(f"{h.layer.name}[{h.node_index}][{h.tensor_index}]")
    return out or ["-"]


def _is_sequential_like(model) -> bool:
    """Keras omits "Connected to" for a plain chain: one call per depth, one input per call, no sharing."""
    from gcomp.frontend.sequential import Sequential
    if isinstance(model, Sequential):
        return True
    gmap = model._graph_map()
    for nodes in gmap.nodes_by_depth.values():
        if len(nodes) > 1 or (len(nodes) == 1 and len(nodes[0].input_tensors) > 1):
            return False
    model_nodes = set(gmap.nodes)
    return all(sum(1 for n in l._inbound_nodes if n in model_nodes) <= 1 for l in gmap.layers)


def _box(widths: list[int], rows: list[list[list[str]]], header: list[str], right: set[int]) -> list[str]:
    def line(left, mid, fill, end):
        return left + mid.join(fill * (w + 2) for w in widths) + end

    def cells(texts, sep):
        parts = [(t.rjust(w) if i in right else t.ljust(w)) for i, (t, w) in enumerate(zip(texts, widths))]
        return sep + sep.join(f" {p} " for p in parts) + sep

    out = [line("┏", "┳", "━", "┓"), cells(header, "┃"), line("┡", "╇", "━", "┩")]
    for r, row in enumerate(rows):
        height = max(len(c) for c in row)
        for k in range(height):
            out.append(cells([c[k] if k < len(c) else "" for c in row], "│"))
        if r < len(rows) - 1:
            out.append(line("├", "┼", "─", "┤"))
    out.append(line("└", "┴", "─", "┘"))
    return out


def format_summary(model, show_trainable: bool = False) -> str:
    """The summary as text: Keras's columns and footer, a shared layer once with all its calls."""
    layers = model.layers  # Sequential lists its layers even before it has an input
    connected = not _is_sequential_like(model)
    model_nodes = set(model._graph_map().nodes) if connected else set()
    header = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if connected else [])
    if show_trainable:
        header.append("Trainable")
    rows = []
    for layer in layers:
        row = [[f"{layer.name} ({_class_name(layer)})"], [_output_shape(layer)], [_params(layer)]]
        if connected:
            row.append(_connections(layer, model_nodes))
        if show_trainable:
            row.append(["-" if not layer.weights or isinstance(layer, InputLayer) else
                        ("Y" if layer.trainable else "N")])
        rows.append(row)
    widths = [max([len(header[i])] + [len(line) for r in rows for line in r[i]]) for i in range(len(header))]
    lines = [f'Model: "{model.name}"'] + _box(widths, rows, header, right={2})
    weights = model.weights
    total = sum(math.prod(w.shape) for w in weights)
    trainable = sum(math.prod(w.shape) for w in weights if w.trainable)

    def count(n: int) -> str:
        return f"{n:,} ({readable_memory_size(n * 4)})"
    lines += [f" Total params: {count(total)}", f" Trainable params: {count(trainable)}",
              f" Non-trainable params: {count(total - trainable)}"]
    return "\n".join(lines)


def _class_name(layer) -> str:
    from gcomp.frontend.model import Functional
    return "Functional" if isinstance(layer, Functional) else type(layer).__name__
