"""Faces followed from frame to frame, and their masks smoothed over time.

``FaceTracker`` gives each face an id that lasts while its box keeps overlapping the box it had
in the previous frame (IoU matching, greedy by best overlap). ``CropSmoother`` averages each
tracked face's mask probability over the last few frames (an exponential moving average kept
at the crop's model resolution). Before each blend the running average is moved onto this
frame's crop window, shifted so that its centre of mass meets that of this frame's mask: a
moving face's mask moves with the face instead of trailing behind it, and a still face's mask
stays put although the detector's box jitters by a few pixels. A box that jumps (IoU with its
last box below ``reset_iou``) starts a fresh average.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from maskseg.pipeline.detect import box_iou, cut_crop
from maskseg.pipeline.postprocess import sigmoid


@dataclass
class Track:
    """One face followed over frames.

    Attributes:
        id: 0, 1, 2, ... in order of first appearance; never reused within a tracker.
        box: x1, y1, x2, y2 of its latest detection.
        score: its latest detection score.
        hits: frames it was detected in.
        misses: frames in a row it was not detected in (0: found in the latest frame).
        look: its latest ``appearance``.
        state: what a smoother keeps for it (``CropSmoother``).
        held: its detection (one row of ``Detections``) and that detection's ``appearance``
            from the full detection that found it after the search around followed faces
            had lost it (``VideoOptions.hold_look``); None when it has none.
    """

    id: int
    box: np.ndarray
    score: float
    hits: int = 1
    misses: int = 0
    look: np.ndarray | None = field(default=None, repr=False)
    state: object = field(default=None, repr=False)
    held: tuple[Any, np.ndarray] | None = field(default=None, repr=False)


def match_boxes(old: np.ndarray, new: np.ndarray, iou_threshold: float) -> list[tuple[int, int]]:
    """Pairs (row of ``old``, row of ``new``) overlapping by IoU >= threshold, greedy from the
    best overlap down, each row used at most once."""
    old, new = np.asarray(old).reshape(-1, 4), np.asarray(new).reshape(-1, 4)
    if not len(old) or not len(new):
        return []
    iou = np.stack([box_iou(b, new) for b in old])
    pairs, used_old, used_new = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(new))
        if iou[i, j] < iou_threshold or iou[i, j] <= 0:
            break
        if i not in used_old and j not in used_new:
            pairs.append((i, j))
            used_old.add(i)
            used_new.add(j)
    return pairs


def appearance(image: np.ndarray, box: np.ndarray, size: int = 24) -> np.ndarray:
    """A small grey thumbnail of the square around ``box``, zero mean and unit norm, so that
    the dot product of two is their normalised cross-correlation (``similarity``)."""
    patch = cut_crop(image, np.asarray(box, np.float64), size=size).astype(np.float32)
    grey = patch.mean(axis=2) if patch.ndim == 3 else patch
    grey -= grey.mean()
    return grey / max(float(np.linalg.norm(grey)), 1e-6)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two ``appearance`` thumbnails, in [-1, 1]."""
    return float((a * b).sum())


