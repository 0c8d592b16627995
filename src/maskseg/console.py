"""Terminal niceties that must not leak into logs written to files, and the machine's name
that every printed timing needs beside it."""

from __future__ import annotations

import os
import platform
import sys


def show_progress(requested: bool = True) -> bool:
    """Progress bars only on a terminal: output redirected to a file gets none, so logs stay
    readable (one line per event, not hundreds of bar redraws)."""
    return requested and sys.stderr.isatty()


def cpu_description() -> str:
    """The CPU's model name, its cores and the matrix/vector features that decide inference
    speed (AMX, AVX-512 bf16, VNNI): timings mean nothing without it."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    amx = "AMX" if "amx_tile" in flags else "no AMX"
    extra = [f for f in ("avx512_bf16", "avx512_vnni", "avx_vnni") if f in flags]
    features = " ".join(extra) if extra else "no AVX-512 bf16/VNNI"
    return f"{name} ({os.cpu_count()} cores, {amx}, {features})"


def setup_logging(verbose: bool = False) -> None:
    """One log format for the CLI and for the server's worker processes (which start fresh
    and would otherwise log nothing of maskseg's own)."""
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
