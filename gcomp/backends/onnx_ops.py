"""ONNX lowering of each op kind: LOWERINGS[op](emitter, node, attrs) binds the node's outputs."""
from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto, helper

from gcomp.backends.onnx_backend import (CHANNELS_FIRST, CHANNELS_FIRST_2D, CHANNELS_LAST, TIME_MAJOR, ExportError,
                                         OnnxEmitter, first_layout, gru_weights, kernel_to_oihw, lstm_weights,
                                         onnx_axis)
from gcomp.ir.graph import ValueRef
from gcomp.ops.recurrent import RECURRENT_STATES
from gcomp.ir.types import same_padding

LOWERINGS = {}


def lowering(*ops: str):
    def wrap(fn):
        for op in ops:
            LOWERINGS[op] = fn
        return fn
    return wrap


def _inputs(em: OnnxEmitter, n: str) -> list[ValueRef]:
    return em.graph.op_inputs(n)


def _float_input(em: OnnxEmitter, n: str, ref: ValueRef, layout: str | None) -> str:
    """The input as float32 (Keras layers compute in float32 whatever the input dtype)."""
    name = em.value(ref, layout)
    if em.graph.value_type(ref).dtype != "float32":
        name = em.node("Cast", [name], f"{n}/cast", to=1)[0]
    return name


_SIMPLE = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus",
           "softsign": "Softsign", "exponential": "Exp"}


def activation(em: OnnxEmitter, name: str, x: str, hint: str, channel_axis: int = -1) -> str:
    """x after the Keras activation ``name`` (softmax runs over the channel axis)."""
    if name == "linear":
        return x
    if name in _SIMPLE:
        return em.node(_SIMPLE[name], [x], hint)[0]
    if name in ("softmax", "log_softmax"):
        return em.node("Softmax" if name == "softmax" else "LogSoftmax", [x], hint, axis=channel_axis)[0]
    if name == "elu":
        return em.node("Elu", [x], hint, alpha=1.0)[0]
    if name == "selu":
        return em.node("Selu", [x], hint, alpha=1.6732632423543772848170429916717,
                       gamma=1.0507009873554804934193349852946)[0]
    if name == "hard_sigmoid":
        return em.node("HardSigmoid", [x], hint, alpha=1.0 / 6.0, beta=0.5)[0]
    if name == "leaky_relu":
        return em.node("LeakyRelu", [x], hint, alpha=0.2)[0]
    if name == "relu6":
        return em.node("Clip", [x, em.const_f32(0.0), em.const_f32(6.0)], hint)[0]
    if name == "silu":
        return em.node("Mul", [x, em.node("Sigmoid", [x], f"{hint}/sigmoid")[0]], hint)[0]
    if name == "hard_silu":
        gate = em.node("HardSigmoid", [x], f"{hint}/hard_sigmoid", alpha=1.0 / 6.0, beta=0.5)[0]
        return em.node("Mul", [x, gate], hint)[0]
    if name == "mish":
        t = em.node("Tanh", [em.node("Softplus", [x], f"{hint}/softplus")[0]], f"{hint}/tanh")[0]
        return em.node("Mul", [x, t], hint)[0]
    if name == "gelu":  # exact form: 0.5 x (1 + erf(x / sqrt 2))
        e = em.node("Erf", [em.node("Div", [x, em.const_f32(math.sqrt(2.0))], f"{hint}/scaled")[0]], f"{hint}/erf")[0]
        one_plus = em.node("Add", [e, em.const_f32(1.0)], f"{hint}/one_plus")[0]
        half_x = em.node("Mul", [x, em.const_f32(0.5)], f"{hint}/half_x")[0]
        return em.node("Mul", [half_x, one_plus], hint)[0]
    raise ExportError(f"activation {name!r} has no ONNX lowering")


def _channel_axis(layout: str) -> int:
    return -1 if layout == CHANNELS_LAST else 1


