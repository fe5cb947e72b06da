"""Keras 3's learning-rate schedules (keras.optimizers.schedules): give one as an optimizer's
`learning_rate` and each step trains at schedule(step). The classes are the generated programs' own
(templates/numpy/schedules.py), computed in float32 as Keras computes them."""
from __future__ import annotations

from gcomp.optimizers import _rt

LearningRateSchedule = _rt.LearningRateSchedule
ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay = _rt.ExponentialDecay, _rt.PiecewiseConstantDecay, _rt.PolynomialDecay
InverseTimeDecay, CosineDecay, CosineDecayRestarts = _rt.InverseTimeDecay, _rt.CosineDecay, _rt.CosineDecayRestarts
serialize, deserialize = _rt.serialize_schedule, _rt.make_schedule

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay",
           "InverseTimeDecay", "CosineDecay", "CosineDecayRestarts", "serialize", "deserialize"]
