"""Find, validate and split image/mask pairs (MSFD release layout and plain folders)."""

from __future__ import annotations

import json
import logging
import random
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from maskseg.config import DataConfig
from maskseg.files import atomic_write_bytes, is_image_file
from maskseg.io import ImageReadError, read_image, read_mask

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


def _by_stem(folder: Path) -> tuple[dict[str, Path], list[Path]]:
    out: dict[str, Path] = {}
    dups: list[Path] = []
    if not folder.is_dir():
        return out, dups
    for p in sorted(folder.iterdir()):
        if not is_image_file(p):
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
        images, dup_i = _by_stem(img_dir)
        masks, dup_m = _by_stem(mask_dir)
        scan.duplicates += dup_i + dup_m
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

    @property
    def ok(self) -> bool:
        return self.n_valid > 0 and not (self.unreadable or self.size_mismatches)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def format(self) -> str:
        cov = self.coverage
        lines = [
            f"data root     : {self.root} ({self.layout} layout)",
            f"pairs         : {self.n_pairs} found, {self.n_valid} valid",
            f"unpaired      : {len(self.unpaired_images)} images, {len(self.unpaired_masks)} masks",
            f"unreadable    : {len(self.unreadable)}",
            f"size mismatch : {len(self.size_mismatches)}",
            f"empty masks   : {len(self.empty_masks)}",
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
            ("duplicate stem", self.duplicates),
            ("unreadable", self.unreadable),
            ("size mismatch", self.size_mismatches),
        ):
            lines += [f"  {title}: {item}" for item in items]
        return "\n".join(lines)


def check_data(root: str | Path) -> DataReport:
    """Decode every pair under ``root`` and report problems and mask-coverage statistics."""
    scan = find_pairs(root)
    unreadable, mismatches, empty, coverages = [], [], [], []
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
        duplicates=[str(p) for p in scan.duplicates],
        unreadable=unreadable,
        size_mismatches=mismatches,
        image_sizes=dict(sizes),
        coverage=coverage,
        empty_masks=empty,
    )


# --------------------------------------------------------------------------- splits


def group_key(pair_id: str, regex: str) -> str:
    """The person / source-photo key of a pair; the whole stem when the regex does not match."""
    name = pair_id.rsplit("/", 1)[-1]
    m = re.search(regex, name)
    if not m:
        return name.lower()
    return (m.group(1) if m.groups() else m.group(0)).lower()


