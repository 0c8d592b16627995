"""Masks in whole photos and video frames: find faces and their windows (the one face finder,
``maskseg.pipeline.finder``), segment all windows in one batch (grown and redone where a mask
reaches a window's edge), paste the masks back into one full-frame mask.

Finding -> segmentation -> annotation stay three separate steps
(``maskseg.pipeline.annotate`` draws), so
``predict --scene``, the video loop and the web API chain them the same way:

    scene = ScenePredictor(Predictor.load())
    result = scene.segment(image)      # SceneResult: full-frame mask + one Face per face
    mask = scene.predict(image)        # just the mask, like Predictor.predict

A caller with a time limit passes ``deadline`` (a ``time.monotonic()`` value): the work stops
with ``DeadlineExceeded`` (a ``TimeoutError``) at the next check after it, so a request that
timed out does not hold its thread:

    try:
        result = scene.segment(image, size=full, deadline=time.monotonic() + 10)
    except DeadlineExceeded:
        ...                            # nothing of the image's work goes on
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskseg.pipeline.detect._base import DeadlineExceeded as DeadlineExceeded  # raised by segment
from maskseg.pipeline.detect._base import check_deadline
from maskseg.pipeline.finder import FaceFinder
from maskseg.pipeline.preprocess import as_rgb
from maskseg.pipeline.scene_config import SEGMENT_CHUNK, SceneConfig
from maskseg.pipeline.windows import (
    clip_to_reach,
    colour_step,
    grow_rect,
    inner_rect,
    side_of,
    touched_sides,
)


@dataclass
class Face:
    """One detected face and its mask.

    Attributes:
        box: detector box x1, y1, x2, y2 in image pixels.
        score: detector score.
        crop: the square crop that was segmented, x1, y1, x2, y2.
        mask_area: mask pixels of this face / area of its box (may exceed 1: a mask reaches
            below the chin, where the box ends).
        mask: whether a mask was found (any mask pixel).
    """

    box: np.ndarray
    score: float
    crop: np.ndarray
    mask_area: float
    mask: bool
    keypoints: np.ndarray | None = None

    def as_record(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "crop": [round(float(v), 1) for v in self.crop],
            "mask_area": round(float(self.mask_area), 4),
            "mask": bool(self.mask),
        }


@dataclass
class SceneResult:
    """A full-frame mask and the faces it came from."""

    mask: np.ndarray
    faces: list[Face] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        h, w = self.mask.shape
        return {
            "width": w,
            "height": h,
            "faces": [f.as_record() for f in self.faces],
            "mask_area": round(float(self.mask.mean()), 6),
        }


# the logit an emptied face's crop gets (sigmoid 1e-13: no pixel passes any threshold)
EMPTY_LOGIT = -30.0


def empty_where(logits: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """A copy of ``logits`` (N, 1, S, S) with the faces in ``drop`` emptied."""
    out = np.array(logits, np.float32, copy=True)
    out[np.asarray(drop, bool)] = EMPTY_LOGIT
    return out


class ScenePredictor:
    """The face finder + the crop ``Predictor``.

    Args:
        predictor: segments face crops (``maskseg.Predictor``).
        config: detector, windows and grow-and-redo settings.
        detector: a detector instance for the finder instead of building one from ``config``.
        redo: segments the grown windows of grow and redo instead of ``predictor`` (e.g. the
            fast model in video: a grown window belongs to a face the first pass already gave
            a mask, so the cheaper model only redraws it); None: ``predictor``.
    """

    def __init__(
        self,
        predictor: Any,
        config: SceneConfig | None = None,
        detector: Any = None,
        redo: Any = None,
    ):
        self.predictor = predictor
        self.redo = redo
        self.finder = FaceFinder(config, detector)
        self.config = self.finder.config
        self._learned: Any = None

    @property
    def detector(self) -> Any:
        """The finder's detector (the one detector of this scene, a video's included)."""
        return self.finder.detector

    @property
    def mappings(self) -> dict[str, Any]:
        """The finder's box -> window mappings, by how faces were found."""
        return self.finder.mappings

    def detect(
        self,
        image: np.ndarray,
        rois: np.ndarray | None = None,
        *,
        deadline: float | None = None,
        score_threshold: float | None = None,
    ):
        """Faces in an image (``Detections``, best first): ``FaceFinder.find``."""
        return self.finder.find(image, rois, deadline=deadline, score_threshold=score_threshold)

    def crop_rects(self, detections: Any, tracked: bool = False) -> np.ndarray:
        """Square windows (N, 4) for detections: ``FaceFinder.windows``."""
        return self.finder.windows(detections, tracked)

    def segment(
        self,
        image: np.ndarray,
        size: tuple[int, int] | None = None,
        detections: Any = None,
        tracked: bool = False,
        *,
        deadline: float | None = None,
        score_threshold: float | None = None,
    ) -> SceneResult:
        """Find faces (unless ``detections`` are given), segment every face in one batch, grow
        and redo the windows whose mask reaches an edge, paste.

        Args:
            image: RGB uint8 (grayscale and RGBA accepted).
            size: (height, width) of the output mask when ``image`` was decoded reduced;
                boxes and crops are then reported in that full size's pixels.
            detections: faces found elsewhere (e.g. tracked in a video).
            tracked: those faces come from regions tracked between frames ("roi" mapping).
            deadline: a ``time.monotonic()`` value. Once it has passed, ``DeadlineExceeded``
                is raised at the next check: before each stage, between the detector's model
                calls (32 regions, tens of ms each) and, with a deadline, between calls of
                ``SEGMENT_CHUNK`` crops and between pasted faces. None: no limit.
            score_threshold: the detector's minimum score for this call instead of the
                config's (serve's per-request ``detect_threshold``).

        Raises:
            DeadlineExceeded: the deadline passed before the work was done.
        """
        check_deadline(deadline, "the scene")
        image = as_rgb(image)
        if detections is None:
            dets = self.detect(image, deadline=deadline, score_threshold=score_threshold)
        else:
            dets = detections
        check_deadline(deadline, "cropping faces")
        c = self.config
        checked = c.face_learned is not None and len(dets)
        # grown masks in their own colour wait for the check (``grow_alike_after_check``)
        alike: dict | None = {} if checked and c.grow_alike_after_check else None
        rects, logits = self.segment_windows(image, dets, tracked, deadline=deadline, alike=alike)
        if checked:
            probe = self.paste(image.shape[:2], None, dets, rects, logits, deadline=deadline)
            drop = self.learned_drop(image, dets, logits, probe, deadline=deadline)
            if not drop.any() and size is None and not alike:
                return probe
            logits = empty_where(logits, drop)
            for i, (rect, grown) in (alike or {}).items():
                if not drop[i]:
                    rects[i], logits[i] = rect, grown
        return self.paste(image.shape[:2], size, dets, rects, logits, deadline=deadline)

    def segment_windows(
        self,
        image: np.ndarray,
        dets: Any,
        tracked: bool = False,
        *,
        deadline: float | None = None,
        alike: dict | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(windows, logits) of these faces: each face's window segmented, then grown and
        redone where its mask reaches an edge (``regrow``, ``alike`` passed on); what
        ``segment`` pastes."""
        rects = self.crop_rects(dets, tracked)
        logits = self.crop_logits(image, rects, deadline=deadline)
        return self.regrow(image, rects, logits, deadline=deadline, alike=alike)

    @property
    def learned(self) -> Any:
        """The learned face check of the predictor's model file (``LearnedCheck.for_model``),
        loaded on first use."""
        if self._learned is None:
            from maskseg.pipeline.face_check import LearnedCheck

            self._learned = LearnedCheck.for_model(getattr(self.predictor, "source", None))
        return self._learned

    def learned_drop(
        self,
        image: np.ndarray,
        dets: Any,
        logits: np.ndarray,
        result: SceneResult,
        only: np.ndarray | None = None,
        *,
        deadline: float | None = None,
    ) -> np.ndarray:
        """Bool per face: the learned face check (``SceneConfig.face_learned``) finds its
        painted mask unlikely to be a face's. Only painted faces (and of those, ``only``'s)
        are read (``check_features``).

        Args:
            result: ``paste`` of these faces at the image's own size (size None).
        """
        drop = np.zeros(len(dets), bool)
        if self.config.face_learned is None:
            return drop
        idx, x = self.check_features(image, dets, logits, result, only, deadline=deadline)
        if len(idx):
            drop[idx] = self.learned.proba(x) < self.config.face_learned
        return drop

    def check_features(
        self,
        image: np.ndarray,
        dets: Any,
        logits: np.ndarray,
        result: SceneResult,
        only: np.ndarray | None = None,
        *,
        deadline: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the painted faces, and of those ``only``'s; their
        ``face_check.detection_features`` rows): what the learned check reads, from one Face
        Mesh call for them all and the wear reading of each. ``maskseg gate --face-check``
        fits a model's check on the same rows."""
        from maskseg.pipeline.face_check import LEARNED_FEATURES, detection_features
        from maskseg.pipeline.request import face_parts
        from maskseg.pipeline.wear import judge

        n = len(dets)
        painted = np.array([f.mask for f in result.faces], bool).reshape(n)
        if only is not None:
            painted &= np.asarray(only, bool)
        idx = np.flatnonzero(painted)
        if not len(idx):
            return idx, np.zeros((0, len(LEARNED_FEATURES)))
        check_deadline(deadline, "the learned face check")
        marks = self.finder.checker.landmarker.for_detections(image, dets[idx], deadline=deadline)
        parts = face_parts(result.mask, result.faces)
        presence = np.ones(n)
        verdicts: list[str | None] = ["no_mask"] * n
        for i, m in zip(idx, marks, strict=True):
            x, y, part = parts[i]
            presence[i] = m.presence
            points = m.points.astype(np.float64)
            verdicts[i] = judge(points, part, (x, y), box=dets.boxes[i]).verdict
        peak = np.asarray(logits).reshape(n, -1).max(1)
        area = np.array([f.mask_area for f in result.faces])
        x = detection_features(
            dets.boxes, dets.scores, dets.keypoints, presence, peak, area, verdicts, image.shape[:2]
        )
        return idx, x[idx]

    def crop_masks(self, logits: np.ndarray) -> list[np.ndarray]:
        """Each crop's mask at the model's input size (thresholded, cleaned)."""
        s = self.predictor.size
        return self.predictor.masks_from_logits(logits, [(s, s)] * len(logits))

    def growable(self, mask: np.ndarray) -> bool:
        """Whether grow and redo may grow a face with this crop mask: it has pixels and
        covers at least ``grow_min`` of the crop (then it grows where it touches an edge,
        ``edges_to_grow``)."""
        return bool(mask.any() and mask.mean() >= self.config.grow_min)

    def edges_to_grow(self, shape: tuple[int, int], rect: np.ndarray, mask: np.ndarray):
        """The sides (``touched_sides``) a crop's mask touches where its window lies inside
        the image: growing past the image's edge would only add padding."""
        from maskseg.pipeline.detect import pixel_rect

        c = self.config
        sides = touched_sides(mask, c.grow_touch, c.grow_band)
        x, y, side = pixel_rect(rect)
        h, w = shape
        inside = np.array([y > 0, y + side < h, x > 0, x + side < w])
        return sides & inside

    def regrow(
        self,
        image: np.ndarray,
        rects: np.ndarray,
        logits: np.ndarray,
        *,
        deadline: float | None = None,
        alike: dict | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Grow and redo. With ``retry_small``, first one grown-down window for faces whose
        mask is empty or tiny; then up to ``grow_rounds`` rounds in which every face whose
        mask (at least ``grow_min`` of its crop) touches its window's edge is segmented again
        in a window grown toward the touched side(s) (each step's faces in one batch); with
        ``grow_closed``, a grown face whose last mask still touches an edge gets its first
        window and mask back, unless ``grow_alike`` keeps it (its mask ran on in its own
        colour). With ``alike`` (a dict), those faces get their first window and mask back
        too, and ``alike[i]`` holds the grown (window, logits) for the caller to put back
        after its own check. Returns the final windows and logits (a copy; the inputs are
        left as they are)."""
        c = self.config
        rects = np.array(rects, np.float64).reshape(-1, 4)
        logits = np.array(logits, np.float32, copy=True)
        if not len(rects) or (c.grow_rounds == 0 and c.retry_small is None):
            return rects, logits
        shape = image.shape[:2]
        masks = self.crop_masks(logits)
        if c.retry_small is not None:
            check_deadline(deadline, "retrying small masks")
            small = [i for i, m in enumerate(masks) if m.mean() <= c.retry_small]
            if small:
                down = np.array([False, True, False, False])
                new_rects = np.stack([grow_rect(rects[i], down, c.grow_by) for i in small])
                new_logits = self.crop_logits(image, new_rects, deadline=deadline)
                new_masks = self.crop_masks(new_logits)
                for i, r, lg, m in zip(small, new_rects, new_logits, new_masks, strict=True):
                    # compared in image pixels: the two windows differ in size
                    if m.mean() * side_of(r) ** 2 > masks[i].mean() * side_of(rects[i]) ** 2:
                        rects[i], logits[i], masks[i] = r, lg, m
        first_rects, first_logits = rects.copy(), logits.copy()
        # faces that may grow in the next round
        live = [i for i, m in enumerate(masks) if self.growable(m)]
        grew = set()
        first_sides: dict[int, np.ndarray] = {}  # the sides each face first grew to
        for _ in range(c.grow_rounds):
            check_deadline(deadline, "growing face windows")
            grown = []
            for i in live:
                sides = self.edges_to_grow(shape, rects[i], masks[i])
                if sides.any():
                    grown.append((i, grow_rect(rects[i], sides, c.grow_by)))
                    first_sides.setdefault(i, sides)
            if not grown:
                break
            new_rects = np.stack([r for _, r in grown])
            new_logits = self.crop_logits(image, new_rects, deadline=deadline, predictor=self.redo)
            new_masks = self.crop_masks(new_logits)
            live = []
            for (i, r), lg, m in zip(grown, new_logits, new_masks, strict=True):
                if m.any():  # an empty grown mask (the gate lost it) keeps the earlier one
                    rects[i], logits[i], masks[i] = r, lg, m
                    live.append(i)
                    grew.add(i)
        if c.grow_closed:
            back = [i for i in sorted(grew) if self.edges_to_grow(shape, rects[i], masks[i]).any()]
            if back and c.grow_alike is not None:
                same = [i for i in back if self._alike(image, rects[i], first_rects[i], masks[i])]
                if alike is None:
                    back = [i for i in back if i not in same]
                else:
                    alike.update({i: (rects[i].copy(), logits[i].copy()) for i in same})
            for i in back:
                rects[i], logits[i] = first_rects[i], first_logits[i]
            if back and c.grow_fallback is not None:
                self._fall_back(image, rects, logits, back, first_sides, deadline)
        return rects, logits

    def _alike(
        self, image: np.ndarray, rect: np.ndarray, first: np.ndarray, mask: np.ndarray
    ) -> bool:
        """``grow_alike``: the grown window ``rect``'s mask ran on past the first window
        ``first`` in its own colour (``colour_step`` within the setting)."""
        from maskseg.pipeline.detect import cut_crop

        size = mask.shape[0]
        crop = cut_crop(image, rect, size=size)
        step = colour_step(crop, mask, inner_rect(rect, first, size))
        return step <= self.config.grow_alike

    def _fall_back(
        self,
        image: np.ndarray,
        rects: np.ndarray,
        logits: np.ndarray,
        faces: list[int],
        sides: dict[int, np.ndarray],
        deadline: float | None,
    ) -> None:
        """``grow_fallback``: the faces closed growth took back, cut again from their first
        windows (now in ``rects``) grown by the shorter step toward the sides they first grew
        to, in one batch; a face keeps the new window and logits (in place) where its mask
        has pixels and touches no edge of its window."""
        check_deadline(deadline, "growing face windows by the shorter step")
        c = self.config
        new_rects = np.stack([grow_rect(rects[i], sides[i], c.grow_fallback) for i in faces])
        new_logits = self.crop_logits(image, new_rects, deadline=deadline, predictor=self.redo)
        shape = image.shape[:2]
        for i, r, lg, m in zip(
            faces, new_rects, new_logits, self.crop_masks(new_logits), strict=True
        ):
            if m.any() and not self.edges_to_grow(shape, r, m).any():
                rects[i], logits[i] = r, lg

    def crop_logits(
        self,
        image: np.ndarray,
        rects: np.ndarray,
        *,
        deadline: float | None = None,
        predictor: Any = None,
    ) -> np.ndarray:
        """The model's logits (N, 1, S, S) for the crops, in one backend call; with a
        ``deadline``, ``SEGMENT_CHUNK`` crops per call, the deadline checked before each.
        ``predictor``: another model for these crops (its logits brought to this scene's
        model size S); None: the scene's."""
        from maskseg.pipeline.detect import cut_crop

        model = predictor if predictor is not None else self.predictor
        s, size = self.predictor.size, model.size
        crops = []
        for r in rects:
            check_deadline(deadline, "cutting face crops")
            crops.append(cut_crop(image, r, size=size))
        if not crops:
            return np.zeros((0, 1, s, s), np.float32)
        if deadline is None:
            out = model.logits(crops)
        else:
            parts = []
            for start in range(0, len(crops), SEGMENT_CHUNK):
                check_deadline(deadline, "segmenting face crops")
                parts.append(model.logits(crops[start : start + SEGMENT_CHUNK]))
            out = np.concatenate(parts)
        if size != s:
            import cv2

            out = np.stack(
                [cv2.resize(lg[0], (s, s), interpolation=cv2.INTER_LINEAR) for lg in out]
            )
            out = out[:, None].astype(np.float32)
        return out

    def paste(
        self,
        shape: tuple[int, int],
        size: tuple[int, int] | None,
        dets: Any,
        rects: np.ndarray,
        logits: np.ndarray,
        *,
        deadline: float | None = None,
    ) -> SceneResult:
        """Masks at each crop's own pixel size (upsampled logits, thresholded, cleaned: the
        crop path of ``Predictor``), each kept within reach of its face's box
        (``SceneConfig.reach``), OR-ed into the frame; the part outside it is dropped. With a
        ``deadline``, each face's mask is made after checking it."""
        from maskseg.pipeline.detect import pixel_rect

        h, w = size if size is not None else shape
        scale = np.array([w / shape[1], h / shape[0]] * 2)
        full = np.zeros((h, w), bool)
        rects = np.asarray(rects, np.float64).reshape(-1, 4) * scale
        windows = [pixel_rect(r) for r in rects]
        if deadline is None:
            masks = self.predictor.masks_from_logits(logits, [(s, s) for _, _, s in windows])
        else:
            masks = []
            for lg, (_, _, s) in zip(logits, windows, strict=True):
                check_deadline(deadline, "pasting face masks")
                masks += self.predictor.masks_from_logits(lg[None], [(s, s)])
        faces = []
        reach = self.config.reach
        for i, ((x, y, side), crop_mask) in enumerate(zip(windows, masks, strict=True)):
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
            box = dets.boxes[i] * scale
            area = 0
            if x1 > x0 and y1 > y0:
                part = crop_mask[y0 - y : y1 - y, x0 - x : x1 - x]
                part = clip_to_reach(part, (x0, y0), box, reach)
                full[y0:y1, x0:x1] |= part
                area = int(part.sum())
            box_area = max(1.0, float((box[2] - box[0]) * (box[3] - box[1])))
            faces.append(
                Face(
                    box,
                    float(dets.scores[i]),
                    rects[i],
                    area / box_area,
                    area > 0,
                    dets.keypoints[i] * scale[:2],
                )
            )
        return SceneResult(full, faces)

    def predict(self, image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """The full-frame bool mask (as ``Predictor.predict``, for whole photos)."""
        return self.segment(image, size).mask

    __call__ = predict

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``predict`` on each image in turn (each photo has its own faces and windows)."""
        return [self.predict(im) for im in images]

    def describe(self) -> str:
        c = self.config
        found = self.finder.describe()
        if c.grow_rounds:
            found += f", windows grown by {c.grow_by} (at most {c.grow_rounds} rounds)"
            if self.redo is not None:
                found += f", redone by {self.redo.describe()}"
        return f"{found} + {self.predictor.describe()}"
