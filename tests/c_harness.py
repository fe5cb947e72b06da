"""Shared by the tests of the C kernel libraries: the compiler and its strict flags, a header's
enum codes, random inputs, and output buffers followed by NaN canaries (a kernel writing past its
output's end is caught)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

CC = shutil.which("cc") or shutil.which("gcc")
WARNINGS = ["-Wall", "-Wextra", "-Wpedantic", "-Werror"]
GUARD = 16  # NaN canaries after every output buffer
RTOL = ATOL = 1e-5


def header_enum(header: Path, name: str) -> dict[str, int]:
    """Codes of a header enum, from the header itself: {"relu": 1, ...} (the GK_ prefix dropped)."""
    body = re.search(r"enum\s+%s\s*\{(.*?)\}" % name, header.read_text(), re.S).group(1)
    codes, value = {}, -1
    for item in (s.strip() for s in body.split(",")):
        if not item:
            continue
        key, _, explicit = item.partition("=")
        value = int(explicit) if explicit.strip() else value + 1
        codes[key.strip()[3:].lower()] = value
    return codes


def rand(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def ptr(a):
    return None if a is None else a.ctypes.data


def check_guard(buf, n):
    assert np.isnan(buf[n:]).all(), "kernel wrote past the end of its output"


def close(got, want, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def runs_with(tmp_path: Path, *flags: str) -> bool:
    """Whether the compiler builds and runs a trivial program with these flags (sanitizer
    runtimes, OpenMP, target options)."""
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    proc = subprocess.run([CC, *flags, str(probe), "-o", str(tmp_path / "probe")], capture_output=True)
    return proc.returncode == 0 and subprocess.run([str(tmp_path / "probe")], capture_output=True).returncode == 0
