"""Keras's automatic names: the first Dense is "dense", the next "dense_1", and so on."""
from __future__ import annotations

import re
from collections import defaultdict

_uids: defaultdict[str, int] = defaultdict(int)


def snake_case(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()
    return re.sub(r"(\d)_d\b", r"\1d", s)  # Conv2D -> conv2d, not conv2_d


def auto_name(prefix: str) -> str:
    n = _uids[prefix]
    _uids[prefix] += 1
    return prefix if n == 0 else f"{prefix}_{n}"


def clear_session() -> None:
    """Reset the name counters, as keras.backend.clear_session does."""
    _uids.clear()
