"""The differential check behind tests/test_differential.py, tests/regressions/ and bench/fuzz.py.

`check_inference(model, arrays)`: the NumPy reference on the level-0 graph against
  - the NumPy backend on the graph after every pass pipeline (levels 0, 1, 2 for devices cpu and cuda),
  - onnxruntime (CPU, and CUDA where it really runs) on the ONNX export of each pipeline's graph
    (which must pass onnx.checker's full check),
  - Model.predict through the public API (onnx and numpy, in batches smaller than the data),
  - the C backend (predict(backend="c")) where a C compiler exists;
  with float32 tolerances, output shapes equal to the shapes the generator tracked, the printed IR
  of every pipeline deterministic, and pipelines that keep outputs' names and order.
`check_build_determinism(build)`: building the same model twice gives the same IR text, NumPy source
  and ONNX bytes.
`check_gradients(model, arrays)`: the training graph's gradients (the generated NumPy train_step run in
  float64, dropout masks from a fixed stream) against central finite differences of its loss
  (tests/test_vjp.py's numeric_grad), then one SGD step of each training backend asked for (same
  masks) against those gradients and against each other.
"""
from __future__ import annotations

import math
import shutil
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import gcomp
from gcomp.ir import print_graph
from gcomp.passes import optimize

from model_strategies import DataSpec, ModelCase, make_inputs, shape_value

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
HAVE_CC = bool(shutil.which("cc") or shutil.which("gcc"))
LEVELS = (0, 1, 2)
DEVICES = ("cpu", "cuda")
# Float32 results of different but equivalent computations (fused, folded, reordered sums): relative
# 1e-4, absolute 1e-5 of the output's largest value (at least 1).
RTOL, ATOL = 1e-4, 1e-5
# Training backends whose one SGD step is checked against the float64 gradients (and against each
# other): names that Model.train_on_batch(backend=...) takes. The C backend compiles a library per
# model, so tests/test_differential.py runs it on fewer models.
TRAIN_BACKENDS = ("numpy",)


@dataclass
class Stats:
    """What was checked: models, layer calls, kinds, IR and ONNX ops, comparisons, gradient checks."""

    models: int = 0
    calls: int = 0
    kinds: Counter = field(default_factory=Counter)
    ir_ops: Counter = field(default_factory=Counter)
    onnx_ops: Counter = field(default_factory=Counter)
    comparisons: Counter = field(default_factory=Counter)  # by backend/pipeline
    gradient_checks: int = 0
    gradient_elements: int = 0
    train_steps: Counter = field(default_factory=Counter)
    c_refused: Counter = field(default_factory=Counter)  # CBackendError messages (unsupported features)

    def add_case(self, case: ModelCase) -> None:
        self.models += 1
        self.calls += case.n_calls
        self.kinds.update(case.kinds)


