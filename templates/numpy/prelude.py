# ---- gcomp NumPy runtime: kernels the generated code calls (float32 throughout) ----------------
# This block is copied verbatim into every generated module, so the module needs only NumPy.
import math as _math

import numpy as np

try:  # inside gcomp, raise gcomp's own error classes; standalone, plain built-in ones
    from gcomp.errors import EmbeddingIndexError, InputDataError
except ImportError:  # pragma: no cover - exercised by the standalone programs
    class InputDataError(ValueError):
        pass

    class EmbeddingIndexError(InputDataError, IndexError):
        pass

_F32 = np.float32


def linear(x):
    return x


def relu(x):
    return np.maximum(x, _F32(0))


def relu6(x):
    return np.clip(x, _F32(0), _F32(6))


def leaky_relu(x, negative_slope=0.2):
    return np.where(x >= 0, x, x * _F32(negative_slope))


def sigmoid(x):
    with np.errstate(over="ignore"):
        return (_F32(1) / (_F32(1) + np.exp(-x))).astype(x.dtype, copy=False)


def tanh(x):
    return np.tanh(x)


def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def elu(x, alpha=1.0):
    return np.where(x >= 0, x, _F32(alpha) * np.expm1(np.minimum(x, _F32(0))))


def selu(x):
    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946
    return (_F32(scale) * elu(x, alpha)).astype(x.dtype, copy=False)


def softplus(x):
    return np.logaddexp(x, _F32(0)).astype(x.dtype, copy=False)


def softsign(x):
    return x / (_F32(1) + np.abs(x))


def silu(x):
    return x * sigmoid(x)


_erf = np.frompyfunc(_math.erf, 1, 1)


def gelu(x):
    """Exact GELU, 0.5 x (1 + erf(x / sqrt 2)): Keras's default for activation='gelu'."""
    e = _erf(x.astype(np.float64) / _math.sqrt(2.0)).astype(np.float64)
    return (0.5 * x * (1.0 + e)).astype(x.dtype)


def hard_sigmoid(x):
    return np.clip(x / _F32(6) + _F32(0.5), _F32(0), _F32(1))


def hard_silu(x):
    return x * hard_sigmoid(x)


def mish(x):
    return x * np.tanh(softplus(x))


def exponential(x):
    return np.exp(x)


ACTIVATIONS = {
    "linear": linear, "relu": relu, "relu6": relu6, "leaky_relu": leaky_relu, "sigmoid": sigmoid,
    "tanh": tanh, "softmax": softmax, "log_softmax": log_softmax, "elu": elu, "selu": selu,
    "softplus": softplus, "softsign": softsign, "silu": silu, "gelu": gelu,
    "hard_sigmoid": hard_sigmoid, "hard_silu": hard_silu, "mish": mish, "exponential": exponential,
}


def check_indices(indices, input_dim, layer, source):
    """Raise EmbeddingIndexError unless every index is in [0, input_dim). Keras's JAX backend clamps
    silently, which hides the reversed-arguments mistake Embedding(64, vocabulary_size)."""
    bad = (indices < 0) | (indices >= input_dim)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise EmbeddingIndexError(
            f'Embedding layer "{layer}" got index {int(indices[where])} at position {where} of {source}, '
            f"outside [0, {input_dim}) (input_dim={input_dim}). Embedding's arguments are "
            f"(input_dim, output_dim): input_dim must exceed the largest index.")


def gather_rows(table, indices, layer, source):
    """table[indices], after checking the indices."""
    indices = np.asarray(indices)
    check_indices(indices, table.shape[0], layer, source)
    return table[indices]


