"""Gradient checks of the NumPy runtime's backward kernels (templates/numpy/vjp.py).

Every kernel is checked in float64 against central finite differences of a random scalar objective
sum(w * f(x)) built from the forward kernels of templates/numpy/prelude.py, and called in float32 to
check that float32 stays float32. The kernels are loaded the way a generated training module holds
them: prelude.py and vjp.py executed, one after the other, in one namespace.
"""
from __future__ import annotations

import itertools
import math
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

_TEMPLATES = Path(__file__).parents[1] / "templates" / "numpy"


def _load_runtime() -> SimpleNamespace:
    source = (_TEMPLATES / "prelude.py").read_text() + "\n" + (_TEMPLATES / "vjp.py").read_text()
    namespace: dict = {"__name__": "gcomp_vjp_under_test"}
    exec(compile(source, "<prelude.py + vjp.py>", "exec"), namespace)
    return SimpleNamespace(**namespace)


rt = _load_runtime()

RTOL, ATOL = 1e-6, 1e-8
EPS = 1e-6


def rng_for(*key) -> np.random.Generator:
    """A generator seeded from the test's parameters: each case gets its own fixed data."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def normal(rng, *shape, scale=1.0):
    return np.asarray(rng.standard_normal(shape) * scale)  # shape () gives a 0-d array


def numeric_grad(fn, ws, x, eps=EPS):
    """Central differences, with respect to every element of the float64 array x (perturbed in place
    and restored), of the objective sum_k sum(ws[k] * fn()[k]) for fn returning a list of arrays.
    The weighted sum is taken of the output differences, so outputs that the element does not reach
    cancel exactly and add no rounding error."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat, x)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = [np.array(o) for o in fn()]  # copies: an output may be a view of x
        flat[i] = old - eps
        minus = [np.array(o) for o in fn()]
        flat[i] = old
        gflat[i] = sum(float(np.sum(w * (p - m))) for w, p, m in zip(ws, plus, minus)) / (2 * eps)
    return grad


def check(analytic, numeric):
    assert analytic.dtype == np.float64
    assert analytic.shape == numeric.shape
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL)


def f32(*arrays):
    return [a.astype(np.float32) for a in arrays]


# ---- forward kernels keep float64 -----------------------------------------------------------------
def test_forward_kernels_preserve_float64():
    rng = rng_for("forward64")
    x = normal(rng, 2, 5, 4)
    for name, fn in rt.ACTIVATIONS.items():
        assert fn(x).dtype == np.float64, name
    k = normal(rng, 2, 4, 3)
    assert rt.conv(x, k, (1,), "same", (1,), "c").dtype == np.float64
    assert rt.max_pool(x, (2,), (1,), "same", "m").dtype == np.float64
    assert rt.avg_pool(x, (2,), (1,), "same", "a").dtype == np.float64
    out, h, c = rt.lstm(x, normal(rng, 4, 8), normal(rng, 2, 8), normal(rng, 8), "tanh", "sigmoid", True, False)
    assert out.dtype == h.dtype == c.dtype == np.float64
    y, mask = rt.dropout_train(x, 0.5, rt.DropoutStream(0))
    assert y.dtype == mask.dtype == np.float64
    # float32 in, float32 out
    x32, k32 = f32(x, k)
    assert rt.conv(x32, k32, (2,), "valid", (1,), "c").dtype == np.float32
    for name, fn in rt.ACTIVATIONS.items():
        assert fn(x32).dtype == np.float32, name


def test_float32_activations_unchanged():
    """The float32 results of the activations whose constants became Python floats (so that float64
    inputs get full-precision constants) are bit-identical to the np.float32-constant formulas."""
    x = normal(rng_for("f32 constants"), 50, scale=3).astype(np.float32)
    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    f32_elu = np.where(x >= 0, x, np.float32(alpha) * np.expm1(np.minimum(x, np.float32(0))))
    np.testing.assert_array_equal(rt.selu(x), np.float32(scale) * f32_elu)
    np.testing.assert_array_equal(rt.leaky_relu(x), np.where(x >= 0, x, x * np.float32(0.2)))
    np.testing.assert_array_equal(rt.elu(x), np.where(x >= 0, x, np.float32(1) * np.expm1(np.minimum(x, 0))))
    assert rt.selu(x).dtype == np.float32


# ---- activations ---------------------------------------------------------------------------------
KINKS = (-3.0, 0.0, 3.0, 6.0)


def activation_input(rng):
    """Random values and fixed ones on both sides of every kink, none within 1e-2 of a kink."""
    x = np.concatenate([normal(rng, 3, 9, scale=2.5).ravel(),
                        [-7, -4, -2.9, -0.5, 0.5, 2.9, 4, 5.9, 6.5]]).reshape(4, 9)
    for k in KINKS:
        near = np.abs(x - k) < 1e-2
        x[near] = k + 0.05
    return x


