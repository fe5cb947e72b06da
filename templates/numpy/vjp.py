# ---- gcomp NumPy runtime, backward pass: vector-Jacobian products of the forward kernels ----------
# Concatenated after prelude.py (it calls _windows, _spatial_pads, _pad_spatial, ACTIVATIONS, sigmoid,
# softplus, _erf, ...), so a generated training module needs only NumPy. Every function takes gy, the
# gradient of the loss with respect to the op's output, and returns gradients with respect to the
# op's inputs (and weights) in the dtype of its float inputs: float32 stays float32, float64 stays
# float64. Loops run over window or kernel offsets, over time steps, or over an op's inputs, never
# over samples or positions. Some results alias their arguments (noted in the docstrings): treat
# every gradient as read-only, or copy it before updating it in place.


# ---- activations --------------------------------------------------------------------------------
# Each takes (x, y, gy): the pre-activation input, the activation's output and the output gradient.
# Derivatives at kinks follow TF/JAX: 0 for relu at 0, 0 for relu6 at 0 and 6, 0 for hard_sigmoid at
# +-3; the branch the forward takes for leaky_relu, elu and selu (x >= 0: the linear side).

# relu and relu6 multiply by their 0/1 mask: np.where branches on every element, several times
# slower on a random mask. The products differ from a select only in the sign of a zero (and where gy
# is inf or NaN, already a lost step).
def _relu_vjp(x, y, gy):
    return gy * (x > 0)


def _relu6_vjp(x, y, gy):
    return gy * ((x > 0) & (x < 6))


def _leaky_relu_vjp(x, y, gy, negative_slope=0.2):
    return np.where(x >= 0, gy, gy * negative_slope)


def _sigmoid_vjp(x, y, gy):
    g = 1 - y  # gy y (1 - y), one temporary
    g *= y
    g *= gy
    return g


def _tanh_vjp(x, y, gy):
    g = y * y  # gy (1 - y^2), one temporary
    np.subtract(1, g, out=g)
    g *= gy
    return g


def _softmax_vjp(x, y, gy):
    gx = gy * y
    gx -= y * gx.sum(axis=-1, keepdims=True)  # y (gy - sum(gy y))
    return gx


def _log_softmax_vjp(x, y, gy):
    return gy - np.exp(y) * gy.sum(axis=-1, keepdims=True)


def _elu_vjp(x, y, gy):
    return np.where(x >= 0, gy, gy * (y + 1))  # x < 0: d/dx (e^x - 1) = e^x = y + 1


def _selu_vjp(x, y, gy):
    # x < 0: d/dx scale alpha (e^x - 1) = scale alpha e^x = y + scale alpha
    return np.where(x >= 0, gy * _SELU_SCALE, gy * (y + _SELU_SCALE * _SELU_ALPHA))


def _softplus_vjp(x, y, gy):
    return gy * sigmoid(x)


def _softsign_vjp(x, y, gy):
    d = 1 + np.abs(x)
    d *= d
    return gy / d


def _silu_vjp(x, y, gy):
    s = sigmoid(x)  # d/dx x s = s + x s (1 - s) = y + s (1 - y)
    return gy * (y + s * (1 - y))


def _gelu_vjp(x, y, gy):
    # d/dx x Phi(x) = Phi(x) + x phi(x); erf in float64 as the forward does
    x64 = x.astype(np.float64)
    cdf = 0.5 * (1.0 + _erf(x64 / _math.sqrt(2.0)).astype(np.float64))
    pdf = np.exp(-0.5 * x64 * x64) / _math.sqrt(2.0 * _math.pi)
    return (gy * (cdf + x64 * pdf)).astype(gy.dtype, copy=False)


def _hard_sigmoid_vjp(x, y, gy):
    return np.where((x > -3) & (x < 3), gy / 6, gy.dtype.type(0))


def _hard_silu_vjp(x, y, gy):
    # d/dx x hs(x) = hs(x) + x hs'(x), hs' = 1/6 on (-3, 3)
    d = hard_sigmoid(x)
    d += np.where((x > -3) & (x < 3), x / 6, x.dtype.type(0))
    d *= gy
    return d


