"""gcomp.runtime: loading exported files, provider choice, input validation, clear file errors."""
import numpy as np
import onnxruntime as ort
import pytest

import gcomp
from gcomp import Input, Model, layers, runtime
from gcomp.errors import GcompError, InputDataError
from gcomp.runtime import ModelLoadError, RunError

from conftest import load_example


@pytest.fixture
def qa_file(tmp_path):
    model = load_example("qa_two_inputs")["model"]
    path = gcomp.build(model, tmp_path / "qa.onnx")
    return model, path


def test_load_and_run_like_predict(qa_file, capfd):
    model, path = qa_file
    session = runtime.load(path)
    assert session.provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
    if "CUDAExecutionProvider" not in ort.get_available_providers() or session.provider == "CPUExecutionProvider":
        assert capfd.readouterr().err == ""  # no provider errors printed on a machine without CUDA
    assert session.input_names == ["text", "question"] and session.output_names == ["dense"]
    rng = np.random.default_rng(0)
    text, question = rng.integers(0, 10000, (3, 20)), rng.integers(0, 10000, (3, 7))
    expected = model.predict([text, question], backend="numpy")
    np.testing.assert_allclose(session.run([text, question]), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(session.run({"text": text, "question": question}), expected, rtol=1e-5, atol=1e-6)
    assert list(session.run([text, question], as_dict=True)) == ["dense"]


def test_cpu_device_and_options(qa_file):
    _, path = qa_file
    session = runtime.load(path, device="cpu", allow_spinning=False, threads=1)
    assert session.provider == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="device must be"):
        runtime.load(path, device="tpu")


def test_cuda_requested_without_a_gpu_is_a_clear_error(qa_file):
    _, path = qa_file
    if runtime.load(path).provider == "CUDAExecutionProvider":
        pytest.skip("this machine has a working CUDA provider")
    with pytest.raises(GcompError, match="cannot run on CUDA here"):
        runtime.load(path, device="cuda")


@pytest.mark.parametrize("data, message", [
    ({"text": np.zeros((2, 5), int)}, "missing input(s) ['question']"),
    ({"text": np.zeros((2, 5), int), "question": np.zeros((2, 5), int), "extra": 1}, "unknown key(s) ['extra']"),
    ([np.zeros((2, 5), int)], "takes 2 input(s) ['text', 'question'], got a list of 1 arrays"),
    ([np.zeros((2,), int), np.zeros((2, 5), int)], 'input "text" expects rank 2'),
    ([np.zeros((2, 5), int), np.zeros((3, 5), int)], "different batch sizes: text=2, question=3"),
    ([np.full((2, 5), "a"), np.zeros((2, 5), int)], 'input "text" expects numbers'),
    ([np.full((2, 5), 0.5), np.zeros((2, 5), int)], 'input "text" expects integer indices'),
])
def test_inputs_are_checked_against_the_signature(qa_file, data, message):
    _, path = qa_file
    with pytest.raises(InputDataError) as e:
        runtime.load(path).run(data)
    assert message in str(e.value)


def test_fixed_dims_are_checked(tmp_path):
    x = Input(shape=(4,), name="x")
    path = gcomp.build(Model(x, layers.Dense(2)(x)), tmp_path / "m.onnx")
    with pytest.raises(InputDataError, match=r'input "x" expects shape \(None, 4\), got \(2, 5\)|axis 1 should be 4'):
        runtime.load(path).run(np.zeros((2, 5), "float32"))


def test_runtime_failures_are_gcomp_errors(tmp_path, capfd):
    t = Input(shape=(None,), dtype="int32", name="t")
    path = gcomp.build(Model(t, layers.Embedding(10, 2)(t)), tmp_path / "e.onnx")
    with pytest.raises(RunError, match="onnxruntime failed"):
        runtime.load(path).run(np.array([[1, 12]]))
    assert "ONNXRuntimeError" not in capfd.readouterr().err


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "not a valid ONNX model"),
    (b"this is a text file, not a model\n", "not a valid ONNX model"),
])
def test_bad_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError) as e:
        runtime.load(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_truncated_file_is_a_clear_error(qa_file, tmp_path):
    _, path = qa_file
    data = path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        runtime.load(cut)
