"""Marker-based watershed: sure-mask and sure-background seeds grow until they meet at edges.

Markers combine both priors. Sure mask: the prior's core AND the mask-like side of an Otsu
threshold on a colour channel, computed where the prior allows a mask. Sure background: where
the prior is near zero, the skin band, and skin-like pixels outside the core. The watershed
then places the boundary on the strongest colour edge in between, which a threshold alone
cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from maskseg.evaluate.baselines._base import Baseline, BaseParams, disk, morph_clean, scaled_radius
from maskseg.evaluate.baselines._prior import colour_channel, skin_band, to_uint8
from maskseg.evaluate.baselines.threshold import otsu_threshold, smooth

_BACKGROUND, _MASK = 1, 2
_MARKER_BLUR = 0.01  # as Otsu's default: unsmoothed JPEG noise speckles the markers


@dataclass(frozen=True)
class WatershedParams(BaseParams):
    """Attributes:
    channel: colour channel whose Otsu threshold (over pixels with prior >= bg_prior) marks
        mask-like and skin-like pixels.
    fg_prior: prior value above which mask-like pixels are sure mask.
    bg_prior: prior value below which every pixel is sure background.
    skin_prior: skin-like pixels with a prior below this are sure background.
    erode_frac: markers are eroded by this radius (fraction of the long side) so they stay
        clear of the boundary the watershed is meant to find.
    blur: Gaussian sigma of the image the watershed floods, fraction of the long side.
    open_frac, close_frac: clean-up radii, fractions of the long side.
    """

    channel: str = "warmth"
    fg_prior: float = 0.7
    bg_prior: float = 0.05
    skin_prior: float = 0.7
    erode_frac: float = 0.01
    blur: float = 0.005
    open_frac: float = 0.01
    close_frac: float = 0.02


class Watershed(Baseline):
    """OpenCV's colour watershed from prior-and-colour markers."""

    name = "watershed"
    Params = WatershedParams

    def markers(self, image: np.ndarray) -> np.ndarray:
        """Seed labels: 0 unknown, 1 background, 2 mask; int32 (H, W)."""
        p = self.params
        prior = self.prior.map(*image.shape[:2])
        channel = to_uint8(colour_channel(smooth(image, _MARKER_BLUR), p.channel))
        # Threshold from where a mask can be: elsewhere a blue cap or a dark background
        # would decide what "mask-like" means.
        region = prior >= p.bg_prior
        masklike = channel > otsu_threshold(channel, region) if region.any() else channel > 127
        kernel = disk(scaled_radius(p.erode_frac, image.shape))
        sure_mask = cv2.erode((masklike & (prior >= p.fg_prior)).astype(np.uint8), kernel) > 0
        sure_bg = (prior < p.bg_prior) | (~masklike & (prior < p.skin_prior))
        sure_bg = cv2.erode(sure_bg.astype(np.uint8), kernel) > 0
        skin_band(sure_bg)[...] = True
        markers = np.zeros(image.shape[:2], np.int32)
        markers[sure_bg] = _BACKGROUND
        markers[sure_mask & ~sure_bg] = _MASK
        return markers

    def _segment(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        prior = self.prior.map(*image.shape[:2])
        markers = self.markers(image)
        if not (markers == _MASK).any():
            return np.zeros(image.shape[:2], bool)
        bgr = cv2.cvtColor(smooth(image, p.blur), cv2.COLOR_RGB2BGR)
        cv2.watershed(bgr, markers)
        # Watershed lines (-1, one pixel wide, also on the image frame) are left out; the
        # closing in morph_clean bridges them.
        return morph_clean(markers == _MASK, prior, p.open_frac, p.close_frac)
