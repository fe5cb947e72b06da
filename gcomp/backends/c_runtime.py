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

from gcomp.backends.c_backend import KERNEL_HEADERS, KERNEL_SOURCES, CBackendError, c_prefix, render_c
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


def _compile(cc: str, flags: tuple[str, ...], folder: Path, args: list[str], target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    run = subprocess.run([cc, *flags, "-fPIC", *args, "-o", str(tmp)], cwd=folder, capture_output=True, text=True)
    if run.returncode:
        raise CBackendError(f"compiling the generated C failed:\n{run.stderr.strip()[:2000]}")
    os.replace(tmp, target)


def _kernel_objects(sources: dict[str, str], cc: str, flags: tuple[str, ...]) -> list[Path]:
    """The kernel libraries compiled once per content and flags, shared by every model's build:
    a model then compiles only its own file."""
    kernels = {name: text for name, text in sources.items()
               if name.split(".")[0] in KERNEL_SOURCES or name in KERNEL_HEADERS}
    digest = hashlib.sha256(repr((sorted(kernels.items()), cc, flags)).encode()).hexdigest()[:16]
    folder = cache_dir() / f"kernels-{digest}"
    objects = [folder / f"{stem}.o" for stem in KERNEL_SOURCES]
    if all(o.exists() for o in objects):
        return objects
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in kernels.items():
        (folder / name).write_text(text)
    for stem, obj in zip(KERNEL_SOURCES, objects):
        if not obj.exists():
            _compile(cc, flags, folder, ["-c", f"{stem}.c"], obj)
    return objects


def _quiet_openmp() -> None:
    """Idle OpenMP threads sleep instead of spinning (unless the user chose): on a machine shared
    with other processes (onnxruntime, NumPy's BLAS, a test runner) spinning threads cost
    milliseconds per parallel region. Set before the first library loads libgomp, which reads it once."""
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def build_library(sources: dict[str, str], prefix: str, cflags: tuple[str, ...] | None = None) -> Path:
    """lib<prefix>.so from the sources, compiled once per content (and flags)."""
    cc = compiler()
    flags = tuple(cflags) if cflags is not None else DEFAULT_CFLAGS + _native_flags(cc) + _openmp_flags(cc)
    digest = hashlib.sha256(repr((sorted(sources.items()), cc, flags)).encode()).hexdigest()[:16]
    folder = cache_dir() / digest
    library = folder / f"lib{prefix}.so"
    if library.exists():
        return library
    objects = _kernel_objects(sources, cc, flags)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in sources.items():
        (folder / name).write_text(text)
    _compile(cc, flags, folder, ["-shared", f"{prefix}.c", *map(str, objects), "-lm"], library)
    return library


class CLibrary:
    """A compiled C model through ctypes: each entry point (forward, test_step, train_step) as
    call(name, arrays) -> arrays, and the model's weights as a NumPy view of its own buffer."""

    def __init__(self, sources: dict[str, str], prefix: str, functions: dict[str, Graph], max_batch: int,
                 max_len: int, cflags: tuple[str, ...] | None = None):
        self.prefix = prefix
        self.max_batch, self.max_len = max_batch, max_len
        _quiet_openmp()
        self._lib = lib = ctypes.CDLL(str(build_library(sources, prefix, cflags)))
        self._fn = lambda name: getattr(lib, f"{prefix}_{name}")
        signatures = {"create": (ctypes.c_void_p, []), "free": (None, [ctypes.c_void_p]),
                      "error": (ctypes.c_char_p, [ctypes.c_void_p]),
                      "weights": (ctypes.POINTER(ctypes.c_float), [ctypes.c_void_p]),
                      "use_weights": (None, [ctypes.c_void_p, ctypes.c_void_p])}
        for name in functions:
            signatures[name] = (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(gc_tensor), ctypes.POINTER(gc_tensor)])
        if "train_step" in functions:
            signatures.update({
                "iterations": (ctypes.c_long, [ctypes.c_void_p]),
                "set_iterations": (None, [ctypes.c_void_p, ctypes.c_long]),
                "learning_rate": (ctypes.c_double, [ctypes.c_void_p]),
                "set_learning_rate": (None, [ctypes.c_void_p, ctypes.c_double]),
                "optimizer_slots": (ctypes.POINTER(ctypes.c_float), [ctypes.c_void_p, ctypes.POINTER(ctypes.c_long)]),
                "random_state": (None, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint64)]),
                "set_random_state": (None, [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64])})
        for name, (restype, argtypes) in signatures.items():
            self._fn(name).restype, self._fn(name).argtypes = restype, argtypes
        self._model = self._fn("create")()
        if not self._model:
            raise MemoryError("the C model could not allocate its buffers")
        self._signatures = {name: _signature(graph, max_batch, max_len) for name, graph in functions.items()}
        count = sum(int(np.prod(v.shape)) for v in next(iter(functions.values())).params.values())
        self.weights = np.ctypeslib.as_array(self._fn("weights")(self._model), shape=(max(count, 1),))[:count]

    def use_weights(self, flat: np.ndarray) -> None:
        """Compute with (and train) ``flat`` in place: a float32 C-contiguous array the caller keeps
        alive as long as this library uses it."""
        if flat.dtype != np.float32 or not flat.flags.c_contiguous or flat.size != self.weights.size:
            raise ValueError(f"weights must be a contiguous float32 array of {self.weights.size} values")
        self._fn("use_weights")(self._model, flat.ctypes.data)
        self._external = flat  # kept alive with the library
        self.weights = flat

    def _check(self, status: int) -> None:
        if status:
            message = self._fn("error")(self._model).decode()
            raise _STATUS_ERRORS.get(status, GcompError)(message)

    def call(self, name: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run one entry point; inputs are cast to the dtypes it declares."""
        dtypes, out_sizes = self._signatures[name]
        arrays = [np.ascontiguousarray(a, dtype=dt) for a, dt in zip(arrays, dtypes)]
        ins = (gc_tensor * max(len(arrays), 1))()
        for t, a in zip(ins, arrays):
            t.data = a.ctypes.data
            t.ndim = a.ndim
            for i, d in enumerate(a.shape):
                t.shape[i] = d
        results = []
        outs = (gc_tensor * max(len(out_sizes), 1))()
        for t, size in zip(outs, out_sizes):
            buffer = np.empty(size, np.float32)
            results.append(buffer)
            t.data = buffer.ctypes.data
            t.capacity = buffer.size
        self._check(self._fn(name)(self._model, ins, outs))
        return [buf[:int(np.prod(t.shape[:t.ndim]))].reshape(tuple(t.shape[:t.ndim]))
                for buf, t in zip(results, outs)]

    # ---- training state ------------------------------------------------------------------------
    @property
    def iterations(self) -> int:
        return int(self._fn("iterations")(self._model))

    @iterations.setter
    def iterations(self, value: int) -> None:
        self._fn("set_iterations")(self._model, int(value))

    @property
    def learning_rate(self) -> float:
        return float(self._fn("learning_rate")(self._model))

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._fn("set_learning_rate")(self._model, float(value))

    def optimizer_slots(self) -> np.ndarray:
        """The optimizer's slot variables, a view of the C model's buffer."""
        count = ctypes.c_long(0)
        pointer = self._fn("optimizer_slots")(self._model, ctypes.byref(count))
        return np.ctypeslib.as_array(pointer, shape=(max(count.value, 1),))[:count.value]

    @property
    def random_state(self) -> tuple[int, int]:
        """Dropout's stream: (key, values drawn so far)."""
        key, drawn = ctypes.c_uint64(0), ctypes.c_uint64(0)
        self._fn("random_state")(self._model, ctypes.byref(key), ctypes.byref(drawn))
        return key.value, drawn.value

    @random_state.setter
    def random_state(self, state: tuple[int, int]) -> None:
        self._fn("set_random_state")(self._model, int(state[0]) & (2 ** 64 - 1), int(state[1]) & (2 ** 64 - 1))

    def __del__(self):
        model = getattr(self, "_model", None)
        if model:
            self._fn("free")(model)
            self._model = None


def _signature(graph: Graph, max_batch: int, max_len: int) -> tuple[list[str], list[int]]:
    """An entry point's input dtypes and the largest size of each (float) output."""
    maxima = {}
    for name in graph.inputs:
        for axis, d in enumerate(graph.value_type(ValueRef(name)).shape):
            if not isinstance(d, int):
                maxima[d] = max_batch if axis == 0 else max_len
    dtypes = [graph.value_type(ValueRef(n)).dtype for n in graph.inputs]
    sizes = [max(int(np.prod([largest(d, maxima) for d in graph.value_type(ref).shape])), 1)
             for _, ref in graph.outputs if graph.value_type(ref).dtype != "int64"]
    return dtypes, sizes


class CProgram:
    """A compiled inference model: forward(list of arrays) -> list of arrays."""

    def __init__(self, graph: Graph, max_batch: int, max_len: int, cflags: tuple[str, ...] | None = None):
        self.graph = graph
        self.library = CLibrary(render_c(graph, max_batch, max_len), c_prefix(graph.name), {"forward": graph},
                                max_batch, max_len, cflags)

    def set_weights(self, params: dict[str, np.ndarray]) -> None:
        """Weights in the graph's parameter order (the C program's)."""
        at = 0
        for p in self.graph.nodes("param"):
            value = np.asarray(params[p], np.float32).ravel()
            self.library.weights[at:at + value.size] = value
            at += value.size

    def forward(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.library.call("forward", arrays)
