"""Test and benchmark clips: real face crops moving over a background.

No video with labelled masks ships with the data, so the video tests and
``benchmarks/bench_video.py`` assemble their clips from face crops: each crop is pasted with
feathered edges (as ``maskseg.data.synth`` places faces in scenes) at a position that moves a few
pixels per frame and bounces off the frame's edges.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskseg.data.synth import feather_alpha


@dataclass
class Mover:
    """A face crop at (x, y) (its top-left corner), ``side`` px square, moving (vx, vy) px
    per frame."""

    crop: np.ndarray
    x: float
    y: float
    side: int
    vx: float = 0.0
    vy: float = 0.0

    def rect(self) -> tuple[int, int, int, int]:
        x, y = round(self.x), round(self.y)
        return x, y, x + self.side, y + self.side


def backdrop(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A still background like a wall or a room out of focus: a muted colour gradient with a
    faint, soft texture (RGB uint8)."""
    rng = np.random.default_rng(seed)
    grey = rng.uniform(90, 190)
    a, b = grey + rng.uniform(-30, 30, 3), grey + rng.uniform(-30, 30, 3)
    t = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    image = a * (1 - t) + b * t + np.zeros((height, 1, 1), np.float32)
    # a few broad shades only: finer texture makes BlazeFace see faces in it
    noise = rng.normal(0, 1, (5, 7)).astype(np.float32)
    image += 10 * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def paste_face(image: np.ndarray, crop: np.ndarray, rect: Sequence[int], feather: float = 0.05):
    """Blend a face crop into ``image`` (in place) over the square ``rect``, its edges faded
    over ``feather`` of its side; the part outside the image is dropped."""
    x, y, x2, _ = rect
    side = x2 - x
    face = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    alpha = feather_alpha(side, feather * side)
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    if x1 <= x0 or y1 <= y0:
        return
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
    f = face[y0 - y : y1 - y, x0 - x : x1 - x]
    region = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = np.clip(a * f + (1 - a) * region + 0.5, 0, 255).astype(np.uint8)


def moving_faces(
    crops: Sequence[np.ndarray],
    n_frames: int,
    size: tuple[int, int] = (640, 480),
    side: int = 140,
    speed: float = 3.0,
    seed: int = 0,
) -> Iterator[tuple[np.ndarray, list[tuple[int, int, int, int]]]]:
    """Frames (RGB uint8) with each crop moving at ``speed`` px per frame in its own
    direction, bouncing off the edges; yields (frame, face squares)."""
    w, h = size
    rng = np.random.default_rng(seed)
    bg = backdrop(h, w, seed)
    movers = []
    for k, crop in enumerate(crops):
        angle = rng.uniform(0, 2 * np.pi)
        x = (k + 0.5) * w / len(crops) - side / 2
        y = rng.uniform(0, h - side)
        movers.append(Mover(crop, x, y, side, speed * np.cos(angle), speed * np.sin(angle)))
    for _ in range(n_frames):
        frame = bg.copy()
        for m in movers:
            paste_face(frame, m.crop, m.rect())
        yield frame, [m.rect() for m in movers]
        for m in movers:
            m.x += m.vx
            m.y += m.vy
            if not 0 <= m.x <= w - side:
                m.vx, m.x = -m.vx, float(np.clip(m.x, 0, w - side))
            if not 0 <= m.y <= h - side:
                m.vy, m.y = -m.vy, float(np.clip(m.y, 0, h - side))


def write_clip(
    path: str | os.PathLike, frames: Sequence[np.ndarray] | Iterator[np.ndarray], fps: float = 30.0
) -> Path:
    """Write RGB frames with OpenCV (mp4v for .mp4/.mov, MJPG for .avi)."""
    path = Path(path)
    writer = None
    fourcc = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
    try:
        for frame in frames:
            if writer is None:
                size = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
                if not writer.isOpened():
                    raise ValueError(f"{path}: OpenCV cannot write {fourcc} here")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return path