def _mish_vjp(x, y, gy):
    # d/dx x tanh(softplus x) = t + x (1 - t^2) sigmoid(x)
    t = np.tanh(softplus(x))
    return gy * (t + x * (1 - t * t) * sigmoid(x))


ACTIVATION_VJPS = {
    "linear": lambda x, y, gy: gy, "relu": _relu_vjp, "relu6": _relu6_vjp, "leaky_relu": _leaky_relu_vjp,
    "sigmoid": _sigmoid_vjp, "tanh": _tanh_vjp, "softmax": _softmax_vjp, "log_softmax": _log_softmax_vjp,
    "elu": _elu_vjp, "selu": _selu_vjp, "softplus": _softplus_vjp, "softsign": _softsign_vjp,
    "silu": _silu_vjp, "gelu": _gelu_vjp, "hard_sigmoid": _hard_sigmoid_vjp, "hard_silu": _hard_silu_vjp,
    "mish": _mish_vjp, "exponential": lambda x, y, gy: gy * y,
}


def keras_relu_vjp(x, gy, negative_slope, max_value, threshold):
    """Gradient of keras_relu at x: 1 between the threshold and max_value (both ends excluded, as
    relu at 0 and relu6 at 6), negative_slope below the threshold; leaky_relu's is 1 at 0 (the
    branch its forward takes there)."""
    if negative_slope and max_value is None and not threshold:
        return _leaky_relu_vjp(x, None, gy, negative_slope)
    passes = x > threshold
    if max_value is not None:
        passes &= x < max_value
    g = gy * passes
    if negative_slope:
        g += gy * (x < threshold) * gy.dtype.type(negative_slope)
    return g


def activation_vjp(name, x, y, gy):
    """Gradient of ACTIVATIONS[name] at x (y = its output); softmax and log_softmax act on the last axis.
    "linear" returns gy itself."""
    return ACTIVATION_VJPS[name](x, y, gy)


# ---- dense, embedding -----------------------------------------------------------------------------

def bias_grad(g2):
    """The column sums of 2-D g (rows: every position of a batch): a bias's gradient. One GEMV with
    a row of ones: BLAS sums the seed's conv gradients about 3x faster than np.sum over axis 0."""
    return np.ones(g2.shape[0], g2.dtype) @ g2


def dense_vjp(x, kernel, gy, need_x, use_bias):
    """y = x @ kernel (+ bias), x of shape (..., in), kernel (in, units): returns
    (gx = gy @ kernel^T or None, gkernel = x^T gy and gbias = sum gy over every leading axis, or None)."""
    d_in, units = kernel.shape
    gy2 = gy.reshape(-1, units)  # every leading axis folded into one: plain 2-D GEMMs
    gkernel = x.reshape(-1, d_in).T @ gy2
    gbias = bias_grad(gy2) if use_bias else None
    gx = (gy2 @ kernel.T).reshape(gy.shape[:-1] + (d_in,)) if need_x else None
    return gx, gkernel, gbias


class BufferGradient:
    """A weight's gradient computed in place in the program's flat gradient buffer, which lives
    from step to step: `array` is the buffer's view (the weight's shape), and `rows` the rows (along
    axis 0) that may be nonzero, None when any may be. A kernel that writes a few rows of a large
    table then clears only the rows it wrote last step and does not write again."""

    __slots__ = ("array", "rows")

    def __init__(self, array):
        self.array, self.rows = array, None


def weight_penalty_grad(w, l1, l2, scale):
    """d(scale * (l1 sum|w| + l2 sum w^2))/dw = (scale l1) sign(w) + (scale l2) 2w, the factors
    multiplied in float32 as the backward of Keras's penalty meets them."""
    g = np.zeros_like(w)
    if l1:
        g += (np.float32(scale) * np.float32(l1)) * np.sign(w)
    if l2:
        g += (np.float32(scale) * np.float32(l2)) * (w * np.float32(2))
    return g


def activity_penalty_grad(y, l1, l2, scale):
    """d(scale * activity_penalty)/dy = weight_penalty_grad / batch size."""
    g = weight_penalty_grad(y, l1, l2, scale)
    if y.shape[0]:
        g /= y.dtype.type(y.shape[0])
    return g


def gradient_buffer(ctx, slot):
    """Where the step's context keeps weight gradient number `slot` for apply_gradients, as a
    BufferGradient, to compute a large gradient there in place; None for a context without one."""
    get = getattr(ctx, "gradient_buffer", None)
    return None if get is None else get(slot)


