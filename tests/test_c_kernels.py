"""The C backend's kernel library (templates/c/gcomp_kernels.c) against the NumPy runtime's kernels
(templates/numpy/prelude.py): compiled with strict warnings into a shared library, called through
ctypes on random data (odd sizes, padding, strides, dilation, extreme inputs); plus a C11 build, an
OpenMP build that must give bit-identical results, and an AddressSanitizer/UBSan run of every
kernel on exactly-sized heap buffers."""
from __future__ import annotations

import ctypes
import functools
import math
import os
import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from c_harness import ATOL, CC, GUARD, RTOL, WARNINGS, check_guard, close, header_enum, ptr, rand, runs_with

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "templates" / "c"
SOURCE = C_DIR / "gcomp_kernels.c"
HEADER = C_DIR / "gcomp_kernels.h"
PRELUDE = ROOT / "templates" / "numpy" / "prelude.py"

pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")


P, L = ctypes.c_void_p, ctypes.c_long
LONG2 = L * 2


def _compile(out: Path, *flags: str, source: Path = SOURCE) -> Path:
    cmd = [CC, *flags, *WARNINGS, "-I", str(C_DIR), str(source), "-o", str(out), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
    return out


def _bind(lib):
    sigs = {
        "gk_matmul": (None, [P, P, P, P, L, L, L]),
        "gk_matmul_act": (None, [P, P, P, P, L, L, L, ctypes.c_int]),
        "gk_conv2d_act": (None, [P, P, P, P, L, LONG2, L, LONG2, L, LONG2, LONG2, LONG2, LONG2, P, ctypes.c_int]),
        "gk_activation": (None, [ctypes.c_int, P, P, L, L]),
        "gk_gather_i32": (L, [P, L, L, P, L, P]),
        "gk_gather_i64": (L, [P, L, L, P, L, P]),
        "gk_conv2d": (None, [P, P, P, P, L, LONG2, L, LONG2, L, LONG2, LONG2, LONG2, LONG2, P]),
        "gk_pool2d": (None, [ctypes.c_int, P, P, L, LONG2, L, LONG2, LONG2, LONG2, LONG2]),
        "gk_global_pool": (None, [ctypes.c_int, P, P, L, L, L]),
        "gk_concat": (None, [ctypes.c_int, P, P, P, L, L]),
        "gk_merge": (None, [ctypes.c_int, ctypes.c_int, P, P, L]),
        "gk_lstm": (None, [P, P, P, P, P, P, P, L, L, L, L, ctypes.c_int, ctypes.c_int, ctypes.c_int, P]),
        "gk_conv2d_winograd_act": (None, [P, P, P, P, L, LONG2, L, L, LONG2, LONG2, P, ctypes.c_int]),
        "gk_conv2d_winograd_scratch": (L, [L, L]),
        "gk_lookup_sum": (L, [P, L, L, L, P, ctypes.c_int, L, L, L, L, L, P]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    match = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(match.group(1).split()) if match else set()


# Builds to test: the portable baseline alone (SSE2 on x86-64: the smallest register tiles), the
# baseline with the GEMM chosen at run time for this CPU (AVX-512 or AVX2 tiles on x86), this
# machine's own target and, on x86 with AVX2, the AVX2 tiles alone.
BUILDS = [("generic", ["-O2", "-DGK_NO_DISPATCH"]), ("dispatch", ["-O2"]), ("native", ["-O3", "-march=native"])]
if platform.machine() in ("x86_64", "AMD64") and {"avx2", "fma"} <= _cpu_flags():
    BUILDS.append(("avx2", ["-O3", "-mavx2", "-mfma", "-DGK_NO_DISPATCH"]))


@pytest.fixture(scope="module", params=BUILDS, ids=[name for name, _ in BUILDS])
def lib(request, tmp_path_factory):
    name, flags = request.param
    out = tmp_path_factory.mktemp("gk") / f"libgk_{name}.so"
    cmd = [CC, "-std=c99", *flags, "-fPIC", "-shared", *WARNINGS, str(SOURCE), "-o", str(out), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and name != "generic":
        pytest.skip(f"{name} build unavailable: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
    library = _bind(ctypes.CDLL(str(out)))
    library.gk_flags = flags
    return library


@pytest.fixture(scope="module")
def ref():
    namespace = {"__name__": "gcomp_prelude"}
    exec(compile(PRELUDE.read_text(), str(PRELUDE), "exec"), namespace)
    return namespace


ACT = header_enum(HEADER, "gk_activation")
MERGE = header_enum(HEADER, "gk_merge")


def out_buffer(shape):
    """An uninitialised-looking float32 output with NaN canaries after it: (view, whole buffer)."""
    n = int(np.prod(shape, dtype=np.int64))
    buf = np.full(n + GUARD, np.nan, np.float32)
    buf[:n] = 12345.0  # garbage a kernel must overwrite
    return buf[:n].reshape(shape), buf


def test_enums_match_the_prelude(ref):
    assert set(ACT) == set(ref["ACTIVATIONS"])
    assert list(MERGE) == ["add", "subtract", "multiply", "average", "maximum", "minimum"]


# ---- matmul ------------------------------------------------------------------------------------

MATMUL_SIZES = [(1, 1, 1), (7, 13, 5), (130, 257, 33), (1, 300, 70), (3, 40, 64), (13, 600, 31),
                (200, 70, 130), (12, 5, 32), (4, 0, 9), (1, 50, 300), (2, 50, 300), (4, 33, 256),
                (9, 16, 20), (25, 3, 97), (400, 20, 10)]


@pytest.mark.parametrize("m, k, n", MATMUL_SIZES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_matmul(lib, m, k, n, with_bias):
    a, b = rand((m, k), 1), rand((k, n), 2)
    bias = rand((n,), 3) if with_bias else None
    y, buf = out_buffer((m, n))
    lib.gk_matmul(ptr(a), ptr(b), ptr(bias), ptr(y), m, k, n)
    check_guard(buf, m * n)
    want = a.astype(np.float64) @ b.astype(np.float64) + (0.0 if bias is None else bias)
    # float32 accumulation over k terms: error grows like sqrt(k) times the terms' size
    close(y, want, atol=ATOL * max(1.0, math.sqrt(k)))
    close(y, a @ b + (0 if bias is None else bias), atol=ATOL * max(1.0, math.sqrt(k)))


def test_matmul_is_deterministic(lib):
    a, b, bias = rand((150, 300), 4), rand((300, 90), 5), rand((90,), 6)
    outs = []
    for _ in range(2):
        y = np.empty((150, 90), np.float32)
        lib.gk_matmul(ptr(a), ptr(b), ptr(bias), ptr(y), 150, 300, 90)
        outs.append(y)
    assert np.array_equal(outs[0], outs[1])


FUSED_ACTS = ["linear", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "gelu"]


@pytest.mark.parametrize("m, k, n", [(1, 64, 500), (7, 33, 10), (64, 32, 10), (130, 257, 33), (300, 200, 150)])
def test_matmul_act_is_matmul_then_activation(lib, m, k, n):
    """The fused activation gives gk_matmul then gk_activation, bit for bit."""
    a, b, bias = rand((m, k), 1), rand((k, n), 2), rand((n,), 3)
    for name in FUSED_ACTS:
        want = np.empty((m, n), np.float32)
        lib.gk_matmul(ptr(a), ptr(b), ptr(bias), ptr(want), m, k, n)
        lib.gk_activation(ACT[name], ptr(want), ptr(want), m, n)
        got, buf = out_buffer((m, n))
        lib.gk_matmul_act(ptr(a), ptr(b), ptr(bias), ptr(got), m, k, n, ACT[name])
        check_guard(buf, m * n)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), name


# ---- activations -------------------------------------------------------------------------------

def _activation_input(rows, row_len, seed):
    x = rand((rows, row_len), seed, scale=3.0)
    flat = x.reshape(-1)
    extremes = np.array([100, -100, 20, -20, 88.5, -87.5, 1e-4, -1e-4, 0, 0.3, -0.3, 0.7, -0.7, 6, -6, 3],
                        np.float32)
    flat[:extremes.size] = extremes
    return x


@pytest.mark.parametrize("name", sorted(ACT))
def test_activation(lib, ref, name):
    x = _activation_input(9, 37, seed=len(name))
    y, buf = out_buffer(x.shape)
    lib.gk_activation(ACT[name], ptr(x), ptr(y), 9, 37)
    check_guard(buf, x.size)
    with np.errstate(over="ignore"):
        want = ref["ACTIVATIONS"][name](x)
    assert want.dtype == np.float32
    close(y, want)
    # in place (y == x), on a long odd-length row: the vectorized loops' tails
    z = _activation_input(1, 1031, seed=7)
    with np.errstate(over="ignore"):
        want = ref["ACTIVATIONS"][name](z)
    lib.gk_activation(ACT[name], ptr(z), ptr(z), 1, 1031)
    close(z, want)


def test_activation_small_values_keep_relative_accuracy(lib, ref):
    x = np.array([1e-3, -1e-3, 1e-6, -1e-6, 0.01, -0.01, -1e-30], np.float32)
    for name in ["tanh", "elu", "selu", "softplus", "mish", "gelu", "silu"]:
        y = np.empty_like(x)
        lib.gk_activation(ACT[name], ptr(x), ptr(y), 1, x.size)
        np.testing.assert_allclose(y, ref["ACTIVATIONS"][name](x), rtol=2e-6, atol=1e-30, err_msg=name)


def test_softmax_rows(lib, ref):
    for name in ["softmax", "log_softmax"]:
        for shape in [(5, 1), (3, 200), (1, 7), (64, 10), (300, 3), (37, 15), (40, 16)]:
            x = rand(shape, 11, scale=10.0)
            y = np.empty_like(x)
            lib.gk_activation(ACT[name], ptr(x), ptr(y), shape[0], shape[1])
            close(y, ref["ACTIVATIONS"][name](x))
            if name == "softmax":
                close(y.sum(axis=1), np.ones(shape[0]))


# ---- gather ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, fn", [(np.int32, "gk_gather_i32"), (np.int64, "gk_gather_i64")])
def test_gather(lib, dtype, fn):
    table = rand((11, 6), 1)
    idx = np.random.default_rng(2).integers(0, 11, size=23).astype(dtype)
    y, buf = out_buffer((23, 6))
    assert getattr(lib, fn)(ptr(table), 11, 6, ptr(idx), 23, ptr(y)) == -1
    check_guard(buf, y.size)
    assert np.array_equal(y, table[idx])
    for bad_pos, bad in [(0, -1), (5, 11), (22, 1 << 20)]:
        wrong = idx.copy()
        wrong[bad_pos] = bad
        wrong[bad_pos + 1:] = 0
        assert getattr(lib, fn)(ptr(table), 11, 6, ptr(wrong), 23, ptr(y)) == bad_pos
    if dtype is np.int64:  # an index that would be fine after truncation to 32 bits
        wrong = idx.copy()
        wrong[3] = (1 << 32) + 2
        assert getattr(lib, fn)(ptr(table), 11, 6, ptr(wrong), 23, ptr(y)) == 3
    assert getattr(lib, fn)(ptr(table), 11, 6, ptr(idx), 0, ptr(y)) == -1


# ---- convolution and pooling -------------------------------------------------------------------

def keras_geometry(spatial, window, strides, dilation, padding):
    """(pad_before, out) per spatial axis by Keras's rules."""
    pads, outs = [], []
    for n, k, s, d in zip(spatial, window, strides, dilation):
        eff = d * (k - 1) + 1
        if padding == "valid":
            pads.append(0)
            outs.append((n - eff) // s + 1)
        else:
            out = -(-n // s)
            total = max((out - 1) * s + eff - n, 0)
            pads.append(total // 2)
            outs.append(out)
    return pads, outs


def as_rank2(values, fill):
    values = list(values)
    return LONG2(*(values + [fill] * (2 - len(values))))


def run_conv(lib, x, kernel, bias, strides, padding, dilation):
    rank = kernel.ndim - 2
    batch, spatial, channels = x.shape[0], x.shape[1:-1], x.shape[-1]
    window, filters = kernel.shape[:rank], kernel.shape[-1]
    pads, outs = keras_geometry(spatial, window, strides, dilation, padding)
    y, buf = out_buffer((batch, *outs, filters))
    size = int(np.prod(outs)) * int(np.prod(window)) * channels  # the scratch the header promises is enough
    scratch = np.full(size + GUARD, np.nan, np.float32)
    lib.gk_conv2d(ptr(x), ptr(kernel), ptr(bias), ptr(y), batch, as_rank2(spatial, 1), channels,
                  as_rank2(window, 1), filters, as_rank2(strides, 1), as_rank2(dilation, 1),
                  as_rank2(pads, 0), as_rank2(outs, 1), ptr(scratch))
    check_guard(buf, y.size)
    check_guard(scratch, size)
    return y


CONV_CASES = [  # input spatial, channels, window, filters, strides, dilation
    ((17,), 3, (3,), 5, (1,), (1,)),
    ((20,), 4, (4,), 7, (2,), (1,)),
    ((23,), 2, (3,), 4, (1,), (3,)),
    ((9, 11), 3, (3, 3), 8, (1, 1), (1, 1)),
    ((10, 9), 5, (3, 2), 6, (2, 3), (1, 1)),
    ((12, 13), 2, (3, 3), 4, (1, 1), (2, 2)),
    ((7, 8), 6, (1, 1), 9, (1, 1), (1, 1)),
    ((7, 8), 6, (1, 1), 9, (2, 2), (1, 1)),
    ((16, 16), 8, (5, 5), 40, (1, 1), (1, 1)),
    ((6, 5), 3, (6, 5), 2, (1, 1), (1, 1)),
    # channels enough for the AVX-512 path that reads the patches in place (runs of >= 16 floats)
    ((12, 10), 16, (3, 3), 40, (1, 1), (1, 1)),
    ((11, 13), 16, (3, 3), 33, (2, 2), (1, 1)),
    ((9, 10), 24, (3, 2), 64, (1, 1), (2, 1)),
    ((30,), 32, (5,), 20, (2,), (1,)),
    ((31,), 16, (3,), 36, (1,), (2,)),
    ((26,), 20, (5,), 70, (1,), (1,)),
    # rows in groups of 4 outputs: a width of 12 (three whole groups), of 5 (the last group overlaps)
    ((6, 12), 16, (3, 3), 32, (1, 1), (1, 1)),
    ((7, 5), 32, (3, 3), 17, (1, 1), (1, 1)),
]


@pytest.mark.parametrize("spatial, channels, window, filters, strides, dilation", CONV_CASES)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv(lib, ref, spatial, channels, window, filters, strides, dilation, padding, with_bias):
    x = rand((2, *spatial, channels), 1)
    kernel = rand((*window, channels, filters), 2, scale=0.5)
    bias = rand((filters,), 3) if with_bias else None
    want = ref["conv"](x, kernel, strides, padding, dilation, "conv")
    if bias is not None:
        want = want + bias
    got = run_conv(lib, x, kernel, bias, strides, padding, dilation)
    assert got.shape == want.shape
    close(got, want, atol=ATOL * math.sqrt(np.prod(window) * channels))


def _conv_args(x, kernel, strides, padding, dilation):
    spatial, window = x.shape[1:-1], kernel.shape[:-2]
    pads, outs = keras_geometry(spatial, window, strides, dilation, padding)
    size = int(np.prod(outs)) * int(np.prod(window)) * x.shape[-1]
    return ((x.shape[0], as_rank2(spatial, 1), x.shape[-1], as_rank2(window, 1), kernel.shape[-1],
             as_rank2(strides, 1), as_rank2(dilation, 1), as_rank2(pads, 0), as_rank2(outs, 1)),
            (x.shape[0], *outs, kernel.shape[-1]), size)


@pytest.mark.parametrize("spatial, channels, window, filters, strides, padding",
                         [((12, 10), 16, (3, 3), 40, (1, 1), "same"), ((9, 11), 3, (3, 3), 8, (2, 2), "same"),
                          ((7, 5), 32, (3, 3), 17, (1, 1), "same"),
                          ((7, 8), 6, (1, 1), 9, (1, 1), "valid"), ((30,), 32, (5,), 20, (1,), "valid")])
def test_conv_act_is_conv_then_activation(lib, spatial, channels, window, filters, strides, padding):
    x = rand((2, *spatial, channels), 1)
    kernel, bias = rand((*window, channels, filters), 2, scale=0.5), rand((filters,), 3)
    args, shape, size = _conv_args(x, kernel, strides, padding, (1,) * len(window))
    for name in FUSED_ACTS:
        want, scratch = np.empty(shape, np.float32), np.empty(size, np.float32)
        lib.gk_conv2d(ptr(x), ptr(kernel), ptr(bias), ptr(want), *args, ptr(scratch))
        lib.gk_activation(ACT[name], ptr(want), ptr(want), want.size // filters, filters)
        got, buf = out_buffer(shape)
        scratch = np.full(size + GUARD, np.nan, np.float32)
        lib.gk_conv2d_act(ptr(x), ptr(kernel), ptr(bias), ptr(got), *args, ptr(scratch), ACT[name])
        check_guard(buf, got.size)
        check_guard(scratch, size)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), name


@pytest.mark.parametrize("batch, spatial, channels, filters, padding, winograd", [
    (1, (32, 32), 64, 64, "same", True), (6, (17, 13), 64, 80, "valid", True),
    (3, (40, 40), 64, 72, "same", True),  # several chunks of tiles
    (1, (8, 8), 16, 16, "same", False), (2, (7, 5), 3, 17, "same", False), (1, (3, 3), 8, 5, "valid", False)])
def test_winograd_conv_is_the_direct_conv(lib, ref, batch, spatial, channels, filters, padding, winograd):
    """F(2x2, 3x3) against the NumPy reference, within float32 rounding of the sums (not the same
    bits: inference only), for even and odd sizes, with and without padding, bias and relu; the
    scratch its size functions promise is enough and nothing is written past y. Small convolutions
    take the direct sum (the same bits as gk_conv2d_act)."""
    x = rand((batch, *spatial, channels), 1)
    kernel, bias = rand((3, 3, channels, filters), 2, scale=0.5), rand((filters,), 3)
    want = np.maximum(ref["conv"](x, kernel, (1, 1), padding, (1, 1), "conv") + bias, 0.0)
    pads, outs = keras_geometry(spatial, (3, 3), (1, 1), (1, 1), padding)
    y, buf = out_buffer((batch, *outs, filters))
    size = max(lib.gk_conv2d_winograd_scratch(channels, filters), int(np.prod(outs)) * 9 * channels)
    scratch = np.full(size + GUARD, np.nan, np.float32)
    args = (batch, as_rank2(spatial, 1), channels, filters, as_rank2(pads, 0), as_rank2(outs, 1))
    lib.gk_conv2d_winograd_act(ptr(x), ptr(kernel), ptr(bias), ptr(y), *args, ptr(scratch), ACT["relu"])
    check_guard(buf, y.size)
    check_guard(scratch, size)
    close(y, want, atol=ATOL * math.sqrt(9 * channels))
    direct = np.empty_like(y)
    lib.gk_conv2d_act(ptr(x), ptr(kernel), ptr(bias), ptr(direct), batch, as_rank2(spatial, 1), channels,
                      as_rank2((3, 3), 1), filters, as_rank2((1, 1), 1), as_rank2((1, 1), 1), as_rank2(pads, 0),
                      as_rank2(outs, 1), ptr(scratch), ACT["relu"])
    assert np.array_equal(y, direct) != winograd  # which path ran


POOL_CASES = [  # input spatial, channels, pool, strides
    ((17,), 3, (2,), (2,)),
    ((17,), 4, (3,), (1,)),
    ((9, 11), 3, (2, 2), (2, 2)),
    ((9, 11), 5, (3, 3), (2, 1)),
    ((8, 7), 2, (3, 2), (3, 2)),
    ((5, 5), 4, (5, 5), (1, 1)),
]


@pytest.mark.parametrize("spatial, channels, pool, strides", POOL_CASES)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("is_max", [1, 0])
def test_pool(lib, ref, spatial, channels, pool, strides, padding, is_max):
    x = rand((3, *spatial, channels), 4)
    pads, outs = keras_geometry(spatial, pool, strides, (1,) * len(pool), padding)
    y, buf = out_buffer((3, *outs, channels))
    lib.gk_pool2d(is_max, ptr(x), ptr(y), 3, as_rank2(spatial, 1), channels, as_rank2(pool, 1),
                  as_rank2(strides, 1), as_rank2(pads, 0), as_rank2(outs, 1))
    check_guard(buf, y.size)
    want = (ref["max_pool"] if is_max else ref["avg_pool"])(x, pool, strides, padding, "pool")
    assert want.shape == y.shape
    close(y, want)


@pytest.mark.parametrize("spatial, channels", [(1, 1), (7, 3), (50, 130), (2000, 5)])
@pytest.mark.parametrize("is_max", [1, 0])
def test_global_pool(lib, spatial, channels, is_max):
    x = rand((3, spatial, channels), 5, scale=2.0) + 1.0
    y, buf = out_buffer((3, channels))
    lib.gk_global_pool(is_max, ptr(x), ptr(y), 3, spatial, channels)
    check_guard(buf, y.size)
    close(y, x.max(axis=1) if is_max else x.mean(axis=1))


# ---- concat and merges -------------------------------------------------------------------------

def pointer_array(arrays):
    return (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])


@pytest.mark.parametrize("outer, widths, inner", [(1, [3], 1), (4, [2, 5, 1], 3), (3, [7, 0, 2], 1),
                                                  (2, [1, 1, 1, 1], 9)])
def test_concat(lib, outer, widths, inner):
    xs = [rand((outer, w, inner), i) for i, w in enumerate(widths)]
    y, buf = out_buffer((outer, sum(widths), inner))
    lib.gk_concat(len(xs), pointer_array(xs), (L * len(widths))(*widths), ptr(y), outer, inner)
    check_guard(buf, y.size)
    assert np.array_equal(y, np.concatenate(xs, axis=1))


MERGE_REF = {
    "add": lambda xs: functools.reduce(np.add, xs),
    "subtract": lambda xs: xs[0] - xs[1],
    "multiply": lambda xs: functools.reduce(np.multiply, xs),
    "average": lambda xs: functools.reduce(np.add, xs) / np.float32(len(xs)),
    "maximum": lambda xs: functools.reduce(np.maximum, xs),
    "minimum": lambda xs: functools.reduce(np.minimum, xs),
}


@pytest.mark.parametrize("op", list(MERGE_REF))
@pytest.mark.parametrize("count, n", [(2, 1), (2, 1000), (3, 517), (5, 33)])
def test_merge(lib, op, count, n):
    if op == "subtract" and count != 2:
        pytest.skip("subtract takes two inputs")
    xs = [rand((n,), 10 + i) for i in range(count)]
    want = MERGE_REF[op](xs)
    y, buf = out_buffer((n,))
    lib.gk_merge(MERGE[op], count, pointer_array(xs), ptr(y), n)
    check_guard(buf, n)
    close(y, want, rtol=1e-6, atol=0)
    # in place: y is the first input
    lib.gk_merge(MERGE[op], count, pointer_array(xs), ptr(xs[0]), n)
    close(xs[0], want, rtol=1e-6, atol=0)


# ---- LSTM --------------------------------------------------------------------------------------

LSTM_CASES = [  # batch, steps, in_dim, units, activation, recurrent_activation
    (2, 5, 3, 4, "tanh", "sigmoid"),
    (1, 7, 6, 13, "tanh", "sigmoid"),
    (3, 4, 5, 40, "relu", "hard_sigmoid"),
    (4, 6, 9, 8, "sigmoid", "tanh"),
    (2, 3, 4, 5, "tanh", "softmax"),
    (13, 9, 17, 33, "tanh", "sigmoid"),
    (2, 1, 3, 4, "tanh", "sigmoid"),
    (1, 6, 3, 20, "tanh", "hard_sigmoid"),
    (2, 5, 4, 17, "relu", "sigmoid"),
    (2, 4, 3, 6, "hard_sigmoid", "relu"),
]


def run_lstm(lib, x, kernel, recurrent, bias, act, rec_act, go_backwards, sequences=True, states=True):
    batch, steps, in_dim = x.shape
    units = recurrent.shape[0]
    y_seq, seq_buf = out_buffer((batch, steps, units))
    h, h_buf = out_buffer((batch, units))
    c, c_buf = out_buffer((batch, units))
    scratch = np.full(batch * steps * 4 * units + 2 * batch * units + GUARD, np.nan, np.float32)
    lib.gk_lstm(ptr(x), ptr(kernel), ptr(recurrent), ptr(bias), ptr(y_seq) if sequences else None,
                ptr(h) if states else None, ptr(c) if states else None, batch, steps, in_dim, units,
                ACT[act], ACT[rec_act], int(go_backwards), ptr(scratch))
    check_guard(scratch, scratch.size - GUARD)
    for buf, view in [(seq_buf, y_seq), (h_buf, h), (c_buf, c)]:
        check_guard(buf, view.size)
    return y_seq, h, c


@pytest.mark.parametrize("batch, steps, in_dim, units, act, rec_act", LSTM_CASES)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("with_bias", [True, False])
def test_lstm(lib, ref, batch, steps, in_dim, units, act, rec_act, go_backwards, with_bias):
    x = rand((batch, steps, in_dim), 1)
    kernel = rand((in_dim, 4 * units), 2, scale=0.5)
    recurrent = rand((units, 4 * units), 3, scale=0.3)
    bias = rand((4 * units,), 4, scale=0.5) if with_bias else None
    seq_want, h_want, c_want = ref["lstm"](x, kernel, recurrent, bias, act, rec_act, True, go_backwards)
    y_seq, h, c = run_lstm(lib, x, kernel, recurrent, bias, act, rec_act, go_backwards)
    close(y_seq, seq_want)
    close(h, h_want)
    close(c, c_want)
    # return_sequences=False: no y_seq
    _, h2, c2 = run_lstm(lib, x, kernel, recurrent, bias, act, rec_act, go_backwards, sequences=False)
    assert np.array_equal(h2, h) and np.array_equal(c2, c)
    # only the sequence
    y2, _, _ = run_lstm(lib, x, kernel, recurrent, bias, act, rec_act, go_backwards, states=False)
    assert np.array_equal(y2, y_seq)


def test_lstm_zero_steps(lib):
    x = np.empty((2, 0, 3), np.float32)
    kernel, recurrent = rand((3, 16), 1), rand((4, 16), 2)
    _, h, c = run_lstm(lib, x, kernel, recurrent, None, "tanh", "sigmoid", False)
    assert not h.any() and not c.any()


# ---- other builds: C11, OpenMP, sanitizers -----------------------------------------------------

def test_compiles_as_c11(tmp_path):
    _compile(tmp_path / "k.o", "-std=c11", "-O1", "-c")


def _threaded_kernel_runs(library) -> list[np.ndarray]:
    """The outputs of kernel calls large enough for threads: products, convolutions (with and without
    im2col, strided with a padded copy, Winograd), folded lookups, pooling, an LSTM's batch groups and
    activations. Thread counts and sessions must not change one bit of them."""
    outs = []
    for m, k, n in [(130, 257, 33), (300, 200, 150), (5, 700, 400), (1, 64, 1000)]:
        a, b, bias = rand((m, k), 1), rand((k, n), 2), rand((n,), 3)
        y = np.empty((m, n), np.float32)
        library.gk_matmul(ptr(a), ptr(b), ptr(bias), ptr(y), m, k, n)
        outs.append(y)
    x, kernel = rand((2, 30, 30, 8), 4), rand((3, 3, 8, 16), 5)
    args = (2, LONG2(30, 30), 8, LONG2(3, 3), 16, LONG2(1, 1), LONG2(1, 1), LONG2(1, 1), LONG2(30, 30))
    y, scratch = np.empty((2, 30, 30, 16), np.float32), np.empty(900 * 72, np.float32)
    library.gk_conv2d(ptr(x), ptr(kernel), None, ptr(y), *args, ptr(scratch))
    outs.append(y)
    for batch, spatial, channels, window, filters, strides, padding in [
            (1, (32, 32), 32, (3, 3), 64, (1, 1), "same"), (3, (24, 20), 16, (3, 3), 48, (2, 2), "same"),
            (2, (400,), 64, (5,), 96, (1,), "valid"), (1, (30, 30), 5, (3, 3), 70, (1, 1), "same"),
            (1, (32, 32), 128, (3, 3), 64, (2, 2), "same")]:
        x = rand((batch, *spatial, channels), 6)
        kernel, bias = rand((*window, channels, filters), 7, scale=0.3), rand((filters,), 8)
        args, shape, size = _conv_args(x, kernel, strides, padding, (1,) * len(window))
        y, scratch = np.empty(shape, np.float32), np.empty(size, np.float32)
        library.gk_conv2d_act(ptr(x), ptr(kernel), ptr(bias), ptr(y), *args, ptr(scratch), ACT["relu"])
        outs.append(y)
    tables = rand((3, 50, 64), 14)  # folded lookups: rows of output split between threads
    idx = np.random.default_rng(15).integers(0, 50, (8, 200)).astype(np.int32)
    y = np.empty((8, 196, 64), np.float32)
    assert library.gk_lookup_sum(ptr(tables), 3, 50, 64, ptr(idx), 0, 8, 200, 196, 1, 2, ptr(y)) == -1
    assert np.array_equal(y, sum(tables[k][idx[:, 2 * k:2 * k + 196]] for k in range(3)))  # dilation 2
    outs.append(y)
    # Winograd: shares of the tiles; 5 samples of 24x24 are 720 tiles, two chunks of 256 and a short one
    for batch, side in [(2, 32), (5, 24)]:
        x, kernel, bias = rand((batch, side, side, 64), 6), rand((3, 3, 64, 64), 7, scale=0.3), rand((64,), 8)
        y = np.empty((batch, side, side, 64), np.float32)
        scratch = np.empty(max(library.gk_conv2d_winograd_scratch(64, 64), side * side * 9 * 64), np.float32)
        library.gk_conv2d_winograd_act(ptr(x), ptr(kernel), ptr(bias), ptr(y), batch, LONG2(side, side), 64, 64,
                                       LONG2(1, 1), LONG2(side, side), ptr(scratch), ACT["relu"])
        outs.append(y)
    x = rand((4, 64, 64, 32), 16)
    y = np.empty((4, 32, 32, 32), np.float32)
    library.gk_pool2d(1, ptr(x), ptr(y), 4, LONG2(64, 64), 32, LONG2(3, 3), LONG2(2, 2), LONG2(0, 0), LONG2(32, 32))
    outs.append(y)
    x, kernel = rand((48, 30, 40), 9), rand((40, 256), 10, 0.3)
    recurrent, bias = rand((64, 256), 11, 0.2), rand((256,), 12)
    outs += list(run_lstm(library, x, kernel, recurrent, bias, "tanh", "sigmoid", False))
    for name, shape in [("softmax", (2000, 100)), ("log_softmax", (30000, 10)), ("tanh", (700, 300))]:
        x = rand(shape, 13, scale=4.0)
        y = np.empty_like(x)
        library.gk_activation(ACT[name], ptr(x), ptr(y), *shape)
        outs.append(y)
    return outs


def _same_bits(outs_a, outs_b):
    assert len(outs_a) == len(outs_b)
    for i, (a, b) in enumerate(zip(outs_a, outs_b)):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), f"output {i} of _threaded_kernel_runs"


SESSION_BODY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


@pytest.fixture(scope="module")
def omp(tmp_path_factory):
    """The kernels built with OpenMP (-O2, the GEMM chosen at run time)."""
    tmp = tmp_path_factory.mktemp("gk_omp")
    if not runs_with(tmp, "-fopenmp"):
        pytest.skip("no OpenMP")
    library = _bind(ctypes.CDLL(str(_compile(tmp / "libgk_omp.so", "-std=c99", "-O2", "-fPIC", "-shared",
                                             "-fopenmp"))))
    library.gk_session.restype, library.gk_session.argtypes = ctypes.c_int, [SESSION_BODY, P, ctypes.c_double]
    library.gk_session_threads.restype, library.gk_session_threads.argtypes = ctypes.c_int, []
    return library


def test_openmp_build_gives_identical_results(lib, omp):
    if lib.gk_flags != ["-O2"]:
        pytest.skip("checked on the default (dispatching) build only, for compile time")
    _same_bits(_threaded_kernel_runs(lib), _threaded_kernel_runs(omp))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a session needs two threads")
def test_kernels_in_a_session_give_identical_results(omp):
    """Inside gk_session the helpers spin and take the kernels' loops (each its own range first);
    the bits are those of OpenMP's own regions outside it."""
    outside, inside, threads = _threaded_kernel_runs(omp), [], []

    @SESSION_BODY
    def body(_arg):
        threads.append(omp.gk_session_threads())
        inside.extend(_threaded_kernel_runs(omp))
        threads.append(omp.gk_session_threads())
        return 7

    assert omp.gk_session(body, None, 1e12) == 7
    assert threads[0] >= 2 and threads[0] == threads[1]  # a session opened, and its team stayed
    assert omp.gk_session_threads() == 0
    _same_bits(outside, inside)


def test_small_calls_and_nested_sessions_run_as_usual(omp):
    seen = []

    @SESSION_BODY
    def inner(_arg):
        seen.append(omp.gk_session_threads())
        return 3

    @SESSION_BODY
    def outer(_arg):
        seen.append(omp.gk_session_threads())
        return omp.gk_session(inner, None, 1e12) + 1  # the session is this thread's already

    assert omp.gk_session(inner, None, 1.0) == 3  # too little work for a session
    assert omp.gk_session(outer, None, 1e12) == 4
    opened = (os.cpu_count() or 1) >= 2
    assert seen[0] == 0 and (seen[1] >= 2) == opened and seen[2] == seen[1]


def test_strided_conv_with_padding_reads_a_padded_copy(lib, ref):
    """On AVX-512 a strided convolution with padding reads its windows in place from a padded copy
    of the sample in scratch (rows rounded up to whole strides: 34 pixels for 33), not from patches."""
    if "avx512f" not in _cpu_flags() or lib.gk_flags != ["-O2"]:
        pytest.skip("the dispatching build on an AVX-512 CPU only")
    x, kernel, bias = rand((1, 32, 32, 16), 1), rand((3, 3, 16, 32), 2, scale=0.3), rand((32,), 3)
    args, shape, size = _conv_args(x, kernel, (2, 2), "same", (1, 1))
    y, scratch = np.empty(shape, np.float32), np.full(size, np.nan, np.float32)
    lib.gk_conv2d_act(ptr(x), ptr(kernel), ptr(bias), ptr(y), *args, ptr(scratch), ACT["linear"])
    copy = scratch[:33 * 34 * 16].reshape(33, 34, 16)
    assert np.array_equal(copy[:32, :32], x[0])
    assert not np.any(copy[32]) and not np.any(copy[:, 32:])  # zeros below and right of x
    close(y, ref["conv"](x, kernel, (2, 2), "same", (1, 1), "conv") + bias)


def test_patches_read_in_place_match_im2col(lib, tmp_path):
    """On AVX-512 CPUs, convolutions whose patch rows are runs of >= 16 floats read them in place
    (no im2col) with hand-written tiles; -DGK_NO_INTRINSICS builds the patches and uses the
    compiler's tiles. Both must give the same bits (elsewhere both take the same path)."""
    if lib.gk_flags != ["-O2"]:
        pytest.skip("checked on the default (dispatching) build only, for compile time")
    path = _compile(tmp_path / "libgk_noi.so", "-std=c99", "-O2", "-DGK_NO_INTRINSICS", "-fPIC", "-shared")
    plain = _bind(ctypes.CDLL(str(path)))
    cases = [  # batch, spatial, channels, window, filters, strides, dilation, padding
        (1, (32, 32), 64, (3, 3), 64, (1, 1), (1, 1), "same"), (2, (16, 16), 32, (3, 3), 128, (2, 2), (1, 1), "same"),
        (1, (17, 15), 16, (5, 5), 40, (1, 1), (1, 1), "valid"), (3, (13, 11), 24, (3, 3), 33, (1, 1), (2, 2), "same"),
        (1, (16, 16), 64, (1, 1), 48, (2, 2), (1, 1), "same"), (2, (12, 9), 20, (3, 2), 70, (2, 1), (1, 1), "same"),
        (1, (500,), 32, (5,), 40, (1,), (1,), "valid"), (2, (99,), 16, (5,), 96, (2,), (1,), "same"),
        (2, (60,), 16, (3,), 20, (1,), (3,), "same"), (4, (7, 7), 16, (3, 3), 32, (1, 1), (1, 1), "same"),
        (1, (3, 40), 16, (3, 3), 32, (1, 1), (1, 1), "valid"),
    ]
    for batch, spatial, channels, window, filters, strides, dilation, padding in cases:
        x = rand((batch, *spatial, channels), 1)
        kernel, bias = rand((*window, channels, filters), 2, scale=0.3), rand((filters,), 3)
        args, shape, size = _conv_args(x, kernel, strides, padding, dilation)
        outs = []
        for library in (lib, plain):
            y, buf = out_buffer(shape)
            scratch = np.full(size + GUARD, np.nan, np.float32)
            library.gk_conv2d_act(ptr(x), ptr(kernel), ptr(bias), ptr(y), *args, ptr(scratch), ACT["tanh"])
            check_guard(buf, y.size)
            check_guard(scratch, size)
            outs.append(y)
        assert np.array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32)), (batch, spatial, window, strides)
    for batch, spatial, channels, filters in [(1, (32, 32), 64, 64), (3, (17, 13), 64, 80), (2, (20, 18), 72, 64)]:
        x = rand((batch, *spatial, channels), 1)  # Winograd's transforms: registers or local arrays, same bits
        kernel, bias = rand((3, 3, channels, filters), 2, scale=0.3), rand((filters,), 3)
        size = max(lib.gk_conv2d_winograd_scratch(channels, filters), int(np.prod(spatial)) * 9 * channels)
        outs = []
        for library in (lib, plain):
            y = np.empty((batch, *spatial, filters), np.float32)
            scratch = np.empty(size, np.float32)
            library.gk_conv2d_winograd_act(ptr(x), ptr(kernel), ptr(bias), ptr(y), batch, as_rank2(spatial, 1),
                                           channels, filters, as_rank2((1, 1), 0), as_rank2(spatial, 1),
                                           ptr(scratch), ACT["relu"])
            outs.append(y)
        assert np.array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32)), (batch, spatial, channels)
    a, b, bias = rand((150, 300), 4), rand((300, 90), 5), rand((90,), 6)
    ys = [np.empty((150, 90), np.float32), np.empty((150, 90), np.float32)]
    for library, y in zip((lib, plain), ys):
        library.gk_matmul(ptr(a), ptr(b), ptr(bias), ptr(y), 150, 300, 90)
    assert np.array_equal(*ys)


SANITIZER_DRIVER = r"""
#include "gcomp_kernels.h"
#include <stdio.h>
#include <stdlib.h>

static unsigned rng_state = 12345u;
static float frand(void) { rng_state = rng_state * 1103515245u + 12345u; return (float)((rng_state >> 8) & 0xffff) / 16384.0f - 2.0f; }
/* exactly n floats on the heap, so that AddressSanitizer sees any access past the end */
static float *buf(long n) { float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p); long i; for (i = 0; i < n; ++i) p[i] = frand(); return p; }

static void matmul(long m, long k, long n, int with_bias) {
    float *a = buf(m * k), *b = buf(k * n), *bias = buf(n), *y = buf(m * n);
    gk_matmul(a, b, with_bias ? bias : NULL, y, m, k, n);
    free(a); free(b); free(bias); free(y);
}

static void conv(long batch, long i0, long i1, long ch, long k0, long k1, long f, long s0, long s1,
                 long d0, long d1, int same) {
    long in[2] = {i0, i1}, ks[2] = {k0, k1}, st[2] = {s0, s1}, dl[2] = {d0, d1}, pad[2], out[2], r;
    float *x, *kern, *bias, *y, *pooled, *scratch;
    for (r = 0; r < 2; ++r) {
        long eff = dl[r] * (ks[r] - 1) + 1;
        if (same) { long total; out[r] = (in[r] + st[r] - 1) / st[r]; total = (out[r] - 1) * st[r] + eff - in[r]; pad[r] = total > 0 ? total / 2 : 0; }
        else { out[r] = (in[r] - eff) / st[r] + 1; pad[r] = 0; }
    }
    x = buf(batch * i0 * i1 * ch); kern = buf(k0 * k1 * ch * f); bias = buf(f);
    y = buf(batch * out[0] * out[1] * f); scratch = buf(out[0] * out[1] * k0 * k1 * ch);
    pooled = buf(batch * out[0] * out[1] * ch);
    gk_conv2d(x, kern, same ? bias : NULL, y, batch, in, ch, ks, f, st, dl, pad, out, scratch);
    if (k0 == 3 && k1 == 3 && s0 == 1 && s1 == 1 && d0 == 1 && d1 == 1) { /* and by Winograd */
        long need = gk_conv2d_winograd_scratch(ch, f), direct = out[0] * out[1] * k0 * k1 * ch;
        float *wscratch = buf(need > direct ? need : direct);
        gk_conv2d_winograd_act(x, kern, same ? bias : NULL, y, batch, in, ch, f, pad, out, wscratch, GK_RELU);
        free(wscratch);
    }
    if (d0 == 1 && d1 == 1) { /* pooling windows are not dilated */
        gk_pool2d(1, x, pooled, batch, in, ch, ks, st, pad, out);
        gk_pool2d(0, x, pooled, batch, in, ch, ks, st, pad, out);
    }
    free(x); free(kern); free(bias); free(y); free(pooled); free(scratch);
}

static void lstm(long batch, long steps, long in_dim, long u, int act, int rec, int back, int with_bias) {
    float *x = buf(batch * steps * in_dim), *k = buf(in_dim * 4 * u), *rk = buf(u * 4 * u), *b = buf(4 * u);
    float *ys = buf(batch * steps * u), *h = buf(batch * u), *c = buf(batch * u);
    float *scratch = buf(batch * steps * 4 * u + 2 * batch * u);
    gk_lstm(x, k, rk, with_bias ? b : NULL, ys, h, c, batch, steps, in_dim, u, act, rec, back, scratch);
    gk_lstm(x, k, rk, b, NULL, h, NULL, batch, steps, in_dim, u, act, rec, back, scratch);
    gk_lstm(x, k, rk, b, ys, NULL, c, batch, steps, in_dim, u, act, rec, back, scratch);
    free(x); free(k); free(rk); free(b); free(ys); free(h); free(c); free(scratch);
}

static int run_all(void *arg) {
    long sizes[][3] = {{1, 1, 1}, {7, 13, 5}, {130, 257, 33}, {1, 300, 70}, {13, 600, 31}, {12, 5, 32},
                       {25, 3, 97}, {4, 0, 9}, {0, 3, 3}, {97, 1, 1}, {300, 200, 150}};
    int i, act;
    (void)arg;
    for (i = 0; i < (int)(sizeof sizes / sizeof sizes[0]); ++i) {
        matmul(sizes[i][0], sizes[i][1], sizes[i][2], 0);
        matmul(sizes[i][0], sizes[i][1], sizes[i][2], 1);
    }
    for (act = 0; act <= GK_HARD_SILU; ++act) {
        float *x = buf(3 * 37), *y = buf(3 * 37);
        x[0] = 100.0f; x[1] = -100.0f; x[2] = 1e30f; x[3] = -1e30f; x[4] = 0.0f; x[5] = 88.9f; x[6] = -88.0f;
        gk_activation(act, x, y, 3, 37);
        gk_activation(act, x, x, 37, 3);
        gk_activation(act, x, x, 1, 1);
        free(x); free(y);
    }
    {
        float *table = buf(11 * 6), *y = buf(5 * 6);
        int32_t i32[5] = {0, 10, 3, 11, -1};
        int64_t i64[5] = {0, 10, 3, 11, -1};
        if (gk_gather_i32(table, 11, 6, i32, 3, y) != -1 || gk_gather_i32(table, 11, 6, i32, 5, y) != 3) return 2;
        if (gk_gather_i64(table, 11, 6, i64, 3, y) != -1 || gk_gather_i64(table, 11, 6, i64, 5, y) != 3) return 2;
        free(table); free(y);
    }
    conv(2, 17, 1, 3, 3, 1, 5, 1, 1, 1, 1, 0);
    conv(2, 17, 1, 3, 3, 1, 5, 2, 1, 3, 1, 1);
    conv(2, 9, 11, 3, 3, 3, 8, 1, 1, 1, 1, 1);
    conv(1, 10, 9, 5, 3, 2, 6, 2, 3, 1, 1, 1);
    conv(1, 12, 13, 2, 3, 3, 4, 1, 1, 2, 2, 1);
    conv(2, 7, 8, 6, 1, 1, 9, 1, 1, 1, 1, 0);
    conv(1, 16, 16, 8, 5, 5, 40, 1, 1, 1, 1, 1);
    conv(1, 6, 5, 3, 6, 5, 2, 1, 1, 1, 1, 0);
    conv(1, 5, 5, 3, 4, 4, 2, 3, 3, 1, 1, 1);
    conv(1, 16, 16, 32, 3, 3, 40, 2, 2, 1, 1, 1); /* patches read in place (AVX-512), strided */
    conv(3, 13, 11, 16, 3, 3, 64, 1, 1, 1, 1, 1);
    conv(2, 40, 1, 24, 5, 1, 33, 1, 1, 2, 1, 1);
    conv(1, 30, 1, 16, 5, 1, 20, 2, 1, 1, 1, 0);
    conv(1, 12, 14, 16, 3, 3, 32, 1, 1, 1, 1, 0);
    conv(3, 17, 13, 64, 3, 3, 80, 1, 1, 1, 1, 1); /* Winograd, with odd sizes and a partial chunk of tiles */
    conv(1, 32, 32, 64, 3, 3, 64, 1, 1, 1, 1, 1); /* large enough for threads: direct and Winograd */
    conv(1, 32, 32, 64, 3, 3, 64, 2, 2, 1, 1, 1); /* threads, strided, a padded copy read in place */
    {
        float *x = buf(3 * 50 * 130), *y = buf(3 * 130);
        gk_global_pool(1, x, y, 3, 50, 130);
        gk_global_pool(0, x, y, 3, 50, 130);
        free(x); free(y);
    }
    {
        float *a = buf(4 * 2 * 3), *b = buf(4 * 5 * 3), *c = buf(1), *y = buf(4 * 7 * 3);
        const float *xs[3];
        long widths[3] = {2, 5, 0};
        xs[0] = a; xs[1] = b; xs[2] = c;
        gk_concat(3, xs, widths, y, 4, 3);
        free(a); free(b); free(c); free(y);
    }
    {
        int op;
        for (op = 0; op <= GK_MINIMUM; ++op) {
            float *a = buf(517), *b = buf(517), *c = buf(517), *y = buf(517);
            const float *xs[3];
            xs[0] = a; xs[1] = b; xs[2] = c;
            gk_merge(op, op == GK_SUBTRACT ? 2 : 3, xs, y, 517);
            gk_merge(op, 2, xs, a, 517);
            free(a); free(b); free(c); free(y);
        }
    }
    lstm(2, 5, 3, 4, GK_TANH, GK_SIGMOID, 0, 1);
    lstm(3, 4, 5, 40, GK_RELU, GK_HARD_SIGMOID, 1, 0);
    lstm(2, 3, 4, 5, GK_TANH, GK_SOFTMAX, 1, 1);
    lstm(13, 9, 17, 33, GK_TANH, GK_SIGMOID, 1, 1);
    lstm(2, 0, 3, 4, GK_TANH, GK_SIGMOID, 0, 1);
    lstm(1, 6, 3, 20, GK_TANH, GK_HARD_SIGMOID, 0, 1);
    lstm(2, 3, 2, 7, GK_RELU, GK_SIGMOID, 1, 1);
    lstm(2, 3, 2, 7, GK_SIGMOID, GK_SIGMOID, 0, 0);
    lstm(2, 4, 0, 3, GK_TANH, GK_SIGMOID, 0, 1);
    return 0;
}

int main(void) {
    /* every kernel on the calling thread's own, then in a session (with OpenMP: helpers spinning) */
    if (run_all(NULL) != 0 || gk_session(run_all, NULL, 1e12) != 0) return 2;
    puts("ok");
    return 0;
}
"""


@pytest.mark.parametrize("build", [["-O1", "-DGK_NO_DISPATCH"], ["-O1"], ["-O1", "-fopenmp"]],
                         ids=["generic", "dispatch", "openmp"])
def test_every_kernel_under_address_and_undefined_sanitizers(tmp_path, build):
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
    if not runs_with(tmp_path, *flags, *build[1:]):
        pytest.skip(f"sanitizer runtime unavailable with {build[1:]}")
    driver = tmp_path / "driver.c"
    driver.write_text(SANITIZER_DRIVER)
    exe = tmp_path / "driver"
    cmd = [CC, "-std=c99", *build, "-g", *flags, *WARNINGS, "-I", str(C_DIR), str(SOURCE), str(driver),
           "-o", str(exe), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1")
    run = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
    assert "runtime error" not in run.stderr and "Sanitizer" not in run.stderr, run.stderr
