"""LSTM and GRU with Keras's gate orders, initializers and outputs, and the Bidirectional wrapper."""
from __future__ import annotations

import numpy as np

from gcomp.errors import ShapeError
from gcomp.frontend.layer import Layer
from gcomp.frontend.layers.core import _no_extras
from gcomp.ir import types as t
from gcomp.ops import infer_op
from gcomp.ops.recurrent import RECURRENT_STATES


class _Recurrent(Layer):
    """What LSTM and GRU share: Keras's argument checks, and clone() for Bidirectional's copies.
    A subclass's __init__ keeps its arguments as given in self._arguments."""

    @property
    def state_count(self) -> int:
        """States a call returns after the output with return_state=True."""
        return len(RECURRENT_STATES[self.op])

    def clone(self, **changes) -> "_Recurrent":
        """A new, unbuilt layer with this one's arguments, some changed (e.g. name, go_backwards)."""
        return type(self)(**(self._arguments | changes))

    def _recurrent_options(self) -> None:
        """The arguments every recurrent layer has, checked as Keras checks them."""
        a = self._arguments
        units, dropout, recurrent_dropout = a["units"], a["dropout"], a["recurrent_dropout"]
        self.units = self._positive_int(units, "units")
        self.activation = self._activation(a["activation"])
        self.recurrent_activation = self._activation(a["recurrent_activation"])
        self.use_bias = bool(a["use_bias"])
        for what, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0 <= rate <= 1:
                raise self._config_error(f"{what} must be in [0, 1], got {rate!r}")
        if recurrent_dropout > 0:  # refused rather than ignored: training would run without it
            raise self._config_error(f"recurrent_dropout={recurrent_dropout!r} is not supported by gcomp yet")
        self.dropout, self.recurrent_dropout, self.seed = float(dropout), float(recurrent_dropout), a["seed"]
        self.return_sequences = bool(a["return_sequences"])
        self.return_state = bool(a["return_state"])
        self.go_backwards = bool(a["go_backwards"])
        if a["stateful"]:
            raise self._config_error("stateful=True is not supported by gcomp")

    def _weight_setup(self) -> None:
        """The initializers, regularizers and constraints among the arguments, resolved now."""
        args = self._arguments
        for what in ("kernel", "recurrent", "bias"):
            setattr(self, f"{what}_initializer", self._initializer(args[f"{what}_initializer"]))
        self._weight_options(**{f"{what}_{kind}": args[f"{what}_{kind}"]
                                for what in ("kernel", "recurrent", "bias") for kind in ("regularizer", "constraint")})
        _no_extras(self, activity_regularizer=args["activity_regularizer"])

    def _add_kernels(self, input_types, gates: int) -> None:
        """kernel (features, gates u) and recurrent_kernel (u, gates u)."""
        x = input_types[0]
        if x.rank != 3:
            raise ShapeError(f"expects an input of rank 3 (batch, timesteps, features), got rank {x.rank}")
        if not t.is_static(x.shape[2]):
            raise ShapeError("the feature dimension of the inputs should be defined, found None")
        u = self.units
        self.kernel = self.add_weight("kernel", (x.shape[2], gates * u), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight("recurrent_kernel", (u, gates * u), self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)

    def _recurrent_attrs(self) -> dict:
        attrs = {"units": self.units, "activation": self.activation,
                 "recurrent_activation": self.recurrent_activation, "use_bias": self.use_bias,
                 "return_sequences": self.return_sequences, "return_state": self.return_state,
                 "go_backwards": self.go_backwards}
        if 0 < self.dropout < 1:  # Keras drops inputs only strictly between 0 and 1 (training only)
            attrs["dropout"] = self.dropout
        return attrs


class LSTM(_Recurrent):
    """Long short-term memory over (batch, timesteps, features).

    Weights: kernel (features, 4u), recurrent_kernel (u, 4u), bias (4u,), gate blocks i, f, c, o.
    With return_state=True a call returns [output, h, c]. With go_backwards=True the input is read
    from the end and a returned sequence is in that (reversed) order, as in Keras.
    """

    op = "lstm"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, use_cudnn="auto", **kwargs):
        # the arguments as given, for clone() (Bidirectional's copies)
        self._arguments = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")} | kwargs
        super().__init__(**kwargs)
        self._recurrent_options()
        self.unit_forget_bias = bool(unit_forget_bias)
        self._weight_setup()

    def build(self, input_types):
        self._add_kernels(input_types, 4)
        u = self.units
        if self.use_bias:
            init = self.bias_initializer
            if self.unit_forget_bias:
                base = init

                def init(shape, dtype="float32"):  # noqa: E306 - Keras: [init(u), ones(u), init(2u)]
                    return np.concatenate([base((u,), dtype), np.ones((u,), dtype), base((2 * u,), dtype)])
            self.bias = self.add_weight("bias", (4 * u,), init, regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)

    def op_attrs(self):
        return self._recurrent_attrs()


