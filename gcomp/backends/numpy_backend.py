"""NumPy backend: renders IR graphs into a standalone Python module (one template per op kind).

An inference module holds `forward`; a training module adds `test_step` and `train_step` (forward,
losses, backward and the optimizer update, all from one training graph) and the runtime that runs
them (`templates/numpy/*.py`, copied in verbatim, so the module needs only NumPy). The generated
code is the reference semantics every other backend is tested against. Rendering is deterministic:
the same graphs give the same bytes.
"""
from __future__ import annotations

import functools
import hashlib
import linecache
import types
from typing import Callable

import numpy as np

from gcomp.backends.naming import NameAllocator
from gcomp.codegen import environment, template_dir
from gcomp.ir.graph import Graph, ValueRef
from gcomp.ops import get_op

INFERENCE_RUNTIME = ("prelude.py",)
TRAINING_RUNTIME = ("prelude.py", "vjp.py", "losses.py", "schedules.py", "optimizers.py", "constraints.py",
                    "training.py")
_RESERVED = {"np", "params", "inputs", "ctx", "forward", "test_step", "train_step", "CONFIG", "load"}


def _env():
    env = environment()
    env.filters.setdefault("py", repr)
    env.filters.setdefault("py_tuple", lambda values: repr(tuple(values)))
    env.filters.setdefault("default_name", lambda name: name or "_")
    return env


def runtime_source(files: tuple[str, ...]) -> str:
    return "\n\n".join((template_dir() / "numpy" / f).read_text().rstrip("\n") for f in files)


def _runtime_names(source: str) -> set[str]:
    namespace: dict = {}
    exec(compile(source, "<gcomp-runtime>", "exec"), namespace)
    return {n for n in namespace if not n.startswith("__")}


def _source_of(graph: Graph, ref: ValueRef) -> str:
    """How an error should name where an op's input comes from."""
    node = graph.node(ref.node)
    if node["kind"] == "input":
        return f'input "{ref.node}"'
    return f'the output of "{node.get("layer", ref.node)}"'


def _vjp_context(graph: Graph, n: str, xs: list[str], outs: list[str], attrs: dict) -> dict:
    """Names a vjp template reads: the forward op's inputs (fx), outputs (fy), output gradients (gy,
    None where no gradient flows), the gradients it must define (gx per input, gp per role), and
    gp_slot: per role, the weight's place in apply_gradients when that alone reads the gradient
    (the template may then compute it in place, in the program's gradient buffer), else None."""
    k, has_grad = attrs["n_inputs"], attrs["has_grad"]
    fx, fy, given = xs[:k], xs[k:k + len(has_grad)], iter(xs[k + len(has_grad):])
    gy = [next(given) if h else None for h in has_grad]
    produced = iter(outs)
    gx = [next(produced) if need else None for need in attrs["need_inputs"]]
    gp = {role: next(produced) for role in attrs["need_params"]}
    first_gp = sum(1 for need in attrs["need_inputs"] if need)
    gp_slot = {}
    for i, role in enumerate(attrs["need_params"]):
        readers = graph.consumers(ValueRef(n, first_gp + i))
        alone = len(readers) == 1 and graph.node(readers[0][0])["op"] == "apply_gradients"
        gp_slot[role] = readers[0][1] if alone else None
    return {"fx": fx, "fy": fy, "gy": gy, "gx": gx, "gp": gp, "gp_slot": gp_slot}


def render_function(graph: Graph, name: str, doc: str, reserved: set[str]) -> str:
    """One `def name(params, inputs, ctx=None)` computing ``graph`` (shapes must be inferred)."""
    names = NameAllocator(reserved)
    var: dict[ValueRef, str] = {}
    input_vars = [names.new(n) for n in graph.inputs]
    for n, v in zip(graph.inputs, input_vars):
        var[ValueRef(n)] = v
    param_bindings = []
    for p in graph.nodes("param"):
        var[ValueRef(p)] = names.new(p.replace("/", "_"))
        param_bindings.append((var[ValueRef(p)], p))
    env = _env()
    blocks = []
    for n in graph.nodes("op"):
        data = graph.node(n)
        op = get_op(data["op"])
        refs = graph.op_inputs(n)
        xs = [var[r] for r in refs]
        code = []
        if op.float_inputs:  # Keras layers compute in float32 whatever the input dtype
            for i, r in enumerate(refs):
                if graph.value_type(r).dtype != "float32":
                    cast = names.new(f"{xs[i]}_f32")
                    code.append(f"{cast} = {xs[i]}.astype(np.float32)")
                    xs[i] = cast
        outs = [names.new(f"{n}_out" if i == 0 else f"{n}_out{i}") for i in range(len(data["outputs"]))]
        for i, o in enumerate(outs):
            var[ValueRef(n, i)] = o
        context = {"y": outs, "x": xs, "a": data["attrs"], "node": n, "layer": data["layer"],
                   "p": {role: var[ValueRef(p)] for role, p in graph.op_params(n).items()},
                   "source": _source_of(graph, refs[0]) if refs else ""}
        if data["op"] == "vjp":
            context.update(_vjp_context(graph, n, xs, outs, data["attrs"]))
        code.append(env.get_template(f"numpy/ops/{data['op']}.py.j2").render(**context).rstrip("\n"))
        layer = f' (layer "{data["layer"]}")' if data["layer"] != n.split("#")[0].split("/")[0] else ""
        types_text = ", ".join(str(t) for t in data["outputs"])
        blocks.append({"title": f"{n}: {data['op']}{layer} -> {types_text}", "code": "\n".join(code)})
    return env.get_template("numpy/function.py.j2").render(
        name=name, doc=doc, input_vars=input_vars, param_bindings=param_bindings, blocks=blocks,
        output_vars=[var[ref] for _, ref in graph.outputs]).rstrip("\n")


def render_module(title: str, functions: list[tuple[str, Graph, str]], runtime: tuple[str, ...] = INFERENCE_RUNTIME,
                  config: dict | None = None) -> str:
    """A module: the runtime files, then each (name, graph, docstring) as a function."""
    source = runtime_source(runtime)
    reserved = _runtime_names(source) | _RESERVED
    main = functions[0][1]
    return _env().get_template("numpy/module.py.j2").render(
        title=title, runtime=source,
        inputs=[f"{n}: {main.node(n)['outputs'][0]}" for n in main.inputs],
        outputs=[f"{name}: {main.value_type(ref)}" for name, ref in main.outputs],
        input_names=list(main.inputs), output_names=[name for name, _ in main.outputs],
        param_shapes=[(p, tuple(main.params[p].shape)) for p in main.nodes("param")],
        functions=[render_function(g, name, doc, reserved) for name, g, doc in functions],
        config=config)


def render_inference_module(graph: Graph) -> str:
    """The forward pass of ``graph`` as a module."""
    doc = ("Run the model: `params` maps PARAM_SHAPES' names to float32 arrays, `inputs` is a list in\n"
           "    INPUT_NAMES order. Returns the outputs as a list in OUTPUT_NAMES order.")
    return render_module(f'Forward pass of model "{graph.name}"', [("forward", graph, doc)])


@functools.lru_cache(maxsize=64)
def load_module(source: str) -> types.ModuleType:
    """Execute generated source as a module (cached by content); tracebacks show its lines."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    filename = f"<gcomp-numpy-{digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"gcomp_generated_{digest}")
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def compile_graph(graph: Graph) -> Callable[[dict[str, np.ndarray], list[np.ndarray]], list[np.ndarray]]:
    """A callable forward(params, inputs) -> outputs for ``graph``."""
    return load_module(render_inference_module(graph)).forward

