"""The intermediate representation: a graph of op, input and parameter nodes on networkx."""
from gcomp.ir.graph import Graph, ValueRef
from gcomp.ir.printer import print_graph
from gcomp.ir.types import Dim, TensorType
from gcomp.ir.verify import verify

__all__ = ["Graph", "ValueRef", "TensorType", "Dim", "print_graph", "verify"]
