"""Op kinds: importing this package registers every op's shape rule in OPS."""
from gcomp.ops import conv, core, merge, recurrent, training  # noqa: F401  (registration side effects)
from gcomp.ops.registry import OPS, OpDef, get_op, infer_op

__all__ = ["OPS", "OpDef", "get_op", "infer_op"]
