"""Model registry: name -> constructor, so configs and checkpoints refer to models by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from maskseg.config import ModelConfig
from maskseg.models.ensemble import Ensemble, FlipTTA
from maskseg.models.unet import UNet

_REGISTRY: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "unet": lambda c: UNet(
        c.in_channels, c.base_channels, c.depth, c.presence, c.presence_hidden, c.block
    ),
}


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def register_model(name: str, builder: Callable[[ModelConfig], nn.Module]) -> None:
    """Add an architecture; later ones (deeper encoders, etc.) slot in here."""
    _REGISTRY[name] = builder


def create_model(cfg: ModelConfig) -> nn.Module:
    """Build the model a config names (wrapped as an ensemble and/or with flip TTA when the
    config says so); unknown names fail listing the valid ones."""
    if cfg.name not in _REGISTRY:
        raise ValueError(f"unknown model {cfg.name!r}; valid: {', '.join(list_models())}")
    if cfg.members < 1:
        raise ValueError(f"members must be >= 1, got {cfg.members}")
    model = _REGISTRY[cfg.name](cfg)
    if cfg.members > 1:
        model = Ensemble([model] + [_REGISTRY[cfg.name](cfg) for _ in range(cfg.members - 1)])
    return FlipTTA(model) if cfg.flip_tta else model


def is_trainable(cfg: ModelConfig) -> bool:
    """Ensembles and TTA wrappers are assembled from trained models, not trained themselves."""
    return cfg.members == 1 and not cfg.flip_tta


__all__ = [
    "Ensemble",
    "FlipTTA",
    "UNet",
    "create_model",
    "is_trainable",
    "list_models",
    "register_model",
]
