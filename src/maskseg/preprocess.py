"""Preprocessing shared by training, evaluation and every inference front end.

Keep it here and only here: a model is only as good as the match between what it saw in
training and what it sees at inference.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# ImageNet statistics: a neutral, well-known choice that keeps inputs near zero mean.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an RGB uint8 image to size x size (face crops are near square; no letterbox).

    INTER_AREA when shrinking avoids aliasing on large photos; linear when enlarging.
    """
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if h > size or w > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a bool mask to size x size: area averaging, then a 0.5 threshold."""
    if mask.shape == (size, size):
        return mask
    m = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return m > 0.5


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) or (N, H, W, 3) -> normalised float (N, 3, H, W)."""
    arr = images[None] if images.ndim == 3 else images
    x = (arr.astype(np.float32) - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def upsample_logits(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinearly upsample (1, H', W') or (H', W') logits to a float (height, width) map.

    Upsampling logits (not a binary mask) keeps edges smooth at the original resolution.
    """
    x = logits.float().reshape(1, 1, *logits.shape[-2:])
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x[0, 0]


def logits_to_mask(logits: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Upsampled logits thresholded at 0 (probability 0.5): bool (height, width)."""
    return (upsample_logits(logits, height, width) > 0).cpu().numpy()


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected region and fill its holes.

    A face crop shows one mask: stray blobs elsewhere and holes where a printed pattern fooled
    the network are errors, so removing them is safe and raises IoU.
    """
    if not mask.any():
        return mask
    m = mask.astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n > 2:
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        m = (labels == largest).astype(np.uint8)
    # Holes = background not reachable from the border: flood the border, invert.
    padded = np.pad(m, 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return (m > 0) | holes
