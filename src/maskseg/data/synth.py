"""Synthetic scenes with ground truth: labelled face crops placed in larger frames.

Real photos of several people with pixel masks are not available, so scenes are built from
the labelled crops: each crop (and its mask) is scaled and placed in a 640 x 480 frame over a
varied background, with unmasked faces beside it, whose correct mask is empty. Edges are
feathered over a random width, so no model can key on a paste seam, and the truth is the
placed mask where the crop shows (alpha >= 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

FRAME = (480, 640)  # height, width: a webcam frame
BACKGROUNDS = ("noise", "blurred", "flat", "gradient", "stripes")


@dataclass
class Placement:
    """Where one face went: its square x1, y1, x2, y2 and whether it wears a (labelled) mask."""

    id: str
    rect: tuple[int, int, int, int]
    masked: bool


@dataclass
class Scene:
    image: np.ndarray  # RGB uint8 (H, W, 3)
    truth: np.ndarray  # bool (H, W)
    placements: list[Placement]


def background(
    kind: str, rng: np.random.Generator, shape: tuple[int, int], photo: np.ndarray | None = None
) -> np.ndarray:
    """A background of the given kind: smoothed noise, a blurred photo, a flat colour, a
    colour gradient or soft stripes."""
    h, w = shape
    if kind == "noise":
        bg = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
        return cv2.resize(cv2.GaussianBlur(bg, (0, 0), 1.0), (w, h))
    if kind == "blurred" and photo is not None:
        return cv2.GaussianBlur(cv2.resize(photo, (w, h)), (0, 0), float(rng.uniform(6, 16)))
    if kind == "gradient" or kind == "blurred":
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
        line = (a[None] * (1 - t[:, None]) + b[None] * t[:, None]).astype(np.uint8)
        return np.broadcast_to(line[None] if len(t) == w else line[:, None], (h, w, 3)).copy()
    if kind == "stripes":
        period = float(rng.uniform(20, 120))
        x = np.arange(w, dtype=np.float32)
        wave = (0.5 + 0.5 * np.sin(2 * np.pi * x / period))[None, :, None]
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        return np.broadcast_to(a * wave + b * (1 - wave), (h, w, 3)).astype(np.uint8)
    bg = np.empty((h, w, 3), np.uint8)
    bg[:] = rng.integers(0, 256, 3)
    return bg


def feather_alpha(side: int, width: float) -> np.ndarray:
    """Blend weights (side, side, 1) of a pasted square: 1 inside, fading to 0 over ``width``
    pixels (at least one) at its edges, so a paste leaves no hard seam."""
    ramp = np.clip(
        (np.minimum(np.arange(side), np.arange(side)[::-1]) + 0.5) / max(1.0, width), 0, 1
    )
    return np.minimum.outer(ramp, ramp)[..., None]


def _free_spot(
    rng: np.random.Generator, side: int, shape: tuple[int, int], taken: list, tries: int = 50
) -> tuple[int, int] | None:
    h, w = shape
    for _ in range(tries):
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        if all(x + side <= a or b <= x or y + side <= c or d <= y for a, c, b, d in taken):
            return x, y
    return None


def compose(
    faces: Sequence[tuple[str, np.ndarray, np.ndarray | None]],
    rng: np.random.Generator,
    shape: tuple[int, int] = FRAME,
    sizes: tuple[int, int] = (110, 240),
    kind: str | None = None,
    photo: np.ndarray | None = None,
) -> Scene:
    """Place face crops in one frame, without overlaps (a face that does not fit is left out).

    Args:
        faces: (id, RGB crop, bool mask or None for an unmasked face).
        sizes: placed side range in pixels.
        kind: background kind (None: drawn at random from ``BACKGROUNDS``).
        photo: a photo to blur for the "blurred" background.
    """
    kind = kind or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    image = np.ascontiguousarray(background(kind, rng, shape, photo), dtype=np.float32)
    truth = np.zeros(shape, bool)
    taken: list[tuple[int, int, int, int]] = []
    placements = []
    for fid, crop, mask in faces:
        side = int(rng.integers(sizes[0], sizes[1] + 1))
        spot = _free_spot(rng, side, shape, taken)
        if spot is None:
            continue
        x, y = spot
        face = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
        alpha = feather_alpha(side, float(rng.uniform(0.02, 0.08)) * side)
        region = image[y : y + side, x : x + side]
        image[y : y + side, x : x + side] = alpha * face + (1 - alpha) * region
        if mask is not None:
            m = cv2.resize(mask.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
            truth[y : y + side, x : x + side] |= (m > 0.5) & (alpha[..., 0] >= 0.5)
        taken.append((x, y, x + side, y + side))
        placements.append(Placement(fid, (x, y, x + side, y + side), mask is not None))
    return Scene(np.clip(image + 0.5, 0, 255).astype(np.uint8), truth, placements)
