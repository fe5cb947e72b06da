"""The op registry: one entry per op kind, holding the facts every pass and backend needs.

An entry names its parameter roles (in port order, after the data inputs) and its shape rule. The
backends find their code for an op by its name (``templates/numpy/ops/<name>.py.j2``); a test checks
that every registered op has one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from gcomp.errors import ShapeError
from gcomp.ir.types import TensorType

ShapeRule = Callable[[Mapping, Sequence[TensorType], Mapping[str, TensorType]], list[TensorType]]


@dataclass(frozen=True)
class OpDef:
    """What gcomp knows about one op kind."""

    name: str
    infer: ShapeRule
    """(attrs, data input types, param types by role) -> output types; raises ShapeError."""
    param_roles: Callable[[Mapping], tuple[str, ...]]
    """The parameter roles the op reads for given attrs, in port order (e.g. kernel, bias)."""
    min_inputs: int = 1
    max_inputs: int | None = 1
    float_inputs: bool = False
    """Data inputs are cast to float32 first (Keras layers compute in their float dtype)."""
    doc: str = ""


OPS: dict[str, OpDef] = {}


def register(name: str, *, params: Callable[[Mapping], tuple[str, ...]] = lambda a: (),
             min_inputs: int = 1, max_inputs: int | None = 1, float_inputs: bool = False):
    """Decorator registering a shape rule as op ``name``; the rule's docstring documents the op."""
    def wrap(rule: ShapeRule) -> ShapeRule:
        if name in OPS:
            raise RuntimeError(f"op {name!r} registered twice")
        OPS[name] = OpDef(name, rule, params, min_inputs, max_inputs, float_inputs,
                          (rule.__doc__ or "").strip())
        return rule
    return wrap


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op kind {name!r}; registered: {', '.join(sorted(OPS))}") from None


def infer_op(name: str, attrs: Mapping, inputs: Sequence[TensorType],
             params: Mapping[str, TensorType]) -> list[TensorType]:
    """Run op ``name``'s shape rule after checking its input count."""
    op = get_op(name)
    n = len(inputs)
    if n < op.min_inputs or (op.max_inputs is not None and n > op.max_inputs):
        want = (f"{op.min_inputs}" if op.max_inputs == op.min_inputs
                else f"at least {op.min_inputs}" if op.max_inputs is None
                else f"{op.min_inputs} to {op.max_inputs}")
        raise ShapeError(f"expects {want} input tensor(s), got {n}")
    return op.infer(attrs, inputs, params)
