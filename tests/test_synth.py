import numpy as np

from maskseg.data.synth import BACKGROUNDS, background, compose


def test_background_kinds_have_the_frame_shape():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (50, 60, 3), dtype=np.uint8)
    for kind in BACKGROUNDS:
        bg = background(kind, rng, (48, 64), photo)
        assert bg.shape == (48, 64, 3) and bg.dtype == np.uint8, kind


def test_compose_places_faces_apart_with_truth_for_masked_ones():
    rng = np.random.default_rng(1)
    crop = np.full((100, 100, 3), 200, np.uint8)
    mask = np.zeros((100, 100), bool)
    mask[50:, 20:80] = True
    faces = [("m1", crop, mask), ("u1", crop, None), ("m2", crop, mask)]
    scene = compose(faces, rng, shape=(240, 480), sizes=(80, 100))
    assert scene.image.shape == (240, 480, 3) and scene.truth.shape == (240, 480)
    rects = [p.rect for p in scene.placements]
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]  # no overlap
    for p in scene.placements:
        x1, y1, x2, y2 = p.rect
        inside = scene.truth[y1:y2, x1:x2]
        # masked faces: truth in the lower part of their square only; unmasked: none
        assert inside.any() == p.masked
        if p.masked:
            assert not inside[: (y2 - y1) // 3].any()
    outside = scene.truth.copy()
    for x1, y1, x2, y2 in rects:
        outside[y1:y2, x1:x2] = False
    assert not outside.any()
    again = compose(faces, np.random.default_rng(1), shape=(240, 480), sizes=(80, 100))
    np.testing.assert_array_equal(again.image, scene.image)
