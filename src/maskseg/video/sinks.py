"""Where a processed frame goes: a video file, JSON lines, mask PNGs, a preview window.

Every sink has ``write(frame, result, shown)`` (the decoded ``Frame``, its ``SceneResult``
with track ids, and the annotated RGB image) and ``close()``, and names the ``stage`` its
time is counted under. Files are written under a temporary name beside the target and renamed
when closed, so a reader never sees half a file, and closing after Ctrl-C or SIGTERM still
leaves a finished, playable video with the frames so far.

Video: OpenCV writes MPEG-4 part 2 (``mp4v``, plays in desktop players); PyAV (the ``video``
extra, ``pip install 'maskseg[video]'``) writes H.264 (``h264``, plays in browsers too).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol, TextIO

import cv2
import numpy as np

from maskseg.files import OverwriteError, find_overwrites, refuse_overwrite
from maskseg.io import write_mask

CODECS = ("h264", "mp4v")
H264_PRESET = "veryfast"  # libx264: ~3x faster than its default (medium), files ~10% larger
H264_CRF = 23
PTS_TIME_BASE = Fraction(1, 1000)  # H.264 frames are stamped in milliseconds
_FRAME_MASK = re.compile(r"\d{6,}\.png")  # MaskFolderSink's file names


class Sink(Protocol):
    stage: str
    needs_overlay: bool

    def write(self, frame: Any, result: Any, shown: np.ndarray | None) -> None: ...

    def close(self) -> None: ...


def has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def default_codec() -> str:
    """h264 when PyAV is installed, else mp4v (OpenCV alone)."""
    return "h264" if has_pyav() else "mp4v"


def source_file(source: str | int | os.PathLike) -> Path | None:
    """The file a source reads (None for a camera index or a stream URL), as ``open_source``
    tells them apart."""
    if isinstance(source, int):
        return None
    if isinstance(source, str) and (source.isdigit() or "://" in source):
        return None
    return Path(source)


def check_outputs(
    source: str | int | os.PathLike,
    output: str | os.PathLike | None = None,
    json: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> None:
    """Refuse, before anything is opened for writing, outputs that would replace the source
    file or each other: ``--output``, ``--json`` and the ``--masks`` folder (and the frame
    masks in it) must all be different files, none of them the source (links resolved).

    Raises:
        OverwriteError: a ``ValueError`` naming the options and the path.
    """
    given = [
        (flag, Path(p))
        for flag, p in (("--output", output), ("--json", json), ("--masks", masks))
        if p is not None
    ]
    src = source_file(source)
    if src is not None:
        for flag, path in given:
            refuse_overwrite([path], [src], f"give {flag} another path than the source video")
    for k, (flag, path) in enumerate(given):
        for other, there in given[k + 1 :]:
            if find_overwrites([path], [there]):
                raise OverwriteError(
                    f"{flag} and {other} are the same path ({path}); give each output its own"
                )
    for flag, path in given:
        if flag != "--masks" and path.is_dir():
            raise ValueError(f"{flag} {path}: is a folder; give a file name")
    if masks is not None:
        for flag, path in given:
            in_masks = find_overwrites([path.parent], [masks])
            if flag != "--masks" and in_masks and _FRAME_MASK.fullmatch(path.name):
                raise OverwriteError(
                    f"{flag} {path} is a frame mask of --masks {masks}; give "
                    f"it another name or folder"
                )


def _temp_beside(path: Path) -> Path:
    """An unused hidden name in ``path``'s folder that keeps its suffix (containers are
    chosen by suffix); the file is created by its writer, with the usual permissions."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{path}: cannot make its folder: {exc.strerror or exc}") from None
    return path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