@pytest.mark.parametrize("name", sorted(rt.ACTIVATIONS))
def test_activation_vjp(name):
    rng = rng_for("act", name)
    fn = rt.ACTIVATIONS[name]
    x = activation_input(rng)
    w = normal(rng, *x.shape)
    analytic = rt.activation_vjp(name, x, fn(x), w)
    check(analytic, numeric_grad(lambda: [fn(x)], [w], x))
    x32, w32 = f32(x, w)
    assert rt.activation_vjp(name, x32, fn(x32), w32).dtype == np.float32


@pytest.mark.parametrize("name, at, expected", [
    ("relu", 0.0, 0.0), ("relu6", 0.0, 0.0), ("relu6", 6.0, 0.0), ("relu6", 5.5, 1.0),
    ("leaky_relu", 0.0, 1.0), ("leaky_relu", -1.0, 0.2), ("hard_sigmoid", -3.0, 0.0),
    ("hard_sigmoid", 3.0, 0.0), ("hard_sigmoid", 0.0, 1 / 6), ("hard_silu", -3.0, 0.0),
    ("hard_silu", 3.0, 1.0), ("elu", 0.0, 1.0), ("gelu", 0.0, 0.5), ("softsign", 0.0, 1.0),
])
def test_activation_derivative_at_kinks(name, at, expected):
    x = np.array([at])
    g = rt.activation_vjp(name, x, rt.ACTIVATIONS[name](x), np.ones(1))
    np.testing.assert_allclose(g, [expected], rtol=1e-12)


RELU_OPTIONS = [(0.3, None, 0.0), (0.0, 1.5, 0.0), (0.0, None, 0.5), (0.1, 2.0, 0.5), (0.05, 6.0, 0.0)]


@pytest.mark.parametrize("negative_slope, max_value, threshold", RELU_OPTIONS)
def test_keras_relu_vjp(negative_slope, max_value, threshold):
    rng = rng_for("keras_relu", negative_slope, max_value, threshold)
    x = normal(rng, 4, 9, scale=2.0)
    for k in (0.0, threshold, max_value or 0.0):  # none within the finite difference's reach of a kink
        x[np.abs(x - k) < 1e-2] = k + 0.05
    w = normal(rng, *x.shape)
    fn = lambda: [rt.keras_relu(x, negative_slope, max_value, threshold)]  # noqa: E731
    check(rt.keras_relu_vjp(x, w, negative_slope, max_value, threshold), numeric_grad(fn, [w], x))
    x32, w32 = f32(x, w)
    assert rt.keras_relu_vjp(x32, w32, negative_slope, max_value, threshold).dtype == np.float32


# ---- dense, embedding -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4)])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("need_x", [True, False])
def test_dense_vjp(shape, use_bias, need_x):
    rng = rng_for("dense", shape, use_bias)
    x, k, b = normal(rng, *shape), normal(rng, shape[-1], 3), normal(rng, 3)
    w = normal(rng, *shape[:-1], 3)

    def loss():
        return [x @ k + (b if use_bias else 0)]

    ws = [w]
    gx, gk, gb = rt.dense_vjp(x, k, w, need_x, use_bias)
    check(gk, numeric_grad(loss, ws, k))
    if need_x:
        check(gx, numeric_grad(loss, ws, x))
    else:
        assert gx is None
    if use_bias:
        check(gb, numeric_grad(loss, ws, b))
    else:
        assert gb is None
    outs = rt.dense_vjp(*f32(x, k, w), need_x, use_bias)
    assert all(o.dtype == np.float32 for o in outs if o is not None)


@pytest.mark.parametrize("index_shape", [(7,), (3, 5), (2, 2, 3)])
def test_embedding_vjp(index_shape):
    rng = rng_for("embedding", index_shape)
    table = normal(rng, 6, 3)
    indices = rng.integers(0, 4, size=index_shape)  # repeats, and rows 4, 5 unused
    w = normal(rng, *index_shape, 3)
    g = rt.embedding_vjp(indices, 6, w)
    check(g, numeric_grad(lambda: [table[indices]], [w], table))
    assert not g[4:].any()
    w32 = w.astype(np.float32)
    in_order = np.zeros((6, 3), np.float32)  # each row's repeats summed in their original order
    np.add.at(in_order, indices.reshape(-1), w32.reshape(-1, 3))
    assert np.array_equal(rt.embedding_vjp(indices.astype(np.int32), 6, w32), in_order)
    assert not rt.embedding_vjp(np.zeros((0, 2), np.int64), 6, np.zeros((0, 2, 3))).any()


