"""The C backend's training kernels (templates/c/gcomp_train.c: losses and their gradients, the
optimizers' update, dropout's random stream) against the NumPy runtime (templates/numpy/losses.py,
optimizers.py, training.py's loss_value, prelude.py's dropout_train): compiled with strict warnings
into a shared library and called through ctypes. Also: the loss templates rendered into a C function
and run, finite-difference checks of the loss gradients, C11 and OpenMP builds (identical results),
and an AddressSanitizer/UBSan run on exactly-sized heap buffers."""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from c_harness import CC, WARNINGS, runs_with

from gcomp.codegen import runtime_file

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "templates" / "c"
SOURCE = C_DIR / "gcomp_train.c"
NUMPY_DIR = ROOT / "templates" / "numpy"

pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")

P, L, D, I = ctypes.c_void_p, ctypes.c_long, ctypes.c_double, ctypes.c_int
U64 = ctypes.c_uint64
LOSSES = ["mean_squared_error", "mean_absolute_error", "binary_crossentropy", "categorical_crossentropy",
          "sparse_categorical_crossentropy"]
OPTIMIZERS = ["sgd", "rmsprop", "adam", "adamw", "adagrad"]


class GkOptimizer(ctypes.Structure):
    _fields_ = [("kind", I), ("learning_rate", D), ("momentum", D), ("nesterov", I), ("rho", D),
                ("centered", I), ("epsilon", D), ("beta_1", D), ("beta_2", D), ("amsgrad", I),
                ("initial_accumulator_value", D), ("weight_decay", D), ("clipnorm", D),
                ("global_clipnorm", D), ("clipvalue", D), ("loss_scale_factor", D)]


