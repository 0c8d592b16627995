"""Low-worn mask composites: geometry, pixel-exact labels, the gate's view of them."""

from __future__ import annotations

import numpy as np
import pytest

from maskseg.data.lowworn import face_transform, paste_mask, similarity, visible_share


def _keypoints(eye_r, eye_l, mouth) -> np.ndarray:
    k = np.zeros((6, 2), np.float32)
    k[0], k[1], k[2], k[3] = eye_r, eye_l, mouth, mouth
    return k


def test_similarity_maps_two_points_exactly():
    src = np.array([[10.0, 20.0], [30.0, 20.0]])
    dst = np.array([[100.0, 50.0], [100.0, 90.0]])  # rotated 90 degrees, scaled 2x
    m = similarity(src, dst)
    got = (m[:, :2] @ src.T).T + m[:, 2]
    np.testing.assert_allclose(got, dst, atol=1e-9)
    # a third point follows the same rotation and scale: (10, 30) is 10 px below eye 1
    p = m[:, :2] @ np.array([10.0, 30.0]) + m[:, 2]
    np.testing.assert_allclose(p, [80.0, 50.0], atol=1e-9)


def test_similarity_refuses_coincident_eyes():
    with pytest.raises(ValueError, match="eyes coincide"):
        similarity(np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([[0.0, 0.0], [5.0, 0.0]]))


def test_drop_moves_along_the_face():
    src = _keypoints((40, 40), (60, 40), (50, 70))
    dst = _keypoints((40, 40), (60, 40), (50, 70))  # the same face: identity, then a drop
    m = face_transform(src, dst, 0.5)
    np.testing.assert_allclose(m[:, :2], np.eye(2), atol=1e-9)
    np.testing.assert_allclose(m[:, 2], [0.0, 15.0], atol=1e-9)  # half of eyes->mouth (30 px)


def test_paste_round_trip_label_and_pixels_align():
    h = w = 100
    face = np.full((h, w, 3), 200, np.uint8)
    source = np.zeros((h, w, 3), np.uint8)
    source[..., 2] = 255  # a blue mask
    mask = np.zeros((h, w), bool)
    mask[55:75, 30:70] = True
    kps = _keypoints((40, 40), (60, 40), (50, 60))
    for drop in (0.0, 1.0):
        r = paste_mask(face, kps, source, mask, kps, drop, match_light=False)
        shift = int(round(drop * 20))  # eyes->mouth is 20 px
        want = np.roll(mask, shift, axis=0)
        assert r.label.sum() == pytest.approx(want.sum(), rel=0.1)
        inner = np.zeros_like(want)
        inner[57 + shift : 73 + shift, 32:68] = True  # away from the feathered edge
        assert r.label[inner].all()
        assert (r.image[inner] == [0, 0, 255]).all()  # the mask's pixels, where the label is
        outside = np.ones_like(want)
        outside[50 + shift : 80 + shift, 25:75] = False
        assert not r.label[outside].any()
        assert (r.image[outside] == 200).all()  # the face untouched away from the mask


def test_paste_matches_light():
    face = np.full((100, 100, 3), 84, np.uint8)  # a darker photo
    source = np.full((100, 100, 3), 120, np.uint8)
    source[50:80] = 240
    mask = np.zeros((100, 100), bool)
    mask[50:80] = True
    kps = _keypoints((40, 40), (60, 40), (50, 60))
    r = paste_mask(face, kps, source, mask, kps, 0.0)
    assert int(r.image[65, 50, 0]) == pytest.approx(168, abs=2)  # 240 * 84 / 120
    dark = paste_mask(np.full((100, 100, 3), 12, np.uint8), kps, source, mask, kps, 0.0)
    assert int(dark.image[65, 50, 0]) == pytest.approx(144, abs=2)  # the gain stops at 0.6


def test_visible_share_hand_computed():
    label = np.zeros((10, 10), bool)
    label[5:, :] = True
    assert visible_share(label, np.array([0, 0, 10, 10])) == pytest.approx(0.5)
    # a window reaching past the picture counts its whole area
    assert visible_share(label, np.array([0, 5, 10, 15])) == pytest.approx(0.5)
    assert visible_share(label, np.array([20, 20, 30, 30])) == 0.0
