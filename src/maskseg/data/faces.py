"""Face photos without pixel labels, as face crops framed like the labelled pairs.

A folder of photos sorted into ``with_mask/`` and ``without_mask/`` (such as
``../shared/data/faces``) carries one label per photo: a mask is there or not. Faces are found
with the embedded detector, cut by the calibrated detector-box -> crop mapping (so they are
framed as the MSFD crops the segmenter learnt from) and cached with an index:

    maskseg data faces ../shared/data/faces --output runs/faces

The crops of ``without_mask`` photos are true negatives (their correct mask is empty); both
kinds train and test the mask-presence gate. They are split by a seed the way the pairs are:
grouped (the same person, copies and near-duplicates of one photo stay in one part), a
held-out test part and K folds.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from maskseg.config import DataConfig
from maskseg.data.splits import Splits, make_splits
from maskseg.files import (
    OverwriteError,
    atomic_write_bytes,
    collect_inputs,
    is_within,
    refuse_overwrite,
)
from maskseg.io import ImageReadError, read_image

log = logging.getLogger(__name__)

LABELS = {"with_mask": True, "without_mask": False}
INDEX = "index.json"
CROP_SIDE = 250  # as MSFD's crops


@dataclass
class FaceCrop:
    """One photo's entry in the crop index.

    Attributes:
        id: "<label folder>/<file name>", unique.
        mask: the photo's label: a mask is worn.
        crop: the crop's file, relative to the index folder ("" when no face was found).
        group: split key (person, or the photo a copy was made from).
        score: detector score of the face cut (0 when none).
        rect: x1, y1, x2, y2 of the crop in the photo.
        faces: faces found in the photo.
        status: "ok", "no face" or the reason the file could not be read.
    """

    id: str
    mask: bool
    crop: str
    group: str
    score: float
    rect: list[float]
    faces: int
    status: str


_COPY = re.compile(r"(?:\s*copy(?:\s*\d+)?|\s*\(\d+\)|_\d+x\d+)+$", re.IGNORECASE)
_PERSON = re.compile(r"^\d+_\d+_([a-z]+)_\d+$")


def name_group(file_name: str) -> str:
    """Group key from a file name: the person in ``0_0_anhu_0025.jpg`` (anhu), the source of
    ``0_0_0 copy 52.jpg`` (0_0_0) or ``OIP (8).png`` (oip); else the lower-cased stem."""
    stem = file_name.rsplit(".", 1)[0].lower() if "." in file_name else file_name.lower()
    stem = _COPY.sub("", stem).strip()
    m = _PERSON.match(stem)
    return f"person:{m.group(1)}" if m else stem


def dhash(image: np.ndarray, side: int = 8) -> int:
    """Difference hash of an image: equal for copies, re-encodings and resizes of a photo."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    small = cv2.resize(gray, (side + 1, side), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0]) if side == 8 else hash(bits.tobytes())


def merge_groups(names: dict[str, str], hashes: dict[str, int]) -> dict[str, str]:
    """Group keys where photos with the same hash share a group (union-find over both)."""
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        while parent.setdefault(k, k) != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first_by_hash: dict[int, str] = {}
    for pid, h in sorted(hashes.items()):
        if h in first_by_hash:
            union(names[pid], names[first_by_hash[h]])
        else:
            first_by_hash[h] = pid
    return {pid: find(g) for pid, g in names.items()}


