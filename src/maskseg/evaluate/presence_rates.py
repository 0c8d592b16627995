"""How often the whole predictor (gate and segmentation) gives a face without a mask one, and
a face with a mask none: numpy over the predictor's masks, no PyTorch (``evaluate --faces``
runs in the light install)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# A face "has a mask" when its mask covers more than this share of the crop.
MIN_COVERAGE = 0.01


@dataclass
class PresenceRates:
    """How the whole predictor (gate and segmentation) answers "mask or not" on face crops."""

    n_with: int
    n_without: int
    found: int  # masked faces whose mask covers > MIN_COVERAGE of the crop
    false_masks: int  # unmasked faces whose mask covers > MIN_COVERAGE

    @property
    def found_rate(self) -> float:
        return self.found / max(1, self.n_with)

    @property
    def false_mask_rate(self) -> float:
        return self.false_masks / max(1, self.n_without)

    def as_dict(self) -> dict[str, float]:
        return {
            "n_with_mask": self.n_with,
            "n_without_mask": self.n_without,
            "found_rate": self.found_rate,
            "false_mask_rate": self.false_mask_rate,
        }


def presence_rates(predictor: Any, crops: Sequence[Any], batch_size: int = 32) -> PresenceRates:
    """Found and false-mask rates of a predictor on labelled face crops (``faces.LabelledCrop``)."""
    covered = []
    for i in range(0, len(crops), batch_size):
        chunk = crops[i : i + batch_size]
        masks = predictor.predict_batch([c.image for c in chunk])
        covered += [m.mean() > MIN_COVERAGE for m in masks]
    with_mask = [c.mask for c in crops]
    found = sum(cov for cov, m in zip(covered, with_mask, strict=True) if m)
    false = sum(cov for cov, m in zip(covered, with_mask, strict=True) if not m)
    n_with = sum(with_mask)
    return PresenceRates(n_with, len(crops) - n_with, int(found), int(false))
