"""gcomp: a graph compiler for Keras-style neural networks.

Write models with Keras's functional API (`Input`, layers as functions, `Model`, `Sequential`); gcomp
lowers them to a networkx IR, runs compiler passes and emits code for its backends.
"""
from gcomp import (activations, callbacks, constraints, initializers, layers, losses, metrics, models, optimizers,
                   regularizers, runtime, utils)
from gcomp.build import build
from gcomp.errors import GcompError
from gcomp.frontend.layers.input_layer import Input
from gcomp.frontend.model import Functional, Model
from gcomp.frontend.sequential import Sequential

__version__ = "0.1.0"
__all__ = ["Input", "Model", "Functional", "Sequential", "layers", "models", "activations", "initializers",
           "utils", "runtime", "optimizers", "losses", "metrics", "callbacks", "regularizers", "constraints", "build", "GcompError", "__version__"]
