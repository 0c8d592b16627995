"""Detection -> the square face crop the segmentation model was trained on, and back.

MSFD crops are tight squares framed by the dataset's own face boxes; BlazeFace frames faces
differently (its box runs from the brows to the chin). A ``CropMapping``, fitted by
``benchmarks/calibrate_crops.py`` on training crops placed at known positions, maps a
detection to the crop the training data would have had:

    crop centre = reference point + (ox, oy) * length,    crop side = scale * length

where the reference point and length come from the box or from the keypoints (``method``).
The fitted numbers ship as ``crop_<detector>_<mode>.json`` next to this file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskseg.pipeline.detect.detections import Detections

MAPPING_DIR = Path(__file__).parent
METHODS = ("box", "eyes", "eyes-mouth")
BORDERS = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}


@dataclass(frozen=True)
class CropMapping:
    """Detection -> square crop; see the module docstring.

    Attributes:
        method: what gives the reference point and length:
            "box": box centre; mean of box width and height.
            "eyes": midpoint of the eyes; inter-ocular distance.
            "eyes-mouth": midpoint of the eyes and mouth centre; eye-midpoint-to-mouth
                distance (kept steady when the head turns, where the eye distance shrinks).
        ox, oy: centre offset, in lengths (x right, y down).
        scale: crop side in lengths.
    """

    method: str = "box"
    ox: float = 0.0
    oy: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown crop method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")


def reference(box: np.ndarray, keypoints: np.ndarray | None, method: str) -> np.ndarray:
    """(cx, cy, length) a mapping is expressed in, for one detection."""
    box = np.asarray(box, np.float64).reshape(4)
    if method == "box":
        return np.array(
            [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, (box[2] - box[0] + box[3] - box[1]) / 2]
        )
    if keypoints is None:
        raise ValueError(f"crop method {method!r} needs the detection's keypoints")
    kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
    eyes = (kp[0] + kp[1]) / 2
    if method == "eyes":
        return np.array([eyes[0], eyes[1], np.linalg.norm(kp[0] - kp[1])])
    if method == "eyes-mouth":
        centre = (eyes + kp[3]) / 2
        return np.array([centre[0], centre[1], np.linalg.norm(kp[3] - eyes)])
    raise ValueError(f"unknown crop method {method!r}; valid: {', '.join(METHODS)}")


def crop_box(box: np.ndarray, keypoints: np.ndarray | None, mapping: CropMapping) -> np.ndarray:
    """The square crop, float64 (4,) x1, y1, x2, y2 in image pixels, for one detection.

    Args:
        box: (4,) x1, y1, x2, y2.
        keypoints: (6, 2), needed unless ``mapping.method == "box"``.
    """
    cx, cy, length = reference(box, keypoints, mapping.method)
    cx, cy = cx + mapping.ox * length, cy + mapping.oy * length
    half = max(mapping.scale * length, 1.0) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def crop_boxes(detections: Detections, mapping: CropMapping) -> np.ndarray:
    """``crop_box`` for every detection: float64 (N, 4)."""
    pairs = zip(detections.boxes, detections.keypoints, strict=True)
    rects = [crop_box(b, k, mapping) for b, k in pairs]
    return np.asarray(rects, np.float64).reshape(-1, 4)


def pixel_rect(rect: np.ndarray) -> tuple[int, int, int]:
    """(x, y, side) in whole pixels: ``cut_crop`` and ``paste_mask`` both round through this,
    so a crop's mask lands exactly where the crop came from."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(rect).reshape(4))
    side = max(1, round(max(x2 - x1, y2 - y1)))
    return round((x1 + x2 - side) / 2), round((y1 + y2 - side) / 2), side


def cut_crop(
    image: np.ndarray, rect: np.ndarray, size: int | None = None, border: str = "replicate"
) -> np.ndarray:
    """Cut a square crop from an image, padding where it leaves the frame.

    ``border="replicate"`` (default) repeats the edge pixels: training crops never contain
    flat bars, and a continued skin/mask edge keeps the model's input like what it was trained
    on; whatever the model predicts in the padding is dropped again by ``paste_mask``.
    ``"constant"`` pads black (MediaPipe's choice for the detector input, kept as an option).

    Args:
        image: (H, W) or (H, W, C) array.
        rect: x1, y1, x2, y2 (square, e.g. from ``crop_box``).
        size: resize the crop to size x size; None keeps its pixel size.

    Returns:
        (side, side[, C]) crop, or (size, size[, C]).
    """
    if border not in BORDERS:
        raise ValueError(f"unknown border {border!r}; valid: {', '.join(BORDERS)}")
    h, w = image.shape[:2]
    x, y, side = pixel_rect(rect)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    if x1 <= x0 or y1 <= y0:  # wholly outside: nothing to replicate from
        crop = np.zeros((side, side) + image.shape[2:], image.dtype)
    else:
        crop = cv2.copyMakeBorder(
            image[y0:y1, x0:x1],
            y0 - y,
            y + side - y1,
            x0 - x,
            x + side - x1,
            BORDERS[border],
            value=0,
        )
        if crop.ndim < image.ndim:  # OpenCV drops a trailing channel axis of length 1
            crop = crop[..., None]
    if size is not None and size != side:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (size, size), interpolation=interp)
    return crop


def paste_mask(frame_mask: np.ndarray, crop_mask: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """Paste a crop's mask into a full-frame mask (a new array; the input is left alone).

    The crop mask may have any square size; it is resized to the crop's pixel size as a
    float. Into a bool frame mask it goes thresholded at 0.5 and OR-ed; into a float one
    (probabilities) by maximum, so overlapping faces keep the stronger evidence. The part of
    the crop outside the frame is dropped.
    """
    out = frame_mask.copy()
    h, w = out.shape[:2]
    x, y, side = pixel_rect(rect)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    if x1 <= x0 or y1 <= y0:
        return out
    src = crop_mask.astype(np.float32)
    if src.shape[:2] != (side, side):
        interp = cv2.INTER_AREA if src.shape[0] > side else cv2.INTER_LINEAR
        src = cv2.resize(src, (side, side), interpolation=interp)
    part = src[y0 - y : y1 - y, x0 - x : x1 - x]
    if out.dtype == bool:
        out[y0:y1, x0:x1] |= part > 0.5
    else:
        np.maximum(out[y0:y1, x0:x1], part.astype(out.dtype), out=out[y0:y1, x0:x1])
    return out


def mapping_path(detector: str, mode: str) -> Path:
    return MAPPING_DIR / f"crop_{detector}_{mode}.json"


def load_crop_mapping(detector: str = "blazeface", mode: str = "frame") -> CropMapping:
    """The shipped calibrated mapping for a detector and mode.

    Raises FileNotFoundError listing the calibrated pairs when there is none.
    """
    path = mapping_path(detector, mode)
    if not path.is_file():
        have = sorted(p.stem.removeprefix("crop_") for p in MAPPING_DIR.glob("crop_*.json"))
        raise FileNotFoundError(
            f"no crop mapping for detector {detector!r} in mode {mode!r}; calibrated: "
            f"{', '.join(have) or 'none'} (run benchmarks/calibrate_crops.py)"
        )
    return CropMapping(**read_mapping_file(path)["mapping"])


def read_mapping_file(path: str | Path) -> dict[str, Any]:
    """The whole calibration record: ``mapping`` plus how it was fitted and its figures."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def mapping_record(mapping: CropMapping, **info: Any) -> dict[str, Any]:
    """A JSON-ready calibration record (what ``load_crop_mapping`` reads back)."""
    return {"mapping": asdict(mapping), **info}
