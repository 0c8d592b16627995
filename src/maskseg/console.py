"""Terminal niceties that must not leak into logs written to files, how a long command takes
Ctrl-C, and the machine's name that every printed timing needs beside it."""

from __future__ import annotations

import os
import platform
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any


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


class StopEvent(threading.Event):
    """A stop request with its reason (the signal's name). ``closing`` is set while a command
    finishes its files: signals are then ignored, so a second Ctrl-C cannot cut the last
    writes short."""

    reason: str | None = None
    closing: bool = False

    def request(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.set()


# the signals ``stop_on_signals`` turns into a stop request; a command they stop exits
# 128 + the signal's number (130, 143), as the shell expects
SIGNAL_NAMES = ("SIGINT", "SIGTERM")


def exit_status(stopped: str | None, otherwise: int) -> int:
    """128 + the signal's number for a command a signal in ``SIGNAL_NAMES`` stopped (130,
    143), as the shell expects; else ``otherwise``."""
    return 128 + int(signal.Signals[stopped]) if stopped in SIGNAL_NAMES else otherwise


@contextmanager
def stop_on_signals(
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
    on_first: Callable[[str], None] | None = None,
) -> Iterator[StopEvent]:
    """While inside, the ``signals`` set the yielded event instead of killing the process, so
    a loop (video frames, training steps) ends where its state is whole and keeps its files;
    a second Ctrl-C raises ``KeyboardInterrupt`` as usual, except while the files are being
    finished (``StopEvent.closing``), when it is ignored. ``on_first(name)`` is called on the
    first request (to say what will happen). Off the main thread no handlers can be set: the
    event is then only set by whoever holds it."""
    stop = StopEvent()

    def handle(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop.closing:
            stop.request(name)
            return
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        first = not stop.is_set()
        stop.request(name)
        if first and on_first is not None:
            on_first(name)

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = {s: signal.signal(s, handle) for s in signals}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)
