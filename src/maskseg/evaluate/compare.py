"""U-Net vs classical baselines on the held-out test split: numbers, a chart and examples.

Every method sees the same test images (the test ids of the U-Net's own split) and is scored at the
ground truth's resolution with ``maskseg.evaluate.metrics``; the classical methods use the
parameters tuned on the training split. Speed is the median wall time of one ``predict`` call
per image, after one untimed warm-up call (so model loading and lazy initialisation are not
counted).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import platform
from pathlib import Path
from typing import Any

import numpy as np

from maskseg.config import DataConfig
from maskseg.console import cpu_description
from maskseg.data.pairs import Sample
from maskseg.data.splits import load_split
from maskseg.evaluate.baselines import TUNED_PARAMS, get_method, list_methods, load_tuned
from maskseg.evaluate.metrics import METRIC_NAMES, per_image
from maskseg.evaluate.scoring import Scored, Segmenter, score
from maskseg.files import atomic_write_bytes
from maskseg.pipeline.annotate import image_grid, overlay, pyplot, save_fig

log = logging.getLogger(__name__)

UNET = "unet"
TABLE_METRICS = ("iou", "dice", "precision", "recall")


def example_ids(samples: list[Sample], n: int) -> list[str]:
    """``n`` ids spread evenly over the sorted test ids (deterministic, not cherry-picked)."""
    ids = sorted(s.id for s in samples)
    if n <= 0:
        return []
    picks = np.unique(np.linspace(0, len(ids) - 1, min(n, len(ids))).round().astype(int))
    return [ids[i] for i in picks]


def method_summary(name: str, run: Scored, segmenter: Any) -> dict[str, Any]:
    """A method's row: ``summarize`` keys, ms_median, ms_mean and its parameters."""
    out: dict[str, Any] = {"method": name, **run.summary()}
    params = getattr(segmenter, "params", None)
    if dataclasses.is_dataclass(params):
        out["params"] = dataclasses.asdict(params)
    return out


def check_tuned_split(
    tuned: bool | str | Path, d: DataConfig, methods: list[str] | None = None
) -> None:
    """Refuse classical parameters tuned on another split: their tuning images could be test
    images of this one, and the comparison would flatter them; and a tuned file that holds no
    parameters for one of ``methods`` (it would run on its defaults under a report that says
    every method was tuned)."""
    source = TUNED_PARAMS if tuned is True else tuned
    if not source:
        return
    stored = load_tuned(source)
    missing = [m for m in methods or [] if m not in stored.get("methods", {})]
    if missing:
        raise ValueError(
            f"{source} holds no tuned parameters for {', '.join(missing)}: tune them too "
            f"(maskseg tune-baselines --methods {' '.join(missing)} ...) or leave them out "
            "of --methods"
        )
    split = stored.get("split", {})
    mine = {"seed": d.seed, "test_fraction": d.test_fraction, "group_regex": d.group_regex}
    diff = [f"{k}: {split[k]!r} vs {v!r}" for k, v in mine.items() if k in split and split[k] != v]
    if diff:
        raise ValueError(
            f"{source}: the classical parameters were tuned on another split than the one "
            f"evaluated here ({'; '.join(diff)}). Tune them on this split first: maskseg "
            f"tune-baselines --data DATA --split-seed {d.seed} --output tuned.json, then "
            "pass --tuned tuned.json"
        )


def machine(predictor: Any | None) -> str:
    """Where the timings were taken: they mean nothing without it."""
    text = f"{platform.system()} {platform.machine()}, {cpu_description()}"
    describe = getattr(predictor, "describe", None)
    return text if describe is None else f"{text}; U-Net: {describe()}"


def gap_line(summaries: list[dict[str, Any]]) -> str:
    """One sentence: how far the U-Net is ahead of (or behind) the best classical method."""
    classical = [s for s in summaries if s["method"] != UNET]
    unet = next((s for s in summaries if s["method"] == UNET), None)
    if not classical:
        return "No classical method was evaluated."
    best = max(classical, key=lambda s: s["iou"])
    if unet is None:
        return (
            f"No U-Net evaluated; best classical method: {best['method']} "
            f"(mean IoU {best['iou']:.3f})."
        )
    gap = unet["iou"] - best["iou"]
    return (
        f"Gap: the U-Net's mean IoU is {unet['iou']:.3f} vs {best['iou']:.3f} for the best "
        f"classical method ({best['method']}), a difference of {gap:+.3f} IoU "
        f"({gap / max(best['iou'], 1e-9):+.1%}); Dice {unet['dice']:.3f} vs {best['dice']:.3f}."
    )


def markdown_table(summaries: list[dict[str, Any]]) -> str:
    head = "| method | " + " | ".join(TABLE_METRICS) + " | ms/image (median) |"
    lines = [head, "|" + "---|" * (len(TABLE_METRICS) + 2)]
    for s in summaries:
        cells = [f"{s[m]:.3f} ± {s[m + '_std']:.3f}" for m in TABLE_METRICS]
        lines.append(f"| {s['method']} | " + " | ".join(cells) + f" | {s['ms_median']:.1f} |")
    return "\n".join(lines)


