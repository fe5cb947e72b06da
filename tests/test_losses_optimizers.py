"""Keras 3 losses, metrics and optimizers of the NumPy runtime (templates/numpy/losses.py and
optimizers.py), checked against formulas written out here: loss values and per-sample shapes,
gradients against float64 finite differences, metrics and their epoch means, and every optimizer
against a plain per-weight loop of Keras's update_step over several steps."""
from pathlib import Path

import numpy as np
import pytest

import gcomp
from gcomp import losses

TEMPLATES = Path(__file__).parents[1] / "templates" / "numpy"


def _load(*filenames):
    """Runtime files run in order into one namespace, as a generated program holds them."""
    namespace = {"__name__": f"gcomp_runtime_{filenames[-1][:-3]}"}
    for filename in filenames:
        exec(compile((TEMPLATES / filename).read_text(), str(TEMPLATES / filename), "exec"), namespace)
    return namespace


L = _load("losses.py")
O = _load("schedules.py", "optimizers.py")
EPS = 1e-7
RNG = np.random.default_rng(20240611)


def probs(shape, rng=RNG, dtype=np.float64):
    x = rng.standard_normal(shape)
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(dtype)


def one_hot(labels, classes):
    return np.eye(classes)[labels]


# ---- reference formulas (float64, written from the Keras 3 source) -------------------------------

def ref_mse(y, p):
    return np.mean((y - p) ** 2, axis=-1)


def ref_mae(y, p):
    return np.mean(np.abs(y - p), axis=-1)


def ref_bce(y, p):
    p = np.clip(p, EPS, 1 - EPS)
    return np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)), axis=-1)


def ref_bce_logits(y, x):
    log_sig = -np.logaddexp(0, -x)          # log sigmoid(x)
    log_one_minus = -np.logaddexp(0, x)     # log sigmoid(-x)
    return np.mean(-(y * log_sig + (1 - y) * log_one_minus), axis=-1)


def ref_cce(y, p):
    q = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)
    return -np.sum(y * np.log(q), axis=-1)


def ref_log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def ref_cce_logits(y, x):
    return -np.sum(y * ref_log_softmax(x), axis=-1)


