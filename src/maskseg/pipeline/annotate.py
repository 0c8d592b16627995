"""Pictures: training curves, overlays and image | truth | prediction grids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskseg.files import atomic_write_bytes

OVERLAY_COLOUR = np.array([0, 200, 255], dtype=np.float32)  # cyan: visible on skin and masks
# The wear check's verdicts (maskseg.pipeline.wear): label and RGB colour; None: not judged.
VERDICT_STYLE = {
    "correct": ("worn correctly", (40, 220, 90)),  # green
    "nose_exposed": ("nose exposed", (255, 150, 0)),  # orange
    "nose_mouth_exposed": ("nose+mouth exposed", (235, 40, 40)),  # red
    "chin_exposed": ("chin exposed", (245, 215, 0)),  # yellow
    "no_mask": ("no mask", (190, 60, 220)),  # violet
    None: ("not judged", (170, 170, 170)),  # grey
}


def verdict_style(wear: Any) -> tuple[str, tuple[int, int, int]]:
    """(label, RGB colour) of a wear result: a ``maskseg.pipeline.wear.Wear``, its record
    (``{"verdict": ...}``) or a verdict string."""
    if isinstance(wear, dict):
        verdict = wear.get("verdict")
    elif isinstance(wear, str) or wear is None:
        verdict = wear
    else:
        verdict = getattr(wear, "verdict", None)
    return VERDICT_STYLE.get(verdict, VERDICT_STYLE[None])


FONT = cv2.FONT_HERSHEY_SIMPLEX


def _label(image: np.ndarray, text: str, at: tuple[int, int], colour: tuple, t: int) -> None:
    """Text with its baseline at ``at`` (kept inside the picture) on a patch of ``colour``,
    in black or white, whichever reads better on it: legible on any photo, and the patch
    keeps the face's colour."""
    (w, h), base = cv2.getTextSize(text, FONT, 0.4 * t, t)
    x, y = _inside(image.shape[:2], at, h, base)
    cv2.rectangle(image, (x - 1, y - h - 2), (x + w + 1, y + base), colour, -1)
    r, g, b = colour
    ink = (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)
    cv2.putText(image, text, (x, y), FONT, 0.4 * t, ink, t, cv2.LINE_AA)


def _inside(shape: tuple[int, int], at: tuple[int, int], h: int, base: int) -> tuple[int, int]:
    """``at`` moved so that a text of ascent ``h`` and descent ``base`` with its baseline
    there stays in the picture."""
    x, y = at
    return x, min(max(y, h + 1), shape[0] - base - 1)


def place_labels(
    labels: Sequence[tuple[str, Sequence[tuple[int, int]]]], shape: tuple[int, int], t: int
) -> list[tuple[int, int]]:
    """A baseline position per label: the first of its candidate positions (kept inside the
    picture) whose text box meets none of the labels placed before it, else its first
    candidate. Labels earlier in the list (the more confident faces) keep their places."""
    placed: list[tuple[int, int, int, int]] = []
    out = []
    for text, candidates in labels:
        (w, h), base = cv2.getTextSize(text, FONT, 0.4 * t, t)
        spots = [_inside(shape, c, h, base) for c in candidates]
        boxes = [(x - 1, y - h - 2, x + w + 2, y + base + 1) for x, y in spots]
        free = [
            k
            for k, (a, b, c, d) in enumerate(boxes)
            if not any(a < q[2] and q[0] < c and b < q[3] and q[1] < d for q in placed)
        ]
        k = free[0] if free else 0
        placed.append(boxes[k])
        out.append(spots[k])
    return out


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed).

    Only training curves and the comparison's bar chart need it (the ``train`` extra).
    """
    try:
        import matplotlib
    except ImportError:
        from maskseg.pipeline.backends import TORCH_INSTALL

        raise ImportError(
            f"charts need matplotlib, which comes with the training extra: {TORCH_INSTALL}"
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_fig(fig, path: str | Path) -> None:
    """Save a figure as PNG atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(Path(path), buf.getvalue())


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Loss (left) and validation metrics (right) per epoch."""
    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in ("train_loss", "val_loss"):
        if key in history[0]:
            a.plot(epochs, [r[key] for r in history], label=key)
    a.set_xlabel("epoch")
    a.set_title("loss (BCE + Dice)")
    a.legend()
    for key in ("val_iou", "val_dice", "val_iou_pooled"):
        if key in history[0]:
            b.plot(epochs, [r[key] for r in history], label=key)
    b.set_xlabel("epoch")
    b.set_title("validation")
    if any(k.startswith("val_") for k in history[0]):
        b.legend()
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Tint the mask region and outline its boundary, RGB uint8 in and out. Only the mask's
    bounding box is blended (in float32, truncated to uint8), so a 12-megapixel photo with a
    small mask costs a copy, not a float image of the whole picture."""
    out = np.array(image, dtype=np.uint8, order="C", copy=True)
    mask = np.asarray(mask, bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return out
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box, inside = out[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    tinted = ((1 - alpha) * box.astype(np.float32) + alpha * OVERLAY_COLOUR).astype(np.uint8)
    np.copyto(box, tinted, where=inside[..., None])
    contours, _ = cv2.findContours(
        inside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0)
    )
    thickness = max(1, round(max(image.shape[:2]) / 300))
    cv2.drawContours(out, contours, -1, (255, 255, 0), thickness)
    return out


def draw_faces(
    image: np.ndarray,
    faces: list,
    scale: float = 1.0,
    thickness: int | None = None,
    wear: Sequence[Any] | None = None,
) -> np.ndarray:
    """Draw each face's box (green with a mask, orange without) and its score / mask share;
    with ``wear`` (one wear result per face, see ``verdict_style``), the box takes the
    verdict's colour and the verdict is written under it.

    ``faces`` are ``maskseg.pipeline.scene.Face``; ``scale`` maps their coordinates to ``image``'s.
    """
    out = np.ascontiguousarray(image).copy()
    t = thickness or max(1, round(max(image.shape[:2]) / 400))
    labels, colours = [], []
    for k, f in enumerate(faces):
        x1, y1, x2, y2 = (int(round(v * scale)) for v in f.box)
        colour = (40, 220, 90) if f.mask else (255, 150, 0)
        if wear is not None:
            verdict, colour = verdict_style(wear[k])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, t, cv2.LINE_AA)
        x = max(0, x1)
        text = f"{f.score:.2f} mask {f.mask_area:.0%}" if f.mask else f"{f.score:.2f} no mask"
        # above the box, else inside its top edge, else higher up
        labels.append((text, [(x, y1 - 4), (x + 2, y1 + 12 * t), (x, y1 - 4 - 14 * t)]))
        colours.append(colour)
        if wear is not None:
            # under the box, else inside its bottom edge, else lower down
            below = [(x, y2 + 14 * t), (x + 2, y2 - 4), (x, y2 + 28 * t)]
            labels.append((verdict, below))
            colours.append(colour)
    # every box first, then the labels over them, each where no earlier label is
    places = place_labels(labels, out.shape[:2], t)
    for (text, _), at, colour in zip(labels, places, colours, strict=True):
        _label(out, text, at, colour, t)
    return out


