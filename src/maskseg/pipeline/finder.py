"""Frame -> face windows: the one stage every front end finds faces with.

``FaceFinder`` owns the face detector and the calibrated box -> window mappings, so
``predict --scene``, the video loop, serve and the gate's training crops find faces and frame
them the same way (``maskseg.pipeline.scene`` then segments the windows and pastes the masks):

    finder = FaceFinder(SceneConfig())
    dets = finder.find(frame)                   # Detections, best first
    rects = finder.windows(dets)                # square windows x1, y1, x2, y2
    # a video, around followed faces, keeping weaker detections that continue one:
    dets = finder.find(frame, rois=boxes, score_threshold=0.2, keep=continues)
    rects = finder.windows(dets, tracked=True)  # the mapping fitted for such re-detections

One detector serves every threshold a caller asks for: the threshold is applied per call as
the detector decodes its anchors (``FaceDetector.detect(score_threshold=...)``), so a lower
one (a video's followed faces, a request's ``detect_threshold``) needs no second detector and
the default gives exactly what a detector built at the configured threshold gives. A whole
frame searched below the validated ``SCENE_SCORE_THRESHOLD`` only gains detections: the
weaker candidates do not blend into the boxes of faces found at it (``weighted_nms``'s
``blend_floor``), so those faces keep their windows and masks. Around followed faces (a
video's ``rois``) MediaPipe's blending stays, as it steadies the boxes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from maskseg.pipeline.detect._base import check_deadline
from maskseg.pipeline.face_check import FaceChecker
from maskseg.pipeline.scene_config import CONTAINED, SCENE_SCORE_THRESHOLD, SceneConfig
from maskseg.pipeline.windows import drop_contained, scale_rects

# how faces were found -> the box -> window mapping fitted for them
# (``benchmarks/calibrate_crops.py``): one pass, tiles, or around a tracked face
MAPPINGS = ("frame", "tiles", "roi")


class FaceFinder:
    """The face detector and its windows.

    Args:
        config: detector, mode, threshold, threads, tiles, max faces and crop scale (the
            rest of ``SceneConfig`` is the segmenting stage's).
        detector: a detector to use instead of building one from ``config`` (it should
            have been built with the config's threshold and mode).
    """

    def __init__(self, config: SceneConfig | None = None, detector: Any = None):
        from maskseg.pipeline.detect import get_detector, load_crop_mapping

        self.config = SceneConfig() if config is None else config
        c = self.config
        if detector is None:
            # no max_faces here: the limit counts faces after merging and the caller's rule
            detector = get_detector(
                c.detector,
                mode=c.mode,
                score_threshold=c.score_threshold,
                threads=c.threads,
                max_tiles=c.max_tiles,
            )
        self.detector = detector
        self.mappings = {m: load_crop_mapping(c.detector, m) for m in MAPPINGS}
        self.checker = FaceChecker(c.face_check)

    @property
    def score_threshold(self) -> float:
        """The score a face needs unless a call asks for another."""
        return self.config.score_threshold

    def find(
        self,
        image: np.ndarray,
        rois: np.ndarray | None = None,
        *,
        deadline: float | None = None,
        score_threshold: float | None = None,
        keep: Callable[[Any], np.ndarray] | None = None,
        merge: bool = True,
    ) -> Any:
        """Faces in an image (``Detections``, best first): detector (tiles by the config's
        mode), boxes mostly inside a better one dropped (``CONTAINED``), detections that
        fail the face check dropped (``SceneConfig.face_check``), the caller's
        ``keep`` rule, then at most ``max_faces``.

        Args:
            image: RGB uint8 (grayscale and RGBA accepted).
            rois: (K, 4) boxes of tracked faces: only around them is searched.
            deadline: a ``time.monotonic()`` value; past it ``DeadlineExceeded`` is raised
                before detection, between the detector's model calls and before merging.
            score_threshold: this call's minimum score instead of the config's (in [0, 1]).
            keep: detections -> bool per detection, applied before ``max_faces`` so the
                limit counts only faces that stay (the video keeps a detection under the
                config's threshold only where it continues a followed face).
            merge: False keeps the boxes mostly inside a better one (the gate's training
                wants those false detections).
        """
        check_deadline(deadline, "face detection")
        options: dict[str, float] = {}
        if deadline is not None:
            options["deadline"] = deadline
        if score_threshold is not None:
            options["score_threshold"] = score_threshold
        threshold = self.score_threshold if score_threshold is None else score_threshold
        if rois is None and threshold < SCENE_SCORE_THRESHOLD:
            # below the validated threshold, weaker candidates are extra detections only: they
            # must not pull the box of a face found at it (and so its window and mask)
            options["blend_floor"] = SCENE_SCORE_THRESHOLD
        found = self.detector.detect(image, rois=rois, **options)
        if merge:
            check_deadline(deadline, "dropping contained boxes")
            found = self.checker(image, drop_contained(found, CONTAINED), deadline=deadline)
        if keep is not None and len(found):
            found = found[np.asarray(keep(found), bool).reshape(len(found))]
        limit = self.config.max_faces
        return found if limit is None else found[:limit]

    def windows(self, detections: Any, tracked: bool = False) -> np.ndarray:
        """Square windows (N, 4) x1, y1, x2, y2 for detections, by the mapping fitted for how
        they were found ("roi" when ``tracked``: re-detected around followed faces), times
        the config's ``crop_scale``."""
        from maskseg.pipeline.detect import crop_boxes

        mode = "roi" if tracked else self.config.mode
        return scale_rects(crop_boxes(detections, self.mappings[mode]), self.config.crop_scale)

    def describe(self) -> str:
        c = self.config
        return f"{c.detector} ({c.mode}, score >= {c.score_threshold})"
