"""The video loop: source -> frames -> detect / track -> segment -> annotate -> sinks.

Detection is the costly part of a frame after segmentation, so it is done in full (the scene
predictor's mode: "tiles" finds small faces) only every ``detect_every`` frames, when no face
is being followed, or when a followed face is not found again; in between, the detector only
looks around the faces of the previous frame (``detect(frame, rois=boxes)``) and their crops
use the mapping fitted for such re-detections ("roi"). All faces of a frame are segmented in
one model call. Each stage's time is counted in ``VideoStats``.

A face already followed is kept down to a lower detection score (``keep_score``) than a new
face needs (the scene's threshold): masked faces often score near that threshold, and
without this hysteresis their masks blink off in the frames where they dip below it. Such a
weak detection must overlap the face's last box and look like it (``keep_iou``,
``keep_look``), so the background left behind by a face that moves away cannot inherit it.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskseg.files import OverwriteError, refuse_overwrite
from maskseg.pipeline.preprocess import as_rgb
from maskseg.pipeline.scene import CONTAINED, drop_contained
from maskseg.video.sinks import PreviewSink, Sink
from maskseg.video.sources import FileSource, Frame, prefetch
from maskseg.video.tracking import (
    CropSmoother,
    FaceTracker,
    Track,
    appearance,
    match_boxes,
    similarity,
)

STAGES = ("decode", "detect", "segment", "overlay", "encode", "write", "show")


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
        detect_threads: onnxruntime threads of the video's detector (None: the scene's
            setting). One by default: most frames only search small regions around
            followed faces, where a second thread costs more in hand-off than it saves
            (``benchmarks/bench_detect.py``: 3.5 ms per region at one thread, 5.1 at two),
            and the writer thread needs the other core.
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

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {self.prefetch}")
        if self.write_ahead < 0:
            raise ValueError(f"write_ahead must be >= 0, got {self.write_ahead}")
        if self.detect_ahead < 0:
            raise ValueError(f"detect_ahead must be >= 0, got {self.detect_ahead}")


@dataclass
class VideoStats:
    """What a run did and where its time went.

    Attributes:
        frames: frames processed.
        seconds: total seconds per stage (decode runs in the reader thread, overlapped).
        wall: seconds from the first frame asked for to the last sink closed.
        full_detections: frames that got a full detection.
        stopped: why the run ended early ("SIGINT", "SIGTERM", "window"), None at the end
            of the source.
    """

    frames: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    full_detections: int = 0
    stopped: str | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    @property
    def fps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else 0.0

    def ms_per_frame(self) -> dict[str, float]:
        """Milliseconds per frame of each stage that ran, in pipeline order."""
        n = max(1, self.frames)
        return {s: 1000 * self.seconds[s] / n for s in STAGES if s in self.seconds}

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.ms_per_frame().items())
        return (
            f"{self.frames} frames in {self.wall:.1f} s: {self.fps:.1f} frames/s; "
            f"ms per frame: {stages}; full detections: {self.full_detections}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "wall_s": round(self.wall, 4),
            "fps": round(self.fps, 2),
            "full_detections": self.full_detections,
            "ms_per_frame": {k: round(v, 3) for k, v in self.ms_per_frame().items()},
            "stopped": self.stopped,
        }


@dataclass
class Located:
    """A frame after ``VideoSegmenter.locate``: its RGB image, detections, whether they were
    re-detections, their tracks and each track's box in this frame."""

    image: np.ndarray
    dets: Any
    tracked: bool
    tracks: list[Track]
    boxes: list[np.ndarray]


@dataclass
class FrameResult:
    """One frame's faces and mask (``scene``), the track id of each face, and whether the
    faces came from a full detection."""

    scene: Any
    ids: list[int]
    full_detection: bool


