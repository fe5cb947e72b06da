"""The peers' throwaway venv for bench/train_speed.py (Keras 3 on JAX, and PyTorch on the CPU).

Never the project's environment: the venv lives outside the repository (default
/tmp/gcomp-bench-train-venv) and is created on first use with

    pip install "jax[cpu]" keras
    pip install torch==2.13.0

torch is pinned to 2.13.0 on purpose: a CPU build of exactly that release lies on this machine's
disk (pip's find-links), while an unpinned torch would download a CUDA build of several GB. jax and
keras are unpinned; the versions that ran are printed with every report. A marker file records a
finished install of exactly these steps, so later runs skip pip.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = Path("/tmp/gcomp-bench-train-venv")
INSTALL_STEPS = [["jax[cpu]", "keras"], ["torch==2.13.0"]]
VERSIONED = ["jax", "jaxlib", "keras", "torch", "numpy"]
MARKER = ".gcomp-bench-train-requirements"


class VenvError(RuntimeError):
    """The venv could not be created or its packages not installed."""


def _marker_text() -> str:
    return "\n".join(" ".join(step) for step in INSTALL_STEPS) + "\n"


def ensure_venv(venv: Path) -> Path:
    """The venv's python, creating the venv and installing INSTALL_STEPS on first use."""
    venv = venv.expanduser()
    if venv.resolve() == ROOT or ROOT in venv.resolve().parents:
        raise VenvError(f"--venv {venv} is inside the repository; use a throwaway path such as {DEFAULT_VENV}")
    python = venv / "bin" / "python"
    marker = venv / MARKER
    if python.exists() and marker.exists() and marker.read_text() == _marker_text():
        print(f"reusing venv {venv}", flush=True)
        return python
    if not python.exists():
        print(f"creating venv {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log_path = venv / "pip-install.log"
    with open(log_path, "w") as log:
        for step in INSTALL_STEPS:
            print(f"pip install {' '.join(step)} into {venv} (minutes the first time)", flush=True)
            proc = subprocess.Popen([str(python), "-m", "pip", "install", *step], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            for line in proc.stdout:  # a line per package on the console, everything in the log
                log.write(line)
                if line.startswith(("Successfully", "ERROR")):
                    print(f"  pip: {line.rstrip()}", flush=True)
                elif line.startswith(("Collecting", "Processing")):
                    print(f"  pip: {line.rstrip()[:120]}", flush=True)
            if proc.wait() != 0:
                raise VenvError(f"pip install {' '.join(step)} failed in {venv}; see {log_path}")
    marker.write_text(_marker_text())
    return python


def venv_versions(python: Path) -> dict[str, str]:
    """Installed versions of the peers' main packages in the venv ("-" where one is missing)."""
    code = ("import importlib.metadata as m, json\n"
            "def v(p):\n"
            "    try:\n        return m.version(p)\n"
            "    except m.PackageNotFoundError:\n        return '-'\n"
            f"print(json.dumps({{p: v(p) for p in {VERSIONED!r}}}))")
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


if __name__ == "__main__":  # set the venv up ahead of a run: python bench/_train_speed_venv.py [DIR]
    print(venv_versions(ensure_venv(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_VENV)))
