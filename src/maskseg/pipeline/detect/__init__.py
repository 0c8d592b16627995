"""Face detection with an embedded model (no download): MediaPipe BlazeFace on onnxruntime.

Detectors register by name; ``get_detector(name, **options)`` builds one. Every detector
takes an RGB uint8 image and returns ``Detections`` (boxes, scores, six keypoints) in that
image's pixels. ``crops`` turns a detection into the square crop the segmentation model was
trained on, and pastes a crop's mask back into the frame.

    det = get_detector("blazeface", mode="tiles")       # short range, + tiles for small faces
    faces = det.detect(frame)                            # Detections, best first
    mapping = load_crop_mapping("blazeface", "tiles")   # calibrated box -> crop
    for rect in crop_boxes(faces, mapping):
        crop = cut_crop(frame, rect)
        full = paste_mask(full, predictor.predict(crop), rect)

``landmarks`` adds MediaPipe's Face Mesh on top: 468 points and a face-presence score per
detected face (``FaceLandmarker(...).for_detections(frame, faces)``).

onnxruntime is imported only when a detector or landmarker is built, never by
``import maskseg.pipeline.detect``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from maskseg.pipeline.detect._base import (
    MAX_TILES,
    MIN_TILE_SHARE,
    MODES,
    DeadlineExceeded,
    DetectorOptions,
    FaceDetector,
    check_deadline,
    default_threads,
)
from maskseg.pipeline.detect.anchors import (
    FULL_RANGE,
    KEYPOINT_NAMES,
    SHORT_RANGE,
    AnchorSpec,
    decode,
    generate_anchors,
)
from maskseg.pipeline.detect.blazeface import BlazeFace
from maskseg.pipeline.detect.crops import (
    CropMapping,
    crop_box,
    crop_boxes,
    cut_crop,
    load_crop_mapping,
    paste_mask,
    pixel_rect,
)
from maskseg.pipeline.detect.detections import Detections
from maskseg.pipeline.detect.landmarks import (
    PRESENCE_THRESHOLD,
    FaceLandmarker,
    FaceLandmarks,
    FaceRoi,
)
from maskseg.pipeline.detect.nms import box_iou, weighted_nms

DEFAULT_DETECTOR = "blazeface"

_REGISTRY: dict[str, Callable[[DetectorOptions], FaceDetector]] = {}


def register_detector(
    name: str, factory: Callable[[DetectorOptions], FaceDetector], *, replace: bool = False
) -> None:
    """Make ``get_detector(name)`` build ``factory(options)``.

    Raises ValueError if the name is taken, unless ``replace``: a silent overwrite would
    change what an existing name means.
    """
    if name in _REGISTRY and not replace:
        raise ValueError(f"detector {name!r} is already registered")
    _REGISTRY[name] = factory


def list_detectors() -> list[str]:
    """Registered detector names, the default first."""
    return list(_REGISTRY)


def detector_options(options: DetectorOptions | None = None, **overrides: Any) -> DetectorOptions:
    """``options`` (or the defaults) with keyword overrides; unknown keys fail naming the
    valid ones."""
    base = options or DetectorOptions()
    valid = {f.name for f in dataclasses.fields(DetectorOptions)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown detector option(s) {unknown}; valid: {sorted(valid)}")
    return dataclasses.replace(base, **overrides)


def get_detector(
    name: str = DEFAULT_DETECTOR, options: DetectorOptions | None = None, **overrides: Any
) -> FaceDetector:
    """Build a registered detector.

    Args:
        name: one of ``list_detectors()``.
        options: full options; keyword arguments override single fields
            (``get_detector("blazeface", mode="tiles", score_threshold=0.6)``).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown detector {name!r}; valid: {', '.join(list_detectors())}")
    return _REGISTRY[name](detector_options(options, **overrides))


register_detector("blazeface", lambda options: BlazeFace("short", options))
register_detector("blazeface-full", lambda options: BlazeFace("full", options))

__all__ = [
    "DEFAULT_DETECTOR",
    "FULL_RANGE",
    "PRESENCE_THRESHOLD",
    "KEYPOINT_NAMES",
    "MAX_TILES",
    "MIN_TILE_SHARE",
    "MODES",
    "SHORT_RANGE",
    "AnchorSpec",
    "BlazeFace",
    "CropMapping",
    "DeadlineExceeded",
    "Detections",
    "DetectorOptions",
    "FaceDetector",
    "FaceLandmarker",
    "FaceLandmarks",
    "FaceRoi",
    "box_iou",
    "check_deadline",
    "crop_box",
    "crop_boxes",
    "cut_crop",
    "decode",
    "default_threads",
    "detector_options",
    "generate_anchors",
    "get_detector",
    "list_detectors",
    "load_crop_mapping",
    "paste_mask",
    "pixel_rect",
    "register_detector",
    "weighted_nms",
]
