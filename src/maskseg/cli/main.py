"""Command-line interface: parse, build a config, call one library function.

Each group of commands lives in its own module (``train``, ``evaluate``, ``media``, ``serve``,
``models``, ``data``), which adds its parsers and holds its ``cmd_*`` functions; this one
assembles the parser and maps errors to exit codes. Imports stay inside the commands, so
``maskseg predict`` never loads the training stack.
"""

from __future__ import annotations

import argparse
import os
import sys

from maskseg import __version__
from maskseg.cli import data, evaluate, media, models, serve, train
from maskseg.cli.common import METHODS, HelpFormatter
from maskseg.console import setup_logging

__all__ = ["COMMANDS", "DESCRIPTION", "METHODS", "build_parser", "main"]

DESCRIPTION = (
    "maskseg: find the exact pixels of the face mask a person wears. Train and evaluate a "
    "U-Net on MSFD, compare it with classical methods, and segment photos."
)

# The commands in the order --help lists them, and the module that adds each.
COMMANDS = (
    "train",
    "cv",
    "evaluate",
    "gate",
    "predict",
    "video",
    "serve",
    "compare",
    "tune-baselines",
    "pack",
    "export",
    "models",
    "data",
)
MODULES = (train, evaluate, media, serve, models, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskseg", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"maskseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)

    adders = {name: adder for module in MODULES for name, adder in module.COMMANDS.items()}
    if set(adders) != set(COMMANDS):
        raise RuntimeError(f"commands listed {sorted(COMMANDS)} != added {sorted(adders)}")
    for name in COMMANDS:
        adders[name](add)
    return parser


def _install_hint(exc: BaseException) -> str:
    """For a module only the ``[train]`` extra installs (``No module named 'torch'``): what to
    install, with the CPU build of PyTorch."""
    from maskseg.pipeline.backends import TORCH_INSTALL, TRAIN_MODULES

    name = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
    if name is None or name.split(".")[0] not in TRAIN_MODULES:
        return ""
    return f"; this command needs the [train] extra: {TORCH_INSTALL}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        # under torchrun, an error of rank 0 that every rank raises is printed by rank 0 only
        # (``maskseg.train.distributed.on_main`` marks the other ranks' copies)
        if getattr(exc, "relayed_from_rank", None) is None:
            print(f"error: {exc}{_install_hint(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C (a command may say what was kept: training)
        print(f"interrupted{f': {exc}' if str(exc) else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `maskseg models --json | head`: the reader left, say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
