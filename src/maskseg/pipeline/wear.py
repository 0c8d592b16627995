"""Is the mask worn properly? Nose, mouth and chin judged from a face's landmarks and its mask.

Each part is a REGION of the face, drawn from MediaPipe Face Mesh landmarks
(``maskseg.pipeline.detect.landmarks``; indices of its canonical face model), never a single
point:

- ``nose``: the lower nose, the convex hull of the point just above the tip (4), the alae
  (45, 275), the nostrils' outer edges (98, 327), the tip (1) and the nose's base (2);
- ``mouth``: the outer lip contour (``MOUTH_REGION``, FACEMESH_LIPS' outer ring, in order);
- ``chin``: the convex hull of the points below the lower lip (18, 83, 313), the chin's sides
  (201, 421, 208, 428, 171, 396), the midline (200, 199, 175) and the bottom of the face oval
  (148, 152, 377);
- ``lower face``: the face oval from one cheek (454) round the chin to the other (234), closed
  over the nose bridge (195): nose bridge to chin, between the cheeks.

A region's *share* is the share of its area that is mask, measured on a grid of at most
``GRID`` x ``GRID`` points over the region's bounding box (so a 4k face costs what a small one
does). The mask given is the frame the segmenter saw (a scene face's crop window, clipped to
the image; a crop's whole picture): region points outside it take the value of the frame's
nearest edge pixel, as the crop's replicate padding does. A mask that reaches the frame's edge
under the chin is read as running on past it (a scene crop ends near the chin, and MSFD-style
crops often cut it off).

Rules (``WearRules``; thresholds chosen on ``../shared/data/maskedface-seg`` (all 150 photos:
CWM = correct, IWM = incorrect; truth = its mask class over the same regions) and on the
trainval split of the MSFD pairs; ``benchmarks/bench_wear.py`` prints the figures):

1. No mask pixel in the face's part of the mask: ``no_mask`` (no landmarks needed).
2. Landmarks missing (the model failed), not finite, a face under ``min_face_px`` from brow to
   chin, landmarks out of order (eyes, nose tip, lips and chin must follow one another down the
   face) or off the detected box, or a lower face mostly outside the frame (less than
   ``min_inside`` of it): ``verdict: null`` with the reason. The landmark model's presence
   score is NOT used: it is low for many real masked faces (the mask hides the nose).
3. ``coverage`` (share of the lower face that is mask) under ``no_mask`` (0.02): ``no_mask``.
   On fold-0 validation photos of ``../shared/data/faces`` (150 unmasked, 149 masked) the
   masks the segmenter gives unmasked faces cover either nothing or at least 0.67 of the
   lower face, and the least-covered worn mask of the maskedface-seg truth (on the chin)
   covers 0.15: 0.02 only turns stray specks into ``no_mask``.
4. A part is covered when at least this share of its region is mask: nose 0.5, mouth 0.5,
   chin 0.4. On the maskedface-seg truth masks the nose shares are all <= 0.08 or >= 0.9;
   mouth shares in between occur on 9 IWM faces (a mask edge across the lips: half the lips
   is the line); the chin of a correctly worn mask goes down to 0.47 (a CWM mask ending
   above the chin tip), so its threshold is below that. Moving any threshold over 0.3-0.7
   changed the correct-vs-incorrect accuracy only at chin 0.5 (0.993 -> 0.987).
5. Verdict: nose and mouth uncovered: ``nose_mouth_exposed`` (the mask sits on the chin or
   the neck); nose uncovered: ``nose_exposed``; chin uncovered: ``chin_exposed``; all three
   covered: ``correct``. A mask over the nose but not the mouth does not happen on a worn mask:
   ``verdict: null`` ("nose covered but not the mouth").

``min_face_px`` (16) is a floor, not a fitted value (below it the nose region is about two
pixels across); the box checks are sanity bounds (``box_margin`` 0.25, ``box_size`` 3) that
never fired on the photos above. With these rules ``bench_wear.py`` gives 149 / 150 right on
correct vs incorrect (the one miss, IWM 07002, also reads ``correct`` from its truth mask: its
mask covers the nose tip and the lips), and 33 / 33 verdicts of the MSFD test crops agree
between the true and the predicted mask.

``judge`` is the rule set on one face (numpy only). ``WearCheck`` runs the landmark model on
every face of an image (one batch) and judges each: what the request engine
(``maskseg.pipeline.request``) runs after segmentation. In crop mode (the picture is one face)
the landmarks' ROI is built from the whole picture: a square of ``CROP_ROI_SCALE`` (1.2) x its
longer side about its centre, upright. On the 134 MSFD trainval crops that gave the verdicts
of the true and predicted masks the most agreement (1.2: 100 %, 1.0: 98.5 %, 1.4: 97.8 %,
BlazeFace on the crop: 99.3 %, but it finds no face in 13 of them and sometimes a small false
one), and it costs no detector pass. Landmarks on tight crops are rough (the mesh is squeezed
into the picture when the crop cuts the chin off); the regions still land on the right parts
of the mask often enough for the figures above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskseg.pipeline.face_regions import region_shares

PARTS = ("nose", "mouth", "chin")
VERDICTS = ("correct", "nose_exposed", "nose_mouth_exposed", "chin_exposed", "no_mask")

# points for the trust checks (Face Mesh indices)
FOREHEAD, CHIN, NOSE_TIP, UPPER_LIP, LOWER_LIP = 10, 152, 1, 0, 17
EYES = (33, 133, 362, 263)

# crop mode: the landmark ROI is this many times the picture's longer side (see the docstring)
CROP_ROI_SCALE = 1.2


@dataclass(frozen=True)
class WearRules:
    """Thresholds of the wear check (see the module docstring for how they were chosen).

    Attributes:
        nose, mouth, chin: a part is covered when at least this share of its region is mask.
        no_mask: a lower face less covered than this wears no mask.
        min_face_px: faces shorter than this (brow to chin, in the mask's pixels) get no
            verdict: their regions are a few pixels.
        min_inside: a lower face with less of its area inside the frame gets no verdict.
        box_margin: the nose tip must lie inside the detection box grown by this share of
            its size on each side, and the face (brow to chin) must be between 1 / box_size
            and box_size times the box's height.
        box_size: see box_margin.
    """

    nose: float = 0.5
    mouth: float = 0.5
    chin: float = 0.4
    no_mask: float = 0.02
    min_face_px: float = 16.0
    min_inside: float = 0.5
    box_margin: float = 0.25
    box_size: float = 3.0


RULES = WearRules()


@dataclass(frozen=True)
class Wear:
    """One face's answer. ``verdict`` None means the face could not be judged (``reason``)."""

    verdict: str | None
    nose: bool | None = None
    mouth: bool | None = None
    chin: bool | None = None
    coverage: float | None = None
    reason: str | None = None
    shares: dict[str, float] = field(default_factory=dict)  # per part; for benchmarks

    def as_record(self) -> dict[str, Any]:
        """``{"verdict", "nose", "mouth", "chin", "coverage"}``, or ``{"verdict": None,
        "reason"}``."""
        if self.verdict is None:
            return {"verdict": None, "reason": self.reason}
        return {
            "verdict": self.verdict,
            "nose": bool(self.nose),
            "mouth": bool(self.mouth),
            "chin": bool(self.chin),
            "coverage": round(float(self.coverage or 0.0), 4),
        }


# Reasons (prefixes) that say a painted "mask" does not sit on a face the way a worn mask does:
# the landmarks do not follow a face's order or lie off the detection, or the mask covers
# the nose but not the mouth. ``not_worn_like_a_mask`` reads them for the face check.
NOSE_NOT_MOUTH = "nose covered but not the mouth"
OUT_OF_ORDER = "landmarks out of order"
OFF_FACE = "landmarks off the detected face"
NOT_A_FACE_REASONS = (NOSE_NOT_MOUTH, OUT_OF_ORDER, OFF_FACE)


def not_worn_like_a_mask(wear: Wear, painted: bool) -> bool:
    """Whether a face's painted mask (``painted``: its part has mask pixels) reads as no worn
    mask at all: unjudged for one of ``NOT_A_FACE_REASONS``, or ``no_mask`` although pixels
    were painted (they lie off the lower face). Too small, outside the picture or a failed
    landmark model say nothing either way: False."""
    if not painted:
        return False
    if wear.verdict is None:
        return (wear.reason or "").startswith(NOT_A_FACE_REASONS)
    return wear.verdict == "no_mask"


def unjudged(reason: str) -> Wear:
    return Wear(None, reason=reason)


NO_MASK = Wear("no_mask", False, False, False, 0.0)


# ----------------------------------------------------------------------------- rules


def check_landmarks(
    points: np.ndarray, box: Sequence[float] | None = None, rules: WearRules = RULES
) -> str | None:
    """Why these landmarks cannot be trusted, or None. ``box``: the face's detection box
    x1, y1, x2, y2 (the points' coordinates)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) != 468:
        return f"landmarks: expected 468 points, got {len(pts)}"
    if not np.isfinite(pts).all():
        return "landmarks are not finite"
    axis = pts[CHIN] - pts[FOREHEAD]
    height = float(np.hypot(*axis))
    if height < rules.min_face_px:
        return f"face too small for landmarks ({height:.0f} px brow to chin)"
    down = axis / height
    depth = [
        float(pts[list(EYES)].mean(axis=0) @ down),
        float(pts[NOSE_TIP] @ down),
        float(pts[UPPER_LIP] @ down),
        float(pts[LOWER_LIP] @ down),
        float(pts[CHIN] @ down),
    ]
    if any(b <= a for a, b in zip(depth, depth[1:], strict=False)):
        return f"{OUT_OF_ORDER} (eyes, nose, lips and chin do not follow down the face)"
    if box is not None:
        x1, y1, x2, y2 = (float(v) for v in box)
        bw, bh = max(x2 - x1, 1e-6), max(y2 - y1, 1e-6)
        m = rules.box_margin
        nx, ny = pts[NOSE_TIP]
        if not (x1 - m * bw <= nx <= x2 + m * bw and y1 - m * bh <= ny <= y2 + m * bh):
            return f"{OFF_FACE} (nose tip outside its box)"
        if not 1 / rules.box_size <= height / bh <= rules.box_size:
            return f"{OFF_FACE} (face {height:.0f} px, box {bh:.0f} px)"
    return None


def judge(
    points: np.ndarray | None,
    mask: np.ndarray,
    origin: tuple[float, float] = (0.0, 0.0),
    *,
    box: Sequence[float] | None = None,
    rules: WearRules = RULES,
    failure: str | None = None,
) -> Wear:
    """The wear check of one face.

    Args:
        points: the face's 468 landmarks (x, y) in the coordinates of ``mask`` + ``origin``;
            None when the landmark model gave none (``failure`` says why).
        mask: bool, the face's part of the mask in the frame the segmenter saw (the whole
            picture in crop mode, the crop window clipped to the image for a scene face);
            a full-frame mask works too.
        origin: (x, y) of ``mask``'s top-left pixel in the points' coordinates.
        box: the face's detection box (same coordinates), for the trust checks.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return NO_MASK
    if points is None:
        return unjudged(failure or "no landmarks")
    why = check_landmarks(points, box, rules)
    if why:
        return unjudged(why)
    shares = region_shares(points, mask, origin)
    coverage, inside = shares["lower_face"]
    if inside < rules.min_inside:
        return unjudged(f"the lower face lies mostly outside the picture ({inside:.0%} inside)")
    part = {p: shares[p][0] for p in PARTS}
    if coverage < rules.no_mask:
        return Wear("no_mask", False, False, False, coverage, shares=part)
    nose, mouth, chin = (part[p] >= getattr(rules, p) for p in PARTS)
    if not nose and not mouth:
        verdict = "nose_mouth_exposed"
    elif not nose:
        verdict = "nose_exposed"
    elif not mouth:
        return Wear(None, nose, mouth, chin, coverage, NOSE_NOT_MOUTH, shares=part)
    elif not chin:
        verdict = "chin_exposed"
    else:
        verdict = "correct"
    return Wear(verdict, nose, mouth, chin, coverage, shares=part)


