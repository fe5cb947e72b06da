"""Weight regularizers with Keras 3's names and defaults: L1, L2, L1L2 (also as 'l1', 'l2', 'l1l2').

A layer's `kernel_regularizer=` (and bias_, embeddings_, recurrent_) adds penalty(weight) to the
training loss, as Keras adds `model.losses`: L1 is l1 * sum(|w|), L2 is l2 * sum(w^2), in float32.
`activity_regularizer=` (Dense, Conv) adds penalty(output) / batch size for each call of the layer.
The loss that fit(), evaluate() and the History report includes the penalties of the trainable
weights and the activities (Keras's `loss`; the per-output `<output>_loss` values do not). The
training graph holds them as `regularization` and `activity_regularization` nodes with their
`..._vjp` gradients (gcomp.autodiff).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gcomp.codegen import runtime_file
from gcomp.errors import LayerConfigError

_rt = runtime_file("losses")

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get", "serialize"]


def _factor(value: Any, name: str) -> float:
    """Keras's validate_float_arg: a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0:
        raise LayerConfigError(f"Invalid value for argument {name}: expected a non-negative float. Received: {name}={value!r}")
    return float(value)


class Regularizer:
    """Base class: penalty(x) = l1 * sum(|x|) + l2 * sum(x^2). gcomp's programs read (l1, l2), so a
    subclass of your own cannot be compiled; L1, L2 and L1L2 cover Keras's weight penalties."""

    l1 = 0.0
    l2 = 0.0

    @property
    def factors(self) -> tuple[float, float]:
        """(l1, l2): what the generated training programs compute with."""
        return float(self.l1), float(self.l2)

    def __call__(self, x) -> np.float32:
        """The penalty of x, in float32 as Keras computes it (the training programs' own code)."""
        return _rt.weight_penalty(np.asarray(x, np.float32), *self.factors)

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}

    @classmethod
    def from_config(cls, config: dict) -> "Regularizer":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """l1 * sum(|x|) + l2 * sum(x^2); both 0 by default (Keras's L1L2(l2=0.1) has no L1 part)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")


class L1(Regularizer):
    """l1 * sum(|x|), l1 = 0.01 by default."""

    def __init__(self, l1=0.01):
        self.l1 = _factor(0.01 if l1 is None else l1, "l1")

    def get_config(self) -> dict:
        return {"l1": self.l1}


class L2(Regularizer):
    """l2 * sum(x^2), l2 = 0.01 by default."""

    def __init__(self, l2=0.01):
        self.l2 = _factor(0.01 if l2 is None else l2, "l2")

    def get_config(self) -> dict:
        return {"l2": self.l2}


# Keras's names: the classes and their snake_case forms (the string 'l1_l2' is not one, in Keras 3
# either); the lowercase module attributes are the classes themselves, as in Keras.
_BY_NAME = {"L1": L1, "l1": L1, "L2": L2, "l2": L2, "L1L2": L1L2, "l1l2": L1L2}
l1, l2, l1_l2 = L1, L2, L1L2


def get(identifier: Any) -> Regularizer | None:
    """A regularizer from None, a name ('l1', 'l2', 'l1l2', 'L1', 'L2', 'L1L2'), a {"class_name", "config"}
    dict or an instance; anything else (a callable of your own, say) is a LayerConfigError."""
    if identifier is None:
        return None
    if isinstance(identifier, Regularizer):
        if type(identifier) not in (L1, L2, L1L2):
            raise LayerConfigError(f"regularizer {identifier!r}: gcomp compiles L1, L2 and L1L2 only")
        return identifier
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        raise LayerConfigError(f"Could not interpret regularizer identifier: {identifier!r} "
                               f"(gcomp knows {', '.join(sorted(_BY_NAME))})")
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_NAME:
        return _BY_NAME[identifier["class_name"]].from_config(identifier.get("config", {}))
    raise LayerConfigError(f"Could not interpret regularizer identifier: {identifier!r}")


def serialize(regularizer: Regularizer) -> dict:
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}
