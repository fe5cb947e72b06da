"""Shape rules of the ops that only training graphs hold: training-mode forward ops, losses, the
backward (one `vjp` node per forward op) and the optimizer update."""
from __future__ import annotations

from gcomp.errors import ShapeError
from gcomp.ir.types import TensorType
from gcomp.ops.recurrent import _gru_params, _lstm_params
from gcomp.ops.registry import get_op, register

SCALAR = TensorType((), "float32")
OPAQUE = TensorType((), "opaque")
"""What a training-mode op saves for its backward (the LSTM's gates, say): backend-defined."""


@register("dropout_train", float_inputs=True)
def dropout_train(attrs, inputs, params):
    """Training-mode dropout: y = x * mask, mask = keep / (1 - rate) drawn per step; outputs y, mask."""
    (x,) = inputs
    return [x, x]


@register("lstm_train", params=_lstm_params, float_inputs=True)
def lstm_train(attrs, inputs, params):
    """Training-mode LSTM: outputs y, h, c and the cache its backward reads."""
    from gcomp.ops.recurrent import lstm
    outs = lstm({**attrs, "return_state": True}, inputs, params)
    return outs + [OPAQUE]


@register("gru_train", params=_gru_params, float_inputs=True)
def gru_train(attrs, inputs, params):
    """Training-mode GRU: outputs y, h and the cache its backward reads."""
    from gcomp.ops.recurrent import gru
    return gru({**attrs, "return_state": True}, inputs, params) + [OPAQUE]


@register("loss", min_inputs=3, max_inputs=3)
def loss(attrs, inputs, params):
    """Keras loss `loss` of (prediction, target, sample_weight), reduced by sum over batch size."""
    pred, target, weight = inputs
    if weight.rank != 1:
        raise ShapeError(f"sample weights must be (batch,), got {weight}")
    return [SCALAR]


@register("loss_vjp", min_inputs=3, max_inputs=3)
def loss_vjp(attrs, inputs, params):
    """d(weight * loss)/d(prediction): where the backward pass starts."""
    return [inputs[0]]


def _penalized(attrs) -> tuple[str, ...]:
    return (attrs["role"],)


@register("regularization", params=_penalized, min_inputs=0, max_inputs=0)
def regularization(attrs, inputs, params):
    """Keras's penalty of one weight (role attrs["role"]): l1 sum|w| + l2 sum w^2 for the attrs' l1
    and l2. The training graphs add the penalties to the loss, as Keras adds model.losses."""
    return [SCALAR]


@register("regularization_vjp", params=_penalized, min_inputs=0, max_inputs=0)
def regularization_vjp(attrs, inputs, params):
    """d(scale * penalty)/d(weight) = scale (l1 sign(w) + 2 l2 w), for the attrs' l1, l2 and scale."""
    return [params[attrs["role"]]]


@register("activity_regularization")
def activity_regularization(attrs, inputs, params):
    """Keras's activity penalty of a layer call's output y: (l1 sum|y| + l2 sum y^2) / batch size."""
    if inputs[0].rank < 1:
        raise ShapeError(f"an activity regularizer needs a batch axis, got {inputs[0]}")
    return [SCALAR]


@register("activity_regularization_vjp")
def activity_regularization_vjp(attrs, inputs, params):
    """d(scale * activity penalty)/dy = scale (l1 sign(y) + 2 l2 y) / batch size."""
    return [inputs[0]]


def _vjp_params(attrs) -> tuple[str, ...]:
    return tuple(attrs["param_roles"])


@register("vjp", params=_vjp_params, min_inputs=2, max_inputs=None)
def vjp(attrs, inputs, params):
    """Backward of one forward op (attrs["op"]): reads the op's inputs, outputs and output gradients;
    gives the gradients of the inputs and parameters marked as needed."""
    get_op(attrs["op"])  # the forward op must exist
    n = attrs["n_inputs"]
    grads = [t for t, need in zip(inputs[:n], attrs["need_inputs"]) if need]
    return grads + [params[role] for role in attrs["need_params"]]


@register("add_n", min_inputs=1, max_inputs=None)
def add_n(attrs, inputs, params):
    """Sum of gradient contributions of one value (a weight read by several calls, say)."""
    return [inputs[0]]


@register("apply_gradients", min_inputs=0, max_inputs=None)
def apply_gradients(attrs, inputs, params):
    """The optimizer step: updates the parameters attrs["params"] in place with these gradients."""
    if len(inputs) != len(attrs["params"]):
        raise ShapeError(f"{len(inputs)} gradients for {len(attrs['params'])} parameters")
    return [TensorType((), "int64")]