def embedding_vjp(indices, input_dim, gy, out=None):
    """y = table[indices], table (input_dim, D): the dense table gradient, gy's rows summed per index
    (repeats accumulate), written into `out` (a BufferGradient of the same shape and dtype) when
    given. Each row's first occurrence is assigned in one fancy-indexed copy, then round k adds
    every index's k-th occurrence (indices unique within a round, so a plain fancy `+=` is exact):
    each row's sum runs in the order gy's rows lie in memory (batch-major, or time-major for an
    LSTM's input gradient), the same bits as one np.add.at over the rows in that order, at a
    fraction of its cost (rounds: the largest repeat count, a few for random ids)."""
    d = gy.shape[-1]
    indices = np.asarray(indices)
    if gy.ndim == 3 and not gy.flags.c_contiguous and gy.transpose(1, 0, 2).flags.c_contiguous:
        # a time-major gradient seen as (N, T, d) (an LSTM's input gradient): its rows in memory
        # order, with the indices to match, instead of copying it into batch-major order
        gy, indices = gy.transpose(1, 0, 2), indices.T
    flat = indices.reshape(-1)
    rows = gy.reshape(-1, d)
    # stable: repeats stay in their original order. Indices are in [0, input_dim) (the forward
    # checked them), so a vocabulary of up to 2^16 sorts as uint16, where NumPy's stable sort is a
    # radix sort: the same order, about 13x faster than on int32 (measured at the seed's sizes).
    keys = flat.astype(np.uint16) if input_dim <= 1 << 16 else flat
    order = np.argsort(keys, kind="stable")
    ids = flat[order]
    first = np.empty(len(ids), bool)
    first[:1] = True
    np.not_equal(ids[1:], ids[:-1], out=first[1:])
    used = ids[first]  # sorted, unique
    in_place = out is not None and out.array.shape == (input_dim, d) and out.array.dtype == gy.dtype
    if not in_place:
        gtable = np.zeros((input_dim, d), gy.dtype)
    else:
        gtable = out.array
        if out.rows is None:
            gtable.fill(0)
        else:  # rows used last step but not now: the others are zero already or assigned below
            gtable[out.rows[~np.isin(out.rows, used, assume_unique=True)]] = 0
        out.rows = None  # (until every used row is written)
    if len(flat):
        starts = np.flatnonzero(first)
        occurrence = np.arange(len(ids)) - np.repeat(starts, np.diff(np.append(starts, len(ids))))
        gtable[used] = rows[order[first]]
        for k in range(1, int(occurrence.max()) + 1):
            hit = np.flatnonzero(occurrence == k)
            gtable[ids[hit]] += rows[order[hit]]
    if in_place:
        out.rows = used
    return gtable


# ---- convolution and pooling --------------------------------------------------------------------
# The forward kernels pad x (np.pad), take a strided window view and reduce each window. Backward
# scatters into a zero buffer of the padded shape, one strided slice per kernel offset (each slice
# holds every output position once, so `+=` on it is exact), then crops the padding off.

def _offset_slices(window, strides, dilation, out_shape):
    """For each window offset (row-major over the window), the slice of the padded input that the
    offset reads for every output position: yields (offset index, slice tuple over (N, spatial..., C))."""
    for q, offset in enumerate(np.ndindex(*window)):
        yield q, (slice(None),) + tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s)
            for o, d, s, n in zip(offset, dilation, strides, out_shape)) + (slice(None),)


def _zero_past(grid, extents):
    """Zero channels-last grid's positions at or past extents[i] on spatial axis i: the part of a
    gradient buffer that nothing assigns (cheaper than zeroing a whole buffer that gets assigned)."""
    for axis, n in enumerate(extents):
        grid[(slice(None),) * (axis + 1) + (slice(n, None),)] = 0


def _crop_padding(gp, x_shape, window, strides, dilation, padding):
    """The gradient of the unpadded x from the gradient gp of the padded x."""
    if padding == "valid":
        return gp
    pads = _spatial_pads(x_shape[1:-1], window, strides, dilation, padding)
    index = (slice(None),) + tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, x_shape[1:-1])) + (slice(None),)
    return np.ascontiguousarray(gp[index])


