"""The wear check (maskseg.pipeline.wear): every verdict from hand-made landmarks and masks, the
trust checks that give ``"verdict": null``, each face's part of a scene mask, and the check
wired into predict (JSON in scene and crop mode, the summary CSV, COCO read back by
pycocotools), serve and video."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskseg.cli.main import main
from maskseg.io import read_mask
from maskseg.pipeline import face_regions as R
from maskseg.pipeline import wear as W
from maskseg.pipeline.annotate import VERDICT_STYLE, annotate
from maskseg.pipeline.detect import landmarks as lm
from maskseg.pipeline.detect._base import DeadlineExceeded
from maskseg.pipeline.request import Mode, Segmented, face_parts
from maskseg.pipeline.scene import Face

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WEAR_KEYS = {"verdict", "nose", "mouth", "chin", "coverage"}


# --------------------------------------------------------------------- a face by hand


def hand_face(dx: float = 0.0, dy: float = 0.0, k: float = 1.0) -> np.ndarray:
    """468 Face Mesh points of a frontal face in a 200 x 200 picture, the named ones placed by
    hand (forehead y 20, eyes 60, nose 85-104, lips 117-133, chin region 140-170, the lower
    oval a half-ellipse from the cheeks at y 75 round the chin at y 170); the rest sit at
    the face's centre. ``k`` scales it about (100, 100), then (dx, dy) moves it."""
    p = np.full((468, 2), 100.0)
    put = {
        10: (100, 20),
        33: (70, 60),
        133: (90, 60),
        362: (110, 60),
        263: (130, 60),
        195: (100, 78),
        4: (100, 85),
        45: (90, 90),
        275: (110, 90),
        98: (88, 100),
        327: (112, 100),
        1: (100, 98),
        2: (100, 104),
        13: (100, 124),
        14: (100, 126),
        18: (100, 140),
        83: (92, 140),
        313: (108, 140),
        201: (88, 148),
        421: (112, 148),
        200: (100, 150),
        208: (86, 156),
        428: (114, 156),
        199: (100, 158),
        171: (90, 163),
        396: (110, 163),
        175: (100, 166),
    }
    for i, xy in put.items():
        p[i] = xy
    # the outer lip ring: 61 (left corner) along the lower lip to 17, 291, back over 0
    for j, i in enumerate(R.MOUTH_REGION):
        a = math.pi - j * math.pi / 10
        p[i] = (100 + 20 * math.cos(a), 125 + 8 * math.sin(a))
    # the lower oval: 454 (the image's right cheek) round the chin (152) to 234
    oval = R.LOWER_FACE[:-1]
    for j, i in enumerate(oval):
        a = j * math.pi / (len(oval) - 1)
        p[i] = (100 + 50 * math.cos(a), 75 + 95 * math.sin(a))
    return (p - 100) * k + 100 + [dx, dy]


def swapped(points: np.ndarray, i: int, j: int) -> np.ndarray:
    out = points.copy()
    out[[i, j]] = out[[j, i]]
    return out


def band(top: int, bottom: int, shape=(200, 200)) -> np.ndarray:
    """A mask over rows top..bottom, between the cheeks (x 45..155)."""
    m = np.zeros(shape, bool)
    m[top:bottom, 45:155] = True
    return m


def test_the_hand_made_face_is_in_order_and_its_regions_where_placed():
    pts = hand_face()
    assert W.check_landmarks(pts) is None
    np.testing.assert_allclose(pts[W.CHIN], [100, 170], atol=1e-9)  # the oval's bottom
    nose = R.region_polygon(pts, "nose")
    assert nose[:, 1].min() == 85 and nose[:, 1].max() == 104
    mouth = R.region_polygon(pts, "mouth")
    np.testing.assert_allclose([mouth[:, 1].min(), mouth[:, 1].max()], [117, 133], atol=1e-9)
    chin = R.region_polygon(pts, "chin")
    assert chin[:, 1].min() == 140 and chin[:, 1].max() == 170


