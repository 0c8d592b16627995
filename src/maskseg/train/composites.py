"""Segmenter training windows with real context: MSFD masks composited onto real faces, cut
as the scene path cuts them, then framed looser.

    made = composite_windows(pairs, photos, CompositeConfig(n=1000), size=160)

The MSFD crops end at the chin, so a segmenter trained on them alone has never seen what lies
around a face: hair, neck, collar, background. In a whole photo the scene path's window (and
more so a grown one) shows all of that, and the crop-trained model paints some of it, or cuts
a mask that reaches past where an MSFD crop would end. Here each training pair's mask is pasted
onto a face of a photo without a mask (``maskseg.data.lowworn.paste_mask``: eye-aligned, light
matched, feathered, pixel-exact label), mostly where it sat on its own face and sometimes worn
low, the face is found again by the scene path's own finder, and its window is cut larger by a
drawn factor and shifted: the label says where the mask ends in every framing, and everything
around it is a real "not mask".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

log = logging.getLogger(__name__)

ROOMY = 0.75


@dataclass(frozen=True)
class CompositeConfig:
    """How many composited windows, and how they are framed.

    Attributes:
        n: composites to make.
        low_share: share of the masks moved down the face (worn under the nose, on the chin).
        drop_correct, drop_low: (low, high) of the uniform draw of the move down the face, in
            eye-to-mouth distances, for masks worn correctly and low.
        scale: (low, high) of the window's side over the scene path's window side (1: the
            MSFD framing; 1.8: the face about half the window).
        shift: the window's centre moves by up to this share of its side on each axis.
        roomy_share: share of composites drawn from the photos whose face has room around it
            (at least ``ROOMY`` of the window at the largest scale inside the photo: neck,
            collar, hair and background in view; about 6 % of ../shared/data/faces' photos
            without a mask); most photos of faces are tight crops, whose windows only
            repeat their edges.
        whole_masks: only masks that end inside their crop (``ends_inside``): a mask cut by
            its crop's bottom edge, pasted onto a face, ends in a straight line with the
            face's neck below, a mask no one wears (the label is right, the picture is not).
        max_side: target photos are shrunk to at most this long side first (speed).
        seed: draws of photos, pairs, drops and framings.
    """

    n: int = 1000
    low_share: float = 0.3
    drop_correct: tuple[float, float] = (-0.05, 0.1)
    drop_low: tuple[float, float] = (0.3, 1.1)
    scale: tuple[float, float] = (1.0, 1.8)
    shift: float = 0.1
    roomy_share: float = 0.5
    whole_masks: bool = False
    max_side: int = 1024
    seed: int = 0


@dataclass
class CompositeWindows:
    """The windows at the model's size; ``not_found``: composites whose masked face the
    finder missed (framed by the unmasked face's window instead)."""

    images: np.ndarray  # (N, S, S, 3) uint8
    masks: np.ndarray  # (N, S, S) uint8 0/1
    photos: int = 0
    roomy: int = 0
    made: int = 0
    not_found: int = 0
    drops: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "composite_windows": len(self.images),
            "composite_made": self.made,
            "composite_not_found": self.not_found,
            "composite_photos": self.photos,
            "composite_roomy_photos": self.roomy,
        }


def frame_window(rect: np.ndarray, scale: float, dx: float, dy: float) -> np.ndarray:
    """The square ``rect`` (x1, y1, x2, y2) scaled about its centre by ``scale`` and moved by
    ``dx``, ``dy`` times the new side."""
    x1, y1, x2, y2 = (float(v) for v in rect)
    side = (x2 - x1) * scale
    cx, cy = (x1 + x2) / 2 + dx * side, (y1 + y2) / 2 + dy * side
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)


