# ---- gcomp NumPy runtime: kernels the generated code calls -------------------------------------
# This block is copied verbatim into every generated module, so the module needs only NumPy.
# Every kernel keeps its input's float dtype (float32 models stay float32; float64 in gives float64
# out, which the gradient checks rely on). Inexact constants are plain Python floats: NumPy casts
# such "weak" scalars to the array's dtype, so float32 results are bit-identical to np.float32(c).
import itertools
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
    return np.where(x >= 0, x, x * negative_slope)


def keras_relu(x, negative_slope, max_value, threshold):
    """Keras's relu(x, negative_slope, max_value, threshold), step by step as its ReLU.static_call
    computes it (leaky_relu when only the slope is set): the same float32 operations in its order."""
    if negative_slope and max_value is None and not threshold:
        return leaky_relu(x, negative_slope)
    dt = x.dtype.type
    if threshold:
        y = np.where(x > dt(threshold), x, dt(0))
    else:
        y = relu6(x) if max_value == 6 else relu(x)
    if max_value is not None and (threshold or max_value != 6):
        y = np.clip(y, dt(0), dt(max_value))
    if negative_slope:
        y = y - dt(negative_slope) * relu(dt(threshold) - x)
    return y


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
    return np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, _F32(0))))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(x):
    return (_SELU_SCALE * elu(x, _SELU_ALPHA)).astype(x.dtype, copy=False)


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
    return np.take(table, indices, axis=0)  # (the same rows as table[indices], about 15% faster)


def lookup_sum(tables, indices, strides, dilation, embedding, layer, source):
    """sum_k tables[k][indices[:, t*strides + k*dilation]]: an embedding and the Dense or valid Conv1D
    reading it, folded (one table per kernel tap)."""
    indices = np.asarray(indices)
    check_indices(indices, tables.shape[1], embedding, source)
    taps = tables.shape[0]
    if taps == 1 and strides == 1:
        return tables[0][indices]
    window = (taps - 1) * dilation + 1
    _check_windows_fit(indices.shape[1:2], (window,), layer)
    steps = (indices.shape[1] - window) // strides + 1
    y = tables[0][indices[:, :(steps - 1) * strides + 1:strides]]
    for k in range(1, taps):
        start = k * dilation
        y += tables[k][indices[:, start:start + (steps - 1) * strides + 1:strides]]
    return y


