"""Shape rules of the windowed ops: convolution and pooling (channels-last, any spatial rank), and the
embedding lookups a convolution folds into."""
from __future__ import annotations

from gcomp.errors import ShapeError
from gcomp.ir import types as t
from gcomp.ir.types import TensorType
from gcomp.ops.core import _with_bias, shape_str
from gcomp.ops.registry import register


def _spatial_out(x: TensorType, attrs, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple:
    rank = attrs["rank"]
    if x.rank != rank + 2:
        raise ShapeError(f"expects an input of rank {rank + 2} (batch, {'spatial, ' * rank}channels), "
                         f"got shape {shape_str(x.shape)}")
    out = []
    for i in range(rank):
        n = x.shape[1 + i]
        d = t.window_out(n, kernel[i], attrs["strides"][i], dilation[i], attrs["padding"])
        if t.is_static(d) and d <= 0:
            raise ShapeError(f"input of shape {shape_str(x.shape)} is too small for a window of "
                             f"{kernel} with dilation {dilation}, strides {attrs['strides']} and "
                             f"padding '{attrs['padding']}' (spatial axis {i} would have size {d})")
        out.append(d)
    return tuple(out)


@register("conv", params=_with_bias, float_inputs=True)
def conv(attrs, inputs, params):
    """Channels-last convolution: kernel (k..., in, filters), then bias and activation."""
    (x,) = inputs
    k = params["kernel"].shape
    kernel = tuple(k[:-2])
    spatial = _spatial_out(x, attrs, kernel, attrs["dilation_rate"])
    if not t.compatible(x.shape[-1], k[-2]):
        raise ShapeError(f"input has {x.shape[-1]} channels but the kernel expects {k[-2]} "
                         f"(input shape {shape_str(x.shape)}, kernel shape {shape_str(k)})")
    return [TensorType((x.shape[0],) + spatial + (k[-1],), "float32")]


@register("embedding_conv", params=lambda a: ("tables",))
def embedding_conv(attrs, inputs, params):
    """y[b, t] = activation(sum_k tables[k][x[b, t*strides + k*dilation_rate]]): an Embedding read by a
    valid Conv1D (or, with one table, by a Dense), folded into one lookup table per kernel tap."""
    (x,) = inputs
    if x.dtype not in t.INT_DTYPES:
        raise ShapeError(f"expects integer indices, got dtype {x.dtype}")
    taps, _, units = params["tables"].shape
    if taps == 1 and attrs["strides"] == 1:
        return [TensorType(x.shape + (units,), "float32")]
    if x.rank != 2:
        raise ShapeError(f"expects indices of rank 2 (batch, steps), got shape {shape_str(x.shape)}")
    steps = t.window_out(x.shape[1], taps, attrs["strides"], attrs["dilation_rate"], "valid")
    if t.is_static(steps) and steps <= 0:
        raise ShapeError(f"indices of shape {shape_str(x.shape)} are too short for {taps} taps "
                         f"with dilation {attrs['dilation_rate']}")
    return [TensorType((x.shape[0], steps, units), "float32")]


def _pool(attrs, inputs, params):
    """Max or average over each window (average counts only in-bounds elements, as Keras)."""
    (x,) = inputs
    spatial = _spatial_out(x, attrs, attrs["pool_size"], (1,) * attrs["rank"])
    return [TensorType((x.shape[0],) + spatial + (x.shape[-1],), x.dtype)]


register("max_pool")(_pool)
register("avg_pool", float_inputs=True)(_pool)


def _global_pool(attrs, inputs, params):
    """Max or mean over all spatial axes, keeping batch and channels."""
    (x,) = inputs
    rank = attrs["rank"]
    if x.rank != rank + 2:
        raise ShapeError(f"expects an input of rank {rank + 2}, got shape {shape_str(x.shape)}")
    if attrs.get("keepdims"):
        return [TensorType((x.shape[0],) + (1,) * rank + (x.shape[-1],), x.dtype)]
    return [TensorType((x.shape[0], x.shape[-1]), x.dtype)]


register("global_max_pool")(_global_pool)
register("global_avg_pool", float_inputs=True)(_global_pool)
