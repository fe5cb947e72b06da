"""Shared fixtures: fresh layer-name counters and a fixed seed for every test."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _fresh_session():
    import gcomp
    gcomp.utils.clear_session()
    gcomp.utils.set_random_seed(1234)
    yield


@pytest.fixture
def examples_dir() -> Path:
    return EXAMPLES


def load_example(name: str) -> dict:
    """Run examples/<name>.py as a module (its __main__ block does not run) and return its globals."""
    import runpy
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__example__")


sys.path.insert(0, str(Path(__file__).resolve().parent))
