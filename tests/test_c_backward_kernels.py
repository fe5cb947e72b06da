"""The C backend's training kernels (templates/c/gcomp_backward.c: backward passes and the broadcasting
forward merge) against the NumPy runtime's vector-Jacobian products (templates/numpy/vjp.py):
compiled with strict warnings into a shared library, called through ctypes on random data (odd
sizes, padding, strides, ties, broadcasting, duplicate indices) with NaN canaries after every
output; an OpenMP build must give bit-identical results, and an AddressSanitizer/UBSan driver runs
every kernel on exactly-sized heap buffers. The templates templates/c/vjp/*.c.j2 and the forward
merge templates are rendered with plausible contexts, compiled into a small harness and run on
data placed in an arena (guard gaps between the buffers), against the same references."""
from __future__ import annotations

import ctypes
import functools
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from c_harness import ATOL, CC, GUARD, RTOL, WARNINGS, check_guard, close, header_enum, ptr, rand, runs_with

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "templates" / "c"
KERNELS = C_DIR / "gcomp_kernels.c"
SOURCE = C_DIR / "gcomp_backward.c"
HEADER = C_DIR / "gcomp_kernels.h"
PRELUDE = ROOT / "templates" / "numpy" / "prelude.py"
VJP = ROOT / "templates" / "numpy" / "vjp.py"

pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")


P, L, I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
LONG2 = L * 2


def _run(cmd):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}{proc.stderr}"


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gkb")


@pytest.fixture(scope="module")
def kernels_obj(build_dir):
    """gcomp_kernels.c compiled once (serial), linked into every build below."""
    out = build_dir / "gcomp_kernels.o"
    _run([CC, "-std=c99", "-O2", "-fPIC", *WARNINGS, "-c", KERNELS, "-o", out])
    return out


def _bind(lib):
    sigs = {
        "gk_activation_backward": (None, [I, P, P, P, P, L, L]),
        "gk_dense_backward": (None, [P, P, P, P, P, P, L, L, L, P]),
        "gk_dense_backward_scratch": (L, [L, L, L]),
        "gk_embedding_backward_i32": (L, [P, L, P, P, L, L]),
        "gk_embedding_backward_i64": (L, [P, L, P, P, L, L]),
        "gk_merge_broadcast": (I, [I, I, P, P, P, P, I]),
        "gk_merge_backward": (I, [I, I, P, P, P, P, P, P, I]),
        "gk_concat_backward": (None, [I, P, P, P, L, L]),
        "gk_pool2d_backward": (None, [I, P, P, P, L, LONG2, L, LONG2, LONG2, LONG2, LONG2]),
        "gk_global_pool_backward": (None, [I, P, P, P, P, L, L, L]),
        "gk_dropout_backward": (None, [P, P, P, L]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def _library(build_dir, kernels_obj, name, *flags):
    out = build_dir / f"libgkb_{name}.so"
    _run([CC, "-std=c99", "-O2", *flags, "-fPIC", "-shared", *WARNINGS, "-I", C_DIR, SOURCE, kernels_obj,
          "-o", out, "-lm"])
    return _bind(ctypes.CDLL(str(out)))


@pytest.fixture(scope="module")
def lib(build_dir, kernels_obj):
    return _library(build_dir, kernels_obj, "serial")


@pytest.fixture(scope="module")
def ref():
    namespace = {"__name__": "gcomp_vjp"}
    source = PRELUDE.read_text() + "\n\n" + VJP.read_text()
    exec(compile(source, "prelude+vjp", "exec"), namespace)
    return namespace


ACT = header_enum(HEADER, "gk_activation")
MERGE = header_enum(HEADER, "gk_merge")


def ties(shape, seed, levels=3):
    """Small integers as float32: many exact ties."""
    return np.random.default_rng(seed).integers(0, levels, size=shape).astype(np.float32)


def out_buffer(shape):
    n = int(np.prod(shape, dtype=np.int64))
    buf = np.full(n + GUARD, np.nan, np.float32)
    buf[:n] = 12345.0
    return buf[:n].reshape(shape), buf


def pointers(arrays, kind=ctypes.c_void_p):
    return (kind * len(arrays))(*[None if a is None else a.ctypes.data for a in arrays])


def longs(values):
    values = list(values)
    return (L * max(len(values), 1))(*values)


# ---- activations -------------------------------------------------------------------------------

READS_X = {"relu", "relu6", "leaky_relu", "softplus", "softsign", "gelu", "hard_sigmoid", "hard_silu", "mish",
           "elu", "selu", "silu"}
READS_Y = {"sigmoid", "tanh", "softmax", "log_softmax", "exponential", "elu", "selu", "silu"}


def _activation_input(rows, row_len, seed):
    x = rand((rows, row_len), seed, scale=3.0)
    extremes = np.array([100, -100, 20, -20, 88.5, -87.5, 1e-4, -1e-4, 0, 0.3, -0.3, 6, -6, 3, -3, 0.75, -0.7518],
                        np.float32)
    x.reshape(-1)[:extremes.size] = extremes
    return x


@pytest.mark.parametrize("name", sorted(ACT))
def test_activation_backward(lib, ref, name):
    x = _activation_input(9, 37, seed=len(name))
    with np.errstate(over="ignore", invalid="ignore"):
        y = ref["ACTIVATIONS"][name](x).astype(np.float32)
        gy = rand(x.shape, 3)
        want = ref["activation_vjp"](name, x, y, gy)
    gx, buf = out_buffer(x.shape)
    # the pointers the kernel does not read are NULL: the header's list of what each one reads
    lib.gk_activation_backward(ACT[name], ptr(x) if name in READS_X else None,
                               ptr(y) if name in READS_Y else None, ptr(gy), ptr(gx), 9, 37)
    check_guard(buf, x.size)
    close(gx, want)
    # in place (gx == gy)
    g2 = gy.copy()
    lib.gk_activation_backward(ACT[name], ptr(x), ptr(y), ptr(g2), ptr(g2), 9, 37)
    assert np.array_equal(g2, gx, equal_nan=True)


def test_softmax_backward_long_rows(lib, ref):
    for name in ["softmax", "log_softmax"]:
        x = rand((3, 1001), 5, scale=4.0)
        y = ref["ACTIVATIONS"][name](x)
        gy = rand(x.shape, 6)
        gx = np.empty_like(x)
        lib.gk_activation_backward(ACT[name], None, ptr(y), ptr(gy), ptr(gx), 3, 1001)
        close(gx, ref["activation_vjp"](name, x, y, gy))


# ---- dense -------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, in_dim, units", [(1, 1, 1), (7, 13, 5), (130, 57, 33), (3, 200, 300),
                                                 (300, 20, 9), (0, 4, 3), (5, 6, 0)])
