"""Model: a graph of layer calls from inputs to outputs, usable itself as a layer.

`Model(inputs, outputs)` returns a `Functional` (as Keras 3 does); `Sequential` is in sequential.py.
Both share what is here: weights in Keras's order, summary, get_layer, predict. Predict lowers the
model to the IR, runs shape inference and hands the graph to a backend.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from gcomp.errors import GraphError, ShapeError
from gcomp.frontend.graph_map import GraphMap, map_graph
from gcomp.frontend.layer import Layer, assign_all, shape_text
from gcomp.frontend.layers.input_layer import InputLayer
from gcomp.frontend.tensor import KerasTensor
from gcomp.frontend.training import TrainingMixin
from gcomp.ir.types import TensorType, compatible


def _flatten_structure(struct: Any, what: str) -> list:
    if isinstance(struct, dict):
        return [struct[k] for k in sorted(struct)]
    if isinstance(struct, (list, tuple)):
        return list(struct)
    return [struct]


class Model(TrainingMixin, Layer):
    """Base of Functional and Sequential. `Model(inputs, outputs, name=None)` builds a Functional."""

    def __new__(cls, *args, **kwargs):
        if cls is Model:
            return super().__new__(Functional)
        return super().__new__(cls)

    _map: GraphMap | None = None  # set by _set_graph

    def _graph_map(self) -> GraphMap:
        """The model's calls and layers in Keras's order (Sequential builds it on first use)."""
        if self._map is None:
            raise GraphError(f'Model "{self.name}" has no inputs yet')
        return self._map

    @property
    def inputs(self) -> list[KerasTensor]:
        self._graph_map()
        return list(self._inputs)

    @property
    def outputs(self) -> list[KerasTensor]:
        self._graph_map()
        return list(self._outputs)

    def _set_graph(self, inputs: list[KerasTensor], outputs: list[KerasTensor]) -> None:
        for i, t in enumerate(inputs):
            if not isinstance(t, KerasTensor):
                raise GraphError(f'Model "{self.name}": input {i} is a {type(t).__name__}, not a gcomp.Input tensor')
            if not isinstance(t._keras_history.layer, InputLayer):
                raise GraphError(f'Model "{self.name}": input {i} ({t.name}) is the output of layer '
                                 f'"{t._keras_history.layer.name}"; model inputs must be gcomp.Input(...) tensors')
        for i, t in enumerate(outputs):
            if not isinstance(t, KerasTensor):
                raise GraphError(f'Model "{self.name}": output {i} is a {type(t).__name__}, not a symbolic tensor '
                                 f"(a layer's output)")
        if len({id(t) for t in inputs}) != len(inputs):
            raise GraphError(f'Model "{self.name}": the same Input is listed twice among the inputs')
        self._inputs = list(inputs)
        self._outputs = list(outputs)
        self._map = map_graph(self._inputs, self._outputs)
        seen: dict[str, Layer] = {}
        for layer in self._map.layers:
            if layer.name in seen and seen[layer.name] is not layer:
                raise GraphError(f'Model "{self.name}": the name "{layer.name}" is used by two layers '
                                 f"({type(seen[layer.name]).__name__} and {type(layer).__name__}); "
                                 f"all layer names in a model must be unique")
            seen[layer.name] = layer
        self.built = True
        self._invalidate()

    def _invalidate(self) -> None:
        self._compiled_cache: dict = {}

    # ---- structure ----------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return list(self._graph_map().layers)

    @property
    def input_names(self) -> list[str]:
        return [t._keras_history.layer.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        """Names of the layers producing the outputs (Keras's output_names), made unique with
        a ``_<i>`` suffix where one layer gives several outputs or an output is an input (ONNX
        needs distinct names)."""
        names, used = [], set(self.input_names)
        for t in self.outputs:
            base = name = t._keras_history.layer.name
            i = 1
            while name in used:
                name, i = f"{base}_{i}", i + 1
            used.add(name)
            names.append(name)
        return names

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name or by index into model.layers."""
        if index is not None and name is not None:
            raise ValueError("Provide only a layer name or a layer index, not both")
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only has "
                                 f"{len(self.layers)} layers.")
            return self.layers[index]
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: {[l.name for l in self.layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    # ---- weights ------------------------------------------------------------------------------
    def _weight_layers(self) -> list[Layer]:
        return self.layers

    @property
    def weights(self):
        """Per layer in model.layers order, its trainable then non-trainable weights; each once."""
        out, seen = [], set()
        for layer in self._weight_layers():
            for v in layer.weights:
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    @property
    def trainable_weights(self):
        return [v for v in self.weights if v.trainable]

    @property
    def non_trainable_weights(self):
        return [v for v in self.weights if not v.trainable]

    # Keras's other names for the same lists
    variables = weights
    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights

    @property
    def input(self):
        """Keras's `model.input`: the input tensor, or the list of them for several inputs."""
        inputs = self.inputs
        return inputs[0] if len(inputs) == 1 else inputs

    @property
    def output(self):
        """Keras's `model.output`: the output tensor, or the list of them for several outputs."""
        outputs = self.outputs
        return outputs[0] if len(outputs) == 1 else outputs

    def count_params(self) -> int:
        return sum(math.prod(v.shape) for v in self.weights)

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Assign every weight, in get_weights() order; shapes are checked before anything changes."""
        assign_all(self.weights, weights, f'Model "{self.name}"')

    # ---- summary ------------------------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None) -> None:
        """Print Keras's summary table: Layer (type), Output Shape, Param #, Connected to."""
        from gcomp.frontend.summary import format_summary
        text = format_summary(self, show_trainable=show_trainable)
        (print_fn or print)(text)

    # ---- use as a layer -----------------------------------------------------------------------
    def compute_output_types(self, input_types: list[TensorType]) -> list[TensorType]:
        """Output types of this model called on inputs of the given types (inner shapes re-checked)."""
        if len(input_types) != len(self.inputs):
            raise ShapeError(f"model expects {len(self.inputs)} input(s) ({', '.join(self.input_names)}), "
                             f"got {len(input_types)}")
        env: dict[int, TensorType] = {}
        for t, new, name in zip(self.inputs, input_types, self.input_names):
            if new.rank != t._type.rank or not all(compatible(a, b) for a, b in zip(new.shape, t._type.shape)):
                raise ShapeError(f'input "{name}" expects shape {t.shape}, got {shape_text(new)}')
            env[id(t)] = new
        for node in self._graph_map().nodes:
            if node.is_input:
                continue
            try:
                outs = node.layer.compute_output_types([env[id(t)] for t in node.input_tensors])
            except ShapeError as e:
                raise ShapeError(f'inner layer "{node.layer.name}": {e}') from None
            for t, ty in zip(node.output_tensors, outs):
                env[id(t)] = ty
        return [env[id(t)] for t in self.outputs]

    def _structure_outputs(self, outputs):
        struct = self._output_struct
        if isinstance(struct, dict):
            return dict(zip(sorted(struct), outputs))
        if isinstance(struct, (list, tuple)):
            return list(outputs)
        return outputs[0]

    def __call__(self, inputs, *args, **kwargs):
        if not isinstance(inputs, (KerasTensor, list, tuple, dict)):
            return self.predict(inputs, batch_size=None)
        if isinstance(inputs, dict):
            missing = [n for n in self.input_names if n not in inputs]
            if missing:
                raise ShapeError(f'Model "{self.name}" called on a dict without input(s) {missing}')
            inputs = [inputs[n] for n in self.input_names]
        first = inputs[0] if isinstance(inputs, (list, tuple)) and inputs else inputs
        self._ensure_built(first)
        self.built = True
        return super().__call__(inputs, *args, **kwargs)

    # ---- compilation and inference --------------------------------------------------------------
    def _ensure_built(self, data: Any = None) -> None:
        """Make sure the graph exists (Sequential may build from the first data)."""
        self._graph_map()

    def _inference_graph(self):
        """The model lowered to the IR, with shapes inferred and verified (cached)."""
        self._ensure_built()
        if "graph" not in self._compiled_cache:
            from gcomp.frontend.lowering import lower
            from gcomp.passes import infer_shapes, run_passes
            graph, variables = lower(self)
            self._compiled_cache["graph"] = run_passes(graph, [infer_shapes])
            self._compiled_cache["variables"] = variables
        return self._compiled_cache["graph"]

    def _param_values(self) -> dict[str, np.ndarray]:
        """Current weight arrays by IR param name (weights may change after lowering)."""
        self._inference_graph()
        return {name: var.value for name, var in self._compiled_cache["variables"].items()}

    def _current_graph(self):
        """The inference graph holding the current weights (set_weights may have replaced them)
        and the weights' current trainable flags (a layer frozen after the graph was made)."""
        graph = self._inference_graph()
        variables = self._compiled_cache["variables"]
        replaced = {k: var.value for k, var in variables.items() if graph.params[k] is not var.value}
        flipped = [k for k, var in variables.items() if graph.node(k).get("trainable", True) != var.trainable]
        if replaced or flipped:
            graph = graph.copy()
            graph.params.update(replaced)
            for k in flipped:
                graph.node(k)["trainable"] = variables[k].trainable
            self._compiled_cache["graph"] = graph
        return graph

    def optimized_graph(self, opt_level: int = 2, device: str = "cuda", report=None):
        """The IR after the passes of ``opt_level`` for ``device`` (see gcomp.passes.pipeline);
        ``report`` (a gcomp.passes.Report) records what each pass did."""
        from gcomp.passes import optimize
        return optimize(self._current_graph(), opt_level, device, report)

    def to_onnx(self, opt_level: int = 2, device: str = "cuda", report=None):
        """The model as an onnx.ModelProto with the current weights (opset and IR version pinned),
        optimized for ``device`` at ``opt_level`` (0: as written)."""
        from gcomp.backends.onnx_backend import export_graph
        graph = self.optimized_graph(opt_level, device, report)
        return export_graph(graph, graph.params)

    def export(self, filepath, format: str = "onnx", verbose: bool = True, opt_level: int = 2,
               device: str = "cuda") -> None:
        """Write the model to ``filepath`` as ONNX (atomically). Unlike Keras, no prior call is needed,
        and outputs keep the output layers' names."""
        if format != "onnx":
            raise ValueError(f"gcomp exports format='onnx' only, got format={format!r}")
        from gcomp.fileio import write_atomic
        write_atomic(filepath, self.to_onnx(opt_level, device).SerializeToString())
        if verbose:
            print(f"Saved ONNX model to {filepath}")

    def _runner(self, backend: str, limits: tuple[int, int] = (0, 0)):
        """A callable(list of arrays) -> list of arrays for ``backend``, cached until weights change
        (the C backend's code also depends on the largest batch and length it must take)."""
        versions = tuple(v.version for v in self.weights)
        key = (backend, versions) + (limits if backend == "c" else ())
        if key not in self._compiled_cache:
            for stale in [k for k in self._compiled_cache if isinstance(k, tuple) and k[0] == backend]:
                del self._compiled_cache[stale]
            if backend == "onnx":
                from gcomp import runtime
                device = "cuda" if runtime.cuda_works() else "cpu"  # optimize for where it will run
                session = runtime.from_bytes(self.to_onnx(device=device).SerializeToString(),
                                             f'model "{self.name}"', device=device)
                self._compiled_cache[key] = self._onnx_runner(session)
            elif backend == "c":
                from gcomp.backends.c_runtime import CProgram
                graph = self.optimized_graph(2, "cpu")  # inference only: folded weights are fine
                program = CProgram(graph, *limits)
                program.set_weights(graph.params)
                self._compiled_cache[key] = program.forward
            elif backend == "numpy":
                from gcomp.backends import numpy_backend
                graph = self._current_graph()
                forward = numpy_backend.compile_graph(graph)
                self._compiled_cache[key] = lambda arrays: forward(graph.params, arrays)
            else:
                raise ValueError(f"unknown backend {backend!r}; available: 'onnx', 'numpy', 'c'")
        return self._compiled_cache[key]

    def _onnx_runner(self, session):
        from gcomp.runtime import RunError, quiet_run_options
        names, options = session.input_names, quiet_run_options()

        def run(arrays):
            try:
                return session._session.run(None, dict(zip(names, arrays)), options)
            except Exception as ort_error:
                # onnxruntime's messages name its nodes, not the user's layers (an embedding index
                # out of range, say): the NumPy reference on the same batch names them.
                self._runner("numpy")(arrays)
                raise RunError(f'onnxruntime failed on model "{self.name}": {ort_error}') from None
        return run

    def predict(self, x, batch_size: int | None = None, verbose="auto", steps=None, callbacks=None,
                backend: str = "onnx"):
        """Run the model on data: an array, a list in input order or a dict by input name.
        Returns an array, a list (list outputs) or a dict (dict outputs). backend="onnx" runs the
        exported model in onnxruntime; backend="numpy" runs the NumPy reference. Callbacks get
        on_predict_begin/end and on_predict_batch_begin/end (logs {"outputs": the batch's}), as in Keras."""
        from gcomp.callbacks import configure
        from gcomp.frontend.data import batch_size_or_default, prepare_inputs
        self._ensure_built(x)
        arrays = prepare_inputs(self, x)
        step = batch_size_or_default("batch_size", batch_size)
        callbacks = configure(callbacks, self, verbose, 1, -(-len(arrays[0]) // step) if arrays else 0)
        return self._structure_outputs(self._run_batches(arrays, step, backend, callbacks))

    def _run_batches(self, arrays: list[np.ndarray], step: int, backend: str, callbacks=()) -> list[np.ndarray]:
        n = arrays[0].shape[0]
        limits = (0, 0)
        if backend == "c":  # the C code is built for a largest batch and length: round up, reuse builds
            free = [a.shape[axis] for a, t in zip(arrays, self.inputs) for axis, d in enumerate(t.shape)
                    if axis and d is None]
            limits = (min(step, max(n, 1)), 1 << max(max(free, default=1) - 1, 7).bit_length())
        run = self._runner(backend, limits)
        for cb in callbacks:
            cb.on_predict_begin({})
        chunks = []
        for b, i in enumerate(range(0, max(n, 1), step)):
            for cb in callbacks:
                cb.on_predict_batch_begin(b, {})
            chunks.append(run([a[i:i + step] for a in arrays]))
            for cb in callbacks:
                cb.on_predict_batch_end(b, {"outputs": self._structure_outputs(chunks[-1])})
        for cb in callbacks:
            cb.on_predict_end({})
        return [np.concatenate([c[j] for c in chunks]) for j in range(len(self.outputs))]

    def predict_on_batch(self, x, backend: str = "onnx"):
        """predict on one batch: the whole of ``x`` in a single run."""
        from gcomp.frontend.data import prepare_inputs
        self._ensure_built(x)
        arrays = prepare_inputs(self, x)
        return self._structure_outputs(self._run_batches(arrays, max(1, arrays[0].shape[0]), backend))


class Functional(Model):
    """A model defined by calling layers on Input tensors: Model(inputs, outputs, name=None)."""

    def __init__(self, inputs, outputs, name: str | None = None, trainable: bool = True):
        from gcomp.frontend.naming import auto_name
        super().__init__(name=name or auto_name("functional"), trainable=trainable)
        self._input_struct = inputs
        self._output_struct = outputs
        if isinstance(outputs, dict) and not outputs:
            raise GraphError("Model outputs are empty")
        self._set_graph(_flatten_structure(inputs, "inputs"), _flatten_structure(outputs, "outputs"))
        if not self.outputs:
            raise GraphError(f'Model "{self.name}" has no outputs')

    @property
    def input(self):
        """The inputs as given to the constructor (a tensor, a list or a dict), as in Keras."""
        return self._input_struct

    @property
    def output(self):
        """The outputs as given to the constructor (a tensor, a list or a dict), as in Keras."""
        return self._output_struct
