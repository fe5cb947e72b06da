# ---- gcomp NumPy runtime: Keras 3 losses, their gradients, and metrics --------------------------
# Copied verbatim into generated modules: plain Python and NumPy only. Every function works in the
# dtype of the prediction (float32, or float64 for gradient checks) and follows Keras 3's own
# computation step by step, so that the numbers agree to float rounding:
#   * LossFunctionWrapper first squeezes/expands a trailing dimension of 1 so that target and
#     prediction have the same rank (squeeze_or_expand_to_same_rank);
#   * crossentropies clip probabilities to [1e-7, 1 - 1e-7] (categorical ones after p / sum(p));
#   * reduction "sum_over_batch_size" = sum(per-sample loss * sample_weight) / number of elements
#     of the per-sample loss tensor;
#   * metrics are means over samples: per-sample values first reduce their trailing axes by a mean,
#     then total/count accumulate over the epoch (Keras's Mean / MeanMetricWrapper).
# Gradients are the exact derivatives of those computations, clipping included (zero gradient where
# a probability was clipped), the p / sum(p) normalisation included, and sign(0) = 0 for |x|.
import numpy as np

EPSILON = 1e-7  # keras.backend.epsilon()

_LOSS_ALIASES = {
    "mse": "mean_squared_error", "MSE": "mean_squared_error",
    "mean_squared_error": "mean_squared_error", "MeanSquaredError": "mean_squared_error",
    "mae": "mean_absolute_error", "MAE": "mean_absolute_error",
    "mean_absolute_error": "mean_absolute_error", "MeanAbsoluteError": "mean_absolute_error",
    "bce": "binary_crossentropy", "BCE": "binary_crossentropy",
    "binary_crossentropy": "binary_crossentropy", "BinaryCrossentropy": "binary_crossentropy",
    "categorical_crossentropy": "categorical_crossentropy",
    "CategoricalCrossentropy": "categorical_crossentropy",
    "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
}
_SHAPE_RESOLVED_LOSSES = ("crossentropy", "ce")  # Keras's compile picks bce / sparse / categorical
LOSS_NAMES = tuple(sorted(set(_LOSS_ALIASES.values())))

_METRIC_ALIASES = {
    "binary_accuracy": "binary_accuracy", "BinaryAccuracy": "binary_accuracy",
    "categorical_accuracy": "categorical_accuracy", "CategoricalAccuracy": "categorical_accuracy",
    "sparse_categorical_accuracy": "sparse_categorical_accuracy",
    "SparseCategoricalAccuracy": "sparse_categorical_accuracy",
}
for _k, _v in _LOSS_ALIASES.items():  # every loss is also a metric (the mean of its per-sample values)
    _METRIC_ALIASES[_k] = _v
del _k, _v
_SHAPE_RESOLVED_METRICS = ("accuracy", "acc")
METRIC_NAMES = tuple(sorted(set(_METRIC_ALIASES.values())))


# ---- shapes -------------------------------------------------------------------------------------

def _shape_of(x):
    """The shape of an array, or x itself when it already is a shape (a tuple, None = any dim)."""
    if isinstance(x, tuple) and all(d is None or isinstance(d, (int, np.integer)) for d in x):
        return tuple(None if d is None else int(d) for d in x)
    return tuple(np.shape(x))


