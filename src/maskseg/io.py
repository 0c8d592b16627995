"""Image and mask file I/O: one place that decodes every format the tool accepts."""

from __future__ import annotations

import errno
import io
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


class ImageReadError(ValueError):
    """A file could not be decoded as an image; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


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
    source: ImageSource, max_pixels: int, min_side: int | None
) -> tuple[Image.Image, tuple[int, int]]:
    """Open, check the pixel count before decoding, decode (reduced when ``min_side`` allows)
    and orient as viewers show it. Returns the image and its full displayed (height, width)."""
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
                orientation = _orientation(im)
                full = (w, h) if orientation < 5 else (h, w)
                factor = max(w, h) // min_side if min_side else 1
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
    """Shrink by an integer factor while the long side stays >= ``min_side`` (box filter)."""
    if not min_side:
        return im
    factor = max(im.size) // min_side
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
    source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image, reduced where that is all the caller needs.

    Args:
        source: a path, the encoded bytes, or a binary file object (an upload).
        max_pixels: images with more pixels are refused before decoding (decompression bombs).
        min_side: the long side the caller needs; larger images are decoded reduced by an
            integer factor that keeps at least this (JPEG in the DCT domain, others by box
            filtering right after decoding), so a 12000 x 12000 photo never lives as floats.

    Returns:
        (RGB uint8 array, (height, width) of the full image as displayed).
    """
    im, full = _open(source, max_pixels, min_side)
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
    named = ", ".join(str(src) if out == src else f"{src} (as the output {out})"
                      for out, src in hits[:3])  # fmt: skip
    more = f" and {len(hits) - 3} more" if len(hits) > 3 else ""
    raise OverwriteError(f"refusing to write over the input(s) {named}{more}; nothing was "
                         f"written; {hint}")  # fmt: skip
