"""Op kinds: importing this package registers every op's shape rule in OPS."""
from gcomp.ops import core, conv, merge, recurrent  # noqa: F401  (registration side effects)
from gcomp.ops.registry import OPS, OpDef, get_op, infer_op

__all__ = ["OPS", "OpDef", "get_op", "infer_op"]
