"""Where ``predict`` writes: output names planned for every input before any is decoded,
and the check that no output lands on an input or on another output (kept apart from the
per-file work in ``maskseg.cli.predict``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from maskseg.files import is_within, refuse_overwrite

log = logging.getLogger("maskseg.cli.predict")  # the messages of the predict command


def check_reports(reports: list[Path], planned: list[Path]) -> None:
    """The summary and COCO files must differ from each other and from every mask, overlay
    and JSON the run writes."""
    seen = {os.path.abspath(p) for p in planned}
    mine: set[str] = set()
    for report in reports:
        where = os.path.abspath(report)
        if where in mine:
            raise ValueError(f"{report}: --summary and --coco are the same file; give each its own")
        if where in seen:
            raise ValueError(f"{report}: this run also writes a mask, overlay or JSON there")
        mine.add(where)


def output_endings(overlay_images: bool, write_json: bool) -> list[str]:
    """What follows an output name: the mask, and the overlay and JSON when asked for."""
    return [".png"] + ["_overlay.jpg"] * overlay_images + [".json"] * write_json


def plan_names(items: list[tuple[Path, Path]], endings: Sequence[str] = (".png",)) -> list[Path]:
    """The output name (no suffix) of each (path, name) from ``collect_inputs``: a name
    already taken by an earlier input, or whose output (name + one of ``endings``) would be
    the folder another input's outputs go to (``k.jpg`` beside a sub-folder ``k.png/``), gets
    the file's extension (``a_png``), then a number."""
    folders = {parent for _, name in items for parent in name.parents}
    used: set[Path] = set()
    names = []

    def taken(name: Path) -> bool:
        return name in used or any(name.with_name(name.name + e) in folders for e in endings)

    for path, name in items:
        if taken(name):
            why = "taken by an earlier input" if name in used else "the folder of other outputs"
            base = name.with_name(f"{name.name}_{path.suffix.lstrip('.').lower()}")
            name, k = base, 2
            while taken(name):
                name, k = base.with_name(f"{base.name}_{k}"), k + 1
            log.warning("%s: output name %s; writing %s.png", path, why, name)
        used.add(name)
        names.append(name)
    return names


def refuse_overwriting_inputs(
    planned: list[Path], files: list[Path], inputs: list[str | Path], out: Path
) -> None:
    same = [str(i) for i in inputs if Path(i).is_dir() and is_within(out, i) and is_within(i, out)]
    hint = "choose another --output folder"
    if same:
        hint = (
            f"the output folder is the input folder {same[0]}, where these output names "
            f"land on inputs; {hint}"
        )
    refuse_overwrite(planned, files, hint)
