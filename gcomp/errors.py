"""Exceptions gcomp raises for user mistakes.

Each class also derives from the built-in exception a Keras user would catch (ValueError, TypeError,
IndexError), so `except ValueError` keeps working, while `except gcomp.errors.GcompError` catches them all.
"""
from __future__ import annotations


class GcompError(Exception):
    """Base class of every error gcomp raises on purpose."""


class ShapeError(GcompError, ValueError):
    """A layer was called on tensors whose shapes or ranks it cannot take."""


class GraphError(GcompError, ValueError):
    """A model's graph is malformed: disconnected, duplicate names, unknown tensors."""


class LayerConfigError(GcompError, ValueError):
    """A layer was constructed with invalid arguments (unknown activation, bad padding, ...)."""


class InputDataError(GcompError, ValueError):
    """Data given to predict/fit does not match the model's inputs (names, ranks, dims, dtypes)."""


class EmbeddingIndexError(InputDataError, IndexError):
    """An Embedding received an index outside [0, input_dim)."""


class IRVerificationError(GcompError, AssertionError):
    """The IR broke one of its invariants; names the node. A bug in a pass, not a user mistake."""


class ModelFileError(GcompError, RuntimeError):
    """A model file given to the command line could not be loaded or holds no usable model."""


class TargetError(GcompError, ValueError):
    """The model uses something the chosen build target cannot express (a learning-rate schedule in
    the standalone C program)."""
