"""Face landmarks: the ROI and its exact inverse on hand-made cases, decoding a hand-made output
tensor, and the shipped Face Mesh model behind BlazeFace on the example photos and on
non-faces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from maskseg.io import read_image
from maskseg.pipeline.detect import (
    PRESENCE_THRESHOLD,
    Detections,
    FaceLandmarker,
    FaceLandmarks,
    FaceRoi,
    get_detector,
)
from maskseg.pipeline.detect import landmarks as lm

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def landmarker() -> FaceLandmarker:
    return FaceLandmarker(threads=1)


@pytest.fixture(scope="module")
def detector():
    return get_detector("blazeface", threads=1)


# --------------------------------------------------------------------------- ROI geometry


def test_roi_from_detection_follows_the_eyes_and_mediapipes_scale():
    box = np.array([10.0, 20.0, 30.0, 60.0])  # 20 wide, 40 tall
    kps = np.zeros((6, 2))
    kps[0], kps[1] = [12.0, 30.0], [22.0, 40.0]  # right eye -> left eye: 45 degrees down
    roi = lm.roi_from_detection(box, kps)
    assert (roi.cx, roi.cy, roi.side) == (20.0, 40.0, 60.0)  # centre; 1.5 x the longer side
    assert roi.angle == pytest.approx(math.pi / 4)
    kps[1] = [2.0, 30.0]  # eyes swapped left-right: the face is upside down
    assert abs(lm.roi_from_detection(box, kps).angle) == pytest.approx(math.pi)
    dets = Detections(np.stack([box, box + 5]), [0.9, 0.8], np.stack([kps, kps]))
    rois = lm.rois_from_detections(dets, scale=2.0)
    assert [r.side for r in rois] == [80.0, 80.0] and rois[1].cx == 25.0


def test_roi_maps_input_pixels_to_image_pixels_by_hand():
    roi = FaceRoi(100.0, 50.0, 96.0, math.pi / 2)  # half scale, x axis pointing down
    s = lm.INPUT_SIZE
    got = roi.to_image(np.array([[s / 2, s / 2], [s, s / 2], [s / 2, 0.0], [0.0, 0.0]]))
    # a quarter turn clockwise on screen: the input's centre is the ROI's centre, the middle
    # of its right edge lies half a side (48 px) below it, of its top edge 48 px to the right
    np.testing.assert_allclose(got, [[100, 50], [100, 98], [148, 50], [148, 2]], atol=1e-9)
    corners = [[148, 2], [148, 98], [52, 98], [52, 2]]  # top-left, top-right, ...
    np.testing.assert_allclose(roi.corners(), corners, atol=1e-9)
    np.testing.assert_allclose(roi.matrix() @ [100.0, 98.0, 1.0], [s, s / 2], atol=1e-9)


def test_points_round_trip_through_the_crop_and_back():
    rng = np.random.default_rng(3)
    roi = FaceRoi(171.3, 138.7, 201.0, 0.52)  # rotated, slightly magnified
    pts = roi.to_image(rng.uniform(30, 162, (6, 2)))  # inside the ROI, away from its edges
    np.testing.assert_allclose(roi.to_image(roi.to_input(pts)), pts, atol=1e-9)

    # Gaussian blobs at the points: their centroids in the crop are the mapped points.
    h, w = 300, 340
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    crops = []
    for x, y in pts:
        blob = 255.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0**2))
        image = np.repeat(np.round(blob).astype(np.uint8)[..., None], 3, axis=2)
        crops.append(lm.crop_roi(image, roi)[..., 0].astype(np.float64))
    cy, cx = np.mgrid[0 : lm.INPUT_SIZE, 0 : lm.INPUT_SIZE].astype(np.float64)
    found = np.array([[(c * cx).sum() / c.sum(), (c * cy).sum() / c.sum()] for c in crops])
    np.testing.assert_allclose(found, roi.to_input(pts), atol=0.05)
    np.testing.assert_allclose(roi.to_image(found), pts, atol=0.05)


def test_roi_refuses_an_empty_or_broken_square():
    with pytest.raises(ValueError, match="side"):
        FaceRoi(0, 0, 0)
    with pytest.raises(ValueError, match="finite"):
        FaceRoi(float("nan"), 0, 10)


# --------------------------------------------------------------------------- decoding


def test_decoding_a_hand_made_output_tensor():
    rois = [FaceRoi(200.0, 100.0, 96.0), FaceRoi(50.0, 60.0, 384.0, math.pi)]
    raw = np.zeros((2, lm.NUM_LANDMARKS, 3), np.float32)
    raw[:, :, :2] = 96.0  # every point at the input's centre ...
    raw[0, lm.NOSE_TIP] = [0.0, 0.0, 10.0]  # ... but the nose tip in its top-left corner
    raw[1, lm.CHIN] = [96.0, 192.0, -4.0]  # and the chin at the bottom middle
    faces = lm.decode_landmarks(raw.reshape(2, -1), np.array([[0.0], [2.0]]), rois)
    assert all(isinstance(f, FaceLandmarks) for f in faces)
    a, b = faces
    assert a.points.shape == (468, 2) and a.points.dtype == np.float32
    np.testing.assert_allclose(a.points[0], [200, 100])
    np.testing.assert_allclose(a.point("nose_tip"), [152, 52])  # half scale: 48 px up-left
    assert a.depth[lm.NOSE_TIP] == pytest.approx(5.0) and a.presence == pytest.approx(0.5)
    np.testing.assert_allclose(b.point("chin"), [50, 60 - 192], atol=1e-4)  # turned over
    assert b.depth[lm.CHIN] == pytest.approx(-8.0)
    assert b.presence == pytest.approx(1 / (1 + math.exp(-2.0))) and b.roi is rois[1]
    assert lm.presence_scores(np.array([-1e4, 1e4])).tolist() == pytest.approx([0.0, 1.0])
    assert a.oval().shape == (36, 2) and a.box().shape == (4,)
    with pytest.raises(KeyError, match="nose_tip"):
        a.point("nose")
    with pytest.raises(ValueError):
        a.points[0, 0] = 1.0


def test_named_indices_are_the_face_mesh_ones():
    assert len(lm.FACE_OVAL) == 36 and len(set(lm.FACE_OVAL)) == 36
    assert lm.FACE_OVAL[0] == lm.FOREHEAD and lm.CHIN in lm.FACE_OVAL
    assert all(0 <= i < lm.NUM_LANDMARKS for i in lm.LANDMARK_NAMES.values())


# --------------------------------------------------------------------------- the model


@pytest.mark.parametrize("name", ["face.jpg", "astronaut_masked.jpg"])
def test_real_faces_get_a_high_score_and_points_in_order(landmarker, detector, name):
    image = read_image(EXAMPLES / name)
    faces = detector.detect(image)
    assert len(faces) >= 1
    (face,) = landmarker.for_detections(image, faces[:1])
    assert face.presence > 0.9
    x1, y1, x2, y2 = faces.boxes[0]
    for point in (face.point("nose_tip"), face.point("chin")):
        assert x1 <= point[0] <= x2 and y1 <= point[1] <= y2
    # in the face's own upright frame: nose above mouth above chin, right corner on the left
    up = face.roi.to_input(face.points)
    nose, mouth, chin = up[lm.NOSE_TIP], up[lm.UPPER_LIP_TOP], up[lm.CHIN]
    assert nose[1] < mouth[1] < up[lm.LOWER_LIP_BOTTOM][1] < chin[1]
    assert up[lm.RIGHT_MOUTH_CORNER][0] < mouth[0] < up[lm.LEFT_MOUTH_CORNER][0]
    assert up[lm.RIGHT_NOSTRIL][0] < nose[0] < up[lm.LEFT_NOSTRIL][0]
    assert up[lm.FOREHEAD][1] < up[lm.RIGHT_EYE_OUTER][1] < nose[1]


def test_non_faces_get_a_low_score(landmarker):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    wall = np.clip(
        np.full((300, 300, 3), (180, 170, 150)) + rng.normal(0, 4, (300, 300, 3)), 0, 255
    )
    roi = FaceRoi(150.0, 150.0, 200.0, 0.3)
    for image in (noise, wall.astype(np.uint8)):
        (face,) = landmarker.for_rois(image, [roi])
        assert face.presence < 0.01 < PRESENCE_THRESHOLD


def test_several_faces_go_in_one_batch_with_the_same_answers(landmarker, detector):
    image = read_image(EXAMPLES / "face.jpg")
    roi = landmarker.rois(detector.detect(image)[:1])[0]
    other = FaceRoi(roi.cx + 3, roi.cy - 2, roi.side * 1.1, roi.angle + 0.2)
    together = landmarker.for_rois(image, [roi, other, roi])
    alone = [landmarker.for_rois(image, [r])[0] for r in (roi, other)]
    for got, want in zip(together, [alone[0], alone[1], alone[0]], strict=True):
        np.testing.assert_allclose(got.points, want.points, atol=1e-3)
        assert got.presence == pytest.approx(want.presence, abs=1e-5)
    assert landmarker.for_rois(image, []) == []
    assert landmarker.for_detections(image, Detections.empty()) == []


def test_bad_crops_are_refused(landmarker):
    with pytest.raises(ValueError, match="uint8 crops"):
        landmarker.run(np.zeros((1, 192, 192, 3), np.float32))
    with pytest.raises(ValueError, match="uint8 crops"):
        landmarker.run(np.zeros((1, 128, 128, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="face-landmark"):
        FaceLandmarker("no/such/file.onnx")
