"""One face finder for every front end (``maskseg.pipeline.finder.FaceFinder``): the same frame
gives the same windows through ``predict --scene``, the video loop and serve, the video builds
no detector of its own and grows its windows as the scene path does, and serve takes the
detector threshold by the same name. Real BlazeFace on the example photos, no stand-ins."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from maskseg.pipeline.detect import FaceDetector, get_detector
from maskseg.pipeline.finder import FaceFinder
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.request import Mode, RequestEngine
from maskseg.pipeline.scene import ScenePredictor
from maskseg.pipeline.scene_config import CONTAINED, SCENE_SCORE_THRESHOLD, SceneConfig
from maskseg.pipeline.windows import drop_contained
from maskseg.video import VideoOptions, VideoSegmenter

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# a 512 x 512 portrait: the masked face (whose mask reaches its first window's bottom edge,
# so the window grows) and three weaker detections at the neck and the arm
PORTRAIT = EXAMPLES / "astronaut_masked.jpg"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load()


@pytest.fixture(scope="module")
def scene(predictor) -> ScenePredictor:
    return ScenePredictor(predictor)


@pytest.fixture(scope="module")
def frame(scene) -> np.ndarray:
    image, full = RequestEngine(scene).decode(PORTRAIT)
    assert image.shape[:2] == full  # not reduced: every front end sees the same pixels
    return image


def crops(result) -> np.ndarray:
    return np.array([f.crop for f in result.faces], np.float64).reshape(-1, 4)


def side(rects: np.ndarray) -> np.ndarray:
    return rects[:, 2] - rects[:, 0]


# ---------------------------------------------------------------------------- the finder


def test_find_is_the_detector_merged(scene, frame):
    """The default path is the scene path as it was: the detector at the configured
    threshold, boxes mostly inside a better one dropped."""
    finder = scene.finder
    found = finder.find(frame)
    expected = drop_contained(finder.detector.detect(frame), CONTAINED)
    assert len(found) >= 2
    np.testing.assert_array_equal(found.boxes, expected.boxes)
    np.testing.assert_array_equal(found.scores, expected.scores)
    assert scene.detector is finder.detector and scene.mappings is finder.mappings
    np.testing.assert_array_equal(scene.detect(frame).boxes, found.boxes)
    np.testing.assert_array_equal(scene.crop_rects(found), finder.windows(found))


def test_a_threshold_per_call_is_a_detector_built_with_it(scene, frame):
    """One detector serves every threshold: a call at 0.1 gives exactly what a detector
    built at 0.1 gives (with the same blend floor), and finds more than the default."""
    low = get_detector("blazeface", mode="tiles", score_threshold=0.1)
    found = scene.finder.find(frame, score_threshold=0.1)
    expected = drop_contained(low.detect(frame, blend_floor=SCENE_SCORE_THRESHOLD), CONTAINED)
    np.testing.assert_array_equal(found.boxes, expected.boxes)
    np.testing.assert_array_equal(found.scores, expected.scores)
    assert len(found) > len(scene.finder.find(frame))
    with pytest.raises(ValueError, match="score_threshold"):
        scene.finder.find(frame, score_threshold=1.5)


@pytest.mark.parametrize("photo", ["face.jpg", "astronaut_masked.jpg"])
def test_a_lower_threshold_only_adds_faces(scene, photo):
    """Below the validated threshold, weaker candidates used to blend into the boxes of the
    faces found at it: at 0.15 the example face's box moved 4 px, its window stopped
    growing and its mask IoU fell from 0.97 to 0.56. Now those faces keep their boxes,
    windows and masks, and the extra detections come on top."""
    image, _ = RequestEngine(scene).decode(EXAMPLES / photo)
    base = scene.segment(image)
    for threshold in (0.2, 0.1, 0.0):
        low = scene.segment(image, score_threshold=threshold)
        n = len(base.faces)
        assert len(low.faces) >= n
        for a, b in zip(base.faces, low.faces[:n], strict=True):
            np.testing.assert_array_equal(a.box, b.box)
            np.testing.assert_array_equal(a.crop, b.crop)
        assert not (base.mask & ~low.mask).any()  # every mask pixel of the default stays


def test_max_faces_counts_the_faces_a_rule_keeps(frame):
    finder = FaceFinder(SceneConfig(max_faces=2))
    every = FaceFinder().find(frame)
    assert len(every) > 2 and len(finder.find(frame)) == 2
    best_gone = finder.find(frame, keep=lambda d: d.scores < d.scores.max())
    np.testing.assert_array_equal(best_gone.scores, every.scores[1:3])
    kept = finder.find(frame, merge=False)  # the gate's training crops keep every box
    assert len(kept) == 2 and len(finder.detector.detect(frame)) >= len(every)


# ---------------------------------------------------------------------------- front ends


def test_the_same_frame_gives_the_same_windows_everywhere(predictor, scene, frame):
    """predict --scene (the request engine over ``ScenePredictor.segment``), the video's
    first frame (a full detection) and serve's engine: the same faces and windows."""
    pytest.importorskip("fastapi")
    from maskseg.serve.engine import Engine
    from maskseg.serve.settings import Settings

    predicted = RequestEngine(scene).segment(frame, mode=Mode.scene)
    video = VideoSegmenter(scene)(frame)
    served = Engine(Settings(max_in_flight=1), predictor)
    try:
        seg = served.segment(PORTRAIT.read_bytes(), Mode.scene)
    finally:
        served.close()
    assert video.full_detection and len(predicted.faces) >= 2
    for faces in (video.scene.faces, seg.faces):
        assert len(faces) == len(predicted.faces)
        np.testing.assert_array_equal(
            np.array([f.box for f in faces]), np.array([f.box for f in predicted.faces])
        )
    np.testing.assert_array_equal(crops(video.scene), crops(predicted))
    np.testing.assert_array_equal(crops(seg), crops(predicted))
    np.testing.assert_array_equal(seg.mask, predicted.mask)


