"""The ``predict`` command's library function: segment image files and folders, write masks.

Light on purpose (no training stack): it decodes each file (reduced when the file is far
larger than the model needs), calls a segmenter and writes ``DIR/<stem>.png``; with a wear
check, per face a verdict on how the mask is worn, in the JSON, a folder summary (CSV) and a
COCO instances file for the whole run.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from maskseg.console import show_progress
from maskseg.files import (
    IMAGE_EXTENSIONS,
    atomic_write_bytes,
    collect_inputs,
    is_within,
    refuse_overwrite,
)
from maskseg.io import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    write_mask,
    write_rgb,
)

log = logging.getLogger(__name__)


class FileSegmenter(Protocol):
    def predict(self, image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray: ...


@dataclass
class PredictResult:
    written: list[Path]
    failed: list[tuple[Path, str]]
    verdicts: Counter = field(default_factory=Counter)  # wear verdicts ("not judged": null)


def _warn(path: Path, reason: str) -> None:
    log.warning("skipped %s: %s", path, reason)


def predict_paths(
    segmenter: FileSegmenter,
    inputs: list[str | Path],
    output_dir: str | Path,
    overlay_images: bool = False,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_skip: Callable[[Path, str], None] = _warn,
    write_json: bool = False,
    wear: Any = None,
    landmarks: bool = False,
    summary: str | Path | None = None,
    coco: str | Path | None = None,
) -> PredictResult:
    """Write DIR/<stem>.png (0/255 mask at the input's full size) for every readable input.

    Files found inside a sub-folder of a folder input go to the same sub-folder of DIR; a
    second input with a name already written (``a.jpg`` beside ``a.png``) gets its extension
    in the name (``a_png.png``; then a number) rather than overwrite the first. Unreadable
    files, files over ``max_pixels``, folders named like images, broken links and symlink
    loops (given by name or found in a folder) are reported once through ``on_skip`` and
    listed in the result; the rest go on. Files a folder scan leaves out because they are not
    images of an accepted type (``.gif``, no extension, ...) are counted and named in one
    warning per folder (logged; not failures). Overlays of images decoded reduced are written
    at the reduced size.

    Nothing given is ever overwritten, and outputs are never read back as inputs:

    - files found by scanning a folder input that lie inside DIR (DIR inside that folder, as
      in ``predict in --output in/masks``) are left out, with one log line giving their
      count and DIR, so a second run does not segment the first run's masks and overlays;
    - every output path (masks, overlays, JSON; names planned for every input before any is
      decoded) is checked against every input first: if one would replace an input (the same
      path, or the same file through a link), ``OverwriteError`` (a ``ValueError``) is raised
      before anything is written, naming the inputs. DIR may be an input folder itself only
      while no output name lands on an input (``photo.png`` cannot get a mask there).

    Each file goes through the pipeline's request engine (``maskseg.pipeline.request``), as
    serve's uploads do. A scene segmenter (``maskseg.pipeline.scene.ScenePredictor``,
    anything with ``segment``) also gives faces: the overlay gets the boxes, and an image
    without faces is logged as such (its mask is empty). ``write_json`` writes
    DIR/<stem>.json: image size, mode, mask share of the image, and per face its box, score,
    crop, mask share of the box and whether it wears a mask (in crop mode the one face is the
    whole picture, with no score).

    ``wear`` (a ``maskseg.pipeline.wear.WearCheck``) judges every face: its ``wear`` record
    goes into the JSON (and ``landmarks`` adds the 468 points), and the verdicts are counted
    in the result. ``summary``: a CSV file with one row per face (``SUMMARY_COLUMNS`` of
    ``maskseg.pipeline.request``: file, face index, verdict, nose, mouth, chin, coverage, the
    face's mask share of its box, its mask pixels, and why a face was not judged). ``coco``:
    one COCO instances JSON for the run (``add_coco_image`` there): per image its file name
    and size, per face an annotation whose segmentation is the face's part of the mask, so
    the annotations of an image OR-ed together are its mask PNG. Both are planned and
    checked with the other outputs and written atomically once every image is done.
    """
    from tqdm import tqdm

    from maskseg.pipeline.annotate import annotate
    from maskseg.pipeline.request import (
        NOT_JUDGED,
        Mode,
        RequestEngine,
        add_coco_image,
        coco_dataset,
        summary_csv,
        summary_rows,
    )

    out = Path(output_dir)
    if (summary is not None or landmarks) and wear is None:
        raise ValueError("the summary and the landmarks come from the wear check: give wear")
    items, skipped = _collect(inputs, out)
    names = plan_names(items)
    planned = [
        out / f"{name}{end}" for name in names for end in _endings(overlay_images, write_json)
    ]
    reports = [Path(p) for p in (summary, coco) if p is not None]
    _check_reports(reports, planned)
    _refuse_overwrite([out, *planned, *reports], [path for path, _ in items], inputs, out)
    out.mkdir(parents=True, exist_ok=True)
    for report in reports:
        report.parent.mkdir(parents=True, exist_ok=True)
    result = PredictResult([], [])
    rows: list[dict[str, Any]] = []
    dataset = coco_dataset() if coco is not None else None
    for path, reason in skipped:
        on_skip(path, reason)
        result.failed.append((path, reason))
    bar = tqdm(
        list(zip(items, names, strict=True)),
        desc="predict",
        unit="img",
        disable=not show_progress(progress),
    )
    if hasattr(segmenter, "segment"):
        engine, mode = RequestEngine(segmenter, max_pixels=max_pixels, wear=wear), Mode.scene
    else:
        engine = RequestEngine(predictor=segmenter, max_pixels=max_pixels, wear=wear)
        mode = Mode.crop
    for (path, _), name in bar:
        try:
            seg = engine.run(path, mode)
        except ImageReadError as exc:
            on_skip(path, exc.reason)
            result.failed.append((path, exc.reason))
            continue
        if mode == Mode.scene and not seg.faces:
            log.info("%s: no face found; the mask is empty", path)
        records = seg.face_records(landmarks)
        if write_json:
            record = {"image": str(path), **seg.record(landmarks)}
            (out / name).parent.mkdir(parents=True, exist_ok=True)  # a sub-folder's first file
            atomic_write_bytes(out / f"{name}.json", json.dumps(record, indent=1).encode())
        result.written.append(write_mask(out / f"{name}.png", seg.mask))
        if overlay_images:
            faces = seg.faces if mode == Mode.scene else None
            shown = annotate(seg.image, seg.mask, faces, seg.full[1], wear=seg.wear)
            write_rgb(out / f"{name}_overlay.jpg", shown)
        if seg.wear is not None:
            result.verdicts.update(w.verdict or NOT_JUDGED for w in seg.wear)
        if summary is not None or dataset is not None:
            parts = seg.face_parts()
            if summary is not None:
                rows += summary_rows(str(path), records, parts)
            if dataset is not None:
                add_coco_image(dataset, str(path), f"{name.as_posix()}.png", seg, records, parts)
        del seg, records  # a 144 MP mask should not outlive its file
    if summary is not None:
        atomic_write_bytes(Path(summary), summary_csv(rows))
    if dataset is not None:
        atomic_write_bytes(Path(coco), json.dumps(dataset).encode())
    return result


def _check_reports(reports: list[Path], planned: list[Path]) -> None:
    """The summary and COCO files must differ from each other and from every mask, overlay
    and JSON the run writes."""
    seen = {os.path.abspath(p) for p in planned}
    for report in reports:
        where = os.path.abspath(report)
        if where in seen:
            raise ValueError(f"{report}: this run also writes a mask, overlay or JSON there")
        seen.add(where)


def _endings(overlay_images: bool, write_json: bool) -> list[str]:
    """What follows an output name: the mask, and the overlay and JSON when asked for."""
    return [".png"] + ["_overlay.jpg"] * overlay_images + [".json"] * write_json


def _collect(
    inputs: list[str | Path], out: Path
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """``collect_inputs``, less the files a folder scan finds inside the output folder (they
    are outputs of an earlier run); files and folders given explicitly are kept, except
    links that lead nowhere (a symlink loop, a broken link), skipped with that reason.

    Files a folder scan leaves out because they are not images of an accepted type (a GIF, a
    file without an extension) are logged as one warning per folder with their count."""
    items: list[tuple[Path, Path]] = []
    skipped: list[tuple[Path, str]] = []
    left_out = 0
    inside: dict[Path, bool] = {}  # per folder: is it the output folder or below it?

    def outside(path: Path) -> bool:
        if path.parent not in inside:
            inside[path.parent] = is_within(path.parent, out)
        return not inside[path.parent]

    for item in inputs:
        dead = None if Path(item).is_dir() else _dead_link(Path(item))
        if dead:
            skipped.append((Path(item), dead))
            continue
        others: list[Path] = []
        found, bad = collect_inputs([item], others=others)
        if Path(item).is_dir() and not is_within(item, out):
            kept = [(p, n) for p, n in found if outside(p)]
            bad = [(p, why) for p, why in bad if outside(p)]
            others = [p for p in others if outside(p)]
            left_out += len(found) - len(kept)
            found = kept
        if others:
            _report_not_images(Path(item), others)
        items += found
        skipped += bad
    if left_out:
        log.info(
            "left out %d file(s) inside the output folder %s (outputs are not read as inputs)",
            left_out,
            out,
        )
    return items, skipped


def _dead_link(path: Path) -> str | None:
    """Why a path given by name leads to no file when that is a link's fault (the same
    reasons as a folder scan gives); None otherwise (decoding reports the rest)."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symlink loop ({exc.strerror})"
        if path.is_symlink():
            return f"broken link ({exc.strerror})"
    return None


def _report_not_images(folder: Path, others: list[Path], shown: int = 5) -> None:
    """Log one warning naming the files under ``folder`` that its scan left out because they
    are not images of an accepted type (hidden files and the output folder's are not
    counted)."""
    others = sorted(others)
    kinds = sorted({p.suffix.lower() or "no extension" for p in others})
    names = ", ".join(p.relative_to(folder).as_posix() for p in others[:shown])
    more = f" and {len(others) - shown} more" if len(others) > shown else ""
    log.warning(
        "%s: left out %d file(s) that are not images of an accepted type (%s): %s%s; "
        "accepted: %s (a file given by name is tried whatever its type)",
        folder,
        len(others),
        ", ".join(kinds),
        names,
        more,
        " ".join(IMAGE_EXTENSIONS),
    )


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


def _refuse_overwrite(
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
