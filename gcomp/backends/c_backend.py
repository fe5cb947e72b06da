"""C backend: the IR as a standalone C99 program (inference), rendered through templates/c/.

Files: <prefix>.h (the API), <prefix>.c (one commented block per op), gcomp_kernels.{h,c} (the
computations), main.c (a command-line program), Makefile, README.md, weights.bin. Buffers are
planned here: every value gets an offset in one arena sized for the build's maximum batch and
lengths, and a value's space is reused once its last reader has run.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np

from gcomp.backends.c_dims import c_symbol, largest, to_c
from gcomp.codegen import environment, template_dir
from gcomp.errors import GcompError
from gcomp.ir.graph import Graph, ValueRef

ALIAS_OPS = ("dropout", "flatten", "reshape")  # the output is the input's buffer
ALIGN = 16  # floats: 64-byte alignment of every buffer in the arena
C_OPS = ("dense", "embedding", "activation", "relu", "dropout", "flatten", "reshape", "conv", "max_pool", "avg_pool",
         "global_max_pool", "global_avg_pool", "concat", "add", "subtract", "multiply", "average", "maximum",
         "minimum", "lstm", "gru", "reverse_steps",
         # optimized inference graphs
         "embedding_conv",
         # training graphs
         "dropout_train", "lstm_train", "gru_train", "loss", "loss_vjp", "vjp", "add_n", "apply_gradients", "regularization",
         "regularization_vjp", "activity_regularization", "activity_regularization_vjp")
# Kernel libraries copied beside the generated model (each a .h and a .c in templates/c/).
KERNEL_SOURCES = ("gcomp_kernels", "gcomp_backward", "gcomp_backward_seq", "gcomp_train")
KERNEL_HEADERS = ("gcomp_math.h",)  # internal to the kernel libraries


class CBackendError(GcompError, ValueError):
    """The model uses something the C backend cannot express yet."""


def c_prefix(name: str) -> str:
    prefix = re.sub(r"\W", "_", name).strip("_").lower() or "model"
    return prefix if not prefix[0].isdigit() else "m_" + prefix


def _prod(dims) -> str:
    dims = list(dims)
    if not dims:
        return "1L"
    return "(" + " * ".join(dims) + ")" if len(dims) > 1 else dims[0]


def _env():
    env = environment()
    env.filters.setdefault("prod", _prod)
    env.filters.setdefault("act", lambda name: "GK_" + name.upper())
    return env


@dataclass
class _Plan:
    offsets: dict[ValueRef, int]
    roots: dict[ValueRef, ValueRef]
    arena: int


def _plan_buffers(graph: Graph, ops: list[str], sizes: dict[ValueRef, int]) -> _Plan:
    """First-fit offsets in one arena for the values in ``sizes``; a buffer is free again after its
    last reader (aliases of a value share its buffer and extend its life). Graph outputs live to
    the end."""
    roots: dict[ValueRef, ValueRef] = {}
    for n in ops:
        data = graph.node(n)
        for port in range(len(data["outputs"])):
            ref = ValueRef(n, port)
            src = _alias_source(graph, n) if port == 0 else None
            roots[ref] = roots.get(src, src) if src is not None else ref
    last: dict[ValueRef, int] = {}
    for i, n in enumerate(ops):
        for r in graph.op_inputs(n):
            root = roots.get(r, r)
            last[root] = max(last.get(root, -1), i)
    for _, ref in graph.outputs:
        last[roots.get(ref, ref)] = len(ops)
    offsets: dict[ValueRef, int] = {}
    free: list[tuple[int, int]] = []  # (offset, size)
    top = 0
    live: list[tuple[int, ValueRef]] = []
    for i, n in enumerate(ops):
        for end, ref in [item for item in live if item[0] < i]:  # readers all done: release
            free.append((offsets[ref], -(-sizes[ref] // ALIGN) * ALIGN))
            live.remove((end, ref))
        free.sort()
        for port in range(len(graph.node(n)["outputs"])):
            ref = ValueRef(n, port)
            if roots[ref] != ref or ref not in sizes:  # aliases, caches, gradients living in G
                continue
            need = -(-max(sizes[ref], 1) // ALIGN) * ALIGN
            for k, (start, size) in enumerate(free):
                if size >= need:
                    offsets[ref] = start
                    free[k] = (start + need, size - need)
                    break
            else:
                offsets[ref] = top
                top += need
            live.append((last.get(ref, i), ref))
    return _Plan(offsets, roots, top)


def _same_padding(n: str, k: int, s: int, d: int) -> str:
    """Keras's "same" pad before, computed at run time: floor(max((ceil(n/s)-1)s + d(k-1)+1 - n, 0) / 2)."""
    total = f"((({n} + {s - 1}L) / {s}L - 1L) * {s}L + {d * (k - 1) + 1}L - {n})"
    return f"({total} > 0 ? {total} / 2L : 0L)"


