"""Finds the Jinja templates (top-level templates/ in a checkout, gcomp/_templates in a wheel)."""
from __future__ import annotations

import functools
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
def runtime_file(*names: str) -> ModuleType:
    """templates/numpy/<name>.py, or several run in order into one module (as a generated program
    holds them), as an importable module: gcomp uses the same code it generates."""
    module = ModuleType(f"gcomp._numpy_{'_'.join(names)}")
    for name in names:
        path = template_dir() / "numpy" / f"{name}.py"
        module.__file__ = str(path)
        exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module


def numpy_runtime() -> ModuleType:
    """templates/numpy/prelude.py: the forward kernels and activations."""
    return runtime_file("prelude")
