"""The full MSFD release beyond its crop pairs: the face boxes of ``dataset.csv``, the full
photos of ``img/``, each crop linked to the box it was cut from, and windows of a photo around
a face with the crops' masks mapped into them (scene training pairs).

The release (sadjadrz/MFSD) lays out ``MSFD/1/{face_crop, face_crop_segmentation, img,
dataset.csv}`` and ``MSFD/2/img`` (photos without crops); ``dataset.csv`` holds one face box
per line, ``filename,x1,y1,x2,y2,with_mask``, ``filename`` naming the photo in ``img/``. The
CSV does not name the crop of a box, so a crop is linked by what it shows: among the boxes of
its photo (the crop's stem is the photo's stem, or the photo's stem and ``_k``), the one whose
region looks most like the crop, and only when it looks alike (``min_score``). A layout that
follows another convention is then reported as unlinked crops instead of being mislabelled.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from maskseg.data.pairs import Pair, PairScan
from maskseg.files import is_image_file
from maskseg.io import ImageReadError, decode_image, read_image, read_mask

log = logging.getLogger(__name__)

BOXES_CSV = "dataset.csv"
PHOTOS = "img"
COLUMNS = ("filename", "x1", "y1", "x2", "y2", "with_mask")
# Side of the grey thumbnails compared when linking a crop to a box: enough to tell two faces
# of one photo apart, small enough that linking 9,000 crops costs seconds.
THUMB = 24


@dataclass(frozen=True)
class FaceBox:
    """One line of ``dataset.csv``: a face in a full photo, in that photo's pixels."""

    photo: Path
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 (x2, y2 exclusive)
    with_mask: bool


@dataclass(frozen=True)
class SceneLink:
    """A crop pair and the face box in the full photo it was cut from.

    ``others``: the boxes of the same photo, each with its linked crop pair or None (a face
    without a mask, or a masked face whose crop is not in the data), so a window that shows
    a neighbour knows what its label is there. ``score``: the thumbnails' correlation.
    """

    pair: Pair
    face: FaceBox
    others: tuple[tuple[FaceBox, Pair | None], ...]
    score: float


@dataclass
class SceneScan:
    """What the full layout adds to a ``PairScan``: linked crops, and what could not be linked."""

    links: dict[str, SceneLink] = field(default_factory=dict)  # pair id -> link
    unlinked: list[tuple[str, str]] = field(default_factory=list)  # (pair id, why)
    bad_rows: list[str] = field(default_factory=list)  # CSV lines that could not be read
    n_boxes: int = 0
    n_photos: int = 0


def _flag(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "y", "mask", "with_mask"):
        return True
    if v in ("0", "false", "no", "n", "", "without_mask", "no_mask"):
        return False
    return float(v) > 0


def _photo_index(folder: Path) -> dict[str, Path]:
    """Photos by file name and by stem (a CSV may give either)."""
    index: dict[str, Path] = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if is_image_file(p):
                index.setdefault(p.name, p)
                index.setdefault(p.stem, p)
    return index


def read_boxes(csv_path: str | Path) -> tuple[list[FaceBox], list[str]]:
    """The face boxes of one ``dataset.csv`` (a header line is optional).

    Returns:
        (boxes whose photo exists in ``img/`` beside the CSV, lines that could not be used
        with the reason).
    """
    csv_path = Path(csv_path)
    photos = _photo_index(csv_path.parent / PHOTOS)
    boxes, bad = [], []
    with open(csv_path, encoding="utf-8-sig", newline="") as fh:
        for n, row in enumerate(csv.reader(fh), 1):
            if not row or not "".join(row).strip():
                continue
            if n == 1 and row[0].strip().lower() == "filename":
                continue
            where = f"{csv_path}:{n}"
            if len(row) < len(COLUMNS):
                bad.append(f"{where}: expected {','.join(COLUMNS)}, got {len(row)} fields")
                continue
            name = Path(row[0].strip().replace("\\", "/")).name
            photo = photos.get(name) or photos.get(Path(name).stem)
            if photo is None:
                bad.append(f"{where}: photo {name} not in {csv_path.parent / PHOTOS}")
                continue
            try:
                x1, y1, x2, y2 = (round(float(v)) for v in row[1:5])
                masked = _flag(row[5])
            except ValueError as exc:
                bad.append(f"{where}: {exc}")
                continue
            if x2 <= x1 or y2 <= y1:
                bad.append(f"{where}: empty box {x1},{y1},{x2},{y2}")
                continue
            boxes.append(FaceBox(photo, (x1, y1, x2, y2), masked))
    return boxes, bad


