"""U-Net building blocks (after milesial/Pytorch-UNet): the model reads like the paper's figure."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Sequential):
    """(3x3 conv -> BatchNorm -> ReLU) twice."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """Halve the resolution (2x2 max-pool; ceil mode keeps odd borders), then DoubleConv."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.MaxPool2d(2, ceil_mode=True), DoubleConv(in_ch, out_ch))


class Up(nn.Module):
    """Upsample the deeper map to the skip's exact size, concatenate, DoubleConv.

    Bilinear upsampling to the skip's size (instead of a fixed x2) makes any input size work.
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.reduce = nn.Conv2d(in_ch, skip_ch, 1, bias=False)
        self.conv = DoubleConv(2 * skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, self.reduce(x)], dim=1))
