"""The video loop: source -> frames -> locate -> segment -> sinks, with the threads that
overlap those steps, and how it stops (end of source, a signal, a window closed, a frame
limit) with every sink closed. The per-stream state is ``maskseg.video.segmenter``, writing
to the sinks ``maskseg.video.writer``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from maskseg.console import StopEvent
from maskseg.files import OverwriteError, refuse_overwrite
from maskseg.video.segmenter import FrameResult, VideoSegmenter
from maskseg.video.sinks import PreviewSink, Sink
from maskseg.video.sources import FileSource, Frame, prefetch
from maskseg.video.stats import VideoStats
from maskseg.video.writer import _close_all, _write, _Writer


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
    located = ((f, segmenter.locate(f.image)) for f in frames)
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
        if isinstance(stop, StopEvent):
            stop.closing = True  # a second Ctrl-C must not cut the files' last writes short
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
