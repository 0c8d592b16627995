"""Scene framing that keeps the whole mask: "grow and redo" in ``ScenePredictor``.

A face whose crop mask touches its window's edge is cut again from a window grown toward the
touched side(s) and segmented again. The geometry is tested with a fake segmenter whose
"mask" is whatever is white in the crop, so a white patch drawn into a grey image decides
where the mask runs and which window edges it touches.
"""

import cv2
import numpy as np
import pytest

from maskseg.pipeline.detect import _base as detect_base
from maskseg.pipeline.detect.detections import Detections
from maskseg.pipeline.scene import DeadlineExceeded, ScenePredictor
from maskseg.pipeline.scene_config import SceneConfig, scene_config
from maskseg.pipeline.windows import (
    clip_to_reach,
    colour_step,
    grow_rect,
    inner_rect,
    touched_sides,
)

TOP, BOTTOM, LEFT, RIGHT = np.eye(4, dtype=bool)
NONE = np.zeros(4, bool)


class WhiteIsMask:
    """A segmenter whose logits are +10 where a crop is white and -10 elsewhere; records the
    crops of every call. ``lose_after``: calls after this many return no mask at all."""

    size = 60

    def __init__(self, lose_after: int | None = None) -> None:
        self.calls: list[int] = []
        self.lose_after = lose_after

    def logits(self, crops):
        self.calls.append(len(crops))
        out = np.stack([np.where(c[..., 0] > 127, 10.0, -10.0)[None] for c in crops])
        if self.lose_after is not None and len(self.calls) > self.lose_after:
            out[:] = -10.0
        return out.astype(np.float32)

    def masks_from_logits(self, logits, sizes):
        return [
            cv2.resize((lg[0] > 0).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
            for lg, (h, w) in zip(logits, sizes, strict=True)
        ]


def picture(h: int, w: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """A grey picture with a white "mask" at x1:x2, y1:y2."""
    image = np.full((h, w, 3), 90, np.uint8)
    image[y1:y2, x1:x2] = 255
    return image


def scene_with(config: SceneConfig, segmenter=None, window=(140.0, 100.0, 260.0, 220.0)):
    """A ScenePredictor over the fake segmenter whose one face is cut at ``window``."""
    scene = ScenePredictor(segmenter or WhiteIsMask(), config, detector=object())
    rects = np.array([window], np.float64)
    scene.crop_rects = lambda dets, tracked=False: rects.copy()
    return scene


def one_face() -> Detections:
    box = np.array([[150.0, 110, 250, 210]])
    return Detections(box, np.array([0.9]), np.tile(box[:, None, :2] + 50, (1, 6, 1)))


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    ("rows", "cols", "expected"),
    [
        (slice(0, 10), slice(20, 40), TOP),
        (slice(50, 60), slice(20, 40), BOTTOM),
        (slice(20, 40), slice(0, 10), LEFT),
        (slice(20, 40), slice(50, 60), RIGHT),
        (slice(20, 60), slice(30, 60), BOTTOM | RIGHT),
        (slice(20, 40), slice(20, 40), NONE),
        (slice(0, 60), slice(0, 60), TOP | BOTTOM | LEFT | RIGHT),
    ],
)
def test_touched_sides_on_hand_made_masks(rows, cols, expected):
    mask = np.zeros((60, 60), bool)
    mask[rows, cols] = True
    np.testing.assert_array_equal(touched_sides(mask, 0.1, 0.02), expected)


def test_a_side_is_touched_only_above_the_share_and_within_the_band():
    mask = np.zeros((100, 100), bool)
    mask[95:, 45:55] = True  # 10 % of the bottom rows
    assert touched_sides(mask, 0.05, 0.05)[1]
    assert not touched_sides(mask, 0.1, 0.05)[1]  # not more than 10 %
    mask[:, :] = False
    mask[90:97, 0:100] = True  # stops 3 px short of the bottom edge
    assert not touched_sides(mask, 0.1, 0.02).any()  # the band is 2 rows
    assert touched_sides(mask, 0.1, 0.05)[1]  # 5 rows reach it
    assert not touched_sides(np.zeros((60, 60), bool), 0.0, 0.02).any()


@pytest.mark.parametrize(
    ("sides", "expected"),
    [
        (BOTTOM, [-25, 0, 125, 150]),
        (TOP, [-25, -50, 125, 100]),
        (LEFT, [-50, -25, 100, 125]),
        (RIGHT, [0, -25, 150, 125]),
        (BOTTOM | RIGHT, [0, 0, 150, 150]),
        (TOP | LEFT, [-50, -50, 100, 100]),
        (LEFT | RIGHT | BOTTOM, [-25, 0, 125, 150]),
        (TOP | BOTTOM | LEFT | RIGHT, [-25, -25, 125, 125]),
    ],
)
def test_grow_rect_goes_toward_the_touched_sides_and_stays_square(sides, expected):
    np.testing.assert_allclose(grow_rect([0, 0, 100, 100], sides, 0.5), expected)


# --------------------------------------------------------------------------- grow and redo


def test_a_mask_cut_at_the_bottom_is_redone_in_a_window_grown_down():
    image = picture(400, 400, 170, 170, 230, 260)  # the window [140,100,260,220] cuts it
    before = scene_with(SceneConfig(grow_rounds=0)).segment(image, detections=one_face())
    assert before.mask[170:220, 170:230].all() and not before.mask[220:].any()

    fake = WhiteIsMask()
    scene = scene_with(SceneConfig(grow_rounds=2, grow_by=0.5), fake)
    result = scene.segment(image, detections=one_face())
    # side 120 -> 180, top kept, centred left-right
    np.testing.assert_allclose(result.faces[0].crop, [110, 100, 290, 280])
    assert fake.calls == [1, 1]  # the grown window touches nothing: no second round
    truth = np.zeros((400, 400), bool)
    truth[170:260, 170:230] = True
    assert (result.mask == truth).mean() > 0.99 and result.mask[250:258, 180:220].all()


def test_the_default_settings_grow_a_cut_mask():
    image = picture(400, 400, 170, 170, 230, 245)
    result = scene_with(SceneConfig()).segment(image, detections=one_face())
    assert result.faces[0].crop[3] > 240 and result.mask[225:240, 180:220].all()


def test_nothing_touching_means_no_growth():
    fake = WhiteIsMask()
    image = picture(400, 400, 170, 130, 230, 190)  # well inside the window
    result = scene_with(SceneConfig(grow_rounds=2), fake).segment(image, detections=one_face())
    np.testing.assert_allclose(result.faces[0].crop, [140, 100, 260, 220])
    assert fake.calls == [1]


def test_the_round_limit_holds():
    image = picture(1000, 400, 170, 170, 230, 950)  # a mask running far down
    for rounds, windows in [
        (1, [110, 100, 290, 280]),
        (2, [65, 100, 335, 370]),
        (3, [-2.5, 100, 402.5, 505]),
    ]:
        fake = WhiteIsMask()
        config = SceneConfig(grow_rounds=rounds, grow_by=0.5, grow_closed=False)
        result = scene_with(config, fake).segment(image, detections=one_face())
        np.testing.assert_allclose(result.faces[0].crop, windows)
        assert fake.calls == [1] * (rounds + 1)


def test_each_round_is_one_batch_of_the_faces_that_touch():
    image = picture(400, 700, 170, 170, 230, 260)
    image[130:190, 470:530] = 255  # a second face whose mask stays inside its window
    two = np.array([[140.0, 100, 260, 220], [440.0, 100, 560, 220]])
    fake = WhiteIsMask()
    scene = scene_with(SceneConfig(grow_rounds=1, grow_by=0.5), fake)
    scene.crop_rects = lambda dets, tracked=False: two.copy()
    boxes = two + [10, 10, -10, -10]
    dets = Detections(boxes, np.array([0.9, 0.8]), np.tile(boxes[:, None, :2], (1, 6, 1)))
    result = scene.segment(image, detections=dets)
    assert fake.calls == [2, 1]
    np.testing.assert_allclose(result.faces[0].crop, [110, 100, 290, 280])
    np.testing.assert_allclose(result.faces[1].crop, two[1])


def test_no_growth_past_the_edge_of_the_image():
    fake = WhiteIsMask()
    image = picture(220, 400, 170, 170, 230, 220)  # the window's bottom is the image's
    result = scene_with(SceneConfig(grow_rounds=2), fake).segment(image, detections=one_face())
    np.testing.assert_allclose(result.faces[0].crop, [140, 100, 260, 220])
    assert fake.calls == [1]


def test_an_empty_grown_mask_keeps_the_first():
    fake = WhiteIsMask(lose_after=1)
    image = picture(400, 400, 170, 170, 230, 260)
    result = scene_with(SceneConfig(grow_rounds=2), fake).segment(image, detections=one_face())
    np.testing.assert_allclose(result.faces[0].crop, [140, 100, 260, 220])
    assert fake.calls == [1, 1] and result.faces[0].mask and result.mask[170:220].any()


class WhiteIsMaskAt(WhiteIsMask):
    """The same fake segmenter at another input size."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size


def test_a_redo_model_segments_only_the_grown_windows():
    image = picture(400, 400, 170, 170, 230, 260)
    first, redo = WhiteIsMask(), WhiteIsMaskAt(90)  # the redo model's logits come 90 px wide
    scene = scene_with(SceneConfig(grow_rounds=2, grow_by=0.5), first)
    scene.redo = redo
    result = scene.segment(image, detections=one_face())
    assert first.calls == [1] and redo.calls == [1]  # first window by one, grown by the other
    np.testing.assert_allclose(result.faces[0].crop, [110, 100, 290, 280])
    truth = np.zeros((400, 400), bool)
    truth[170:260, 170:230] = True
    # the 90 px logits were brought to the scene model's 60 px before pasting: same mask
    assert (result.mask == truth).mean() > 0.99 and result.mask[250:258, 180:220].all()


def test_without_growth_the_redo_model_is_never_called():
    image = picture(400, 400, 180, 150, 220, 200)  # inside the window: touches nothing
    first, redo = WhiteIsMask(), WhiteIsMaskAt(90)
    scene = scene_with(SceneConfig(grow_rounds=2), first)
    scene.redo = redo
    result = scene.segment(image, detections=one_face())
    assert first.calls == [1] and redo.calls == []
    assert result.mask[150:200, 180:220].all() and result.mask.sum() == 50 * 40


def test_small_masks_do_not_grow_below_grow_min():
    image = picture(400, 400, 170, 200, 230, 260)  # 20 of 120 rows inside: 8 % of the crop
    for grow_min, calls in [(0.05, [1, 1]), (0.1, [1])]:
        fake = WhiteIsMask()
        config = SceneConfig(grow_rounds=1, grow_by=0.5, grow_min=grow_min)
        scene_with(config, fake).segment(image, detections=one_face())
        assert fake.calls == calls


def test_a_grown_mask_that_never_ends_gives_the_first_one_back():
    image = picture(1000, 400, 170, 170, 230, 950)  # runs past two grown windows
    fake = WhiteIsMask()
    config = SceneConfig(grow_rounds=2, grow_by=0.5, grow_closed=True)
    result = scene_with(config, fake).segment(image, detections=one_face())
    np.testing.assert_allclose(result.faces[0].crop, [140, 100, 260, 220])
    assert fake.calls == [1, 1, 1] and not result.mask[220:].any()
    # one that ends inside the grown window is kept
    image = picture(1000, 400, 170, 170, 230, 330)
    result = scene_with(config).segment(image, detections=one_face())
    np.testing.assert_allclose(result.faces[0].crop, [65, 100, 335, 370])
    assert result.mask[300:325, 180:220].all()


def test_an_overshooting_growth_falls_back_to_the_shorter_step():
    """The mask ends 15 px under the first window; growing by 0.5 reaches a white "background"
    below it and still touches the edge, so closed growth would take it back; the shorter
    step (0.2) ends between the two, closes, and is kept. Where the shorter step does not
    close either, the first window comes back as without the fallback."""
    image = picture(1000, 400, 170, 170, 230, 235)
    image[265:, 170:230] = 255  # the background the long step reaches
    fake = WhiteIsMask()
    config = SceneConfig(grow_rounds=1, grow_by=0.5, grow_closed=True, grow_fallback=0.2)
    result = scene_with(config, fake).segment(image, detections=one_face())
    short = grow_rect(np.array([140.0, 100, 260, 220]), BOTTOM, 0.2)
    np.testing.assert_allclose(result.faces[0].crop, short)
    assert fake.calls == [1, 1, 1]  # first, long step, short step
    assert result.mask[221:235, 175:225].all() and not result.mask[short[3].astype(int) :].any()
    # without the fallback: the first window, the mask cut at its bottom
    plain = scene_with(SceneConfig(grow_rounds=1, grow_by=0.5, grow_closed=True))
    result = plain.segment(image, detections=one_face())
    np.testing.assert_allclose(result.faces[0].crop, [140, 100, 260, 220])
    assert not result.mask[220:].any()
    # a mask that runs past the short step too: the first window comes back
    image = picture(1000, 400, 170, 170, 230, 260)
    image[265:, 170:230] = 255
    fake = WhiteIsMask()
    result = scene_with(config, fake).segment(image, detections=one_face())
    np.testing.assert_allclose(result.faces[0].crop, [140, 100, 260, 220])
    assert fake.calls == [1, 1, 1] and not result.mask[220:].any()


def test_colour_step_compares_the_mask_past_the_first_window_with_the_mask_inside():
    crop = np.full((20, 20, 3), 255, np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    inner = np.array([0.0, 0.0, 20.0, 10.0])  # the top half
    assert colour_step(crop, mask, inner) == pytest.approx(0.0)  # white on both sides
    crop[10:] = 0  # the part past the first window is black: L 255 -> 0 on OpenCV's scale
    assert colour_step(crop, mask, inner) == pytest.approx(255.0)
    crop[10:] = (255, 0, 0)  # red: lightness and a/b both move, by the Lab formula
    lab = cv2.cvtColor(np.array([[[255, 255, 255], [255, 0, 0]]], np.uint8), cv2.COLOR_RGB2LAB)
    expected = np.linalg.norm(lab[0, 1].astype(float) - lab[0, 0])
    assert colour_step(crop, mask, inner) == pytest.approx(expected)
    below = np.zeros((20, 20), bool)
    below[12:15, 5:15] = True
    assert colour_step(crop, below, inner) == float("inf")  # nothing inside to compare with
    above = np.zeros((20, 20), bool)
    above[2:8, 5:15] = True
    assert colour_step(crop, above, inner) == 0.0  # nothing ran on


def test_inner_rect_maps_the_first_window_into_the_grown_crop():
    grown = grow_rect(np.array([140.0, 100, 260, 220]), BOTTOM, 0.5)  # side 180
    np.testing.assert_allclose(grown, [110, 100, 290, 280])
    np.testing.assert_allclose(
        inner_rect(grown, np.array([140.0, 100, 260, 220]), 60), [10, 0, 50, 40]
    )


def test_a_grown_mask_running_on_in_its_own_colour_is_kept():
    """Closed growth takes back a grown mask that still touches an edge; with
    ``grow_alike`` it stays when what it ran on over past the first window has the mask's
    colour, and still goes back when the colour jumps (background, not more mask)."""
    image = picture(1000, 400, 170, 170, 230, 950)  # white: the same "fabric" all the way
    config = SceneConfig(grow_rounds=1, grow_by=0.5, grow_closed=True, grow_alike=10.0)
    result = scene_with(config).segment(image, detections=one_face())
    grown = grow_rect(np.array([140.0, 100, 260, 220]), BOTTOM, 0.5)
    np.testing.assert_allclose(result.faces[0].crop, grown)
    assert result.mask[221:275, 175:225].all()
    # past the first window the white turns pinkish-red (still "mask" to the fake segmenter,
    # whose mask is red > 127): the colour jumps, so the first window comes back
    image[222:, 170:230] = (255, 60, 60)
    result = scene_with(config).segment(image, detections=one_face())
    np.testing.assert_allclose(result.faces[0].crop, [140, 100, 260, 220])
    assert not result.mask[220:].any()
    with pytest.raises(ValueError, match="grow_alike"):
        SceneConfig(grow_alike=-1.0)
    assert scene_config(["grow_alike=16"]).grow_alike == 16.0


@pytest.mark.parametrize("dropped", [False, True])
def test_after_the_check_the_grown_mask_comes_back_only_to_a_face_the_check_keeps(dropped):
    """With ``grow_alike_after_check`` the learned check reads the face as closed growth
    leaves it (the first window, the cut mask); a face it keeps gets the grown mask in its
    own colour back, a face it drops stays empty."""
    image = picture(1000, 400, 170, 170, 230, 950)
    config = SceneConfig(
        grow_rounds=1,
        grow_by=0.5,
        grow_closed=True,
        grow_alike=10.0,
        grow_alike_after_check=True,
        face_learned=0.02,
    )
    scene = scene_with(config)
    seen = []

    def check(image, dets, logits, probe, deadline=None):
        seen.append(probe.faces[0].crop.copy())
        return np.array([dropped])

    scene.learned_drop = check
    result = scene.segment(image, detections=one_face())
    np.testing.assert_allclose(seen[0], [140, 100, 260, 220])  # the check saw the first
    if dropped:
        assert not result.mask.any()
    else:
        grown = grow_rect(np.array([140.0, 100, 260, 220]), BOTTOM, 0.5)
        np.testing.assert_allclose(result.faces[0].crop, grown)
        assert result.mask[221:275, 175:225].all()


def test_the_fallback_step_must_be_positive():
    with pytest.raises(ValueError, match="grow_fallback"):
        SceneConfig(grow_fallback=0.0)
    assert scene_config(["grow_fallback=0.15"]).grow_fallback == 0.15
    assert scene_config(["grow_fallback=none"]).grow_fallback is None


def test_a_small_mask_gets_one_window_grown_down():
    image = picture(400, 400, 170, 216, 230, 270)  # a low mask: 4 rows inside the window
    plain = scene_with(SceneConfig(grow_rounds=0)).segment(image, detections=one_face())
    assert plain.mask.sum() < 400
    fake = WhiteIsMask()
    config = SceneConfig(grow_rounds=0, grow_by=0.5, retry_small=0.05)
    result = scene_with(config, fake).segment(image, detections=one_face())
    np.testing.assert_allclose(result.faces[0].crop, [110, 100, 290, 280])
    assert fake.calls == [1, 1] and result.mask[220:268, 175:225].all()
    # nothing found in the retry either: the first window stays
    fake = WhiteIsMask()
    empty = np.full((400, 400, 3), 90, np.uint8)
    result = scene_with(config, fake).segment(empty, detections=one_face())
    np.testing.assert_allclose(result.faces[0].crop, [140, 100, 260, 220])
    assert fake.calls == [1, 1] and not result.mask.any()


def test_the_input_windows_and_logits_are_left_as_they_are():
    scene = scene_with(SceneConfig(grow_rounds=1, grow_by=0.5))
    image = picture(400, 400, 170, 170, 230, 260)
    rects = np.array([[140.0, 100, 260, 220]])
    logits = scene.crop_logits(image, rects)
    kept = logits.copy()
    new_rects, new_logits = scene.regrow(image, rects, logits)
    np.testing.assert_array_equal(rects, [[140, 100, 260, 220]])
    np.testing.assert_array_equal(logits, kept)
    np.testing.assert_allclose(new_rects, [[110, 100, 290, 280]])
    assert not np.array_equal(new_logits, kept)


# --------------------------------------------------------------------------- deadline


class Clock:
    """Stands in for the ``time`` module of ``maskseg.pipeline.detect._base``."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_the_deadline_stops_before_growing(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(detect_base, "time", clock)
    fake = WhiteIsMask()
    logits = fake.logits

    def late(crops):  # the first pass runs past the deadline
        clock.now = 11.0
        return logits(crops)

    fake.logits = late
    image = picture(400, 400, 170, 170, 230, 260)
    scene = scene_with(SceneConfig(grow_rounds=2), fake)
    with pytest.raises(DeadlineExceeded, match="before growing face windows"):
        scene.segment(image, detections=one_face(), deadline=10.0)
    assert fake.calls == [1]
    clock.now = 0.0
    scene = scene_with(SceneConfig(grow_rounds=0, retry_small=0.05), fake)
    with pytest.raises(DeadlineExceeded, match="before retrying small masks"):
        scene.segment(picture(400, 400, 0, 0, 1, 1), detections=one_face(), deadline=10.0)


def test_a_future_deadline_changes_nothing():
    image = picture(400, 400, 170, 170, 230, 260)
    config = SceneConfig(grow_rounds=2, grow_by=0.5)
    plain = scene_with(config).segment(image, detections=one_face())
    timed = scene_with(config).segment(image, detections=one_face(), deadline=1e12)
    assert np.array_equal(plain.mask, timed.mask)
    assert [f.as_record() for f in plain.faces] == [f.as_record() for f in timed.faces]


# --------------------------------------------------------------------------- settings


def test_settings_are_checked_and_parsed():
    for bad in (
        {"grow_rounds": -1},
        {"grow_by": 0},
        {"grow_touch": 1.0},
        {"grow_band": 0},
        {"grow_min": 1.0},
    ):
        with pytest.raises(ValueError):
            SceneConfig(**bad)
    c = scene_config(["grow_rounds=2", "grow-by=0.3", "retry_small=0.02", "mode=frame"])
    assert (c.grow_rounds, c.grow_by, c.retry_small, c.mode) == (2, 0.3, 0.02, "frame")
    assert scene_config(["grow_closed=true"]).grow_closed is True
    assert scene_config(["grow_closed=0"]).grow_closed is False
    with pytest.raises(ValueError, match="true or false"):
        scene_config(["grow_closed=yes"])
    assert scene_config(["retry_small=none"], c).retry_small is None
    with pytest.raises(ValueError, match="not a scene setting"):
        scene_config(["grow=1"])


# --------------------------------------------------------------------------- reach


def test_clip_to_reach_on_a_hand_computed_case():
    # a 10 x 10 window whose top-left pixel is at image (100, 50); box 102..106 x 52..56
    # (width 4, height 4)
    mask = np.ones((10, 10), bool)
    box = np.array([102.0, 52.0, 106.0, 56.0])
    out = clip_to_reach(mask, (100, 50), box, (0.25, 0.5, 0.0))
    # columns: pixel centres 100.5 .. 109.5 kept within [102 - 1, 106 + 1] = [101, 107]
    # -> x 101..106 (window columns 1..6); rows: centres 50.5 .. 59.5 kept within
    # [52 - 0, 56 + 2] = [52, 58] -> y 52..57 (window rows 2..7)
    expected = np.zeros((10, 10), bool)
    expected[2:8, 1:7] = True
    np.testing.assert_array_equal(out, expected)
    assert mask.all()  # the input is left as it is
    np.testing.assert_array_equal(clip_to_reach(mask, (100, 50), box, (None, None, None)), mask)
    # a negative reach above: the mask must start under the box's top
    out = clip_to_reach(mask, (100, 50), box, (None, None, -0.5))  # y >= 54
    assert not out[:4].any() and out[4:].all()


def test_a_mask_running_past_its_face_is_cut_at_its_reach():
    # the white "mask" runs from inside the box (150..250 x 110..210) to 290 below it
    image = picture(400, 400, 170, 170, 230, 290)
    free = scene_with(SceneConfig(grow_rounds=0), window=(120.0, 100.0, 280.0, 300.0))
    assert free.segment(image, detections=one_face()).mask[280:290, 180:220].all()
    config = SceneConfig(grow_rounds=0, reach_below=0.5)  # 210 + 0.5 * 100 = 260
    result = scene_with(config, window=(120.0, 100.0, 280.0, 300.0)).segment(
        image, detections=one_face()
    )
    assert result.mask[170:260, 170:230].all() and not result.mask[260:].any()
    assert result.faces[0].mask_area == pytest.approx(90 * 60 / 100**2)


def test_reach_settings_are_checked_and_parsed():
    for bad in ({"reach_side": -0.1}, {"reach_below": -1}, {"reach_above": -1.5}):
        with pytest.raises(ValueError, match="reach"):
            SceneConfig(**bad)
    c = scene_config(["reach_side=0.2", "reach_below=0.5", "reach_above=-0.2"])
    assert c.reach == (0.2, 0.5, -0.2)
    assert SceneConfig().reach == (None, None, None)