@pytest.mark.parametrize(
    ("mask", "verdict", "parts"),
    [
        (band(80, 180), "correct", (True, True, True)),
        (band(110, 180), "nose_exposed", (False, True, True)),
        (band(137, 180), "nose_mouth_exposed", (False, False, True)),
        (band(80, 139), "chin_exposed", (True, True, False)),
        (np.zeros((200, 200), bool), "no_mask", (False, False, False)),
    ],
    ids=["correct", "nose", "nose-mouth", "chin", "empty"],
)
def test_each_verdict_from_a_hand_made_mask(mask, verdict, parts):
    w = W.judge(hand_face(), mask)
    assert w.verdict == verdict
    assert (w.nose, w.mouth, w.chin) == parts
    record = w.as_record()
    assert set(record) == WEAR_KEYS and record["verdict"] == verdict
    assert json.loads(json.dumps(record)) == record


def test_coverage_is_the_share_of_the_lower_face():
    pts = hand_face()
    # the lower face: the half-ellipse below y 75 (area pi * 50 * 95 / 2) and the triangle
    # from the cheeks (y 75) up to the nose bridge (100, 78); a mask over all of it covers 1
    full = W.judge(pts, np.ones((200, 200), bool))
    assert full.coverage == pytest.approx(1.0)
    # below y 122.5, the mask covers the part of the half-ellipse below the chord at
    # t = (122.5 - 75) / 95 = 0.5: area 50 * 95 * (pi/2 - asin(t) - t * sqrt(1 - t^2))
    t = 0.5
    below = 50 * 95 * (math.pi / 2 - math.asin(t) - t * math.sqrt(1 - t * t))
    total = math.pi * 50 * 95 / 2 + 0.5 * 100 * 3
    m = np.zeros((200, 200), bool)
    m[123:] = True  # rows 123.. : pixel centres from 123.5 (the grid samples centres)
    w = W.judge(pts, m)
    assert w.coverage == pytest.approx(below / total, abs=0.02)


def test_a_mask_off_the_face_or_over_the_nose_only():
    pts = hand_face()
    speck = np.zeros((200, 200), bool)
    speck[0:5, 0:5] = True  # mask pixels, but none on the lower face
    w = W.judge(pts, speck)
    assert (w.verdict, w.coverage) == ("no_mask", 0.0)
    # over the nose and not the mouth: no worn mask looks like that
    w = W.judge(pts, band(80, 110))
    assert w.verdict is None and "not the mouth" in w.reason
    assert w.as_record() == {"verdict": None, "reason": w.reason}


def test_the_same_verdict_from_a_crop_of_the_mask_with_its_origin():
    pts = hand_face(dx=300, dy=150)  # the face in a bigger frame
    frame = np.zeros((500, 600), bool)
    frame[230:330, 345:455] = True  # band(80, 180) moved by (300, 150)
    whole = W.judge(pts, frame)
    part = W.judge(pts, frame[200:360, 330:480], (330, 200))
    assert whole.verdict == part.verdict == "correct"
    assert whole.coverage == pytest.approx(part.coverage)


def test_a_mask_cut_by_the_frame_runs_on_past_its_edge():
    """A crop that ends above the chin: a mask reaching its bottom edge covers the chin, a mask
    ending inside it does not."""
    pts = hand_face()
    frame = np.zeros((150, 200), bool)  # rows 0..149: the chin (140..170) is half outside
    frame[80:150, 45:155] = True
    assert W.judge(pts, frame).verdict == "correct"
    frame[139:] = False
    assert W.judge(pts, frame).verdict == "chin_exposed"
    # a face mostly outside the frame is not judged
    w = W.judge(pts, np.ones((60, 200), bool))
    assert w.verdict is None and "outside the picture" in w.reason


