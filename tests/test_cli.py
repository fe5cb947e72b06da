"""The `gcomp` command line: summary and ir on examples, and one-line errors for every mistake."""
import os
import subprocess
import sys

import numpy as np
import pytest

from gcomp.cli import main

from conftest import EXAMPLES, ROOT


def run_cli(*args, cwd=None):
    # This checkout's gcomp, whatever (or wherever) pip installed: cwd may be a temporary folder.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "gcomp.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


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
    assert "def forward(params, inputs, ctx=None):" in capsys.readouterr().out


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
    "misspelt layer": ("from gcomp import layers\nc = layers.Conv2d(8, 3)\n",
                       "model.py:2: AttributeError: gcomp.layers has no 'Conv2d' (did you mean Conv2D"),
    "keras layer gcomp lacks": ("from gcomp import layers\nb = layers.BatchNormalization()\n",
                                "gcomp.layers has no 'BatchNormalization' (not every Keras layer is in gcomp yet)"),
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


def test_build_writes_onnx_that_runs_like_predict(tmp_path):
    from gcomp import runtime
    out = tmp_path / "qa.onnx"
    run = run_cli("build", str(EXAMPLES / "qa_two_inputs.py"), "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"wrote {out}"
    from conftest import load_example
    model = load_example("qa_two_inputs")["model"]
    session = runtime.load(out)
    x = np.random.default_rng(0).integers(0, 10000, (2, 9))
    # The file holds model.py's freshly initialised weights, so compare shapes and sanity here;
    # numerical parity with predict is covered in test_onnx.py.
    y = session.run([x, x])
    assert y.shape == (2, 500) and np.allclose(y.sum(axis=1), 1, atol=1e-5)
    assert model.output_names == session.output_names


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_failed_build_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old contents")
    bad = tmp_path / "bad.py"
    bad.write_text("from gcomp import Input\nx = Input(shape=(3,))\nraise RuntimeError('boom')\n")
    run = run_cli("build", str(bad), "-o", str(out))
    assert run.returncode == 1 and "bad.py:3: RuntimeError: boom" in run.stderr
    assert out.read_bytes() == b"old contents"
    assert _leftovers(tmp_path) == ["bad.py", "model.onnx"]


def test_build_into_a_missing_or_unwritable_folder(tmp_path):
    run = run_cli("build", str(EXAMPLES / "mlp.py"), "-o", str(tmp_path / "no" / "such" / "m.onnx"))
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1
    assert "folder" in run.stderr and "does not exist" in run.stderr
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        run = run_cli("build", str(EXAMPLES / "mlp.py"), "-o", str(locked / "m.onnx"))
        if os.geteuid() != 0:  # root may write anywhere
            assert run.returncode == 1 and "cannot write" in run.stderr
            assert _leftovers(locked) == []
    finally:
        locked.chmod(0o700)
    run = run_cli("build", str(EXAMPLES / "mlp.py"), "-o", str(tmp_path))
    assert run.returncode == 1 and "it is a folder" in run.stderr


def test_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    from gcomp import fileio
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")

    def explode(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(fileio.os, "fsync", explode)
    with pytest.raises(KeyboardInterrupt):
        fileio.write_atomic(out, b"new contents")
    assert out.read_bytes() == b"old" and _leftovers(tmp_path) == ["m.onnx"]
