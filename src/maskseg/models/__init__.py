"""Segmentation networks and their registry: configs and checkpoints refer to models by name.

Importing this package needs no PyTorch (``list_models`` works in the light install); the
networks themselves (``UNet``, ``SegmentationModel``, ...) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from maskseg.models.registry import (
    complete_params,
    create_model,
    is_trainable,
    list_models,
    model_class,
    register_model,
)

if TYPE_CHECKING:
    from maskseg.models.base import SegmentationModel
    from maskseg.models.ensemble import Ensemble, FlipTTA
    from maskseg.models.presence import PresenceHead
    from maskseg.models.unet import UNet, UNetParams

# public name -> the module that defines it (imported with torch when first asked for)
_LAZY = {
    "SegmentationModel": "maskseg.models.base",
    "Ensemble": "maskseg.models.ensemble",
    "FlipTTA": "maskseg.models.ensemble",
    "PresenceHead": "maskseg.models.presence",
    "UNet": "maskseg.models.unet",
    "UNetParams": "maskseg.models.unet",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Ensemble",
    "FlipTTA",
    "PresenceHead",
    "SegmentationModel",
    "UNet",
    "UNetParams",
    "complete_params",
    "create_model",
    "is_trainable",
    "list_models",
    "model_class",
    "register_model",
]
