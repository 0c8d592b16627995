"""Image and mask file I/O: one place that decodes every format the tool accepts."""

from __future__ import annotations

import errno
import io
import math
import os
import stat
import tempfile
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
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


def is_image_name(path: Path) -> bool:
    """True for names whose extension starts with a known image extension (case-insensitive).

    "Starts with" keeps files such as ``photo.jpg_1088Wx1632H`` that web scrapers leave behind.
    """
    return not path.name.startswith(".") and path.suffix.lower().startswith(IMAGE_EXTENSIONS)


def is_image_file(path: Path) -> bool:
    """An image name (``is_image_name``) that is a regular file (or a link to one)."""
    return is_image_name(path) and path.is_file()


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
    else:
        fp = source
    try:
        with warnings.catch_warnings():
            # maskseg applies its own pixel limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open_header(fp) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageReadError(
                        name,
                        f"image is {w}x{h} ({w * h / 1e6:.0f} MP), over the limit of "
                        f"{max_pixels / 1e6:.0f} MP (raise it with --max-pixels)",
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


def _to_uint8(im: Image.Image) -> Image.Image:
    """Scale 16-bit and float modes to 8 bits by their actual range, not by clipping."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
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


def read_mask(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a ground-truth mask to bool (H, W): any channel layout, binarised at > 127."""
    im = _to_uint8(_open(source, max_pixels, None)[0])
    gray = np.asarray(im.convert("L"), dtype=np.uint8)
    return gray > MASK_THRESHOLD


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a bool mask as a 0/255 single-channel PNG, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # uint8 view * 255: one byte per pixel (np.where with ints would allocate int64).
    ok, buf = cv2.imencode(".png", np.asarray(mask, dtype=bool).view(np.uint8) * np.uint8(255))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())
    return path


def write_rgb(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB uint8 image (PNG/JPEG by extension), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: encoding failed")
    atomic_write_bytes(path, buf.tobytes())
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def collect_images(inputs: list[str | os.PathLike], recursive: bool = True) -> list[Path]:
    """Expand files and folders into a sorted list of image files (see ``collect_inputs``)."""
    return [path for path, _ in collect_inputs(inputs, recursive)[0]]


def collect_inputs(
    inputs: list[str | os.PathLike], recursive: bool = True
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Expand files and folders into image files, each with its output name.

    Files given explicitly are kept even with an odd extension (decoding decides); files found
    in folders are filtered by extension, hidden files and folders are left out. The output
    name is the stem under the sub-folder the file was found in, relative to the folder given,
    so same-named files in sub-folders do not clash.

    Returns:
        (found, skipped): found holds (path, output name); skipped holds (path, reason) for
        entries with an image name that cannot be read as a file: folders named like images,
        broken links and symlink loops. Nothing is dropped without a word.
    """
    found: list[tuple[Path, Path]] = []
    skipped: list[tuple[Path, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files: list[Path] = []
            _walk(p, recursive, files, skipped, set())
            found += [(q, q.relative_to(p).with_suffix("")) for q in sorted(files)]
        else:
            found.append((p, Path(p.stem)))
    return found, skipped


def _walk(
    folder: Path,
    recursive: bool,
    files: list[Path],
    skipped: list[tuple[Path, str]],
    seen: set[tuple[int, int]],
) -> None:
    """Depth-first scan that follows linked folders once and reports loops."""
    try:
        st = folder.stat()
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        skipped.append((folder, f"cannot read folder ({exc.strerror or exc})"))
        return
    if (st.st_dev, st.st_ino) in seen:
        skipped.append((folder, "symlink loop: this folder was already scanned"))
        return
    seen.add((st.st_dev, st.st_ino))
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            continue
        try:
            target = path.stat()  # follows links; fails on broken links and loops
        except OSError as exc:
            if is_image_name(path) or entry.is_symlink():
                reason = "symlink loop" if exc.errno == errno.ELOOP else "broken link"
                skipped.append((path, f"{reason} ({exc.strerror})"))
            continue
        if stat.S_ISDIR(target.st_mode):
            if is_image_name(path):
                skipped.append((path, "is a directory, not an image"))
            if recursive:
                _walk(path, recursive, files, skipped, seen)
        elif is_image_name(path):
            if stat.S_ISREG(target.st_mode):
                files.append(path)
            else:
                skipped.append((path, "not a regular file"))


# --------------------------------------------------------------------------- inputs vs outputs


class OverwriteError(ValueError):
    """Some output of a run would replace one of its inputs; raised before anything is written."""


def _real(path: str | os.PathLike) -> Path:
    """The absolute path with links resolved (as far as they exist)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop on the way
        return Path(os.path.abspath(path))


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True when ``path`` is ``folder`` or lies anywhere below it (links resolved)."""
    p, f = _real(path), _real(folder)
    return p == f or f in p.parents


def _inode(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def find_overwrites(
    outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike]
) -> list[tuple[Path, Path]]:
    """(output, input) for every output that is an input: the same path once links are
    resolved, or the same file under another name (``os.path.samefile``: hard links). In the
    order of ``outputs``; linear in the number of paths."""
    by_path: dict[Path, Path] = {}
    by_inode: dict[tuple[int, int], Path] = {}
    for item in inputs:
        by_path.setdefault(_real(item), Path(item))
        key = _inode(item)
        if key is not None:
            by_inode.setdefault(key, Path(item))
    hits = []
    for out in outputs:
        hit = by_path.get(_real(out))
        if hit is None:
            key = _inode(out)
            hit = by_inode.get(key) if key is not None else None
        if hit is not None:
            hits.append((Path(out), hit))
    return hits


def refuse_overwrite(
    outputs: Iterable[str | os.PathLike],
    inputs: Iterable[str | os.PathLike],
    hint: str = "choose another --output",
) -> None:
    """Raise ``OverwriteError`` naming the first outputs that would replace an input (see
    ``find_overwrites``); call it with every planned output before writing any of them."""
    hits = find_overwrites(outputs, inputs)
    if not hits:
        return
    named = ", ".join(
        str(src) if out == src else f"{src} (as the output {out})" for out, src in hits[:3]
    )
    more = f" and {len(hits) - 3} more" if len(hits) > 3 else ""
    raise OverwriteError(
        f"refusing to write over the input(s) {named}{more}; nothing was written; {hint}"
    )
