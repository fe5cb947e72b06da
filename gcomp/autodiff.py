"""Training graphs: forward + losses + backward + optimizer update, built as IR.

The backward pass is one `vjp` node per forward op that needs one (op registry: one VJP rule per op
kind, rendered by the backends' vjp templates). Gradient contributions to one value are summed by an
`add_n` node, so a weight read by several calls of a shared layer gets the sum of its gradients.
Nothing is computed for what needs no gradient: integer inputs, frozen (non-trainable) weights and
every value that depends on neither a trainable weight nor a trainable path.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gcomp.errors import GraphError
from gcomp.ir.graph import Graph, ValueRef
from gcomp.ops.recurrent import RECURRENT_STATES
from gcomp.passes.manager import graph_pass

# Ops whose activation attribute becomes its own op in training graphs: the activation's backward
# then reads the pre-activation value it needs.
_FUSED_ACTIVATION_OPS = ("dense", "conv")
_TRAINING_KINDS = {"dropout": "dropout_train", "lstm": "lstm_train", "gru": "gru_train"}
_MAX_POOLS = ("max_pool", "global_max_pool")
_PENALTY_OPS = ("loss", "regularization", "activity_regularization")  # losses, not forward ops


@dataclass
class LossSpec:
    """The loss of one model output, as compile() resolved it."""

    output: str
    loss: str
    weight: float = 1.0
    from_logits: bool = False
    reduction: str = "sum_over_batch_size"


def compiled_losses(compile_config: dict) -> tuple[list[LossSpec], float | None]:
    """compile()'s losses as LossSpecs, and its optimizer's loss_scale_factor (None: none)."""
    specs = [LossSpec(l["output"], l["loss"], l["weight"], l["from_logits"], l.get("reduction", "sum_over_batch_size"))
             for l in compile_config["losses"]]
    optimizer = compile_config.get("optimizer") or {}
    return specs, optimizer.get("config", {}).get("loss_scale_factor")


@dataclass
class TrainingLayout:
    """Where things are in a training or evaluation graph's inputs and outputs."""

    model_inputs: list[str]
    targets: list[str] = field(default_factory=list)
    sample_weights: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    trainable: list[str] = field(default_factory=list)
    regularization: str | None = None
    """The node giving the weights' summed penalties (an output after the predictions), if any."""


@graph_pass(keeps_training_params=True)
def split_activations(graph: Graph) -> Graph:
    """dense/conv(activation=a) -> dense/conv(linear) then activation(a), for the backward; a relu
    read only by a max pooling goes after the pooling instead."""
    g = graph.copy()
    for n in list(g.nodes("op")):
        data = g.node(n)
        act = data["attrs"].get("activation", "linear")
        if data["op"] not in _FUSED_ACTIVATION_OPS or act == "linear":
            continue
        data["attrs"] = {**data["attrs"], "activation": "linear"}
        activity = data.pop("activity_regularizer", None)  # it penalizes the activation's output
        source = _relu_source(g, n) if act == "relu" and activity is None else n
        name = g.unique_name(f"{n}/{act}")
        (y,) = g.add_op(name, "activation", [ValueRef(source)], {}, {"activation": act}, layer=data["layer"])
        if activity is not None:
            g.node(name)["activity_regularizer"] = activity
        g.replace_uses(ValueRef(source), y, keep=name)
        where = "" if source == n else f", after {source}"
        g.notes.append(f"{n}: activation {act} split out for the backward pass{where}")
    return g


def _relu_source(g: Graph, n: str) -> str:
    """Where op n's relu goes: after the max pooling that alone reads n, else right after n.
    max_pool(relu(x)) = relu(max_pool(x)) exactly, and so are the gradients (a window's gradient
    reaches its max, which relu passes iff that max is positive, in either order; ties below zero
    get nothing either way), so the relu and its backward run on the pooled tensor."""
    readers = g.consumers(ValueRef(n))
    is_output = any(ref == ValueRef(n) for _, ref in g.outputs)
    if len(readers) == 1 and g.node(readers[0][0])["op"] in _MAX_POOLS and not is_output:
        return readers[0][0]
    return n


def _training_mode(g: Graph) -> None:
    """Dropout, LSTM and GRU have training-mode kinds (dropout draws masks; the recurrent layers
    save their gates)."""
    for n in list(g.nodes("op")):
        data = g.node(n)
        kind = _TRAINING_KINDS.get(data["op"])
        if kind is None:
            continue
        states = RECURRENT_STATES.get(data["op"])
        data["op"] = kind
        if states is not None:  # outputs: y, every state, the cache
            data["attrs"] = {**data["attrs"], "return_state": True}
            data["outputs"] = data["outputs"] + [None] * (2 + len(states) - len(data["outputs"]))
        else:
            data["outputs"] = data["outputs"] + [None]