@pytest.mark.parametrize("input_dim", [1 << 16, (1 << 16) + 5])  # sorted as uint16, then as given
def test_embedding_vjp_of_a_large_vocabulary(input_dim):
    rng = rng_for("embedding vocabulary", input_dim)
    indices = np.array([[input_dim - 1, 3, input_dim - 1], [70, 3, input_dim - 1]], np.int64)
    gy = normal(rng, 2, 3, 2).astype(np.float32)
    want = np.zeros((input_dim, 2), np.float32)
    np.add.at(want, indices.reshape(-1), gy.reshape(-1, 2))
    assert np.array_equal(rt.embedding_vjp(indices, input_dim, gy), want)


def test_embedding_vjp_reads_a_time_major_gradient_in_memory_order():
    # an LSTM's input gradient is a (N, T, d) view of time-major memory: the sums run over the rows
    # in that memory order (np.add.at over time-major rows, bit for bit), with no copy into (N, T, d)
    rng = rng_for("embedding time-major")
    indices = rng.integers(0, 5, size=(4, 6))
    time_major = normal(rng, 6, 4, 3).astype(np.float32)
    gy = time_major.transpose(1, 0, 2)
    want = np.zeros((5, 3), np.float32)
    np.add.at(want, indices.T.reshape(-1), time_major.reshape(-1, 3))
    assert np.array_equal(rt.embedding_vjp(indices, 5, gy), want)
    np.testing.assert_allclose(rt.embedding_vjp(indices, 5, np.ascontiguousarray(gy)), want, rtol=1e-6)


def test_embedding_vjp_in_a_buffer_clears_only_the_rows_it_wrote_before():
    rng = rng_for("embedding in a buffer")
    buffer = rt.BufferGradient(np.full((9, 3), np.nan, np.float32))  # unknown contents: cleared
    for indices in ([1, 4, 4, 7], [4, 5, 0, 0], [], [8, 2, 2, 2, 1], [8]):
        indices = np.array(indices, np.int64).reshape(-1, 1)
        gy = normal(rng, len(indices), 1, 3).astype(np.float32)
        g = rt.embedding_vjp(indices, 9, gy, out=buffer)
        assert g is buffer.array
        assert np.array_equal(g, rt.embedding_vjp(indices, 9, gy))  # as if from zeros, bit for bit
        assert np.array_equal(buffer.rows, np.unique(indices))
    wrong_shape = rt.BufferGradient(np.zeros((4, 3), np.float32))
    assert rt.embedding_vjp(np.array([[1]]), 9, np.ones((1, 1, 3), np.float32), out=wrong_shape).shape == (9, 3)
    assert wrong_shape.rows is None and not wrong_shape.array.any()


# ---- convolution ---------------------------------------------------------------------------------
CONV_CASES = [
    # x shape, kernel shape, strides, padding, dilation
    ((2, 7, 3), (3, 3, 4), (1,), "valid", (1,)),
    ((2, 7, 3), (3, 3, 4), (1,), "same", (1,)),
    ((2, 7, 3), (3, 3, 4), (1,), "causal", (2,)),
    ((2, 8, 3), (2, 3, 2), (2,), "same", (1,)),
    ((2, 9, 2), (3, 2, 2), (3,), "valid", (1,)),
    ((2, 6, 5, 2), (3, 2, 2, 3), (1, 1), "valid", (1, 1)),
    ((2, 6, 5, 2), (3, 2, 2, 3), (1, 1), "same", (2, 1)),
    ((2, 6, 5, 2), (3, 3, 2, 2), (2, 2), "same", (1, 1)),
    ((1, 7, 6, 2), (2, 3, 2, 2), (2, 1), "valid", (1, 1)),
    ((1, 4, 4, 3, 2), (2, 2, 2, 2, 2), (2, 2, 1), "same", (1, 1, 1)),
    # stride 1 reads windows as phases of `taps` rows (conv_rows): counts that are no multiple of
    # the taps, a dilated innermost axis (one row per tap), and three spatial axes
    ((3, 11, 4), (5, 4, 3), (1,), "valid", (1,)),
    ((2, 6, 7, 2), (2, 3, 2, 2), (1, 1), "same", (1, 2)),
    ((1, 4, 5, 4, 2), (2, 3, 2, 2, 2), (1, 1, 1), "same", (1, 1, 1)),
]


@pytest.fixture(params=["chosen", "rows", "im2col"])
def conv_way(request, monkeypatch):
    """Runs a test with conv's own choice of way, then with each way forced at stride 1 (a strided
    conv always takes im2col), so both ways see every case whatever the choice rule says."""
    if request.param != "chosen":
        rows = request.param == "rows"
        monkeypatch.setattr(rt, "_conv_by_rows", lambda shape, window, strides, dilation, padding:
                            rows and all(s == 1 for s in strides))
    return request.param


