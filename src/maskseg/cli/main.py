"""Command-line interface: parse, build a config, call one library function.

Imports stay inside the commands, so ``maskseg predict`` never loads the training stack.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from maskseg import __version__
from maskseg.config import Config, DataConfig, InferConfig, ModelConfig, TrainConfig
from maskseg.console import setup_logging
from maskseg.io import DEFAULT_MAX_PIXELS
from maskseg.pipeline.scene import SCENE_SCORE_THRESHOLD

log = logging.getLogger("maskseg")

DESCRIPTION = (
    "maskseg: find the exact pixels of the face mask a person wears. Train and evaluate a "
    "U-Net on MSFD, compare it with classical methods, and segment photos."
)

# Classical method names, listed in --help without importing OpenCV code at start-up
# (tests check this list against maskseg.evaluate.baselines.list_methods()).
METHODS = ("prior", "otsu", "sauvola", "canny", "kmeans", "grabcut", "watershed")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Append "(default: X)" to an option's help unless it has none worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default is None or default is False or default == argparse.SUPPRESS:
            return text
        if action.option_strings and action.nargs != 0:
            return f"{text} (default: %(default)s)"
        return text


# (flag, config section, field, type, help): the flags that build a training Config. Their
# argparse default is None ("not given"), so a resumed run can tell given from defaulted.
CONFIG_FLAGS: list[tuple[str, str, str, Any, str]] = [
    ("--image-size", "data", "image_size", int, "network input side in px"),
    ("--folds", "data", "folds", int, "cross-validation folds"),
    ("--test-fraction", "data", "test_fraction", float, "share of pairs held out for testing"),
    (
        "--group-regex",
        "data",
        "group_regex",
        str,
        "regex whose group 1 is the person/photo key of a file name (grouped splits)",
    ),
    (
        "--split-seed",
        "data",
        "seed",
        int,
        "seed of the train/validation/test split (apart from --seed)",
    ),
    ("--base-channels", "model", "base_channels", int, "width of the U-Net's first stage"),
    ("--depth", "model", "depth", int, "U-Net downsampling steps"),
    (
        "--block",
        "model",
        "block",
        str,
        "U-Net conv block: double (3x3 conv twice) or separable (depthwise-separable, lighter)",
    ),
    ("--epochs", "train", "epochs", int, "training epochs"),
    ("--batch-size", "train", "batch_size", int, "images per training step"),
    ("--lr", "train", "lr", float, "peak learning rate (AdamW, warm-up then cosine)"),
    ("--patience", "train", "patience", int, "epochs without validation IoU gain before stopping"),
    (
        "--augment",
        "train",
        "augment",
        str,
        "augmentation preset: none, standard, strong or framing (detector-like crop jitter)",
    ),
    (
        "--precision",
        "train",
        "precision",
        str,
        "auto (bf16 where the CPU has it, AMP on CUDA), fp32, bf16 or fp16 (CUDA only)",
    ),
    ("--seed", "train", "seed", int, "seed of initialisation, batch order and augmentation"),
    ("--device", "train", "device", str, "auto, cpu, cuda, cuda:1, ..."),
    ("--threads", "train", "threads", int, "torch CPU threads (0: torch's default)"),
    ("--workers", "train", "num_workers", int, "data loader worker processes"),
]
_SECTIONS = {
    "data": DataConfig(),
    "model": ModelConfig(),
    "train": TrainConfig(),
    "infer": InferConfig(),
}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="data folder (MSFD layout or images/ + masks/)")
    p.add_argument("--output", required=True, type=Path, help="run folder")
    p.add_argument("--config", type=Path, help="YAML config; the flags below override it")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run folder's checkpoint; only --threads, "
        "--workers, --device, --data and --no-progress may change",
    )
    for flag, section, field, typ, text in CONFIG_FLAGS:
        default = getattr(_SECTIONS[section], field)
        kwargs: dict[str, Any] = {"type": typ, "help": f"{text} (default: {default})"}
        if field == "augment":
            kwargs["choices"] = ["none", "standard", "strong", "framing"]
        if field == "precision":
            kwargs["choices"] = ["auto", "fp32", "bf16", "fp16"]
        if field == "block":
            kwargs["choices"] = ["double", "separable"]
        p.add_argument(flag, dest=f"{section}__{field}", metavar=field.upper(), **kwargs)
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they show only on a terminal anyway)",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        default=60.0,
        help="seconds between mid-epoch checkpoints",
    )


def _overrides(a: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The options given on the command line (and in --config), by config section."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    if a.config:
        with open(a.config, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
        Config.from_dict(raw)  # unknown sections or options fail here, by name
        out = {section: dict(values or {}) for section, values in raw.items()}
    for key, value in vars(a).items():
        if "__" in key and value is not None:
            section, field = key.split("__", 1)
            out.setdefault(section, {})[field] = value
    out.setdefault("data", {})["root"] = str(a.data)
    if a.no_progress:
        out.setdefault("train", {})["progress"] = False
    return out


def _config(a: argparse.Namespace) -> tuple[Config, dict[str, dict[str, Any]]]:
    overrides = _overrides(a)
    return Config().merge(overrides), overrides


def cmd_train(a: argparse.Namespace) -> int:
    from maskseg.train.workflows import format_summary_table, train_run

    cfg, given = _config(a)
    s = train_run(cfg, a.output, a.val_fold, a.resume, a.checkpoint_interval, given)
    print(f"best epoch {s['best_epoch']} of {s['epochs_run']}; weights: {s['weights']}")
    for part in ("val", "test"):
        if s[part]:
            print(f"\n{part} ({s['n_' + part]} images)\n{format_summary_table(s[part])}")
    return 0


def cmd_cv(a: argparse.Namespace) -> int:
    from maskseg.train.workflows import cross_validate, format_cv_table

    cfg, given = _config(a)
    s = cross_validate(cfg, a.output, a.resume, a.checkpoint_interval, a.only_fold, given)
    if not s.get("complete", True):
        done = [f["fold"] for f in s["folds"]]
        print(f"folds finished so far: {done}; rerun with --resume when all are done")
        return 0
    print(format_cv_table(s))
    print(f"written: {a.output / 'summary.json'}, {a.output / 'cv_results.md'}")
    return 0


def _predictor(a: argparse.Namespace):
    from maskseg.pipeline.predictor import Predictor

    options = {"device": a.device} if a.device != "auto" else {}
    return Predictor.load(a.model, backend=a.backend, threshold=a.threshold, **options)


def _refuse_overwrite(
    outputs: list[Path], files: list[Any], data: Any = None, faces: Path | None = None
) -> None:
    """Refuse, before any work, outputs that are input files of the command: ``files`` (a
    model, splits, parameters), the image/mask pairs of ``data`` and the crops and index of
    ``faces``. Inputs that cannot be listed are left to the command's own errors."""
    from maskseg.files import refuse_overwrite

    inputs = [Path(f) for f in files if f]
    if data is not None:
        from maskseg.data.pairs import find_pairs

        try:
            inputs += [f for pair in find_pairs(data).pairs for f in (pair.image, pair.mask)]
        except OSError:
            pass
    if faces is not None:
        from maskseg.data.faces import INDEX, load_index

        try:
            inputs += [faces / e.crop for e in load_index(faces) if e.crop]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        inputs.append(faces / INDEX)
    refuse_overwrite(outputs, inputs)


