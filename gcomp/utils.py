"""Utilities with Keras's names: set_random_seed, clear_session."""
from gcomp.frontend.naming import clear_session
from gcomp.initializers import set_random_seed

__all__ = ["set_random_seed", "clear_session"]