def test_conv_way_choice_drops_few_rows():
    # seed multi-output: 500 steps lose 4 rows to a 5-window, 14 steps lose 4 of 14
    assert rt._conv_by_rows((64, 500, 256), (5,), (1,), (1,), "valid")
    assert not rt._conv_by_rows((64, 14, 256), (5,), (1,), (1,), "valid")
    # a fifth dropped is the tie, left to im2col; "same" padding adds the rows it pads
    assert not rt._conv_by_rows((2, 20, 3), (5,), (1,), (1,), "valid")
    assert rt._conv_by_rows((2, 21, 3), (5,), (1,), (1,), "valid")
    assert rt._conv_by_rows((2, 32, 32, 3), (3, 3), (1, 1), (1, 1), "same")
    assert not rt._conv_by_rows((2, 8, 8, 3), (3, 3), (1, 1), (1, 1), "same")
    assert not rt._conv_by_rows((2, 64, 3), (3,), (2,), (1,), "valid")  # strided: im2col
    assert not rt._conv_by_rows((2, 3, 3), (5,), (1,), (1,), "valid")  # no window fits


@pytest.mark.parametrize("x_shape, k_shape", [((0, 9, 3), (5, 3, 4)), ((0, 6, 5, 2), (3, 2, 2, 3))])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv_of_an_empty_batch(x_shape, k_shape, padding, conv_way):
    rank = len(x_shape) - 2
    x, k = np.zeros(x_shape), np.ones(k_shape)
    y = rt.conv(x, k, (1,) * rank, padding, (1,) * rank, "conv")
    assert y.shape[0] == 0 and y.shape[-1] == k_shape[-1]
    gx, gk, gb = rt.conv_vjp(x, k, y, (1,) * rank, padding, (1,) * rank, True, True)
    assert gx.shape == x_shape and gk.shape == k_shape and not gk.any() and not gb.any()


def test_window_taps_split_outer_shifts_from_the_inner_run():
    # padded grid 4 x 5: a 2x3 window is two row shifts (0 and one grid row, 5) of a 3-row run
    assert rt.window_taps((1, 4, 5, 2), (2, 3), (1, 1)) == ([0, 5], 3)
    # a dilated innermost axis cannot be read as one run: every offset is a shift of its own
    assert rt.window_taps((1, 4, 5, 2), (2, 2), (1, 2)) == ([0, 2, 5, 7], 1)
    assert rt.window_taps((2, 9, 3), (4,), (1,)) == ([0], 4)


@pytest.mark.parametrize("x_shape, k_shape, strides, padding, dilation", CONV_CASES)
def test_conv_vjp(x_shape, k_shape, strides, padding, dilation, conv_way):
    rng = rng_for("conv", x_shape, k_shape, strides, padding, dilation)
    x, k, b = normal(rng, *x_shape), normal(rng, *k_shape), normal(rng, k_shape[-1])

    def forward():
        return rt.conv(x, k, strides, padding, dilation, "conv") + b

    w = normal(rng, *forward().shape)
    with_bias = rt.conv(x, k, strides, padding, dilation, "conv", bias=b)  # added in the crop's pass
    assert np.array_equal(with_bias, forward()) and with_bias.flags.c_contiguous

    def loss():
        return [forward()]

    ws = [w]
    gx, gk, gb = rt.conv_vjp(x, k, w, strides, padding, dilation, True, True)
    check(gx, numeric_grad(loss, ws, x))
    check(gk, numeric_grad(loss, ws, k))
    check(gb, numeric_grad(loss, ws, b))
    assert gk.flags.c_contiguous and gx.flags.c_contiguous
    assert rt.conv_vjp(x, k, w, strides, padding, dilation, False, False)[::2] == (None, None)
    outs = rt.conv_vjp(*f32(x, k, w), strides, padding, dilation, True, True)
    assert all(o.dtype == np.float32 for o in outs)


# ---- pooling -------------------------------------------------------------------------------------
POOL_CASES = [
    # x shape, pool_size, strides, padding
    ((2, 8, 3), (2,), (2,), "valid"),
    ((2, 7, 3), (3,), (2,), "same"),
    ((2, 7, 2), (3,), (1,), "valid"),
    ((2, 6, 5, 2), (2, 2), (2, 2), "valid"),
    ((2, 6, 5, 2), (3, 2), (2, 1), "same"),
    ((1, 5, 5, 2), (3, 3), (1, 1), "same"),
    ((1, 4, 5, 3, 2), (2, 2, 2), (2, 2, 1), "same"),
    # windows that tile (stride = pool) leave a remainder past them; stride > pool leaves gaps
    ((2, 9, 3), (2,), (2,), "valid"),
    ((2, 7, 5, 2), (2, 2), (2, 2), "valid"),
    ((2, 10, 2), (2,), (3,), "valid"),
]


