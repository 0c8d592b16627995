"""The ``predict`` command's library function: segment image files and folders, write masks.

Light on purpose (no training stack): it decodes each file (reduced when the file is far
larger than the model needs), calls a segmenter and writes ``DIR/<stem>.png``; with a wear
check, per face a verdict on how the mask is worn, in the JSON, a folder summary (CSV) and a
COCO instances file for the whole run.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from maskseg.cli.inputs import collect
from maskseg.cli.outputs import (
    check_reports,
    output_endings,
    plan_names,
    refuse_overwriting_inputs,
)
from maskseg.console import show_progress
from maskseg.engines.shard import Shard
from maskseg.files import atomic_write_bytes, is_within, writable_folders
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
    total: int = 0  # inputs of the whole run (files and bad entries), before any --shard
    planned: int = 0  # files this run (or shard) set out to segment
    stopped: str | None = None  # why it stopped before all of them (a signal's name)


# One file's job: (its index in the run's planned order, its path, its output name).
Job = tuple[int, Path, Path]
# How a run's jobs are done: runner(engine, work, jobs, stop) yields work(engine, job) for
# every job, in any order, and ends early, at a point where every outcome of work done is
# yielded, once ``stop`` (an event, or None) is set: ``run_in_process`` one after another
# here, ``maskseg.engines.ray``'s ``RayRunner`` on a Ray actor pool (a batch at a time).
Runner = Callable[
    [Any, Callable[[Any, Job], "FileOutcome"], list[Job], Any], Iterable["FileOutcome"]
]


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
    mode: str | None = None,
    shard: Shard | None = None,
    runner: Runner | None = None,
    stop: threading.Event | None = None,
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

    ``mode`` ("auto", "scene", "crop"; ``maskseg.pipeline.request.Mode``) says how each
    picture is read when ``segmenter`` is a scene predictor; None: "scene" for a scene
    predictor, "crop" for anything else (a crop predictor can only read crops).

    ``shard`` (``--shard K/N``): only this shard's share of the files (and of the bad
    entries) is segmented and reported, with the names and the overwrite check of the whole
    run (``maskseg.engines.shard``); its summary and COCO files hold its share. ``runner``:
    where the files are segmented (``Runner``; None: here, one after another). Every runner
    does each file with ``segment_file``, so the outputs do not depend on it; the reports
    are assembled in the run's order whatever order the files finish in. ``stop`` (an event a
    signal handler sets, ``maskseg.console.stop_on_signals``): once set, the run ends after
    the file in hand, its summary and COCO files hold the files done, and the result says
    why (``stopped``).
    """
    from tqdm import tqdm

    from maskseg.pipeline.request import Mode, RequestEngine, coco_dataset, summary_csv

    out = Path(output_dir)
    if (summary is not None or landmarks) and wear is None:
        raise ValueError("the summary and the landmarks come from the wear check: give wear")
    if shard is not None:
        shared = [str(i) for i in inputs if Path(i).is_dir() and is_within(i, out)]
        if shared:
            raise ValueError(
                f"--shard with --output {out}, which holds the input folder "
                f"{', '.join(shared)}: each job would scan the masks the others wrote as new "
                "inputs and plan another run; give an --output outside the inputs"
            )
    seen: list[Path] = []  # every file the scan met: images, other files, bad entries
    items, skipped = collect(inputs, out, seen)
    endings = output_endings(overlay_images, write_json)
    names = plan_names(items, endings)
    planned = [out / f"{name}{end}" for name in names for end in endings]
    reports = [Path(p) for p in (summary, coco) if p is not None]
    check_reports(reports, planned)
    # no output replaces anything found in the inputs: not the images only, but a user's own
    # notes.json beside photo.jpg, or a broken link, when the output folder is the input's
    refuse_overwriting_inputs([out, *planned, *reports], seen, inputs, out)
    result = PredictResult([], [], total=len(items) + len(skipped))
    if not result.total:  # nothing to do: no folder is made and no empty report written
        return result
    jobs = [(i, path, name) for i, ((path, _), name) in enumerate(zip(items, names, strict=True))]
    if shard is not None:
        jobs, skipped = shard.take(jobs), shard.take(skipped)
    writable_folders([(out, "--output"), *((r.parent, str(r)) for r in reports)])
    for path, reason in skipped:
        on_skip(path, reason)
        result.failed.append((path, reason))
    if hasattr(segmenter, "segment"):
        engine = RequestEngine(segmenter, max_pixels=max_pixels, wear=wear)
        mode = Mode(mode or Mode.scene)
    else:
        if mode not in (None, Mode.crop, Mode.crop.value):
            raise ValueError(f"mode {mode} finds faces first: give a scene predictor")
        engine = RequestEngine(predictor=segmenter, max_pixels=max_pixels, wear=wear)
        mode = Mode.crop
    options = FileOptions(
        out,
        overlay_images,
        write_json,
        landmarks,
        summary is not None,
        coco is not None,
        os.getcwd(),
    )
    work = partial(segment_file, mode=mode, options=options)
    done: list[FileOutcome] = []
    result.planned = len(jobs)
    bar = tqdm(desc="predict", unit="img", total=len(jobs), disable=not show_progress(progress))
    for outcome in (runner or run_in_process)(engine, work, jobs, stop):
        bar.update()
        if outcome.failure is not None:
            on_skip(outcome.path, outcome.failure)
        elif outcome.no_face:
            log.info("%s: no face found; the mask is empty", outcome.path)
        result.verdicts.update(outcome.verdicts)
        done.append(outcome)
    bar.close()
    if stop is not None and stop.is_set() and len(done) < len(jobs):
        result.stopped = getattr(stop, "reason", None) or "stop"  # the files done keep reports
    done.sort(key=lambda o: o.index)  # a runner may finish files in any order
    result.written += [o.mask for o in done if o.mask is not None]
    result.failed += [(o.path, o.failure) for o in done if o.failure is not None]
    if summary is not None:
        atomic_write_bytes(Path(summary), summary_csv([row for o in done for row in o.summary]))
    if coco is not None:
        dataset = coco_dataset()
        # where the images' mask_file names lie, from the COCO file's own folder
        dataset["info"]["mask_folder"] = os.path.relpath(out, Path(coco).parent)
        for o in done:
            if o.coco is not None:
                # a job of a sharded run numbers by the file's place in the whole run, so
                # the jobs' files merge by concatenating their images and annotations
                merge_coco(dataset, o.coco, None if shard is None else o.index + 1)
        atomic_write_bytes(Path(coco), json.dumps(dataset).encode())
    return result


