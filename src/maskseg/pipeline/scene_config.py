"""How the scene path finds and frames faces: ``SceneConfig`` and the values chosen for it.

Every default here was chosen on validation data by a rule written down first
(docs/shipped-model-plan.md); the comments give the figures behind each. ``scene_config``
builds one from ``NAME=VALUE`` strings (the benchmarks' ``--set``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from maskseg.pipeline.detect._base import MAX_TILES
from maskseg.pipeline.face_check import FaceCheck

# Scene settings, chosen on fold 0 validation scenes (docs/shipped-model-plan.md; full-frame
# IoU 0.643 with 0.35 / x1.15 / no containment rule, 0.714 with the values below).
# Detector score threshold: lower than MediaPipe's 0.5, because the presence gate turns a
# detection without a mask (a face or not) into an empty mask, while a missed face can never
# be segmented.
SCENE_SCORE_THRESHOLD = 0.25
# Crops are cut this many times the calibrated side.
CROP_SCALE = 1.0
# A detection overlapping a better one by more than this share of the smaller box's area is
# dropped: the detector's overlapping boxes around one face (tiles zoomed into part of a big
# face), which plain IoU suppression keeps, would each paint a mask. 0.2 was chosen on fold 0
# validation (docs/shipped-model-plan.md): unmasked photos given a mask 7.6 % -> 5.8 % at 0.5
# -> 0.2, masked photos 90.4 % -> 90.2 %, scene IoU 0.724 -> 0.727.
CONTAINED = 0.2
# With a deadline, crops are segmented this many per backend call, the deadline checked
# between calls (16 crops of the shipped model: about 0.2 s on two CPU cores).
SEGMENT_CHUNK = 16
# Grow and redo (docs/shipped-model-plan.md, "Framing that keeps the whole mask"): a face whose
# crop mask touches its window's edge is cut again, grown toward the touched side(s), and
# segmented again. A side is touched when more than GROW_TOUCH of the pixels in its outermost
# GROW_BAND of the crop (a band of rows or columns) are mask. Chosen on validation among 43
# candidates (maskedface-seg dev scene IoU 0.769 -> 0.877 with fold-0 scene IoU 0.7694 ->
# 0.7770 and fold-0 unmasked photos given a mask 6.7 % -> 6.7 %): one round, windows grown by
# 0.3, closed growth only.
GROW_ROUNDS = 1
GROW_BY = 0.3
GROW_TOUCH = 0.2
GROW_BAND = 0.02
# Only faces whose first mask covers at least this share of the crop grow (0.05 changed
# nothing on validation).
GROW_MIN = 0.0
# A grown face whose last mask still touches an edge (inside the image) gets its first mask
# back: background painted below a tight face runs to the grown window's edge, a real mask
# ends at the chin or jaw (fold-0 scene IoU 0.6905 without this rule, 0.7770 with it).
GROW_CLOSED = True
# A grown face that closed growth would take back is cut once more from its first window grown
# by this much toward the sides it first grew to, and keeps that mask when it closes inside
# the window (docs/shipped-model-plan.md, "A shorter step where growth overshoots"). None: off.
GROW_FALLBACK: float | None = None
# A grown face that closed growth would take back keeps its grown mask when the mean colour of
# its pixels past its first window lies within this CIE Lab distance of the mean colour of its
# pixels inside it (docs/shipped-model-plan.md, "Grown masks kept where they run on in the
# mask's own colour"). None: off.
GROW_ALIKE: float | None = None
# With the learned check, the check reads such a face as closed growth leaves it and only the
# faces it keeps get the grown mask (docs/shipped-model-plan.md, "... kept after the check").
GROW_ALIKE_AFTER_CHECK = False
# A face whose first mask covers at most this share of its crop gets one window grown toward
# the bottom (masks worn low show too little of themselves to the gate); None: off. Off: on
# validation it gave a third or more of unmasked photos a mask.
RETRY_SMALL: float | None = None
# The face check (docs/shipped-model-plan.md, "Face check"): a detection whose box side is
# under FACE_MIN_SIDE times the picture's largest detection's is dropped (part of a big face,
# a pattern in the background). Chosen on validation among 30 candidates together with the
# gate: fold-0 validation unmasked photos given a mask 6.5 % -> 4.9 %, masked 93.4 % -> 93.2 %,
# fold-0 scene IoU unchanged (0.7770), maskedface-seg dev 0.881 -> 0.884. The Face Mesh
# presence rules removed more false masks (down to 0.9 %) but also masked faces the detector
# is unsure of (fold-0 scene IoU 0.684-0.772), so FACE_PRESENCE stays off.
FACE_MIN_SIDE: float | None = 0.25
FACE_PRESENCE: float | None = None
FACE_PRESENCE_BELOW = 0.5
# Zones around a face (docs/shipped-model-plan.md, "Face check: the body below and the head
# around a face"): a detection under FACE_ZONE_BELOW detector score and FACE_ZONE_RATIO times
# a larger detection's side, lying in that face's body (FACE_BODY_WIDTH / FACE_BODY_DEPTH box
# sides to each side / below) or its halo (its box grown by FACE_HALO sides), is dropped.
FACE_BODY_WIDTH: float | None = None
FACE_BODY_DEPTH: float = 2.0
FACE_HALO: float | None = None
FACE_ZONE_RATIO = 0.75
FACE_ZONE_BELOW = 0.5
# The learned face check (docs/shipped-model-plan.md, "A learned face check" and "The learned
# face check's threshold over three folds"): a face whose painted mask has a probability under
# FACE_LEARNED of being a face's mask, by the logistic regression fitted on its model's outputs
# (weights/unet-msfd.face-check.json for the shipped model; ``face_check.check_file_for``:
# detector score, size and place against the largest face, keypoints, Face Mesh presence, the
# model's peak logit and mask area, the wear reading), gets an empty mask. t 0.002 was chosen
# on fold 0 and confirmed on fold 1; t 0.02 over all three folds' rows (unmasked validation
# photos given a mask 4.74 % -> 2.88 % pooled, 2 of 1,404 masked main faces lost; held-out
# test photos 7.1 % -> 5.0 %).
FACE_LEARNED: float | None = 0.02
# A face's mask is kept only within reach of its detector box (docs/shipped-model-plan.md,
# "A mask within reach of its face"): at most REACH_SIDE box widths beyond either side, at
# most REACH_BELOW box heights below it and REACH_ABOVE above it (None: no limit that way).
REACH_SIDE: float | None = None
REACH_BELOW: float | None = None
REACH_ABOVE: float | None = None


@dataclass(frozen=True)
class SceneConfig:
    """How faces are found and cropped.

    Attributes:
        detector: a registered detector name (``maskseg.pipeline.detect.list_detectors()``).
        mode: "frame" (one pass) or "tiles" (one pass plus overlapping tiles: small faces).
        score_threshold: minimum detection score.
        crop_scale: crops are this many times the calibrated crop side.
        max_faces: at most this many faces per image (best first); None for all.
        threads: detector threads (None: its default).
        max_tiles: at most this many detector tiles per image ("tiles" mode); very long
            images get fewer, larger tiles (``maskseg.pipeline.detect.regions.tile_squares``).
        grow_rounds: at most this many rounds of "grow and redo": a face whose crop mask
            touches its window's edge (``touched_sides``) is cut again from a window grown
            toward the touched side(s) (``grow_rect``) and segmented again, all such faces in
            one batch; the grown window's mask replaces the earlier one unless it is empty
            (or, with ``grow_closed``, still touches an edge at the end). 0: off.
        grow_by: a grown window's side is (1 + grow_by) times the earlier one's.
        grow_touch: a side is touched when more than this share of its band's pixels is mask.
        grow_band: the band along each side, as a share of the crop's side (at least 1 px).
        grow_min: only faces whose first mask covers at least this share of the crop grow.
        grow_closed: a grown face whose last mask still touches an edge of its window
            (inside the image) gets its first window and mask back.
        grow_fallback: with ``grow_closed``, such a face is first cut again from its first
            window grown by this much toward the sides it first grew to; that mask is kept
            if it has pixels and touches no edge of its window. None: off.
        grow_alike: with ``grow_closed``, such a face keeps its grown mask when the mean
            colour (CIE Lab) of the mask past its first window lies within this distance of
            the mean colour of the mask inside it (``windows.colour_step``): the mask ran on
            over more of itself, not over background. None: off.
        grow_alike_after_check: with ``grow_alike`` and the learned check, the check reads
            those faces with their first (closed growth's) masks, and only the faces it
            keeps get the grown masks back (``ScenePredictor.segment``: predict and serve;
            the video loop, which runs the check on its own schedule, keeps them at once).
        retry_small: a face whose first mask covers at most this share of its crop (an empty
            mask included) gets one window grown toward the bottom (masks worn low); its mask
            replaces the first only if it is larger. None: off.
        face_min_side: drop a detection whose box side is under this share of the picture's
            largest detection's (None: off).
        face_presence: drop a detection whose Face Mesh face-presence score is under this
            when its detector score is under ``face_presence_below`` (None: off).
        face_presence_below: see ``face_presence``.
        face_body_width, face_body_depth: the body zone below a face, in its box sides to
            each side of its centre and below its box (``face_body_width`` None: off).
        face_halo: the head zone around a face, its box grown by this many sides (None: off).
        face_zone_ratio, face_zone_below: only detections under this share of the face's
            side and under this detector score are dropped from its zones.
        face_learned: a face whose painted mask the learned face check gives a probability
            under this of being a face's mask gets an empty mask (``maskseg.pipeline.
            face_check.LearnedCheck``; None: off).
        reach_side: a face's mask pixels more than this many box widths beyond its box's
            left or right side are dropped (a mask belongs to one face; what runs on is the
            background or clothing beside it). None: no limit.
        reach_below: the same below the box's bottom, in box heights (masks worn low reach
            the neck, so this is the loosest).
        reach_above: the same above the box's top, in box heights; below 0, the mask must
            start that far under the box's top (a mask never covers the eyes).
    """

    detector: str = "blazeface"
    mode: str = "tiles"
    score_threshold: float = SCENE_SCORE_THRESHOLD
    crop_scale: float = CROP_SCALE
    max_faces: int | None = None
    threads: int | None = None
    max_tiles: int | None = MAX_TILES
    grow_rounds: int = GROW_ROUNDS
    grow_by: float = GROW_BY
    grow_touch: float = GROW_TOUCH
    grow_band: float = GROW_BAND
    grow_min: float = GROW_MIN
    grow_closed: bool = GROW_CLOSED
    grow_fallback: float | None = GROW_FALLBACK
    grow_alike: float | None = GROW_ALIKE
    grow_alike_after_check: bool = GROW_ALIKE_AFTER_CHECK
    retry_small: float | None = RETRY_SMALL
    face_min_side: float | None = FACE_MIN_SIDE
    face_presence: float | None = FACE_PRESENCE
    face_presence_below: float = FACE_PRESENCE_BELOW
    face_body_width: float | None = FACE_BODY_WIDTH
    face_body_depth: float = FACE_BODY_DEPTH
    face_halo: float | None = FACE_HALO
    face_zone_ratio: float = FACE_ZONE_RATIO
    face_zone_below: float = FACE_ZONE_BELOW
    face_learned: float | None = FACE_LEARNED
    reach_side: float | None = REACH_SIDE
    reach_below: float | None = REACH_BELOW
    reach_above: float | None = REACH_ABOVE

    def __post_init__(self) -> None:
        if self.grow_rounds < 0:
            raise ValueError(f"grow_rounds must be >= 0, got {self.grow_rounds}")
        if self.grow_by <= 0:
            raise ValueError(f"grow_by must be > 0, got {self.grow_by}")
        if self.grow_fallback is not None and self.grow_fallback <= 0:
            raise ValueError(f"grow_fallback must be > 0 or None, got {self.grow_fallback}")
        if self.grow_alike is not None and self.grow_alike < 0:
            raise ValueError(f"grow_alike must be >= 0 or None, got {self.grow_alike}")
        if not 0 <= self.grow_touch < 1:
            raise ValueError(f"grow_touch must be in [0, 1), got {self.grow_touch}")
        if not 0 <= self.grow_min < 1:
            raise ValueError(f"grow_min must be in [0, 1), got {self.grow_min}")
        if not 0 < self.grow_band <= 0.5:
            raise ValueError(f"grow_band must be in (0, 0.5], got {self.grow_band}")
        for name in ("face_min_side", "face_presence", "face_learned"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1] or None, got {value}")
        for name in ("face_body_width", "face_body_depth", "face_halo"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value}")
        if not 0 < self.face_zone_ratio <= 1:
            raise ValueError(f"face_zone_ratio must be in (0, 1], got {self.face_zone_ratio}")
        for name in ("reach_side", "reach_below", "reach_above"):
            value = getattr(self, name)
            if value is not None and value < (-1 if name == "reach_above" else 0):
                raise ValueError(f"{name} must be >= 0 (reach_above >= -1) or None, got {value}")

    @property
    def reach(self) -> tuple[float | None, float | None, float | None]:
        """(side, below, above): how far past its box a face's mask may reach."""
        return self.reach_side, self.reach_below, self.reach_above

    @property
    def face_check(self) -> FaceCheck:
        """The face check's rule (``maskseg.pipeline.face_check``)."""
        body = None
        if self.face_body_width is not None:
            body = (self.face_body_width, self.face_body_depth)
        return FaceCheck(
            self.face_presence,
            self.face_presence_below,
            self.face_min_side,
            body,
            self.face_halo,
            self.face_zone_ratio,
            self.face_zone_below,
        )


def scene_config(settings: Sequence[str], base: SceneConfig | None = None) -> SceneConfig:
    """``base`` (default: ``SceneConfig()``) with fields set from "name=value" strings (the
    benchmarks' ``--set``); "none" sets None."""
    base = SceneConfig() if base is None else base
    types = {f.name: str(f.type) for f in fields(SceneConfig)}
    changes: dict[str, Any] = {}
    for item in settings:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in types:
            raise ValueError(f"not a scene setting: {item!r}; settings: {', '.join(types)}")
        value = value.strip()
        if value.lower() == "none":
            changes[name] = None
        elif types[name].startswith("bool"):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"{name} takes true or false, got {value!r}")
            changes[name] = value.lower() in ("true", "1")
        elif types[name].startswith("int"):
            changes[name] = int(value)
        elif types[name].startswith("float"):
            changes[name] = float(value)
        else:
            changes[name] = value
    return replace(base, **changes)