class GRU(_Recurrent):
    """Gated recurrent unit over (batch, timesteps, features), Keras 3's: gates z (update), r (reset),
    h (candidate); h_t = z h_{t-1} + (1 - z) hh. reset_after=True (Keras's default): the reset gate
    scales the recurrent projection h_{t-1} U_h + b_rec, and the bias is (2, 3u), input then
    recurrent; reset_after=False: hh reads (r h_{t-1}) U_h and the bias is (3u,). Weights: kernel
    (features, 3u), recurrent_kernel (u, 3u), bias. return_state=True returns [output, h]."""

    op = "gru"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0,
                 seed=None, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, reset_after=True, use_cudnn="auto", **kwargs):
        # the arguments as given, for clone() (Bidirectional's copies)
        self._arguments = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")} | kwargs
        super().__init__(**kwargs)
        self._recurrent_options()
        self.reset_after = bool(reset_after)
        self._weight_setup()

    def build(self, input_types):
        self._add_kernels(input_types, 3)
        u = self.units
        if self.use_bias:
            self.bias = self.add_weight("bias", (2, 3 * u) if self.reset_after else (3 * u,), self.bias_initializer,
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)

    def op_attrs(self):
        return {**self._recurrent_attrs(), "reset_after": self.reset_after}


_MERGE_OPS = {"concat": "concat", "sum": "add", "mul": "multiply", "ave": "average", None: None}


class Bidirectional(Layer):
    """Keras's Bidirectional wrapper of an LSTM or GRU: a forward copy reads the sequence as given and a
    backward copy (go_backwards=True, or backward_layer) reads it from the end; merge_mode joins
    their outputs (concat, sum, mul, ave; None returns both). A returned sequence of the backward
    copy is put back into input order first, as Keras does. Weights: the forward copy's, then the
    backward copy's. One call lowers to its parts: two recurrent ops, a reverse_steps op, the merge op."""

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        self._parts: tuple[_Recurrent, ...] = ()
        super().__init__(**kwargs)
        if not isinstance(layer, _Recurrent):
            raise self._config_error(f"wraps an LSTM or a GRU (gcomp's recurrent layers), got {type(layer).__name__}")
        if merge_mode not in _MERGE_OPS:
            raise self._config_error(f"merge_mode must be one of 'concat', 'sum', 'mul', 'ave' or None, got "
                                     f"{merge_mode!r}")
        # Keras builds the forward copy anew from the layer's arguments (the layer itself stays unused)
        self.forward_layer = layer.clone(name="forward_" + layer.name.removeprefix("forward_"))
        if backward_layer is None:
            backward_layer = layer.clone(name="backward_" + layer.name.removeprefix("backward_"), go_backwards=True)
        elif not isinstance(backward_layer, _Recurrent):
            raise self._config_error(f"backward_layer must be an LSTM or a GRU, got {type(backward_layer).__name__}")
        # Keras's checks, in its order (a forward layer with go_backwards=True fails the first)
        if backward_layer.go_backwards == layer.go_backwards:
            raise self._config_error("the forward and backward layers must have different go_backwards values, "
                                     f"got go_backwards={layer.go_backwards} for both")
        for what in ("return_sequences", "return_state"):
            if getattr(backward_layer, what) != getattr(layer, what):
                raise self._config_error(f"the forward and backward layers must have the same {what}, got "
                                         f"{getattr(layer, what)} and {getattr(backward_layer, what)}")
        self.backward_layer = backward_layer
        self._parts = (self.forward_layer, self.backward_layer)
        for part in self._parts:
            part._parent = self
        self.trainable = self.trainable  # hands the flag to both copies
        self.merge_mode = merge_mode
        self.return_sequences, self.return_state = layer.return_sequences, layer.return_state
        self._initial_weights = weights

    # the wrapper's trainable flag is its copies' flag, as Keras sets it on sublayers
    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = value
        for part in self._parts:
            part.trainable = value

    @property
    def trainable_weights(self):
        return [v for part in self._parts for v in part.trainable_weights]

    @property
    def non_trainable_weights(self):
        return [v for part in self._parts for v in part.non_trainable_weights]

    def build(self, input_types):
        for part in self._parts:
            part.build(input_types)
            part.built = True
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)

    def _part_types(self, input_types):
        return [part.compute_output_types(input_types) for part in self._parts]

    def compute_output_types(self, input_types):
        forward, backward = self._part_types(input_types)
        merge = _MERGE_OPS[self.merge_mode]
        merged = [forward[0], backward[0]] if merge is None else infer_op(
            merge, self._merge_attrs(), [forward[0], backward[0]], {})
        return merged + forward[1:] + backward[1:]

    def _merge_attrs(self) -> dict:
        return {"axis": -1} if self.merge_mode == "concat" else {}

    def lower_call(self, graph, param, inputs, name: str, prefix: str, call_site: str | None,
                   num_outputs: int) -> list:
        """Both parts' ops, the flip and the merge; returns [merged (or forward, backward), forward
        states..., backward states...]."""
        forward, backward = (part.lower_call(graph, param, inputs, f"{name}/{part.name}", f"{prefix}{self.name}/",
                                             call_site, 1 + part.state_count * part.return_state)
                             for part in self._parts)
        y_backward = backward[0]
        if self.return_sequences:
            (y_backward,) = graph.add_op(f"{name}/reverse", "reverse_steps", [y_backward], {}, {},
                                         layer=prefix + self.name, call_site=call_site)
        merge = _MERGE_OPS[self.merge_mode]
        merged = [forward[0], y_backward] if merge is None else graph.add_op(
            f"{name}/{self.merge_mode}", merge, [forward[0], y_backward], {}, self._merge_attrs(),
            layer=prefix + self.name, call_site=call_site)
        return merged + forward[1:] + backward[1:]

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "merge_mode": self.merge_mode,
                "layer": self.forward_layer.get_config(), "backward_layer": self.backward_layer.get_config()}
