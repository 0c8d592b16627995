"""Pictures: training curves, overlays and image | truth | prediction grids."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from maskseg.io import atomic_write_bytes

OVERLAY_COLOUR = np.array([0, 200, 255], dtype=np.float32)  # cyan: visible on skin and masks


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

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
    """Tint the mask region and outline its boundary, RGB uint8 in and out."""
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * OVERLAY_COLOUR
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    thickness = max(1, round(max(image.shape[:2]) / 300))
    cv2.drawContours(out, contours, -1, (255, 255, 0), thickness)
    return out


def mask_rgb(mask: np.ndarray) -> np.ndarray:
    return np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)


def image_grid(
    rows: list[list[np.ndarray]],
    column_titles: list[str],
    row_titles: list[str],
    path: str | Path,
    tile: int = 160,
) -> None:
    """Save a grid of RGB tiles (each resized to tile x tile) with titles."""
    plt = pyplot()
    n_rows, n_cols = len(rows), len(column_titles)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(1.9 * n_cols, 1.9 * n_rows + 0.3), squeeze=False
    )
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            ax = axes[r][c]
            ax.imshow(cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(column_titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=7)
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)