def _pads(a: dict, in_dims: list[str]) -> list[str]:
    rank = a["rank"]
    kernel = a["kernel_size"] if "kernel_size" in a else a["pool_size"]
    dilation = a.get("dilation_rate", (1,) * rank)
    pads = []
    for i in range(rank):
        if a["padding"] == "valid":
            pads.append("0L")
        elif a["padding"] == "causal":
            pads.append(f"{dilation[i] * (kernel[i] - 1)}L")
        else:
            pads.append(_same_padding(in_dims[i], kernel[i], a["strides"][i], dilation[i]))
    return pads + ["0L"] * (2 - rank)


def _winograd(graph: Graph, n: str) -> bool:
    """Whether this op can run as gk_conv2d_winograd_act: a 3x3 convolution at stride 1 without
    dilation (the kernel itself falls back to the direct sum where Winograd's transforms would cost
    more than they save). Only inference-only code uses it: code that trains keeps the direct sum,
    whose bits the NumPy program's match."""
    data = graph.node(n)
    a = data["attrs"]
    return data["op"] == "conv" and a["rank"] == 2 and all(
        tuple(a[k]) == v for k, v in (("kernel_size", (3, 3)), ("strides", (1, 1)), ("dilation_rate", (1, 1))))


def _scratch(graph: Graph, n: str, maxima: dict[str, int]) -> int:
    data = graph.node(n)
    a = data["attrs"]
    if data["op"] == "conv":
        out = graph.node(n)["outputs"][0].shape
        spatial = int(np.prod([largest(d, maxima) for d in out[1:-1]]))
        channels = graph.value_type(graph.op_inputs(n)[0]).shape[-1]
        return spatial * int(np.prod(a["kernel_size"])) * int(channels)
    if data["op"] == "lstm":
        x = graph.value_type(graph.op_inputs(n)[0]).shape
        batch, steps = largest(x[0], maxima), largest(x[1], maxima)
        return batch * steps * 4 * a["units"] + 2 * batch * a["units"]
    if data["op"] == "gru":  # gk_gru_scratch
        x = graph.value_type(graph.op_inputs(n)[0]).shape
        batch, steps = largest(x[0], maxima), largest(x[1], maxima)
        return batch * steps * 3 * a["units"] + 12 * batch * a["units"]
    return 0


@dataclass
class CFunction:
    """One generated entry point: `<prefix>_<name>(m, inputs, outputs)` computing ``graph``."""

    name: str
    graph: Graph
    doc: str


def _input_specs(graph: Graph, max_batch: int, max_len: int) -> tuple[list[dict], dict[str, int], dict[str, str]]:
    maxima: dict[str, int] = {}
    symbols: dict[str, str] = {}
    inputs = []
    for name in graph.inputs:
        t = graph.value_type(ValueRef(name))
        if t.dtype not in ("float32", "int32", "int64"):
            raise CBackendError(f'input "{name}" has dtype {t.dtype}; the C backend takes float32, int32 or int64')
        dims = []
        for axis, d in enumerate(t.shape):
            if isinstance(d, int):
                dims.append({"fixed": d})
            else:
                limit = max_batch if axis == 0 else max_len
                maxima[d] = limit
                symbols[d] = c_symbol(d)
                dims.append({"fixed": None, "var": c_symbol(d), "limit": limit})
        shape_text = "[" + ", ".join(str(d) for d in t.shape) + "]"
        inputs.append({"name": name, "dtype": t.dtype, "shape": dims, "shape_text": shape_text})
    return inputs, maxima, symbols


