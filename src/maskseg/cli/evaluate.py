"""Commands that score models: ``evaluate``, ``compare`` and ``tune-baselines``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskseg.cli.common import (
    METHODS,
    AddCommand,
    add_model_args,
    load_predictor,
    model_file,
    non_negative_int,
    refuse_overwrite,
)
from maskseg.files import make_parents, report_folder

HELDOUT_DEFAULT = "unet-msfd-heldout, the shipped model's twin that never saw the test split"


def _heldout_by_default(a: argparse.Namespace) -> None:
    """No --model: the held-out twin (the default model saw every pair, so it has no test
    split to be scored on)."""
    from maskseg.pipeline.predictor import HELDOUT_MODEL

    if a.model is None:
        a.model = HELDOUT_MODEL


def cmd_evaluate(a: argparse.Namespace) -> int:
    from maskseg.evaluate.evaluation import (
        REPORT_FILES,
        NoPairsError,
        evaluate_model,
        format_summary_table,
    )
    from maskseg.evaluate.presence_rates import MIN_COVERAGE

    _heldout_by_default(a)
    out = a.output or Path("maskseg-eval")
    refuse_overwrite(
        [out, *(out / name for name in REPORT_FILES)], [model_file(a), a.splits], a.data, a.faces
    )
    drawn = REPORT_FILES if a.worst else [n for n in REPORT_FILES if n != "worst_cases.png"]
    report_folder(out, a.data, REPORT_FILES, drawn)
    predictor = load_predictor(a)
    try:
        s = evaluate_model(
            predictor,
            a.data,
            a.split,
            out,
            faces=a.faces,
            splits_file=a.splits,
            n_worst=a.worst,
            model=a.model,
        )
    except NoPairsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    scored = "n_images" in s
    if scored:
        print(
            f"{a.split} split of {a.data} (split seed {s['split_seed']}): "
            f"{int(s['n_images'])} images\n"
            f"{format_summary_table(s)}"
        )
    else:
        print(
            f"the {a.split} split of {a.data} holds no pairs for this model (it was trained "
            f"on every pair); face photos only"
        )
    if "faces" in s:
        f = s["faces"]
        print(
            f"faces ({a.split} split of {a.faces}): false-mask rate {f['false_mask_rate']:.4f} "
            f"of {f['n_without_mask']} unmasked, found rate {f['found_rate']:.4f} of "
            f"{f['n_with_mask']} masked (mask > {MIN_COVERAGE:.0%} of the crop)"
        )
    if s.get("skipped"):
        print(
            f"not scored: {len(s['skipped'])} pair(s) of the {a.split} split "
            f"({', '.join(k['id'] for k in s['skipped'][:5])}"
            f"{', ...' if len(s['skipped']) > 5 else ''}; reasons in summary.json)"
        )
    drawn = ", worst_cases.png" if a.worst else ""
    print(f"written: {out}/summary.json" + (f", per_image.csv{drawn}" if scored else ""))
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from maskseg.config import DataConfig
    from maskseg.evaluate.compare import run_compare
    from maskseg.pipeline.predictor import HELDOUT_MODEL

    _heldout_by_default(a)
    reports = ("results.json", "results.md", "per_image.csv", "bar_chart.png", "examples.png")
    files = [a.tuned] + ([] if a.no_unet else [model_file(a)])
    refuse_overwrite([a.output, *(a.output / name for name in reports)], files, a.data)
    from maskseg.pipeline.annotate import pyplot

    try:  # the bar chart needs matplotlib (the [train] extra): say so before the work
        pyplot()
        chart = True
    except ImportError as exc:
        chart = False
        print(f"warning: no bar_chart.png: {exc}; the rest is written", file=sys.stderr)
    left_out = {"bar_chart.png": not chart, "examples.png": not a.examples}
    drawn = [n for n in reports if not left_out.get(n)]
    report_folder(a.output, a.data, reports, drawn)
    predictor = None if a.no_unet else load_predictor(a)
    if predictor is not None:
        if predictor.config.data.test_fraction == 0:
            raise ValueError(
                f"{a.model}: trained on every pair of its data (no held-out test split), so "
                f"compare cannot score it fairly; use --model {HELDOUT_MODEL} or a model "
                f"trained with a test split"
            )
        if a.split_seed is not None and a.split_seed != predictor.config.data.seed:
            raise ValueError(
                f"--split-seed {a.split_seed} differs from the model's split seed "
                f"{predictor.config.data.seed}; the U-Net is scored on its own split"
            )
        d = predictor.config.data
    else:
        d = DataConfig(seed=a.split_seed or 0)
    tuned: bool | Path = a.tuned if a.tuned else True
    run_compare(
        a.data,
        a.output,
        predictor=predictor,
        methods=a.methods,
        n_examples=a.examples,
        data_config=d,
        tuned=tuned,
        chart=chart,
    )
    print((Path(a.output) / "results.md").read_text())
    return 0


def cmd_tune_baselines(a: argparse.Namespace) -> int:
    from maskseg.config import DataConfig
    from maskseg.evaluate.baselines.tune import tune_baselines

    if a.output.suffix.lower() != ".json" or a.output.is_dir():
        raise ValueError(f"--output {a.output}: give a .json file for the parameters")
    refuse_overwrite([a.output], [], a.data)  # never one of the pairs tuned on
    make_parents(a.output)
    d = DataConfig(seed=a.split_seed)
    result = tune_baselines(a.data, a.output, methods=a.methods, data_config=d)
    for name, m in result["methods"].items():
        print(f"{name:<10} train IoU {m['train_iou']:.4f}  {m['params']}")
    print(f"written: {a.output}; use it with `maskseg compare --tuned {a.output}`")
    return 0


def add_evaluate(add: AddCommand) -> None:
    p = add("evaluate", "score a model on a split of a data folder (the model's own split)")
    p.add_argument("--data", required=True, help="data folder (MSFD layout or images/ + masks/)")
    add_model_args(p, default=HELDOUT_DEFAULT)
    p.add_argument(
        "--split", choices=["test", "trainval", "all"], default="test", help="which pairs to score"
    )
    p.add_argument(
        "--splits",
        type=Path,
        help="splits.json of the model's run (checked "
        "against the model's split settings); default: remade from them",
    )
    p.add_argument("--output", type=Path, help="report folder (default: ./maskseg-eval)")
    p.add_argument(
        "--worst",
        type=non_negative_int,
        default=8,
        help="worst cases drawn in worst_cases.png (0: none)",
    )
    p.add_argument(
        "--faces",
        type=Path,
        help="face crops from `maskseg data faces`: also "
        "report false-mask and found rates on the same split of them",
    )
    p.set_defaults(func=cmd_evaluate)


def add_compare(add: AddCommand) -> None:
    p = add("compare", "U-Net vs classical methods on the test split (the U-Net's own split)")
    p.add_argument("--data", required=True, help="data folder (MSFD layout or images/ + masks/)")
    p.add_argument("--output", required=True, type=Path, help="report folder")
    add_model_args(p, default=HELDOUT_DEFAULT)
    p.add_argument(
        "--methods",
        nargs="*",
        choices=METHODS,
        metavar="METHOD",
        help=f"classical methods to include (default: all: {', '.join(METHODS)})",
    )
    p.add_argument(
        "--tuned",
        type=Path,
        help="classical parameters from `maskseg "
        "tune-baselines` (default: the shipped ones, tuned on split seed 0)",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        help="split seed with --no-unet (default: 0); with a U-Net its own split is used",
    )
    p.add_argument("--examples", type=int, default=8, help="faces in the example grid")
    p.add_argument("--no-unet", action="store_true", help="classical methods only")
    p.set_defaults(func=cmd_compare)


def add_tune_baselines(add: AddCommand) -> None:
    p = add("tune-baselines", "grid-search classical methods on the training split")
    p.add_argument("--data", required=True, help="data folder (MSFD layout or images/ + masks/)")
    p.add_argument("--output", required=True, type=Path, help="JSON file for the parameters")
    p.add_argument(
        "--methods",
        nargs="*",
        choices=METHODS,
        metavar="METHOD",
        help=f"methods to tune (default: all: {', '.join(METHODS)})",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="seed of the split whose training part is tuned on",
    )
    p.set_defaults(func=cmd_tune_baselines)


COMMANDS = {
    "evaluate": add_evaluate,
    "compare": add_compare,
    "tune-baselines": add_tune_baselines,
}