def _requires_grad(g: Graph) -> set[ValueRef]:
    """Values that depend on a trainable parameter."""
    needs: set[ValueRef] = set()
    for n in g.topological_order():
        data = g.node(n)
        if data["kind"] == "param":
            if data.get("trainable", True):
                needs.add(ValueRef(n))
        elif data["kind"] == "op":
            if any(ValueRef(u, d["src_port"]) in needs for u, d in g.in_edges(n)):
                needs.update(ValueRef(n, p) for p in range(len(data["outputs"])))
    return needs


def _sum(g: Graph, parts: list[ValueRef], hint: str, what: str = "grad_sum") -> ValueRef:
    if len(parts) == 1:
        return parts[0]
    return g.add_op(g.unique_name(f"{hint}/{what}"), "add_n", parts, {}, {}, layer=hint)[0]


def add_losses(graph: Graph, losses: list[LossSpec]) -> tuple[Graph, TrainingLayout]:
    """The inference graph plus target and sample-weight inputs and one loss node per LossSpec.

    Outputs: each loss (unweighted), each prediction, then the summed regularization penalties of
    the trainable weights and the layer outputs when any has a regularizer (layout.regularization)."""
    from gcomp.passes import infer_shapes
    g = infer_shapes(graph)
    layout = TrainingLayout(model_inputs=list(g.inputs))
    outputs = dict(g.outputs)
    for spec in losses:
        if spec.output not in outputs:
            raise GraphError(f"loss given for {spec.output!r}, which is not an output ({', '.join(outputs)})")
        pred = outputs[spec.output]
        ptype = g.value_type(pred)
        sparse = spec.loss in ("sparse_categorical_crossentropy",)
        target = g.add_input(f"{spec.output}_target", (None,) + (ptype.keras_shape()[1:-1] if sparse else ptype.keras_shape()[1:]),
                             "int32" if sparse else "float32")
        weight = g.add_input(f"{spec.output}_sample_weight", (None,), "float32")
        attrs = {"loss": spec.loss, "from_logits": spec.from_logits, "weight": spec.weight}
        if spec.reduction != "sum_over_batch_size":  # (the default stays out of the printed IR)
            attrs["reduction"] = spec.reduction
        (value,) = g.add_op(g.unique_name(f"{spec.output}_loss"), "loss", [pred, target, weight], {}, attrs,
                            layer=spec.output)
        layout.targets.append(target.node)
        layout.sample_weights.append(weight.node)
        layout.losses.append(value.node)
    prediction_refs = list(g.outputs)
    g.outputs = [(f"{s.output}_loss", ValueRef(l)) for s, l in zip(losses, layout.losses)]
    g.outputs += [(name, ref) for name, ref in prediction_refs]
    layout.predictions = [name for name, _ in prediction_refs]
    penalties = [_penalty_op(g, p, "regularization", {}) for p in _penalized_params(g)]
    penalties += [_activity_op(g, n, "activity_regularization", {}) for n in _penalized_outputs(g)]
    if penalties:  # Keras adds the weights' and the activities' penalties (model.losses) to the loss
        total = _sum(g, penalties, "regularization", "sum")
        g.outputs.append(("regularization", total))
        g.node(total.node)["penalty_total"] = True  # what backends add to the reported loss
        layout.regularization = total.node
    return infer_shapes(g), layout


def _penalty_op(g: Graph, param: str, op: str, attrs: dict) -> ValueRef:
    """A regularization (or regularization_vjp) node reading weight ``param``."""
    data = g.node(param)
    l1, l2 = data["regularizer"]
    (out,) = g.add_op(g.unique_name(f"{param}/{op}"), op, [], {data["role"]: ValueRef(param)},
                      {"role": data["role"], "l1": l1, "l2": l2, **attrs}, layer=data["layer"])
    return out


def _activity_op(g: Graph, n: str, op: str, attrs: dict) -> ValueRef:
    """An activity_regularization (or its vjp) node reading op n's output (a layer call's output)."""
    l1, l2 = g.node(n)["activity_regularizer"]
    (out,) = g.add_op(g.unique_name(f"{n}/{op}"), op, [ValueRef(n)], {}, {"l1": l1, "l2": l2, **attrs},
                      layer=g.node(n)["layer"])
    return out


def _penalized_outputs(g: Graph) -> list[str]:
    """The op nodes whose output carries an activity regularizer, in graph order."""
    return [n for n in g.nodes("op") if "activity_regularizer" in g.node(n)]


