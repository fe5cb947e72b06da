"""gcomp.layers: Keras's layer classes and merge functions (`from gcomp import layers`)."""
from gcomp.frontend.layers import *  # noqa: F401,F403
from gcomp.frontend.layers import __all__  # noqa: F401
