"""The training dataset: pairs resized once, augmented per (epoch, index)."""

from __future__ import annotations

import numpy as np

from maskseg.data.pairs import Sample
from maskseg.pipeline.preprocess import normalize, resize_image, resize_mask


class SegmentationDataset:
    """Samples resized once to the model's input size; augmentation seeded per (epoch, index).

    A map-style dataset for ``torch.utils.data.DataLoader`` that returns numpy arrays (the
    loader's collate turns them into tensors), so this module needs neither torch nor
    albumentations until a training run builds one.
    """

    def __init__(self, samples: list[Sample], size: int, augment: str = "none", seed: int = 0):
        from maskseg.train.transforms import train_transform

        self.ids = [s.id for s in samples]
        self.images = np.stack([resize_image(s.image, size) for s in samples])
        self.masks = np.stack([resize_mask(s.mask, size) for s in samples]).astype(np.uint8)
        self.transform = train_transform(augment)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(normalised image (3, S, S), mask (1, S, S)), both float32."""
        image, mask = self.images[i], self.masks[i]
        if self.transform is not None:
            self.transform.set_random_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return normalize(image)[0], np.ascontiguousarray(mask, dtype=np.float32)[None]
