"""Mask encodings the API returns: COCO run-length encoding, polygons, PNG/JPEG bytes.

COCO RLE (as ``pycocotools.mask.encode`` writes it, without needing pycocotools): the mask is
read in column-major (Fortran) order, ``counts`` alternate runs of 0s and 1s and always start
with the 0s (a mask whose first pixel is set starts with a run of length 0). The compressed
string packs each count into 5-bit groups, least significant first, one character per group
(value + 48, bit 0x20 = "more groups follow", bit 0x10 of the last group = sign); from the
fourth count on, the difference to the count two places before is stored instead, which keeps
the alternating runs of similar masks short.
"""

from __future__ import annotations

import cv2
import numpy as np


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO counts of a 2-D mask (any dtype; non-zero is set)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    return [0, *counts] if flat[0] else counts


def counts_to_string(counts: list[int]) -> str:
    """The compressed string form of COCO counts (pycocotools' ``rleToString``)."""
    out = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: a negative delta ends in all ones (-1)
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr(c + 48 + (0x20 if more else 0)))
    return "".join(out)


def string_to_counts(s: str) -> list[int]:
    """Inverse of ``counts_to_string`` (pycocotools' ``rleFrString``)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = k = 0
        more = True
        while more:
            if p >= len(s):
                raise ValueError("truncated RLE string")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode_rle(mask: np.ndarray) -> dict:
    """``{"size": [height, width], "counts": str}``, as ``pycocotools.mask.encode`` gives
    (its counts are bytes; decode them as ASCII to compare)."""
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": counts_to_string(rle_counts(mask))}


def decode_rle(rle: dict) -> np.ndarray:
    """Bool mask (height, width) from a COCO RLE with string or list counts."""
    h, w = rle["size"]
    counts = rle["counts"]
    counts = string_to_counts(counts) if isinstance(counts, str) else list(counts)
    if sum(counts) != h * w:
        raise ValueError(f"RLE counts add up to {sum(counts)} pixels, not {h} x {w}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape((h, w), order="F")


def mask_polygons(mask: np.ndarray, tolerance: float = 1.0) -> list[dict]:
    """The mask's regions as polygons: per outer boundary its holes, each a flat
    ``[x1, y1, x2, y2, ...]`` list of pixel coordinates (as COCO's segmentation polygons).

    Args:
        tolerance: Douglas-Peucker simplification in pixels (0: every boundary pixel).

    Returns:
        ``[{"exterior": [...], "holes": [[...], ...]}, ...]``; polygons simplified to fewer than
        three points (specks) are left out.
    """
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []

    def flat(contour: np.ndarray) -> list[int] | None:
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, tolerance, True)
        return contour.reshape(-1).tolist() if len(contour) >= 3 else None

    out = []
    links = hierarchy[0]  # per contour: next, previous, first child, parent
    for i, contour in enumerate(contours):
        if links[i][3] != -1:
            continue  # a hole: listed under its parent
        exterior = flat(contour)
        if exterior is None:
            continue
        holes = []
        child = links[i][2]
        while child != -1:
            hole = flat(contours[child])
            if hole is not None:
                holes.append(hole)
            child = links[child][0]
        out.append({"exterior": exterior, "holes": holes})
    return out


def png_bytes(mask: np.ndarray) -> bytes:
    """A 0/255 single-channel PNG of a bool mask."""
    ok, buf = cv2.imencode(".png", np.asarray(mask, dtype=bool).view(np.uint8) * np.uint8(255))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG of an RGB uint8 image."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
