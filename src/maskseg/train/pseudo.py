"""Pseudo-labels for self-training: a teacher's confident masks on unlabelled masked faces.

``../shared/data/faces`` holds about 1,700 face crops of people wearing masks with no pixel
labels. A trained, gated model (the teacher; its mirror image averaged in) labels them, and
only the crops it is sure of are kept (``keep``: the gate says mask, the mask covers a
plausible share of the crop, nearly every pixel confident). ``maskseg train --pseudo DIR``
adds the kept crops to the training rows, after the real pairs (noisy-student training).

    maskseg pseudo runs/fold0/gated.safetensors --faces runs/faces --fold 0 --output runs/pseudo0

Written: ``DIR/images/ID.png``, ``DIR/masks/ID.png`` (0/255) and ``DIR/pseudo.json`` (the
rule, the teacher, the photos' part and how many were kept and why the others were not).
Which photos are read is the caller's choice; the faces' test part never is.

With ``--soft`` (``PseudoConfig.soft``) the kept crops are the same, but each mask PNG holds
the teacher's probability (0-255) from its decoder without the gate (the gate caps every pixel
logit at its own, which would squash a confident mask's targets toward the gate's score):
distillation through soft targets, which ``maskseg train --pseudo`` reads as such.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskseg.files import atomic_write_bytes
from maskseg.io import read_gray, read_image, read_mask, write_gray, write_mask, write_rgb

RECORD = "pseudo.json"


@dataclass(frozen=True)
class PseudoConfig:
    """Which teacher masks are kept (docs/shipped-model-plan.md, "Self-training").

    Attributes:
        confident: least share of the crop's pixels whose probability is <= ``low`` or >=
            ``high``.
        low, high: what counts as a confident pixel.
        min_share, max_share: the mask's share of the crop (the gate's "no mask" empties it,
            so ``min_share`` also drops what the gate rejects).
        flip: average the teacher's probabilities with those of the mirrored crop.
        soft: write the ungated teacher's probabilities (0-255) instead of 0/255 masks.
    """

    confident: float = 0.97
    low: float = 0.1
    high: float = 0.9
    min_share: float = 0.05
    max_share: float = 0.8
    flip: bool = True
    soft: bool = False


def keep(prob: np.ndarray, cfg: PseudoConfig) -> str | None:
    """None when the teacher's probability map ``prob`` (H, W) in [0, 1] is kept, else why
    not: "no mask" (under ``min_share``: the gate said no, or next to nothing), "too large",
    "unsure"."""
    share = float((prob >= 0.5).mean())
    if share < cfg.min_share:
        return "no mask"
    if share > cfg.max_share:
        return "too large"
    sure = float(((prob <= cfg.low) | (prob >= cfg.high)).mean())
    if sure < cfg.confident:
        return "unsure"
    return None


def teacher_probs(predictor: Any, images: Sequence[np.ndarray], flip: bool) -> list[np.ndarray]:
    """The teacher's mask probability per image at the model's input size (the rule is judged
    there); mirrored copies averaged in."""
    from maskseg.pipeline.postprocess import sigmoid

    images = list(images)
    probs = [sigmoid(lg[0]) for lg in predictor.logits(images)]  # logits (N, 1, S, S)
    if flip:
        mirrored = predictor.logits([im[:, ::-1] for im in images])
        probs = [(p + sigmoid(lg[0])[:, ::-1]) / 2 for p, lg in zip(probs, mirrored, strict=True)]
    return probs


@contextmanager
def ungated(predictor: Any) -> Iterator[None]:
    """The predictor's PyTorch model without its presence head for the block (a model with
    no head, or a backend without a PyTorch model, is left as it is)."""
    model = getattr(getattr(predictor, "backend", None), "model", None)
    head = getattr(model, "presence", None)
    if head is None:
        yield
        return
    model.presence = None
    try:
        yield
    finally:
        model.presence = head


def to_soft(prob: np.ndarray) -> np.ndarray:
    """A probability map in [0, 1] as uint8 0-255 (rounded)."""
    return np.clip(np.rint(np.asarray(prob, np.float32) * 255), 0, 255).astype(np.uint8)


@dataclass
class PseudoSet:
    """Kept crops and what happened to the others."""

    ids: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        seen = len(self.ids) + sum(self.dropped.values())
        return {
            "read": seen,
            "kept": len(self.ids),
            "kept_share": len(self.ids) / seen if seen else 0.0,
            "dropped": dict(self.dropped),
        }


def pseudo_label(
    predictor: Any,
    crops: Sequence[Any],
    cfg: PseudoConfig | None = None,
    batch_size: int = 32,
) -> PseudoSet:
    """Label the crops (``maskseg.data.faces.LabelledCrop``) of masked photos with the
    teacher; keep those ``keep`` passes (judged on the gated teacher). Crops labelled "no
    mask" are not read. Masks: bool, or with ``cfg.soft`` the ungated teacher's probability
    as uint8 0-255, at each crop's own size."""
    cfg = PseudoConfig() if cfg is None else cfg
    out = PseudoSet()
    masked = [c for c in crops if c.mask]
    for i in range(0, len(masked), batch_size):
        batch = masked[i : i + batch_size]
        images = [c.image for c in batch]
        probs = teacher_probs(predictor, images, cfg.flip)
        targets = probs
        if cfg.soft:
            with ungated(predictor):
                targets = teacher_probs(predictor, images, cfg.flip)
        for crop, prob, target in zip(batch, probs, targets, strict=True):
            why = keep(prob, cfg)
            if why is None:
                h, w = crop.image.shape[:2]  # the label at the crop's own size
                full = cv2.resize(target.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
                out.ids.append(crop.id)
                out.images.append(crop.image)
                out.masks.append(to_soft(full) if cfg.soft else full >= 0.5)
            else:
                out.dropped[why] += 1
    return out


def _stem(crop_id: str) -> str:
    """A file name for a crop id (ids are photo paths such as ``with_mask/00012.jpg``): the
    extension kept in it, as ``faces/with_mask`` holds ``204.jpg`` beside ``204.png``."""
    path = Path(crop_id)
    return path.with_name(path.name.replace(".", "_")).as_posix().replace("/", "__")


def write_pseudo(folder: str | Path, made: PseudoSet, record: dict[str, Any]) -> dict[str, Any]:
    """Write the kept crops and ``pseudo.json`` (``record`` plus the counts); returns it."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    taken: set[str] = set()
    for crop_id, image, mask in zip(made.ids, made.images, made.masks, strict=True):
        name = base = _stem(crop_id)
        for k in range(2, len(made.ids) + 2):  # two ids one name (a_b.jpg, a.b.jpg): numbered
            if name not in taken:
                break
            name = f"{base}_{k}"
        taken.add(name)
        write_rgb(folder / "images" / f"{name}.png", image)
        # soft: the probability, 0-255; else a bool mask
        write = write_gray if mask.dtype == np.uint8 else write_mask
        write(folder / "masks" / f"{name}.png", mask)
        names.append(name)
    full = {**record, **made.summary(), "files": names}
    atomic_write_bytes(folder / RECORD, json.dumps(full, indent=1).encode())
    return full


def _record(folder: str | Path) -> dict[str, Any]:
    """A ``write_pseudo`` folder's ``pseudo.json``."""
    path = Path(folder) / RECORD
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a pseudo-label folder (make one with maskseg pseudo)")
    return json.loads(path.read_text(encoding="utf-8"))


def is_soft(folder: str | Path | dict[str, Any]) -> bool:
    """Whether a ``write_pseudo`` folder (or its read record) holds soft (0-255) masks."""
    record = folder if isinstance(folder, dict) else _record(folder)
    return bool(record.get("rule", {}).get("soft", False))


def read_pseudo(folder: str | Path, size: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, images (N, size, size, 3) uint8, masks (N, size, size) uint8) of a
    ``write_pseudo`` folder, resized to the model's input size: masks 0/1, or for a soft
    folder (``is_soft``) the probability 0-255 (area-averaged, not thresholded)."""
    from maskseg.pipeline.preprocess import resize_image, resize_mask

    folder = Path(folder)
    record = _record(folder)
    soft, names = is_soft(record), record["files"]
    images = np.zeros((len(names), size, size, 3), np.uint8)
    masks = np.zeros((len(names), size, size), np.uint8)
    for k, name in enumerate(names):
        image = read_image(folder / "images" / f"{name}.png")
        mask_path = folder / "masks" / f"{name}.png"
        mask = read_gray(mask_path) if soft else read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{mask_path}: mask and image sizes differ")
        images[k] = resize_image(image, size)  # as the training cache resizes the pairs
        if soft:
            masks[k] = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA)
        else:
            masks[k] = resize_mask(mask, size)
    return [f"pseudo#{n}" for n in names], images, masks


def make_pseudo(
    teacher: str | Path,
    faces_dir: str | Path,
    output: str | Path,
    fold: int = -1,
    cfg: PseudoConfig | None = None,
) -> dict[str, Any]:
    """Label the masked crops of the faces split's training part with ``teacher`` and write
    the kept ones to ``output`` (``write_pseudo``); returns the record.

    ``fold``: the photos outside validation fold ``fold`` of the non-test part (the fold a
    student will be validated on must not feed it); -1: every non-test photo. The split is
    the teacher's own (``maskseg.data.faces.face_splits`` with its data settings).
    """
    from maskseg.data.faces import face_splits, load_crops, load_index
    from maskseg.pipeline.modelfile import read_model_info
    from maskseg.pipeline.predictor import Predictor

    cfg = PseudoConfig() if cfg is None else cfg
    model_cfg, _ = read_model_info(teacher)
    splits = face_splits(load_index(faces_dir), model_cfg.data)
    ids = splits.train_val(fold)[0] if fold >= 0 else splits.trainval
    predictor = Predictor.load(teacher, backend="torch", precision="fp32")
    made = pseudo_label(predictor, load_crops(faces_dir, ids), cfg)
    record = {
        "teacher": str(teacher),
        "faces": str(faces_dir),
        "part": f"training photos of fold {fold}" if fold >= 0 else "every non-test photo",
        "rule": asdict(cfg),
    }
    return write_pseudo(output, made, record)
