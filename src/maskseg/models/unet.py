"""U-Net (Ronneberger et al., 2015) for binary segmentation; returns logits.

With ``presence=True`` a small head reads the encoder's pooled features and says whether a
mask is worn at all; the returned logits are then ``min(mask logits, presence logit)``: a
pixel is mask only where the decoder says so *and* the face wears a mask. One tensor out, so
every backend, the threshold and the clean-up stay as they are, and an unmasked face gets an
empty mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maskseg.models.parts import BLOCKS, Down, Up


class UNet(nn.Module):
    """Encoder of conv blocks with downsampling, bottleneck, decoder with skip connections.

    Args:
        in_channels: 3 for RGB.
        base_channels: width of the first stage; each deeper stage doubles it.
        depth: number of downsampling steps (the bottleneck sits at 1/2**depth resolution).
        presence: add a mask-presence head that gates the logits (fitted by
            ``maskseg.train.gate.fit_presence`` on the frozen encoder).
        presence_hidden: the head's hidden units (0: logistic regression).
        block: conv block: "double" (3x3 conv twice) or "separable" (depthwise-separable).

    Shape: (N, in_channels, H, W) -> (N, 1, H, W) logits, for any H, W >= 1.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 16,
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
        self.widths = widths
        self.stem = conv(in_channels, widths[0])
        self.down = nn.ModuleList(Down(widths[i], widths[i + 1], conv) for i in range(depth))
        self.up = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], conv) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], 1, 1)
        self.presence = PresenceHead(widths, presence_hidden) if presence else None

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps, full resolution first, bottleneck last."""
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        return skips

    def decode(self, skips: list[torch.Tensor]) -> torch.Tensor:
        skips = list(skips)
        x = skips.pop()  # bottleneck
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self.encode(x)
        logits = self.decode(skips)
        if self.presence is None:
            return logits
        return torch.minimum(logits, self.presence(skips)[:, :, None, None])


class PresenceHead(nn.Module):
    """Mask-or-not logit (N, 1) from pooled encoder features.

    Features: the mean of every encoder stage and the bottleneck pooled on a 2 x 2 grid (the
    lower half of a face crop is where a mask is). They are standardised with stored
    statistics, so the head can be fitted on a frozen encoder (``maskseg.train.gate``).
    """

    def __init__(self, widths: list[int], hidden: int = 0):
        super().__init__()
        n = sum(widths) + 4 * widths[-1]
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.classifier = (
            nn.Linear(n, 1)
            if hidden <= 0
            else nn.Sequential(nn.Linear(n, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))
        )

    @staticmethod
    def features(skips: list[torch.Tensor]) -> torch.Tensor:
        pooled = [s.float().mean((2, 3)) for s in skips]
        grid = F.adaptive_avg_pool2d(skips[-1].float(), 2).flatten(1)
        return torch.cat([*pooled, grid], 1)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        z = (self.features(skips) - self.mean) / self.std
        return self.classifier(z)
