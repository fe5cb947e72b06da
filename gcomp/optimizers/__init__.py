"""Optimizers with Keras 3's names, defaults and update formulas: SGD, RMSprop, Adam, AdamW, Adagrad,
and their learning-rate schedules (gcomp.optimizers.schedules).

These are the very classes the generated training programs run (templates/numpy/schedules.py and
optimizers.py), so an optimizer given to compile() behaves in fit() exactly as configured. Keras 3
refuses `lr=`; so does gcomp.
"""
from __future__ import annotations

from typing import Any

from gcomp.codegen import runtime_file

_rt = runtime_file("schedules", "optimizers")
Optimizer = _rt.Optimizer
SGD, RMSprop, Adam, AdamW, Adagrad = _rt.SGD, _rt.RMSprop, _rt.Adam, _rt.AdamW, _rt.Adagrad

from gcomp.optimizers import schedules  # noqa: E402  (it reads _rt)

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "schedules", "get", "serialize"]


def get(identifier: Any) -> "Optimizer":
    """An optimizer from a name ('rmsprop', 'Adam', ...), a serialized dict or an instance."""
    try:
        return _rt.make_optimizer(identifier)
    except (ValueError, KeyError) as e:
        raise ValueError(f"unknown optimizer {identifier!r}: {e}") from None


def serialize(optimizer: "Optimizer") -> dict:
    """{"class_name", "config"} for the generated program (plain Python values only)."""
    data = optimizer.serialize()
    return {"class_name": data["class_name"], "config": {k: (float(v) if hasattr(v, "dtype") else v)
                                                         for k, v in data["config"].items()}}
