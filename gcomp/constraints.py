"""Weight constraints with Keras 3's names and defaults: MaxNorm, MinMaxNorm, NonNeg, UnitNorm (also
'max_norm', 'min_max_norm', 'non_neg', 'unit_norm').

A layer's `kernel_constraint=` (and bias_, embeddings_, recurrent_) projects that weight after every
optimizer update, as Keras's optimizer does (`variable.assign(constraint(variable))`). The norms
run over `axis` (an int or a list of ints): gcomp's programs see a weight as (outer, reduced, inner)
blocks, so the axes must be adjacent, as every example in Keras's documentation has them.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from gcomp.codegen import runtime_file
from gcomp.errors import LayerConfigError

_rt = runtime_file("constraints")
apply_constraint = _rt.apply_constraint

__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "max_norm", "min_max_norm", "non_neg",
           "unit_norm", "get", "serialize"]


class Constraint:
    """Base class; `kind` names the projection the generated programs run."""

    kind = ""

    def spec(self, shape: tuple[int, ...]) -> dict:
        """What a training program needs for a weight of this shape: the kind, the factors and
        the weight as (outer, reduced, inner) for the norms; LayerConfigError if the axes do
        not fit the weight."""
        return {"kind": self.kind, "outer": 1, "reduced": int(math.prod(shape)), "inner": 1}

    def __call__(self, w) -> np.ndarray:
        """The projected weight, in float32 (what one update's end does to it)."""
        w = np.array(w, np.float32)
        apply_constraint(w, self.spec(w.shape))
        return w

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Constraint":
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class NonNeg(Constraint):
    """w = max(w, 0)."""

    kind = "non_neg"


class _Norm(Constraint):
    def __init__(self, axis=0):
        axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
        if not axes or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes):
            raise LayerConfigError(f"axis must be an int or a list of ints, got {axis!r}")
        self.axis, self._axes = axis, [int(a) for a in axes]

    def spec(self, shape):
        rank = len(shape)
        if any(not -rank <= a < rank for a in self._axes):
            raise LayerConfigError(f"{type(self).__name__}: axis {self.axis!r} is out of range for a weight of "
                                   f"rank {rank} (shape {tuple(shape)})")
        axes = sorted({a % rank for a in self._axes})
        if axes != list(range(axes[0], axes[-1] + 1)):
            raise LayerConfigError(f"{type(self).__name__}: gcomp computes norms over adjacent axes only, "
                                   f"got axis={self.axis!r}")
        outer = math.prod(shape[:axes[0]])
        reduced = math.prod(shape[axes[0]:axes[-1] + 1])
        return {"kind": self.kind, "outer": int(outer), "reduced": int(reduced),
                "inner": int(math.prod(shape[axes[-1] + 1:])), **self._factors()}

    def _factors(self) -> dict:
        return {}

    def get_config(self):
        return {"axis": self.axis}


class UnitNorm(_Norm):
    """w / (epsilon + ||w||) along `axis` (0 by default)."""

    kind = "unit_norm"


class MaxNorm(_Norm):
    """w * clip(||w||, 0, max_value) / (epsilon + ||w||) along `axis`; max_value 2 by default."""

    kind = "max_norm"

    def __init__(self, max_value=2, axis=0):
        super().__init__(axis)
        self.max_value = _number(max_value, "max_value")

    def _factors(self):
        return {"min_value": 0.0, "max_value": float(self.max_value), "rate": 1.0}

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(_Norm):
    """w * (rate clip(||w||, min, max) + (1 - rate) ||w||) / (epsilon + ||w||) along `axis`."""

    kind = "max_norm"  # the same projection as MaxNorm with a lower bound and a rate

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        super().__init__(axis)
        self.min_value, self.max_value = _number(min_value, "min_value"), _number(max_value, "max_value")
        self.rate = _number(rate, "rate")

    def _factors(self):
        return {"min_value": float(self.min_value), "max_value": float(self.max_value), "rate": float(self.rate)}

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
        raise LayerConfigError(f"{name} must be a number, got {value!r}")
    return value


max_norm, min_max_norm, non_neg, unit_norm = MaxNorm, MinMaxNorm, NonNeg, UnitNorm
_BY_NAME = {"MaxNorm": MaxNorm, "max_norm": MaxNorm, "MinMaxNorm": MinMaxNorm, "min_max_norm": MinMaxNorm,
            "NonNeg": NonNeg, "non_neg": NonNeg, "UnitNorm": UnitNorm, "unit_norm": UnitNorm}


def get(identifier: Any) -> Constraint | None:
    """A constraint from None, a name, a {"class_name", "config"} dict or an instance of these
    classes; anything else (a function of your own, say) is a LayerConfigError."""
    if identifier is None:
        return None
    if isinstance(identifier, Constraint):
        if type(identifier) not in set(_BY_NAME.values()):
            raise LayerConfigError(f"constraint {identifier!r}: gcomp compiles {', '.join(sorted(set(c.__name__ for c in _BY_NAME.values())))} only")
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_NAME:
        return _BY_NAME[identifier["class_name"]].from_config(identifier.get("config", {}))
    raise LayerConfigError(f"Could not interpret constraint identifier: {identifier!r}")


def serialize(constraint: Constraint) -> dict:
    return {"class_name": type(constraint).__name__, "config": constraint.get_config()}
