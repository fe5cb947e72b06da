"""The C backend's training kernels for convolution and LSTM (templates/c/gcomp_backward_seq.c)
against the NumPy runtime (templates/numpy/prelude.py + vjp.py): gk_conv_backward vs conv_vjp,
gk_lstm_train vs gk_lstm and lstm_train, gk_lstm_backward vs lstm_vjp, on random data with odd sizes,
compiled with strict warnings into shared libraries called through ctypes. Every output and every
scratch and cache buffer is sized exactly (by the header's size functions) and followed by NaN
canaries. Also: directional finite differences of the float64 NumPy forward, an OpenMP build that
must give bit-identical results, and the Jinja templates (ops/lstm_train, vjp/conv, vjp/lstm_train)
rendered, compiled and run."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "templates" / "c"
SOURCES = [C_DIR / "gcomp_kernels.c", C_DIR / "gcomp_backward.c", C_DIR / "gcomp_backward_seq.c"]
NUMPY_DIR = ROOT / "templates" / "numpy"

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")

WARNINGS = ["-Wall", "-Wextra", "-Wpedantic", "-Werror"]
GUARD = 16
SMALL_GROUPS = "-DGK_BS_GROUP_FLOATS=4096"  # several sample groups on the im2col path, even for tiny convs
BUILDS = {
    "dispatch": ["-O2", SMALL_GROUPS],
    "native": ["-O3", "-march=native"],
}
OMP_FLAGS = ["-O2", SMALL_GROUPS, "-fopenmp"]

P, L, I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
LONG2 = L * 2


def _bind(lib):
    sigs = {
        "gk_conv_backward_scratch": (L, [L, LONG2, L, LONG2, L, LONG2]),
        "gk_conv_backward": (None, [P, P, P, P, P, P, L, LONG2, L, LONG2, L, LONG2, LONG2, LONG2, LONG2, P]),
        "gk_lstm_cache_size": (L, [L, L, L, L]),
        "gk_lstm_train_scratch": (L, [L, L, L, L]),
        "gk_lstm_backward_scratch": (L, [L, L, L, L]),
        "gk_lstm": (None, [P, P, P, P, P, P, P, L, L, L, L, I, I, I, P]),
        "gk_lstm_train": (None, [P, P, P, P, P, P, P, L, L, L, L, I, I, I, P, P]),
        "gk_lstm_backward": (None, [P, P, P, P, P, I, P, P, P, P, P, P, L, L, L, L, I, I, I, P]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def _compile_all(jobs: dict) -> dict:
    """Runs the compile commands concurrently; returns each one's error text ('' when it built)."""
    procs = {name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, cmd in jobs.items()}
    return {name: ("" if p.wait() == 0 else f"{' '.join(jobs[name])}\n{p.stdout.read()}")
            for name, p in procs.items()}


