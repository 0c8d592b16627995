"""Score a segmenter on labelled samples: the one loop behind evaluation, comparison, tuning
and the validation of a training run.

A segmenter is anything with ``predict_batch(images) -> masks`` (``Predictor``, a classical
method). Masks are scored at each ground truth's own resolution with ``maskseg.evaluate.metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from maskseg.data.pairs import Sample
from maskseg.evaluate.metrics import Counts, concat, confusion, summarize


class Segmenter(Protocol):
    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]: ...


@dataclass
class Scored:
    """Per-image counts of one segmenter on a list of samples (in their order)."""

    ids: list[str]
    counts: Counts
    ms: np.ndarray | None = None  # wall time of one call per image, when timed
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # the masks asked to keep
    seconds: float = 0.0  # time spent in predict calls (warm-up excluded)

    def summary(self) -> dict[str, float]:
        out = summarize(self.counts)
        out["ms_per_image"] = 1000.0 * self.seconds / max(1, len(self.ids))
        if self.ms is not None and len(self.ms):
            out["ms_median"] = float(np.median(self.ms))
            out["ms_mean"] = float(np.mean(self.ms))
        return out


def score_masks(masks: Sequence[np.ndarray], samples: Sequence[Sample]) -> Counts:
    """Confusion counts of predicted masks against the samples' truths, one row per image."""
    parts = []
    for pred, s in zip(masks, samples, strict=True):
        pred = np.asarray(pred)
        if pred.shape != s.mask.shape:
            raise ValueError(f"{s.id}: predicted mask of shape {pred.shape}, truth {s.mask.shape}")
        parts.append(confusion(pred.astype(bool, copy=False), s.mask))
    return concat(parts)


def score(
    segmenter: Segmenter,
    samples: Sequence[Sample],
    batch_size: int = 16,
    timed: bool = False,
    keep: Collection[str] = (),
) -> Scored:
    """Predict every sample and count TP/FP/FN/TN at the truth's resolution.

    Args:
        batch_size: images per ``predict_batch`` call (ignored when ``timed``).
        timed: one call per image, each timed, after one untimed warm-up call (so model
            loading and lazy initialisation are not counted).
        keep: ids whose predicted masks are returned (e.g. for an example grid).
    """
    samples = list(samples)
    if timed and samples:
        segmenter.predict_batch([samples[0].image])
    masks: list[np.ndarray] = []
    ms: list[float] = []
    step = 1 if timed else max(1, batch_size)
    for i in range(0, len(samples), step):
        chunk = samples[i : i + step]
        start = time.perf_counter()
        masks_chunk = segmenter.predict_batch([s.image for s in chunk])
        ms.append((time.perf_counter() - start) * 1000.0)
        masks += masks_chunk
    counts = score_masks(masks, samples)
    kept = {s.id: m.astype(bool) for s, m in zip(samples, masks, strict=True) if s.id in keep}
    ids = [s.id for s in samples]
    return Scored(ids, counts, np.array(ms) if timed else None, kept, sum(ms) / 1000.0)