@pytest.mark.parametrize("need", ["all", "no_x", "only_x", "kernel_only"])
def test_dense_backward(lib, ref, rows, in_dim, units, need):
    x, kernel, gy = rand((rows, in_dim), 1), rand((in_dim, units), 2), rand((rows, units), 3)
    need_x, need_k, need_b = {"all": (1, 1, 1), "no_x": (0, 1, 1), "only_x": (1, 0, 0),
                              "kernel_only": (0, 1, 0)}[need]
    size = lib.gk_dense_backward_scratch(rows, in_dim, units)
    assert size == max(rows, units) * in_dim
    scratch = np.full(size + GUARD, np.nan, np.float32)
    gx, gx_buf = out_buffer((rows, in_dim))
    gk, gk_buf = out_buffer((in_dim, units))
    gb, gb_buf = out_buffer((units,))
    lib.gk_dense_backward(ptr(x), ptr(kernel), ptr(gy), ptr(gx) if need_x else None, ptr(gk) if need_k else None,
                          ptr(gb) if need_b else None, rows, in_dim, units, ptr(scratch))
    check_guard(scratch, size)
    for buf, view in [(gx_buf, gx), (gk_buf, gk), (gb_buf, gb)]:
        check_guard(buf, view.size)
    x64, k64, gy64 = x.astype(np.float64), kernel.astype(np.float64), gy.astype(np.float64)
    if rows * in_dim * units:
        wx, wk, wb = ref["dense_vjp"](x64, k64, gy64, True, True)
    else:  # (the reference cannot reshape empty arrays with -1)
        wx, wk, wb = gy64 @ k64.T, x64.T @ gy64, gy64.sum(axis=0)
    tol = ATOL * max(1.0, math.sqrt(max(rows, units)))
    if need_x:
        close(gx, wx, atol=tol)
    else:
        assert (gx == 12345.0).all()
    if need_k:
        close(gk, wk, atol=tol)
    if need_b:
        close(gb, wb, atol=tol)
        # rows added in order, in float32: NumPy's own axis-0 sum
        assert np.array_equal(gb, gy.sum(axis=0)) or rows == 0


# ---- embedding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, fn", [(np.int32, "gk_embedding_backward_i32"), (np.int64, "gk_embedding_backward_i64")])
@pytest.mark.parametrize("input_dim, dim, n", [(11, 6, 23), (5, 1, 40), (1000, 64, 600), (3, 7, 0)])
def test_embedding_backward(lib, ref, dtype, fn, input_dim, dim, n):
    rng = np.random.default_rng(input_dim + n)
    idx = rng.integers(0, min(input_dim, 9), size=n).astype(dtype)  # low indices: many duplicates
    gy = rand((n, dim), 2)
    gt, buf = out_buffer((input_dim, dim))
    assert getattr(lib, fn)(ptr(idx), n, ptr(gy), ptr(gt), input_dim, dim) == -1
    check_guard(buf, gt.size)
    want = ref["embedding_vjp"](idx, input_dim, gy)
    assert np.array_equal(gt, want)  # the same sums in the same order: the same bits
    if n > 5:
        for bad_pos, bad in [(0, -1), (5, input_dim), (n - 1, 1 << 20)]:
            wrong = idx.copy()
            wrong[bad_pos] = bad
            gt[:] = 7.0
            assert getattr(lib, fn)(ptr(wrong), n, ptr(gy), ptr(gt), input_dim, dim) == bad_pos
            assert not gt.any()
    if dtype is np.int64 and n > 3:
        wrong = idx.copy()
        wrong[3] = (1 << 32) + 1
        assert getattr(lib, fn)(ptr(wrong), n, ptr(gy), ptr(gt), input_dim, dim) == 3


# ---- merges ------------------------------------------------------------------------------------

MERGE_FWD = {
    "add": lambda xs: functools.reduce(np.add, xs),
    "subtract": lambda xs: xs[0] - xs[1],
    "multiply": lambda xs: functools.reduce(np.multiply, xs),
    "average": lambda xs: functools.reduce(np.add, xs) / np.float32(len(xs)),
    "maximum": lambda xs: functools.reduce(np.maximum, xs),
    "minimum": lambda xs: functools.reduce(np.minimum, xs),
}

SHAPES = [
    [(4, 5, 6), (4, 5, 6)],
    [(4, 5, 6), (4, 1, 6)],
    [(3, 1, 7), (3, 5, 1)],
    [(2, 3, 4), (1, 1, 1)],
    [(5, 1), (5, 300)],
    [(2, 1, 700), (2, 3, 700)],
    [(4, 1, 6), (4, 5, 1), (1, 5, 6)],
    [(3, 4, 1, 2), (3, 1, 5, 2), (3, 4, 5, 1)],
    [(7,), (1,)],
    [(6, 1), (6, 9), (6, 9), (1, 9)],
]


def _merge_inputs(shapes, op, seed):
    maker = ties if op in ("maximum", "minimum") else rand
    return [maker(s, seed + i) for i, s in enumerate(shapes)]


def _dims(shapes, out_shape):
    rank = len(out_shape)
    return longs(d for s in shapes for d in (1,) * (rank - len(s)) + tuple(s)), longs(out_shape), rank


@pytest.mark.parametrize("op", list(MERGE_FWD))
@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: "+".join("x".join(map(str, t)) for t in s))
def test_merge_broadcast_forward(lib, op, shapes):
    if op == "subtract" and len(shapes) != 2:
        pytest.skip("subtract takes two inputs")
    xs = _merge_inputs(shapes, op, 10)
    want = MERGE_FWD[op](xs)
    in_dims, out_dims, rank = _dims(shapes, want.shape)
    y, buf = out_buffer(want.shape)
    assert lib.gk_merge_broadcast(MERGE[op], len(xs), pointers(xs), in_dims, ptr(y), out_dims, rank) == 0
    check_guard(buf, y.size)
    close(y, want, rtol=1e-6, atol=0)
    full = [i for i, x in enumerate(xs) if x.shape == want.shape]
    if full:  # in place: y is an input with the output's shape
        xs2 = [x.copy() for x in xs]
        target = xs2[full[-1]]
        assert lib.gk_merge_broadcast(MERGE[op], len(xs), pointers(xs2), in_dims, ptr(target), out_dims, rank) == 0
        assert np.array_equal(target, y)


