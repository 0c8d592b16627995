"""Losses: pure functions plus a thin BCE + Dice module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image, averaged over the batch.

    ``eps`` smooths the ratio so an image with an empty truth and a near-empty prediction
    scores near 0 loss instead of 0/0 (Dice alone gives no signal there; BCE does).
    """
    p = torch.sigmoid(logits.float()).flatten(1)
    t = target.float().flatten(1)
    inter = (p * t).sum(1)
    denom = p.sum(1) + t.sum(1)
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


class BCEDiceLoss(nn.Module):
    """bce_weight * BCE-with-logits + dice_weight * soft Dice loss."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0):
        super().__init__()
        self.bce_weight, self.dice_weight = bce_weight, dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        return self.bce_weight * bce + self.dice_weight * soft_dice_loss(logits, target)
