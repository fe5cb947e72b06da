"""ONNX backend: the IR as an ONNX model for onnxruntime.

Pinned to opset 17 and IR version 8, which every onnxruntime since 1.13 loads (onnx 1.23 would
otherwise write IR 14, which onnxruntime 1.31 refuses). Inputs and outputs keep the model's names;
free dims become named dim_params ("batch", "text_len").

Keras is channels-last; ONNX's Conv and pooling are channels-first. Each value remembers the layout
it is in, and a Transpose is inserted only where a consumer needs the other one, so a chain of
convolutions, pooling and elementwise ops runs channels-first between a single pair of transposes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gcomp.errors import GcompError
from gcomp.ir.graph import Graph, ValueRef
from gcomp.ir.types import TensorType

OPSET = 17
IR_VERSION = 8
_DTYPES = {"float16": TensorProto.FLOAT16, "float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE,
           "int8": TensorProto.INT8, "int16": TensorProto.INT16, "int32": TensorProto.INT32,
           "int64": TensorProto.INT64, "uint8": TensorProto.UINT8, "uint16": TensorProto.UINT16,
           "uint32": TensorProto.UINT32, "uint64": TensorProto.UINT64, "bool": TensorProto.BOOL}
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

CHANNELS_LAST, CHANNELS_FIRST = "channels_last", "channels_first"
CHANNELS_FIRST_2D = "channels_first_2d"
"""A rank-3 (batch, steps, channels) value held as (batch, channels, 1, steps): onnxruntime runs 2-D
convolutions and pooling with its blocked NCHWc kernels, which beat its 1-D path (in a one-off trial, 20.0 against 14.0
ms on a 64x256x96 Conv1D with k=5), so 1-D windows run as 1xk 2-D windows."""
TIME_MAJOR = "time_major"
"""A rank-3 (batch, steps, features) value held as (steps, batch, features), as ONNX's LSTM reads and
writes it (onnxruntime's CPU LSTM refuses layout=1). Only values read by LSTMs alone are held so."""


class ExportError(GcompError, ValueError):
    """The model uses something the ONNX backend cannot express."""


def tensor_value_info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    """Type of a graph input/output: named symbols become dim_params, expressions stay unnamed."""
    dims = [d if isinstance(d, int) else (d if _SYMBOL.match(d) else None) for d in t.shape]
    return helper.make_tensor_value_info(name, _DTYPES[t.dtype], dims)


def _to_first(rank: int) -> list[int]:
    return [0, rank - 1] + list(range(1, rank - 1))


def _to_last(rank: int) -> list[int]:
    return [0] + list(range(2, rank)) + [1]


def first_layout(rank: int) -> str:
    """The channels-first layout convolutions and pooling want for a value of this (IR) rank."""
    return CHANNELS_FIRST_2D if rank == 3 else CHANNELS_FIRST


def onnx_axis(layout: str, rank: int, axis: int) -> int:
    """Where IR axis ``axis`` of a rank-``rank`` value sits in its ONNX tensor of this layout."""
    axis %= rank
    if layout == CHANNELS_LAST:
        return axis
    if layout == CHANNELS_FIRST:
        return _to_first(rank).index(axis)
    if layout == TIME_MAJOR:  # (batch, steps, features) -> (steps, batch, features)
        return {0: 1, 1: 0, 2: 2}[axis]
    return {0: 0, 1: 3, 2: 1}[axis]  # (batch, steps, channels) -> (batch, channels, 1, steps)


@dataclass
class _Value:
    name: str
    layout: str = CHANNELS_LAST
    rank: int = 0
    transposed: dict = field(default_factory=dict)


class OnnxEmitter:
    """Builds the ONNX graph node by node; op lowerings call its helpers."""

    def __init__(self, graph: Graph, params: dict[str, np.ndarray]):
        self.graph = graph
        self.params = params
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}
        self.values: dict[ValueRef, _Value] = {}
        self._names: set[str] = set()
        self.recurrent_weights: dict[tuple, str] = {}
        """(kernel, recurrent_kernel, bias) parameter names -> the prefix of their ONNX W, R, B."""

    # ---- names, constants, nodes ------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        name, i = hint, 1
        while name in self._names:
            name, i = f"{hint}_{i}", i + 1
        self._names.add(name)
        return name

    def initializer(self, name: str, array: np.ndarray) -> str:
        if name not in self.initializers:
            self._names.add(name)
            self.initializers[name] = numpy_helper.from_array(np.ascontiguousarray(array), name)
        return name

    def const_i64(self, hint: str, values) -> str:
        return self.initializer(f"const/{hint}", np.asarray(values, np.int64))

    def const_f32(self, value: float) -> str:
        return self.initializer(f"const/f32_{value!r}", np.asarray(value, np.float32))

    def node(self, op_type: str, inputs: list[str], hint: str, n_out: int = 1, outputs: list[str] | None = None,
             **attrs) -> list[str]:
        outs = outputs or [self.fresh(hint if i == 0 else f"{hint}:{i}") for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.fresh(f"{hint}/{op_type}"), **attrs))
        return outs

    # ---- values and layouts -------------------------------------------------------------------
    def value(self, ref: ValueRef, layout: str | None = None) -> str:
        """The ONNX name of an IR value, converted to ``layout`` if it is given and differs (each
        conversion is made once per value and reused)."""
        v = self.values[ref]
        if layout is None or layout == v.layout or v.rank < 3:
            return v.name
        if layout not in v.transposed:
            v.transposed[layout] = self._convert(v, layout)
        return v.transposed[layout]

    def _convert(self, v: _Value, layout: str) -> str:
        hint = f"{v.name}/{layout}"
        if TIME_MAJOR in (v.layout, layout):
            if CHANNELS_LAST not in (v.layout, layout):  # through channels-last
                last = _Value(self._convert(v, CHANNELS_LAST), CHANNELS_LAST, v.rank)
                return self._convert(last, layout)
            return self.node("Transpose", [v.name], hint, perm=[1, 0, 2])[0]
        if {v.layout, layout} == {CHANNELS_FIRST, CHANNELS_FIRST_2D}:  # (N, C, T) <-> (N, C, 1, T)
            op = "Unsqueeze" if layout == CHANNELS_FIRST_2D else "Squeeze"
            return self.node(op, [v.name, self.const_i64("two", [2])], hint)[0]
        if layout == CHANNELS_FIRST_2D:  # (N, T, C) -> (N, 1, T, C) -> (N, C, 1, T)
            wide = self.node("Unsqueeze", [v.name, self.const_i64("one", [1])], f"{hint}/unsqueezed")[0]
            return self.node("Transpose", [wide], hint, perm=[0, 3, 1, 2])[0]
        if v.layout == CHANNELS_FIRST_2D:  # (N, C, 1, T) -> (N, 1, T, C) -> (N, T, C)
            wide = self.node("Transpose", [v.name], f"{hint}/transposed", perm=[0, 2, 3, 1])[0]
            return self.node("Squeeze", [wide, self.const_i64("one", [1])], hint)[0]
        perm = _to_first(v.rank) if layout == CHANNELS_FIRST else _to_last(v.rank)
        return self.node("Transpose", [v.name], hint, perm=perm)[0]

    def layout_of(self, ref: ValueRef) -> str:
        v = self.values[ref]
        return v.layout if v.rank >= 3 else CHANNELS_LAST

    def bind(self, ref: ValueRef, name: str, layout: str = CHANNELS_LAST) -> None:
        self.values[ref] = _Value(name, layout, self.graph.value_type(ref).rank)

    def param(self, node: str, role: str) -> str:
        name = self.graph.op_params(node)[role]
        return self.initializer(name, self.params[name])

    def derived_param(self, node: str, role: str, suffix: str, transform) -> str:
        """An initializer computed from a parameter (e.g. a transposed kernel), made once per parameter."""
        name = self.graph.op_params(node)[role]
        key = f"{name}/{suffix}"
        if key not in self.initializers:
            self.initializer(key, transform(self.params[name]))
        return key