def _check_op(graph: Graph, n: str) -> None:
    data = graph.node(n)
    if data["op"] not in C_OPS:
        raise CBackendError(f'the C backend does not support op {data["op"]!r} (layer "{data["layer"]}") yet')
    if data["op"] in ("lstm_train", "gru_train") and data["attrs"].get("dropout"):
        kind = data["op"].split("_")[0].upper()
        raise CBackendError(f'{kind} "{data["layer"]}": the C backend does not train with dropout yet (the NumPy '
                            f'backend does; inference in C is unaffected)')
    float_only = data["op"] not in ("embedding", "embedding_conv", "loss", "loss_vjp", "vjp")
    for r in graph.op_inputs(n):
        t = graph.value_type(r)
        if float_only and t.dtype != "float32":
            raise CBackendError(f'layer "{data["layer"]}" reads {t.dtype} values; the C backend needs float32 there')


def _grad_slots(graph: Graph, param_offset: dict[str, int]) -> dict[ValueRef, str]:
    """The gradients apply_gradients reads live in the model's flat gradient buffer G, at their
    weight's offset: the optimizer then makes one pass over W and G."""
    slots = {}
    for n in graph.nodes("op"):
        data = graph.node(n)
        if data["op"] == "apply_gradients":
            for ref, p in zip(graph.op_inputs(n), data["attrs"]["params"]):
                slots[ref] = f"(G + {param_offset[p]}L)"
    return slots


def _alias_source(graph: Graph, n: str) -> ValueRef | None:
    """The value whose buffer an op's output shares: reshapes forward, and their gradients backward."""
    data = graph.node(n)
    if data["op"] in ALIAS_OPS:
        return graph.op_inputs(n)[0]
    if data["op"] == "vjp" and data["attrs"]["op"] in ALIAS_OPS and data["attrs"]["has_grad"][0]:
        a = data["attrs"]
        return graph.op_inputs(n)[a["n_inputs"] + len(a["has_grad"])]
    return None