def _model_file(a: argparse.Namespace) -> Path | None:
    """The file --model names (None when it cannot be found: loading it reports that)."""
    from maskseg.pipeline.predictor import resolve_model_path

    try:
        return resolve_model_path(a.model, backend=a.backend)
    except (FileNotFoundError, ValueError):
        return None


def cmd_evaluate(a: argparse.Namespace) -> int:
    import json

    from maskseg.data.splits import Splits, load_split
    from maskseg.evaluate.evaluation import evaluate_predictor, format_summary_table
    from maskseg.files import atomic_write_bytes

    out = a.output or Path("maskseg-eval")
    reports = [out, *(out / name for name in ("summary.json", "per_image.csv", "worst_cases.png"))]
    _refuse_overwrite(reports, [_model_file(a), a.splits], a.data, a.faces)
    predictor = _predictor(a)
    d = predictor.config.data  # the model's own split settings: it never saw their test ids
    data = load_split(a.data, d, a.split, Splits.load(a.splits) if a.splits else None)
    ids = {"test": data.splits.test, "trainval": data.splits.trainval, "all": sorted(data.samples)}[
        a.split
    ]
    samples = data.take(ids)
    if not samples and not a.faces:
        hint = ""
        if a.split == "test" and d.test_fraction == 0:
            hint = (
                " (the model was trained on every pair of its data, so it has no test split; "
                "--split all scores every pair, fair only on data it never saw, and "
                "--model unet-msfd-heldout is the shipped model's twin that held out "
                "the test split)"
            )
        print(
            f"error: the {a.split} split of {a.data} holds no readable pairs{hint}", file=sys.stderr
        )
        return 1
    about = {
        "split": a.split,
        "split_seed": d.seed,
        "data": str(a.data),
        "model": str(a.model or "default"),
        "test_ids": data.splits.test,
    }
    if a.faces:
        from maskseg.data.faces import face_splits, load_crops, load_index
        from maskseg.evaluate.presence_rates import MIN_COVERAGE, presence_rates

        fs = face_splits(load_index(a.faces), d)
        ids = {"test": fs.test, "trainval": fs.trainval, "all": fs.test + fs.trainval}[a.split]
        rates = presence_rates(predictor, load_crops(a.faces, ids)).as_dict()
        about["faces"] = {"folder": str(a.faces), "min_coverage": MIN_COVERAGE, **rates}
    if samples:
        summary = evaluate_predictor(predictor, samples, out, n_worst=a.worst, about=about)
        print(
            f"{a.split} split of {a.data} (split seed {d.seed}): {len(samples)} images\n"
            f"{format_summary_table(summary)}"
        )
    else:  # a model trained on every pair: no held-out pairs, only the photos' rates
        print(
            f"the {a.split} split of {a.data} holds no pairs for this model (it was trained "
            f"on every pair); face photos only"
        )
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "summary.json", json.dumps(about, indent=2).encode())
    if a.faces:
        f = about["faces"]
        print(
            f"faces ({a.split} split of {a.faces}): false-mask rate {f['false_mask_rate']:.4f} "
            f"of {f['n_without_mask']} unmasked, found rate {f['found_rate']:.4f} of "
            f"{f['n_with_mask']} masked (mask > {MIN_COVERAGE:.0%} of the crop)"
        )
    print(f"written: {out}/summary.json" + (", per_image.csv, worst_cases.png" if samples else ""))
    return 0


