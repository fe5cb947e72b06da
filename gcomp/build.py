"""build(): compile a model (or a model file) to a file, as `gcomp build` does."""
from __future__ import annotations

from pathlib import Path

from gcomp.fileio import write_atomic
from gcomp.frontend.model import Model

FORMATS = ("onnx",)


def build(source: Model | str | Path, output: str | Path, *, model_name: str | None = None,
          format: str = "onnx", opt_level: int = 2, device: str = "cuda", report=None) -> Path:
    """Compile ``source`` (a Model, or the path of a model file) and write ``output`` atomically:
    the old file stays intact if anything fails. Returns the path written.

    ``opt_level`` 0-2 and ``device`` ("cuda", the default deployment target, or "cpu") choose the
    passes (gcomp.passes.pipeline); ``report`` (a gcomp.passes.Report) records what they did."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; gcomp builds {', '.join(FORMATS)}")
    if isinstance(source, Model):
        model = source
    else:
        from gcomp.model_file import load_model
        model = load_model(source, model_name)
    return write_atomic(output, model.to_onnx(opt_level, device, report).SerializeToString())