def conv_vjp(x, kernel, gy, strides, padding, dilation, need_x, use_bias):
    """Gradients of the channels-last N-d `conv` (kernel (k..., C, F), gy (N, out..., F)): returns
    (gx or None, gkernel, gbias or None), the way `conv` went (_conv_by_rows). On rows, on the
    forward's phase views (conv_rows), with G the output gradient on the padded grid (zero where no
    window sits): gW_a = sum over phases of X_phase^T G_phase, and gx a stride-1 correlation of G
    with the flipped kernel. On im2col: gkernel = patches^T @ gy, and gy @ kernel^T scattered back
    over the windows, one strided add per kernel offset."""
    rank = kernel.ndim - 2
    window = kernel.shape[:rank]
    c, f = kernel.shape[-2], kernel.shape[-1]
    gbias = bias_grad(gy.reshape(-1, f)) if use_bias else None
    if _conv_by_rows(x.shape, window, strides, dilation, padding):
        xp, rows, shifts, taps, reach = padded_rows(x, window, dilation, padding, "conv")
        count = rows.shape[0] - reach
        # G on the padded grid, zero where no window sits, after `reach` zero rows that gx's flipped
        # windows read before the first row
        padded = np.empty((reach + rows.shape[0], f), gy.dtype)
        padded[:reach] = 0
        g = padded[reach:]
        grid = g.reshape(xp.shape[:-1] + (f,))
        grid[(slice(None),) + tuple(slice(0, o) for o in gy.shape[1:-1])] = gy
        _zero_past(grid, gy.shape[1:-1])
        gkernel = np.zeros((len(shifts), taps * c, f), gy.dtype)
        for a, shift in enumerate(shifts):
            for phase in range(taps):  # the forward's GEMMs, transposed: gW += X_phase^T G_phase
                n = _phase_count(count, phase, taps)
                gkernel[a] += _tap_view(rows, shift + phase, n, taps).T @ g[phase:phase + taps * n:taps]
        gx = None
        if need_x:  # gx[t] = sum over offsets e of G[t - shift_e] W_e^T: conv_rows with the kernel flipped
            flipped = kernel.reshape(len(shifts), taps, c, f)[::-1, ::-1].transpose(0, 1, 3, 2)
            gp = conv_rows(padded, flipped.reshape(len(shifts), taps * f, c), shifts, taps, rows.shape[0],
                           rows.shape[0])
            gx = _crop_padding(gp.reshape(xp.shape), x.shape, window, strides, dilation, padding)
        return gx, gkernel.reshape(kernel.shape), gbias
    gy2 = gy.reshape(-1, f)
    patches, _ = im2col(x, window, strides, padding, dilation, "conv")
    gkernel = (patches.T @ gy2).reshape(kernel.shape)
    del patches
    if not need_x:
        return None, gkernel, gbias
    cols = (gy2 @ kernel.reshape(-1, f).T).reshape(gy.shape[:-1] + (_math.prod(window), c))  # (N, out..., K, C)
    gp = np.zeros(_padded_shape(x.shape, window, strides, dilation, padding), gy.dtype)
    for q, index in _offset_slices(window, strides, dilation, gy.shape[1:-1]):
        gp[index] += cols[..., q, :]
    return _crop_padding(gp, x.shape, window, strides, dilation, padding), gkernel, gbias


def max_pool_vjp(x, y, gy, pool_size, strides, padding):
    """Gradient of max_pool (y its output): each window's gradient goes to the position of its max,
    the first in window (row-major) order on ties, as TF's MaxPoolGrad does."""
    ones = (1,) * len(pool_size)
    fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xp = _pad_spatial(x, pool_size, strides, ones, padding, fill)
    offsets = [index for _, index in _offset_slices(pool_size, strides, ones, gy.shape[1:-1])]
    # windows that do not overlap write their slices once: assigned, not added; windows that also
    # leave no gap assign everything up to out * pool on each axis, and only the rest is zeroed
    disjoint = all(s >= k for s, k in zip(strides, pool_size))
    if all(s == k for s, k in zip(strides, pool_size)):
        gp = np.empty(xp.shape, gy.dtype)
        _zero_past(gp, [o * k for o, k in zip(gy.shape[1:-1], pool_size)])
    else:
        gp = np.zeros(xp.shape, gy.dtype)
    hit = np.empty(y.shape, bool)
    free = None  # windows whose max no earlier offset has claimed
    for i, index in enumerate(offsets):
        np.equal(xp[index], y, out=hit)
        if free is None:
            free = ~hit
        else:
            hit &= free
            if i + 1 < len(offsets):
                free ^= hit  # hit is a subset of free: clears the claimed windows
        if disjoint:
            np.multiply(gy, hit, out=gp[index])  # (faster than np.where or a masked np.add)
        else:
            gp[index] += gy * hit
    return _crop_padding(gp, x.shape, pool_size, strides, ones, padding)