def cmd_gate(a: argparse.Namespace) -> int:
    from maskseg.train.workflows import gate_model

    _refuse_overwrite([a.output], [a.model], a.data, a.faces)
    s = gate_model(a.model, a.faces, a.data, a.output, a.val_fold)["gate"]
    print(
        f"gate fitted on {s['n_positive']} masked and {s['n_negative']} unmasked face crops "
        f"(training accuracy {s['train_accuracy']:.3f}); wrote {a.output}"
    )
    if "val" in s:
        v = s["val"]
        print(
            f"validation fold {a.val_fold}: false-mask rate {v['false_mask_rate']:.3f} "
            f"({v['n_without_mask']} unmasked faces), found rate {v['found_rate']:.3f} "
            f"({v['n_with_mask']} masked faces)"
        )
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from maskseg.cli.predict import predict_paths

    if a.method == "unet":
        segmenter = _predictor(a)
    else:
        from maskseg.evaluate.baselines import get_method

        segmenter = get_method(a.method)
    if a.scene:
        from maskseg.pipeline.scene import ScenePredictor

        if a.method != "unet":
            raise ValueError("--scene segments detected faces with the U-Net; drop --method")
        segmenter = ScenePredictor(segmenter, _scene_config(a))
    elif a.json:
        raise ValueError("--json describes the faces found with --scene; add --scene")

    def report(path: Path, reason: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"skipped {path}: {reason}", file=sys.stderr)

    res = predict_paths(
        segmenter,
        a.inputs,
        a.output,
        a.overlay,
        not a.no_progress,
        a.max_pixels,
        on_skip=report,
        write_json=a.json,
    )
    print(
        f"wrote {len(res.written)} mask(s) to {a.output}"
        + (f"; skipped {len(res.failed)} input(s), listed above" if res.failed else "")
    )
    if not res.written and not res.failed:
        print("error: no input images found", file=sys.stderr)
        return 1
    return 1 if res.failed else 0


