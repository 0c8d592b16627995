"""Colour clustering: k-means in Lab, then a rule that says which clusters are the mask.

Rule (uses both priors): a cluster holding a good share of the skin band's pixels is skin;
every other cluster whose pixels in the region of interest lie mostly where the face prior
expects a mask is mask. Background and
hair clusters sit at the top and sides, so their mean prior is low.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from maskseg.evaluate.baselines._base import Baseline, BaseParams, morph_clean
from maskseg.evaluate.baselines._prior import skin_band, to_lab
from maskseg.evaluate.baselines.threshold import smooth

SEED = 0
_FIT_SIDE = 64  # centres are fitted on every n-th pixel, about 64 x 64: plenty, and fast


@dataclass(frozen=True)
class KMeansParams(BaseParams):
    """Attributes:
    k: number of colour clusters (skin, mask, background, hair/shadow...).
    lightness_weight: weight of L* against a*, b*; below 1 so shading splits clusters less.
    xy_weight: weight of pixel position (in Lab units per crop width); > 0 makes clusters
        spatially compact.
    skin_share: a cluster holding at least this share of skin-band pixels is skin.
    min_prior: a non-skin cluster is mask when its pixels' mean prior is at least this.
    roi: prior value below which a pixel is never mask.
    blur, open_frac, close_frac: as for Otsu.
    attempts: k-means restarts (k-means++ seeding, fixed RNG seed).
    """

    k: int = 4
    lightness_weight: float = 0.5
    xy_weight: float = 0.0
    skin_share: float = 0.3
    min_prior: float = 0.5
    roi: float = 0.2
    blur: float = 0.01
    open_frac: float = 0.01
    close_frac: float = 0.04
    attempts: int = 2


class KMeans(Baseline):
    """k-means on (w * L*, a*, b*[, x, y]) features."""

    name = "kmeans"
    Params = KMeansParams

    def _features(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        h, w = image.shape[:2]
        lab = to_lab(smooth(image, p.blur))
        lab[..., 0] *= p.lightness_weight
        if p.xy_weight <= 0:
            return lab
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        scale = p.xy_weight * 100.0 / max(h, w)
        return np.dstack([lab, xx * scale, yy * scale])

    def _segment(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        h, w = image.shape[:2]
        prior = self.prior.map(h, w)
        feats = self._features(image)
        step = max(1, -(-max(h, w) // _FIT_SIDE))
        thumb = feats[::step, ::step].reshape(-1, feats.shape[-1])
        k = max(1, min(p.k, len(thumb)))
        cv2.setRNGSeed(SEED)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
        _, _, centres = cv2.kmeans(
            np.ascontiguousarray(thumb, np.float32),
            k,
            None,
            criteria,
            p.attempts,
            cv2.KMEANS_PP_CENTERS,
        )
        flat = feats.reshape(-1, feats.shape[-1])
        dist = ((flat[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1)
        labels = dist.argmin(axis=1).reshape(h, w)
        band = np.bincount(skin_band(labels).ravel(), minlength=k) / skin_band(labels).size
        roi = prior >= p.roi
        inside = labels[roi]
        count = np.bincount(inside, minlength=k)
        mean_prior = np.bincount(inside, weights=prior[roi], minlength=k) / np.maximum(count, 1)
        is_mask = (band < p.skin_share) & (mean_prior >= p.min_prior)
        candidate = is_mask[labels] & roi
        return morph_clean(candidate, prior, p.open_frac, p.close_frac)