def avg_pool_vjp(x_shape, dtype, gy, pool_size, strides, padding):
    """Gradient of avg_pool: each window's gradient divided by its count of in-bounds elements (the
    full pool size for "valid"), spread evenly over the window."""
    ones = (1,) * len(pool_size)
    if padding == "valid":
        g = gy / _math.prod(pool_size)  # a Python int keeps gy's dtype
    else:
        mask = np.ones((1,) + tuple(x_shape[1:-1]) + (1,), dtype)
        w = _windows(_pad_spatial(mask, pool_size, strides, ones, padding, 0), pool_size, strides, ones, "avg_pool")
        g = gy / w.sum(axis=tuple(range(len(pool_size) + 2, 2 * len(pool_size) + 2)))
    g = g.astype(dtype, copy=False)
    gp = np.zeros(_padded_shape(x_shape, pool_size, strides, ones, padding), dtype)
    for _, index in _offset_slices(pool_size, strides, ones, gy.shape[1:-1]):
        gp[index] += g
    return _crop_padding(gp, tuple(x_shape), pool_size, strides, ones, padding)


def global_max_pool_vjp(x, y, gy, rank, keepdims):
    """Gradient of x.max over the `rank` spatial axes: gy split equally among the positions equal to
    the max (TF's reduce_max gradient)."""
    axes = tuple(range(1, rank + 1))
    if not keepdims:
        y, gy = np.expand_dims(y, axes), np.expand_dims(gy, axes)
    hit = x == y
    count = hit.sum(axis=axes, keepdims=True).astype(gy.dtype)
    return np.where(hit, gy / count, gy.dtype.type(0))


def global_avg_pool_vjp(x_shape, gy, rank, keepdims):
    """Gradient of x.mean over the `rank` spatial axes: gy / count broadcast over them."""
    axes = tuple(range(1, rank + 1))
    g = gy / _math.prod(x_shape[1:rank + 1])
    if not keepdims:
        g = np.expand_dims(g, axes)
    gx = np.empty(x_shape, gy.dtype)
    gx[...] = g
    return gx


# ---- merges, reshapes, dropout ------------------------------------------------------------------

def concat_vjp(gy, sizes, axis):
    """Gradients of np.concatenate(xs, axis) with xs[i].shape[axis] == sizes[i]: views of gy."""
    return np.split(gy, np.cumsum(sizes)[:-1], axis=axis)


