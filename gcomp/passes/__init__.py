"""Compiler passes over the IR: pure functions Graph -> Graph, verified after each one."""
from gcomp.passes.batch_calls import batch_shared_calls
from gcomp.passes.dead_nodes import eliminate_dead_nodes
from gcomp.passes.dedupe import dedupe_weights
from gcomp.passes.infer_shapes import infer_shapes
from gcomp.passes.lookup import fold_embedding_projections
from gcomp.passes.manager import PassRecord, Report, graph_pass, run_passes
from gcomp.passes.pipeline import OPT_LEVELS, optimize, pass_lists
from gcomp.passes.pointwise import conv1x1_to_dense, fold_dense_chains, merge_sibling_dense

__all__ = ["infer_shapes", "eliminate_dead_nodes", "conv1x1_to_dense", "fold_dense_chains", "merge_sibling_dense",
           "fold_embedding_projections",
           "dedupe_weights", "batch_shared_calls", "run_passes", "optimize", "pass_lists", "graph_pass", "Report", "PassRecord",
           "OPT_LEVELS"]
