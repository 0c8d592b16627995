"""Canny edges, morphological closing and hole filling: the mask is what its outline encloses.

Prior use: (1) only edges inside the region of interest count; (2) the outline of the region
of interest below the prior's upper edge is drawn as an edge, because a worn mask runs off the
face at the sides and chin, so its outline there is not an image edge; (3) of the enclosed
regions, the one with the most prior weight is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from maskseg.baselines._base import (
    Baseline,
    BaseParams,
    clean_mask,
    disk,
    fill_holes,
    scaled_radius,
)
from maskseg.baselines._prior import colour_channel, to_uint8
from maskseg.baselines.threshold import smooth


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
    close_frac: closing radius that joins broken outline pieces, fraction of the long side.
    open_frac: opening radius after filling, removes thin edge-only slivers.
    """

    channel: str = "gray"
    blur: float = 0.01
    high_percentile: float = 85.0
    low_ratio: float = 0.4
    roi: float = 0.2
    close_frac: float = 0.03
    open_frac: float = 0.02


class Canny(Baseline):
    """Edges -> close gaps -> fill enclosed regions -> keep the prior's favourite."""

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
        edges = cv2.Canny(channel, p.low_ratio * high, high, L2gradient=True) > 0
        edges &= roi
        edges |= frame(roi, self.prior.top)
        r = scaled_radius(p.close_frac, (h, w))
        closed = cv2.morphologyEx(edges.astype(np.uint8), cv2.MORPH_CLOSE, disk(r)) > 0
        return clean_mask(fill_holes(closed) & roi, prior, p.open_frac, 0.0)



def frame(roi: np.ndarray, top: float) -> np.ndarray:
    """The region of interest's outline below the height ``top`` (fraction of the crop).

    A worn mask runs off the face to the sides and the chin, so its outline there is not an
    edge in the image; this frame stands in for it. The top is left open: there the mask's own
    upper edge has to close the outline.
    """
    h = roi.shape[0]
    inner = cv2.erode(roi.astype(np.uint8), disk(1), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    outline = roi & (inner == 0)
    outline[: int(top * h)] = False
    return outline
