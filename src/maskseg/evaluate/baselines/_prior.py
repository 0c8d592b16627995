"""The two things classical methods are told about face crops: where masks lie, and skin colour.

Geometry: in a face crop the mask covers the lower-middle part (below the nose bridge, across
the cheeks, down to the chin). ``FacePrior`` is a soft map of that region, fitted to the mean
training mask (see ``maskseg.evaluate.baselines.tune.fit_face_prior``); on its own,
thresholded, it is the ``prior`` baseline, the score any colour rule has to beat.

Colour: the band between the eyebrows and the nose tip is bare skin even when a mask is worn,
so its median colour is a per-image skin reference. Masks are white, grey, black, blue or
pastel: cooler (lower a* + b* in CIE Lab) than the skin of the same face under the same light.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# Skin reference band (fractions of height / width): eyes to nose tip, central 40 %.
SKIN_BAND_Y = (0.25, 0.42)
SKIN_BAND_X = (0.30, 0.70)

CHANNELS = ("warmth", "a", "b", "saturation", "skin_distance", "gray")


@dataclass(frozen=True)
class FacePrior:
    """Soft map of where a mask lies in a face crop, all lengths as fractions of the crop.

    The map is sigmoid((y - top) / top_softness) * sigmoid((1 - r) / edge_softness), with r the
    elliptic radius around (0.5, centre_y) with radii (radius_x, radius_y): a bowl whose upper
    edge is near ``top`` and whose lower corners are rounded like the jaw. Defaults: least
    squares fit to the mean mask of the canonical training split (134 MSFD crops).

    Attributes:
        top: height of the mask's upper edge (nose bridge).
        top_softness: how gradually the upper edge fades (spread of its height across faces).
        centre_y: vertical centre of the jaw ellipse.
        radius_x, radius_y: half-axes of the jaw ellipse.
        edge_softness: how gradually the jaw ellipse fades.
    """

    top: float = 0.495
    top_softness: float = 0.059
    centre_y: float = 0.574
    radius_x: float = 0.476
    radius_y: float = 0.451
    edge_softness: float = 0.129

    def map(self, height: int, width: int) -> np.ndarray:
        """Prior probability of "mask" per pixel, float32 (height, width), read-only."""
        return _prior_map(self, height, width)


@lru_cache(maxsize=32)
def _prior_map(prior: FacePrior, height: int, width: int) -> np.ndarray:
    y = (np.arange(height, dtype=np.float64)[:, None] + 0.5) / height
    x = (np.arange(width, dtype=np.float64)[None, :] + 0.5) / width
    r = np.sqrt(((x - 0.5) / prior.radius_x) ** 2 + ((y - prior.centre_y) / prior.radius_y) ** 2)
    upper = 1.0 / (1.0 + np.exp(-(y - prior.top) / prior.top_softness))
    jaw = 1.0 / (1.0 + np.exp(-(1.0 - r) / prior.edge_softness))
    out = (upper * jaw).astype(np.float32)
    out.flags.writeable = False
    return out


def to_lab(image: np.ndarray) -> np.ndarray:
    """CIE Lab as float32 with OpenCV's 8-bit scaling (a*, b* centred on 128)."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)


def skin_band(array: np.ndarray) -> np.ndarray:
    """The skin-band rows and columns of an (H, W, ...) array; never empty for H, W >= 1."""
    h, w = array.shape[:2]
    y0, x0 = int(SKIN_BAND_Y[0] * h), int(SKIN_BAND_X[0] * w)
    y1, x1 = max(int(SKIN_BAND_Y[1] * h), y0 + 1), max(int(SKIN_BAND_X[1] * w), x0 + 1)
    return array[y0:y1, x0:x1]


def skin_reference(lab: np.ndarray) -> np.ndarray:
    """Median Lab colour of the skin band, shape (3,). Median: eyes and glasses are outliers."""
    return np.median(skin_band(lab).reshape(-1, 3), axis=0)


def colour_channel(image: np.ndarray, name: str, lab: np.ndarray | None = None) -> np.ndarray:
    """One float32 channel, oriented so that larger means "more like a mask than like skin".

    Channels (ranked by tuning Otsu on the training split, see ``OtsuParams.channel``):
        warmth: -(a* + b*). Skin is red-yellow, masks are neutral or blue: best single channel.
        a, b: -a* (less red) or -b* (less yellow) alone.
        saturation: -S of HSV (masks are duller; fails on blue and pink masks).
        skin_distance: a*b* distance from this face's skin reference (colour-blind to polarity).
        gray: luminance, no orientation (masks are white or black, skin is in between).
    """
    if name not in CHANNELS:
        raise ValueError(f"unknown channel {name!r}; valid: {', '.join(CHANNELS)}")
    if name == "gray":
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if name == "saturation":
        return -cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32)
    lab = to_lab(image) if lab is None else lab
    if name == "warmth":
        return -(lab[..., 1] + lab[..., 2] - 256.0)
    if name == "a":
        return -(lab[..., 1] - 128.0)
    if name == "b":
        return -(lab[..., 2] - 128.0)
    ref = skin_reference(lab)
    return np.sqrt(((lab[..., 1:] - ref[1:]) ** 2).sum(axis=-1))


def to_uint8(channel: np.ndarray) -> np.ndarray:
    """Stretch a float channel to 0..255 (Otsu and OpenCV thresholds need uint8)."""
    lo, hi = float(channel.min()), float(channel.max())
    if hi - lo < 1e-6:
        return np.zeros(channel.shape, np.uint8)
    return np.round((channel - lo) * (255.0 / (hi - lo))).astype(np.uint8)
