"""C backend (inference): generated C against the NumPy reference for every layer and seed model,
strict-warning compiles, the Makefile and command-line program, sanitizers, errors."""
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from gcomp import Input, Model, layers
from gcomp.backends.c_backend import KERNEL_HEADERS, KERNEL_SOURCES, CBackendError, c_prefix, render_c
from gcomp.build import build_c
from gcomp.errors import GcompError, InputDataError

from conftest import EXAMPLES, load_example
from test_onnx import LAYER_CASES, SEED_MODELS, one_layer, random_inputs

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")


def assert_c_matches_numpy(model, arrays, rtol=1e-4, atol=1e-5):
    expected = model.predict(arrays, backend="numpy", batch_size=len(arrays[0]))
    got = model.predict(arrays, backend="c", batch_size=len(arrays[0]))
    expected = expected if isinstance(expected, list) else [expected]
    got = got if isinstance(got, list) else [got]
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name, length", [("mlp", 0), ("qa_two_inputs", 37), ("multi_output", 300),
                                          ("inception", 0), ("residual", 0), ("siamese_lstm", 11)])
def test_seed_models_in_c_equal_numpy(name, length):
    model = load_example(name)["model"]
    for batch in (1, 3):
        assert_c_matches_numpy(model, random_inputs(model, batch, length))


C_CASES = sorted(c for c in LAYER_CASES if not c.startswith("dense_") or c in ("dense_relu", "dense_softmax",
                 "dense_gelu", "dense_selu", "dense_hard_sigmoid", "dense_log_softmax", "dense_no_bias_rank3",
                 "dense_rank3"))


@pytest.mark.parametrize("case", C_CASES)
def test_layers_in_c_equal_numpy(case):
    make, shape = LAYER_CASES[case]
    model = one_layer(make(), shape)
    assert_c_matches_numpy(model, random_inputs(model, 2, 9))


