"""The full MSFD layout: dataset.csv boxes, full photos, crops linked to boxes, scene windows."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_msfd_full

from maskseg.data.msfd import link_scenes, read_boxes, scene_window, window_rect
from maskseg.data.pairs import find_pairs
from maskseg.io import read_mask


def test_the_crop_pairs_read_as_before(msfd_full: Path):
    scan = find_pairs(msfd_full)
    assert scan.layout == "msfd" and len(scan.pairs) == 12  # 2/ (photos only) adds none
    assert not scan.unpaired_images and not scan.unpaired_masks


def test_boxes_are_read_with_or_without_a_header(msfd_full: Path):
    csv_path = msfd_full / "1" / "dataset.csv"
    boxes, bad = read_boxes(csv_path)
    assert len(boxes) == 14 and not bad
    assert boxes[0].photo.name == "000100.jpg" and boxes[0].box == (20, 40, 100, 130)
    assert [b.with_mask for b in boxes[:4]] == [True, True, False, True]
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(lines[1:] + ["missing.jpg,1,2,3,4,1", "000101.jpg,9,9,5,5,1"]))
    boxes, bad = read_boxes(csv_path)
    assert len(boxes) == 14 and len(bad) == 2
    assert "missing.jpg not in" in bad[0] and "empty box" in bad[1]


def test_every_crop_is_linked_to_the_box_it_was_cut_from(msfd_full: Path):
    truth = write_msfd_full(msfd_full.parent / "again")  # the same photos, to read the truth
    scenes = link_scenes(find_pairs(msfd_full))
    assert not scenes.unlinked and scenes.n_photos == 6 and scenes.n_boxes == 14
    assert {pid.split("/")[-1] for pid in scenes.links} == set(truth)
    for pid, link in scenes.links.items():
        photo, box = truth[pid.split("/")[-1]]
        assert (link.face.photo.name, link.face.box) == (photo, box), pid
        assert link.score > 0.9
        assert len(link.others) == (4 if photo == "000100.jpg" else 2)


def test_a_crop_that_shows_none_of_its_photos_faces_stays_unlinked(msfd_full: Path, caplog):
    crop = msfd_full / "1" / "face_crop" / "000101_1.jpg"
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(crop), noise)
    csv_path = msfd_full / "1" / "dataset.csv"
    csv_path.write_text(csv_path.read_text() + "missing.jpg,1,2,3,4,1\n")
    with caplog.at_level(logging.INFO, logger="maskseg.data.msfd"):
        scenes = link_scenes(find_pairs(msfd_full))
    assert [pid for pid, _ in scenes.unlinked] == ["000101_1"]
    assert "looks like" in scenes.unlinked[0][1]
    assert len(scenes.links) == 11
    said = [r.getMessage() for r in caplog.records]  # named, not only counted
    assert any("crop 000101_1 not linked: no masked box" in m for m in said), said
    assert any("unusable dataset.csv line" in m and "missing.jpg" in m for m in said), said


def test_the_crop_layout_alone_links_nothing(msfd_tiny: Path):
    scenes = link_scenes(find_pairs(msfd_tiny))
    assert not scenes.links and not scenes.unlinked


def test_a_scene_window_maps_the_crop_masks_into_the_photo(msfd_full: Path):
    scenes = link_scenes(find_pairs(msfd_full))
    link = scenes.links["000102_2"]  # the first box of photo 000102: (20, 40, 100, 130)
    image, mask = scene_window(link, 1.5)
    left, top, right, bottom = window_rect(link.face.box, 1.5)
    assert image.shape == (135, 135, 3) and mask.shape == (135, 135)
    assert (right - left, bottom - top) == (135, 135) and left < 0  # runs off the photo
    assert not image[:, :-left].any() and not mask[:, :-left].any()  # black outside it
    # the crop's mask, back at the box's size and place, is the window's mask there
    x1, y1, x2, y2 = link.face.box
    crop_mask = read_mask(link.pair.mask).astype(np.uint8)
    expected = cv2.resize(crop_mask, (x2 - x1, y2 - y1)) > 0
    got = mask[y1 - top : y2 - top, x1 - left : x2 - left]
    assert (got & expected).sum() / (got | expected).sum() > 0.99
    assert mask.sum() == pytest.approx(expected.sum(), rel=0.02)  # nothing else in view


def test_a_window_that_shows_a_face_of_unknown_mask_is_refused(msfd_full: Path):
    scenes = link_scenes(find_pairs(msfd_full))
    near = scenes.links["000100_2"]  # beside the masked face whose crop is missing
    scene_window(near, 1.5)
    with pytest.raises(ValueError, match="no crop mask"):
        scene_window(near, 2.5)
