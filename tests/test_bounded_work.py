"""Work bounded by the image whatever its shape: detector tiles (minimum side, maximum count),
decoding reduced on both sides, shapes no model can use refused, and a deadline that stops the
scene path. Images are made in code; no timing is asserted (see benchmarks/bench_thin_images)."""

from __future__ import annotations

import io
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import maskseg.pipeline.detect._base as detect_base
from maskseg.io import (
    DECODE_SIDE,
    MAX_ASPECT_RATIO,
    UNUSABLE_SHAPE,
    ImageReadError,
    UnusableImageError,
    decode_image,
    read_image,
    reduction_factor,
)
from maskseg.pipeline.detect import (
    MAX_TILES,
    DeadlineExceeded,
    Detections,
    DetectorOptions,
    FaceDetector,
    get_detector,
)
from maskseg.pipeline.detect.regions import tile_squares
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.scene import ScenePredictor
from maskseg.pipeline.scene_config import SEGMENT_CHUNK, SceneConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
THIN = [(1, 4095), (1, 50000), (40000, 1)]  # (height, width)


@pytest.fixture(scope="module")
def scene() -> ScenePredictor:
    return ScenePredictor(Predictor.load(), SceneConfig(threads=1))


def png(height: int, width: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def xys(tiles) -> list[tuple[float, float]]:
    return [(t.x, t.y) for t in tiles]


# --------------------------------------------------------------------------- tiles


@pytest.mark.parametrize(
    ("height", "width", "side", "xs", "ys"),
    [
        (480, 640, 320.0, [0, 160, 320], [0, 160]),
        (768, 1024, 512.0, [0, 256, 512], [0, 256]),
        (3000, 4000, 2000.0, [0, 1000, 2000], [0, 1000]),
        (4000, 3000, 2000.0, [0, 1000], [0, 1000, 2000]),
    ],
)
def test_ordinary_photos_keep_their_tiles(height, width, side, xs, ys):
    tiles = tile_squares(height, width, 2 / 3, 0.5, min_side=16, max_tiles=MAX_TILES)
    assert tiles == tile_squares(height, width, 2 / 3, 0.5)  # the limits change nothing here
    assert {t.side for t in tiles} == {side}
    assert xys(tiles) == [(x, y) for y in ys for x in xs]
    short = get_detector("blazeface", mode="tiles", threads=1)
    assert short.regions(height, width)[1:] == tiles


def test_min_side_stops_sub_pixel_tiles():
    # 2/3 of a 1 px short side: 0.67 px tiles, 2 rows of 12,284 as on main; 16 px tiles
    # stepping 8 px: ceil((4095 - 16) / 8) + 1 = 511, centred across the one row.
    tiles = tile_squares(1, 4095, 2 / 3, 0.5, min_side=16)
    assert len(tiles) == 511 and {t.side for t in tiles} == {16.0}
    assert {t.y for t in tiles} == {(1 - 16) / 2}
    assert tiles[0].x == 0 and tiles[-1].x == 4095 - 16
    assert len(tile_squares(1, 4095, 2 / 3, 0.5)) == 2 * 12284  # no minimum: main's count
    # a small photo keeps 2/3 of its short side while that is over the minimum
    assert {t.side for t in tile_squares(26, 37, 2 / 3, 0.5, min_side=16)} == {26 * 2 / 3}


def test_max_tiles_grows_the_tiles():
    # 64 tiles in one row: side * (1 + 63 * 0.5) = 4095 -> side 126, step 63
    tiles = tile_squares(1, 4095, 2 / 3, 0.5, min_side=16, max_tiles=64)
    assert len(tiles) == 64 and {t.side for t in tiles} == {126.0}
    assert [t.x for t in tiles[:3]] == [0.0, 63.0, 126.0] and tiles[-1].x == 4095 - 126
    assert {t.y for t in tiles} == {(1 - 126) / 2}
    # 2 rows: 35 columns of 666.7 px would be 70 tiles; 32 columns: 12000 / 16.5 = 727.3 px
    tiles = tile_squares(1000, 12000, 2 / 3, 0.5, max_tiles=64)
    side = 12000 / 16.5
    assert len(tiles) == 64 and [t.side for t in tiles] == pytest.approx([side] * 64)
    assert sorted({t.y for t in tiles}) == [0.0, pytest.approx(1000 - side)]
    # a panorama: one row of 64, each 20000 / 32.5 px, centred on the 300 px height
    tiles = tile_squares(300, 20000, 2 / 3, 0.5, max_tiles=64)
    assert len(tiles) == 64 and tiles[0].side == pytest.approx(20000 / 32.5)
    assert tiles[0].y == pytest.approx((300 - 20000 / 32.5) / 2)
    # one tile at most: the long side, centred
    assert xys(tile_squares(480, 640, 2 / 3, 0.5, max_tiles=1)) == [(0.0, -80.0)]
    with pytest.raises(ValueError, match="max_tiles"):
        tile_squares(480, 640, 2 / 3, 0.5, max_tiles=0)


@pytest.mark.parametrize(("height", "width"), THIN)
def test_detector_regions_of_thin_images_are_bounded(height, width):
    short = get_detector("blazeface", mode="tiles", threads=1)
    assert short.min_tile_side == 16.0 and short.options.max_tiles == MAX_TILES == 64
    assert len(short.regions(height, width)) == 1 + 64  # the frame pass and 64 tiles
    assert get_detector("blazeface-full", mode="tiles", threads=1).min_tile_side == 24.0
    unlimited = get_detector("blazeface", mode="tiles", threads=1, max_tiles=None)
    assert len(unlimited.regions(height, width)) > 64
    with pytest.raises(ValueError, match="max_tiles"):
        DetectorOptions(max_tiles=0)
    with pytest.raises(ValueError, match="min_tile_side"):
        DetectorOptions(min_tile_side=0)


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(("height", "width"), THIN)
def test_thin_images_are_refused_with_the_size_and_the_rule(height, width):
    with pytest.raises(UnusableImageError) as info:
        decode_image(png(height, width), min_side=DECODE_SIDE)
    exc = info.value
    assert isinstance(exc, ImageReadError) and exc.size == (width, height)
    assert exc.reason.startswith(UNUSABLE_SHAPE)
    assert f"{width}x{height}" in exc.reason and "1 px, under the 4 px minimum" in exc.reason
    # only when decoding for a model: full-resolution reads and an explicit opt-out go on
    assert read_image(png(height, width)).shape == (height, width, 3)
    image, full = decode_image(png(height, width), min_side=DECODE_SIDE, shape_check=False)
    assert full == (height, width) and min(image.shape[:2]) == 1


def test_aspect_ratio_limit(tmp_path: Path):
    with pytest.raises(UnusableImageError, match=r"2000x10 has an aspect ratio of 200:1, over"):
        decode_image(png(10, 2000), min_side=DECODE_SIDE)
    side = 10 * MAX_ASPECT_RATIO
    assert decode_image(png(10, side), min_side=DECODE_SIDE)[0].shape == (10, side, 3)
    # the CLI's crop mode still takes small thumbnails
    assert decode_image(png(5, 6), min_side=DECODE_SIDE)[0].shape == (5, 6, 3)


def test_reduction_keeps_the_short_side():
    # aspect up to 4:1: the long side alone decides, as before
    for w in range(100, 30001, 700):
        for h in range(max(100, -(-w // 4)), min(4 * w, 30000) + 1, 900):
            assert reduction_factor(w, h, DECODE_SIDE) == max(1, max(w, h) // DECODE_SIDE)
    assert reduction_factor(12000, 12000, DECODE_SIDE) == 5  # 2400 x 2400: memory bounded
    assert reduction_factor(20000, 300, DECODE_SIDE) == 1  # was 9: 2222 x 33
    assert reduction_factor(6000, 1000, DECODE_SIDE) == 1  # 1000 // 512: keep >= 512 high
    assert reduction_factor(30000, 3000, DECODE_SIDE) == 5  # 6000 x 600
    # very long and large: the pixel bound (2 * 2048)^2 decides, 33334 x 334
    assert reduction_factor(100000, 1000, DECODE_SIDE) == 3
    assert reduction_factor(100000, 1000, None) == 1


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_panorama_decodes_with_its_height(tmp_path: Path, fmt: str):
    rng = np.random.default_rng(0)
    pano = cv2.resize(rng.integers(0, 255, (3, 200, 3), dtype=np.uint8), (20000, 300))
    path = tmp_path / f"pano.{fmt.lower()}"
    Image.fromarray(pano).save(path, fmt)
    image, full = decode_image(path, min_side=DECODE_SIDE)
    assert full == (300, 20000) and image.shape == (300, 20000, 3)
    # a taller one is reduced (by 3: 12000 // 2048 would be 5), never below 2048 // 4 = 512 px
    # high; JPEG is scaled by a power of 2 in the DCT domain, the rest is reduced after it
    wide = cv2.resize(pano, (12000, 1800))
    Image.fromarray(wide).save(path, fmt)
    image, full = decode_image(path, min_side=DECODE_SIDE)
    assert full == (1800, 12000)
    assert image.shape[:2] == {"PNG": (600, 4000), "JPEG": (900, 6000)}[fmt]


# --------------------------------------------------------------------------- scene


def count_regions(monkeypatch, detector) -> list[int]:
    """Patch ``detector._run`` to record how many regions each call gets."""
    calls: list[int] = []
    run = detector._run

    def spy(inputs, deadline=None):
        calls.append(len(inputs))
        return run(inputs, deadline)

    monkeypatch.setattr(detector, "_run", spy)
    return calls


@pytest.mark.parametrize(("height", "width"), THIN)
def test_thin_images_through_the_scene_are_bounded(scene, monkeypatch, height, width):
    calls = count_regions(monkeypatch, scene.detector)
    image = np.zeros((height, width, 3), np.uint8)
    tracemalloc.start()
    try:
        result = scene.segment(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert calls == [1 + 64]
    assert result.faces == [] and result.mask.shape == (height, width)
    # main cut ~12,000-25,000 tiles of 128 x 128 x 3 (0.6-1.2 GB) before the first model call
    assert peak < 64 * 2**20, peak


def test_panorama_faces_are_found_after_decoding(scene, tmp_path: Path):
    face = read_image(EXAMPLES / "face.jpg")
    face = cv2.resize(face, (round(face.shape[1] * 250 / face.shape[0]), 250), cv2.INTER_AREA)
    pano = np.full((300, 20000, 3), 128, np.uint8)
    xs = [1000, 5000, 9000, 13000, 17000]
    for x in xs:
        pano[25:275, x : x + face.shape[1]] = face
    path = tmp_path / "pano.jpg"
    Image.fromarray(pano).save(path, quality=92)
    image, full = decode_image(path, min_side=DECODE_SIDE)
    result = scene.segment(image, size=full)
    assert len(scene.detector.regions(*image.shape[:2])) == 1 + 64
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in result.faces)
    assert len(centres) == len(xs) and all(f.mask for f in result.faces)
    np.testing.assert_allclose(centres, [x + face.shape[1] / 2 for x in xs], atol=40)


# --------------------------------------------------------------------------- deadline


class Clock:
    """Stands in for the ``time`` module of ``maskseg.pipeline.detect._base``: a clock the
    tests move."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_a_passed_deadline_stops_before_any_work(scene, monkeypatch):
    calls = count_regions(monkeypatch, scene.detector)
    image = read_image(EXAMPLES / "astronaut_masked.jpg")
    with pytest.raises(DeadlineExceeded, match="deadline passed") as info:
        scene.segment(image, deadline=time.monotonic() - 1)
    assert isinstance(info.value, TimeoutError) and calls == []


def test_the_deadline_is_checked_between_detector_batches(scene, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(detect_base, "time", clock)
    session = scene.detector._session
    runs = []

    class Late:  # the clock passes the deadline during the first model call
        def run(self, *args, **kwargs):
            runs.append(1)
            clock.now = 11.0
            return session.run(*args, **kwargs)

    monkeypatch.setattr(scene.detector, "_session", Late())
    with pytest.raises(DeadlineExceeded, match="before the detector model"):
        scene.segment(np.zeros((1, 4095, 3), np.uint8), deadline=10.0)
    assert runs == [1]  # 65 regions: the 2nd and 3rd batches of 32 never ran


def test_the_deadline_is_checked_between_segmenter_chunks(scene, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(detect_base, "time", clock)
    logits = scene.predictor.logits
    sizes = []

    def late(crops):
        sizes.append(len(crops))
        clock.now = 11.0
        return logits(crops)

    monkeypatch.setattr(scene.predictor, "logits", late)
    n = 2 * SEGMENT_CHUNK + 3
    boxes = np.array([[10.0 * i, 10, 10.0 * i + 60, 80] for i in range(n)], np.float32)
    dets = Detections(boxes, np.full(n, 0.9), np.tile(boxes[:, None, :2] + 30, (1, 6, 1)))
    image = np.full((200, 800, 3), 100, np.uint8)
    with pytest.raises(DeadlineExceeded, match="before segmenting face crops"):
        scene.segment(image, detections=dets, deadline=10.0)
    assert sizes == [SEGMENT_CHUNK]


def test_a_future_deadline_changes_nothing(scene):
    image = read_image(EXAMPLES / "astronaut_masked.jpg")
    plain = scene.segment(image)
    timed = scene.segment(image, deadline=time.monotonic() + 600)
    assert plain.faces and np.array_equal(plain.mask, timed.mask)
    assert [f.as_record() for f in plain.faces] == [f.as_record() for f in timed.faces]


def test_a_detector_without_deadlines_is_checked_before_it_runs():
    class Nothing(FaceDetector):
        def detect_batch(self, images, rois=None):
            return [Detections.empty() for _ in images]

    det = Nothing()
    image = np.zeros((8, 8, 3), np.uint8)
    assert len(det.detect(image, deadline=time.monotonic() + 600)) == 0
    with pytest.raises(DeadlineExceeded):
        det.detect(image, deadline=time.monotonic() - 1)
