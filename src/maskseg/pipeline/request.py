"""One image in, its mask and faces out, the same way for every front end.

A front end (the CLI's ``predict``, ``maskseg serve``, a batch engine) hands bytes or a path to
``RequestEngine.run``: the image is decoded under the pixel limit and reduced to what the
models need (``maskseg.io.decode_image``), read as a face crop or as a scene (``Mode``; ``auto``
picks one per image), segmented, and described as plain records. Nothing here knows about HTTP
or files: errors are ``maskseg.io.ImageReadError`` (and its ``UnusableImageError``) and
``maskseg.pipeline.scene.DeadlineExceeded``; encodings of the mask (COCO RLE, polygons, PNG)
are in ``maskseg.pipeline.encode``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from maskseg.io import DECODE_SIDE, DEFAULT_MAX_PIXELS, ImageSource, decode_image
from maskseg.pipeline.scene import DeadlineExceeded, Face, ScenePredictor

# auto mode reads an image without faces as one face crop when it is shaped like one: nearly
# square (the MSFD crops the model was trained on are square) and small (a photo of a room is
# larger). A webcam frame (4:3) stays a scene.
CROP_ASPECT = (0.8, 1.25)
CROP_MAX_SIDE = 512


class Mode(str, Enum):
    """How an image is read.

    auto: as a scene; when no face is found and the image is shaped like one face crop
    (``looks_like_crop``), as a crop. scene: detect faces, segment each. crop: the whole image
    is one face crop.
    """

    auto = "auto"
    scene = "scene"
    crop = "crop"


def looks_like_crop(height: int, width: int) -> bool:
    """Whether auto mode may read a faceless image as one face crop (see CROP_ASPECT)."""
    ratio_ok = CROP_ASPECT[0] <= width / height <= CROP_ASPECT[1]
    return ratio_ok and max(height, width) <= CROP_MAX_SIDE


@dataclass
class Segmented:
    """One image's answer, before any encoding."""

    image: np.ndarray  # as decoded (reduced for very large files)
    full: tuple[int, int]  # (height, width) of the file as displayed: the mask's size
    mask: np.ndarray
    mode: Mode  # the mode that ran (auto resolved)
    faces: list[Face] = field(default_factory=list)  # scene mode's faces (for drawing)
    decode_ms: float = 0.0
    inference_ms: float = 0.0

    def face_records(self) -> list[dict[str, Any]]:
        """Per face: box, score, crop, mask share of the box, mask or not. In crop mode the
        one face is the whole picture, with no detector score."""
        if self.mode == Mode.crop:
            h, w = self.full
            box = [0.0, 0.0, float(w), float(h)]
            area = round(float(self.mask.mean()), 4)
            face = {"box": box, "score": None, "crop": box, "mask_area": area}
            return [{**face, "mask": bool(self.mask.any())}]
        return [f.as_record() for f in self.faces]

    def record(self) -> dict[str, Any]:
        """Image size, mode, faces and the mask's share of the image."""
        h, w = self.full
        return {
            "width": w,
            "height": h,
            "mode": self.mode.value,
            "faces": self.face_records(),
            "mask_area": round(float(self.mask.mean()), 6),
        }


class RequestEngine:
    """Decode, choose the mode, segment. Safe to call from several threads at once (the
    runtimes' sessions are; nothing here keeps per-call state).

    Args:
        scene: the scene predictor (its ``predictor`` segments crops); None: crop mode only.
        predictor: what segments crops (anything with ``predict(image, size)``: a
            ``Predictor`` or a classical method); default: the scene's.
        max_pixels: images with more pixels are refused from their header.
        decode_side: the long side decoding keeps (see ``maskseg.io.decode_image``).
    """

    def __init__(
        self,
        scene: ScenePredictor | None = None,
        *,
        predictor: Any = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        decode_side: int = DECODE_SIDE,
    ):
        if scene is None and predictor is None:
            raise ValueError("give a scene predictor, a crop predictor or both")
        self.scene = scene
        self.predictor = predictor if predictor is not None else scene.predictor
        self.max_pixels = max_pixels
        self.decode_side = decode_side

    def decode(self, source: ImageSource) -> tuple[np.ndarray, tuple[int, int]]:
        """(RGB image, full (height, width)); ``ImageReadError`` naming the problem."""
        return decode_image(source, max_pixels=self.max_pixels, min_side=self.decode_side)

    def segment(
        self,
        image: np.ndarray,
        full: tuple[int, int] | None = None,
        mode: Mode = Mode.auto,
        deadline: float | None = None,
    ) -> Segmented:
        """Segment a decoded image (``full``: the size the mask must have, when the image
        was decoded reduced). ``deadline`` (time.monotonic) stops a scene's work between
        stages with ``DeadlineExceeded``."""
        full = full or image.shape[:2]
        t = time.perf_counter()
        ran, faces = Mode(mode), []
        if ran != Mode.crop and self.scene is None:
            raise ValueError(f"{ran.value} mode finds faces first: give a scene predictor")
        if ran != Mode.crop:
            result = self.scene.segment(image, size=full, deadline=deadline)
            mask, faces, ran = result.mask, result.faces, Mode.scene
            if mode == Mode.auto and not faces and looks_like_crop(*full):
                ran = Mode.crop
        if ran == Mode.crop:
            mask = self.predictor.predict(image, size=full)
        inference_ms = (time.perf_counter() - t) * 1e3
        return Segmented(image, full, mask, ran, faces, inference_ms=inference_ms)

    def run(
        self, source: ImageSource, mode: Mode = Mode.auto, deadline: float | None = None
    ) -> Segmented:
        """Decode ``source`` (a path, bytes or a binary file object) and segment it."""
        t = time.perf_counter()
        image, full = self.decode(source)
        decode_ms = (time.perf_counter() - t) * 1e3
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceeded("the deadline passed while decoding")
        seg = self.segment(image, full, mode, deadline)
        seg.decode_ms = decode_ms
        return seg
