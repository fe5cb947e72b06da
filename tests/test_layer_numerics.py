"""Numerical tests of gcomp's layers against hand-written NumPy references.

Every reference here is written from Keras 3's documented formulas, independently of gcomp's
NumPy runtime (templates/numpy/prelude.py): activations, Dense, Embedding, LSTM (explicit step
loop), convolutions and pooling (explicit nested loops), merges, initializer statistics and
parameter counts.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from gcomp import Input, Model, Sequential, layers
from gcomp.errors import LayerConfigError
from gcomp.utils import set_random_seed

RTOL = ATOL = 1e-5


def close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=RTOL, atol=ATOL)


def rand(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# ---- reference activations (float64, Keras 3 formulas) ----------------------------------------
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1.0))


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


REF_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": _sigmoid,
    "softmax": _softmax,
    "tanh": np.tanh,
    "linear": lambda x: x,
    "elu": _elu,
    "selu": lambda x: SELU_SCALE * _elu(x, SELU_ALPHA),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "swish": lambda x: x * _sigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
    "gelu": _gelu,
    "hard_sigmoid": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "exponential": np.exp,
}
ACT_NAMES = sorted(REF_ACTIVATIONS)


def run(inputs, outputs, x, **kw):
    return Model(inputs, outputs).predict(x, **kw)


# ---- Dense ------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("activation", ACT_NAMES)
def test_dense_activations(activation, use_bias):
    x = rand(8, 4, seed=1, scale=1.5)
    k = rand(4, 6, seed=2, scale=0.8)
    b = rand(6, seed=3, scale=0.5)
    inp = Input((4,))
    layer = layers.Dense(6, activation=activation, use_bias=use_bias)
    model = Model(inp, layer(inp))
    layer.set_weights([k, b] if use_bias else [k])
    pre = x.astype(np.float64) @ k + (b if use_bias else 0.0)
    # pre-activations span the interesting regions (both signs, beyond hard_sigmoid's knees)
    assert pre.min() < -3 and pre.max() > 3
    close(model.predict(x), REF_ACTIVATIONS[activation](pre))


@pytest.mark.parametrize("activation", ["linear", "relu", "softmax"])
def test_dense_rank3_input(activation):
    x = rand(3, 4, 5, seed=4)
    k, b = rand(5, 2, seed=5), rand(2, seed=6)
    inp = Input((4, 5))
    layer = layers.Dense(2, activation=activation)
    out = layer(inp)
    assert out.shape == (None, 4, 2)
    model = Model(inp, out)
    layer.set_weights([k, b])
    ref = np.einsum("ntd,du->ntu", x.astype(np.float64), k) + b
    close(model.predict(x), REF_ACTIVATIONS[activation](ref))


@pytest.mark.parametrize("activation", ACT_NAMES)
def test_activation_layer(activation):
    x = np.linspace(-5, 5, 24, dtype=np.float32).reshape(2, 3, 4)
    inp = Input((3, 4))
    close(run(inp, layers.Activation(activation)(inp), x), REF_ACTIVATIONS[activation](x.astype(np.float64)))


def test_activations_stable_at_extremes():
    x = np.array([[-1e4, -100.0, 100.0, 1e4]], np.float32)
    inp = Input((4,))
    names = ["sigmoid", "softplus", "tanh", "softsign", "elu", "selu", "gelu", "swish", "softmax"]
    got = run(inp, [layers.Activation(n)(inp) for n in names], x)
    expected = {
        "sigmoid": [0.0, 0.0, 1.0, 1.0],
        "softplus": [0.0, 0.0, 100.0, 1e4],
        "tanh": [-1.0, -1.0, 1.0, 1.0],
        "softsign": [-1e4 / (1 + 1e4), -100 / 101, 100 / 101, 1e4 / (1 + 1e4)],
        "elu": [-1.0, -1.0, 100.0, 1e4],
        "selu": [-SELU_SCALE * SELU_ALPHA, -SELU_SCALE * SELU_ALPHA, SELU_SCALE * 100, SELU_SCALE * 1e4],
        "gelu": [0.0, 0.0, 100.0, 1e4],
        "swish": [0.0, 0.0, 100.0, 1e4],
        "softmax": [0.0, 0.0, 0.0, 1.0],
    }
    for name, y in zip(names, got):
        assert np.isfinite(y).all(), name
        close(y, [expected[name]])


def test_hard_sigmoid_is_keras3():
    """Keras 3: relu6(x + 3) / 6; not Keras 2's 0.2 x + 0.5."""
    x = np.array([[-4.0, -3.0, -2.0, 0.0, 1.5, 2.9, 3.0, 4.0]], np.float32)
    inp = Input((8,))
    close(run(inp, layers.Activation("hard_sigmoid")(inp), x),
          [[0.0, 0.0, 1 / 6, 0.5, 0.75, 5.9 / 6, 1.0, 1.0]])


def test_eager_layer_call_matches_reference():
    """Calling a layer on an array runs it at once (as Keras eager does)."""
    x = rand(3, 4, seed=9)
    layer = layers.Dense(2, activation="tanh")
    layer(Input((4,)))
    k, b = rand(4, 2, seed=10), rand(2, seed=11)
    layer.set_weights([k, b])
    close(layer(x), np.tanh(x.astype(np.float64) @ k + b))


def test_relu_layer():
    x = rand(3, 5, seed=7)
    inp = Input((5,))
    close(run(inp, layers.ReLU()(inp), x), np.maximum(x, 0))


def test_relu_layer_with_max_value_6_is_relu6():
    x = rand(3, 5, seed=7) * 10
    inp = Input((5,))
    close(run(inp, layers.ReLU(max_value=6.0)(inp), x), np.clip(x, 0, 6))