def _photo_of(stem: str, photo_stems: set[str]) -> str | None:
    """The photo a crop was cut from: its own stem, else the longest ``_``-prefix of it."""
    parts = stem.split("_")
    for k in range(len(parts), 0, -1):
        candidate = "_".join(parts[:k])
        if candidate in photo_stems:
            return candidate
    return None


def _thumb(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    t = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    t -= t.mean()
    return t / (np.linalg.norm(t) + 1e-6)


def _box_region(photo: np.ndarray, box: tuple[int, int, int, int], scale: float) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
    h, w = photo.shape[:2]
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, max(x2, x1 + 1)), min(h, max(y2, y1 + 1))
    return photo[y1:y2, x1:x2]


def link_scenes(scan: PairScan, min_score: float = 0.6) -> SceneScan:
    """Link every crop pair of ``scan`` to its face box where the folder has ``dataset.csv``
    and ``img/``; an empty result for the crop-only layout (the shared development copy).

    Each photo is decoded once, reduced to about the crops' size (linking compares small
    thumbnails), and its masked boxes are matched to its crops greedily, best match first.
    """
    out = SceneScan()
    by_folder: dict[Path, list[Pair]] = defaultdict(list)
    for pair in scan.pairs:
        by_folder[pair.image.parent.parent].append(pair)
    for folder, pairs in sorted(by_folder.items()):
        csv_path = folder / BOXES_CSV
        if not csv_path.is_file() or not (folder / PHOTOS).is_dir():
            continue
        boxes, bad = read_boxes(csv_path)
        out.bad_rows += bad
        out.n_boxes += len(boxes)
        per_photo: dict[str, list[FaceBox]] = defaultdict(list)
        for b in boxes:
            per_photo[b.photo.stem].append(b)
        out.n_photos += len(per_photo)
        crops: dict[str, list[Pair]] = defaultdict(list)
        for pair in pairs:
            photo = _photo_of(pair.image.stem, set(per_photo))
            if photo is None:
                out.unlinked.append((pair.id, "no photo in dataset.csv for this crop's name"))
            else:
                crops[photo].append(pair)
        for stem, photo_crops in sorted(crops.items()):
            _link_photo(per_photo[stem], photo_crops, min_score, out)
    if out.links or out.unlinked:
        log.info(
            "full MSFD layout: %d of %d crops linked to boxes in %d photos (%d unlinked, "
            "%d unusable CSV lines)",
            len(out.links),
            len(out.links) + len(out.unlinked),
            out.n_photos,
            len(out.unlinked),
            len(out.bad_rows),
        )
    shown = 5  # named, not only counted: the first few of each, the rest counted
    for pair_id, why in out.unlinked[:shown]:
        log.info("full MSFD layout: crop %s not linked: %s", pair_id, why)
    for row in out.bad_rows[:shown]:
        log.warning("full MSFD layout: unusable dataset.csv line: %s", row)
    more = len(out.unlinked) - shown, len(out.bad_rows) - shown
    if max(more) > 0:
        log.info(
            "full MSFD layout: %d more unlinked crops and %d more unusable lines not listed",
            max(0, more[0]),
            max(0, more[1]),
        )
    return out