class FileOptions(NamedTuple):
    """What the run writes for each file (sent with the work to wherever files are done)."""

    out: Path
    overlay: bool = False
    json: bool = False
    landmarks: bool = False
    summary: bool = False
    coco: bool = False
    # the folder relative inputs and --output are read from and written to: the run's own,
    # not that of a Ray worker on another node, which may have started anywhere
    cwd: str | None = None

    def where(self, path: Path) -> Path:
        """``path`` as the run's process means it (relative paths from its ``cwd``)."""
        return path if self.cwd is None or path.is_absolute() else Path(self.cwd) / path


@dataclass
class FileOutcome:
    """One file's part of the run's result: the mask written or why the file failed, and
    what the run's reports need from it (small: images stay where they were written)."""

    index: int
    path: Path
    mask: Path | None = None
    failure: str | None = None
    no_face: bool = False  # read as a scene, no face found: its mask is empty
    verdicts: list[str] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    coco: dict[str, Any] | None = None  # a one-image COCO dataset, for ``merge_coco``


def segment_file(engine: Any, job: Job, mode: Any, options: FileOptions) -> FileOutcome:
    """Segment one file with ``engine`` (a ``RequestEngine``) and write its outputs under
    ``options.out``: ``<name>.png``, and ``<name>.json`` and ``<name>_overlay.jpg`` when
    asked. The one per-file step of every runner, so every engine writes the same bytes;
    a file that cannot be read or decoded, or whose outputs cannot be written, is a failure
    in the outcome, not an exception."""
    index, path, name = job
    try:
        seg = engine.run(options.where(path), mode)
    except ImageReadError as exc:
        return FileOutcome(index, path, failure=exc.reason)
    try:
        return _write_outputs(seg, index, path, name, options)
    except OSError as exc:  # a full disk, a folder made read-only meanwhile: this file fails
        where = exc.filename or options.out
        return FileOutcome(index, path, failure=f"cannot write {where}: {exc.strerror or exc}")