def _is_first(em, ref) -> bool:
    """Whether the value is (or has already been converted to) its channels-first layout."""
    first = first_layout(em.graph.value_type(ref).rank)
    return em.layout_of(ref) == first or first in em.values[ref].transposed


_CHANNELS_FIRST_OPS = ("conv", "max_pool", "avg_pool")
_LAYOUT_AGNOSTIC_OPS = ("activation", "relu", "dropout", "split", "add", "subtract", "multiply", "average", "maximum",
                        "minimum", "concat")


def _feeds_channels_first(em, n: str) -> bool:
    """Whether the op's output reaches a convolution or pooling through layout-agnostic ops only."""
    stack, seen = [n], set()
    while stack:
        node = stack.pop()
        for port in range(len(em.graph.node(node)["outputs"])):
            for consumer, _ in em.graph.consumers(ValueRef(node, port)):
                op = em.graph.node(consumer)["op"]
                if op in _CHANNELS_FIRST_OPS:
                    return True
                if op in _LAYOUT_AGNOSTIC_OPS and consumer not in seen:
                    seen.add(consumer)
                    stack.append(consumer)
    return False


@lowering("dense")
def dense(em, n, a):
    (ref,) = _inputs(em, n)
    rank = em.graph.value_type(ref).rank
    if rank >= 3 and (_is_first(em, ref) or _feeds_channels_first(em, n)):
        # A dense op over the channels of a channels-first value is a 1x1 convolution: no transposes.
        layout = first_layout(rank)
        spatial = 2 if layout == CHANNELS_FIRST_2D else rank - 2
        x = _float_input(em, n, ref, layout)
        kernel = em.derived_param(n, "kernel", f"oi{spatial}", lambda k: k.T.reshape(*k.T.shape, *[1] * spatial))
        inputs = [x, kernel] + ([em.param(n, "bias")] if a["use_bias"] else [])
        y = em.node("Conv", inputs, n, kernel_shape=[1] * spatial)[0]
        em.bind(ValueRef(n), activation(em, a["activation"], y, f"{n}/{a['activation']}", 1), layout)
        return
    x = _float_input(em, n, ref, CHANNELS_LAST)
    kernel = em.param(n, "kernel")
    if rank == 2 and a["use_bias"]:
        y = em.node("Gemm", [x, kernel, em.param(n, "bias")], n)[0]
    else:
        y = em.node("MatMul", [x, kernel], n)[0]
        if a["use_bias"]:
            y = em.node("Add", [y, em.param(n, "bias")], f"{n}/bias")[0]
    em.bind(ValueRef(n), activation(em, a["activation"], y, f"{n}/{a['activation']}"))


# Ops that can run on time-major (steps, batch, features) values as they are: a value read only by
# recurrent ops (ONNX's LSTM and GRU take time-major input), or by these ops whose outputs are read
# only by recurrent ops (a Bidirectional's flip and merge between two layers), stays time-major,
# with no transposes around it.
_RNN_OPS = tuple(RECURRENT_STATES)
_TIME_MAJOR_OPS = ("reverse_steps", "concat", "add", "subtract", "multiply", "average", "maximum", "minimum")


def _read_by_rnns_only(em, ref: ValueRef) -> bool:
    """Whether the (batch, steps, features) value reaches nothing but recurrent ops, directly or
    through _TIME_MAJOR_OPS on rank-3 values: it is then held time-major (were it also a graph
    output, that output alone takes a transpose)."""
    readers = em.graph.consumers(ref)
    if em.graph.value_type(ref).rank != 3 or not readers:
        return False
    for c, _ in readers:
        op = em.graph.node(c)["op"]
        if op in _RNN_OPS:
            continue
        if op not in _TIME_MAJOR_OPS or any(em.graph.value_type(r).rank != 3 for r in em.graph.op_inputs(c)) \
                or not _read_by_rnns_only(em, ValueRef(c)):
            return False
    return True


