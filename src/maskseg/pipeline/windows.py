"""Face windows as geometry: which detections to keep, and how a window is scaled or grown.

Pure numpy on x1, y1, x2, y2 rectangles, apart from the models (and OpenCV's colour
conversion in ``colour_step``), so the scene path, the video loop and the tests share one
definition of a window and of a side a mask touches.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def overlap_shares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)): each pair's intersection as a share of the smaller rectangle's area
    (x1, y1, x2, y2; an empty rectangle counts as 1e-9)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)

    def area(r: np.ndarray) -> np.ndarray:
        return np.maximum((r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1]), 1e-9)

    return inter / np.minimum(area(a)[:, None], area(b)[None, :])


def drop_contained(detections: Any, limit: float) -> Any:
    """Keep detections (best first) whose intersection with every better kept one is at most
    ``limit`` of the smaller box's area."""
    if len(detections) < 2:
        return detections
    b = np.asarray(detections.boxes, np.float64)
    keep: list[int] = []
    for i in range(len(b)):
        if keep and (overlap_shares(b[i], b[keep]) > limit).any():
            continue
        keep.append(i)
    return detections[np.array(keep)]


def scale_rects(rects: np.ndarray, factor: float) -> np.ndarray:
    """Grow (or shrink) x1, y1, x2, y2 rectangles about their centres."""
    rects = np.asarray(rects, np.float64).reshape(-1, 4)
    centre = (rects[:, :2] + rects[:, 2:]) / 2
    half = (rects[:, 2:] - rects[:, :2]) / 2 * factor
    return np.concatenate([centre - half, centre + half], axis=1)


# sides of a window, in the order ``touched_sides`` reports them
SIDES = ("top", "bottom", "left", "right")


def touched_sides(mask: np.ndarray, touch: float, band: float) -> np.ndarray:
    """Which sides of a square crop mask the mask reaches: bool (4,) top, bottom, left, right.

    A side is touched when more than ``touch`` of the pixels in its band (the outermost
    ``band`` share of the side, at least one row or column) are mask."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(4, bool)
    h, w = mask.shape
    bh, bw = max(1, round(band * h)), max(1, round(band * w))
    shares = (
        mask[:bh].mean(),
        mask[h - bh :].mean(),
        mask[:, :bw].mean(),
        mask[:, w - bw :].mean(),
    )
    return np.array([s > touch for s in shares])


def colour_step(crop: np.ndarray, mask: np.ndarray, inner: np.ndarray) -> float:
    """How far the colour of a grown window's mask changes past its first window: the
    distance between the mean colours (CIE Lab, OpenCV's 8-bit scale) of the mask pixels
    outside and inside ``inner``. A mask that ran on over more of its own fabric stays close;
    one the decoder ran on over background, neck or clothing jumps.

    Args:
        crop: (S, S, 3) RGB uint8, the grown window's crop.
        mask: (S, S) bool, its mask.
        inner: x1, y1, x2, y2 of the first window in the crop's pixels.

    Returns:
        The distance; 0.0 when the mask has no pixel outside ``inner`` (nothing ran on), inf
        when it has none inside (nothing to compare with).
    """
    import cv2

    mask = np.asarray(mask, bool)
    h, w = mask.shape
    x1, y1, x2, y2 = (float(v) for v in np.asarray(inner, np.float64).reshape(4))
    ys, xs = np.mgrid[0:h, 0:w]
    cx, cy = xs + 0.5, ys + 0.5  # pixel centres
    inside = (cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)
    old, new = mask & inside, mask & ~inside
    if not new.any():
        return 0.0
    if not old.any():
        return float("inf")
    lab = cv2.cvtColor(np.ascontiguousarray(crop, np.uint8), cv2.COLOR_RGB2LAB).astype(np.float64)
    return float(np.linalg.norm(lab[new].mean(0) - lab[old].mean(0)))


def inner_rect(outer: np.ndarray, inner: np.ndarray, size: int) -> np.ndarray:
    """The window ``inner`` (x1, y1, x2, y2 in image pixels) in the pixels of ``outer``'s
    crop resized to ``size`` x ``size``."""
    o = np.asarray(outer, np.float64).reshape(4)
    scale = size / max(1e-9, side_of(o))
    return (np.asarray(inner, np.float64).reshape(4) - np.array([o[0], o[1]] * 2)) * scale


def grow_rect(rect: np.ndarray, sides: np.ndarray, by: float) -> np.ndarray:
    """A square x1, y1, x2, y2 grown to (1 + ``by``) times its side toward the touched
    ``sides`` (top, bottom, left, right): on each axis toward the one touched side, or evenly
    both ways when both or neither are touched."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(rect, np.float64).reshape(4))
    top, bottom, left, right = (bool(v) for v in np.asarray(sides).reshape(4))
    side = max(x2 - x1, y2 - y1)
    extra = side * by

    def start(lo: float, low: bool, high: bool) -> float:
        if low and not high:
            return lo - extra
        if high and not low:
            return lo
        return lo - extra / 2

    nx, ny = start(x1, left, right), start(y1, top, bottom)
    return np.array([nx, ny, nx + side + extra, ny + side + extra])


def side_of(rect: np.ndarray) -> float:
    """The side of a square x1, y1, x2, y2 window."""
    return float(max(rect[2] - rect[0], rect[3] - rect[1]))


def clip_to_reach(
    mask: np.ndarray,
    origin: tuple[int, int],
    box: np.ndarray,
    reach: tuple[float | None, float | None, float | None],
) -> np.ndarray:
    """``mask`` (a window's, its top-left pixel at ``origin`` = (x, y) in image pixels) with the
    pixels beyond reach of the face ``box`` (x1, y1, x2, y2) cleared: more than ``side`` box
    widths left or right of it, ``below`` box heights under it, ``above`` box heights over it
    (each None: no limit). Returns a new array, the input left as it is; with no limit at
    all, the input itself (no copy: paste calls this for every face of every frame)."""
    side, below, above = reach
    if side is None and below is None and above is None:
        return mask
    out = np.array(mask, dtype=bool, copy=True)
    x0, y0 = origin
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    h, w = out.shape
    # pixel centres in image coordinates
    xs = x0 + np.arange(w) + 0.5
    ys = y0 + np.arange(h) + 0.5
    if side is not None:
        out[:, (xs < x1 - side * bw) | (xs > x2 + side * bw)] = False
    if below is not None:
        out[ys > y2 + below * bh, :] = False
    if above is not None:
        out[ys < y1 - above * bh, :] = False
    return out