@dataclass
class Splits:
    """Pair ids of the held-out test split and of K validation folds over the rest."""

    test: list[str]
    folds: list[list[str]]
    seed: int
    group_regex: str
    test_fraction: float

    def train_val(self, fold: int) -> tuple[list[str], list[str]]:
        """(train ids, val ids) for one fold; the test split is in neither."""
        if not 0 <= fold < len(self.folds):
            raise ValueError(f"fold {fold} out of range 0..{len(self.folds) - 1}")
        val = self.folds[fold]
        train = [i for k, f in enumerate(self.folds) if k != fold for i in f]
        return sorted(train), sorted(val)

    @property
    def trainval(self) -> list[str]:
        return sorted(i for f in self.folds for i in f)

    def save(self, path: str | Path) -> None:
        atomic_write_bytes(Path(path), json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def load(cls, path: str | Path) -> Splits:
        with open(path, encoding="utf-8") as fh:
            return cls(**json.load(fh))


def make_splits(
    ids: list[str],
    test_fraction: float,
    folds: int,
    seed: int,
    group_regex: str,
    keys: dict[str, str] | None = None,
) -> Splits:
    """Seeded grouped split: whole groups go to the test split until it holds
    ``test_fraction`` of the images, the remaining groups are dealt to ``folds`` folds, largest
    group first, each to the fold with the fewest images so far.

    ``keys`` (id -> group) replaces the regex where groups come from elsewhere (face photos:
    person names and near-duplicate hashes, ``maskseg.data.faces``)."""
    if folds < 2:
        raise ValueError(f"need at least 2 folds, got {folds}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    groups: dict[str, list[str]] = defaultdict(list)
    for i in sorted(ids):
        groups[keys[i] if keys is not None else group_key(i, group_regex)].append(i)
    keys = sorted(groups)
    if len(keys) < folds + (1 if test_fraction > 0 else 0):
        raise ValueError(
            f"{len(keys)} groups are too few for {folds} folds and a test split; "
            "add data or loosen --group-regex"
        )
    rng = random.Random(seed)
    rng.shuffle(keys)
    target = round(test_fraction * len(ids))
    test: list[str] = []
    rest: list[str] = []
    for k in keys:
        # Add a group to test while that brings the test size closer to the target.
        if test_fraction > 0 and abs(len(test) + len(groups[k]) - target) < abs(len(test) - target):
            test += groups[k]
        else:
            rest.append(k)
    fold_ids: list[list[str]] = [[] for _ in range(folds)]
    for k in sorted(rest, key=lambda k: -len(groups[k])):  # stable: keeps the shuffled order
        smallest = min(range(folds), key=lambda f: len(fold_ids[f]))
        fold_ids[smallest] += groups[k]
    return Splits(
        test=sorted(test),
        folds=[sorted(f) for f in fold_ids],
        seed=seed,
        group_regex=group_regex,
        test_fraction=test_fraction,
    )


def splits_for(ids: list[str], d: DataConfig | None = None) -> Splits:
    """The split a data config defines for these ids (``DataConfig()``: the project's canonical
    split, used by training, evaluation, tuning and the comparison alike)."""
    d = DataConfig() if d is None else d
    return make_splits(ids, d.test_fraction, d.folds, d.seed, d.group_regex)


def check_same_split(splits: Splits, d: DataConfig, what: str) -> None:
    """Refuse, naming the difference, when ``splits`` was not made with ``d``'s settings: a
    model scored on another split's test ids may have trained on some of them."""
    mine = {
        "seed (--split-seed)": d.seed,
        "test_fraction": d.test_fraction,
        "group_regex": d.group_regex,
        "folds": d.folds,
    }
    theirs = {
        "seed (--split-seed)": splits.seed,
        "test_fraction": splits.test_fraction,
        "group_regex": splits.group_regex,
        "folds": len(splits.folds),
    }
    diff = [f"{k}: {theirs[k]!r} vs the model's {mine[k]!r}" for k in mine if mine[k] != theirs[k]]
    if diff:
        raise ValueError(
            f"{what} was made with other split settings than the model was trained with "
            f"({'; '.join(diff)}); its test ids may include the model's training images"
        )


@dataclass
class SplitData:
    """Decoded samples of one part of a data folder, with the split they come from."""

    root: Path
    splits: Splits
    samples: dict[str, Sample]
    skipped: list[tuple[str, str]]  # (pair id, reason) for pairs that failed to decode
    n_pairs: int  # pairs found under root, readable or not

    def take(self, ids: list[str]) -> list[Sample]:
        """The decoded samples of these ids, in the given order (unreadable ones left out)."""
        return [self.samples[i] for i in ids if i in self.samples]


def load_split(
    root: str | Path,
    d: DataConfig | None = None,
    part: str | list[str] = "all",
    splits: Splits | None = None,
) -> SplitData:
    """The one way to load data for training, evaluation, tuning and comparison.

    Pairs are found under ``root`` and split over all pairs found (before bad ones are dropped,
    so a file that fails to decode never moves other pairs between splits); then only the pairs
    of ``part`` are decoded, so tuning never opens a test image.

    Args:
        d: split settings (None: the canonical split).
        part: "all", "test", "trainval" or an explicit list of ids.
        splits: a split saved with a run (checked against ``d``), instead of remaking it.
    """
    d = DataConfig() if d is None else d
    scan = find_pairs(root)
    if splits is None:
        splits = splits_for([p.id for p in scan.pairs], d)
    else:
        check_same_split(splits, d, "the given splits")
    if isinstance(part, str):
        if part not in ("all", "test", "trainval"):
            raise ValueError(f"unknown split part {part!r}; valid: all, test, trainval")
        wanted = None if part == "all" else set(getattr(splits, part))
    else:
        wanted = set(part)
    pairs = [p for p in scan.pairs if wanted is None or p.id in wanted]
    samples, skipped = load_samples(pairs)
    return SplitData(
        Path(root),
        splits,
        {s.id: s for s in samples},
        [(p.id, why) for p, why in skipped],
        len(scan.pairs),
    )
