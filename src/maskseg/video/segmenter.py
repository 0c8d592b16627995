"""The per-stream state of a video: which faces are followed and when to detect again, kept
apart from the loop (``maskseg.video.loop``) so a web API can drive frames itself.

Faces are found by the scene's one face finder (``maskseg.pipeline.finder.FaceFinder``: the
same detector, merging, thresholds, max faces and windows as ``predict --scene`` and serve; the
video builds no detector of its own), and segmented, grown and redone where a mask reaches its
window's edge, and pasted by the scene (``ScenePredictor.crop_logits``, ``regrow``, ``paste``).
Detection is the costly part of a frame after segmentation, so it is done in full (the scene
predictor's mode: "tiles" finds small faces) only every ``detect_every`` frames, when no face
is being followed, or when a followed face is not found again; in between, the detector only
looks around the faces of the previous frame (``find(frame, rois=boxes)``) and their windows
use the mapping fitted for such re-detections ("roi"). All faces of a frame are segmented in
one model call. Each stage's time is counted in ``VideoStats``. With a wear check
(``maskseg.pipeline.wear.WearCheck``), every face of every frame is judged after segmentation
(its landmarks in one batch per frame; the "wear" stage): ``FrameResult.wear``.

A face already followed is kept down to a lower detection score (``keep_score``) than a new
face needs (the scene's threshold): masked faces often score near that threshold, and
without this hysteresis their masks blink off in the frames where they dip below it. Such a
weak detection must overlap the face's last box and look like it (``keep_iou``,
``keep_look``), so the background left behind by a face that moves away cannot inherit it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from maskseg.pipeline.detect import box_iou, cut_crop
from maskseg.pipeline.postprocess import logit
from maskseg.pipeline.preprocess import as_rgb
from maskseg.pipeline.scene import EMPTY_LOGIT, empty_where
from maskseg.pipeline.scene_config import SceneConfig
from maskseg.pipeline.windows import overlap_shares
from maskseg.video.cuts import CUT_THRESHOLD, CutDetector
from maskseg.video.stats import VideoStats
from maskseg.video.tracking import (
    CropSmoother,
    FaceTracker,
    Track,
    appearance,
    match_boxes,
    similarity,
)

# Whether a followed face has a mask, voted over this many frames (1: no vote). Chosen on
# validation clips (docs/shipped-model-plan.md, "Video: the gate voted over a face's frames").
GATE_FRAMES = 1
# A followed face the search around faces cannot see is held while what its box holds
# correlates at least this with what it held (``VideoOptions.hold_look``); None: not held.
HOLD_LOOK: float | None = None
# A followed face its full detection left without a mask gets none in the searched frames
# before the next one (``VideoOptions.hold_empty``); chosen on validation (fold 0: frames of
# unmasked photos given a mask 4.00 % -> 2.89 %, masked photos and clips unchanged).
HOLD_EMPTY = True
# ... and a face its previous full detection gave a mask is held so only after a second empty
# one in a row (``VideoOptions.hold_empty_twice``); chosen on validation (fold 0: clips' frame
# IoU 0.7324 -> 0.7352 at 2 px, 0.6910 -> 0.6947 at 6 px; photos unchanged).
HOLD_EMPTY_TWICE = True
# A followed face is segmented every this many frames between full detections, its mask
# moved with the picture in the others (``VideoOptions.segment_every``; 1: every frame).
# Chosen on validation (fold 0, against every frame: clips' frame IoU 0.7453 -> 0.7436 at
# 2 px, 0.7047 -> 0.7047 at 6 px; photos within 0.3 points; 3 faces 3.1-3.4x the frames/s
# on an AVX2 EPYC, 1.6-1.7x those of every third frame).
SEGMENT_EVERY = 6
# A followed face due for the model in a searched frame is first cut from its carried window
# (``VideoOptions.carry_window``); registered in docs/shipped-model-plan.md.
CARRY_WINDOW = False
# A face whose window overlaps another's by this share of the smaller is not carried
# (``VideoOptions.carry_overlap``); None: overlap does not matter.
CARRY_OVERLAP: float | None = None
# A face whose growth grow and redo took back is not grown again before the next full
# detection (``VideoOptions.hold_taken_back``); registered in docs/shipped-model-plan.md.
HOLD_TAKEN_BACK = False


@dataclass(frozen=True)
class VideoOptions:
    """How faces are followed and masks smoothed.

    Attributes:
        detect_every: a full detection at least every this many frames (1: every frame, no
            re-detection around tracked faces).
        smooth: average each face's mask over frames (``CropSmoother``).
        smooth_weight: share of the newest frame in that average.
        reset_iou: a face whose box overlaps its previous box by less starts a new average.
        keep_score: a followed face is kept down to this detection score; a new face needs
            the scene's own threshold.
        keep_iou, keep_look: ... but only when that weaker detection overlaps the face's
            last box at least ``keep_iou`` and looks like it (grey thumbnails correlated at
            least ``keep_look``): background the detector half-believes in where a face
            was must not take its place when it leaves.
        track_iou: boxes overlapping at least this continue a track.
        max_misses: a track not found this many frames in a row is dropped.
        prefetch: frames decoded ahead in a reader thread (0: decode in the loop). Off by
            default: decoding a 640x480 frame takes under 1 ms, and on a busy 2-core CPU
            the extra thread cost more than it hid (``benchmarks/bench_video.py``).
        write_ahead: frames handed to a writer thread that draws the overlay and feeds the
            sinks (encoding releases the GIL), so they overlap detection and segmentation
            of the next frame; 0 does it in the loop. A preview window always runs in the
            loop (GUI calls belong to the main thread).
        detect_ahead: frames located (decoded, detected, tracked) ahead in a thread of their
            own, so detection overlaps segmentation of the frame before; 0 does it in the
            loop. Adds that many frames of latency to a live source.
        detect_threads: onnxruntime threads of the detector of the video's scene: the
            video has no detector of its own, so build its ``ScenePredictor`` with
            ``scene_config`` (None: the scene's setting). One by default: most frames only
            search small regions around followed faces, where a second thread costs more in
            hand-off than it saves (``benchmarks/bench_detect.py``: 3.5 ms per region at one
            thread, 5.1 at two), and the writer thread needs the other core.
        wear_every: with a wear check, a followed face is judged when it appears and then
            every this many frames; its verdict stands in between (1: every frame).
        hold_growth: grow and redo (``ScenePredictor.regrow``) is decided for each face on
            full detections (and for a face not yet decided); in the frames between, the
            face's window keeps that decision (grown the same way relative to its steadied
            window, or not at all) and is segmented once. False (the default: on validation
            clips holding lost 0.006-0.007 frame IoU, docs/shipped-model-plan.md): decided every
            frame, which segments every face whose mask touches its window twice per frame.
        gate_frames: with smoothing, whether a followed face has a mask is voted over its
            last this many frames (``CropSmoother.vote``): a frame the gate rejects while the
            vote says mask keeps the face's running mask, and a frame it passes while the vote
            says no shows none. 1: no vote, each frame's own gate.
        cut_threshold: a frame whose content score against the previous one exceeds this
            starts a new shot (``maskseg.video.cuts``): every followed face is forgotten (new
            track ids, no smoothed mask or verdict carried over) and the frame gets a full
            detection. None: no cut detection.
        hold_look: a followed face that the search around followed faces misses but the
            full detection this forces finds again is one that search cannot see (the
            detector or the face check judge a zoomed view differently), not one that left.
            It is *held*: in later searched frames, while the frame inside its box still
            looks like it did at that full detection (``tracking.similarity`` at least
            this), that detection stands for it, with its own window, and forces no full
            detection; the next scheduled one finds it afresh or lets it go. A face that
            moves changes what is inside its old box and is re-detected in full at once.
            None (the default): never held, every such miss forces a full detection. 0.9
            passed its registered rule on fold 0's validation clips (docs/shipped-model-plan.md,
            "Video: a face the search around followed faces cannot see is held"), but on the
            still portrait that motivated it the searched frames it brings back paint the arm
            below the face in 31 of 60 frames (0 with every frame detected in full): an option,
            not the default.
        hold_empty: in a searched frame, a followed face whose last full detection left it
            without a mask (gate and learned face check) gets none either; a face with a
            mask then is segmented and gated as usual. A searched frame windows a face from
            its re-detected box, which for a false detection (an arm, a collar) can be larger
            and open the gate where the full detection's window did not; a mask put on
            shows at the next full detection. On by the rule registered in
            docs/shipped-model-plan.md ("Video: a face left without a mask by its full
            detection stays so"); False: every searched frame gates every face afresh.
        hold_empty_twice: with ``hold_empty``, a face that its previous full detection gave
            a mask is held empty only once a second full detection in a row leaves it
            without one; a new face, or one empty at both, is held after one. One empty full
            detection of a face seen masked is more likely the gate missing it (its window
            framed a little differently) than the mask coming off. On by the rule registered
            in docs/shipped-model-plan.md ("a face seen masked is held empty only after two").
            A face held empty gets no model call in a searched frame at all (its mask would
            be emptied anyway).
        segment_every: in a searched frame, a followed face with a mask is segmented only
            in every this many frames, staggered over faces by track id (3 faces at 3: one
            crop a frame); in the others its last mask (after smoothing and grow and redo)
            is carried, moved as the picture inside its window moved since (``shift_of``:
            phase correlation of small grey patches; the steadied window follows a face too
            slowly to carry it). Full detections, new faces, a face that jumped
            (``reset_iou``) and faces whose last mask is empty are segmented every frame, so
            the gate, face check and growth are still decided by the model on real crops.
            1: every face every frame. Registered in docs/shipped-model-plan.md ("each
            followed face segmented every K-th frame").
        carry_window: with ``segment_every`` > 1, a face due for the model in a searched
            frame is first cut from its carried window (its last final window, grown as grow
            and redo left it, moved as a carried mask is) instead of its steadied one: that
            window already frames the whole mask, so the usual second cut of grow and redo is
            saved. The mask is kept there when it has pixels and touches no edge of the
            window (inside the frame). Otherwise a face whose carried window was not grown
            goes on to grow and redo from it, as from its steadied one, and one whose
            carried window was grown goes the usual way (steadied window, grow and redo),
            one crop dearer. Measured, off by default. Registered in
            docs/shipped-model-plan.md ("A due face segmented first in its carried window").
        carry_overlap: with ``segment_every`` > 1, a face whose window overlaps another
            followed face's window by at least this share of the smaller window's area is
            segmented, not carried: a carried mask moves with the picture inside its window,
            which is then mostly the other face, so a rear face's mask would follow the face
            passing in front of it. None: overlap does not matter. Measured (it never acted
            on the validation clips), off by default. Registered in
            docs/shipped-model-plan.md ("A face overlapping another is not carried").
        hold_taken_back: a followed face whose last grow and redo grew its window and took
            the growth back (the grown mask still reached the grown window's edge) is not
            grown again in the searched frames before the next full detection: segmented
            once in its steadied window, its mask may reach that window's edge as the
            taken-back one did. Full detections decide afresh. Registered in
            docs/shipped-model-plan.md ("A face whose growth was taken back ...").
    """

    detect_every: int = 15
    smooth: bool = True
    smooth_weight: float = 0.5
    reset_iou: float = 0.5
    keep_score: float = 0.2
    keep_iou: float = 0.5
    keep_look: float = 0.6
    track_iou: float = 0.3
    max_misses: int = 5
    prefetch: int = 0
    write_ahead: int = 2
    detect_ahead: int = 2
    detect_threads: int | None = 1
    wear_every: int = 5
    hold_growth: bool = False
    gate_frames: int = GATE_FRAMES
    cut_threshold: float | None = CUT_THRESHOLD
    hold_look: float | None = HOLD_LOOK
    hold_empty: bool = HOLD_EMPTY
    hold_empty_twice: bool = HOLD_EMPTY_TWICE
    segment_every: int = SEGMENT_EVERY
    carry_window: bool = CARRY_WINDOW
    carry_overlap: float | None = CARRY_OVERLAP
    hold_taken_back: bool = HOLD_TAKEN_BACK

    def __post_init__(self) -> None:
        if self.segment_every < 1:
            raise ValueError(f"segment_every must be >= 1, got {self.segment_every}")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.gate_frames < 1:
            raise ValueError(f"gate_frames must be >= 1, got {self.gate_frames}")
        if self.wear_every < 1:
            raise ValueError(f"wear_every must be >= 1, got {self.wear_every}")
        if self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {self.prefetch}")
        if self.write_ahead < 0:
            raise ValueError(f"write_ahead must be >= 0, got {self.write_ahead}")
        if self.detect_ahead < 0:
            raise ValueError(f"detect_ahead must be >= 0, got {self.detect_ahead}")
        if self.cut_threshold is not None and self.cut_threshold <= 0:
            raise ValueError(f"cut_threshold must be > 0 or None, got {self.cut_threshold}")
        if self.carry_overlap is not None and not 0 < self.carry_overlap <= 1:
            raise ValueError(f"carry_overlap must be in (0, 1] or None, got {self.carry_overlap}")
        if self.hold_look is not None and not -1 <= self.hold_look <= 1:
            raise ValueError(f"hold_look must be in [-1, 1] or None, got {self.hold_look}")

    def scene_config(self, config: SceneConfig | None = None) -> SceneConfig:
        """``config`` (default: ``SceneConfig()``) with ``detect_threads``: what a video's
        ``ScenePredictor`` is built with, so its one detector runs at the video's threads."""
        config = SceneConfig() if config is None else config
        if self.detect_threads is None:
            return config
        return replace(config, threads=self.detect_threads)


@dataclass
class Located:
    """A frame after ``VideoSegmenter.locate``: its RGB image, detections, whether they were
    re-detections, their tracks, each track's box in this frame, whether the frame starts
    a new shot, and which detections are held ones from an earlier full detection
    (``VideoOptions.hold_look``; None: none); and the seconds locating it took, added to
    the run's detect stage when the frame is segmented: ``locate`` may run ahead, and frames
    located but never shown (at a frame limit or a stop) must not count."""

    image: np.ndarray
    dets: Any
    tracked: bool
    tracks: list[Track]
    boxes: list[np.ndarray]
    cut: bool = False
    held: np.ndarray | None = None
    seconds: float = 0.0


@dataclass
class FrameResult:
    """One frame's faces and mask (``scene``), the track id of each face, whether the
    faces came from a full detection, each face's wear verdict when checked, and whether the
    frame starts a new shot (a cut: no face of it continues one from before)."""

    scene: Any
    ids: list[int]
    full_detection: bool
    wear: list[Any] | None = None  # maskseg.pipeline.wear.Wear per face
    cut: bool = False


# side of the grey patches whose phase correlation tells how a carried mask moved, and the
# Hann window that keeps their edges out of it
PATCH = 64
HANN = cv2.createHanningWindow((PATCH, PATCH), cv2.CV_32F)


def patch_of(image: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """The grey PATCH x PATCH picture of ``rect`` in ``image`` (float32, for ``shift_of``)."""
    crop = cut_crop(image, rect, size=PATCH)
    grey = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return grey.astype(np.float32)


def shift_of(patch: np.ndarray, image: np.ndarray, rect: np.ndarray) -> tuple[float, float]:
    """How far (dx, dy, frame pixels) the picture ``patch`` showed in ``rect`` has moved in
    ``image``: phase correlation of the two grey patches (a Hann window against their
    edges), bounded to a quarter of the window's side."""
    (dx, dy), _ = cv2.phaseCorrelate(patch, patch_of(image, rect), HANN)
    scale = float(rect[2] - rect[0]) / PATCH
    bound = PATCH / 4
    return float(np.clip(dx, -bound, bound) * scale), float(np.clip(dy, -bound, bound) * scale)


def overlapping(rects: np.ndarray, share: float) -> np.ndarray:
    """Bool per window (x1, y1, x2, y2): it overlaps another of ``rects`` by at least
    ``share`` of the smaller one's area."""
    hit = overlap_shares(rects, rects) >= share
    np.fill_diagonal(hit, False)
    return hit.any(axis=1)


def pruned(store: Any, ids: list[int]) -> Any:
    """A per-track store (a dict by track id, or a set of ids), with the tracks long gone
    forgotten once it holds far more than this frame's faces (it is kept whole below that: a
    face missed for a few frames comes back to its entry)."""
    if len(store) <= 4 * max(len(ids), 16):
        return store
    if isinstance(store, set):
        return store & set(ids)
    return {t: store[t] for t in ids if t in store}


def growth_of(base: np.ndarray, grown: np.ndarray) -> np.ndarray:
    """How ``grown`` sits relative to the square window ``base``: (dx, dy, scale) with the
    offsets of its top-left corner in units of base's side."""
    side = max(1e-6, float(base[2] - base[0]))
    return np.array(
        [(grown[0] - base[0]) / side, (grown[1] - base[1]) / side, (grown[2] - grown[0]) / side]
    )


def apply_growth(base: np.ndarray, growth: np.ndarray) -> np.ndarray:
    """The window ``growth`` (from ``growth_of``) makes of the square window ``base``."""
    side = float(base[2] - base[0])
    x1, y1 = base[0] + growth[0] * side, base[1] + growth[1] * side
    return np.array([x1, y1, x1 + growth[2] * side, y1 + growth[2] * side])


class VideoSegmenter:
    """Per-stream state around a ``ScenePredictor``: the tracker, the smoother and when the
    next full detection is due. One instance per video; ``reset()`` between videos.

    Args:
        scene: ``maskseg.pipeline.scene.ScenePredictor``; its face finder finds the faces
            (build it with ``VideoOptions.scene_config`` for the video's detector threads).
        options: see ``VideoOptions``.
        wear: a ``maskseg.pipeline.wear.WearCheck`` run on every face after segmentation;
            None: no wear check.
    """

    def __init__(self, scene: Any, options: VideoOptions | None = None, wear: Any = None):
        self.scene = scene
        self.finder = scene.finder  # the scene's one detector: a video builds none
        self.wear = wear
        self.options = options or VideoOptions()
        self._frame = 0  # frames segmented so far
        # track id -> (frame judged, its Wear, whether its mask was painted then)
        self._wear: dict[int, tuple[int, Any, bool]] = {}
        # track id -> (frame decided, the learned face check empties its mask)
        self._real: dict[int, tuple[int, bool]] = {}
        self.new_score = self.finder.score_threshold
        # followed faces are searched for down to this; new ones need new_score (_continues)
        self.keep_score = min(self.options.keep_score, self.new_score)
        self.reset()

    def reset(self) -> None:
        o = self.options
        self.tracker = FaceTracker(o.track_iou, o.max_misses)
        self.cuts = None if o.cut_threshold is None else CutDetector(o.cut_threshold)
        self.smoother = None
        if o.smooth:
            threshold = logit(self.scene.predictor.threshold)
            gated = self.scene.predictor.config.model.presence
            self.smoother = CropSmoother(
                o.smooth_weight, o.reset_iou, o.gate_frames, threshold, gated=bool(gated)
            )
        self._since_full: int | None = None
        self._growth: dict[int, np.ndarray] = {}  # track id -> its held grow-and-redo
        self._empty: set[int] = set()  # tracks held empty in searched frames (hold_empty)
        self._masked: set[int] = set()  # tracks the last full detection gave a mask
        self._taken_back: set[int] = set()  # tracks whose last growth was taken back
        # track id -> (box, final window, final logits, the window's grey patch, whether
        # grow and redo grew that window) of its last segmented frame with a mask
        # (segment_every, carry_window)
        self._last: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]] = {}

    def __call__(self, image: np.ndarray, stats: VideoStats | None = None) -> FrameResult:
        """Detect (or re-detect around tracked faces), segment all faces in one batch,
        smooth, paste into the frame's mask."""
        return self.segment(self.locate(image), stats)

    def locate(self, image: np.ndarray) -> Located:
        """The first half of a frame: find the faces and follow them. It may run a frame or
        two ahead of ``segment`` (in another thread): what ``segment`` needs is kept in the
        result, not read from the tracker; so is its time, which ``segment`` counts."""
        t0 = time.perf_counter()
        image = as_rgb(image)
        cut = self.cuts is not None and self.cuts(image)
        if cut:
            # a new shot: whoever stands where a followed face was is someone else
            self.tracker.clear()
            self._since_full = None
        dets, tracked, held = self._detect(image)
        tracks = self.tracker.update(dets.boxes, dets.scores)
        for t in tracks:
            t.look = appearance(image, t.box)
        boxes = [t.box.copy() for t in tracks]
        seconds = time.perf_counter() - t0
        return Located(image, dets, tracked, tracks, boxes, cut, held, seconds)

    def segment(self, located: Located, stats: VideoStats | None = None) -> FrameResult:
        """The second half: window, segment all faces in one batch, smooth, grow and redo,
        paste. Frames must come in order (the smoother's memory)."""
        stats = stats or VideoStats()
        # counted here, per frame shown: locate may run ahead
        stats.add("detect", located.seconds)
        stats.full_detections += not located.tracked
        stats.cuts += located.cut
        image, dets, tracks, boxes = located.image, located.dets, located.tracks, located.boxes
        with stats.stage("segment"):
            scene = self.scene
            rects = self.finder.windows(dets, located.tracked)
            if located.held is not None and located.held.any():
                # a held detection keeps the window of the full detection it came from
                rects[located.held] = self.finder.windows(dets[located.held])
            if self.smoother is not None and len(rects):
                parts = zip(tracks, rects, boxes, strict=True)
                rects = np.stack([self.smoother.window(t, r, b) for t, r, b in parts])
            ids = [t.id for t in tracks]
            if not self.options.hold_growth or not located.tracked:
                self._growth = {}  # decided afresh on every full detection
            held = [self._growth.get(i) for i in ids]
            cut = np.array(
                [r if g is None else apply_growth(r, g) for r, g in zip(rects, held, strict=True)]
            ).reshape(-1, 4)
            # held empty as its full detection left it (before smoothing: its running mask
            # must not carry the paint to the next one), and so not segmented at all
            empty = np.array(
                [self.options.hold_empty and located.tracked and t in self._empty for t in ids],
                bool,
            )
            carry, turn = self._carried(ids, boxes, located.tracked)
            if self.options.carry_overlap is not None:
                crowded = overlapping(cut, self.options.carry_overlap)
                carry &= ~crowded
                turn &= ~crowded  # segmented the usual way, from its steadied window
            carry &= ~empty
            s = scene.predictor.size
            logits = np.full((len(ids), 1, s, s), EMPTY_LOGIT, np.float32)
            reuse = np.flatnonzero(turn & ~empty) if self.options.carry_window else []
            kept = self._first_cuts(
                image, ids, cut, logits, np.flatnonzero(~(empty | carry)), reuse
            )
            if self.smoother is not None:
                for k in np.flatnonzero(~carry):
                    logits[k] = self.smoother(tracks[k], cut[k], logits[k], boxes[k])
            for k in np.flatnonzero(carry):
                cut[k], logits[k] = self._carry(ids[k], image)
            # grow and redo as predict --scene does, after smoothing, for the faces whose
            # growth is not decided yet; the decision (grown window relative to the steadied
            # one, or none) holds until the next full detection
            todo = [k for k, g in enumerate(held) if g is None and not (carry[k] or kept[k])]
            if self.options.hold_taken_back and located.tracked:
                todo = [k for k in todo if ids[k] not in self._taken_back]
            grew = np.zeros(len(ids), bool)  # the window grow and redo left is a grown one
            for k in np.flatnonzero(kept):
                grew[k] = self._last[ids[k]][4]
            if todo:
                touched = self._touching(image, cut[todo], logits[todo])
                grown, grown_logits = scene.regrow(image, cut[todo], logits[todo])
                for j, k in enumerate(todo):
                    self._growth[ids[k]] = growth_of(cut[k], grown[j])
                    grew[k] = not np.array_equal(grown[j], cut[k])
                    if touched is not None:  # hold_taken_back: grown, then taken back
                        self._taken_back.discard(ids[k])
                        if touched[j] and not grew[k]:
                            self._taken_back.add(ids[k])
                    cut[k], logits[k] = grown[j], grown_logits[j]
                self._taken_back = pruned(self._taken_back, ids)
            if self.options.segment_every > 1:
                self._remember(image, ids, boxes, cut, logits, carry, grew)
            due = self._check_due(ids) if scene.config.face_learned is not None else None
            if due is not None and not due.any():  # every face's decision stands: one paste
                logits = empty_where(logits, self._held_drop(ids))
            result = scene.paste(image.shape[:2], None, dets, cut, logits)
        if due is not None and due.any():
            with stats.stage("face check"):
                drop = self._learned_drop(image, dets, logits, result, ids, due)
                if drop.any():
                    emptied = empty_where(logits, drop)
                    result = scene.paste(image.shape[:2], None, dets, cut, emptied)
        if self.options.hold_empty and not located.tracked:
            empty = {t for t, f in zip(ids, result.faces, strict=True) if not f.mask}
            # with hold_empty_twice, a face masked at the one before is not held yet
            self._empty = empty - self._masked if self.options.hold_empty_twice else empty
            self._masked = set(ids) - empty
        wear = None
        if self.wear is not None:
            with stats.stage("wear"):
                wear = self._judge(image, result, ids)
        self._frame += 1
        return FrameResult(result, ids, not located.tracked, wear, located.cut)

    def _carried(
        self, ids: list[int], boxes: list[np.ndarray], tracked: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Two bools per followed face (``VideoOptions.segment_every``): its last mask is
        carried in this frame instead of a model call; it could be carried but is due for the
        model in this frame (its turn in ``segment_every``)."""
        every = self.options.segment_every
        carry = np.zeros(len(ids), bool)
        due = np.zeros(len(ids), bool)
        if every == 1 or not tracked:
            return carry, due
        for k, t in enumerate(ids):
            last = self._last.get(t)
            if last is None:
                continue
            near = box_iou(last[0], np.asarray(boxes[k], np.float64)[None])[0]
            if near >= self.options.reset_iou:
                turn = (self._frame + t) % every == 0
                carry[k], due[k] = not turn, turn
        return carry, due

    def _first_cuts(
        self,
        image: np.ndarray,
        ids: list[int],
        cut: np.ndarray,
        logits: np.ndarray,
        run: np.ndarray,
        reuse: Any,
    ) -> np.ndarray:
        """The model's logits for the faces ``run``, in one batch, into ``logits``; the faces
        ``reuse`` (``VideoOptions.carry_window``) cut from their carried windows, which replace
        their windows in ``cut`` unless the usual way must follow. Returns which faces keep
        their carried window's mask as it is (``_kept``: no grow and redo). A face whose
        carried window was grown and no longer holds its mask goes the usual way (steadied
        window, one crop more); one whose carried window was not grown stands in for the
        steadied one (grow and redo runs from it as from that, at no crop more)."""
        first = cut.copy()
        for k in reuse:
            first[k] = self._carry(ids[k], image)[0]
        logits[run] = self.scene.crop_logits(image, first[run])
        kept = self._kept(image.shape[:2], first, logits, reuse)
        redo = [k for k in reuse if not kept[k] and self._last[ids[k]][4]]
        for k in reuse:
            if k not in redo:
                cut[k] = first[k]
        if redo:
            logits[redo] = self.scene.crop_logits(image, cut[redo])
        return kept

    def _touching(self, image: np.ndarray, rects: np.ndarray, logits: np.ndarray) -> Any:
        """With ``hold_taken_back``: per face, whether grow and redo will try to grow it (its
        mask covers ``grow_min`` and touches an edge of its window inside the frame); None
        without the option (nothing to remember)."""
        if not self.options.hold_taken_back:
            return None
        return [
            self.scene.growable(m) and bool(self.scene.edges_to_grow(image.shape[:2], r, m).any())
            for r, m in zip(rects, self.scene.crop_masks(logits), strict=True)
        ]

    def _kept(
        self, shape: tuple[int, int], rects: np.ndarray, logits: np.ndarray, faces: Any
    ) -> np.ndarray:
        """Bool per face: of ``faces`` (cut from their carried windows), those whose mask has
        pixels, is not one ``retry_small`` would retry, and touches no edge of its window
        inside the frame (``VideoOptions.carry_window``); the mask is kept as it is."""
        kept = np.zeros(len(rects), bool)
        faces = list(faces)
        if not faces:
            return kept
        small = self.scene.config.retry_small
        for k, m in zip(faces, self.scene.crop_masks(logits[faces]), strict=True):
            kept[k] = (
                m.any()
                and (small is None or m.mean() > small)
                and not self.scene.edges_to_grow(shape, rects[k], m).any()
            )
        return kept

    def _carry(self, track_id: int, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A face's last final window and logits moved as the picture inside that window
        moved since (``shift_of``): the steadied window follows a face slowly on purpose
        (steady crops), so it cannot tell where a carried mask went."""
        _, old_cut, old_logits, patch, _ = self._last[track_id]
        dx, dy = shift_of(patch, image, old_cut)
        return old_cut + np.array([dx, dy, dx, dy]), old_logits.copy()

    def _remember(
        self,
        image: np.ndarray,
        ids: list[int],
        boxes: list[np.ndarray],
        cut: np.ndarray,
        logits: np.ndarray,
        carry: np.ndarray,
        grew: np.ndarray,
    ) -> None:
        """Keep each segmented face's box, final window, logits, what the window showed and
        whether grow and redo grew it, for the frames that carry them; a face whose mask came
        out empty is forgotten (segmented every frame)."""
        threshold = logit(self.scene.predictor.threshold)
        for k, t in enumerate(ids):
            if carry[k]:
                continue
            if (logits[k] > max(threshold, 0.0)).any():
                box = np.asarray(boxes[k], np.float64).copy()
                patch = patch_of(image, cut[k])
                self._last[t] = (box, cut[k].copy(), logits[k].copy(), patch, bool(grew[k]))
            else:
                self._last.pop(t, None)
        self._last = pruned(self._last, ids)

    def _check_due(self, ids: list[int]) -> np.ndarray:
        """Bool per followed face: the learned face check decides it this frame. It runs on
        the wear check's schedule: when the face appears and then every ``wear_every``
        frames, the decision standing in between (a painted collar does not flicker)."""
        every = self.options.wear_every
        return np.array(
            [self._frame - self._real.get(t, (-every, False))[0] >= every for t in ids], bool
        )

    def _held_drop(self, ids: list[int]) -> np.ndarray:
        """Bool per followed face: its standing decision empties its mask."""
        return np.array([self._real[t][1] for t in ids], bool)

    def _learned_drop(
        self,
        image: np.ndarray,
        dets: Any,
        logits: np.ndarray,
        result: Any,
        ids: list[int],
        due: np.ndarray,
    ) -> np.ndarray:
        """The learned face check (``ScenePredictor.learned_drop``) for the faces ``due``,
        the standing decision for the others."""
        fresh = self.scene.learned_drop(image, dets, logits, result, only=due)
        for k, t in enumerate(ids):
            if due[k]:
                self._real[t] = (self._frame, bool(fresh[k]))
        self._real = pruned(self._real, ids)
        return self._held_drop(ids)

    def _judge(self, image: np.ndarray, result: Any, ids: list[int]) -> list[Any]:
        """Each face's wear verdict. A followed face is judged when it appears and then every
        ``wear_every`` frames, its last verdict standing in between: how a mask is worn
        changes far more slowly than frames come (the landmark pass costs a few ms per face),
        and a verdict that holds for a few frames does not flicker. A face whose mask appears
        or goes (the gate's vote, the face check) is judged again at once, so a record never
        says ``no_mask`` beside a painted mask or ``correct`` beside none."""
        from maskseg.pipeline.request import face_parts

        every = self.options.wear_every
        painted = [bool(f.mask) for f in result.faces]
        due = [
            i
            for i, t in enumerate(ids)
            if t not in self._wear
            or self._frame - self._wear[t][0] >= every
            or self._wear[t][2] != painted[i]  # a verdict never contradicts the mask beside it
        ]
        if due:
            parts = face_parts(result.mask, result.faces)
            faces = [result.faces[i] for i in due]
            fresh, _ = self.wear.check(image, [parts[i] for i in due], faces=faces)
            for i, w in zip(due, fresh, strict=True):
                self._wear[ids[i]] = (self._frame, w, painted[i])
        self._wear = pruned(self._wear, ids)
        return [self._wear[t][1] for t in ids]

    def _detect(self, image: np.ndarray) -> tuple[Any, bool, np.ndarray | None]:
        """(detections, whether they were re-detected around followed faces, which of them
        are held detections (None: none))."""
        active: list[Track] = self.tracker.active()
        due = (
            self._since_full is None
            or self._since_full + 1 >= self.options.detect_every
            or not active
        )
        lost: list[Track] = []
        if not due:
            boxes = np.array([t.box for t in active])

            def near(dets: Any) -> np.ndarray:
                # a search around known faces only continues them: what else it finds in
                # their surroundings is left to the next full detection (zoomed-in
                # background fools the detector more often than the full view)
                hit = np.zeros(len(dets), bool)
                hit[[j for _, j in match_boxes(boxes, dets.boxes, self.options.track_iou)]] = True
                return hit

            dets = self._find(image, boxes, near)
            confirmed = [t for t in active if t.hits > 1]  # one-frame detections may be noise
            lost = self.tracker.missing(confirmed, dets.boxes)
            if all(self._holds(t, image, dets) for t in lost):
                self._since_full += 1
                dets, held = self._with_held(dets, lost)
                return dets, True, held
        # the schedule says so, nothing is followed, or a followed face was lost: look
        # everywhere, in this same frame, so the face is not missing from it
        self._since_full = 0
        dets = self._find(image)
        if self.options.hold_look is not None:
            self._note_held(image, dets, lost)
        return dets, False, None

    def _holds(self, track: Track, image: np.ndarray, dets: Any) -> bool:
        """Whether a followed face the search missed is held (``VideoOptions.hold_look``):
        it has a held detection, nothing found overlaps it, and the frame inside its box
        still looks as it did."""
        if track.held is None or self.options.hold_look is None:
            return False
        det, look = track.held
        if match_boxes(det.boxes, dets.boxes, self.options.track_iou):
            return False
        return similarity(look, appearance(image, det.boxes[0])) >= self.options.hold_look

    def _with_held(self, dets: Any, lost: list[Track]) -> tuple[Any, np.ndarray | None]:
        """The searched detections with the held ones of ``lost`` added, best first, at
        most the finder's ``max_faces``; and which rows are held."""
        if not lost:
            return dets, None
        from maskseg.pipeline.detect import Detections

        extra = [t.held[0] for t in lost if t.held is not None]  # all: each one holds
        parts = [dets, *extra]
        merged = Detections(
            *(
                np.concatenate([getattr(p, k) for p in parts])
                for k in ("boxes", "scores", "keypoints")
            )
        )
        held = np.r_[np.zeros(len(dets), bool), np.ones(len(extra), bool)]
        order = np.argsort(-merged.scores, kind="stable")
        limit = self.finder.config.max_faces
        order = order if limit is None else order[:limit]
        return merged[order], held[order]

    def _note_held(self, image: np.ndarray, dets: Any, lost: list[Track]) -> None:
        """After a full detection: a face the search had just lost and this finds is held
        from now on, a held face found again takes its new detection, and a held face not
        found is held no more."""
        lost_ids = {id(t) for t in lost}
        candidates = [t for t in self.tracker.tracks if t.held is not None or id(t) in lost_ids]
        old = np.array([t.box for t in candidates]).reshape(-1, 4)
        found = dict(match_boxes(old, dets.boxes, self.options.track_iou))
        for i, t in enumerate(candidates):
            j = found.get(i)
            t.held = None if j is None else (dets[j], appearance(image, dets.boxes[j]))

    def _find(
        self,
        image: np.ndarray,
        rois: np.ndarray | None = None,
        near: Callable[[Any], np.ndarray] | None = None,
    ) -> Any:
        """The finder's faces: with nothing followed, exactly as ``predict --scene`` finds
        them; else down to ``keep_score``, a detection under the scene's threshold kept only
        where it continues a followed face (``_continues``), and with ``near`` only those
        it passes."""
        if not self.tracker.tracks:
            return self.finder.find(image, rois)

        def keep(dets: Any) -> np.ndarray:
            ok = np.ones(len(dets), bool) if near is None else near(dets)
            idx = np.flatnonzero(ok)
            ok[idx] = self._continues(dets[idx], image)
            return ok

        return self.finder.find(image, rois, score_threshold=self.keep_score, keep=keep)

    def _continues(self, dets: Any, image: np.ndarray) -> np.ndarray:
        """Per detection: it reaches the scene's threshold, or continues a followed face
        (close to its last box and alike)."""
        keep = dets.scores >= self.new_score
        if not keep.all():
            o = self.options
            tracks = self.tracker.tracks
            old = np.array([t.box for t in tracks]).reshape(-1, 4)
            for i, j in match_boxes(old, dets.boxes, o.keep_iou):
                look = tracks[i].look
                keep[j] |= look is None or (
                    similarity(look, appearance(image, dets.boxes[j])) >= o.keep_look
                )
        return keep
