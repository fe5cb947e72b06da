"""Merging pointwise work: 1x1 convolutions become dense ops, dense chains fold, siblings merge.

A 1x1 convolution at stride 1 is a dense op over the channel axis; once it is one, it takes part in
the dense rewrites below. None of these keep the training parameterization: the merged or folded
weights are new tensors computed from the model's weights.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from gcomp.ir.graph import Graph, ValueRef
from gcomp.ir.types import TensorType
from gcomp.passes.manager import graph_pass


def _dense_params(g: Graph, n: str) -> tuple[np.ndarray, np.ndarray]:
    params = g.op_params(n)
    kernel = g.params[params["kernel"]]
    bias = g.params[params["bias"]] if "bias" in params else np.zeros(kernel.shape[1], kernel.dtype)
    return kernel, bias


def _new_dense(g: Graph, name: str, x: ValueRef, kernel: np.ndarray, bias: np.ndarray, activation: str,
               layer: str) -> ValueRef:
    k = g.add_param(g.unique_name(f"{name}/kernel"), kernel.astype(np.float32), role="kernel", layer=layer,
                    trainable=False)
    b = g.add_param(g.unique_name(f"{name}/bias"), bias.astype(np.float32), role="bias", layer=layer,
                    trainable=False)
    (y,) = g.add_op(g.unique_name(name), "dense", [x], {"kernel": k, "bias": b},
                    {"units": int(kernel.shape[1]), "activation": activation, "use_bias": True}, layer=layer)
    return y


def _pointwise_conv(data: dict) -> bool:
    a = data.get("attrs", {})
    return data.get("op") == "conv" and set(a["kernel_size"]) == {1} and set(a["strides"]) == {1}


@graph_pass(keeps_training_params=False)
def conv1x1_to_dense(graph: Graph) -> Graph:
    """conv(k=1x1, stride 1) -> dense over the channel axis, kernel (1, 1, C, F) -> (C, F)."""
    g = graph.copy()
    rewritten: set[str] = set()
    for n in list(g.nodes("op")):
        data = g.node(n)
        a = data["attrs"]
        if not _pointwise_conv(data):
            continue
        kernel_name = g.op_params(n)["kernel"]
        readers = [c for c, _ in g.consumers(ValueRef(kernel_name))]
        if not all(c in rewritten or _pointwise_conv(g.node(c)) for c in readers):
            continue  # the kernel is read as a conv kernel elsewhere: leave it alone
        rewritten.add(n)
        kernel = g.params[kernel_name]
        if kernel.ndim != 2:  # every call of the layer is rewritten: reshape its kernel once
            g.params[kernel_name] = kernel = kernel.reshape(kernel.shape[-2], kernel.shape[-1])
            g.node(kernel_name)["outputs"] = [TensorType(kernel.shape, str(kernel.dtype))]
        data["op"] = "dense"
        data["attrs"] = {"units": a["filters"], "activation": a["activation"], "use_bias": a["use_bias"]}
        g.notes.append(f'{n} (layer "{data["layer"]}"): 1x1 convolution at stride 1 -> dense over channels')
    return g


def _single_reader(g: Graph, ref: ValueRef) -> bool:
    return len(g.consumers(ref)) == 1 and all(r != ref for _, r in g.outputs)


@graph_pass(keeps_training_params=False)
def fold_dense_chains(graph: Graph) -> Graph:
    """dense(linear) -> dense with no other reader between: one dense, W = W1 W2, b = b1 W2 + b2."""
    g = graph.copy()
    for second in list(g.nodes("op")):
        if second not in g.nx or g.node(second)["op"] != "dense":
            continue
        (x,) = g.op_inputs(second)
        first = x.node
        if g.kind(first) != "op" or g.node(first)["op"] != "dense" or g.node(first)["attrs"]["activation"] != "linear":
            continue
        if not _single_reader(g, x):
            continue
        (w1, b1), (w2, b2) = _dense_params(g, first), _dense_params(g, second)
        if w1.shape[0] * w2.shape[1] > w1.size + w2.size:
            continue  # a bottleneck: the folded kernel would cost more than the two it replaces
        kernel = w1.astype(np.float64) @ w2.astype(np.float64)
        bias = b1.astype(np.float64) @ w2.astype(np.float64) + b2.astype(np.float64)
        data = g.node(second)
        y = _new_dense(g, f"{first}+{second}", g.op_inputs(first)[0], kernel, bias,
                       data["attrs"]["activation"], data["layer"])
        g.replace_uses(ValueRef(second), y)
        g.notes.append(f'{first} -> {second} (layers "{g.node(first)["layer"]}", "{data["layer"]}"): '
                       f"folded into one dense {y.node}")
        g.remove_node(second)
        g.remove_node(first)
    return drop_unread_params(g)


def drop_unread_params(g: Graph) -> Graph:
    """Remove the parameters no op reads any more (after a rewrite replaced their readers)."""
    for n in list(g.nodes("param")):
        if not g.nx.out_degree(n):
            g.remove_node(n)
    return g


ACROSS_UNITS = ("softmax", "log_softmax")
"""Activations that normalize over the units: on a merged op they would mix the siblings' units."""


@graph_pass(keeps_training_params=False)
def merge_sibling_dense(graph: Graph) -> Graph:
    """dense ops with one elementwise activation reading one tensor -> one wider dense, then split."""
    g = graph.copy()
    for n in list(g.nodes()):
        if n not in g.nx:
            continue
        for port in range(len(g.node(n)["outputs"])):
            groups = defaultdict(list)
            for c, p in g.consumers(ValueRef(n, port)):
                if g.node(c)["op"] == "dense" and p == 0:
                    groups[g.node(c)["attrs"]["activation"]].append(c)
            for activation, siblings in groups.items():
                if len(siblings) >= 2 and activation not in ACROSS_UNITS:
                    _merge(g, ValueRef(n, port), siblings, activation)
    return drop_unread_params(g)


def _merge(g: Graph, x: ValueRef, siblings: list[str], activation: str) -> None:
    kernels, biases = zip(*(_dense_params(g, s) for s in siblings))
    name = "+".join(siblings)
    layer = "+".join(g.node(s)["layer"] for s in siblings)
    merged = _new_dense(g, name, x, np.concatenate(kernels, axis=1), np.concatenate(biases), activation, layer)
    sizes = tuple(int(k.shape[1]) for k in kernels)
    parts = g.add_op(g.unique_name(f"{name}/split"), "split", [merged], {}, {"sizes": sizes, "axis": -1},
                     num_outputs=len(sizes), layer=layer)
    for s, part in zip(siblings, parts):
        g.replace_uses(ValueRef(s), part)
        g.remove_node(s)
    g.notes.append(f"{', '.join(siblings)} (layers {layer.replace('+', ', ')}): {len(siblings)} sibling dense ops "
                   f"reading {x} merged into {merged.node} ({sum(sizes)} units) and a split")
