"""Checkpoints (full training state, .pt) and shareable weight files (.safetensors).

Both are written atomically and loaded without unpickling arbitrary objects: .pt files with
``torch.load(weights_only=True)``, weight files with safetensors.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from maskseg.config import Config
from maskseg.io import atomic_write_bytes, refuse_overwrite

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Serialise to memory, then write atomically: a kill mid-write leaves the old file intact."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


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


def save_weights(
    path: str | Path,
    model: torch.nn.Module,
    cfg: Config,
    metrics: dict | None = None,
    half: bool = False,
) -> None:
    """Write model weights + the config needed to rebuild and preprocess for it.

    ``half`` stores floating-point tensors as float16 (half the size; the presence head's
    stay float32); loading casts them back into the model's float32 parameters.
    """
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        # The presence head stays float32: it is tiny, and its feature statistics and
        # weights set one decision per face, where float16 rounding could flip it.
        small = half and v.is_floating_point() and ".presence." not in f".{k}"
        tensors[k] = v.half() if small else v
    meta = {
        "format": "maskseg",
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(cfg.to_dict()),
        "metrics": json.dumps(metrics or {}),
    }
    atomic_write_bytes(Path(path), st_save(tensors, metadata=meta))


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


def combine_weights(
    paths: list[str | Path], output: str | Path, flip_tta: bool = False, half: bool = False
) -> tuple[Config, dict]:
    """Write one weight file holding one model or an ensemble of same-architecture models,
    optionally with flip TTA and float16 storage.

    The members' configs must agree on everything that shapes the network or its input.
    ``output`` may not be one of them (``OverwriteError``, before anything is read).
    """
    from maskseg.models import Ensemble, FlipTTA, create_model

    if not paths:
        raise ValueError("no member models given")
    refuse_overwrite([output], paths, "write the packed model to a new file (--output)")
    members, base, sources = [], None, []
    for p in paths:
        state, cfg, source = load_model_file(p)
        sources.append(source)
        if cfg.model.members != 1 or cfg.model.flip_tta:
            raise ValueError(f"{p}: already an ensemble/TTA model; give single models")
        key = (cfg.model, cfg.data.image_size)
        if base is None:
            base = cfg
        elif key != (base.model, base.data.image_size):
            raise ValueError(f"{p}: architecture or input size differs from {paths[0]}")
        net = create_model(cfg.model)
        net.load_state_dict(state)
        members.append(net)
    model: torch.nn.Module = Ensemble(members) if len(members) > 1 else members[0]
    if flip_tta:
        model = FlipTTA(model)
    cfg = base.replace("model", members=len(members), flip_tta=flip_tta)
    info = {
        "members": [str(p) for p in paths],
        "flip_tta": flip_tta,
        "float16": half,
        "member_metrics": sources,
    }  # provenance (e.g. the gate's training) survives packing
    save_weights(output, model, cfg, info, half=half)
    return cfg, info