def export_graph(graph: Graph, params: dict[str, np.ndarray]) -> onnx.ModelProto:
    """An ONNX model computing ``graph`` (shapes inferred) with ``params`` as initializers."""
    from gcomp.backends.onnx_ops import LOWERINGS
    em = OnnxEmitter(graph, params)
    em._names.update(name for name, _ in graph.outputs)  # internal values never take an output's name
    inputs = []
    for name in graph.inputs:
        em._names.add(name)
        em.bind(ValueRef(name), name)
        inputs.append(tensor_value_info(name, graph.value_type(ValueRef(name))))
    for n in graph.nodes("op"):
        op = graph.node(n)["op"]
        try:
            lowering = LOWERINGS[op]
        except KeyError:
            raise ExportError(f'op "{n}" ({op}) has no ONNX lowering') from None
        lowering(em, n, graph.node(n)["attrs"])
    outputs = []
    renames: dict[str, str] = {}
    for name, ref in graph.outputs:
        src = em.value(ref, CHANNELS_LAST)
        if src in graph.inputs or src in renames or src in em.initializers:
            em.node("Identity", [src], name, outputs=[name])  # an input or a value listed twice
        else:
            renames[src] = name  # the producing node writes the output name directly
        outputs.append(tensor_value_info(name, graph.value_type(ref)))
    for node in em.nodes:
        for seq in (node.input, node.output):
            for i, v in enumerate(seq):
                seq[i] = renames.get(v, v)
    onnx_graph = helper.make_graph(em.nodes, graph.name, inputs, outputs, list(em.initializers.values()))
    model = helper.make_model(onnx_graph, producer_name="gcomp", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def kernel_to_oihw(kernel: np.ndarray) -> np.ndarray:
    """Keras conv kernel (k..., in, out) -> ONNX (out, in, k...)."""
    rank = kernel.ndim - 2
    return kernel.transpose([rank + 1, rank] + list(range(rank)))


def lstm_weights(kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None):
    """Keras LSTM weights (gates i, f, c, o; x @ K) -> ONNX W, R, B (gates i, o, f, c; W @ x)."""
    u = recurrent.shape[0]

    def reorder(m):
        i, f, c, o = (m[..., k * u:(k + 1) * u] for k in range(4))
        return np.concatenate([i, o, f, c], axis=-1)
    w = reorder(kernel).T[None]
    r = reorder(recurrent).T[None]
    b = np.zeros((1, 8 * u), np.float32)
    if bias is not None:
        b[0, :4 * u] = reorder(bias)
    return w.astype(np.float32), r.astype(np.float32), b



def gru_weights(kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None, reset_after: bool):
    """Keras GRU weights (gates z, r, h, as ONNX's; x @ K) -> ONNX W, R, B: B is the input bias then
    the recurrent one (reset_after's second bias row; zeros without reset_after, whose candidate
    ONNX computes with linear_before_reset=0 as Keras does)."""
    u = recurrent.shape[0]
    b = np.zeros((1, 6 * u), np.float32)
    if bias is not None:
        b[0, :3 * u] = bias[0] if reset_after else bias
        if reset_after:
            b[0, 3 * u:] = bias[1]
    return kernel.T[None].astype(np.float32), recurrent.T[None].astype(np.float32), b
