"""Layer: the base of every layer. Owns weights, builds lazily on the first call, records calls.

A layer call on KerasTensors computes nothing: it checks shapes with the op's shape rule (so errors
appear at the line that made them), records a Node and returns new KerasTensors. One layer call is
one IR op; the compiler takes it from there.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from gcomp import activations, initializers
from gcomp.errors import LayerConfigError, ShapeError
from gcomp.frontend.callsite import user_call_site
from gcomp.frontend.naming import auto_name, snake_case
from gcomp.frontend.tensor import KerasHistory, KerasTensor
from gcomp.frontend.variable import Variable
from gcomp.ir.types import TensorType
from gcomp.ops import infer_op


def shape_text(t: TensorType) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")"


def assign_all(variables: list[Variable], weights: Sequence[Any], owner: str) -> None:
    """set_weights: every count and shape is checked before any variable changes."""
    if len(weights) != len(variables):
        detail = (f'; the first weight without one is "{variables[len(weights)].path}" {variables[len(weights)].shape}'
                  if len(weights) < len(variables) else "")
        raise ValueError(f"{owner} has {len(variables)} weights "
                         f"({', '.join(v.path for v in variables) or 'none'}) but set_weights received "
                         f"{len(weights)} arrays{detail}")
    arrays = [np.asarray(w) for w in weights]
    for var, w in zip(variables, arrays):
        if w.shape != var.shape:
            raise ValueError(f'{owner}: weight "{var.path}" has shape {var.shape}, but set_weights received an '
                             f"array of shape {w.shape}")
    for var, w in zip(variables, arrays):
        var.assign(w)


class Node:
    """One call of a layer: its input tensors, output tensors and where the user made the call."""

    def __init__(self, layer: "Layer", input_tensors: list[KerasTensor], call_site: str | None):
        self.layer = layer
        self.input_tensors = input_tensors
        self.output_tensors: list[KerasTensor] = []
        self.call_site = call_site

    @property
    def is_input(self) -> bool:
        return not self.input_tensors

    @property
    def parent_nodes(self) -> list["Node"]:
        return [t._keras_history.layer._inbound_nodes[t._keras_history.node_index] for t in self.input_tensors]

    @property
    def index(self) -> int:
        return self.layer._inbound_nodes.index(self)


class Layer:
    """Base class of gcomp layers, with Keras's constructor arguments (name, dtype, trainable, input_shape)."""

    op: str = ""
    """The IR op kind one call of this layer lowers to."""
    takes_list = False
    """Merge layers take a list of tensors; the others take one tensor."""
    _parent: "Layer | None" = None
    """The wrapper this layer is a part of (Bidirectional's copies), or None."""

    def __init__(self, *, name: str | None = None, dtype: Any = None, trainable: bool = True,
                 input_shape: Sequence[int | None] | None = None, input_dim: int | None = None,
                 **kwargs: Any):
        if kwargs:
            raise LayerConfigError(f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise LayerConfigError(f"invalid layer name {name!r}: a non-empty string without '/'")
        if not isinstance(trainable, bool):
            raise LayerConfigError(f"trainable must be a bool, got {trainable!r}")
        if dtype not in (None, "float32"):
            raise LayerConfigError(f"{type(self).__name__}: gcomp layers compute in float32; got dtype={dtype!r}")
        self.name = name or auto_name(snake_case(type(self).__name__))
        self.trainable = trainable
        self.built = False
        self._params: dict[str, Variable] = {}
        self._inbound_nodes: list[Node] = []
        if input_shape is not None:
            if not isinstance(input_shape, (tuple, list)):
                raise LayerConfigError(
                    f'{type(self).__name__} "{self.name}": input_shape must be a tuple of ints or None '
                    f"without the batch axis, e.g. input_shape=({input_shape!r},); got {input_shape!r}")
            self._input_shape_arg: tuple | None = tuple(input_shape)
        else:
            self._input_shape_arg = (input_dim,) if input_dim is not None else None

    # ---- configuration helpers ----------------------------------------------------------------
    def _config_error(self, message: str) -> LayerConfigError:
        return LayerConfigError(f'{type(self).__name__} "{self.name}": {message}')

    def _positive_int(self, value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise self._config_error(f"{what} must be a positive integer, got {value!r}")
        return int(value)

    def _activation(self, identifier: Any) -> str:
        try:
            return activations.get(identifier)
        except LayerConfigError as e:
            raise self._config_error(str(e)) from None

    def _initializer(self, identifier: Any) -> initializers.Initializer:
        """Resolved at construction, as Keras does, so a typo fails at the line that made it."""
        try:
            return initializers.get(identifier)
        except LayerConfigError as e:
            raise self._config_error(str(e)) from None

    def _weight_options(self, **options: Any) -> None:
        """Resolve regularizers and constraints (gcomp.regularizers / gcomp.constraints) at
        construction, as Keras does, and keep each as the attribute of its argument's name; an
        unknown one is an error naming this layer and the argument."""
        from gcomp import constraints, regularizers
        for what, identifier in options.items():
            get = regularizers.get if what.endswith("_regularizer") else constraints.get
            try:
                setattr(self, what, get(identifier))
            except LayerConfigError as e:
                raise self._config_error(f"{what}: {e}") from None

    def _int_tuple(self, value: Any, rank: int, what: str) -> tuple[int, ...]:
        if isinstance(value, (int, np.integer)):
            values = (value,) * rank
        else:
            try:
                values = tuple(value)
            except TypeError:  # None, a float: not a size
                raise self._config_error(f"{what} must be an int or a tuple of {rank} ints, got {value!r}") from None
        if len(values) != rank:
            raise self._config_error(f"{what} must be an int or a tuple of {rank} ints, got {value!r}")
        return tuple(self._positive_int(v, what) for v in values)

    # ---- weights ------------------------------------------------------------------------------
    def add_weight(self, role: str, shape: tuple[int, ...], initializer: Any, trainable: bool = True,
                   regularizer=None, constraint=None) -> Variable:
        value = initializers.get(initializer)(tuple(shape), "float32")
        var = Variable(value, role, self, trainable, regularizer)
        if constraint is not None:  # its axes checked against this weight's shape now
            try:
                var.constraint = constraint.spec(tuple(shape))
            except LayerConfigError as e:
                raise self._config_error(f"the constraint of {role} {tuple(shape)}: {e}") from None
        self._params[role] = var
        return var

    @property
    def weights(self) -> list[Variable]:
        """Trainable weights, then non-trainable ones (Keras's order)."""
        return self.trainable_weights + self.non_trainable_weights

    @property
    def trainable_weights(self) -> list[Variable]:
        return [v for v in self._params.values() if v.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        return [v for v in self._params.values() if not v.trainable]

    def get_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        assign_all(self.weights, weights, f'Layer "{self.name}"')

    def count_params(self) -> int:
        return sum(math.prod(v.shape) for v in self.weights)

    # ---- what the compiler reads ----------------------------------------------------------------
    def build(self, input_types: list[TensorType]) -> None:
        """Create the weights for inputs of these types. Layers without weights keep this."""

    def op_attrs(self) -> dict:
        """The attributes of this layer's IR op."""
        return {}

    def param_types(self) -> dict[str, TensorType]:
        return {role: TensorType(v.shape, v.dtype) for role, v in self._params.items()}

    def compute_output_types(self, input_types: list[TensorType]) -> list[TensorType]:
        return infer_op(self.op, self.op_attrs(), input_types, self.param_types())

    def lower_call(self, graph, param, inputs: list, name: str, prefix: str, call_site: str | None,
                   num_outputs: int) -> list:
        """Add one call's ops to the IR ``graph`` and return its outputs: here the layer's one op
        (named ``name``), reading ``param(variable)`` for each weight. A layer made of parts
        (Bidirectional) adds the ops of its parts instead."""
        params = {role: param(v) for role, v in self._params.items()}
        return graph.add_op(name, self.op, inputs, params, self.op_attrs(), num_outputs=num_outputs,
                            layer=prefix + self.name, call_site=call_site)

    # ---- calling ------------------------------------------------------------------------------
    def _describe(self, call_site: str | None) -> str:
        where = f", called at {call_site}" if call_site else ""
        return f'Layer "{self.name}" ({type(self).__name__}){where}'

    def _flatten_inputs(self, inputs: Any, call_site: str | None) -> list[KerasTensor]:
        if isinstance(inputs, dict):
            flat = [inputs[k] for k in sorted(inputs)]
        elif isinstance(inputs, (list, tuple)):
            flat = list(inputs)
        else:
            flat = [inputs]
        if self.takes_list and not isinstance(inputs, (list, tuple, dict)):
            raise ShapeError(f"{self._describe(call_site)}: a merge layer must be called on a list of "
                             f"tensors, got {type(inputs).__name__}")
        for i, t in enumerate(flat):
            if not isinstance(t, KerasTensor):
                kind = type(t).__name__
                raise TypeError(
                    f"{self._describe(call_site)}: input {i} is a {kind}, not a symbolic tensor. Call "
                    f"layers on gcomp.Input(...) tensors or other layers' outputs (a NameError or typo "
                    f"upstream often causes this); to run a model on data use model.predict(data)")
        return flat

    def __call__(self, inputs: Any, *args: Any, training: Any = None, mask: Any = None, **kwargs: Any):
        call_site = user_call_site()
        if args or kwargs:
            raise TypeError(f"{self._describe(call_site)}: unexpected call arguments "
                            f"{list(args) + sorted(kwargs)}")
        if isinstance(inputs, (np.ndarray, int, float)) and not self.takes_list:
            return self._eager_call(inputs, call_site)
        flat = self._flatten_inputs(inputs, call_site)
        types = [t._type for t in flat]
        try:
            if not self.built:
                self.build(types)
                self.built = True
            out_types = self.compute_output_types(types)
        except ShapeError as e:
            shapes = ", ".join(shape_text(t) for t in types)
            detail = str(e) if shapes in str(e) else f"{e} [input shapes: {shapes}]"
            raise ShapeError(f"{self._describe(call_site)}: {detail}") from None
        return self._record_call(flat, out_types, call_site)

    def _record_call(self, flat: list[KerasTensor], out_types: list[TensorType], call_site: str | None):
        node = Node(self, flat, call_site)
        self._inbound_nodes.append(node)
        index = len(self._inbound_nodes) - 1
        node.output_tensors = [KerasTensor(t, auto_name("keras_tensor"), KerasHistory(self, index, i))
                               for i, t in enumerate(out_types)]
        return self._structure_outputs(node.output_tensors)

    def _structure_outputs(self, outputs: list[KerasTensor]):
        return outputs[0] if len(outputs) == 1 else list(outputs)

    def _eager_call(self, data: Any, call_site: str | None):
        """Calling a layer on an array runs it once through the NumPy backend, as Keras runs eagerly."""
        from gcomp.backends.eager import run_layer
        return run_layer(self, data, call_site)

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, **self.op_attrs()}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"
