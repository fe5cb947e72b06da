"""Runs a list of passes in order and verifies the IR after each, naming the pass that broke it."""
from __future__ import annotations

from typing import Callable, Sequence

from gcomp.errors import IRVerificationError
from gcomp.ir.graph import Graph
from gcomp.ir.verify import verify

Pass = Callable[[Graph], Graph]


def run_passes(graph: Graph, passes: Sequence[Pass]) -> Graph:
    """Apply ``passes`` in order; each result is verified before the next pass sees it."""
    verify(graph)
    for p in passes:
        graph = p(graph)
        try:
            verify(graph)
        except IRVerificationError as e:
            raise IRVerificationError(f"after pass {p.__name__}: {e}") from None
    return graph
