"""Differential tests on random valid models (tests/model_strategies.py): onnxruntime at every
optimization level and device pipeline, the NumPy backend before and after the passes, the public
predict paths and the C backend all give the NumPy reference's outputs; the IR printer and the
whole build are deterministic; the training graph's gradients match finite differences and every
training backend's SGD step follows them. The checks live in tests/differential.py (bench/fuzz.py runs
them for as long as it is given); every reproducer in tests/regressions/ runs through them too.

Deterministic: derandomized hypothesis with a fixed number of examples per test. Hypothesis also
draws literals found in the local (non-test) modules already imported, so every gcomp module is
imported first: the examples then depend on gcomp's source only, not on which tests ran before.
"""
import importlib
import importlib.util
import pkgutil

import pytest
from hypothesis import HealthCheck, given, settings

import gcomp
from differential import HAVE_CC, REGRESSIONS, Stats, check_case, check_reproducer
from model_strategies import ALL_LAYER_KINDS, cases_with_data, model_cases

for _module in pkgutil.walk_packages(gcomp.__path__, "gcomp."):
    importlib.import_module(_module.name)


def ci(examples: int):
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@ci(300)
@given(cases_with_data())
def test_backends_and_pass_pipelines_agree(case_data):
    case, data = case_data
    check_case(case, data, c_backend=False)


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler")
@ci(40)  # each model compiles its own C library (seconds each)
@given(cases_with_data(max_steps=6))
def test_c_backend_agrees(case_data):
    case, data = case_data
    check_case(case, data, c_backend=True, determinism=False)


@ci(150)
@given(cases_with_data(small=True, max_steps=4))
def test_gradients_match_finite_differences_and_training_steps(case_data):
    case, data = case_data
    check_case(case, data, gradients=True, c_backend=False, determinism=False)


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler")
@ci(25)  # each model compiles its own C training library
@given(cases_with_data(small=True, max_steps=4))
def test_c_training_step_equals_numpys_and_follows_the_gradients(case_data):
    case, data = case_data
    check_case(case, data, gradients=True, c_backend=False, determinism=False, train_backends=("numpy", "c"))


def test_generator_covers_every_layer_kind():
    seen = set()

    @ci(300)
    @given(model_cases())
    def draw(case):
        seen.update(case.kinds)
    draw()
    assert set(ALL_LAYER_KINDS) | {"shared", "nested"} <= seen, sorted(set(ALL_LAYER_KINDS) - seen)


# ---- tests/regressions/*.py: minimal reproducers, checked forever ----------------------------------

def _load(path):
    spec = importlib.util.spec_from_file_location(f"regression_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _regressions():
    for path in sorted(REGRESSIONS.glob("*.py")):
        module = _load(path)
        marks = [pytest.mark.xfail(strict=True, reason=module.XFAIL)] if getattr(module, "XFAIL", None) else []
        yield pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("path", list(_regressions()))
def test_regression(path):
    check_reproducer(_load(path), Stats())