class VideoSegmenter:
    """Per-stream state around a ``ScenePredictor``: the tracker, the smoother and when the
    next full detection is due. One instance per video; ``reset()`` between videos.

    Args:
        scene: ``maskseg.pipeline.scene.ScenePredictor``.
        options: see ``VideoOptions``.
    """

    def __init__(self, scene: Any, options: VideoOptions | None = None):
        from maskseg.pipeline.detect import get_detector

        self.scene = scene
        self.options = options or VideoOptions()
        c = scene.config
        self.new_score = c.score_threshold
        # the scene's detector with the lower threshold of followed faces; new faces are
        # held to the scene's own threshold in _gate
        self.detector = get_detector(
            c.detector,
            mode=c.mode,
            score_threshold=min(self.options.keep_score, self.new_score),
            threads=self.options.detect_threads or c.threads,
        )
        self.reset()

    def reset(self) -> None:
        o = self.options
        self.tracker = FaceTracker(o.track_iou, o.max_misses)
        self.smoother = CropSmoother(o.smooth_weight, o.reset_iou) if o.smooth else None
        self._since_full: int | None = None

    def __call__(self, image: np.ndarray, stats: VideoStats | None = None) -> FrameResult:
        """Detect (or re-detect around tracked faces), segment all faces in one batch,
        smooth, paste into the frame's mask."""
        stats = stats or VideoStats()
        return self.segment(self.locate(image, stats), stats)

    def locate(self, image: np.ndarray, stats: VideoStats | None = None) -> Located:
        """The first half of a frame: find the faces and follow them. It may run a frame or
        two ahead of ``segment`` (in another thread): what ``segment`` needs is kept in the
        result, not read from the tracker."""
        stats = stats or VideoStats()
        image = as_rgb(image)
        with stats.stage("detect"):
            dets, tracked = self._detect(image)
            tracks = self.tracker.update(dets.boxes, dets.scores)
            for t in tracks:
                t.look = appearance(image, t.box)
        if not tracked:
            stats.full_detections += 1
        boxes = [t.box.copy() for t in tracks]
        return Located(image, dets, tracked, tracks, boxes)

    def segment(self, located: Located, stats: VideoStats | None = None) -> FrameResult:
        """The second half: crop, segment all faces in one batch, smooth, paste. Frames must
        come in order (the smoother's memory)."""
        stats = stats or VideoStats()
        image, dets, tracks, boxes = located.image, located.dets, located.tracks, located.boxes
        with stats.stage("segment"):
            scene = self.scene
            rects = scene.crop_rects(dets, located.tracked)
            if self.smoother is not None and len(rects):
                parts = zip(tracks, rects, boxes, strict=True)
                rects = np.stack([self.smoother.window(t, r, b) for t, r, b in parts])
            logits = scene.crop_logits(image, rects)
            if self.smoother is not None and len(logits):
                parts = zip(tracks, rects, logits, boxes, strict=True)
                logits = np.stack([self.smoother(t, r, lg, b) for t, r, lg, b in parts])
            result = scene.paste(image.shape[:2], None, dets, rects, logits)
        return FrameResult(result, [t.id for t in tracks], not located.tracked)

    def _detect(self, image: np.ndarray) -> tuple[Any, bool]:
        """(detections, whether they were re-detected around followed faces)."""
        active: list[Track] = self.tracker.active()
        due = (
            self._since_full is None
            or self._since_full + 1 >= self.options.detect_every
            or not active
        )
        if not due:
            boxes = np.array([t.box for t in active])
            dets = drop_contained(self.detector.detect(image, rois=boxes), CONTAINED)
            # a search around known faces only continues them: what else it finds in their
            # surroundings is left to the next full detection (zoomed-in background fools
            # the detector more often than the full view)
            keep = np.zeros(len(dets), bool)
            keep[[j for _, j in match_boxes(boxes, dets.boxes, self.options.track_iou)]] = True
            dets = self._gate(dets[keep], image)
            confirmed = [t for t in active if t.hits > 1]  # one-frame detections may be noise
            if self.tracker.finds_all(confirmed, dets.boxes):
                self._since_full += 1
                return dets, True
        # the schedule says so, nothing is followed, or a followed face was lost: look
        # everywhere, in this same frame, so the face is not missing from it
        self._since_full = 0
        return self._gate(drop_contained(self.detector.detect(image), CONTAINED), image), False

    def _gate(self, dets: Any, image: np.ndarray) -> Any:
        """Keep detections that reach the scene's threshold, or continue a followed face
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
            dets = dets[keep]
        return self._limit(dets)

    def _limit(self, dets: Any) -> Any:
        limit = self.scene.config.max_faces
        return dets if limit is None else dets[:limit]


def annotate(image: np.ndarray, scene: Any) -> np.ndarray:
    """The frame with its mask tinted and outlined and each face's box and score drawn."""
    from maskseg.pipeline import annotate as viz

    return viz.annotate(image, scene.mask, scene.faces)


