"""Image and mask file I/O: one place that decodes every format the tool accepts (and encodes
masks and overlays); finding and guarding files on disk is ``maskseg.files``."""

from __future__ import annotations

import io
import math
import os
import threading
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from maskseg.files import atomic_write_bytes

MASK_THRESHOLD = 127  # the MSFD authors binarise JPEG masks with value > 127
# Images with more pixels are refused before decoding (a 20000 x 20000 PNG is a few KB on disk
# and 1.2 GB decoded). 150 MP admits a 12000 x 12000 scan; Pillow's own error starts at 179 MP.
DEFAULT_MAX_PIXELS = 150_000_000
# Files whose long side exceeds twice this are decoded reduced (by an integer factor that
# keeps at least this many pixels): the 160 px model and a preview overlay need no more.
DECODE_SIDE = 2048
# Shapes no model here can use, refused by ``decode_image`` when it decodes for a model (see
# ``check_shape``). Beyond 100:1 the detector's tiles (at most 64 per image,
# ``maskseg.pipeline.detect.MAX_TILES``) grow past three short sides, so even a face as tall as the
# image shrinks under 40 px of the 128 px detector input (and further with the ratio), and
# the crop path would squash the image more than 100x into its square input; the widest
# camera panoramas (360 degrees) are about 10:1. A side under 4 px holds no face at all; the
# limit stays that low because the CLI's crop mode takes small thumbnails (5 x 6 in its tests).
MAX_ASPECT_RATIO = 100
MIN_IMAGE_SIDE = 4
UNUSABLE_SHAPE = "unusable image shape"  # the stable start of ``UnusableImageError.reason``
# Decoding reduced keeps the short side at least ``min_side // SHORT_SIDE_SHARE`` (512 px for
# the CLI's and serve's 2048): a face a third of that tall still fills the 160 px segmentation
# input, and the tiles (2/3 of the short side) stay well above the detector's 128 px input.
SHORT_SIDE_SHARE = 4


