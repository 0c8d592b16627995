"""Find, decode and check image/mask pairs (MSFD release layout and plain folders); how they
are split is ``maskseg.data.splits``."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from maskseg.files import is_image_file, is_image_name
from maskseg.io import MASK_THRESHOLD, ImageReadError, read_gray, read_image, read_mask

log = logging.getLogger(__name__)

MSFD_IMAGES, MSFD_MASKS = "face_crop", "face_crop_segmentation"
PLAIN_IMAGES, PLAIN_MASKS = "images", "masks"


@dataclass(frozen=True)
class Pair:
    id: str
    image: Path
    mask: Path


@dataclass
class PairScan:
    """What a folder holds: matched pairs and files without a partner."""

    root: Path
    layout: str
    pairs: list[Pair] = field(default_factory=list)
    unpaired_images: list[Path] = field(default_factory=list)
    unpaired_masks: list[Path] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)
    # entries named like images that are no file to read: (path, why)
    bad_entries: list[tuple[Path, str]] = field(default_factory=list)
    # each duplicate's stem -> the file paired instead
    used_instead: dict[Path, Path] = field(default_factory=dict)


def _image_mask_dirs(root: Path) -> tuple[str, list[tuple[Path, Path]]]:
    if (root / MSFD_IMAGES).is_dir():
        return "msfd", [(root / MSFD_IMAGES, root / MSFD_MASKS)]
    subs = sorted(d for d in root.iterdir() if d.is_dir() and (d / MSFD_IMAGES).is_dir())
    if subs:
        return "msfd", [(d / MSFD_IMAGES, d / MSFD_MASKS) for d in subs]
    if (root / PLAIN_IMAGES).is_dir():
        return "plain", [(root / PLAIN_IMAGES, root / PLAIN_MASKS)]
    raise FileNotFoundError(
        f"{root}: no data found. Expected the MSFD layout (ROOT/1/{MSFD_IMAGES}/NAME.jpg with "
        f"ROOT/1/{MSFD_MASKS}/NAME.jpg) or a plain layout (ROOT/{PLAIN_IMAGES}/ with "
        f"ROOT/{PLAIN_MASKS}/), paired by file stem."
    )


def _by_stem(
    folder: Path, bad: list[tuple[Path, str]] | None = None
) -> tuple[dict[str, Path], list[Path]]:
    """Image files by stem, and the files whose stem was taken; entries named like images
    that are no file (a broken link, a symlink loop, a folder) go to ``bad`` with why."""
    out: dict[str, Path] = {}
    dups: list[Path] = []
    if not folder.is_dir():
        return out, dups
    for p in sorted(folder.iterdir()):
        if not is_image_file(p):
            if bad is not None and is_image_name(p):
                if p.is_symlink() and not p.exists():
                    why = "broken link or symlink loop"
                else:
                    why = "a folder" if p.is_dir() else "not a regular file"
                bad.append((p, why))
            continue
        if p.stem in out:
            dups.append(p)
        else:
            out[p.stem] = p
    return out, dups


def find_pairs(root: str | Path) -> PairScan:
    """Pair images with masks by file stem (``a.jpg`` with ``a.png`` is a pair).

    Raises FileNotFoundError when ``root`` holds neither layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data folder does not exist")
    layout, dirs = _image_mask_dirs(root)
    scan = PairScan(root=root, layout=layout)
    for img_dir, mask_dir in dirs:
        # Several MSFD sub-folders may reuse a stem: prefix the sub-folder then.
        prefix = f"{img_dir.parent.name}/" if len(dirs) > 1 else ""
        images, dup_i = _by_stem(img_dir, scan.bad_entries)
        masks, dup_m = _by_stem(mask_dir, scan.bad_entries)
        scan.duplicates += dup_i + dup_m
        scan.used_instead.update({p: images[p.stem] for p in dup_i})
        scan.used_instead.update({p: masks[p.stem] for p in dup_m})
        for stem in sorted(images.keys() | masks.keys()):
            if stem in images and stem in masks:
                scan.pairs.append(Pair(prefix + stem, images[stem], masks[stem]))
            elif stem in images:
                scan.unpaired_images.append(images[stem])
            else:
                scan.unpaired_masks.append(masks[stem])
    return scan


# --------------------------------------------------------------------------- validation


@dataclass
class Sample:
    """A decoded, valid pair. ``image`` is RGB uint8 (H, W, 3); ``mask`` bool (H, W)."""

    id: str
    image: np.ndarray
    mask: np.ndarray


def load_pair(pair: Pair) -> Sample:
    """Decode one pair; raises ImageReadError / ValueError naming the bad file."""
    image = read_image(pair.image)
    mask = read_mask(pair.mask)
    if image.shape[:2] != mask.shape:
        raise ValueError(
            f"{pair.mask}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
            f"{pair.image.name} size {image.shape[1]}x{image.shape[0]}"
        )
    return Sample(pair.id, image, mask)