def test_the_video_has_no_detector_of_its_own(predictor):
    scene = ScenePredictor(predictor, VideoOptions(detect_threads=1).scene_config())
    segmenter = VideoSegmenter(scene)
    assert segmenter.finder is scene.finder
    assert scene.detector.options.threads == 1  # the video's threads, in the one detector
    assert not [v for v in vars(segmenter).values() if isinstance(v, FaceDetector)]
    assert VideoOptions(detect_threads=None).scene_config(SceneConfig(threads=2)).threads == 2


def test_video_windows_grow_as_the_scene_paths_do(scene, frame):
    """A face whose mask reaches its first window's edge is grown and redone in video too:
    each frame alone gives the scene path's windows and mask; a re-detected (tracked)
    frame grows its window as well."""
    alone = VideoSegmenter(scene, VideoOptions(detect_every=1, smooth=False))(frame).scene
    photo = scene.segment(frame)
    first = scene.finder.windows(scene.finder.find(frame))
    grown = np.flatnonzero((crops(photo) != first).any(axis=1))
    assert len(grown) >= 1  # the masked face's window grew
    np.testing.assert_array_equal(crops(alone), crops(photo))
    np.testing.assert_array_equal(alone.mask, photo.mask)

    segmenter = VideoSegmenter(scene, VideoOptions(smooth=False, detect_ahead=0))
    segmenter(frame)
    located = segmenter.locate(frame)
    assert located.tracked  # found again around the followed faces ("roi" windows)
    tracked = segmenter.segment(located).scene
    windows = scene.finder.windows(located.dets, tracked=True)
    assert (side(crops(tracked)) > side(windows) + 1).any()


