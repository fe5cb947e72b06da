"""The `gcomp` command line: summary and ir on examples, and one-line errors for every mistake."""
import subprocess
import sys
import textwrap

import pytest

from gcomp.cli import main

from conftest import EXAMPLES


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gcomp.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_summary_of_an_example(capsys):
    assert main(["summary", str(EXAMPLES / "mlp.py")]) == 0
    out = capsys.readouterr().out
    assert 'Model: "functional"' in out and "Total params: 3,466 (13.54 KB)" in out


def test_summary_picks_a_model_by_name(capsys):
    assert main(["summary", str(EXAMPLES / "mlp.py"), "--model", "seq_model"]) == 0
    out = capsys.readouterr().out
    assert 'Model: "sequential"' in out and "InputLayer" not in out


def test_ir_and_numpy_source(capsys):
    assert main(["ir", str(EXAMPLES / "siamese_lstm.py")]) == 0
    out = capsys.readouterr().out
    assert "input %left: float32[batch, left_len, 128]" in out
    assert "%lstm#1 = lstm(%right, kernel=%lstm/kernel" in out
    assert main(["ir", "--numpy", str(EXAMPLES / "siamese_lstm.py")]) == 0
    assert "def forward(params, inputs):" in capsys.readouterr().out


def test_the_only_model_is_taken_without_a_model_variable(tmp_path, capsys):
    f = tmp_path / "net.py"
    f.write_text("from gcomp import Input, Model, layers\ni = Input(shape=(3,))\nnet = Model(i, layers.Dense(2)(i))\n")
    assert main(["summary", str(f)]) == 0
    assert "dense (Dense)" in capsys.readouterr().out


MISTAKES = {
    "missing file": (None, "no such file"),
    "syntax error": ("x = (\n", "model.py:1: syntax error"),
    "undefined name": ("import gcomp\ny = embedded_question\n", "model.py:2: NameError: name 'embedded_question'"),
    "no model": ("x = 1\n", "defines no Model"),
    "two models": ("from gcomp import Input, Model, layers\ni = Input(shape=(3,))\n"
                   "a = Model(i, layers.Dense(2)(i))\nb = Model(i, layers.Dense(4)(i))\n",
                   "defines several models (a, b); pick one with --model NAME"),
    "shape mistake": ("from gcomp import Input, Model, layers\ni = Input(shape=(3,))\n"
                      "y = layers.concatenate([i, layers.Reshape((3, 1))(i)])\n",
                      "model.py:3: Layer \"concatenate\" (Concatenate)"),
    "exit in file": ("raise SystemExit(3)\n", "model.py:1: SystemExit: 3"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_mistakes_give_one_line_and_nonzero_exit(tmp_path, case):
    source, expected = MISTAKES[case]
    path = tmp_path / "model.py"
    if source is not None:
        path.write_text(source)
    run = run_cli("summary", "model.py", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("gcomp: error: ") and expected in lines[0]
    assert "Traceback" not in run.stderr


def test_unknown_model_name(tmp_path):
    run = run_cli("summary", str(EXAMPLES / "mlp.py"), "--model", "nope")
    assert run.returncode == 1
    assert "no Model named 'nope' (models defined: model, seq_model)" in run.stderr


def test_help_documents_every_option():
    run = run_cli("ir", "--help")
    assert run.returncode == 0
    for option in ("--model", "--numpy", "model.py"):
        assert option in run.stdout
    run = run_cli()
    assert run.returncode == 2 and "usage: gcomp" in run.stderr
