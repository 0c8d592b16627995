"""The ``evaluate`` report: score a predictor on labelled samples and write the summary, the
per-image table and the worst cases. Nothing here imports PyTorch, so a light install (the
onnxruntime backend) evaluates too.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from maskseg.data.pairs import Sample
from maskseg.evaluate import metrics as M
from maskseg.evaluate.scoring import Segmenter, score
from maskseg.files import atomic_write_bytes
from maskseg.pipeline.annotate import image_grid, mask_rgb, overlay

SUMMARY_JSON = "summary.json"


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


def format_summary_table(summary: dict) -> str:
    lines = [f"{'metric':<12} {'mean':>8} {'std':>8}"]
    for k in M.METRIC_NAMES:
        lines.append(f"{k:<12} {summary[k]:>8.4f} {summary[k + '_std']:>8.4f}")
    lines.append(f"{'pooled IoU':<12} {summary['iou_pooled']:>8.4f}")
    lines.append(f"{'pooled Dice':<12} {summary['dice_pooled']:>8.4f}")
    lines.append(f"{'images':<12} {int(summary['n_images']):>8d}")
    return "\n".join(lines)