def _close(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, the reference has {ref.shape}"
    scale = max(1.0, float(np.max(np.abs(ref), initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL * scale, err_msg=what)


def _as_list(outputs) -> list[np.ndarray]:
    if isinstance(outputs, dict):
        return list(outputs.values())
    return list(outputs) if isinstance(outputs, list) else [outputs]


def _ort_sessions():
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # tiny models: a thread pool costs more than it saves
    options.log_severity_level = 4  # failures are raised, not logged
    providers = [["CPUExecutionProvider"]]
    from gcomp import runtime
    if runtime.cuda_works():
        providers.append([("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"])
    return ort, options, providers


def check_inference(model, arrays: list[np.ndarray], expected_shapes: list[tuple] | None = None,
                    stats: Stats | None = None, c_backend: bool = True) -> None:
    """Every backend and pass pipeline gives the NumPy reference's outputs (see the module doc)."""
    import onnx
    from gcomp.backends.numpy_backend import compile_graph
    from gcomp.backends.onnx_backend import export_graph
    stats = stats if stats is not None else Stats()
    base = model._current_graph()
    names = [name for name, _ in base.outputs]
    reference = compile_graph(base)(base.params, arrays)
    assert len(reference) == len(names)
    batch = len(arrays[0])
    if expected_shapes is not None:
        assert [r.shape for r in reference] == [(batch,) + tuple(s) for s in expected_shapes], \
            f"output shapes {[r.shape for r in reference]}, the generator expects {expected_shapes}"
    for r in reference:
        assert np.all(np.isfinite(r)), "the reference output is not finite (the generator should prevent that)"
    stats.ir_ops.update(base.node(n)["op"] for n in base.nodes("op"))

    ort, options, providers = _ort_sessions()
    seen: dict[str, str] = {}
    for level in LEVELS:
        for device in DEVICES:
            where = f"opt_level={level} device={device}"
            graph = optimize(base, level, device)
            text = print_graph(graph)
            assert print_graph(graph) == text, f"{where}: printing the IR twice differs"
            assert [name for name, _ in graph.outputs] == names, f"{where}: outputs renamed or reordered"
            if text in seen:  # the same graph as another pipeline's (levels 0-1 ignore the device)
                continue
            seen[text] = where
            stats.ir_ops.update(graph.node(n)["op"] for n in graph.nodes("op"))
            for got, ref, name in zip(compile_graph(graph)(graph.params, arrays), reference, names):
                _close(got, ref, f"numpy backend, {where}, output {name!r}")
            stats.comparisons[f"numpy L{level}"] += 1
            proto = export_graph(graph, graph.params)
            onnx.checker.check_model(proto, full_check=True)
            stats.onnx_ops.update(node.op_type for node in proto.graph.node)
            for provider in providers:
                session = ort.InferenceSession(proto.SerializeToString(), options, providers=provider)
                outs = session.run(None, dict(zip(base.inputs, arrays)))
                label = "onnxruntime-cuda" if provider[0] != "CPUExecutionProvider" else "onnxruntime"
                for got, ref, name in zip(outs, reference, names):
                    _close(got, ref, f"{label}, {where}, output {name!r}")
                stats.comparisons[f"{label} L{level} {device}"] += 1

    step = max(1, batch - 1)  # the public API, in batches smaller than the data
    for backend in ("numpy", "onnx"):
        for got, ref, name in zip(_as_list(model.predict(arrays, batch_size=step, backend=backend)), reference, names):
            _close(got, ref, f"predict(backend={backend!r}, batch_size={step}), output {name!r}")
        stats.comparisons[f"predict {backend}"] += 1
    if c_backend and HAVE_CC:
        from gcomp.backends.c_backend import CBackendError
        try:
            outs = model.predict(arrays, batch_size=batch, backend="c")
        except CBackendError as e:  # a documented refusal ("does not support ... yet"), not a wrong answer
            if str(e).startswith("compiling the generated C failed"):
                raise
            stats.c_refused[str(e).splitlines()[0]] += 1
            return
        for got, ref, name in zip(_as_list(outs), reference, names):
            _close(got, ref, f"C backend, output {name!r}")
        stats.comparisons["c"] += 1


def check_build_determinism(build) -> None:
    """``build()`` twice (fresh sessions) gives identical IR text at every level, NumPy source and ONNX."""
    from gcomp.backends.numpy_backend import render_inference_module
    results = []
    for _ in range(2):
        gcomp.utils.clear_session()
        model = build()
        texts = [print_graph(model.optimized_graph(level, device)) for level in LEVELS for device in DEVICES]
        graph = model._current_graph()
        results.append((texts, render_inference_module(graph), model.to_onnx(2, "cuda").SerializeToString()))
    (ir1, py1, onnx1), (ir2, py2, onnx2) = results
    assert ir1 == ir2, "building the same model twice gives different IR text"
    assert py1 == py2, "building the same model twice gives different NumPy source"
    assert onnx1 == onnx2, "building the same model twice gives different ONNX bytes"


# ---- gradients ------------------------------------------------------------------------------------

DROPOUT_SEED = 7  # training-mode Dropout masks: one stream, the same in every check and backend


class _Step:
    """The training step's context: keeps the gradients instead of applying them, and draws the
    dropout masks from a fresh stream (so every run of the step sees the same masks)."""

    def __init__(self, module):
        self.grads = None
        self.dropout = module.DropoutStream(DROPOUT_SEED)

    def apply_gradients(self, grads):
        self.grads = [np.array(g) for g in grads]
        return 0


def _targets(model, arrays, seed: int) -> list[np.ndarray]:
    """Random float64 targets shaped as the model's outputs on ``arrays``."""
    from gcomp.backends.numpy_backend import compile_graph
    base = model._current_graph()
    rng = np.random.default_rng(seed + 1)
    return [rng.standard_normal(out.shape) for out in compile_graph(base)(base.params, arrays)]


def _active_dropout(model) -> bool:
    """Whether training draws masks: a Dropout layer, or a recurrent layer's input dropout."""
    graph = model._current_graph()
    return any((graph.node(n)["op"] == "dropout" and graph.node(n)["attrs"]["rate"] > 0)
               or graph.node(n)["attrs"].get("dropout", 0) > 0 for n in graph.nodes("op"))


def float64_gradients(model, arrays, targets) -> tuple[float, dict, dict, Callable]:
    """(total loss, gradients by parameter name, float64 parameters, losses()) of the model's NumPy
    training step (train_step of the generated module) run in float64 with mse on every output;
    losses() runs the step again at the current values of those float64 parameters (finite
    differences perturb them in place), with the same dropout masks."""
    from gcomp.backends.numpy_backend import load_module
    module = load_module(model.training_source())
    config = module.CONFIG
    params = {k: np.array(v, dtype=np.float64) for k, v in model._param_values().items()}
    named = dict(zip(config["inputs"], arrays))
    for spec, target in zip(config["losses"], targets):
        named[spec["output"] + "_target"] = target
        named[spec["output"] + "_sample_weight"] = np.ones(len(target))
    k = len(config["losses"])
    train_feeds = [named[n] for n in config["train_inputs"]]

    def losses():
        return module.train_step(params, train_feeds, _Step(module))[:k]

    ctx = _Step(module)
    total = float(sum(float(v) for v in module.train_step(params, train_feeds, ctx)[:k]))
    if not _active_dropout(model):  # then training and evaluation compute one function
        test = module.test_step(params, [named[n] for n in config["test_inputs"]])[:k]
        assert math.isclose(total, float(sum(float(v) for v in test)), rel_tol=1e-9), "train/test losses differ"
    return total, dict(zip(config["trainable"], ctx.grads)), params, losses


def _kink_tolerant(losses, n_targets: int, x: np.ndarray, analytic: np.ndarray, where: np.ndarray,
                   eps: float = 1e-6) -> np.ndarray:
    """For the elements ``where`` of the float64 parameter x: the analytic value where the loss has
    a kink there (its one-sided slopes differ, e.g. two equal branches into a Maximum, as weight
    copies make them) and the analytic value is a slope the kink allows; else the central
    difference (so the comparison still fails). Elsewhere: NaN (not used). Each sample at a tie adds
    its slope to one side only (where its branch wins), so with ties given wholly to one branch the
    analytic value lies in the hull of 0, the one-sided slopes and their sum."""
    out = np.full(x.shape, np.nan)
    flat = x.reshape(-1)
    total = lambda: sum(float(np.sum(o)) for o in losses()[:n_targets])  # noqa: E731
    for i in np.flatnonzero(where):
        old = flat[i]
        base = total()
        flat[i] = old + eps
        right = (total() - base) / eps
        flat[i] = old - eps
        left = (base - total()) / eps
        flat[i] = old
        kink = abs(right - left) > 1e-3 * max(1.0, abs(left), abs(right))
        hull = (0.0, left, right, left + right)
        a = float(analytic.reshape(-1)[i])
        allowed = min(hull) - 1e-6 <= a <= max(hull) + 1e-6
        out.reshape(-1)[i] = a if kink and allowed else (right + left) / 2
    return out


def check_gradients(model, arrays: list[np.ndarray], seed: int = 0, stats: Stats | None = None,
                    train_backends: tuple[str, ...] = TRAIN_BACKENDS) -> None:
    """Analytic float64 gradients == central finite differences; one SGD step of every backend in
    train_backends moves each weight by the float64 gradient (float32 tolerance), and the backends'
    updated weights agree with the first one's to float32 rounding."""
    from test_vjp import numeric_grad
    stats = stats if stats is not None else Stats()
    if not model.trainable_weights:
        return
    targets = _targets(model, arrays, seed)
    model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=1.0), loss="mse")
    arrays64 = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]
    total, grads, params, losses = float64_gradients(model, arrays64, targets)
    assert grads, "no trainable weights"
    for name, grad in grads.items():
        numeric = numeric_grad(losses, [1.0] * len(targets), params[name])
        scale = max(1.0, float(np.max(np.abs(numeric))))
        off = ~np.isclose(grad, numeric, rtol=1e-5, atol=1e-7 * scale)
        if off.any():  # a kink, where any slope between the one-sided ones is a gradient, or a bug
            numeric = np.where(off, _kink_tolerant(losses, len(targets), params[name], grad, off), numeric)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7 * scale,
                                   err_msg=f"gradient of {name!r} against finite differences")
        stats.gradient_elements += grad.size
    stats.gradient_checks += 1
    before = {k: np.array(v) for k, v in model._param_values().items()}
    weights = model.get_weights()
    targets32 = [t.astype(np.float32) for t in targets]
    first_after: dict[str, np.ndarray] | None = None
    from gcomp.backends.c_backend import CBackendError
    for backend in train_backends:
        # learning rate 1: the step is w - g, so (before - after) is the gradient to float32 rounding
        model.compile(optimizer=gcomp.optimizers.SGD(learning_rate=1.0), loss="mse")
        try:
            program = model._training_program(backend)
            program.dropout = type(program.dropout)(DROPOUT_SEED)  # the masks of the float64 check
            loss = model.train_on_batch(arrays, targets32 if len(targets32) > 1 else targets32[0], backend=backend)
        except CBackendError as e:  # a documented refusal (an op the C backend lacks), not a wrong answer
            if str(e).startswith("compiling the generated C failed"):
                raise
            stats.c_refused[str(e).splitlines()[0]] += 1
            continue
        loss = loss[0] if isinstance(loss, list) else loss  # several outputs: [total, each output's loss]
        assert math.isclose(float(loss), total, rel_tol=1e-4, abs_tol=1e-6), \
            f"train_on_batch(backend={backend!r}) loss {loss}, float64 reference {total}"
        after = model._param_values()
        for name, grad in grads.items():
            step = before[name].astype(np.float64) - after[name]
            scale = max(1.0, float(np.max(np.abs(before[name]))))
            np.testing.assert_allclose(step, grad, rtol=1e-3, atol=2e-6 * scale,
                                       err_msg=f"train_on_batch(backend={backend!r}): step of {name!r}")
        if first_after is None:
            first_after = {k: np.array(v) for k, v in after.items()}
        else:
            for name, value in after.items():
                scale = max(1.0, float(np.max(np.abs(first_after[name]))))
                np.testing.assert_allclose(value, first_after[name], rtol=1e-5, atol=1e-6 * scale,
                                           err_msg=f"{backend!r} and {train_backends[0]!r}: {name!r} after one step")
        model.set_weights(weights)
        stats.train_steps[backend] += 1