# ----------------------------------------------------------------------------- per image


def picture_roi(height: int, width: int, scale: float = CROP_ROI_SCALE) -> Any:
    """The landmark ROI of a picture that is one face (crop mode): a square of ``scale`` x
    its longer side about its centre, upright."""
    from maskseg.pipeline.detect.landmarks import FaceRoi

    return FaceRoi(width / 2.0, height / 2.0, scale * max(height, width), 0.0)


class WearCheck:
    """Landmarks for every face of an image in one model call, then ``judge`` per face.

    Args:
        landmarker: a ``maskseg.pipeline.detect.FaceLandmarker`` (default: the shipped Face
            Mesh at ``threads``).
        rules: the thresholds.
        threads: onnxruntime threads of the default landmarker (1: faster than 2 on a
            192 px input, and it leaves the other core to the rest).
    """

    def __init__(
        self, landmarker: Any = None, rules: WearRules = RULES, *, threads: int | None = 1
    ):
        if landmarker is None:
            from maskseg.pipeline.detect.landmarks import FaceLandmarker

            landmarker = FaceLandmarker(threads=threads)
        self.landmarker = landmarker
        self.rules = rules

    def landmarks(
        self, image: np.ndarray, rois: Sequence[Any], deadline: float | None = None
    ) -> tuple[list[Any], str | None]:
        """(landmarks per ROI, None) or ([None] * n, why the model failed). The deadline's
        ``DeadlineExceeded`` passes through."""
        from maskseg.pipeline.detect._base import DeadlineExceeded

        if not rois:
            return [], None
        try:
            return list(self.landmarker.for_rois(image, rois, deadline=deadline)), None
        except DeadlineExceeded:
            raise
        except Exception as exc:  # a failing model must not fail the mask's answer
            return [None] * len(rois), f"the landmark model failed: {type(exc).__name__}: {exc}"

    def check(
        self,
        image: np.ndarray,
        parts: Sequence[tuple[int, int, np.ndarray]],
        *,
        full: tuple[int, int] | None = None,
        faces: Sequence[Any] | None = None,
        deadline: float | None = None,
    ) -> tuple[list[Wear], list[Any]]:
        """Judge every face of an image.

        Args:
            image: the decoded RGB image the landmarks are found in.
            parts: per face (x, y, mask): its part of the mask in the frame the segmenter saw,
                the frame's top-left at (x, y) in the full-size mask's pixels.
            full: (height, width) of the full-size mask (image decoded reduced); default:
                the image's.
            faces: the scene's faces (``box``, ``keypoints`` in full-size pixels); None: crop
                mode, the picture is the one face.

        Returns:
            (one ``Wear`` per face, each face's landmarks: float64 (468, 2) in full-size
            pixels, or None where the model failed).
        """
        from maskseg.pipeline.detect.landmarks import roi_from_detection

        h, w = image.shape[:2]
        fh, fw = full or (h, w)
        scale = np.array([fw / w, fh / h])
        if faces is None:
            rois, boxes = [picture_roi(h, w)], [None]
        else:
            rois, boxes = [], []
            for f in faces:
                box = np.asarray(f.box, np.float64).reshape(2, 2)
                kps = np.asarray(f.keypoints, np.float64).reshape(-1, 2)
                rois.append(roi_from_detection((box / scale).reshape(4), kps / scale))
                boxes.append(box.reshape(4))
        marks, failure = self.landmarks(image, rois, deadline)
        points = [None if m is None else m.points.astype(np.float64) * scale for m in marks]
        wears = [
            judge(pts, part, (x, y), box=box, rules=self.rules, failure=failure)
            for (x, y, part), pts, box in zip(parts, points, boxes, strict=True)
        ]
        return wears, points
