from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from maskseg.files import collect_images
from maskseg.io import ImageReadError, read_image, read_mask, write_mask


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


def test_deep_and_float_pictures_scale_by_their_full_scale(tmp_path: Path):
    """Hand-computed: each kind keeps its brightness, none decodes nearly black."""
    ramp = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)
    Image.fromarray(ramp, "F").save(tmp_path / "unit.tiff")  # a float picture of 0-1
    Image.fromarray(ramp * 255, "F").save(tmp_path / "bytes.tiff")  # floats of 0-255
    cv2.imwrite(str(tmp_path / "twelve.png"), (ramp * 4095).astype(np.uint16))  # 12-bit data
    cv2.imwrite(str(tmp_path / "sixteen.png"), (ramp * 65535).astype(np.uint16))
    cv2.imwrite(str(tmp_path / "low.png"), np.array([[0, 10, 100, 200]], np.uint16))
    # 0.25 * 255 = 63.75 -> 64; the integer files store 0.5 as 2047 / 4095 and 32767 / 65535
    want = {"unit.tiff": 128, "bytes.tiff": 128, "twelve.png": 127, "sixteen.png": 127}
    for name, half in want.items():
        assert read_image(tmp_path / name)[0, :, 0].tolist() == [0, 64, half, 255], name
    assert read_image(tmp_path / "low.png")[0, :, 0].tolist() == [0, 10, 100, 200]


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


def test_bytes_and_file_objects(tmp_path: Path):
    import io

    rgb = np.random.default_rng(2).integers(0, 255, (9, 13, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    np.testing.assert_array_equal(read_image(data), rgb)
    np.testing.assert_array_equal(read_image(io.BytesIO(data)), rgb)
    with open(tmp_path / "a.png", "rb") as fh:
        np.testing.assert_array_equal(read_image(fh), rgb)
    with pytest.raises(ImageReadError, match="<bytes>: empty"):
        read_image(b"")
    with pytest.raises(ImageReadError, match="not a recognised image"):
        read_image(b"GIF89a but not really")


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path):
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(
        ImageReadError, match=r"a.png: image is 400x300 \(120,000 pixels\), over the limit"
    ):
        read_image(tmp_path / "a.png", max_pixels=100_000)
    assert read_image(tmp_path / "a.png", max_pixels=120_000).shape == (300, 400, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_images_decode_reduced_with_their_full_size(tmp_path: Path, fmt: str):
    from maskseg.io import decode_image

    rng = np.random.default_rng(3)
    big = cv2.resize(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), (4000, 3000))
    path = tmp_path / f"big.{fmt.lower()}"
    Image.fromarray(big).save(path, fmt)
    small, full = decode_image(path, min_side=512)
    assert full == (3000, 4000)
    assert 512 <= max(small.shape[:2]) < 1024 and small.shape[1] > small.shape[0]
    # The reduced image is the full one scaled down, not something else.
    ref = cv2.resize(big, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - ref.astype(int)).mean() < 6
    same, full2 = decode_image(path)
    assert same.shape == (3000, 4000, 3) and full2 == (3000, 4000)


def test_reduced_decode_applies_exif_orientation(tmp_path: Path):
    from maskseg.io import decode_image

    img = np.zeros((1200, 2400, 3), np.uint8)
    img[:, :1200] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif)
    small, full = decode_image(tmp_path / "r.jpg", min_side=300)
    assert full == (2400, 1200)  # as displayed: portrait
    assert small.shape[0] > small.shape[1]
    assert small[: small.shape[0] // 4].mean() > 200  # the white half is on top when shown
    assert read_image(tmp_path / "r.jpg").shape == (2400, 1200, 3)


def test_collect_inputs_reports_what_it_cannot_read(tmp_path: Path):
    from maskseg.files import collect_inputs

    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    (tmp_path / "back").symlink_to(tmp_path)
    (tmp_path / "notes.txt").write_bytes(b"x")
    found, skipped = collect_inputs([tmp_path])
    assert [p.name for p, _ in found] == ["a.jpg"]
    reasons = {p.name: why for p, why in skipped}
    assert set(reasons) == {"dir.png", "loop.jpg", "back"}
    assert "directory" in reasons["dir.png"] and "loop" in reasons["loop.jpg"]
    assert "already scanned" in reasons["back"]


def test_read_image_names_a_source_it_cannot_take():
    with pytest.raises(TypeError, match="path, bytes or a binary file object, got int"):
        read_image(123)
