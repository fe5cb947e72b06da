"""gcomp.layers: Keras's layer classes and merge functions (`from gcomp import layers`)."""
import difflib

from gcomp.frontend.layers import *  # noqa: F401,F403
from gcomp.frontend.layers import __all__  # noqa: F401


def __getattr__(name: str):
    """A missing layer is an AttributeError (hasattr stays False) that says what gcomp has: a Keras
    layer gcomp lacks, or a misspelt one (Conv2d, Concatenate's lowercase twin), is then obvious."""
    if name.startswith("__"):
        raise AttributeError(f"module 'gcomp.layers' has no attribute {name!r}")
    by_lower = {n.lower(): n for n in __all__}
    near = [by_lower[n] for n in difflib.get_close_matches(name.lower(), by_lower, n=3, cutoff=0.75)]
    hint = f"did you mean {' or '.join(near)}? " if near else ""
    raise AttributeError(f"gcomp.layers has no {name!r} ({hint}not every Keras layer is in gcomp yet); its "
                         f"layers: {', '.join(sorted(n for n in __all__ if n[0].isupper()))}")
