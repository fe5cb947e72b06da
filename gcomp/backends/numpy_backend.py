"""NumPy backend: renders the IR into a standalone Python module (one template per op kind).

The generated module is the reference semantics every other backend is tested against. Rendering is
deterministic: the same graph gives the same bytes.
"""
from __future__ import annotations

import functools
import hashlib
import linecache
import types
from typing import Callable

import numpy as np

from gcomp.backends.naming import NameAllocator
from gcomp.codegen import environment, numpy_runtime, template_dir
from gcomp.ir.graph import Graph, ValueRef
from gcomp.ops import get_op


def _py_tuple(values) -> str:
    values = tuple(values)
    return repr(values)


def _env():
    env = environment()
    env.filters.setdefault("py", repr)
    env.filters.setdefault("py_tuple", _py_tuple)
    return env


def _source_of(graph: Graph, ref: ValueRef) -> str:
    """How an error should name where an op's input comes from."""
    node = graph.node(ref.node)
    if node["kind"] == "input":
        return f'input "{ref.node}"'
    return f'the output of "{node.get("layer", ref.node)}"'


def render_module(graph: Graph) -> str:
    """Python source of the forward pass of ``graph`` (shapes must be inferred)."""
    prelude = (template_dir() / "numpy" / "prelude.py").read_text()
    reserved = {n for n in vars(numpy_runtime()) if not n.startswith("__")} | {"np", "params", "inputs", "forward"}
    names = NameAllocator(reserved)
    var: dict[ValueRef, str] = {}
    input_vars = []
    for name in graph.inputs:
        var[ValueRef(name)] = names.new(name)
        input_vars.append(var[ValueRef(name)])
    param_bindings = []
    for name in graph.nodes("param"):
        var[ValueRef(name)] = names.new(name.replace("/", "_"))
        param_bindings.append((var[ValueRef(name)], name))

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
        template = env.get_template(f"numpy/ops/{data['op']}.py.j2")
        code.append(template.render(
            y=outs, x=xs, p={role: var[ValueRef(p)] for role, p in graph.op_params(n).items()},
            a=data["attrs"], node=n, layer=data["layer"],
            source=_source_of(graph, refs[0]) if refs else "").rstrip("\n"))
        layer = f' (layer "{data["layer"]}")' if data["layer"] != n.split("#")[0] else ""
        types_text = ", ".join(str(t) for t in data["outputs"])
        blocks.append({"title": f"{n}: {data['op']}{layer} -> {types_text}", "code": "\n".join(code)})
    return env.get_template("numpy/module.py.j2").render(
        name=graph.name, prelude=prelude.rstrip("\n"),
        inputs=[f"{n}: {graph.node(n)['outputs'][0]}" for n in graph.inputs],
        outputs=[f"{name}: {graph.value_type(ref)}" for name, ref in graph.outputs],
        input_names=list(graph.inputs), output_names=[name for name, _ in graph.outputs],
        param_shapes=[(name, tuple(graph.params[name].shape)) for _, name in param_bindings],
        input_vars=input_vars, param_bindings=param_bindings, blocks=blocks,
        output_vars=[var[ref] for _, ref in graph.outputs])


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
    return load_module(render_module(graph)).forward
