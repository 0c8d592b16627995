"""The ``evaluate`` report: score a predictor on labelled samples and write the summary, the
per-image table and the worst cases (``evaluate_predictor``); ``evaluate_model`` picks the
model's own split of a data folder first and adds the false-mask and found rates on face
crops. Nothing here imports PyTorch, so a light install (the onnxruntime backend) evaluates
too.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskseg.data.pairs import Sample
from maskseg.evaluate import metrics as M
from maskseg.evaluate.scoring import Segmenter, score
from maskseg.files import atomic_write_bytes
from maskseg.pipeline.annotate import image_grid, mask_rgb, overlay

if TYPE_CHECKING:
    from maskseg.pipeline.predictor import Predictor

SUMMARY_JSON = "summary.json"
REPORT_FILES = (SUMMARY_JSON, "per_image.csv", "worst_cases.png")
SPLIT_PARTS = ("test", "trainval", "all")


class NoPairsError(ValueError):
    """The split asked for holds no readable pairs (and no face crops were given)."""


def evaluate_predictor(
    predictor: Segmenter,
    samples: list[Sample],
    output_dir: str | Path,
    n_worst: int = 8,
    batch_size: int = 16,
    about: dict | None = None,
) -> dict:
    """Score a predictor at each truth's own resolution; write summary.json (with ``about``
    merged in), per_image.csv and worst_cases.png (image | truth | prediction) into output_dir."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    scored = score(predictor, samples, batch_size=batch_size)
    counts = scored.counts
    summary = scored.summary()
    summary.update(about or {})
    per = M.per_image(counts)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", *per, "tp", "fp", "fn", "tn"])
    for j, s in enumerate(samples):
        w.writerow(
            [
                s.id,
                *(f"{per[k][j]:.6f}" for k in per),
                counts.tp[j],
                counts.fp[j],
                counts.fn[j],
                counts.tn[j],
            ]
        )
    atomic_write_bytes(out / "per_image.csv", buf.getvalue().encode())
    atomic_write_bytes(out / SUMMARY_JSON, json.dumps(summary, indent=2).encode())
    worst = [samples[j] for j in np.argsort(per["iou"], kind="stable")[:n_worst]]
    if worst:  # masks are not kept while scoring (a full MSFD would not fit): predict again
        preds = predictor.predict_batch([s.image for s in worst])
        ious = dict(zip(scored.ids, per["iou"], strict=True))
        pairs = zip(worst, preds, strict=True)
        image_grid(
            [[s.image, mask_rgb(s.mask), overlay(s.image, p)] for s, p in pairs],
            ["image", "truth", "prediction"],
            [f"{s.id[:28]}\nIoU {ious[s.id]:.3f}" for s in worst],
            out / "worst_cases.png",
        )
    return summary


def evaluate_model(
    predictor: Predictor,
    data_root: str | Path,
    split: str = "test",
    output: str | Path = "maskseg-eval",
    *,
    faces: str | Path | None = None,
    splits_file: str | Path | None = None,
    n_worst: int = 8,
    model: str | None = None,
) -> dict:
    """Score a model on its own split of a data folder and write the report into ``output``.

    The pairs are split with the model's stored split settings (``predictor.config.data``),
    so its test part holds pairs it never trained on; ``splits_file`` (a run's
    splits.json) is checked against those settings and used instead of remaking the split.
    ``split`` is "test", "trainval" or "all". With ``faces`` (a folder written by ``maskseg
    data faces``), the same part of the face crops (split with the same settings; see
    ``face_splits``) adds the false-mask and found rates under ``"faces"``.

    Writes summary.json, per_image.csv and worst_cases.png (``evaluate_predictor``). A model
    trained on every pair of its data has no test pairs: with ``faces`` only the rates are
    written (summary.json), without them ``NoPairsError`` (a ``ValueError``) says why.

    Returns the summary: the metrics (when pairs were scored: ``n_images`` and the metric
    names), ``split``, ``split_seed``, ``data``, ``model`` (the name given, for the record),
    ``test_ids`` and, with ``faces``, ``faces``.
    """
    from maskseg.data.splits import Splits, load_split

    if split not in SPLIT_PARTS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLIT_PARTS)}")
    out = Path(output)
    d = predictor.config.data  # the model's own split settings: it never saw their test ids
    data = load_split(data_root, d, split, Splits.load(splits_file) if splits_file else None)
    ids = {"test": data.splits.test, "trainval": data.splits.trainval, "all": sorted(data.samples)}
    samples = data.take(ids[split])
    if not samples and not faces:
        hint = ""
        if split == "test" and d.test_fraction == 0:
            hint = (
                " (the model was trained on every pair of its data, so it has no test split; "
                "--split all scores every pair, fair only on data it never saw, and "
                "--model unet-msfd-heldout (the default) is the shipped model's twin that "
                "held out the test split)"
            )
        raise NoPairsError(f"the {split} split of {data_root} holds no readable pairs{hint}")
    about: dict = {
        "split": split,
        "split_seed": d.seed,
        "data": str(data_root),
        "model": str(model or "default"),
        "test_ids": data.splits.test,
        "skipped": _not_scored(ids[split], data),
    }
    if faces:
        from maskseg.data.faces import face_splits, load_crops, load_index
        from maskseg.evaluate.presence_rates import MIN_COVERAGE, presence_rates

        fs = face_splits(load_index(faces), d)
        face_ids = {"test": fs.test, "trainval": fs.trainval, "all": fs.test + fs.trainval}
        rates = presence_rates(predictor, load_crops(faces, face_ids[split])).as_dict()
        about["faces"] = {"folder": str(faces), "min_coverage": MIN_COVERAGE, **rates}
    if samples:
        return evaluate_predictor(predictor, samples, out, n_worst=n_worst, about=about)
    # a model trained on every pair: no held-out pairs, only the photos' rates
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / SUMMARY_JSON, json.dumps(about, indent=2).encode())
    return about


def _not_scored(ids: list[str], data: Any) -> list[dict[str, str]]:
    """The pairs of ``ids`` that were not scored, with why: unreadable (``data.skipped``),
    or (a --splits file on another folder) not in the data folder at all."""
    wanted = set(ids)
    why = {i: reason for i, reason in data.skipped if i in wanted}
    missing = [i for i in ids if i not in data.samples and i not in why]
    return [{"id": i, "reason": r} for i, r in why.items()] + [
        {"id": i, "reason": "not in the data folder"} for i in missing
    ]


def format_summary_table(summary: dict) -> str:
    lines = [f"{'metric':<12} {'mean':>8} {'std':>8}"]
    for k in M.METRIC_NAMES:
        lines.append(f"{k:<12} {summary[k]:>8.4f} {summary[k + '_std']:>8.4f}")
    lines.append(f"{'pooled IoU':<12} {summary['iou_pooled']:>8.4f}")
    lines.append(f"{'pooled Dice':<12} {summary['dice_pooled']:>8.4f}")
    lines.append(f"{'images':<12} {int(summary['n_images']):>8d}")
    return "\n".join(lines)
