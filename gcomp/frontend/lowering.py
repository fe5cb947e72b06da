"""Lowering: a Model's layer calls become IR nodes; nested models are inlined. Each layer adds its
call's ops itself (Layer.lower_call): its one op, or the ops of its parts (Bidirectional).

One op node per layer call, named after the layer ("lstm") and, for its later calls, the call index
("lstm#1"). A layer's weights become parameter nodes that every call of the layer reads. The calls
of one model are walked in a loop; only model nesting recurses (its depth is the nesting depth).
"""
from __future__ import annotations

from gcomp.frontend.model import Model
from gcomp.frontend.variable import Variable
from gcomp.ir.graph import Graph, ValueRef


def call_name(node) -> str:
    index = node.index
    return node.layer.name if index == 0 else f"{node.layer.name}#{index}"


class _Lowering:
    def __init__(self, model: Model):
        self.graph = Graph(model.name)
        self.variables: dict[str, Variable] = {}
        self._param_of: dict[int, ValueRef] = {}

    def param(self, var: Variable, prefix: str) -> ValueRef:
        if id(var) not in self._param_of:
            name = var.path if var.path not in self.variables else f"{prefix}{var.path}"
            penalty = var.regularizer.factors if var.regularizer is not None else None
            self._param_of[id(var)] = self.graph.add_param(
                name, var.value, role=var.name, layer=var._layer.name, trainable=var.trainable, regularizer=penalty,
                constraint=var.constraint)
            self.variables[name] = var
        return self._param_of[id(var)]

    def calls(self, model: Model, scope: dict[int, ValueRef], prefix: str) -> None:
        """Add every call of ``model`` given its inputs' values in ``scope`` (tensor id -> value)."""
        for node in model._graph_map().nodes:
            if node.is_input:
                continue
            inputs = [scope[id(t)] for t in node.input_tensors]
            name = prefix + call_name(node)
            layer = node.layer
            if isinstance(layer, Model):
                inner = {id(t): ref for t, ref in zip(layer.inputs, inputs)}
                self.calls(layer, inner, name + "/")
                refs = [inner[id(t)] for t in layer.outputs]
            else:
                refs = layer.lower_call(self.graph, lambda v: self.param(v, prefix), inputs, name, prefix,
                                        node.call_site, len(node.output_tensors))
                activity = getattr(layer, "activity_regularizer", None)
                if activity is not None:  # a penalty on this call's output, in the training losses
                    self.graph.node(name)["activity_regularizer"] = activity.factors
            for t, ref in zip(node.output_tensors, refs):
                scope[id(t)] = ref


def lower(model: Model) -> tuple[Graph, dict[str, Variable]]:
    """The IR graph of ``model`` and the Variable behind each parameter node."""
    lowering = _Lowering(model)
    scope = {id(t): lowering.graph.add_input(name, t.shape, t.dtype)
             for name, t in zip(model.input_names, model.inputs)}
    lowering.calls(model, scope, "")
    for name, t in zip(model.output_names, model.outputs):
        lowering.graph.add_output(name, scope[id(t)])
    return lowering.graph, lowering.variables
