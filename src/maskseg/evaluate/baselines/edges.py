"""Canny edges, morphological closing and hole filling: edges cut the face into regions.

Filling the inside of a mask's outline needs the outline closed, and on real faces it rarely
is (a white mask on pale skin has no upper edge at the cheeks). So the edges are closed to
bridge small gaps, used to cut the region of interest into pieces, and the pieces that lie
mostly where the prior expects a mask are kept; closing and hole filling then join them.

Prior use: only edges inside the region of interest count, and the prior decides which pieces
are mask. No colour rule: this is the edges-only method.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from maskseg.evaluate.baselines._base import Baseline, BaseParams, disk, morph_clean, scaled_radius
from maskseg.evaluate.baselines._prior import colour_channel, to_uint8
from maskseg.evaluate.baselines.threshold import smooth


@dataclass(frozen=True)
class CannyParams(BaseParams):
    """Attributes:
    channel: channel to find edges in ("gray" sees white/black masks, "warmth" sees coloured
        ones against skin).
    blur: Gaussian sigma before Canny, fraction of the long side.
    high_percentile: the high hysteresis threshold is this percentile of the gradient
        magnitude in the region of interest, so contrast does not need tuning per image.
    low_ratio: low hysteresis threshold as a fraction of the high one.
    roi: prior value below which edges are ignored and pixels are never mask.
    close_frac: closing radius that bridges gaps in the edges, fraction of the long side.
    min_prior: a piece is mask when its pixels' mean prior is at least this.
    open_frac, join_frac: opening and closing radii of the final clean-up; the closing joins
        kept pieces across the edge lines between them.
    """

    channel: str = "gray"
    blur: float = 0.01
    high_percentile: float = 85.0
    low_ratio: float = 0.4
    roi: float = 0.2
    close_frac: float = 0.01
    min_prior: float = 0.5
    open_frac: float = 0.01
    join_frac: float = 0.03


class Canny(Baseline):
    """Edges -> close gaps -> cut into pieces -> keep the prior's pieces -> close, fill holes."""

    name = "canny"
    Params = CannyParams

    def _segment(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        h, w = image.shape[:2]
        prior = self.prior.map(h, w)
        roi = prior >= p.roi
        channel = to_uint8(colour_channel(smooth(image, p.blur), p.channel))
        gx = cv2.Sobel(channel, cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(channel, cv2.CV_32F, 0, 1)
        magnitude = cv2.magnitude(gx, gy)[roi]
        high = float(np.percentile(magnitude, p.high_percentile)) if magnitude.size else 0.0
        high = max(high, 1.0)  # flat images: no edges rather than edges everywhere
        edges = cv2.Canny(channel, p.low_ratio * high, high, L2gradient=True)
        r = scaled_radius(p.close_frac, (h, w))
        edges = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, disk(r)) > 0
        n, pieces = cv2.connectedComponents((roi & ~edges).astype(np.uint8), connectivity=4)
        count = np.bincount(pieces.ravel(), minlength=n)
        mean_prior = np.bincount(pieces.ravel(), weights=prior.ravel(), minlength=n)
        keep = mean_prior / np.maximum(count, 1) >= p.min_prior
        keep[0] = False  # label 0: edges and outside the region of interest
        return morph_clean(keep[pieces], prior, p.open_frac, p.join_frac)