def crop_faces(
    root: str | Path,
    output: str | Path,
    detector: str = "blazeface",
    progress: Callable[[int, int], None] | None = None,
) -> list[FaceCrop]:
    """Detect the best face in every photo under ``root/with_mask`` and ``root/without_mask``,
    cut it as the segmenter's training crops are framed and write it with ``index.json``.

    Photos are tried with one whole-frame detector pass first, then with tiles; a photo with
    no face is listed with status "no face", an unreadable one with the reason.

    ``output`` may not lie inside ``root/with_mask`` or ``root/without_mask`` (its crops would
    be read as photos by the next run), nor may a crop or the index be one of the photos:
    ``OverwriteError`` (a ``ValueError``) before anything is written.
    """
    from maskseg.pipeline.detect import crop_box, cut_crop, get_detector, load_crop_mapping

    root, out = Path(root), Path(output)
    for folder in LABELS:
        if is_within(out, root / folder):
            raise OverwriteError(
                f"{out}: the output folder is inside the photo folder "
                f"{root / folder}, where its crops would be read as photos; "
                f"choose another --output"
            )
    earlier = _earlier_crops(out)  # an earlier run's, removed where this run writes none
    passes = [
        (get_detector(detector, mode=m), load_crop_mapping(detector, m)) for m in ("frame", "tiles")
    ]
    items: list[tuple[str, Path, bool]] = []
    for folder, label in LABELS.items():
        if not (root / folder).is_dir():
            raise FileNotFoundError(f"{root / folder}: expected with_mask/ and without_mask/")
        found, skipped = collect_inputs([root / folder])
        items += [
            (f"{folder}/{p.relative_to(root / folder).as_posix()}", p, label) for p, _ in found
        ]
        for p, why in skipped:
            log.warning("skipped %s: %s", p, why)
    planned = [out / _crop_name(label, k) for k, (_, _, label) in enumerate(items)]
    refuse_overwrite([*planned, out / INDEX], [path for _, path, _ in items])
    entries: list[FaceCrop] = []
    hashes: dict[str, int] = {}
    for k, (pid, path, label) in enumerate(items):
        if progress:
            progress(k, len(items))
        group = name_group(path.name)
        try:
            image = read_image(path)
        except ImageReadError as exc:
            entries.append(FaceCrop(pid, label, "", group, 0.0, [], 0, exc.reason))
            continue
        hashes[pid] = dhash(image)
        for det, mapping in passes:  # noqa: B007 (the mapping of the pass that found it)
            faces = det.detect(image)
            if len(faces):
                break
        if not len(faces):
            entries.append(FaceCrop(pid, label, "", group, 0.0, [], 0, "no face"))
            continue
        rect = crop_box(faces.boxes[0], faces.keypoints[0], mapping)
        crop = cut_crop(image, rect, CROP_SIDE)
        name = _crop_name(label, k)
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".jpg", crop[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise OSError(f"{out / name}: JPEG encoding failed")
        atomic_write_bytes(out / name, buf.tobytes())
        entries.append(
            FaceCrop(
                pid,
                label,
                name,
                group,
                float(faces.scores[0]),
                [round(float(v), 1) for v in rect],
                len(faces),
                "ok",
            )
        )
    groups = merge_groups({e.id: e.group for e in entries}, hashes)
    for e in entries:
        e.group = groups[e.id]
    index = {
        "root": os.path.abspath(root),  # the photos are found again from any folder
        "detector": detector,
        "crop_side": CROP_SIDE,
        "crops": [asdict(e) for e in entries],
    }
    atomic_write_bytes(out / INDEX, json.dumps(index, indent=1, ensure_ascii=False).encode())
    written = {e.crop for e in entries if e.crop}
    for name in earlier - written:  # numbered by an earlier run's photos: stale now
        (out / name).unlink(missing_ok=True)
    return entries


def _earlier_crops(out: Path) -> set[str]:
    """The crop files an earlier run listed in ``out``'s index (none without one)."""
    try:
        return {e.crop for e in load_index(out) if e.crop}
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return set()


def _crop_name(label: bool, k: int) -> str:
    """The crop of the k-th photo, relative to the output folder."""
    return f"{'with' if label else 'without'}/{k:05d}.jpg"


def load_index(folder: str | Path) -> list[FaceCrop]:
    """The crops listed in ``folder/index.json`` (all entries, faces found or not)."""
    path = Path(folder) / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no face-crop index; make one with `maskseg data faces`")
    with open(path, encoding="utf-8") as fh:
        return [FaceCrop(**e) for e in json.load(fh)["crops"]]


def photo_path(folder: str | Path) -> list[tuple[FaceCrop, Path]]:
    """Each index entry with the path of the photo it was cut from (under the index's
    ``root``, the folder ``maskseg data faces`` read)."""
    path = Path(folder) / INDEX
    with open(path, encoding="utf-8") as fh:
        root = Path(json.load(fh)["root"])
    return [(e, root / e.id) for e in load_index(folder)]


def face_splits(entries: list[FaceCrop], d: DataConfig | None = None) -> Splits:
    """Split the photos (found faces or not, so a detector change moves no photo) with the
    pairs' settings: the same test fraction, folds and seed, groups from the index.

    A model trained on every pair (test fraction 0) still leaves the photos' test part out:
    its photos are split with the default test fraction, so its false-mask and found rates
    are measured on photos it never saw.
    """
    d = DataConfig() if d is None else d
    fraction = d.test_fraction or DataConfig().test_fraction
    keys = {e.id: e.group for e in entries}
    return make_splits(list(keys), fraction, d.folds, d.seed, "", keys=keys)


@dataclass
class LabelledCrop:
    """A decoded face crop with its photo-level label (no pixel labels)."""

    id: str
    image: np.ndarray
    mask: bool


def load_crops(folder: str | Path, ids: list[str] | None = None) -> list[LabelledCrop]:
    """Decode the crops of the given ids (default: every face found), in index order."""
    folder = Path(folder)
    wanted = None if ids is None else set(ids)
    out = []
    for e in load_index(folder):
        if e.status == "ok" and (wanted is None or e.id in wanted):
            out.append(LabelledCrop(e.id, read_image(folder / e.crop), e.mask))
    return out
