"""Shape rules of the merge ops: concat and the elementwise n-ary ops."""
from __future__ import annotations

from gcomp.errors import ShapeError
from gcomp.ir import types as t
from gcomp.ir.types import TensorType
from gcomp.ops.core import shape_str
from gcomp.ops.registry import register

ELEMENTWISE_MERGES = ("add", "subtract", "multiply", "average", "maximum", "minimum")


def _shapes(inputs) -> str:
    return ", ".join(shape_str(x.shape) for x in inputs)


def _common_dtype(inputs) -> str:
    dtypes = {x.dtype for x in inputs}
    if len(dtypes) > 1:
        raise ShapeError(f"inputs have different dtypes {sorted(dtypes)}")
    return inputs[0].dtype


@register("concat", min_inputs=2, max_inputs=None)
def concat(attrs, inputs, params):
    """Join inputs along `axis`; all other dims must agree."""
    rank = inputs[0].rank
    if any(x.rank != rank for x in inputs):
        raise ShapeError(f"inputs must have the same rank; got shapes {_shapes(inputs)}")
    axis = attrs["axis"]
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for inputs of rank {rank}")
    axis %= rank
    if axis == 0:
        raise ShapeError("cannot concatenate along the batch axis (axis 0)")
    out = list(inputs[0].shape)
    for x in inputs[1:]:
        for i, d in enumerate(x.shape):
            if i == axis:
                continue
            if not t.compatible(out[i], d):
                raise ShapeError(f"inputs must match in every dim except axis {attrs['axis']}; "
                                 f"got shapes {_shapes(inputs)}")
            out[i] = t.unify(out[i], d)
    total: t.Dim = 0
    for x in inputs:
        d = x.shape[axis]
        total = total + d if t.is_static(total) and t.is_static(d) else f"{total} + {d}"
    out[axis] = total
    return [TensorType(tuple(out), _common_dtype(inputs))]


def _broadcast_dim(a, b):
    """Keras merges broadcast non-batch dims NumPy-style: equal, or one of them is 1."""
    if a == 1:
        return b
    if b == 1 or a == b:
        return a
    if t.compatible(a, b):
        return t.unify(a, b)
    return None


def _elementwise(attrs, inputs, params):
    """Elementwise add/subtract/multiply/average/maximum/minimum; non-batch dims broadcast."""
    shape = list(inputs[0].shape)
    for x in inputs[1:]:
        if x.rank != len(shape):
            raise ShapeError(f"inputs must have the same rank; got shapes {_shapes(inputs)}")
        if not t.compatible(shape[0], x.shape[0]):
            raise ShapeError(f"cannot merge tensors with different batch sizes; got shapes {_shapes(inputs)}")
        merged = [t.unify(shape[0], x.shape[0])] + [_broadcast_dim(a, b) for a, b in zip(shape[1:], x.shape[1:])]
        if None in merged:
            raise ShapeError(f"inputs have incompatible shapes {_shapes(inputs)}")
        shape = merged
    return [TensorType(tuple(shape), _common_dtype(inputs))]


for _name in ELEMENTWISE_MERGES:
    register(_name, min_inputs=2, max_inputs=2 if _name == "subtract" else None)(_elementwise)