def write_markdown(path: Path, result: dict[str, Any]) -> None:
    split = result["split"]
    skipped = split["skipped"]
    lines = [
        "# U-Net vs classical baselines (test split)",
        "",
        f"Data: `{split['data_root']}`, {split['n_pairs']} pairs; grouped split "
        f"(test_fraction {split['test_fraction']}, seed {split['seed']}): "
        f"**{split['n_test']} test images** evaluated, {len(skipped)} skipped.",
        "Scores: mean ± std over images at the ground truth's resolution "
        "(maskseg.evaluate.metrics). "
        "ms/image: median wall time of one predict call, after one warm-up call, on "
        f"{result['machine']}. Classical parameters were tuned on the training split only.",
        "",
        markdown_table(result["methods"]),
        "",
        result["gap"],
        "",
    ]
    lines += [f"- skipped `{pid}`: {reason}" for pid, reason in skipped]
    atomic_write_bytes(path, "\n".join(lines).encode())


def write_per_image_csv(path: Path, runs: dict[str, Scored]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "id", *METRIC_NAMES, "ms"])
    for name, run in runs.items():
        values = per_image(run.counts)
        for i, pid in enumerate(run.ids):
            row = [f"{values[m][i]:.4f}" for m in METRIC_NAMES]
            writer.writerow([name, pid, *row, f"{run.ms[i]:.2f}"])
    atomic_write_bytes(path, buf.getvalue().encode())


def write_bar_chart(path: Path, summaries: list[dict[str, Any]]) -> None:
    """Grouped bars: one group per method, one bar per metric, std as error bars."""
    plt = pyplot()
    names = [s["method"] for s in summaries]
    x = np.arange(len(names))
    width = 0.8 / len(TABLE_METRICS)
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 3.8))
    for k, metric in enumerate(TABLE_METRICS):
        ax.bar(
            x + (k - (len(TABLE_METRICS) - 1) / 2) * width,
            [s[metric] for s in summaries],
            width,
            yerr=[s[metric + "_std"] for s in summaries],
            capsize=2,
            label=metric,
        )
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean over test images")
    ax.set_title("Test split: mean ± std per image")
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(1.0, 0.0), frameon=False)
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)


def write_examples(
    path: Path, samples: list[Sample], runs: dict[str, Scored], ids: list[str]
) -> None:
    """Rows of image | truth | each method's mask (overlaid) for the example ids."""
    by_id = {s.id: s for s in samples}
    rows = []
    for pid in ids:
        s = by_id[pid]
        masks = [overlay(s.image, r.masks[pid]) for r in runs.values()]
        rows.append([s.image, overlay(s.image, s.mask), *masks])
    titles = ["image", "truth", *runs]
    image_grid(rows, titles, [pid[-24:] for pid in ids], path)


def run_compare(
    data_root: str | Path,
    output_dir: str | Path,
    predictor: Segmenter | None = None,
    methods: list[str] | None = None,
    n_examples: int = 8,
    data_config: DataConfig | None = None,
    tuned: bool | str | Path = True,
    chart: bool = True,
) -> dict[str, Any]:
    """Evaluate the U-Net and the classical methods on the test split and write a report.

    Args:
        data_root: MSFD or plain-layout folder.
        output_dir: receives results.md, results.json, per_image.csv, bar_chart.png and
            examples.png (created if missing).
        predictor: anything with ``predict_batch(images) -> masks``, reported as "unet";
            None compares the classical methods only.
        methods: classical methods to include; None for all of ``list_methods()``.
        n_examples: rows in examples.png (test ids spread evenly; 0 for none).
        data_config: split settings: the U-Net's own (``predictor.config.data``), so it is
            scored on the test split it was trained without; None is the canonical split.
        tuned: passed to ``get_method`` (True: shipped tuned parameters); refused when they
            were tuned on another split.
        chart: write bar_chart.png (it needs matplotlib, the ``train`` extra).

    Returns:
        The dict written to results.json: per-method summaries (``summarize`` keys, ms_median,
        ms_mean, params), the gap sentence and the split description.
    """
    d = DataConfig() if data_config is None else data_config
    names = list_methods() if methods is None else list(methods)
    segmenters: dict[str, Any] = {n: get_method(n, tuned=tuned) for n in names}
    if names:
        check_tuned_split(tuned, d, names)
    if predictor is not None:
        segmenters = {UNET: predictor, **segmenters}
    data = load_split(data_root, d, "test")
    samples = data.take(data.splits.test)
    if not samples:
        raise ValueError(f"{data_root}: no readable test pairs (skipped {len(data.skipped)})")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = example_ids(samples, n_examples)
    runs: dict[str, Scored] = {}
    summaries = []
    for name, seg in segmenters.items():
        runs[name] = score(seg, samples, timed=True, keep=set(shown))
        summaries.append(method_summary(name, runs[name], seg))
        log.info("%s: mean IoU %.4f", name, summaries[-1]["iou"])
    result = {
        "split": {
            "data_root": str(data_root),
            "n_pairs": data.n_pairs,
            "n_test": len(samples),
            "test_ids": [s.id for s in samples],
            "skipped": data.skipped,
            "test_fraction": d.test_fraction,
            "folds": d.folds,
            "seed": d.seed,
            "group_regex": d.group_regex,
        },
        "timing": "ms_median / ms_mean: wall time of one predict call per image, after one "
        "warm-up call",
        "machine": machine(predictor),
        "methods": summaries,
        "gap": gap_line(summaries),
    }
    atomic_write_bytes(out / "results.json", (json.dumps(result, indent=1) + "\n").encode())
    write_markdown(out / "results.md", result)
    write_per_image_csv(out / "per_image.csv", runs)
    if chart:
        write_bar_chart(out / "bar_chart.png", summaries)
    if shown:
        write_examples(out / "examples.png", samples, runs, shown)
    return result
