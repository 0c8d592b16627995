"""maskseg.console: progress bars only on a terminal, the CPU's description beside timings,
one log format for the CLI and the server's workers."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from maskseg import console


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("tty", "requested", "shown"),
    [(True, True, True), (True, False, False), (False, True, False), (False, False, False)],
)
def test_show_progress_only_on_a_terminal_and_when_asked(monkeypatch, tty, requested, shown):
    monkeypatch.setattr(sys, "stderr", _Stream(tty))
    assert console.show_progress(requested) is shown


def test_show_progress_defaults_to_asked(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Stream(True))
    assert console.show_progress() is True


def _fake_cpuinfo(monkeypatch, text: str | None) -> None:
    """Make console read ``text`` as /proc/cpuinfo (None: the file cannot be opened)."""

    def fake_open(path, *args, **kwargs):
        assert path == "/proc/cpuinfo"
        if text is None:
            raise FileNotFoundError(path)
        return io.StringIO(text)

    monkeypatch.setattr(console, "open", fake_open, raising=False)


CPUINFO = """processor\t: 0
model name\t: Example CPU 9000
flags\t\t: fpu sse2 avx2 amx_tile avx512_bf16 avx512_vnni
processor\t: 1
model name\t: Another name, never read
flags\t\t: fpu
"""


def test_cpu_description_names_the_cpu_cores_and_features(monkeypatch):
    _fake_cpuinfo(monkeypatch, CPUINFO)
    assert console.cpu_description() == (
        f"Example CPU 9000 ({os.cpu_count()} cores, AMX, avx512_bf16 avx512_vnni)"
    )


def test_cpu_description_without_the_features(monkeypatch):
    _fake_cpuinfo(monkeypatch, "model name\t: Plain CPU\nflags\t\t: fpu sse2 avx2 avx_vnni\n")
    assert console.cpu_description().endswith("cores, no AMX, avx_vnni)")
    _fake_cpuinfo(monkeypatch, "model name\t: Plain CPU\nflags\t\t: fpu sse2\n")
    assert console.cpu_description().endswith("cores, no AMX, no AVX-512 bf16/VNNI)")


def test_cpu_description_without_proc_cpuinfo(monkeypatch):
    _fake_cpuinfo(monkeypatch, None)
    monkeypatch.setattr(console.platform, "processor", lambda: "")
    monkeypatch.setattr(console.platform, "machine", lambda: "riscv64")
    cores = os.cpu_count()
    assert console.cpu_description() == f"riscv64 ({cores} cores, no AMX, no AVX-512 bf16/VNNI)"
    monkeypatch.setattr(console.platform, "machine", lambda: "")
    assert console.cpu_description().startswith("unknown CPU (")


def test_cpu_description_of_this_machine():
    text = console.cpu_description()
    assert re.fullmatch(r".+ \(\d+ cores, (AMX|no AMX), .+\)", text), text


def _log(verbose: bool) -> str:
    """stderr of a fresh process (the logging set-up applies once per process) that calls
    setup_logging and logs at every level."""
    code = (
        "import logging\n"
        "from maskseg.console import setup_logging\n"
        f"setup_logging({verbose})\n"
        "log = logging.getLogger('maskseg.example')\n"
        "log.debug('debug line'); log.info('info line'); log.warning('warning line')\n"
        "logging.getLogger('matplotlib').info('matplotlib chatter')\n"
        "logging.getLogger('matplotlib').warning('matplotlib warning')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == ""  # logs go to stderr: stdout stays for results
    return out.stderr


def test_setup_logging_format_and_levels():
    err = _log(False).splitlines()
    assert err == [
        "INFO maskseg.example: info line",
        "WARNING maskseg.example: warning line",
        "WARNING matplotlib: matplotlib warning",
    ]


def test_setup_logging_verbose_shows_debug_but_not_matplotlibs_chatter():
    err = _log(True).splitlines()
    assert err[0] == "DEBUG maskseg.example: debug line"
    assert "matplotlib chatter" not in "\n".join(err)
    assert "WARNING matplotlib: matplotlib warning" in err
