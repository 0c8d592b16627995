"""Command-line interface: parse, build a config, call one library function."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from maskseg import __version__

log = logging.getLogger("maskseg")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="data folder (MSFD layout or images/ + masks/)")
    p.add_argument("--output", required=True, type=Path, help="run folder")
    p.add_argument("--config", type=Path, help="YAML config; flags below override it")
    p.add_argument(
        "--resume", action="store_true", help="continue from the run folder's checkpoint"
    )
    p.add_argument("--image-size", type=int)
    p.add_argument("--folds", type=int)
    p.add_argument("--test-fraction", type=float)
    p.add_argument(
        "--group-regex", help="regex whose group 1 is the person/photo key of a file name"
    )
    p.add_argument("--seed", type=int, help="seed for splits, initialisation and augmentation")
    p.add_argument("--base-channels", type=int)
    p.add_argument("--depth", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--patience", type=int)
    p.add_argument("--augment", choices=["none", "standard", "strong"], help="augmentation preset")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, help="torch CPU threads (0: torch's default)")
    p.add_argument("--workers", type=int, help="data loader worker processes")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--checkpoint-interval", type=float, default=60.0,
        help="seconds between mid-epoch checkpoints (default 60)",
    )  # fmt: skip


def _config_from_args(a: argparse.Namespace):
    from maskseg.config import Config, load_config

    cfg = load_config(a.config) if a.config else Config()
    seed = a.seed
    cfg = cfg.replace(
        "data", root=str(a.data), image_size=a.image_size, folds=a.folds,
        test_fraction=a.test_fraction, group_regex=a.group_regex, seed=seed,
    )  # fmt: skip
    cfg = cfg.replace("model", base_channels=a.base_channels, depth=a.depth)
    return cfg.replace(
        "train", epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, patience=a.patience,
        augment=a.augment, precision=a.precision, device=a.device,
        threads=a.threads, num_workers=a.workers, seed=seed,
        progress=False if a.no_progress else None,
    )  # fmt: skip


def cmd_train(a: argparse.Namespace) -> int:
    from maskseg.workflows import format_summary_table, train_run

    s = train_run(_config_from_args(a), a.output, a.val_fold, a.resume, a.checkpoint_interval)
    print(f"best epoch {s['best_epoch']} of {s['epochs_run']}; weights: {s['weights']}")
    for part in ("val", "test"):
        if s[part]:
            print(f"\n{part} ({s['n_' + part]} images)\n{format_summary_table(s[part])}")
    return 0


def cmd_cv(a: argparse.Namespace) -> int:
    from maskseg.workflows import cross_validate, format_cv_table

    s = cross_validate(_config_from_args(a), a.output, a.resume, a.checkpoint_interval, a.only_fold)
    if not s.get("complete", True):
        done = [f["fold"] for f in s["folds"]]
        print(f"folds finished so far: {done}; rerun with --resume when all are done")
        return 0
    print(format_cv_table(s))
    print(f"written: {a.output / 'summary.json'}, {a.output / 'cv_results.md'}")
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from maskseg.data import Splits
    from maskseg.inference import Predictor
    from maskseg.workflows import evaluate_predictor, format_summary_table, load_dataset

    predictor = Predictor.load(a.model, device=a.device, threshold=a.threshold)
    cfg = predictor.config.replace("data", root=str(a.data))  # the model's own split settings
    data = load_dataset(cfg)
    splits = Splits.load(a.splits) if a.splits else data.splits
    ids = {"test": splits.test, "trainval": splits.trainval, "all": sorted(data.samples)}[a.split]
    samples = data.take(ids)
    if not samples:
        print(f"error: the {a.split} split of {a.data} holds no readable pairs", file=sys.stderr)
        return 1
    out = a.output or Path("maskseg-eval")
    about = {"split": a.split, "data": str(a.data), "model": str(a.model or "default")}
    summary = evaluate_predictor(predictor, samples, out, n_worst=a.worst, about=about)
    print(f"{a.split} split of {a.data}: {len(samples)} images\n{format_summary_table(summary)}")
    print(f"written: {out}/summary.json, per_image.csv, worst_cases.png")
    return 0


def _segmenter(a: argparse.Namespace):
    if a.method == "unet":
        from maskseg.inference import Predictor

        return Predictor.load(a.model, device=a.device, threshold=a.threshold).predict
    from maskseg.baselines import get_method

    return get_method(a.method).predict


def cmd_predict(a: argparse.Namespace) -> int:
    from maskseg.workflows import predict_paths

    res = predict_paths(_segmenter(a), a.inputs, a.output, a.overlay, not a.no_progress)
    print(f"wrote {len(res.written)} mask(s) to {a.output}")
    for path, why in res.failed:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if not res.written and not res.failed:
        print("error: no input images found", file=sys.stderr)
        return 1
    return 1 if res.failed else 0


def cmd_data_check(a: argparse.Namespace) -> int:
    from maskseg.data import check_data

    report = check_data(a.root)
    print(report.to_json() if a.json else report.format())
    return 0 if report.ok else 1


def cmd_compare(a: argparse.Namespace) -> int:
    from maskseg.compare import run_compare
    from maskseg.inference import Predictor

    predictor = None if a.no_unet else Predictor.load(a.model, device=a.device)
    run_compare(a.data, a.output, predictor=predictor, n_examples=a.examples)
    print((Path(a.output) / "results.md").read_text())
    return 0


def cmd_tune_baselines(a: argparse.Namespace) -> int:
    from maskseg.baselines.tune import tune_baselines

    result = tune_baselines(a.data, a.output, methods=a.methods)
    for name, m in result["methods"].items():
        print(f"{name:<10} train IoU {m['train_iou']:.4f}  {m['params']}")
    print(f"written: {a.output}; use it with get_method(name, tuned=PATH)")
    return 0


def cmd_pack(a: argparse.Namespace) -> int:
    from maskseg.checkpoint import combine_weights

    cfg, _ = combine_weights(a.models, a.output, a.flip, a.half)
    size = a.output.stat().st_size / 1e6
    print(f"wrote {a.output} ({size:.1f} MB): {cfg.model.members} member(s), "
          f"flip TTA {cfg.model.flip_tta}, float16 {a.half}")  # fmt: skip
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from maskseg.checkpoint import load_weights
    from maskseg.inference import DEFAULT_MODEL, available_models
    from maskseg.models import list_models

    print("architectures:", ", ".join(list_models()))
    for name, path in available_models().items():
        _, cfg, metrics = load_weights(path)
        tag = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{tag}: {path}\n  model {dataclasses.asdict(cfg.model)}, "
              f"input {cfg.data.image_size}px, metrics {metrics}")  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"maskseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a U-Net (validation = one fold; test held out)")
    _add_config_args(p)
    p.add_argument(
        "--val-fold", type=int, default=0,
        help="fold used for validation/early stopping; -1 trains on all non-test pairs",
    )  # fmt: skip
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("cv", help="K-fold cross-validation with a held-out test split")
    _add_config_args(p)
    p.add_argument(
        "--only-fold", type=int, action="append",
        help="train only this fold (repeatable): run folds in parallel processes",
    )  # fmt: skip
    p.set_defaults(func=cmd_cv)

    def add_model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--model", help="weights (.safetensors) or checkpoint (.pt); default: shipped"
        )
        p.add_argument("--device", default="auto")
        p.add_argument("--threshold", type=float, default=0.5, help="mask probability threshold")

    p = sub.add_parser("evaluate", help="score a model on a data folder's split")
    p.add_argument("--data", required=True)
    add_model_args(p)
    p.add_argument("--split", choices=["test", "trainval", "all"], default="test")
    p.add_argument(
        "--splits", type=Path, help="splits.json of a run (default: remade from the model's config)"
    )
    p.add_argument("--output", type=Path, help="report folder (default ./maskseg-eval)")
    p.add_argument("--worst", type=int, default=8, help="worst cases to draw")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="write DIR/<stem>.png masks for images and folders")
    p.add_argument("inputs", nargs="+", help="image files and/or folders")
    p.add_argument("--output", required=True, type=Path)
    add_model_args(p)
    p.add_argument("--method", default="unet", help="unet (default) or a classical method name")
    p.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.jpg")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("compare", help="U-Net vs classical methods on the test split")
    p.add_argument("--data", required=True)
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--model", help="U-Net weights (default: shipped)")
    p.add_argument("--device", default="auto")
    p.add_argument("--examples", type=int, default=8, help="faces in the example grid")
    p.add_argument("--no-unet", action="store_true", help="classical methods only")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("tune-baselines", help="grid-search classical methods on the training split")
    p.add_argument("--data", required=True)
    p.add_argument("--output", required=True, type=Path, help="JSON file for the parameters")
    p.add_argument("--methods", nargs="*", help="subset of methods (default: all)")
    p.set_defaults(func=cmd_tune_baselines)

    p = sub.add_parser(
        "pack", help="pack trained model(s) into one weight file: ensemble, flip TTA, float16"
    )
    p.add_argument("models", nargs="+", help="weight files (.safetensors) or checkpoints (.pt)")
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--flip", action="store_true", help="add left-right flip test-time averaging")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("models", help="list architectures and shipped models")
    p.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="data utilities")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("check", help="validate pairs and report statistics")
    p.add_argument("root")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
