"""Paired (image, mask) augmentation presets: every geometric change is applied to both.

Presets by name (TrainConfig.augment): "none", "standard", "strong", "framing". "strong" adds
colour changes that break the link between a mask's colour and its identity (channel shuffle,
large hue shifts), since real masks come in any colour or print, and the network should learn
shape. "framing" is "standard" with the crop's scale and position jittered as much as a face
detector's framing varies against the MSFD crops (measured by benchmarks/calibrate_crops.py:
the crop side's ratio to the true one has a relative spread of about 20 %, its centre is off by
about 6 % of the side), so the segmenter holds up on crops cut from detections.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

PAD_LABELS = ("reflect", "ignore")
# the label value of a pixel left out of the loss (``pad_label="ignore"``)
IGNORE = -1.0


def _geometric(scale: tuple[float, float], rotate: float, translate: float) -> list:
    return [
        A.HorizontalFlip(p=0.5),
        A.Affine(
            scale=scale,
            translate_percent=(-translate, translate),
            rotate=(-rotate, rotate),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            border_mode=cv2.BORDER_REFLECT_101,
            p=0.8,
        ),
    ]


def _photometric() -> list:
    return [
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.7),
        A.HueSaturationValue(hue_shift_limit=12, sat_shift_limit=25, val_shift_limit=15, p=0.5),
        A.ToGray(p=0.05),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.06))], p=0.2),
        A.ImageCompression(quality_range=(40, 95), p=0.2),
    ]


def _standard() -> A.Compose:
    return A.Compose(_geometric((0.85, 1.15), 15, 0.08) + _photometric())


def _framing() -> A.Compose:
    # Scale 0.7-1.4 and shifts of up to 12 % cover the detector's framing spread (std about
    # 20 % in scale, 6 % in centre) at about two standard deviations.
    return A.Compose(_geometric((0.7, 1.4), 15, 0.12) + _photometric())


def _strong() -> A.Compose:
    return A.Compose(
        _geometric((0.75, 1.25), 20, 0.12)
        + [
            A.Perspective(scale=(0.02, 0.06), p=0.3),
            A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.3, p=0.8),
            A.HueSaturationValue(hue_shift_limit=60, sat_shift_limit=40, val_shift_limit=20, p=0.6),
            A.ChannelShuffle(p=0.3),
            A.ToGray(p=0.1),
            A.RandomGamma(gamma_limit=(70, 140), p=0.3),
            A.OneOf(
                [A.GaussianBlur(blur_limit=(3, 7)), A.GaussNoise(std_range=(0.02, 0.08))], p=0.3
            ),
            A.ImageCompression(quality_range=(30, 95), p=0.3),
            A.CoarseDropout(
                num_holes_range=(1, 3),
                hole_height_range=(0.05, 0.15),
                hole_width_range=(0.05, 0.15),
                fill="random_uniform",
                p=0.2,
            ),
        ]
    )


PRESETS = {"standard": _standard, "strong": _strong, "framing": _framing}


def train_transform(preset: str = "standard", track_padding: bool = False) -> A.Compose | None:
    """The named augmentation pipeline; None for "none". ``track_padding``: the pipeline
    reports the parameters it applied, so ``padded`` can find the pixels it padded."""
    if preset == "none":
        return None
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation {preset!r}; valid: none, {', '.join(PRESETS)}")
    pipeline = PRESETS[preset]()
    if track_padding:
        if any(isinstance(step, A.Perspective) for step in pipeline.transforms):
            raise ValueError(f"pad_label='ignore' does not support {preset!r}'s perspective step")
        pipeline = A.Compose(list(pipeline.transforms), save_applied_params=True)
    return pipeline


def padded(out: dict, shape: tuple[int, int]) -> np.ndarray:
    """Bool (H, W): the output pixels of a ``track_padding`` pipeline's call that came from
    outside the input (the border the geometric step filled by reflection). The flip before it
    maps the input onto itself, so only the affine step's matrix matters."""
    h, w = shape
    inside = np.ones((h, w), np.uint8)
    for name, params in out.get("applied_transforms", []):
        if name == "Affine":
            m = np.asarray(params["matrix"], np.float64)[:2]
            inside = cv2.warpAffine(
                inside, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT
            )
    return inside == 0
