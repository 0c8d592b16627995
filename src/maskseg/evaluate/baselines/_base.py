"""What every classical method shares: input checks, working resolution and mask clean-up.

A method only implements ``_segment`` on an image already shrunk to its working size; the base
class takes care of odd inputs (grayscale, RGBA, 1 px, 4000 px) with the same check as the
U-Net's (``maskseg.pipeline.preprocess.as_rgb``) so no method has to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from maskseg.evaluate.baselines._prior import FacePrior
from maskseg.pipeline.postprocess import fill_holes
from maskseg.pipeline.preprocess import as_rgb


@dataclass(frozen=True)
class BaseParams:
    """Parameters every method has.

    Attributes:
        work_size: long side (px) images are shrunk to before segmenting; smaller images are
            used as they are. Classical methods gain nothing from 4000 px and cost seconds.
    """

    work_size: int = 256


def to_work_size(image: np.ndarray, work_size: int) -> np.ndarray:
    """Shrink so the long side is at most ``work_size`` (INTER_AREA: no aliasing)."""
    h, w = image.shape[:2]
    scale = work_size / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def resize_mask_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (height, width)."""
    if mask.shape == (height, width):
        return mask
    up = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return up.astype(bool)


class Baseline(ABC):
    """A classical segmenter: RGB uint8 (H, W, 3) in, bool mask (H, W) out.

    Same call as ``maskseg.Predictor.predict``, so the CLI and the comparison treat the U-Net
    and every baseline alike.

    Args:
        params: the method's parameters; None takes the dataclass defaults.
        prior: where masks lie in a face crop; None takes the default fitted prior.
    """

    name: ClassVar[str]
    Params: ClassVar[type[BaseParams]]

    def __init__(self, params: BaseParams | None = None, prior: FacePrior | None = None):
        params = self.Params() if params is None else params
        if not isinstance(params, self.Params):
            raise TypeError(
                f"{self.name} takes {self.Params.__name__}, got {type(params).__name__}"
            )
        if params.work_size < 8:
            raise ValueError(f"work_size must be at least 8 px, got {params.work_size}")
        self.params = params
        self.prior = FacePrior() if prior is None else prior

    def predict(self, image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """Bool mask (H, W) at the input's own size, or at ``size`` (height, width)."""
        image = as_rgb(image)
        small = to_work_size(image, self.params.work_size)
        mask = self._segment(small)
        return resize_mask_nearest(mask, *(image.shape[:2] if size is None else size))

    __call__ = predict

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One mask per image (classical methods gain nothing from batching)."""
        return [self.predict(im) for im in images]

    @abstractmethod
    def _segment(self, image: np.ndarray) -> np.ndarray:
        """Bool mask at ``image``'s size for an RGB uint8 image at working size."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"


# --------------------------------------------------------------------------- clean-up helpers


def disk(radius: int) -> np.ndarray:
    """Elliptic structuring element of the given radius (radius 0 is a single pixel)."""
    r = max(0, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def scaled_radius(fraction: float, shape: tuple[int, ...]) -> int:
    """A radius given as a fraction of the long side, so results do not depend on image size."""
    return max(0, round(fraction * max(shape[:2])))


def keep_best_component(mask: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Keep the one connected component with the most prior weight.

    A worn mask is one connected region; stray pieces are background or clothing.
    """
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    scores = np.bincount(labels.ravel(), weights=weight.ravel(), minlength=n)
    scores[0] = -1.0
    return labels == int(np.argmax(scores))


def morph_clean(
    mask: np.ndarray, prior: np.ndarray, open_frac: float, close_frac: float
) -> np.ndarray:
    """Open (drop specks), close (bridge gaps), fill holes, keep the component the prior favours."""
    m = mask.astype(np.uint8)
    if open_frac > 0:
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, disk(scaled_radius(open_frac, m.shape)))
    if close_frac > 0:
        # Pad before closing so a mask touching the border is not eaten at the edge.
        r = scaled_radius(close_frac, m.shape)
        m = cv2.copyMakeBorder(m, r, r, r, r, cv2.BORDER_REPLICATE)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, disk(r))[r : m.shape[0] - r, r : m.shape[1] - r]
    return fill_holes(keep_best_component(m.astype(bool), prior))
