"""From a network's logits to the mask a user gets (numpy + OpenCV, no PyTorch).

One path for every backend and front end: upsample the logits to the image's size
(bilinear, half-pixel centres, as ``torch.nn.functional.interpolate(align_corners=False)``),
threshold, then clean up (largest region, holes filled). Very large outputs are built in
horizontal strips so memory stays near the size of the output mask itself.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Clean-up runs at full resolution up to this many pixels; above it, on a grid of
# CLEAN_MAX_SIDE px (long side) whose cleaned mask is then upsampled to the full size.
CLEAN_MAX_PIXELS = 16_000_000
CLEAN_MAX_SIDE = 4096
_STRIP_ROWS = 512


def logit(probability: float) -> float:
    """The logit whose sigmoid is ``probability`` (thresholds compare logits, not sigmoids)."""
    if not 0 < probability < 1:
        raise ValueError(f"threshold must be in (0, 1), got {probability}")
    return math.log(probability / (1 - probability))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x.astype(np.float32)))).astype(np.float32)


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of half-pixel bilinear sampling along one axis."""
    src = (np.arange(n_out, dtype=np.float32) + 0.5) * np.float32(n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def upsample(
    values: np.ndarray, height: int, width: int, threshold: float | None = None
) -> np.ndarray:
    """Bilinearly resize a 2-D float map to (height, width); with ``threshold``, return
    ``resized > threshold`` as bool.

    Up to ``CLEAN_MAX_PIXELS`` this is OpenCV's INTER_LINEAR (half-pixel centres, edge
    clamped: PyTorch's ``align_corners=False``). Beyond it the same sampling runs in numpy
    strip by strip, so no full-size float map is held (a 12000 x 12000 output needs its
    144 MB mask and a few MB more).
    """
    src = np.asarray(values, dtype=np.float32)
    src = src.reshape(src.shape[-2:])
    if height * width <= CLEAN_MAX_PIXELS:
        out = cv2.resize(src, (width, height), interpolation=cv2.INTER_LINEAR)
        out = out.reshape(height, width)  # cv2 drops a length-1 axis
        return out if threshold is None else out > threshold
    return _upsample_strips(src, height, width, threshold)


def _upsample_strips(
    src: np.ndarray, height: int, width: int, threshold: float | None
) -> np.ndarray:
    y0, y1, wy = _axis(src.shape[0], height)
    x0, x1, wx = _axis(src.shape[1], width)
    rows = src[:, x0] * (1 - wx) + src[:, x1] * wx  # (h_in, width): small, the input is small
    out = np.empty((height, width), dtype=np.float32 if threshold is None else bool)
    for start in range(0, height, _STRIP_ROWS):
        sl = slice(start, start + _STRIP_ROWS)
        w = wy[sl, None]
        strip = rows[y0[sl]] * (1 - w) + rows[y1[sl]] * w
        out[sl] = strip if threshold is None else strip > threshold
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not connected to the image border (straps, logos, valves)."""
    m = mask.astype(np.uint8)
    h, w = m.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = m
    cv2.floodFill(padded, None, (0, 0), 1)
    return mask.astype(bool) | (padded[1:-1, 1:-1] == 0)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep only the largest 8-connected region of a bool mask."""
    # Areas by bincount: connectedComponentsWithStats computes them 8x slower at crop size.
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    return labels == 1 + int(np.argmax(np.bincount(labels.ravel(), minlength=n)[1:]))


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected region and fill its holes.

    A face crop shows one mask: stray blobs elsewhere and holes where a printed pattern fooled
    the network are errors, so removing them is safe and raises IoU.
    """
    if not mask.any():
        return mask.astype(bool)
    return fill_holes(largest_component(mask))


def logits_to_mask(
    logits: np.ndarray,
    height: int,
    width: int,
    logit_threshold: float = 0.0,
    clean: bool = True,
) -> np.ndarray:
    """A model's logit map (any leading singleton dims) -> bool mask (height, width).

    Upsampling logits (not a binary mask) keeps edges smooth at the original resolution.
    Above ``CLEAN_MAX_PIXELS`` the clean-up runs on a grid of ``CLEAN_MAX_SIDE`` px and its
    result is upsampled, which moves edges by under one grid cell and bounds memory.
    """
    if height * width <= CLEAN_MAX_PIXELS:
        mask = upsample(logits, height, width, threshold=logit_threshold)
        return clean_mask(mask) if clean else mask
    if not clean:
        return upsample(logits, height, width, threshold=logit_threshold)
    scale = CLEAN_MAX_SIDE / max(height, width)
    gh, gw = max(1, round(height * scale)), max(1, round(width * scale))
    grid = clean_mask(upsample(logits, gh, gw, threshold=logit_threshold))
    # uint8 0/255 through OpenCV's fixed-point resize: one byte per output pixel, fast.
    up = cv2.resize(grid.view(np.uint8) * np.uint8(255), (width, height), cv2.INTER_LINEAR)
    return up > 127
