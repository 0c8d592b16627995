"""The contract every architecture keeps, so the rest of maskseg never guesses at a model.

Who relies on what:

* every backend, ``Predictor``, the scene path, video, serve, ``Ensemble`` and ``FlipTTA``:
  ``forward``: (N, in_channels, H, W) float -> (N, 1, H, W) logits, for any H, W >= 1; one
  tensor out, so the threshold and the clean-up are the same for every architecture;
* the mask-presence gate (``maskseg.train.gate``): ``presence_features`` (from ``encode``,
  ``feature_widths`` and, for ``masked`` features, ``decode``), ``make_presence_head`` and
  ``attach_presence``; ``forward`` then returns ``min(mask logits, presence logit)``;
* the ONNX export (``maskseg.train.export``, ``maskseg.train.quantize``): ``head`` is the
  only convolution with one output channel, found by that shape in the graph and kept fp32
  by INT8; a ``presence`` head pools to a fixed grid, so such a model exports at one size;
* weight files (``maskseg.train.checkpoint``): the presence head's tensors are named
  ``presence.*`` and stay float32 in half-precision files;
* the registry (``maskseg.models``): ``Params``, the architecture's own options
  (``ModelConfig.params``), and ``from_config``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from maskseg.models.presence import PresenceHead

if TYPE_CHECKING:
    from maskseg.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class NoParams:
    """An architecture without options of its own."""


class SegmentationModel(nn.Module):
    """Base class of every registered architecture: an encoder, a decoder to logits, and a
    slot for the mask-presence head.

    A subclass:

    * sets ``Params`` to a frozen dataclass of its own options (``ModelConfig.params``; the
      defaults there are the architecture's defaults);
    * takes ``in_channels``, ``presence``, ``presence_hidden`` and every ``Params`` field as
      keyword arguments of ``__init__`` (``from_config`` passes them);
    * sets ``feature_widths`` and ``head`` and calls ``init_presence`` in ``__init__``;
    * implements ``encode`` and ``decode``; ``forward`` is shared, so the gate works alike
      for every architecture.

    Attributes:
        feature_widths: channels of each map ``encode`` returns, in its order.
        head: the last layer, a convolution with one output channel (the logits).
        presence: the mask-presence head, or None (no gate).
    """

    Params: ClassVar[type[Any]] = NoParams

    feature_widths: list[int]
    head: nn.Conv2d
    presence: PresenceHead | None

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> SegmentationModel:
        """The model ``cfg`` describes; unknown params fail naming the valid ones."""
        params = dataclasses.asdict(cls.params_from(cfg.params, cfg.name))
        model = cls(
            in_channels=cfg.in_channels,
            presence=cfg.presence,
            presence_hidden=cfg.presence_hidden,
            **params,
        )
        if cfg.presence and cfg.presence_features != "pooled":
            model.init_presence(True, cfg.presence_hidden, cfg.presence_features)
        return model

    @classmethod
    def params_from(cls, params: Mapping[str, Any], name: str | None = None) -> Any:
        """``params`` as this architecture's ``Params`` (missing ones take its defaults)."""
        valid = [f.name for f in dataclasses.fields(cls.Params)]
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown param(s) {unknown} for model {name or cls.__name__!r}; "
                f"valid: {', '.join(valid) or '(none)'}"
            )
        return cls.Params(**params)

    def init_presence(self, presence: bool, hidden: int, kind: str = "pooled") -> None:
        """Give the model an (unfitted) presence head, or none; call after the encoder."""
        self.presence = self.make_presence_head(hidden, kind) if presence else None

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps (``feature_widths`` channels each), deepest last."""
        raise NotImplementedError

    def decode(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Logits (N, 1, *size) from ``encode``'s maps; ``size`` is the input's (H, W)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encode(x)
        return self.gate(self.decode(features, x.shape[-2:]), features)

    def gate(self, logits: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """``min(mask logits, presence logit)``: a pixel is mask only where the decoder says so
        and the face wears a mask, so an unmasked face gets an empty mask from one tensor."""
        if self.presence is None:
            return logits
        return torch.minimum(logits, self.presence(features, logits)[:, :, None, None])

    def presence_features(self, x: torch.Tensor, kind: str = "pooled") -> torch.Tensor:
        """The presence head's input (N, F) for a normalised batch (the gate fits on these);
        ``masked`` features also run the decoder (without any gate)."""
        maps = self.encode(x)
        logits = self.decode(maps, x.shape[-2:]) if kind == "masked" else None
        return PresenceHead.features(maps, logits, kind)

    def make_presence_head(self, hidden: int, kind: str = "pooled") -> PresenceHead:
        """A new presence head that fits this model's encoder."""
        return PresenceHead(self.feature_widths, hidden, kind)

    def attach_presence(self, head: PresenceHead) -> None:
        """Install a fitted presence head (``maskseg.train.gate.fit_presence``)."""
        want = PresenceHead.n_features(self.feature_widths, head.kind)
        if head.mean.numel() != want:
            raise ValueError(
                f"the presence head reads {head.mean.numel()} features; this model's encoder "
                f"gives {want}"
            )
        self.presence = head