def _render_function(fn: CFunction, env, param_offset: dict[str, int], max_batch: int, max_len: int,
                     caches: list[dict], inference_only: bool) -> dict:
    """One entry point's context: its input checks, its arena plan and one code block per op."""
    graph = fn.graph
    ops = list(graph.nodes("op"))
    for n in ops:
        _check_op(graph, n)
    inputs, maxima, symbols = _input_specs(graph, max_batch, max_len)
    grad_slot = _grad_slots(graph, param_offset)
    sizes = {}
    for n in ops:
        for port, t in enumerate(graph.node(n)["outputs"]):
            ref = ValueRef(n, port)
            if t.dtype not in ("opaque", "int64") and ref not in grad_slot:
                sizes[ref] = int(np.prod([largest(d, maxima) for d in t.shape]))
    plan = _plan_buffers(graph, ops, sizes)
    cache_of: dict[ValueRef, str] = {}

    def pointer(ref: ValueRef) -> str:
        if graph.kind(ref.node) == "input":
            i = graph.inputs.index(ref.node)
            ctype = {"float32": "float", "int32": "int32_t", "int64": "int64_t"}[graph.value_type(ref).dtype]
            return f"((const {ctype} *)inputs[{i}].data)"
        if graph.kind(ref.node) == "param":
            return f"(W + {param_offset[ref.node]}L)"
        if ref in grad_slot:
            return grad_slot[ref]
        if ref in cache_of:
            return cache_of[ref]
        if graph.value_type(ref).dtype == "int64":  # the step counter: m->iterations holds it
            return "NULL"
        root = plan.roots.get(ref, ref)
        if root != ref:
            return pointer(root)
        return f"(A + {plan.offsets[ref]}L)"

    blocks, scratch_calls = [], []
    for n in ops:
        data = graph.node(n)
        refs = graph.op_inputs(n)
        outs = [ValueRef(n, p) for p in range(len(data["outputs"]))]
        for ref in outs:
            if graph.value_type(ref).dtype == "opaque":
                cache_of[ref] = f"m->cache[{len(caches)}]"
                caches.append({"node": n, "size": cache_size_call(graph, n, maxima)})
        xd = [[to_c(d) for d in graph.value_type(r).shape] for r in refs]
        context = {
            "x": [pointer(r) for r in refs], "xd": xd, "x_dtype": [graph.value_type(r).dtype for r in refs],
            "y": [pointer(r) for r in outs], "yd": [[to_c(d) for d in graph.value_type(r).shape] for r in outs],
            "p": {role: pointer(ValueRef(p)) for role, p in graph.op_params(n).items()}, "a": data["attrs"],
            "pd": {role: graph.value_type(ValueRef(p)).shape for role, p in graph.op_params(n).items()},
            "op": data["op"], "layer": data["layer"], "node": n,
            "source": f'input "{refs[0].node}"' if refs and graph.kind(refs[0].node) == "input" else
            f'the output of "{graph.node(refs[0].node).get("layer", refs[0].node)}"' if refs else "",
        }
        if data["op"] == "vjp":
            context.update(_vjp_context(context))
            template = f"c/vjp/{data['attrs']['op']}.c.j2"
        else:
            template = f"c/ops/{data['op']}.c.j2"
        window_dims = context.get("fxd", xd)
        kind = data["attrs"].get("op", data["op"]) if data["op"] == "vjp" else data["op"]
        if kind in ("conv", "max_pool", "avg_pool"):
            context["pads"] = _pads(data["attrs"], window_dims[0][1:-1])
        context["winograd"] = inference_only and _winograd(graph, n)
        if kind == "apply_gradients":  # where the constrained weights live in W
            context["weight_of"] = {p: f"(W + {param_offset[p]}L)" for p in data["attrs"]["params"]}
        if kind == "concat":
            context["axis"] = data["attrs"]["axis"] % len(window_dims[0])
        code = env.get_template(template).render(**context).rstrip("\n")
        types_text = ", ".join(str(t) for t in data["outputs"])
        blocks.append({"title": f"{n}: {data['op']}{'(' + kind + ')' if kind != data['op'] else ''} "
                                f"(layer \"{data['layer']}\") -> {types_text}", "code": code})
        call = scratch_call(graph, n, maxima, inference_only)
        if call:
            scratch_calls.append(call)

    outputs = []
    for name, ref in graph.outputs:
        t = graph.value_type(ref)
        if t.dtype == "int64":  # the optimizer's step counter: <prefix>_iterations() gives it
            continue
        dims = [to_c(d) for d in t.shape]
        producer = graph.node(ref.node)
        is_loss = producer["kind"] == "op" and producer["op"] == "loss"
        outputs.append({"name": name, "source": pointer(ref).replace("const ", ""), "dims": dims,
                        "is_loss": is_loss, "loss_weight": producer["attrs"]["weight"] if is_loss else None,
                        "is_penalty": bool(producer.get("penalty_total")),
                        "count": _prod(dims), "max_count": int(np.prod([largest(d, maxima) for d in t.shape])),
                        "shape_text": "[" + ", ".join(str(d) for d in t.shape) + "]"})
    return {"name": fn.name, "doc": fn.doc, "inputs": inputs, "outputs": outputs, "blocks": blocks,
            "symbols": [{"var": v} for v in sorted(set(symbols.values()))], "arena": plan.arena,
            "scratch": max([_scratch(graph, n, maxima) for n in ops] + [1]), "scratch_calls": scratch_calls,
            "dim_checks": _dim_checks(graph, ops, set(symbols)),
            "work_per_sample": _work_per_sample(graph, ops, maxima) if fn.name == "forward" else 0}


def _work_per_sample(graph: Graph, ops: list[str], maxima: dict[str, int]) -> int:
    """About the multiply-adds of one sample through ``ops`` at the build's largest lengths: each
    kernel-like weight once per position (step or pixel) of its op's input, plus one per output
    value. gk_session opens a session for a call only when this times the batch is large enough."""
    work = 0
    for n in ops:
        refs = graph.op_inputs(n)
        params = graph.op_params(n)
        weights = sum(int(np.prod(graph.value_type(ValueRef(params[r])).shape))
                      for r in ("kernel", "recurrent_kernel") if r in params)
        if weights and refs:
            work += weights * int(np.prod([largest(d, maxima) for d in graph.value_type(refs[0]).shape[1:-1]]))
        for t in graph.node(n)["outputs"]:
            if t.dtype == "float32":
                work += int(np.prod([largest(d, maxima) for d in t.shape[1:]]))
    return work