@lowering("embedding")
def embedding(em, n, a):
    (ref,) = _inputs(em, n)
    indices = em.value(ref)
    if _read_by_rnns_only(em, ValueRef(n)):
        # Gathering with (steps, batch) indices gives the LSTM's time-major input directly: the
        # transpose moves the indices, not the embedded floats.
        steps_first = em.node("Transpose", [indices], f"{n}/indices_time_major", perm=[1, 0])[0]
        gathered = em.node("Gather", [em.param(n, "embeddings"), steps_first], n, axis=0)[0]
        em.bind(ValueRef(n), gathered, TIME_MAJOR)
        return
    em.bind(ValueRef(n), em.node("Gather", [em.param(n, "embeddings"), indices], n, axis=0)[0])


@lowering("embedding_conv")
def embedding_conv(em, n, a):
    """One Gather per tap, from indices sliced to that tap's offset and stride, summed by Adds
    (on the seed's multi-output model, onnxruntime's variadic Sum took 15 ms where four Adds took 6.5)."""
    (ref,) = _inputs(em, n)
    indices = em.value(ref)
    taps = em.graph.value_type(ValueRef(em.graph.op_params(n)["tables"])).shape[0]

    def i64(v: int) -> str:
        return em.const_i64(f"i64_{v}", [v])

    windowed = taps > 1 or a["strides"] > 1
    need = (taps - 1) * a["dilation_rate"] + 1  # the window's length
    if windowed:
        first_step = _step_unless_too_short(em, n, indices, need, a["strides"])
    total = None
    for k in range(taps):
        tap = indices
        if windowed:
            start = k * a["dilation_rate"]
            end = start - (taps - 1) * a["dilation_rate"] or np.iinfo(np.int64).max  # the last tap: to the end
            step, hint = (first_step, f"{n}/tap0/indices_of_{need}_steps_or_more") if k == 0 else \
                (i64(a["strides"]), f"{n}/tap{k}/indices")
            tap = em.node("Slice", [indices, i64(start), i64(end), i64(1), step], hint)[0]
        table = em.derived_param(n, "tables", f"tap{k}", lambda tables, k=k: tables[k])
        looked_up = em.node("Gather", [table, tap], f"{n}/tap{k}", axis=0)[0]
        total = looked_up if total is None else em.node("Add", [total, looked_up], f"{n}/sum{k}")[0]
    em.bind(ValueRef(n), activation(em, a["activation"], total, f"{n}/{a['activation']}"))


def _step_unless_too_short(em, n: str, indices: str, need: int, stride: int) -> str:
    """The first tap's slice step: ``stride``, or 0 (which onnxruntime refuses, naming this node)
    when the indices have fewer than ``need`` steps. Slices alone would give an empty sequence where
    the convolution refused the input; ONNX has no assert."""
    steps = em.node("Shape", [indices], f"{n}/steps", start=1, end=2)[0]
    spare = em.node("Add", [steps, em.const_i64(f"i64_{1 - need}", [1 - need])], f"{n}/spare_steps")[0]
    zero, one = em.const_i64("i64_scalar_0", 0), em.const_i64("i64_scalar_1", 1)
    enough = em.node("Clip", [spare, zero, one], f"{n}/needs_{need}_steps")[0]
    if stride == 1:
        return enough
    return em.node("Mul", [enough, em.const_i64(f"i64_{stride}", [stride])], f"{n}/needs_{need}_steps/stride")[0]


@lowering("activation")
def activation_op(em, n, a):
    (ref,) = _inputs(em, n)
    layout = em.layout_of(ref)
    x = em.value(ref, layout)
    em.bind(ValueRef(n), activation(em, a["activation"], x, n, _channel_axis(layout)), layout)


