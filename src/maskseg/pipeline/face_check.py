"""Is a detection a face? The check that keeps masks off hair, curtains, collars and text.

BlazeFace at the scene path's low threshold (the gate, not the detector, decides "mask or
not") also fires on things that are not faces, and the gate, fitted on faces, may call them
masked. Two checks, chosen on validation (docs/shipped-model-plan.md, "Face check"):

- **presence**: the Face Mesh model's face-presence score (``maskseg.pipeline.detect.
  landmarks``; background windows never score above 0.14, unmasked faces above 0.5) for a
  detection the detector itself is unsure of (score under ``below``). Only those are run
  through the landmark model, so a confident face costs nothing. A mask hides the nose, so
  masked faces often score low too: the threshold is low.
- **size**: a detection much smaller than the largest face of the picture (part of a big
  face, a pattern in the background) is dropped.
- **zones**: a detection the detector is unsure of, much smaller than a face and lying on the
  body below it (collars, shirts, hands) or in the head around it (hair, hats, the wall
  behind), is dropped (``in_zones``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FaceCheck:
    """Which detections stay.

    Attributes:
        presence: drop a detection whose face-presence score is under this... (None: off)
        below: ... when its detector score is under this too.
        min_side: drop a detection whose box side is under this share of the picture's
            largest detection's (None: off).
        body, halo, zone_ratio, zone_below: drop a detection under ``zone_ratio`` times a
            larger one's side, lying in its ``body`` zone (w, h) or its ``halo`` g
            (``in_zones``), when its detector score is under ``zone_below`` (None: off).
    """

    presence: float | None = None
    below: float = 0.5
    min_side: float | None = None
    body: tuple[float, float] | None = None
    halo: float | None = None
    zone_ratio: float = 0.75
    zone_below: float = 0.5

    @property
    def active(self) -> bool:
        zones = self.body is not None or self.halo is not None
        return self.presence is not None or self.min_side is not None or zones


def keep_mask(
    boxes: np.ndarray,
    scores: np.ndarray,
    check: FaceCheck,
    presence: np.ndarray | None = None,
) -> np.ndarray:
    """Bool per detection: whether it stays. ``presence`` holds the face-presence score of
    each detection that ``needs_presence`` marked (others: any value, e.g. NaN)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    keep = np.ones(len(boxes), bool)
    if not len(boxes):
        return keep
    if check.min_side is not None:
        sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep &= sides >= check.min_side * sides.max()
    if check.body is not None or check.halo is not None:
        unsure = np.asarray(scores, np.float64).reshape(-1) < check.zone_below
        keep &= ~(unsure & in_zones(boxes, check.zone_ratio, check.body, check.halo))
    if check.presence is not None:
        if presence is None:
            raise ValueError("the presence check needs face-presence scores")
        unsure = needs_presence(scores, check)
        keep &= ~(unsure & (np.nan_to_num(presence, nan=1.0) < check.presence))
    return keep


def in_zones(
    boxes: np.ndarray,
    ratio: float,
    body: tuple[float, float] | None = None,
    halo: float | None = None,
) -> np.ndarray:
    """Bool per detection: it is under ``ratio`` times the side of a larger detection and
    its centre lies in that one's zones: ``body`` (w, h), the body below a face (centre
    within w box sides left or right of the face's centre, between its box's bottom edge and
    h box sides below it: collars, shirts, necklaces); ``halo`` g, the head around a face
    (centre within the face's box grown by g box sides on each side: hair, ears, a hat).
    Sides are a box's longer side."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    drop = np.zeros(len(boxes), bool)
    if not len(boxes) or (body is None and halo is None):
        return drop
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    for j in range(len(boxes)):
        small = sides < ratio * sides[j]
        zone = np.zeros(len(boxes), bool)
        if body is not None:
            w, h = body
            zone |= (
                (np.abs(cx - cx[j]) <= w * sides[j])
                & (cy >= boxes[j, 3])
                & (cy <= boxes[j, 3] + h * sides[j])
            )
        if halo is not None:
            reach = (0.5 + halo) * sides[j]
            zone |= (np.abs(cx - cx[j]) <= reach) & (np.abs(cy - cy[j]) <= reach)
        drop |= small & zone
    return drop


def keypoint_roll(keypoints: np.ndarray) -> np.ndarray:
    """Degrees per detection: the angle of the line from the person's right eye to the left
    eye (BlazeFace keypoints 0 and 1) against the image's x axis; 0 for an upright face,
    +-180 upside down."""
    kp = np.asarray(keypoints, np.float64).reshape(-1, 6, 2)
    v = kp[:, 1] - kp[:, 0]
    return np.degrees(np.arctan2(v[:, 1], v[:, 0]))


def keypoints_implausible(keypoints: np.ndarray, max_roll: float) -> np.ndarray:
    """Bool per detection: its six keypoints do not look like a face's. Either the eye line
    is rolled by more than ``max_roll`` degrees, or, in the face's own frame (turned by that
    roll), the nose tip does not lie below the eyes' midpoint or the mouth below the nose
    tip. On things that are not faces (a collar, a patch of hair) BlazeFace's keypoints
    regress to odd angles and orders; on faces it is sure of they keep the face's order."""
    kp = np.asarray(keypoints, np.float64).reshape(-1, 6, 2)
    roll = keypoint_roll(kp)
    u = kp[:, 1] - kp[:, 0]
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9)
    down = np.stack([-u[:, 1], u[:, 0]], axis=1)  # the face's "down", eye line turned 90 deg
    eyes = kp[:, :2].mean(axis=1)
    nose = ((kp[:, 2] - eyes) * down).sum(1)
    mouth = ((kp[:, 3] - kp[:, 2]) * down).sum(1)
    return (np.abs(roll) > max_roll) | (nose <= 0) | (mouth <= 0)


def needs_presence(scores: np.ndarray, check: FaceCheck) -> np.ndarray:
    """Bool per detection: run the landmark model on it (the detector is unsure)."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    if check.presence is None:
        return np.zeros(len(scores), bool)
    return scores < check.below


class FaceChecker:
    """``FaceCheck`` applied to ``Detections``, with the landmark model built on first use.

    Args:
        check: the rule.
        landmarker: a ``FaceLandmarker`` to share (None: built when first needed).
    """

    def __init__(self, check: FaceCheck, landmarker: Any = None):
        self.check = check
        self._landmarker = landmarker

    @property
    def landmarker(self) -> Any:
        if self._landmarker is None:
            from maskseg.pipeline.detect.landmarks import FaceLandmarker

            self._landmarker = FaceLandmarker()
        return self._landmarker

    def __call__(self, image: np.ndarray, dets: Any, *, deadline: float | None = None) -> Any:
        """The detections that pass (order kept)."""
        if not self.check.active or not len(dets):
            return dets
        presence = np.full(len(dets), np.nan, np.float32)
        unsure = needs_presence(dets.scores, self.check)
        if unsure.any():
            marks = self.landmarker.for_detections(image, dets[unsure], deadline=deadline)
            presence[unsure] = [m.presence for m in marks]
        return dets[keep_mask(dets.boxes, dets.scores, self.check, presence)]
