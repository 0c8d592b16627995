"""Which square parts of an image a detector looks at, and the exact pixel maps to and fro.

A BlazeFace pass sees one square region of the image resized to the model input (128 or
192 px). The whole-frame pass is MediaPipe's letterbox: a square as large as the long side,
centred, so the short side gets black bars. Tiles and regions of interest are smaller squares,
so a small face fills more of the input. Regions may extend past the image; that part is black,
as MediaPipe's ``BORDER_ZERO``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Square:
    """A square region in image pixels: left, top and side (floats; may leave the image)."""

    x: float
    y: float
    side: float


@dataclass(frozen=True)
class PixelMap:
    """Model-input pixel (u, v) -> image pixel (ox + u * sx, oy + v * sy), per axis.

    Per axis because the in-image part of a region is resized to whole pixels, so the two
    scales can differ by a fraction of a percent; undoing each exactly keeps boxes true.
    """

    ox: float
    oy: float
    sx: float
    sy: float

    def points(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) input-pixel points to image pixels."""
        out = np.empty_like(xy, dtype=np.float32)
        out[..., 0] = self.ox + xy[..., 0] * self.sx
        out[..., 1] = self.oy + xy[..., 1] * self.sy
        return out

    def boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Map (N, 4) x1, y1, x2, y2 input-pixel boxes to image pixels."""
        return self.points(boxes.reshape(-1, 2, 2)).reshape(-1, 4)


def frame_square(height: int, width: int) -> Square:
    """MediaPipe's letterbox: the whole image inside one centred square."""
    side = float(max(height, width))
    return Square((width - side) / 2.0, (height - side) / 2.0, side)


def tile_squares(
    height: int,
    width: int,
    fraction: float,
    overlap: float,
    min_side: float = 0.0,
    max_tiles: int | None = None,
) -> list[Square]:
    """Overlapping square tiles covering the image, row by row.

    Args:
        fraction: tile side as a fraction of the image's shorter side (scale-free, so a
            4k photo gets as many tiles as a 640x480 frame).
        overlap: fraction of a tile shared with its neighbour; a face no larger than
            ``overlap * side`` lies wholly inside at least one tile.
        min_side: tiles are at least this many pixels (the detector sets it from its input
            size): on a thin image, 2/3 of a short side of a few pixels would be tiles of a
            pixel or less, tens of thousands of them, each upscaled to the model input.
        max_tiles: at most this many tiles; when the side above would give more (very long
            images), tiles grow to the smallest side that gives no more than this.

    A tile larger than the image's extent along an axis is centred on it (the part outside is
    black, as in the frame pass). Photos of ordinary shape (aspect ratio up to 11:1 with 64 tiles,
    short side at least 1.5 ``min_side``) keep ``fraction`` of the short side.
    """
    if not 0.0 < fraction <= 1.0 or not 0.0 <= overlap < 1.0:
        raise ValueError(f"need 0 < fraction <= 1 and 0 <= overlap < 1, got {fraction}, {overlap}")
    if max_tiles is not None and max_tiles < 1:
        raise ValueError(f"max_tiles must be >= 1 or None, got {max_tiles}")
    side = max(fraction * min(height, width), float(min_side))
    if max_tiles is not None and _tile_count(height, width, side, overlap) > max_tiles:
        side = _grown_side(height, width, side, overlap, max_tiles)

    def starts(length: int) -> np.ndarray:
        if length < side:
            return np.array([(length - side) / 2.0])
        n = _tiles_along(length, side, overlap)
        return np.linspace(0.0, length - side, n)

    return [Square(float(x), float(y), side) for y in starts(height) for x in starts(width)]


def _tiles_along(length: float, side: float, overlap: float) -> int:
    """How many tiles of ``side`` with ``overlap`` cover ``length`` (at least one)."""
    return max(1, math.ceil((length - side) / (side * (1.0 - overlap)) - 1e-9) + 1)


def _tile_count(height: int, width: int, side: float, overlap: float) -> int:
    return _tiles_along(height, side, overlap) * _tiles_along(width, side, overlap)


