"""Orders a functional model's layer calls exactly as Keras 3 does (keras/src/ops/function.py).

The order matters beyond looks: get_weights() walks model.layers, so weights move between Keras and
gcomp only if both list layers alike. Traversal is iterative, so models of thousands of layers work.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from gcomp.errors import GraphError
from gcomp.frontend.layer import Node
from gcomp.frontend.tensor import KerasTensor


@dataclass
class GraphMap:
    nodes: list[Node]
    """Every call in the model, inputs first (a topological order)."""
    layers: list
    """Layers (InputLayers included) ordered by depth from the inputs, then by first visit."""
    nodes_by_depth: dict[int, list[Node]] = field(default_factory=dict)


def _path_text(node: Node, reached_from: dict) -> str:
    names = []
    while node is not None:
        names.append(node.layer.name)
        node = reached_from.get(node)
    return " -> ".join(names)


def map_graph(inputs: list[KerasTensor], outputs: list[KerasTensor]) -> GraphMap:
    """Walk from the outputs back to the inputs; raise GraphError naming a missing Input and the path."""
    input_ids = {id(t) for t in inputs}
    finished: set[Node] = set()
    in_progress: set[Node] = set()
    order: list[Node] = []
    first_visit: dict = {}
    reached_from: dict[Node, Node | None] = {}

    def enter(tensor: KerasTensor, parent: Node | None):
        layer, node_index, _ = tensor._keras_history
        node = layer._inbound_nodes[node_index]
        if node in finished:
            return None
        if node in in_progress:
            raise GraphError(f'tensor {tensor.name} from layer "{layer.name}" is part of a cycle')
        first_visit.setdefault(layer, len(first_visit))
        reached_from.setdefault(node, parent)
        in_progress.add(node)
        stop = node.is_input or id(tensor) in input_ids
        return node, iter(() if stop else node.input_tensors)

    for out in outputs:
        frame = enter(out, None)
        stack = [frame] if frame else []
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                in_progress.discard(node)
                finished.add(node)
                order.append(node)
            elif (frame := enter(child, node)) is not None:
                stack.append(frame)

    for node in order:
        if node.is_input and id(node.output_tensors[0]) not in input_ids:
            missing = node.output_tensors[0]
            given = ", ".join(t._keras_history.layer.name for t in inputs) or "none"
            raise GraphError(
                f'Graph disconnected: the outputs depend on Input "{node.layer.name}" (shape {missing.shape}), '
                f"which is not among the model's inputs [{given}]. Path: {_path_text(node, reached_from)}. "
                f"Add it to Model(inputs=...).")

    # Depths as in Keras: 0 at the outputs, growing towards the inputs; a shared layer takes its max.
    node_depth: dict[Node, int] = {}
    layer_depth: dict = {}
    for node in reversed(order):
        depth = max(node_depth.setdefault(node, 0), layer_depth.get(node.layer, 0))
        layer_depth[node.layer] = depth
        node_depth[node] = depth
        for parent in node.parent_nodes:
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for t in inputs:  # inputs no output depends on still belong to the model
        layer = t._keras_history.layer
        if layer not in layer_depth:
            layer_depth[layer] = 0
            first_visit[layer] = -1
            node_depth[layer._inbound_nodes[0]] = 0
            order.insert(0, layer._inbound_nodes[0])

    layers_by_depth: defaultdict[int, list] = defaultdict(list)
    for layer, depth in layer_depth.items():
        layers_by_depth[depth].append(layer)
    nodes_by_depth: defaultdict[int, list[Node]] = defaultdict(list)
    for node, depth in node_depth.items():
        nodes_by_depth[depth].append(node)
    layers = []
    for depth in sorted(layers_by_depth, reverse=True):
        layers.extend(sorted(layers_by_depth[depth], key=first_visit.__getitem__))
    return GraphMap(order, layers, dict(nodes_by_depth))
