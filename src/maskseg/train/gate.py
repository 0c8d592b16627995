"""The mask-presence gate: fit a ``PresenceHead`` on a trained model's frozen encoder, and
measure how often a face without a mask gets one and a face with a mask gets none.

Fitting leaves the segmentation untouched (the encoder is frozen, the decoder unused), so the
gate can only lose a masked face's mask, never reshape it: IoU on a masked face changes only
where the gate says "no mask".

    maskseg gate run/best.safetensors --faces runs/faces --data MSFD --output gated.safetensors
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from maskseg.models.base import SegmentationModel
from maskseg.pipeline.preprocess import model_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateConfig:
    """How the head is fitted (chosen on faces fold 0 validation, docs/shipped-model-plan.md).

    Attributes:
        hidden: hidden units of the MLP (0: logistic regression).
        epochs, lr, weight_decay, batch_size, dropout: AdamW training of the head.
        flip: also train on the mirrored crops (masks are left-right symmetric).
        seed: initialisation and batch order.
        features: what the head reads (``maskseg.models.presence.KINDS``).
        jitter: copies of each crop cut again from a window moved by up to ``JITTER_SHIFT``
            of its side and scaled by up to ``JITTER_SCALE`` (as a video's or a grown
            window differs from the one the crop was cut in), added before mirroring.
    """

    hidden: int = 256
    epochs: int = 200
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 128
    dropout: float = 0.2
    flip: bool = True
    seed: int = 0
    features: str = "pooled"
    jitter: int = 0


@torch.no_grad()
def encoder_features(
    model: SegmentationModel,
    images: Sequence[np.ndarray],
    size: int,
    batch_size: int = 64,
    kind: str = "pooled",
) -> np.ndarray:
    """The presence head's input features (N, F) for RGB images, from the frozen network."""
    _check(model)
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(model_input(list(images[i : i + batch_size]), size))
        out.append(model.presence_features(x, kind).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _check(model: torch.nn.Module) -> None:
    if not isinstance(model, SegmentationModel):
        raise TypeError(
            f"the gate fits on one SegmentationModel's encoder, not a {type(model).__name__} "
            "(ensembles and flip-TTA models are packed from gated single models)"
        )


def fit_presence(
    model: SegmentationModel,
    positives: Sequence[np.ndarray],
    negatives: Sequence[np.ndarray],
    size: int,
    cfg: GateConfig | None = None,
) -> dict[str, Any]:
    """Give ``model`` a fitted presence head; returns training figures.

    Args:
        positives: face crops wearing a mask; negatives: face crops without one.
        size: the model's input size.
    """
    cfg = GateConfig() if cfg is None else cfg
    feats, labels = crop_features(
        lambda ims: encoder_features(model, ims, size, kind=cfg.features), positives, negatives, cfg
    )
    head, figures = fit_head(feats, labels, model.make_presence_head(cfg.hidden, cfg.features), cfg)
    model.attach_presence(head)
    return figures


# a jittered copy's window: moved by up to this share of its side, scaled by up to 1 +- this
JITTER_SHIFT = 0.06
JITTER_SCALE = 0.1


def jittered(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` seen through a window moved and scaled at random (``JITTER_SHIFT``,
    ``JITTER_SCALE``), the same size; edges repeat outward."""
    import cv2

    h, w = image.shape[:2]
    scale = 1 + rng.uniform(-JITTER_SCALE, JITTER_SCALE)
    dx, dy = rng.uniform(-JITTER_SHIFT, JITTER_SHIFT, 2) * (w, h)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0, scale)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_features(
    features: Any, positives: Sequence[np.ndarray], negatives: Sequence[np.ndarray], cfg: GateConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of the crops, mirrored copies added when ``cfg.flip``;
    ``features`` maps a list of RGB crops to their (N, F) head inputs (any backend's)."""
    if not positives or not negatives:
        raise ValueError("the gate needs face crops with and without masks")
    images = list(positives) + list(negatives)
    labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))].astype(np.float32)
    if cfg.jitter:
        rng = np.random.default_rng(cfg.seed)
        images += [jittered(im, rng) for _ in range(cfg.jitter) for im in images]
        labels = np.tile(labels, 1 + cfg.jitter)
    feats = features(images)
    if cfg.flip:
        feats = np.concatenate([feats, features([im[:, ::-1] for im in images])])
        labels = np.r_[labels, labels]
    return feats, labels


def fit_head(
    feats: np.ndarray, labels: np.ndarray, head: torch.nn.Module, cfg: GateConfig
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fit a fresh ``PresenceHead`` on (features, 0/1 labels): standardise, AdamW with the
    classes balanced, dropout removed afterwards. Returns the head and training figures."""
    head.mean.copy_(torch.from_numpy(feats.mean(0)))
    head.std.copy_(torch.from_numpy(feats.std(0) + 1e-6))
    if cfg.dropout and cfg.hidden > 0:
        head.classifier.insert(0, torch.nn.Dropout(cfg.dropout))
    x = (torch.from_numpy(feats) - head.mean) / head.std
    y = torch.from_numpy(labels)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(head.classifier.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Balance the two classes: the gate's errors on either side cost alike.
    pos_weight = torch.tensor((labels == 0).sum() / max(1, (labels == 1).sum()))
    head.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), cfg.batch_size):
            j = perm[i : i + cfg.batch_size]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                head.classifier(x[j])[:, 0], y[j], pos_weight=pos_weight
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    if cfg.dropout and cfg.hidden > 0:  # dropout is a no-op at inference: drop the layer
        head.classifier = torch.nn.Sequential(*list(head.classifier)[1:])  # renumbered keys
    with torch.no_grad():
        train_acc = float(((head.classifier(x)[:, 0] > 0).float() == y).float().mean())
    copies = (2 if cfg.flip else 1) * (1 + cfg.jitter)
    n_pos = int(labels.sum()) // copies
    n_neg = len(labels) // copies - n_pos
    return head, {"n_positive": n_pos, "n_negative": n_neg, "train_accuracy": train_acc}


def scene_crops(
    masked: Sequence[tuple[np.ndarray, np.ndarray | None]],
    unmasked: Sequence[np.ndarray],
    n_scenes: int = 400,
    seed: int = 0,
    size: int = 160,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Crops as the scene path cuts them, from synthetic scenes of the given faces.

    Faces are placed in 640 x 480 frames over varied backgrounds (``maskseg.data.synth``; one scene
    in five has none), found by the scene path's ``FaceFinder`` at a low score threshold (0.2)
    and cut in its windows. A detection on a placed masked face (box IoU >= 0.5) is a positive;
    one on an unmasked face (IoU >= 0.5), or one whose crop shows next to nothing of any masked
    face (under 10 % of the crop: background), is a negative — the false detections the gate
    must turn into "no mask". Detections that show part of a masked face are left out: "no
    mask" would be a wrong label for them.

    Args:
        masked: (crop, its mask or None) of faces wearing a mask.
        unmasked: crops of faces without one.

    Returns:
        (positive crops, negative crops), each size x size RGB.
    """
    from maskseg.data.synth import compose
    from maskseg.pipeline.detect import box_iou, cut_crop
    from maskseg.pipeline.finder import FaceFinder
    from maskseg.pipeline.scene_config import SceneConfig

    # the scene path's face finder (no segmenter needed); every detection is kept, also the
    # overlapping ones the scene path drops
    finder = FaceFinder(SceneConfig(score_threshold=0.2))
    rng = np.random.default_rng(seed)
    pos: list[np.ndarray] = []
    neg: list[np.ndarray] = []
    for k in range(n_scenes):
        faces: list[tuple[str, np.ndarray, np.ndarray | None]] = []
        if k % 5:
            for _ in range(int(rng.integers(1, 3))):
                crop, mask = masked[int(rng.integers(len(masked)))]
                if mask is None:  # a photo-labelled face: any mask placeholder marks it masked
                    mask = np.ones(crop.shape[:2], bool)
                faces.append(("m", crop, mask))
            for _ in range(int(rng.integers(0, 3))):
                faces.append(("u", unmasked[int(rng.integers(len(unmasked)))], None))
        photo = masked[int(rng.integers(len(masked)))][0]
        scene = compose(faces, rng, photo=photo)
        dets = finder.find(scene.image, merge=False)
        if not len(dets):
            continue
        rects = finder.windows(dets)
        placed = np.array([p.rect for p in scene.placements], np.float64).reshape(-1, 4)
        for box, rect in zip(dets.boxes.astype(np.float64), rects, strict=True):
            overlaps = box_iou(box, placed) if len(placed) else np.zeros(0)
            j = int(overlaps.argmax()) if len(overlaps) else -1
            best = float(overlaps[j]) if j >= 0 else 0.0
            crop = cut_crop(scene.image, rect, size=size)
            if best >= 0.5:
                (pos if scene.placements[j].masked else neg).append(crop)
            elif _masked_share(rect, scene) < 0.1:
                neg.append(crop)
    return pos, neg


def photo_crops(
    photos: Iterable[np.ndarray], size: int = 160, limit: int | None = None
) -> tuple[list[np.ndarray], int]:
    """Crops the scene path cuts from real photos without a mask: hard negatives.

    Every detection the shipped scene path keeps (``FaceFinder`` with the default
    ``SceneConfig``: threshold, tiles, merging and face check as in ``predict --scene``)
    is cut in its window. In a photo of people without masks each of them is a "no mask",
    whether it is the face, a collar, hair, a hand or a curtain: the false detections
    that synthetic backgrounds do not show.

    Returns:
        (size x size RGB crops, photos read); at most ``limit`` photos (None: all).
    """
    from maskseg.pipeline.detect import cut_crop
    from maskseg.pipeline.finder import FaceFinder

    finder = FaceFinder()
    crops: list[np.ndarray] = []
    n = 0
    for image in itertools.islice(photos, limit):  # no photo past the limit is read
        n += 1
        dets = finder.find(image)
        if len(dets):
            crops.extend(cut_crop(image, r, size=size) for r in finder.windows(dets))
    return crops, n


def _masked_share(rect: np.ndarray, scene: Any) -> float:
    """The largest share of ``rect``'s area covered by one placed masked face."""
    x1, y1, x2, y2 = rect
    area = max(1e-6, (x2 - x1) * (y2 - y1))
    shares = [0.0]
    for p in scene.placements:
        if p.masked:
            a1, b1, a2, b2 = p.rect
            iw, ih = min(x2, a2) - max(x1, a1), min(y2, b2) - max(y1, b1)
            shares.append(max(0.0, iw) * max(0.0, ih) / area)
    return max(shares)
