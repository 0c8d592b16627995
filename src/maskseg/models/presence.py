"""The mask-presence head: one mask-or-not logit per image from an encoder's feature maps.

It reads only what every ``SegmentationModel`` gives (``encode``'s maps and their
``feature_widths``), so the gate (``maskseg.train.gate``) fits it on any architecture.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from maskseg.config import PRESENCE_FEATURES

KINDS = PRESENCE_FEATURES
# the mask-weighted means divide by (mask share + EPS): a window the decoder left (nearly)
# empty gives features near 0 instead of the mean of a few stray pixels
EPS = 0.05
GRID = 4  # the decoder's mask probability pooled on a GRID x GRID grid ("masked")


class PresenceHead(nn.Module):
    """Mask-or-not logit (N, 1) from pooled encoder features.

    Features (``kind``):

    * ``pooled``: the mean of every encoder map and the deepest map pooled on a 2 x 2 grid (the
      lower half of a face crop is where a mask is);
    * ``masked``: those, plus each encoder map averaged over the pixels the decoder calls mask
      (weighted by its probability) and that probability on a 4 x 4 grid. A window that shows
      only a low mask's top edge, or a bare jaw the decoder half paints, differ in *what* is
      painted (fabric or skin), which a whole-window mean dilutes.

    They are standardised with stored statistics, so the head can be fitted on a frozen
    network (``maskseg.train.gate``).

    Args:
        widths: channels of each encoder map, in ``encode``'s order (deepest last).
        hidden: hidden units of the MLP (0: logistic regression).
        kind: which features (``KINDS``).
    """

    def __init__(self, widths: Sequence[int], hidden: int = 0, kind: str = "pooled"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown presence features {kind!r}; valid: {', '.join(KINDS)}")
        self.kind = kind
        n = self.n_features(widths, kind)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.classifier = (
            nn.Linear(n, 1)
            if hidden <= 0
            else nn.Sequential(nn.Linear(n, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))
        )

    @staticmethod
    def n_features(widths: Sequence[int], kind: str = "pooled") -> int:
        """Length of ``features``' rows for maps of these widths."""
        n = sum(widths) + 4 * widths[-1]
        return n + sum(widths) + GRID * GRID if kind == "masked" else n

    @staticmethod
    def features(
        maps: Sequence[torch.Tensor], logits: torch.Tensor | None = None, kind: str = "pooled"
    ) -> torch.Tensor:
        """(N, F): each map's mean per channel, then the deepest map on a 2 x 2 grid; for
        ``masked`` also each map's mask-weighted mean and the mask probability on a grid
        (``logits``: the decoder's (N, 1, H, W) output, needed then)."""
        pooled = [m.float().mean((2, 3)) for m in maps]
        parts = [*pooled, F.adaptive_avg_pool2d(maps[-1].float(), 2).flatten(1)]
        if kind == "masked":
            if logits is None:
                raise ValueError("masked presence features need the decoder's logits")
            p = torch.sigmoid(logits.float())
            for m in maps:
                # a fixed size (int), so the ONNX export pools with constant kernels
                pk = F.adaptive_avg_pool2d(p, tuple(int(s) for s in m.shape[-2:]))
                parts.append((m.float() * pk).mean((2, 3)) / (pk.mean((2, 3)) + EPS))
            parts.append(F.adaptive_avg_pool2d(p, GRID).flatten(1))
        return torch.cat(parts, 1)

    def forward(
        self, maps: Sequence[torch.Tensor], logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        z = (self.features(maps, logits, self.kind) - self.mean) / self.std
        return self.classifier(z)
