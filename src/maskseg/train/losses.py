"""Losses: pure functions plus a thin BCE + Dice module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image, averaged over the batch; pixels whose target is negative (the
    training set's ``IGNORE``) count for nothing.

    ``eps`` smooths the ratio so an image with an empty truth and a near-empty prediction
    scores near 0 loss instead of 0/0 (Dice alone gives no signal there; BCE does).
    """
    t = target.float().flatten(1)
    keep = (t >= 0).float()
    p = torch.sigmoid(logits.float()).flatten(1) * keep
    t = t.clamp(min=0)
    inter = (p * t).sum(1)
    denom = p.sum(1) + t.sum(1)
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


def lovasz_hinge_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lovasz hinge (Berman et al., 2018) per image, averaged: a convex surrogate of 1 - IoU,
    so it optimises the metric we report rather than a pixel-wise proxy."""
    losses = []
    for lg, t in zip(logits.float().flatten(1), target.float().flatten(1), strict=True):
        signs = 2 * t - 1
        errors = 1 - lg * signs
        errors_sorted, order = torch.sort(errors, descending=True)
        gt_sorted = t[order]
        gts = gt_sorted.sum()
        inter = gts - gt_sorted.cumsum(0)
        union = gts + (1 - gt_sorted).cumsum(0)
        jaccard = 1 - inter / union.clamp(min=1e-12)
        grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        losses.append(torch.dot(F.relu(errors_sorted), grad))
    return torch.stack(losses).mean()


class BCEDiceLoss(nn.Module):
    """bce_weight * BCE-with-logits + dice_weight * soft Dice (+ lovasz_weight * Lovasz hinge)."""

    def __init__(
        self, bce_weight: float = 1.0, dice_weight: float = 1.0, lovasz_weight: float = 0.0
    ):
        super().__init__()
        self.bce_weight, self.dice_weight = bce_weight, dice_weight
        self.lovasz_weight = lovasz_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss over the pixels whose target is not negative (``IGNORE``: left out)."""
        target = target.float()
        keep = (target >= 0).float()
        bce = F.binary_cross_entropy_with_logits(
            logits.float(), target.clamp(min=0), weight=keep, reduction="sum"
        ) / keep.sum().clamp(min=1)
        loss = self.bce_weight * bce + self.dice_weight * soft_dice_loss(logits, target)
        if self.lovasz_weight:
            if (target < 0).any():
                raise ValueError("the Lovasz term cannot leave pixels out (pad_label='ignore')")
            loss = loss + self.lovasz_weight * lovasz_hinge_loss(logits, target)
        return loss
