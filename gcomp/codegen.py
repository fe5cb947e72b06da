"""Finds the Jinja templates (top-level templates/ in a checkout, gcomp/_templates in a wheel)."""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

import jinja2

_PACKAGE = Path(__file__).resolve().parent


def template_dir() -> Path:
    for candidate in (_PACKAGE / "_templates", _PACKAGE.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"gcomp's templates are missing (looked in {_PACKAGE / '_templates'} "
                            f"and {_PACKAGE.parent / 'templates'}); reinstall gcomp")


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja environment every backend renders with: strict, and deterministic whitespace."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


@functools.cache
def runtime_file(name: str) -> ModuleType:
    """templates/numpy/<name>.py as an importable module: gcomp uses the same code it generates."""
    path = template_dir() / "numpy" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"gcomp._numpy_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def numpy_runtime() -> ModuleType:
    """templates/numpy/prelude.py: the forward kernels and activations."""
    return runtime_file("prelude")
