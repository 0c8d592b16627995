"""The face check: which detections stay (hand-made boxes and scores; the real landmark
model on a real photo and on a crop of background)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maskseg.io import read_image
from maskseg.pipeline.detect.detections import Detections
from maskseg.pipeline.face_check import (
    LEARNED_FEATURES,
    FaceCheck,
    FaceChecker,
    LearnedCheck,
    detection_features,
    fit_logistic,
    in_zones,
    keep_mask,
    keypoint_roll,
    keypoints_implausible,
    needs_presence,
)

ROOT = Path(__file__).resolve().parents[1]
BOXES = np.array([[0, 0, 100, 100], [200, 0, 240, 40], [300, 0, 320, 20]], np.float64)


def test_off_keeps_everything():
    assert keep_mask(BOXES, np.array([0.9, 0.3, 0.3]), FaceCheck()).all()
    assert not FaceCheck().active


def test_size_rule_hand_computed():
    # sides 100, 40, 20 against the largest (100): 1/3 keeps 100 and 40, 1/2 only 100
    scores = np.array([0.9, 0.9, 0.9])
    np.testing.assert_array_equal(
        keep_mask(BOXES, scores, FaceCheck(min_side=1 / 3)), [True, True, False]
    )
    np.testing.assert_array_equal(
        keep_mask(BOXES, scores, FaceCheck(min_side=0.5)), [True, False, False]
    )


def test_presence_rule_only_for_unsure_detections():
    check = FaceCheck(presence=0.05, below=0.5)
    scores = np.array([0.8, 0.3, 0.45])
    np.testing.assert_array_equal(needs_presence(scores, check), [False, True, True])
    presence = np.array([np.nan, 0.01, 0.2])  # the sure one was never scored
    np.testing.assert_array_equal(keep_mask(BOXES, scores, check, presence), [True, False, True])
    with pytest.raises(ValueError, match="presence scores"):
        keep_mask(BOXES, scores, check)


def test_checker_with_the_real_landmark_model():
    """A real face with a low detector score stays; a window of plain background does not."""
    image = read_image(ROOT / "examples" / "astronaut.jpg")
    from maskseg.pipeline.finder import FaceFinder

    dets = FaceFinder().find(image)
    assert len(dets)
    face = dets[0]
    # a box on flat grey, with keypoints placed as on a face
    grey = np.full_like(image, 128)
    boxes = np.vstack([face.boxes, face.boxes])
    kps = np.vstack([face.keypoints, face.keypoints])
    fake = Detections(boxes, np.array([0.3, 0.3]), kps)  # both "unsure"
    checker = FaceChecker(FaceCheck(presence=0.05, below=0.5))
    assert len(checker(image, fake)) == 2  # the astronaut's face, twice
    assert len(checker(grey, fake)) == 0  # nothing there
    assert len(FaceChecker(FaceCheck(presence=0.05, below=0.2))(grey, fake)) == 2  # sure ones


def test_finder_drops_a_face_far_smaller_than_the_largest():
    """A big face and a copy at a sixth of its size: the size check (the shipped default,
    0.25) drops the small one; off, both are found."""
    import cv2

    from maskseg.pipeline.finder import FaceFinder
    from maskseg.pipeline.scene_config import SceneConfig

    face = read_image(ROOT / "examples" / "astronaut.jpg")[46:206, 146:306]  # her face
    big = cv2.resize(face, (480, 480), interpolation=cv2.INTER_AREA)
    small = cv2.resize(face, (80, 80), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[:, :480] = big
    frame[200:280, 540:620] = small
    both = FaceFinder(SceneConfig(face_min_side=None)).find(frame)
    centres = (both.boxes[:, 0] + both.boxes[:, 2]) / 2
    assert (centres > 520).any() and (centres < 480).any()  # both faces found without it
    kept = FaceFinder(SceneConfig()).find(frame)
    assert SceneConfig().face_min_side == 0.25
    kept_centres = (kept.boxes[:, 0] + kept.boxes[:, 2]) / 2
    assert (kept_centres < 480).any() and not (kept_centres > 520).any()


# ------------------------------------------------------------------ zones around a larger face


def zone_boxes(*centres_sides):
    """Square boxes from (cx, cy, side)."""
    return np.array(
        [[cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2] for cx, cy, s in centres_sides]
    )


def test_a_small_detection_on_the_body_below_a_face_is_in_its_zone():
    # face: centre (100, 100), side 100, bottom edge at 150
    boxes = zone_boxes(
        (100, 100, 100), (100, 200, 40), (170, 300, 40), (100, 460, 40), (260, 200, 40)
    )
    # (100, 200): below, centred; (170, 300): 0.7 sides right, 1.5 sides below the edge;
    # (100, 460): 3.1 sides below; (260, 200): 1.6 sides right
    np.testing.assert_array_equal(
        in_zones(boxes, 0.5, body=(1.0, 3.0)), [False, True, True, False, False]
    )
    np.testing.assert_array_equal(
        in_zones(boxes, 0.5, body=(0.5, 1.0)), [False, True, False, False, False]
    )


def test_only_detections_much_smaller_than_the_face_are_dropped():
    boxes = zone_boxes((100, 100, 100), (100, 200, 60), (100, 200, 40))
    np.testing.assert_array_equal(in_zones(boxes, 0.5, body=(1.0, 3.0)), [False, False, True])
    np.testing.assert_array_equal(in_zones(boxes, 0.75, body=(1.0, 3.0)), [False, True, True])


def test_the_halo_is_the_face_box_grown_on_every_side():
    # face centre (200, 200), side 100: halo 0.5 reaches 100 px from the centre
    boxes = zone_boxes((200, 200, 100), (200, 110, 30), (295, 200, 30), (310, 200, 30))
    np.testing.assert_array_equal(in_zones(boxes, 0.5, halo=0.5), [False, True, True, False])
    np.testing.assert_array_equal(in_zones(boxes, 0.5, halo=1.0), [False, True, True, True])
    # a face of the same size beside another is never in its zones
    pair = zone_boxes((200, 200, 100), (290, 200, 100))
    assert not in_zones(pair, 0.75, body=(1.5, 4.0), halo=1.0).any()


def test_no_zone_drops_nothing():
    boxes = zone_boxes((100, 100, 100), (100, 200, 10))
    assert not in_zones(boxes, 0.5).any() and not in_zones(np.zeros((0, 4)), 0.5, halo=1.0).any()


def test_the_zone_check_drops_only_unsure_detections_in_a_zone():
    # a face (side 100), a sure and an unsure box on its body, an unsure box far away
    boxes = zone_boxes((100, 100, 100), (100, 200, 40), (100, 200, 40), (400, 400, 40))
    scores = np.array([0.9, 0.8, 0.3, 0.3])
    check = FaceCheck(body=(0.75, 2.0), halo=0.5, zone_ratio=0.75, zone_below=0.5)
    assert check.active
    np.testing.assert_array_equal(keep_mask(boxes, scores, check), [True, True, False, True])
    # the size check still applies first: 40 < 0.5 x 100
    both = FaceCheck(min_side=0.5, body=(0.75, 2.0))
    np.testing.assert_array_equal(keep_mask(boxes, scores, both), [True, False, False, False])


def test_scene_config_builds_the_zone_check():
    from maskseg.pipeline.scene_config import SceneConfig

    check = SceneConfig(face_body_width=0.75, face_halo=0.5).face_check
    assert check.body == (0.75, 2.0) and check.halo == 0.5 and check.zone_below == 0.5
    assert SceneConfig().face_check.body is None
    with pytest.raises(ValueError, match="face_zone_ratio"):
        SceneConfig(face_zone_ratio=0)


def face_keypoints(angle: float = 0.0, nose_dy: float = 20.0, mouth_dy: float = 20.0):
    """BlazeFace's six keypoints of a hand-made face about (100, 100) (eyes 40 px apart, the
    nose ``nose_dy`` under the eyes, the mouth ``mouth_dy`` under the nose, ears beside the
    eyes), turned by ``angle`` degrees."""
    kp = np.array(
        [[-20, 0], [20, 0], [0, nose_dy], [0, nose_dy + mouth_dy], [-40, 5], [40, 5]], float
    )
    t = np.radians(angle)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (kp @ rot.T + 100)[None]


@pytest.mark.parametrize(
    ("kp", "roll", "implausible_30", "implausible_45"),
    [
        (face_keypoints(), 0.0, False, False),
        (face_keypoints(20), 20.0, False, False),
        (face_keypoints(-40), -40.0, True, False),
        (face_keypoints(60), 60.0, True, True),
        (face_keypoints(180), 180.0, True, True),  # upside down
        (face_keypoints(nose_dy=-5), 0.0, True, True),  # nose above the eyes
        (face_keypoints(10, mouth_dy=-5), 10.0, True, True),  # mouth above the nose
    ],
    ids=["upright", "tilted-20", "tilted-40", "tilted-60", "upside-down", "nose-up", "mouth-up"],
)
def test_keypoint_geometry_hand_made(kp, roll, implausible_30, implausible_45):
    assert abs((keypoint_roll(kp)[0] - roll + 180) % 360 - 180) < 1e-9
    assert keypoints_implausible(kp, 30.0)[0] == implausible_30
    assert keypoints_implausible(kp, 45.0)[0] == implausible_45


def test_keypoint_geometry_of_the_astronauts_detections():
    """The README photo: the face and the big patch are upright; one collar detection's eye
    line is rolled by more than 45 degrees (real detector, real photo)."""
    from maskseg.pipeline.predictor import Predictor
    from maskseg.pipeline.scene import ScenePredictor

    scene = ScenePredictor(Predictor.load())  # the shipped scene path's detections
    dets = scene.detect(read_image(ROOT / "examples" / "astronaut_masked.jpg"))
    order = np.argsort(-dets.scores)
    bad = keypoints_implausible(dets.keypoints[order], 45.0)
    assert not bad[0]  # the astronaut's face
    assert bad.sum() == 1 and dets.scores[order][bad][0] < 0.5


def test_detection_features_hand_computed():
    """Two detections: a 100 px face and a 50 px box whose centre lies 1 side below and 0.5
    to the right of the face's."""
    boxes = np.array([[0, 0, 100, 100], [75, 125, 125, 175]], float)
    kps = np.concatenate([face_keypoints(), face_keypoints(60)])
    x = detection_features(
        boxes, [0.9, 0.3], kps, [0.5, 0.002], [8.0, 20.0], [0.6, 5.0], ["correct", None], (200, 400)
    )
    f = dict(zip(LEARNED_FEATURES, x.T, strict=True))
    assert x.shape == (2, len(LEARNED_FEATURES))
    assert f["score"].tolist() == [0.9, 0.3]
    assert f["log side / largest"] == pytest.approx([0.0, np.log(0.5)])
    assert f["largest"].tolist() == [1.0, 0.0]
    assert f["|dx| / largest side"] == pytest.approx([0.0, 0.5])
    assert f["below / largest side"] == pytest.approx([0.0, 1.0])
    assert f["above / largest side"] == pytest.approx([0.0, 0.0])
    assert f["roll / 45 deg"] == pytest.approx([0.0, 60 / 45])
    assert f["keypoints out of order"].tolist() == [0.0, 0.0]  # rolled, but in order
    assert f["log presence"] == pytest.approx([np.log(0.5), np.log(0.002)])
    assert f["peak logit"].tolist() == [8.0, 10.0]  # clipped to +-10
    assert f["mask area / box"].tolist() == [0.6, 3.0]  # clipped to 3
    assert f["wear correct"].tolist() == [1.0, 0.0]
    assert f["wear unjudged"].tolist() == [0.0, 1.0]
    assert f["side / picture"] == pytest.approx([0.5, 0.25])


