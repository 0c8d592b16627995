"""What the command modules share: the help layout, the model options and loading the model
they name, and the check that no output replaces an input. Light: no runtime is imported here."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Adds one command: (name, one-line help) -> its parser (see ``maskseg.cli.main.build_parser``).
AddCommand = Callable[[str, str], argparse.ArgumentParser]

# Classical method names, listed in --help without importing OpenCV code at start-up
# (tests check this list against maskseg.evaluate.baselines.list_methods()).
METHODS = ("prior", "otsu", "sauvola", "canny", "kmeans", "grabcut", "watershed")


def _checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], rule: str, what: str):
    """An argparse type: ``convert`` the text, then require ``ok`` (argparse names the option
    in its error, so the message says only what is wrong with the value)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


positive_int = _checked(int, lambda v: v >= 1, "at least 1", "a whole number")
non_negative_int = _checked(int, lambda v: v >= 0, "at least 0", "a whole number")
unit_float = _checked(float, lambda v: 0.0 <= v <= 1.0, "in [0, 1]", "a number")
non_negative_float = _checked(float, lambda v: v >= 0.0, ">= 0", "a number")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Append "(default: X)" to an option's help unless it has none worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default is None or default is False or default == argparse.SUPPRESS:
            return text
        if action.option_strings and action.nargs != 0:
            return f"{text} (default: %(default)s)"
        return text


def add_model_args(p: argparse.ArgumentParser, default: str = "the shipped unet-msfd") -> None:
    p.add_argument(
        "--model",
        help=f"shipped model name or model file (.onnx, .safetensors, .pt); default: {default}",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnx", "torch"],
        help="inference runtime: auto picks onnxruntime for a shipped model when "
        "installed, else PyTorch, and for a file the runtime that reads it; onnx "
        "reads .onnx files (`maskseg export`), torch .safetensors and .pt",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (PyTorch backend)")
    p.add_argument(
        "--threshold",
        type=float,
        help="mask probability threshold (default: the "
        "one stored with the model, 0.5 for the shipped one); a lower one widens the masks "
        "found but gives none to a face the model's mask gate says has none",
    )


def load_predictor(a: argparse.Namespace, model: str | None = None):
    """The ``Predictor`` of the options ``add_model_args`` added (``model``: another model
    than ``--model`` on the same backend and device, e.g. video's ``--redo-model``)."""
    from maskseg.pipeline.predictor import Predictor

    options = {"device": a.device} if a.device != "auto" else {}
    name = a.model if model is None else model
    return Predictor.load(name, backend=a.backend, threshold=a.threshold, **options)


def model_file(a: argparse.Namespace) -> Path | None:
    """The file --model names (None when it cannot be found: loading it reports that)."""
    from maskseg.pipeline.predictor import resolve_model_path

    try:
        return resolve_model_path(a.model, backend=a.backend)
    except (FileNotFoundError, ValueError):
        return None


def refuse_overwrite(
    outputs: list[Path], files: list[Any], data: Any = None, faces: Path | None = None
) -> None:
    """Refuse, before any work, outputs that are input files of the command: ``files`` (a
    model, splits, parameters), the image/mask pairs of ``data`` and the crops and index of
    ``faces``. Inputs that cannot be listed are left to the command's own errors."""
    from maskseg.files import refuse_overwrite as refuse

    inputs = [Path(f) for f in files if f]
    if data is not None:
        from maskseg.data.pairs import find_pairs

        try:
            inputs += [f for pair in find_pairs(data).pairs for f in (pair.image, pair.mask)]
        except OSError:
            pass
    if faces is not None:
        from maskseg.data.faces import INDEX, load_index

        try:
            inputs += [faces / e.crop for e in load_index(faces) if e.crop]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        inputs.append(faces / INDEX)
    refuse(outputs, inputs)