@pytest.mark.parametrize(
    ("points", "box", "reason"),
    [
        (None, None, "the landmark model failed: RuntimeError: boom"),
        (np.full((468, 2), np.nan), None, "not finite"),
        (hand_face(k=0.1), None, "too small"),
        (swapped(hand_face(), 1, 17), None, "out of order"),  # nose tip under the lips
        (hand_face(dx=150), (0, 0, 100, 170), "off the detected face"),
        (hand_face(), (80, 100, 120, 120), "off the detected face"),  # box far too small
    ],
    ids=["failed", "nan", "tiny", "order", "outside-box", "size"],
)
def test_landmarks_that_cannot_be_trusted_give_a_null_verdict(points, box, reason):
    failure = "the landmark model failed: RuntimeError: boom" if points is None else None
    w = W.judge(points, band(80, 180, (200, 400)), box=box, failure=failure)
    assert w.verdict is None and reason in w.reason
    assert W.judge(points, np.zeros((200, 200), bool), failure=failure).verdict == "no_mask"


def test_region_share_and_hull_by_hand():
    square = np.array([[10, 10], [30, 10], [30, 30], [10, 30]], float)
    m = np.zeros((40, 40), bool)
    m[:20] = True  # the square's upper half
    assert R.region_share(square, m) == (0.5, 1.0)
    assert R.region_share(square, m, origin=(0, 10))[0] == 1.0  # mask rows start at y 10
    # half the square beyond the frame's right edge, read from the edge column
    half = np.zeros((40, 20), bool)
    half[:, 19] = True
    covered, inside = R.region_share(square, half)
    assert (covered, inside) == (0.55, 0.5)  # column 19 and the 10 columns beyond it
    pts = np.array([[0, 0], [4, 0], [4, 4], [0, 4], [2, 2], [1, 3]], float)
    hull = R.convex_hull(pts)
    assert sorted(map(tuple, hull)) == [(0, 0), (0, 4), (4, 0), (4, 4)]


def test_region_indices_are_face_mesh_points():
    assert set(R.LOWER_FACE[:-1]) <= set(lm.FACE_OVAL)
    assert R.LOWER_FACE[-1] == 195 and W.CHIN == lm.CHIN and W.NOSE_TIP == lm.NOSE_TIP
    assert {lm.RIGHT_NOSTRIL, lm.LEFT_NOSTRIL, lm.NOSE_TIP_UPPER} <= set(R.NOSE_REGION)
    assert {lm.UPPER_LIP_TOP, lm.LOWER_LIP_BOTTOM, lm.RIGHT_MOUTH_CORNER} <= set(R.MOUTH_REGION)
    assert lm.LEFT_MOUTH_CORNER in R.MOUTH_REGION and lm.CHIN in R.CHIN_REGION


# ------------------------------------------------------------- faces' parts of a mask


def face(box, crop, keypoints=None) -> Face:
    return Face(np.array(box, float), 0.9, np.array(crop, float), 0.0, True, keypoints)


def test_face_parts_split_overlapping_windows_by_the_nearest_face():
    mask = np.zeros((100, 200), bool)
    mask[20:80, 10:190] = True
    faces = [face([20, 20, 80, 80], [0, 0, 110, 110]), face([120, 20, 180, 80], [90, 0, 200, 110])]
    parts = face_parts(mask, faces)
    (x0, y0, a), (x1, y1, b) = parts
    assert (x0, y0, a.shape) == (0, 0, (100, 110)) and (x1, y1, b.shape) == (90, 0, (100, 110))
    full_a, full_b = np.zeros_like(mask), np.zeros_like(mask)
    full_a[:, :110], full_b[:, 90:] = a, b
    assert not (full_a & full_b).any() and ((full_a | full_b) == mask).all()
    # in the overlap (x 90..109) the pixels left of x = 100 go to the left face
    assert full_a[50, 95] and full_b[50, 105] and not full_a[50, 105]
    seg = Segmented(np.zeros((100, 200, 3), np.uint8), (100, 200), mask, Mode.scene, faces)
    assert [p[:2] for p in seg.face_parts()] == [(0, 0), (90, 0)]
    crop = Segmented(np.zeros((100, 200, 3), np.uint8), (100, 200), mask, Mode.crop)
    assert crop.face_parts()[0][2] is mask