class ImageReadError(ValueError):
    """A file could not be decoded as an image; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class UnusableImageError(ImageReadError):
    """An image whose shape no model can use (``check_shape``): its reason starts with
    ``UNUSABLE_SHAPE``, names the size and the rule; ``size`` is its (width, height)."""

    def __init__(self, path: str | os.PathLike, reason: str, size: tuple[int, int]):
        self.size = size
        super().__init__(path, reason)


def check_shape(name: str, width: int, height: int) -> None:
    """Raise ``UnusableImageError`` for an image with a side under ``MIN_IMAGE_SIDE`` or an
    aspect ratio beyond ``MAX_ASPECT_RATIO``:1 (see there why)."""
    short, long = min(width, height), max(width, height)
    if short < MIN_IMAGE_SIDE:
        reason = (
            f"{UNUSABLE_SHAPE}: {width}x{height} has a side of {short} px, under the "
            f"{MIN_IMAGE_SIDE} px minimum"
        )
    elif long > MAX_ASPECT_RATIO * short:
        reason = (
            f"{UNUSABLE_SHAPE}: {width}x{height} has an aspect ratio of "
            f"{long / short:.0f}:1, over the {MAX_ASPECT_RATIO}:1 maximum"
        )
    else:
        return
    raise UnusableImageError(name, reason, (width, height))


def reduction_factor(width: int, height: int, min_side: int | None) -> int:
    """The integer factor an image is decoded reduced by (1: not reduced).

    The largest factor that keeps the long side >= ``min_side`` and the short side >=
    ``min_side // SHORT_SIDE_SHARE`` (a panorama keeps the height its faces need; for aspect
    ratios up to ``SHORT_SIDE_SHARE``:1 the long side decides alone), but at least the one
    that brings the pixel count down to ``(2 * min_side) ** 2`` (memory stays bounded;
    this binds only for very long images: a photo reduced by the rules above is smaller).
    """
    if not min_side:
        return 1
    short_min = max(1, min_side // SHORT_SIDE_SHARE)
    factor = min(max(width, height) // min_side, min(width, height) // short_min)
    bound = math.ceil(math.sqrt(width * height / (2 * min_side) ** 2))
    return max(1, factor, bound)


ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

_limit_lock = threading.Lock()


def _source_name(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(getattr(source, "name", "<file object>"))


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block is no reason to reject the pixels
        return 1


def _open(
    source: ImageSource, max_pixels: int, min_side: int | None, shape_check: bool = False
) -> tuple[Image.Image, tuple[int, int]]:
    """Open, check the pixel count (and with ``shape_check`` the shape, ``check_shape``)
    before decoding, decode (reduced when ``min_side`` allows) and orient as viewers show it.
    Returns the image and its full displayed (height, width)."""
    name = _source_name(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageReadError(name, "file does not exist")
        if path.is_dir():
            raise ImageReadError(name, "is a directory, not an image")
        fp: Any = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageReadError(name, "empty data")
        fp = io.BytesIO(bytes(source))
    elif callable(getattr(source, "read", None)):
        fp = source
    else:
        raise TypeError(
            f"read_image takes a path, bytes or a binary file object, got {type(source).__name__}"
        )
    try:
        with warnings.catch_warnings():
            # maskseg applies its own pixel limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open_header(fp) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageReadError(
                        name,
                        f"image is {w}x{h} ({w * h:,} pixels), over the limit of "
                        f"{max_pixels:,} pixels "
                        "(raise it with max_pixels=, or --max-pixels in predict)",
                    )
                if shape_check:
                    check_shape(name, w, h)
                orientation = _orientation(im)
                full = (w, h) if orientation < 5 else (h, w)
                factor = reduction_factor(w, h, min_side)
                if factor >= 2 and im.format == "JPEG":
                    im.draft(None, (-(-w // factor), -(-h // factor)))  # DCT-domain scaling
                im.load()  # force a full decode so truncated files fail here, not later
                im = _reduce(im, min_side)
                if orientation != 1:
                    im = ImageOps.exif_transpose(im)
                return im, (full[1], full[0])
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(name, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(name, f"corrupt or truncated image ({exc})") from None


def _open_header(fp: Any) -> Image.Image:
    """``Image.open`` (which reads only the header) with Pillow's own pixel limit lifted, so
    that maskseg's limit, checked right after, decides and names the image's size."""
    with _limit_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(fp)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _reduce(im: Image.Image, min_side: int | None) -> Image.Image:
    """Shrink by ``reduction_factor`` (box filter)."""
    factor = reduction_factor(*im.size, min_side)
    if factor < 2:
        return im
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode not in ("L", "LA", "RGB", "RGBA", "I", "F", "I;16"):
        im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
    return im.reduce(factor)


# the full scales 16-bit, 32-bit and float pictures are stored at: 8, 10, 12, 14, 16 bits
_FULL_SCALES = tuple(2.0**bits - 1 for bits in (8, 10, 12, 14, 16))


def _to_uint8(im: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit and float modes to 8 bits by the smallest full scale that holds
    their largest value, not by clipping and not by the container's range: a float picture
    of 0-1 values, or 12-bit data in a 16-bit file, is not decoded nearly black."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        top = float(arr.max()) if arr.size else 0.0
        if im.mode == "F" and top <= 1.0:
            peak = 1.0
        else:
            peak = next((s for s in _FULL_SCALES if top <= s), max(top, 1.0))
        return Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return im


def _to_rgb_array(im: Image.Image, name: str) -> np.ndarray:
    im = _to_uint8(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    rgb = np.asarray(im, dtype=np.uint8)
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ImageReadError(name, "image has zero size")
    return np.ascontiguousarray(rgb)


def decode_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None,
    shape_check: bool | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image, reduced where that is all the caller needs.

    Args:
        source: a path, the encoded bytes, or a binary file object (an upload).
        max_pixels: images with more pixels are refused before decoding (decompression bombs).
        min_side: the long side the caller needs; larger images are decoded reduced by an
            integer factor (JPEG in the DCT domain, others by box filtering right after
            decoding), so a 12000 x 12000 photo never lives as floats. The factor keeps the
            short side >= ``min_side // SHORT_SIDE_SHARE`` too, so a 20000 x 300 panorama
            keeps its 300 px (``reduction_factor``).
        shape_check: refuse shapes no model can use (``check_shape``) before decoding, with
            ``UnusableImageError``; None: when ``min_side`` is given (decoding for a model).

    Returns:
        (RGB uint8 array, (height, width) of the full image as displayed).

    Raises:
        ImageReadError: unreadable, over ``max_pixels``, or (``UnusableImageError``, reason
            starting with ``UNUSABLE_SHAPE``) of a shape no model can use.
    """
    if shape_check is None:
        shape_check = min_side is not None
    im, full = _open(source, max_pixels, min_side, shape_check)
    return _to_rgb_array(im, _source_name(source)), full


def read_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode any supported image to RGB uint8, shape (H, W, 3), at full resolution.

    Accepts a path, bytes or a binary file object. Grayscale is replicated to three channels,
    palette images are expanded, 16-bit images are scaled to 8 bits, transparent pixels are
    composited over white, and EXIF orientation is applied (the array is what viewers show).
    """
    return decode_image(source, max_pixels=max_pixels)[0]


def read_gray(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image to its grey level, uint8 (H, W): any channel layout (a soft mask, or
    a mask before ``read_mask`` binarises it)."""
    im = _to_uint8(_open(source, max_pixels, None)[0])
    return np.asarray(im.convert("L"), dtype=np.uint8)


def read_mask(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a ground-truth mask to bool (H, W): any channel layout, binarised at > 127."""
    return read_gray(source, max_pixels=max_pixels) > MASK_THRESHOLD


def write_gray(path: str | os.PathLike, gray: np.ndarray) -> Path:
    """Write a uint8 (H, W) image as a single-channel PNG, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.asarray(gray, dtype=np.uint8))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())
    return path


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a bool mask as a 0/255 single-channel PNG, atomically (temp file + rename)."""
    # uint8 view * 255: one byte per pixel (np.where with ints would allocate int64).
    return write_gray(path, np.asarray(mask, dtype=bool).view(np.uint8) * np.uint8(255))


def write_rgb(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB uint8 image (PNG/JPEG by extension), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: encoding failed")
    atomic_write_bytes(path, buf.tobytes())
    return path