@pytest.mark.parametrize("name", SEED_MODELS)
@pytest.mark.parametrize("std", ["c99", "c11"])
def test_generated_code_compiles_without_warnings(tmp_path, name, std):
    model = load_example(name)["model"]
    for file, text in render_c(model.optimized_graph(2, "cpu"), 8, 64).items():  # as inference-only builds
        (tmp_path / file).write_text(text)
    prefix = c_prefix(model.name)
    for source in (f"{prefix}.c", "main.c"):  # the kernel libraries: their own tests compile them strictly
        run = subprocess.run([CC, f"-std={std}", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-c", source,
                              "-o", "/dev/null"], cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr


def test_generation_is_deterministic():
    import gcomp
    texts = []
    for _ in range(2):
        gcomp.utils.clear_session()
        texts.append(render_c(load_example("qa_two_inputs")["model"]._current_graph(), 8, 64))
    assert texts[0] == texts[1]


def write_tensor(path, array):
    dtype = {"float32": 0, "int32": 1, "int64": 2}[str(array.dtype)]
    path.write_bytes(b"GCT1" + struct.pack("<II", dtype, array.ndim) + struct.pack(f"<{array.ndim}Q", *array.shape)
                     + array.tobytes())


def read_tensors(path):
    data, at, out = path.read_bytes(), 0, []
    while at < len(data):
        assert data[at:at + 4] == b"GCT1"
        dtype, ndim = struct.unpack_from("<II", data, at + 4)
        shape = struct.unpack_from(f"<{ndim}Q", data, at + 12)
        at += 12 + 8 * ndim
        count = int(np.prod(shape))
        out.append(np.frombuffer(data, np.float32, count, at).reshape(shape))
        at += 4 * count
    return out


def make(folder, *flags):
    run = subprocess.run(["make", "-s", *flags], cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_makefile_and_command_line_program(tmp_path):
    model = load_example("qa_two_inputs")["model"]
    folder, _ = build_c(model, tmp_path / "qa", max_batch=4, max_len=32)
    make(folder)
    rng = np.random.default_rng(0)
    text, question = rng.integers(0, 10000, (3, 20)).astype("int32"), rng.integers(0, 10000, (3, 7)).astype("int32")
    write_tensor(tmp_path / "text.bin", text)
    write_tensor(tmp_path / "question.bin", question)
    prefix = c_prefix(model.name)
    run = subprocess.run([f"./{prefix}_cli", "predict", "weights.bin", str(tmp_path / "out.bin"), str(tmp_path / "text.bin"),
                          str(tmp_path / "question.bin")], cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    (got,) = read_tensors(tmp_path / "out.bin")
    np.testing.assert_allclose(got, model.predict([text, question], backend="numpy"), rtol=1e-4, atol=1e-6)
    # more samples than the build's largest batch run in several batches
    big = rng.integers(0, 100, (9, 20)).astype("int32")
    write_tensor(tmp_path / "big.bin", big)
    run = subprocess.run([f"./{prefix}_cli", "predict", "weights.bin", str(tmp_path / "o.bin"), str(tmp_path / "big.bin"),
                          str(tmp_path / "big.bin")], cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    (got,) = read_tensors(tmp_path / "o.bin")
    np.testing.assert_allclose(got, model.predict([big, big], backend="numpy"), rtol=1e-4, atol=1e-6)
    # a length above the build's maximum is an error code with a message naming the samples, not a crash
    write_tensor(tmp_path / "long.bin", rng.integers(0, 100, (3, 40)).astype("int32"))
    run = subprocess.run([f"./{prefix}_cli", "predict", "weights.bin", str(tmp_path / "o.bin"), str(tmp_path / "long.bin"),
                          str(tmp_path / "question.bin")], cwd=folder, capture_output=True, text=True)
    assert run.returncode == 1 and "samples 0..2:" in run.stderr and "outside 1..32 (the build's maximum)" in run.stderr
    # files whose sample counts differ are named
    run = subprocess.run([f"./{prefix}_cli", "predict", "weights.bin", str(tmp_path / "o.bin"), str(tmp_path / "big.bin"),
                          str(tmp_path / "question.bin")], cwd=folder, capture_output=True, text=True)
    assert run.returncode == 1 and "question.bin: 3 samples" in run.stderr and "has 9" in run.stderr
    # a truncated weights file is refused by name
    (folder / "cut.bin").write_bytes((folder / "weights.bin").read_bytes()[:1000])
    run = subprocess.run([f"./{prefix}_cli", "predict", "cut.bin", str(tmp_path / "o.bin"), str(tmp_path / "text.bin"),
                          str(tmp_path / "question.bin")], cwd=folder, capture_output=True, text=True)
    assert run.returncode == 1 and "cut.bin: truncated" in run.stderr


def _sanitizers_work(tmp_path) -> bool:
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    return subprocess.run([CC, "-fsanitize=address,undefined", str(probe), "-o", str(tmp_path / "probe")],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_sanitizer_build_runs_clean(tmp_path):
    if not _sanitizers_work(tmp_path):
        pytest.skip("no sanitizer runtime")
    model = load_example("multi_output")["model"]
    folder, _ = build_c(model, tmp_path / "mo", max_batch=2, max_len=320)
    make(folder, "CFLAGS=-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer",
         "LDFLAGS=-fsanitize=address,undefined")
    posts = np.random.default_rng(0).integers(0, 50000, (2, 300)).astype("int32")
    write_tensor(tmp_path / "posts.bin", posts)
    prefix = c_prefix(model.name)
    run = subprocess.run([f"./{prefix}_cli", "predict", "weights.bin", str(tmp_path / "out.bin"), str(tmp_path / "posts.bin")],
                         cwd=folder, capture_output=True, text=True, env={"ASAN_OPTIONS": "detect_leaks=1",
                                                                           "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and "runtime error" not in run.stderr and "Sanitizer" not in run.stderr, run.stderr
    outputs = read_tensors(tmp_path / "out.bin")
    for got, expected in zip(outputs, model.predict(posts, backend="numpy")):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_errors_come_back_as_exceptions():
    t = Input(shape=(None,), dtype="int32", name="t")
    model = Model(t, layers.Embedding(10, 2, name="emb")(t))
    with pytest.raises(InputDataError, match='Embedding layer "emb"'):
        model.predict(np.array([[1, 12]]), backend="c")  # checked before the C code runs, as for ONNX
    from gcomp.backends.c_runtime import CProgram
    program = CProgram(model._current_graph(), 2, 8)
    program.set_weights(model._current_graph().params)
    with pytest.raises(InputDataError, match=r'got index 12 at position 1 of input "t"'):
        program.forward([np.array([[1, 12]], np.int32)])
    with pytest.raises(GcompError, match="outside 1..2"):
        program.forward([np.zeros((3, 4), np.int32)])


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_folded_embedding_lookups_in_c_equal_numpy(dtype):
    """Inference runs the CPU-optimized graph: an Embedding and the Conv1Ds and Dense reading it
    become lookup-table sums (gk_lookup_sum), checked against the unfolded NumPy reference."""
    from gcomp.backends.c_runtime import CProgram
    x = Input(shape=(None,), dtype=dtype, name="words")
    emb = layers.Embedding(40, 6, name="emb")(x)
    model = Model(x, [layers.Conv1D(4, 3, strides=2, activation="relu", bias_initializer="random_normal")(emb),
                      layers.Conv1D(3, 2, dilation_rate=3)(emb), layers.Dense(5, activation="softmax")(emb)])
    graph = model.optimized_graph(2, "cpu")
    assert [graph.node(n)["op"] for n in graph.nodes("op")] == ["embedding_conv"] * 3
    for batch, length in ((1, 7), (3, 17)):
        assert_c_matches_numpy(model, [np.random.default_rng(length).integers(0, 40, (batch, length)).astype(dtype)])
    program = CProgram(graph, 2, 32)
    program.set_weights(graph.params)
    with pytest.raises(InputDataError, match=r'Embedding layer "emb" got index 40 at position 4 of input "words"'):
        program.forward([np.array([[1, 2, 3, 4, 40, 5, 6]], dtype)])


def test_inputs_too_short_for_a_window_are_refused():
    """Free lengths are checked against every window before anything runs (the seed's multi-output
    model's first Conv1D is folded into lookups and still refuses 3-token posts)."""
    model = load_example("multi_output")["model"]
    for length, layer, out in ((3, "conv1d", -1), (12, "conv1d_1", -3), (40, "conv1d_2", -1)):
        with pytest.raises(InputDataError, match=f'layer "{layer}": the input is too short for its window '
                                                 rf"\(axis 1 of its output would have length {out}\)"):
            model.predict(np.ones((2, length), "int32"), backend="c")
    x = Input(shape=(None, 3), name="seq")
    model = Model(x, layers.GlobalMaxPooling1D()(layers.Conv1D(2, 5, name="conv")(x)))
    with pytest.raises(InputDataError, match='layer "conv": the input is too short'):
        model.predict(np.ones((1, 4, 3), "float32"), backend="c")
    assert_c_matches_numpy(model, [np.random.default_rng(0).normal(size=(1, 5, 3)).astype("float32")])


def test_forward_passes_its_work_per_sample_to_the_session():
    """<model>_forward hands gk_session its multiply-adds: each kernel-like weight once per input
    position (at the build's largest length), plus one per output value; only forward gets one."""
    x = Input(shape=(None, 8), name="seq")
    h = layers.Conv1D(4, 3, name="conv")(x)  # 3 * 8 * 4 weights at each of 16 steps, 14 * 4 outputs
    model = Model(x, layers.Dense(2, name="dense")(layers.LSTM(5, name="lstm")(h)))
    work = 16 * 96 + 14 * 4 + 14 * (4 * 20 + 5 * 20) + 5 + 5 * 2 + 2  # conv, lstm (14 steps in), dense
    code = render_c(model._current_graph(), 2, 16)[f"{c_prefix(model.name)}.c"]
    assert f"_forward_body, &call, {work}.0 * batch)" in code
    model.compile(optimizer="sgd", loss="mse")
    from gcomp.backends.c_training import render_training_c
    training = render_training_c(model._current_graph(), model._compile_config, 2, 16)[f"{c_prefix(model.name)}.c"]
    assert training.count("gk_session(") == 1  # forward's; the training step's kernels run as before
    assert_c_matches_numpy(model, [np.random.default_rng(0).normal(size=(2, 12, 8)).astype("float32")])


def test_wide_3x3_convolutions_use_winograd_in_inference_code_only():
    x = Input(shape=(10, 9, 128), name="image")
    wide = layers.Conv2D(128, 3, padding="same", activation="relu", bias_initializer="random_normal", name="wide")(x)
    model = Model(x, layers.Conv2D(64, 3, padding="same", name="narrow")(wide))
    code = render_c(model._current_graph(), 2, 8)[f"{c_prefix(model.name)}.c"]
    assert code.count("gk_conv2d_winograd_act(") == 2 and "gk_conv2d_act(" not in code
    assert_c_matches_numpy(model, random_inputs(model, 2, 0))
    model.compile(optimizer="sgd", loss="mse")
    from gcomp.backends.c_training import render_training_c
    training = render_training_c(model._current_graph(), model._compile_config, 2, 8)[f"{c_prefix(model.name)}.c"]
    assert "gk_conv2d_winograd_act(" not in training  # training matches the NumPy program's sums


def test_merges_broadcast_as_in_numpy():
    x, y = Input(shape=(3, 4), name="x"), Input(shape=(1, 4), name="y")
    model = Model([x, y], [layers.add([x, y]), layers.maximum([y, x]), layers.average([x, y])])
    assert_c_matches_numpy(model, random_inputs(model, 2, 0))


def test_unsupported_ops_are_named():
    graph = one_layer(layers.Dense(2), (3,))._current_graph()
    graph.node(next(iter(graph.nodes("op"))))["op"] = "split"  # an op only the optimizing passes make
    with pytest.raises(CBackendError, match="does not support op 'split'"):
        render_c(graph, 2, 2)


def test_cli_build_target_c(tmp_path):
    run = subprocess.run([sys.executable, "-m", "gcomp.cli", "build", str(EXAMPLES / "mlp.py"), "--target", "c",
                          "-o", str(tmp_path / "mlp"), "--max-batch", "8"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in (tmp_path / "mlp").iterdir())
    kernels = [f"{stem}.{ext}" for stem in KERNEL_SOURCES for ext in ("c", "h")] + list(KERNEL_HEADERS)
    assert names == sorted(["Makefile", "README.md", "functional.c", "functional.h", "main.c", "weights.bin"] + kernels)
