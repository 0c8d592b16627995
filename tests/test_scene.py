"""Whole photos: detect -> crop -> segment -> paste, and `maskseg predict --scene`."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskseg.cli.main import main
from maskseg.data.synth import compose
from maskseg.io import read_image, read_mask
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.scene import ScenePredictor

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def scene() -> ScenePredictor:
    return ScenePredictor(Predictor.load())


@pytest.fixture(scope="module")
def two_faces() -> np.ndarray:
    face = read_image(EXAMPLES / "face.jpg")
    mask = read_mask(EXAMPLES / "face_truth.png")
    rng = np.random.default_rng(3)
    return compose(
        [("a", face, mask), ("b", face[:, ::-1].copy(), mask[:, ::-1])],
        rng,
        sizes=(200, 220),
        kind="flat",
    )


def test_no_face_gives_an_empty_mask(scene: ScenePredictor):
    result = scene.segment(np.full((240, 320, 3), 90, np.uint8))
    assert result.faces == [] and result.mask.shape == (240, 320) and not result.mask.any()


def test_two_faces_each_get_their_mask(scene: ScenePredictor, two_faces):
    result = scene.segment(two_faces.image)
    assert len(result.faces) == 2 and all(f.mask for f in result.faces)
    inter = (result.mask & two_faces.truth).sum()
    union = (result.mask | two_faces.truth).sum()
    assert inter / union > 0.6  # both drawn masks found, nothing elsewhere
    for p in two_faces.placements:
        x1, y1, x2, y2 = p.rect
        assert result.mask[y1:y2, x1:x2].mean() > 0.1
    record = result.as_record()
    assert record["width"] == 640 and len(record["faces"]) == 2
    assert {"box", "score", "crop", "mask_area", "mask"} <= set(record["faces"][0])


def test_reduced_image_gives_a_full_size_mask(scene: ScenePredictor, two_faces):
    full = scene.segment(two_faces.image)
    small = cv2.resize(two_faces.image, (320, 240), interpolation=cv2.INTER_AREA)
    up = scene.segment(small, size=(480, 640))
    assert up.mask.shape == (480, 640)
    assert (up.mask & full.mask).sum() / (up.mask | full.mask).sum() > 0.8
    np.testing.assert_allclose(up.faces[0].box, full.faces[0].box, atol=12)


def test_predict_scene_cli_writes_masks_json_and_overlays(tmp_path: Path, two_faces, capsys):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "two.jpg"), two_faces.image[..., ::-1])
    cv2.imwrite(str(src / "empty.png"), np.full((100, 150, 3), 200, np.uint8))
    out = tmp_path / "out"
    args = ["predict", str(src), "--output", str(out), "--scene", "--json", "--overlay"]
    assert main(args) == 0
    two = json.loads((out / "two.json").read_text())
    assert len(two["faces"]) == 2 and all(f["mask"] for f in two["faces"])
    empty = json.loads((out / "empty.json").read_text())
    assert empty["faces"] == [] and empty["mask_area"] == 0
    mask, truth = read_mask(out / "two.png"), two_faces.truth
    assert mask.shape == (480, 640)
    assert two["mask_area"] == pytest.approx(mask.mean(), abs=1e-6)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.7  # measured 0.78
    # each face: one box inside its pasted square, and its drawn mask found there
    boxes = [f["box"] for f in two["faces"]]
    for p in two_faces.placements:
        x1, y1, x2, y2 = p.rect
        inside = [b for b in boxes if x1 <= b[0] < b[2] <= x2 and y1 <= b[1] < b[3] <= y2]
        assert len(inside) == 1, (p.rect, boxes)
        m, t = mask[y1:y2, x1:x2], truth[y1:y2, x1:x2]
        assert (m & t).sum() / (m | t).sum() > 0.7  # measured 0.78 and 0.79
    squares = np.zeros_like(mask)
    for x1, y1, x2, y2 in (p.rect for p in two_faces.placements):
        squares[y1:y2, x1:x2] = True
    assert not (mask & ~squares).any()  # nothing outside the faces
    assert not read_mask(out / "empty.png").any()
    # the overlay tints the mask (towards cyan: less red) and leaves the rest as it was
    shown, photo = read_image(out / "two_overlay.jpg"), read_image(src / "two.jpg")
    assert shown.shape == photo.shape
    assert shown[mask][:, 0].mean() < 0.75 * photo[mask][:, 0].mean()  # measured 0.64
    # away from the mask and each face's box with its labels (on patches above and below it)
    drawn = mask.copy()
    for x1, y1, x2, y2 in (np.round(b).astype(int) for b in boxes):
        drawn[max(y1 - 24, 0) : y2 + 30, max(x1 - 4, 0) : max(x2, x1 + 150) + 4] = True
    assert drawn.mean() < 0.5
    assert np.abs(shown[~drawn].astype(int) - photo[~drawn]).mean() < 3
    # without --scene the JSON has the one face crop mode reads: the whole picture
    crop_out = tmp_path / "crop"
    assert main(["predict", str(src / "two.jpg"), "--output", str(crop_out), "--json"]) == 0
    crop = json.loads((crop_out / "two.json").read_text())
    assert (crop["mode"], crop["width"], crop["height"]) == ("crop", 640, 480)
    assert [f["box"] for f in crop["faces"]] == [[0.0, 0.0, 640.0, 480.0]]
    assert crop["faces"][0]["score"] is None
    crop_mask = read_mask(crop_out / "two.png")
    assert crop["mask_area"] == pytest.approx(crop_mask.mean(), abs=1e-6)
    assert crop["faces"][0]["mask"] == bool(crop_mask.any())


def score_check(below: float):
    """A hand-made learned check that reads only the detector score: probability 0.5 at
    ``below``, steep around it."""
    from maskseg.pipeline.face_check import LEARNED_FEATURES, LearnedCheck

    n = len(LEARNED_FEATURES)
    weights = np.zeros(n)
    weights[0] = 200.0
    return LearnedCheck(np.zeros(n), np.ones(n), weights, -200.0 * below)


def test_the_learned_check_empties_the_masks_it_finds_unlikely():
    """The README's astronaut: a check that finds every painted detection under score 0.5
    unlikely empties those masks (the collar), keeps the face's, and costs nothing with
    ``face_learned=None``; the same in video, through the same scene."""
    from maskseg.pipeline.scene_config import SceneConfig
    from maskseg.video.segmenter import VideoSegmenter

    image = read_image(EXAMPLES / "astronaut_masked.jpg")
    off = ScenePredictor(Predictor.load(), SceneConfig(face_learned=None)).segment(image)
    painted = [f.score for f in off.faces if f.mask]
    assert max(painted) > 0.5 and min(painted) < 0.5  # the face and at least one collar

    scene = ScenePredictor(Predictor.load(), SceneConfig(face_learned=0.5))
    scene._learned = score_check(0.5)
    on = scene.segment(image)
    assert [f.score for f in on.faces] == [f.score for f in off.faces]  # faces stay listed
    for a, b in zip(off.faces, on.faces, strict=True):
        assert b.mask == (a.mask and a.score >= 0.5)
    assert on.mask.sum() < off.mask.sum() and on.mask.any()
    # a reduced decode gives the same decision at the full size
    half = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
    full = scene.segment(half, size=image.shape[:2])
    assert [f.mask for f in full.faces] == [f.mask for f in scene.segment(half).faces]

    video = VideoSegmenter(scene)
    frame = video(image)
    kept = [f.score for f in frame.scene.faces if f.mask]
    assert kept and min(kept) >= 0.5
