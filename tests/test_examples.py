"""Every example runs as a script, and the seed mistakes produce the documented errors."""
import subprocess
import sys

import pytest

from conftest import EXAMPLES, load_example

EXPECTED_OUTPUT = {
    "mlp.py": "Total params: 3,466 (13.54 KB)",
    "qa_two_inputs.py": "(8, 500) 0.0",
    "multi_output.py": "(4, 1) (4, 10) (4, 1)",
    "inception.py": "(2, 16, 16, 512)",
    "residual.py": "(2, 32, 32, 64)",
    "siamese_lstm.py": "(4, 1)",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT))
def test_example_runs(name):
    run = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert EXPECTED_OUTPUT[name] in run.stdout


def test_every_example_is_checked():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == set(EXPECTED_OUTPUT) | {"seed_mistakes.py", "deploy.py"}


def test_readme_main_job_build_then_deploy(tmp_path):
    out = tmp_path / "qa.onnx"
    build = subprocess.run(["gcomp", "build", str(EXAMPLES / "qa_two_inputs.py"), "-o", str(out)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([sys.executable, str(EXAMPLES / "deploy.py"), str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "provider: " in run.stdout and "dense: shape (2, 500)" in run.stdout


def test_seed_mistakes_each_get_a_clear_error():
    messages = {what: run() for what, run in load_example("seed_mistakes")["MISTAKES"].items()}
    assert messages["`from keras.import layers`"] == "model.py:1: syntax error: invalid syntax"
    assert messages["`embedded_question` never defined"] == \
        "model.py:4: NameError: name 'embedded_question' is not defined"
    assert messages["`x` never defined in the Inception snippet"] == "model.py:2: NameError: name 'x' is not defined"
    assert messages["`lstm(left_input))`"] == "model.py:4: syntax error: unmatched ')'"
    assert messages["`predictionar`, the truncated last line"] == \
        "model.py:1: NameError: name 'predictionar' is not defined"
    embedding = messages["Embedding arguments reversed"]
    assert 'Embedding layer "text_embedding"' in embedding and "outside [0, 64)" in embedding
    assert 'input "text"' in embedding
    inception = messages["Inception with padding 'valid'"]
    assert inception.startswith('Layer "concatenate" (Concatenate), called at ')
    assert "seed_mistakes.py:" in inception
    assert "(batch, 16, 16, 128), (batch, 15, 15, 128)" in inception
