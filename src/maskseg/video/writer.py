"""Getting a frame's results into the sinks: the overlay drawn once for all of them, the
writer thread that lets encoding overlap the next frame's detection (its errors raised back
in the loop), and closing every sink even when one fails."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from maskseg.video.segmenter import FrameResult
from maskseg.video.sinks import Sink
from maskseg.video.sources import Frame
from maskseg.video.stats import VideoStats


def annotate(image: np.ndarray, scene: Any, wear: Any = None) -> np.ndarray:
    """The frame with its mask tinted and outlined and each face's box and score drawn;
    with ``wear`` (per face), each face's verdict under its box, in the verdict's colour."""
    from maskseg.pipeline import annotate as viz

    return viz.annotate(image, scene.mask, scene.faces, wear=wear)


def _write(
    sinks: Sequence[Sink],
    frame: Frame,
    result: FrameResult,
    stats: VideoStats,
    shown: np.ndarray | None = None,
) -> np.ndarray | None:
    """One frame to ``sinks``, with the overlay drawn once if any of them shows it (unless
    ``shown`` already holds it); returns the overlay, or None when none was needed."""
    if shown is None and any(s.needs_overlay for s in sinks):
        with stats.stage("overlay"):
            shown = annotate(frame.image, result.scene, getattr(result, "wear", None))
    for sink in sinks:
        with stats.stage(sink.stage):
            sink.write(frame, result, shown)
    return shown


class _Writer:
    """Feeds sinks from a background thread, in frame order, up to ``depth`` frames behind
    the loop. A failure in the thread is raised in the loop at the next ``put`` (or at
    ``finish``); the frames before it are written."""

    def __init__(self, sinks: Sequence[Sink], stats: VideoStats, depth: int):
        self.sinks, self.stats = list(sinks), stats
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.error: BaseException | None = None  # raised once in the loop
        self.failed = False  # stays set: once a sink failed, nothing more is written
        self.thread = threading.Thread(target=self._work, name="maskseg-writer", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if not self.failed:  # after a failure, drain without writing
                try:
                    frame, result, shown = item
                    _write(self.sinks, frame, result, self.stats, shown)
                except BaseException as exc:
                    self.error, self.failed = exc, True

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def put(self, frame: Frame, result: FrameResult, shown: np.ndarray | None = None) -> None:
        self._raise()
        self.queue.put((frame, result, shown))

    def finish(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self._raise()


def _close_all(sinks: Sequence[Sink], stats: VideoStats) -> None:
    """Close every sink even when one fails; the first failure is raised afterwards."""
    error: BaseException | None = None
    for sink in sinks:
        try:
            with stats.stage(sink.stage):
                sink.close()
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error
