"""Segmentation metrics as pure functions: count first, then reduce.

Rule for empty masks: a ratio whose denominator is zero is 1.0 when the image has neither
truth nor predicted pixels (a correct "no mask" answer) and 0.0 otherwise. So an image where
truth and prediction are both empty scores IoU = Dice = precision = recall = 1, while an empty
prediction on a non-empty truth scores precision 0 (not undefined).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRIC_NAMES = ("iou", "dice", "precision", "recall", "accuracy")


@dataclass(frozen=True)
class Counts:
    """Per-image confusion counts, each an int64 array of shape (N,)."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    def __add__(self, other: Counts) -> Counts:
        return concat([self, other])

    def __len__(self) -> int:
        return len(self.tp)


def confusion(pred: np.ndarray, truth: np.ndarray) -> Counts:
    """Count TP/FP/FN/TN per image.

    Args:
        pred, truth: boolean arrays of shape (H, W) for one image or (N, H, W) for a batch.
    """
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} != truth shape {truth.shape}")
    if pred.ndim == 2:
        pred, truth = pred[None], truth[None]
    axes = tuple(range(1, pred.ndim))
    tp = np.sum(pred & truth, axis=axes, dtype=np.int64)
    fp = np.sum(pred & ~truth, axis=axes, dtype=np.int64)
    fn = np.sum(~pred & truth, axis=axes, dtype=np.int64)
    tn = np.sum(~pred & ~truth, axis=axes, dtype=np.int64)
    return Counts(tp, fp, fn, tn)


def empty_counts() -> Counts:
    z = np.zeros(0, dtype=np.int64)
    return Counts(z, z, z, z)


def concat(parts: list[Counts]) -> Counts:
    """Join per-image counts in one pass (adding them one by one copies quadratically)."""
    if not parts:
        return empty_counts()
    cat = np.concatenate
    return Counts(
        cat([c.tp for c in parts]),
        cat([c.fp for c in parts]),
        cat([c.fn for c in parts]),
        cat([c.tn for c in parts]),
    )


def _ratio(num: np.ndarray, den: np.ndarray, both_empty: np.ndarray) -> np.ndarray:
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return np.where(den > 0, out, np.where(both_empty, 1.0, 0.0))


def _reduce(c: Counts, fn, reduction: str) -> np.ndarray | float:
    """Apply fn(tp, fp, fn, tn, both_empty) per image ("none", "mean") or to summed counts."""
    if reduction == "pooled":
        s = [np.array([x.sum()]) for x in (c.tp, c.fp, c.fn, c.tn)]
        return float(fn(*s, (s[0] + s[1] + s[2]) == 0)[0])
    per_image = fn(c.tp, c.fp, c.fn, c.tn, (c.tp + c.fp + c.fn) == 0)
    if reduction == "none":
        return per_image
    if reduction == "mean":
        return float(per_image.mean()) if len(per_image) else float("nan")
    raise ValueError(f"unknown reduction {reduction!r}; valid: 'mean', 'none', 'pooled'")


def iou(c: Counts, reduction: str = "mean"):
    """Intersection over union, TP / (TP + FP + FN)."""
    return _reduce(c, lambda tp, fp, fn, tn, e: _ratio(tp, tp + fp + fn, e), reduction)


def dice(c: Counts, reduction: str = "mean"):
    """Dice / F1, 2TP / (2TP + FP + FN)."""
    return _reduce(c, lambda tp, fp, fn, tn, e: _ratio(2 * tp, 2 * tp + fp + fn, e), reduction)


def precision(c: Counts, reduction: str = "mean"):
    """TP / (TP + FP)."""
    return _reduce(c, lambda tp, fp, fn, tn, e: _ratio(tp, tp + fp, e), reduction)


def recall(c: Counts, reduction: str = "mean"):
    """TP / (TP + FN)."""
    return _reduce(c, lambda tp, fp, fn, tn, e: _ratio(tp, tp + fn, e), reduction)


def accuracy(c: Counts, reduction: str = "mean"):
    """Pixel accuracy, (TP + TN) / all pixels."""
    return _reduce(c, lambda tp, fp, fn, tn, e: _ratio(tp + tn, tp + fp + fn + tn, e), reduction)


_FUNCS = {"iou": iou, "dice": dice, "precision": precision, "recall": recall, "accuracy": accuracy}


def per_image(c: Counts) -> dict[str, np.ndarray]:
    """All metrics per image, shape (N,) each."""
    return {name: f(c, "none") for name, f in _FUNCS.items()}


def summarize(c: Counts) -> dict[str, float]:
    """Mean and std over images for every metric, plus pooled IoU and Dice.

    The mean over images is the headline (as the MFSD authors report); pooled IoU sums the
    counts over the whole split first, so large masks weigh more.
    """
    out: dict[str, float] = {"n_images": float(len(c))}
    for name, values in per_image(c).items():
        out[name] = float(values.mean()) if len(values) else float("nan")
        out[f"{name}_std"] = float(values.std()) if len(values) else float("nan")
    out["iou_pooled"] = iou(c, "pooled")
    out["dice_pooled"] = dice(c, "pooled")
    return out