def cmd_video(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from maskseg import video
    from maskseg.console import show_progress
    from maskseg.pipeline.scene import ScenePredictor

    if not (a.output or a.json or a.masks or a.show):
        raise ValueError("nothing to write: give --output, --json, --masks or --show")
    video.sinks.check_outputs(a.source, a.output, a.json, a.masks)  # before anything is opened
    with video.open_source(a.source) as source:  # a bad source fails before the model loads
        options = video.VideoOptions(detect_every=a.detect_every, smooth=not a.no_smooth)
        segmenter = video.VideoSegmenter(ScenePredictor(_predictor(a), _scene_config(a)), options)
        sinks: list[Any] = []
        try:
            if a.output:
                sinks.append(video.VideoFileSink(a.output, source.fps, source.size, a.codec))
            if a.json:
                sinks.append(video.JsonLinesSink(a.json))
            if a.masks:
                sinks.append(video.MaskFolderSink(a.masks))
            problem = video.gui_problem() if a.show else None
            if problem:
                print(f"warning: no preview window: {problem}", file=sys.stderr)
            elif a.show:
                sinks.append(video.PreviewSink())
        except BaseException:
            for sink in sinks:
                getattr(sink, "discard", sink.close)()
            raise
        bar = tqdm(
            total=source.frame_count,
            desc="video",
            unit="frame",
            disable=not show_progress(not a.no_progress),
        )
        with video.stop_on_signals() as stop:
            stats = video.run_video(
                source,
                segmenter,
                sinks,
                stop,
                a.max_frames,
                on_frame=lambda frame, result: bar.update(),
            )
        bar.close()
    written = ", ".join(str(p) for p in (a.output, a.json, a.masks) if p) or "nothing"
    stopped = f"; stopped by {stats.stopped}" if stats.stopped else ""
    print(f"{source.describe()}: wrote {written}{stopped}\n{stats.summary()}")
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    import os

    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401  (python-multipart: uploads)
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"maskseg serve needs the serve extra ({exc.name} is missing): "
            "pip install 'maskseg[serve]'"
        ) from None
    from maskseg.serve import Settings, run
    from maskseg.serve.settings import API_KEY_ENV, MB

    settings = Settings(
        host=a.host,
        port=a.port,
        model=a.model,
        backend=a.backend,
        threads=a.threads,
        workers=a.workers,
        api_key=a.api_key or os.environ.get(API_KEY_ENV) or None,
        max_upload_bytes=int(a.max_upload_mb * MB),
        max_batch_bytes=int(a.max_batch_mb * MB),
        max_batch_files=a.max_batch_files,
        max_pixels=a.max_pixels,
        max_in_flight=a.max_in_flight,
        queue=a.queue,
        queue_timeout_s=a.queue_timeout,
        timeout_s=a.timeout,
        upload_timeout_s=a.upload_timeout,
        min_upload_rate=int(a.min_upload_rate * 1000),
        max_pending_bytes=int(a.max_pending_mb * MB),
        retry_after_s=a.retry_after,
        header_timeout_s=a.header_timeout,
        keep_alive_s=a.keep_alive,
        max_connections=a.max_connections,
    )
    run(settings)
    return 0