def test_a_face_without_a_mask_owns_no_mask_pixels():
    """A detection left without a mask (a collar beside a face) whose window and nearer centre
    cover part of its neighbour's mask takes none of it: its part is empty and the masked
    face's part is the whole mask."""
    mask = np.zeros((100, 200), bool)
    mask[20:80, 10:110] = True  # the left face's mask, running under the right detection
    left = face([20, 20, 80, 80], [0, 0, 110, 110])
    right = Face(np.array([100.0, 40, 140, 80]), 0.4, np.array([90.0, 0, 200, 110]), 0.0, False)
    (_, _, a), (_, _, b) = face_parts(mask, [left, right])
    assert not b.any()
    np.testing.assert_array_equal(a, mask[:, :110])
    # as a face with a mask, the right one would take the pixels nearer its centre
    painted = Face(right.box, 0.4, right.crop, 0.1, True)
    (_, _, a2), (_, _, b2) = face_parts(mask, [left, painted])
    assert b2.any() and a2.sum() + b2.sum() == mask.sum() and a2.sum() < a.sum()


# ------------------------------------------------------------- the check per image


class FakeLandmarker:
    """Answers every ROI with the hand-made face (in the decoded image's pixels)."""

    def __init__(self, points: np.ndarray, fail: Exception | None = None):
        self.points, self.fail, self.rois = points, fail, []

    def for_rois(self, image, rois, deadline=None):
        if self.fail is not None:
            raise self.fail
        self.rois += list(rois)
        return [lm.FaceLandmarks(self.points, np.zeros(468), 0.01, r) for r in rois]


def test_wear_check_scales_a_reduced_image_and_builds_the_crop_roi():
    # the image was decoded at half size: landmarks found there are doubled onto the mask
    fake = FakeLandmarker(hand_face() / 2)
    check = W.WearCheck(fake)
    image = np.zeros((100, 100, 3), np.uint8)
    wears, points = check.check(image, [(0, 0, band(80, 180))], full=(200, 200))
    assert [w.verdict for w in wears] == ["correct"]
    np.testing.assert_allclose(points[0], hand_face(), atol=1e-4)
    roi = fake.rois[0]  # crop mode: the whole picture, 1.2 x its side, upright
    assert (roi.cx, roi.cy, roi.side, roi.angle) == (50.0, 50.0, 120.0, 0.0)
    # scene mode: one ROI per face from its box and eyes (in full-size pixels, halved)
    kps = np.array([[80, 60], [120, 60], [100, 95], [100, 125], [55, 70], [145, 70]], float)
    f = face([50, 30, 150, 170], [40, 20, 160, 180], kps)
    fake.rois.clear()
    wears, _ = check.check(image, face_parts(band(80, 180), [f]), full=(200, 200), faces=[f])
    assert wears[0].verdict == "correct"
    assert (fake.rois[0].cx, fake.rois[0].cy, fake.rois[0].side) == (50.0, 50.0, 105.0)


def test_a_failing_landmark_model_gives_null_verdicts_not_an_error():
    check = W.WearCheck(FakeLandmarker(hand_face(), fail=RuntimeError("boom")))
    image = np.zeros((200, 200, 3), np.uint8)
    parts = [(0, 0, band(80, 180)), (0, 0, np.zeros((200, 200), bool))]
    f = face([50, 30, 150, 170], [40, 20, 160, 180], np.zeros((6, 2)))
    wears, points = check.check(image, parts, faces=[f, f])
    assert points == [None, None]
    assert wears[0].as_record() == {
        "verdict": None,
        "reason": "the landmark model failed: RuntimeError: boom",
    }
    assert wears[1].verdict == "no_mask"  # nothing to judge: no mask pixel
    late = W.WearCheck(FakeLandmarker(hand_face(), fail=DeadlineExceeded("late")))
    with pytest.raises(DeadlineExceeded):
        late.check(image, parts[:1])


