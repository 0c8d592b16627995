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

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# A learned check (``LearnedCheck``) reads a model's confidence, so it belongs to the model it
# was fitted on: it sits beside that model's file as ``<stem>.face-check.json``
# (``check_file_for``). The shipped default model's is the fallback for a model without one.
CHECK_SUFFIX = ".face-check.json"
LEARNED_CHECK_FILE = Path(__file__).resolve().parents[1] / "weights" / f"unet-msfd{CHECK_SUFFIX}"

log = logging.getLogger(__name__)


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


# ----------------------------------------------------------------------------- learned check

# What the learned check reads of each detection (``detection_features``), in its order.
WEAR_FEATURES = ("correct", "nose_exposed", "nose_mouth_exposed", "chin_exposed", "no_mask")
LEARNED_FEATURES = (
    "score",
    "log side / largest",
    "largest",
    "|dx| / largest side",
    "below / largest side",
    "above / largest side",
    "roll / 45 deg",
    "keypoints out of order",
    "log presence",
    "peak logit",
    "mask area / box",
    *(f"wear {v}" for v in WEAR_FEATURES),
    "wear unjudged",
    "side / picture",
)


def detection_features(
    boxes: np.ndarray,
    scores: np.ndarray,
    keypoints: np.ndarray,
    presence: np.ndarray,
    peak: np.ndarray,
    area: np.ndarray,
    verdicts: list[str | None],
    shape: tuple[int, int],
) -> np.ndarray:
    """(N, len(LEARNED_FEATURES)) per detection of one picture: detector score; its size and
    place against the picture's largest detection (log side ratio, largest or not, |dx|,
    below and above its centre, in its sides); BlazeFace keypoint roll and order; log Face
    Mesh presence; the model's gated peak logit and mask area over box; the wear verdict
    (one-hot, or unjudged); its side over the picture's shorter side."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(b)
    if not n:
        return np.zeros((0, len(LEARNED_FEATURES)))
    sides = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    big = int(np.argmax(sides))
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    dx = np.clip((cx - cx[big]) / sides[big], -4, 4)
    dy = np.clip((cy - cy[big]) / sides[big], -4, 4)
    cols = [
        np.asarray(scores, np.float64).reshape(n),
        np.log(sides / sides[big]),
        (np.arange(n) == big).astype(float),
        np.abs(dx),
        np.maximum(dy, 0),
        np.maximum(-dy, 0),
        np.abs(keypoint_roll(keypoints)) / 45.0,
        keypoints_implausible(keypoints, 180.0).astype(float),  # order only
        np.log(np.clip(np.asarray(presence, np.float64).reshape(n), 1e-3, 1)),
        np.clip(np.asarray(peak, np.float64).reshape(n), -10, 10),
        np.clip(np.asarray(area, np.float64).reshape(n), 0, 3),
        *(np.array([v == name for v in verdicts], float) for name in WEAR_FEATURES),
        np.array([v is None for v in verdicts], float),
        sides / min(shape),
    ]
    return np.stack(cols, axis=1)


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 50
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Class-balanced logistic regression by Newton's method on standardised features:
    (mean, std, weights, bias). The two classes weigh the same however unequal their
    counts (false masks are a few percent of the painted detections)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    cw = np.where(y == 1, len(y) / (2 * max(y.sum(), 1)), len(y) / (2 * max((1 - y).sum(), 1)))
    beta = np.zeros(z.shape[1])
    reg = np.full(z.shape[1], l2)
    reg[-1] = 1e-4  # the intercept nearly free (a one-class smoke run stays solvable)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ beta)))
        grad = z.T @ (cw * (p - y)) + reg * beta
        hess = (z * (cw * p * (1 - p))[:, None]).T @ z + np.diag(reg)
        beta -= np.linalg.solve(hess, grad)
    return mean, std, beta[:-1], float(beta[-1])


@dataclass(frozen=True)
class LearnedCheck:
    """A fitted face check: the probability that a painted detection is a face's mask, from
    ``detection_features`` (docs/shipped-model-plan.md, "A learned face check"). Stored as
    JSON (``save`` / ``load``), never pickled."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float
    names: tuple[str, ...] = LEARNED_FEATURES

    def proba(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64) - self.mean) / self.std
        return 1 / (1 + np.exp(-(z @ self.weights + self.bias)))

    def save(self, path: str | Path, **info: Any) -> None:
        data = {
            "names": list(self.names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            **info,
        }
        Path(path).write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def for_model(cls, model: str | Path | None) -> LearnedCheck:
        """The check fitted on the model file ``model``'s own outputs (``check_file_for``);
        the shipped model's, with a warning, for a model that has none."""
        path = check_file_for(model)
        if model is not None and path != check_file_beside(model):
            log.warning(
                "%s has no learned face check of its own (%s); using the shipped model's, "
                "which reads another model's confidence (--no-face-check turns it off)",
                model,
                check_file_beside(model).name,
            )
        return cls.load(path)

    @classmethod
    def load(cls, path: str | Path | None = None) -> LearnedCheck:
        """The shipped model's check (``LEARNED_CHECK_FILE``) or one written by ``save``."""
        path = Path(path) if path is not None else LEARNED_CHECK_FILE
        data = json.loads(Path(path).read_text())
        names = tuple(data["names"])
        if names != LEARNED_FEATURES:
            raise ValueError(f"{path}: features {names} are not this version's")
        arrays = [np.asarray(data[k], np.float64) for k in ("mean", "std", "weights")]
        if any(a.shape != (len(names),) for a in arrays):
            raise ValueError(f"{path}: expected {len(names)} values per field")
        return cls(*arrays, float(data["bias"]), names)


def check_file_for(model: str | Path | None) -> Path:
    """The learned check of the model file ``model``: ``<its stem>.face-check.json`` beside it
    (``weights/unet-msfd.face-check.json`` for both of the shipped default's files), else the
    shipped default model's (None: that one)."""
    if model is not None and check_file_beside(model).is_file():
        return check_file_beside(model)
    return LEARNED_CHECK_FILE


def check_file_beside(model: str | Path) -> Path:
    """Where the model file ``model``'s own learned check belongs: ``<stem>.face-check.json``
    beside it."""
    p = Path(model)
    return p.with_name(p.stem + CHECK_SUFFIX)
