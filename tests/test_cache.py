"""The decoded, resized training cache: built once, reused, rebuilt when a source changes, and
read by the training dataset exactly as decoded pairs are."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from maskseg.data import cache as C
from maskseg.data.pairs import find_pairs, load_samples


def test_cache_holds_the_pairs_at_the_models_size(msfd_tiny: Path, tmp_path: Path):
    pairs = find_pairs(msfd_tiny).pairs
    c = C.training_cache(pairs, 32, tmp_path / "cache")
    assert len(c) == 24 and c.ids == [p.id for p in pairs] and c.parents == c.ids
    assert c.images.shape == (24, 32, 32, 3) and c.masks.shape == (24, 32, 32)
    assert c.images.dtype == c.masks.dtype == np.uint8 and set(np.unique(c.masks)) == {0, 1}
    assert isinstance(c.images.base, np.memmap) or isinstance(c.images, np.memmap)
    assert not c.images.flags.writeable  # opened read-only: training cannot spoil it
    folders = [d.name for d in (tmp_path / "cache").iterdir()]
    assert len(folders) == 1 and folders[0].startswith("s32-")  # no temporary left


def test_a_second_run_reads_the_cache_without_decoding(msfd_tiny, tmp_path, monkeypatch):
    pairs = find_pairs(msfd_tiny).pairs
    first = C.training_cache(pairs, 32, tmp_path)

    def no_decoding(pair):
        raise AssertionError("decoded again")

    monkeypatch.setattr(C, "load_pair", no_decoding)
    again = C.training_cache(pairs, 32, tmp_path)
    assert again.folder == first.folder
    np.testing.assert_array_equal(again.images, first.images)


def test_a_changed_file_or_size_makes_a_new_cache(msfd_tiny: Path, tmp_path: Path):
    pairs = find_pairs(msfd_tiny).pairs
    first = C.training_cache(pairs, 32, tmp_path)
    assert C.training_cache(pairs, 48, tmp_path).folder != first.folder
    st = pairs[3].mask.stat()
    os.utime(pairs[3].mask, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert C.training_cache(pairs, 32, tmp_path).folder != first.folder


def test_bad_pairs_are_skipped_and_named(msfd_tiny: Path, tmp_path: Path):
    pairs = find_pairs(msfd_tiny).pairs
    pairs[5].image.write_bytes(b"not a jpeg")
    c = C.training_cache(pairs, 32, tmp_path)
    assert len(c) == 23 and pairs[5].id not in c.ids
    assert [pid for pid, _ in c.skipped] == [pairs[5].id]
    assert C.PairCache.open(c.folder).skipped == c.skipped


def test_a_killed_builds_leftover_is_removed(msfd_tiny: Path, tmp_path: Path):
    pairs = find_pairs(msfd_tiny).pairs
    key = C.cache_key(pairs, 32, 0.0)
    import socket

    dead = tmp_path / f".{key}.{socket.gethostname()}.999999999.tmp"
    dead.mkdir()
    (dead / C.IMAGES).write_bytes(b"half")
    C.training_cache(pairs, 32, tmp_path)
    assert not dead.exists()


@pytest.mark.parametrize("augment", ["none", "standard"])
def test_the_dataset_over_the_cache_equals_the_one_over_decoded_pairs(
    msfd_tiny: Path, tmp_path: Path, augment: str
):
    from maskseg.train.dataset import SegmentationDataset

    pairs = find_pairs(msfd_tiny).pairs
    c = C.training_cache(pairs, 32, tmp_path)
    ids = [p.id for p in pairs[4:20]]
    samples, _ = load_samples(pairs[4:20])
    cached = SegmentationDataset.from_arrays(c.ids, c.images, c.masks, c.rows(ids), augment, 7)
    decoded = SegmentationDataset(samples, 32, augment, 7)
    assert cached.ids == decoded.ids == ids
    for epoch in (0, 1):
        cached.epoch = decoded.epoch = epoch
        for i in range(len(decoded)):
            for a, b in zip(cached[i], decoded[i], strict=True):
                np.testing.assert_array_equal(a, b)


def test_scene_windows_join_the_cache_after_the_pairs(msfd_full: Path, tmp_path: Path):
    pairs = find_pairs(msfd_full).pairs
    c = C.training_cache(pairs, 32, tmp_path, scene_grow=1.5)
    assert len(c) == 24 and c.ids[:12] == [p.id for p in pairs]
    assert c.ids[12:] == [p + C.SCENE_SUFFIX for p in c.parents[12:]]
    assert c.masks[12:].mean() < c.masks[:12].mean()  # a window shows more than the face
    some = [pairs[0].id, pairs[5].id]
    rows = c.rows(some)
    assert [c.ids[r] for r in rows] == some + [s + C.SCENE_SUFFIX for s in some]
    assert list(c.rows(some, scenes=False)) == list(rows[:2])
    # a window that would show a masked face of unknown mask is left out, with the reason
    c = C.training_cache(pairs, 32, tmp_path, scene_grow=2.5)
    assert [pid for pid, _ in c.skipped] == ["000100_2" + C.SCENE_SUFFIX]
    assert "no crop mask" in c.skipped[0][1]
