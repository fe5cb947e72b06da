"""The pass manager: runs passes in order, verifies the IR after each, repeats a list until nothing
changes, and records what each pass did (nodes, ops and parameter bytes before and after, and the
rewrites with their layer names) for `gcomp build --explain`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from gcomp.errors import IRVerificationError
from gcomp.ir.graph import Graph
from gcomp.ir.printer import print_graph
from gcomp.ir.verify import verify

Pass = Callable[[Graph], Graph]


def graph_pass(*, keeps_training_params: bool):
    """Mark a function Graph -> Graph as a pass. ``keeps_training_params`` says whether the rewritten
    graph still has the model's parameters one for one (so training may run on it)."""
    def wrap(fn: Pass) -> Pass:
        fn.keeps_training_params = keeps_training_params
        return fn
    return wrap


@dataclass
class PassRecord:
    name: str
    nodes: tuple[int, int]
    ops: tuple[int, int]
    param_bytes: tuple[int, int]
    rewrites: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.rewrites)


@dataclass
class Report:
    """What a pipeline did, pass by pass."""

    records: list[PassRecord] = field(default_factory=list)
    rounds: int = 0

    def text(self) -> str:
        lines = [f"{'pass':28} {'nodes':>13} {'ops':>11} {'param bytes':>25}"]
        for r in self.records:
            lines.append(f"{r.name:28} {r.nodes[0]:>6}->{r.nodes[1]:<6} {r.ops[0]:>5}->{r.ops[1]:<5} "
                         f"{r.param_bytes[0]:>12,}->{r.param_bytes[1]:<12,}")
            lines.extend(f"    {w}" for w in r.rewrites)
        if self.records:
            first, last = self.records[0], self.records[-1]
            lines.append(f"{'total':28} {first.nodes[0]:>6}->{last.nodes[1]:<6} {first.ops[0]:>5}->{last.ops[1]:<5} "
                         f"{first.param_bytes[0]:>12,}->{last.param_bytes[1]:<12,}")
        return "\n".join(lines)


def _counts(graph: Graph) -> tuple[int, int, int]:
    ops = sum(1 for _, d in graph.nx.nodes(data=True) if d["kind"] == "op")
    return graph.nx.number_of_nodes(), ops, graph.param_bytes()


def _run_one(graph: Graph, p: Pass, report: Report | None) -> Graph:
    from gcomp.passes.infer_shapes import infer_shapes
    before = _counts(graph)
    seen = len(graph.notes)
    result = p(graph)
    if result is not graph and len(result.notes) > seen and p is not infer_shapes:
        result = infer_shapes(result)  # rewrites may leave new values untyped
    try:
        verify(result)
    except IRVerificationError as e:
        raise IRVerificationError(f"after pass {p.__name__}: {e}") from None
    if report is not None:
        after = _counts(result)
        report.records.append(PassRecord(p.__name__, (before[0], after[0]), (before[1], after[1]),
                                         (before[2], after[2]), result.notes[seen:]))
    return result


def run_passes(graph: Graph, passes: Sequence[Pass], *, until_fixpoint: bool = False, max_rounds: int = 8,
               report: Report | None = None) -> Graph:
    """Apply ``passes`` in order, verifying after each; with ``until_fixpoint``, repeat the list until a
    round leaves the printed IR unchanged (at most ``max_rounds`` rounds)."""
    verify(graph)
    rounds = max_rounds if until_fixpoint else 1
    text = print_graph(graph) if until_fixpoint else ""
    for _ in range(rounds):
        for p in passes:
            graph = _run_one(graph, p, report)
        if report is not None:
            report.rounds += 1
        if until_fixpoint:
            new_text = print_graph(graph)
            if new_text == text:
                break
            text = new_text
    return graph