def _penalized_params(g: Graph) -> list[str]:
    """The trainable weights with a regularizer, in graph order."""
    return [p for p in g.nodes("param") if "regularizer" in g.node(p) and g.node(p).get("trainable", True)]


def training_graph(graph: Graph, losses: list[LossSpec], loss_scale: float | None = None
                   ) -> tuple[Graph, TrainingLayout]:
    """Forward (training mode) + losses + backward + one apply_gradients node.

    Outputs: add_losses' (losses, predictions, the penalties if any), then the optimizer's step
    counter. Constrained weights are projected after the update (apply_gradients' attrs). With a
    loss_scale (the optimizer's loss_scale_factor) the backward starts from loss * loss_scale, as
    Keras's train step differentiates optimizer.scale_loss(loss); the optimizer divides it out."""
    from gcomp.passes import infer_shapes
    g, layout = add_losses(split_activations(graph), losses)
    _training_mode(g)
    g = infer_shapes(g)
    needs = _requires_grad(g)
    grads: dict[ValueRef, list[ValueRef]] = {}
    for spec, loss_node in zip(losses, layout.losses):
        pred, target, weight = g.op_inputs(loss_node)
        if pred in needs:
            attrs = dict(g.node(loss_node)["attrs"])
            if loss_scale is not None:  # d(scale * total)/d(loss) = scale * weight, in float32 as Keras
                attrs["weight"] = float(np.float32(loss_scale) * np.float32(spec.weight))
            (gp,) = g.add_op(g.unique_name(f"{loss_node}/grad"), "loss_vjp", [pred, target, weight], {},
                             attrs, layer=spec.output)
            grads.setdefault(pred, []).append(gp)
    scale = 1.0 if loss_scale is None else float(np.float32(loss_scale))
    for n in _penalized_outputs(g):
        if ValueRef(n) in needs:
            grads.setdefault(ValueRef(n), []).append(_activity_op(g, n, "activity_regularization_vjp", {"scale": scale}))
    forward_ops = [n for n in g.topological_order() if g.kind(n) == "op" and g.node(n)["op"] not in _PENALTY_OPS]
    param_grads: dict[str, list[ValueRef]] = {}
    for n in reversed(forward_ops):
        data = g.node(n)
        n_out = len(data["outputs"])
        out_grads = [grads.get(ValueRef(n, p)) for p in range(n_out)]
        if not any(out_grads):
            continue
        inputs = g.op_inputs(n)
        params = g.op_params(n)
        need_inputs = tuple(r in needs and g.value_type(r).dtype.startswith("float") for r in inputs)
        need_params = tuple(role for role, p in params.items() if g.node(p).get("trainable", True))
        if not any(need_inputs) and not need_params:
            continue
        has_grad = tuple(bool(gr) for gr in out_grads)
        summed = [_sum(g, gr, f"{n}:{p}") for p, gr in enumerate(out_grads) if gr]
        attrs = {**data["attrs"], "op": data["op"], "n_inputs": len(inputs), "need_inputs": need_inputs,
                 "need_params": need_params, "param_roles": tuple(params), "has_grad": has_grad}
        results = g.add_op(g.unique_name(f"{n}/vjp"), "vjp",
                           inputs + [ValueRef(n, p) for p in range(n_out)] + summed,
                           {role: ValueRef(p) for role, p in params.items()}, attrs,
                           num_outputs=sum(need_inputs) + len(need_params), layer=data["layer"])
        it = iter(results)
        for r, need in zip(inputs, need_inputs):
            if need:
                grads.setdefault(r, []).append(next(it))
        for role in need_params:
            param_grads.setdefault(params[role], []).append(next(it))
    for p in _penalized_params(g):
        param_grads.setdefault(p, []).append(_penalty_op(g, p, "regularization_vjp", {"scale": scale}))
    layout.trainable = [p for p in g.nodes("param") if p in param_grads]
    if not layout.trainable:
        raise GraphError("nothing to train: no trainable weight gets a gradient from the losses")
    summed = [_sum(g, param_grads[p], p) for p in layout.trainable]
    attrs = {"params": tuple(layout.trainable)}
    constrained = tuple((p, g.node(p)["constraint"]) for p in layout.trainable if "constraint" in g.node(p))
    if constrained:  # projected after the update, as Keras's optimizer does (gcomp.constraints)
        attrs["constraints"] = constrained
    (step,) = g.add_op("apply_gradients", "apply_gradients", summed, {}, attrs, layer="optimizer")
    g.outputs.append(("step", step))
    return infer_shapes(g), layout
