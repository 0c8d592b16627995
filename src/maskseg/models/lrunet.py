"""A U-Net that starts at half resolution: the hardware-efficient variant (issue 17).

The shipped U-Net spends most of its 1.15 GMACs per 160 px crop in its two full-resolution
16-channel convolutions: memory-bound, and too narrow for the CPU's VNNI / AMX tiles. The
real-time segmenters (Fast-SCNN, BiSeNetV2, PP-LiteSeg, LR-ASPP) instead downsample at once
and keep their wide layers at low resolution. ``LRUNet`` is the U-Net with that change and
nothing else: a strided 3x3 convolution takes the input to half resolution, the U-Net's
encoder and decoder run there (skips included), and the one-channel logits are resized
bilinearly to the input's size. At the same ``base_channels`` it does about a quarter of the
multiply-adds; at twice the channels (every layer a multiple of 32) about as many as the
U-Net, in layers twice as wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from maskseg.models.base import SegmentationModel
from maskseg.models.parts import BLOCKS, Down, Up


@dataclass(frozen=True)
class LRUNetParams:
    """``LRUNet``'s own options (``ModelConfig.params``)."""

    base_channels: int = 32
    depth: int = 4
    block: str = "double"


class LRUNet(SegmentationModel):
    """U-Net at half resolution behind a strided stem; logits resized to the input.

    Args:
        in_channels: 3 for RGB.
        base_channels: width of the half-resolution stage; each deeper stage doubles it.
        depth: downsampling steps after the stem (the bottleneck sits at 1/2**(depth+1)).
        presence, presence_hidden: the mask-presence head (see ``UNet``).
        block: "double" or "separable" conv blocks.

    Shape: (N, in_channels, H, W) -> (N, 1, H, W) logits, for any H, W >= 1.
    """

    Params = LRUNetParams

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 32,
        depth: int = 4,
        presence: bool = False,
        presence_hidden: int = 256,
        block: str = "double",
    ):
        super().__init__()
        if depth < 1 or base_channels < 1:
            raise ValueError(f"depth and base_channels must be >= 1, got {depth}, {base_channels}")
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; valid: {', '.join(BLOCKS)}")
        conv = BLOCKS[block]
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.feature_widths = widths
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            conv(widths[0], widths[0]),
        )
        self.down = nn.ModuleList(Down(widths[i], widths[i + 1], conv) for i in range(depth))
        self.up = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], conv) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], 1, 1)
        self.init_presence(presence, presence_hidden)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The half-resolution stem's map and every downsampling stage's, bottleneck last."""
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        return skips

    def decode(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The U-Net decoder up to the stem's map, logits there, resized to ``size``."""
        skips = list(features)
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)
