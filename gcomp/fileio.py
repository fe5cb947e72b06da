"""Atomic file writes: a file gcomp writes is either the old one or the complete new one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gcomp.errors import GcompError


class OutputFileError(GcompError, OSError):
    """An output file could not be written (missing folder, no permission, full disk)."""


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over
    ``path``; on any failure the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputFileError(f"{path}: cannot write: folder {folder} does not exist")
    if path.is_dir():
        raise OutputFileError(f"{path}: cannot write: it is a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise OutputFileError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise OutputFileError(f"{path}: cannot write: {e.strerror or e}") from None
        raise
    return path
