"""Paired (image, mask) augmentation: every geometric change is applied to both together."""

from __future__ import annotations

import albumentations as A
import cv2


def train_transform() -> A.Compose:
    """Geometric + photometric augmentation for face crops at the model's input size."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(
                scale=(0.85, 1.15),
                translate_percent=(-0.08, 0.08),
                rotate=(-15, 15),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.8,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.7),
            A.HueSaturationValue(hue_shift_limit=12, sat_shift_limit=25, val_shift_limit=15, p=0.5),
            A.ToGray(p=0.05),
            A.OneOf(
                [A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.06))], p=0.2
            ),
            A.ImageCompression(quality_range=(40, 95), p=0.2),
        ]
    )
