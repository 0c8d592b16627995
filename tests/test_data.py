import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import synthetic_face, write_pair

from maskseg.config import DEFAULT_GROUP_REGEX
from maskseg.data.pairs import check_data, find_pairs, load_samples
from maskseg.data.splits import Splits, group_key, make_splits


def test_plain_layout_pairs_by_stem(tmp_path: Path):
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        write_pair(tmp_path / "images", tmp_path / "masks", name, *synthetic_face(rng, 32))
    (tmp_path / "masks" / "c.png").unlink()
    cv2.imwrite(str(tmp_path / "masks" / "orphan.png"), np.zeros((4, 4), np.uint8))
    scan = find_pairs(tmp_path)
    assert scan.layout == "plain"
    assert [p.id for p in scan.pairs] == ["a", "b"]
    assert scan.pairs[0].image.suffix == ".jpg" and scan.pairs[0].mask.suffix == ".png"
    assert [p.name for p in scan.unpaired_images] == ["c.jpg"]
    assert [p.name for p in scan.unpaired_masks] == ["orphan.png"]


def test_msfd_layout_and_root_errors(msfd_tiny: Path, tmp_path: Path):
    scan = find_pairs(msfd_tiny)
    assert scan.layout == "msfd" and len(scan.pairs) == 24
    assert len(find_pairs(msfd_tiny / "1").pairs) == 24  # pointing at MSFD/1 works too
    with pytest.raises(FileNotFoundError, match="MSFD layout"):
        find_pairs(tmp_path / "MSFD" / "1" / "face_crop")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_pairs(tmp_path / "nope")


def test_check_and_load_skip_bad_files(msfd_tiny: Path):
    crop = msfd_tiny / "1" / "face_crop"
    seg = msfd_tiny / "1" / "face_crop_segmentation"
    (crop / "faceMsak_person0_0_0_0.jpg").write_bytes(b"\xff\xd8 corrupt")
    cv2.imwrite(str(seg / "faceMsak_person1_0_0_0.png"), np.zeros((10, 12), np.uint8))
    (crop / "lonely.jpg").write_bytes((crop / "faceMsak_person2_0_0_0.jpg").read_bytes())
    report = check_data(msfd_tiny)
    assert report.n_pairs == 24 and report.n_valid == 22
    assert len(report.unreadable) == 1 and "faceMsak_person0_0_0_0.jpg" in report.unreadable[0]
    assert len(report.size_mismatches) == 1 and "12x10" in report.size_mismatches[0]
    assert [Path(p).name for p in report.unpaired_images] == ["lonely.jpg"]
    assert 0.1 < report.coverage["mean"] < 0.6
    assert not report.ok
    assert json.loads(report.to_json())["n_valid"] == 22
    assert "unreadable    : 1" in report.format()
    samples, skipped = load_samples(find_pairs(msfd_tiny).pairs)
    assert len(samples) == 22
    assert sorted(p.id for p, _ in skipped) == ["faceMsak_person0_0_0_0", "faceMsak_person1_0_0_0"]