def test_the_overlay_writes_each_verdict_in_its_colour():
    image = np.full((200, 200, 3), 128, np.uint8)
    faces = [face([20, 20, 80, 80], [10, 10, 90, 90]), face([110, 20, 170, 80], [100, 10, 180, 90])]
    shown = annotate(image, np.zeros((200, 200), bool), faces, wear=["correct", "nose_exposed"])
    below = shown[82:110]  # the labels under the boxes
    for verdict, (x1, x2) in (("correct", (20, 80)), ("nose_exposed", (110, 170))):
        colour = VERDICT_STYLE[verdict][1]
        assert (np.abs(below[:, x1:x2].astype(int) - colour).sum(axis=2) < 60).sum() > 20
    # crop mode: no boxes, the one verdict in the top-left corner
    crop = annotate(image, np.zeros((200, 200), bool), None, wear=[{"verdict": None}])
    grey = VERDICT_STYLE[None][1]
    assert (np.abs(crop[:20, :60].astype(int) - grey).sum(axis=2) < 60).sum() > 10
    assert (crop[40:] == 128).all()


# ------------------------------------------------------------- predict, end to end


def faces_of(path: Path) -> list[dict]:
    return json.loads(path.read_text())["faces"]


def test_predict_json_has_the_verdict_in_scene_and_crop_mode(tmp_path: Path):
    out = tmp_path / "out"
    args = ["predict", str(EXAMPLES / "astronaut_masked.jpg"), str(EXAMPLES / "face.jpg")]
    assert main([*args, "--scene", "--output", str(out), "--json", "--landmarks"]) == 0
    for name in ("astronaut_masked", "face"):
        faces = faces_of(out / f"{name}.json")
        assert faces
        for f in faces:
            w = f["wear"]
            assert set(w) == WEAR_KEYS or (set(w) == {"verdict", "reason"} and w["reason"])
            assert w["verdict"] in (*W.VERDICTS, None)
            assert f["landmarks"] is None or np.asarray(f["landmarks"]).shape == (468, 2)
        best = max(faces, key=lambda f: f["score"])
        assert best["wear"]["verdict"] == "correct", (name, best)  # both wear it properly
        x1, y1, x2, y2 = best["box"]
        nose = best["landmarks"][lm.NOSE_TIP]
        assert x1 < nose[0] < x2 and y1 < nose[1] < y2
    crop = tmp_path / "crop"
    assert main(["predict", str(EXAMPLES / "face.jpg"), "--output", str(crop), "--json"]) == 0
    (f,) = faces_of(crop / "face.json")
    assert set(f["wear"]) == WEAR_KEYS and f["wear"]["verdict"] == "correct"
    assert "landmarks" not in f and 0.5 < f["wear"]["coverage"] <= 1
    bare = tmp_path / "bare"
    assert (
        main(["predict", str(EXAMPLES / "face.jpg"), "--output", str(bare), "--json", "--no-wear"])
        == 0
    )
    assert "wear" not in faces_of(bare / "face.json")[0]


def test_options_that_need_the_wear_check_fail_early(tmp_path: Path, capsys):
    face_jpg = str(EXAMPLES / "face.jpg")
    out = str(tmp_path / "o")
    assert main(["predict", face_jpg, "--output", out, "--no-wear", "--summary", "s.csv"]) == 2
    assert main(["predict", face_jpg, "--output", out, "--landmarks"]) == 2
    err = capsys.readouterr().err
    assert "drop --no-wear" in err and "add --json" in err
    # the summary may not land on an input, nor on a mask the run writes
    assert main(["predict", face_jpg, "--output", out, "--summary", face_jpg]) == 2
    assert main(["predict", face_jpg, "--output", out, "--coco", f"{out}/face.png"]) == 2
    assert not (tmp_path / "o").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode on numpy 2