def _probe_openmp(tmp: Path) -> bool:
    probe = tmp / "probe.c"
    probe.write_text("#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
    proc = subprocess.run([CC, "-fopenmp", str(probe), "-o", str(tmp / "probe")], capture_output=True)
    return proc.returncode == 0 and subprocess.run([str(tmp / "probe")], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    """name -> library: the BUILDS, plus "omp" when the compiler has OpenMP (None otherwise); each
    library's objects are kept (lib.objects) for other programs to link."""
    tmp = tmp_path_factory.mktemp("gkbs")
    flags = dict(BUILDS)
    if _probe_openmp(tmp):
        flags["omp"] = OMP_FLAGS
    jobs = {}
    for name, f in flags.items():
        for src in SOURCES:
            jobs[(name, src.stem)] = [CC, "-std=c99", *f, "-fPIC", "-c", *WARNINGS, "-I", str(C_DIR), str(src),
                                      "-o", str(tmp / f"{name}_{src.stem}.o")]
    jobs[("c11", "")] = [CC, "-std=c11", "-O1", "-c", *WARNINGS, str(SOURCES[1]), "-o", str(tmp / "c11.o")]
    errors = _compile_all(jobs)
    if any(errors[("native", src.stem)] for src in SOURCES):  # e.g. a compiler without -march=native
        del flags["native"]
        errors = {k: v for k, v in errors.items() if k[0] != "native"}
    failed = [v for v in errors.values() if v]
    assert not failed, "\n".join(failed)
    out = {}
    for name, f in flags.items():
        objects = [str(tmp / f"{name}_{src.stem}.o") for src in SOURCES]
        so = tmp / f"libgkbs_{name}.so"
        cmd = [CC, *(["-fopenmp"] if "-fopenmp" in f else []), "-shared", *objects, "-o", str(so), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        out[name] = _bind(ctypes.CDLL(str(so)))
        out[name].objects = objects
    out.setdefault("omp", None)
    return out


@pytest.fixture(scope="module", params=list(BUILDS))
def lib(request, libs):
    if request.param not in libs:
        pytest.skip(f"{request.param} build unavailable")
    return libs[request.param]


@pytest.fixture(scope="module")
def ref():
    source = (NUMPY_DIR / "prelude.py").read_text() + "\n" + (NUMPY_DIR / "vjp.py").read_text()
    namespace = {"__name__": "gcomp_runtime_under_test"}
    exec(compile(source, "<prelude.py + vjp.py>", "exec"), namespace)
    return namespace


def _enum():
    import re
    body = re.search(r"enum\s+gk_activation\s*\{(.*?)\}", (C_DIR / "gcomp_kernels.h").read_text(), re.S).group(1)
    codes, value = {}, -1
    for item in (s.strip() for s in body.split(",")):
        if item:
            key, _, explicit = item.partition("=")
            value = int(explicit) if explicit.strip() else value + 1
            codes[key.strip()[3:].lower()] = value
    return codes


ACT = _enum()


def rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def ptr(a):
    return None if a is None else a.ctypes.data


def out_buffer(shape):
    """(view, whole buffer): garbage the kernel must overwrite, then NaN canaries."""
    n = int(np.prod(shape, dtype=np.int64))
    buf = np.full(n + GUARD, np.nan, np.float32)
    buf[:n] = 12345.0
    return buf[:n].reshape(shape), buf


def scratch_buffer(n):
    buf = np.full(n + GUARD, np.nan, np.float32)
    return buf, n


def check_guard(buf, n):
    assert np.isnan(buf[n:]).all(), "kernel wrote past the end of its buffer"


def as2(values, fill):
    values = list(values)
    return LONG2(*(values + [fill] * (2 - len(values))))


def close(got, want, rtol, atol_scale):
    """|got - want| <= rtol |want| + atol_scale * rtol * max|want| (summation-order noise)."""
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol_scale * rtol * max(np.abs(want).max(), 1e-30))


# ---- convolution backward ----------------------------------------------------------------------

def conv_geometry(ref, spatial, window, strides, dilation, padding):
    pads = ref["_spatial_pads"](spatial, window, strides, dilation, padding)
    outs = [(n + lo + hi - (d * (k - 1) + 1)) // s + 1
            for n, (lo, hi), k, s, d in zip(spatial, pads, window, strides, dilation)]
    return [lo for lo, _ in pads], outs


def run_conv_backward(lib, ref, x, kernel, gy, strides, padding, dilation, need_x=True, need_w=True,
                      need_b=True):
    rank = kernel.ndim - 2
    batch, spatial, channels = x.shape[0], x.shape[1:-1], x.shape[-1]
    window, filters = kernel.shape[:rank], kernel.shape[-1]
    pads, outs = conv_geometry(ref, spatial, window, strides, dilation, padding)
    assert list(gy.shape[1:-1]) == outs
    gx, gx_buf = out_buffer(x.shape) if need_x else (None, None)
    gk, gk_buf = out_buffer(kernel.shape) if need_w else (None, None)
    gb, gb_buf = out_buffer((filters,)) if need_b else (None, None)
    args = (batch, as2(spatial, 1), channels, as2(window, 1), filters)
    n = lib.gk_conv_backward_scratch(*args, as2(outs, 1))
    scratch, n = scratch_buffer(n)
    lib.gk_conv_backward(ptr(x) if need_w else None, ptr(kernel) if need_x else None, ptr(gy), ptr(gx), ptr(gk),
                         ptr(gb), *args, as2(strides, 1), as2(dilation, 1), as2(pads, 0), as2(outs, 1),
                         ptr(scratch))
    check_guard(scratch, n)
    for view, buf in [(gx, gx_buf), (gk, gk_buf), (gb, gb_buf)]:
        if view is not None:
            check_guard(buf, view.size)
    return gx, gk, gb


CONV_CASES = [  # spatial, channels, window, filters, strides, dilation
    ((17,), 3, (3,), 5, (1,), (1,)),
    ((31,), 16, (5,), 33, (1,), (1,)),
    ((20,), 4, (4,), 7, (2,), (1,)),
    ((23,), 2, (3,), 4, (1,), (3,)),
    ((12,), 3, (3,), 4, (1,), (4,)),   # "same": a padded length beyond the fast path's scratch
    ((25,), 12, (3,), 5, (1,), (1,)),  # fewer filters than channels: the grid transposed, not x
    ((26,), 9, (4,), 7, (1,), (2,)),
    ((9,), 5, (1,), 6, (1,), (1,)),
    ((12,), 3, (12,), 2, (1,), (1,)),
    ((19,), 3, (3,), 5, (3,), (2,)),
    ((9, 11), 3, (3, 3), 8, (1, 1), (1, 1)),
    ((10, 9), 5, (3, 2), 6, (2, 3), (1, 1)),
    ((12, 13), 2, (3, 3), 4, (1, 1), (2, 2)),
    ((7, 8), 6, (1, 1), 9, (2, 2), (1, 1)),
    ((6, 5), 3, (6, 5), 2, (1, 1), (1, 1)),
]
NEEDS = {"all": (True, True, True), "no_x": (False, True, True), "x_only": (True, False, False)}


def _conv_paddings():
    for case in CONV_CASES:
        rank = len(case[0])
        for padding in ["valid", "same"] + (["causal"] if rank == 1 else []):
            if padding == "valid" and any(n < d * (k - 1) + 1 for n, k, d in zip(case[0], case[2], case[5])):
                continue
            yield case + (padding,)


@pytest.mark.parametrize("spatial, channels, window, filters, strides, dilation, padding", list(_conv_paddings()))
@pytest.mark.parametrize("need", list(NEEDS))
def test_conv_backward(lib, ref, spatial, channels, window, filters, strides, dilation, padding, need):
    rng = np.random.default_rng(zlib.crc32(repr((spatial, window, strides, dilation, padding)).encode()))
    x = rand(rng, (3, *spatial, channels))
    kernel = rand(rng, (*window, channels, filters), 0.5)
    y = ref["conv"](x, kernel, strides, padding, dilation, "conv")
    gy = rand(rng, y.shape)
    need_x, need_w, need_b = NEEDS[need]
    gx, gk, gb = run_conv_backward(lib, ref, x, kernel, gy, strides, padding, dilation, need_x, need_w, need_b)
    want_x, want_k, want_b = ref["conv_vjp"](x, kernel, gy, strides, padding, dilation, need_x, need_b)
    # float64 reference too: the C result must be as close to it as NumPy's float32 one is
    want64 = ref["conv_vjp"](x.astype(np.float64), kernel.astype(np.float64), gy.astype(np.float64), strides,
                             padding, dilation, need_x, need_b)
    for got, want, exact in [(gx, want_x, want64[0]), (gk, want_k, want64[1]), (gb, want_b, want64[2])]:
        if got is None:
            continue
        assert got.shape == want.shape
        close(got, want, rtol=1e-5, atol_scale=1.0)
        close(got, exact, rtol=1e-5, atol_scale=1.0)


def test_conv_backward_finite_differences(lib, ref):
    """<grad, v> against the central difference of sum(w * (conv(x, K) + b)) in float64 along v
    (the objective is bilinear in (x, K): the difference is exact up to rounding)."""
    for spatial, window, strides, dilation, padding in [((21,), (4,), (1,), (2,), "causal"),
                                                        ((11, 9), (3, 2), (2, 1), (1, 2), "same")]:
        rng = np.random.default_rng(7)
        x = rand(rng, (2, *spatial, 3))
        kernel = rand(rng, (*window, 3, 5), 0.5)
        bias = rand(rng, (5,))
        w = ref["conv"](x.astype(np.float64), kernel.astype(np.float64), strides, padding, dilation, "c")
        w = rng.standard_normal(w.shape)
        vx, vk, vb = (rng.standard_normal(a.shape) for a in (x, kernel, bias))

        def objective(h):
            x64, k64 = x + h * vx, kernel + h * vk
            return float(np.sum(w * (ref["conv"](x64, k64, strides, padding, dilation, "c") + (bias + h * vb))))

        h = 1e-3
        fd = (objective(h) - objective(-h)) / (2 * h)
        gx, gk, gb = run_conv_backward(lib, ref, x, kernel, w.astype(np.float32), strides, padding, dilation)
        got = float(np.sum(gx * vx) + np.sum(gk * vk) + np.sum(gb * vb))
        assert abs(got - fd) <= 1e-5 * (abs(fd) + np.sqrt(x.size + kernel.size))


# ---- LSTM --------------------------------------------------------------------------------------

def lstm_weights(rng, in_dim, units, with_bias):
    kernel = rand(rng, (in_dim, 4 * units), 0.5)
    recurrent = rand(rng, (units, 4 * units), 0.3)
    bias = rand(rng, (4 * units,), 0.5) if with_bias else None
    return kernel, recurrent, bias


def run_lstm_train(lib, x, kernel, recurrent, bias, act, rec, go_backwards):
    """(y_seq, h, c, cache) from gk_lstm_train (exactly sized cache and scratch, canaries checked)."""
    batch, steps, in_dim = x.shape
    units = recurrent.shape[0]
    y_seq, seq_buf = out_buffer((batch, steps, units))
    h, h_buf = out_buffer((batch, units))
    c, c_buf = out_buffer((batch, units))
    cache, nc = scratch_buffer(lib.gk_lstm_cache_size(batch, steps, in_dim, units))
    scratch, ns = scratch_buffer(lib.gk_lstm_train_scratch(batch, steps, in_dim, units))
    lib.gk_lstm_train(ptr(x), ptr(kernel), ptr(recurrent), ptr(bias), ptr(y_seq), ptr(h), ptr(c), batch, steps,
                      in_dim, units, ACT[act], ACT[rec], int(go_backwards), ptr(cache), ptr(scratch))
    for buf, n in [(cache, nc), (scratch, ns), (seq_buf, y_seq.size), (h_buf, h.size), (c_buf, c.size)]:
        check_guard(buf, n)
    return y_seq, h, c, cache


def run_lstm_backward(lib, x, kernel, recurrent, cache, act, rec, go_backwards, return_sequences, g_y, g_h, g_c,
                      need_x=True, need_params=("kernel", "recurrent_kernel", "bias")):
    batch, steps, in_dim = x.shape
    units = recurrent.shape[0]
    outs = {}
    shapes = {"x": x.shape, "kernel": kernel.shape, "recurrent_kernel": recurrent.shape, "bias": (4 * units,)}
    for name in (["x"] if need_x else []) + list(need_params):
        outs[name] = out_buffer(shapes[name])
    scratch, ns = scratch_buffer(lib.gk_lstm_backward_scratch(batch, steps, in_dim, units))
    get = lambda name: ptr(outs[name][0]) if name in outs else None  # noqa: E731
    lib.gk_lstm_backward(ptr(x), ptr(kernel), ptr(recurrent), ptr(cache), ptr(g_y), int(return_sequences), ptr(g_h),
                         ptr(g_c), get("x"), get("kernel"), get("recurrent_kernel"), get("bias"), batch, steps,
                         in_dim, units, ACT[act], ACT[rec], int(go_backwards), ptr(scratch))
    check_guard(scratch, ns)
    for view, buf in outs.values():
        check_guard(buf, view.size)
    return tuple(outs[k][0] if k in outs else None for k in ("x", "kernel", "recurrent_kernel", "bias"))


def run_lstm(lib, x, kernel, recurrent, bias, act, rec, go_backwards):
    batch, steps, in_dim = x.shape
    units = recurrent.shape[0]
    y_seq = np.empty((batch, steps, units), np.float32)
    h, c = np.empty((batch, units), np.float32), np.empty((batch, units), np.float32)
    scratch = np.empty(batch * steps * 4 * units + 2 * batch * units + 1, np.float32)
    lib.gk_lstm(ptr(x), ptr(kernel), ptr(recurrent), ptr(bias), ptr(y_seq), ptr(h), ptr(c), batch, steps, in_dim,
                units, ACT[act], ACT[rec], int(go_backwards), ptr(scratch))
    return y_seq, h, c


LSTM_CASES = [  # batch, steps, in_dim, units, activation, recurrent_activation
    (2, 5, 3, 4, "tanh", "sigmoid"),
    (3, 7, 6, 13, "tanh", "sigmoid"),
    (3, 4, 5, 9, "relu", "hard_sigmoid"),
    (2, 5, 4, 7, "relu", "sigmoid"),
    (2, 4, 3, 5, "tanh", "hard_sigmoid"),
    (4, 6, 9, 8, "sigmoid", "tanh"),
    (2, 3, 4, 5, "tanh", "softmax"),
    (2, 4, 3, 6, "hard_sigmoid", "relu"),
    (1, 1, 2, 3, "tanh", "sigmoid"),
]
GRADS = {  # return_sequences, which gradients flow: output, h, c
    "seq": (True, True, False, False),
    "seq_h_c": (True, True, True, True),
    "last": (False, True, False, False),
    "last_c": (False, True, False, True),
    "states": (True, False, True, True),
    "c_only": (False, False, False, True),
}


@pytest.mark.parametrize("batch, steps, in_dim, units, act, rec", LSTM_CASES)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("with_bias", [True, False])
def test_lstm_train_forward(lib, ref, batch, steps, in_dim, units, act, rec, go_backwards, with_bias):
    rng = np.random.default_rng(batch * 100 + steps * 10 + units)
    x = rand(rng, (batch, steps, in_dim))
    kernel, recurrent, bias = lstm_weights(rng, in_dim, units, with_bias)
    y_seq, h, c, _ = run_lstm_train(lib, x, kernel, recurrent, bias, act, rec, go_backwards)
    want_seq, want_h, want_c = run_lstm(lib, x, kernel, recurrent, bias, act, rec, go_backwards)
    assert np.array_equal(y_seq, want_seq) and np.array_equal(h, want_h) and np.array_equal(c, want_c)
    seq_np, h_np, c_np, _ = ref["lstm_train"](x, kernel, recurrent, bias, act, rec, True, go_backwards)
    for got, want in [(y_seq, seq_np), (h, h_np), (c, c_np)]:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def lstm_case(lib, ref, batch, steps, in_dim, units, act, rec, go_backwards, with_bias, grads, need_x=True,
              seed=0, rtol=1e-4, scale=1.0):
    rng = np.random.default_rng(seed + batch * 1000 + steps * 100 + units)
    x = rand(rng, (batch, steps, in_dim), scale)
    kernel, recurrent, bias = (None if w is None else w * np.float32(scale)
                               for w in lstm_weights(rng, in_dim, units, with_bias))
    return_sequences, has_y, has_h, has_c = GRADS[grads]
    g_y = rand(rng, (batch, steps, units) if return_sequences else (batch, units)) if has_y else None
    g_h = rand(rng, (batch, units)) if has_h else None
    g_c = rand(rng, (batch, units)) if has_c else None
    _, _, _, cache = run_lstm_train(lib, x, kernel, recurrent, bias, act, rec, go_backwards)
    params = ("kernel", "recurrent_kernel") + (("bias",) if with_bias else ())
    got = run_lstm_backward(lib, x, kernel, recurrent, cache, act, rec, go_backwards, return_sequences, g_y, g_h,
                            g_c, need_x, params)
    for dtype in (np.float32, np.float64):
        cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
        *_, rcache = ref["lstm_train"](cast(x), cast(kernel), cast(recurrent), cast(bias), act, rec,
                                       return_sequences, go_backwards)
        want = ref["lstm_vjp"](rcache, cast(kernel), cast(recurrent), cast(g_y), cast(g_h), cast(g_c), need_x,
                               with_bias)
        for name, g, w in zip(("x", "kernel", "recurrent", "bias"), got, want):
            assert (g is None) == (w is None), name
            if g is not None:
                assert g.shape == w.shape and np.isfinite(g).all(), name
                close(g, w, rtol=rtol, atol_scale=1.0)


@pytest.mark.parametrize("batch, steps, in_dim, units, act, rec", LSTM_CASES)
@pytest.mark.parametrize("grads", list(GRADS))
def test_lstm_backward(lib, ref, batch, steps, in_dim, units, act, rec, grads):
    key = zlib.crc32(repr((batch, act, rec, grads)).encode())
    go_backwards, with_bias = key % 2 == 0, key % 3 != 0
    lstm_case(lib, ref, batch, steps, in_dim, units, act, rec, go_backwards, with_bias, grads,
              need_x=grads != "last_c")


@pytest.mark.parametrize("act", sorted(ACT))
def test_lstm_backward_every_activation(lib, ref, act):
    """Each activation as the cell activation and as the recurrent one (with a common partner)."""
    scale = 0.2 if act == "exponential" else 0.7  # exp(c) of exp(z): keep it finite
    lstm_case(lib, ref, 2, 4, 3, 5, act, "sigmoid", False, True, "seq_h_c", seed=1, scale=scale)
    lstm_case(lib, ref, 2, 4, 3, 5, "tanh", act, True, True, "seq_h_c", seed=2, scale=scale)


def test_lstm_backward_long_sequence(lib, ref):
    lstm_case(lib, ref, 3, 100, 5, 8, "tanh", "sigmoid", True, True, "seq_h_c", rtol=1e-4)


def test_lstm_zero_steps(lib):
    x = np.empty((2, 0, 3), np.float32)
    kernel, recurrent, bias = lstm_weights(np.random.default_rng(0), 3, 4, True)
    _, h, c, cache = run_lstm_train(lib, x, kernel, recurrent, bias, "tanh", "sigmoid", False)
    assert not h.any() and not c.any()
    g = run_lstm_backward(lib, x, kernel, recurrent, cache, "tanh", "sigmoid", False, False,
                          np.ones((2, 4), np.float32), None, None)
    assert g[0].shape == (2, 0, 3) and not g[1].any() and not g[2].any() and not g[3].any()


def test_lstm_backward_finite_differences(lib, ref):
    """<grad, v> against the central difference, in float64, of the NumPy forward's
    sum(w_y * output) + sum(w_h * h) + sum(w_c * c) along a random direction v."""
    rng = np.random.default_rng(11)
    batch, steps, in_dim, units = 3, 6, 4, 5
    x = rand(rng, (batch, steps, in_dim))
    kernel, recurrent, bias = lstm_weights(rng, in_dim, units, True)
    w_y, w_h, w_c = rng.standard_normal((batch, steps, units)), rng.standard_normal((batch, units)), \
        rng.standard_normal((batch, units))
    v = [rng.standard_normal(a.shape) for a in (x, kernel, recurrent, bias)]
    for act, rec, back in [("tanh", "sigmoid", True), ("elu", "hard_sigmoid", False)]:
        def objective(h):
            args = [a.astype(np.float64) + h * d for a, d in zip((x, kernel, recurrent, bias), v)]
            out, hh, cc, _ = ref["lstm_train"](*args, act, rec, True, back)
            return float(np.sum(w_y * out) + np.sum(w_h * hh) + np.sum(w_c * cc))

        eps = 1e-4
        fd = (objective(eps) - objective(-eps)) / (2 * eps)
        _, _, _, cache = run_lstm_train(lib, x, kernel, recurrent, bias, act, rec, back)
        grads = run_lstm_backward(lib, x, kernel, recurrent, cache, act, rec, back, True, w_y.astype(np.float32),
                                  w_h.astype(np.float32), w_c.astype(np.float32))
        got = sum(float(np.sum(g * d)) for g, d in zip(grads, v))
        assert abs(got - fd) <= 1e-4 * abs(fd) + 1e-5, (act, rec, got, fd)


# ---- OpenMP: bit-identical results -------------------------------------------------------------

def _omp_threads(n):
    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(n)
    except OSError:  # another OpenMP runtime: its default thread count only
        pass


@pytest.mark.parametrize("threads", [2, 3])
def test_openmp_build_gives_identical_results(libs, ref, threads):
    """Bit for bit the serial build's results, with 2 and 3 threads (uneven slices of the batch)."""
    omp, serial = libs["omp"], libs["dispatch"]
    if omp is None:
        pytest.skip("no OpenMP")
    _omp_threads(threads)
    rng = np.random.default_rng(5)
    for spatial, window, strides, dilation, padding, c, f in [((300,), (5,), (1,), (1,), "valid", 24, 40),
                                                              ((300,), (5,), (1,), (1,), "valid", 40, 24),
                                                              ((301,), (3,), (1,), (1,), "same", 16, 24),
                                                              ((150,), (3,), (2,), (2,), "same", 8, 40),
                                                              ((40, 33), (3, 3), (1, 1), (1, 1), "same", 8, 16)]:
        x = rand(rng, (8, *spatial, c))
        kernel = rand(rng, (*window, c, f), 0.3)
        gy = rand(rng, ref["conv"](x, kernel, strides, padding, dilation, "c").shape)
        a = run_conv_backward(serial, ref, x, kernel, gy, strides, padding, dilation)
        b = run_conv_backward(omp, ref, x, kernel, gy, strides, padding, dilation)
        for u, w in zip(a, b):
            assert np.array_equal(u, w)
    for batch, act, rec in [(131, "tanh", "sigmoid"), (70, "relu", "hard_sigmoid")]:
        x = rand(rng, (batch, 6, 20))
        kernel, recurrent, bias = lstm_weights(rng, 20, 300, True)
        g_y = rand(rng, (batch, 6, 300))
        results = []
        for library in (serial, omp):
            fwd = run_lstm_train(library, x, kernel, recurrent, bias, act, rec, True)
            results.append(fwd[:3] + run_lstm_backward(library, x, kernel, recurrent, fwd[3], act, rec, True, True,
                                                       g_y, None, None))
        for u, w in zip(*results):
            assert np.array_equal(u, w)


# ---- templates ---------------------------------------------------------------------------------

HARNESS = """#include <string.h>
#include "gcomp_backward_seq.h"

struct model { float *scratch; };

int conv_vjp(struct model *m, const float *fx0, const float *fy0, const float *W, const float *gy0, float *gx0,
             float *gW, float *gB, long N_batch, long L_len) {
    (void)fy0;
{conv}
    return 0;
}

int conv2_vjp(struct model *m, const float *fx0, const float *W, const float *gy0, float *gx0, long N_batch,
              long L_len, long H_out, long W_out) {
    (void)fx0;
{conv2}
    return 0;
}

int lstm_fwd(struct model *m, const float *x0, const float *K, const float *R, const float *B, float *y0,
             float *y1, float *y2, float *y3, long N_batch, long L_len) {
{lstm_fwd}
    return 0;
}

int lstm_vjp(struct model *m, const float *x0, const float *K, const float *R, const float *y0, const float *y1,
             const float *y2, float *y3, const float *g0, const float *g2, float *gx0, float *gK, float *gR,
             float *gB, long N_batch, long L_len) {
    (void)y0; (void)y1; (void)y2;
{lstm_vjp}
    return 0;
}
"""


def _indent(code):
    return "\n".join("    " + line for line in code.rstrip("\n").splitlines())


def test_templates_render_compile_and_run(libs, ref, tmp_path):
    from gcomp.backends.c_backend import _env, _pads
    env = _env()
    conv_a = {"rank": 1, "kernel_size": (3,), "strides": (1,), "dilation_rate": (2,), "padding": "causal",
              "filters": 5, "use_bias": True, "activation": "linear", "op": "conv", "n_inputs": 1,
              "need_inputs": (True,), "need_params": ("kernel", "bias"), "param_roles": ("kernel", "bias"),
              "has_grad": (True,)}
    xd = ["N_batch", "L_len", "4L"]
    conv = env.get_template("c/vjp/conv.c.j2").render(
        a=conv_a, fx=["fx0"], fxd=[xd], fx_dtype=["float32"], fy=["fy0"], fyd=[["N_batch", "L_len", "5L"]],
        gy=["gy0"], gx=["gx0"], gp={"kernel": "gW", "bias": "gB"}, p={"kernel": "W", "bias": "B"},
        pads=_pads(conv_a, xd[1:-1]))
    lstm_a = {"units": 5, "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
              "return_sequences": False, "go_backwards": True, "return_state": True}
    lxd = [["N_batch", "L_len", "6L"]]
    lp = {"kernel": "K", "recurrent_kernel": "R", "bias": "B"}
    ys = ["y0", "y1", "y2", "y3"]
    yd = [["N_batch", "5L"], ["N_batch", "5L"], ["N_batch", "5L"], ["1L"]]
    fwd = env.get_template("c/ops/lstm_train.c.j2").render(
        x=["x0"], xd=lxd, x_dtype=["float32"], y=ys, yd=yd, p=lp, a=lstm_a, op="lstm_train", layer="l", node="n")
    vjp_a = {**lstm_a, "op": "lstm_train", "n_inputs": 1, "need_inputs": (True,),
             "need_params": ("kernel", "recurrent_kernel", "bias"), "param_roles": ("kernel", "recurrent_kernel", "bias"),
             "has_grad": (True, False, True, False)}
    vjp = env.get_template("c/vjp/lstm_train.c.j2").render(
        a=vjp_a, fx=["x0"], fxd=lxd, fx_dtype=["float32"], fy=ys, fyd=yd, gy=["g0", None, "g2", None], gx=["gx0"],
        gp={"kernel": "gK", "recurrent_kernel": "gR", "bias": "gB"}, p=lp)
    # rank 2 with frozen weights, and with no gradient flowing (compiled only)
    conv2_a = {**conv_a, "rank": 2, "kernel_size": (3, 2), "strides": (2, 1), "dilation_rate": (1, 1),
               "padding": "same", "need_params": ()}
    c2xd = ["N_batch", "L_len", "L_len", "4L"]
    conv2 = "".join(env.get_template("c/vjp/conv.c.j2").render(
        a=conv2_a, fx=["fx0"], fxd=[c2xd], fx_dtype=["float32"], fy=["fy0"], fyd=[["N_batch", "H_out", "W_out", "5L"]],
        gy=[g], gx=["gx0"], gp={}, p={"kernel": "W"}, pads=_pads(conv2_a, c2xd[1:-1])) for g in ("gy0", None))
    assert "gk_conv_backward(NULL, W, gy0, gx0, NULL, NULL" in conv2 and "memset(gx0, 0" in conv2
    source = HARNESS.replace("{conv}", _indent(conv)).replace("{lstm_fwd}", _indent(fwd)) \
        .replace("{lstm_vjp}", _indent(vjp)).replace("{conv2}", _indent(conv2))
    (tmp_path / "harness.c").write_text(source)
    so = tmp_path / "libharness.so"
    cmd = [CC, "-std=c99", "-O1", "-fPIC", "-shared", *WARNINGS, "-I", str(C_DIR), str(tmp_path / "harness.c"),
           *libs["dispatch"].objects, "-o", str(so), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{source}\n{proc.stderr}"
    h = _bind(ctypes.CDLL(str(so)))

    class Model(ctypes.Structure):
        _fields_ = [("scratch", ctypes.c_void_p)]

    rng = np.random.default_rng(3)
    batch, length = 3, 13
    # conv: causal, dilation 2
    x = rand(rng, (batch, length, 4))
    kernel, bias = rand(rng, (3, 4, 5), 0.5), rand(rng, (5,))
    gy = rand(rng, (batch, length, 5))
    scratch = np.zeros(h.gk_conv_backward_scratch(batch, as2([length], 1), 4, as2([3], 1), 5, as2([length], 1)),
                       np.float32)
    model = Model(ptr(scratch))
    gx, gw, gb = np.empty_like(x), np.empty_like(kernel), np.empty_like(bias)
    h.conv_vjp.argtypes = [ctypes.POINTER(Model)] + [P] * 7 + [L, L]
    assert h.conv_vjp(ctypes.byref(model), ptr(x), None, ptr(kernel), ptr(gy), ptr(gx), ptr(gw), ptr(gb), batch,
                      length) == 0
    want = ref["conv_vjp"](x, kernel, gy, (1,), "causal", (2,), True, True)
    for got, w in zip((gx, gw, gb), want):
        close(got, w, rtol=1e-5, atol_scale=1.0)
    # LSTM: forward (return_sequences=False, go_backwards) then backward with output and c gradients
    x = rand(rng, (batch, length, 6))
    k, r, b = lstm_weights(rng, 6, 5, True)
    size = max(h.gk_lstm_train_scratch(batch, length, 6, 5), h.gk_lstm_backward_scratch(batch, length, 6, 5))
    scratch = np.zeros(size, np.float32)
    model = Model(ptr(scratch))
    y0, y1, y2 = (np.empty((batch, 5), np.float32) for _ in range(3))
    cache = np.empty(h.gk_lstm_cache_size(batch, length, 6, 5), np.float32)
    h.lstm_fwd.argtypes = [ctypes.POINTER(Model)] + [P] * 8 + [L, L]
    assert h.lstm_fwd(ctypes.byref(model), ptr(x), ptr(k), ptr(r), ptr(b), ptr(y0), ptr(y1), ptr(y2), ptr(cache),
                      batch, length) == 0
    out, hh, cc, rcache = ref["lstm_train"](x, k, r, b, "tanh", "sigmoid", False, True)
    for got, w in [(y0, out), (y1, hh), (y2, cc)]:
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-5)
    g0, g2 = rand(rng, (batch, 5)), rand(rng, (batch, 5))
    gx, gk, gr, gb = np.empty_like(x), np.empty_like(k), np.empty_like(r), np.empty_like(b)
    h.lstm_vjp.argtypes = [ctypes.POINTER(Model)] + [P] * 13 + [L, L]
    assert h.lstm_vjp(ctypes.byref(model), ptr(x), ptr(k), ptr(r), ptr(y0), ptr(y1), ptr(y2), ptr(cache), ptr(g0),
                      ptr(g2), ptr(gx), ptr(gk), ptr(gr), ptr(gb), batch, length) == 0
    want = ref["lstm_vjp"](rcache, k, r, g0, None, g2, True, True)
    for got, w in zip((gx, gk, gr, gb), want):
        close(got, w, rtol=1e-4, atol_scale=1.0)
