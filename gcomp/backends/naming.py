"""Python-identifier names for IR values in generated code: readable, unique, never shadowing."""
from __future__ import annotations

import builtins
import keyword
import re


class NameAllocator:
    """Hands out identifiers derived from IR names, avoiding keywords, builtins and ``reserved``."""

    def __init__(self, reserved: set[str] = frozenset()):
        self._taken = set(reserved) | set(keyword.kwlist) | set(dir(builtins))

    def new(self, hint: str) -> str:
        base = re.sub(r"\W+", "_", hint).strip("_") or "v"
        if base[0].isdigit():
            base = "v_" + base
        name, i = base, 1
        while name in self._taken:
            name, i = f"{base}_{i}", i + 1
        self._taken.add(name)
        return name