@lowering("relu")
def relu_op(em, n, a):
    """Keras's relu with options in ONNX ops: LeakyRelu where only the slope is set, else Relu (or
    Where(x > threshold, x, 0)), Clip to [0, max_value], minus slope * Relu(threshold - x)."""
    (ref,) = _inputs(em, n)
    layout = em.layout_of(ref)
    x = _float_input(em, n, ref, layout)
    slope, top, threshold = a["negative_slope"], a["max_value"], a["threshold"]
    if slope and top is None and not threshold:
        em.bind(ValueRef(n), em.node("LeakyRelu", [x], n, alpha=slope)[0], layout)
        return
    if threshold:
        above = em.node("Greater", [x, em.const_f32(threshold)], f"{n}/above")[0]
        y = em.node("Where", [above, x, em.const_f32(0.0)], f"{n}/kept")[0]
    else:
        y = em.node("Relu", [x], f"{n}/kept")[0]
    if top is not None:
        y = em.node("Clip", [y, em.const_f32(0.0), em.const_f32(top)], f"{n}/clipped")[0]
    if slope:
        under = em.node("Sub", [em.const_f32(threshold), x], f"{n}/under")[0]
        leak = em.node("Mul", [em.node("Relu", [under], f"{n}/below")[0], em.const_f32(slope)], f"{n}/leak")[0]
        y = em.node("Sub", [y, leak], n)[0]
    em.bind(ValueRef(n), y, layout)


@lowering("dropout")
def dropout(em, n, a):
    (ref,) = _inputs(em, n)
    em.values[ValueRef(n)] = em.values[ref]  # the identity at inference: no node at all


@lowering("flatten")
def flatten(em, n, a):
    (ref,) = _inputs(em, n)
    em.bind(ValueRef(n), em.node("Flatten", [em.value(ref, CHANNELS_LAST)], n, axis=1)[0])


@lowering("reshape")
def reshape(em, n, a):
    (ref,) = _inputs(em, n)
    shape = em.const_i64(f"{n}/shape", [0] + list(a["target_shape"]))
    em.bind(ValueRef(n), em.node("Reshape", [em.value(ref, CHANNELS_LAST), shape], n)[0])