@pytest.mark.parametrize("x_shape, pool_size, strides, padding", POOL_CASES)
def test_max_pool_vjp(x_shape, pool_size, strides, padding):
    rng = rng_for("max_pool", x_shape, pool_size, strides, padding)
    x = normal(rng, *x_shape)  # distinct values: no ties
    y = rt.max_pool(x, pool_size, strides, padding, "p")
    w = normal(rng, *y.shape)
    g = rt.max_pool_vjp(x, y, w, pool_size, strides, padding)
    check(g, numeric_grad(lambda: [rt.max_pool(x, pool_size, strides, padding, "p")], [w], x))
    assert rt.max_pool_vjp(*f32(x, y, w), pool_size, strides, padding).dtype == np.float32


def _max_pool_vjp_loops(x, gy, pool_size, strides, padding):
    """Reference with explicit loops: each window's gradient to its first max (np.argmax order)."""
    rank = len(pool_size)
    ones = (1,) * rank
    pads = rt._spatial_pads(x.shape[1:-1], pool_size, strides, ones, padding)
    xp = np.pad(x, [(0, 0)] + pads + [(0, 0)], constant_values=-np.inf)
    gp = np.zeros_like(xp)
    for n, ch in itertools.product(range(x.shape[0]), range(x.shape[-1])):
        for out in np.ndindex(*gy.shape[1:-1]):
            lo = [o * s for o, s in zip(out, strides)]
            window = xp[(n,) + tuple(slice(a, a + p) for a, p in zip(lo, pool_size)) + (ch,)]
            arg = np.unravel_index(np.argmax(window), pool_size)
            gp[(n,) + tuple(a + i for a, i in zip(lo, arg)) + (ch,)] += gy[(n,) + out + (ch,)]
    return gp[(slice(None),) + tuple(slice(a, a + m) for (a, _), m in zip(pads, x.shape[1:-1])) + (slice(None),)]