def _grown_side(height: int, width: int, side: float, overlap: float, max_tiles: int) -> float:
    """The smallest tile side >= ``side`` giving at most ``max_tiles`` tiles.

    The count only changes where ``length = side * (1 + k * (1 - overlap))`` along one axis,
    so the answer is ``side`` or one of those sides (exact; no search tolerance).
    """
    candidates = sorted(
        length / (1.0 + k * (1.0 - overlap))
        for length in (height, width)
        for k in range(max_tiles)
        if length / (1.0 + k * (1.0 - overlap)) > side
    )
    for candidate in candidates:
        if _tile_count(height, width, candidate, overlap) <= max_tiles:
            return candidate
    return float(max(height, width))  # unreachable: k = 0 gives one tile


def roi_squares(rois: np.ndarray, margin: float) -> list[Square]:
    """One square per x1, y1, x2, y2 box: centred on it, ``margin`` times its longer side.

    A margin near 2 keeps a face tracked in the previous frame inside the square after it
    moves, and makes it fill about half the model input, where BlazeFace is most reliable.
    """
    rois = np.asarray(rois, np.float64).reshape(-1, 4)
    out = []
    for x1, y1, x2, y2 in rois:
        side = margin * max(x2 - x1, y2 - y1, 1.0)
        out.append(Square((x1 + x2 - side) / 2.0, (y1 + y2 - side) / 2.0, side))
    return out


def cut_square(image: np.ndarray, square: Square, size: int) -> tuple[np.ndarray, PixelMap]:
    """Resize the part of ``image`` inside ``square`` to a size x size input (black outside).

    Returns:
        the uint8 (size, size, C) input and the map from its pixels back to the image's.
    """
    h, w = image.shape[:2]
    scale = size / square.side
    ix0 = min(max(round(square.x), 0), w)
    iy0 = min(max(round(square.y), 0), h)
    ix1 = min(max(round(square.x + square.side), 0), w)
    iy1 = min(max(round(square.y + square.side), 0), h)
    tx0 = min(max(round((ix0 - square.x) * scale), 0), size)
    ty0 = min(max(round((iy0 - square.y) * scale), 0), size)
    tx1 = min(max(round((ix1 - square.x) * scale), 0), size)
    ty1 = min(max(round((iy1 - square.y) * scale), 0), size)
    out = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    if ix1 <= ix0 or iy1 <= iy0 or tx1 <= tx0 or ty1 <= ty0:
        inv = 1.0 / scale
        return out, PixelMap(square.x, square.y, inv, inv)
    part = image[iy0:iy1, ix0:ix1]
    shrink = (tx1 - tx0) < (ix1 - ix0)
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR  # area: no aliasing on big frames
    out[ty0:ty1, tx0:tx1] = cv2.resize(part, (tx1 - tx0, ty1 - ty0), interpolation=interp)
    sx = (ix1 - ix0) / (tx1 - tx0)
    sy = (iy1 - iy0) / (ty1 - ty0)
    return out, PixelMap(ix0 - tx0 * sx, iy0 - ty0 * sy, sx, sy)


def cut_squares(
    image: np.ndarray, squares: list[Square], size: int
) -> list[tuple[np.ndarray, PixelMap]]:
    """``cut_square`` for many squares, sharing the expensive part.

    Squares of one side that shrink the image (all tiles of a frame) are cut from one copy of
    the image resized once to their scale, instead of resizing each tile on its own; the maps
    still lead back to exact pixels of ``image``.
    """
    h, w = image.shape[:2]
    small: dict[float, tuple[np.ndarray, float, float]] = {}
    sides = Counter(sq.side for sq in squares)
    out = []
    for sq in squares:
        scale = size / sq.side
        if scale >= 1.0 or sides[sq.side] == 1:  # a lone square (a tracked face): its part only
            out.append(cut_square(image, sq, size))
            continue
        if sq.side not in small:
            sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
            resized = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
            small[sq.side] = (resized, sw / w, sh / h)
        resized, ax, ay = small[sq.side]
        tensor, pm = cut_square(resized, Square(sq.x * ax, sq.y * ay, sq.side * ax), size)
        out.append((tensor, PixelMap(pm.ox / ax, pm.oy / ay, pm.sx / ax, pm.sy / ay)))
    return out
