"""Compiling the generated C (cached by content hash) and running it through ctypes."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from gcomp.backends.c_backend import CBackendError, c_prefix, render_c
from gcomp.errors import EmbeddingIndexError, GcompError, InputDataError
from gcomp.backends.c_dims import largest
from gcomp.ir.graph import Graph, ValueRef

DEFAULT_CFLAGS = ("-O3", "-std=c99")
# gc_status codes: 2 shape, 3 batch or length, 4 embedding index, 5 weights file
_STATUS_ERRORS = {2: InputDataError, 3: InputDataError, 4: EmbeddingIndexError}


class gc_tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("shape", ctypes.c_int64 * 8), ("ndim", ctypes.c_int),
                ("capacity", ctypes.c_int64)]


def compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise CBackendError("the C backend needs a C compiler (cc or gcc, or set CC)")
    return cc


@functools.cache
def _accepts(cc: str, flag: str, source: str) -> bool:
    """Whether ``cc`` compiles and links ``source`` with ``flag`` (probed once per process)."""
    with tempfile.TemporaryDirectory(prefix="gcomp-probe-") as folder:
        probe = Path(folder) / "probe.c"
        probe.write_text(source)
        return subprocess.run([cc, flag, str(probe), "-o", str(probe.with_suffix(".out"))],
                              capture_output=True).returncode == 0


def _openmp_flags(cc: str) -> tuple[str, ...]:
    """-fopenmp if this compiler can use it (both cores for GEMMs), else nothing."""
    ok = _accepts(cc, "-fopenmp", "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
    return ("-fopenmp",) if ok else ()


def _native_flags(cc: str) -> tuple[str, ...]:
    """-march=native where the compiler has it: predict() compiles for the machine it runs on, and
    the elementwise kernels (activations, LSTM gates) then use the widest vectors (the GEMM picks
    its AVX2/AVX-512 version at run time either way)."""
    return ("-march=native",) if _accepts(cc, "-march=native", "int main(void) { return 0; }\n") else ()


def cache_dir() -> Path:
    root = os.environ.get("GCOMP_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "gcomp-cache")
    return Path(root) / "c"


def build_library(sources: dict[str, str], prefix: str, cflags: tuple[str, ...] | None = None) -> Path:
    """lib<prefix>.so from the sources, compiled once per content (and flags)."""
    cc = compiler()
    flags = tuple(cflags) if cflags is not None else DEFAULT_CFLAGS + _native_flags(cc) + _openmp_flags(cc)
    digest = hashlib.sha256(repr((sorted(sources.items()), cc, flags)).encode()).hexdigest()[:16]
    folder = cache_dir() / digest
    library = folder / f"lib{prefix}.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in sources.items():
        (folder / name).write_text(text)
    tmp = folder / f".lib{prefix}.{os.getpid()}.so"
    run = subprocess.run([cc, *flags, "-fPIC", "-shared", "-o", str(tmp), f"{prefix}.c", "gcomp_kernels.c", "-lm"],
                         cwd=folder, capture_output=True, text=True)
    if run.returncode:
        raise CBackendError(f"compiling the generated C failed:\n{run.stderr.strip()[:2000]}")
    os.replace(tmp, library)
    return library


class CProgram:
    """A compiled model: forward(list of arrays) -> list of arrays, through ctypes."""

    def __init__(self, graph: Graph, max_batch: int, max_len: int, cflags: tuple[str, ...] | None = None):
        self.graph = graph
        self.prefix = c_prefix(graph.name)
        self.max_batch, self.max_len = max_batch, max_len
        sources = render_c(graph, max_batch, max_len)
        self._lib = ctypes.CDLL(str(build_library(sources, self.prefix, cflags)))
        lib, p = self._lib, self.prefix
        getattr(lib, f"{p}_create").restype = ctypes.c_void_p
        getattr(lib, f"{p}_error").restype = ctypes.c_char_p
        for fn in ("free", "error", "set_weights", "forward"):
            getattr(lib, f"{p}_{fn}").argtypes = {
                "free": [ctypes.c_void_p], "error": [ctypes.c_void_p],
                "set_weights": [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_long],
                "forward": [ctypes.c_void_p, ctypes.POINTER(gc_tensor), ctypes.POINTER(gc_tensor)]}[fn]
        self._model = getattr(lib, f"{p}_create")()
        if not self._model:
            raise MemoryError("the C model could not allocate its buffers")
        maxima = {}
        for name in graph.inputs:
            for axis, d in enumerate(graph.value_type(ValueRef(name)).shape):
                if not isinstance(d, int):
                    maxima[d] = max_batch if axis == 0 else max_len
        self._out_sizes = [max(int(np.prod([largest(d, maxima) for d in graph.value_type(ref).shape])), 1)
                           for _, ref in graph.outputs]

    def set_weights(self, params: dict[str, np.ndarray]) -> None:
        flat = np.concatenate([np.asarray(params[p], np.float32).ravel() for p in self.graph.nodes("param")]
                              or [np.zeros(0, np.float32)])
        self._check(getattr(self._lib, f"{self.prefix}_set_weights")(
            self._model, flat.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), flat.size))

    def _check(self, status: int) -> None:
        if status:
            message = getattr(self._lib, f"{self.prefix}_error")(self._model).decode()
            raise _STATUS_ERRORS.get(status, GcompError)(message)

    def forward(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        arrays = [np.ascontiguousarray(a) for a in arrays]
        ins = (gc_tensor * max(len(arrays), 1))()
        for t, a in zip(ins, arrays):
            t.data = a.ctypes.data
            t.ndim = a.ndim
            for i, d in enumerate(a.shape):
                t.shape[i] = d
        results = []
        outs = (gc_tensor * len(self._out_sizes))()
        for t, size in zip(outs, self._out_sizes):
            buffer = np.empty(size, np.float32)
            results.append(buffer)
            t.data = buffer.ctypes.data
            t.capacity = buffer.size
        self._check(getattr(self._lib, f"{self.prefix}_forward")(self._model, ins, outs))
        return [buf[:int(np.prod(t.shape[:t.ndim]))].reshape(tuple(t.shape[:t.ndim])).copy()
                for buf, t in zip(results, outs)]

    def __del__(self):
        model = getattr(self, "_model", None)
        if model:
            getattr(self._lib, f"{self.prefix}_free")(model)
