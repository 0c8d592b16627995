"""Terminal niceties that must not leak into logs written to files."""

from __future__ import annotations

import sys


def show_progress(requested: bool = True) -> bool:
    """Progress bars only on a terminal: output redirected to a file gets none, so logs stay
    readable (one line per event, not hundreds of bar redraws)."""
    return requested and sys.stderr.isatty()