def _spatial_pads(spatial, kernel, strides, dilation, padding):
    """(before, after) padding of each spatial axis: none for "valid", all before for "causal", and
    for "same" total = max((ceil(n / s) - 1) s + k_eff - n, 0) with the smaller half before."""
    pads = []
    for n, k, s, d in zip(spatial, kernel, strides, dilation):
        eff = d * (k - 1) + 1
        if padding == "valid":
            pads.append((0, 0))
        elif padding == "causal":
            pads.append((eff - 1, 0))
        else:
            total = max((-(-n // s) - 1) * s + eff - n, 0)
            pads.append((total // 2, total - total // 2))
    return pads


def _pad_spatial(x, kernel, strides, dilation, padding, value):
    """Pad the spatial axes of channels-last x for "same" or "causal" windows."""
    if padding == "valid":
        return x
    pads = [(0, 0)] + _spatial_pads(x.shape[1:-1], kernel, strides, dilation, padding) + [(0, 0)]
    return np.pad(x, pads, constant_values=value)


def _check_windows_fit(spatial, window, layer):
    """A free length (a sequence) can turn out shorter than a layer's window: say so, naming it.
    (Only "valid" windows can: "same" and "causal" padding always leave room for one.)"""
    if any(n < w for n, w in zip(spatial, window)):
        raise InputDataError(f'layer "{layer}": input of spatial shape {tuple(spatial)} is smaller than its '
                             f"window {tuple(window)}; give longer inputs")


def _windows(x, kernel, strides, dilation, layer):
    """Strided view (N, out..., C, k...) of every window of channels-last x (no copy)."""
    rank = len(kernel)
    eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    _check_windows_fit(x.shape[1:-1], eff, layer)
    view = np.lib.stride_tricks.sliding_window_view(x, eff, axis=tuple(range(1, rank + 1)))
    index = (slice(None),) + tuple(slice(None, None, s) for s in strides) + (slice(None),) \
        + tuple(slice(None, None, d) for d in dilation)
    return view[index]


def im2col(x, window, strides, padding, dilation, layer):
    """The (M, k... C) patch matrix of channels-last x, M = N * prod(out), channels innermost (x's
    contiguous axis, so the copy reads memory in runs), and the output's spatial shape."""
    rank = len(window)
    view = _windows(_pad_spatial(x, window, strides, dilation, padding, 0), window, strides, dilation, layer)
    order = tuple(range(rank + 1)) + tuple(range(rank + 2, 2 * rank + 2)) + (rank + 1,)
    out = view.shape[1:rank + 1]
    patch = _math.prod(window) * x.shape[-1]  # (named: an empty batch leaves -1 undetermined)
    return np.ascontiguousarray(view.transpose(order)).reshape(x.shape[0] * _math.prod(out), patch), out


def _padded_shape(x_shape, window, strides, dilation, padding):
    pads = _spatial_pads(x_shape[1:-1], window, strides, dilation, padding)
    return (x_shape[0],) + tuple(n + lo + hi for n, (lo, hi) in zip(x_shape[1:-1], pads)) + (x_shape[-1],)


def _conv_by_rows(x_shape, window, strides, dilation, padding):
    """Whether conv and conv_vjp run at stride 1 on the padded input's rows (conv_rows) rather than
    on im2col patches. The rows way copies nothing but also computes the windows that straddle two
    samples (or grid rows) and drops them; im2col copies every window and computes only real ones.
    Measured on Conv1D/Conv2D layers of the seed's sizes: the two tie when a fifth of the rows are
    dropped, and im2col is 1.2-1.6x faster beyond (short sequences, small maps), so rows win below."""
    if any(s != 1 for s in strides):
        return False
    padded = _padded_shape(x_shape, window, strides, dilation, padding)[1:-1]
    return 5 * _math.prod(_valid_extents(padded, window, dilation)) > 4 * _math.prod(padded)


def _valid_extents(padded, window, dilation):
    """The stride-1 output's spatial shape over a padded spatial shape: windows wholly inside it."""
    return tuple(max(p - d * (k - 1), 0) for p, k, d in zip(padded, window, dilation))


def window_taps(padded_shape, window, dilation):
    """How a stride-1 window reads channels-last data flattened to rows (N * prod(spatial), C): the
    row shift of each outer offset (all but the innermost axis's), and `taps`, the innermost axis's
    offsets, which read `taps` consecutive rows as one run (with dilation 1 there; otherwise taps is
    1 and every offset is an outer shift). A window at row r reads rows r + shift .. + taps - 1."""
    spatial = padded_shape[1:-1]
    row_strides = [int(np.prod(spatial[i + 1:], dtype=np.int64)) for i in range(len(spatial))]
    taps = window[-1] if dilation[-1] == 1 else 1
    outer = [range(k) for k in window[:-1]] + [range(0, window[-1], taps)]
    shifts = [sum(o * d * rs for o, d, rs in zip(offset, dilation, row_strides))
              for offset in itertools.product(*outer)]
    return shifts, taps


def padded_rows(x, window, dilation, padding, layer):
    """A stride-1 window's view of channels-last x as rows: (xp, rows, shifts, taps, reach) with xp
    the padded x, rows its (N * prod(spatial), C) contiguous rows, shifts and taps as window_taps
    says, and reach the rows a window spans past its first. Checks x is not shorter than the window."""
    xp = _pad_spatial(x, window, (1,) * len(window), dilation, padding, 0)
    _check_windows_fit(xp.shape[1:-1], tuple(d * (k - 1) + 1 for k, d in zip(window, dilation)), layer)
    rows = np.ascontiguousarray(xp).reshape(-1, xp.shape[-1])
    shifts, taps = window_taps(xp.shape, window, dilation)
    return xp, rows, shifts, taps, shifts[-1] + taps - 1


def _tap_view(rows, start, count, taps):
    """`count` runs of `taps` consecutive rows of contiguous `rows`, from row `start`, each run one
    row of a (count, taps * C) matrix (no copy). Runs do not overlap, so the row stride is the
    row's width and BLAS takes the view as it is."""
    width = taps * rows.shape[1]
    return np.lib.stride_tricks.as_strided(rows[start:], shape=(count, width),
                                           strides=(width * rows.itemsize, rows.itemsize))


def _phase_count(count, phase, taps):
    """How many of rows 0 .. count - 1 are = phase (mod taps): the rows of phase `phase`'s GEMM."""
    return max(-(-(count - phase) // taps), 0)


def conv_rows(rows, kernels, shifts, taps, count, height):
    """Stride-1 correlation over rows (R, C) of a flattened grid: Y[r] = sum over outer shifts a of
    rows[r + shifts[a] : + taps] (flattened) @ kernels[a], for r < count; kernels (A, taps * C, F).
    Windows a whole run of taps apart do not overlap, so rows r = s (mod taps) take one GEMM on a
    view (phase s): BLAS sums over taps * C, with no im2col copy and no sum outside BLAS except over
    the outer shifts. The caller keeps count <= R - reach (padded_rows: windows inside rows).
    Returns (height, F), height >= count: Y, then rows left unset (the caller's cropped ones)."""
    f = kernels.shape[-1]
    blocks = max(-(-count // taps), 0)  # (count < 1 only for an empty batch)
    dtype = np.result_type(rows.dtype, kernels.dtype)
    y = np.empty((max(height, blocks * taps), f), dtype)
    part = np.empty((blocks * taps, f), dtype) if len(shifts) > 1 else y
    for a, shift in enumerate(shifts):
        dest = (part if a else y)[:blocks * taps].reshape(blocks, taps, f)
        for phase in range(taps):
            n = _phase_count(count, phase, taps)
            np.matmul(_tap_view(rows, shift + phase, n, taps), kernels[a], out=dest[:n, phase])
        if a:
            y[:count] += part[:count]
    return y[:height]


def conv(x, kernel, strides, padding, dilation, layer, bias=None):
    """Channels-last convolution, kernel (k..., C, F), plus bias (F,) when given. Where
    _conv_by_rows says so (stride 1, few windows straddling samples): conv_rows over the padded
    input (no im2col copy), then the rows whose window left its sample are dropped, in the same
    pass that adds the bias; otherwise im2col, then one GEMM."""
    rank = kernel.ndim - 2
    window, f = kernel.shape[:rank], kernel.shape[-1]
    if not _conv_by_rows(x.shape, window, strides, dilation, padding):
        patches, out = im2col(x, window, strides, padding, dilation, layer)
        y = (patches @ kernel.reshape(-1, f)).reshape((x.shape[0],) + out + (f,))
        if bias is not None:
            y += bias
        return y
    xp, rows, shifts, taps, reach = padded_rows(x, window, dilation, padding, layer)
    count = rows.shape[0] - reach
    full = conv_rows(rows, kernel.reshape(len(shifts), -1, f), shifts, taps, count, rows.shape[0])
    out = _valid_extents(xp.shape[1:-1], window, dilation)
    full = full.reshape(xp.shape[:-1] + (f,))  # rows from count on belong to cropped positions
    kept = full[(slice(None),) + tuple(slice(0, o) for o in out)]
    return np.ascontiguousarray(kept) if bias is None else np.add(kept, bias)


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


_OVER_UNITS = {"softmax", "log_softmax"}  # gate activations that are not elementwise


def _gate_activation(name):
    """An in-place activation for the LSTM loop: f(src, out) writes name(src) into out, for blocks
    of (units, N) rows (softmax-like activations run over the units, on transposed views)."""
    if name == "sigmoid":  # 1 / (1 + exp(-x)), written as 0.5 tanh(x / 2) + 0.5: three in-place passes
        def apply(src, out):
            np.multiply(src, 0.5, out=out)
            np.tanh(out, out=out)
            out *= 0.5
            out += 0.5
    elif name == "tanh":
        def apply(src, out):
            np.tanh(src, out=out)
    else:
        fn = ACTIVATIONS[name]
        over_units = name in _OVER_UNITS

        def apply(src, out):
            if over_units:
                out.T[...] = fn(src.T)
            else:
                out[...] = fn(src)
    return apply


def _lstm_gate_order(u):
    """Keras's kernel columns (gates i, f, c, o; c is the candidate, written c~ here) in the loop's row
    order o, i, f, c~: the sigmoid gates o, i, f form one block, and [i, f] lies beside [c~, c_prev]
    so that i c~ and f c_prev are one product (see _lstm_core)."""
    return np.concatenate([np.arange(3 * u, 4 * u), np.arange(3 * u)])


def _lstm_core(x, kernel, recurrent_kernel, bias, activation, recurrent_activation, go_backwards, save):
    """The LSTM recurrence, feature-major: each step's gates are a (4u, N) array whose rows are the
    gates o, i, f, c~ (_lstm_gate_order), so every per-step NumPy call reads and writes contiguous
    blocks (a gate is u whole rows). Row-major (N, 4u) steps would slice gates out of every row,
    and NumPy runs such strided operands row by row: a multiply on a 128 x 128 float32 block took
    11 us strided against 3 us contiguous.

    The input projection of all steps is one GEMM, the bias riding along as a column of ones, so the
    backward gets the kernel's and the bias's gradients from one GEMM as well. Returns (hs, c_last,
    cache): hs (u, T + 1, N) holds h_0 = 0 then every step's h (transposed); the cache (with `save`)
    keeps what lstm_vjp reads:
      xs  [x_t, 1] for every processed step (reversed if go_backwards), (T N, d + 1), rows (t, n)
      s   per step rows o, i, f, c~ (gate values) then c_prev, the cell state the step starts from,
          (T + 1, 5u, N); s[T] holds only c_T
      ac  act(c_t) for t = 1..T, (T, u, N)
      z   gate pre-activations, (T, 4u, N), only for gates other than the default tanh/sigmoid."""
    n, steps, d = x.shape
    u = recurrent_kernel.shape[0]
    dt = np.result_type(x, kernel)
    order = _lstm_gate_order(u)
    # The default gates (sigmoid o, i, f; tanh cell): sigmoid(z) = 0.5 tanh(z / 2) + 0.5, and z / 2
    # comes bit for bit from weights whose sigmoid rows are halved (scaling by a power of two is
    # exact, subnormals aside), so one tanh over all four gates and a multiply-add on the sigmoid
    # block give every gate: the bits of the gate-by-gate path, in three calls instead of five.
    halves = activation == "tanh" and recurrent_activation == "sigmoid"
    scale = np.ones(4 * u, dt)
    if halves:
        scale[:3 * u] = 0.5
    act, rec_act = _gate_activation(activation), _gate_activation(recurrent_activation)
    rec_blocks = [(0, 3 * u)]  # gates o, i, f in one call, or one each where the activation spans units
    if recurrent_activation in _OVER_UNITS:
        rec_blocks = [(k * u, (k + 1) * u) for k in range(3)]
    xs = np.empty((steps, n, d + 1), dt)
    xs[..., :d] = (x[:, ::-1] if go_backwards else x).transpose(1, 0, 2)
    xs[..., d] = 1
    xs = xs.reshape(steps * n, d + 1)
    w = np.zeros((4 * u, d + 1), dt)
    w[:, :d] = kernel[:, order].T
    if bias is not None:
        w[:, d] = bias[order]
    w *= scale[:, None]
    zx = (w @ xs.T).reshape(4 * u, steps, n)  # zx[:, t]: step t's input projection and bias
    r = np.ascontiguousarray((recurrent_kernel[:, order] * scale).T)  # (4u, u)
    s = np.empty((steps + 1 if save else 2, 5 * u, n), dt)
    s[0, 4 * u:] = 0
    hs = np.empty((u, steps + 1, n), dt)
    hs[:, 0] = 0
    acs = np.empty((steps if save else 1, u, n), dt)
    zs = np.empty((steps, 4 * u, n), dt) if save and not halves else None
    z = np.empty((4 * u, n), dt)
    products = np.empty((2 * u, n), dt)
    for t in range(steps):
        st, nxt = (s[t], s[t + 1]) if save else (s[t % 2], s[(t + 1) % 2])
        np.matmul(r, hs[:, t], out=z)
        z += zx[:, t]
        gates = st[:4 * u]
        if halves:
            np.tanh(z, out=gates)
            sigmoids = st[:3 * u]
            sigmoids *= 0.5
            sigmoids += 0.5
        else:
            if zs is not None:
                zs[t] = z
            for lo, hi in rec_blocks:
                rec_act(z[lo:hi], gates[lo:hi])
            act(z[3 * u:], gates[3 * u:])
        np.multiply(st[u:3 * u], st[3 * u:], out=products)  # [i c~, f c_prev]
        c = nxt[4 * u:]
        np.add(products[:u], products[u:], out=c)
        a = acs[t if save else 0]
        act(c, a)
        np.multiply(st[:u], a, out=hs[:, t + 1])
    c_last = np.ascontiguousarray((s[steps] if save else s[steps % 2])[4 * u:].T)
    cache = {"xs": xs, "s": s, "ac": acs, "z": zs} if save else None
    return hs, c_last, cache


def _lstm_outputs(hs, return_sequences):
    """(output, h) in Keras's layouts from _lstm_core's transposed hidden states."""
    h = np.ascontiguousarray(hs[:, -1].T)
    return (np.ascontiguousarray(hs[:, 1:].transpose(2, 1, 0)) if return_sequences else h), h


def lstm(x, kernel, recurrent_kernel, bias, activation, recurrent_activation, return_sequences, go_backwards):
    """Keras LSTM: gates i, f, c, o. Input projections for all steps in one matmul, then the loop.
    Returns (output, h, c); with go_backwards the output sequence is in processing order (reversed)."""
    hs, c, _ = _lstm_core(x, kernel, recurrent_kernel, bias, activation, recurrent_activation, go_backwards, False)
    return (*_lstm_outputs(hs, return_sequences), c)


_U64 = (1 << 64) - 1


class DropoutStream:
    """Dropout's random stream, shared with the C backend (gk_dropout): a 64-bit key and a counter
    of the values drawn so far. Value i of a draw gets u = (splitmix64(key + counter + i) >> 40) *
    2^-24, a float32-exact uniform in [0, 1); each draw advances the counter by its size."""

    def __init__(self, seed=None):
        # no seed: a fresh key from the OS's entropy, as Keras draws fresh masks each run. A seed is
        # hashed into the key, so that seeds s and s + d do not give the same stream shifted by d.
        seed = int(np.random.SeedSequence().entropy) if seed is None else int(seed)
        self.key = int(_splitmix64(seed & _U64, 0, 1)[0])
        self.counter = 0


def _splitmix64(key, counter, n):
    """splitmix64(key + counter + i) for i < n, as uint64 (the stream's draws are their top 24 bits)."""
    z = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps mod 2^64 by design
        z += np.uint64((key + counter + 0x9E3779B97F4A7C15) & _U64)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def dropout_train(x, rate, rng):
    """Training-mode Dropout: (y, mask) with mask = keep * (1 / (1 - rate)) in x's dtype (all zeros
    when rate >= 1) and y = x * mask. keep = u >= rate (exactly, for the double rate) with u drawn
    from rng, a DropoutStream: element i of x (in C order) takes the stream's value i; the counter
    advances by x.size (also when rate >= 1). The C backend's gk_dropout draws the same masks."""
    n = x.size
    if rate >= 1:
        mask = np.zeros(x.shape, x.dtype)
    else:
        # u = k 2^-24 >= rate  <=>  k >= ceil(rate 2^24) (rate 2^24 is exact in double)
        threshold = _math.ceil(rate * 16777216.0) if rate > 0 else 0
        keep = (_splitmix64(rng.key, rng.counter, n) >> np.uint64(40)) >= np.uint64(threshold)
        mask = keep.astype(x.dtype).reshape(x.shape)
        mask *= 1.0 / (1.0 - rate)
    rng.counter = (rng.counter + n) & _U64
    return x * mask, mask


def _input_dropout_mask(x, dropout, rng):
    """A recurrent layer's input dropout (0 < dropout < 1, Keras applies it only there): one mask
    (N, features) drawn from rng, a DropoutStream, serving every step, as Keras's RNN cells cache
    their mask for the sequence; None without dropout."""
    if not 0.0 < dropout < 1.0:
        return None
    return dropout_train(np.ones((x.shape[0], x.shape[2]), x.dtype), dropout, rng)[1]


def lstm_train(x, kernel, recurrent_kernel, bias, activation, recurrent_activation, return_sequences,
               go_backwards, dropout=0.0, rng=None):
    """`lstm` for training: the same arithmetic (the same output, h and c) and a cache for lstm_vjp.
    Returns (output, h, c, cache); the cache holds _lstm_core's (xs, s, ac, z), the hidden states
    h (u, T + 1, N), and the layer's activation names and flags. With 0 < dropout < 1 (Keras applies
    it only there) the input is multiplied by one dropout mask (N, features) drawn from rng, a
    DropoutStream, and the same mask serves every step, as Keras's LSTM cell caches its mask for
    the sequence; the cache keeps it for the input gradient."""
    mask = _input_dropout_mask(x, dropout, rng)
    if mask is not None:
        x = x * mask[:, None, :]
    hs, c, cache = _lstm_core(x, kernel, recurrent_kernel, bias, activation, recurrent_activation, go_backwards, True)
    cache.update(h=hs, activation=activation, recurrent_activation=recurrent_activation,
                 return_sequences=return_sequences, go_backwards=go_backwards, input_mask=mask)
    return (*_lstm_outputs(hs, return_sequences), c, cache)


def _gru_biases(bias, reset_after):
    """(input bias, recurrent bias) of a GRU: rows 0 and 1 of a (2, 3u) bias with reset_after, else
    the (3u,) bias and None."""
    if bias is None:
        return None, None
    return (bias[0], bias[1]) if reset_after else (bias, None)


def _gru_core(x, kernel, recurrent_kernel, bias, activation, recurrent_activation, go_backwards, reset_after, save):
    """The GRU recurrence, step-major: the input projection of all steps is one GEMM, then per step
    m = h U (+ b_rec), z = ra(xz + mz), r = ra(xr + mr), hh = a(xh + r mh) (reset_after) or
    a(xh + (r h) U_h), h = z h + (1 - z) hh, in Keras's order of operations. Returns (hs, cache):
    hs (T + 1, N, u) holds h_0 = 0 then every step's h (processing order); the cache (with `save`)
    keeps the gates' pre-activations and values and m_h (reset_after) or r h for gru_vjp."""
    n, steps, d = x.shape
    u = recurrent_kernel.shape[0]
    dt = np.result_type(x, kernel)
    act, rec_act = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    b_in, b_rec = _gru_biases(bias, reset_after)
    xs = np.ascontiguousarray((x[:, ::-1] if go_backwards else x).transpose(1, 0, 2))  # (T, N, d)
    zx = (xs.reshape(steps * n, d) @ kernel).reshape(steps, n, 3 * u)
    if b_in is not None:
        zx += b_in
    rk_zr, rk_h = recurrent_kernel[:, :2 * u], recurrent_kernel[:, 2 * u:]
    hs = np.zeros((steps + 1, n, u), dt)
    keep = {k: np.empty((steps, n, u), dt) for k in ("pre_z", "z", "pre_r", "r", "pre_h", "hh", "inner")} if save else None
    for t in range(steps):
        h = hs[t]
        if reset_after:
            m = h @ recurrent_kernel
            if b_rec is not None:
                m += b_rec
        else:
            m = h @ rk_zr
        pre_z = zx[t, :, :u] + m[:, :u]
        pre_r = zx[t, :, u:2 * u] + m[:, u:2 * u]
        z, r = rec_act(pre_z), rec_act(pre_r)
        inner = m[:, 2 * u:] if reset_after else r * h  # what the reset gate multiplies, or r h
        pre_h = zx[t, :, 2 * u:] + (r * inner if reset_after else inner @ rk_h)
        hh = act(pre_h)
        hs[t + 1] = z * h + (1 - z) * hh
        if save:
            for k, v in (("pre_z", pre_z), ("z", z), ("pre_r", pre_r), ("r", r), ("pre_h", pre_h), ("hh", hh),
                         ("inner", inner)):
                keep[k][t] = v
    cache = None
    if save:
        cache = {"xs": xs, "h": hs, **keep}
    return hs, cache


def _gru_outputs(hs, return_sequences):
    """(output, h) in Keras's layouts from _gru_core's step-major hidden states."""
    h = np.ascontiguousarray(hs[-1])
    return (np.ascontiguousarray(hs[1:].transpose(1, 0, 2)) if return_sequences else h), h


def gru(x, kernel, recurrent_kernel, bias, activation, recurrent_activation, return_sequences, go_backwards,
        reset_after):
    """Keras GRU: gates z, r, h. Returns (output, h); with go_backwards the output sequence is in
    processing order (reversed), as Keras returns it."""
    hs, _ = _gru_core(x, kernel, recurrent_kernel, bias, activation, recurrent_activation, go_backwards, reset_after,
                      False)
    return _gru_outputs(hs, return_sequences)


def gru_train(x, kernel, recurrent_kernel, bias, activation, recurrent_activation, return_sequences, go_backwards,
              reset_after, dropout=0.0, rng=None):
    """`gru` for training: the same output and h, and a cache for gru_vjp. With 0 < dropout < 1 the
    input is multiplied by one dropout mask (_input_dropout_mask), kept for the input gradient."""
    mask = _input_dropout_mask(x, dropout, rng)
    if mask is not None:
        x = x * mask[:, None, :]
    hs, cache = _gru_core(x, kernel, recurrent_kernel, bias, activation, recurrent_activation, go_backwards,
                          reset_after, True)
    cache.update(activation=activation, recurrent_activation=recurrent_activation, reset_after=reset_after,
                 return_sequences=return_sequences, go_backwards=go_backwards, input_mask=mask)
    return (*_gru_outputs(hs, return_sequences), cache)


# ---- end of the gcomp NumPy runtime ------------------------------------------------------------
