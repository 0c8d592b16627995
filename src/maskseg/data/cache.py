"""The training pairs decoded once, resized to the model's input size and kept on disk as uint8
numpy arrays that training memory-maps: an epoch reads arrays instead of decoding JPEGs, the
processes of a ``torchrun`` job share one copy through the page cache instead of each holding
its own, and later runs and folds on the same data skip decoding altogether.

A cache folder is named by a digest of what it is made from (every source file's path, size
and modification time, the input size, the scene-window setting and this module's format), so
a changed file makes a new cache instead of serving stale pixels. It is written under a
temporary name and renamed into place, so a killed build leaves no half cache and two
machines building the same cache at once both end up with a whole one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskseg.data.msfd import BOXES_CSV, PHOTOS, SceneLink, link_scenes, scene_window
from maskseg.data.pairs import Pair, PairScan, load_pair
from maskseg.files import atomic_write_bytes
from maskseg.io import ImageReadError
from maskseg.pipeline.preprocess import resize_image, resize_mask

log = logging.getLogger(__name__)

FORMAT = 1
IMAGES, MASKS, META = "images.npy", "masks.npy", "meta.json"
SCENE_SUFFIX = "#scene"


@dataclass
class PairCache:
    """One cache: ``images`` (N, S, S, 3) and ``masks`` (N, S, S, 0/1) uint8, memory-mapped
    read-only; row i is ``ids[i]``, a pair or a scene window of the pair ``parents[i]``."""

    folder: Path
    ids: list[str]
    parents: list[str]
    images: np.ndarray
    masks: np.ndarray
    skipped: list[tuple[str, str]]  # (row id, why) for rows that could not be made

    @classmethod
    def open(cls, folder: str | Path) -> PairCache:
        folder = Path(folder)
        meta = json.loads((folder / META).read_text())
        n = len(meta["ids"])
        images = np.load(folder / IMAGES, mmap_mode="r")[:n]
        masks = np.load(folder / MASKS, mmap_mode="r")[:n]
        skipped = [(i, why) for i, why in meta["skipped"]]
        return cls(folder, meta["ids"], meta["parents"], images, masks, skipped)

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, pair_ids: list[str], scenes: bool = True) -> np.ndarray:
        """The rows of these pairs (and, with ``scenes``, of their scene windows): pairs in
        the order given, then the windows in the same order."""
        where: dict[str, list[int]] = {}
        for r, parent in enumerate(self.parents):
            where.setdefault(parent, []).append(r)
        own = [r for p in pair_ids for r in where.get(p, []) if self.ids[r] == p]
        windows = [r for p in pair_ids for r in where.get(p, []) if self.ids[r] != p]
        return np.array(own + (windows if scenes else []), np.int64)


def _stat(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def cache_key(pairs: list[Pair], size: int, scene_grow: float) -> str:
    """Digest of everything a cache is made from (file identities, not contents: reading
    9,000 files' bytes to name the cache would cost what the cache saves)."""
    sources: list = [FORMAT, size, scene_grow]
    sources += [[p.id, _stat(p.image), _stat(p.mask)] for p in pairs]
    if scene_grow > 0:
        for folder in sorted({p.image.parent.parent for p in pairs}):
            if (folder / BOXES_CSV).is_file():
                sources.append(_stat(folder / BOXES_CSV))
                sources += [_stat(f) for f in sorted((folder / PHOTOS).glob("*")) if f.is_file()]
    digest = hashlib.sha256(json.dumps(sources).encode()).hexdigest()
    return f"s{size}-{digest[:20]}"


def training_cache(
    pairs: list[Pair], size: int, folder: str | Path, scene_grow: float = 0.0
) -> PairCache:
    """The cache of these pairs at ``size`` under ``folder``, built first if missing.

    Args:
        pairs: the pairs a run may train on (never the held-out test split).
        scene_grow: > 0 adds, for every pair linked to a face box of the full MSFD layout
            (``maskseg.data.msfd``), a window of the full photo ``scene_grow`` times the box
            with the crops' masks mapped into it, as a further row.
    """
    root = Path(folder)
    final = root / cache_key(pairs, size, scene_grow)
    if (final / META).is_file():
        return PairCache.open(final)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root, final.name)
    tmp = root / f".{final.name}.{socket.gethostname()}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _build(pairs, size, scene_grow, tmp)
        try:
            tmp.rename(final)
        except OSError:  # another process renamed its whole copy first: use that one
            if not (final / META).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PairCache.open(final)


def _remove_stale(root: Path, name: str) -> None:
    """Half-built copies of this cache left by killed processes of this machine."""
    host = socket.gethostname()
    for d in root.glob(f".{name}.{host}.*.tmp"):
        pid = d.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _build(pairs: list[Pair], size: int, scene_grow: float, folder: Path) -> None:
    t0 = time.perf_counter()
    links = {}
    if scene_grow > 0:
        root = pairs[0].image.parent.parent if pairs else folder
        links = link_scenes(PairScan(root, "msfd", pairs)).links
    n_max = len(pairs) + len(links)
    from numpy.lib.format import open_memmap

    images = open_memmap(folder / IMAGES, "w+", np.uint8, (max(1, n_max), size, size, 3))
    masks = open_memmap(folder / MASKS, "w+", np.uint8, (max(1, n_max), size, size))
    ids, parents, skipped = [], [], []
    for row_id, parent, made in _rows(pairs, links, scene_grow):
        if isinstance(made, str):
            skipped.append((row_id, made))
            continue
        images[len(ids)] = resize_image(made[0], size)
        masks[len(ids)] = resize_mask(made[1], size)
        ids.append(row_id)
        parents.append(parent)
    images.flush()
    masks.flush()
    meta = {
        "format": FORMAT,
        "size": size,
        "scene_grow": scene_grow,
        "ids": ids,
        "parents": parents,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    atomic_write_bytes(folder / META, json.dumps(meta).encode())
    log.info(
        "cached %d rows (%d scene windows) at %d px in %.1f s",
        len(ids),
        len(ids) - len([i for i in ids if not i.endswith(SCENE_SUFFIX)]),
        size,
        meta["seconds"],
    )


def _rows(pairs: list[Pair], links: dict[str, SceneLink], grow: float) -> Iterator[tuple]:
    """(row id, parent pair id, (image, mask) or why it could not be made), pairs first."""
    for pair in pairs:
        try:
            sample = load_pair(pair)
        except (ImageReadError, ValueError) as exc:
            log.warning("skipping pair %s: %s", pair.id, exc)
            yield pair.id, pair.id, str(exc)
            continue
        yield pair.id, pair.id, (sample.image, sample.mask)
    for pid, link in links.items():
        try:
            yield pid + SCENE_SUFFIX, pid, scene_window(link, grow)
        except (ImageReadError, ValueError) as exc:
            yield pid + SCENE_SUFFIX, pid, str(exc)
