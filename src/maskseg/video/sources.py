"""Where frames come from: one small loader per kind of source, all yielding ``Frame``.

A video file, a camera index and a stream URL each get a loader with the same face (iterate
for frames, ``close()``, a context manager), so the video loop never branches on the kind:

    with open_source("clip.mp4") as source:        # or 0 (camera), "rtsp://host/cam"
        for frame in prefetch(source):             # decoded in a reader thread
            ...frame.index, frame.time, frame.image (RGB uint8)

A source that cannot be opened raises ``SourceError`` (a ``ValueError``) with a one-line
message, before any frame is read.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from maskseg.files import is_image_name

# Seconds a stream may take to connect, and a read to deliver, before it counts as dead.
STREAM_TIMEOUT = 10.0
DEFAULT_FPS = 30.0  # for sources that do not say (cameras, some streams)

T = TypeVar("T")


class SourceError(ValueError):
    """A video source could not be opened or read; the message says which and why."""


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        index: 0, 1, 2, ... in the order frames were read.
        time: seconds since the start (the file's timeline, or the clock for live sources).
        image: RGB uint8 (H, W, 3).
    """

    index: int
    time: float
    image: np.ndarray


class Source:
    """Frames from one OpenCV capture; subclasses say how it is opened and timed. It is
    opened (and its first frame read) on construction and iterated once.

    Attributes:
        name: what was opened (path, "camera 0", URL).
        fps: frames per second the source declares (``DEFAULT_FPS`` when it declares none).
        size: (width, height) of its frames.
        frame_count: frames in a file (an estimate from its header), None for live sources.
        decode_seconds: time spent reading and converting frames so far.
    """

    live = False

    def __init__(self, name: str, capture: cv2.VideoCapture):
        self.name = name
        self._cap = capture
        ok, first = capture.read()
        if not ok or first is None:
            capture.release()
            raise SourceError(f"{name}: no frame could be read (not a video, or empty)")
        self._first: np.ndarray | None = first
        self._last_time = -math.inf
        self._first_stamp = self._stamp()
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 0 < fps < 1000 else DEFAULT_FPS
        self.size = (first.shape[1], first.shape[0])
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 and not self.live else None
        self.decode_seconds = 0.0
        self._closed = False

    def ended_early(self, frames: int) -> bool:
        """Whether a file read to its end after ``frames`` frames stopped well short of the
        length its header gives (truncated or damaged): by time as well as by count, as a
        variable-rate file's count is an estimate (duration x nominal rate)."""
        if self.frame_count is None or frames >= self.frame_count or frames == 0:
            return False
        return self._last_time + 1.0 / self.fps < 0.9 * self.frame_count / self.fps

    def _stamp(self) -> float | None:
        """The decoder's timestamp of the frame just read (seconds), None where it has none."""
        return None

    def _time(self, index: int, start: float, stamp: float | None = None) -> float:
        """The frame's time: its own timestamp where the source gives one that moves
        forward (a variable frame rate keeps its timing), else ``index / fps``."""
        if stamp is not None and stamp > self._last_time:
            t = stamp
        else:  # never backwards: one frame period on from the last time
            t = max(index / self.fps, self._last_time + 1.0 / self.fps)
        self._last_time = t
        return t

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        while not self._closed:
            t0 = time.perf_counter()
            if self._first is not None:
                ok, bgr, self._first = True, self._first, None
                stamp = self._first_stamp
            else:
                ok, bgr = self._cap.read()
                stamp = self._stamp() if ok else None
            if not ok or bgr is None:
                return
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            self.decode_seconds += time.perf_counter() - t0
            yield Frame(index, self._time(index, start, stamp), rgb)
            index += 1

    def close(self) -> None:
        self._closed = True
        self._cap.release()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        w, h = self.size
        count = f", {self.frame_count} frames" if self.frame_count else ""
        return f"{self.name} ({w}x{h}, {self.fps:g} frames/s{count})"


class FileSource(Source):
    """A video file; frame times are the file's own timestamps (a variable frame rate keeps
    its timing), or index / frame rate where it has none."""

    def _stamp(self) -> float | None:
        ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        return ms / 1000.0 if math.isfinite(ms) and ms >= 0 else None

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such video file")
        if path.is_dir():
            raise SourceError(f"{path}: is a folder, not a video file")
        if is_image_name(path):
            raise SourceError(f"{path}: is an image, not a video (use `maskseg predict --scene`)")
        with _quiet():
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            raise SourceError(f"{path}: not a video OpenCV can read")
        super().__init__(str(path), cap)


class CameraSource(Source):
    """A camera by index (0: the first); frame times come from the clock."""

    live = True

    def __init__(self, index: int):
        with _quiet():
            cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            raise SourceError(f"camera {index}: could not be opened (no such camera, or busy)")
        super().__init__(f"camera {index}", cap)

    def _time(self, index: int, start: float, stamp: float | None = None) -> float:
        return time.monotonic() - start


class StreamSource(Source):
    """A network stream (rtsp://, http://, ...); frame times come from the clock."""

    live = True

    def __init__(self, url: str, timeout: float = STREAM_TIMEOUT):
        ms = int(timeout * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        with _quiet():
            cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            raise SourceError(f"{url}: stream could not be opened (unreachable or not a video)")
        super().__init__(url, cap)

    def _time(self, index: int, start: float, stamp: float | None = None) -> float:
        return time.monotonic() - start


def open_source(source: str | int | os.PathLike) -> Source:
    """A loader for a file path, a camera index (an int or a string of digits) or a URL.

    Raises:
        FileNotFoundError: a file that does not exist.
        SourceError: anything else that cannot be opened or yields no frame.
    """
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return CameraSource(int(source))
    if isinstance(source, str) and "://" in source:
        return StreamSource(source)
    return FileSource(source)


class _quiet:
    """Silence OpenCV's and FFmpeg's own log lines while a source is opened: a failure is
    reported once, as a ``SourceError``. FFmpeg inside OpenCV logs straight to file
    descriptor 2 (its level is fixed when OpenCV first uses it), so that descriptor points
    to /dev/null for the duration of the open."""

    def __enter__(self) -> None:
        self._level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        sys.stderr.flush()
        self._saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc: object) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)
        cv2.utils.logging.setLogLevel(self._level)


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


_DONE = object()


def prefetch(
    items: Iterable[T], depth: int = 4, stop: threading.Event | None = None
) -> Iterator[T]:
    """Iterate ``items`` in a background thread, up to ``depth`` ahead: decoding (which
    releases the GIL) overlaps the model. Errors in the thread are raised here. Closing the
    generator (or ``stop``) ends the thread before returning, so the source can be closed
    safely afterwards."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    done = threading.Event()

    def put(item: object) -> bool:
        while not done.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Raised(exc))
        put(_DONE)

    thread = threading.Thread(target=work, name="maskseg-reader", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = q.get(timeout=0.05)
            except queue.Empty:
                if stop is not None and stop.is_set():
                    return
                continue
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        done.set()
        thread.join()
