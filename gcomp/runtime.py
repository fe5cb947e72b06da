"""Deployment helper: run an exported ONNX file with onnxruntime, on the GPU when one really works.

    from gcomp import runtime
    session = runtime.load("model.onnx")        # CUDA if usable, else CPU; session.provider says which
    probs = session.run({"text": text, "question": question})

Inputs are checked against the file's signature (names, ranks, fixed dims, dtypes, equal batch
sizes) before onnxruntime sees them, so mistakes get messages that name the input.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gcomp.errors import GcompError
from gcomp.frontend.data import InputSpec, check_inputs

_ONNX_TO_NUMPY = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
                  "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
                  "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
                  "tensor(uint32)": "uint32", "tensor(uint64)": "uint64", "tensor(bool)": "bool"}


class ModelLoadError(GcompError, ValueError):
    """A file could not be loaded as an ONNX model (missing, truncated, or not ONNX)."""


class RunError(GcompError, RuntimeError):
    """onnxruntime failed while running a model (its message names its nodes)."""


def quiet_run_options():
    """Run options that keep onnxruntime from logging failures to stderr: gcomp raises them instead."""
    options = _ort().RunOptions()
    options.log_severity_level = 4
    return options


def _ort():
    import onnxruntime
    return onnxruntime


def session_options(allow_spinning: bool = True, threads: int | None = None):
    """onnxruntime session options. Spinning idle threads cut latency on an idle machine but steal
    CPU from other processes; pass allow_spinning=False when sharing cores."""
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if not allow_spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        so.intra_op_num_threads = threads
    return so


def _make_session(source: bytes | str, options, device: str):
    """A session on CUDA if asked for (or 'auto') and it truly runs there, else on the CPU.

    onnxruntime-gpu lists CUDA even without CUDA libraries and then logs a loud error before falling
    back; the probe runs with logging silenced and checks which provider the session really got."""
    ort = _ort()
    cpu = ["CPUExecutionProvider"]
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        ort.set_default_logger_severity(4)
        try:
            session = ort.InferenceSession(source, options, providers=["CUDAExecutionProvider"] + cpu)
        except Exception:
            session = None
        finally:
            ort.set_default_logger_severity(2)
        if session is not None and session.get_providers()[0] == "CUDAExecutionProvider":
            return session
    if device == "cuda":
        raise GcompError("device='cuda' was asked for, but onnxruntime cannot run on CUDA here")
    return ort.InferenceSession(source, options, providers=cpu)


_CUDA_WORKS: bool | None = None


def cuda_works() -> bool:
    """Whether onnxruntime can really run a model on CUDA here (probed once, silently)."""
    global _CUDA_WORKS
    if _CUDA_WORKS is None:
        import onnx
        from onnx import TensorProto, helper
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        session = _make_session(model.SerializeToString(), session_options(), "auto")
        _CUDA_WORKS = session.get_providers()[0] == "CUDAExecutionProvider"
        del onnx
    return _CUDA_WORKS


class Session:
    """A loaded ONNX model: `run(x)` with arrays, a list in input order, or a dict by input name."""

    def __init__(self, source: bytes | str, name: str, device: str = "auto", allow_spinning: bool = True,
                 threads: int | None = None):
        if device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
        self.name = name
        self._session = _make_session(source, session_options(allow_spinning, threads), device)
        self.inputs = self._session.get_inputs()
        self.outputs = self._session.get_outputs()

    @property
    def provider(self) -> str:
        """The execution provider that runs the model: CUDAExecutionProvider or CPUExecutionProvider."""
        return self._session.get_providers()[0]

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    def _feeds(self, x: Any) -> dict[str, np.ndarray]:
        specs = [InputSpec(i.name, tuple(d if isinstance(d, int) else None for d in i.shape),
                           _ONNX_TO_NUMPY.get(i.type, "float32")) for i in self.inputs]
        return dict(zip(self.input_names, check_inputs(self.name, specs, x)))

    def run(self, x: Any, as_dict: bool = False):
        """Outputs for the inputs ``x``: one array, a list in output order, or a dict if as_dict."""
        feeds = self._feeds(x)
        try:
            outs = self._session.run(None, feeds, quiet_run_options())
        except Exception as e:
            raise RunError(f"{self.name}: onnxruntime failed: {str(e).splitlines()[0]}") from None
        if as_dict:
            return dict(zip(self.output_names, outs))
        return outs[0] if len(outs) == 1 else outs

    __call__ = run


def load(path: str | Path, device: str = "auto", allow_spinning: bool = True, threads: int | None = None) -> Session:
    """Load an ONNX file for inference. device: 'auto' (CUDA when it really works, else CPU),
    'cuda' or 'cpu'. A missing, truncated or foreign file raises ModelLoadError naming it."""
    path = Path(path)
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a folder, not an ONNX file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no such file") from None
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read it: {e.strerror or e}") from None
    import onnx
    try:
        proto = onnx.load_from_string(data)
        if not proto.graph.node and not proto.graph.output:
            raise ValueError("no graph in it")
    except Exception as e:
        raise ModelLoadError(f"{path}: not a valid ONNX model ({type(e).__name__}: {e})") from None
    try:
        return Session(data, str(path), device, allow_spinning, threads)
    except GcompError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{path}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from None


def from_bytes(data: bytes, name: str = "model", **kwargs: Any) -> Session:
    """A session for an ONNX model held in memory."""
    return Session(data, name, **kwargs)