def test_merge_broadcast_rejects_bad_dims(lib):
    a, b = rand((3, 4), 1), rand((3, 5), 2)
    y, _ = out_buffer((3, 5))
    in_dims, out_dims, _ = _dims([(3, 4), (3, 5)], (3, 5))
    assert lib.gk_merge_broadcast(MERGE["add"], 2, pointers([a, b]), in_dims, ptr(y), out_dims, 2) == -1
    assert (y == 12345.0).all()
    dims9 = longs([1] * 18)
    assert lib.gk_merge_broadcast(MERGE["add"], 2, pointers([a, b]), dims9, ptr(y), longs([1] * 9), 9) == -1
    # rank 0 (scalars) and rank 8 are fine
    s1, s2 = np.array([2.0], np.float32), np.array([3.5], np.float32)
    out = np.zeros(1, np.float32)
    assert lib.gk_merge_broadcast(MERGE["multiply"], 2, pointers([s1, s2]), None, ptr(out), None, 0) == 0
    assert out[0] == 7.0
    shape8 = (2, 1, 2, 1, 2, 1, 2, 3)
    x8, z8 = rand(shape8, 3), rand((1,) * 7 + (3,), 4)
    y8 = np.empty(shape8, np.float32)
    in_dims, out_dims, rank = _dims([shape8, z8.shape], shape8)
    assert lib.gk_merge_broadcast(MERGE["subtract"], 2, pointers([x8, z8]), in_dims, ptr(y8), out_dims, rank) == 0
    assert np.array_equal(y8, x8 - z8)


@pytest.mark.parametrize("op", list(MERGE_FWD))
@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: "+".join("x".join(map(str, t)) for t in s))
def test_merge_backward(lib, ref, op, shapes):
    if op == "subtract" and len(shapes) != 2:
        pytest.skip("subtract takes two inputs")
    xs = _merge_inputs(shapes, op, 20)
    y = MERGE_FWD[op](xs)
    gy = rand(y.shape, 30)
    want = ref["elementwise_vjp"](op, xs, y, gy)
    in_dims, out_dims, rank = _dims(shapes, y.shape)
    for skip in [None, 0]:  # every gradient, then all but the first
        outs = [out_buffer(s) for s in shapes]
        grads = [None if i == skip else view for i, (view, _) in enumerate(outs)]
        assert lib.gk_merge_backward(MERGE[op], len(xs), pointers(xs), in_dims, ptr(y), ptr(gy), pointers(grads),
                                     out_dims, rank) == 0
        for i, (view, buf) in enumerate(outs):
            check_guard(buf, view.size)
            if i == skip:
                assert (view == 12345.0).all()
                continue
            reduced = y.size // max(view.size, 1)
            close(view, want[i], atol=ATOL * max(1.0, math.sqrt(reduced)))


def test_merge_backward_max_ties_go_to_the_first_input(lib, ref):
    xs = [np.ones((2, 3), np.float32), np.ones((2, 1), np.float32), np.ones((1, 3), np.float32)]
    y, gy = xs[0] * 1, rand((2, 3), 1)
    in_dims, out_dims, rank = _dims([x.shape for x in xs], y.shape)
    grads = [np.empty(x.shape, np.float32) for x in xs]
    for op in ["maximum", "minimum"]:
        assert lib.gk_merge_backward(MERGE[op], 3, pointers(xs), in_dims, ptr(y), ptr(gy), pointers(grads),
                                     out_dims, rank) == 0
        assert np.array_equal(grads[0], gy) and not grads[1].any() and not grads[2].any()
        for got, want in zip(grads, ref["elementwise_vjp"](op, xs, y, gy)):
            assert np.array_equal(got, want)


def test_merge_backward_needs_no_inputs_for_add(lib, ref):
    gy = rand((4, 5), 2)
    in_dims, out_dims, rank = _dims([(4, 5), (1, 5)], (4, 5))
    g0, g1 = np.empty((4, 5), np.float32), np.empty((1, 5), np.float32)
    for op in ["add", "subtract", "average"]:
        assert lib.gk_merge_backward(MERGE[op], 2, None, in_dims, None, ptr(gy), pointers([g0, g1]), out_dims, rank) == 0
        want = ref["elementwise_vjp"](op, [np.empty((4, 5)), np.empty((1, 5))], gy, gy)
        close(g0, want[0])
        close(g1, want[1])


# ---- concat ------------------------------------------------------------------------------------

@pytest.mark.parametrize("outer, widths, inner", [(1, [3], 1), (4, [2, 5, 1], 3), (3, [7, 0, 2], 1),
                                                  (2, [1, 1, 1, 1], 9)])
def test_concat_backward(lib, ref, outer, widths, inner):
    gy = rand((outer, sum(widths), inner), 1)
    want = ref["concat_vjp"](gy, widths, 1)
    for skip in [None, 0]:
        outs = [out_buffer((outer, w, inner)) for w in widths]
        grads = [None if i == skip else v for i, (v, _) in enumerate(outs)]
        lib.gk_concat_backward(len(widths), ptr(gy), longs(widths), pointers(grads), outer, inner)
        for i, (view, buf) in enumerate(outs):
            check_guard(buf, view.size)
            if i != skip:
                assert np.array_equal(view, want[i])


# ---- pooling -----------------------------------------------------------------------------------

