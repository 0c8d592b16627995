"""The mask-presence head: one mask-or-not logit per image from an encoder's feature maps.

It reads only what every ``SegmentationModel`` gives (``encode``'s maps and their
``feature_widths``), so the gate (``maskseg.train.gate``) fits it on any architecture.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PresenceHead(nn.Module):
    """Mask-or-not logit (N, 1) from pooled encoder features.

    Features: the mean of every encoder map and the deepest map pooled on a 2 x 2 grid (the
    lower half of a face crop is where a mask is). They are standardised with stored
    statistics, so the head can be fitted on a frozen encoder (``maskseg.train.gate``).

    Args:
        widths: channels of each encoder map, in ``encode``'s order (deepest last).
        hidden: hidden units of the MLP (0: logistic regression).
    """

    def __init__(self, widths: Sequence[int], hidden: int = 0):
        super().__init__()
        n = self.n_features(widths)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.classifier = (
            nn.Linear(n, 1)
            if hidden <= 0
            else nn.Sequential(nn.Linear(n, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))
        )

    @staticmethod
    def n_features(widths: Sequence[int]) -> int:
        """Length of ``features``' rows for maps of these widths."""
        return sum(widths) + 4 * widths[-1]

    @staticmethod
    def features(maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """(N, F): each map's mean per channel, then the deepest map on a 2 x 2 grid."""
        pooled = [m.float().mean((2, 3)) for m in maps]
        grid = F.adaptive_avg_pool2d(maps[-1].float(), 2).flatten(1)
        return torch.cat([*pooled, grid], 1)

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        z = (self.features(maps) - self.mean) / self.std
        return self.classifier(z)
