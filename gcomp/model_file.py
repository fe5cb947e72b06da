"""Loads a user's model file for the command line: runs it as Python and picks its Model.

A model file is ordinary Python: `gcomp build model.py` executes it (as a module named __gcomp__, so
code under `if __name__ == "__main__":` does not run). Only run model files you trust.
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path

from gcomp.errors import GcompError, ModelFileError
from gcomp.frontend.model import Model


def _line_in(path: Path, tb) -> str:
    for frame in reversed(traceback.extract_tb(tb)):
        if Path(frame.filename).resolve() == path.resolve():
            return f"{frame.lineno}"
    return "?"


_KERAS_MODULES = ("keras", "tensorflow", "tf_keras")


def _is_keras_model(value) -> bool:
    """A model built with Keras itself (the model file still imports keras)."""
    cls = type(value)
    return cls.__module__.split(".")[0] in _KERAS_MODULES and any(
        c.__name__ in ("Model", "Functional", "Sequential") for c in cls.__mro__)


def run_model_file(path: str | Path) -> dict:
    """Execute a model file; return its globals. Failures become one-line ModelFileErrors."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: cannot read: {e}") from None
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as e:
        raise ModelFileError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    namespace = {"__name__": "__gcomp__", "__file__": str(path)}
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        exec(code, namespace)
    except GcompError as e:
        raise ModelFileError(f"{path}:{_line_in(path, e.__traceback__)}: {e}") from None
    except (Exception, SystemExit) as e:
        hint = ""
        if isinstance(e, ImportError) and (e.name or "").split(".")[0] in _KERAS_MODULES:
            hint = f" (a gcomp model file imports from gcomp: replace `{e.name.split('.')[0]}` with `gcomp`)"
        raise ModelFileError(f"{path}:{_line_in(path, e.__traceback__)}: {type(e).__name__}: {e}{hint}") from None
    finally:
        sys.path.remove(str(path.parent.resolve()))
    return namespace


def load_model(path: str | Path, name: str | None = None) -> Model:
    """The model of a model file: the variable ``name`` if given, else ``model``, else the only Model."""
    namespace = run_model_file(path)
    models = {k: v for k, v in namespace.items() if isinstance(v, Model) and not k.startswith("_")}
    if name is not None:
        if not isinstance(namespace.get(name), Model):
            found = ", ".join(sorted(models)) or "none"
            raise ModelFileError(f"{path}: no Model named {name!r} (models defined: {found})")
        return namespace[name]
    if isinstance(namespace.get("model"), Model):
        return namespace["model"]
    distinct = {id(m): k for k, m in models.items()}
    if len(distinct) == 1:
        return models[next(iter(distinct.values()))]
    if not distinct:
        keras_models = sorted(k for k, v in namespace.items() if not k.startswith("_") and _is_keras_model(v))
        if keras_models:
            raise ModelFileError(f"{path}: defines no gcomp Model, only Keras models ({', '.join(keras_models)}): "
                                 f"import Input, Model and layers from gcomp instead of keras")
        raise ModelFileError(f"{path}: defines no Model (assign one to a variable named `model`)")
    raise ModelFileError(f"{path}: defines several models ({', '.join(sorted(models))}); "
                         f"pick one with --model NAME or name it `model`")
