"""Shape rules of the recurrent ops: lstm, gru, and reverse_steps (Bidirectional's time flip)."""
from __future__ import annotations

from gcomp.errors import ShapeError
from gcomp.ir import types as t
from gcomp.ir.types import TensorType
from gcomp.ops.core import shape_str
from gcomp.ops.registry import register


RECURRENT_STATES = {"lstm": ("h", "c"), "gru": ("h",)}
"""The states a recurrent op returns after its output with return_state=True, by op kind: the one
table the shape rules, the passes, autodiff, the ONNX lowering and the layers read."""


def _recurrent_params(attrs) -> tuple[str, ...]:
    return ("kernel", "recurrent_kernel", "bias") if attrs.get("use_bias", True) else ("kernel", "recurrent_kernel")


_lstm_params = _gru_params = _recurrent_params


def _recurrent_types(kind: str, attrs, inputs, params) -> list[TensorType]:
    """[y] or, with return_state, [y] and op ``kind``'s (batch, units) states, for an input (batch,
    time, features)."""
    (x,) = inputs
    if x.rank != 3:
        raise ShapeError(f"expects an input of rank 3 (batch, timesteps, features), got shape {shape_str(x.shape)}")
    k = params["kernel"].shape
    if not t.compatible(x.shape[2], k[0]):
        raise ShapeError(f"input has {x.shape[2]} features but the kernel expects {k[0]}")
    units = attrs["units"]
    batch = x.shape[0]
    y = TensorType((batch, x.shape[1], units) if attrs["return_sequences"] else (batch, units), "float32")
    states = len(RECURRENT_STATES[kind]) if attrs["return_state"] else 0
    return [y] + [TensorType((batch, units), "float32")] * states


@register("lstm", params=_recurrent_params, float_inputs=True)
def lstm(attrs, inputs, params):
    """Keras LSTM over (batch, time, features): gates i, f, c, o; outputs [y] or [y, h, c]."""
    return _recurrent_types("lstm", attrs, inputs, params)


@register("gru", params=_recurrent_params, float_inputs=True)
def gru(attrs, inputs, params):
    """Keras GRU over (batch, time, features): gates z, r, h (reset_after: the reset gate scales the
    recurrent projection, bias (2, 3u); else it scales h before it, bias (3u,)); outputs [y] or [y, h]."""
    return _recurrent_types("gru", attrs, inputs, params)


@register("reverse_steps")
def reverse_steps(attrs, inputs, params):
    """y[:, t] = x[:, T - 1 - t]: the time axis read backwards (Bidirectional turns its backward
    layer's sequence, which comes out in processing order, back into input order)."""
    (x,) = inputs
    if x.rank < 2:
        raise ShapeError(f"expects an input of rank >= 2 (batch, timesteps, ...), got shape {shape_str(x.shape)}")
    return [x]
