"""Weighted non-maximum suppression, as MediaPipe's face-detection graph runs it.

``NonMaxSuppressionCalculator`` with ``algorithm: WEIGHTED``, ``overlap_type:
INTERSECTION_OVER_UNION`` and ``min_suppression_threshold: 0.3``: take the best-scoring
candidate, gather every remaining candidate overlapping it by IoU > threshold (itself
included), replace its box and keypoints by the score-weighted mean of that group, keep its
own score, drop the group, repeat. Averaging instead of discarding steadies the box from
frame to frame, and also merges detections of one face from several passes (tiles, ROIs).
"""

from __future__ import annotations

import numpy as np


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each row of ``boxes`` (0 where the union is 0)."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def weighted_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    keypoints: np.ndarray,
    iou_threshold: float = 0.3,
    max_detections: int | None = None,
    blend_floor: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blend overlapping detections, weighted by score.

    Args:
        boxes: (N, 4) x1, y1, x2, y2.
        scores: (N,).
        keypoints: (N, K, 2).
        iou_threshold: candidates overlapping the current best by more than this are merged.
        max_detections: stop after this many outputs (None: no limit).
        blend_floor: candidates scoring under this are suppressed by a better one scoring at
            least this without moving its box (they still blend among themselves). A caller
            that lowers the score threshold below the floor then only gains detections: the
            faces found at the floor keep their boxes. None: MediaPipe's blending.

    Returns:
        (boxes, scores, keypoints) of the merged detections, best score first.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    out_b, out_s, out_k = [], [], []
    remaining = np.arange(len(scores))
    while remaining.size and (max_detections is None or len(out_s) < max_detections):
        best = remaining[0]
        group = remaining[box_iou(boxes[best], boxes[remaining]) > iou_threshold]
        if group.size == 0:  # a zero-area box overlaps nothing, not even itself
            group = remaining[:1]
        blend = group
        if blend_floor is not None and scores[best] >= blend_floor:
            blend = group[scores[group] >= blend_floor]  # ``best`` is among them
        w = scores[blend].astype(np.float64)
        w_sum = w.sum()
        out_b.append((boxes[blend] * w[:, None]).sum(0) / w_sum)
        out_k.append((keypoints[blend] * w[:, None, None]).sum(0) / w_sum)
        out_s.append(scores[best])
        # indices are positions in score order, so the sorted difference stays in score order
        remaining = np.setdiff1d(remaining, group, assume_unique=True)
    k = keypoints.shape[1] if keypoints.ndim == 3 else 0
    if not out_s:
        return (
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, k, 2), np.float32),
        )
    return (
        np.asarray(out_b, np.float32),
        np.asarray(out_s, np.float32),
        np.asarray(out_k, np.float32),
    )
