"""Gate positives of masks worn low: composites (``maskseg.data.lowworn``) cut as the scene
path cuts them.

    crops, info = low_worn_crops(pairs, photos, n=1000)

Each composite puts an MSFD pair's mask on a face of a photo without a mask, moved down the
face by a drawn amount; the scene path's face finder then finds that face and cuts its first
window (the one the gate judges). A window that shows enough of the pasted mask
(``min_visible`` of its area) is a positive: "no mask" would be wrong there. One that shows
too little is left out: no crop-level gate can see a mask that is not in its crop (grow and
redo only grows windows the gate passed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from maskseg.data.lowworn import LEFT_EYE, RIGHT_EYE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LowWornConfig:
    """How many composites, and where the masks go.

    Attributes:
        n: composites to make (some yield no crop: face not found again, mask out of view).
        drop: (low, high) of the uniform draw of how far each mask moves down the face, in
            eye-to-mouth distances (0.3: under the nose; 0.8: chin; 1.2: neck).
        min_visible: a crop is kept when its pasted mask covers at least this share of it.
        max_side: target photos are shrunk to at most this long side first (speed).
        seed: draws of photos, pairs and drops.
    """

    n: int = 1000
    drop: tuple[float, float] = (0.3, 1.2)
    min_visible: float = 0.03
    max_side: int = 1024
    seed: int = 0


@dataclass
class LowWornCrops:
    crops: list[np.ndarray] = field(default_factory=list)
    drops: list[float] = field(default_factory=list)
    photos: int = 0
    made: int = 0
    not_found: int = 0
    out_of_view: int = 0

    def summary(self) -> dict[str, float]:
        return {
            "low_worn_made": self.made,
            "low_worn_positives": len(self.crops),
            "low_worn_not_found": self.not_found,
            "low_worn_out_of_view": self.out_of_view,
            "low_worn_photos": self.photos,
        }


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return image
    return cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _main_face(dets, min_side: float, min_score: float = 0.0):
    """The largest detection scoring at least ``min_score`` (as a one-row ``Detections``) if
    it is at least ``min_side`` wide and has plausible eyes (0.2-0.7 of its box apart: a mask's
    edge or a tile's zoom misplaces them), else None."""
    if not len(dets):
        return None
    sides = dets.boxes[:, 2] - dets.boxes[:, 0]
    # the largest of those scoring enough (a large, unsure false detection on clothing, as
    # on the example astronaut's suit, must not hide the face)
    sides = np.where(dets.scores >= min_score, sides, -1.0)
    i = int(sides.argmax())
    eyes = float(np.linalg.norm(dets.keypoints[i, RIGHT_EYE] - dets.keypoints[i, LEFT_EYE]))
    if sides[i] < min_side or dets.scores[i] < min_score or not 0.2 <= eyes / sides[i] <= 0.7:
        return None
    return dets[i]


def mask_sources(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(crop, mask, keypoints) of the pairs whose face is found and mask is not empty: the
    masks composites are cut from, aligned by these keypoints."""
    from maskseg.pipeline.finder import FaceFinder
    from maskseg.pipeline.scene_config import SceneConfig

    # the pair's own face: one detection over the whole crop (tiles zoom into parts of it)
    whole = FaceFinder(SceneConfig(score_threshold=0.2, mode="frame"))
    sources = []
    for image, mask in pairs:
        d = _main_face(whole.find(image), 0.5 * min(image.shape[:2]))
        if d is not None and mask.any():
            sources.append((image, mask, d.keypoints[0]))
    return sources


def low_worn_crops(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    photos: Iterable[np.ndarray],
    cfg: LowWornConfig | None = None,
    size: int = 160,
) -> LowWornCrops:
    """Positive crops of low-worn masks composited from ``pairs`` onto ``photos``.

    Args:
        pairs: (RGB crop, bool mask) of MSFD pairs (the model's training pairs only).
        photos: RGB photos of faces without masks (the gate's training photos only), read
            once: an iterator keeps only their shrunk copies in memory.
        size: crop side (the model's input size).
    """
    from maskseg.data.lowworn import paste_mask, visible_share
    from maskseg.pipeline.detect import box_iou, cut_crop
    from maskseg.pipeline.finder import FaceFinder
    from maskseg.pipeline.scene_config import SceneConfig

    cfg = LowWornConfig() if cfg is None else cfg
    out = LowWornCrops()
    # the scene path's finder at the low threshold the gate's scene crops use
    finder = FaceFinder(SceneConfig(score_threshold=0.2))
    sources = mask_sources(pairs)
    targets = []
    for photo in photos:
        out.photos += 1
        photo = _shrink(photo, cfg.max_side)
        d = _main_face(finder.find(photo), 0.0, min_score=0.5)
        if d is not None:
            targets.append((photo, d.boxes[0], d.keypoints[0]))
    if not sources or not targets:
        raise ValueError("low-worn composites need pairs and photos in which a face is found")
    rng = np.random.default_rng(cfg.seed)
    for _ in range(cfg.n):
        photo, box, kps = targets[int(rng.integers(len(targets)))]
        src, src_mask, src_kps = sources[int(rng.integers(len(sources)))]
        drop = float(rng.uniform(*cfg.drop))
        try:
            pasted = paste_mask(photo, kps, src, src_mask, src_kps, drop)
        except ValueError:
            continue
        out.made += 1
        dets = finder.find(pasted.image)
        if not len(dets):
            out.not_found += 1
            continue
        overlaps = box_iou(box.astype(np.float64), dets.boxes.astype(np.float64))
        j = int(overlaps.argmax())
        if overlaps[j] < 0.5:
            out.not_found += 1
            continue
        rect = finder.windows(dets[j])[0]
        if visible_share(pasted.label, rect) < cfg.min_visible:
            out.out_of_view += 1
            continue
        out.crops.append(cut_crop(pasted.image, rect, size=size))
        out.drops.append(drop)
    log.info("low-worn composites: %s", out.summary())
    return out