def keras_geometry(spatial, window, strides, padding):
    pads, outs = [], []
    for n, k, s in zip(spatial, window, strides):
        if padding == "valid":
            pads.append(0)
            outs.append((n - k) // s + 1)
        else:
            out = -(-n // s)
            pads.append(max((out - 1) * s + k - n, 0) // 2)
            outs.append(out)
    return pads, outs


def as_rank2(values, fill):
    values = list(values)
    return LONG2(*(values + [fill] * (2 - len(values))))


POOL_CASES = [  # input spatial, channels, pool, strides
    ((17,), 3, (2,), (2,)),
    ((17,), 4, (3,), (1,)),
    ((9, 11), 3, (2, 2), (2, 2)),
    ((9, 11), 5, (3, 3), (2, 1)),
    ((8, 7), 2, (3, 2), (3, 2)),
    ((5, 5), 4, (5, 5), (1, 1)),
    ((6, 7), 70, (2, 3), (1, 2)),
    ((4, 4), 3, (1, 1), (2, 2)),
]


def run_pool_backward(lib, is_max, x, gy, pool, strides, padding):
    spatial, channels = x.shape[1:-1], x.shape[-1]
    pads, outs = keras_geometry(spatial, pool, strides, padding)
    assert tuple(outs) == gy.shape[1:-1]
    gx, buf = out_buffer(x.shape)
    lib.gk_pool2d_backward(is_max, ptr(x), ptr(gy), ptr(gx), x.shape[0], as_rank2(spatial, 1), channels,
                           as_rank2(pool, 1), as_rank2(strides, 1), as_rank2(pads, 0), as_rank2(outs, 1))
    check_guard(buf, gx.size)
    return gx


@pytest.mark.parametrize("spatial, channels, pool, strides", POOL_CASES)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("is_max", [1, 0])
def test_pool_backward(lib, ref, spatial, channels, pool, strides, padding, is_max):
    x = ties((3, *spatial, channels), 4) if is_max else rand((3, *spatial, channels), 4)
    y = (ref["max_pool"] if is_max else ref["avg_pool"])(x, pool, strides, padding, "pool")
    gy = rand(y.shape, 5)
    gx = run_pool_backward(lib, is_max, x, gy, pool, strides, padding)
    if is_max:
        want = ref["max_pool_vjp"](x, y, gy, pool, strides, padding)
    else:
        want = ref["avg_pool_vjp"](x.shape, x.dtype, gy, pool, strides, padding)
    close(gx, want)


def test_max_pool_backward_with_infinities(lib, ref):
    """-inf inputs tie with the padding (-inf too): the first position in window order wins, and a
    padded position's gradient is dropped."""
    x = ties((2, 7, 6, 3), 8)
    x[:, :2, :, 0] = -np.inf
    x[:, :, :2, 1] = -np.inf
    x[0, 3, 3, 2] = np.inf
    for pool, strides in [((3, 3), (1, 1)), ((4, 3), (2, 2)), ((2, 2), (1, 1))]:
        y = ref["max_pool"](x, pool, strides, "same", "pool")
        gy = rand(y.shape, 9)
        gx = run_pool_backward(lib, 1, x, gy, pool, strides, "same")
        assert np.array_equal(gx, ref["max_pool_vjp"](x, y, gy, pool, strides, "same")) or \
            np.allclose(gx, ref["max_pool_vjp"](x, y, gy, pool, strides, "same"), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("spatial, channels", [((1,), 1), ((7,), 3), ((5, 10), 130), ((2000,), 5)])
@pytest.mark.parametrize("is_max", [1, 0])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pool_backward(lib, ref, spatial, channels, is_max, keepdims):
    rank = len(spatial)
    axes = tuple(range(1, rank + 1))
    x = ties((3, *spatial, channels), 5) if is_max else rand((3, *spatial, channels), 5)
    y = x.max(axis=axes, keepdims=keepdims) if is_max else x.mean(axis=axes, keepdims=keepdims, dtype=np.float32)
    gy = rand(y.shape, 6)
    gx, buf = out_buffer(x.shape)
    lib.gk_global_pool_backward(is_max, ptr(x) if is_max else None, ptr(y) if is_max else None, ptr(gy), ptr(gx),
                                3, int(np.prod(spatial)), channels)
    check_guard(buf, gx.size)
    if is_max:
        want = ref["global_max_pool_vjp"](x, y, gy, rank, keepdims)
    else:
        want = ref["global_avg_pool_vjp"](x.shape, gy, rank, keepdims)
    close(gx, want)


def test_dropout_backward(lib, ref):
    gy = rand((5, 33), 1)
    mask = (np.random.default_rng(2).random((5, 33)) >= 0.3).astype(np.float32) / np.float32(0.7)
    gx, buf = out_buffer(gy.shape)
    lib.gk_dropout_backward(ptr(gy), ptr(mask), ptr(gx), gy.size)
    check_guard(buf, gy.size)
    assert np.array_equal(gx, ref["dropout_vjp"](mask, gy))
    lib.gk_dropout_backward(ptr(gy), ptr(mask), ptr(gy), gy.size)
    assert np.array_equal(gy, gx)


# ---- OpenMP: identical results -----------------------------------------------------------------

def test_openmp_build_gives_identical_results(lib, build_dir, kernels_obj, tmp_path):
    if not runs_with(tmp_path, "-fopenmp"):
        pytest.skip("no OpenMP")
    omp = _library(build_dir, kernels_obj, "omp", "-fopenmp")

    def both(call):
        return [call(library) for library in (lib, omp)]

    x = rand((64, 33, 41), 1, scale=2.0)
    for act in ["relu", "gelu", "softmax", "mish"]:
        y = np.ascontiguousarray(np.random.default_rng(2).random(x.shape), np.float32)
        gy = rand(x.shape, 3)

        def activation(library, act=act, y=y, gy=gy):
            gx = np.empty_like(x)
            library.gk_activation_backward(ACT[act], ptr(x), ptr(y), ptr(gy), ptr(gx), 64 * 33, 41)
            return gx
        a, b = both(activation)
        assert np.array_equal(a, b), act
    xs = [rand((40, 50, 60), 4), rand((40, 1, 60), 5), rand((1, 50, 1), 6)]
    in_dims, out_dims, rank = _dims([t.shape for t in xs], (40, 50, 60))
    gy = rand((40, 50, 60), 7)

    def merges(library):
        y = np.empty((40, 50, 60), np.float32)
        library.gk_merge_broadcast(MERGE["multiply"], 3, pointers(xs), in_dims, ptr(y), out_dims, rank)
        grads = [np.empty(t.shape, np.float32) for t in xs]
        library.gk_merge_backward(MERGE["multiply"], 3, pointers(xs), in_dims, ptr(y), ptr(gy), pointers(grads),
                                  out_dims, rank)
        return [y] + grads
    for a, b in zip(*both(merges)):
        assert np.array_equal(a, b)
    xp, gp = ties((8, 30, 30, 16), 8), rand((8, 15, 15, 16), 9)

    def pools(library):
        outs = []
        for is_max in (1, 0):
            gx = np.empty_like(xp)
            library.gk_pool2d_backward(is_max, ptr(xp), ptr(gp), ptr(gx), 8, LONG2(30, 30), 16, LONG2(3, 3),
                                       LONG2(2, 2), LONG2(0, 0), LONG2(15, 15))
            outs.append(gx)
        return outs
    for a, b in zip(*both(pools)):
        assert np.array_equal(a, b)
    idx = np.random.default_rng(10).integers(0, 50, size=3000).astype(np.int32)
    gye = rand((3000, 64), 11)

    def embedding(library):
        gt = np.empty((2000, 64), np.float32)
        assert library.gk_embedding_backward_i32(ptr(idx), 3000, ptr(gye), ptr(gt), 2000, 64) == -1
        return gt
    a, b = both(embedding)
    assert np.array_equal(a, b)
    xd, kd, gyd = rand((300, 200), 12), rand((200, 150), 13), rand((300, 150), 14)

    def dense(library):
        gx, gk, gb = np.empty((300, 200), np.float32), np.empty((200, 150), np.float32), np.empty(150, np.float32)
        scratch = np.empty(library.gk_dense_backward_scratch(300, 200, 150), np.float32)
        library.gk_dense_backward(ptr(xd), ptr(kd), ptr(gyd), ptr(gx), ptr(gk), ptr(gb), 300, 200, 150, ptr(scratch))
        return gx, gk, gb
    for a, b in zip(*both(dense)):
        assert np.array_equal(a, b)


# ---- sanitizers --------------------------------------------------------------------------------

SANITIZER_DRIVER = r"""
#include "gcomp_backward.h"
#include <stdio.h>
#include <stdlib.h>

static unsigned rng_state = 12345u;
static float frand(void) { rng_state = rng_state * 1103515245u + 12345u; return (float)((rng_state >> 8) & 3u); }
static float *buf(long n) { float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p); long i; for (i = 0; i < n; ++i) p[i] = frand(); return p; }

static void pool(long batch, long i0, long i1, long ch, long k0, long k1, long s0, long s1, int same) {
    long in[2] = {i0, i1}, ks[2] = {k0, k1}, st[2] = {s0, s1}, pad[2], out[2], r;
    float *x, *gy, *gx;
    for (r = 0; r < 2; ++r) {
        if (same) { long total; out[r] = (in[r] + st[r] - 1) / st[r]; total = (out[r] - 1) * st[r] + ks[r] - in[r]; pad[r] = total > 0 ? total / 2 : 0; }
        else { out[r] = (in[r] - ks[r]) / st[r] + 1; pad[r] = 0; }
    }
    x = buf(batch * i0 * i1 * ch); gy = buf(batch * out[0] * out[1] * ch); gx = buf(batch * i0 * i1 * ch);
    gk_pool2d_backward(1, x, gy, gx, batch, in, ch, ks, st, pad, out);
    gk_pool2d_backward(0, x, gy, gx, batch, in, ch, ks, st, pad, out);
    free(x); free(gy); free(gx);
}

static long size_of(const long *d, int rank) { long n = 1; int i; for (i = 0; i < rank; ++i) n *= d[i]; return n; }

static int merge(int count, const long *in_dims, const long *out_dims, int rank) {
    const float *xs[4]; float *gxs[4], *y, *gy; int op, i;
    float *xb[4];
    for (i = 0; i < count; ++i) { xb[i] = buf(size_of(in_dims + i * rank, rank)); xs[i] = xb[i]; gxs[i] = buf(size_of(in_dims + i * rank, rank)); }
    y = buf(size_of(out_dims, rank)); gy = buf(size_of(out_dims, rank));
    for (op = 0; op <= GK_MINIMUM; ++op) {
        int c = op == GK_SUBTRACT ? 2 : count;
        if (gk_merge_broadcast(op, c, xs, in_dims, y, out_dims, rank) != 0) return 1;
        if (gk_merge_backward(op, c, xs, in_dims, y, gy, gxs, out_dims, rank) != 0) return 1;
    }
    for (i = 0; i < count; ++i) { free(xb[i]); free(gxs[i]); }
    free(y); free(gy);
    return 0;
}

int main(void) {
    int act;
    for (act = 0; act <= GK_HARD_SILU; ++act) {
        float *x = buf(3 * 37), *y = buf(3 * 37), *gy = buf(3 * 37), *gx = buf(3 * 37);
        gk_activation_backward(act, x, y, gy, gx, 3, 37);
        gk_activation_backward(act, x, y, gy, gy, 37, 3);
        free(x); free(y); free(gy); free(gx);
    }
    {
        long sizes[][3] = {{1, 1, 1}, {7, 13, 5}, {130, 57, 33}, {0, 3, 4}, {5, 0, 3}, {4, 3, 0}};
        int i;
        for (i = 0; i < 6; ++i) {
            long r = sizes[i][0], in = sizes[i][1], u = sizes[i][2];
            float *x = buf(r * in), *k = buf(in * u), *gy = buf(r * u), *gx = buf(r * in), *gk = buf(in * u), *gb = buf(u);
            float *scratch = buf(gk_dense_backward_scratch(r, in, u));
            gk_dense_backward(x, k, gy, gx, gk, gb, r, in, u, scratch);
            gk_dense_backward(x, k, gy, NULL, gk, gb, r, in, u, scratch);
            gk_dense_backward(x, k, gy, gx, NULL, NULL, r, in, u, scratch);
            free(x); free(k); free(gy); free(gx); free(gk); free(gb); free(scratch);
        }
    }
    {
        int32_t i32[6] = {0, 10, 3, 3, 10, 0};
        int64_t i64[6] = {0, 10, 3, 3, 10, 11};
        float *gy = buf(6 * 5), *gt = buf(11 * 5);
        if (gk_embedding_backward_i32(i32, 6, gy, gt, 11, 5) != -1) return 2;
        if (gk_embedding_backward_i64(i64, 6, gy, gt, 11, 5) != 5) return 2;
        free(gy); free(gt);
    }
    {
        long a[] = {4, 5, 6, 4, 1, 6}, ao[] = {4, 5, 6};
        long b[] = {3, 1, 7, 3, 5, 1, 1, 5, 7}, bo[] = {3, 5, 7};
        long c[] = {5, 1, 5, 300}, co[] = {5, 300};
        long d[] = {2, 1, 700, 2, 3, 700, 1, 1, 1}, dout[] = {2, 3, 700};
        long e[] = {1, 1}, eo[] = {1};
        if (merge(2, a, ao, 3) || merge(3, b, bo, 3) || merge(2, c, co, 2) || merge(3, d, dout, 3) || merge(2, e, eo, 1)) return 3;
    }
    {
        float *gy = buf(4 * 8 * 3), *a = buf(4 * 2 * 3), *b = buf(4 * 6 * 3);
        float *gxs[3];
        long widths[3] = {2, 6, 0};
        gxs[0] = a; gxs[1] = b; gxs[2] = NULL;
        gk_concat_backward(3, gy, widths, gxs, 4, 3);
        free(gy); free(a); free(b);
    }
    pool(2, 17, 1, 3, 2, 1, 2, 1, 0);
    pool(2, 17, 1, 3, 3, 1, 1, 1, 1);
    pool(3, 9, 11, 5, 3, 3, 2, 1, 1);
    pool(1, 8, 7, 2, 3, 2, 3, 2, 1);
    pool(1, 5, 5, 70, 5, 5, 1, 1, 1);
    pool(2, 4, 4, 3, 1, 1, 2, 2, 1);
    {
        float *x = buf(3 * 50 * 130), *y = buf(3 * 130), *gy = buf(3 * 130), *gx = buf(3 * 50 * 130);
        gk_global_pool_backward(1, x, y, gy, gx, 3, 50, 130);
        gk_global_pool_backward(0, NULL, NULL, gy, gx, 3, 50, 130);
        gk_dropout_backward(gx, gx, gx, 3 * 50 * 130);
        free(x); free(y); free(gy); free(gx);
    }
    puts("ok");
    return 0;
}
"""


def test_every_backward_kernel_under_address_and_undefined_sanitizers(tmp_path, kernels_obj):
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
    if not runs_with(tmp_path, *flags):
        pytest.skip("sanitizer runtime unavailable")
    driver = tmp_path / "driver.c"
    driver.write_text(SANITIZER_DRIVER)
    exe = tmp_path / "driver"
    _run([CC, "-std=c99", "-O1", "-g", *flags, *WARNINGS, "-I", C_DIR, SOURCE, driver, kernels_obj, "-o", exe, "-lm"])
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1")
    run = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == "ok"
    assert "runtime error" not in run.stderr and "Sanitizer" not in run.stderr, run.stderr


# ---- templates: rendered, compiled into a harness, run on an arena -----------------------------

HARNESS_PRELUDE = r"""
#include "gcomp_backward.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum gc_status { GC_OK = 0, GC_ERR_ALLOC, GC_ERR_SHAPE, GC_ERR_BATCH, GC_ERR_INDEX, GC_ERR_WEIGHTS, GC_ERR_IO };
typedef struct { const void *data; } gc_input;
typedef struct { float *scratch; char error[256]; } model;

static int fail(model *m, int code, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(m->error, sizeof m->error, format, args);
    va_end(args);
    return code;
}

const char *harness_error(const model *m) { return m->error; }
"""

ARENA_GAP = 8  # NaN floats between buffers


class Arena:
    """Buffers of one float32 arena, with NaN gaps between them that no template may touch."""

    def __init__(self, name):
        self.name, self.size, self.items = name, ARENA_GAP, []

    def put(self, array):
        array = np.asarray(array, np.float32)
        offset = self.size
        self.items.append((offset, array))
        self.size += array.size + ARENA_GAP
        return f"({self.name} + {offset}L)"

    def out(self, shape):
        return self.put(np.full(shape, 12345.0, np.float32)), shape

    def build(self):
        data = np.full(self.size, np.nan, np.float32)
        for offset, array in self.items:
            data[offset:offset + array.size] = array.reshape(-1)
        return data

    def read(self, data, pointer, shape):
        offset = int(re.search(r"\+ (\d+)L", pointer).group(1))
        return data[offset:offset + int(np.prod(shape))].reshape(shape)

    def gaps_intact(self, data, written):
        """Every float outside the buffers is still NaN."""
        mask = np.ones(self.size, bool)
        for offset, array in self.items:
            mask[offset:offset + array.size] = False
        return bool(np.isnan(data[mask]).all())


def _cdims(shape):
    return ["d_N" if i == 0 else f"{d}L" for i, d in enumerate(shape)]


class Case:
    """One rendered template: its code, the arena, the expected results and where they land."""

    def __init__(self, template, n, **context):
        self.template, self.n, self.context = template, n, context
        self.A, self.W, self.GW = Arena("A"), Arena("W"), Arena("GW")
        self.inputs = []  # arrays for inputs[i].data
        self.expect = []  # (arena, pointer, expected array, atol)
        self.status, self.error_has = 0, None


def _vjp_case(ref, template, attrs, xs, ys, gys, need, params=None, need_params=(), n=None, x_dtype=None,
              gx_alias=None, y_from_input=None):
    """A case for templates/c/vjp/<template>.c.j2: forward inputs xs, outputs ys (forward values),
    output gradients gys (None: no gradient), need: which input gradients."""
    params = params or {}
    case = Case(f"c/vjp/{template}.c.j2", n if n is not None else xs[0].shape[0])
    fx, fx_dtype = [], []
    for i, x in enumerate(xs):
        if x.dtype.kind == "i":
            case.inputs.append(x)
            ctype = "int64_t" if x.dtype == np.int64 else "int32_t"
            fx.append(f"((const {ctype} *)inputs[{len(case.inputs) - 1}].data)")
        else:
            fx.append(case.A.put(x))
        fx_dtype.append(str(x.dtype))
    fy = [case.A.put(y) for y in ys]
    gy = [None if g is None else case.A.put(g) for g in gys]
    gx = []
    for i, x in enumerate(xs):
        if not need[i]:
            gx.append(None)
        elif gx_alias is not None and gx_alias.get(i) is not None:
            gx.append(gy[gx_alias[i]])
        else:
            gx.append(case.A.out(x.shape)[0])
    p = {role: case.W.put(v) for role, v in params.items()}
    gp = {role: case.GW.out(params[role].shape)[0] for role in need_params}
    a = dict(attrs, n_inputs=len(xs), need_inputs=tuple(bool(v) for v in need), need_params=tuple(need_params),
             has_grad=tuple(g is not None for g in gys))
    case.context = dict(a=a, fx=fx, fxd=[_cdims(x.shape) for x in xs], fx_dtype=fx_dtype, fy=fy,
                        fyd=[_cdims(y.shape) for y in ys], gy=gy, gx=gx, gp=gp, p=p)
    case.gx, case.gp, case.xs, case.params = gx, gp, xs, params
    return case


def _pads(attrs, fxd):
    from gcomp.backends.c_backend import _pads as pads
    return pads(attrs, fxd[0][1:-1])


def _template_cases(ref):
    cases = []
    vjp = ref
    # dense on a 3-D input, every gradient; and one without the input's
    x, k, b = rand((3, 4, 7), 1), rand((7, 5), 2), rand((5,), 3)
    gy = rand((3, 4, 5), 4)
    wx, wk, wb = vjp["dense_vjp"](x, k, gy, True, True)
    attrs = {"units": 5, "activation": "linear", "use_bias": True}
    for need_x in (True, False):
        c = _vjp_case(ref, "dense", attrs, [x], [x[..., :5] * 0], [gy], [need_x], params={"kernel": k, "bias": b},
                      need_params=("kernel", "bias"))
        c.scratch = max(3 * 4, 5) * 7
        if need_x:
            c.expect.append((c.A, c.gx[0], wx, 1e-5))
        c.expect += [(c.GW, c.gp["kernel"], wk, 1e-5), (c.GW, c.gp["bias"], wb, 1e-5)]
        cases.append(c)
    # activations
    for name in ["relu", "softmax", "gelu", "tanh", "elu"]:
        x = rand((3, 2, 9), 5, scale=2.0)
        y = ref["ACTIVATIONS"][name](x)
        gy = rand(x.shape, 6)
        c = _vjp_case(ref, "activation", {"activation": name}, [x], [y], [gy], [True])
        c.expect.append((c.A, c.gx[0], vjp["activation_vjp"](name, x, y, gy), 1e-5))
        cases.append(c)
    # embedding: int32 and int64 indices with duplicates
    for dtype in (np.int32, np.int64):
        idx = np.random.default_rng(7).integers(0, 6, size=(3, 5)).astype(dtype)
        table = rand((9, 4), 8)
        gy = rand((3, 5, 4), 9)
        c = _vjp_case(ref, "embedding", {"input_dim": 9, "output_dim": 4}, [idx], [table[idx]], [gy], [False],
                      params={"embeddings": table}, need_params=("embeddings",))
        c.context["layer"] = 'emb "1"'
        c.expect.append((c.GW, c.gp["embeddings"], vjp["embedding_vjp"](idx, 9, gy), 0))
        cases.append(c)
        bad = idx.copy()
        bad[1, 2] = 9
        c = _vjp_case(ref, "embedding", {"input_dim": 9, "output_dim": 4}, [bad], [table[idx]], [gy], [False],
                      params={"embeddings": table}, need_params=("embeddings",))
        c.status, c.error_has = 4, "got index 9 at position 7"
        cases.append(c)
    # merges with broadcasting (and an equal-shape add whose first gradient is gy's own buffer)
    shapes = [(3, 4, 5), (3, 1, 5), (3, 4, 1)]
    for op in ["add", "subtract", "multiply", "average", "maximum", "minimum"]:
        sh = shapes[:2] if op == "subtract" else shapes
        xs = _merge_inputs(sh, op, 11)
        y = MERGE_FWD[op](xs)
        gy = rand(y.shape, 12)
        want = vjp["elementwise_vjp"](op, xs, y, gy)
        need = [True] * len(xs)
        need[1] = op != "average"
        c = _vjp_case(ref, op, {}, xs, [y], [gy], need)
        c.context["layer"] = op
        for i, g in enumerate(c.gx):
            if g is not None:
                c.expect.append((c.A, g, want[i], 1e-5 * 4))
        cases.append(c)
    for op in ["add", "subtract"]:
        xs = [rand((3, 6), 13), rand((3, 6), 14)]
        y = MERGE_FWD[op](xs)
        gy = rand(y.shape, 15)
        want = vjp["elementwise_vjp"](op, xs, y, gy)
        c = _vjp_case(ref, op, {}, xs, [y], [gy], [True, True], gx_alias={0: 0})
        assert c.gx[0] == c.context["gy"][0]
        c.expect += [(c.A, c.gx[0], want[0], 0), (c.A, c.gx[1], want[1], 0)]
        cases.append(c)
    # concat along a middle axis and the last, one input without a gradient
    xs = [rand((3, 2, 4), 16), rand((3, 5, 4), 17), rand((3, 1, 4), 18)]
    for axis in (1, -1):
        parts = xs if axis == 1 else [np.ascontiguousarray(t.transpose(0, 2, 1)) for t in xs]
        y = np.concatenate(parts, axis=axis)
        gy = rand(y.shape, 19)
        want = vjp["concat_vjp"](gy, [t.shape[axis] for t in parts], axis)
        c = _vjp_case(ref, "concat", {"axis": axis}, parts, [y], [gy], [True, False, True])
        c.expect += [(c.A, c.gx[0], want[0], 0), (c.A, c.gx[2], want[2], 0)]
        cases.append(c)
    # pools, rank 1 and 2
    for op in ("max_pool", "avg_pool"):
        for shape, pool, strides, padding in [((3, 11, 4), (3,), (2,), "same"), ((3, 9, 7, 2), (2, 3), (2, 2), "valid"),
                                              ((3, 9, 7, 2), (3, 3), (2, 1), "same")]:
            x = ties(shape, 20) if op == "max_pool" else rand(shape, 20)
            y = ref[op](x, pool, strides, padding, "pool")
            gy = rand(y.shape, 21)
            attrs = {"pool_size": pool, "strides": strides, "padding": padding, "rank": len(pool)}
            c = _vjp_case(ref, op, attrs, [x], [y], [gy], [True])
            c.context["pads"] = _pads(attrs, c.context["fxd"])
            want = (vjp["max_pool_vjp"](x, y, gy, pool, strides, padding) if op == "max_pool" else
                    vjp["avg_pool_vjp"](x.shape, x.dtype, gy, pool, strides, padding))
            c.expect.append((c.A, c.gx[0], want, 1e-5))
            cases.append(c)
    # global pools, keepdims or not
    for op in ("global_max_pool", "global_avg_pool"):
        for shape, keepdims in [((3, 7, 5), False), ((3, 4, 3, 6), True)]:
            rank = len(shape) - 2
            axes = tuple(range(1, rank + 1))
            x = ties(shape, 22) if op == "global_max_pool" else rand(shape, 22)
            y = x.max(axis=axes, keepdims=keepdims) if op == "global_max_pool" else \
                x.mean(axis=axes, keepdims=keepdims, dtype=np.float32)
            gy = rand(y.shape, 23)
            c = _vjp_case(ref, op, {"rank": rank, "keepdims": keepdims}, [x], [y], [gy], [True])
            want = (vjp["global_max_pool_vjp"](x, y, gy, rank, keepdims) if op == "global_max_pool" else
                    vjp["global_avg_pool_vjp"](x.shape, gy, rank, keepdims))
            c.expect.append((c.A, c.gx[0], want, 1e-5))
            cases.append(c)
    # dropout_train: y and the mask
    x = rand((3, 10), 24)
    mask = (np.random.default_rng(25).random(x.shape) >= 0.5).astype(np.float32) * np.float32(2)
    gy = rand(x.shape, 26)
    c = _vjp_case(ref, "dropout_train", {"rate": 0.5}, [x], [x * mask, mask], [gy, None], [True])
    c.expect.append((c.A, c.gx[0], vjp["dropout_vjp"](mask, gy), 0))
    cases.append(c)
    # flatten and reshape: a copy, or nothing when the gradient is gy's buffer; no gradient: zeros
    for op in ("flatten", "reshape"):
        x = rand((3, 4, 5), 27)
        gy = rand((3, 20), 28)
        c = _vjp_case(ref, op, {}, [x], [x.reshape(3, 20)], [gy], [True])
        c.expect.append((c.A, c.gx[0], gy.reshape(x.shape), 0))
        cases.append(c)
        c = _vjp_case(ref, op, {}, [x], [x.reshape(3, 20)], [gy], [True], gx_alias={0: 0})
        c.expect.append((c.A, c.gx[0], gy.reshape(x.shape), 0))
        cases.append(c)
        c = _vjp_case(ref, op, {}, [x], [x.reshape(3, 20)], [None], [True])
        c.expect.append((c.A, c.gx[0], np.zeros(x.shape, np.float32), 0))
        cases.append(c)
    # forward merges: equal shapes (gk_merge), broadcasting, and a run-time mismatch
    for op in MERGE_FWD:
        for sh in ([(3, 4, 5), (3, 4, 5)], [(3, 4, 5), (3, 1, 5), (3, 4, 1)], [(3, 1), (3, 6)]):
            sh = sh[:2] if op == "subtract" else sh
            xs = _merge_inputs(sh, op, 30)
            want = MERGE_FWD[op](xs)
            c = Case(f"c/ops/{op}.c.j2", 3)
            y = c.A.out(want.shape)[0]
            c.context = dict(x=[c.A.put(t) for t in xs], xd=[_cdims(t.shape) for t in xs], y=[y],
                             yd=[_cdims(want.shape)], x_dtype=["float32"] * len(xs), a={}, op=op, layer=op,
                             node=op, source="", p={})
            c.expect.append((c.A, y, want, 0))
            cases.append(c)
    c = Case("c/ops/add.c.j2", 3)  # (N, 4) + (N, N) -> (N, 4): fine for N = 4, not for N = 3
    y = c.A.out((4, 4))[0]
    c.context = dict(x=[c.A.put(rand((4, 4), 1)), c.A.put(rand((4, 4), 2))], xd=[["d_N", "4L"], ["d_N", "d_N"]],
                     y=[y], yd=[["d_N", "4L"]], x_dtype=["float32"] * 2, a={}, op="add", layer='my "add"', node="n",
                     source="", p={})
    c.status, c.error_has = 2, 'layer "my "add"": the inputs\' shapes do not broadcast together'
    cases.append(c)
    return cases


@pytest.fixture(scope="module")
def template_cases(ref):
    return _template_cases(ref)


def test_templates_render_compile_and_run(ref, template_cases, build_dir, kernels_obj):
    from gcomp.backends.c_backend import _env
    env = _env()
    functions = []
    for i, case in enumerate(template_cases):
        code = env.get_template(case.template).render(**case.context).rstrip("\n")
        assert "None" not in code, code
        body = "\n".join("    " + line if line else "" for line in code.split("\n"))
        functions.append(f"int case_{i}(model *m, const gc_input *inputs, float *A, const float *W, float *GW, long d_N)\n"
                         f"{{\n    (void)m; (void)inputs; (void)A; (void)W; (void)GW; (void)d_N;\n{body}\n"
                         f"    return GC_OK;\n}}\n")
    source = build_dir / "harness.c"
    source.write_text(HARNESS_PRELUDE + "\n" + "\n".join(functions))
    out = build_dir / "libharness.so"
    _run([CC, "-std=c99", "-O1", "-fPIC", "-shared", *WARNINGS, "-I", C_DIR, source, SOURCE, kernels_obj, "-o", out,
          "-lm"])
    lib = ctypes.CDLL(str(out))
    lib.harness_error.restype = ctypes.c_char_p

    class Model(ctypes.Structure):
        _fields_ = [("scratch", ctypes.c_void_p), ("error", ctypes.c_char * 256)]

    for i, case in enumerate(template_cases):
        fn = getattr(lib, f"case_{i}")
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.POINTER(Model), P, P, P, P, L]
        arenas = {id(case.A): case.A.build(), id(case.W): case.W.build(), id(case.GW): case.GW.build()}
        scratch = np.full(getattr(case, "scratch", 1) + GUARD, np.nan, np.float32)
        model = Model(scratch.ctypes.data, b"")
        inputs = (ctypes.c_void_p * max(len(case.inputs), 1))(*[t.ctypes.data for t in case.inputs])
        status = fn(ctypes.byref(model), inputs, arenas[id(case.A)].ctypes.data, arenas[id(case.W)].ctypes.data,
                    arenas[id(case.GW)].ctypes.data, case.n)
        label = f"case {i} ({case.template})"
        assert np.isnan(scratch[getattr(case, "scratch", 1):]).all(), f"{label}: wrote past its scratch"
        assert status == case.status, (label, model.error)
        if case.error_has:
            assert case.error_has in model.error.decode(), (label, model.error)
            continue
        for arena in (case.A, case.W, case.GW):
            assert arena.gaps_intact(arenas[id(arena)], None), f"{label}: wrote outside its buffers"
        for arena, pointer, want, atol in case.expect:
            got = arena.read(arenas[id(arena)], pointer, want.shape)
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol, err_msg=label)


def test_every_vjp_template_is_covered(template_cases):
    names = {"dense", "activation", "embedding", "add", "subtract", "multiply", "average", "maximum", "minimum",
             "concat", "max_pool", "avg_pool", "global_max_pool", "global_avg_pool", "dropout_train", "flatten",
             "reshape"}
    assert names <= {p.name[:-len(".c.j2")] for p in (C_DIR / "vjp").glob("*.c.j2")}  # (others: conv, lstm_train)
    assert {c.template.split("/")[-1][:-len(".c.j2")] for c in template_cases if "/vjp/" in c.template} == names
