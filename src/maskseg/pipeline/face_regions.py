"""Parts of a face as regions drawn from its Face Mesh landmarks, and how much of each a mask
covers: the geometry under the wear check (``maskseg.pipeline.wear``), apart from its rules.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Face Mesh indices (MediaPipe's canonical face model; see maskseg.pipeline.detect.landmarks).
NOSE_REGION = (4, 45, 275, 98, 327, 2, 1)  # convex hull
MOUTH_REGION = (
    *(61, 146, 91, 181, 84, 17, 314, 405, 321, 375),
    *(291, 409, 270, 269, 267, 0, 37, 39, 40, 185),
)  # outer lip contour, in order
CHIN_REGION = (18, 83, 313, 201, 421, 208, 428, 171, 396, 148, 377, 152, 175, 199, 200)  # hull
LOWER_FACE = (
    *(454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152),
    *(148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 195),
)  # the oval from cheek to cheek round the chin, closed over the nose bridge
REGIONS = {
    "nose": NOSE_REGION,
    "mouth": MOUTH_REGION,
    "chin": CHIN_REGION,
    "lower_face": LOWER_FACE,
}
HULLS = frozenset({"nose", "chin"})
GRID = 64  # at most GRID x GRID sample points per region


def convex_hull(points: np.ndarray) -> np.ndarray:
    """The convex hull (K, 2) of 2-D points (OpenCV's), in float64."""
    pts = np.unique(np.asarray(points, np.float64).reshape(-1, 2), axis=0)
    if len(pts) < 3:
        return pts
    return cv2.convexHull(pts.astype(np.float32))[:, 0].astype(np.float64)


def region_polygon(points: np.ndarray, name: str) -> np.ndarray:
    """A region's polygon (K, 2) from a face's 468 landmarks."""
    poly = np.asarray(points, np.float64).reshape(-1, 2)[list(REGIONS[name])]
    return convex_hull(poly) if name in HULLS else poly


def inside_grid(poly: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Which points of the grid ``xs`` x ``ys`` lie inside the closed polygon: bool
    (len(ys), len(xs)), by the even-odd rule (each row's edge crossings computed once)."""
    ax, ay = poly[:, 0], poly[:, 1]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    keep = ay != by  # level edges are never crossed
    ax, ay, bx, by = (v[keep][:, None] for v in (ax, ay, bx, by))
    rows = np.asarray(ys, np.float64)[None, :]
    crosses = (ay > rows) != (by > rows)  # (edges, rows)
    cut = np.where(crosses, ax + (rows - ay) * ((bx - ax) / (by - ay)), -np.inf)
    left_of = np.asarray(xs, np.float64)[None, None, :] < cut[:, :, None]
    return np.count_nonzero(left_of, axis=0) % 2 == 1


def region_share(
    poly: np.ndarray,
    mask: np.ndarray,
    origin: tuple[float, float] = (0.0, 0.0),
    grid: int = GRID,
) -> tuple[float, float]:
    """(share of the region that is mask, share of the region inside the mask's frame).

    ``origin``: where the mask's top-left pixel lies in the polygon's coordinates. The region
    is sampled at pixel centres, every ``max(1, side / grid)`` pixels; samples outside the
    frame read its nearest edge pixel. A region with no sample inside it (degenerate, or under
    a pixel) is (0.0, 0.0)."""
    poly = np.asarray(poly, np.float64).reshape(-1, 2)
    if len(poly) < 3:
        return 0.0, 0.0
    x1, y1 = poly.min(axis=0)
    x2, y2 = poly.max(axis=0)
    step = max(1.0, max(x2 - x1, y2 - y1) / grid)
    xs = np.arange(math.floor(x1) + 0.5, x2, step)
    ys = np.arange(math.floor(y1) + 0.5, y2, step)
    inside = inside_grid(poly, xs, ys)
    if not inside.any():
        return 0.0, 0.0
    rows, cols = np.nonzero(inside)
    px = np.floor(xs[cols] - origin[0]).astype(np.int64)
    py = np.floor(ys[rows] - origin[1]).astype(np.int64)
    h, w = mask.shape
    ok = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    covered = mask[np.clip(py, 0, h - 1), np.clip(px, 0, w - 1)]
    return float(covered.mean()), float(ok.mean())


def region_shares(
    points: np.ndarray, mask: np.ndarray, origin: tuple[float, float] = (0.0, 0.0)
) -> dict[str, tuple[float, float]]:
    """``region_share`` of every region (``REGIONS``)."""
    return {name: region_share(region_polygon(points, name), mask, origin) for name in REGIONS}
