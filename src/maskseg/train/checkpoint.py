"""Writing checkpoints (full training state, .pt) and shareable weight files (.safetensors),
atomically, and packing models into one file; loading is ``maskseg.pipeline.weights``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save

from maskseg.config import Config
from maskseg.files import atomic_write_bytes, refuse_overwrite
from maskseg.pipeline.weights import FORMAT_VERSION, load_model_file


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Serialise to memory, then write atomically: a kill mid-write leaves the old file intact."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


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
    for p in paths:
        if Path(p).suffix.lower() not in (".safetensors", ".pt"):
            raise ValueError(
                f"{p}: pack takes weight files (.safetensors, .pt); an ONNX file cannot be "
                "packed (pack the weights, then `maskseg export` the result)"
            )
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
        elif (cfg.data.split_key(), cfg.data.pairs_digest) != (
            base.data.split_key(),
            base.data.pairs_digest,
        ):
            # the packed file keeps one split: the other's training pairs would be "test"
            raise ValueError(
                f"{p}: trained on another split (test fraction, folds, grouping, seed "
                f"{cfg.data.split_key()}, pairs {cfg.data.pairs_digest or '?'}) than "
                f"{paths[0]} ({base.data.split_key()}, pairs {base.data.pairs_digest or '?'}); "
                "pack models of one split"
            )
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