def test_serve_takes_the_detector_threshold_by_name(predictor, monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from maskseg.cli.main import main
    from maskseg.serve import create_app
    from maskseg.serve.settings import Settings

    with pytest.raises(ValueError, match="detect_threshold"):
        Settings(detect_threshold=2)
    data = {"file": ("portrait.jpg", PORTRAIT.read_bytes(), "image/jpeg")}
    with TestClient(create_app(Settings(detect_threshold=0.5), predictor)) as client:
        assert "score >= 0.5" in client.get("/v1/model").json()["detector"]
        r = client.post("/v1/segment", files=data, params={"detect_threshold": 2})
        assert r.status_code == 422 and r.json()["error"] == "invalid_request"
        assert "detect_threshold" in r.json()["detail"]
        counts = {}
        for t in (None, 0.5, 0.1):
            params = {"mode": "scene"} | ({} if t is None else {"detect_threshold": t})
            r = client.post("/v1/segment", files=data, params=params)
            assert r.status_code == 200, r.text
            counts[t] = len(r.json()["faces"])
            assert all(f["score"] >= (t or 0.5) for f in r.json()["faces"])
        assert counts[None] == counts[0.5] and counts[0.1] > counts[0.5]
        r = client.post("/v1/segment/mask", files=data, params={"detect_threshold": 0.1})
        assert r.status_code == 200 and int(r.headers["X-Maskseg-Faces"]) == counts[0.1]

    import maskseg.serve

    seen: list[Settings] = []
    monkeypatch.setattr(maskseg.serve, "run", seen.append)  # the settings, not a server
    assert main(["serve", "--detect-threshold", "0.4"]) == 0
    assert seen[0].detect_threshold == 0.4


def test_growth_transform_round_trip_hand_computed():
    from maskseg.video.segmenter import apply_growth, growth_of

    base = np.array([10.0, 20.0, 110.0, 120.0])  # side 100
    grown = np.array([-5.0, 20.0, 125.0, 150.0])  # side 130: grown left, right and down
    g = growth_of(base, grown)
    np.testing.assert_allclose(g, [-0.15, 0.0, 1.3])
    np.testing.assert_allclose(apply_growth(base, g), grown)
    # the same growth follows the face: a window twice the side, elsewhere
    np.testing.assert_allclose(
        apply_growth(np.array([0.0, 0.0, 200.0, 200.0]), g), [-30.0, 0.0, 230.0, 260.0]
    )


def test_held_growth_segments_each_face_once_between_full_detections(scene, frame):
    """With ``hold_growth``, the growth decided on the full detection holds in the next
    (tracked) frame: the grown window comes back, and the model runs once for all faces
    (every face segmented every frame: ``segment_every`` 1)."""
    calls = []
    original = scene.crop_logits

    class Counting(ScenePredictor):
        def crop_logits(self, image, rects, **kw):
            calls.append(len(rects))
            return original(image, rects, **kw)

    counting = Counting(scene.predictor, scene.config)
    segmenter = VideoSegmenter(
        counting,
        VideoOptions(smooth=False, detect_ahead=0, hold_growth=True, segment_every=1),
    )
    first = segmenter(frame)
    assert len(calls) == 2  # the first pass and the grown windows' redo
    calls.clear()
    located = segmenter.locate(frame)
    assert located.tracked
    held = segmenter.segment(located)
    # one model call, no redo: every face once but those the full detection left without a
    # mask (hold_empty: they stay empty without a model call)
    masked = {i for i, f in zip(first.ids, first.scene.faces, strict=True) if f.mask}
    segmented = sum(i in masked for i in held.ids)
    assert 0 < segmented < len(held.ids) and calls == [segmented]
    assert (side(crops(held.scene)) > side(scene.finder.windows(located.dets, True)) + 1).any()
    assert first.scene.faces[0].mask and held.scene.faces[0].mask


def test_a_face_the_search_cannot_see_is_held_while_it_stays(scene, frame):
    """On the still portrait the full detection finds two weak detections at the collar
    that the search around followed faces drops (its view of the arm below is larger, so
    the face check's minimum side rules them out): without ``hold_look`` every frame falls
    back to a full detection; with it those faces are held at the boxes and windows of the
    full detection that found them again, until what lies inside a box changes."""
    import cv2

    def run(options: VideoOptions, frames: list[np.ndarray]) -> list:
        segmenter = VideoSegmenter(scene, options)
        return [segmenter(f) for f in frames]

    still = [frame] * 10
    plain = run(VideoOptions(detect_ahead=0, write_ahead=0), still)  # not held by default
    assert sum(r.full_detection for r in plain) >= 6  # the fallback this option is for

    options = VideoOptions(detect_ahead=0, write_ahead=0, hold_look=0.9)
    segmenter = VideoSegmenter(scene, replace(options, smooth=False))  # windows as mapped
    located = [segmenter.locate(f) for f in still]
    results = [segmenter.segment(x) for x in located]
    full = [i for i, r in enumerate(results) if r.full_detection]
    assert len(full) <= 3, full
    last = results[full[-1]]
    boxes = {t: f.box for t, f in zip(last.ids, last.scene.faces, strict=True)}
    windows = {t: f.crop for t, f in zip(last.ids, last.scene.faces, strict=True)}
    assert len(boxes) == 4  # the face, the arm and the two collar detections
    for x, r in zip(located[full[-1] + 1 :], results[full[-1] + 1 :], strict=True):
        assert x.tracked and not r.full_detection and sorted(r.ids) == sorted(boxes)
        assert x.held is not None and 1 <= x.held.sum() <= 2  # the collar ones
        for k in np.flatnonzero(x.held):  # a held face: the full detection's box and window
            t, face = r.ids[k], r.scene.faces[k]
            np.testing.assert_allclose(face.box, boxes[t], atol=0.01)
            np.testing.assert_allclose(face.crop, windows[t], atol=0.01)
        assert r.scene.mask.any()

    # the picture moves by a fifth of a collar box: what a held box holds is no longer what
    # it held, so that frame is detected in full again
    shift = np.float32([[1, 0, 12], [0, 1, 0]])
    moved = cv2.warpAffine(frame, shift, frame.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    segmenter = VideoSegmenter(scene, options)
    results = [segmenter(f) for f in still[:6] + [moved]]
    assert not results[-2].full_detection  # held before the move
    assert results[-1].full_detection


def test_tracker_missing_and_hold_look_is_checked():
    from maskseg.video.tracking import FaceTracker, Track

    tracker = FaceTracker(iou_threshold=0.5)
    a = Track(0, np.array([0.0, 0, 10, 10]), 0.9)
    b = Track(1, np.array([50.0, 50, 60, 60]), 0.9)
    assert tracker.missing([a, b], np.array([[1.0, 0, 11, 10]])) == [b]
    assert tracker.missing([a, b], np.zeros((0, 4))) == [a, b]
    assert tracker.missing([], np.array([[1.0, 0, 11, 10]])) == []
    with pytest.raises(ValueError, match="hold_look"):
        VideoOptions(hold_look=1.5)


def test_a_face_its_full_detection_left_without_a_mask_stays_so(scene, frame):
    """Searched frames window a face from its re-detected box, which for a false detection
    can open the gate where the full detection's window did not (the still portrait's arm).
    Made certain here: a segmenter that paints every face in searched frames. With
    ``hold_empty`` a face the last full detection left without a mask gets none until the
    next full detection; the face with a mask keeps it."""

    class PaintsWhenSearched(ScenePredictor):
        searched = False

        def crop_logits(self, image, rects, **kw):
            logits = super().crop_logits(image, rects, **kw)
            return np.full_like(logits, 8.0) if self.searched else logits

    painting = PaintsWhenSearched(scene.predictor, scene.config)

    def run(options: VideoOptions) -> list[tuple[bool, set[int], set[int]]]:
        segmenter = VideoSegmenter(painting, options)
        out = []
        for _ in range(8):
            located = segmenter.locate(frame)
            painting.searched = located.tracked
            r = segmenter.segment(located)
            with_mask = {t for t, f in zip(r.ids, r.scene.faces, strict=True) if f.mask}
            out.append((r.full_detection, with_mask, set(r.ids) - with_mask))
        return out

    base = VideoOptions(detect_ahead=0, write_ahead=0, hold_look=0.9, smooth=False)
    assert base.hold_empty  # the default
    plain, held = run(replace(base, hold_empty=False)), run(base)
    assert [f for f, _, _ in plain] == [f for f, _, _ in held]  # the same schedule
    assert not all(f for f, _, _ in held)  # searched frames happen

    def flips(frames) -> int:
        """Faces painted in a searched frame that the last full detection left empty."""
        n, empty = 0, set()
        for full, masked, bare in frames:
            if full:
                empty = bare
            else:
                n += len(masked & empty)
        return n

    assert flips(plain) > 0 and flips(held) == 0
    assert all(0 in masked for _, masked, _ in held)  # the masked face (the best) keeps it


def test_a_face_seen_masked_is_held_empty_only_after_two_empty_full_detections(scene, frame):
    """``hold_empty_twice``: one full detection that misses a face seen masked at the one
    before (the gate closing on a window framed a little differently) does not hold it
    empty; a second in a row does. Faces never given a mask (the arm, the collar) are held
    after their first. Made certain here: the full detections of frames 4 and 7 (the third
    and fourth) leave every face empty, and searched frames paint every face."""

    class Scripted(ScenePredictor):
        searched, miss = False, False

        def crop_logits(self, image, rects, **kw):
            logits = super().crop_logits(image, rects, **kw)
            if self.searched:
                return np.full_like(logits, 8.0)
            return np.full_like(logits, -8.0) if self.miss else logits

    scripted = Scripted(scene.predictor, scene.config)

    def run(options: VideoOptions) -> list[tuple[bool, set[int]]]:
        segmenter = VideoSegmenter(scripted, options)
        out, fulls = [], 0
        for _ in range(10):
            located = segmenter.locate(frame)
            scripted.searched = located.tracked
            fulls += not located.tracked
            scripted.miss = fulls in (3, 4)
            r = segmenter.segment(located)
            faces = zip(r.ids, r.scene.faces, strict=True)
            out.append((r.full_detection, {t for t, f in faces if f.mask}))
        return out

    base = VideoOptions(detect_ahead=0, write_ahead=0, hold_look=0.9, smooth=False, detect_every=3)
    assert base.hold_empty_twice  # the default
    once, twice = run(replace(base, hold_empty_twice=False)), run(base)
    schedule = [True, False, False, True, True, False, False, True, False, False]
    assert [f for f, _ in once] == [f for f, _ in twice] == schedule
    assert all(0 in masked for _, masked in once[:4])  # the real face, masked at first
    assert 0 not in once[5][1] | once[6][1]  # held empty after one miss (frame 4)
    assert 0 in twice[5][1] & twice[6][1]  # ... not with hold_empty_twice
    assert 0 not in twice[8][1] | twice[9][1]  # held after the second miss (frame 7)
    never = set().union(*(m for _, m in twice)) - {0}
    assert not never & (twice[5][1] | twice[6][1])  # no other face painted by the search
