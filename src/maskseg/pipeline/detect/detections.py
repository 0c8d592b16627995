"""``Detections``: the faces found in one image, as one small frozen dataclass of arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from maskseg.pipeline.detect.anchors import KEYPOINT_NAMES, NUM_KEYPOINTS


@dataclass(frozen=True)
class Detections:
    """Faces in one image, best score first, in that image's pixel coordinates.

    Attributes:
        boxes: float32 (N, 4) x1, y1, x2, y2 (may extend past the image for cut-off faces).
        scores: float32 (N,) in [0, 1].
        keypoints: float32 (N, 6, 2) (x, y) in ``anchors.KEYPOINT_NAMES`` order.

    Arrays are made read-only so a shared result cannot be changed behind a caller's back;
    index with an int, slice or boolean mask to select rows (``dets[dets.scores > 0.8]``).
    """

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.array(self.boxes, np.float32).reshape(-1, 4)  # np.array copies
        n = len(boxes)
        scores = np.array(self.scores, np.float32).reshape(n)
        keypoints = np.array(self.keypoints, np.float32).reshape(n, NUM_KEYPOINTS, 2)
        for name, arr in (("boxes", boxes), ("scores", scores), ("keypoints", keypoints)):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, NUM_KEYPOINTS, 2)))

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: int | slice | np.ndarray) -> Detections:
        if isinstance(index, int | np.integer):
            i = range(len(self))[index]  # IndexError when out of range, as for a list
            index = slice(i, i + 1)
        return Detections(self.boxes[index], self.scores[index], self.keypoints[index])

    def as_records(self) -> list[dict[str, Any]]:
        """One plain dict per face (box, score, named keypoints), ready for JSON output."""
        return [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 4),
                "keypoints": {
                    name: [round(float(x), 2), round(float(y), 2)]
                    for name, (x, y) in zip(KEYPOINT_NAMES, kps, strict=True)
                },
            }
            for box, score, kps in zip(self.boxes, self.scores, self.keypoints, strict=True)
        ]

    def __repr__(self) -> str:
        scores = ", ".join(f"{s:.3f}" for s in self.scores)
        return f"Detections(n={len(self)}, scores=[{scores}])"
