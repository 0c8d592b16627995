"""Architectures by name: configs and model files name the network, the registry builds it.

Names map to ``"module:Class"`` strings resolved on first use, so listing them needs no
PyTorch (``maskseg models`` in the light install); building one imports its module.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

from maskseg.config import ModelConfig

if TYPE_CHECKING:
    from torch import nn

    from maskseg.models.base import SegmentationModel

# name -> "module:Class" (a SegmentationModel subclass), or the class once resolved
_REGISTRY: dict[str, Any] = {
    "unet": "maskseg.models.unet:UNet",
    "resunet": "maskseg.models.unet:ResUNet",
    "attunet": "maskseg.models.unet:AttUNet",
    "lrunet": "maskseg.models.lrunet:LRUNet",
    "unetpp": "maskseg.models.unetpp:UNetPlusPlus",
}


def list_models() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_REGISTRY)


def register_model(
    name: str, model: str | type[SegmentationModel], *, replace: bool = False
) -> None:
    """Add an architecture: ``model`` is a ``SegmentationModel`` subclass or its
    ``"module:Class"`` path (imported when first built).

    Raises ValueError if ``name`` is taken, unless ``replace``: a silent overwrite would
    change what the name means in every config and model file that uses it.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a model name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(
            f"model name {name!r} is already registered (by {_target(_REGISTRY[name])}); "
            "choose another name"
        )
    if isinstance(model, str):
        module, _, cls = model.partition(":")
        if not module or not cls:
            raise ValueError(f"{model!r}: give the class as 'module:Class'")
    else:
        from maskseg.models.base import SegmentationModel

        if not (isinstance(model, type) and issubclass(model, SegmentationModel)):
            raise TypeError(f"{model!r} is not a SegmentationModel subclass")
    _REGISTRY[name] = model


def model_class(name: str) -> type[SegmentationModel]:
    """The class registered as ``name`` (importing its module); unknown names fail listing
    the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(list_models())}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        from maskseg.models.base import SegmentationModel

        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr, None)
        if not (isinstance(cls, type) and issubclass(cls, SegmentationModel)):
            raise TypeError(f"model {name!r}: {target} is not a SegmentationModel subclass")
        _REGISTRY[name] = target = cls
    return target


def complete_params(cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with every parameter of its architecture written out (defaults filled in), so
    a run's saved config says everything and a resumed run compares option by option."""
    params = model_class(cfg.name).params_from(cfg.params, cfg.name)
    return dataclasses.replace(cfg, params=dataclasses.asdict(params))


def create_model(cfg: ModelConfig) -> nn.Module:
    """Build the model a config names, wrapped as an ensemble and/or with flip TTA when the
    config says so (a ``SegmentationModel`` otherwise); unknown names fail listing the valid
    ones, unknown params naming the architecture's."""
    from maskseg.models.ensemble import Ensemble, FlipTTA

    cls = model_class(cfg.name)
    if cfg.members < 1:
        raise ValueError(f"members must be >= 1, got {cfg.members}")
    members = [cls.from_config(cfg) for _ in range(cfg.members)]
    model: nn.Module = Ensemble(members) if cfg.members > 1 else members[0]
    return FlipTTA(model) if cfg.flip_tta else model


def is_trainable(cfg: ModelConfig) -> bool:
    """Ensembles and TTA wrappers are assembled from trained models, not trained themselves."""
    return cfg.members == 1 and not cfg.flip_tta


def _target(entry: Any) -> str:
    return entry if isinstance(entry, str) else f"{entry.__module__}:{entry.__qualname__}"
