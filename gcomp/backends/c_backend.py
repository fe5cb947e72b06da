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
C_OPS = ("dense", "embedding", "activation", "dropout", "flatten", "reshape", "conv", "max_pool", "avg_pool",
         "global_max_pool", "global_avg_pool", "concat", "add", "subtract", "multiply", "average", "maximum",
         "minimum", "lstm")


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
    """First-fit offsets in one arena; a buffer is free again after its last reader (aliases of a
    value share its buffer and extend its life). Graph outputs live to the end."""
    roots: dict[ValueRef, ValueRef] = {}
    for n in ops:
        data = graph.node(n)
        for port in range(len(data["outputs"])):
            ref = ValueRef(n, port)
            src = graph.op_inputs(n)[0] if data["op"] in ALIAS_OPS else None
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
            if roots[ref] != ref or graph.value_type(ref).dtype == "opaque":
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
    return 0


def render_c(graph: Graph, max_batch: int, max_len: int) -> dict[str, str]:
    """The C sources of ``graph`` (level-0 inference graph, shapes inferred) for batches of at most
    ``max_batch`` and free lengths of at most ``max_len``."""
    prefix = c_prefix(graph.name)
    ops = list(graph.nodes("op"))
    unsupported = sorted({graph.node(n)["op"] for n in ops} - set(C_OPS))
    if unsupported:
        raise CBackendError(f"the C backend does not support op(s) {unsupported} yet")
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

    sizes = {}
    for n in ops:
        for port, t in enumerate(graph.node(n)["outputs"]):
            if t.dtype != "opaque":
                sizes[ValueRef(n, port)] = int(np.prod([largest(d, maxima) for d in t.shape]))
    plan = _plan_buffers(graph, ops, sizes)

    weights, offset = [], 0
    param_ptr = {}
    for p in graph.nodes("param"):
        value = graph.params[p]
        weights.append({"name": p, "shape": list(value.shape), "offset": offset})
        param_ptr[p] = f"(W + {offset}L)"
        offset += int(value.size)

    def pointer(ref: ValueRef) -> str:
        if graph.kind(ref.node) == "input":
            i = graph.inputs.index(ref.node)
            ctype = {"float32": "float", "int32": "int32_t", "int64": "int64_t"}[graph.value_type(ref).dtype]
            return f"((const {ctype} *)inputs[{i}].data)"
        root = plan.roots.get(ref, ref)
        if graph.kind(root.node) == "input":
            return pointer(root)
        return f"(A + {plan.offsets[root]}L)"

    env = _env()
    blocks = []
    for n in ops:
        data = graph.node(n)
        refs = graph.op_inputs(n)
        for r in refs:
            t = graph.value_type(r)
            if data["op"] != "embedding" and t.dtype != "float32":
                raise CBackendError(f'layer "{data["layer"]}" reads {t.dtype} values; the C backend needs float32 there')
        if data["op"] in ("add", "subtract", "multiply", "average", "maximum", "minimum"):
            shapes = {tuple(graph.value_type(r).shape) for r in refs}
            if len(shapes) > 1:
                raise CBackendError(f'layer "{data["layer"]}" broadcasts; the C backend merges equal shapes only')
        xd = [[to_c(d) for d in graph.value_type(r).shape] for r in refs]
        outs = [ValueRef(n, p) for p in range(len(data["outputs"]))]
        context = {
            "x": [pointer(r) for r in refs], "xd": xd, "x_dtype": [graph.value_type(r).dtype for r in refs],
            "y": [pointer(r) for r in outs], "yd": [[to_c(d) for d in graph.value_type(r).shape] for r in outs],
            "p": {role: param_ptr[p] for role, p in graph.op_params(n).items()}, "a": data["attrs"],
            "op": data["op"], "layer": data["layer"], "node": n,
            "source": f'input "{refs[0].node}"' if refs and graph.kind(refs[0].node) == "input" else
            f'the output of "{graph.node(refs[0].node).get("layer", refs[0].node)}"' if refs else "",
        }
        if data["op"] in ("conv", "max_pool", "avg_pool"):
            context["pads"] = _pads(data["attrs"], xd[0][1:-1])
        if data["op"] == "concat":
            context["axis"] = data["attrs"]["axis"] % len(xd[0])
        code = env.get_template(f"c/ops/{data['op']}.c.j2").render(**context).rstrip("\n")
        types_text = ", ".join(str(t) for t in data["outputs"])
        blocks.append({"title": f"{n}: {data['op']} (layer \"{data['layer']}\") -> {types_text}", "code": code})

    outputs = []
    for name, ref in graph.outputs:
        dims = [to_c(d) for d in graph.value_type(ref).shape]
        shape = graph.value_type(ref).shape
        outputs.append({"name": name, "source": pointer(ref).replace("const ", ""), "dims": dims, "count": _prod(dims),
                        "max_count": int(np.prod([largest(d, maxima) for d in shape])),
                        "shape_text": "[" + ", ".join(str(d) for d in shape) + "]"})
    scratch = max([_scratch(graph, n, maxima) for n in ops] + [1])
    context = {"prefix": prefix, "name": graph.name, "inputs": inputs, "outputs": outputs, "params": weights,
               "weights_size": offset, "arena_size": max(plan.arena, 1), "scratch_size": scratch,
               "symbols": [{"var": v} for v in sorted(set(symbols.values()))], "blocks": blocks,
               "max_batch": max_batch, "max_len": max_len}
    kernels = template_dir() / "c"
    return {
        f"{prefix}.h": env.get_template("c/model.h.j2").render(**context),
        f"{prefix}.c": env.get_template("c/model.c.j2").render(**context),
        "gcomp_kernels.h": (kernels / "gcomp_kernels.h").read_text(),
        "gcomp_kernels.c": (kernels / "gcomp_kernels.c").read_text(),
        "main.c": env.get_template("c/main.c.j2").render(**context),
        "Makefile": env.get_template("c/Makefile.j2").render(**context),
    }


def weights_bytes(graph: Graph) -> bytes:
    """weights.bin: "GCW1", count, then per parameter its name, rank, dims and float32 values."""
    parts = [b"GCW1", struct.pack("<I", len(graph.params))]
    for p in graph.nodes("param"):
        value = np.ascontiguousarray(graph.params[p], dtype="<f4")
        name = p.encode()
        parts += [struct.pack("<I", len(name)), name, struct.pack("<I", value.ndim),
                  struct.pack(f"<{value.ndim}I", *value.shape), value.tobytes()]
    return b"".join(parts)
