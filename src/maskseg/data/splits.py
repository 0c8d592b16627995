"""Grouped, seeded splits of the pairs and the one loader of a split. Apart from finding and
decoding pairs (``maskseg.data.pairs``) because the rule that the held-out test split never
leaks into training or tuning lives here: a person's photos stay in one part, a saved split is
checked against the model's settings, and only the part asked for is decoded."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from maskseg.config import DataConfig
from maskseg.data.pairs import PairScan, Sample, find_pairs, load_samples
from maskseg.files import atomic_write_bytes


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


def pairs_digest(ids: list[str]) -> str:
    """A short fingerprint of a set of pair ids (order does not matter)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def check_same_pairs(ids: list[str], d: DataConfig, root: str | Path) -> None:
    """Refuse to rebuild a model's split from a folder holding other pairs than the one it
    was trained on: the split is a function of every id, so its "test" part would then hold
    some of the model's training pairs. Files made before the fingerprint was kept pass."""
    if d.pairs_digest and pairs_digest(ids) != d.pairs_digest:
        raise ValueError(
            f"{root}: its {len(ids)} pairs are not the set the model's split was made over "
            "(another folder, a subset or more pairs), so the test split rebuilt here would "
            "hold some of the model's training pairs; give the data folder it was trained on"
        )


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
    scan: PairScan | None = None,
) -> SplitData:
    """The one way to load data for training, evaluation, tuning and comparison.

    Pairs are found under ``root`` and split over all pairs found (before bad ones are dropped,
    so a file that fails to decode never moves other pairs between splits); then only the pairs
    of ``part`` are decoded, so tuning never opens a test image.

    Args:
        d: split settings (None: the canonical split).
        part: "all", "test", "trainval" or an explicit list of ids.
        splits: a split saved with a run (checked against ``d``), instead of remaking it.
        scan: ``find_pairs(root)`` when the caller has it already (listing a large folder
            costs seconds: a run lists it once).
    """
    d = DataConfig() if d is None else d
    scan = find_pairs(root) if scan is None else scan
    if splits is None:
        ids = [p.id for p in scan.pairs]
        # "all" (a new data set, scored whole), or a model without a test split, needs none
        if part in ("test", "trainval") and d.test_fraction > 0:
            check_same_pairs(ids, d, root)
        splits = splits_for(ids, d)
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
