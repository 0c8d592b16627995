"""SSD anchors and BlazeFace tensor decoding, as data plus pure numpy functions.

This re-implements the two MediaPipe calculators the face-detection graph runs after the
network, with the options from ``mediapipe/modules/face_detection/face_detection_*.pbtxt``:

* ``SsdAnchorsCalculator`` (``fixed_anchor_size: true``, aspect ratio 1, anchor offset 0.5):
  every anchor is a cell centre ``((x + 0.5) / fw, (y + 0.5) / fh)`` with width = height = 1.
  Consecutive layers with the same stride are merged into one grid, and each layer adds one
  anchor per aspect ratio plus one more when ``interpolated_scale_aspect_ratio > 0``.
  Short range (128 px, strides 8/16/16/16): 16x16x2 + 8x8x6 = 896 anchors.
  Full range (192 px, stride 4, no interpolated anchor): 48x48x1 = 2,304 anchors.
* ``TensorsToDetectionsCalculator`` (``reverse_output_order: true``, no exponential box
  size, ``x_scale = y_scale = w_scale = h_scale = input size``): a regressor row is
  (dx, dy, w, h, kx0, ky0, ... kx5, ky5) in input pixels; centre and keypoints are offsets
  from the anchor centre. Scores are ``sigmoid(clip(logit, -100, 100))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MediaPipe's order of the six BlazeFace keypoints (the person's right eye comes first).
KEYPOINT_NAMES = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "mouth_center",
    "right_ear_tragion",
    "left_ear_tragion",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
SCORE_CLIP = 100.0  # score_clipping_thresh in the graph


@dataclass(frozen=True)
class AnchorSpec:
    """The SsdAnchorsCalculator options that matter for BlazeFace (square input).

    Attributes:
        input_size: side of the square model input, pixels.
        strides: one per layer; equal consecutive strides share one grid.
        aspect_ratios_per_layer: anchors a layer adds per cell before the interpolated one.
        interpolated: whether each layer adds the interpolated-scale anchor
            (``interpolated_scale_aspect_ratio > 0``).
        score_threshold: the graph's ``min_score_thresh`` for this model.
    """

    input_size: int
    strides: tuple[int, ...]
    aspect_ratios_per_layer: int = 1
    interpolated: bool = True
    score_threshold: float = 0.5

    @property
    def num_anchors(self) -> int:
        return len(generate_anchors(self))


SHORT_RANGE = AnchorSpec(input_size=128, strides=(8, 16, 16, 16), score_threshold=0.5)
FULL_RANGE = AnchorSpec(input_size=192, strides=(4,), interpolated=False, score_threshold=0.6)


def generate_anchors(spec: AnchorSpec) -> np.ndarray:
    """Anchor centres, normalised to [0, 1], in the order the model emits its rows.

    Returns:
        float32 (A, 2) array of (x, y).
    """
    per_cell = spec.aspect_ratios_per_layer + int(spec.interpolated)
    centres = []
    layer = 0
    while layer < len(spec.strides):
        stride = spec.strides[layer]
        same = layer
        while same < len(spec.strides) and spec.strides[same] == stride:
            same += 1
        cells = -(-spec.input_size // stride)  # ceil, as the calculator does
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = (np.stack([xs, ys], axis=-1).reshape(-1, 1, 2) + 0.5) / cells
        centres.append(np.repeat(grid, per_cell * (same - layer), axis=1).reshape(-1, 2))
        layer = same
    return np.concatenate(centres).astype(np.float32)


def sigmoid_scores(logits: np.ndarray) -> np.ndarray:
    """MediaPipe's score: clip the logit to +-100, then the logistic function."""
    clipped = np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)  # exp(100) > fp32
    return (1.0 / (1.0 + np.exp(-clipped))).astype(np.float32)


def decode(
    regressors: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    score_threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs of one image -> candidate boxes, scores and keypoints above the threshold.

    Args:
        regressors: (A, 16) raw regressor rows.
        logits: (A,) or (A, 1) raw score logits.
        anchors: (A, 2) normalised anchor centres from ``generate_anchors``.
        input_size: model input side in pixels (the graph's x/y/w/h scales).
        score_threshold: keep anchors scoring at least this.

    Returns:
        boxes (K, 4) x1, y1, x2, y2; scores (K,); keypoints (K, 6, 2) (x, y); all coordinates
        in model-input pixels (0..input_size), rows in anchor order.
    """
    scores = sigmoid_scores(logits.reshape(-1))
    keep = np.flatnonzero(scores >= score_threshold)
    raw = regressors[keep].astype(np.float32)
    centre = anchors[keep] * input_size  # anchor centres in input pixels
    cxy = centre + raw[:, 0:2]
    half = raw[:, 2:4] / 2.0
    boxes = np.concatenate([cxy - half, cxy + half], axis=1)
    keypoints = raw[:, 4 : 4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + centre[:, None]
    return boxes.astype(np.float32), scores[keep], keypoints.astype(np.float32)