def _write_outputs(
    seg: Any, index: int, path: Path, name: Path, options: FileOptions
) -> FileOutcome:
    """``segment_file``'s writing half: the outputs of one segmented file."""
    from maskseg.pipeline.annotate import annotate
    from maskseg.pipeline.request import (
        NOT_JUDGED,
        Mode,
        add_coco_image,
        coco_dataset,
        summary_rows,
    )

    out = options.where(options.out)  # records keep the paths as given
    records = seg.face_records(options.landmarks)
    if options.json:
        record = {"image": str(path), **seg.record(options.landmarks)}
        (out / name).parent.mkdir(parents=True, exist_ok=True)  # a sub-folder's first file
        atomic_write_bytes(out / f"{name}.json", json.dumps(record, indent=1).encode())
    written = write_mask(out / f"{name}.png", seg.mask)
    outcome = FileOutcome(index, path, options.out / written.relative_to(out))
    outcome.no_face = seg.mode == Mode.scene and not seg.faces
    if options.overlay:
        faces = seg.faces if seg.mode == Mode.scene else None
        shown = annotate(seg.image, seg.mask, faces, seg.full[1], wear=seg.wear)
        write_rgb(out / f"{name}_overlay.jpg", shown)
    if seg.wear is not None:
        outcome.verdicts = [w.verdict or NOT_JUDGED for w in seg.wear]
    if options.summary or options.coco:
        parts = seg.face_parts()
        if options.summary:
            outcome.summary = summary_rows(str(path), records, parts)
        if options.coco:
            outcome.coco = coco_dataset()
            add_coco_image(outcome.coco, str(path), f"{name.as_posix()}.png", seg, records, parts)
    return outcome


def run_in_process(
    engine: Any, work: Callable[[Any, Job], FileOutcome], jobs: list[Job], stop: Any = None
) -> Iterator[FileOutcome]:
    """The local engine: the jobs one after another in this process, in order, until
    ``stop`` is set."""
    for job in jobs:
        if stop is not None and stop.is_set():
            return
        yield work(engine, job)


# a sharded run's annotation ids: its image's id times this, plus the face's number
COCO_FACES_PER_IMAGE = 10_000


def merge_coco(dataset: dict[str, Any], part: dict[str, Any], image_id: int | None = None) -> None:
    """Append a COCO dataset of one run's file (ids from 1, as ``add_coco_image`` numbers
    them in an empty dataset) to the run's, its image and annotation ids numbered on: the
    same ids as if the file had been added to the run's dataset directly. With ``image_id``
    (a job of a sharded run: the file's place in the whole run, from 1) the image takes that
    id and its annotations ``image_id * COCO_FACES_PER_IMAGE + k``: unique across the jobs."""
    if image_id is not None:
        dataset["images"] += [{**im, "id": image_id} for im in part["images"]]
        dataset["annotations"] += [
            {**a, "id": image_id * COCO_FACES_PER_IMAGE + a["id"], "image_id": image_id}
            for a in part["annotations"]
        ]
        return
    images, annotations = len(dataset["images"]), len(dataset["annotations"])
    dataset["images"] += [{**im, "id": im["id"] + images} for im in part["images"]]
    dataset["annotations"] += [
        {**a, "id": a["id"] + annotations, "image_id": a["image_id"] + images}
        for a in part["annotations"]
    ]


def verdict_counts(counts: Any) -> str:
    """ "correct 3, nose_exposed 1, ..." in the verdicts' order, faces not judged last."""
    from maskseg.pipeline.request import NOT_JUDGED
    from maskseg.pipeline.wear import VERDICTS

    order = [v for v in (*VERDICTS, NOT_JUDGED) if counts.get(v)]
    return ", ".join(f"{v} {counts[v]}" for v in order)