def test_summary_csv_and_coco_round_trip_through_pycocotools(tmp_path: Path, capsys):
    mask_util = pytest.importorskip("pycocotools.mask", reason="pycocotools (dev extra)")
    from pycocotools.coco import COCO

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("astronaut_masked.jpg", "face.jpg"):
        (photos / name).write_bytes((EXAMPLES / name).read_bytes())
    cv2.imwrite(str(photos / "sub" / "wall.png"), np.full((90, 120, 3), 200, np.uint8))
    out, report, coco = tmp_path / "out", tmp_path / "report.csv", tmp_path / "coco.json"
    args = ["predict", str(photos), "--scene", "--output", str(out), "--json"]
    assert main([*args, "--summary", str(report), "--coco", str(coco), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    records = {
        p.relative_to(out).with_suffix("").as_posix(): json.loads(p.read_text())
        for p in out.rglob("*.json")
    }
    assert set(records) == {"astronaut_masked", "face", "sub/wall"}
    faces = [(r["image"], k, f) for r in records.values() for k, f in enumerate(r["faces"])]
    # the summary: one row per face, as in the JSON
    with report.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == (
        "file",
        "face",
        "score",
        "verdict",
        "nose",
        "mouth",
        "chin",
        "coverage",
        "mask_area",
        "mask_pixels",
        "reason",
    )
    assert sorted((r["file"], int(r["face"])) for r in rows) == sorted((i, k) for i, k, _ in faces)
    by_key = {(r["file"], int(r["face"])): r for r in rows}
    for image, k, f in faces:
        row, w = by_key[(image, k)], f["wear"]
        assert row["verdict"] == (w["verdict"] or "") and float(row["mask_area"]) == f["mask_area"]
        assert row["score"] == ("" if f["score"] is None else str(f["score"]))
        if w["verdict"] is None:
            assert row["reason"] == w["reason"] and row["nose"] == ""
        else:
            assert [row[p] for p in ("nose", "mouth", "chin")] == [
                str(int(w[p])) for p in ("nose", "mouth", "chin")
            ]
            assert float(row["coverage"]) == w["coverage"]
    counts = {}
    for r in rows:
        counts[r["verdict"] or "not judged"] = counts.get(r["verdict"] or "not judged", 0) + 1
    assert f"wear, {len(rows)} face(s): " in printed
    assert all(f"{v} {n}" in printed for v, n in counts.items())
    # COCO: loads, and each image's annotations OR-ed together are its mask PNG
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycocotools prints and warns as it loads
        data = COCO(str(coco))
    assert [c["name"] for c in data.loadCats(data.getCatIds())] == ["face_mask"]
    assert len(data.getImgIds()) == 3 and len(data.getAnnIds()) == len(faces)
    for info in data.loadImgs(data.getImgIds()):
        png = read_mask(out / info["mask_file"])
        assert png.shape == (info["height"], info["width"])
        anns = data.loadAnns(data.getAnnIds(imgIds=[info["id"]]))
        union = np.zeros(png.shape, bool)
        for a in anns:
            m = mask_util.decode(a["segmentation"]).astype(bool)
            assert not (union & m).any()  # the faces' parts do not overlap
            assert int(m.sum()) == a["area"] == int(mask_util.area(a["segmentation"]))
            union |= m
            x, y, w, h = a["bbox"]
            (f,) = [f for i, k, f in faces if i == info["file_name"] and k == a["face"]]
            assert f["box"][0] == x
            assert a["attributes"] == f["wear"] and a["score"] == f["score"]
            assert [x + w, y + h] == pytest.approx(f["box"][2:], abs=0.11)
        np.testing.assert_array_equal(union, png)
        assert (len(anns) == 0) == (info["file_name"].endswith("wall.png"))


# ------------------------------------------------------------- serve and video


def test_serve_answers_each_face_with_its_verdict():
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    pytest.importorskip("multipart", reason="python-multipart (serve extra) is not installed")
    pytest.importorskip("httpx", reason="httpx (dev extra) is not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from maskseg.serve.app import create_app
    from maskseg.serve.settings import Settings

    with TestClient(create_app(Settings())) as client:
        data = (EXAMPLES / "astronaut_masked.jpg").read_bytes()
        body = client.post("/v1/segment", files={"file": ("a.jpg", data, "image/jpeg")}).json()
        assert body["mode"] == "scene" and body["faces"]
        for f in body["faces"]:
            assert set(f["wear"]) == {*WEAR_KEYS, "reason"}
            assert (f["wear"]["verdict"] is None) == (f["wear"]["reason"] is not None)
        assert max(body["faces"], key=lambda f: f["score"])["wear"]["verdict"] == "correct"
        data = (EXAMPLES / "face.jpg").read_bytes()
        r = client.post(
            "/v1/segment", files={"file": ("f.jpg", data, "image/jpeg")}, params={"mode": "crop"}
        )
        (f,) = r.json()["faces"]
        assert f["wear"]["verdict"] == "correct" and f["wear"]["nose"] is True
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        assert "WearOut" in schema and "wear" in schema["FaceOut"]["properties"]


def test_video_json_lines_carry_each_faces_verdict(tmp_path: Path):
    from maskseg.video.synthetic import moving_faces, write_clip

    crop = cv2.cvtColor(cv2.imread(str(EXAMPLES / "face.jpg")), cv2.COLOR_BGR2RGB)
    moving = list(moving_faces([crop], 6, size=(320, 240), side=120, speed=2.0, seed=1))
    clip = write_clip(tmp_path / "clip.avi", [f for f, _ in moving])
    js, bare = tmp_path / "faces.jsonl", tmp_path / "bare.jsonl"
    assert main(["video", str(clip), "--json", str(js), "--no-progress"]) == 0
    lines = [json.loads(line) for line in js.read_text().splitlines()]
    faces = [f for r in lines for f in r["faces"]]
    assert len(lines) == 6 and faces and all("wear" in f for f in faces)
    best = [max(r["faces"], key=lambda f: f["score"]) for r in lines if r["faces"]]
    assert sum(f["wear"]["verdict"] == "correct" for f in best) >= 5
    assert main(["video", str(clip), "--json", str(bare), "--no-wear", "--no-progress"]) == 0
    assert all(
        "wear" not in f for r in bare.read_text().splitlines() for f in json.loads(r)["faces"]
    )


@pytest.mark.parametrize(
    ("points", "mask", "box", "not_worn"),
    [
        (hand_face(), band(80, 180), None, False),  # correct
        (hand_face(), band(120, 180), None, False),  # nose exposed: a worn mask
        (hand_face(), band(80, 110), None, True),  # nose covered, mouth not
        (hand_face(), None, None, True),  # pixels, none on the lower face: "no_mask"
        (swapped(hand_face(), 1, 17), band(80, 180), None, True),  # out of order
        (hand_face(dx=150), band(80, 180, (200, 400)), (0, 0, 100, 170), True),  # off the box
        (hand_face(k=0.1), band(80, 180), None, False),  # too small says nothing
        (None, band(80, 180), None, False),  # the model failed: says nothing
    ],
    ids=["correct", "nose", "nose-not-mouth", "off-face", "order", "off-box", "tiny", "failed"],
)
def test_not_worn_like_a_mask_reads_the_wear_check(points, mask, box, not_worn):
    if mask is None:
        mask = np.zeros((200, 200), bool)
        mask[0:5, 0:5] = True
    failure = "the landmark model failed: RuntimeError: boom" if points is None else None
    w = W.judge(points, mask, box=box, failure=failure)
    assert W.not_worn_like_a_mask(w, True) is not_worn
    # a face with nothing painted is never dropped by it, whatever its reading
    assert not W.not_worn_like_a_mask(w, False)
    assert not W.not_worn_like_a_mask(W.NO_MASK, False)
