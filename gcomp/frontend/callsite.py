"""Where in the user's code a layer was called: the first stack frame outside gcomp."""
from __future__ import annotations

import sys
from pathlib import Path

_GCOMP_DIR = str(Path(__file__).resolve().parent.parent)


def user_call_site() -> str | None:
    """"file:line" of the innermost frame that is not gcomp's own code."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_GCOMP_DIR) and not filename.startswith("<frozen"):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None
