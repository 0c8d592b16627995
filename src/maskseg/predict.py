"""The ``predict`` command's library function: segment image files and folders, write masks.

Light on purpose (no training stack): it decodes each file (reduced when the file is far
larger than the model needs), calls a segmenter and writes ``DIR/<stem>.png``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from maskseg.console import show_progress
from maskseg.io import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    atomic_write_bytes,
    collect_inputs,
    decode_image,
    write_mask,
    write_rgb,
)

log = logging.getLogger(__name__)

# Files whose long side exceeds twice this are decoded reduced (by an integer factor that
# keeps at least this many pixels): the 160 px model and a preview overlay need no more.
DECODE_SIDE = 2048


class FileSegmenter(Protocol):
    def predict(self, image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray: ...


@dataclass
class PredictResult:
    written: list[Path]
    failed: list[tuple[Path, str]]


def _warn(path: Path, reason: str) -> None:
    log.warning("skipped %s: %s", path, reason)


def predict_paths(
    segmenter: FileSegmenter,
    inputs: list[str | Path],
    output_dir: str | Path,
    overlay_images: bool = False,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_skip: Callable[[Path, str], None] = _warn,
    write_json: bool = False,
) -> PredictResult:
    """Write DIR/<stem>.png (0/255 mask at the input's full size) for every readable input.

    Files found inside a sub-folder of a folder input go to the same sub-folder of DIR; a
    second input with a name already written (``a.jpg`` beside ``a.png``) gets its extension
    in the name (``a_png.png``) rather than overwrite the first. Unreadable files, files over
    ``max_pixels``, folders named like images and symlink loops are reported once through
    ``on_skip`` and listed in the result; the rest go on. Overlays of images decoded reduced
    are written at the reduced size.

    A scene segmenter (``maskseg.scene.ScenePredictor``, anything with ``segment``) also gives
    faces: ``write_json`` then writes DIR/<stem>.json (image size, and per face its box,
    score, crop, mask share of the box and whether it wears a mask), the overlay gets the
    boxes, and an image without faces is logged as such (its mask is empty).
    """
    from tqdm import tqdm

    from maskseg.viz import annotate

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = PredictResult([], [])
    items, skipped = collect_inputs(inputs)
    for path, reason in skipped:
        on_skip(path, reason)
        result.failed.append((path, reason))
    used: set[Path] = set()
    bar = tqdm(items, desc="predict", unit="img", disable=not show_progress(progress))
    for path, name in bar:
        try:
            image, full = decode_image(path, max_pixels=max_pixels, min_side=DECODE_SIDE)
        except ImageReadError as exc:
            on_skip(path, exc.reason)
            result.failed.append((path, exc.reason))
            continue
        if name in used:
            name = name.with_name(f"{name.name}_{path.suffix.lstrip('.').lower()}")
            log.warning("%s: output name taken by an earlier input; writing %s.png", path, name)
        used.add(name)
        faces = None
        if hasattr(segmenter, "segment"):
            scene = segmenter.segment(image, size=full)
            mask, faces = scene.mask, scene.faces
            if not faces:
                log.info("%s: no face found; the mask is empty", path)
            if write_json:
                record = {"image": str(path), **scene.as_record()}
                atomic_write_bytes(out / f"{name}.json", json.dumps(record, indent=1).encode())
        else:
            mask = segmenter.predict(image, size=full)
        result.written.append(write_mask(out / f"{name}.png", mask))
        if overlay_images:
            write_rgb(out / f"{name}_overlay.jpg", annotate(image, mask, faces, full[1]))
        del image, mask  # a 144 MP mask should not outlive its file
    return result
