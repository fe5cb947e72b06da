"""Core layers: Dense, Embedding, Activation, ReLU, LeakyReLU, Softmax, Dropout, Flatten, Reshape."""
from __future__ import annotations

import math
import warnings

from gcomp.errors import ShapeError
from gcomp.frontend.layer import Layer
from gcomp.ir import types as t


def _no_extras(layer: Layer, **extras) -> None:
    """Arguments gcomp cannot honour yet (activity regularizers, LoRA): accepted as None (Keras's
    default), refused otherwise, so that training never silently differs from the model written."""
    given = {k: v for k, v in extras.items() if v is not None}
    if given:
        raise layer._config_error(f"{', '.join(sorted(given))} not supported by gcomp yet")


class Dense(Layer):
    """Densely connected layer: activation(x @ kernel + bias), kernel (in, units)."""

    op = "dense"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 lora_rank=None, **kwargs):
        super().__init__(**kwargs)
        self.units = self._positive_int(units, "units")
        self.activation = self._activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = self._initializer(kernel_initializer)
        self.bias_initializer = self._initializer(bias_initializer)
        self._weight_options(kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                             kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                             activity_regularizer=activity_regularizer)
        _no_extras(self, lora_rank=lora_rank)

    def build(self, input_types):
        x = input_types[0]
        if x.rank < 2:
            raise ShapeError(f"expects an input of rank >= 2 (batch, ..., features), got rank {x.rank}")
        d = x.shape[-1]
        if not t.is_static(d):
            raise ShapeError(f"the last dimension of the inputs to a Dense layer should be defined, found {d}")
        self.kernel = self.add_weight("kernel", (d, self.units), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer, regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)

    def op_attrs(self):
        return {"units": self.units, "activation": self.activation, "use_bias": self.use_bias}


class Embedding(Layer):
    """Turns integer indices into dense vectors: embeddings (input_dim, output_dim)."""

    op = "embedding"

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, weights=None, lora_rank=None, **kwargs):
        if "input_length" in kwargs:
            kwargs.pop("input_length")
            warnings.warn("Argument `input_length` is deprecated. Just remove it.", stacklevel=2)
        super().__init__(**kwargs)
        self.input_dim = self._positive_int(input_dim, "input_dim")
        self.output_dim = self._positive_int(output_dim, "output_dim")
        self.embeddings_initializer = self._initializer(embeddings_initializer)
        if mask_zero:
            raise self._config_error("mask_zero=True (masking) is not supported by gcomp yet")
        self._weight_options(embeddings_regularizer=embeddings_regularizer, embeddings_constraint=embeddings_constraint)
        _no_extras(self, lora_rank=lora_rank)
        self._initial_weights = weights

    def build(self, input_types):
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim),
                                          self.embeddings_initializer, regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint)
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)

    def op_attrs(self):
        return {"input_dim": self.input_dim, "output_dim": self.output_dim}


class Activation(Layer):
    """Applies an activation function by name: relu, sigmoid, softmax, tanh, gelu, ..."""

    op = "activation"

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = self._activation(activation)

    def op_attrs(self):
        return {"activation": self.activation}


class ReLU(Layer):
    """Keras's ReLU layer: relu(x, negative_slope, max_value, threshold). ReLU() and ReLU(max_value=6)
    are the activations relu and relu6 (one Relu or Clip node in ONNX); other options give the relu
    op, which computes Keras's formula step by step as Keras's code does."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        # Keras's checks, in its order
        if max_value is not None and max_value < 0.0:
            raise self._config_error(f"max_value of a {type(self).__name__} layer cannot be a negative value, "
                                     f"got max_value={max_value}")
        for name, value in (("negative_slope", negative_slope), ("threshold", threshold)):
            if value is None or value < 0.0:
                raise self._config_error(f"{name} of a {type(self).__name__} layer cannot be None or a negative "
                                         f"value, got {name}={value}")
        # an infinite max_value clips nothing (and has no literal in the generated C)
        self.max_value = None if max_value is None or math.isinf(max_value) else float(max_value)
        self.negative_slope, self.threshold = float(negative_slope), float(threshold)
        plain = not self.negative_slope and not self.threshold and self.max_value in (None, 6.0)
        self.op = "activation" if plain else "relu"

    def op_attrs(self):
        if self.op == "activation":
            return {"activation": "relu" if self.max_value is None else "relu6"}
        return {"negative_slope": self.negative_slope, "max_value": self.max_value, "threshold": self.threshold}

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


class LeakyReLU(ReLU):
    """Keras's LeakyReLU layer: x where x >= 0, negative_slope x below (default 0.3, Keras's; the
    leaky_relu activation string uses 0.2). `alpha` is Keras 2's name for negative_slope."""

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:  # Keras 3 takes it, with a deprecation warning
            negative_slope = kwargs.pop("alpha")
        super().__init__(negative_slope=negative_slope, **kwargs)

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "negative_slope": self.negative_slope}


class Softmax(Activation):
    """Keras's Softmax layer over the last axis (axis=-1, Keras's default); other axes are refused."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__("softmax", **kwargs)
        if axis != -1:
            raise self._config_error(f"Softmax(axis={axis!r}) is not supported by gcomp yet: only axis=-1, the "
                                     "last axis")
        self.axis = axis

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "axis": self.axis}


class Dropout(Layer):
    """Randomly zeroes a fraction `rate` of inputs in training; the identity at inference."""

    op = "dropout"

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise self._config_error(f"rate must be a float in [0, 1], got {rate!r}")
        if noise_shape is not None:  # a mask shared along some axes: the kernels draw one per element
            raise self._config_error(f"noise_shape={noise_shape!r} is not supported by gcomp yet (only None)")
        self.rate, self.noise_shape, self.seed = float(rate), noise_shape, seed

    def op_attrs(self):
        return {"rate": self.rate}


class Flatten(Layer):
    """Flattens all axes but the batch axis (row-major, channels-last)."""

    op = "flatten"

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise self._config_error(f"data_format={data_format!r} is not supported; gcomp is channels-last")


class Reshape(Layer):
    """Reshapes each sample to target_shape (which excludes the batch axis; one -1 may be inferred)."""

    op = "reshape"

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            dims = tuple(int(d) for d in target_shape)
        except (TypeError, ValueError):
            raise self._config_error(f"target_shape must be a tuple of ints, got {target_shape!r}") from None
        if any(d == 0 or d < -1 for d in dims):
            raise self._config_error(f"target_shape dims must be positive or -1, got {target_shape!r}")
        self.target_shape = dims

    def op_attrs(self):
        return {"target_shape": self.target_shape}

