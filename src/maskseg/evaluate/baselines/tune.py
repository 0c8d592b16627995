"""Tune the classical methods on the training split only, and record how.

Steps: take the split (``DataConfig``: the canonical one unless ``--split-seed`` says), keep
the train+validation ids (the test ids are never decoded), fit the face prior to their mean
mask, then grid-search each method's parameters for the highest mean IoU. The winners go to a
JSON file that ``get_method`` reads; the package ships one as ``tuned_params.json``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskseg.config import DataConfig
from maskseg.data.pairs import Sample
from maskseg.data.splits import load_split
from maskseg.evaluate.baselines import get_method, list_methods, method_class
from maskseg.evaluate.baselines._prior import FacePrior
from maskseg.evaluate.metrics import iou
from maskseg.evaluate.scoring import Segmenter, score
from maskseg.files import atomic_write_bytes

log = logging.getLogger(__name__)

# Small on purpose: ~260 combinations in all, about 4 minutes on two cores, and too few
# degrees of freedom to overfit 134 training images. Ranges were widened once where a first
# run picked a value at their edge.
GRIDS: dict[str, dict[str, list[Any]]] = {
    "prior": {"threshold": [0.3, 0.35, 0.4, 0.45, 0.5, 0.55]},
    "otsu": {
        "channel": ["warmth", "a", "b", "saturation", "skin_distance", "gray"],
        "polarity": ["high", "skin"],
        "roi": [0.1, 0.2, 0.3],
    },
    "sauvola": {"window": [0.25, 0.5, 1.0], "k": [-0.2, -0.1, 0.0, 0.1], "roi": [0.2, 0.3]},
    "canny": {
        "channel": ["gray", "warmth"],
        "high_percentile": [75.0, 85.0, 92.0],
        "min_prior": [0.5, 0.6, 0.7],
        "close_frac": [0.01, 0.02, 0.03],
    },
    "kmeans": {"k": [4, 5, 6], "xy_weight": [0.25, 0.5, 1.0], "min_prior": [0.5, 0.6, 0.7]},
    "grabcut": {
        "fg_prior": [0.4, 0.5, 0.6],
        "bg_prior": [0.05, 0.1, 0.2],
        "skin_background": [True, False],
    },
    "watershed": {
        "channel": ["warmth", "b"],
        "fg_prior": [0.5, 0.6, 0.7],
        "skin_prior": [0.5, 0.7, 0.9],
        "bg_prior": [0.05, 0.1, 0.2],
    },
}

_PRIOR_FIT_SIDE = 64  # the mean mask is smooth; fitting it at 64 x 64 loses nothing


def training_samples(
    data_root: str | Path, data_config: DataConfig | None = None, max_images: int | None = None
) -> tuple[list[Sample], list[str]]:
    """Decode the train+validation pairs of the split; test pairs are never opened.

    Returns:
        (samples, test_ids): the decoded training samples and the ids held out for testing.
    """
    d = DataConfig() if data_config is None else data_config
    ids = load_split(data_root, d, part=[]).splits  # the split only: decodes nothing
    train = ids.trainval[:max_images] if max_images is not None else ids.trainval
    leaked = set(train) & set(ids.test)
    if leaked:  # cannot happen by construction; checked because a leak would void the results
        raise RuntimeError(f"test ids in the tuning set: {sorted(leaked)}")
    data = load_split(data_root, d, part=train, splits=ids)
    samples = data.take(train)
    if not samples:
        raise ValueError(f"{data_root}: no readable training pairs to tune on")
    return samples, list(ids.test)


def fit_face_prior(masks: Iterable[np.ndarray], iterations: int = 200) -> FacePrior:
    """Fit ``FacePrior``'s six numbers to the mean of ``masks`` (least squares).

    Deterministic pattern search (no SciPy needed): move one parameter at a time while that
    lowers the error, halve the steps when nothing does.
    """
    side = _PRIOR_FIT_SIDE
    resized = [
        cv2.resize(m.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA) for m in masks
    ]
    if not resized:
        raise ValueError("need at least one mask to fit the face prior")
    target = np.mean(resized, axis=0)
    names = [f.name for f in dataclasses.fields(FacePrior)]

    def error(x: np.ndarray) -> float:
        if np.any(x[[1, 3, 4, 5]] <= 1e-3):  # softness and radii must stay positive
            return float("inf")
        return float(np.mean((FacePrior(*map(float, x)).map(side, side) - target) ** 2))

    x = np.array([getattr(FacePrior(), n) for n in names], np.float64)
    step = np.full(len(x), 0.05)
    best = error(x)
    for _ in range(iterations):
        improved = False
        for i in range(len(x)):
            for sign in (1.0, -1.0):
                y = x.copy()
                y[i] += sign * step[i]
                e = error(y)
                if e < best:
                    x, best, improved = y, e, True
                    break
        if not improved:
            step /= 2
            if step.max() < 1e-4:
                break
    return FacePrior(*(round(float(v), 3) for v in x))


def mean_iou(segmenter: Segmenter, samples: list[Sample]) -> float:
    """Mean IoU over images, the headline metric (``maskseg.evaluate.metrics``)."""
    return float(iou(score(segmenter, samples).counts, "mean"))


def grid_search(
    name: str, samples: list[Sample], grid: dict[str, list[Any]], prior: FacePrior
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Try every combination of ``grid`` (other parameters at their defaults).

    Returns:
        (best full parameter dict, one row per combination with its mean IoU). Ties keep the
        earlier combination, so the result does not depend on float noise.
    """
    rows = []
    best_score, best_params = -1.0, None
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values, strict=True))
        method = get_method(name, overrides, tuned=False, prior=prior)
        value = mean_iou(method, samples)
        rows.append({**overrides, "iou": round(value, 4)})
        if value > best_score:
            best_score, best_params = value, dataclasses.asdict(method.params)
    return best_params, rows