def cmd_data_check(a: argparse.Namespace) -> int:
    from maskseg.data.pairs import check_data

    report = check_data(a.root)
    print(report.to_json() if a.json else report.format())
    return 0 if report.ok else 1


def cmd_data_faces(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from maskseg.console import show_progress
    from maskseg.data.faces import crop_faces

    bar = tqdm(desc="faces", unit="photo", disable=not show_progress(not a.no_progress))

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done + 1 - bar.n)

    entries = crop_faces(a.root, a.output, a.detector, progress)
    bar.close()
    ok = [e for e in entries if e.status == "ok"]
    for label in (True, False):
        part = [e for e in entries if e.mask == label]
        found = sum(e.status == "ok" for e in part)
        print(
            f"{'with' if label else 'without'}_mask: {len(part)} photos, face cut from "
            f"{found}, no face in {sum(e.status == 'no face' for e in part)}, unreadable "
            f"{sum(e.status not in ('ok', 'no face') for e in part)}"
        )
    print(f"wrote {len(ok)} crops and index.json to {a.output}")
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from maskseg.evaluate.compare import run_compare
    from maskseg.pipeline.predictor import HELDOUT_MODEL

    if a.model is None:  # the default model saw every pair: compare its held-out twin
        a.model = HELDOUT_MODEL
    reports = ("results.json", "results.md", "per_image.csv", "bar_chart.png", "examples.png")
    files = [a.tuned] + ([] if a.no_unet else [_model_file(a)])
    _refuse_overwrite([a.output, *(a.output / name for name in reports)], files, a.data)
    predictor = None if a.no_unet else _predictor(a)
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
    )
    print((Path(a.output) / "results.md").read_text())
    return 0


def cmd_tune_baselines(a: argparse.Namespace) -> int:
    from maskseg.evaluate.baselines.tune import tune_baselines

    d = DataConfig(seed=a.split_seed)
    result = tune_baselines(a.data, a.output, methods=a.methods, data_config=d)
    for name, m in result["methods"].items():
        print(f"{name:<10} train IoU {m['train_iou']:.4f}  {m['params']}")
    print(f"written: {a.output}; use it with `maskseg compare --tuned {a.output}`")
    return 0


def cmd_pack(a: argparse.Namespace) -> int:
    from maskseg.train.checkpoint import combine_weights

    cfg, _ = combine_weights(a.models, a.output, a.flip, a.half)
    size = a.output.stat().st_size / 1e6
    print(
        f"wrote {a.output} ({size:.1f} MB): {cfg.model.members} member(s), "
        f"flip TTA {cfg.model.flip_tta}, float16 {a.half}"
    )
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from maskseg.train.export import export_onnx

    report = export_onnx(
        a.model,
        a.output,
        int8=a.int8,
        data=a.data,
        calibration=a.calibration,
        exclude_fold=a.exclude_fold,
        method=a.calibration_method,
        opset=a.opset,
        exporter=a.exporter,
        parity_split="none" if a.no_parity else "test",
    )
    print(report.format())
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from maskseg.pipeline.modelfile import read_model_info
    from maskseg.pipeline.predictor import DEFAULT_MODEL, available_models, shipped_files

    try:
        from maskseg.models import list_models

        print("architectures:", ", ".join(list_models()))
    except ImportError:
        print("architectures: (install maskseg[train] to build and train them)")
    for name, path in available_models().items():
        cfg, info = read_model_info(path)
        tag = " (default)" if name == DEFAULT_MODEL else ""
        files = ", ".join(f"{p.name} ({backend})" for backend, p in shipped_files()[name].items())
        int8 = " (INT8)" if info.get("int8") == "yes" else ""
        print(
            f"{name}{tag}: {path}{int8}\n  files: {files}\n"
            f"  model {dataclasses.asdict(cfg.model)}, "
            f"input {cfg.data.image_size}px, threshold {cfg.infer.threshold}, "
            f"metrics {info.get('metrics', {})}"
        )
    return 0


