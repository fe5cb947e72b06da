"""Sequential: a linear stack of layers, built from add() calls or a list."""
from __future__ import annotations

from typing import Any

from gcomp.errors import GraphError
from gcomp.frontend.layer import Layer
from gcomp.frontend.layers.core import Embedding
from gcomp.frontend.layers.input_layer import InputLayer
from gcomp.frontend.model import Model
from gcomp.frontend.naming import auto_name
from gcomp.frontend.tensor import KerasTensor


class Sequential(Model):
    """Layers applied one after another. The input comes from an Input first, `input_shape=` on the
    first layer, or the first data seen by predict. Each add() calls the layer at once, so a shape
    mistake is reported at the add() line."""

    def __init__(self, layers: list | None = None, trainable: bool = True, name: str | None = None):
        super().__init__(name=name or auto_name("sequential"), trainable=trainable)
        self._layers: list[Layer] = []
        self._output: KerasTensor | None = None
        self._input_struct = None
        self._output_struct = None
        self._invalidate()
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self) -> list[Layer]:
        """The added layers; the InputLayer is not listed (as in Keras)."""
        return [l for l in self._layers if not isinstance(l, InputLayer)]

    def _weight_layers(self) -> list[Layer]:
        return self.layers

    def add(self, layer: Any) -> None:
        if isinstance(layer, KerasTensor) and isinstance(layer._keras_history.layer, InputLayer):
            layer = layer._keras_history.layer
        if not isinstance(layer, Layer):
            raise TypeError(f'Sequential "{self.name}": only layers can be added, got {type(layer).__name__} '
                            f"{layer!r}")
        if any(l is layer for l in self._layers):
            raise GraphError(f'Sequential "{self.name}": layer "{layer.name}" is already in this model; a '
                             f"Sequential calls each layer once: create a new layer instead of adding it again")
        if any(l.name == layer.name for l in self._layers):
            raise GraphError(f'Sequential "{self.name}": all layers must have unique names; "{layer.name}" '
                             f"is already the name of a layer in this model")
        if isinstance(layer, InputLayer):
            if self._layers:
                raise GraphError(f'Sequential "{self.name}": an Input can only come first; this model '
                                 f"already has layers {[l.name for l in self._layers]}")
            self._layers.append(layer)
            self._output = layer.output
            return
        if not self._layers and layer._input_shape_arg is not None:
            self.add(InputLayer(shape=layer._input_shape_arg, dtype=self._input_dtype_for(layer)))
        self._layers.append(layer)
        if self._output is not None:
            self._output = layer(self._output)
            self._graph_changed()

    def pop(self) -> Layer:
        """Remove the last layer (and its call)."""
        if not self.layers:
            raise GraphError(f'Sequential "{self.name}" has no layers to pop')
        layer = self._layers.pop()
        if self._output is not None:
            layer._inbound_nodes.pop()
            last = self._layers[-1]
            self._output = last.output if isinstance(last, InputLayer) else last._inbound_nodes[-1].output_tensors[0]
            self._graph_changed()
        return layer

    @staticmethod
    def _input_dtype_for(first: Layer) -> str:
        return "int32" if isinstance(first, Embedding) else "float32"

    def build(self, input_shape=None) -> None:
        """Create the input from a full shape (batch first), when no layer declared it."""
        if self._output is not None:
            return
        if input_shape is None:
            raise GraphError(f'Sequential "{self.name}" has no input shape: start it with gcomp.Input(shape), '
                             f"give the first layer input_shape=, or call build((None, ...))")
        layers = self._layers
        self._layers = []
        self.add(InputLayer(batch_shape=tuple(input_shape), dtype=self._input_dtype_for(layers[0]) if layers else None))
        for layer in layers:
            self.add(layer)

    def _graph_changed(self) -> None:
        self._map = None
        self._invalidate()

    def _graph_map(self):
        if self._map is None:
            if self._output is None or not self.layers:
                raise GraphError(f'Sequential "{self.name}" is not built: give it an Input first, '
                                 f"input_shape= on the first layer, or call build((None, ...))")
            self._input_struct = self._layers[0].output
            self._output_struct = self._output
            self._set_graph([self._layers[0].output], [self._output])
        return self._map

    def _ensure_built(self, data: Any = None) -> None:
        if self._output is None and data is not None and hasattr(data, "shape"):
            self.build((None,) + tuple(data.shape[1:]))
        self._graph_map()
