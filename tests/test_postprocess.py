"""Logits -> mask: the upsampling matches PyTorch's, the clean-up does what it says."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskseg.pipeline import postprocess as P


@pytest.mark.parametrize("out_hw", [(250, 250), (31, 517), (1, 1), (7, 3), (160, 160)])
def test_upsample_matches_torch_bilinear(out_hw):
    x = np.random.default_rng(0).normal(size=(16, 12)).astype(np.float32)
    ref = F.interpolate(
        torch.from_numpy(x)[None, None], size=out_hw, mode="bilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(P.upsample(x, *out_hw), ref, atol=1e-5)
    np.testing.assert_array_equal(
        P.upsample(x, *out_hw, threshold=0.1), P.upsample(x, *out_hw) > 0.1
    )


def test_upsample_hand_values():
    # 1 x 2 -> 1 x 4, half-pixel centres: samples at x = -0.25 (clamped to 0), 0.25, 0.75, 1.25
    out = P.upsample(np.array([[0.0, 4.0]], np.float32), 1, 4)
    np.testing.assert_allclose(out, [[0.0, 1.0, 3.0, 4.0]])


def test_fill_holes_and_largest_component():
    m = np.zeros((9, 9), bool)
    m[1:6, 1:6] = True
    m[3, 3] = False  # a hole inside the big square
    m[7:9, 7:9] = True  # a stray blob touching the border
    filled = P.fill_holes(m)
    assert filled[3, 3] and filled.sum() == m.sum() + 1
    largest = P.largest_component(m)
    assert not largest[7:9, 7:9].any() and largest[1, 1]
    cleaned = P.clean_mask(m)
    assert cleaned.sum() == 25 and cleaned[3, 3] and not cleaned[8, 8]
    notch = np.zeros((5, 5), bool)
    notch[1:4, 1:4] = True
    notch[2, 3:] = False  # open to the right: not a hole
    assert P.clean_mask(notch).sum() == notch.sum()
    empty = np.zeros((4, 4), bool)
    assert not P.clean_mask(empty).any()


def test_logits_to_mask_threshold_and_clean():
    logits = np.full((1, 8, 8), -5.0, np.float32)
    logits[0, 2:6, 2:6] = 5.0
    logits[0, 4, 4] = -5.0  # a hole the clean-up fills
    logits[0, 0, 7] = 5.0  # a speck it removes
    raw = P.logits_to_mask(logits, 8, 8, clean=False)
    assert raw[0, 7] and not raw[4, 4]
    clean = P.logits_to_mask(logits, 8, 8)
    assert clean[4, 4] and not clean[0, 7] and clean.sum() == 16
    assert P.logits_to_mask(logits, 8, 8, P.logit(0.999999)).sum() == 0
    assert P.logit(0.5) == 0.0
    with pytest.raises(ValueError, match="threshold"):
        P.logit(1.0)


def test_huge_masks_are_cleaned_on_a_grid(monkeypatch):
    """Above CLEAN_MAX_PIXELS the clean-up runs on a smaller grid; the result still agrees
    with a full-resolution clean-up except within a grid cell of the edges.

    The case tells the paths apart: a disk with a hole and a stray blob away from it, so the
    clean-up changes 1.5 % of the pixels (hole filled, blob removed) and a path that skipped
    it, or one that painted everything, would fail."""
    yy, xx = np.mgrid[0:40, 0:40]
    logits = np.where(np.hypot(yy - 22, xx - 18) < 12, 4.0, -4.0).astype(np.float32)
    logits[20:24, 16:20] = -4.0  # a hole in the disk
    logits[2:5, 32:35] = 4.0  # a blob apart from it
    logits += np.random.default_rng(1).normal(0, 0.5, logits.shape).astype(np.float32)
    logits = logits[None]
    full = P.logits_to_mask(logits, 400, 300)
    raw = P.logits_to_mask(logits, 400, 300, clean=False)
    hole, blob = (215, 135), (35, 250)  # output pixels of the hole's and the blob's centres
    assert full[hole] and not full[blob] and not raw[hole] and raw[blob]
    assert 0.2 < full.mean() < 0.35 and (raw != full).mean() > 0.01
    monkeypatch.setattr(P, "CLEAN_MAX_PIXELS", 10_000)
    monkeypatch.setattr(P, "CLEAN_MAX_SIDE", 200)  # a grid cell is 2 x 2 output pixels
    gridded = P.logits_to_mask(logits, 400, 300)
    assert gridded.shape == (400, 300) and gridded.dtype == bool
    assert gridded[hole] and not gridded[blob]
    differ = gridded != full
    assert differ.mean() < 0.005  # measured 0.2 %
    # ... and only on the edges: within 2 px of the full-resolution mask's boundary
    band = cv2.morphologyEx(full.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8))
    assert not (differ & (band == 0)).any()
    # without clean-up the huge path is the plain thresholded upsampling (in strips)
    np.testing.assert_array_equal(P.logits_to_mask(logits, 400, 300, clean=False), raw)
