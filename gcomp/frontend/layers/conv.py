"""Convolution layers: Conv1D and Conv2D, channels-last, kernel (k..., in, filters)."""
from __future__ import annotations

from gcomp.errors import ShapeError
from gcomp.frontend.layer import Layer
from gcomp.ir import types as t


class _Conv(Layer):
    op = "conv"
    rank = 0

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = self._positive_int(filters, "filters")
        self.kernel_size = self._int_tuple(kernel_size, self.rank, "kernel_size")
        self.strides = self._int_tuple(strides, self.rank, "strides")
        self.dilation_rate = self._int_tuple(dilation_rate, self.rank, "dilation_rate")
        paddings = ("valid", "same", "causal") if self.rank == 1 else ("valid", "same")
        self.padding = padding.lower() if isinstance(padding, str) else padding
        if self.padding not in paddings:
            raise self._config_error(f"padding must be one of {paddings}, got {padding!r}")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise self._config_error("strides > 1 not supported in conjunction with dilation_rate > 1")
        if data_format not in (None, "channels_last"):
            raise self._config_error(f"data_format={data_format!r} is not supported; gcomp is channels-last")
        if groups != 1:
            raise self._config_error("groups > 1 is not supported by gcomp yet")
        self.activation = self._activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = self._initializer(kernel_initializer)
        self.bias_initializer = self._initializer(bias_initializer)
        self._weight_options(kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                             kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                             activity_regularizer=activity_regularizer)

    def build(self, input_types):
        x = input_types[0]
        if x.rank != self.rank + 2:
            raise ShapeError(f"expects an input of rank {self.rank + 2} (batch, {'spatial, ' * self.rank}"
                             f"channels), got rank {x.rank}")
        channels = x.shape[-1]
        if not t.is_static(channels):
            raise ShapeError("the channel dimension of the inputs should be defined, found None")
        self.kernel = self.add_weight("kernel", self.kernel_size + (channels, self.filters), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer, regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)

    def op_attrs(self):
        return {"rank": self.rank, "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "dilation_rate": self.dilation_rate,
                "activation": self.activation, "use_bias": self.use_bias}


class Conv1D(_Conv):
    """1D convolution over (batch, steps, channels)."""

    rank = 1


class Conv2D(_Conv):
    """2D convolution over (batch, rows, cols, channels)."""

    rank = 2


Convolution1D, Convolution2D = Conv1D, Conv2D