def test_fit_logistic_separates_and_round_trips(tmp_path: Path):
    """Class-balanced: 5 negatives against 95 positives still get low probabilities."""
    rng = np.random.default_rng(0)
    n = len(LEARNED_FEATURES)
    x = rng.normal(size=(100, n))
    y = np.ones(100)
    y[:5] = 0
    x[:5, 0] -= 3.0  # the negatives have a low first feature (the detector score)
    check = LearnedCheck(*fit_logistic(x, y))
    p = check.proba(x)
    assert p[:5].max() < 0.5 < p[5:].min()
    assert check.weights[0] == max(check.weights, key=abs)  # the informative feature leads
    check.save(tmp_path / "c.json", rows=100)
    back = LearnedCheck.load(tmp_path / "c.json")
    assert np.allclose(back.proba(x), p)
    # a file for other features is refused, naming it
    data = json.loads((tmp_path / "c.json").read_text())
    data["names"] = data["names"][:-1] + ["something else"]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="bad.json"):
        LearnedCheck.load(tmp_path / "bad.json")


def test_the_shipped_learned_check_loads():
    check = LearnedCheck.load()
    assert check.names == LEARNED_FEATURES and np.isfinite(check.weights).all()
    assert (check.std > 0).all()


def test_a_model_file_gets_the_check_beside_it(tmp_path: Path, caplog):
    """A check belongs to the model it was fitted on: ``<stem>.face-check.json`` beside the
    model file is that model's; without one the shipped model's is used, with a warning
    naming the file that was looked for; the shipped default's two files share theirs."""
    from maskseg.pipeline.face_check import LEARNED_CHECK_FILE, check_file_for
    from maskseg.pipeline.predictor import Predictor

    n = len(LEARNED_FEATURES)
    mine = LearnedCheck(np.zeros(n), np.ones(n), np.full(n, 0.5), -1.0)
    model = tmp_path / "run.best.safetensors"
    model.write_bytes(b"not read")
    assert check_file_for(model) == LEARNED_CHECK_FILE  # none of its own yet
    with caplog.at_level("WARNING", logger="maskseg.pipeline.face_check"):
        fallback = LearnedCheck.for_model(model)
    assert "run.best.face-check.json" in caplog.text and "--no-face-check" in caplog.text
    assert np.array_equal(fallback.weights, LearnedCheck.load().weights)
    mine.save(tmp_path / "run.best.face-check.json")
    caplog.clear()
    with caplog.at_level("WARNING", logger="maskseg.pipeline.face_check"):
        own = LearnedCheck.for_model(model)
    assert not caplog.text and own.bias == -1.0 and np.allclose(own.weights, 0.5)
    # the shipped default, whichever runtime's file is loaded, reads its own check
    default = Predictor.load()
    assert default.source is not None and check_file_for(default.source) == LEARNED_CHECK_FILE
    assert LEARNED_CHECK_FILE.name == f"{default.source.stem}.face-check.json"


def test_no_face_check_turns_the_learned_check_off():
    import argparse

    from maskseg.cli.scene_args import add_detector_args, scene_config_from_args
    from maskseg.pipeline.scene_config import FACE_LEARNED

    p = argparse.ArgumentParser()
    add_detector_args(p, video=False)
    assert scene_config_from_args(p.parse_args([])).face_learned == FACE_LEARNED is not None
    off = scene_config_from_args(p.parse_args(["--no-face-check", "--detect-threshold", "0.4"]))
    assert off.face_learned is None and off.score_threshold == 0.4