def cut_pair(
    image: np.ndarray, label: np.ndarray, rect: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Image and label cut from the same window at ``size`` (the label by area, then > 0.5),
    so they stay pixel-aligned whatever the window's scale."""
    from maskseg.pipeline.detect import cut_crop

    crop = cut_crop(image, rect, size=size)
    lab = cut_crop(label.astype(np.float32), rect)
    lab = cv2.resize(lab, (size, size), interpolation=cv2.INTER_AREA) > 0.5
    return crop, lab.astype(np.uint8)


def ends_inside(mask: np.ndarray, band: float = 0.04, most: float = 0.02) -> bool:
    """Whether a crop's mask ends inside it: at most ``most`` of its bottom band (``band`` of
    its height, at least 2 rows) is mask."""
    m = np.asarray(mask, bool)
    rows = max(2, int(round(band * m.shape[0])))
    return bool(m.any()) and float(m[-rows:].mean()) <= most


def composite_windows(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    photos: Iterable[np.ndarray],
    cfg: CompositeConfig | None = None,
    size: int = 160,
) -> CompositeWindows:
    """Training windows of MSFD masks composited onto ``photos``.

    Args:
        pairs: (RGB crop, bool mask) of MSFD pairs (the model's training pairs only).
        photos: RGB photos of faces without masks (training photos only), read once.
        size: the model's input size.
    """
    from maskseg.data.lowworn import paste_mask
    from maskseg.pipeline.detect import box_iou
    from maskseg.pipeline.finder import FaceFinder
    from maskseg.pipeline.scene_config import SceneConfig
    from maskseg.train.lowworn import _main_face, _shrink, mask_sources

    cfg = CompositeConfig() if cfg is None else cfg
    finder = FaceFinder(SceneConfig())  # the scene path's finder, as shipped
    if cfg.whole_masks:
        pairs = [(image, mask) for image, mask in pairs if ends_inside(mask)]
    sources = mask_sources(pairs)
    targets, roomy = [], []
    n_photos = 0
    for photo in photos:
        n_photos += 1
        photo = _shrink(photo, cfg.max_side)
        d = _main_face(finder.find(photo), 0.0, min_score=0.5)
        if d is not None:
            h, w = photo.shape[:2]
            x1, y1, x2, y2 = frame_window(finder.windows(d)[0], cfg.scale[1], 0.0, 0.0)
            inside = max(0.0, min(w, x2) - max(0, x1)) * max(0.0, min(h, y2) - max(0, y1))
            if inside >= ROOMY * (x2 - x1) * (y2 - y1):
                roomy.append(len(targets))
            targets.append((photo, d))
    if not sources or not targets:
        raise ValueError("composites need pairs and photos in which a face is found")
    rng = np.random.default_rng(cfg.seed)
    images, masks, drops = [], [], []
    made = not_found = 0
    for _ in range(cfg.n):
        pick = rng.random() < cfg.roomy_share and roomy
        k = roomy[int(rng.integers(len(roomy)))] if pick else int(rng.integers(len(targets)))
        photo, det = targets[k]
        src, src_mask, src_kps = sources[int(rng.integers(len(sources)))]
        low = rng.random() < cfg.low_share
        drop = float(rng.uniform(*(cfg.drop_low if low else cfg.drop_correct)))
        try:
            pasted = paste_mask(photo, det.keypoints[0], src, src_mask, src_kps, drop)
        except ValueError:
            continue
        made += 1
        # the face as the scene path finds it with the mask on (a mask moves the box); where
        # the finder misses it, the window of the face without the mask (the framing is drawn
        # around it anyway)
        rect = finder.windows(det)[0]
        dets = finder.find(pasted.image)
        overlaps = box_iou(det.boxes[0].astype(np.float64), dets.boxes.astype(np.float64))
        if len(dets) and overlaps.max() >= 0.5:
            rect = finder.windows(dets[int(overlaps.argmax())])[0]
        else:
            not_found += 1
        scale = float(rng.uniform(*cfg.scale))
        dx, dy = rng.uniform(-cfg.shift, cfg.shift, 2)
        image, label = cut_pair(pasted.image, pasted.label, frame_window(rect, scale, dx, dy), size)
        images.append(image)
        masks.append(label)
        drops.append(drop)
    out = CompositeWindows(
        np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
        np.stack(masks) if masks else np.zeros((0, size, size), np.uint8),
        n_photos,
        len(roomy),
        made,
        not_found,
        drops,
    )
    log.info("composited windows: %s", out.summary())
    return out
