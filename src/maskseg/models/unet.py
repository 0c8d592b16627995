"""U-Net (Ronneberger et al., 2015) for binary segmentation; returns logits.

A ``SegmentationModel``: ``encode`` gives the stem's and every downsampling stage's maps
(full resolution first, bottleneck last), ``decode`` runs the decoder with its skip
connections. With ``presence=True`` the shared mask-presence head reads the encoder's pooled
features and the returned logits are ``min(mask logits, presence logit)``
(``SegmentationModel.gate``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from maskseg.models.base import SegmentationModel
from maskseg.models.parts import BLOCKS, Down, Up


@dataclass(frozen=True)
class UNetParams:
    """The U-Net's own options (``ModelConfig.params``); see ``UNet``."""

    base_channels: int = 16
    depth: int = 4
    block: str = "double"


class UNet(SegmentationModel):
    """Encoder of conv blocks with downsampling, bottleneck, decoder with skip connections.

    Args:
        in_channels: 3 for RGB.
        base_channels: width of the first stage; each deeper stage doubles it.
        depth: number of downsampling steps (the bottleneck sits at 1/2**depth resolution).
        presence: add a mask-presence head that gates the logits (fitted by
            ``maskseg.train.gate.fit_presence`` on the frozen encoder).
        presence_hidden: the head's hidden units (0: logistic regression).
        block: conv block: "double" (3x3 conv twice), "separable" (depthwise-separable) or
            "residual" (3x3 conv twice with a shortcut: the residual U-Net).
        attention: weight each skip connection by an attention gate driven by the decoder
            (``AttentionGate``: the attention U-Net).

    Shape: (N, in_channels, H, W) -> (N, 1, H, W) logits, for any H, W >= 1.
    """

    Params = UNetParams

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 16,
        depth: int = 4,
        presence: bool = False,
        presence_hidden: int = 256,
        block: str = "double",
        attention: bool = False,
    ):
        super().__init__()
        if depth < 1 or base_channels < 1:
            raise ValueError(f"depth and base_channels must be >= 1, got {depth}, {base_channels}")
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; valid: {', '.join(BLOCKS)}")
        conv = BLOCKS[block]
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.feature_widths = widths
        self.stem = conv(in_channels, widths[0])
        self.down = nn.ModuleList(Down(widths[i], widths[i + 1], conv) for i in range(depth))
        self.up = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], conv, attention) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], 1, 1)
        self.init_presence(presence, presence_hidden)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps, full resolution first, bottleneck last."""
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        return skips

    def decode(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Up the skips to the first map, which has the input's size already."""
        skips = list(features)
        x = skips.pop()  # bottleneck
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x)


@dataclass(frozen=True)
class ResUNetParams(UNetParams):
    block: str = "residual"


class ResUNet(UNet):
    """The U-Net with residual conv blocks (Zhang et al., 2018), registered as "resunet":
    ``UNet`` with ``block="residual"`` by default."""

    Params = ResUNetParams


@dataclass(frozen=True)
class AttUNetParams(UNetParams):
    attention: bool = True


class AttUNet(UNet):
    """The attention U-Net (Oktay et al., 2018), registered as "attunet": ``UNet`` with an
    attention gate on every skip connection by default."""

    Params = AttUNetParams
