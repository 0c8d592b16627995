"""``maskseg models``: the shipped models (what each is for, what it learnt from, the figures
its file holds, its files, the detector and the licences) and the architectures.

Everything shown is read from the model files' own metadata (``maskseg.pipeline.modelfile``),
so the light install (no PyTorch) lists them too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

from maskseg.cli.common import AddCommand

# The runtime each backend needs, as a person knows it.
RUNTIMES = {"onnx": "onnxruntime", "torch": "PyTorch"}
# Data sets the shipped models were trained on, by the last folder of their recorded root:
# what they are and their licence.
DATA_SETS = {"MSFD": "MFSD/MSFD face crops with pixel-exact mask labels"}
DATA_LICENCES = {"MSFD": "MIT (Rezvani, Fateh and Khosravi; cite their ABANet paper)"}
# The face detectors of --scene and video, with their origin and licence.
DETECTORS = {
    "blazeface": "MediaPipe BlazeFace short range, Apache-2.0 (NOTICE beside its ONNX file)",
    "blazeface-full": "MediaPipe BlazeFace full range, Apache-2.0 (NOTICE beside its ONNX file)",
}
WEIGHTS_LICENCE = "MIT, as maskseg"


def _levels(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics and those of its members, outermost first: a shipped file packed from a
    gated file packed before keeps each step's figures one level down."""
    out = [metrics]
    for member in metrics.get("member_metrics") or []:
        if isinstance(member, dict):
            out += _levels(member)
    return out


