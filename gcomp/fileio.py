"""Safe files: every file gcomp writes is either the old one or the complete new one, and the
weights files it reads are parsed without unpickling anything or trusting their headers."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from gcomp.errors import GcompError, InputDataError


class OutputFileError(GcompError, OSError):
    """An output file could not be written (missing folder, no permission, full disk)."""


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some systems cannot open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _stage(folder: Path, name: str, data: bytes, mode: int) -> str:
    """``data`` in a new temporary file in ``folder``, flushed to disk; returns its path. The
    temporary file is removed if anything fails (including KeyboardInterrupt)."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        return tmp
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def _mode(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets rw-r--r--."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o644


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over
    ``path``; on any failure (KeyboardInterrupt included) the temporary file is removed and
    ``path`` is untouched."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputFileError(f"{path}: cannot write: folder {folder} does not exist")
    if path.is_dir():
        raise OutputFileError(f"{path}: cannot write: it is a folder")
    tmp = None
    try:
        tmp = _stage(folder, path.name, data, _mode(path))
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(e, OSError):
            raise OutputFileError(f"{path}: cannot write: {e.strerror or e}") from None
        raise
    _fsync_folder(folder)
    return path


@contextlib.contextmanager
def _interrupts_held():
    """Hold Ctrl-C off for a short critical section (main thread only): a SIGINT that arrives
    inside is raised as KeyboardInterrupt when the section ends."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


def write_folder_atomic(folder: str | os.PathLike, files: dict[str, bytes]) -> Path:
    """Write ``files`` (name -> contents) into ``folder`` so that an interrupted or failed write
    leaves the old files intact and no temporary file behind.

    A new folder is built complete under a temporary name beside it, then renamed into place. In an
    existing folder (which may hold the user's own files: a `make` build, data) every file is first
    written in full to a temporary file beside its target; only then are they renamed over the
    targets, one after another with Ctrl-C held off, so an interruption before that point changes
    nothing and a failure while writing removes every temporary file."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFileError(f"{folder}: exists and is not a folder")
    for name in files:
        if not name or os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
            raise ValueError(f"{name!r} is not a plain file name")
    try:
        if not folder.exists():
            return _new_folder(folder, files)
        return _update_folder(folder, files)
    except OSError as e:
        if isinstance(e, OutputFileError):
            raise
        raise OutputFileError(f"{folder}: cannot write: {e.strerror or e}") from None


def _new_folder(folder: Path, files: dict[str, bytes]) -> Path:
    parent = folder.parent if str(folder.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    stage = None
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=parent))
        for name, data in files.items():
            os.replace(_stage(stage, name, data, 0o644), stage / name)
        os.chmod(stage, 0o755)
        os.rename(stage, folder)  # fails if another process made a non-empty folder meanwhile
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    _fsync_folder(parent)
    return folder


def _update_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for name in files:
        if (folder / name).is_dir():
            raise OutputFileError(f"{folder / name}: cannot write: it is a folder")
    staged: list[tuple[str, Path]] = []
    try:
        for name, data in files.items():
            staged.append((_stage(folder, name, data, _mode(folder / name)), folder / name))
        with _interrupts_held():
            while staged:
                tmp, target = staged[0]
                os.replace(tmp, target)
                staged.pop(0)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    _fsync_folder(folder)
    return folder


# ---- reading ------------------------------------------------------------------------------------
def read_npz(path: str | os.PathLike, what: str = "weights file") -> dict:
    """The arrays of an .npz file (name -> array, the ".npy" suffix dropped), read without pickle
    and without trusting the file: every member must be a .npy array of numbers whose header's
    shape matches the bytes it holds. A missing, truncated, corrupted or foreign file raises
    InputDataError naming it."""
    import zipfile
    import zlib
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {}
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not a .npy array")
                key = info.filename[:-4]
                if key in arrays:
                    raise ValueError(f"member {info.filename!r} appears twice")
                with archive.open(info) as member:
                    arrays[key] = _read_npy(member, info.file_size, info.filename)
            return arrays
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error,
            NotImplementedError) as e:
        raise InputDataError(f"{path}: not a readable {what} ({e or type(e).__name__})") from None


def _read_npy(f, size: int, name: str):
    import numpy as np
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f"{name}: unsupported .npy format version {version}")
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biuf":
        raise ValueError(f"{name}: holds {dtype} values, not numbers (object arrays would need pickle)")
    count = 1
    for d in shape:
        count *= int(d)
    nbytes = count * dtype.itemsize
    left = size - f.tell()
    if left != nbytes:
        raise ValueError(f"{name}: its header says {tuple(shape)} {dtype} ({nbytes} bytes) but it holds {left}")
    data = f.read(nbytes)  # the zip member's CRC is checked as its end is read
    if len(data) != nbytes:
        raise ValueError(f"{name}: truncated")
    array = np.frombuffer(data, dtype, count)
    if fortran:
        return array.reshape(tuple(shape)[::-1]).transpose().copy()
    return array.reshape(shape).copy()