def tune_baselines(
    data_root: str | Path,
    output_json: str | Path,
    methods: list[str] | None = None,
    grids: dict[str, dict[str, list[Any]]] | None = None,
    data_config: DataConfig | None = None,
    max_images: int | None = None,
) -> dict[str, Any]:
    """Fit the face prior and grid-search every method on the training split; write JSON.

    Args:
        data_root: MSFD or plain-layout folder (``maskseg.data.pairs.find_pairs``).
        output_json: where to write the tuned parameters (read back by ``get_method(...,
            tuned=path)``; copy to ``maskseg/baselines/tuned_params.json`` to ship them).
        methods: subset of ``list_methods()``; None tunes all.
        grids: per-method grids replacing ``GRIDS``; a method without a grid keeps defaults.
        data_config: split settings; None is the canonical split.
        max_images: tune on the first N training pairs only (quick checks, tests).

    Returns:
        The dict written to ``output_json``.
    """
    methods = list_methods() if methods is None else methods
    for name in methods:
        method_class(name)  # fail before hours of work on a typo
    grids = GRIDS if grids is None else grids
    d = DataConfig() if data_config is None else data_config
    start = time.perf_counter()
    samples, test_ids = training_samples(data_root, d, max_images)
    prior = fit_face_prior(s.mask for s in samples)
    log.info("tuning on %d training images; face prior %s", len(samples), prior)
    tuned: dict[str, Any] = {}
    for name in methods:
        grid = grids.get(name, {})
        params, rows = grid_search(name, samples, grid, prior)
        best = max(rows, key=lambda r: r["iou"])["iou"]
        log.info("%s: train mean IoU %.4f with %s", name, best, params)
        tuned[name] = {"params": params, "train_iou": best, "grid": grid, "results": rows}
    out = {
        "about": (
            "Classical baseline parameters, tuned by "
            "maskseg.evaluate.baselines.tune.tune_baselines: "
            "face prior least-squares fitted to the mean training mask, then a grid search per "
            "method maximising mean IoU over the training images (train+validation folds of "
            "the canonical split). Test images were not read."
        ),
        "split": {
            "data_root": Path(data_root).name,
            "n_train_images": len(samples),
            "n_test_ids_excluded": len(test_ids),
            "test_fraction": d.test_fraction,
            "folds": d.folds,
            "seed": d.seed,
            "group_regex": d.group_regex,
            "max_images": max_images,
        },
        "seconds": round(time.perf_counter() - start, 1),
        "face_prior": dataclasses.asdict(prior),
        "methods": tuned,
    }
    atomic_write_bytes(Path(output_json), (json.dumps(out, indent=1) + "\n").encode())
    return out


def main() -> None:
    """``python -m maskseg.evaluate.baselines.tune DATA_ROOT OUTPUT_JSON``: how the shipped
    file was made."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("data_root")
    parser.add_argument("output_json")
    parser.add_argument("--methods", nargs="*", default=None, choices=list_methods())
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tune_baselines(args.data_root, args.output_json, methods=args.methods)


if __name__ == "__main__":
    main()
