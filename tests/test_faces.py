"""Face photos -> detector-framed crops, grouped splits."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskseg.data.faces import (
    dhash,
    face_splits,
    load_crops,
    load_index,
    merge_groups,
    name_group,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    "name, group",
    [
        ("0_0_anhu_0025.jpg", "person:anhu"),
        ("1_0_anhu_0104.jpg", "person:anhu"),
        ("0_0_0 copy 52.jpg", "0_0_0"),
        ("0_0_0 copy.jpeg", "0_0_0"),
        ("OIP (8).png", "oip"),
        ("photo.jpg_1088Wx1632H", "photo"),
        ("with_mask010.jpg", "with_mask010"),
    ],
)
def test_name_groups(name: str, group: str):
    assert name_group(name) == group


def test_near_duplicates_share_a_group():
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (200, 160))
    copy = cv2.resize(img, (100, 80), interpolation=cv2.INTER_AREA)  # a resized copy
    other = rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)
    assert dhash(img) == dhash(copy) != dhash(other)
    groups = merge_groups(
        {"a": "x", "b": "y", "c": "z"}, {"a": dhash(img), "b": dhash(copy), "c": dhash(other)}
    )
    assert groups["a"] == groups["b"] != groups["c"]


@pytest.fixture(scope="module")
def face_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    (root / "with_mask").mkdir()
    (root / "without_mask").mkdir()
    shutil.copy(EXAMPLES / "astronaut_masked.jpg", root / "with_mask" / "a.jpg")
    shutil.copy(EXAMPLES / "face.jpg", root / "with_mask" / "b copy 2.jpg")
    shutil.copy(EXAMPLES / "astronaut.jpg", root / "without_mask" / "1_0_eileen_0001.jpg")
    cv2.imwrite(str(root / "without_mask" / "flat.png"), np.full((120, 90, 3), 128, np.uint8))
    (root / "without_mask" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    return root


def test_crop_faces_writes_crops_and_index(face_root: Path, tmp_path: Path):
    from maskseg.data.faces import crop_faces

    entries = crop_faces(face_root, tmp_path / "crops")
    by_id = {e.id: e for e in entries}
    assert set(by_id) == {
        "with_mask/a.jpg",
        "with_mask/b copy 2.jpg",
        "without_mask/1_0_eileen_0001.jpg",
        "without_mask/flat.png",
        "without_mask/broken.jpg",
    }
    assert by_id["without_mask/flat.png"].status == "no face"
    assert "not a recognised" in by_id["without_mask/broken.jpg"].status
    ok = [e for e in entries if e.status == "ok"]
    assert len(ok) == 3 and all(e.score > 0.3 for e in ok)
    assert by_id["with_mask/a.jpg"].mask and not by_id["without_mask/1_0_eileen_0001.jpg"].mask
    # The portrait and its copy with a drawn mask hash alike: one group, whatever their
    # names say, so an edited copy never sits on the other side of the split.
    assert by_id["without_mask/1_0_eileen_0001.jpg"].group == by_id["with_mask/a.jpg"].group
    assert by_id["with_mask/b copy 2.jpg"].group == "b"
    crops = load_crops(tmp_path / "crops")
    assert [c.image.shape for c in crops] == [(250, 250, 3)] * 3
    index = json.loads((tmp_path / "crops" / "index.json").read_text())
    assert index["detector"] == "blazeface" and len(index["crops"]) == 5
    assert load_index(tmp_path / "crops")[0].id == entries[0].id


def test_face_splits_keep_groups_together():
    from maskseg.data.faces import FaceCrop

    entries = [
        FaceCrop(f"x/{p}_{k}", bool(p % 2), "", f"person:{p}", 1.0, [], 1, "ok")
        for p in range(20)
        for k in range(3)
    ]
    s = face_splits(entries)
    assert 0 < len(s.test) < len(entries) and len(s.folds) == 3
    parts = [set(s.test), *map(set, s.folds)]
    for p in range(20):
        members = {f"x/{p}_{k}" for k in range(3)}
        assert sum(bool(members & part) for part in parts) == 1
    assert face_splits(entries).test == s.test  # seeded
