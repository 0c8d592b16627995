"""End-to-end workflows the CLI calls: train, cross-validate, evaluate, predict folders."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskseg import metrics as M
from maskseg.config import Config, load_config, save_config
from maskseg.data import Sample, Splits, find_pairs, load_samples, splits_for
from maskseg.engine import BEST_WEIGHTS, evaluate, fit, resolve_device
from maskseg.inference import Predictor
from maskseg.io import (
    ImageReadError,
    atomic_write_bytes,
    collect_inputs,
    read_image,
    write_mask,
    write_rgb,
)
from maskseg.viz import image_grid, mask_rgb, overlay

log = logging.getLogger(__name__)

CONFIG_YAML = "config.yaml"
SPLITS_JSON = "splits.json"
SUMMARY_JSON = "summary.json"


@dataclass
class Dataset:
    """Decoded samples of a data folder with its splits."""

    samples: dict[str, Sample]
    splits: Splits
    skipped: list[str]

    def take(self, ids: list[str]) -> list[Sample]:
        return [self.samples[i] for i in ids if i in self.samples]


def load_dataset(cfg: Config, splits_path: Path | None = None) -> Dataset:
    """Decode every pair (bad ones skipped with a warning) and make or reload the splits.

    Splits are made over all pairs found, before bad ones are dropped, so a file that fails to
    decode never moves other pairs between splits.
    """
    scan = find_pairs(cfg.data.root)
    samples, skipped = load_samples(scan.pairs)
    if not samples:
        raise ValueError(f"{cfg.data.root}: no readable image/mask pairs")
    if splits_path is not None and splits_path.exists():
        splits = Splits.load(splits_path)
    else:
        splits = splits_for([p.id for p in scan.pairs], cfg.data)
    return Dataset({s.id: s for s in samples}, splits, [f"{p.id}: {why}" for p, why in skipped])


def _prepare_run(cfg: Config, run_dir: Path, resume: bool) -> tuple[Config, Dataset]:
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / CONFIG_YAML
    if resume and cfg_path.exists():
        cfg = load_config(cfg_path)  # a resumed run keeps the config it started with
    data = load_dataset(cfg, run_dir / SPLITS_JSON if resume else None)
    save_config(cfg, cfg_path)
    data.splits.save(run_dir / SPLITS_JSON)
    return cfg, data


def _scores(model, samples: list[Sample], cfg: Config) -> dict[str, float]:
    device = resolve_device(cfg.train.device)
    counts, _ = evaluate(model, samples, cfg.data.image_size, device, cfg.train.precision)
    return M.summarize(counts)


def train_run(
    cfg: Config,
    run_dir: str | Path,
    val_fold: int = 0,
    resume: bool = False,
    checkpoint_interval: float = 60.0,
) -> dict:
    """Train one model. Validation = fold ``val_fold`` (early stopping); -1 trains on every
    non-test pair for the configured epochs. The held-out test split is scored at the end only.
    """
    run_dir = Path(run_dir)
    cfg, data = _prepare_run(cfg, run_dir, resume)
    if val_fold < 0:
        train_ids, val_ids = data.splits.trainval, []
    else:
        train_ids, val_ids = data.splits.train_val(val_fold)
    res = fit(cfg, data.take(train_ids), data.take(val_ids), run_dir, resume, checkpoint_interval)
    summary = {
        "run_dir": str(run_dir),
        "val_fold": val_fold,
        "n_train": len(data.take(train_ids)),
        "n_val": len(data.take(val_ids)),
        "n_test": len(data.take(data.splits.test)),
        "best_epoch": res.best_epoch,
        "epochs_run": res.epochs_run,
        "skipped_pairs": data.skipped,
        "val": _scores(res.model, data.take(val_ids), cfg) if val_ids else {},
        "test": _scores(res.model, data.take(data.splits.test), cfg) if data.splits.test else {},
        "weights": str(run_dir / BEST_WEIGHTS),
    }
    atomic_write_bytes(run_dir / SUMMARY_JSON, json.dumps(summary, indent=2).encode())
    return summary


def cross_validate(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    checkpoint_interval: float = 60.0,
    only_folds: list[int] | None = None,
) -> dict:
    """Train each of the K folds; report per-fold and mean ± std scores on each fold's
    validation part and on the held-out test split. Finished folds are kept on resume.

    ``only_folds`` trains just those folds (e.g. one per process or machine, same run folder);
    the summary is written by whichever call finds every fold finished, so a last
    ``--resume`` without ``only_folds`` gathers them.
    """
    run_dir = Path(run_dir)
    cfg, data = _prepare_run(cfg, run_dir, resume or bool(only_folds))
    n_folds = len(data.splits.folds)
    for k in only_folds or []:
        if not 0 <= k < n_folds:
            raise ValueError(f"fold {k} out of range 0..{n_folds - 1}")
    folds = []
    for k in range(n_folds):
        fold_dir = run_dir / f"fold{k}"
        done = fold_dir / SUMMARY_JSON
        if (resume or only_folds) and done.exists():
            folds.append(json.loads(done.read_text()))
            continue
        if only_folds and k not in only_folds:
            continue
        log.info("fold %d/%d", k + 1, len(data.splits.folds))
        train_ids, val_ids = data.splits.train_val(k)
        res = fit(
            cfg, data.take(train_ids), data.take(val_ids), fold_dir, resume, checkpoint_interval
        )
        fold = {
            "fold": k,
            "n_train": len(train_ids),
            "n_val": len(val_ids),
            "best_epoch": res.best_epoch,
            "val": _scores(res.model, data.take(val_ids), cfg),
            "test": _scores(res.model, data.take(data.splits.test), cfg),
        }
        atomic_write_bytes(done, json.dumps(fold, indent=2).encode())
        folds.append(fold)
    if len(folds) < n_folds:
        return {"folds": folds, "complete": False}
    summary = {"folds": folds, "n_test": len(data.splits.test), "skipped_pairs": data.skipped}
    for part in ("val", "test"):
        for key in ("iou", "dice", "iou_pooled"):
            vals = np.array([f[part][key] for f in folds])
            summary[f"{part}_{key}_mean"] = float(vals.mean())
            summary[f"{part}_{key}_std"] = float(vals.std())
    atomic_write_bytes(run_dir / SUMMARY_JSON, json.dumps(summary, indent=2).encode())
    atomic_write_bytes(run_dir / "cv_results.md", format_cv_table(summary).encode())
    return summary


def format_cv_table(summary: dict) -> str:
    head = (
        "| fold | train | val | best epoch | val IoU | val Dice | test IoU | test Dice "
        "| test pooled IoU |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = [
        f"| {f['fold']} | {f['n_train']} | {f['n_val']} | {f['best_epoch']} | "
        f"{f['val']['iou']:.4f} | {f['val']['dice']:.4f} | {f['test']['iou']:.4f} | "
        f"{f['test']['dice']:.4f} | {f['test']['iou_pooled']:.4f} |"
        for f in summary["folds"]
    ]
    s = summary
    rows.append(
        f"| mean ± std | | | | {s['val_iou_mean']:.4f} ± {s['val_iou_std']:.4f} | "
        f"{s['val_dice_mean']:.4f} ± {s['val_dice_std']:.4f} | "
        f"{s['test_iou_mean']:.4f} ± {s['test_iou_std']:.4f} | "
        f"{s['test_dice_mean']:.4f} ± {s['test_dice_std']:.4f} | "
        f"{s['test_iou_pooled_mean']:.4f} ± {s['test_iou_pooled_std']:.4f} |"
    )
    return head + "\n".join(rows) + "\n"


# --------------------------------------------------------------------------- evaluate


def evaluate_predictor(
    predictor: Predictor,
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
    parts: list[M.Counts] = []
    preds: list[np.ndarray] = []
    t0 = time.perf_counter()
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        for s, p in zip(chunk, predictor.predict_batch([s.image for s in chunk]), strict=True):
            parts.append(M.confusion(p, s.mask))
            preds.append(p)
    seconds = time.perf_counter() - t0
    counts = M.concat(parts)
    summary = M.summarize(counts)
    summary["ms_per_image"] = 1000 * seconds / max(1, len(samples))
    summary.update(about or {})
    per = M.per_image(counts)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", *per, "tp", "fp", "fn", "tn"])
    for j, s in enumerate(samples):
        w.writerow([s.id, *(f"{per[k][j]:.6f}" for k in per), counts.tp[j], counts.fp[j],
                    counts.fn[j], counts.tn[j]])  # fmt: skip
    atomic_write_bytes(out / "per_image.csv", buf.getvalue().encode())
    atomic_write_bytes(out / SUMMARY_JSON, json.dumps(summary, indent=2).encode())
    worst = np.argsort(per["iou"], kind="stable")[:n_worst]
    if len(worst):
        image_grid(
            [
                [samples[j].image, mask_rgb(samples[j].mask), overlay(samples[j].image, preds[j])]
                for j in worst
            ],  # fmt: skip
            ["image", "truth", "prediction"],
            [f"{samples[j].id[:28]}\nIoU {per['iou'][j]:.3f}" for j in worst],
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


# --------------------------------------------------------------------------- predict


@dataclass
class PredictResult:
    written: list[Path]
    failed: list[tuple[Path, str]]


def predict_paths(
    segment,
    inputs: list[str | Path],
    output_dir: str | Path,
    overlay_images: bool = False,
    progress: bool = True,
) -> PredictResult:
    """Write DIR/<stem>.png (0/255 mask at the input's size) for every readable input.

    Files found inside a sub-folder of a folder input go to the same sub-folder of DIR; a
    second input with a name already written (``a.jpg`` beside ``a.png``) gets its extension
    in the name (``a_png.png``) rather than overwrite the first.
    ``segment`` is any callable image -> bool mask (a Predictor's predict, a classical method).
    Unreadable files are logged and listed in the result; the rest go on.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = PredictResult([], [])
    used: set[Path] = set()
    items = collect_inputs(inputs)
    bar = tqdm(items, desc="predict", unit="img", disable=not progress or len(items) < 2)
    for path, name in bar:
        try:
            image = read_image(path)
        except ImageReadError as exc:
            log.warning("skipped: %s", exc)
            result.failed.append((path, exc.reason))
            continue
        if name in used:
            name = name.with_name(f"{name.name}_{path.suffix.lstrip('.').lower()}")
            log.warning("%s: output name taken by an earlier input; writing %s.png", path, name)
        used.add(name)
        mask = segment(image)
        result.written.append(write_mask(out / f"{name}.png", mask))
        if overlay_images:
            write_rgb(out / f"{name}_overlay.jpg", overlay(image, mask))
    return result