@pytest.mark.parametrize("x_shape, pool_size, strides, padding", POOL_CASES)
def test_max_pool_vjp_ties_go_to_first_max(x_shape, pool_size, strides, padding):
    rng = rng_for("max_pool_ties", x_shape, pool_size, strides, padding)
    x = rng.integers(0, 3, size=x_shape).astype(np.float64)  # many ties
    y = rt.max_pool(x, pool_size, strides, padding, "p")
    w = normal(rng, *y.shape)
    np.testing.assert_allclose(rt.max_pool_vjp(x, y, w, pool_size, strides, padding),
                               _max_pool_vjp_loops(x, w, pool_size, strides, padding), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("x_shape, pool_size, strides, padding", POOL_CASES)
def test_avg_pool_vjp(x_shape, pool_size, strides, padding):
    rng = rng_for("avg_pool", x_shape, pool_size, strides, padding)
    x = normal(rng, *x_shape)
    w = normal(rng, *rt.avg_pool(x, pool_size, strides, padding, "p").shape)
    g = rt.avg_pool_vjp(x.shape, x.dtype, w, pool_size, strides, padding)
    check(g, numeric_grad(lambda: [rt.avg_pool(x, pool_size, strides, padding, "p")], [w], x))
    assert rt.avg_pool_vjp(x.shape, np.float32, w.astype(np.float32), pool_size, strides, padding).dtype == np.float32


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pool_vjps(rank, keepdims):
    rng = rng_for("global", rank, keepdims)
    x = normal(rng, *(2, 4, 3, 5)[:rank + 1], 3)
    axes = tuple(range(1, rank + 1))
    for name, reduce in (("max", np.max), ("avg", np.mean)):
        y = reduce(x, axis=axes, keepdims=keepdims)
        w = normal(rng, *y.shape)
        if name == "max":
            g = rt.global_max_pool_vjp(x, y, w, rank, keepdims)
            g32 = rt.global_max_pool_vjp(*f32(x, y, w), rank, keepdims)
        else:
            g = rt.global_avg_pool_vjp(x.shape, w, rank, keepdims)
            g32 = rt.global_avg_pool_vjp(x.shape, w.astype(np.float32), rank, keepdims)
        check(g, numeric_grad(lambda: [reduce(x, axis=axes, keepdims=keepdims)], [w], x))
        assert g32.dtype == np.float32


def test_global_max_pool_vjp_splits_ties():
    x = np.array([[[1.0, 5.0], [3.0, 5.0], [3.0, 2.0], [0.0, 5.0]]])  # (1, 4, 2)
    g = rt.global_max_pool_vjp(x, x.max(axis=1), np.array([[6.0, 9.0]]), 1, False)
    np.testing.assert_array_equal(g, [[[0, 3], [3, 3], [3, 0], [0, 3]]])


# ---- merges, reshape, dropout --------------------------------------------------------------------
def test_concat_vjp():
    rng = rng_for("concat")
    xs = [normal(rng, 2, n, 3) for n in (1, 4, 2)]
    w = normal(rng, 2, 7, 3)
    grads = rt.concat_vjp(w, [1, 4, 2], 1)
    for x, g in zip(xs, grads):
        check(g, numeric_grad(lambda: [np.concatenate(xs, axis=1)], [w], x))
    assert rt.concat_vjp(w.astype(np.float32), [2, 1], -1)[0].dtype == np.float32


@pytest.mark.parametrize("small", [(3, 4), (1, 4), (2, 1, 4), (4,), (1, 1, 1), (), (2, 3, 4), (2, 3, 1)])
def test_unbroadcast(small):
    rng = rng_for("unbroadcast", small)
    a = normal(rng, *small)
    w = normal(rng, 2, 3, 4)
    g = rt.unbroadcast(w, small)
    check(np.asarray(g), numeric_grad(lambda: [np.broadcast_to(a, w.shape)], [w], a))
    assert rt.unbroadcast(w.astype(np.float32), small).dtype == np.float32


ELEMENTWISE = {
    "add": lambda xs: sum(xs[1:], xs[0]),
    "subtract": lambda xs: xs[0] - xs[1],
    "multiply": lambda xs: math.prod(xs[1:], start=xs[0]),
    "average": lambda xs: sum(xs[1:], xs[0]) / len(xs),
    "maximum": lambda xs: np.maximum.reduce(np.broadcast_arrays(*xs)),
    "minimum": lambda xs: np.minimum.reduce(np.broadcast_arrays(*xs)),
}
SHAPES = [[(2, 3, 4), (2, 3, 4)], [(2, 3, 4), (3, 4)], [(2, 1, 4), (2, 3, 1)], [(2, 3), (2, 3), (1, 3)]]


@pytest.mark.parametrize("op, shapes", [(op, shapes) for op in sorted(ELEMENTWISE) for shapes in SHAPES
                                        if op != "subtract" or len(shapes) == 2])  # subtract: 2 inputs
def test_elementwise_vjp(op, shapes):
    rng = rng_for("elementwise", op, shapes)
    xs = [normal(rng, *s) for s in shapes]
    fn = ELEMENTWISE[op]
    y = fn(xs)
    w = normal(rng, *y.shape)
    grads = rt.elementwise_vjp(op, xs, y, w)
    assert len(grads) == len(xs)
    for x, g in zip(xs, grads):
        check(np.asarray(g), numeric_grad(lambda: [fn(xs)], [w], x))
    xs32 = f32(*xs)
    assert all(g.dtype == np.float32 for g in rt.elementwise_vjp(op, xs32, fn(xs32), w.astype(np.float32)))


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_elementwise_max_min_ties_go_to_first(op):
    a = np.array([1.0, 2.0, 3.0, 2.0])
    b = np.array([1.0, 1.0, 3.0, 3.0])
    c = np.array([0.0, 2.0, 3.0, 3.0])
    fn = ELEMENTWISE[op]
    gy = np.array([1.0, 2.0, 4.0, 8.0])
    ga, gb = rt.elementwise_vjp(op, [a, b], fn([a, b]), gy)
    np.testing.assert_array_equal(ga + gb, gy)  # nothing lost or doubled
    np.testing.assert_array_equal(ga != 0, (a >= b) if op == "maximum" else (a <= b))
    grads = rt.elementwise_vjp(op, [c, b, a], fn([c, b, a]), gy)
    np.testing.assert_array_equal(sum(grads), gy)
    owner = np.argmax(np.stack([c, b, a]) == fn([c, b, a]), axis=0)  # first input attaining y
    for i, g in enumerate(grads):
        np.testing.assert_array_equal(g, np.where(owner == i, gy, 0))


def test_reshape_vjp():
    rng = rng_for("reshape")
    x = normal(rng, 2, 3, 4)
    w = normal(rng, 2, 12)
    check(rt.reshape_vjp(x.shape, w), numeric_grad(lambda: [x.reshape(2, -1)], [w], x))


def test_dropout_vjp():
    rng = rng_for("dropout_vjp")
    x = normal(rng, 3, 5)
    _, mask = rt.dropout_train(x, 0.4, rt.DropoutStream(1))
    w = normal(rng, 3, 5)
    check(rt.dropout_vjp(mask, w), numeric_grad(lambda: [x * mask], [w], x))


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.75])
def test_dropout_train_statistics(rate):
    x = np.full((200, 500), 2.0, np.float32)
    y, mask = rt.dropout_train(x, rate, rt.DropoutStream(42))
    assert y.dtype == mask.dtype == np.float32
    assert abs((y == 0).mean() - rate) < 0.01
    assert abs(y.mean() - 2.0) < 0.05
    np.testing.assert_array_equal(np.unique(mask), [0, np.float32(1 / (1 - rate))])
    np.testing.assert_array_equal(y, x * mask)
    y2, _ = rt.dropout_train(x, rate, rt.DropoutStream(42))
    np.testing.assert_array_equal(y, y2)  # same seed, same mask