def _pad_spatial(x, kernel, strides, dilation, padding, value):
    """Pad the spatial axes of channels-last x for "same" or "causal" windows."""
    if padding == "valid":
        return x
    pads = [(0, 0)]
    for n, k, s, d in zip(x.shape[1:-1], kernel, strides, dilation):
        eff = d * (k - 1) + 1
        if padding == "causal":
            pads.append((eff - 1, 0))
        else:
            total = max((-(-n // s) - 1) * s + eff - n, 0)
            pads.append((total // 2, total - total // 2))
    pads.append((0, 0))
    return np.pad(x, pads, constant_values=value)


def _windows(x, kernel, strides, dilation, layer):
    """Strided view (N, out..., C, k...) of every window of channels-last x (no copy)."""
    rank = len(kernel)
    eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    for n, e in zip(x.shape[1:-1], eff):
        if n < e:  # a free length (a sequence) can turn out shorter than the window
            raise InputDataError(f'layer "{layer}": input of spatial shape {x.shape[1:-1]} (after padding) is '
                                 f"smaller than its window {eff}; give longer inputs")
    view = np.lib.stride_tricks.sliding_window_view(x, eff, axis=tuple(range(1, rank + 1)))
    index = (slice(None),) + tuple(slice(None, None, s) for s in strides) + (slice(None),) \
        + tuple(slice(None, None, d) for d in dilation)
    return view[index]


def conv(x, kernel, strides, padding, dilation, layer):
    """Channels-last convolution, kernel (k..., C, F): im2col by strided view, then one GEMM."""
    rank = kernel.ndim - 2
    k = kernel.shape[:rank]
    patches = _windows(_pad_spatial(x, k, strides, dilation, padding, 0), k, strides, dilation, layer)
    # contract (C, k...) of the patches against (k..., C) of the kernel
    axes_p = list(range(rank + 2, 2 * rank + 2)) + [rank + 1]
    axes_k = list(range(rank)) + [rank]
    return np.tensordot(patches, kernel, axes=(axes_p, axes_k)).astype(np.float32, copy=False)


def max_pool(x, pool_size, strides, padding, layer):
    rank = len(pool_size)
    fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    ones = (1,) * rank
    w = _windows(_pad_spatial(x, pool_size, strides, ones, padding, fill), pool_size, strides, ones, layer)
    return w.max(axis=tuple(range(rank + 2, 2 * rank + 2)))


def avg_pool(x, pool_size, strides, padding, layer):
    """Average over each window, counting only in-bounds elements (Keras's "same" semantics)."""
    rank = len(pool_size)
    ones = (1,) * rank
    axes = tuple(range(rank + 2, 2 * rank + 2))
    sums = _windows(_pad_spatial(x, pool_size, strides, ones, padding, 0), pool_size, strides, ones, layer).sum(axis=axes)
    if padding == "valid":
        return (sums / _F32(np.prod(pool_size))).astype(x.dtype, copy=False)
    mask = np.ones((1,) + x.shape[1:-1] + (1,), x.dtype)
    counts = _windows(_pad_spatial(mask, pool_size, strides, ones, padding, 0), pool_size, strides, ones, layer).sum(axis=axes)
    return (sums / counts).astype(x.dtype, copy=False)


def lstm(x, kernel, recurrent_kernel, bias, activation, recurrent_activation, return_sequences, go_backwards):
    """Keras LSTM: gates i, f, c, o. Input projections for all steps in one matmul, then the loop.
    Returns (output, h, c); with go_backwards the output sequence is in processing order (reversed)."""
    act, rec_act = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    n, steps = x.shape[0], x.shape[1]
    u = recurrent_kernel.shape[0]
    if go_backwards:
        x = x[:, ::-1]
    zx = x @ kernel
    if bias is not None:
        zx += bias
    h = np.zeros((n, u), np.float32)
    c = np.zeros((n, u), np.float32)
    ys = np.empty((n, steps, u), np.float32) if return_sequences else None
    for t in range(steps):
        z = zx[:, t] + h @ recurrent_kernel
        i = rec_act(z[:, :u])
        f = rec_act(z[:, u:2 * u])
        g = act(z[:, 2 * u:3 * u])
        o = rec_act(z[:, 3 * u:])
        c = f * c + i * g
        h = o * act(c)
        if ys is not None:
            ys[:, t] = h
    return (ys if return_sequences else h), h, c
# ---- end of the gcomp NumPy runtime ------------------------------------------------------------
