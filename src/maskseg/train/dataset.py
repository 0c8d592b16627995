"""The training dataset: pairs resized once, augmented per (epoch, index)."""

from __future__ import annotations

import numpy as np

from maskseg.data.pairs import Sample
from maskseg.pipeline.preprocess import normalize, resize_image, resize_mask


class SegmentationDataset:
    """Samples at the model's input size; augmentation seeded per (epoch, index).

    A map-style dataset for ``torch.utils.data.DataLoader`` that returns numpy arrays (the
    loader's collate turns them into tensors), so this module needs neither torch nor
    albumentations until a training run builds one. Built from decoded samples (resized
    here) or, with ``from_arrays``, from arrays already at that size: the memory-mapped cache
    of ``maskseg.data.cache``, read row by row, so no process holds the whole set.
    """

    def __init__(
        self,
        samples: list[Sample],
        size: int,
        augment: str = "none",
        seed: int = 0,
        pad_label: str = "reflect",
    ):
        images = np.stack([resize_image(s.image, size) for s in samples])
        masks = np.stack([resize_mask(s.mask, size) for s in samples]).astype(np.uint8)
        self._setup([s.id for s in samples], images, masks, None, augment, seed, pad_label)

    @classmethod
    def from_arrays(
        cls,
        ids: list[str],
        images: np.ndarray,
        masks: np.ndarray,
        rows: np.ndarray | None = None,
        augment: str = "none",
        seed: int = 0,
        mask_scale: int = 1,
        pad_label: str = "reflect",
    ) -> SegmentationDataset:
        """A dataset over ``images`` (N, S, S, 3) uint8 and ``masks`` (N, S, S) uint8: 0/1, or
        soft targets 0..``mask_scale`` (255 for the teacher probabilities of soft
        pseudo-labels; every row then on that scale).

        ``rows``: the rows this dataset uses, in order (a fold's training pairs); ``ids``
        names every row of the arrays. ``pad_label``: ``TrainConfig.pad_label``.
        """
        ds = cls.__new__(cls)
        ds._setup(ids, images, masks, rows, augment, seed, pad_label)
        ds.mask_scale = mask_scale
        return ds

    mask_scale = 1

    def _setup(
        self, ids, images, masks, rows, augment: str, seed: int, pad_label: str = "reflect"
    ) -> None:
        from maskseg.train.transforms import PAD_LABELS, train_transform

        if pad_label not in PAD_LABELS:
            raise ValueError(f"unknown pad_label {pad_label!r}; valid: {', '.join(PAD_LABELS)}")
        self.rows = np.arange(len(ids)) if rows is None else np.asarray(rows, np.int64)
        self.ids = [ids[r] for r in self.rows]
        self.images, self.masks = images, masks
        self.ignore_padding = pad_label == "ignore"
        self.transform = train_transform(augment, track_padding=self.ignore_padding)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(normalised image (3, S, S), mask (1, S, S) in [0, 1]), both float32; with
        ``pad_label="ignore"``, the pixels augmentation padded are ``IGNORE`` (-1)."""
        r = self.rows[i]
        image, mask = np.array(self.images[r]), np.array(self.masks[r])  # off the memmap
        out = None
        if self.transform is not None:
            self.transform.set_random_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        mask = np.ascontiguousarray(mask, dtype=np.float32)[None]
        if self.mask_scale != 1:
            mask /= self.mask_scale
        if out is not None and self.ignore_padding:
            from maskseg.train.transforms import IGNORE, padded

            mask[0][padded(out, mask.shape[1:])] = IGNORE
        return normalize(image)[0], mask
