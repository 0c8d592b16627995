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


class SeparableDoubleConv(nn.Sequential):
    """DoubleConv with depthwise-separable convolutions (MobileNet): each 3x3 conv becomes a
    depthwise 3x3 (one filter per channel) and a 1x1 across channels, each with BatchNorm and
    ReLU; about 7x fewer multiply-adds at 32 channels. A first conv from fewer than 8 channels
    (the RGB stem) stays a plain 3x3: a depthwise filter on 3 channels mixes no colours."""

    def __init__(self, in_ch: int, out_ch: int):
        first = (
            _separable(in_ch, out_ch)
            if in_ch >= 8
            else [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), *_bn_relu(out_ch)]
        )
        super().__init__(*first, *_separable(out_ch, out_ch))


def _bn_relu(ch: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]


def _separable(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False),
        *_bn_relu(in_ch),
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
        *_bn_relu(out_ch),
    ]


class ResidualConv(nn.Module):
    """DoubleConv with a shortcut (He et al., 2016; the residual U-Net of Zhang et al., 2018):
    the two convs learn a correction to their input, added back before the last ReLU; a 1x1
    conv (with BatchNorm) matches the width where it changes."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            *_bn_relu(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.shortcut = (
            nn.Identity()
            if in_ch == out_ch
            else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


# Conv blocks by name (the U-Net's params: UNetParams.block).
BLOCKS: dict[str, type[nn.Module]] = {
    "double": DoubleConv,
    "separable": SeparableDoubleConv,
    "residual": ResidualConv,
}


class Down(nn.Sequential):
    """Halve the resolution (2x2 max-pool; ceil mode keeps odd borders), then a conv block."""

    def __init__(self, in_ch: int, out_ch: int, block: type[nn.Module] = DoubleConv):
        super().__init__(nn.MaxPool2d(2, ceil_mode=True), block(in_ch, out_ch))


class AttentionGate(nn.Module):
    """Additive attention on a skip connection (Oktay et al., 2018, "Attention U-Net"): a
    per-pixel weight in (0, 1) from the skip and the decoder's upsampled map, so the decoder
    can turn down skip features where the deeper context says there is nothing to segment
    (a collar, hair, the background below a face)."""

    def __init__(self, ch: int, inner: int):
        super().__init__()
        self.skip = nn.Sequential(nn.Conv2d(ch, inner, 1, bias=False), nn.BatchNorm2d(inner))
        self.gating = nn.Sequential(nn.Conv2d(ch, inner, 1, bias=False), nn.BatchNorm2d(inner))
        self.weight = nn.Sequential(
            nn.ReLU(inplace=True), nn.Conv2d(inner, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid()
        )

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        return skip * self.weight(self.skip(skip) + self.gating(gating))


class Up(nn.Module):
    """Reduce the deeper map to the skip's width (1x1 conv), upsample it to the skip's exact
    size, concatenate, then a conv block. With ``attention``, the skip is first weighted by an
    ``AttentionGate`` driven by the upsampled map.

    Bilinear upsampling to the skip's size (instead of a fixed x2) makes any input size work.
    """

    def __init__(
        self,
        in_ch: int,
        skip_ch: int,
        out_ch: int,
        block: type[nn.Module] = DoubleConv,
        attention: bool = False,
    ):
        super().__init__()
        self.reduce = nn.Conv2d(in_ch, skip_ch, 1, bias=False)
        self.attend = AttentionGate(skip_ch, max(1, skip_ch // 2)) if attention else None
        self.conv = block(2 * skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # Reduce, then upsample: both maps are linear and the 1x1 conv has no bias, so the
        # order leaves the result as it was, and the conv runs on 4x fewer pixels and the
        # upsampling on half the channels.
        x = F.interpolate(
            self.reduce(x), size=skip.shape[-2:], mode="bilinear", align_corners=False
        )
        if self.attend is not None:
            skip = self.attend(skip, x)
        return self.conv(torch.cat([skip, x], dim=1))
