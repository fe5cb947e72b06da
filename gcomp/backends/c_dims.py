"""Symbolic dims of the IR as C expressions, and their largest values for buffer planning."""
from __future__ import annotations

import ast
import math
import re

from gcomp.ir.types import Dim

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def c_symbol(name: str) -> str:
    return "d_" + re.sub(r"\W", "_", name)


def _c(node: ast.AST) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return f"{node.value}L"
    if isinstance(node, ast.Name):
        return c_symbol(node.id)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.FloorDiv):  # floor, not C's truncation: a too-short input's dim is negative
            return f"GC_FLOORDIV({_c(node.left)}, {_c(node.right)})"
        ops = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*"}
        if type(node.op) in ops:
            return f"({_c(node.left)} {ops[type(node.op)]} {_c(node.right)})"
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ceil" and len(node.args) == 1:
        inner = node.args[0]
        if isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.Div):
            a, b = _c(inner.left), _c(inner.right)
            return f"(({a} + {b} - 1) / {b})"
    raise ValueError(f"cannot express dim {ast.unparse(node)!r} in C")


def to_c(dim: Dim) -> str:
    """A C expression (long) for a dim: ints as literals, symbols as d_<name> variables."""
    if isinstance(dim, int):
        return f"{dim}L"
    return _c(ast.parse(dim, mode="eval").body)


def largest(dim: Dim, maxima: dict[str, int]) -> int:
    """The dim's value when every symbol takes its maximum (dims grow with their symbols)."""
    if isinstance(dim, int):
        return dim
    env = {name: maxima[name] for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", dim) if name != "ceil"}
    value = eval(compile(ast.parse(dim, mode="eval"), "<dim>", "eval"), {"ceil": math.ceil, "__builtins__": {}}, env)
    return max(int(value), 0)
