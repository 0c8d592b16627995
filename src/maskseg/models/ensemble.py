"""Inference-time wrappers: an ensemble of same-architecture members and flip test-time
augmentation. Both average logits, so the result is still a logit map: they keep the
``forward`` part of the ``SegmentationModel`` contract (what every backend needs), not the
encoder part (the gate fits single models only)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from maskseg.models.base import SegmentationModel


class Ensemble(nn.Module):
    """Mean of the members' logits. Members are trained separately (e.g. the CV folds and a
    model on all non-test data) and combined with ``maskseg pack``."""

    def __init__(self, members: Sequence[SegmentationModel]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


class FlipTTA(nn.Module):
    """Average of the model on the image and on its mirror image (masks are left-right
    symmetric, so the mirrored prediction is as good and its errors are partly different)."""

    def __init__(self, model: SegmentationModel | Ensemble):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.model(torch.cat([x, x.flip(-1)]))
        a, b = both.chunk(2)
        return (a + b.flip(-1)) / 2
