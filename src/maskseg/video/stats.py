"""What a video run reports: frames, wall time and the time of each stage. One object that
every thread of the run (reader, locate, loop, writer) adds its stage times to, so the
summary and the benchmarks read one place."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

STAGES = ("decode", "detect", "segment", "face check", "wear", "overlay", "encode", "write", "show")


@dataclass
class VideoStats:
    """What a run did and where its time went.

    Attributes:
        frames: frames processed.
        seconds: total seconds per stage (decode runs in the reader thread, overlapped).
        wall: seconds from the first frame asked for to the last sink closed.
        full_detections: frames that got a full detection.
        cuts: frames that started a new shot (``maskseg.video.cuts``).
        stopped: why the run ended early ("SIGINT", "SIGTERM", "window"), None at the end
            of the source.
    """

    frames: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    full_detections: int = 0
    cuts: int = 0
    stopped: str | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        """Add seconds spent elsewhere (a frame located ahead) to a stage."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

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
            + (f"; shot cuts: {self.cuts}" if self.cuts else "")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "wall_s": round(self.wall, 4),
            "fps": round(self.fps, 2),
            "full_detections": self.full_detections,
            "cuts": self.cuts,
            "ms_per_frame": {k: round(v, 3) for k, v in self.ms_per_frame().items()},
            "stopped": self.stopped,
        }