def _dim_checks(graph: Graph, ops: list[str], input_dims: set[str]) -> list[dict]:
    """The free-length dims that ops compute (a convolution's or pooling's output length), each
    checked to be at least 1 before anything runs, in op order: an input too short for a window
    fails there, naming the layer, rather than running on negative lengths. ``input_dims``: the
    inputs' own free dims, checked with the inputs."""
    checks, seen = [], set(input_dims)
    for n in ops:
        for t in graph.node(n)["outputs"]:
            for axis, d in enumerate(t.shape):
                if isinstance(d, int) or d in seen:
                    continue  # fixed, or checked already
                seen.add(d)
                checks.append({"expr": to_c(d), "layer": graph.node(n)["layer"], "axis": axis})
    return checks


def _vjp_context(context: dict) -> dict:
    """Names a vjp template reads (as the NumPy backend's): the forward op's inputs (fx), outputs
    (fy), output gradients (gy, None where none flows) and where to write gx / gp."""
    a = context["a"]
    k, has_grad = a["n_inputs"], a["has_grad"]
    x, xd = context["x"], context["xd"]
    given = iter(range(k + len(has_grad), len(x)))
    gy_index = [next(given) if h else None for h in has_grad]
    produced = iter(context["y"])
    return {"fx": x[:k], "fxd": xd[:k], "fx_dtype": context["x_dtype"][:k],
            "fy": x[k:k + len(has_grad)], "fyd": xd[k:k + len(has_grad)],
            "gy": [x[i] if i is not None else None for i in gy_index],
            "gx": [next(produced) if need else None for need in a["need_inputs"]],
            "gp": {role: next(produced) for role in a["need_params"]}}


def cache_size_call(graph: Graph, n: str, maxima: dict[str, int]) -> str:
    """C expression: floats an op's saved-for-backward output needs at the build's maxima."""
    data = graph.node(n)
    if data["op"] not in ("lstm_train", "gru_train"):
        raise CBackendError(f"no C cache layout for op {data['op']!r}")
    x = graph.value_type(graph.op_inputs(n)[0]).shape
    kind = data["op"].split("_")[0]
    return f"gk_{kind}_cache_size({largest(x[0], maxima)}L, {largest(x[1], maxima)}L, {x[2]}L, {data['attrs']['units']}L)"


def scratch_call(graph: Graph, n: str, maxima: dict[str, int], inference_only: bool = False) -> str | None:
    """C expression: scratch floats a kernel needs at the build's maxima beyond the direct forward's
    (kernels declare their own size functions): the backward kernels', and in inference-only code
    Winograd's; or None."""
    data = graph.node(n)
    if inference_only and _winograd(graph, n):
        channels = graph.value_type(graph.op_inputs(n)[0]).shape[-1]
        return f"gk_conv2d_winograd_scratch({channels}L, {data['attrs']['filters']}L)"
    if data["op"] in ("lstm_train", "gru_train"):
        x = [largest(d, maxima) for d in graph.value_type(graph.op_inputs(n)[0]).shape]
        size = "gk_lstm_train_scratch" if data["op"] == "lstm_train" else "gk_gru_scratch"
        return f"{size}({x[0]}L, {x[1]}L, {x[2]}L, {data['attrs']['units']}L)"
    if data["op"] != "vjp":
        return None
    a = data["attrs"]
    x = [largest(d, maxima) for d in graph.value_type(graph.op_inputs(n)[0]).shape]
    if a["op"] == "conv":
        y = [largest(d, maxima) for d in graph.value_type(graph.op_inputs(n)[a["n_inputs"]]).shape]
        two = lambda v: "(const long[2]){" + ", ".join(f"{d}L" for d in (list(v) + [1])[:2]) + "}"
        return (f"gk_conv_backward_scratch({x[0]}L, {two(x[1:-1])}, {x[-1]}L, {two(a['kernel_size'])}, "
                f"{a['filters']}L, {two(y[1:-1])})")
    if a["op"] in ("lstm_train", "gru_train"):
        return f"gk_{a['op'].split('_')[0]}_backward_scratch({x[0]}L, {x[1]}L, {x[2]}L, {a['units']}L)"
    if a["op"] == "dense":
        rows = int(np.prod(x[:-1]))
        return f"gk_dense_backward_scratch({rows}L, {x[-1]}L, {a['units']}L)"
    return None