def finite_diff(f, x, h=1e-6):
    """Central differences of the scalar f at x (float64)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f(x)
        flat[i] = old - h
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return g


# ---- losses: values and per-sample shapes --------------------------------------------------------

@pytest.mark.parametrize("name,ref", [("mse", ref_mse), ("mean_squared_error", ref_mse),
                                      ("mae", ref_mae), ("mean_absolute_error", ref_mae)])
def test_regression_losses_values_and_shapes(name, ref):
    y, p = RNG.standard_normal((5, 1)), RNG.standard_normal((5, 1))
    out = L["per_sample_loss"](name, y, p)
    assert out.shape == (5,)
    np.testing.assert_allclose(out, ref(y, p), rtol=1e-12)
    y3, p3 = RNG.standard_normal((4, 3, 2)), RNG.standard_normal((4, 3, 2))
    out3 = L["per_sample_loss"](name, y3, p3)
    assert out3.shape == (4, 3)
    np.testing.assert_allclose(out3, ref(y3, p3), rtol=1e-12)
    # Keras's squeeze_or_expand_to_same_rank: (N,) targets against (N, 1) predictions, and a
    # sequence of scalars (N, T) against (N, T, 1): the trailing 1 goes, so the mean is over T
    np.testing.assert_allclose(L["per_sample_loss"](name, y[:, 0], p), ref(y, p), rtol=1e-12)
    yt, pt = RNG.standard_normal((4, 6)), RNG.standard_normal((4, 6, 1))
    seq = L["per_sample_loss"](name, yt, pt)
    assert seq.shape == (4,)
    np.testing.assert_allclose(seq, ref(yt, pt[..., 0]), rtol=1e-12)


def test_dtype_is_kept():
    for dt in (np.float32, np.float64):
        y, p = np.ones((3, 2), dt) * 0.5, np.full((3, 2), 0.25, dt)
        for name in ("mse", "mae", "binary_crossentropy", "categorical_crossentropy"):
            out = L["per_sample_loss"](name, y, p)
            loss, grad = L["loss_and_grad"](name, y, p)
            assert out.dtype == dt and grad.dtype == dt and np.asarray(loss).dtype == dt, name
        loss, grad = L["loss_and_grad"]("sparse_categorical_crossentropy", np.array([0, 1, 1]), p)
        assert grad.dtype == dt and np.asarray(loss).dtype == dt


def test_binary_crossentropy_values_and_clipping():
    y = RNG.integers(0, 2, (6, 3)).astype(np.float64)
    p = RNG.uniform(0.01, 0.99, (6, 3))
    p[0, 0], p[1, 1], p[2, 2] = 0.0, 1.0, 1e-9
    out = L["per_sample_loss"]("binary_crossentropy", y, p)
    assert out.shape == (6,)
    np.testing.assert_allclose(out, ref_bce(y, p), rtol=1e-12)
    assert np.all(np.isfinite(out))
    # the extremes: a confident wrong answer costs -log(1e-7) = 16.118..., never infinity
    worst = L["per_sample_loss"]("binary_crossentropy", np.array([[1.0], [0.0]]), np.array([[0.0], [1.0]]))
    np.testing.assert_allclose(worst, [-np.log(EPS)] * 2, rtol=1e-9)
    best = L["per_sample_loss"]("binary_crossentropy", np.array([[1.0], [0.0]]), np.array([[1.0], [0.0]]))
    np.testing.assert_allclose(best, [-np.log(1 - EPS)] * 2, rtol=1e-6)
    # float32: the clip bounds are float32(1e-7) and float32(1 - 1e-7) = 1 - 1.19e-7, so as in Keras
    # a confident wrong 1 costs -log(1.19e-7) = 15.94, a confident wrong 0 -log(1e-7) = 16.12
    p32 = np.array([[0.0], [1.0]], np.float32)
    out32 = L["per_sample_loss"]("binary_crossentropy", np.array([[1.0], [0.0]], np.float32), p32)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, [-np.log(np.float32(1e-7)), -np.log(1 - np.float32(1 - 1e-7))], rtol=1e-6)
    np.testing.assert_allclose(out32[1], 15.942385, rtol=1e-6)
    # (N,) targets against (N, 1) predictions
    yb, pb = RNG.integers(0, 2, 5).astype(float), RNG.uniform(0.1, 0.9, (5, 1))
    np.testing.assert_allclose(L["per_sample_loss"]("bce", yb, pb), ref_bce(yb[:, None], pb), rtol=1e-12)


def test_binary_crossentropy_from_logits():
    y = RNG.uniform(0, 1, (4, 3))
    x = RNG.standard_normal((4, 3)) * 5
    x[0, 0], x[1, 1] = 80.0, -80.0  # no overflow, no log(0)
    out = L["per_sample_loss"]("binary_crossentropy", y, x, from_logits=True)
    np.testing.assert_allclose(out, ref_bce_logits(y, x), rtol=1e-12)


def test_categorical_crossentropy_normalizes_and_clips():
    labels = RNG.integers(0, 4, 6)
    y = one_hot(labels, 4)
    p = RNG.uniform(0.05, 2.0, (6, 4))  # not normalized: Keras divides by the sum first
    out = L["per_sample_loss"]("categorical_crossentropy", y, p)
    np.testing.assert_allclose(out, ref_cce(y, p), rtol=1e-12)
    np.testing.assert_allclose(out, -np.log(p[np.arange(6), labels] / p.sum(-1)), rtol=1e-12)
    extreme = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(L["per_sample_loss"]("categorical_crossentropy", one_hot([0, 0], 3), extreme),
                               [-np.log(1 - EPS), -np.log(EPS)], rtol=1e-6)
    soft = probs((5, 3))  # soft labels
    np.testing.assert_allclose(L["per_sample_loss"]("categorical_crossentropy", soft, p[:5, :3]),
                               ref_cce(soft, p[:5, :3]), rtol=1e-12)
    seq_y, seq_p = one_hot(RNG.integers(0, 3, (2, 4)), 3), probs((2, 4, 3))
    seq = L["per_sample_loss"]("categorical_crossentropy", seq_y, seq_p)
    assert seq.shape == (2, 4)
    np.testing.assert_allclose(seq, ref_cce(seq_y, seq_p), rtol=1e-12)


def test_categorical_crossentropy_from_logits():
    y = probs((5, 4))
    x = RNG.standard_normal((5, 4)) * 30
    out = L["per_sample_loss"]("categorical_crossentropy", y, x, from_logits=True)
    np.testing.assert_allclose(out, ref_cce_logits(y, x), rtol=1e-12)


def test_sparse_categorical_crossentropy_label_forms():
    labels = RNG.integers(0, 5, 7)
    p = RNG.uniform(0.01, 1.0, (7, 5))
    expected = ref_cce(one_hot(labels, 5), p)
    for y in (labels, labels[:, None], labels.astype(np.float32), labels[:, None].astype(np.float64),
              labels.astype(np.int32)):
        out = L["per_sample_loss"]("sparse_categorical_crossentropy", y, p)
        assert out.shape == (7,)
        np.testing.assert_allclose(out, expected, rtol=1e-12)
    x = RNG.standard_normal((7, 5)) * 10
    np.testing.assert_allclose(
        L["per_sample_loss"]("sparse_categorical_crossentropy", labels[:, None], x, from_logits=True),
        ref_cce_logits(one_hot(labels, 5), x), rtol=1e-12)
    # sequences: (N, T) labels or (N, T, 1) against (N, T, C)
    seq_labels, seq_p = RNG.integers(0, 3, (2, 4)), probs((2, 4, 3))
    for y in (seq_labels, seq_labels[..., None]):
        out = L["per_sample_loss"]("sparse_categorical_crossentropy", y, seq_p)
        assert out.shape == (2, 4)
        np.testing.assert_allclose(out, ref_cce(one_hot(seq_labels, 3), seq_p), rtol=1e-12)
    # clipped extremes
    np.testing.assert_allclose(
        L["per_sample_loss"]("sparse_categorical_crossentropy", np.array([1, 0]), np.array([[1.0, 0.0], [1.0, 0.0]])),
        [-np.log(EPS), -np.log(1 - EPS)], rtol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        L["per_sample_loss"]("sparse_categorical_crossentropy", np.array([5]), np.ones((1, 5)) / 5)
    with pytest.raises(ValueError, match="integer"):
        L["per_sample_loss"]("sparse_categorical_crossentropy", np.array([1.5]), np.ones((1, 5)) / 5)


def test_crossentropy_resolves_by_shapes():
    r = L["resolve_loss_name"]
    assert r("crossentropy", (None, 1), (None, 1)) == "binary_crossentropy"
    assert r("CE", (None,), (None, 4)) == "sparse_categorical_crossentropy"
    assert r("ce", (None, 1), (None, 4)) == "sparse_categorical_crossentropy"
    assert r("crossentropy", (None, 4), (None, 4)) == "categorical_crossentropy"
    assert r("BCE") == r("bce") == r("BinaryCrossentropy") == "binary_crossentropy"
    assert r("MSE") == r("MeanSquaredError") == "mean_squared_error"
    # lists are data, never shapes: integer labels as a list resolve to sparse
    np.testing.assert_allclose(L["per_sample_loss"]("crossentropy", [0, 2], [[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]),
                               -np.log([0.5, 0.5]), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown loss 'hinge_loss'"):
        r("hinge_loss")
    with pytest.raises(ValueError, match="case-sensitive"):
        r("Mse")


# ---- losses: reduction, sample weights and gradients ---------------------------------------------

GRAD_CASES = [
    # name, y_true, y_pred, from_logits
    ("mse", RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3)), False),
    ("mse", RNG.standard_normal((4,)), RNG.standard_normal((4, 1)), False),
    ("mse", RNG.standard_normal((3, 5)), RNG.standard_normal((3, 5, 1)), False),
    ("mae", RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3)), False),
    ("mae", RNG.standard_normal((2, 3, 2)), RNG.standard_normal((2, 3, 2)), False),
    ("binary_crossentropy", RNG.integers(0, 2, (5, 1)).astype(float), RNG.uniform(0.05, 0.95, (5, 1)), False),
    ("binary_crossentropy", RNG.uniform(0, 1, (3, 4, 2)), RNG.uniform(0.05, 0.95, (3, 4, 2)), False),
    ("binary_crossentropy", RNG.uniform(0, 1, (5, 2)), RNG.standard_normal((5, 2)) * 3, True),
    ("categorical_crossentropy", one_hot(RNG.integers(0, 4, 5), 4), RNG.uniform(0.05, 1.5, (5, 4)), False),
    ("categorical_crossentropy", probs((2, 3, 4)), probs((2, 3, 4)), False),
    ("categorical_crossentropy", probs((5, 4)), RNG.standard_normal((5, 4)) * 2, True),
    ("sparse_categorical_crossentropy", RNG.integers(0, 4, 5), RNG.uniform(0.05, 1.5, (5, 4)), False),
    ("sparse_categorical_crossentropy", RNG.integers(0, 4, (5, 1)), probs((5, 4)), False),
    ("sparse_categorical_crossentropy", RNG.integers(0, 3, (2, 4)), probs((2, 4, 3)), False),
    ("sparse_categorical_crossentropy", RNG.integers(0, 4, 5), RNG.standard_normal((5, 4)) * 2, True),
]


@pytest.mark.parametrize("case", range(len(GRAD_CASES)))
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_and_grad_matches_finite_differences(case, weighted):
    name, y, p, from_logits = GRAD_CASES[case]
    p = p.copy()
    sw = RNG.uniform(0.2, 2.0, p.shape[0]) if weighted else None
    loss_weight = 2.5

    def reduced(pp):
        per = L["per_sample_loss"](name, y, pp, from_logits=from_logits)
        if sw is None:
            return per.sum() / per.size
        w = sw.reshape(sw.shape + (1,) * (per.ndim - 1))
        return (per * w).sum() / per.size

    loss, grad = L["loss_and_grad"](name, y, p, sample_weight=sw, from_logits=from_logits, weight=loss_weight)
    assert grad.shape == p.shape
    np.testing.assert_allclose(loss, reduced(p), rtol=1e-12)
    np.testing.assert_allclose(grad, loss_weight * finite_diff(reduced, p), rtol=1e-5, atol=1e-8)


def test_reduction_is_sum_over_batch_size():
    y, p = RNG.standard_normal((8, 3)), RNG.standard_normal((8, 3))
    sw = np.array([1, 0, 2, 1, 1, 0.5, 3, 1.0])
    loss, _ = L["loss_and_grad"]("mse", y, p, sample_weight=sw)
    # divided by the number of per-sample losses (8), not by the sum of the weights
    np.testing.assert_allclose(loss, np.sum(ref_mse(y, p) * sw) / 8, rtol=1e-12)
    loss_col, _ = L["loss_and_grad"]("mse", y, p, sample_weight=sw[:, None])
    np.testing.assert_allclose(loss_col, loss, rtol=1e-12)
    loss_scalar, _ = L["loss_and_grad"]("mse", y, p, sample_weight=2.0)
    np.testing.assert_allclose(loss_scalar, 2 * ref_mse(y, p).mean(), rtol=1e-12)
    # sequences: N x T per-sample losses, so divided by N * T; (N,) weights apply to whole sequences
    ys, ps = one_hot(RNG.integers(0, 3, (4, 5)), 3), probs((4, 5, 3))
    sw4 = np.array([1.0, 0.0, 2.0, 0.5])
    loss_seq, _ = L["loss_and_grad"]("categorical_crossentropy", ys, ps, sample_weight=sw4)
    np.testing.assert_allclose(loss_seq, np.sum(ref_cce(ys, ps) * sw4[:, None]) / 20, rtol=1e-12)
    temporal = RNG.uniform(0, 1, (4, 5))
    loss_t, _ = L["loss_and_grad"]("categorical_crossentropy", ys, ps, sample_weight=temporal)
    np.testing.assert_allclose(loss_t, np.sum(ref_cce(ys, ps) * temporal) / 20, rtol=1e-12)
    with pytest.raises(ValueError, match="sample_weight"):
        L["loss_and_grad"]("mse", y, p, sample_weight=np.ones(7))


def test_sum_and_mean_reductions_and_the_refused_ones():
    y, p = RNG.standard_normal((6, 2)).astype(np.float32), RNG.standard_normal((6, 2)).astype(np.float32)
    sw = np.linspace(0.5, 2.0, 6).astype(np.float32)
    per = np.mean((y.astype(np.float64) - p) ** 2, axis=-1) * sw
    assert float(losses.MeanSquaredError(reduction="sum")(y, p, sw)) == pytest.approx(per.sum(), rel=1e-6)
    assert float(losses.MeanSquaredError(reduction="mean")(y, p, sw)) == pytest.approx(per.mean(), rel=1e-6)
    for reduction, why in [("none", "unreduced"), (None, "unreduced"), ("mean_with_sample_weight", "sum of sample weights"),
                           ("max", "reduction='max'")]:
        with pytest.raises(ValueError, match=why):
            losses.CategoricalCrossentropy(reduction=reduction)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_training_with_a_sum_reduced_loss_steps_by_the_summed_gradient(backend):
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    inp = gcomp.Input(shape=(3,), name="x")
    model = gcomp.Model(inp, gcomp.layers.Dense(1, name="d")(inp))
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=0.01), loss=losses.MeanSquaredError(reduction="sum"))
    kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    err = x @ kernel + bias - y
    assert model.train_on_batch(x, y, backend=backend) == pytest.approx(np.sum(err ** 2), rel=1e-5)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, kernel - 0.01 * 2 * x.T @ err, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_bias, bias - 0.01 * 2 * err.sum(0), rtol=1e-5, atol=1e-6)


def test_gradient_is_zero_where_probabilities_are_clipped():
    y = np.array([[1.0], [0.0], [1.0], [0.0]])
    p = np.array([[0.0], [1.0], [1.0], [0.0]])
    _, g = L["loss_and_grad"]("binary_crossentropy", y, p)
    np.testing.assert_array_equal(g, np.zeros_like(g))
    # categorical: a one-hot prediction is clipped everywhere, so no gradient flows at all
    _, g = L["loss_and_grad"]("categorical_crossentropy", one_hot([0, 1], 3), np.array([[1.0, 0, 0], [1.0, 0, 0]]))
    np.testing.assert_array_equal(g, np.zeros_like(g))
    _, g = L["loss_and_grad"]("sparse_categorical_crossentropy", np.array([0, 1]), np.array([[1.0, 0, 0], [1.0, 0, 0]]))
    np.testing.assert_array_equal(g, np.zeros_like(g))
    # only the clipped entries lose their gradient; the others keep the exact derivative
    y2 = np.array([[1.0, 0.0, 1.0]])
    p2 = np.array([[0.0, 0.3, 0.6]])
    _, g2 = L["loss_and_grad"]("binary_crossentropy", y2, p2)
    assert g2[0, 0] == 0
    np.testing.assert_allclose(g2[0, 1:], [1 / (1 - 0.3) / 3, -1 / 0.6 / 3], rtol=1e-12)
    # mae: sign, with 0 where prediction equals target
    _, g3 = L["loss_and_grad"]("mae", np.array([[1.0, 2.0, 3.0]]), np.array([[0.0, 2.0, 4.0]]))
    np.testing.assert_array_equal(g3, [[-1 / 3, 0.0, 1 / 3]])


def test_float32_loss_matches_float64_reference():
    labels = RNG.integers(0, 10, 32)
    p = probs((32, 10), dtype=np.float32)
    loss, grad = L["loss_and_grad"]("sparse_categorical_crossentropy", labels, p)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(loss, ref_cce(one_hot(labels, 10), p.astype(np.float64)).mean(), rtol=1e-6)


# ---- validate_targets ---------------------------------------------------------------------------

def test_validate_targets_accepts_and_converts():
    v = L["validate_targets"]
    labels = v("sparse_categorical_crossentropy", np.array([[1], [0], [2]], np.float32), (None, 3), "digits")
    assert labels.dtype.kind == "i" and labels.shape == (3,)
    np.testing.assert_array_equal(labels, [1, 0, 2])
    out = v("mse", np.arange(4), np.zeros((4, 1), np.float32), "price")
    assert out.dtype == np.float32
    assert v("binary_crossentropy", np.array([0, 1, 1]), (None, 1), "flag").shape == (3,)
    assert v("categorical_crossentropy", np.eye(3), (None, 3), "cls").shape == (3, 3)
    assert v("sparse_categorical_crossentropy", np.zeros((2, 7), int), (None, 7, 5), "tags").shape == (2, 7)
    assert v("crossentropy", np.array([0, 4]), (None, 5), "auto").dtype.kind == "i"


@pytest.mark.parametrize("name,y,pred,match", [
    ("mse", np.zeros((4, 2)), (None, 3), "do not match predictions of shape \\(None, 3\\)"),
    ("mse", np.zeros((4, 1)), (None, 3), "do not match"),
    ("mae", np.array([[np.nan]]), (None, 1), "NaN"),
    ("sparse_categorical_crossentropy", np.array([0, 1, 3]), (None, 3), "label 3 is outside \\[0, 3\\)"),
    ("sparse_categorical_crossentropy", np.array([0, -1]), (None, 3), "label -1 is outside"),
    ("sparse_categorical_crossentropy", np.array([0.0, 1.5]), (None, 3), "integer class labels"),
    ("sparse_categorical_crossentropy", np.eye(3), (None, 3), "one-hot targets: use categorical_crossentropy"),
    ("sparse_categorical_crossentropy", np.array(["a", "b"]), (None, 3), "must be numbers"),
    ("categorical_crossentropy", np.array([[0], [2]]), (None, 3), "use sparse_categorical_crossentropy"),
    ("categorical_crossentropy", np.array([0, 2]), (None, 3), "use sparse_categorical_crossentropy"),
    ("categorical_crossentropy", -np.eye(3), (None, 3), "non-negative"),
    ("binary_crossentropy", np.array([[0], [2]]), (None, 1), "\\[0, 1\\]"),
    ("binary_crossentropy", np.zeros((3, 2)), (None, 1), "do not match"),
    ("mse", np.zeros((5, 1)), np.zeros((4, 1)), "do not match"),
])
def test_validate_targets_errors_name_the_output(name, y, pred, match):
    with pytest.raises(ValueError, match=match) as info:
        L["validate_targets"](name, y, pred, "my_output")
    assert 'output "my_output"' in str(info.value)


# ---- metrics ------------------------------------------------------------------------------------

@pytest.mark.parametrize("tshape,pshape,expected", [
    ((None, 1), (None, 1), "binary_accuracy"),
    ((None,), (None, 1), "binary_accuracy"),
    ((None, 3, 1), (None, 3, 1), "binary_accuracy"),
    ((None,), (None, 4), "sparse_categorical_accuracy"),
    ((None, 1), (None, 4), "sparse_categorical_accuracy"),
    ((None, 4), (None, 4), "categorical_accuracy"),
    ((None, 7), (None, 7, 4), "sparse_categorical_accuracy"),
    ((None, 7, 1), (None, 7, 4), "sparse_categorical_accuracy"),
    ((None, 7, 4), (None, 7, 4), "categorical_accuracy"),
])
def test_acc_resolves_by_shapes(tshape, pshape, expected):
    for name in ("acc", "accuracy", "Accuracy", "ACC"):
        assert L["resolve_metric_name"](name, tshape, pshape) == expected
    assert L["resolve_metric_name"]("acc", np.zeros((2,) + tshape[1:]), np.zeros((2,) + pshape[1:])) == expected


def test_metric_names():
    r = L["resolve_metric_name"]
    assert r("mse") == r("mean_squared_error") == "mean_squared_error"
    assert r("MAE") == r("mean_absolute_error") == "mean_absolute_error"
    assert r("binary_accuracy") == r("BinaryAccuracy") == "binary_accuracy"
    assert r("SparseCategoricalAccuracy") == "sparse_categorical_accuracy"
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        r("f1")


def test_accuracy_values():
    mv = L["metric_values"]
    # binary: threshold 0.5, strictly greater
    y = np.array([[1], [1], [0], [0], [1]])
    p = np.array([[0.98], [0.5], [0.0], [0.6], [0.51]], np.float32)
    np.testing.assert_array_equal(mv("binary_accuracy", y, p), [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(mv("acc", y[:, 0], p), [1, 0, 1, 0, 1])
    # categorical: argmax against argmax (first maximum wins ties)
    yc = one_hot([2, 1, 0], 3)
    pc = np.array([[0.1, 0.6, 0.3], [0.05, 0.95, 0.0], [0.4, 0.4, 0.2]])
    np.testing.assert_array_equal(mv("categorical_accuracy", yc, pc), [0, 1, 1])
    np.testing.assert_array_equal(mv("accuracy", yc, pc), [0, 1, 1])
    # sparse: (N,) and (N, 1) integer or float labels
    for ys in (np.array([2, 1, 0]), np.array([[2], [1], [0]]), np.array([2.0, 1.0, 0.0])):
        np.testing.assert_array_equal(mv("sparse_categorical_accuracy", ys, pc), [0, 1, 1])
        np.testing.assert_array_equal(mv("acc", ys, pc), [0, 1, 1])
    # sequences: per sample, the mean over time steps
    seq_labels = np.array([[0, 1, 2, 1], [2, 2, 2, 2]])
    seq_p = one_hot(np.array([[0, 1, 0, 1], [2, 0, 0, 0]]), 3)
    np.testing.assert_allclose(mv("acc", seq_labels, seq_p), [0.75, 0.25])
    np.testing.assert_allclose(mv("acc", seq_labels[..., None], seq_p), [0.75, 0.25])
    np.testing.assert_allclose(mv("acc", one_hot(seq_labels, 3), seq_p), [0.75, 0.25])
    raw = mv("acc", seq_labels, seq_p, reduce=False)
    np.testing.assert_array_equal(raw, [[1, 1, 0, 1], [1, 0, 0, 0]])
    bin_seq = mv("acc", np.array([[[1], [0]], [[1], [1]]]), np.array([[[0.9], [0.2]], [[0.1], [0.7]]]))
    np.testing.assert_allclose(bin_seq, [1.0, 0.5])


def test_regression_metrics_are_per_sample_losses():
    y, p = RNG.standard_normal((6, 3)), RNG.standard_normal((6, 3))
    np.testing.assert_allclose(L["metric_values"]("mse", y, p), ref_mse(y, p))
    np.testing.assert_allclose(L["metric_values"]("mean_absolute_error", y, p), ref_mae(y, p))
    y3, p3 = RNG.standard_normal((2, 4, 3)), RNG.standard_normal((2, 4, 3))
    np.testing.assert_allclose(L["metric_values"]("mae", y3, p3), ref_mae(y3, p3).mean(-1))


def test_mean_accumulator_epoch_average():
    acc = L["MeanAccumulator"]()
    assert acc.result() == 0
    batches = [np.array([1.0, 0.0, 1.0, 1.0]), np.array([0.0, 1.0]), np.array([1.0])]
    for b in batches:
        acc.update(b)
    np.testing.assert_allclose(acc.result(), 5 / 7, rtol=1e-6)
    assert acc.result().dtype == np.float32
    acc.reset()
    acc.update(np.array([1.0, 0.0, 1.0]), sample_weight=np.array([2.0, 1.0, 0.0]))
    acc.update(np.array([1.0]), sample_weight=np.array([1.0]))
    np.testing.assert_allclose(acc.result(), (2 + 1) / 4, rtol=1e-6)
    # the loss tracker: a scalar batch loss weighted by the batch size
    tracker = L["MeanAccumulator"]()
    tracker.update(np.float32(0.5), sample_weight=32)
    tracker.update(np.float32(2.0), sample_weight=8)
    np.testing.assert_allclose(tracker.result(), (0.5 * 32 + 2.0 * 8) / 40, rtol=1e-6)
    # sequence values: each sample's mean over time first, then the mean over samples
    seq = L["MeanAccumulator"]()
    seq.update(np.array([[1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]))
    seq.update(np.array([[0.0, 0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(seq.result(), (0.75 + 0.25 + 0.0) / 3, rtol=1e-6)
    # temporal weights: sum(v w) / sum(w) in effect
    tw = L["MeanAccumulator"]()
    v = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    w = np.array([[1.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    tw.update(v, sample_weight=w)
    np.testing.assert_allclose(tw.result(), np.sum(v * w) / np.sum(w), rtol=1e-6)
    # (N,) weights on sequence values weight whole samples
    sw = L["MeanAccumulator"]()
    sw.update(v, sample_weight=np.array([3.0, 1.0]))
    np.testing.assert_allclose(sw.result(), (3 * 2 / 3 + 1 * 2 / 3) / 4, rtol=1e-6)


# ---- optimizers: Keras's update_step, written per weight -----------------------------------------

F = np.float32


def keras_steps(kind, cfg, weights, grads_per_step, dtype=F):
    """Keras 3's apply() for a list of weights over several steps: clip, weight decay, update_step
    per weight with Keras's own expressions (not in place), iterations += 1."""
    c = np.dtype(dtype).type
    w = [x.astype(dtype).copy() for x in weights]
    lr = c(F(cfg.get("learning_rate", {"sgd": 0.01}.get(kind, 0.001))))
    slots = {}
    for it, grads in enumerate(grads_per_step):
        gs = [g.astype(dtype) for g in grads]
        if cfg.get("clipnorm"):
            cn = c(cfg["clipnorm"])
            out = []
            for g in gs:
                l2 = np.sqrt(np.sum(g * g))
                out.append((g * cn) / max(l2, cn))
            gs = out
        elif cfg.get("global_clipnorm"):
            cn = cfg["global_clipnorm"]
            norm = np.sqrt(sum(np.sum(g * g) for g in gs)).astype(dtype)
            scale = c(cn) * min(c(1) / norm, c(1.0 / cn))
            gs = [g * scale for g in gs]
        elif cfg.get("clipvalue"):
            v = c(cfg["clipvalue"])
            gs = [np.clip(g, -v, v) for g in gs]
        wd = cfg.get("weight_decay", 0.004 if kind == "adamw" else None)
        if wd is not None:
            w = [x if i in cfg.get("no_decay", ()) else x - x * c(wd) * lr for i, x in enumerate(w)]
        for i, g in enumerate(gs):
            s = slots.setdefault(i, {})
            if kind == "sgd":
                mu = cfg.get("momentum", 0.0)
                if mu:
                    m = s.get("m", np.zeros_like(g))
                    m = m * c(mu) - g * lr
                    s["m"] = m
                    w[i] = w[i] + (m * c(mu) - g * lr if cfg.get("nesterov") else m)
                else:
                    w[i] = w[i] - g * lr
            elif kind == "rmsprop":
                rho, mom, eps = cfg.get("rho", 0.9), cfg.get("momentum", 0.0), cfg.get("epsilon", 1e-7)
                vel = c(rho) * s.get("v", np.zeros_like(g)) + c(1 - rho) * np.square(g)
                s["v"] = vel
                if cfg.get("centered"):
                    ag = c(rho) * s.get("ag", np.zeros_like(g)) + c(1 - rho) * g
                    s["ag"] = ag
                    den = vel - np.square(ag) + c(eps)
                else:
                    den = vel + c(eps)
                inc = (lr * g) / np.sqrt(den)
                if mom > 0:
                    s["m"] = c(mom) * s.get("m", np.zeros_like(g)) + inc
                    w[i] = w[i] - s["m"]
                else:
                    w[i] = w[i] - inc
            elif kind in ("adam", "adamw"):
                b1, b2, eps = cfg.get("beta_1", 0.9), cfg.get("beta_2", 0.999), cfg.get("epsilon", 1e-7)
                t = c(it + 1)
                b1p, b2p = np.power(c(b1), t), np.power(c(b2), t)
                alpha = lr * np.sqrt(1 - b2p) / (1 - b1p)
                m = s.get("m", np.zeros_like(g))
                v = s.get("v", np.zeros_like(g))
                m = m + (g - m) * c(1 - b1)
                v = v + (np.square(g) - v) * c(1 - b2)
                s["m"], s["v"] = m, v
                if cfg.get("amsgrad"):
                    s["vh"] = np.maximum(s.get("vh", np.zeros_like(g)), v)
                    v = s["vh"]
                w[i] = w[i] - (m * alpha) / (np.sqrt(v) + c(eps))
            elif kind == "adagrad":
                eps = cfg.get("epsilon", 1e-7)
                acc = s.get("a", np.full_like(g, c(cfg.get("initial_accumulator_value", 0.1)))) + np.square(g)
                s["a"] = acc
                w[i] = w[i] - (lr * g) / np.sqrt(acc + c(eps))
    return w


