from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from maskseg.io import ImageReadError, collect_images, read_image, read_mask, write_mask


def test_formats_and_modes(tmp_path: Path):
    rgb = np.random.default_rng(0).integers(0, 255, (7, 11, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "b.bmp")
    Image.fromarray(rgb).save(tmp_path / "c.webp", lossless=True)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    rgba = np.dstack([rgb, np.zeros((7, 11), np.uint8)])  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((7, 11), 65535, np.uint16))
    for name in ("a.png", "b.bmp", "c.webp"):
        np.testing.assert_array_equal(read_image(tmp_path / name), rgb)
    gray = read_image(tmp_path / "gray.png")
    assert gray.shape == (7, 11, 3) and (gray[..., 0] == rgb[..., 0]).all()
    assert read_image(tmp_path / "pal.png").shape == (7, 11, 3)
    assert (read_image(tmp_path / "rgba.png") == 255).all()  # transparent -> white
    deep = read_image(tmp_path / "deep.png")
    assert deep.dtype == np.uint8 and (deep == 255).all()


def test_errors_name_the_file(tmp_path: Path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    good = tmp_path / "t.jpg"
    cv2.imwrite(str(good), np.full((64, 64, 3), 128, np.uint8))
    (tmp_path / "trunc.jpg").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="trunc.jpg"):
        read_image(tmp_path / "trunc.jpg")


def test_mask_binarised_above_127_and_round_trip(tmp_path: Path):
    m = np.array([[0, 127, 128, 255]], np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), m)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), [[False, False, True, True]])
    mask = np.random.default_rng(1).random((9, 5)) > 0.5
    out = write_mask(tmp_path / "sub" / "o.png", mask)
    raw = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and set(np.unique(raw)) <= {0, 255}
    np.testing.assert_array_equal(read_mask(out), mask)
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_collect_images(tmp_path: Path):
    for name in ("a.JPG", "b.png", "odd.jpg_1088Wx1632H", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.webp").write_bytes(b"x")
    names = sorted(p.name for p in collect_images([tmp_path]))
    assert names == ["a.JPG", "b.png", "c.webp", "odd.jpg_1088Wx1632H"]
    assert collect_images([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]


def test_written_files_have_normal_permissions(tmp_path: Path):
    import os

    out = write_mask(tmp_path / "p.png", np.zeros((2, 2), bool))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
