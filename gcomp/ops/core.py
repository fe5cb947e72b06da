"""Shape rules of the core ops: dense, embedding, activation, relu, dropout, flatten, reshape."""
from __future__ import annotations

from gcomp.errors import ShapeError
from gcomp.ir import types as t
from gcomp.ir.types import TensorType
from gcomp.ops.registry import register


def _with_bias(attrs) -> tuple[str, ...]:
    return ("kernel", "bias") if attrs.get("use_bias", True) else ("kernel",)


def shape_str(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


@register("dense", params=_with_bias, float_inputs=True)
def dense(attrs, inputs, params):
    """y = activation(x @ kernel + bias) over the last axis; kernel (in, units)."""
    (x,) = inputs
    if x.rank < 2:
        raise ShapeError(f"expects an input of rank >= 2 (batch, ..., features), got shape {shape_str(x.shape)}")
    k = params["kernel"].shape
    if not t.compatible(x.shape[-1], k[0]):
        raise ShapeError(f"input's last dim is {x.shape[-1]} but the kernel expects {k[0]} "
                         f"(input shape {shape_str(x.shape)}, kernel shape {shape_str(k)})")
    return [TensorType(x.shape[:-1] + (k[1],), "float32")]


@register("embedding", params=lambda a: ("embeddings",))
def embedding(attrs, inputs, params):
    """y[..., :] = embeddings[x[...]]: a row lookup; x holds integer indices in [0, input_dim)."""
    (x,) = inputs
    if x.dtype not in t.INT_DTYPES:
        raise ShapeError(f"expects integer indices, got dtype {x.dtype} (give Input dtype='int32')")
    return [TensorType(x.shape + (params["embeddings"].shape[1],), "float32")]


@register("activation")
def activation(attrs, inputs, params):
    """y = activation(x), elementwise (softmax over the last axis)."""
    (x,) = inputs
    return [TensorType(x.shape, x.dtype if x.dtype in t.FLOAT_DTYPES else "float32")]


@register("relu", float_inputs=True)
def relu(attrs, inputs, params):
    """y = Keras's relu(x, negative_slope, max_value, threshold), elementwise: x above the threshold
    (clipped to [0, max_value] where one is given), negative_slope (x - threshold) below it. The
    LeakyReLU layer and ReLU layers with options lower to it; a plain ReLU() is activation relu."""
    (x,) = inputs
    return [TensorType(x.shape, x.dtype if x.dtype in t.FLOAT_DTYPES else "float32")]


@register("dropout")
def dropout(attrs, inputs, params):
    """y = x at inference; in training, zero a fraction `rate` of x and scale the rest by 1/(1-rate)."""
    return [inputs[0]]


@register("flatten")
def flatten(attrs, inputs, params):
    """(batch, d1, ..., dn) -> (batch, d1*...*dn), row-major as Keras (channels-last)."""
    (x,) = inputs
    if x.rank < 1:
        raise ShapeError("cannot flatten a scalar")
    return [TensorType((x.shape[0], t.product(x.shape[1:])), x.dtype)]


def resolve_target_shape(in_shape, target) -> tuple:
    """Keras's Reshape: target excludes the batch axis and may hold one -1, inferred from the size."""
    if sum(1 for d in target if d == -1) > 1:
        raise ShapeError(f"target_shape {tuple(target)} may contain at most one -1")
    size_in = t.product(in_shape[1:])
    known = t.product(d for d in target if d != -1)
    if -1 in target:
        if t.is_static(size_in):
            if known == 0 or size_in % known:
                raise ShapeError(f"cannot reshape input of shape {shape_str(in_shape)} "
                                 f"({size_in} values per sample) to target_shape {tuple(target)}")
            fill: t.Dim = size_in // known
        else:
            fill = t.floordiv(size_in, known)
        out = tuple(fill if d == -1 else d for d in target)
    else:
        out = tuple(target)
        if t.is_static(size_in) and size_in != known:
            raise ShapeError(f"cannot reshape input of shape {shape_str(in_shape)} ({size_in} values "
                             f"per sample) to target_shape {tuple(target)} ({known} values)")
    return (in_shape[0],) + out


@register("reshape")
def reshape(attrs, inputs, params):
    """(batch, ...) -> (batch, *target_shape), keeping row-major order."""
    (x,) = inputs
    return [TensorType(resolve_target_shape(x.shape, attrs["target_shape"]), x.dtype)]


@register("split")
def split(attrs, inputs, params):
    """Cut x along `axis` into consecutive parts of the given `sizes` (undoes a merge)."""
    (x,) = inputs
    axis = attrs["axis"] % x.rank
    if t.is_static(x.shape[axis]) and x.shape[axis] != sum(attrs["sizes"]):
        raise ShapeError(f"cannot split axis {attrs['axis']} of size {x.shape[axis]} into {attrs['sizes']}")
    return [TensorType(x.shape[:axis] + (size,) + x.shape[axis + 1:], x.dtype) for size in attrs["sizes"]]


@register("stack_batch", min_inputs=2, max_inputs=None)
def stack_batch(attrs, inputs, params):
    """Join same-typed inputs along the batch axis (so one call of a shared layer serves all)."""
    first = inputs[0]
    if any(x != first for x in inputs[1:]):
        raise ShapeError("stack_batch needs inputs of one type; got " + ", ".join(str(x) for x in inputs))
    batch = first.shape[0]
    stacked = len(inputs) * batch if t.is_static(batch) else f"{len(inputs)}*{batch}"
    return [TensorType((stacked,) + first.shape[1:], first.dtype)]


@register("unstack_batch")
def unstack_batch(attrs, inputs, params):
    """Cut the batch axis into `parts` equal parts: the inverse of stack_batch."""
    (x,) = inputs
    batch, parts = x.shape[0], attrs["parts"]
    if t.is_static(batch):
        part = batch // parts
    else:
        prefix = f"{parts}*"
        part = batch[len(prefix):] if batch.startswith(prefix) else f"{batch} // {parts}"
    return [TensorType((part,) + x.shape[1:], x.dtype) for _ in range(parts)]
