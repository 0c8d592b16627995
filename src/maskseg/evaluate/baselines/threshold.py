"""Thresholding a colour channel: one global Otsu threshold, or Sauvola's local one.

Prior use: the threshold is computed from the pixels where the face prior allows a mask (the
region of interest), and only those pixels can become mask. Without this, Otsu splits face
from background or hair from skin instead of mask from skin.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from maskseg.evaluate.baselines._base import Baseline, BaseParams, morph_clean
from maskseg.evaluate.baselines._prior import colour_channel, skin_band, to_uint8

POLARITIES = ("high", "skin")


def smooth(image: np.ndarray, sigma_frac: float) -> np.ndarray:
    """Gaussian blur, sigma as a fraction of the long side (against JPEG noise, fabric texture)."""
    sigma = sigma_frac * max(image.shape[:2])
    if sigma < 0.3:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigma)


def orient(candidate: np.ndarray, polarity: str) -> np.ndarray:
    """Pick which side of a threshold is the mask.

    "high": the side the channel calls mask-like (see ``colour_channel``).
    "skin": the side that holds fewer skin-band pixels, whatever the channel says: works for
    orientation-free channels such as gray, and for masks warmer than the skin.
    """
    if polarity == "high":
        return candidate
    if polarity != "skin":
        raise ValueError(f"unknown polarity {polarity!r}; valid: {', '.join(POLARITIES)}")
    band = skin_band(candidate)
    return ~candidate if band.size and band.mean() > 0.5 else candidate


def otsu_threshold(channel: np.ndarray, region: np.ndarray) -> float:
    """Otsu's threshold of a uint8 channel over the pixels in ``region`` (bool, non-empty)."""
    t, _ = cv2.threshold(
        channel[region].reshape(-1, 1), 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU
    )
    return float(t)


@dataclass(frozen=True)
class OtsuParams(BaseParams):
    """Attributes:
    channel: see ``maskseg.evaluate.baselines._prior.colour_channel``. Best training mean IoU per
        channel (tuned_params.json): warmth 0.761, b* 0.722, a* 0.698, skin_distance 0.671,
        saturation 0.598, gray 0.513. Masks are neutral or blue, skin is red-yellow, so
        a* + b* separates them under any brightness; gray cannot tell white from pale skin.
    polarity: "high" or "skin", see ``orient``.
    roi: prior value below which a pixel is never mask and does not enter the histogram.
    blur: Gaussian sigma before thresholding, fraction of the long side.
    open_frac, close_frac: clean-up radii, fractions of the long side.
    """

    channel: str = "warmth"
    polarity: str = "high"
    roi: float = 0.2
    blur: float = 0.01
    open_frac: float = 0.01
    close_frac: float = 0.04


class Otsu(Baseline):
    """One threshold per image on one colour channel, chosen by Otsu's between-class variance."""

    name = "otsu"
    Params = OtsuParams

    def _segment(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        prior = self.prior.map(*image.shape[:2])
        roi = prior >= p.roi
        channel = to_uint8(colour_channel(smooth(image, p.blur), p.channel))
        if not roi.any():
            return roi
        t = otsu_threshold(channel, roi)
        candidate = orient(channel > t, p.polarity) & roi
        return morph_clean(candidate, prior, p.open_frac, p.close_frac)


@dataclass(frozen=True)
class SauvolaParams(BaseParams):
    """Attributes:
    channel, polarity, roi, blur, open_frac, close_frac: as for Otsu.
    window: side of the local window, fraction of the long side. Large, because a mask is a
        large region, not a text stroke. Tuning found larger is better (0.25: 0.734,
        0.5: 0.756, 1.0: 0.772 training IoU): on face crops, local adaptation does not pay.
    k: Sauvola's sensitivity; larger k lowers the threshold where local contrast is low,
        k < 0 raises it, calling more low-contrast pixels mask-like (tuning picked -0.2).
    """

    channel: str = "warmth"
    polarity: str = "high"
    roi: float = 0.2
    blur: float = 0.01
    window: float = 0.5
    k: float = 0.1
    open_frac: float = 0.01
    close_frac: float = 0.04


class Sauvola(Baseline):
    """Local threshold T = m * (1 + k * (s / 128 - 1)) from the window's mean m and std s.

    Sauvola is written for dark text on a light page, so the channel is inverted to make
    mask-like pixels dark. Box filters make it O(pixels) whatever the window.
    """

    name = "sauvola"
    Params = SauvolaParams

    def _segment(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        prior = self.prior.map(*image.shape[:2])
        roi = prior >= p.roi
        dark = 255.0 - to_uint8(colour_channel(smooth(image, p.blur), p.channel)).astype(np.float32)
        side = max(3, round(p.window * max(image.shape[:2])) | 1)
        mean = cv2.boxFilter(dark, -1, (side, side), borderType=cv2.BORDER_REFLECT)
        sq = cv2.boxFilter(dark * dark, -1, (side, side), borderType=cv2.BORDER_REFLECT)
        std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
        threshold = mean * (1.0 + p.k * (std / 128.0 - 1.0))
        candidate = orient(dark < threshold, p.polarity) & roi
        return morph_clean(candidate, prior, p.open_frac, p.close_frac)
