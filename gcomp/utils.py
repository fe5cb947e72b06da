"""Utilities with Keras's names: set_random_seed, clear_session, to_categorical."""
from __future__ import annotations

from typing import Any

import numpy as np

from gcomp.errors import InputDataError
from gcomp.frontend.naming import clear_session
from gcomp.initializers import set_random_seed

__all__ = ["set_random_seed", "clear_session", "to_categorical"]


def to_categorical(x: Any, num_classes: int | None = None) -> np.ndarray:
    """Class labels as one-hot rows, as keras.utils.to_categorical: float64, shape x.shape + (num_classes,)
    with a trailing axis of 1 dropped first; num_classes defaults to the largest label + 1. Unlike
    Keras, a label outside [0, num_classes) is an error (Keras's NumPy path reads a negative one
    from the end)."""
    labels = np.array(x, dtype="int64")
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    labels = labels.reshape(-1)
    if not num_classes:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise InputDataError(f"to_categorical: label {bad[0]} is outside [0, {num_classes}) "
                             f"(num_classes={num_classes})")
    one_hot = np.zeros((labels.size, num_classes))
    one_hot[np.arange(labels.size), labels] = 1
    return one_hot.reshape(shape + (num_classes,))
