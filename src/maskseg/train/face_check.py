"""Fit a model's learned face check (``maskseg.pipeline.face_check.LearnedCheck``).

The check reads the model's own confidence (its gated peak logit, its mask area), so each
model gets its own, written beside the model file as ``<stem>.face-check.json``, where the
scene path finds it (``face_check.check_file_for``). The rows are those of the shipped
checks (docs/shipped-model-plan.md, "A learned face check"): every whole photo of a
``maskseg data faces`` folder in the given part goes through the scene path with the check
off; each painted face gives ``ScenePredictor.check_features``' row. In a photo without a
mask it is a false mask (0); in a masked photo one whose centre lies in the window the
folder cut round the main face is a mask (1); others are left out (another person's mask or
a false one: unknown). The fit is ``fit_logistic`` (class-balanced, L2 1.0, standardised).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from maskseg.pipeline.face_check import LEARNED_FEATURES, LearnedCheck, fit_logistic


def photo_rows(
    scene: Any, image: np.ndarray, masked: bool, rect: list[float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of one photo's painted faces (see the module docstring); ``scene``: a
    ``ScenePredictor`` whose learned check is off."""
    empty = np.zeros((0, len(LEARNED_FEATURES))), np.zeros(0)
    dets = scene.detect(image)
    if not len(dets):
        return empty
    rects, logits = scene.segment_windows(image, dets)
    result = scene.paste(image.shape[:2], None, dets, rects, logits)
    idx, x = scene.check_features(image, dets, logits, result)
    if not masked:
        return x, np.zeros(len(idx))
    if not rect or len(rect) != 4:
        return empty
    inside = centres_inside(dets.boxes[idx], rect)
    return x[inside], np.ones(int(inside.sum()))


def centres_inside(boxes: np.ndarray, rect: list[float]) -> np.ndarray:
    """Bool per box (x1, y1, x2, y2): its centre lies in ``rect``, the window ``maskseg
    data faces`` cut round a photo's main face (edges included): that face's detection."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = rect
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    return (x1 <= cx) & (cx <= x2) & (y1 <= cy) & (cy <= y2)


def fit_face_check(
    model_path: str | Path, faces_dir: str | Path, ids: Iterable[str], output: str | Path
) -> dict[str, Any]:
    """Fit the learned check of the model file ``model_path`` on the photos ``ids`` of
    ``faces_dir`` (unreadable ones passed over) and write it to ``output``; returns its
    figures (rows, masks on a main face, painted faces in unmasked photos)."""
    from maskseg.data.faces import photo_path
    from maskseg.io import ImageReadError, read_image
    from maskseg.pipeline.predictor import Predictor
    from maskseg.pipeline.scene import ScenePredictor
    from maskseg.pipeline.scene_config import SceneConfig

    scene = ScenePredictor(Predictor.load(model_path), replace(SceneConfig(), face_learned=None))
    wanted = set(ids)
    xs, ys = [], []
    for entry, path in photo_path(faces_dir):
        if entry.id not in wanted:
            continue
        try:
            image = read_image(path)
        except (ImageReadError, OSError, ValueError):  # the odd files of a photo folder
            continue
        x, y = photo_rows(scene, image, entry.mask, entry.rect)
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs) if xs else np.zeros((0, len(LEARNED_FEATURES)))
    y = np.concatenate(ys) if ys else np.zeros(0)
    if not len(y) or y.min() == y.max():
        raise ValueError(
            f"{faces_dir}: the face check needs painted faces of both kinds, masks on a main "
            f"face and masks in photos without one; these photos gave {int(y.sum())} and "
            f"{int(len(y) - y.sum())}"
        )
    figures = {
        "rows": int(len(y)),
        "masks_on_a_main_face": int(y.sum()),
        "painted_in_unmasked_photos": int(len(y) - y.sum()),
    }
    LearnedCheck(*fit_logistic(x, y)).save(
        output, **figures, fitted_on=f"photos of {faces_dir}, read through {model_path}"
    )
    return figures