class VideoFileSink:
    """The annotated frames as a video file.

    Args:
        path: output file; its suffix picks the container (.mp4, .avi, .mkv, ...).
        fps: frames per second of the output.
        size: (width, height) of the frames (odd sides are padded to even ones).
        codec: "h264" (PyAV + libx264) or "mp4v" (OpenCV); None: ``default_codec()``.
    """

    stage = "encode"
    needs_overlay = True

    def __init__(
        self, path: str | os.PathLike, fps: float, size: tuple[int, int], codec: str | None = None
    ):
        self.path = Path(path)
        self.codec = codec or default_codec()
        if self.codec not in CODECS:
            raise ValueError(f"unknown codec {self.codec!r}; valid: {', '.join(CODECS)}")
        if not self.path.suffix:
            raise ValueError(f"{self.path}: give the video file a suffix (.mp4, .avi, .mkv)")
        if self.path.is_dir():
            raise ValueError(f"{self.path}: is a folder; give a video file name")
        # both encoders work on 4:2:0 chroma, whole 2x2 blocks: odd sides are padded by one
        # pixel (OpenCV would silently crop them)
        w, h = size
        self._pad = (h % 2, w % 2)
        self.size = (w + self._pad[1], h + self._pad[0])
        self.frames = 0
        self._tmp = _temp_beside(self.path)
        try:
            if self.codec == "h264":
                self._writer: Any = _PyAVWriter(self._tmp, fps, self.size)
            else:
                self._writer = _OpenCVWriter(self._tmp, fps, self.size)
        except ImportError:
            raise
        except Exception as exc:  # OpenCV's and FFmpeg's own errors name no file
            self._tmp.unlink(missing_ok=True)
            raise ValueError(f"{self.path}: cannot write {self.codec} video: {exc}") from None

    def write(self, frame: Any, result: Any, shown: np.ndarray | None) -> None:
        image = shown if shown is not None else frame.image
        if any(self._pad):
            image = cv2.copyMakeBorder(
                image, 0, self._pad[0], 0, self._pad[1], cv2.BORDER_REPLICATE
            )
        self._writer.write(image, getattr(frame, "time", None))
        self.frames += 1

    def discard(self) -> None:
        """Stop without writing the file (a run that never started)."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def close(self) -> None:
        """Finish the container (flush the encoder, write the index) and move it in place
        (a video without frames leaves no file)."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.close()
            if self.frames:
                os.replace(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)


class _OpenCVWriter:
    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self._w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._w.isOpened():
            raise ValueError(f"OpenCV cannot write it to a {path.suffix} file")

    def write(self, rgb: np.ndarray, time: float | None = None) -> None:
        self._w.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))  # constant rate: ``time`` unused

    def close(self) -> None:
        self._w.release()


class _PyAVWriter:
    """H.264 (libx264, yuv420p: what browsers play) through PyAV."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        try:
            import av
        except ImportError:
            raise ImportError(
                "H.264 output needs PyAV: pip install 'maskseg[video]' (or use --codec mp4v)"
            ) from None
        if "libx264" not in av.codecs_available:
            raise ValueError("this PyAV build has no libx264 encoder; use --codec mp4v")
        options = {"movflags": "+faststart"} if path.suffix.lower() in (".mp4", ".mov") else {}
        self._container = av.open(str(path), "w", options=options)
        try:
            stream = self._container.add_stream(
                "libx264", rate=Fraction(fps).limit_denominator(1001)
            )
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.options = {"preset": H264_PRESET, "crf": str(H264_CRF)}
            stream.codec_context.time_base = PTS_TIME_BASE
        except BaseException:
            self._container.close()
            raise
        self._stream = stream
        self._frame_type = av.VideoFrame
        self._pts = -1

    def write(self, rgb: np.ndarray, time: float | None = None) -> None:
        """One frame, shown at ``time`` seconds (the source's own timestamp: a variable
        frame rate or a live source keeps its timing); None: the next slot at ``fps``."""
        frame = self._frame_type.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if time is not None and math.isfinite(time):
            # milliseconds, strictly increasing (the encoder refuses repeated timestamps)
            self._pts = max(self._pts + 1, round(time * 1000))
            frame.pts, frame.time_base = self._pts, PTS_TIME_BASE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self._stream.encode():  # flush delayed frames
                self._container.mux(packet)
        finally:
            self._container.close()


class JsonLinesSink:
    """One JSON object per frame: index, time (s), and per face its track id, box, score,
    mask share of its box, whether it has a mask and, when checked, how it is worn
    (``wear``, as in ``predict``'s JSON)."""

    stage = "write"
    needs_overlay = False

    def __init__(self, path: str | os.PathLike | TextIO):
        if hasattr(path, "write"):  # an open text stream (standard output): lines as they come
            self.path = None
            self._tmp = None
            self._fh: Any = path
            return
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"{self.path}: is a folder; give a file name")
        self._tmp = _temp_beside(self.path)
        try:
            self._fh = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 (closed in close)
        except OSError as exc:
            raise ValueError(f"{self.path}: cannot write: {exc.strerror or exc}") from None

    def write(self, frame: Any, result: Any, shown: np.ndarray | None) -> None:
        self._fh.write(json.dumps(frame_record(frame, result)) + "\n")
        if self._tmp is None:
            self._fh.flush()

    def discard(self) -> None:
        """Stop without writing the file (a run that never started)."""
        fh, self._fh = self._fh, None
        if self._tmp is None:
            return
        if fh is not None:
            fh.close()
        self._tmp.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fh is None:
            return
        fh, self._fh = self._fh, None
        if self._tmp is None:  # a stream given by the caller stays open
            fh.flush()
            return
        try:
            fh.close()
            os.replace(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)