def _fmt_shape(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _same_rank_shapes(s1, s2, expand_rank_1=True):
    """Keras's squeeze_or_expand_to_same_rank on shapes: when the ranks differ by one and the longer
    shape ends in 1, squeeze it, or (a rank-1 partner) expand the partner instead."""
    r1, r2 = len(s1), len(s2)
    if r1 == r2:
        return s1, s2
    if r1 == r2 + 1 and s1[-1] == 1:
        if r2 == 1 and expand_rank_1:
            s2 = s2 + (1,)
        else:
            s1 = s1[:-1]
    if r2 == r1 + 1 and s2[-1] == 1:
        if r1 == 1 and expand_rank_1:
            s1 = s1 + (1,)
        else:
            s2 = s2[:-1]
    return s1, s2


def _same_rank(x1, x2, expand_rank_1=True):
    s1, s2 = _same_rank_shapes(x1.shape, x2.shape, expand_rank_1)
    return x1.reshape(s1), x2.reshape(s2)


def _unbroadcast(g, shape):
    """Sum g down to `shape` (the reverse of broadcasting)."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _float_dtype(y_pred):
    dt = np.asarray(y_pred).dtype
    return dt if dt in (np.float32, np.float64) else np.dtype(np.float32)


# ---- elementwise helpers ------------------------------------------------------------------------

def _sigmoid(x):
    """Numerically stable logistic function (no overflow for large |x|)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _log_softmax(x):
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _clip_probs(p):
    """Keras's clip to [eps, 1 - eps] in p's dtype, and the mask where the gradient passes
    (tf.clip_by_value passes it for lo <= p <= hi)."""
    lo, hi = p.dtype.type(EPSILON), p.dtype.type(1.0 - EPSILON)
    return np.clip(p, lo, hi), (p >= lo) & (p <= hi)


def _labels(y_true, n_classes, what="sparse_categorical_crossentropy"):
    """Integer labels from y_true (integers or integer-valued floats), checked against [0, classes)."""
    y = np.asarray(y_true)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.floor(y)):
            bad = y[~np.isfinite(y) | (y != np.floor(y))].ravel()[0]
            raise ValueError(f"{what} needs integer class labels; got {bad!r}")
        y = y.astype(np.int64)
    elif y.dtype.kind == "b":
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise ValueError(f"{what} needs integer class labels; got an array of dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        bad = y.min() if y.min() < 0 else y.max()
        raise ValueError(f"{what}: label {int(bad)} is outside [0, {n_classes}) for predictions "
                         f"with {n_classes} classes")
    return y


# ---- losses: per-sample values and their local gradients ----------------------------------------

def resolve_loss_name(name, y_true=None, y_pred=None):
    """The canonical loss a name stands for. 'crossentropy' / 'ce' (any case) resolve by shapes as in
    Keras's compile: binary if the prediction's last dim is 1, sparse categorical if the target has
    lower rank or a last dim of 1 against a prediction's last dim > 1, else categorical."""
    if isinstance(name, str) and name.lower() in _SHAPE_RESOLVED_LOSSES:
        if y_true is None or y_pred is None:
            raise ValueError(f"loss {name!r} resolves by the shapes of target and prediction; give both")
        binary, sparse = _binary_or_sparse(_shape_of(y_true), _shape_of(y_pred))
        if binary:
            return "binary_crossentropy"
        return "sparse_categorical_crossentropy" if sparse else "categorical_crossentropy"
    if isinstance(name, str) and name in _LOSS_ALIASES:
        return _LOSS_ALIASES[name]
    hint = ""
    if isinstance(name, str) and name.lower() in {k.lower() for k in _LOSS_ALIASES}:
        hint = f" (names are case-sensitive, as in Keras: try {name.lower()!r})"
    raise ValueError(f"unknown loss {name!r}{hint}; supported: {', '.join(LOSS_NAMES)} "
                     f"(aliases mse, mae, bce, and 'crossentropy' resolved by shapes)")


def _loss_core(name, y_true, y_pred, from_logits, want_grad):
    """(per_sample, local) where local[..., j] = d per_sample[...] / d y_pred[..., j], in the shape
    of y_pred after Keras's rank alignment (per_sample.shape + (last dim,); the caller reshapes it
    to y_pred's own shape), or local None when not wanted. Follows Keras's sequence of operations."""
    canon = resolve_loss_name(name, y_true, y_pred)
    y_pred = np.asarray(y_pred)
    dt = _float_dtype(y_pred)
    p = y_pred.astype(dt, copy=False)
    orig_shape = p.shape
    one = dt.type(1)

    if canon == "sparse_categorical_crossentropy":
        y = np.asarray(y_true)
        # Loss.__call__ converts y_true to float and LossFunctionWrapper aligns ranks; both are
        # no-ops for labels of rank prediction-1 or with a trailing 1. The backend then squeezes it.
        if y.ndim == p.ndim and y.ndim and y.shape[-1] == 1:
            y = y.reshape(y.shape[:-1])
        if p.ndim < 1 or y.shape != p.shape[:-1]:
            raise ValueError("sparse_categorical_crossentropy: labels of shape "
                             f"{_fmt_shape(np.shape(y_true))} do not fit predictions of shape "
                             f"{_fmt_shape(orig_shape)} (expected {_fmt_shape(p.shape[:-1])} or "
                             f"{_fmt_shape(p.shape[:-1] + (1,))})")
        lab = _labels(y, p.shape[-1])[..., None]
        if from_logits:
            ls = _log_softmax(p)
            per = -np.take_along_axis(ls, lab, axis=-1)[..., 0]
            local = None
            if want_grad:
                local = np.exp(ls)
                np.put_along_axis(local, lab, np.take_along_axis(local, lab, axis=-1) - one, axis=-1)
            return per, local
        s = np.sum(p, axis=-1, keepdims=True)
        q = p / s
        qy = np.take_along_axis(q, lab, axis=-1)
        qc, mask = _clip_probs(qy)
        per = -np.log(qc)[..., 0]
        local = None
        if want_grad:
            g = np.where(mask, -one / qc, dt.type(0)).astype(dt, copy=False)  # d per / d q[label]
            local = np.broadcast_to(-(g * qy) / s, p.shape).copy()             # (g_q - sum g_q q) / s
            np.put_along_axis(local, lab, np.take_along_axis(local, lab, axis=-1) + g / s, axis=-1)
        return per, local

    t = np.asarray(y_true).astype(dt, copy=False)
    t, p = _same_rank(t, p)  # LossFunctionWrapper (and mse/mae once more: idempotent)

    if canon in ("mean_squared_error", "mean_absolute_error"):
        d = t - p
        n = d.shape[-1] if d.ndim else 1
        if canon == "mean_squared_error":
            per = np.mean(np.square(d), axis=-1)
            local = (d * dt.type(-2 / n)).astype(dt, copy=False) if want_grad else None
        else:
            per = np.mean(np.abs(d), axis=-1)
            local = (-np.sign(d) / dt.type(n)).astype(dt, copy=False) if want_grad else None
        if local is not None:
            local = _unbroadcast(local, p.shape)
        return per, local

    if canon == "binary_crossentropy":
        if t.shape != p.shape:
            raise ValueError(f"binary_crossentropy: target of shape {_fmt_shape(np.shape(y_true))} and "
                             f"prediction of shape {_fmt_shape(orig_shape)} must have the same shape")
        n = p.shape[-1] if p.ndim else 1
        if from_logits:  # tf.nn.sigmoid_cross_entropy_with_logits
            elem = np.maximum(p, dt.type(0)) - p * t + np.log1p(np.exp(-np.abs(p)))
            per = np.mean(elem, axis=-1)
            local = (_sigmoid(p) - t) / dt.type(n) if want_grad else None
            return per, local
        pc, mask = _clip_probs(p)
        bce = t * np.log(pc)
        bce += (one - t) * np.log(one - pc)
        per = np.mean(-bce, axis=-1)
        local = None
        if want_grad:
            local = np.where(mask, -(t / pc - (one - t) / (one - pc)) / dt.type(n), dt.type(0))
            local = local.astype(dt, copy=False)
        return per, local

    # categorical_crossentropy
    if t.shape != p.shape or p.ndim < 1:
        raise ValueError(f"categorical_crossentropy: target of shape {_fmt_shape(np.shape(y_true))} and "
                         f"prediction of shape {_fmt_shape(orig_shape)} must have the same shape")
    if from_logits:
        ls = _log_softmax(p)
        per = -np.sum(t * ls, axis=-1)
        local = None
        if want_grad:
            local = np.exp(ls) * np.sum(t, axis=-1, keepdims=True) - t
        return per, local
    s = np.sum(p, axis=-1, keepdims=True)
    q = p / s
    qc, mask = _clip_probs(q)
    per = -np.sum(t * np.log(qc), axis=-1)
    local = None
    if want_grad:
        gq = np.where(mask, -t / qc, dt.type(0)).astype(dt, copy=False)
        local = (gq - np.sum(gq * q, axis=-1, keepdims=True)) / s
    return per, local


def smooth_labels(name, y_true, label_smoothing):
    """Keras's label smoothing of crossentropy targets, in float32 as Keras computes it:
    categorical t (1 - s) + s / classes, binary t (1 - s) + s / 2; the targets unchanged for s = 0."""
    if not label_smoothing:
        return y_true
    if name not in ("categorical_crossentropy", "binary_crossentropy"):
        raise ValueError(f"label_smoothing applies to binary and categorical crossentropy, not {name}")
    t = np.asarray(y_true, np.float32)
    keep = np.float32(1.0 - label_smoothing)  # Keras: the Python double, rounded once
    if name == "categorical_crossentropy":
        return t * keep + np.float32(label_smoothing) / np.float32(t.shape[-1])
    return t * keep + np.float32(0.5 * label_smoothing)


def per_sample_loss(name, y_true, y_pred, from_logits=False):
    """Keras's per-sample loss (the loss function before reduction): the last axis reduced, e.g.
    mse of (N, 1) -> (N,), of (N, T, D) -> (N, T); sparse labels (N,) or (N, 1) against (N, C)."""
    return _loss_core(name, y_true, y_pred, from_logits, False)[0]


def _weights_for(values, sample_weight, dt):
    """Keras's reduce_weighted_values alignment of sample_weight with the per-sample losses. Returns
    (values, weights broadcast to values' shape or None). Beyond Keras: weights of lower rank than
    the losses (one weight per sequence for a (N, T) loss) broadcast over the trailing axes, where
    Keras 3 multiplies (N, T) by (N,) and fails, or silently weights time steps when T == N."""
    if sample_weight is None:
        return values, None
    sw = np.asarray(sample_weight, dtype=dt)
    values, sw = _same_rank(values, sw)
    if sw.ndim > values.ndim:
        raise ValueError(f"sample_weight of shape {_fmt_shape(np.shape(sample_weight))} has more axes "
                         f"than the per-sample loss {_fmt_shape(values.shape)}")
    if 0 < sw.ndim < values.ndim:
        sw = sw.reshape(sw.shape + (1,) * (values.ndim - sw.ndim))
    try:
        shape = np.broadcast_shapes(values.shape, sw.shape)
    except ValueError:
        shape = None
    if shape is None or shape != values.shape:
        raise ValueError(f"sample_weight of shape {_fmt_shape(np.shape(sample_weight))} does not fit the "
                         f"per-sample loss of shape {_fmt_shape(values.shape)}")
    return values, np.broadcast_to(sw, values.shape)


REDUCTIONS = ("sum_over_batch_size", "mean", "sum")


def reduction_divisor(reduction, n):
    """Keras's reduce_values: the sum of the weighted per-sample losses is divided by their count n
    for "sum_over_batch_size" (the default) and "mean", and not at all for "sum"."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return 1 if reduction == "sum" else n


def loss_and_grad(name, y_true, y_pred, sample_weight=None, from_logits=False, weight=1.0,
                  reduction="sum_over_batch_size"):
    """(loss, grad): the UNWEIGHTED reduced loss (sum(per-sample * sample_weight) divided as
    `reduction` says, a scalar of y_pred's dtype) and the gradient of weight * loss with respect to
    y_pred (y_pred's shape and dtype)."""
    y_pred = np.asarray(y_pred)
    dt = _float_dtype(y_pred)
    per, local = _loss_core(name, y_true, y_pred, from_logits, True)
    per_shape = per.shape
    values, sw = _weights_for(per, sample_weight, dt)
    weighted = values if sw is None else values * sw
    n = weighted.size
    if n == 0:
        return dt.type(0), np.zeros(y_pred.shape, dt)
    divisor = dt.type(reduction_divisor(reduction, n))
    loss = dt.type(np.sum(weighted, dtype=dt) / divisor)
    scale = dt.type(weight) / divisor
    dvalues = np.full(per_shape, scale, dt) if sw is None else (sw * scale).reshape(per_shape)
    grad = (local * dvalues[..., None]).astype(dt, copy=False)
    return loss, grad.reshape(y_pred.shape)


def weight_penalty(w, l1, l2):
    """Keras's regularization loss of one weight: l1 sum|w| + l2 sum w^2 (a factor of 0 adds
    nothing), in float32 as Keras's L1, L2 and L1L2 compute it."""
    total = np.float32(0)
    if l1:
        total += np.float32(l1) * np.sum(np.abs(w), dtype=np.float32)
    if l2:
        total += np.float32(l2) * np.sum(np.square(w), dtype=np.float32)
    return total


def activity_penalty(y, l1, l2):
    """Keras's activity regularization loss: the penalty of a layer call's output (weight_penalty)
    divided by its batch size (0 for an empty batch), in float32."""
    batch = y.shape[0]
    return np.float32(weight_penalty(y, l1, l2) / np.float32(batch)) if batch else np.float32(0)


def validate_targets(name, y_true, y_pred, output_name):
    """Check that targets fit the loss `name` for the output `output_name`, before training starts;
    raise ValueError naming the output otherwise. y_pred is the prediction array or its shape as a
    tuple (None for free dims). Returns y_true converted: integer labels for sparse categorical crossentropy
    (a trailing label dim of 1 squeezed), else an array of the prediction's float dtype."""
    canon = resolve_loss_name(name, y_true, y_pred)
    where = f'output "{output_name}" (loss {canon})'
    pshape = _shape_of(y_pred)
    dt = _float_dtype(y_pred) if not isinstance(y_pred, tuple) else np.dtype(np.float32)
    try:
        y = np.asarray(y_true)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{where}: targets could not be read as an array ({exc})") from None
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{where}: targets must be numbers; got an array of dtype {y.dtype}")
    if y.ndim == 0:
        raise ValueError(f"{where}: targets must have a batch axis; got a scalar")

    def same(a, b):
        return len(a) == len(b) and all(x is None or z is None or x == z for x, z in zip(a, b))

    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError(f"{where}: targets contain NaN or infinity")
    if canon == "sparse_categorical_crossentropy":
        ys = y.shape
        if len(ys) == len(pshape) and ys[-1] == 1:
            ys = ys[:-1]
        if not same(ys, pshape[:-1]):
            hint = ""
            if same(y.shape, pshape):
                hint = " These look like one-hot targets: use categorical_crossentropy."
            raise ValueError(f"{where}: targets of shape {_fmt_shape(y.shape)} do not fit predictions of "
                             f"shape {_fmt_shape(pshape)}; sparse labels need shape "
                             f"{_fmt_shape(pshape[:-1])} or {_fmt_shape(pshape[:-1] + (1,))}.{hint}")
        classes = pshape[-1]
        try:
            labels = _labels(y.reshape(ys), classes if classes is not None else np.iinfo(np.int64).max)
        except ValueError as exc:
            raise ValueError(f"{where}: {str(exc).split(': ', 1)[-1]}") from None
        return labels
    ts, ps = _same_rank_shapes(y.shape, pshape)
    if not same(ts, ps):
        hint = ""
        if canon == "categorical_crossentropy" and len(pshape) >= 1 and (
                same(y.shape, pshape[:-1]) or same(y.shape, pshape[:-1] + (1,))):
            hint = " These look like integer class labels: use sparse_categorical_crossentropy."
        raise ValueError(f"{where}: targets of shape {_fmt_shape(y.shape)} do not match predictions of "
                         f"shape {_fmt_shape(pshape)}.{hint}")
    if canon == "binary_crossentropy" and y.size and (y.min() < 0 or y.max() > 1):
        bad = y.min() if y.min() < 0 else y.max()
        raise ValueError(f"{where}: binary crossentropy targets must lie in [0, 1]; got {bad!r}")
    if canon == "categorical_crossentropy" and y.size and y.min() < 0:
        raise ValueError(f"{where}: categorical crossentropy targets must be non-negative (one-hot or "
                         f"probabilities); got {y.min()!r}")
    return y.astype(dt, copy=False)


# ---- metrics ------------------------------------------------------------------------------------

def _binary_or_sparse(tshape, pshape):
    """Keras's compile_utils.is_binary_or_sparse_categorical on shapes."""
    is_binary = pshape[-1] == 1
    is_sparse = len(tshape) < len(pshape) or (tshape[-1] == 1 and pshape[-1] is not None and pshape[-1] > 1)
    return is_binary, is_sparse


def resolve_metric_name(name, y_true=None, y_pred=None):
    """The concrete metric a name stands for. 'acc' / 'accuracy' (any case) resolve by shapes as in
    Keras's compile: binary_accuracy if the prediction's last dim is 1, sparse_categorical_accuracy
    if the target has lower rank than the prediction or a last dim of 1 against a prediction's last
    dim > 1, else categorical_accuracy. y_true / y_pred: arrays or shape tuples. (Keras keeps the user's
    string as the metric's name, for History keys.)"""
    if isinstance(name, str) and name.lower() in _SHAPE_RESOLVED_METRICS:
        if y_true is None or y_pred is None:
            raise ValueError(f"metric {name!r} resolves by the shapes of target and prediction; give both")
        binary, sparse = _binary_or_sparse(_shape_of(y_true), _shape_of(y_pred))
        if binary:
            return "binary_accuracy"
        return "sparse_categorical_accuracy" if sparse else "categorical_accuracy"
    if isinstance(name, str) and name.lower() in _SHAPE_RESOLVED_LOSSES:
        return resolve_loss_name(name, y_true, y_pred)
    if isinstance(name, str) and name in _METRIC_ALIASES:
        return _METRIC_ALIASES[name]
    raise ValueError(f"unknown metric {name!r}; supported: accuracy/acc (resolved by shapes), "
                     f"{', '.join(METRIC_NAMES)} (aliases mse, mae, bce)")


def _raw_metric_values(canon, y_true, y_pred, threshold=0.5):
    """Keras's metric function (before the Mean's reduction to per-sample values)."""
    y_pred = np.asarray(y_pred)
    if canon == "binary_accuracy":
        t = np.asarray(y_true)
        t, p = _same_rank(t, y_pred)
        pred = (p > p.dtype.type(threshold)).astype(t.dtype)
        return np.mean((t == pred).astype(np.float32), axis=-1)
    if canon == "categorical_accuracy":
        t = np.argmax(np.asarray(y_true), axis=-1)
        reshape_to = None
        if t.ndim == y_pred.ndim:  # (only when y_true had one more axis than y_pred)
            reshape_to = t.shape
            t = np.squeeze(t, -1)
        matches = (t == np.argmax(y_pred, axis=-1)).astype(np.float32)
        return matches.reshape(reshape_to) if reshape_to is not None else matches
    if canon == "sparse_categorical_accuracy":
        t = np.asarray(y_true)
        reshape_to = None
        if t.ndim == y_pred.ndim and t.shape[-1] == 1:
            reshape_to = t.shape
            t = np.squeeze(t, -1)
        pred = np.argmax(y_pred, axis=-1).astype(t.dtype)
        matches = (t == pred).astype(np.float32)
        if reshape_to is not None:
            matches = matches.reshape(reshape_to)
        if matches.ndim > 1 and matches.shape[-1] == 1:
            matches = np.squeeze(matches, -1)
        return matches
    return per_sample_loss(canon, y_true, y_pred)


def metric_values(name, y_true, y_pred, reduce=True, threshold=0.5):
    """Per-sample values of a metric: Keras's metric function, then (reduce=True) a mean over any
    trailing axes, as Keras's Mean does before averaging over samples: an (N, T) sequence accuracy
    becomes (N,) per-sequence fractions. (Equal-length sequences: identical to the per-element
    mean.) reduce=False returns the raw (N, ...) values, for MeanAccumulator with temporal weights.
    threshold: binary accuracy's (BinaryAccuracy(threshold=...))."""
    canon = resolve_metric_name(name, y_true, y_pred)
    values = _raw_metric_values(canon, y_true, y_pred, threshold)
    if reduce and values.ndim > 1:
        values = np.mean(values, axis=tuple(range(1, values.ndim)))
    return values


class MeanAccumulator:
    """Keras's Mean metric: total and count in float32, updated per batch; result = total / count
    (0 when count is 0). update(values, sample_weight) follows reduce_to_samplewise_values: values
    of rank > 1 first reduce their trailing axes by a mean; weights multiply per-sample values and
    count as their sum. A scalar value with a scalar weight (the loss tracker: batch loss, batch
    size) adds value * weight and weight."""

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.reset()

    def reset(self):
        self.total = self.dtype.type(0)
        self.count = self.dtype.type(0)

    def update(self, values, sample_weight=None):
        dt = self.dtype
        values = np.asarray(values).astype(dt, copy=False)
        if sample_weight is not None and np.ndim(sample_weight) == 0 and values.ndim == 0:
            sw = dt.type(sample_weight)
            self.total = dt.type(self.total + values * sw)
            self.count = dt.type(self.count + sw)
            return
        if sample_weight is not None:
            sw = np.asarray(sample_weight).astype(dt, copy=False)
            values, sw = _same_rank(values, sw)
            w_ndim = sw.ndim
            if values.ndim > w_ndim:
                values = np.mean(values, axis=tuple(range(w_ndim, values.ndim)))
            sw = np.broadcast_to(sw, values.shape)
            values = values * sw
            if w_ndim > 1:
                sw = np.mean(sw, axis=tuple(range(1, w_ndim)))
        if values.ndim > 1:
            values = np.mean(values, axis=tuple(range(1, values.ndim)))
        self.total = dt.type(self.total + np.sum(values, dtype=dt))
        if sample_weight is not None:
            num = np.sum(sw, dtype=dt)
        elif values.ndim >= 1:
            num = values.shape[0]
        else:
            num = 1
        self.count = dt.type(self.count + dt.type(num))

    def result(self):
        if self.count == 0:
            return self.dtype.type(0)
        return self.dtype.type(self.total / self.count)
