"""Geometry only: the face prior thresholded, ignoring the pixels.

Not a real segmenter, a yardstick: any method that looks at colour or edges has to beat where
masks usually are, or it has learned nothing about this image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskseg.evaluate.baselines._base import Baseline, BaseParams


@dataclass(frozen=True)
class PriorParams(BaseParams):
    """Attributes:
    threshold: prior value above which a pixel is called mask.
    """

    threshold: float = 0.4


class PriorOnly(Baseline):
    """The same bowl-shaped mask for every face, scaled to the crop."""

    name = "prior"
    Params = PriorParams

    def _segment(self, image: np.ndarray) -> np.ndarray:
        return self.prior.map(*image.shape[:2]) >= self.params.threshold