def _bind(lib):
    sigs = {
        "gk_loss": (L, [I, I, P, P, P, L, L, L, D, I, P, P]),
        "gk_optimizer_defaults": (None, [P, I]),
        "gk_optimizer_slot_count": (L, [P]),
        "gk_optimizer_init_slots": (None, [P, P, L]),
        "gk_optimizer_update": (None, [P, P, P, P, L, P, L, P, P]),
        "gk_splitmix64": (U64, [U64]),
        "gk_dropout": (None, [P, P, P, L, D, U64, P]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def _build(out: Path, *flags: str, sources=(SOURCE,)) -> Path:
    cmd = [CC, *flags, *WARNINGS, "-I", str(C_DIR), *map(str, sources), "-o", str(out), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
    return out


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("gt") / "libgktrain.so"
    return _bind(ctypes.CDLL(str(_build(out, "-std=c99", "-O2", "-fPIC", "-shared"))))


@pytest.fixture(scope="module")
def ref():
    """The NumPy runtime as a generated training module holds it: prelude, losses, schedules,
    optimizers, training."""
    return vars(runtime_file("prelude", "losses", "schedules", "optimizers", "training"))


def ptr(a):
    return None if a is None else a.ctypes.data


def ulps(a, b):
    """Distance in float32 ulps, elementwise (NaN-free inputs)."""
    def ordered(x):
        i = np.ascontiguousarray(x, np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)
    return np.abs(ordered(a) - ordered(b))


# ---- losses ------------------------------------------------------------------------------------

def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def loss_inputs(loss, from_logits, shape, seed):
    """(pred, target) float32 (int32 labels for sparse), with extreme values mixed in."""
    rng = np.random.default_rng(seed)
    c = shape[-1]
    rows = int(np.prod(shape[:-1]))
    if loss in ("mean_squared_error", "mean_absolute_error"):
        p = rng.standard_normal(shape).astype(np.float32)
        t = rng.standard_normal(shape).astype(np.float32)
        t.reshape(-1)[::7] = p.reshape(-1)[::7]  # equal values: |d|' = sign(0) = 0
        p.reshape(-1)[1] = 1e4
        return p, t
    if from_logits:
        p = (rng.standard_normal(shape) * 3).astype(np.float32)
        flat = p.reshape(rows, c)
        flat[0, 0], flat[-1, -1] = 100.0, -100.0
        flat[1 % rows, :] = 1000.0  # equal huge logits
        if rows > 2:
            flat[2, :] = -60.0
            flat[2, 0] = 40.0
    elif loss == "binary_crossentropy":
        p = rng.uniform(0, 1, shape).astype(np.float32)
        flat = p.reshape(-1)
        extremes = [0.0, 1.0, 1e-8, 1 - 1e-8, 0.5, 1e-7, np.float32(1 - 1e-7), 0.9999]
        flat[:len(extremes)] = extremes[:flat.size]
    else:  # probabilities: softmax rows, one-hot rows, zeros, unnormalised rows
        p = _softmax(rng.standard_normal(shape) * 2).astype(np.float32)
        flat = p.reshape(rows, c)
        flat[0, :] = 0.0
        flat[0, c // 2] = 1.0
        if rows > 2:
            flat[1, :] *= np.float32(3.0)
            flat[2, :] = 1e-9
            flat[2, 0] = 1.0
    if loss == "sparse_categorical_crossentropy":
        t = rng.integers(0, c, shape[:-1]).astype(np.int32)
        t.reshape(-1)[0] = 0  # the zero-probability class of row 0 (clipped), and others
        return p, t
    if loss == "binary_crossentropy":
        t = rng.uniform(0, 1, shape).astype(np.float32)
        t.reshape(-1)[::3] = np.round(t.reshape(-1)[::3])
        return p, t
    t = np.eye(c, dtype=np.float32)[rng.integers(0, c, shape[:-1])]
    t.reshape(rows, c)[1::2] = _softmax(rng.standard_normal((rows, c))[1::2]).astype(np.float32)  # soft
    return p, t


def c_loss(lib, loss, from_logits, p, t, sw, weight=1.0, want_grad=True, reduction="sum_over_batch_size"):
    shape = p.shape
    batch, inner, classes = shape[0], int(np.prod(shape[1:-1], dtype=np.int64)), shape[-1]
    out = np.full(2, np.nan, np.float32)
    grad = np.full(p.size + 8, np.nan, np.float32) if want_grad else None
    bad = lib.gk_loss(LOSSES.index(loss), int(from_logits), ptr(p), ptr(t), ptr(sw), batch, inner, classes,
                      weight, int(reduction == "sum"), ptr(out), ptr(grad))
    if grad is not None:
        assert np.isnan(grad[p.size:]).all(), "gk_loss wrote past the gradient"
        grad = grad[:p.size].reshape(shape)
    assert np.isnan(out[1])
    return bad, out[0], grad


CASES = [(loss, logits) for loss in LOSSES for logits in (False, True)
         if logits is False or "crossentropy" in loss]


SHAPES = [(6, 5), (4, 3, 5), (9, 1), (2, 3, 1)]  # ranks 2 and 3; one class (not for categorical losses)
LOSS_CASES = [(loss, logits, shape) for loss, logits in CASES for shape in SHAPES
              if shape[-1] > 1 or "categorical" not in loss]


@pytest.mark.parametrize("loss, from_logits, shape", LOSS_CASES)
@pytest.mark.parametrize("weights", ["none", "zeros"])
def test_loss_and_gradient_match_numpy(lib, ref, loss, from_logits, shape, weights):
    p, t = loss_inputs(loss, from_logits, shape, seed=len(loss) + shape[-1])
    sw = None
    if weights == "zeros":
        sw = np.random.default_rng(3).uniform(0, 2, shape[0]).astype(np.float32)
        sw[::3] = 0.0
    weight = 0.3 if weights == "zeros" else 1.0
    with np.errstate(all="ignore"):
        want_loss, want_grad = ref["loss_and_grad"](loss, t, p, sw, from_logits=from_logits, weight=weight)
        value = ref["loss_value"](loss, t, p, sw, from_logits=from_logits)
    assert value == want_loss and want_loss.dtype == np.float32 and want_grad.dtype == np.float32
    bad, got_loss, got_grad = c_loss(lib, loss, from_logits, p, t, sw, weight)
    assert bad == -1
    assert np.isfinite(want_loss) and np.isfinite(want_grad).all()
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6, atol=1e-7)
    # elementwise: exp / log / sums rounded once in C, NumPy's float32 SIMD ones are a few ulps off
    scale = np.abs(want_grad).max()
    np.testing.assert_allclose(got_grad, want_grad, rtol=2e-6, atol=1e-6 * scale)
    assert np.array_equal(got_grad == 0, want_grad == 0)  # clipped / zero-weight entries exactly 0
    # loss alone, gradient alone: the same numbers
    _, only_loss, _ = c_loss(lib, loss, from_logits, p, t, sw, weight, want_grad=False)
    assert only_loss == got_loss


@pytest.mark.parametrize("loss, from_logits, shape", [("mean_squared_error", False, (6, 5)),
                                                      ("categorical_crossentropy", True, (4, 3, 5)),
                                                      ("sparse_categorical_crossentropy", False, (6, 5))])
def test_sum_reduction_is_the_mean_times_the_count(lib, ref, loss, from_logits, shape):
    # Keras's reduction="sum": the weighted per-sample losses summed, not divided by their count
    p, t = loss_inputs(loss, from_logits, shape, seed=4)
    sw = np.random.default_rng(6).uniform(0, 2, shape[0]).astype(np.float32)
    count = int(np.prod(shape[:-1]))
    mean, mean_grad = ref["loss_and_grad"](loss, t, p, sw, from_logits=from_logits, weight=0.5)
    total, total_grad = ref["loss_and_grad"](loss, t, p, sw, from_logits=from_logits, weight=0.5, reduction="sum")
    assert ref["loss_value"](loss, t, p, sw, from_logits=from_logits, reduction="sum") == total
    np.testing.assert_allclose(total, mean * count, rtol=1e-6)
    np.testing.assert_allclose(total_grad, mean_grad * count, rtol=1e-5, atol=1e-7)
    _, got, got_grad = c_loss(lib, loss, from_logits, p, t, sw, 0.5, reduction="sum")
    np.testing.assert_allclose(got, total, rtol=1e-6)
    np.testing.assert_allclose(got_grad, total_grad, rtol=2e-6, atol=1e-6 * np.abs(total_grad).max())


@pytest.mark.parametrize("loss, from_logits", [("mean_squared_error", False), ("mean_absolute_error", False),
                                               ("binary_crossentropy", False)])
def test_elementwise_losses_are_bit_identical(lib, ref, loss, from_logits):
    """No transcendental in the gradient: the same float32 operations give the same bits."""
    p, t = loss_inputs(loss, from_logits, (40, 7), seed=11)
    sw = np.random.default_rng(5).uniform(0, 2, 40).astype(np.float32)
    _, want = ref["loss_and_grad"](loss, t, p, sw, from_logits=from_logits, weight=0.7)
    _, _, got = c_loss(lib, loss, from_logits, p, t, sw, 0.7)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("loss, from_logits", [("mean_squared_error", False), ("binary_crossentropy", False),
                                               ("binary_crossentropy", True), ("categorical_crossentropy", False),
                                               ("categorical_crossentropy", True),
                                               ("sparse_categorical_crossentropy", False),
                                               ("sparse_categorical_crossentropy", True)])
def test_gradient_against_finite_differences(lib, loss, from_logits):
    rng = np.random.default_rng(7)
    shape = (3, 2, 4)
    if from_logits or loss == "mean_squared_error":
        p = rng.standard_normal(shape).astype(np.float32)
    elif loss == "binary_crossentropy":
        p = rng.uniform(0.2, 0.8, shape).astype(np.float32)
    else:
        p = rng.uniform(0.2, 1.0, shape).astype(np.float32)  # unnormalised: exercises the p / sum(p) path
    if loss == "sparse_categorical_crossentropy":
        t = rng.integers(0, 4, shape[:-1]).astype(np.int32)
    elif loss == "categorical_crossentropy":
        t = _softmax(rng.standard_normal(shape)).astype(np.float32)
    else:
        t = rng.uniform(0, 1, shape).astype(np.float32)
    sw = np.array([1.0, 0.5, 2.0], np.float32)
    weight = 1.7
    _, _, grad = c_loss(lib, loss, from_logits, p, t, sw, weight)
    h = 1e-2 if loss != "mean_squared_error" else 1e-1
    fd = np.empty(p.size)
    for i in range(p.size):
        vals = []
        for step in (h, -h, 2 * h, -2 * h):
            q = p.copy()
            q.reshape(-1)[i] += np.float32(step)
            vals.append(float(c_loss(lib, loss, from_logits, q, t, sw, want_grad=False)[1]))
        fd[i] = weight * (8 * (vals[0] - vals[1]) - (vals[2] - vals[3])) / (12 * h)  # 4th-order central
    np.testing.assert_allclose(grad.reshape(-1), fd, rtol=2e-3, atol=2e-4)


def test_sparse_labels_out_of_range(lib, ref):
    p, _ = loss_inputs("sparse_categorical_crossentropy", True, (4, 3, 5), seed=1)
    for labels, want_pos in [([[0, 1, 5], [2, 7, 7], [0, 0, 0], [1, 1, 1]], 4),   # the largest, first seen
                             ([[0, 1, 5], [2, -1, 7], [-3, 0, -3], [1, 1, 1]], 6),  # a negative wins
                             ([[0, 1, 4], [2, 3, 0], [0, 0, 0], [1, 1, 4]], -1)]:
        t = np.array(labels, np.int32)
        grad = np.full(p.size, 7.0, np.float32)
        out = np.full(1, 7.0, np.float32)
        bad = lib.gk_loss(LOSSES.index("sparse_categorical_crossentropy"), 1, ptr(p), ptr(t), None, 4, 3, 5,
                          1.0, 0, ptr(out), ptr(grad))
        assert bad == want_pos
        if want_pos < 0:
            continue
        assert (grad == 7.0).all() and out[0] == 7.0  # nothing written
        with pytest.raises(ValueError, match=f"label {t.reshape(-1)[bad]} is outside"):
            ref["loss_and_grad"]("sparse_categorical_crossentropy", t, p, None, from_logits=True)


def test_empty_batch_and_null_weights(lib, ref):
    p = np.zeros((0, 4), np.float32)
    bad, value, _ = c_loss(lib, "categorical_crossentropy", False, p, p, None)
    assert bad == -1 and value == 0.0
    # sample weights of NULL = all ones
    p, t = loss_inputs("categorical_crossentropy", True, (5, 4), seed=2)
    _, a, ga = c_loss(lib, "categorical_crossentropy", True, p, t, None, 2.0)
    _, b, gb = c_loss(lib, "categorical_crossentropy", True, p, t, np.ones(5, np.float32), 2.0)
    assert a == b and np.array_equal(ga, gb)


def test_large_batch_loss_is_accurate(lib, ref):
    """Sums in double: a large batch's mean stays within float32 rounding of the exact mean."""
    p, t = loss_inputs("categorical_crossentropy", True, (20000, 10), seed=4)
    _, got, _ = c_loss(lib, "categorical_crossentropy", True, p, t, None, want_grad=False)
    exact, _ = ref["loss_and_grad"]("categorical_crossentropy", t.astype(np.float64), p.astype(np.float64),
                                    None, from_logits=True)
    np.testing.assert_allclose(got, exact, rtol=1e-6)


# ---- the loss templates ------------------------------------------------------------------------

TEMPLATE_HARNESS = r"""
#include "gcomp_train.h"
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>

enum gc_status { GC_OK = 0, GC_ERR_ALLOC, GC_ERR_SHAPE, GC_ERR_BATCH, GC_ERR_INDEX, GC_ERR_WEIGHTS, GC_ERR_IO };
typedef struct { float *scratch; char error[256]; } model;
typedef struct { const void *data; } tensor;

static int fail(model *m, int code, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(m->error, sizeof m->error, format, args);
    va_end(args);
    return code;
}

static model the_model;
const char *harness_error(void) { return the_model.error; }

int run_loss(const tensor *inputs, float *A, long N_batch, long N_len) {
    model *m = &the_model;
    (void)m;
    (void)fail;
LOSS
    return GC_OK;
}

int run_loss_vjp(const tensor *inputs, float *A, long N_batch, long N_len) {
    model *m = &the_model;
    (void)m;
VJP
    return GC_OK;
}
"""


@pytest.mark.parametrize("loss, from_logits", [("sparse_categorical_crossentropy", True),
                                               ("binary_crossentropy", False), ("mean_absolute_error", False)])
def test_templates_render_compile_and_run(lib, tmp_path, loss, from_logits):
    from gcomp.backends.c_backend import _env
    from gcomp.losses import kind_of
    env = _env()
    sparse = loss == "sparse_categorical_crossentropy"
    context = {
        "x": ["((const float *)inputs[0].data)",
              "((const int32_t *)inputs[1].data)" if sparse else "((const float *)inputs[1].data)",
              "((const float *)inputs[2].data)"],
        "xd": [["N_batch", "N_len", "5L"], ["N_batch", "N_len"] + ([] if sparse else ["5L"]), ["N_batch"]],
        "x_dtype": ["float32", "int32" if sparse else "float32", "float32"],
        "y": ["(A + 0L)"], "a": {"loss": kind_of(loss), "from_logits": from_logits, "weight": 0.25},  # the graph's name
        "layer": 'out"put', "yd": [[]], "op": "loss", "node": "n", "source": "", "p": {},
    }
    code = {op: env.get_template(f"c/ops/{op}.c.j2").render(**context) for op in ("loss", "loss_vjp")}
    source = tmp_path / "harness.c"
    source.write_text(TEMPLATE_HARNESS.replace("LOSS", code["loss"]).replace("VJP", code["loss_vjp"]))
    so = _build(tmp_path / "libharness.so", "-std=c99", "-O1", "-fPIC", "-shared", sources=(source, SOURCE))
    h = ctypes.CDLL(str(so))
    h.harness_error.restype = ctypes.c_char_p
    for fn in (h.run_loss, h.run_loss_vjp):
        fn.restype, fn.argtypes = I, [P, P, L, L]

    p, t = loss_inputs(loss, from_logits, (3, 4, 5), seed=9)
    sw = np.array([1.0, 0.0, 2.5], np.float32)
    tensors = (ctypes.c_void_p * 3)(ptr(p), ptr(t), ptr(sw))
    arena = np.full(p.size + 1, np.nan, np.float32)
    assert h.run_loss(tensors, ptr(arena), 3, 4) == 0
    _, want_loss, _ = c_loss(lib, loss, from_logits, p, t, sw, want_grad=False)
    assert arena[0] == want_loss and np.isnan(arena[1])
    assert h.run_loss_vjp(tensors, ptr(arena), 3, 4) == 0
    _, _, want_grad = c_loss(lib, loss, from_logits, p, t, sw, 0.25)
    assert np.array_equal(arena[:p.size].reshape(p.shape), want_grad)
    if sparse:
        t[1, 2] = 9
        tensors = (ctypes.c_void_p * 3)(ptr(p), ptr(t), ptr(sw))
        for fn in (h.run_loss, h.run_loss_vjp):
            assert fn(tensors, ptr(arena), 3, 4) == 4  # GC_ERR_INDEX
            assert h.harness_error().decode() == (
                'output "out"put": sparse_categorical_crossentropy: label 9 at position 6 of the targets is '
                "outside [0, 5) for predictions with 5 classes")


# ---- optimizers --------------------------------------------------------------------------------

SEGMENTS = [(0, 7), (7, 33), (40, 1), (41, 0), (41, 120)]
N = 161

OPT_CONFIGS = [
    ("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True, "learning_rate": 0.03}),
    ("sgd", {"clipnorm": 1.0}), ("sgd", {"clipvalue": 0.1, "momentum": 0.5}),
    ("sgd", {"weight_decay": 0.01, "no_decay": [1, 3]}), ("sgd", {"global_clipnorm": 2.0}),
    ("rmsprop", {}), ("rmsprop", {"momentum": 0.5}), ("rmsprop", {"centered": True}),
    ("rmsprop", {"centered": True, "momentum": 0.3, "rho": 0.8, "epsilon": 1e-3}),
    ("rmsprop", {"global_clipnorm": 1.0}), ("rmsprop", {"weight_decay": 0.1, "clipvalue": 0.5}),
    ("adam", {}), ("adam", {"amsgrad": True}), ("adam", {"clipnorm": 0.5, "beta_1": 0.8, "beta_2": 0.99}),
    ("adam", {"global_clipnorm": 100.0}), ("adam", {"loss_scale_factor": 128.0}),
    ("adam", {"learning_rate": 0.003, "epsilon": 1e-4, "clipvalue": 1.0}),
    ("adamw", {}), ("adamw", {"amsgrad": True, "weight_decay": 0.05, "no_decay": [0, 2]}),
    ("adamw", {"global_clipnorm": 0.5, "loss_scale_factor": 0.5}),
    ("adagrad", {}), ("adagrad", {"initial_accumulator_value": 0.5, "epsilon": 1e-3, "learning_rate": 0.07}),
    ("adagrad", {"clipnorm": 2.0, "weight_decay": 0.02}),
]


def _c_optimizer(lib, name, config):
    opt = GkOptimizer()
    lib.gk_optimizer_defaults(ctypes.byref(opt), OPTIMIZERS.index(name))
    for key, value in config.items():
        if key != "no_decay":
            setattr(opt, key, value)
    return opt


def _step_grads(step, n=N, seed=0):
    rng = np.random.default_rng(1000 * seed + step)
    g = rng.standard_normal(n).astype(np.float32) * np.float32(0.5)
    g[rng.integers(0, n, n // 8)] *= np.float32(20.0)  # large: clipping matters
    g[rng.integers(0, n, n // 10)] = 0.0
    return g


def _run_both(lib, name, config, segments=SEGMENTS, n=N, steps=5, c_lib=None, runtime=None):
    """(NumPy optimizer, [(w_np, w_c, slots_np, slots_c)] per step)."""
    c_lib = c_lib or lib
    ref_cfg = {k: v for k, v in config.items() if k != "no_decay"}
    cls = (runtime or runtime_file("schedules", "optimizers")).OPTIMIZERS[name]
    py = cls(**ref_cfg).build(n, np.float32, segments)
    if "no_decay" in config:
        py.exclude_from_weight_decay(config["no_decay"])
    copt = _c_optimizer(c_lib, name, config)
    count = c_lib.gk_optimizer_slot_count(ctypes.byref(copt))
    assert count == len(py._active_slots())
    slots = np.full(count * n + 8, np.nan, np.float32)
    c_lib.gk_optimizer_init_slots(ctypes.byref(copt), ptr(slots), n)
    assert np.isnan(slots[count * n:]).all()
    seg = np.array(segments, dtype=np.int64).reshape(-1, 2).astype(ctypes.c_long)
    no_decay = np.zeros(len(segments), np.uint8)
    no_decay[list(config.get("no_decay", []))] = 1
    w0 = np.random.default_rng(99).standard_normal(n).astype(np.float32)
    w_np, w_c = w0.copy(), w0.copy()
    iterations = ctypes.c_long(0)
    history = []
    for step in range(steps):
        g = _step_grads(step, n)
        g_keep = g.copy()
        with np.errstate(all="ignore"):
            py.update(w_np, g)
        assert np.array_equal(g, g_keep)
        g_c = g.copy()
        c_lib.gk_optimizer_update(ctypes.byref(copt), ptr(w_c), ptr(g_c), ptr(slots), n, ptr(seg), len(segments),
                                  ptr(no_decay), ctypes.byref(iterations))
        assert iterations.value == py.iterations == step + 1
        state = py.get_state()
        s_np = np.stack([state[s] for s in py._active_slots()]) if count else np.zeros((0, n), np.float32)
        history.append((w_np.copy(), w_c.copy(), s_np, slots[:count * n].reshape(count, n).copy()))
    return py, history


class _CRoundedNumPy:
    """numpy, but for np.dot and np.power as the C kernels compute them: a float32 dot product
    rounded once from its double sum (NumPy's float32 BLAS sdot can be an ulp away), and float32
    powers from libm's powf (NumPy's SIMD power, used on some CPUs, can be an ulp away)."""

    def __init__(self):
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        libm.powf.restype, libm.powf.argtypes = ctypes.c_float, [ctypes.c_float, ctypes.c_float]
        self._powf = libm.powf

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def dot(a, b):
        return a.dtype.type(np.dot(a.astype(np.float64), b.astype(np.float64)))

    def power(self, base, exponent):
        return np.float32(self._powf(float(base), float(exponent)))


def optimizers_runtime(exact):
    """templates/numpy/optimizers.py; with `exact`, its np.dot and np.power rounded as in C."""
    if not exact:
        return runtime_file("schedules", "optimizers")
    namespace = {"__name__": "gcomp_optimizers_c_rounded"}
    for path in (NUMPY_DIR / "schedules.py", NUMPY_DIR / "optimizers.py"):
        exec(compile(path.read_text(), str(path), "exec"), namespace)
    namespace["np"] = _CRoundedNumPy()
    return type("Runtime", (), namespace)


@pytest.mark.parametrize("name, config", OPT_CONFIGS,
                         ids=[f"{n}-" + "-".join(f"{k}={v}" for k, v in c.items()) for n, c in OPT_CONFIGS])
def test_optimizer_matches_numpy(lib, name, config):
    """Bit for bit, every step, weights and slots, against the NumPy optimizer with its norms and
    Adam's beta powers rounded as C rounds them; against plain NumPy within those roundings."""
    _, exact = _run_both(lib, name, config, runtime=optimizers_runtime(True))
    _, plain = _run_both(lib, name, config)
    for step, ((w_np, w_c, s_np, s_c), (w_plain, _, s_plain, _)) in enumerate(zip(exact, plain)):
        assert np.isfinite(w_c).all()
        assert np.array_equal(w_c, w_np), (step, np.flatnonzero(w_c != w_np)[:5])
        assert np.array_equal(s_c, s_np), step
        # plain NumPy: the same but where an ulp of a norm or of Adam's alpha changed the update
        np.testing.assert_allclose(w_c, w_plain, rtol=2.5e-7, atol=1e-9)
        np.testing.assert_allclose(s_c, s_plain, rtol=2.5e-7, atol=1e-6 * np.abs(s_plain).max(initial=0))
    assert not np.array_equal(exact[-1][1], np.random.default_rng(99).standard_normal(N).astype(np.float32))


def test_optimizer_defaults_and_slots(lib, ref):
    for name in OPTIMIZERS:
        opt = _c_optimizer(lib, name, {})
        py = ref["OPTIMIZERS"][name]()
        assert opt.learning_rate == py._learning_rate
        for field in ("momentum", "rho", "epsilon", "beta_1", "beta_2", "initial_accumulator_value"):
            if hasattr(py, field):
                assert getattr(opt, field) == getattr(py, field), (name, field)
        assert (math.isnan(opt.weight_decay) if py.weight_decay is None else opt.weight_decay == py.weight_decay)
        assert opt.clipnorm == opt.global_clipnorm == opt.clipvalue == 0.0 and math.isnan(opt.loss_scale_factor)
    opt = _c_optimizer(lib, "adagrad", {"initial_accumulator_value": 0.3})
    slots = np.empty(5, np.float32)
    lib.gk_optimizer_init_slots(ctypes.byref(opt), ptr(slots), 5)
    assert (slots == np.float32(0.3)).all()
    counts = {("sgd", 0.0): 0, ("sgd", 0.9): 1}
    for (name, momentum), want in counts.items():
        assert lib.gk_optimizer_slot_count(ctypes.byref(_c_optimizer(lib, name, {"momentum": momentum}))) == want
    rms = _c_optimizer(lib, "rmsprop", {"momentum": 0.1, "centered": True})
    assert lib.gk_optimizer_slot_count(ctypes.byref(rms)) == 3


def test_optimizer_one_segment_by_default(lib):
    """segments NULL = one segment [0, n): clipnorm then acts on the whole buffer."""
    for config in ({"clipnorm": 1.0}, {"weight_decay": 0.1}):
        results = []
        for segs in (None, np.array([[0, N]], dtype=ctypes.c_long)):
            opt = _c_optimizer(lib, "sgd", config)
            w, g = np.ones(N, np.float32), _step_grads(0)
            it = ctypes.c_long(5)
            lib.gk_optimizer_update(ctypes.byref(opt), ptr(w), ptr(g), None, N, ptr(segs),
                                    0 if segs is None else 1, None, ctypes.byref(it))
            assert it.value == 6
            results.append(w)
        assert np.array_equal(*results)


def test_adam_alpha_uses_iterations(lib):
    """t = iterations + 1: starting from iterations = 1000 gives the NumPy optimizer's step 1001."""
    py = runtime_file("schedules", "optimizers").Adam(learning_rate=0.01).build(N, np.float32)
    py.iterations = 1000
    w_np = np.linspace(-1, 1, N).astype(np.float32)
    w_c = w_np.copy()
    g = _step_grads(3)
    py.update(w_np, g)
    copt = _c_optimizer(lib, "adam", {"learning_rate": 0.01})
    slots = np.zeros(2 * N, np.float32)
    it = ctypes.c_long(1000)
    lib.gk_optimizer_update(ctypes.byref(copt), ptr(w_c), ptr(g.copy()), ptr(slots), N, None, 0, None,
                            ctypes.byref(it))
    assert it.value == 1001
    assert ulps(w_c, w_np).max() <= 1


# ---- dropout -----------------------------------------------------------------------------------

M64 = (1 << 64) - 1


def splitmix64(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def test_splitmix64_known_values(lib, ref):
    # Vigna's splitmix64.c seeded with 0 outputs splitmix64(0), splitmix64(golden), ...
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    assert splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4
    for z in [0, 1, 12345, M64, 0x9E3779B97F4A7C15, 1 << 63]:
        assert lib.gk_splitmix64(z) == splitmix64(z)
    key, counter = M64 - 2, 5  # key + counter wraps mod 2^64
    top = (ref["_splitmix64"](key, counter, 6) >> np.uint64(40))
    assert [int(v) for v in top] == [splitmix64((key + counter + i) & M64) >> 40 for i in range(6)]


def c_dropout(lib, x, rate, key, counter):
    y = np.full(x.size + 4, np.nan, np.float32)
    mask = np.full(x.size + 4, np.nan, np.float32)
    c = U64(counter)
    lib.gk_dropout(ptr(x), ptr(y), ptr(mask), x.size, rate, key, ctypes.byref(c))
    assert np.isnan(y[x.size:]).all() and np.isnan(mask[x.size:]).all()
    return y[:x.size].reshape(x.shape), mask[:x.size].reshape(x.shape), c.value


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.25, 0.5, 0.7, 0.999, 1.0, 1.5])
def test_dropout_c_and_numpy_draw_identical_masks(lib, ref, rate):
    stream = ref["DropoutStream"](2024)
    counter = 0
    for shape in [(1,), (7, 3), (0, 4), (50, 37), (3, 41, 11)]:
        x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
        before = stream.counter
        y_np, m_np = ref["dropout_train"](x, rate, stream)
        assert m_np.dtype == y_np.dtype == np.float32 and m_np.shape == x.shape
        assert stream.counter == before + x.size
        y_c, m_c, counter = c_dropout(lib, x, rate, stream.key, counter)
        assert counter == stream.counter
        assert np.array_equal(m_c, m_np) and np.array_equal(y_c, y_np)
        keep = np.float32(1.0 / (1.0 - rate)) if rate < 1 else np.float32(0)
        assert set(np.unique(m_c)) <= {np.float32(0), keep}


def test_dropout_in_place_and_without_mask(lib, ref):
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    y_ref, _, _ = c_dropout(lib, x, 0.3, 7, 11)
    c = U64(11)
    lib.gk_dropout(ptr(x), ptr(x), None, x.size, 0.3, 7, ctypes.byref(c))
    assert np.array_equal(x, y_ref) and c.value == 1011


def test_dropout_compares_with_the_double_rate(lib, ref):
    """keep = u >= rate exactly: a rate just above a value u, which rounds down to u in float32, drops it."""
    key = 5
    top = (ref["_splitmix64"](key, 0, 64) >> np.uint64(40))
    i = int(np.flatnonzero(top >= (1 << 23))[0])  # u in [0.5, 1): float32's spacing is 2^-24 there
    rate = (int(top[i]) + 0.25) / 2 ** 24
    assert float(np.float32(rate)) == int(top[i]) / 2 ** 24  # float32(rate) == u: a float32 compare keeps it
    x = np.ones(64, np.float32)
    stream = ref["DropoutStream"](0)
    stream.key = key
    _, m_np = ref["dropout_train"](x, rate, stream)
    _, m_c, _ = c_dropout(lib, x, rate, key, 0)
    assert m_np[i] == 0 and m_c[i] == 0 and np.array_equal(m_c, m_np)
    rate = int(top[i]) / 2 ** 24  # exactly u: kept
    _, m_c, _ = c_dropout(lib, x, rate, key, 0)
    assert m_c[i] > 0


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_statistics(lib, ref, rate):
    n = 200_000
    x = np.ones(n, np.float32)
    _, mask, _ = c_dropout(lib, x, rate, 123, 0)
    kept = float((mask > 0).mean())
    assert abs(kept - (1 - rate)) < 5 * math.sqrt(rate * (1 - rate) / n)
    # consecutive draws differ; the same (key, counter) repeats
    _, again, _ = c_dropout(lib, x, rate, 123, 0)
    _, later, _ = c_dropout(lib, x, rate, 123, n)
    _, other, _ = c_dropout(lib, x, rate, 124 + n, 0)
    assert np.array_equal(mask, again) and not np.array_equal(mask, later) and not np.array_equal(mask, other)
    # neighbours are independent: P(keep both) ~ (1 - rate)^2
    both = float(((mask[1:] > 0) & (mask[:-1] > 0)).mean())
    assert abs(both - (1 - rate) ** 2) < 0.01
    # the stream's seed is any int (taken mod 2^64), hashed into the key: seeds s and s + 1 do not
    # give one stream shifted by one draw
    assert ref["DropoutStream"](-1).key == splitmix64(M64)
    a, b = ref["DropoutStream"](5), ref["DropoutStream"](6)
    _, ma, _ = c_dropout(lib, x, rate, a.key, 1)
    _, mb, _ = c_dropout(lib, x, rate, b.key, 0)
    assert not np.array_equal(ma, mb)


# ---- other builds: C11, OpenMP, sanitizers -----------------------------------------------------

def test_compiles_as_c11_and_with_openmp(tmp_path):
    _build(tmp_path / "t11.o", "-std=c11", "-O2", "-c")
    _build(tmp_path / "tgnu.o", "-std=gnu11", "-O3", "-march=native", "-c")
    if runs_with(tmp_path, "-fopenmp"):
        _build(tmp_path / "tomp.o", "-std=c99", "-O2", "-fopenmp", "-c")


def test_openmp_build_gives_identical_results(lib, tmp_path):
    if not runs_with(tmp_path, "-fopenmp"):
        pytest.skip("no OpenMP")
    so = _build(tmp_path / "libomp.so", "-std=c99", "-O2", "-fopenmp", "-fPIC", "-shared")
    omp = _bind(ctypes.CDLL(str(so)))
    n = 100_003
    segments = [(0, 40_000), (40_000, 3), (40_003, 60_000)]
    for name, config in [("adam", {"clipnorm": 1.0, "weight_decay": 0.01}), ("rmsprop", {"global_clipnorm": 3.0}),
                         ("sgd", {"momentum": 0.9, "clipvalue": 0.2})]:
        _, serial = _run_both(lib, name, config, segments, n, steps=2)
        _, parallel = _run_both(lib, name, config, segments, n, steps=2, c_lib=omp)
        for a, b in zip(serial, parallel):
            assert np.array_equal(a[1], b[1]) and np.array_equal(a[3], b[3])
    for loss, logits in CASES:
        p, t = loss_inputs(loss, logits, (300, 40, 7), seed=3)
        sw = np.random.default_rng(1).uniform(0, 1, 300).astype(np.float32)
        _, l1, g1 = c_loss(lib, loss, logits, p, t, sw, 0.5)
        _, l2, g2 = c_loss(omp, loss, logits, p, t, sw, 0.5)
        assert l1 == l2 and np.array_equal(g1, g2), loss
    x = np.random.default_rng(2).standard_normal(70_001).astype(np.float32)
    assert all(np.array_equal(a, b) for a, b in zip(c_dropout(lib, x, 0.4, 9, 3)[:2], c_dropout(omp, x, 0.4, 9, 3)[:2]))


SANITIZER_DRIVER = r"""
#include "gcomp_train.h"
#include <stdio.h>
#include <stdlib.h>

static unsigned rng_state = 12345u;
static float frand(void) { rng_state = rng_state * 1103515245u + 12345u; return (float)((rng_state >> 8) & 0xffff) / 65536.0f; }
static float *buf(long n) { float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p); long i; for (i = 0; i < n; ++i) p[i] = frand(); return p; }

int main(void) {
    const long batch = 3, inner = 2, classes = 4, rows = batch * inner, n = 50;
    const long segments[3][2] = {{0, 10}, {10, 0}, {10, 40}};
    const unsigned char no_decay[3] = {0, 1, 0};
    int kind, logits, opt_kind, option;
    for (kind = 0; kind < 5; ++kind)
        for (logits = 0; logits < 2; ++logits) {
            float *p = buf(rows * classes), *t = buf(rows * classes), *sw = buf(batch), *g = buf(rows * classes);
            int32_t *labels = malloc((size_t)rows * sizeof *labels);
            float loss;
            long i;
            for (i = 0; i < rows; ++i) labels[i] = (int32_t)(i % classes);
            gk_loss(kind, logits, p, kind == GK_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY ? (const void *)labels : (const void *)t,
                    sw, batch, inner, classes, 0.5, 0, &loss, g);
            gk_loss(kind, logits, p, kind == GK_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY ? (const void *)labels : (const void *)t,
                    NULL, batch, inner, classes, 1.0, 1, &loss, NULL);
            free(p); free(t); free(sw); free(g); free(labels);
        }
    for (opt_kind = 0; opt_kind < 5; ++opt_kind)
        for (option = 0; option < 5; ++option) {
            gk_optimizer opt;
            long it = 0, count, step;
            float *w, *g, *slots;
            gk_optimizer_defaults(&opt, opt_kind);
            opt.momentum = 0.5; opt.nesterov = 1; opt.centered = 1; opt.amsgrad = 1;
            if (option == 1) opt.clipnorm = 0.5;
            if (option == 2) opt.global_clipnorm = 0.5;
            if (option == 3) opt.clipvalue = 0.5;
            if (option == 4) { opt.weight_decay = 0.1; opt.loss_scale_factor = 4.0; }
            count = gk_optimizer_slot_count(&opt);
            w = buf(n); g = buf(n); slots = malloc((size_t)(count * n > 0 ? count * n : 1) * sizeof *slots);
            gk_optimizer_init_slots(&opt, slots, n);
            for (step = 0; step < 3; ++step)
                gk_optimizer_update(&opt, w, g, slots, n, segments, 3, no_decay, &it);
            gk_optimizer_update(&opt, w, g, slots, n, NULL, 0, NULL, &it);
            free(w); free(g); free(slots);
        }
    {
        float *x = buf(33), *y = buf(33), *mask = buf(33);
        uint64_t counter = 0;
        gk_dropout(x, y, mask, 33, 0.3, 1, &counter);
        gk_dropout(x, y, NULL, 33, 1.0, 1, &counter);
        gk_dropout(x, x, mask, 33, 0.0, ~(uint64_t)0, &counter);
        free(x); free(y); free(mask);
    }
    puts("ok");
    return 0;
}
"""


def test_every_kernel_under_address_and_undefined_sanitizers(tmp_path):
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
    if not runs_with(tmp_path, *flags):
        pytest.skip("sanitizer runtime unavailable")
    driver = tmp_path / "driver.c"
    driver.write_text(SANITIZER_DRIVER)
    exe = _build(tmp_path / "driver", "-std=c99", "-O1", "-g", *flags, sources=(SOURCE, driver))
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1")
    run = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
    assert "runtime error" not in run.stderr and "Sanitizer" not in run.stderr, run.stderr