# ---- cases and reproducers ------------------------------------------------------------------------

def check_case(case: ModelCase, data: DataSpec, stats: Stats | None = None, gradients: bool = False,
               c_backend: bool = True, determinism: bool = True,
               train_backends: tuple[str, ...] = TRAIN_BACKENDS) -> None:
    """The whole differential check of one generated case."""
    stats = stats if stats is not None else Stats()
    gcomp.utils.clear_session()
    model = case.build()
    from model_strategies import keras_shape
    got = [tuple(t.shape[1:]) for t in model.outputs]
    assert got == [keras_shape(s) for s in case.outputs], f"front-end output shapes {got}, expected {case.outputs}"
    arrays = make_inputs(model, data.seed, data.batch, data.lengths)
    expected = [shape_value(s, data.lengths) for s in case.outputs]
    check_inference(model, arrays, expected, stats, c_backend)
    if gradients:
        check_gradients(model, arrays, data.seed, stats, train_backends)
    if determinism:
        check_build_determinism(case.build)
    stats.add_case(case)


def reproducer_source(case: ModelCase, data: DataSpec, error: str, xfail: str | None = None,
                      gradients: bool = False, train_backends: tuple[str, ...] = TRAIN_BACKENDS) -> str:
    first = error.strip().splitlines()[0] if error.strip() else "failure"
    doc = textwrap.fill(f"Found by the differential fuzzer: {first}", 96)
    lines = [f'"""{doc}"""', "from gcomp import Input, Model, layers", "from model_strategies import randomize_weights", "",
             f"INPUTS = {{'seed': {data.seed}, 'batch': {data.batch}, 'lengths': {dict(sorted(data.lengths.items()))!r}}}",
             f"OUTPUT_SHAPES = {[tuple(str(d) if not isinstance(d, int) else d for d in s) for s in case.outputs]!r}"]
    if gradients:
        lines.append("GRADIENTS = True")
        if tuple(train_backends) != TRAIN_BACKENDS:
            lines.append(f"TRAIN_BACKENDS = {tuple(train_backends)!r}")
    if xfail:
        lines.append(f"XFAIL = {xfail!r}")
    return "\n".join(lines) + "\n\n\n" + case.source


def check_reproducer(module, stats: Stats | None = None) -> None:
    """A tests/regressions/*.py module through the same checks as a generated case."""
    inputs = module.INPUTS
    gcomp.utils.clear_session()
    model = module.build()
    arrays = make_inputs(model, inputs["seed"], inputs["batch"], inputs["lengths"])
    expected = None
    if hasattr(module, "OUTPUT_SHAPES"):
        env = dict(inputs["lengths"])
        expected = [tuple(d if isinstance(d, int) else int(eval(d, {"__builtins__": {}}, dict(env)))
                          for d in s) for s in module.OUTPUT_SHAPES]
    check_inference(model, arrays, expected, stats)
    if getattr(module, "GRADIENTS", False):
        check_gradients(model, arrays, inputs["seed"], stats, getattr(module, "TRAIN_BACKENDS", TRAIN_BACKENDS))
    check_build_determinism(module.build)