def _window_attrs(a, spatial: tuple, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> dict:
    """kernel_shape, strides, dilations and padding; 1-D windows become 1xk 2-D windows. "same" is
    written as explicit pads where they are known (always at stride 1, where the total is d(k-1)):
    onnxruntime refuses SAME_UPPER with dilation."""
    strides = a["strides"]
    attrs = {"kernel_shape": list(kernel), "strides": list(strides), "dilations": list(dilation)}
    if a["padding"] == "causal":
        attrs["pads"] = [dilation[0] * (kernel[0] - 1), 0]
    elif a["padding"] == "same":
        if all(s == 1 or isinstance(n, int) for s, n in zip(strides, spatial)):
            pairs = [same_padding(n if isinstance(n, int) else 1, k, s, d) if s > 1 else
                     ((d * (k - 1)) // 2, d * (k - 1) - (d * (k - 1)) // 2)
                     for n, k, s, d in zip(spatial, kernel, strides, dilation)]
            attrs["pads"] = [p[0] for p in pairs] + [p[1] for p in pairs]
        else:  # a free length with stride > 1 (so no dilation): the extra pad after, as Keras
            attrs["auto_pad"] = "SAME_UPPER"
    if len(kernel) == 1:  # as 2-D: a height of 1
        attrs = {k: ([1] + v if k != "pads" else [0, v[0], 0, v[1]]) if isinstance(v, list) else v
                 for k, v in attrs.items()}
    return attrs


def _needs_dynamic_same(a, spatial: tuple, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> bool:
    """Whether "same" padding must be computed from the actual lengths: where _window_attrs would write
    SAME_UPPER (a free length at stride > 1) and some axis has a window shorter than its stride.
    There Keras's total, max((ceil(n/s)-1)s + k - n, 0), is 0 for some lengths, and onnxruntime's
    SAME_UPPER, which applies to every axis, refuses the negative value it gets before clamping
    ("padding values must be non-negative")."""
    strides = a["strides"]
    return (a["padding"] == "same"
            and any(not isinstance(n, int) and s > 1 for n, s in zip(spatial, strides))
            and any(s > 1 and d * (k - 1) + 1 < s for k, s, d in zip(kernel, strides, dilation)))


def _same_pads(em, n: str, x: str, a, spatial: tuple, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> str:
    """Keras's "same" pads of ``x`` (channels-first, a 1-D window's input as (N, C, 1, T)) as an int64
    tensor for Pad: constants on fixed axes, computed from Shape on free ones."""
    def const(v):
        return em.const_i64(f"i{v}", [v])
    offset = 4 - len(spatial)  # the ONNX axis of the first spatial axis
    before, after = [const(0)] * 4, [const(0)] * 4
    for i, (dim, k, s, d) in enumerate(zip(spatial, kernel, a["strides"], dilation)):
        effective = d * (k - 1) + 1
        if isinstance(dim, int) or s == 1:
            b, e = same_padding(dim, k, s, d) if isinstance(dim, int) else \
                ((effective - 1) // 2, effective - 1 - (effective - 1) // 2)
            before[offset + i], after[offset + i] = const(b), const(e)
            continue
        hint = f"{n}/same_pads{i}"
        length = em.node("Shape", [x], f"{hint}/length", start=offset + i, end=offset + i + 1)[0]
        out = em.node("Div", [em.node("Add", [length, const(s - 1)], f"{hint}/plus")[0], const(s)], f"{hint}/out")[0]
        covered = em.node("Mul", [em.node("Sub", [out, const(1)], f"{hint}/last")[0], const(s)], f"{hint}/start")[0]
        total = em.node("Sub", [em.node("Add", [covered, const(effective)], f"{hint}/end")[0], length], f"{hint}/total")[0]
        total = em.node("Max", [total, const(0)], f"{hint}/clamped")[0]
        before[offset + i] = em.node("Div", [total, const(2)], f"{hint}/before")[0]
        after[offset + i] = em.node("Sub", [total, before[offset + i]], f"{hint}/after")[0]
    return em.node("Concat", before + after, f"{n}/same_pads", axis=0)[0]


def _spatial(em, ref) -> tuple:
    return em.graph.value_type(ref).shape[1:-1]


def _kernel_oihw(k):
    """Keras (k..., in, out) -> ONNX (out, in, k...); a 1-D kernel gets a height of 1."""
    w = kernel_to_oihw(k)
    return w[:, :, None, :] if w.ndim == 3 else w


@lowering("conv")
def conv(em, n, a):
    (ref,) = _inputs(em, n)
    layout = first_layout(a["rank"] + 2)
    x = _float_input(em, n, ref, layout)
    spatial = _spatial(em, ref)
    if _needs_dynamic_same(a, spatial, a["kernel_size"], a["dilation_rate"]):
        pads = _same_pads(em, n, x, a, spatial, a["kernel_size"], a["dilation_rate"])
        x = em.node("Pad", [x, pads, em.const_f32(0.0)], f"{n}/padded", mode="constant")[0]
        a = {**a, "padding": "valid"}
    inputs = [x, em.derived_param(n, "kernel", "oihw", _kernel_oihw)]
    if a["use_bias"]:
        inputs.append(em.param(n, "bias"))
    y = em.node("Conv", inputs, n, **_window_attrs(a, spatial, a["kernel_size"], a["dilation_rate"]))[0]
    em.bind(ValueRef(n), activation(em, a["activation"], y, f"{n}/{a['activation']}", 1), layout)


@lowering("max_pool", "avg_pool")
def pool(em, n, a):
    (ref,) = _inputs(em, n)
    op = em.graph.node(n)["op"]
    layout = first_layout(a["rank"] + 2)
    x = _float_input(em, n, ref, layout) if op == "avg_pool" else em.value(ref, layout)
    extra = {"count_include_pad": 0} if op == "avg_pool" else {}  # Keras averages in-bounds values only
    spatial, ones = _spatial(em, ref), (1,) * a["rank"]
    if _needs_dynamic_same(a, spatial, a["pool_size"], ones):
        pads = _same_pads(em, n, x, a, spatial, a["pool_size"], ones)
        valid = _window_attrs({**a, "padding": "valid"}, spatial, a["pool_size"], ones)
        del valid["dilations"]
        if op == "max_pool":  # pad with the lowest float: every window holds an input value
            padded = em.node("Pad", [x, pads, em.const_f32(float(np.finfo(np.float32).min))], f"{n}/padded",
                             mode="constant")[0]
            y = em.node("MaxPool", [padded], n, **valid)[0]
        else:  # the mean of the in-bounds values: sum over window / in-bounds count, as two means
            padded = em.node("Pad", [x, pads, em.const_f32(0.0)], f"{n}/padded", mode="constant")[0]
            one = helper.make_tensor("value", TensorProto.FLOAT, [1], [1.0])
            mask = em.node("ConstantOfShape", [em.node("Shape", [x], f"{n}/shape")[0]], f"{n}/ones", value=one)[0]
            mask = em.node("Pad", [mask, pads, em.const_f32(0.0)], f"{n}/in_bounds", mode="constant")[0]
            total = em.node("AveragePool", [padded], f"{n}/sums", **valid)[0]
            count = em.node("AveragePool", [mask], f"{n}/counts", **valid)[0]
            y = em.node("Div", [total, count], n)[0]
        em.bind(ValueRef(n), y, layout)
        return
    attrs = _window_attrs(a, spatial, a["pool_size"], ones)
    del attrs["dilations"]
    y = em.node("MaxPool" if op == "max_pool" else "AveragePool", [x], n, **attrs, **extra)[0]
    em.bind(ValueRef(n), y, layout)


@lowering("global_max_pool", "global_avg_pool")
def global_pool(em, n, a):
    (ref,) = _inputs(em, n)
    op = em.graph.node(n)["op"]
    layout = em.layout_of(ref)  # reduce in whatever layout the input already has
    x = _float_input(em, n, ref, layout) if op == "global_avg_pool" else em.value(ref, layout)
    rank = a["rank"]
    axes = {CHANNELS_LAST: list(range(1, rank + 1)), CHANNELS_FIRST: list(range(2, rank + 2)),
            CHANNELS_FIRST_2D: [2, 3]}[layout]
    y = em.node("ReduceMax" if op == "global_max_pool" else "ReduceMean", [x], n,
                axes=axes, keepdims=int(a["keepdims"]))[0]
    em.bind(ValueRef(n), y, layout if a["keepdims"] else CHANNELS_LAST)


def _common_layout(em, refs) -> str:
    """The layout most inputs already have (ties go to channels-first, which the convolutions that
    usually follow want; time-major only when all are); the others are transposed, once each."""
    ranks = {em.graph.value_type(r).rank for r in refs}
    if len(ranks) > 1 or min(ranks) < 3:
        return CHANNELS_LAST
    if all(em.layout_of(r) == TIME_MAJOR for r in refs):  # between recurrent ops (_read_by_rnns_only)
        return TIME_MAJOR
    first = sum(_is_first(em, r) for r in refs)
    return first_layout(ranks.pop()) if 2 * first >= len(refs) else CHANNELS_LAST


@lowering("concat")
def concat(em, n, a):
    refs = _inputs(em, n)
    layout = _common_layout(em, refs)
    axis = onnx_axis(layout, em.graph.value_type(refs[0]).rank, a["axis"])
    y = em.node("Concat", [em.value(r, layout) for r in refs], n, axis=axis)[0]
    em.bind(ValueRef(n), y, layout)


@lowering("add", "subtract", "multiply", "average", "maximum", "minimum")
def elementwise(em, n, a):
    refs = _inputs(em, n)
    op = em.graph.node(n)["op"]
    layout = _common_layout(em, refs)
    xs = [em.value(r, layout) for r in refs]
    if op in ("maximum", "minimum"):
        y = em.node("Max" if op == "maximum" else "Min", xs, n)[0]
    elif op == "subtract":
        y = em.node("Sub", xs, n)[0]
    elif op == "multiply":
        y = xs[0]
        for i, x in enumerate(xs[1:]):
            y = em.node("Mul", [y, x], n if i == len(xs) - 2 else f"{n}/{i}")[0]
    else:
        y = em.node("Add" if len(xs) == 2 else "Sum", xs, n if op == "add" else f"{n}/sum")[0]
        if op == "average":
            y = em.node("Div", [y, em.const_f32(float(len(xs)))], n)[0]
    em.bind(ValueRef(n), y, layout)


_LSTM_ACTIVATIONS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "softsign": "Softsign",
                     "softplus": "Softplus"}


@lowering("reverse_steps")
def reverse_steps(em, n, a):
    """A Slice with step -1 over the time axis, in the layout the value already has (an LSTM's
    sequence is time-major: no transposes around the flip)."""
    (ref,) = _inputs(em, n)
    layout = TIME_MAJOR if em.layout_of(ref) == TIME_MAJOR else CHANNELS_LAST
    axis = 0 if layout == TIME_MAJOR else 1
    x = em.node("Slice", [em.value(ref, layout), em.const_i64("minus_one", [-1]), em.const_i64("int64_min", [-2 ** 63]),
                          em.const_i64(f"i64_{axis}", [axis]), em.const_i64("minus_one", [-1])], n)[0]
    em.bind(ValueRef(n), x, layout)


def _recurrent_activations(n: str, a: dict, kind: str, count: int) -> list[str]:
    """ONNX's names for the gate activation then `count` uses of the cell activation."""
    try:
        return [_LSTM_ACTIVATIONS[a["recurrent_activation"]]] + [_LSTM_ACTIVATIONS[a["activation"]]] * count
    except KeyError:
        raise ExportError(f'{kind} "{n}": activations {a["activation"]!r}/{a["recurrent_activation"]!r} '
                          f"have no ONNX {kind} equivalent (supported: {', '.join(_LSTM_ACTIVATIONS)})") from None


def _recurrent_input(em, n: str, a: dict) -> str:
    """The time-major float input; reversed with go_backwards (Keras reads from the end and returns
    outputs in that order)."""
    (ref,) = _inputs(em, n)
    x = _float_input(em, n, ref, TIME_MAJOR)
    if a["go_backwards"]:
        x = em.node("Slice", [x, em.const_i64("minus_one", [-1]), em.const_i64("int64_min", [-2 ** 63]),
                              em.const_i64("zero", [0]), em.const_i64("minus_one", [-1])], f"{n}/reversed")[0]
    return x


def _recurrent_weights(em, n: str, a: dict, convert) -> str:
    """The prefix of the W, R, B initializers, made once per set of parameters (a layer's calls
    share them). Not per kernel alone: after dedupe_weights two layers may share an equal kernel and
    differ in the other two. convert(kernel, recurrent, bias or None) -> (W, R, B)."""
    params = em.graph.op_params(n)
    weights = (params["kernel"], params["recurrent_kernel"], params.get("bias") if a["use_bias"] else None)
    key = em.recurrent_weights.get(weights)
    if key is None:
        key = em.fresh(f"{params['kernel']}/onnx")
        em.recurrent_weights[weights] = key
        bias = em.params[params["bias"]] if a["use_bias"] else None
        for suffix, array in zip("WRB", convert(em.params[params["kernel"]], em.params[params["recurrent_kernel"]],
                                               bias)):
            em.initializer(f"{key}_{suffix}", array)
    return key


def _recurrent_node(em, n: str, a: dict, op: str, x: str, key: str, states: int, **attrs) -> None:
    """The ONNX LSTM or GRU node and the IR outputs from its Y and states: Y only when the sequence is
    returned (time-major if only recurrent ops read it), Y_h only when h is, Y_c only for an LSTM's c."""
    n_out = len(em.graph.node(n)["outputs"])
    want_seq = a["return_sequences"]
    want_h = not want_seq or n_out > 1  # a returned sequence alone needs no Y_h
    outs = [em.fresh(f"{n}/Y") if want_seq else "", em.fresh(f"{n}/Y_h") if want_h else ""]
    if states == 2:
        outs.append(em.fresh(f"{n}/Y_c") if n_out == 3 else "")
    em.node(op, [x, f"{key}_W", f"{key}_R", f"{key}_B"], n, outputs=outs, hidden_size=a["units"],
            direction="forward", **attrs)
    axis0 = em.const_i64("zero", [0])
    if want_h:
        h = em.node("Squeeze", [outs[1], axis0], f"{n}/h" if want_seq or n_out > 1 else n)[0]
    if want_seq:
        seq = em.node("Squeeze", [outs[0], em.const_i64("one", [1])], f"{n}/Y_squeezed")[0]
        if _read_by_rnns_only(em, ValueRef(n)):
            em.bind(ValueRef(n), seq, TIME_MAJOR)
        else:
            em.bind(ValueRef(n), em.node("Transpose", [seq], n, perm=[1, 0, 2])[0])
    else:
        em.bind(ValueRef(n), h)
    if n_out > 1:
        em.bind(ValueRef(n, 1), h)
    if n_out == 3:
        em.bind(ValueRef(n, 2), em.node("Squeeze", [outs[2], axis0], f"{n}/c")[0])


@lowering("lstm")
def lstm(em, n, a):
    acts = _recurrent_activations(n, a, "LSTM", 2)
    _recurrent_node(em, n, a, "LSTM", _recurrent_input(em, n, a), _recurrent_weights(em, n, a, lstm_weights), 2,
                    activations=acts)


@lowering("gru")
def gru(em, n, a):
    """ONNX's GRU has Keras's gate order (z, r, h); reset_after is linear_before_reset=1."""
    acts = _recurrent_activations(n, a, "GRU", 1)
    convert = lambda k, r, b: gru_weights(k, r, b, a["reset_after"])  # noqa: E731
    _recurrent_node(em, n, a, "GRU", _recurrent_input(em, n, a), _recurrent_weights(em, n, a, convert), 1,
                    activations=acts, linear_before_reset=int(a["reset_after"]))


@lowering("split")
def split(em, n, a):
    (ref,) = _inputs(em, n)
    layout = em.layout_of(ref)
    axis = onnx_axis(layout, em.graph.value_type(ref).rank, a["axis"])
    sizes = em.const_i64(f"{n}/sizes", list(a["sizes"]))
    outs = em.node("Split", [em.value(ref, layout), sizes], n, n_out=len(a["sizes"]), axis=axis)
    for i, out in enumerate(outs):
        em.bind(ValueRef(n, i), out, layout)


@lowering("stack_batch")
def stack_batch(em, n, a):
    refs = _inputs(em, n)
    layout = _common_layout(em, refs)
    em.bind(ValueRef(n), em.node("Concat", [em.value(r, layout) for r in refs], n, axis=0)[0], layout)


@lowering("unstack_batch")
def unstack_batch(em, n, a):
    (ref,) = _inputs(em, n)
    layout = em.layout_of(ref)
    outs = em.node("Split", [em.value(ref, layout)], n, n_out=a["parts"], axis=0)  # equal parts
    for i, out in enumerate(outs):
        em.bind(ValueRef(n, i), out, layout)