class FaceTracker:
    """Ids for faces across frames.

    Args:
        iou_threshold: a detection continues a track when their boxes overlap at least this.
        max_misses: a track not detected in this many frames in a row is dropped.
    """

    def __init__(self, iou_threshold: float = 0.3, max_misses: int = 5):
        if not 0 < iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_misses < 1:
            raise ValueError(f"max_misses must be >= 1, got {max_misses}")
        self.iou_threshold = iou_threshold
        self.max_misses = max_misses
        self.tracks: list[Track] = []
        self._next_id = 0

    def clear(self) -> None:
        """Forget every track (a shot cut); ids go on counting, so none is reused."""
        self.tracks = []

    def active(self) -> list[Track]:
        """Tracks detected in the latest frame."""
        return [t for t in self.tracks if t.misses == 0]

    def missing(self, tracks: list[Track], boxes: np.ndarray) -> list[Track]:
        """Those of ``tracks`` that no box among ``boxes`` continues."""
        old = np.array([t.box for t in tracks]).reshape(-1, 4)
        found = {i for i, _ in match_boxes(old, boxes, self.iou_threshold)}
        return [t for i, t in enumerate(tracks) if i not in found]

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> list[Track]:
        """Take one frame's detections; return the track of each detection, in their order.

        Matched tracks take the new box; unmatched detections start new tracks; unmatched
        tracks count a miss and are dropped after ``max_misses`` in a row.
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        old = np.array([t.box for t in self.tracks]).reshape(-1, 4)
        pairs = dict((j, i) for i, j in match_boxes(old, boxes, self.iou_threshold))
        out: list[Track] = []
        for j, (box, score) in enumerate(zip(boxes, scores, strict=True)):
            if j in pairs:
                track = self.tracks[pairs[j]]
                track.box, track.score = box.copy(), float(score)
                track.hits += 1
                track.misses = 0
            else:
                track = Track(self._next_id, box.copy(), float(score))
                self._next_id += 1
                self.tracks.append(track)
            out.append(track)
        continued = {id(t) for t in out}
        for t in self.tracks:
            if id(t) not in continued:
                t.misses += 1
        self.tracks = [t for t in self.tracks if t.misses < self.max_misses]
        return out


# The crop window follows its detections through an alpha-beta filter whose gain grows with
# the surprise: a window off its predicted place by WINDOW_FOLLOW of its side or more is
# followed at once (a real move), smaller offsets (detector jitter) by WINDOW_MIN_GAIN.
WINDOW_MIN_GAIN = 0.25
WINDOW_FOLLOW = 0.15


# a frame's gate evidence (its highest logit) is clipped to +-this before a vote averages it:
# one confident frame must not outvote several
GATE_CLIP = 10.0


@dataclass
class _Memory:
    box: np.ndarray  # the detection box of the last frame
    window: np.ndarray  # steadied crop window: centre x, centre y, side
    velocity: np.ndarray  # its change per frame
    prob: np.ndarray | None = None  # (S, S) running mean probability over ``rect``
    rect: np.ndarray | None = None  # x1, y1, x2, y2 (square) in frame pixels
    votes: list[float] = field(default_factory=list)  # the last frames' gate evidence


class CropSmoother:
    """Steadies a tracked face's crop window and averages its mask probability over frames.

    Two steps per frame: ``window`` before the model runs (the crop, steadied against the
    detector's jitter, so the part of a mask that reaches past the crop's edge is not cut
    at a different place every frame), then the smoother itself on the model's logits.

    Args:
        weight: share of the newest frame in the average (1: no averaging; 0.5: about the
            last three frames).
        reset_iou: when the face's box overlaps its previous box by less, window and average
            start again from this frame (a jump or a mismatch: old evidence would mislead).
        gated: the model has a mask-presence gate. A frame whose logits are all at most 0 is
            then the gate saying "no mask" (``Predictor.gate_closed``) and counts as
            probability 0 in the average. The shipped INT8 files give exactly 0 there
            (probability 0.5): averaged as it is, a mask taken off stayed above 0.5 for about
            24 frames, where a float32 gate's far negative logits end it at once.
    """

    def __init__(
        self,
        weight: float = 0.5,
        reset_iou: float = 0.5,
        gate_frames: int = 1,
        threshold_logit: float = 0.0,
        gated: bool = False,
    ):
        if not 0 < weight <= 1:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        if gate_frames < 1:
            raise ValueError(f"gate_frames must be >= 1, got {gate_frames}")
        self.weight = weight
        self.reset_iou = reset_iou
        self.gate_frames = gate_frames
        self.threshold_logit = threshold_logit
        self.gated = gated

    def window(self, track: Track, rect: np.ndarray, box: np.ndarray | None = None) -> np.ndarray:
        """The square crop ``rect`` (x1, y1, x2, y2) mapped from this frame's detection ->
        the steadied crop to cut instead. ``box``: the face's box in this frame (default:
        ``track.box``; pass it when the tracker may already be a frame ahead)."""
        rect = np.array(rect, np.float64).reshape(4)  # a copy: the caller may grow its own
        box = np.array(track.box if box is None else box, np.float64).reshape(4)
        raw = np.array([(rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2, rect[2] - rect[0]])
        m = track.state
        if not isinstance(m, _Memory) or box_iou(m.box, box[None])[0] < self.reset_iou:
            track.state = _Memory(box, raw, np.zeros(3))
            return rect
        predicted = m.window + m.velocity
        surprise = raw - predicted
        a = float(
            np.clip(np.abs(surprise).max() / (WINDOW_FOLLOW * predicted[2]), WINDOW_MIN_GAIN, 1.0)
        )
        m.window = predicted + a * surprise
        m.velocity = m.velocity + a * a / (2 - a) * surprise  # critically damped
        m.box = box
        cx, cy, side = m.window
        return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])

    def __call__(
        self, track: Track, rect: np.ndarray, logits: np.ndarray, box: np.ndarray | None = None
    ) -> np.ndarray:
        """This frame's logits (1, S, S) for ``track``'s crop ``rect`` -> smoothed logits.
        Call ``window`` first in each frame (it also decides whether to start afresh)."""
        raw = logits.reshape(logits.shape[-2:])
        prob = sigmoid(raw)
        if self.gated and not (raw > 0.0).any():  # the gate closed: no mask, not "0.5"
            prob = np.zeros_like(prob)
        rect = np.array(rect, np.float64).reshape(4)  # a copy: the caller may grow its own
        m = track.state
        if not isinstance(m, _Memory):
            self.window(track, rect, box)
            m = track.state
        says = self.vote(m, raw)  # None: no vote, each frame as the model gave it
        if says is True and not (raw > self.threshold_logit).any() and m.prob is not None:
            # the face has a mask by its last frames' vote but this frame's gate (or decoder)
            # said none: a frame without evidence, the running mask carries over
            previous, seen = _resample(m.prob, m.rect, rect)
            prob = seen * previous + (1 - seen) * prob
        elif m.prob is not None:
            shift = _centre(prob, rect) - _centre(m.prob, m.rect)
            if not np.isfinite(shift).all():  # no mask in one of them: nothing to align by
                shift = np.zeros(2)
            previous, seen = _resample(m.prob, m.rect + np.tile(shift, 2), rect)
            # where the old window did not reach, the new frame stands alone
            prob = prob + (1 - self.weight) * (previous - seen * prob)
        m.prob, m.rect = prob, rect
        p = np.clip(prob, 1e-6, 1 - 1e-6)
        out = (np.log(p) - np.log1p(-p)).reshape(logits.shape).astype(np.float32)
        if says is False:  # no mask by the vote: the running mean is kept, nothing is shown
            out = np.minimum(out, -GATE_CLIP).astype(np.float32)
        return out

    def vote(self, memory: _Memory, raw: np.ndarray) -> bool | None:
        """Whether the face has a mask, by its last ``gate_frames`` frames: each frame's
        evidence is its highest logit (clipped to +-``GATE_CLIP``), which for a face the gate
        rejects is the gate's own logit and for a passed face the decoder's; their mean
        decides against the mask threshold. None with one frame (no vote: the average of
        masks alone decides, as before votes existed)."""
        if self.gate_frames == 1:
            return None
        q = float(np.clip(raw.max(), -GATE_CLIP, GATE_CLIP))
        memory.votes = (memory.votes + [q])[-self.gate_frames :]
        return float(np.mean(memory.votes)) > self.threshold_logit


def _centre(prob: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """Centre of mass (x, y) in frame pixels of a probability map laid over the window
    ``rect``; NaN when it holds less than 1% mask."""
    s = prob.shape[0]
    total = float(prob.sum())
    if total < 0.01 * prob.size:
        return np.full(2, np.nan)
    cells = np.arange(s) + 0.5
    u = float(prob.sum(0) @ cells) / total
    v = float(prob.sum(1) @ cells) / total
    scale = (rect[2] - rect[0]) / s
    return np.array([rect[0] + u * scale, rect[1] + v * scale])


def _resample(prob: np.ndarray, old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``prob`` laid over the square window ``old`` re-sampled on the window ``new`` (same
    grid size), and the share of each new cell the old window covered (0 outside it)."""
    s = prob.shape[0]
    k = (new[2] - new[0]) / (old[2] - old[0])  # new cell size / old cell size
    # cell centre u of the new grid lies at new_x1 + (u + 0.5) * new_side / s in the frame
    tx = (new[0] - old[0]) * s / (old[2] - old[0]) + 0.5 * k - 0.5
    ty = (new[1] - old[1]) * s / (old[3] - old[1]) + 0.5 * k - 0.5
    m = np.array([[k, 0, tx], [0, k, ty]], np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warp = [
        cv2.warpAffine(a, m, (s, s), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        for a in (prob, np.ones_like(prob))
    ]
    return warp[0], warp[1]