def _add_detector_args(p: argparse.ArgumentParser, video: bool) -> None:
    """The face detector of ``predict --scene`` and ``video`` (read by ``_scene_config``)."""
    p.add_argument(
        "--detector",
        default="blazeface",
        help="face detector" if video else "face detector for --scene",
    )
    p.add_argument(
        "--detect-mode",
        default="tiles",
        choices=["frame", "tiles"],
        help=("full detection: " if video else "") + "frame: one pass (large "
        "faces); tiles: also overlapping tiles (small faces)",
    )
    p.add_argument(
        "--detect-threshold",
        type=float,
        default=SCENE_SCORE_THRESHOLD,
        help="minimum detection score of a new face"
        if video
        else "minimum detection score (low: the mask gate rejects non-masks)",
    )


def _scene_config(a: argparse.Namespace):
    from maskseg.pipeline.scene import SceneConfig

    return SceneConfig(detector=a.detector, mode=a.detect_mode, score_threshold=a.detect_threshold)


def _add_model_args(p: argparse.ArgumentParser, default: str = "the shipped unet-msfd") -> None:
    p.add_argument(
        "--model",
        help=f"shipped model name or model file (.onnx, .safetensors, .pt); default: {default}",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnx", "torch"],
        help="inference runtime: auto picks onnxruntime for a shipped model when "
        "installed, else PyTorch, and for a file the runtime that reads it; onnx "
        "reads .onnx files (`maskseg export`), torch .safetensors and .pt",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (PyTorch backend)")
    p.add_argument(
        "--threshold",
        type=float,
        help="mask probability threshold (default: the "
        "one stored with the model, 0.5 for the shipped one)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskseg", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"maskseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)

    p = add("train", "train a U-Net (validation = one fold; test split held out)")
    _add_config_args(p)
    p.add_argument(
        "--val-fold",
        type=int,
        default=0,
        help="fold used for validation and early "
        "stopping; -1 trains on all non-test pairs for every epoch",
    )
    p.set_defaults(func=cmd_train)

    p = add("cv", "K-fold cross-validation with a held-out test split")
    _add_config_args(p)
    p.add_argument(
        "--only-fold",
        type=int,
        action="append",
        metavar="K",
        help="train only this fold (repeatable): run folds in parallel processes, "
        "then gather them with --resume",
    )
    p.set_defaults(func=cmd_cv)

    p = add("evaluate", "score a model on a split of a data folder (the model's own split)")
    p.add_argument("--data", required=True, help="data folder (MSFD layout or images/ + masks/)")
    _add_model_args(p)
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
    p.add_argument("--worst", type=int, default=8, help="worst cases drawn in worst_cases.png")
    p.add_argument(
        "--faces",
        type=Path,
        help="face crops from `maskseg data faces`: also "
        "report false-mask and found rates on the same split of them",
    )
    p.set_defaults(func=cmd_evaluate)

    p = add("gate", "fit the mask-presence gate of a trained model on labelled face crops")
    p.add_argument("model", help="trained weight file (.safetensors) or checkpoint (.pt)")
    p.add_argument(
        "--faces",
        required=True,
        type=Path,
        help="face crops from `maskseg data faces` (their test split is never read)",
    )
    p.add_argument(
        "--data", required=True, help="the model's pairs (its training pairs are masked faces too)"
    )
    p.add_argument("--output", required=True, type=Path, help="the gated weight file")
    p.add_argument(
        "--val-fold",
        type=int,
        default=-1,
        help="fit on the other folds and report rates on this one; -1 fits on every non-test fold",
    )
    p.set_defaults(func=cmd_gate)

    p = add("predict", "write DIR/<stem>.png masks for image files and folders")
    p.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--output", required=True, type=Path, help="folder for the masks")
    _add_model_args(p)
    p.add_argument(
        "--method",
        default="unet",
        choices=["unet", *METHODS],
        help="segmenter: the U-Net or a classical method",
    )
    p.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.jpg")
    p.add_argument(
        "--scene",
        action="store_true",
        help="whole photos: detect faces, segment "
        "each face's crop, paste into one full-frame mask (default: the input is "
        "one face crop)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="with --scene: also write <stem>.json "
        "(per face: box, score, mask share of the box, mask or not)",
    )
    _add_detector_args(p, video=False)
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="images with more pixels are skipped as decompression bombs",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it shows only on a terminal anyway)",
    )
    p.set_defaults(func=cmd_predict)

    p = add(
        "video", "masks in a video file, camera or stream: annotated video, JSON lines, mask PNGs"
    )
    p.add_argument(
        "source", help="video file, camera index (0, 1, ...) or stream URL (rtsp://, http://, ...)"
    )
    p.add_argument("--output", type=Path, help="annotated video file (.mp4, .avi, .mkv)")
    p.add_argument(
        "--json",
        type=Path,
        help="JSON lines file: per frame its index, time (s) "
        "and faces (track id, box, score, mask share of the box)",
    )
    p.add_argument("--masks", type=Path, help="folder for each frame's mask as 000000.png, ...")
    p.add_argument(
        "--codec",
        choices=["h264", "mp4v"],
        help="h264 (PyAV: pip install "
        "'maskseg[video]'; plays in browsers) or mp4v (OpenCV); default: h264 when "
        "PyAV is installed, else mp4v",
    )
    p.add_argument(
        "--no-smooth", action="store_true", help="no averaging of each face's mask over frames"
    )
    p.add_argument(
        "--show",
        action="store_true",
        help="preview window (needs a display and an OpenCV with GUI; q quits)",
    )
    p.add_argument(
        "--detect-every",
        type=int,
        default=15,
        help="full detection every N frames; "
        "between them faces are re-detected around their last boxes",
    )
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    _add_model_args(p)
    _add_detector_args(p, video=True)
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it shows only on a terminal anyway)",
    )
    p.set_defaults(func=cmd_video)

    from maskseg.serve.settings import MB
    from maskseg.serve.settings import Settings as ServeSettings

    d = ServeSettings()  # the defaults, in one place (no web framework imported here)
    p = add(
        "serve",
        "HTTP API and web page: upload photos (or use a webcam), get masks back "
        "(needs maskseg[serve])",
    )
    p.add_argument(
        "--host", default=d.host, help="address to listen on (0.0.0.0: all; then set an API key)"
    )
    p.add_argument("--port", type=int, default=d.port, help="port")
    p.add_argument(
        "--model", help="shipped model name or model file; default: the shipped unet-msfd"
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnx", "torch"],
        help="inference runtime (as for predict)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="worker processes, each with its own copy of the model and its own --max-in-flight",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=d.threads,
        help="runtime threads per inference (0: the runtime's default)",
    )
    p.add_argument(
        "--api-key",
        help="require this key in the X-API-Key header of /v1 "
        "requests (or set MASKSEG_API_KEY, which keeps it out of the process "
        "list)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=d.max_upload_bytes / MB,
        help="largest upload of one image, MB",
    )
    p.add_argument(
        "--max-batch-mb",
        type=float,
        default=d.max_batch_bytes / MB,
        help="largest batch request, MB",
    )
    p.add_argument(
        "--max-batch-files",
        type=int,
        default=d.max_batch_files,
        help="most images in one batch request",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=d.max_pixels,
        help="larger images are refused before decoding (decompression bombs)",
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=d.max_in_flight,
        help="requests segmented at once per worker (each from when its upload has arrived)",
    )
    p.add_argument(
        "--queue",
        type=int,
        default=d.queue,
        help="requests that may wait for a slot, in arrival order; more get 503 with Retry-After",
    )
    p.add_argument(
        "--queue-timeout",
        type=float,
        default=d.queue_timeout_s,
        help="seconds a request may wait in that line",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=d.timeout_s,
        help="seconds of work per request, from when it gets its slot (504 "
        "after, and the work stops)",
    )
    p.add_argument(
        "--upload-timeout",
        type=float,
        default=d.upload_timeout_s,
        help="seconds for the whole upload (408 after)",
    )
    p.add_argument(
        "--min-upload-rate",
        type=float,
        default=d.min_upload_rate / 1000,
        help="kB/s an upload must average after its first 5 s (408 below)",
    )
    p.add_argument(
        "--max-pending-mb",
        type=float,
        default=d.max_pending_bytes / MB,
        help="MB of uploads held, all requests together (503 beyond)",
    )
    p.add_argument(
        "--retry-after",
        type=int,
        default=d.retry_after_s,
        help="seconds a 503 asks the client to wait",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=d.header_timeout_s,
        help="seconds a connection has to send a request head",
    )
    p.add_argument(
        "--keep-alive",
        type=int,
        default=d.keep_alive_s,
        help="seconds an idle keep-alive connection stays open",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=d.max_connections,
        help="open connections; one more gets 503 and is closed",
    )
    p.set_defaults(func=cmd_serve)

    p = add("compare", "U-Net vs classical methods on the test split (the U-Net's own split)")
    p.add_argument("--data", required=True, help="data folder (MSFD layout or images/ + masks/)")
    p.add_argument("--output", required=True, type=Path, help="report folder")
    _add_model_args(
        p, default="unet-msfd-heldout, the shipped model's twin that never saw the test split"
    )
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

    p = add("pack", "pack trained model(s) into one weight file: ensemble, flip TTA, float16")
    p.add_argument("models", nargs="+", help="weight files (.safetensors) or checkpoints (.pt)")
    p.add_argument("--output", required=True, type=Path, help="the weight file to write")
    p.add_argument("--flip", action="store_true", help="add left-right flip test-time averaging")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    p.set_defaults(func=cmd_pack)

    p = add("export", "export a model to one ONNX file (fp32 or static INT8) for onnxruntime")
    p.add_argument("model", help="shipped model name or model file (.safetensors, .pt)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="output format")
    p.add_argument("--output", required=True, type=Path, help="the .onnx file to write")
    p.add_argument(
        "--data",
        help="data folder: calibration crops for --int8 (the training "
        "part of the model's split) and the parity check on its test split",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="static INT8 quantization (QDQ, per-channel weights); needs --data",
    )
    p.add_argument(
        "--calibration",
        type=int,
        default=0,
        help="calibration crops, drawn with a fixed seed (0: the whole training part)",
    )
    p.add_argument(
        "--calibration-method",
        default="minmax",
        choices=["minmax", "entropy", "percentile"],
        help="how activation ranges are set from the calibration crops",
    )
    p.add_argument(
        "--exclude-fold",
        type=int,
        metavar="K",
        help="leave validation fold K out of calibration (a model trained with --val-fold K)",
    )
    p.add_argument("--opset", type=int, default=18, help="ONNX opset")
    p.add_argument(
        "--exporter",
        default="dynamo",
        choices=["dynamo", "legacy"],
        help="torch.onnx exporter: torch.export based (dynamo) or TorchScript based (legacy)",
    )
    p.add_argument(
        "--no-parity",
        action="store_true",
        help="skip the parity check on the test split (a check on random inputs still runs)",
    )
    p.set_defaults(func=cmd_export)

    p = add("models", "list architectures and shipped models")
    p.set_defaults(func=cmd_models)

    data = add("data", "data utilities")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = dsub.add_parser(
        "check", help="validate pairs and report statistics", formatter_class=HelpFormatter
    )
    p.add_argument("root", help="data folder (MSFD layout or images/ + masks/)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_data_check)
    p = dsub.add_parser(
        "faces",
        help="cut face crops (framed like the training crops) from "
        "photos in ROOT/with_mask and ROOT/without_mask",
        formatter_class=HelpFormatter,
    )
    p.add_argument("root", help="folder with with_mask/ and without_mask/ photo folders")
    p.add_argument("--output", required=True, type=Path, help="folder for crops + index.json")
    p.add_argument("--detector", default="blazeface", help="face detector")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_faces)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