def unbroadcast(g, shape):
    """g (of a broadcast result) summed down to `shape` under NumPy's broadcasting rules: over the
    extra leading axes and over the axes where shape has 1. Returns g itself when shapes agree."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes).reshape(shape)


def elementwise_vjp(op, xs, y, gy):
    """Gradients of y = op(xs) for op in add, subtract (two inputs), multiply, average, maximum,
    minimum, with broadcasting. maximum/minimum route gy to the first input attaining y (for two
    inputs TF's choice: x >= y or x <= y goes to x). add may return gy itself."""
    shapes = [x.shape for x in xs]
    if op == "add":
        return [unbroadcast(gy, s) for s in shapes]
    if op == "subtract":
        return [unbroadcast(gy, shapes[0]), unbroadcast(-gy, shapes[1])]
    if op == "average":
        g = gy / len(xs)
        return [unbroadcast(g, s) for s in shapes]
    if op == "multiply":
        grads = []
        for i, s in enumerate(shapes):
            g = gy
            for j, other in enumerate(xs):
                if j != i:
                    g = g * other
            grads.append(unbroadcast(g, s))
        return grads
    if op in ("maximum", "minimum"):
        zero = gy.dtype.type(0)
        free = np.ones(y.shape, bool)  # positions no earlier input has claimed
        grads = []
        for i, (x, s) in enumerate(zip(xs, shapes)):
            hit = x == y
            hit &= free
            free ^= hit  # hit is a subset of free: clears the claimed positions
            grads.append(unbroadcast(np.where(hit, gy, zero), s))
        return grads
    raise ValueError(f"elementwise_vjp: unknown op {op!r}")


def reshape_vjp(x_shape, gy):
    """Gradient of a reshape (or flatten) of x: gy reshaped back (a view where possible)."""
    return gy.reshape(x_shape)


def dropout_vjp(mask, gy):
    """Gradient of dropout_train's y = x * mask."""
    return gy * mask


# ---- LSTM ---------------------------------------------------------------------------------------

def _activation_slope(name, x, y):
    """The elementwise derivative of ACTIVATIONS[name] at x (y its output), for whole arrays."""
    if name == "sigmoid":
        return y * (1 - y)
    if name == "tanh":
        return 1 - y * y
    return activation_vjp(name, x, y, np.ones_like(y))


def gru_vjp(cache, kernel, recurrent_kernel, g_output, g_h, need_x, use_bias):
    """Backpropagation through time for gru_train. g_output: gradient of the output ((N, T, u) with
    return_sequences, else (N, u)); g_h: gradient of the returned state (None when unused). Returns
    (gx or None, gkernel, grecurrent_kernel, gbias or None), gx in the input's time order and gbias
    in the bias's shape ((2, 3u) with reset_after, else (3u,))."""
    act, rec, reset_after = cache["activation"], cache["recurrent_activation"], cache["reset_after"]
    hs, xs = cache["h"], cache["xs"]
    steps, n, u = cache["z"].shape
    dt = hs.dtype
    rk_zr, rk_h = recurrent_kernel[:, :2 * u], recurrent_kernel[:, 2 * u:]
    dh = np.zeros((n, u), dt)
    if g_h is not None:
        dh += g_h
    seq = None
    if g_output is not None:
        if cache["return_sequences"]:
            seq = np.ascontiguousarray(g_output.transpose(1, 0, 2), dtype=dt)
        else:
            dh += g_output
    dzx = np.empty((steps, n, 3 * u), dt)  # gradient of every step's input projection (bias included)
    dm = np.empty((steps, n, 3 * u if reset_after else 2 * u), dt)  # of the recurrent projection
    d_inner_h = None if reset_after else np.empty((steps, n, u), dt)  # of (r h) @ U_h's output
    for t in range(steps - 1, -1, -1):
        if seq is not None:
            dh += seq[t]
        h, z, r, hh, inner = hs[t], cache["z"][t], cache["r"][t], cache["hh"][t], cache["inner"][t]
        d_hh = dh * (1 - z)
        d_pre_h = activation_vjp(act, cache["pre_h"][t], hh, d_hh)
        dzx[t, :, 2 * u:] = d_pre_h
        d_prev = dh * z
        if reset_after:
            d_r = d_pre_h * inner
            dm[t, :, 2 * u:] = d_pre_h * r
        else:
            d_rh = d_pre_h @ rk_h.T
            d_inner_h[t] = d_pre_h
            d_r = d_rh * h
            d_prev += d_rh * r
        d_pre_z = activation_vjp(rec, cache["pre_z"][t], z, dh * (h - hh))
        d_pre_r = activation_vjp(rec, cache["pre_r"][t], r, d_r)
        dzx[t, :, :u], dzx[t, :, u:2 * u] = d_pre_z, d_pre_r
        dm[t, :, :u], dm[t, :, u:2 * u] = d_pre_z, d_pre_r
        dh = d_prev + dm[t] @ (recurrent_kernel if reset_after else rk_zr).T
    flat_dzx = dzx.reshape(steps * n, 3 * u)
    h_prev = hs[:steps].reshape(steps * n, u)
    gkernel = xs.reshape(steps * n, -1).T @ flat_dzx
    grec = np.zeros_like(recurrent_kernel, dtype=dt)
    if reset_after:
        grec += h_prev.T @ dm.reshape(steps * n, 3 * u)
    else:
        grec[:, :2 * u] = h_prev.T @ dm.reshape(steps * n, 2 * u)
        grec[:, 2 * u:] = cache["inner"].reshape(steps * n, u).T @ d_inner_h.reshape(steps * n, u)
    gbias = None
    if use_bias:
        g_in = flat_dzx.sum(axis=0)
        gbias = np.stack([g_in, dm.reshape(steps * n, 3 * u).sum(axis=0)]) if reset_after else g_in
    gx = None
    if need_x:
        gx = (flat_dzx @ kernel.T).reshape(steps, n, -1).transpose(1, 0, 2)
        if cache["go_backwards"]:
            gx = gx[:, ::-1]
        gx = np.ascontiguousarray(gx)
        if cache["input_mask"] is not None:  # the input's dropout mask, the same at every step
            gx *= cache["input_mask"][:, None, :]
    return gx, gkernel.astype(dt, copy=False), grec, gbias


def _lstm_output_grads(cache, g_output, g_h, g_c, n, u, dt):
    """The gradients flowing into the recurrence, transposed like its states: (the output sequence's,
    (T, u, N) in processing order, or None; the one reaching h_T, (u, N); the one reaching c_T)."""
    seq = None
    dh = np.zeros((u, n), dt)  # gradient reaching h_t (from later steps and from the outputs)
    dc = np.zeros((u, n), dt)  # gradient reaching c_t
    if g_output is not None:
        if cache["return_sequences"]:
            seq = np.ascontiguousarray(g_output.transpose(1, 2, 0), dtype=dt)
        else:
            dh += g_output.T
    if g_h is not None:
        dh += g_h.T
    if g_c is not None:
        dc += g_c.T
    return seq, dh, dc


def lstm_vjp(cache, kernel, recurrent_kernel, g_output, g_h, g_c, need_x, use_bias):
    """Backpropagation through time for lstm_train. g_output: gradient of the output ((N, T, u) with
    return_sequences, else (N, u), the last step); g_h, g_c: gradients of the returned states (None
    when unused). Returns (gx or None, gkernel, grecurrent_kernel, gbias or None), gx in the input's
    original time order (a (N, T, d) view of time-major memory). The loop runs feature-major like
    the forward (contiguous (u, N) blocks), a few in-place products per step and one small GEMM;
    the input and weight gradients are one GEMM each over all steps."""
    act, rec = cache["activation"], cache["recurrent_activation"]
    steps, u, n = cache["ac"].shape
    dt = cache["s"].dtype
    seq, dh, dc = _lstm_output_grads(cache, g_output, g_h, g_c, n, u, dt)
    dz = np.empty((4 * u, steps, n), dt)  # dL/dz of every step, (4u, T N) for the weight GEMMs
    r = np.ascontiguousarray(recurrent_kernel[:, _lstm_gate_order(u)])  # (u, 4u): dh_{t-1} = r dz_t
    bptt = _lstm_bptt_over_units if {act, rec} & _OVER_UNITS else _lstm_bptt
    bptt(cache, r, seq, dh, dc, dz)
    return _lstm_weight_grads(cache, kernel, dz, need_x, use_bias)


def _lstm_bptt(cache, r, seq, dh, dc, dz):
    """The backward loop for elementwise gates: fills dz. Rows of s[t]: o, i, f, c~ (the candidate),
    c_prev. The default gates' slopes come from the gate values step by step, while the step's arrays
    are in cache (computing them for chunks of 8 steps in fewer, larger calls measured no faster);
    other gates' slopes come from the saved pre-activations, for all steps at once."""
    act, rec = cache["activation"], cache["recurrent_activation"]
    s, acs = cache["s"], cache["ac"]
    steps, u, n = acs.shape
    dt = s.dtype
    default = (act, rec) == ("tanh", "sigmoid")
    if default:  # slope y (a - y) + b: y (1 - y) on the sigmoid rows (a = 1, b = 0), 1 - y^2 on c~
        a = np.zeros((4 * u, n), dt)
        a[:3 * u] = 1
        b = 1 - a
        slope = np.empty((4 * u, n), dt)
    else:
        zs, gates = cache["z"], s[:steps, :4 * u]
        slopes = np.empty((steps, 4 * u, n), dt)
        slopes[:, :3 * u] = _activation_slope(rec, zs[:, :3 * u], gates[:, :3 * u])
        slopes[:, 3 * u:] = _activation_slope(act, zs[:, 3 * u:], gates[:, 3 * u:])
        throughs = _activation_slope(act, s[1:, 4 * u:], acs)  # d h_t / d c_t = o act'(c_t)
        throughs *= s[:steps, :u]
    through = np.empty((u, n), dt)
    d = np.empty((4 * u, n), dt)
    d_if = d[u:3 * u].reshape(2, u, n)
    for t in range(steps - 1, -1, -1):
        if seq is not None:
            dh += seq[t]
        st, ac = s[t], acs[t]
        if default:
            np.multiply(ac, ac, out=through)
            np.subtract(1, through, out=through)
            through *= st[:u]
            through *= dh
            gates = st[:4 * u]
            np.subtract(a, gates, out=slope)
            slope *= gates
            slope += b
        else:
            np.multiply(dh, throughs[t], out=through)
            slope = slopes[t]
        dc += through  # h = o act(c)
        np.multiply(dh, ac, out=d[:u])  # o
        np.multiply(st[3 * u:].reshape(2, u, n), dc, out=d_if)  # c = i c~ + f c_prev: i, f
        np.multiply(dc, st[u:2 * u], out=d[3 * u:])  # c~
        np.multiply(d, slope, out=dz[:, t])
        dc *= st[2 * u:3 * u]
        if t:
            np.matmul(r, dz[:, t], out=dh)


def _lstm_bptt_over_units(cache, r, seq, dh, dc, dz):
    """_lstm_bptt for gates that are not elementwise (softmax): each gate's vjp per step, on
    (N, u) views so that the activation's last axis is the units."""
    act, rec = cache["activation"], cache["recurrent_activation"]
    s, acs, zs = cache["s"], cache["ac"], cache["z"]
    steps, u, n = acs.shape
    for t in range(steps - 1, -1, -1):
        if seq is not None:
            dh += seq[t]
        st, z, ac, d = s[t], zs[t], acs[t], dz[:, t]
        o, i, f, cand, c_prev = (st[k * u:(k + 1) * u] for k in range(5))
        dc += activation_vjp(act, s[t + 1, 4 * u:].T, ac.T, (dh * o).T).T
        d[:u] = activation_vjp(rec, z[:u].T, o.T, (dh * ac).T).T
        d[u:2 * u] = activation_vjp(rec, z[u:2 * u].T, i.T, (dc * cand).T).T
        d[2 * u:3 * u] = activation_vjp(rec, z[2 * u:3 * u].T, f.T, (dc * c_prev).T).T
        d[3 * u:] = activation_vjp(act, z[3 * u:].T, cand.T, (dc * i).T).T
        dc *= f
        if t:
            np.matmul(r, d, out=dh)


def _lstm_weight_grads(cache, kernel, dz, need_x, use_bias):
    """Given dL/dz for every step: the weight, bias and input gradients, one GEMM each (the bias's
    gradient is the last column of the kernel's: the input rows end in a column of ones)."""
    xs, hs = cache["xs"], cache["h"]
    u4, steps, n = dz.shape
    u, d = u4 // 4, xs.shape[1] - 1
    order = _lstm_gate_order(u)
    keras = np.argsort(order)  # loop rows -> Keras's columns
    dz2 = dz.reshape(u4, steps * n)
    gw = (dz2 @ xs)[keras]  # (4u, d + 1)
    gkernel = np.ascontiguousarray(gw[:, :d].T)
    grecurrent = np.ascontiguousarray((dz2 @ hs[:, :steps].reshape(u, steps * n).T)[keras].T)
    gbias = gw[:, d].copy() if use_bias else None
    gx = None
    if need_x:
        gx = (dz2.T @ kernel[:, order].T).reshape(steps, n, d)
        if cache.get("input_mask") is not None:  # the input's dropout mask, the same at every step
            gx *= cache["input_mask"]
        if cache["go_backwards"]:
            gx = gx[::-1]
        gx = gx.transpose(1, 0, 2)  # a view: an Embedding's backward reads it in this memory order
    return gx, gkernel, grecurrent, gbias
# ---- end of the gcomp NumPy runtime, backward pass ----------------------------------------------