SHAPES = [(3, 4), (4,), (2, 3, 5), (1,)]


def make_problem(steps=4, scale=1.0, rng=None):
    rng = rng or np.random.default_rng(7)
    weights = [rng.standard_normal(s).astype(F) for s in SHAPES]
    grads = [[(rng.standard_normal(s) * scale).astype(F) for s in SHAPES] for _ in range(steps)]
    for step in grads:  # a weight with a zero gradient is still updated (decaying accumulators)
        step[1][:2] = 0
    return weights, grads


def run_flat(kind, cfg, weights, grads_per_step, dtype=F, chunk=None, no_decay=()):
    opt_cfg = {k: v for k, v in cfg.items() if k != "no_decay"}
    opt = O["make_optimizer"]({"class_name": kind, "config": opt_cfg})
    sizes = [w.size for w in weights]
    offsets = np.cumsum([0] + sizes[:-1])
    opt.build(sum(sizes), dtype, segments=list(zip(offsets, sizes)))
    if cfg.get("no_decay"):
        opt.exclude_from_weight_decay(cfg["no_decay"])
    flat = np.concatenate([w.ravel() for w in weights]).astype(dtype)
    old_chunk = O["_CHUNK"]
    if chunk:
        O["_CHUNK"] = chunk
    try:
        for grads in grads_per_step:
            g = np.concatenate([x.ravel() for x in grads]).astype(dtype)
            g_before = g.copy()
            opt.update(flat, g)
            np.testing.assert_array_equal(g, g_before)  # gradients are never modified
    finally:
        O["_CHUNK"] = old_chunk
    assert opt.iterations == len(grads_per_step)
    return [flat[o:o + n].reshape(w.shape) for o, n, w in zip(offsets, sizes, weights)], opt