def _gate(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The mask-presence gate's figures: stored by ``maskseg gate``, or kept per member by
    ``maskseg pack``; the outermost (the newest) gate."""
    for level in _levels(metrics):
        if isinstance(level.get("gate"), dict):
            return level["gate"]
    return None


def _training(metrics: dict[str, Any]) -> dict[str, Any]:
    """Training figures stored with the weights (epoch and optimiser step, loss, validation
    scores)."""
    for row in _levels(metrics):
        figures = {
            k: row[k]
            for k in ("epoch", "step", "train_loss", "val_iou", "val_dice")
            if isinstance(row.get(k), (int, float))
        }
        if figures:
            return figures
    return {}


def _file(backend: str, path: Path, info: dict[str, Any] | None) -> dict[str, Any]:
    from maskseg.pipeline.backends import is_installed

    entry: dict[str, Any] = {
        "file": path.name,
        "path": str(path),
        "backend": backend,
        "runtime": RUNTIMES.get(backend, backend),
        "runtime_installed": is_installed(backend),
        "bytes": path.stat().st_size,
    }
    if info is not None:
        if path.suffix == ".onnx":
            entry["precision"] = "INT8" if info.get("int8") == "yes" else "fp32"
            if info.get("calibration"):
                c = info["calibration"]
                entry["calibration"] = f"{c.get('count')} crops of its {c.get('part')} part"
        elif path.suffix == ".safetensors":
            entry["precision"] = "float16" if info.get("metrics", {}).get("float16") else "fp32"
    return entry


def _info(path: Path) -> dict[str, Any] | None:
    """What a file says of itself; None when this install cannot read it (safetensors is
    part of the training extra)."""
    from maskseg.pipeline.modelfile import read_model_info

    try:
        return read_model_info(path)[1]
    except ImportError:
        return None


def describe_models() -> list[dict[str, Any]]:
    """One dict per shipped model, as ``maskseg models --json`` prints them."""
    from maskseg.pipeline.detect import DEFAULT_DETECTOR
    from maskseg.pipeline.face_check import check_file_beside
    from maskseg.pipeline.modelfile import read_model_info
    from maskseg.pipeline.predictor import (
        DEFAULT_MODEL,
        FAST_MODEL,
        HELDOUT_MODEL,
        available_models,
        shipped_files,
    )

    shipped = shipped_files()
    out = []
    listed = available_models()
    for name in sorted(listed, key=lambda n: (n != DEFAULT_MODEL, n)):  # the default first
        path = listed[name]
        cfg, info = read_model_info(path)
        metrics = info.get("metrics") or {}
        d = cfg.data
        every = d.test_fraction == 0
        if name == DEFAULT_MODEL:
            purpose = "segmenting new photos: the default of predict, video and serve"
        elif name == HELDOUT_MODEL:
            purpose = (
                f"held-out figures: {DEFAULT_MODEL}'s twin trained without its test split; "
                "the default of evaluate and compare"
            )
        elif name == FAST_MODEL:
            purpose = (
                "speed (`--model unet-msfd-fast`): the half-resolution U-Net, a quarter of "
                f"{DEFAULT_MODEL}'s multiply-adds, within 0.01 of its cross-validated IoU"
            )
        elif name == f"{FAST_MODEL}-heldout":
            purpose = f"held-out figures of {FAST_MODEL}: its twin trained without its test split"
        elif every:
            purpose = "segmenting new photos (trained on every pair of its data)"
        else:
            purpose = "scoring on its held-out test split (never trained on)"
        data_name = Path(d.root).name
        test = metrics.get("test") if isinstance(metrics.get("test"), dict) else None
        if test is None:
            if every:
                note = "none: it trained on every pair of its data, so it has no test split"
                twin = HELDOUT_MODEL if name == DEFAULT_MODEL else f"{name}-heldout"
                if twin in shipped:
                    note += f"; its held-out twin {twin} stands for it"
            else:
                note = (
                    "not stored in the file; measure them with `maskseg evaluate --data "
                    f"DATA --model {name}` (its own test split)"
                )
        else:
            note = ""
        files = [
            _file(backend, p, info if p == path else _info(p))
            for backend, p in shipped[name].items()
        ]
        gate = _gate(metrics)
        check = check_file_beside(path)  # one file serves every runtime's copy
        out.append(
            {
                "name": name,
                "default": name == DEFAULT_MODEL,
                "purpose": purpose,
                "trained_on": {
                    "data": data_name,
                    "about": DATA_SETS.get(data_name, ""),
                    "root": d.root,
                    "pairs": "all" if every else "outside the test split",
                    "test_fraction": d.test_fraction,
                    "split_seed": d.seed,
                    "folds": d.folds,
                },
                "gate": None
                if gate is None
                else {
                    k: gate[k] for k in ("n_positive", "n_negative", "train_accuracy") if k in gate
                },
                "training": _training(metrics),
                # the learned face check the scene path reads with this model
                "face_check": _face_check(check) if check.is_file() else None,
                "test": test,
                "test_note": note,
                "files": files,
                "runs_here": str(path),
                "input_size": d.image_size,
                "threshold": cfg.infer.threshold,
                "architecture": dataclasses.asdict(cfg.model),
                "detector": {"name": DEFAULT_DETECTOR, "about": DETECTORS.get(DEFAULT_DETECTOR)},
                "licence": {
                    "weights": WEIGHTS_LICENCE,
                    "data": DATA_LICENCES.get(data_name, "see the data set's own terms"),
                },
            }
        )
    return out


def _face_check(path: Path) -> dict[str, Any]:
    """What a learned face check file says of itself (its weights left out)."""
    data = json.loads(path.read_text())
    keep = ("rows", "masks_on_a_main_face", "painted_in_unmasked_photos", "fitted_on")
    return {"file": path.name, **{k: data[k] for k in keep if k in data}}


def architectures() -> list[str] | None:
    """Registered architecture names; None when listing them needs PyTorch, not installed."""
    try:
        from maskseg.models import list_models
    except ImportError:
        return None
    return list_models()


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def format_models(models: list[dict[str, Any]], names: list[str] | None, width: int = 100) -> str:
    """The listing ``maskseg models`` prints, wrapped to ``width`` columns."""
    from maskseg.pipeline.backends import TORCH_INSTALL

    lines = []
    for m in models:
        t, a = m["trained_on"], m["architecture"]
        if t["pairs"] == "all":
            trained = f"every pair of {t['data']} (no test split)"
        else:
            trained = (
                f"the {t['data']} pairs outside its test split ({t['test_fraction']:.0%} held "
                f"out, split seed {t['split_seed']})"
            )
        rows = [("for", m["purpose"]), ("trained on", trained)]
        if m["gate"]:
            g = m["gate"]
            text = (
                f"fitted on {g.get('n_positive')} masked and {g.get('n_negative')} unmasked "
                "face crops"
            )
            if "train_accuracy" in g:
                text += f" (training accuracy {g['train_accuracy']:.4f})"
            rows.append(("mask gate", text))
        if m["gate"]:
            c = m["face_check"]
            rows.append(
                (
                    "face check",
                    f"its own, {c['file']} ({c['rows']} painted faces, "
                    f"{c['painted_in_unmasked_photos']} of them false masks)"
                    if c
                    else "none of its own: the default model's, fitted on another model's "
                    "confidence (`maskseg gate --face-check` fits one)",
                )
            )
        if m["training"]:
            f = m["training"]
            counts = ("epoch", "step")  # whole numbers; the rest are figures
            parts = [f"{k} {int(f[k])}" for k in counts if k in f]
            parts += [f"{k.replace('_', ' ')} {f[k]:.4f}" for k in f if k not in counts]
            rows.append(("training", ", ".join(parts)))
        else:
            rows.append(("training", "no figures recorded in its file"))
        if m["test"]:
            s = m["test"]
            figures = ", ".join(f"{k} {s[k]:.4f}" for k in ("iou", "dice") if k in s)
            rows.append(
                (
                    "test figures",
                    figures + (f" ({s['n_images']} images)" if "n_images" in s else ""),
                )
            )
        else:
            rows.append(("test figures", m["test_note"]))
        for k, f in enumerate(m["files"]):
            about = [_mb(f["bytes"]), *(f[key] for key in ("precision",) if key in f)]
            about.append(f["runtime"] + ("" if f["runtime_installed"] else " not installed"))
            calibrated = f"; calibrated on {f['calibration']}" if "calibration" in f else ""
            rows.append(
                ("files" if k == 0 else "", f"{f['file']} ({', '.join(about)}{calibrated})")
            )
        params = a.get("params") if isinstance(a.get("params"), dict) else a
        shape = ", ".join(
            f"{key.replace('_', ' ')} {params[key]}"
            for key in ("base_channels", "depth", "block")
            if key in params
        )
        gated = ""
        if a.get("presence"):
            reads = a.get("presence_features", "pooled")
            gated = " with the mask gate" + (
                " (reading the encoder under the decoder's mask)" if reads == "masked" else ""
            )
        rows.append(("network", f"{a.get('name', '?')} ({shape}){gated}"))
        rows.append(("input", f"{m['input_size']} px crops, threshold {m['threshold']}"))
        rows.append(
            ("detector", f"{m['detector']['name']} (--scene, video): {m['detector']['about']}")
        )
        rows.append(("licence", f"weights {m['licence']['weights']}; data {m['licence']['data']}"))
        lines.append(m["name"] + (" (default)" if m["default"] else ""))
        for label, text in rows:
            head = f"  {label + ':' if label else '':<14}"
            lines += textwrap.wrap(
                text, width, initial_indent=head, subsequent_indent=" " * len(head)
            )
        lines.append("")
    if names is None:
        lines.append(f"architectures: (install PyTorch to list and train them: {TORCH_INSTALL})")
    else:
        lines.append("architectures: " + ", ".join(names))
    return "\n".join(lines)


def cmd_models(a: argparse.Namespace) -> int:
    models = describe_models()
    if a.json:  # everything the listing shows; architectures null where PyTorch is needed
        print(json.dumps({"models": models, "architectures": architectures()}, indent=1))
    else:
        width = min(100, shutil.get_terminal_size((100, 24)).columns)
        print(format_models(models, architectures(), width))
    return 0


def add_models(add: AddCommand) -> None:
    p = add("models", "list architectures and shipped models")
    p.add_argument(
        "--json",
        action="store_true",
        help="print it as JSON for programs: an object with 'models' (one object per "
        "shipped model) and 'architectures' (names)",
    )
    p.set_defaults(func=cmd_models)


COMMANDS = {"models": add_models}
