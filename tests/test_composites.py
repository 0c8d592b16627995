"""Composited training windows: framing arithmetic, pixel alignment, real composites of the
example photos, and a real training run that uses them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskseg.io import read_image
from maskseg.train.composites import (
    CompositeConfig,
    composite_windows,
    cut_pair,
    ends_inside,
    frame_window,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_frame_window_hand_computed():
    rect = np.array([10, 20, 50, 60])  # side 40, centre (30, 40)
    np.testing.assert_allclose(frame_window(rect, 1.0, 0.0, 0.0), rect)
    # 1.5 x: side 60 about the same centre
    np.testing.assert_allclose(frame_window(rect, 1.5, 0.0, 0.0), [0, 10, 60, 70])
    # then moved by 0.1 of the new side right and 0.2 down: +6, +12
    np.testing.assert_allclose(frame_window(rect, 1.5, 0.1, 0.2), [6, 22, 66, 82])


@pytest.mark.parametrize(
    "rect", [[10, 10, 70, 70], [-20, -10, 60, 70], [30, 40, 130, 140], [0, 0, 100, 100]]
)
def test_cut_pair_keeps_image_and_label_aligned(rect):
    """An image that is its own label (label pixels white): the cut label is exactly where
    the cut image is bright, wherever the window lies, past the picture's edge included."""
    lab = np.zeros((100, 100), np.uint8)
    cv2.ellipse(lab, (50, 60), (30, 20), 15, 0, 360, 1, -1)
    image = np.repeat((lab * 255)[..., None], 3, axis=2)
    crop, cut = cut_pair(image, lab.astype(bool), np.array(rect, np.float32), 64)
    assert crop.shape == (64, 64, 3) and cut.shape == (64, 64) and cut.dtype == np.uint8
    bright = crop[..., 0] > 127
    assert cut.any()
    # area resampling may move a boundary pixel; nothing more
    assert (bright != cut.astype(bool)).mean() < 0.02


def _example_pair():
    image = read_image(EXAMPLES / "face.jpg")
    mask = read_image(EXAMPLES / "face_truth.png")
    return image, (mask[..., 0] if mask.ndim == 3 else mask) > 127


def test_composites_of_the_examples():
    """The example mask pasted onto the unmasked astronaut: every window has the model's
    size, shows part of the mask, and its image differs from the photo's only where the mask
    went (the window is of the composite, not of a pasted square)."""
    pair = _example_pair()
    photo = read_image(EXAMPLES / "astronaut.jpg")
    cfg = CompositeConfig(n=6, low_share=0.5, seed=3)
    # the portrait fills its picture; with a wide border its face has room around it
    roomy = cv2.copyMakeBorder(photo, 200, 200, 200, 200, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    made = composite_windows([pair], [photo, roomy], cfg, size=96)
    assert made.images.shape == (6, 96, 96, 3) and made.masks.shape == (6, 96, 96)
    assert made.summary()["composite_windows"] == 6
    assert made.photos == 2 and made.roomy == 1
    shares = made.masks.reshape(6, -1).mean(1)
    assert (shares > 0.02).all() and (shares < 0.9).all()
    # windows are framed differently from one another (drawn scale and shift)
    assert len({round(float(s), 3) for s in shares}) > 1
    # worn low: the drawn drops include both kinds
    assert min(made.drops) < 0.2 and max(made.drops) > 0.2


def test_ends_inside_hand_computed():
    m = np.zeros((100, 100), bool)
    assert not ends_inside(m)  # no mask at all
    m[40:90] = True
    assert ends_inside(m)  # the bottom 4 rows are empty
    m[96:, :8] = True  # 32 of the band's 400 pixels: 8 %
    assert not ends_inside(m)
    assert ends_inside(m, most=0.1)
    m[96:] = False
    m[99, :8] = True  # 8 of 400: 2 %, at the limit
    assert ends_inside(m)


def test_whole_masks_only_skips_a_cut_mask():
    """The example's mask reaches its crop's bottom edge; cut straight at the chin as it is,
    no composite is made from it when only whole masks are allowed."""
    image, mask = _example_pair()
    photo = read_image(EXAMPLES / "astronaut.jpg")
    cut = mask.copy()
    cut[-10:] = cut[-30:-20].any(0)  # the mask runs on to the bottom edge
    assert not ends_inside(cut)
    with pytest.raises(ValueError, match="composites need pairs"):
        composite_windows([(image, cut)], [photo], CompositeConfig(n=2, whole_masks=True))
    ends = mask.copy()
    ends[-12:] = False
    assert ends_inside(ends)
    made = composite_windows([(image, ends)], [photo], CompositeConfig(n=2, whole_masks=True))
    assert len(made.images) == 2


def test_composites_need_a_face():
    pair = _example_pair()
    flat = np.full((200, 200, 3), 128, np.uint8)
    with pytest.raises(ValueError, match="face is found"):
        composite_windows([pair], [flat], CompositeConfig(n=2))


def test_training_with_composites(real_data: Path, tmp_path: Path):
    """A real (one-epoch) training run on the MSFD pairs with composites made on real photos
    without a mask: the run's rows are the pairs times ``pair_repeat`` plus the composites."""
    from conftest import real_faces_folder

    from maskseg.cli.main import main

    real_faces_folder(tmp_path, 30)
    run = tmp_path / "run"
    args = ["train", "--data", str(real_data), "--output", str(run), "--epochs", "1"]
    args += ["--val-fold", "-1", "--threads", "1", "--no-progress", "--composites", "12"]
    args += ["--composite-faces", str(tmp_path / "faces"), "--pair-repeat", "2"]
    assert main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_composites"] == 12
    assert summary["n_rows"] == 2 * summary["n_train"] + 12
    assert (run / "best.safetensors").is_file()


def test_composites_without_faces_folder_is_refused(real_data: Path, tmp_path: Path, capsys):
    from maskseg.cli.main import main

    args = ["train", "--data", str(real_data), "--output", str(tmp_path / "r"), "--epochs", "1"]
    args += ["--val-fold", "-1", "--threads", "1", "--no-progress", "--composites", "4"]
    assert main(args) == 2
    assert "composite_faces" in capsys.readouterr().err
    assert not (tmp_path / "r" / "best.safetensors").exists()
