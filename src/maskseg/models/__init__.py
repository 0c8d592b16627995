"""Model registry: name -> constructor, so configs and checkpoints refer to models by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from maskseg.config import ModelConfig
from maskseg.models.unet import UNet

_REGISTRY: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "unet": lambda c: UNet(c.in_channels, c.base_channels, c.depth),
}


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def register_model(name: str, builder: Callable[[ModelConfig], nn.Module]) -> None:
    """Add an architecture; later ones (deeper encoders, etc.) slot in here."""
    _REGISTRY[name] = builder


def create_model(cfg: ModelConfig) -> nn.Module:
    """Build the model a config names; unknown names fail listing the valid ones."""
    if cfg.name not in _REGISTRY:
        raise ValueError(f"unknown model {cfg.name!r}; valid: {', '.join(list_models())}")
    return _REGISTRY[cfg.name](cfg)


__all__ = ["UNet", "create_model", "list_models", "register_model"]
