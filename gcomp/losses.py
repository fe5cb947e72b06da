"""Losses with Keras's names: strings ('mse', 'categorical_crossentropy', ...) or these classes.

The formulas (Keras 3's clipping, from_logits, sum-over-batch-size reduction) live in
templates/numpy/losses.py, which the generated training programs run.
"""
from __future__ import annotations


class Loss:
    """A loss by name, with from_logits where Keras has it; compile() reads `gcomp_loss`."""

    name = ""

    def __init__(self, from_logits: bool = False, reduction: str = "sum_over_batch_size", name: str | None = None):
        if reduction != "sum_over_batch_size":
            raise ValueError(f"gcomp supports Keras's default reduction 'sum_over_batch_size', got {reduction!r}")
        self.from_logits = bool(from_logits)

    @property
    def gcomp_loss(self) -> tuple[str, bool]:
        return self.name, self.from_logits


class MeanSquaredError(Loss):
    name = "mse"

    def __init__(self, reduction="sum_over_batch_size", name=None):
        super().__init__(False, reduction, name)


class MeanAbsoluteError(Loss):
    name = "mae"

    def __init__(self, reduction="sum_over_batch_size", name=None):
        super().__init__(False, reduction, name)


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"
