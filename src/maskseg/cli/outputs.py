"""Where ``predict`` writes: output names planned for every input before any is decoded,
and the check that no output lands on an input or on another output (kept apart from the
per-file work in ``maskseg.cli.predict``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from maskseg.files import is_within, refuse_overwrite

log = logging.getLogger("maskseg.cli.predict")  # the messages of the predict command


def check_reports(reports: list[Path], planned: list[Path]) -> None:
    """The summary and COCO files must differ from each other and from every mask, overlay
    and JSON the run writes."""
    seen = {os.path.abspath(p) for p in planned}
    for report in reports:
        where = os.path.abspath(report)
        if where in seen:
            raise ValueError(f"{report}: this run also writes a mask, overlay or JSON there")
        seen.add(where)


def output_endings(overlay_images: bool, write_json: bool) -> list[str]:
    """What follows an output name: the mask, and the overlay and JSON when asked for."""
    return [".png"] + ["_overlay.jpg"] * overlay_images + [".json"] * write_json


def plan_names(items: list[tuple[Path, Path]]) -> list[Path]:
    """The output name (no suffix) of each (path, name) from ``collect_inputs``: a name
    already taken by an earlier input gets the file's extension (``a_png``), then a number."""
    used: set[Path] = set()
    names = []
    for path, name in items:
        if name in used:
            base = name.with_name(f"{name.name}_{path.suffix.lstrip('.').lower()}")
            name, k = base, 2
            while name in used:
                name, k = base.with_name(f"{base.name}_{k}"), k + 1
            log.warning("%s: output name taken by an earlier input; writing %s.png", path, name)
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