def test_dropout_train_edge_rates():
    x = np.arange(6.0).reshape(2, 3)
    y, mask = rt.dropout_train(x, 0.0, rt.DropoutStream(0))
    np.testing.assert_array_equal(y, x)
    y, mask = rt.dropout_train(x, 1.0, rt.DropoutStream(0))
    assert not y.any() and not mask.any()


# ---- LSTM ----------------------------------------------------------------------------------------
ACTIVATION_PAIRS = [("tanh", "sigmoid"), ("relu", "hard_sigmoid"), ("elu", "softmax"), ("softmax", "sigmoid")]


def lstm_weights(rng, d, u, scale=0.6):
    return normal(rng, d, 4 * u, scale=scale), normal(rng, u, 4 * u, scale=scale), normal(rng, 4 * u, scale=0.3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("acts", ACTIVATION_PAIRS)
@pytest.mark.parametrize("return_sequences, go_backwards, use_bias",
                         list(itertools.product([False, True], [False, True], [True, False])))
def test_lstm_train_matches_lstm_exactly(dtype, acts, return_sequences, go_backwards, use_bias):
    rng = rng_for("lstm_fwd", acts, return_sequences, go_backwards)
    x = normal(rng, 3, 5, 4).astype(dtype)
    k, r, b = (a.astype(dtype) for a in lstm_weights(rng, 4, 3))
    b = b if use_bias else None
    expected = rt.lstm(x, k, r, b, *acts, return_sequences, go_backwards)
    *got, cache = rt.lstm_train(x, k, r, b, *acts, return_sequences, go_backwards)
    for e, g in zip(expected, got):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, e)
    saved = ("xs", "s", "h", "ac") + (() if acts == ("tanh", "sigmoid") else ("z",))
    assert all(cache[key].dtype == dtype for key in saved)


def test_lstm_default_gates_give_the_gate_by_gate_bits():
    # tanh/sigmoid gates run on halved weights, one tanh per step: outputs and cache must be the
    # bits of the same feature-major recurrence on the true weights with the runtime's sigmoid,
    # gate by gate
    rng = rng_for("lstm_halves")
    n, steps, d, u = 3, 6, 4, 5
    x = normal(rng, n, steps, d).astype(np.float32)
    k, r, b = (a.astype(np.float32) for a in lstm_weights(rng, d, u))
    sigmoid = rt._gate_activation("sigmoid")
    order = rt._lstm_gate_order(u)  # rows o, i, f, c~
    xs = np.concatenate([x.transpose(1, 0, 2), np.ones((steps, n, 1), np.float32)], axis=2).reshape(-1, d + 1)
    w = np.concatenate([k[:, order].T, b[order][:, None]], axis=1)
    projected = (w @ xs.T).reshape(4 * u, steps, n)
    rows = np.ascontiguousarray(r[:, order].T)
    h, c = np.zeros((u, n), np.float32), np.zeros((u, n), np.float32)
    gs, hs = [], []
    for t in range(steps):
        z = rows @ h + projected[:, t]
        g = np.empty_like(z)
        sigmoid(z[:3 * u], g[:3 * u])
        g[3 * u:] = np.tanh(z[3 * u:])
        c = g[u:2 * u] * g[3 * u:] + g[2 * u:3 * u] * c
        h = g[:u] * np.tanh(c)
        gs.append(g), hs.append(h)
    out, h_last, c_last, cache = rt.lstm_train(x, k, r, b, "tanh", "sigmoid", True, False)
    np.testing.assert_array_equal(out, np.stack(hs).transpose(2, 0, 1))
    np.testing.assert_array_equal(c_last, c.T)
    np.testing.assert_array_equal(cache["s"][:steps, :4 * u], np.stack(gs))


@pytest.mark.parametrize("acts", ACTIVATION_PAIRS)
@pytest.mark.parametrize("return_sequences, go_backwards, with_states",
                         list(itertools.product([False, True], [False, True], [False, True])))
def test_lstm_vjp(acts, return_sequences, go_backwards, with_states):
    rng = rng_for("lstm", acts, return_sequences, go_backwards, with_states)
    n, steps, d, u = 2, 4, 3, 3
    x = normal(rng, n, steps, d)
    k, r, b = lstm_weights(rng, d, u)
    w_out = normal(rng, *((n, steps, u) if return_sequences else (n, u)))
    w_h, w_c = (normal(rng, n, u), normal(rng, n, u)) if with_states else (None, None)

    def loss():
        out, h, c = rt.lstm(x, k, r, b, *acts, return_sequences, go_backwards)
        return [out, h, c]

    ws = [w_out, w_h, w_c] if with_states else [w_out]
    _, _, _, cache = rt.lstm_train(x, k, r, b, *acts, return_sequences, go_backwards)
    gx, gk, gr, gb = rt.lstm_vjp(cache, k, r, w_out, w_h, w_c, True, True)
    check(gx, numeric_grad(loss, ws, x))
    check(gk, numeric_grad(loss, ws, k))
    check(gr, numeric_grad(loss, ws, r))
    check(gb, numeric_grad(loss, ws, b))
    none_x, _, _, none_b = rt.lstm_vjp(cache, k, r, w_out, w_h, w_c, False, False)
    assert none_x is None and none_b is None

    x32, k32, r32, b32, w32 = f32(x, k, r, b, w_out)
    *_, cache32 = rt.lstm_train(x32, k32, r32, b32, *acts, return_sequences, go_backwards)
    states32 = f32(w_h, w_c) if with_states else (None, None)
    assert all(g.dtype == np.float32 for g in rt.lstm_vjp(cache32, k32, r32, w32, *states32, True, True))