def load_samples(pairs: list[Pair]) -> tuple[list[Sample], list[tuple[Pair, str]]]:
    """Decode all pairs, skipping bad ones with a warning that names them.

    Returns:
        (samples, skipped) where skipped holds (pair, reason) for every pair left out.
    """
    samples, skipped = [], []
    for pair in pairs:
        try:
            samples.append(load_pair(pair))
        except (ImageReadError, ValueError) as exc:
            log.warning("skipping pair %s: %s", pair.id, exc)
            skipped.append((pair, str(exc)))
    return samples, skipped


@dataclass
class DataReport:
    root: str
    layout: str
    n_pairs: int
    n_valid: int
    unpaired_images: list[str]
    unpaired_masks: list[str]
    duplicates: list[str]
    unreadable: list[str]
    size_mismatches: list[str]
    image_sizes: dict[str, int]
    coverage: dict[str, float]
    empty_masks: list[str]
    # masks whose pixels are all at or under MASK_THRESHOLD but not all 0: labels stored as
    # 0/1 or as class indices, which read as empty (a mask pixel is one above 127)
    low_valued_masks: list[str] = field(default_factory=list)
    bad_entries: list[str] = field(default_factory=list)  # image names that are no file

    @property
    def ok(self) -> bool:
        bad = self.unreadable or self.size_mismatches or self.low_valued_masks
        return self.n_valid > 0 and not bad

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def format(self) -> str:
        cov = self.coverage
        lines = [
            f"data root     : {self.root} ({self.layout} layout)",
            f"pairs         : {self.n_pairs} found, {self.n_valid} valid",
            f"unpaired      : {len(self.unpaired_images)} images, {len(self.unpaired_masks)} masks",
            f"not files     : {len(self.bad_entries)} (named like images)",
            f"unreadable    : {len(self.unreadable)}",
            f"size mismatch : {len(self.size_mismatches)}",
            f"empty masks   : {len(self.empty_masks)}",
            f"low-valued    : {len(self.low_valued_masks)} (masks read as empty: a mask pixel "
            f"is one above {MASK_THRESHOLD})",
            "image sizes   : "
            + ", ".join(
                f"{k} ({v})" for k, v in sorted(self.image_sizes.items(), key=lambda kv: -kv[1])[:5]
            ),
        ]
        if cov:
            lines.append(
                f"mask coverage : mean {cov['mean']:.1%}, std {cov['std']:.1%}, "
                f"min {cov['min']:.1%}, median {cov['median']:.1%}, max {cov['max']:.1%}"
            )
        for title, items in (
            ("unpaired image", self.unpaired_images),
            ("unpaired mask", self.unpaired_masks),
            ("not a file", self.bad_entries),
            ("duplicate stem", self.duplicates),
            ("unreadable", self.unreadable),
            ("size mismatch", self.size_mismatches),
            ("empty mask", self.empty_masks),
            ("low-valued mask", self.low_valued_masks),
        ):
            lines += [f"  {title}: {item}" for item in items]
        return "\n".join(lines)


def check_data(root: str | Path) -> DataReport:
    """Decode every pair under ``root`` and report problems and mask-coverage statistics."""
    scan = find_pairs(root)
    unreadable, mismatches, empty, low, coverages = [], [], [], [], []
    sizes: dict[str, int] = defaultdict(int)
    for pair in scan.pairs:
        try:
            sample = load_pair(pair)
        except ImageReadError as exc:
            unreadable.append(str(exc))
            continue
        except ValueError as exc:
            mismatches.append(str(exc))
            continue
        h, w = sample.mask.shape
        sizes[f"{w}x{h}"] += 1
        c = float(sample.mask.mean())
        coverages.append(c)
        if c == 0:
            top = int(read_gray(pair.mask).max())
            if top:
                low.append(
                    f"{pair.mask} (largest value {top}: labels stored as 0/1 or class indices? "
                    "save masks as 0/255)"
                )
            else:
                empty.append(pair.id)
    cov = np.array(coverages)
    coverage = (
        {
            "mean": float(cov.mean()),
            "std": float(cov.std()),
            "min": float(cov.min()),
            "median": float(np.median(cov)),
            "max": float(cov.max()),
        }
        if len(cov)
        else {}
    )
    return DataReport(
        root=str(scan.root),
        layout=scan.layout,
        n_pairs=len(scan.pairs),
        n_valid=len(coverages),
        unpaired_images=[str(p) for p in scan.unpaired_images],
        unpaired_masks=[str(p) for p in scan.unpaired_masks],
        duplicates=[
            f"{p} (left out; paired: {scan.used_instead[p].name})"
            if p in scan.used_instead
            else str(p)
            for p in scan.duplicates
        ],
        bad_entries=[f"{p} ({why})" for p, why in scan.bad_entries],
        unreadable=unreadable,
        size_mismatches=mismatches,
        image_sizes=dict(sizes),
        coverage=coverage,
        empty_masks=empty,
        low_valued_masks=low,
    )
