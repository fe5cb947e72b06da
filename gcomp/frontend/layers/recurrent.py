"""LSTM with Keras's gate order (i, f, c, o), initializers and outputs."""
from __future__ import annotations

import numpy as np

from gcomp.errors import ShapeError
from gcomp.frontend.layer import Layer
from gcomp.frontend.layers.core import _no_extras
from gcomp.ir import types as t


class LSTM(Layer):
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
        super().__init__(**kwargs)
        self.units = self._positive_int(units, "units")
        self.activation = self._activation(activation)
        self.recurrent_activation = self._activation(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = self._initializer(kernel_initializer)
        self.recurrent_initializer = self._initializer(recurrent_initializer)
        self.bias_initializer = self._initializer(bias_initializer)
        self.unit_forget_bias = bool(unit_forget_bias)
        for what, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0 <= rate <= 1:
                raise self._config_error(f"{what} must be in [0, 1], got {rate!r}")
        if recurrent_dropout > 0:  # refused rather than ignored: training would run without it
            raise self._config_error(f"recurrent_dropout={recurrent_dropout!r} is not supported by gcomp yet")
        self.dropout, self.recurrent_dropout, self.seed = float(dropout), float(recurrent_dropout), seed
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        if stateful:
            raise self._config_error("stateful=True is not supported by gcomp")
        self._weight_options(kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
                             bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                             recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint)
        _no_extras(self, activity_regularizer=activity_regularizer)

    def build(self, input_types):
        x = input_types[0]
        if x.rank != 3:
            raise ShapeError(f"expects an input of rank 3 (batch, timesteps, features), got rank {x.rank}")
        features = x.shape[2]
        if not t.is_static(features):
            raise ShapeError("the feature dimension of the inputs should be defined, found None")
        u = self.units
        self.kernel = self.add_weight("kernel", (features, 4 * u), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight("recurrent_kernel", (u, 4 * u), self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        if self.use_bias:
            init = self.bias_initializer
            if self.unit_forget_bias:
                base = init

                def init(shape, dtype="float32"):  # noqa: E306 - Keras: [init(u), ones(u), init(2u)]
                    return np.concatenate([base((u,), dtype), np.ones((u,), dtype), base((2 * u,), dtype)])
            self.bias = self.add_weight("bias", (4 * u,), init, regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)

    def op_attrs(self):
        attrs = {"units": self.units, "activation": self.activation,
                 "recurrent_activation": self.recurrent_activation, "use_bias": self.use_bias,
                 "return_sequences": self.return_sequences, "return_state": self.return_state,
                 "go_backwards": self.go_backwards}
        if 0 < self.dropout < 1:  # Keras drops inputs only strictly between 0 and 1 (training only)
            attrs["dropout"] = self.dropout
        return attrs