def render_program(name: str, functions: list[CFunction], params: dict[str, np.ndarray], max_batch: int,
                   max_len: int, trainable: list[str] | None = None, optimizer: dict | None = None) -> dict[str, str]:
    """The C sources of a model: one entry point per function (forward, and for a compiled model
    test_step and train_step), sharing the weights (in ``params``' order, trainable ones first), the
    arena, the scratch and, when ``optimizer`` is given, the optimizer's state."""
    prefix = c_prefix(name)
    trainable = list(trainable or [])
    if list(params)[:len(trainable)] != trainable:
        raise ValueError("params must list the trainable weights first, in order")
    weights, param_offset, offset = [], {}, 0
    for p in params:
        value = params[p]
        weights.append({"name": p, "shape": list(value.shape), "offset": offset})
        param_offset[p] = offset
        offset += int(value.size)
    n_trainable = sum(int(params[p].size) for p in trainable)
    env = _env()
    caches: list[dict] = []
    rendered = [_render_function(fn, env, param_offset, max_batch, max_len, caches, not trainable)
                for fn in functions]
    forward = rendered[0]
    for f in rendered:  # inputs after the model's: per loss a target, then its sample weights
        data = 0
        for j, spec in enumerate(f["inputs"]):
            spec["is_weight"] = j >= len(forward["inputs"]) and (j - len(forward["inputs"])) % 2 == 1
            spec["data_index"] = data
            data += not spec["is_weight"]
    context = {"prefix": prefix, "name": name, "functions": rendered, "inputs": forward["inputs"],
               "outputs": forward["outputs"], "params": weights, "weights_size": offset,
               "trainable_size": n_trainable, "num_trainable": len(trainable), "optimizer": optimizer,
               "arena_size": max(max(f["arena"] for f in rendered), 1),
               "scratch_size": max(f["scratch"] for f in rendered),
               "scratch_calls": sorted({c for f in rendered for c in f["scratch_calls"]}),
               "caches": caches, "max_batch": max_batch, "max_len": max_len,
               "training": next((f for f in rendered if f["name"] == "train_step"), None)}
    kernels = template_dir() / "c"
    sources = {
        f"{prefix}.h": env.get_template("c/model.h.j2").render(**context),
        f"{prefix}.c": env.get_template("c/model.c.j2").render(**context),
        "main.c": env.get_template("c/main.c.j2").render(**context),
        "Makefile": env.get_template("c/Makefile.j2").render(**context, kernel_sources=KERNEL_SOURCES,
                                                             kernel_headers=KERNEL_HEADERS),
    }
    for name in [f"{stem}.{ext}" for stem in KERNEL_SOURCES for ext in ("h", "c")] + list(KERNEL_HEADERS):
        sources[name] = (kernels / name).read_text()
    return sources


def render_c(graph: Graph, max_batch: int, max_len: int) -> dict[str, str]:
    """The C sources of ``graph`` (level-0 inference graph, shapes inferred) for batches of at most
    ``max_batch`` and free lengths of at most ``max_len``."""
    return render_program(graph.name, [CFunction("forward", graph, "Inference: the model's outputs.")],
                          program_params(graph, []), max_batch, max_len)


def weights_bytes(params: dict[str, np.ndarray]) -> bytes:
    """weights.bin: "GCW1", count, then per parameter (in the C program's order) its name, rank,
    dims and float32 values."""
    parts = [b"GCW1", struct.pack("<I", len(params))]
    for p, value in params.items():
        value = np.ascontiguousarray(value, dtype="<f4")
        name = p.encode()
        parts += [struct.pack("<I", len(name)), name, struct.pack("<I", value.ndim),
                  struct.pack(f"<{value.ndim}I", *value.shape), value.tobytes()]
    return b"".join(parts)


def program_params(graph: Graph, trainable: list[str]) -> dict[str, np.ndarray]:
    """The weights in the C program's order: the trained ones first (the optimizer's flat buffer)."""
    order = list(trainable) + [p for p in graph.nodes("param") if p not in trainable]
    return {p: graph.params[p] for p in order}