def frame_record(frame: Any, result: Any) -> dict[str, Any]:
    """The JSON record of one frame (``JsonLinesSink``'s lines)."""
    faces = []
    wear = getattr(result, "wear", None)
    for k, (track_id, face) in enumerate(zip(result.ids, result.scene.faces, strict=True)):
        r = face.as_record()
        record = {
            "id": track_id,
            "box": r["box"],
            "score": r["score"],
            "mask_area": r["mask_area"],
            "mask": r["mask"],
        }
        if wear is not None:
            record["wear"] = wear[k].as_record()
        faces.append(record)
    record = {"index": frame.index, "time": round(frame.time, 4), "faces": faces}
    if getattr(result, "cut", False):
        record["cut"] = True  # a new shot: no face here continues one from before
    return record


class MaskFolderSink:
    """Each frame's full-frame mask as DIR/000000.png, 000001.png, ... (0/255, frame size)."""

    stage = "write"
    needs_overlay = False

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"{self.folder}: exists and is not a folder")
        if self.folder.is_dir():
            # an earlier run's frames would stay mixed in with this run's, unnoticed (a
            # shorter clip leaves the longer one's tail); deleting them is not ours to do
            old = sorted(p.name for p in self.folder.iterdir() if _FRAME_MASK.fullmatch(p.name))
            if old:
                raise ValueError(
                    f"{self.folder}: already holds {len(old)} frame mask(s) ({old[0]}, ...) "
                    f"of an earlier run; give a new or empty folder, or remove them"
                )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"{self.folder}: cannot make the folder: {exc.strerror or exc}"
            ) from None

    def write(self, frame: Any, result: Any, shown: np.ndarray | None) -> None:
        write_mask(self.folder / f"{frame.index:06d}.png", result.scene.mask)

    def close(self) -> None:
        pass


def gui_problem() -> str | None:
    """Why no preview window can open here (None: one can)."""
    info = cv2.getBuildInformation()
    gui = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.strip().startswith("GUI:")),
        "",
    )
    if gui.upper() in ("", "NONE"):
        return "this OpenCV has no GUI (opencv-python-headless); install opencv-python for --show"
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (DISPLAY is not set)"
    return None


class PreviewSink:
    """The annotated frames in a window; q or Esc asks the loop to stop (``stop_requested``)."""

    stage = "show"
    needs_overlay = True
    WINDOW = "maskseg"

    def __init__(self) -> None:
        problem = gui_problem()
        if problem:
            raise RuntimeError(problem)
        cv2.namedWindow(self.WINDOW, cv2.WINDOW_NORMAL)
        self.stop_requested = False

    def write(self, frame: Any, result: Any, shown: np.ndarray | None) -> None:
        cv2.imshow(self.WINDOW, cv2.cvtColor(shown, cv2.COLOR_RGB2BGR))
        if (cv2.waitKey(1) & 0xFF) in (ord("q"), 27):
            self.stop_requested = True

    def close(self) -> None:
        cv2.destroyWindow(self.WINDOW)
