"""Safe files and resources: weights and model files are read without pickle and refused by name
when malformed; every file gcomp writes is written atomically; Ctrl-C stops fit cleanly after the
running step."""
import ctypes
import importlib.util
import inspect
import io
import os
import shutil
import signal
import struct
import threading
import zipfile

import numpy as np
import pytest

import gcomp
from gcomp import Input, Model, callbacks, fileio, layers, runtime
from gcomp.build import build, build_c, build_numpy
from gcomp.errors import InputDataError
from gcomp.fileio import OutputFileError, read_npz, write_atomic, write_folder_atomic
from gcomp.runtime import ModelLoadError

CC = shutil.which("cc") or shutil.which("gcc")


def small_model(name="safe", optimizer="adam"):
    x = Input(shape=(4,), name="x")
    h = layers.Dense(6, activation="tanh", name=f"{name}_h")(x)
    model = Model(x, layers.Dense(3, activation="softmax", name=f"{name}_out")(h), name=name)
    if optimizer is not None:
        model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    return model


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, n)]
    return x, y


def leftovers(folder):
    """Every name in ``folder`` (temporary files start with a dot and end in .tmp)."""
    return sorted(p.name for p in folder.iterdir())


def import_program(folder, name):
    spec = importlib.util.spec_from_file_location(f"gcomp_test_program_{name}", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- malformed .npz weights -----------------------------------------------------------------------
def _npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _lying_header(shape):
    """An .npz whose one member's header claims ``shape`` but holds 16 bytes."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("a.npy", member.getvalue() + b"\0" * 16)
    return buffer.getvalue()


def _with_member(name, content):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(name, content)
    return buffer.getvalue()


def bad_npz_files(good: bytes) -> dict[str, bytes]:
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF  # inside a member's data: the CRC check catches it
    files = {"empty": b"", "text": b"these are not weights\n" * 4, "zip magic only": b"PK\x03\x04" + b"\0" * 40,
             "corrupt byte": bytes(corrupt),
             "object array": _npz(a=np.array([{"x": 1}], dtype=object)),
             "not a .npy member": _with_member("a.txt", b"hello"),
             "lying header": _lying_header((3,)),
             "memory bomb header": _lying_header((2 ** 40,)),
             "structured dtype": _npz(a=np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])),
             "strings": _npz(a=np.array(["a", "b"]))}
    step = max(1, len(good) // 23)
    for cut in list(range(0, len(good), step)) + [len(good) - 1]:
        files[f"truncated at {cut}"] = good[:cut]
    return files


@pytest.fixture(scope="module")
def good_npz(tmp_path_factory):
    gcomp.utils.clear_session()
    path = tmp_path_factory.mktemp("npz") / "good.npz"
    small_model("npz").save_weights(path)
    return path.read_bytes()


def test_read_npz_refuses_every_bad_file_by_name(tmp_path, good_npz):
    for case, content in bad_npz_files(good_npz).items():
        path = tmp_path / "w.npz"
        path.write_bytes(content)
        with pytest.raises(InputDataError) as e:
            read_npz(path)
        assert str(path) in str(e.value), case
    with pytest.raises(InputDataError, match="no such file"):
        read_npz(tmp_path / "missing.npz")
    with pytest.raises(InputDataError, match="not a readable"):
        read_npz(tmp_path)  # a folder


def test_read_npz_reads_what_numpy_writes(tmp_path):
    arrays = {"a": np.arange(6, dtype="float32").reshape(2, 3), "b|c": np.asfortranarray(np.ones((3, 2))),
              "d": np.arange(4, dtype=">i4"), "e": np.zeros((0, 5), "float32")}
    (tmp_path / "ok.npz").write_bytes(_npz(**arrays))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    (tmp_path / "compressed.npz").write_bytes(buffer.getvalue())
    for name in ("ok.npz", "compressed.npz"):
        got = read_npz(tmp_path / name)
        assert got.keys() == arrays.keys()
        for k in arrays:
            np.testing.assert_array_equal(got[k], arrays[k])
            assert got[k].flags.writeable


def test_model_load_weights_refuses_bad_files_by_name(tmp_path, good_npz):
    model = small_model("npz")
    before = model.get_weights()
    for case, content in bad_npz_files(good_npz).items():
        path = tmp_path / "w.npz"
        path.write_bytes(content)
        with pytest.raises(InputDataError) as e:
            model.load_weights(path)
        assert str(path) in str(e.value), case
        for a, b in zip(model.get_weights(), before):
            np.testing.assert_array_equal(a, b)


def test_model_weights_round_trip(tmp_path):
    model = small_model("rt")
    model.save_weights(tmp_path / "w.npz")
    other = small_model("rt")
    other.set_weights([w + 1 for w in other.get_weights()])
    other.load_weights(tmp_path / "w.npz")
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def program_module(tmp_path_factory):
    gcomp.utils.clear_session()
    folder, trains = build_numpy(small_model("prog", optimizer="sgd"), tmp_path_factory.mktemp("prog") / "prog")
    assert trains
    return folder, import_program(folder, "prog")


def test_generated_program_refuses_bad_weights_files_by_name(tmp_path, program_module):
    folder, module = program_module
    good = (folder / "weights.npz").read_bytes()
    program = module.load()
    before = program.get_weights()
    for case, content in bad_npz_files(good).items():
        path = tmp_path / "w.npz"
        path.write_bytes(content)
        with pytest.raises(module.InputDataError) as e:
            module.load(path)
        assert str(path) in str(e.value), case
        with pytest.raises(module.InputDataError):
            program.load_weights(path)
        for k, v in program.get_weights().items():
            np.testing.assert_array_equal(v, before[k])
    with pytest.raises(module.InputDataError, match="no such file"):
        module.load(tmp_path / "missing.npz")


def test_generated_program_save_weights_is_atomic(tmp_path, program_module, monkeypatch):
    _, module = program_module
    program = module.load()
    path = tmp_path / "w.npz"
    program.save_weights(path)
    assert leftovers(tmp_path) == ["w.npz"]
    saved = path.read_bytes()
    for k, v in module.read_weights(path).items():
        np.testing.assert_array_equal(v, program.params[k])
    program.params[next(iter(program.params))][...] += 1

    def interrupted(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(module._os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        program.save_weights(path)
    assert path.read_bytes() == saved and leftovers(tmp_path) == ["w.npz"]
    monkeypatch.undo()

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(module.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        program.save_weights(path)
    assert path.read_bytes() == saved and leftovers(tmp_path) == ["w.npz"]


def test_no_pickle_anywhere():
    root = fileio.__file__.rsplit("gcomp", 1)[0]
    for folder in ("gcomp", "templates"):
        for dirpath, _, names in os.walk(os.path.join(root, folder)):
            for name in names:
                if name.endswith((".py", ".j2")):
                    text = open(os.path.join(dirpath, name), encoding="utf-8").read()
                    assert "import pickle" not in text and "allow_pickle=True" not in text, name
                    assert text.count("np.load(") == text.count("allow_pickle=False"), name


# ---- malformed ONNX files ---------------------------------------------------------------------------
def test_truncated_or_garbage_onnx_is_a_model_load_error_naming_the_file(tmp_path):
    model = small_model("onnx", optimizer=None)
    good = tmp_path / "good.onnx"
    build(model, good)
    data = good.read_bytes()
    cases = {"empty": b"", "garbage": np.random.default_rng(0).bytes(300), "text": b"not a model\n", "zip": _npz(a=np.ones(2))}
    step = max(1, len(data) // 40)
    for cut in list(range(1, len(data), step)) + [len(data) - 1]:
        cases[f"cut {cut}"] = data[:cut]
    for case, content in cases.items():
        path = tmp_path / "bad.onnx"
        path.write_bytes(content)
        with pytest.raises(ModelLoadError) as e:  # never an onnxruntime or protobuf exception
            runtime.load(path, device="cpu")
        assert str(path) in str(e.value), case
    with pytest.raises(ModelLoadError, match="is a folder"):
        runtime.load(tmp_path, device="cpu")
    assert runtime.load(good, device="cpu").run(np.ones((2, 4), "float32")).shape == (2, 3)


# ---- the C program's weights.bin ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def c_program(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler")
    from gcomp.backends.c_runtime import CProgram
    gcomp.utils.clear_session()
    model = small_model("cw", optimizer=None)
    folder = _folder(build_c(model, tmp_path_factory.mktemp("cw") / "c", max_batch=4, max_len=8))
    program = CProgram(model._current_graph(), 4, 8)
    owner = getattr(program, "library", program)  # the ctypes library and the C model it created
    load = getattr(owner._lib, f"{owner.prefix}_load_weights")
    load.argtypes, load.restype = [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_int
    error = getattr(owner._lib, f"{owner.prefix}_error")
    error.argtypes, error.restype = [ctypes.c_void_p], ctypes.c_char_p

    def load_file(path):
        status = load(owner._model, str(path).encode())
        return status, error(owner._model).decode()
    return model, program, load_file, (folder / "weights.bin").read_bytes()


def test_c_weights_file_loads(tmp_path, c_program):
    model, program, load_file, good = c_program
    (tmp_path / "weights.bin").write_bytes(good)
    assert load_file(tmp_path / "weights.bin")[0] == 0
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(program.forward([x])[0], model.predict(x, backend="numpy"), rtol=1e-5, atol=1e-6)


def _c_bad_files(good: bytes) -> dict[str, bytes]:
    count = struct.unpack_from("<I", good, 4)[0]
    name_length = struct.unpack_from("<I", good, 8)[0]
    at_rank = 12 + name_length
    files = {f"truncated at {cut}": good[:cut] for cut in range(0, len(good), 7)}
    files.update({
        "truncated by one": good[:-1], "empty": b"", "wrong magic": b"GCW2" + good[4:],
        "text": b"not weights at all",
        "one byte more": good + b"\0",
        "count too high": good[:4] + struct.pack("<I", count + 1) + good[8:],
        "count too low": good[:4] + struct.pack("<I", count - 1) + good[8:],
        "count huge": good[:4] + struct.pack("<I", 0xFFFFFFFF) + good[8:],
        "name length huge": good[:8] + struct.pack("<I", 0xFFFFFFFF) + good[12:],
        "name length past the end": good[:8] + struct.pack("<I", len(good)) + good[12:],
        "rank huge": good[:at_rank] + struct.pack("<I", 0xFFFFFFFF) + good[at_rank + 4:],
        "dim huge": good[:at_rank + 4] + struct.pack("<I", 0xFFFFFFFF) + good[at_rank + 8:],
        "dim zero": good[:at_rank + 4] + struct.pack("<I", 0) + good[at_rank + 8:],
    })
    return files


def test_c_weights_file_errors_name_the_file(tmp_path, c_program):
    _, _, load_file, good = c_program
    for case, content in _c_bad_files(good).items():
        path = tmp_path / "bad weights.bin"
        path.write_bytes(content)
        status, message = load_file(path)
        assert status == 5, (case, status, message)  # GC_ERR_WEIGHTS
        assert message.startswith(str(path) + ":"), (case, message)
    status, message = load_file(tmp_path / "missing.bin")
    assert status == 6 and "missing.bin" in message  # GC_ERR_IO


def test_c_failed_load_keeps_the_previous_weights(tmp_path, c_program):
    _, program, load_file, good = c_program
    (tmp_path / "weights.bin").write_bytes(good)
    assert load_file(tmp_path / "weights.bin")[0] == 0
    x = np.ones((2, 4), "float32")
    expected = program.forward([x])[0]
    name_length = struct.unpack_from("<I", good, 8)[0]
    rank = struct.unpack_from("<I", good, 12 + name_length)[0]
    dims = struct.unpack_from(f"<{rank}I", good, 16 + name_length)
    first_values = 16 + name_length + 4 * rank  # the first weight's values
    changed = bytearray(good)
    changed[first_values:first_values + 4 * int(np.prod(dims))] = np.full(int(np.prod(dims)), 7.0, "<f4").tobytes()
    (tmp_path / "cut.bin").write_bytes(bytes(changed[:-4]))  # fails in the last weight
    assert load_file(tmp_path / "cut.bin")[0] == 5
    np.testing.assert_array_equal(program.forward([x])[0], expected)


def _sanitizers_work(tmp_path) -> bool:
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    import subprocess
    return subprocess.run([CC, "-fsanitize=address,undefined", str(probe), "-o", str(tmp_path / "probe")],
                          capture_output=True).returncode == 0


DRIVER = """#include <stdio.h>
#include "%s.h"
int main(int argc, char **argv) {
    %s_model *m = %s_create();
    int i, status = 0;
    for (i = 1; i < argc; i++)
        if (%s_load_weights(m, argv[i]) != GC_OK) {
            printf("%%s\\n", %s_error(m));
            status++;
        }
    %s_free(m);
    return status;
}
"""


@pytest.mark.skipif(CC is None, reason="no C compiler")
def test_c_weights_parser_under_sanitizers(tmp_path):
    """Every bad weights file through the generated parser built with ASan/UBSan: an error
    message naming the file, never an out-of-bounds read."""
    import subprocess
    if not _sanitizers_work(tmp_path):
        pytest.skip("no sanitizer runtime")
    from gcomp.backends.c_backend import c_prefix
    model = small_model("cs", optimizer=None)
    folder = _folder(build_c(model, tmp_path / "c", max_batch=2, max_len=8))
    prefix = c_prefix(model.name)
    (folder / "driver.c").write_text(DRIVER % ((prefix,) * 6))
    sources = sorted(p.name for p in folder.glob("*.c") if p.name != "main.c")
    run = subprocess.run([CC, "-std=c99", "-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                          "-fno-sanitize-recover=all", *sources, "-o", "driver", "-lm"],
                         cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    good = (folder / "weights.bin").read_bytes()
    paths = []
    for i, (case, content) in enumerate(_c_bad_files(good).items()):
        paths.append(tmp_path / f"bad{i}.bin")
        paths[-1].write_bytes(content)
    done = subprocess.run(["./driver", "weights.bin", *map(str, paths)], cwd=folder, capture_output=True, text=True,
                          env={"ASAN_OPTIONS": "detect_leaks=1", "PATH": "/usr/bin:/bin"})
    assert "Sanitizer" not in done.stderr and "runtime error" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert done.returncode == len(paths) and len(lines) == len(paths), done.stdout + done.stderr
    for path, line in zip(paths, lines):
        assert line.startswith(f"{path}:"), line


# ---- atomic writes ----------------------------------------------------------------------------------
def _interrupt_on_call(monkeypatch, target, name, n, exc=KeyboardInterrupt):
    """Make target.name raise ``exc`` on its n-th call (1-based); earlier calls run as usual."""
    real = getattr(target, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise exc()
        return real(*args, **kwargs)
    monkeypatch.setattr(target, name, wrapper)
    return calls


@pytest.mark.parametrize("where", ["fsync", "replace", "write"])
def test_write_atomic_interrupted_leaves_the_old_file(tmp_path, monkeypatch, where):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    if where == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode: _Writer(real_fdopen(fd, mode)))
    else:
        _interrupt_on_call(monkeypatch, fileio.os, where, 1)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(out, b"new contents")
    monkeypatch.undo()
    assert out.read_bytes() == b"old" and leftovers(tmp_path) == ["m.onnx"]


class _Writer:
    """A file object that writes half its data, then is interrupted."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        self.f.flush()
        raise KeyboardInterrupt


def test_write_atomic_errors_and_permissions(tmp_path, monkeypatch):
    out = tmp_path / "w.bin"
    out.write_bytes(b"old")
    out.chmod(0o600)
    write_atomic(out, b"new")
    assert out.read_bytes() == b"new" and (out.stat().st_mode & 0o777) == 0o600  # permissions kept
    _interrupt_on_call(monkeypatch, fileio.os, "replace", 1, exc=lambda: OSError(28, "No space left on device"))
    with pytest.raises(OutputFileError, match="No space left on device"):
        write_atomic(out, b"newer")
    assert out.read_bytes() == b"new" and leftovers(tmp_path) == ["w.bin"]


def test_interrupted_onnx_build_leaves_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old model")
    model = small_model("ob", optimizer=None)
    _interrupt_on_call(monkeypatch, fileio.os, "fsync", 1)
    with pytest.raises(KeyboardInterrupt):
        build(model, out)
    assert out.read_bytes() == b"old model" and leftovers(tmp_path) == ["m.onnx"]

    def serializer_fails(*args, **kwargs):
        raise RuntimeError("serializer failed")
    monkeypatch.setattr(Model, "to_onnx", serializer_fails)
    with pytest.raises(RuntimeError):
        build(model, out)
    assert out.read_bytes() == b"old model" and leftovers(tmp_path) == ["m.onnx"]


def _folder(result):
    return result[0] if isinstance(result, tuple) else result  # build_c: (folder, trains) or folder


def _builders():
    return {"numpy": lambda model, folder: build_numpy(model, folder)[0],
            "c": lambda model, folder: _folder(build_c(model, folder, max_batch=2, max_len=8))}


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_interrupted_folder_build_leaves_the_old_files(tmp_path, monkeypatch, target, n):
    make = _builders()[target]
    model = small_model(f"fb{target}", optimizer="sgd")
    folder = make(model, tmp_path / "out")
    (folder / "mine.txt").write_text("the user's own file")
    old = {p.name: p.read_bytes() for p in folder.iterdir()}
    model.set_weights([w + 1 for w in model.get_weights()])
    _interrupt_on_call(monkeypatch, fileio.os, "fsync", n)  # while writing the n-th file
    with pytest.raises(KeyboardInterrupt):
        make(model, folder)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == old  # every old file, no temporary file
    assert leftovers(tmp_path) == ["out"]
    make(model, folder)  # then the build completes: new weights, the user's file kept
    assert (folder / "mine.txt").read_text() == "the user's own file"
    weights = "weights.npz" if target == "numpy" else "weights.bin"
    assert (folder / weights).read_bytes() != old[weights]


@pytest.mark.parametrize("target", ["numpy", "c"])
def test_interrupted_build_of_a_new_folder_leaves_nothing(tmp_path, monkeypatch, target):
    make = _builders()[target]
    model = small_model(f"nf{target}", optimizer="sgd")
    _interrupt_on_call(monkeypatch, fileio.os, "fsync", 2)
    with pytest.raises(KeyboardInterrupt):
        make(model, tmp_path / "deep" / "out")
    assert leftovers(tmp_path / "deep") == []
    monkeypatch.undo()
    folder = make(model, tmp_path / "deep" / "out")
    assert leftovers(tmp_path / "deep") == ["out"] and (folder.stat().st_mode & 0o777) == 0o755


def test_ctrl_c_while_replacing_the_files_completes_the_set(tmp_path, monkeypatch):
    """The renames that put a folder's new files in place are one short step Ctrl-C does not split:
    a press there is raised once every file is new."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT has a handler other than Python's default here")
    model = small_model("cs", optimizer="sgd")
    folder, _ = build_numpy(model, tmp_path / "out")
    model.set_weights([w + 1 for w in model.get_weights()])
    real = os.replace
    pressed = []

    def replace(src, dst):
        if not pressed:
            pressed.append(dst)
            signal.raise_signal(signal.SIGINT)
        return real(src, dst)
    monkeypatch.setattr(fileio.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        build_numpy(model, folder)
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert leftovers(folder) == ["README.md", "model.py", "weights.npz"]
    got = read_npz(folder / "weights.npz")
    for name, value in model._param_values().items():
        np.testing.assert_array_equal(got[name.replace("/", "|")], value)


def test_folder_build_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(OutputFileError, match="not a folder"):
        build_numpy(small_model("fw", optimizer="sgd"), tmp_path / "out")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "model.py").mkdir()
    with pytest.raises(OutputFileError, match="it is a folder"):
        write_folder_atomic(tmp_path / "dir", {"README.md": b"x", "model.py": b"y"})
    assert leftovers(tmp_path / "dir") == ["model.py"]


def test_cli_build_interrupted_exits_130_and_keeps_the_old_files(tmp_path, monkeypatch, capsys):
    from gcomp.cli import main
    from conftest import EXAMPLES
    assert main(["build", str(EXAMPLES / "mlp.py"), "--target", "numpy", "-o", str(tmp_path / "out")]) == 0
    old = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    _interrupt_on_call(monkeypatch, fileio.os, "fsync", 2)
    assert main(["build", str(EXAMPLES / "mlp.py"), "--target", "numpy", "-o", str(tmp_path / "out")]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == old


def test_model_save_weights_and_checkpoint_are_atomic(tmp_path, monkeypatch):
    model = small_model("ck", optimizer="sgd")
    x, y = data()
    path = tmp_path / "ckpt" / "w.npz"  # ModelCheckpoint makes the folder, as Keras does
    model.fit(x, y, epochs=1, verbose=0, shuffle=False, callbacks=[callbacks.ModelCheckpoint(path)])
    saved = path.read_bytes()
    ended = []
    _interrupt_on_call(monkeypatch, fileio.os, "fsync", 1)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C while the checkpoint is written
        model.fit(x, y, epochs=2, verbose=0, shuffle=False, callbacks=[
            callbacks.ModelCheckpoint(path), callbacks.LambdaCallback(on_train_end=lambda logs: ended.append(1))])
    assert path.read_bytes() == saved and leftovers(path.parent) == ["w.npz"] and ended == [1]
    monkeypatch.undo()
    _interrupt_on_call(monkeypatch, fileio.os, "fsync", 1)
    with pytest.raises(KeyboardInterrupt):
        model.save_weights(path)
    assert path.read_bytes() == saved and leftovers(path.parent) == ["w.npz"]


# ---- Ctrl-C in fit --------------------------------------------------------------------------------------
BATCH = 8  # 40 samples: 5 steps per epoch


@pytest.fixture
def default_sigint():
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT has a handler other than Python's default here")
    yield
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the previous handler is back


def twin_models(name):
    """Two models with the same weights and optimizer (Adam: its slots must match too)."""
    a, b = small_model(name), small_model(name + "_ref")
    b.set_weights(a.get_weights())
    return a, b


def weights_after_steps(model, x, y, steps):
    per_epoch = -(-len(x) // BATCH)
    for s in range(steps):
        i = s % per_epoch
        model.train_on_batch(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])
    return model.get_weights()


class Recorder(callbacks.Callback):
    """Presses Ctrl-C (``presses`` times) when ``at`` = (epoch, batch) begins; records the hooks."""

    def __init__(self, at, presses=1):
        super().__init__()
        self.at, self.presses, self.epoch, self.events = at, presses, None, []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.events.append(("begin", self.epoch, batch))
        if (self.epoch, batch) == self.at:
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # fit's own handler
            for _ in range(self.presses):
                signal.raise_signal(signal.SIGINT)

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("end", self.epoch, batch))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch))

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))


@pytest.mark.parametrize("epoch, batch", [(0, 0), (0, 2), (1, 4)])
def test_ctrl_c_finishes_the_running_step_then_stops(default_sigint, epoch, batch):
    model, reference = twin_models("cc")
    x, y = data()
    recorder = Recorder((epoch, batch))
    with pytest.raises(KeyboardInterrupt, match="fit stopped by Ctrl-C after epoch"):
        model.fit(x, y, epochs=3, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[recorder])
    steps = epoch * 5 + batch + 1  # the step whose on_train_batch_begin saw the press completes
    for got, expected in zip(model.get_weights(), weights_after_steps(reference, x, y, steps)):
        np.testing.assert_array_equal(got, expected)
    assert recorder.events[-2:] == [("end", epoch, batch), ("train_end",)]  # no epoch end for a cut epoch
    assert sum(e[0] == "epoch_end" for e in recorder.events) == epoch


def test_second_ctrl_c_interrupts_at_once_keeping_the_last_completed_step(default_sigint):
    model, reference = twin_models("cc2")
    x, y = data()
    recorder = Recorder((0, 3), presses=2)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[recorder])
    for got, expected in zip(model.get_weights(), weights_after_steps(reference, x, y, 3)):  # batch 3 never ran
        np.testing.assert_array_equal(got, expected)
    assert recorder.events[-2:] == [("begin", 0, 3), ("train_end",)]


def test_second_ctrl_c_during_the_optimizer_update_waits_for_it(default_sigint):
    model, reference = twin_models("cc3")
    x, y = data()
    program = model._training_program()
    real_update = program.optimizer.update
    updates = []

    def update(*args):  # both presses arrive while the fused update of step 2 runs
        updates.append(1)
        if len(updates) == 3:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return real_update(*args)
    program.optimizer.update = update
    try:
        with pytest.raises(KeyboardInterrupt, match="after epoch 1, batch 2"):
            model.fit(x, y, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    finally:
        del program.optimizer.update
    assert len(updates) == 3
    for got, expected in zip(model.get_weights(), weights_after_steps(reference, x, y, 3)):
        np.testing.assert_array_equal(got, expected)


def test_ctrl_c_during_validation_stops_after_that_batch(default_sigint, monkeypatch):
    model, reference = twin_models("cv")
    x, y = data()
    program = model._training_program()
    namespace = type(program).fit.__globals__
    real_test_step, seen = namespace["test_step"], []

    def test_step(*args):
        seen.append(1)
        if len(seen) == 1:
            signal.raise_signal(signal.SIGINT)
        return real_test_step(*args)
    monkeypatch.setitem(namespace, "test_step", test_step)
    recorder = Recorder((None, None))
    with pytest.raises(KeyboardInterrupt, match="after epoch 1, validation batch 0"):
        model.fit(x, y, epochs=3, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[recorder],
                  validation_data=(x[:16], y[:16]))
    assert len(seen) == 1 and ("epoch_end", 0) not in recorder.events and recorder.events[-1] == ("train_end",)
    for got, expected in zip(model.get_weights(), weights_after_steps(reference, x, y, 5)):
        np.testing.assert_array_equal(got, expected)


def test_fit_leaves_other_handlers_and_threads_alone(default_sigint):
    model = small_model("th")
    x, y = data()
    seen = []
    probe = callbacks.LambdaCallback(on_train_batch_begin=lambda b, logs: seen.append(signal.getsignal(signal.SIGINT)))

    def own_handler(signum, frame):
        seen.append("own")
    previous = signal.signal(signal.SIGINT, own_handler)
    try:
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[probe])
        assert set(seen) == {own_handler} and signal.getsignal(signal.SIGINT) is own_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    seen.clear()
    errors = []

    def train():
        try:
            model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[probe])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
    thread = threading.Thread(target=train)
    thread.start()
    thread.join()
    assert not errors and set(seen) == {signal.default_int_handler}  # no handler from a thread


def test_ctrl_c_in_the_generated_program(default_sigint, tmp_path):
    model, reference = twin_models("gp")
    folder, _ = build_numpy(model, tmp_path / "gp")
    module = import_program(folder, "gp")
    program = module.load()
    x, y = data()
    recorder = Recorder((0, 1))
    with pytest.raises(KeyboardInterrupt):
        program.fit(x, y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[recorder])
    expected = weights_after_steps(reference, x, y, 2)  # batches 0 and 1
    for got, want in zip([program.params[v.path] for v in model.weights], expected):
        np.testing.assert_array_equal(got, want)