class StopEvent(threading.Event):
    """A stop request with its reason (the signal's name)."""

    reason: str | None = None

    def request(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.set()


@contextmanager
def stop_on_signals(
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[StopEvent]:
    """While inside, Ctrl-C and SIGTERM set the yielded event instead of killing the process,
    so the loop ends after the current frame and closes its files; a second Ctrl-C raises
    ``KeyboardInterrupt`` as usual. Off the main thread no handlers can be set: the event
    is then only set by whoever holds it."""
    stop = StopEvent()

    def handle(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.request(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = {s: signal.signal(s, handle) for s in signals}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_video(
    source: Iterable[Frame],
    segmenter: VideoSegmenter,
    sinks: Sequence[Sink] = (),
    stop: threading.Event | None = None,
    max_frames: int | None = None,
    on_frame: Callable[[Frame, FrameResult], None] | None = None,
) -> VideoStats:
    """Process frames until the source ends, ``stop`` is set, ``max_frames`` are done or a
    sink asks to stop (a preview window's q key). The sinks are always closed (a video file
    is finished and playable) before returning, also on Ctrl-C or an error. Sinks that would
    replace the source file are discarded and refused (``OverwriteError``) before any frame.

    Args:
        source: frames (a ``Source``: its ``decode_seconds`` become the decode stage).
        segmenter: the per-stream state (``VideoSegmenter``); frames are decoded ahead in a
            reader thread when its options say so.
        sinks: where each frame goes (``maskseg.video.sinks``).
        on_frame: called after each frame (progress bars).

    Returns:
        ``VideoStats``: frames, wall time, per-stage times, why it stopped.
    """
    _refuse_overwriting_source(source, sinks)
    stats = VideoStats()
    options = segmenter.options
    depth = options.prefetch
    frames: Iterator[Frame] = prefetch(source, depth, stop) if depth else iter(source)
    ahead = options.detect_ahead
    located = ((f, segmenter.locate(f.image, stats)) for f in frames)
    work = prefetch(located, ahead, stop) if ahead else located
    # a preview window stays on this thread; files go to the writer thread when asked
    here = [s for s in sinks if isinstance(s, PreviewSink)] if options.write_ahead else sinks
    behind = [s for s in sinks if s not in here]
    writer = _Writer(behind, stats, options.write_ahead) if behind else None
    t0 = time.perf_counter()
    try:
        for frame, loc in work:
            result = segmenter.segment(loc, stats)
            shown = _write(here, frame, result, stats)  # a preview's overlay, drawn once
            if writer is not None:
                writer.put(frame, result, shown)
            stats.frames += 1
            if on_frame is not None:
                on_frame(frame, result)
            if stop is not None and stop.is_set():
                stats.stopped = getattr(stop, "reason", None) or "stop"
                break
            if any(getattr(s, "stop_requested", False) for s in sinks):
                stats.stopped = "window"
                break
            if max_frames is not None and stats.frames >= max_frames:
                break
        if stop is not None and stop.is_set() and stats.stopped is None:
            stats.stopped = getattr(stop, "reason", None) or "stop"
    except KeyboardInterrupt:
        stats.stopped = "SIGINT"
    finally:
        for it in (work, frames):  # ends the detect and reader threads, outermost first,
            close = getattr(it, "close", None)  # before the source may be closed
            if close is not None:
                close()
        try:
            if writer is not None:
                writer.finish()  # every frame handed over is written before files close
        finally:
            _close_all(sinks, stats)
        stats.wall = time.perf_counter() - t0
        decode = getattr(source, "decode_seconds", None)
        if decode is not None:
            stats.seconds["decode"] = decode
    return stats


def _refuse_overwriting_source(source: Iterable[Frame], sinks: Sequence[Sink]) -> None:
    """No sink may replace the video file being read (``maskseg video`` checks its options
    earlier, ``sinks.check_outputs``); on refusal the sinks are discarded unwritten."""
    if not isinstance(source, FileSource):
        return
    targets = [getattr(s, "path", None) or getattr(s, "folder", None) for s in sinks]
    try:
        refuse_overwrite(
            [t for t in targets if t is not None],
            [source.name],
            "give the sink another path than the source video",
        )
    except OverwriteError:
        for sink in sinks:
            getattr(sink, "discard", sink.close)()
        raise


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
            shown = annotate(frame.image, result.scene)
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