def test_check_names_empty_masks_and_finds_masks_stored_as_labels(msfd_tiny: Path):
    """A mask saved as 0/1 (or as class indices) reads as empty (a mask pixel is one above
    127): the check names it, with what to do, and fails; a truly empty mask is named."""
    seg = msfd_tiny / "1" / "face_crop_segmentation"
    label = seg / "faceMsak_person3_0_0_0.png"
    ones = (cv2.imread(str(label), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8)  # 0/1
    cv2.imwrite(str(label), ones)
    blank = seg / "faceMsak_person4_0_0_0.png"
    cv2.imwrite(str(blank), np.zeros_like(ones))
    report = check_data(msfd_tiny)
    assert report.empty_masks == ["faceMsak_person4_0_0_0"] and not report.ok
    assert len(report.low_valued_masks) == 1 and "largest value 1" in report.low_valued_masks[0]
    text = report.format()
    assert "empty mask: faceMsak_person4_0_0_0" in text
    assert f"low-valued mask: {label} (largest value 1: labels stored as 0/1" in text


def test_check_names_entries_that_are_no_file_and_the_twin_it_paired(msfd_tiny: Path):
    """A broken link in place of an image used to be reported as the mask's "unpaired mask",
    a folder named like an image not at all, and a duplicate stem without the file used."""
    crop = msfd_tiny / "1" / "face_crop"
    seg = msfd_tiny / "1" / "face_crop_segmentation"
    image = crop / "faceMsak_person5_0_0_0.jpg"
    image.unlink()
    image.symlink_to(crop / "missing.jpg")
    (crop / "dir.jpg").mkdir()
    twin = seg / "faceMsak_person6_0_0_0.jpg"  # beside its .png
    twin.write_bytes((seg / "faceMsak_person6_0_0_0.png").read_bytes())
    report = check_data(msfd_tiny)
    text = report.format()
    assert f"not a file: {image} (broken link or symlink loop)" in text
    assert f"not a file: {crop / 'dir.jpg'} (a folder)" in text
    assert "(left out; paired: faceMsak_person6_0_0_0.jpg)" in text or (
        "(left out; paired: faceMsak_person6_0_0_0.png)" in text
    )


@pytest.mark.parametrize(
    "name,key",
    [
        ("faceMsak_houminghao_0_0_0", "facemsak_houminghao"),
        ("faceMsak_houminghao_0_0_12", "facemsak_houminghao"),
        ("facemsak_yangmi_0_0_0", "facemsak_yangmi"),
        ("faceMsak_t1_JaredPolis_0_0", "facemsak_t1_jaredpolis"),
        ("faceMsak_t1_6203_0_1", "facemsak_t1_6203"),
        ("faceMask1_ttt_6371_1_2", "facemask1_ttt_6371"),
        ("000123_1", "000123"),
        ("000123_2", "000123"),
        ("1/000123_2", "000123"),
        ("plainname", "plainname"),
    ],
)
def test_group_key(name: str, key: str):
    assert group_key(name, DEFAULT_GROUP_REGEX) == key


def _ids():
    ids = [f"faceMsak_p{i}_0_0_{k}" for i in range(30) for k in range(i % 4 + 1)]
    return ids + [f"{n:06d}_{k}" for n in range(40) for k in (1, 2)]


def test_splits_disjoint_grouped_and_deterministic(tmp_path: Path):
    ids = _ids()
    s = make_splits(ids, 0.2, 3, seed=7, group_regex=DEFAULT_GROUP_REGEX)
    parts = [set(s.test)] + [set(f) for f in s.folds]
    assert sum(len(p) for p in parts) == len(ids) and set().union(*parts) == set(ids)
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            assert not a & b
    groups = [{group_key(i, DEFAULT_GROUP_REGEX) for i in p} for p in parts]
    for i, a in enumerate(groups):
        for b in groups[i + 1 :]:
            assert not a & b, "a person/photo appears in two splits"
    assert abs(len(s.test) - 0.2 * len(ids)) <= 4
    assert max(map(len, s.folds)) - min(map(len, s.folds)) <= 4
    train, val = s.train_val(1)
    assert set(val) == set(s.folds[1]) and not set(train) & (set(val) | set(s.test))
    assert make_splits(ids, 0.2, 3, 7, DEFAULT_GROUP_REGEX) == s
    assert make_splits(ids, 0.2, 3, 8, DEFAULT_GROUP_REGEX).test != s.test
    s.save(tmp_path / "s.json")
    assert Splits.load(tmp_path / "s.json") == s


def test_split_errors():
    with pytest.raises(ValueError, match="too few"):
        make_splits(["a_x_1", "a_x_2"], 0.2, 3, 0, DEFAULT_GROUP_REGEX)
    with pytest.raises(ValueError, match="folds"):
        make_splits(_ids(), 0.2, 1, 0, DEFAULT_GROUP_REGEX)
    with pytest.raises(ValueError, match="fold 5"):
        make_splits(_ids(), 0.2, 3, 0, DEFAULT_GROUP_REGEX).train_val(5)


def test_real_data_split_keeps_people_together(real_data: Path):
    ids = [p.id for p in find_pairs(real_data).pairs]
    s = make_splits(ids, 0.2, 3, 0, DEFAULT_GROUP_REGEX)
    test_people = {group_key(i, DEFAULT_GROUP_REGEX) for i in s.test}
    rest_people = {group_key(i, DEFAULT_GROUP_REGEX) for i in s.trainval}
    assert not test_people & rest_people
    assert 25 <= len(s.test) <= 42