@pytest.mark.parametrize("go_backwards", [False, True])
def test_lstm_input_dropout_one_mask_for_every_step_and_its_gradient(go_backwards):
    # Keras's LSTM(dropout=rate): one (batch, features) mask, cached for the whole sequence
    rng = rng_for("lstm_dropout", go_backwards)
    n, steps, d, u = 3, 4, 5, 2
    x = normal(rng, n, steps, d)
    k, r, b = lstm_weights(rng, d, u)
    w_out = normal(rng, n, steps, u)
    stream = rt.DropoutStream(7)
    *_, cache = rt.lstm_train(x, k, r, b, "tanh", "sigmoid", True, go_backwards, dropout=0.4, rng=stream)
    mask = cache["input_mask"]
    assert mask.shape == (n, d) and stream.counter == n * d
    np.testing.assert_array_equal(mask, rt.dropout_train(np.ones((n, d)), 0.4, rt.DropoutStream(7))[1])
    assert set(np.unique(mask)) <= {0.0, 1 / 0.6} and 0 < np.count_nonzero(mask) < mask.size

    def loss():
        return [rt.lstm(x * mask[:, None, :], k, r, b, "tanh", "sigmoid", True, go_backwards)[0]]
    gx, gk, gr, gb = rt.lstm_vjp(cache, k, r, w_out, None, None, True, True)
    check(gx, numeric_grad(loss, [w_out], x))
    check(gk, numeric_grad(loss, [w_out], k))
    check(gr, numeric_grad(loss, [w_out], r))
    # Keras applies it only for 0 < rate < 1: rate 1 keeps the inputs and draws nothing
    *_, kept = rt.lstm_train(x, k, r, b, "tanh", "sigmoid", True, go_backwards, dropout=1.0, rng=stream)
    assert kept["input_mask"] is None and stream.counter == n * d


def test_lstm_vjp_states_only():
    """Only the returned states used (g_output None): h and c gradients still reach every weight."""
    rng = rng_for("lstm_states")
    x = normal(rng, 2, 3, 2)
    k, r, b = lstm_weights(rng, 2, 2)
    w_c = normal(rng, 2, 2)
    *_, cache = rt.lstm_train(x, k, r, b, "tanh", "sigmoid", True, False)
    ws = [w_c]
    gx, gk, gr, gb = rt.lstm_vjp(cache, k, r, None, None, w_c, True, True)

    def loss():
        return [rt.lstm(x, k, r, b, "tanh", "sigmoid", True, False)[2]]

    check(gx, numeric_grad(loss, ws, x))
    check(gr, numeric_grad(loss, ws, r))


def test_lstm_single_step_is_one_keras_cell():
    # one step from zero states: c = i c~, h = o tanh(c), with Keras's gate order i, f, c, o
    rng = rng_for("lstm_one_step")
    x = normal(rng, 3, 1, 4)
    k, r, b = lstm_weights(rng, 4, 2)
    z = x[:, 0] @ k + b
    sig = lambda v: 1 / (1 + np.exp(-v))
    i, o, cand = sig(z[:, :2]), sig(z[:, 6:]), np.tanh(z[:, 4:6])
    out, h, c = rt.lstm(x, k, r, b, "tanh", "sigmoid", True, False)
    np.testing.assert_allclose(c, i * cand, rtol=1e-12)
    np.testing.assert_allclose(h, o * np.tanh(i * cand), rtol=1e-12)
    np.testing.assert_array_equal(out[:, 0], h)


@pytest.mark.parametrize("acts", ACTIVATION_PAIRS)
def test_lstm_empty_batch(acts):
    rng = rng_for("lstm_empty", acts)
    k, r, b = lstm_weights(rng, 4, 3)
    x = np.zeros((0, 5, 4))
    out, h, c, cache = rt.lstm_train(x, k, r, b, *acts, True, False)
    assert out.shape == (0, 5, 3) and h.shape == c.shape == (0, 3)
    gx, gk, gr, gb = rt.lstm_vjp(cache, k, r, np.zeros((0, 5, 3)), None, None, True, True)
    assert gx.shape == (0, 5, 4)
    for g, w in [(gk, k), (gr, r), (gb, b)]:
        assert g.shape == w.shape and not g.any()
