"""The optimization levels: which passes run, in which order, for which device.

    0  shape inference only: the graph as the model wrote it
    1  + clean-ups that keep the model's weights as they are: dead-node elimination, 1x1
         convolutions as dense ops, parameters deduplicated by content
    2  + merges that compute new weights from the model's (results change by float32 rounding
         only): linear dense chains folded, sibling dense ops merged (CUDA), a Dense or Conv1D
         reading an Embedding folded into lookup tables (CPU); repeated until nothing changes

The device is the one the exported file is meant for. Merging siblings trades several small matrix
products for one wide one: that pays where each kernel launch costs (CUDA), not on onnxruntime's
CPU provider, where a hand-made trial measured 0.91-1.00x; so `device="cpu"` skips it. Folding an
Embedding's reader into lookup tables trades file size (2.3x on the seed's multi-output model) for
the convolution's work: measured to pay on the CPU (0.88x -> 0.56x Keras's export), not measured on
a GPU, where the convolution is cheap and the tables' bytes are not; so only `device="cpu"` folds.
"""
from __future__ import annotations

from gcomp.ir.graph import Graph
from gcomp.passes.batch_calls import batch_shared_calls
from gcomp.passes.dead_nodes import eliminate_dead_nodes
from gcomp.passes.dedupe import dedupe_weights
from gcomp.passes.infer_shapes import infer_shapes
from gcomp.passes.lookup import fold_embedding_projections
from gcomp.passes.manager import Report, run_passes
from gcomp.passes.pointwise import conv1x1_to_dense, fold_dense_chains, merge_sibling_dense

OPT_LEVELS = (0, 1, 2)
DEVICES = ("cuda", "cpu")


def pass_lists(level: int, device: str = "cuda") -> tuple[list, list]:
    """(passes run once, passes repeated to a fixpoint) for an optimization level and device."""
    if level not in OPT_LEVELS:
        raise ValueError(f"opt_level must be one of {OPT_LEVELS}, got {level!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    once = [infer_shapes]
    if level >= 1:
        once += [eliminate_dead_nodes, conv1x1_to_dense, dedupe_weights]
    repeated = []
    if level >= 2:
        device_passes = [merge_sibling_dense, batch_shared_calls] if device == "cuda" else [fold_embedding_projections]
        repeated = [fold_dense_chains] + device_passes + [eliminate_dead_nodes]
    return once, repeated


def optimize(graph: Graph, level: int = 2, device: str = "cuda", report: Report | None = None) -> Graph:
    """Run the passes of ``level`` for ``device``, verifying after each; fill ``report`` if given."""
    once, repeated = pass_lists(level, device)
    graph = run_passes(graph, once, report=report)
    if repeated:
        graph = run_passes(graph, repeated, until_fixpoint=True, report=report)
    return graph
