"""What every face detector shares: its options and the ``detect`` / ``detect_batch`` calls."""

from __future__ import annotations

import inspect
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from maskseg.pipeline.detect.detections import Detections

MODES = ("frame", "tiles")
# Tiles are at least this share of the detector's input side (16 px for the 128 px short-range
# model, 24 px for full range): a tile is zoomed at most 8x, where one image pixel already
# spans a cell of the short-range model's finest anchor grid (stride 8); a closer zoom shows
# nothing new. No photo of ordinary shape is affected (its tiles, 2/3 of the short side, are
# smaller only when that side is under 24 px; the smallest photo in ../shared/data/faces has
# 26); on a thin image it stops a short side of a pixel from becoming sub-pixel tiles.
MIN_TILE_SHARE = 1 / 8
# At most this many tiles per image (all go into one detector call, 2 ms each on a CPU core):
# a photo up to 11:1 keeps its tiles of 2/3 of the short side; longer images get fewer, larger
# tiles. At the 100:1 aspect limit of ``maskseg.io.decode_image``, 64 tiles are about three
# short sides wide, so a face as tall as the image still spans 40 px of a 128 px input.
MAX_TILES = 64


class DeadlineExceeded(TimeoutError):
    """Work stopped because its deadline (a ``time.monotonic()`` value) had passed."""


def check_deadline(deadline: float | None, stage: str) -> None:
    """Raise ``DeadlineExceeded`` naming ``stage`` when ``deadline`` has passed."""
    if deadline is not None and time.monotonic() > deadline:
        late = time.monotonic() - deadline
        raise DeadlineExceeded(f"deadline passed {late:.3f} s ago, before {stage}")


def default_threads() -> int:
    """onnxruntime threads: all cores up to 4; beyond that a 2 ms model gains nothing."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class DetectorOptions:
    """How a detector looks for faces.

    Attributes:
        score_threshold: minimum face score; None takes the model's own (MediaPipe's graph:
            0.5 short range, 0.6 full range).
        iou_threshold: detections overlapping by more IoU than this are blended into one.
        mode: "frame" runs one letterboxed pass over the whole image (fast; finds faces
            larger than about a sixth of the long side); "tiles" adds overlapping square
            tiles, all in one batched model call, for smaller faces.
        tile_fraction: tile side as a fraction of the image's shorter side.
        tile_overlap: fraction of a tile shared with its neighbour.
        max_tiles: at most this many tiles per image; longer images get fewer, larger tiles
            (``regions.tile_squares``). None: no limit.
        min_tile_side: smallest tile side in image pixels; None: ``MIN_TILE_SHARE`` of the
            detector's input side.
        roi_margin: a region of interest is searched in a square this many times its longer
            side, centred on it.
        max_faces: keep at most this many faces (best first); None keeps all.
        threads: onnxruntime intra-op threads; None: ``default_threads()``.
        providers: onnxruntime execution providers, in order of preference.
    """

    score_threshold: float | None = None
    iou_threshold: float = 0.3
    mode: str = "frame"
    tile_fraction: float = 2.0 / 3.0
    tile_overlap: float = 0.5
    roi_margin: float = 2.0
    max_faces: int | None = None
    threads: int | None = None
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    max_tiles: int | None = MAX_TILES
    min_tile_side: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid: {', '.join(MODES)}")
        if self.score_threshold is not None and not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if not 0.0 < self.tile_fraction <= 1.0 or not 0.0 <= self.tile_overlap < 1.0:
            raise ValueError("need 0 < tile_fraction <= 1 and 0 <= tile_overlap < 1")
        if self.roi_margin < 1.0:
            raise ValueError(f"roi_margin must be >= 1, got {self.roi_margin}")
        if self.max_faces is not None and self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1 or None, got {self.max_faces}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")
        if self.max_tiles is not None and self.max_tiles < 1:
            raise ValueError(f"max_tiles must be >= 1 or None, got {self.max_tiles}")
        if self.min_tile_side is not None and not self.min_tile_side > 0:
            raise ValueError(f"min_tile_side must be > 0 or None, got {self.min_tile_side}")
        object.__setattr__(self, "providers", tuple(self.providers))


class FaceDetector(ABC):
    """Finds faces in RGB uint8 images.

    Images may be (H, W, 3) RGB, (H, W) / (H, W, 1) grayscale or (H, W, 4) RGBA (composited
    over white, as ``maskseg.io.read_image`` does); anything else raises TypeError/ValueError.
    """

    name: str = ""

    def __init__(self, options: DetectorOptions | None = None):
        self.options = options or DetectorOptions()

    def detect(
        self,
        image: np.ndarray,
        rois: np.ndarray | None = None,
        *,
        deadline: float | None = None,
        score_threshold: float | None = None,
        blend_floor: float | None = None,
    ) -> Detections:
        """Faces in one image.

        Args:
            image: uint8 image, see the class docstring.
            rois: optional (K, 4) x1, y1, x2, y2 boxes (e.g. faces tracked in the previous
                video frame); when given, only squares around them are searched, which
                replaces ``options.mode``'s passes. An empty array finds nothing.
            deadline: a ``time.monotonic()`` value; past it, ``DeadlineExceeded`` is raised
                between model calls (a detector whose ``detect_batch`` takes no deadline
                is checked only before it starts).
            score_threshold: this call's minimum score instead of the options' one, so one
                detector serves callers that ask for different ones (a video keeps followed
                faces down to a lower score; serve takes it per request). A detector whose
                ``detect_batch`` takes none filters its own results, so it can only go up.
            blend_floor: candidates under this score do not move a better face's box when
                overlapping detections are blended (``weighted_nms``), for a detector whose
                ``detect_batch`` takes it.
        """
        batch_rois = None if rois is None else [rois]
        check_deadline(deadline, "face detection")
        takes = inspect.signature(self.detect_batch).parameters
        options: dict[str, float] = {}
        if deadline is not None and "deadline" in takes:
            options["deadline"] = deadline
        if score_threshold is not None:
            if not 0.0 <= score_threshold <= 1.0:
                raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
            if "score_threshold" in takes:
                options["score_threshold"] = score_threshold
        if blend_floor is not None and "blend_floor" in takes:
            options["blend_floor"] = blend_floor
        found = self.detect_batch([image], batch_rois, **options)[0]
        if score_threshold is not None and "score_threshold" not in takes:
            found = found[found.scores >= score_threshold]
        return found

    @abstractmethod
    def detect_batch(
        self, images: Sequence[np.ndarray], rois: Sequence[np.ndarray | None] | None = None
    ) -> list[Detections]:
        """Faces in several images at once (one model call); ``rois`` per image or None.

        A detector whose calls can take long also takes ``deadline`` (keyword; a
        ``time.monotonic()`` value) and calls ``check_deadline`` between its model calls; one
        that can lower its score threshold per call takes ``score_threshold`` (keyword).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, options={self.options})"
