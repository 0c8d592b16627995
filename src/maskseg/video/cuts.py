"""Shot cuts: where a video jumps to another view, nothing followed before it may go on.

A tracker that matches faces by box overlap alone would hand a face's id, its smoothed mask
and its held verdicts to whoever stands at the same place after a cut. ``CutDetector`` scores
each frame against the previous one as PySceneDetect's content detector does (the mean
absolute difference of hue, saturation and value over a small copy of the frame, on a 0-255
scale) and calls a cut above ``threshold``; the video then forgets every followed face and
detects afresh (``maskseg.video.segmenter.VideoSegmenter``).
"""

from __future__ import annotations

import cv2
import numpy as np

# Frames are compared at this width (height in proportion): enough to see a new view, cheap
# (a fraction of a millisecond), and blind to a few pixels of motion or sensor noise.
CUT_WIDTH = 16
# On the same scale as PySceneDetect's content detector (whose default is 27); at CUT_WIDTH,
# 24 separated every camera move from every cut on seed 0 of benchmarks/bench_cuts.py and
# was checked on seeds 1 and 2 (docs/scenes-and-video.md, "Shot cuts").
CUT_THRESHOLD = 24.0


def signature(image: np.ndarray, width: int = CUT_WIDTH) -> np.ndarray:
    """A small HSV copy (h, width, 3) float32 of an RGB frame, what ``content_score``
    compares."""
    h, w = image.shape[:2]
    height = max(1, round(h * width / max(w, 1)))
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    if small.ndim == 2:
        small = cv2.cvtColor(small, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(np.ascontiguousarray(small[..., :3]), cv2.COLOR_RGB2HSV).astype(np.float32)


def content_score(a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two ``signature`` s are: the mean of the three channels' mean absolute
    differences (hue on OpenCV's 0-179 scale, as PySceneDetect reads it)."""
    if a.shape != b.shape:
        return float("inf")  # another frame size: another stream
    return float(np.abs(a - b).mean(axis=(0, 1)).mean())


class CutDetector:
    """Says whether each frame starts a new shot.

    Args:
        threshold: a frame whose ``content_score`` against the previous frame exceeds this
            is a cut. The first frame is not a cut (there is nothing to forget).
    """

    def __init__(self, threshold: float = CUT_THRESHOLD):
        if threshold <= 0:
            raise ValueError(f"cut threshold must be > 0, got {threshold}")
        self.threshold = threshold
        self._last: np.ndarray | None = None
        self.last_score = 0.0

    def __call__(self, image: np.ndarray) -> bool:
        sig = signature(image)
        last, self._last = self._last, sig
        if last is None:
            self.last_score = 0.0
            return False
        self.last_score = content_score(last, sig)
        return self.last_score > self.threshold

    def reset(self) -> None:
        self._last = None