def _link_photo(boxes: list[FaceBox], crops: list[Pair], min_score: float, out: SceneScan) -> None:
    try:
        # a reduced decode is enough to compare thumbnails
        photo, full = decode_image(boxes[0].photo, min_side=1024, shape_check=False)
        thumbs = [_thumb(read_image(p.image)) for p in crops]
    except ImageReadError as exc:
        out.unlinked += [(p.id, str(exc)) for p in crops]
        return
    scale = photo.shape[0] / full[0]
    masked = [i for i, b in enumerate(boxes) if b.with_mask]
    regions = [_thumb(_box_region(photo, boxes[i].box, scale)) for i in masked]
    scores = np.array([[float(r.ravel() @ t.ravel()) for r in regions] for t in thumbs])
    chosen: dict[int, tuple[int, float]] = {}  # crop -> (box index, score)
    if scores.size:
        for flat in np.argsort(-scores, axis=None, kind="stable"):
            c, m = divmod(int(flat), len(masked))
            if scores[c, m] < min_score:
                break
            if c in chosen or any(masked[m] == b for b, _ in chosen.values()):
                continue
            chosen[c] = (masked[m], float(scores[c, m]))
    crop_of_box = {b: crops[c] for c, (b, _) in chosen.items()}
    others = tuple((box, crop_of_box.get(i)) for i, box in enumerate(boxes))
    for c, pair in enumerate(crops):
        if c not in chosen:
            best = float(scores[c].max()) if scores.size else float("nan")
            out.unlinked.append((pair.id, f"no masked box of its photo looks like it ({best:.2f})"))
            continue
        b, score = chosen[c]
        out.links[pair.id] = SceneLink(pair, boxes[b], others, score)


# --------------------------------------------------------------------------- scene windows


def window_rect(box: tuple[int, int, int, int], grow: float) -> tuple[int, int, int, int]:
    """The square window of side ``grow`` x the box's longer side, centred on the box."""
    x1, y1, x2, y2 = box
    side = max(1, round(grow * max(x2 - x1, y2 - y1)))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    return left, top, left + side, top + side


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def scene_window(link: SceneLink, grow: float) -> tuple[np.ndarray, np.ndarray]:
    """A window of the full photo around the linked face (``window_rect``), with every linked
    crop mask of the photo resized to its box and pasted; outside the photo is black.

    Returns:
        (RGB uint8 window, bool mask), both of the window's size.

    Raises:
        ValueError: the window shows a masked face whose mask is unknown (its crop is not in
            the data): its pixels would be labelled "no mask" wrongly.
        ImageReadError: the photo or a mask cannot be read.
    """
    rect = window_rect(link.face.box, grow)
    for box, pair in link.others:
        if box.with_mask and pair is None and _overlaps(rect, box.box):
            raise ValueError(f"window shows the masked face at {box.box} that has no crop mask")
    photo = read_image(link.face.photo)
    h, w = photo.shape[:2]
    truth = np.zeros((h, w), bool)
    for box, pair in link.others:
        if pair is None:
            continue
        x1, y1, x2, y2 = box.box
        m = cv2.resize(read_mask(pair.mask).astype(np.uint8), (x2 - x1, y2 - y1)) > 0
        cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        if cx2 > cx1 and cy2 > cy1:
            truth[cy1:cy2, cx1:cx2] |= m[cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1]
    left, top, right, bottom = rect
    pad = (max(0, -top), max(0, bottom - h), max(0, -left), max(0, right - w))
    image = cv2.copyMakeBorder(photo, *pad, cv2.BORDER_CONSTANT, value=0)
    mask = cv2.copyMakeBorder(truth.astype(np.uint8), *pad, cv2.BORDER_CONSTANT, value=0)
    top, left = top + pad[0], left + pad[2]
    window = np.s_[top : top + right - rect[0], left : left + right - rect[0]]
    return image[window], mask[window] > 0
