"""``maskseg data``: check a data folder, cut face crops from labelled photos."""

from __future__ import annotations

import argparse
from pathlib import Path

from maskseg.cli.common import AddCommand, HelpFormatter, unit_float


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


def cmd_data_pseudo(a: argparse.Namespace) -> int:
    from maskseg.cli.common import refuse_overwrite
    from maskseg.train.pseudo import PseudoConfig, make_pseudo

    if a.output.exists() and (not a.output.is_dir() or any(a.output.iterdir())):
        raise SystemExit(f"maskseg: {a.output} exists and is not an empty folder; give a new one")
    from maskseg.pipeline.predictor import resolve_model_path

    a.teacher = resolve_model_path(a.teacher, backend="torch")  # a shipped name too
    refuse_overwrite([a.output], [a.teacher], faces=a.faces)
    cfg = PseudoConfig(confident=a.confident, flip=not a.no_flip, soft=a.soft)
    record = make_pseudo(a.teacher, a.faces, a.output, a.fold, cfg)
    print(
        f"kept {record['kept']} of {record['read']} masked crops ({record['kept_share']:.1%}; "
        f"dropped: {record['dropped']}); wrote {a.output}"
    )
    return 0


def add_data(add: AddCommand) -> None:
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
    p = dsub.add_parser(
        "pseudo",
        help="label the masked face crops with a trained teacher and keep the confident ones "
        "(self-training: `maskseg train --pseudo DIR`)",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "teacher", help="a trained, gated model: a .safetensors file or a shipped model's name"
    )
    p.add_argument("--faces", required=True, type=Path, help="`maskseg data faces` folder")
    p.add_argument("--output", required=True, type=Path, help="a new folder for the labels")
    p.add_argument(
        "--fold",
        type=int,
        default=-1,
        help="read the photos outside this validation fold (the student's); -1: every "
        "non-test photo. The test part is never read",
    )
    p.add_argument(
        "--confident",
        type=unit_float,
        default=0.97,
        help="least share of a crop's pixels the teacher is sure of (p <= 0.1 or >= 0.9)",
    )
    p.add_argument("--no-flip", action="store_true", help="no mirror-image averaging")
    p.add_argument(
        "--soft",
        action="store_true",
        help="write the ungated teacher's probabilities (0-255) as the masks of the kept "
        "crops: soft targets for distillation (`maskseg train --pseudo` reads them as such)",
    )
    p.set_defaults(func=cmd_data_pseudo)


COMMANDS = {"data": add_data}