def annotate(
    image: np.ndarray,
    mask: np.ndarray,
    faces: list | None = None,
    full_width: int | None = None,
    wear: Sequence[Any] | None = None,
) -> np.ndarray:
    """``image`` with ``mask`` tinted and outlined and each face's box drawn (``draw_faces``).

    An image decoded reduced keeps its mask and faces at the file's full size (``full_width``
    its width): the mask is resized to the image and the boxes scaled, so the picture is
    drawn at the decoded size. ``wear``: the wear check's result per face, written by each
    box in the verdict's colour; without faces (crop mode: the picture is the face) the one
    verdict is written in the top-left corner.
    """
    if mask.shape != image.shape[:2]:
        h, w = image.shape[:2]
        mask = cv2.resize(mask.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    shown = overlay(image, mask.astype(bool))
    if faces:
        scale = image.shape[1] / full_width if full_width else 1.0
        shown = draw_faces(shown, faces, scale, wear=wear)
    elif wear:
        t = max(1, round(max(image.shape[:2]) / 400))
        text, colour = verdict_style(wear[0])
        _label(shown, text, (2, 14 * t), colour, t)
    return shown


def mask_rgb(mask: np.ndarray) -> np.ndarray:
    return np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)


def image_grid(
    rows: list[list[np.ndarray]],
    column_titles: list[str],
    row_titles: list[str],
    path: str | Path,
    tile: int = 160,
) -> None:
    """Save a grid of RGB tiles (each resized to tile x tile) with column titles on top and
    row titles on the left (OpenCV only, so evaluation needs no plotting library)."""
    font, scale, colour = cv2.FONT_HERSHEY_SIMPLEX, 0.42, (20, 20, 20)
    line = 16
    label_w = (
        max(
            [cv2.getTextSize(t, font, scale, 1)[0][0] for r in row_titles for t in r.split("\n")]
            + [0]
        )
        + 12
    )
    head = line + 8
    n_rows, n_cols = len(rows), len(column_titles)
    canvas = np.full((head + n_rows * (tile + 4), label_w + n_cols * (tile + 4), 3), 255, np.uint8)
    for c, title in enumerate(column_titles):
        cv2.putText(
            canvas,
            title[:24],
            (label_w + c * (tile + 4) + 4, line),
            font,
            scale,
            colour,
            1,
            cv2.LINE_AA,
        )
    for r, row in enumerate(rows):
        y = head + r * (tile + 4)
        for k, text in enumerate(row_titles[r].split("\n")):
            cv2.putText(
                canvas, text, (4, y + tile // 2 + k * line), font, scale, colour, 1, cv2.LINE_AA
            )
        for c, img in enumerate(row):
            x = label_w + c * (tile + 4)
            canvas[y : y + tile, x : x + tile] = cv2.resize(
                np.ascontiguousarray(img), (tile, tile), interpolation=cv2.INTER_AREA
            )
    ok, buf = cv2.imencode(".png", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(Path(path), buf.tobytes())
