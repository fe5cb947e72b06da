"""Compiler passes over the IR: pure functions Graph -> Graph, verified after each one."""
from gcomp.passes.infer_shapes import infer_shapes
from gcomp.passes.manager import run_passes

__all__ = ["infer_shapes", "run_passes"]
