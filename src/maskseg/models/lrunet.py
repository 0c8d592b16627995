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

from maskseg.models.parts import BLOCKS
from maskseg.models.unet import UNet, UNetParams


@dataclass(frozen=True)
class LRUNetParams(UNetParams):
    """``LRUNet``'s options (``ModelConfig.params``): the U-Net's, twice as wide by default."""

    base_channels: int = 32


class LRUNet(UNet):
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
        super().__init__(in_channels, base_channels, depth, presence, presence_hidden, block)
        # the U-Net's full-resolution stem, replaced by one that halves the input first
        w = self.feature_widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            BLOCKS[block](w, w),
        )

    def decode(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The U-Net decoder up to the stem's map, logits there, resized to ``size``."""
        logits = super().decode(features, size)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