def _keras_relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras's ReLU layer piecewise (float64), as its code computes it: its docstring says x for
    threshold <= x, but the code keeps x only where x > threshold (0 at the threshold itself)."""
    x = x.astype(np.float64)
    top = np.inf if max_value is None else max_value
    return np.where(x >= top, top, np.where(x > threshold, x, negative_slope * (x - threshold)))


@pytest.mark.parametrize("kwargs", [dict(max_value=1.0), dict(negative_slope=0.1), dict(threshold=0.5),
                                    dict(max_value=2.0, negative_slope=0.2, threshold=0.5),
                                    dict(max_value=6.0, negative_slope=0.05)])
def test_relu_layer_options_follow_kerass_formula(kwargs):
    x = rand(4, 25, seed=11) * 3
    x[0, :4] = [0.0, 0.5, 1.0, 2.0]  # on the threshold and max_value themselves
    inp = Input((25,))
    close(run(inp, layers.ReLU(**kwargs)(inp), x), _keras_relu(x, **kwargs))


def test_leaky_relu_layer_default_slope_is_kerass_0_3_and_alpha_names_it_too():
    x = rand(3, 8, seed=12)
    inp = Input((8,))
    close(run(inp, layers.LeakyReLU()(inp), x), np.where(x >= 0, x, 0.3 * x))
    close(run(inp, layers.LeakyReLU(alpha=0.01)(inp), x), np.where(x >= 0, x, 0.01 * x))
    assert layers.LeakyReLU(0.05).get_config()["negative_slope"] == 0.05


def test_softmax_layer_normalizes_the_last_axis():
    x = rand(2, 3, 5, seed=13)
    inp = Input((3, 5))
    e = np.exp(x - x.max(-1, keepdims=True))
    close(run(inp, layers.Softmax()(inp), x), e / e.sum(-1, keepdims=True))


@pytest.mark.parametrize("make, message", [
    (lambda: layers.ReLU(max_value=-1.0, name="clipped"), "max_value of a ReLU layer cannot be a negative value"),
    (lambda: layers.ReLU(threshold=-0.5, name="clipped"), "threshold of a ReLU layer cannot be None or a negative"),
    (lambda: layers.ReLU(negative_slope=None, name="clipped"), "negative_slope of a ReLU layer cannot be None"),
    (lambda: layers.LeakyReLU(-0.1, name="clipped"), "negative_slope of a LeakyReLU layer cannot be None or a"),
    (lambda: layers.Softmax(axis=1, name="clipped"), "Softmax(axis=1) is not supported by gcomp yet"),
])
def test_relu_and_softmax_arguments_keras_refuses_or_gcomp_lacks_name_the_layer(make, message):
    with pytest.raises(LayerConfigError) as e:
        make()
    assert message in str(e.value) and "clipped" in str(e.value)


# ---- Embedding --------------------------------------------------------------------------------
@pytest.mark.parametrize("index_shape", [(6,), (2, 3)])
def test_embedding_lookup(index_shape):
    vocab, dim = 10, 4
    table = rand(vocab, dim, seed=8)
    idx = np.random.default_rng(9).integers(0, vocab, (3,) + index_shape).astype(np.int32)
    idx.flat[0], idx.flat[1] = 0, vocab - 1  # both ends of the table
    inp = Input(index_shape, dtype="int32")
    layer = layers.Embedding(vocab, dim)
    out = layer(inp)
    assert out.shape == (None,) + index_shape + (dim,)
    model = Model(inp, out)
    assert layer.get_weights()[0].shape == (vocab, dim)  # Keras layout (input_dim, output_dim)
    layer.set_weights([table])
    ref = np.empty((3,) + index_shape + (dim,), np.float32)
    for pos in np.ndindex(*idx.shape):
        ref[pos] = table[idx[pos]]
    close(model.predict(idx), ref)


# ---- LSTM -------------------------------------------------------------------------------------
def lstm_ref(x, kernel, recurrent, bias, go_backwards=False):
    """Keras LSTM step by step; returns (sequence in processing order, last h, last c)."""
    x = x.astype(np.float64)
    n, steps, _ = x.shape
    u = recurrent.shape[0]
    h, c = np.zeros((n, u)), np.zeros((n, u))
    seq = []
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    for t in order:
        z = x[:, t] @ kernel + h @ recurrent
        if bias is not None:
            z = z + bias
        i = _sigmoid(z[:, :u])
        f = _sigmoid(z[:, u:2 * u])
        g = np.tanh(z[:, 2 * u:3 * u])
        o = _sigmoid(z[:, 3 * u:])
        c = f * c + i * g
        h = o * np.tanh(c)
        seq.append(h)
    return np.stack(seq, axis=1), h, c


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_lstm(return_sequences, return_state, go_backwards, use_bias):
    n, steps, d, u = 3, 5, 4, 3
    x = rand(n, steps, d, seed=10)
    kernel = rand(d, 4 * u, seed=11, scale=0.6)
    recurrent = rand(u, 4 * u, seed=12, scale=0.6)
    bias = rand(4 * u, seed=13, scale=0.4)
    inp = Input((steps, d))
    layer = layers.LSTM(u, return_sequences=return_sequences, return_state=return_state,
                        go_backwards=go_backwards, use_bias=use_bias)
    out = layer(inp)
    model = Model(inp, out)
    assert [w.shape for w in layer.get_weights()] == [(d, 4 * u), (u, 4 * u), (4 * u,)][:3 if use_bias else 2]
    layer.set_weights([kernel, recurrent, bias] if use_bias else [kernel, recurrent])
    seq, h, c = lstm_ref(x, kernel, recurrent, bias if use_bias else None, go_backwards)
    y_ref = seq if return_sequences else h
    got = model.predict(x)
    if return_state:
        assert isinstance(got, list) and len(got) == 3
        y, h_got, c_got = got
        close(h_got, h)
        close(c_got, c)
    else:
        y = got
    assert y.shape == y_ref.shape
    close(y, y_ref)


def gru_ref(x, kernel, recurrent, bias, reset_after=True, go_backwards=False):
    """Keras GRU step by step (gates z, r, h); returns (sequence in processing order, last h)."""
    x = x.astype(np.float64)
    n, steps, _ = x.shape
    u = recurrent.shape[0]
    b_in, b_rec = (np.zeros(3 * u), np.zeros(3 * u)) if bias is None else (bias[0], bias[1]) if reset_after \
        else (bias, np.zeros(3 * u))
    h, seq = np.zeros((n, u)), []
    for t in (range(steps - 1, -1, -1) if go_backwards else range(steps)):
        mx = x[:, t] @ kernel + b_in
        mh = h @ recurrent + b_rec
        z = _sigmoid(mx[:, :u] + mh[:, :u])
        r = _sigmoid(mx[:, u:2 * u] + mh[:, u:2 * u])
        inner = r * mh[:, 2 * u:] if reset_after else (r * h) @ recurrent[:, 2 * u:]
        h = z * h + (1 - z) * np.tanh(mx[:, 2 * u:] + inner)
        seq.append(h)
    return np.stack(seq, axis=1), h


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences, return_state", [(False, False), (True, True)])
def test_gru(return_sequences, return_state, go_backwards, reset_after, use_bias):
    n, steps, d, u = 3, 5, 4, 3
    x = rand(n, steps, d, seed=30)
    kernel, recurrent = rand(d, 3 * u, seed=31, scale=0.6), rand(u, 3 * u, seed=32, scale=0.6)
    bias = rand(*((2, 3 * u) if reset_after else (3 * u,)), seed=33, scale=0.4)
    inp = Input((None, d))
    layer = layers.GRU(u, return_sequences=return_sequences, return_state=return_state, go_backwards=go_backwards,
                       reset_after=reset_after, use_bias=use_bias)
    model = Model(inp, layer(inp))
    assert [w.shape for w in layer.get_weights()] == [(d, 3 * u), (u, 3 * u), bias.shape][:3 if use_bias else 2]
    layer.set_weights([kernel, recurrent, bias] if use_bias else [kernel, recurrent])
    seq, h = gru_ref(x, kernel, recurrent, bias if use_bias else None, reset_after, go_backwards)
    got = model.predict(x)
    got = got if isinstance(got, list) else [got]
    close(got[0], seq if return_sequences else h)
    if return_state:
        assert len(got) == 2
        close(got[1], h)


def test_gru_initializers_and_refusals():
    """Keras's defaults: glorot_uniform kernel, orthogonal recurrent kernel, zero biases (2 rows with
    reset_after); recurrent_dropout is refused by name rather than ignored."""
    inp = Input((4, 6))
    layer = layers.GRU(5)
    Model(inp, layer(inp))
    kernel, recurrent, bias = layer.get_weights()
    assert np.abs(kernel).max() <= math.sqrt(6 / (6 + 15)) and not bias.any() and bias.shape == (2, 15)
    close(recurrent.T @ recurrent, np.eye(15)[:15, :15] if recurrent.shape[0] >= 15 else recurrent.T @ recurrent)
    close(recurrent @ recurrent.T, np.eye(5))
    with pytest.raises(LayerConfigError, match='GRU "g": recurrent_dropout=0.2 is not supported'):
        layers.GRU(3, recurrent_dropout=0.2, name="g")


MERGES = {"concat": lambda f, b: [np.concatenate([f, b], -1)], "sum": lambda f, b: [f + b],
          "mul": lambda f, b: [f * b], "ave": lambda f, b: [(f + b) / 2], None: lambda f, b: [f, b]}


@pytest.mark.parametrize("merge_mode", sorted(MERGES, key=str))
@pytest.mark.parametrize("return_sequences, return_state", [(False, False), (True, False), (True, True)])
def test_bidirectional_lstm(merge_mode, return_sequences, return_state):
    """A forward LSTM and one reading from the end (its sequence flipped back into input order),
    merged; the states follow: forward h, c, then backward h, c. Weights: forward's, then backward's."""
    n, steps, d, u = 3, 5, 4, 3
    x = rand(n, steps, d, seed=20)
    weights = [rand(d, 4 * u, seed=21, scale=0.6), rand(u, 4 * u, seed=22, scale=0.6), rand(4 * u, seed=23, scale=0.4),
               rand(d, 4 * u, seed=24, scale=0.6), rand(u, 4 * u, seed=25, scale=0.6), rand(4 * u, seed=26, scale=0.4)]
    inp = Input((None, d))
    layer = layers.Bidirectional(layers.LSTM(u, return_sequences=return_sequences, return_state=return_state),
                                 merge_mode=merge_mode)
    model = Model(inp, layer(inp))
    layer.set_weights(weights)
    seq_f, h_f, c_f = lstm_ref(x, *weights[:3])
    seq_b, h_b, c_b = lstm_ref(x, *weights[3:], go_backwards=True)
    y_f, y_b = (seq_f, seq_b[:, ::-1]) if return_sequences else (h_f, h_b)
    expected = MERGES[merge_mode](y_f, y_b) + ([h_f, c_f, h_b, c_b] if return_state else [])
    got = model.predict(x)
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        close(g, e)
    assert [w.path for w in layer.weights] == [f"{layer.name}/{part}_{layer.forward_layer.name[8:]}/{role}"
                                               for part in ("forward", "backward")
                                               for role in ("kernel", "recurrent_kernel", "bias")]


def test_bidirectional_gru_concatenates_the_directions():
    n, steps, d, u = 2, 6, 3, 4
    x = rand(n, steps, d, seed=34)
    inp = Input((steps, d))
    layer = layers.Bidirectional(layers.GRU(u, return_sequences=True, reset_after=False))
    model = Model(inp, layer(inp))
    w = layer.get_weights()
    assert [a.shape for a in w] == [(d, 3 * u), (u, 3 * u), (3 * u,)] * 2
    w[2], w[5] = rand(3 * u, seed=35), rand(3 * u, seed=36)
    layer.set_weights(w)
    forward = gru_ref(x, *w[:3], reset_after=False)[0]
    backward = gru_ref(x, *w[3:], reset_after=False, go_backwards=True)[0][:, ::-1]
    close(model.predict(x), np.concatenate([forward, backward], -1))


def test_bidirectional_layer_gcomp_and_keras_refuse():
    with pytest.raises(LayerConfigError, match='Bidirectional "bi": wraps an LSTM or a GRU'):
        layers.Bidirectional(layers.Dense(3), name="bi")
    with pytest.raises(LayerConfigError, match="merge_mode must be one of"):
        layers.Bidirectional(layers.LSTM(3), merge_mode="max", name="bi")
    with pytest.raises(LayerConfigError, match="different go_backwards values, got go_backwards=True for both"):
        layers.Bidirectional(layers.LSTM(3, go_backwards=True), name="bi")
    with pytest.raises(LayerConfigError, match="the same return_sequences"):
        layers.Bidirectional(layers.LSTM(3), backward_layer=layers.LSTM(3, go_backwards=True, return_sequences=True),
                             name="bi")


def test_bidirectional_frozen_and_eager():
    """trainable=False on the wrapper freezes both copies; calling it on an array runs it once."""
    layer = layers.Bidirectional(layers.LSTM(2), merge_mode="sum")
    x = rand(2, 3, 4, seed=27)
    y = layer(x)
    w = layer.get_weights()
    expected = lstm_ref(x, *w[:3])[1] + lstm_ref(x, *w[3:], go_backwards=True)[1]
    close(y, expected)
    layer.trainable = False
    assert not layer.trainable_weights and len(layer.non_trainable_weights) == 6


def test_lstm_go_backwards_sequence_is_reversed_processing_order():
    """The last element of the returned sequence (processing order) is the final state, and it
    differs from running forwards: the input is really read from the end."""
    n, steps, d, u = 2, 4, 3, 2
    x = rand(n, steps, d, seed=14)
    k, r, b = rand(d, 4 * u, seed=15), rand(u, 4 * u, seed=16, scale=0.5), rand(4 * u, seed=17)
    inp = Input((steps, d))
    back = layers.LSTM(u, return_sequences=True, go_backwards=True)
    fwd = layers.LSTM(u, return_sequences=True)
    model = Model(inp, [back(inp), fwd(inp)])
    back.set_weights([k, r, b])
    fwd.set_weights([k, r, b])
    yb, yf = model.predict(x)
    seq_rev_input, _, _ = lstm_ref(x[:, ::-1], k, r, b)
    close(yb, seq_rev_input)
    assert not np.allclose(yb[:, -1], yf[:, -1])


def test_lstm_variable_length_timesteps():
    d, u = 2, 3
    k, r, b = rand(d, 4 * u, seed=22), rand(u, 4 * u, seed=23, scale=0.5), rand(4 * u, seed=24)
    inp = Input((None, d))
    layer = layers.LSTM(u, return_sequences=True, return_state=True)
    model = Model(inp, layer(inp))
    layer.set_weights([k, r, b])
    for steps in (1, 4, 7):
        x = rand(2, steps, d, seed=steps)
        ref = lstm_ref(x, k, r, b)
        for got, want in zip(model.predict(x), ref):
            close(got, want)


def test_lstm_in_sequential_with_embedding():
    vocab, dim, u, steps = 7, 3, 2, 4
    table = rand(vocab, dim, seed=18)
    k, r, b = rand(dim, 4 * u, seed=19), rand(u, 4 * u, seed=20), rand(4 * u, seed=21)
    model = Sequential([Input((steps,), dtype="int32"), layers.Embedding(vocab, dim), layers.LSTM(u)])
    model.set_weights([table, k, r, b])
    idx = np.array([[0, 1, 2, 6], [5, 5, 3, 0]], np.int32)
    _, h, _ = lstm_ref(table[idx], k, r, b)
    close(model.predict(idx), h)


# ---- convolution ------------------------------------------------------------------------------
def same_pads(n, k, s, d):
    eff = d * (k - 1) + 1
    total = max((math.ceil(n / s) - 1) * s + eff - n, 0)
    return total // 2, total - total // 2


def conv2d_ref(x, kernel, bias, strides, padding, dilation):
    """Direct channels-last convolution; x (N, H, W, C), kernel (kh, kw, C, F)."""
    x = x.astype(np.float64)
    kernel = kernel.astype(np.float64)
    n, hgt, wid, _ = x.shape
    kh, kw, _, filters = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    if padding == "same":
        pads = [same_pads(hgt, kh, sh, dh), same_pads(wid, kw, sw, dw)]
    elif padding == "causal":  # 1D only (used through a height of 1)
        pads = [(0, 0), (dw * (kw - 1), 0)]
    else:
        pads = [(0, 0), (0, 0)]
    xp = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
    out_h = (xp.shape[1] - (dh * (kh - 1) + 1)) // sh + 1
    out_w = (xp.shape[2] - (dw * (kw - 1) + 1)) // sw + 1
    y = np.zeros((n, out_h, out_w, filters))
    for b in range(n):
        for i in range(out_h):
            for j in range(out_w):
                for f in range(filters):
                    acc = 0.0
                    for a in range(kh):
                        for e in range(kw):
                            for ch in range(x.shape[3]):
                                acc += xp[b, i * sh + a * dh, j * sw + e * dw, ch] * kernel[a, e, ch, f]
                    y[b, i, j, f] = acc
    if bias is not None:
        y += bias
    return y


def conv1d_ref(x, kernel, bias, stride, padding, dilation):
    y = conv2d_ref(x[:, None], kernel[None], bias, (1, stride), padding, (1, dilation))
    return y[:, 0]


CONV2D_CASES = [
    # kernel, strides, padding, dilation
    ((3, 3), (1, 1), "valid", (1, 1)),
    ((3, 3), (1, 1), "same", (1, 1)),
    ((3, 3), (2, 2), "valid", (1, 1)),
    ((3, 3), (2, 2), "same", (1, 1)),
    ((2, 2), (1, 1), "same", (1, 1)),  # even kernel: pad after > pad before
    ((2, 3), (2, 3), "same", (1, 1)),
    ((4, 2), (3, 2), "valid", (1, 1)),
    ((3, 3), (1, 1), "valid", (2, 2)),
    ((3, 3), (1, 1), "same", (2, 2)),
    ((2, 3), (1, 1), "same", (3, 1)),
    ((3, 3), (1, 1), "same", (3, 4)),  # effective window (7, 9): the whole image
]


@pytest.mark.parametrize("kernel_size,strides,padding,dilation", CONV2D_CASES)
def test_conv2d(kernel_size, strides, padding, dilation):
    n, hgt, wid, c, f = 2, 7, 9, 2, 3
    x = rand(n, hgt, wid, c, seed=22)
    k = rand(*kernel_size, c, f, seed=23, scale=0.5)
    b = rand(f, seed=24)
    inp = Input((hgt, wid, c))
    layer = layers.Conv2D(f, kernel_size, strides=strides, padding=padding, dilation_rate=dilation)
    out = layer(inp)
    model = Model(inp, out)
    assert layer.get_weights()[0].shape == kernel_size + (c, f)
    layer.set_weights([k, b])
    ref = conv2d_ref(x, k, b, strides, padding, dilation)
    assert out.shape == (None,) + ref.shape[1:]
    if padding == "same":
        assert ref.shape[1:3] == (math.ceil(hgt / strides[0]), math.ceil(wid / strides[1]))
    close(model.predict(x), ref)


@pytest.mark.parametrize("activation,use_bias", [("relu", True), ("tanh", False), ("linear", False)])
def test_conv2d_activation_and_no_bias(activation, use_bias):
    x = rand(2, 7, 9, 3, seed=25)
    k, b = rand(3, 2, 3, 4, seed=26, scale=0.5), rand(4, seed=27)
    inp = Input((7, 9, 3))
    layer = layers.Conv2D(4, (3, 2), padding="same", activation=activation, use_bias=use_bias)
    model = Model(inp, layer(inp))
    layer.set_weights([k, b] if use_bias else [k])
    ref = conv2d_ref(x, k, b if use_bias else None, (1, 1), "same", (1, 1))
    close(model.predict(x), REF_ACTIVATIONS[activation](ref))


CONV1D_CASES = [
    # kernel, stride, padding, dilation
    (3, 1, "valid", 1),
    (3, 1, "same", 1),
    (4, 1, "same", 1),
    (3, 2, "valid", 1),
    (3, 2, "same", 1),
    (4, 3, "same", 1),
    (3, 1, "valid", 2),
    (3, 1, "same", 2),
    (3, 1, "causal", 1),
    (2, 1, "causal", 3),
    (3, 2, "causal", 1),
    (5, 2, "same", 1),
]


@pytest.mark.parametrize("kernel_size,stride,padding,dilation", CONV1D_CASES)
def test_conv1d(kernel_size, stride, padding, dilation):
    n, steps, c, f = 2, 11, 3, 2
    x = rand(n, steps, c, seed=28)
    k, b = rand(kernel_size, c, f, seed=29, scale=0.5), rand(f, seed=30)
    inp = Input((steps, c))
    layer = layers.Conv1D(f, kernel_size, strides=stride, padding=padding, dilation_rate=dilation)
    out = layer(inp)
    model = Model(inp, out)
    assert layer.get_weights()[0].shape == (kernel_size, c, f)
    layer.set_weights([k, b])
    ref = conv1d_ref(x, k, b, stride, padding, dilation)
    assert out.shape == (None,) + ref.shape[1:]
    if padding in ("same", "causal"):
        assert ref.shape[1] == math.ceil(steps / stride)
    close(model.predict(x), ref)


def test_conv1d_causal_does_not_see_the_future():
    x = rand(1, 8, 2, seed=31)
    inp = Input((8, 2))
    model = Model(inp, layers.Conv1D(3, 3, padding="causal", dilation_rate=2)(inp))
    y = model.predict(x)
    x2 = x.copy()
    x2[:, 5:] += 10.0  # changes from step 5 on cannot affect outputs 0..4
    y2 = model.predict(x2)
    close(y2[:, :5], y[:, :5])
    assert not np.allclose(y2[:, 5:], y[:, 5:])


@pytest.mark.parametrize("activation,use_bias", [("relu", True), ("sigmoid", False)])
def test_conv1d_activation_and_no_bias(activation, use_bias):
    x = rand(2, 9, 2, seed=32)
    k, b = rand(3, 2, 4, seed=33), rand(4, seed=34)
    inp = Input((9, 2))
    layer = layers.Conv1D(4, 3, padding="causal", activation=activation, use_bias=use_bias)
    model = Model(inp, layer(inp))
    layer.set_weights([k, b] if use_bias else [k])
    ref = conv1d_ref(x, k, b if use_bias else None, 1, "causal", 1)
    close(model.predict(x), REF_ACTIVATIONS[activation](ref))


# ---- pooling ----------------------------------------------------------------------------------
def pool2d_ref(x, pool, strides, padding, kind):
    """Max or mean over in-bounds elements of each window (Keras "same": smaller half before)."""
    n, hgt, wid, c = x.shape
    (ph, pw), (sh, sw) = pool, strides
    if padding == "same":
        (bh, _), (bw, _) = same_pads(hgt, ph, sh, 1), same_pads(wid, pw, sw, 1)
        out_h, out_w = math.ceil(hgt / sh), math.ceil(wid / sw)
    else:
        bh = bw = 0
        out_h, out_w = (hgt - ph) // sh + 1, (wid - pw) // sw + 1
    y = np.zeros((n, out_h, out_w, c))
    for b in range(n):
        for i in range(out_h):
            for j in range(out_w):
                for ch in range(c):
                    vals = []
                    for a in range(ph):
                        for e in range(pw):
                            r, q = i * sh + a - bh, j * sw + e - bw
                            if 0 <= r < hgt and 0 <= q < wid:
                                vals.append(float(x[b, r, q, ch]))
                    y[b, i, j, ch] = max(vals) if kind == "max" else sum(vals) / len(vals)
    return y


POOL2D_CASES = [
    # pool, strides (None = pool), padding
    ((2, 2), None, "valid"),
    ((2, 2), None, "same"),
    ((3, 3), None, "same"),
    ((3, 3), (1, 1), "same"),
    ((2, 3), (2, 1), "valid"),
    ((3, 2), (2, 2), "same"),
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool,strides,padding", POOL2D_CASES)
def test_pooling2d(kind, pool, strides, padding):
    x = rand(2, 7, 9, 3, seed=35)
    cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
    inp = Input((7, 9, 3))
    out = cls(pool, strides=strides, padding=padding)(inp)
    ref = pool2d_ref(x, pool, strides or pool, padding, kind)
    assert out.shape == (None,) + ref.shape[1:]
    close(run(inp, out, x), ref)


POOL1D_CASES = [(2, None, "valid"), (2, None, "same"), (3, None, "same"), (3, 1, "same"), (3, 2, "valid"),
                (4, 3, "same"), (9, 2, "same")]  # the last window is wider than the input


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool,stride,padding", POOL1D_CASES)
def test_pooling1d(kind, pool, stride, padding):
    x = rand(2, 7, 3, seed=36)
    cls = layers.MaxPooling1D if kind == "max" else layers.AveragePooling1D
    inp = Input((7, 3))
    out = cls(pool, strides=stride, padding=padding)(inp)
    ref = pool2d_ref(x[:, None], (1, pool), (1, stride or pool), padding, kind)[:, 0]
    assert out.shape == (None,) + ref.shape[1:]
    close(run(inp, out, x), ref)


def test_conv2d_same_input_smaller_than_kernel():
    x = rand(1, 2, 3, 1, seed=38)
    k = rand(5, 5, 1, 2, seed=39)
    inp = Input((2, 3, 1))
    layer = layers.Conv2D(2, 5, padding="same", use_bias=False)
    model = Model(inp, layer(inp))
    layer.set_weights([k])
    close(model.predict(x), conv2d_ref(x, k, None, (1, 1), "same", (1, 1)))


def test_conv1d_variable_length():
    k, b = rand(3, 2, 2, seed=40), rand(2, seed=41)
    inp = Input((None, 2))
    layer = layers.Conv1D(2, 3, padding="same")
    model = Model(inp, layer(inp))
    layer.set_weights([k, b])
    for steps in (1, 4, 6):
        x = rand(2, steps, 2, seed=steps)
        close(model.predict(x), conv1d_ref(x, k, b, 1, "same", 1))


def test_max_pooling_same_with_all_negative_inputs():
    """Padding must not leak zeros into max pooling."""
    x = -np.abs(rand(1, 5, 5, 2, seed=37)) - 1.0
    inp = Input((5, 5, 2))
    y = run(inp, layers.MaxPooling2D((2, 2), padding="same")(inp), x)
    assert (y < 0).all()
    close(y, pool2d_ref(x, (2, 2), (2, 2), "same", "max"))


def test_average_pooling_same_corner_counts_in_bounds_only():
    x = np.ones((1, 5, 5, 1), np.float32)
    inp = Input((5, 5, 1))
    y = run(inp, layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same")(inp), x)
    close(y, np.ones((1, 5, 5, 1)))


def test_pooling_default_pool_sizes():
    x = rand(2, 6, 3, seed=38)
    inp = Input((6, 3))
    close(run(inp, layers.MaxPooling1D()(inp), x), x.reshape(2, 3, 2, 3).max(axis=2))
    x2 = rand(2, 4, 6, 1, seed=39)
    inp2 = Input((4, 6, 1))
    close(run(inp2, layers.MaxPooling2D()(inp2), x2), x2.reshape(2, 2, 2, 3, 2, 1).max(axis=(2, 4)))


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("rank", [1, 2])
def test_global_pooling(rank, kind, keepdims):
    shape = (5, 3) if rank == 1 else (4, 5, 3)
    x = rand(2, *shape, seed=40)
    cls = {(1, "max"): layers.GlobalMaxPooling1D, (2, "max"): layers.GlobalMaxPooling2D,
           (1, "avg"): layers.GlobalAveragePooling1D, (2, "avg"): layers.GlobalAveragePooling2D}[rank, kind]
    inp = Input(shape)
    out = cls(keepdims=keepdims)(inp)
    ref = np.empty((2, 3))
    for b in range(2):
        for ch in range(3):
            vals = x[b, ..., ch].astype(np.float64).ravel()
            ref[b, ch] = vals.max() if kind == "max" else vals.sum() / vals.size
    if keepdims:
        ref = ref.reshape((2,) + (1,) * rank + (3,))
    assert out.shape == (None,) + ref.shape[1:]
    close(run(inp, out, x), ref)


# ---- reshaping and identity layers ------------------------------------------------------------
def test_flatten():
    x = rand(2, 3, 4, 5, seed=41)
    inp = Input((3, 4, 5))
    out = layers.Flatten()(inp)
    assert out.shape == (None, 60)
    ref = np.array([[x[b, i, j, k] for i in range(3) for j in range(4) for k in range(5)] for b in range(2)])
    close(run(inp, out, x), ref)


@pytest.mark.parametrize("target,expected", [((4, 6), (4, 6)), ((-1, 3), (8, 3)), ((2, -1, 2), (2, 6, 2)),
                                             ((24,), (24,))])
def test_reshape(target, expected):
    x = rand(3, 2, 12, seed=42)
    inp = Input((2, 12))
    out = layers.Reshape(target)(inp)
    assert out.shape == (None,) + expected
    ref = np.array([x[b].ravel() for b in range(3)]).reshape((3,) + expected)
    close(run(inp, out, x), ref)


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.9])
def test_dropout_is_identity_at_inference(rate):
    x = rand(4, 6, seed=43)
    inp = Input((6,))
    y = run(inp, layers.Dropout(rate)(inp), x)
    np.testing.assert_array_equal(y, x)


def test_dropout_then_dense():
    x = rand(4, 6, seed=44)
    k, b = rand(6, 2, seed=45), rand(2, seed=46)
    inp = Input((6,))
    dense = layers.Dense(2)
    model = Model(inp, dense(layers.Dropout(0.5)(inp)))
    dense.set_weights([k, b])
    close(model.predict(x), x.astype(np.float64) @ k + b)


# ---- merges -----------------------------------------------------------------------------------
MERGE_REFS = {
    "add": (layers.Add, lambda xs: sum(xs)),
    "subtract": (layers.Subtract, lambda xs: xs[0] - xs[1]),
    "multiply": (layers.Multiply, lambda xs: np.prod(np.broadcast_arrays(*xs), axis=0)),
    "average": (layers.Average, lambda xs: sum(xs) / len(xs)),
    "maximum": (layers.Maximum, lambda xs: np.max(np.broadcast_arrays(*xs), axis=0)),
    "minimum": (layers.Minimum, lambda xs: np.min(np.broadcast_arrays(*xs), axis=0)),
}
MERGE_SHAPES = [
    [(3, 4), (3, 4)],
    [(3, 4), (3, 4), (3, 4)],
    [(3, 4), (1, 4)],
    [(3, 1), (3, 4)],
    [(1, 4), (3, 1), (3, 4)],
]


MERGE_CASES = [(kind, shapes) for kind in sorted(MERGE_REFS) for shapes in MERGE_SHAPES
               if kind != "subtract" or len(shapes) == 2]


@pytest.mark.parametrize("kind,shapes", MERGE_CASES,
                         ids=[f"{k}-" + "+".join("x".join(map(str, d)) for d in s) for k, s in MERGE_CASES])
def test_elementwise_merges(kind, shapes):
    cls, ref_fn = MERGE_REFS[kind]
    xs = [rand(2, *s, seed=50 + i) for i, s in enumerate(shapes)]
    inps = [Input(s) for s in shapes]
    out = cls()(inps)
    ref = ref_fn([x.astype(np.float64) for x in xs])
    assert out.shape == (None,) + ref.shape[1:]
    close(run(inps, out, xs), ref)


def test_subtract_refuses_three_inputs():
    with pytest.raises(ValueError, match="2 input"):
        layers.Subtract()([Input((3,)), Input((3,)), Input((3,))])


def test_merge_functional_forms():
    a, b, c = rand(2, 3, seed=60), rand(2, 3, seed=61), rand(2, 3, seed=62)
    ia, ib, ic = Input((3,)), Input((3,)), Input((3,))
    outs = [layers.add([ia, ib, ic]), layers.subtract([ia, ib]), layers.multiply([ia, ib]),
            layers.average([ia, ib, ic]), layers.maximum([ia, ib, ic]), layers.minimum([ia, ib, ic]),
            layers.concatenate([ia, ib, ic])]
    got = run([ia, ib, ic], outs, [a, b, c])
    refs = [a + b + c, a - b, a * b, (a + b + c) / 3, np.maximum(np.maximum(a, b), c),
            np.minimum(np.minimum(a, b), c), np.hstack([a, b, c])]
    for g, r in zip(got, refs):
        close(g, r)


@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_concatenate(axis):
    shapes = {-1: [(3, 2), (3, 4), (3, 1)], 1: [(2, 4), (3, 4), (1, 4)], 2: [(3, 2), (3, 4), (3, 1)]}[axis]
    xs = [rand(2, *s, seed=70 + i) for i, s in enumerate(shapes)]
    inps = [Input(s) for s in shapes]
    out = layers.Concatenate(axis=axis)(inps)
    ax = axis % 3
    ref_shape = [2, *shapes[0]]
    ref_shape[ax] = sum(s[ax - 1] for s in shapes)
    ref = np.empty(ref_shape, np.float32)
    offset = 0
    for x in xs:  # copy block by block
        width = x.shape[ax]
        index = [slice(None)] * 3
        index[ax] = slice(offset, offset + width)
        ref[tuple(index)] = x
        offset += width
    assert out.shape == (None,) + tuple(ref_shape[1:])
    close(run(inps, out, xs), ref)


# ---- initializers -----------------------------------------------------------------------------
def assert_glorot_uniform(w, fan_in, fan_out):
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    w = np.asarray(w, np.float64).ravel()
    assert np.abs(w).max() <= bound + 1e-7
    assert np.abs(w).max() > 0.9 * bound
    assert abs(w.mean()) < 0.1 * bound
    # variance of U(-l, l) is l^2 / 3
    assert w.var() == pytest.approx(bound ** 2 / 3, rel=0.12)
    counts, _ = np.histogram(w, bins=4, range=(-bound, bound))
    expected = w.size / 4
    assert np.all(np.abs(counts - expected) < 0.2 * expected), counts


def test_dense_glorot_uniform_and_zero_bias():
    set_random_seed(1)
    inp = Input((40,))
    layer = layers.Dense(60)
    layer(inp)
    k, b = layer.get_weights()
    assert k.shape == (40, 60) and k.dtype == np.float32
    assert_glorot_uniform(k, 40, 60)
    np.testing.assert_array_equal(b, np.zeros(60, np.float32))


@pytest.mark.parametrize("rank", [1, 2])
def test_conv_glorot_fans_include_receptive_field(rank):
    set_random_seed(2)
    if rank == 1:
        inp, layer, kshape = Input((20, 6)), layers.Conv1D(16, 5), (5,)
    else:
        inp, layer, kshape = Input((8, 8, 6)), layers.Conv2D(16, (3, 4)), (3, 4)
    layer(inp)
    k, b = layer.get_weights()
    receptive = math.prod(kshape)
    assert k.shape == kshape + (6, 16)
    assert_glorot_uniform(k, 6 * receptive, 16 * receptive)
    # without the receptive field the bound would be much larger; make sure it is not used
    assert np.abs(k).max() < 0.6 * math.sqrt(6.0 / (6 + 16))
    np.testing.assert_array_equal(b, np.zeros(16, np.float32))


def test_lstm_initializers():
    set_random_seed(3)
    d, u = 6, 8
    layer = layers.LSTM(u)
    layer(Input((4, d)))
    k, r, b = layer.get_weights()
    assert (k.shape, r.shape, b.shape) == ((d, 4 * u), (u, 4 * u), (4 * u,))
    # kernel: glorot uniform with fans (d, 4u)
    assert np.abs(k).max() <= math.sqrt(6.0 / (d + 4 * u)) + 1e-7
    assert np.abs(k).max() > 0.8 * math.sqrt(6.0 / (d + 4 * u))
    # recurrent kernel: orthogonal; (u, 4u) has orthonormal rows
    np.testing.assert_allclose(r.astype(np.float64) @ r.T, np.eye(u), atol=1e-5)
    assert not np.allclose(r, 0)
    # bias: zeros with the forget block (i, f, c, o) set to one (unit_forget_bias)
    expected = np.zeros(4 * u, np.float32)
    expected[u:2 * u] = 1.0
    np.testing.assert_array_equal(b, expected)


def test_lstm_unit_forget_bias_false():
    layer = layers.LSTM(3, unit_forget_bias=False)
    layer(Input((2, 2)))
    np.testing.assert_array_equal(layer.get_weights()[2], np.zeros(12, np.float32))


def test_lstm_orthogonal_square_recurrent_when_possible():
    """A (u, 4u) orthogonal matrix: the 4u columns are not orthonormal but every row has norm 1."""
    set_random_seed(4)
    layer = layers.LSTM(5)
    layer(Input((3, 2)))
    r = layer.get_weights()[1].astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), np.ones(5), atol=1e-5)


def test_embedding_uniform_init():
    set_random_seed(5)
    layer = layers.Embedding(200, 16)
    layer(Input((3,), dtype="int32"))
    (e,) = layer.get_weights()
    assert e.shape == (200, 16)
    assert np.abs(e).max() <= 0.05
    assert np.abs(e).max() > 0.045
    assert abs(float(e.mean())) < 0.005
    assert float(e.var()) == pytest.approx(0.05 ** 2 / 3, rel=0.1)


def test_set_random_seed_reproducible():
    def draw(seed):
        set_random_seed(seed)
        inp = Input((4, 3))
        d, l = layers.Dense(5), layers.LSTM(2)
        d(layers.Flatten()(inp))
        l(inp)
        return d.get_weights() + l.get_weights()

    a, b, c = draw(7), draw(7), draw(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[0], c[0])
    assert not np.allclose(a[3], c[3])


# ---- parameter counts -------------------------------------------------------------------------
@pytest.mark.parametrize("make,input_shape,expected", [
    (lambda: layers.Dense(7), (5,), 5 * 7 + 7),
    (lambda: layers.Dense(7, use_bias=False), (5,), 5 * 7),
    (lambda: layers.Dense(3), (4, 6), 6 * 3 + 3),
    (lambda: layers.Conv1D(4, 3), (10, 2), 3 * 2 * 4 + 4),
    (lambda: layers.Conv1D(4, 3, use_bias=False), (10, 2), 3 * 2 * 4),
    (lambda: layers.Conv2D(5, (3, 2)), (6, 6, 3), 3 * 2 * 3 * 5 + 5),
    (lambda: layers.LSTM(6), (4, 3), 4 * 6 * (3 + 6 + 1)),
    (lambda: layers.LSTM(6, use_bias=False), (4, 3), 4 * 6 * (3 + 6)),
    (lambda: layers.MaxPooling1D(2), (4, 3), 0),
    (lambda: layers.Flatten(), (4, 3), 0),
])
def test_param_counts(make, input_shape, expected):
    layer = make()
    inp = Input(input_shape)
    model = Model(inp, layer(inp))
    assert layer.count_params() == expected
    assert model.count_params() == expected
    assert sum(w.size for w in layer.get_weights()) == expected


def test_embedding_param_count_and_model_total():
    vocab, dim, u = 50, 8, 4
    inp = Input((6,), dtype="int32")
    emb, lstm, dense = layers.Embedding(vocab, dim), layers.LSTM(u), layers.Dense(2)
    model = Model(inp, dense(lstm(emb(inp))))
    assert emb.count_params() == vocab * dim
    assert lstm.count_params() == 4 * u * (dim + u + 1)
    assert model.count_params() == vocab * dim + 4 * u * (dim + u + 1) + u * 2 + 2


# ---- batch-size independence ------------------------------------------------------------------
def _mixed_model():
    set_random_seed(11)
    inp = Input((9, 3))
    conv = layers.Conv1D(4, 3, padding="same", activation="relu")(inp)
    pooled = layers.MaxPooling1D(2, padding="same")(conv)
    seq = layers.LSTM(5, return_sequences=True)(pooled)
    last = layers.LSTM(3, go_backwards=True)(seq)
    avg = layers.GlobalAveragePooling1D()(conv)
    merged = layers.Concatenate()([last, avg])
    out = layers.Dense(2, activation="softmax")(layers.Dropout(0.3)(merged))
    return Model(inp, out)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 32])
def test_batch_size_independence(batch_size):
    model = _mixed_model()
    x = rand(7, 9, 3, seed=80)
    whole = model.predict(x, batch_size=7)
    chunked = model.predict(x, batch_size=batch_size)
    assert chunked.shape == whole.shape == (7, 2)
    close(chunked, whole)
    # each sample alone gives the same as in the batch
    for i in (0, 6):
        close(model.predict(x[i:i + 1]), whole[i:i + 1])


def test_batch_size_independence_conv2d_and_embedding():
    set_random_seed(12)
    img = Input((7, 9, 2))
    c = layers.Conv2D(3, 3, strides=2, padding="same")(img)
    p = layers.AveragePooling2D(2, padding="same")(c)
    f = layers.Dense(4)(layers.Flatten()(p))
    ids = Input((5,), dtype="int32")
    e = layers.GlobalMaxPooling1D()(layers.Embedding(10, 4)(ids))
    model = Model([img, ids], layers.Add()([f, e]))
    x = rand(5, 7, 9, 2, seed=81)
    idx = np.random.default_rng(82).integers(0, 10, (5, 5))
    ref = model.predict([x, idx], batch_size=5)
    close(model.predict([x, idx], batch_size=1), ref)
    close(model.predict([x, idx], batch_size=2), ref)