OPT_CASES = [
    ("sgd", {}),
    ("sgd", {"learning_rate": 0.1, "momentum": 0.9}),
    ("sgd", {"learning_rate": 0.05, "momentum": 0.8, "nesterov": True}),
    ("rmsprop", {}),
    ("rmsprop", {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.5}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"learning_rate": 0.003, "centered": True, "momentum": 0.9, "epsilon": 1e-4}),
    ("adam", {}),
    ("adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-3}),
    ("adam", {"amsgrad": True}),
    ("adamw", {}),
    ("adamw", {"learning_rate": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("adagrad", {}),
    ("adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.5, "epsilon": 1e-5}),
    ("sgd", {"momentum": 0.9, "weight_decay": 0.01, "no_decay": (1, 3)}),
    ("adam", {"clipnorm": 0.5}),
    ("rmsprop", {"clipvalue": 0.3}),
    ("adam", {"global_clipnorm": 1.0}),
    ("sgd", {"global_clipnorm": 100.0}),
]


@pytest.mark.parametrize("kind,cfg", OPT_CASES, ids=[f"{k}-{sorted(c)}" for k, c in OPT_CASES])
def test_optimizer_matches_keras_update_step(kind, cfg):
    weights, grads = make_problem(steps=5)
    expected = keras_steps(kind, cfg, weights, grads)
    got, _ = run_flat(kind, cfg, weights, grads)
    got_chunked, _ = run_flat(kind, cfg, weights, grads, chunk=7)  # chunks across weight boundaries
    got_threaded, _ = run_threaded(kind, cfg, weights, grads)
    for e, g, gc, gt in zip(expected, got, got_chunked, got_threaded):
        if any(k in cfg for k in ("clipnorm", "global_clipnorm")):  # norms: summation order differs
            np.testing.assert_allclose(g, e, rtol=2e-6, atol=1e-7)
        else:  # same float32 operations in the same order: bit for bit
            np.testing.assert_array_equal(g, e)
        np.testing.assert_array_equal(gc, g)
        np.testing.assert_array_equal(gt, g)
        assert g.dtype == np.float32


def run_threaded(kind, cfg, weights, grads, parts=3):
    """run_flat with the buffer cut into `parts` ranges, each updated by its own thread in chunks of
    5 (so chunks and ranges cross weight boundaries), whatever the machine's CPU count."""
    saved = O["_thread_ranges"], O["_THREAD_CHUNK"]
    O["_thread_ranges"] = lambda n: [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]
    O["_THREAD_CHUNK"] = 5
    try:
        return run_flat(kind, cfg, weights, grads)
    finally:
        O["_thread_ranges"], O["_THREAD_CHUNK"] = saved


def test_large_buffers_are_split_between_threads_at_chunk_boundaries(monkeypatch):
    monkeypatch.setitem(O, "_THREAD_CHUNK", 10)
    monkeypatch.setitem(O, "_THREAD_MIN", 100)
    monkeypatch.setattr(O["_os"], "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert O["_thread_ranges"](99) == [(0, 99)]  # below the threshold: one part
    assert O["_thread_ranges"](100) == [(0, 40), (40, 80), (80, 100)]
    monkeypatch.setattr(O["_os"], "sched_getaffinity", lambda pid: {0}, raising=False)
    assert O["_thread_ranges"](10_000) == [(0, 10_000)]  # one CPU: one part


@pytest.mark.parametrize("kind,cfg", [("adam", {"amsgrad": True}), ("rmsprop", {"centered": True, "momentum": 0.5}),
                                      ("sgd", {"momentum": 0.9, "nesterov": True}), ("adagrad", {}),
                                      ("adamw", {"weight_decay": 0.02})])
def test_optimizer_float64(kind, cfg):
    weights, grads = make_problem(steps=3)
    expected = keras_steps(kind, cfg, weights, grads, dtype=np.float64)
    got, _ = run_flat(kind, cfg, weights, grads, dtype=np.float64)
    for e, g in zip(expected, got):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, e, rtol=1e-14, atol=1e-15)


def test_clipping_behaviour():
    weights, grads = make_problem(steps=1, scale=10.0)
    # clipnorm clips each weight to norm <= c separately: plain SGD moves each weight by lr * clipped g
    got, _ = run_flat("sgd", {"learning_rate": 1.0, "clipnorm": 0.5}, weights, grads)
    for w0, w1 in zip(weights, got):
        assert np.linalg.norm(w0 - w1) <= 0.5 * (1 + 1e-6)
    got, _ = run_flat("sgd", {"learning_rate": 1.0, "global_clipnorm": 0.5}, weights, grads)
    total = np.sqrt(sum(np.sum((w0 - w1).astype(np.float64) ** 2) for w0, w1 in zip(weights, got)))
    np.testing.assert_allclose(total, 0.5, rtol=1e-5)
    got, _ = run_flat("sgd", {"learning_rate": 1.0, "clipvalue": 0.25}, weights, grads)
    assert max(np.abs(w0 - w1).max() for w0, w1 in zip(weights, got)) <= 0.25 + 1e-6


def test_zero_gradients_still_decay_accumulators():
    opt = O["make_optimizer"]("rmsprop")
    opt.build(3)
    w = np.ones(3, F)
    opt.update(w, np.array([1.0, 1.0, 1.0], F))
    v1 = opt.get_state()["velocity"].copy()
    w_before = w.copy()
    opt.update(w, np.zeros(3, F))
    np.testing.assert_array_equal(opt.get_state()["velocity"], F(0.9) * v1)
    np.testing.assert_array_equal(w, w_before)  # zero step, but the velocity decayed


def test_state_round_trip_continues_identically():
    weights, grads = make_problem(steps=4)
    for kind, cfg in [("adam", {"amsgrad": True}), ("rmsprop", {"centered": True, "momentum": 0.9}),
                      ("sgd", {"momentum": 0.5}), ("adagrad", {}), ("adamw", {})]:
        straight, _ = run_flat(kind, cfg, weights, grads)
        half, opt = run_flat(kind, cfg, weights, grads[:2])
        state = opt.get_state()
        assert state["iterations"] == 2
        fresh = O["make_optimizer"]({"class_name": kind, "config": cfg})
        sizes = [w.size for w in weights]
        fresh.build(sum(sizes), F, segments=list(zip(np.cumsum([0] + sizes[:-1]), sizes)))
        fresh.set_state(state)
        flat = np.concatenate([w.ravel() for w in half])
        for g in grads[2:]:
            fresh.update(flat, np.concatenate([x.ravel() for x in g]))
        np.testing.assert_array_equal(flat, np.concatenate([w.ravel() for w in straight]))
        with pytest.raises(ValueError, match="shape"):
            bad = dict(state)
            bad[next(k for k in state if k not in ("iterations", "learning_rate"))] = np.zeros(3, F)
            fresh.set_state(bad)


def test_slots_per_variant():
    def slots(name, **cfg):
        opt = O["make_optimizer"]({"class_name": name, "config": cfg})
        opt.build(5)
        return sorted(k for k in opt.get_state() if k not in ("iterations", "learning_rate"))

    assert slots("sgd") == []
    assert slots("sgd", momentum=0.9) == ["momentum"]
    assert slots("rmsprop") == ["velocity"]
    assert slots("rmsprop", momentum=0.9, centered=True) == ["average_gradient", "momentum", "velocity"]
    assert slots("adam") == ["momentum", "velocity"]
    assert slots("adam", amsgrad=True) == ["momentum", "velocity", "velocity_hat"]
    assert slots("adagrad") == ["accumulator"]
    opt = O["make_optimizer"]("adagrad").build(4)
    np.testing.assert_array_equal(opt.get_state()["accumulator"], np.full(4, F(0.1)))


def test_make_optimizer_strings_dicts_and_configs():
    mk = O["make_optimizer"]
    for name, cls, defaults in [
        ("sgd", "SGD", {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False}),
        ("rmsprop", "RMSprop", {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                                "centered": False}),
        ("adam", "Adam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                          "amsgrad": False}),
        ("adamw", "AdamW", {"learning_rate": 0.001, "weight_decay": 0.004, "beta_1": 0.9, "amsgrad": False}),
        ("adagrad", "Adagrad", {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7}),
    ]:
        for ident in (name, cls, {"class_name": cls}, {"class_name": name, "config": {}}):
            opt = mk(ident)
            assert type(opt).__name__ == cls
            config = opt.get_config()
            for key, value in defaults.items():
                assert config[key] == pytest.approx(value, rel=1e-7), (name, key)
        config = mk(name).get_config()
        for key in ("name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue",
                    "use_ema", "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
                    "gradient_accumulation_steps"):
            assert key in config
        again = mk({"class_name": cls, "config": config})
        assert again.get_config() == config
        assert mk(mk(name).serialize()).get_config() == config
    assert mk("sgd").get_config()["name"] == "SGD" and mk("adam").get_config()["name"] == "adam"
    # Keras keeps the learning rate in a float32 variable
    assert mk({"class_name": "Adam", "config": {"learning_rate": 0.001}}).get_config()["learning_rate"] == float(F(0.001))
    opt = mk({"class_name": "RMSprop", "config": {"learning_rate": 0.01, "centered": True, "name": "r"}})
    assert opt.centered and opt.name == "r" and opt.learning_rate == pytest.approx(0.01)
    same = O["Adam"](learning_rate=0.5)
    assert mk(same) is same


@pytest.mark.parametrize("ident,match", [
    ("adamx", "Could not interpret optimizer identifier: 'adamx'; supported: adagrad, adam, adamw, rmsprop, sgd"),
    ("ADAM", "Keras spells it 'Adam' or 'adam'"),
    ("nadam", "gcomp does not implement yet"),
    ({"config": {}}, "class_name"),
    ({"class_name": "adam", "config": {"lr": 0.1}}, "use `learning_rate`"),
    ({"class_name": "adam", "config": {"learning_rate": 1}}, "should be float"),
    ({"class_name": "sgd", "config": {"momentum": 1}}, "`momentum` must be a float"),
    ({"class_name": "AdamW", "config": {"weight_decay": None}}, "weight_decay"),
    ({"class_name": "adam", "config": {"clipnorm": 1.0, "clipvalue": 1.0}}, "Only one of"),
    ({"class_name": "adam", "config": {"use_ema": True}}, "use_ema"),
    ({"class_name": "adam", "config": {"learning_rate": {"class_name": "ExponentialDecay"}}},
     "learning-rate schedule ExponentialDecay: .*missing"),
    ({"class_name": "adam", "config": {"learning_rate": {"class_name": "StepDecay", "config": {}}}},
     "unknown learning-rate schedule 'StepDecay'"),
    ({"class_name": "adam", "config": {"learning_rate": lambda: 0.1}}, "not a plain callable"),
    (42, "Could not interpret"),
])
def test_make_optimizer_errors(ident, match):
    with pytest.raises(ValueError, match=match):
        O["make_optimizer"](ident)


def test_update_checks_buffers_and_builds_lazily():
    opt = O["make_optimizer"]("sgd")
    w, g = np.ones(6, F), np.ones(6, F)
    opt.update(w, g)  # built on first use
    np.testing.assert_array_equal(w, np.full(6, F(1) - F(1) * F(0.01)))
    with pytest.raises(ValueError, match="flat float32 buffer of 6"):
        opt.update(np.ones(5, F), np.ones(5, F))
    with pytest.raises(ValueError, match="float32"):
        opt.update(w, np.ones(6))
    with pytest.raises(ValueError, match="tile"):
        O["make_optimizer"]("adam").build(10, segments=[(0, 4), (5, 5)])
    # scratch made for small chunks grows when the chunk size grows
    O["_CHUNK"], saved = 3, O["_CHUNK"]
    try:
        small = O["make_optimizer"]("adam").build(20)
    finally:
        O["_CHUNK"] = saved
    big = O["make_optimizer"]("adam").build(20)
    w1, w2 = np.ones(20, F), np.ones(20, F)
    small.update(w1, np.arange(20, dtype=F))
    big.update(w2, np.arange(20, dtype=F))
    np.testing.assert_array_equal(w1, w2)
    opt = O["make_optimizer"]({"class_name": "SGD", "config": {"decay": 0.1}})
    assert opt.warnings and "decay" in opt.warnings[0]


def test_large_buffer_step_updates_every_weight():
    # a buffer above the threads' threshold: every part is updated, exactly once per step
    n = O["_THREAD_MIN"] + 12345
    w = np.zeros(n, F)
    g = np.full(n, 0.5, F)
    opt = O["make_optimizer"]("adam").build(n)
    opt.update(w, g)
    opt.update(w, g)
    # Adam's first steps move every weight by about lr (the bias-corrected m / sqrt(v) is ~1)
    np.testing.assert_allclose(w, -0.002, rtol=1e-3)
    assert np.all(w == w[0])


# ---- learning-rate schedules ----------------------------------------------------------------------

def _cosine_ref(fraction, alpha):
    return (1 - alpha) * 0.5 * (1 + np.cos(np.pi * fraction)) + alpha


SCHEDULE_CASES = [  # (class, arguments, the rate at step s written out in float64)
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=3, decay_rate=0.7), lambda s: 0.1 * 0.7 ** (s / 3)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=3, decay_rate=0.7, staircase=True),
     lambda s: 0.1 * 0.7 ** (s // 3)),
    ("PiecewiseConstantDecay", dict(boundaries=[4, 9.5], values=[0.01, 0.005, 0.001]),
     lambda s: 0.01 if s <= 4 else 0.005 if s <= 9 else 0.001),  # 9.5 compares as the integer 9
    ("PolynomialDecay", dict(initial_learning_rate=0.01, decay_steps=7, end_learning_rate=0.001, power=0.5),
     lambda s: 0.009 * (1 - min(s, 7) / 7) ** 0.5 + 0.001),
    ("PolynomialDecay", dict(initial_learning_rate=0.01, decay_steps=4, end_learning_rate=0.001, power=2.0, cycle=True),
     lambda s: 0.009 * (1 - s / (4 * max(1, np.ceil(s / 4)))) ** 2 + 0.001),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=2, decay_rate=0.5), lambda s: 0.1 / (1 + 0.5 * s / 2)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=3, decay_rate=0.3, staircase=True),
     lambda s: 0.1 / (1 + 0.3 * (s // 3))),
    ("CosineDecay", dict(initial_learning_rate=0.05, decay_steps=10, alpha=0.1),
     lambda s: 0.05 * _cosine_ref(min(s, 10) / 10, 0.1)),
    ("CosineDecay", dict(initial_learning_rate=0.001, decay_steps=10, alpha=0.1, warmup_target=0.01, warmup_steps=3),
     lambda s: 0.001 + 0.009 * s / 3 if s < 3 else 0.01 * _cosine_ref(min(s - 3, 10) / 10, 0.1)),
    # restarts after 3, 3 + 6 and 3 + 6 + 12 steps, each 0.8 times the last
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=3, t_mul=2.0, m_mul=0.8, alpha=0.05),
     lambda s: next(0.1 * ((1 - 0.05) * 0.8 ** k * 0.5 * (1 + np.cos(np.pi * (s - start) / length)) + 0.05)
                    for k, (start, length) in enumerate([(0, 3), (3, 6), (9, 12), (21, 24)])
                    if s < start + length)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=3, t_mul=1.0, m_mul=0.9, alpha=0.1),
     lambda s: 0.1 * ((1 - 0.1) * 0.9 ** (s // 3) * 0.5 * (1 + np.cos(np.pi * (s % 3) / 3)) + 0.1)),
]


@pytest.mark.parametrize("name, kwargs, formula", SCHEDULE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(SCHEDULE_CASES)])
def test_schedules_follow_keras_formulas_in_float32(name, kwargs, formula):
    schedule = O["SCHEDULES"][name](**kwargs)
    for step in range(30):
        rate = schedule(step)
        assert isinstance(rate, np.float32), (step, type(rate))
        assert rate == pytest.approx(formula(step), rel=2e-6, abs=1e-9), step
    # serialized as Keras serializes it, and back
    again = O["make_schedule"](O["serialize_schedule"](schedule))
    assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
    assert [again(s) for s in range(30)] == [schedule(s) for s in range(30)]


def test_an_optimizer_steps_at_its_schedules_rate_and_refuses_a_new_constant():
    schedule = O["PiecewiseConstantDecay"]([1], [0.5, 0.25])
    opt = O["SGD"](learning_rate=schedule).build(2, np.float32)
    w, g = np.zeros(2, np.float32), np.ones(2, np.float32)
    rates = []
    for _ in range(3):
        rates.append(opt.learning_rate)
        opt.update(w, g)
    assert rates == [0.5, 0.5, 0.25]  # steps 0 and 1 are <= the boundary 1
    np.testing.assert_array_equal(w, [-1.25, -1.25])
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.1
    config = opt.get_config()["learning_rate"]
    assert config["class_name"] == "PiecewiseConstantDecay" and config["module"] == "keras.optimizers.schedules"
    copy = O["make_optimizer"]({"class_name": "SGD", "config": opt.get_config()})
    assert copy.learning_rate_schedule.get_config() == schedule.get_config()
    state = opt.get_state()
    assert "learning_rate" not in state  # follows from the iterations
    copy.build(2, np.float32)
    copy.set_state(state)
    assert copy.learning_rate == 0.25


@pytest.mark.parametrize("make, match", [
    (lambda: O["ExponentialDecay"](0.1, decay_steps=0, decay_rate=0.5), "`decay_steps` must be > 0"),
    (lambda: O["CosineDecayRestarts"](0.1, first_decay_steps=-1), "`first_decay_steps` must be > 0"),
    (lambda: O["PiecewiseConstantDecay"]([1, 2], [0.1, 0.2]), "boundaries should be 1 less"),
    (lambda: O["serialize_schedule"](type("Mine", (O["LearningRateSchedule"],), {"__call__": lambda self, s: 0.1})()),
     "Mine is not one of Keras's"),
])
def test_schedule_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
