"""Image and mask file I/O: one place that decodes every format the tool accepts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MASK_THRESHOLD = 127  # the MSFD authors binarise JPEG masks with value > 127


class ImageReadError(ValueError):
    """A file could not be decoded as an image; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def is_image_file(path: Path) -> bool:
    """True for files whose extension starts with a known image extension (case-insensitive).

    "Starts with" keeps files such as ``photo.jpg_1088Wx1632H`` that web scrapers leave behind.
    """
    suffix = path.suffix.lower()
    return path.is_file() and not path.name.startswith(".") and suffix.startswith(IMAGE_EXTENSIONS)


def _open(path: str | os.PathLike) -> Image.Image:
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file does not exist")
    if path.is_dir():
        raise ImageReadError(path, "is a directory, not an image")
    try:
        with Image.open(path) as im:
            im.load()  # force a full decode so truncated files fail here, not later
            # Orient as viewers show it, so the written mask lines up with what the user sees.
            return ImageOps.exif_transpose(im)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(path, f"corrupt or truncated image ({exc})") from None


def _to_uint8(im: Image.Image) -> Image.Image:
    """Scale 16-bit and float modes to 8 bits by their actual range, not by clipping."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return im


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode any supported image to RGB uint8, shape (H, W, 3).

    Grayscale is replicated to three channels, palette images are expanded, 16-bit images are
    scaled to 8 bits, and transparent pixels are composited over white.
    """
    im = _to_uint8(_open(path))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ImageReadError(path, "image has zero size")
    return np.ascontiguousarray(rgb)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a ground-truth mask to bool (H, W): any channel layout, binarised at > 127."""
    im = _to_uint8(_open(path))
    gray = np.asarray(im.convert("L"), dtype=np.uint8)
    return gray > MASK_THRESHOLD


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a bool mask as a 0/255 single-channel PNG, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.where(mask, 255, 0).astype(np.uint8))
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
    """Expand files and folders into a sorted list of image files.

    Files given explicitly are kept even with an odd extension (decoding decides); files found in
    folders are filtered by extension.
    """
    return [path for path, _ in collect_inputs(inputs, recursive)]


def collect_inputs(
    inputs: list[str | os.PathLike], recursive: bool = True
) -> list[tuple[Path, Path]]:
    """Like collect_images, with each file's output name: its stem, under the sub-folder it was
    found in relative to the folder given (so same-named files in sub-folders do not clash)."""
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            for q in sorted(q for q in p.glob(pattern) if is_image_file(q)):
                found.append((q, q.relative_to(p).with_suffix("")))
        else:
            found.append((p, Path(p.stem)))
    return found
