"""gcomp.models: Model, Functional and Sequential (`from gcomp.models import Model, Sequential`)."""
from gcomp.frontend.model import Functional, Model
from gcomp.frontend.sequential import Sequential

__all__ = ["Model", "Functional", "Sequential"]
