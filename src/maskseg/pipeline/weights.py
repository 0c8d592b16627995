"""Loading model files with PyTorch: .pt checkpoints (``torch.load(weights_only=True)``) and
.safetensors weight files. Nothing is unpickled beyond tensors and plain containers.

Used by the PyTorch backend and by training (resume, packing); writing lives in
``maskseg.train.checkpoint``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from maskseg.config import Config

FORMAT_VERSION = 1


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / unsafe files
        raise ValueError(f"{path}: not a readable maskseg checkpoint ({_why(exc)})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path}: not a maskseg checkpoint (missing model or config)")
    return ckpt


def _why(exc: Exception) -> str:
    """torch.load's reason, without its advice to retry with weights_only=False: a file that
    needs arbitrary unpickling is exactly what maskseg refuses to open."""
    text = str(exc)
    if "Weights only load failed" not in text:
        return text.splitlines()[0] if text else type(exc).__name__
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    what = f" ({found.group(1)})" if found else ""
    return (
        f"it holds Python objects{what} besides tensors and plain containers; maskseg loads "
        "checkpoints with weights_only=True and never runs code from a model file"
    )


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], Config, dict]:
    """Returns (state_dict, config, metrics) from a .safetensors weight file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weight file not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("format") != "maskseg" or "config" not in meta:
        raise ValueError(f"{path}: safetensors file has no maskseg config metadata")
    return (
        state,
        Config.from_dict(json.loads(meta["config"])),
        json.loads(meta.get("metrics", "{}")),
    )


def load_model_file(path: str | Path) -> tuple[dict[str, torch.Tensor], Config, dict]:
    """Load a .safetensors weight file or a .pt checkpoint: (state_dict, config, metrics)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_weights(path)
    ckpt = load_checkpoint(path)
    return ckpt["model"], Config.from_dict(ckpt["config"]), {"best_metric": ckpt.get("best_metric")}
