"""Commands that make models: ``train``, ``cv``, ``gate``, ``pack`` and ``export``.

The training stack (PyTorch, albumentations) is imported inside the commands only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from maskseg.cli.common import AddCommand, non_negative_int, refuse_overwrite
from maskseg.cli.train_flags import CHOICES, CONFIG_FLAGS, SECTIONS
from maskseg.config import PRESENCE_FEATURES, Config
from maskseg.files import make_parents


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
        default = getattr(SECTIONS[section], field)
        kwargs: dict[str, Any] = {"type": typ, "help": f"{text} (default: {default})"}
        if field in CHOICES:
            kwargs["choices"] = CHOICES[field]
        p.add_argument(flag, dest=f"{section}__{field}", metavar=field.upper(), **kwargs)
    p.add_argument(
        "--composite-whole-masks",
        dest="data__composite_whole_masks",
        action="store_const",
        const=True,
        help="composite only the training masks that end inside their crop (not cut by its "
        "bottom edge), so no pasted mask ends in a straight line",
    )
    p.add_argument(
        "--sync-bn",
        dest="train__sync_bn",
        action="store_const",
        const=True,
        help="under torchrun on CUDA: BatchNorm statistics over all processes' batches",
    )
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
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="where the decoded, resized training pairs are kept (default: RUN/cache); "
        "runs on the same data and size share a cache there",
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


def _first_process() -> bool:
    """Under torchrun, rank 0 alone prints the results every process holds."""
    from maskseg.train.distributed import env_place

    return env_place().rank == 0


def cmd_train(a: argparse.Namespace) -> int:
    from maskseg.train.workflows import format_summary_table, train_run

    cfg, given = _config(a)
    s = train_run(cfg, a.output, a.val_fold, a.resume, a.checkpoint_interval, given, a.cache_dir)
    if not _first_process():
        return 0
    print(f"best epoch {s['best_epoch']} of {s['epochs_run']}; weights: {s['weights']}")
    for part in ("val", "test"):
        if s[part]:
            print(f"\n{part} ({s['n_' + part]} images)\n{format_summary_table(s[part])}")
    return 0


def cmd_cv(a: argparse.Namespace) -> int:
    from maskseg.train.workflows import cross_validate, format_cv_table

    cfg, given = _config(a)
    s = cross_validate(
        cfg, a.output, a.resume, a.checkpoint_interval, a.only_fold, given, a.cache_dir
    )
    if not _first_process():
        return 0
    if not s.get("complete", True):
        done = [f["fold"] for f in s["folds"]]
        print(f"folds finished so far: {done}; rerun with --resume when all are done")
        return 0
    print(format_cv_table(s))
    print(f"written: {a.output / 'summary.json'}, {a.output / 'cv_results.md'}")
    return 0


def cmd_gate(a: argparse.Namespace) -> int:
    from maskseg.train.workflows import gate_model

    outputs = [a.output]
    if a.face_check:
        from maskseg.pipeline.face_check import check_file_beside

        outputs.append(check_file_beside(a.output))
    refuse_overwrite(outputs, [a.model], a.data, a.faces)
    make_parents(*outputs)
    from maskseg.train.gate import GateConfig
    from maskseg.train.lowworn import LowWornConfig

    low = LowWornConfig(n=a.low_worn) if a.low_worn else None
    asked = {
        "hidden": a.hidden,
        "epochs": a.head_epochs,
        "weight_decay": a.weight_decay,
        "dropout": a.dropout,
        "jitter": a.jitter,
    }
    head = {k: v for k, v in asked.items() if v is not None}  # the rest: GateConfig's
    fitted = gate_model(
        a.model,
        a.faces,
        a.data,
        a.output,
        a.val_fold,
        gate=GateConfig(features=a.features, **head),
        n_scenes=a.scenes,
        low_worn=low,
        photo_negatives=a.photo_negatives,
        face_check=a.face_check,
    )
    s = fitted["gate"]
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
    if "face_check" in fitted:
        c = fitted["face_check"]
        print(
            f"face check fitted on {c['rows']} painted faces ({c['masks_on_a_main_face']} masks "
            f"on a main face, {c['painted_in_unmasked_photos']} in photos without a mask); "
            f"wrote {c['file']}"
        )
    return 0


def cmd_pack(a: argparse.Namespace) -> int:
    from maskseg.train.checkpoint import combine_weights

    make_parents(a.output)
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


def add_train(add: AddCommand) -> None:
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


def add_cv(add: AddCommand) -> None:
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


def add_gate(add: AddCommand) -> None:
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
    p.add_argument(
        "--scenes",
        type=int,
        default=400,
        help="synthetic scenes whose detections add the scene path's crops (false detections "
        "as negatives) to the training crops",
    )
    p.add_argument(
        "--low-worn",
        type=int,
        default=0,
        metavar="N",
        help="N composites of masks worn low (under the nose, on the chin, at the neck) pasted "
        "from the training pairs onto the training photos without a mask, as further masked "
        "crops (0: none)",
    )
    p.add_argument(
        "--photo-negatives",
        type=int,
        default=0,
        metavar="N",
        help="every detection the scene path keeps in up to N training photos without a mask "
        "(faces, collars, hair, hands) as further unmasked crops (0: none)",
    )
    p.add_argument(
        "--features",
        choices=PRESENCE_FEATURES,
        default="pooled",
        help="what the gate reads: the encoder's maps pooled over the window (pooled), or also "
        "averaged over the pixels the decoder calls mask (masked: tells a low mask's edge "
        "from a bare jaw)",
    )
    # the head's training (maskseg.train.gate.GateConfig; unset: its chosen defaults)
    p.add_argument("--hidden", type=int, help="hidden units of the gate's MLP (default 256)")
    p.add_argument("--head-epochs", type=int, help="epochs of the gate's training (default 200)")
    p.add_argument("--weight-decay", type=float, help="the gate's AdamW weight decay (0.01)")
    p.add_argument("--dropout", type=float, help="dropout before the gate's MLP (0.2)")
    p.add_argument(
        "--jitter",
        type=int,
        metavar="N",
        help="N copies of each crop cut from a moved and scaled window (0)",
    )
    p.add_argument(
        "--face-check",
        action="store_true",
        help="then fit the gated model's own learned face check on the same part's whole "
        "photos and write it beside --output as <stem>.face-check.json (the scene path reads "
        "it; without one a model uses the shipped model's check, fitted on another model's "
        "confidence)",
    )
    p.set_defaults(func=cmd_gate)


def add_pack(add: AddCommand) -> None:
    p = add("pack", "pack trained model(s) into one weight file: ensemble, flip TTA, float16")
    p.add_argument("models", nargs="+", help="weight files (.safetensors) or checkpoints (.pt)")
    p.add_argument("--output", required=True, type=Path, help="the weight file to write")
    p.add_argument("--flip", action="store_true", help="add left-right flip test-time averaging")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    p.set_defaults(func=cmd_pack)


def add_export(add: AddCommand) -> None:
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
        type=non_negative_int,
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


COMMANDS = {
    "train": add_train,
    "cv": add_cv,
    "gate": add_gate,
    "pack": add_pack,
    "export": add_export,
}
