"""U-Net (Ronneberger et al., 2015) for binary segmentation; returns logits."""

from __future__ import annotations

import torch
from torch import nn

from maskseg.models.parts import DoubleConv, Down, Up


class UNet(nn.Module):
    """Encoder of conv blocks with downsampling, bottleneck, decoder with skip connections.

    Args:
        in_channels: 3 for RGB.
        base_channels: width of the first stage; each deeper stage doubles it.
        depth: number of downsampling steps (the bottleneck sits at 1/2**depth resolution).

    Shape: (N, in_channels, H, W) -> (N, 1, H, W) logits, for any H, W >= 1.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 16, depth: int = 4):
        super().__init__()
        if depth < 1 or base_channels < 1:
            raise ValueError(f"depth and base_channels must be >= 1, got {depth}, {base_channels}")
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.stem = DoubleConv(in_channels, widths[0])
        self.down = nn.ModuleList(Down(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i]) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = skips.pop()  # bottleneck
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x)
