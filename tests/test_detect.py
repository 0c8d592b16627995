"""Face detection: anchors, decoding, weighted NMS and crop mapping on hand-computed cases;
the registry's errors; the shipped ONNX models on flat images and (slow) real photos."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import FACES

from maskseg.pipeline.detect import _REGISTRY as REGISTRY
from maskseg.pipeline.detect import (
    FULL_RANGE,
    SHORT_RANGE,
    BlazeFace,
    CropMapping,
    Detections,
    DetectorOptions,
    FaceDetector,
    crop_box,
    cut_crop,
    decode,
    generate_anchors,
    get_detector,
    list_detectors,
    paste_mask,
    pixel_rect,
    register_detector,
    weighted_nms,
)
from maskseg.pipeline.detect.crops import load_crop_mapping, reference
from maskseg.pipeline.detect.regions import (
    cut_square,
    cut_squares,
    frame_square,
    roi_squares,
    tile_squares,
)

FACE_PHOTO = FACES / "without_mask" / "0.jpg"  # one frontal face, 180x270


@pytest.fixture(scope="module")
def short() -> FaceDetector:
    return get_detector("blazeface", threads=1)


# --------------------------------------------------------------------------- anchors


def test_short_range_anchors_match_hand_computed_grid():
    a = generate_anchors(SHORT_RANGE)
    assert a.shape == (896, 2) and SHORT_RANGE.num_anchors == 896
    # stride 8: 16x16 cells, 2 anchors per cell, x varies fastest
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[1], a[0])
    np.testing.assert_allclose(a[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[511], [15.5 / 16, 15.5 / 16])
    # three stride-16 layers merged: 8x8 cells, 6 anchors per cell
    np.testing.assert_allclose(a[512:518], np.tile([0.5 / 8, 0.5 / 8], (6, 1)))
    np.testing.assert_allclose(a[518], [1.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(a[895], [7.5 / 8, 7.5 / 8])
    np.testing.assert_allclose(a[-1] * 128, [120, 120])  # in input pixels


def test_full_range_anchors_match_hand_computed_grid():
    a = generate_anchors(FULL_RANGE)
    assert a.shape == (2304, 2)
    np.testing.assert_allclose(a[0] * 192, [2, 2])  # stride 4: first centre at 2 px
    np.testing.assert_allclose(a[1] * 192, [6, 2])
    np.testing.assert_allclose(a[48] * 192, [2, 6])
    np.testing.assert_allclose(a[-1] * 192, [190, 190])


# --------------------------------------------------------------------------- decoding


def _raw(anchor: int, regression: list[float], logit: float = 5.0):
    reg = np.zeros((896, 16), np.float32)
    reg[anchor] = regression
    logits = np.full((896, 1), -10.0, np.float32)
    logits[anchor] = logit
    return reg, logits


# anchor 722 = stride-16 cell (x=3, y=4), centre (56, 72) input px
REGRESSION = [4, -2, 20, 24, -5, -6, 5, -6, 0, 0, 0, 4, -9, -4, 9, -4]


def test_decode_one_anchor_by_hand():
    reg, logits = _raw(722, REGRESSION)
    boxes, scores, kps = decode(reg, logits, generate_anchors(SHORT_RANGE), 128, 0.5)
    np.testing.assert_allclose(boxes, [[50, 58, 70, 82]])  # centre (60, 70), 20 x 24
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-5.0))], rtol=1e-6)
    np.testing.assert_allclose(kps[0, 0], [51, 66])
    np.testing.assert_allclose(kps[0, 5], [65, 68])


def test_scores_are_clipped_before_the_sigmoid():
    reg, logits = _raw(0, [0] * 16, logit=1e6)
    _, scores, _ = decode(reg, logits, generate_anchors(SHORT_RANGE), 128, 0.5)
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-100.0))])


def test_letterbox_geometry_on_a_wide_image():
    # 256 x 128: the letterbox square is 256 wide, 64 px of black above and below
    sq = frame_square(128, 256)
    assert (sq.x, sq.y, sq.side) == (0.0, -64.0, 256.0)
    image = np.full((128, 256, 3), 200, np.uint8)
    tensor, pm = cut_square(image, sq, 128)
    assert (tensor[:32] == 0).all() and (tensor[96:] == 0).all() and (tensor[32:96] == 200).all()
    assert (pm.ox, pm.oy, pm.sx, pm.sy) == (0.0, -64.0, 2.0, 2.0)


def test_detect_decodes_and_undoes_the_letterbox(short):
    """A hand-made raw tensor through the whole detect path on a non-square image."""
    seen = {}

    class FakeSession:
        def run(self, _, feed):
            seen["input"] = feed["input"]
            reg, logits = _raw(722, REGRESSION)
            return [reg[None], logits[None]]

    det = BlazeFace("short", DetectorOptions(threads=1))
    det._session = FakeSession()
    out = det.detect(np.full((128, 256, 3), 255, np.uint8))
    x = seen["input"]
    assert x.shape == (1, 3, 128, 128) and x.dtype == np.float32
    assert x[0, :, 0].max() == -1.0 and x[0, :, 64].min() == 1.0  # black bar, white image
    # input -> image: x * 2, y * 2 - 64
    np.testing.assert_allclose(out.boxes, [[100, 52, 140, 100]])
    np.testing.assert_allclose(out.keypoints[0, 0], [102, 68])
    np.testing.assert_allclose(out.keypoints[0, 3], [112, 88])


# --------------------------------------------------------------------------- NMS


def test_weighted_nms_blends_overlaps_by_score():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [1, 0, 11, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.6], np.float32)
    kps = np.zeros((3, 6, 2), np.float32)
    kps[0], kps[1], kps[2] = 0.0, 25.0, 3.0
    b, s, k = weighted_nms(boxes, scores, kps, 0.3)
    # IoU(first, third) = 90 / 110 > 0.3: weights 0.9 and 0.6
    np.testing.assert_allclose(b, [[0.4, 0, 10.4, 10], [20, 20, 30, 30]], rtol=1e-6)
    np.testing.assert_allclose(s, [0.9, 0.8])  # the best score of a group is kept
    np.testing.assert_allclose(k[0], 1.2, rtol=1e-6)
    np.testing.assert_allclose(k[1], 25.0)


def test_weighted_nms_blend_floor_keeps_a_good_box_from_weak_candidates():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [2, 0, 12, 10], [40, 0, 50, 10]], np.float32)
    scores = np.array([0.9, 0.3, 0.2, 0.15], np.float32)
    kps = np.zeros((4, 6, 2), np.float32)
    b, s, _ = weighted_nms(boxes, scores, kps, 0.3, blend_floor=0.25)
    # the group of the 0.9 box is all three; only the 0.3 one (>= 0.25) blends in:
    # x1 = (0 * 0.9 + 1 * 0.3) / 1.2 = 0.25; the 0.2 one is suppressed without a say
    np.testing.assert_allclose(b, [[0.25, 0, 10.25, 10], [40, 0, 50, 10]], rtol=1e-6)
    np.testing.assert_allclose(s, [0.9, 0.15])
    # without the floor the 0.2 one pulls too: (0.3 + 0.4) / 1.4 = 0.5
    np.testing.assert_allclose(weighted_nms(boxes, scores, kps, 0.3)[0][0], [0.5, 0, 10.5, 10])
    # a group whose best is under the floor blends as before
    weak = np.array([0.2, 0.1, 0.05, 0.01], np.float32)
    np.testing.assert_allclose(
        weighted_nms(boxes, weak, kps, 0.3, blend_floor=0.25)[0][0],
        weighted_nms(boxes, weak, kps, 0.3)[0][0],
    )


def test_weighted_nms_threshold_is_strict_and_max_detections_caps():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)  # IoU = 50 / 150 = 1/3
    scores, kps = np.array([0.9, 0.8], np.float32), np.zeros((2, 6, 2), np.float32)
    assert len(weighted_nms(boxes, scores, kps, 1 / 3)[1]) == 2
    assert len(weighted_nms(boxes, scores, kps, 0.3)[1]) == 1
    assert len(weighted_nms(boxes, scores, kps, 1 / 3, max_detections=1)[1]) == 1
    b, s, k = weighted_nms(boxes[:0], scores[:0], kps[:0])
    assert b.shape == (0, 4) and s.shape == (0,) and k.shape == (0, 6, 2)


# --------------------------------------------------------------------------- regions


def test_tiles_cover_a_webcam_frame_with_half_overlap():
    tiles = tile_squares(480, 640, 2 / 3, 0.5)
    assert [(t.x, t.y) for t in tiles] == [
        (0, 0),
        (160, 0),
        (320, 0),
        (0, 160),
        (160, 160),
        (320, 160),
    ]
    assert {t.side for t in tiles} == {320.0}


def test_shared_downscale_maps_tiles_back_exactly():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    squares = [frame_square(480, 640), *tile_squares(480, 640, 2 / 3, 0.5)]
    for sq, (tensor, pm) in zip(squares, cut_squares(image, squares, 128), strict=True):
        assert tensor.shape == (128, 128, 3)
        corners = pm.points(np.array([[0.0, 0.0], [128.0, 128.0]]))
        np.testing.assert_allclose(corners, [[sq.x, sq.y], [sq.x + sq.side, sq.y + sq.side]])
        one, _ = cut_square(image, sq, 128)
        assert np.abs(one.astype(int) - tensor).mean() < 2  # same pixels, resampled once


def test_roi_square_is_centred_and_scaled():
    (sq,) = roi_squares(np.array([[100, 100, 140, 160]]), 2.0)
    assert (sq.x, sq.y, sq.side) == (60.0, 70.0, 120.0)


# --------------------------------------------------------------------------- crops


def test_crop_box_from_box_and_keypoints_by_hand():
    box = np.array([100, 50, 160, 110])
    np.testing.assert_allclose(
        crop_box(box, None, CropMapping("box", 0.1, -0.2, 1.5)), [91, 23, 181, 113]
    )
    kps = np.zeros((6, 2))
    kps[0], kps[1], kps[3] = (40, 50), (60, 50), (50, 80)
    np.testing.assert_allclose(reference(box, kps, "eyes"), [50, 50, 20])
    np.testing.assert_allclose(reference(box, kps, "eyes-mouth"), [50, 65, 30])
    np.testing.assert_allclose(
        crop_box(box, kps, CropMapping("eyes", 0.0, 0.5, 3.0)), [20, 30, 80, 90]
    )
    with pytest.raises(ValueError, match="keypoints"):
        crop_box(box, None, CropMapping("eyes"))
    with pytest.raises(ValueError, match="valid: box, eyes, eyes-mouth"):
        CropMapping("nose")


def test_crop_then_paste_round_trip():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    rect = crop_box(np.array([100, 50, 160, 110]), None, CropMapping("box", 0.1, -0.2, 1.5))
    assert pixel_rect(rect) == (91, 23, 90)
    crop = cut_crop(image, rect)
    assert crop.shape == (90, 90, 3)
    np.testing.assert_array_equal(crop[:, :], image[23:113, 91:181])
    pasted = paste_mask(np.zeros((120, 200), bool), crop[..., 0] > 127, rect)
    expected = np.zeros((120, 200), bool)
    expected[23:113, 91:181] = image[23:113, 91:181, 0] > 127
    np.testing.assert_array_equal(pasted, expected)
    # a crop-sized mask at another resolution lands on the same pixels
    full = paste_mask(np.zeros((120, 200), bool), np.ones((250, 250), bool), rect)
    assert full.sum() == 90 * 90 and full[23:113, 91:181].all()


def test_crop_leaving_the_frame_is_padded_and_pasted_back_clipped():
    image = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    rect = np.array([-2, 6, 6, 14])  # 8 px square, 2 px left of and 4 px below the frame
    rep, black = cut_crop(image, rect), cut_crop(image, rect, border="constant")
    assert rep.shape == black.shape == (8, 8, 3)
    np.testing.assert_array_equal(rep[:4, 2:], image[6:10, 0:6])
    np.testing.assert_array_equal(rep[:4, 0], image[6:10, 0])  # edge replicated
    np.testing.assert_array_equal(rep[7, 2:], image[9, 0:6])
    assert (black[:4, :2] == 0).all() and (black[4:] == 0).all()
    assert cut_crop(image, rect, size=16).shape == (16, 16, 3)
    pasted = paste_mask(np.zeros((10, 10), np.float32), np.full((8, 8), 0.7, np.float32), rect)
    assert pasted.sum() == pytest.approx(0.7 * 4 * 6) and (pasted[6:, :6] == 0.7).all()
    with pytest.raises(ValueError, match="valid: replicate, constant"):
        cut_crop(image, rect, border="wrap")


def test_shipped_crop_mappings_load():
    for det in ("blazeface", "blazeface-full"):
        for mode in ("frame", "tiles", "roi"):
            m = load_crop_mapping(det, mode)
            assert 0.8 < m.scale < 1.5 if m.method == "box" else m.scale > 1
    with pytest.raises(FileNotFoundError, match="calibrated: blazeface-full_frame"):
        load_crop_mapping("blazeface", "nope")


# --------------------------------------------------------------------------- API


def test_registry_lists_and_rejects_unknown_names():
    assert list_detectors()[:2] == ["blazeface", "blazeface-full"]
    with pytest.raises(ValueError, match="valid: blazeface, blazeface-full"):
        get_detector("retinaface")
    with pytest.raises(ValueError, match=r"unknown detector option\(s\) \['scale'\]"):
        get_detector("blazeface", scale=2)
    with pytest.raises(ValueError, match="valid: frame, tiles"):
        get_detector("blazeface", mode="pyramid")
    with pytest.raises(ValueError, match="already registered"):
        register_detector("blazeface", lambda options: None)


def test_register_a_detector(monkeypatch):
    class Nothing(FaceDetector):
        name = "nothing"

        def detect_batch(self, images, rois=None):
            return [Detections.empty() for _ in images]

    monkeypatch.setitem(REGISTRY, "nothing", Nothing)
    det = get_detector("nothing", max_faces=3)
    assert det.options.max_faces == 3 and len(det.detect(np.zeros((4, 4, 3), np.uint8))) == 0


def test_detections_are_frozen_and_indexable():
    d = Detections(np.ones((2, 4)), [0.9, 0.5], np.zeros((2, 6, 2)))
    assert len(d) == 2 and d.boxes.dtype == np.float32
    with pytest.raises(ValueError):
        d.boxes[0, 0] = 5
    assert len(d[d.scores > 0.6]) == 1 and len(d[1]) == 1 and len(Detections.empty()) == 0
    rec = d.as_records()[1]
    assert rec["score"] == 0.5 and rec["box"] == [1, 1, 1, 1]
    assert list(rec["keypoints"])[:2] == ["right_eye", "left_eye"]
    with pytest.raises(IndexError):
        d[2]


def test_import_loads_neither_onnxruntime_nor_torch():
    code = (
        "import sys, maskseg.pipeline.detect; "
        "print('onnxruntime' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_bad_input_is_refused_with_a_clear_error(short):
    with pytest.raises(TypeError, match="uint8"):
        short.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        short.detect(np.zeros((64, 64, 2), np.uint8))
    with pytest.raises(TypeError, match="list of images"):
        short.detect_batch(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="ROI arrays"):
        short.detect_batch([np.zeros((8, 8, 3), np.uint8)], rois=[])


@pytest.mark.parametrize("name", ["blazeface", "blazeface-full"])
@pytest.mark.parametrize("mode", ["frame", "tiles"])
def test_real_model_finds_nothing_on_flat_grey(name, mode):
    det = get_detector(name, mode=mode, threads=1)
    grey = np.full((480, 640, 3), 128, np.uint8)
    assert len(det.detect(grey)) == 0
    assert len(det.detect(grey[..., 0])) == 0  # grayscale accepted
    rgba = np.dstack([grey, np.full((480, 640), 255, np.uint8)])
    assert len(det.detect(rgba)) == 0  # RGBA accepted
    assert len(det.detect(grey, rois=np.zeros((0, 4)))) == 0


def test_onnx_model_has_a_dynamic_batch(short):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (3, 3, 128, 128)).astype(np.float32)
    reg, cls = short._session.run(None, {"input": x})
    assert reg.shape == (3, 896, 16) and cls.shape == (3, 896, 1)
    one = short._session.run(None, {"input": x[1:2]})
    np.testing.assert_allclose(reg[1:2], one[0], atol=1e-4)


# --------------------------------------------------------------------------- real photos


@pytest.fixture(scope="module")
def face_photo() -> np.ndarray:
    if not FACE_PHOTO.is_file():
        pytest.skip(f"shared data not found at {FACE_PHOTO}")
    from maskseg.io import read_image

    return read_image(FACE_PHOTO)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["frame", "tiles"])
def test_real_face_photo_gives_exactly_one_face(short, face_photo, mode):
    det = get_detector("blazeface", mode=mode, threads=1)
    faces = det.detect(face_photo)
    assert len(faces) == 1 and faces.scores[0] > 0.9
    x1, y1, x2, y2 = faces.boxes[0]
    assert 40 < x1 < x2 < 130 and 30 < y1 < y2 < 120  # the face, in pixels of the photo
    kps = faces.keypoints[0]
    assert kps[0, 0] < kps[1, 0] and kps[2, 1] < kps[3, 1]  # right eye left; nose above mouth


@pytest.mark.slow
def test_tiles_merge_one_face_seen_by_several_passes(face_photo):
    """A face straddling tile borders is found by several passes and merged into one."""
    import cv2

    scene = np.full((480, 640, 3), 90, np.uint8)
    photo = cv2.resize(face_photo, (270, 405))
    scene[40:445, 160:430] = photo  # face near (320, 180): on the inner tile edges
    det = get_detector("blazeface", mode="tiles", threads=1)
    faces = det.detect(scene)
    assert len(faces) == 1
    roi = det.detect(scene, rois=faces.boxes)
    assert len(roi) == 1 and np.abs(roi.boxes - faces.boxes).max() < 0.1 * (
        faces.boxes[0, 2] - faces.boxes[0, 0]
    )
