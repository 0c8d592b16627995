"""Predictor: the one inference path every front end (CLI, video loop, web API) calls.

image -> ``preprocess.model_input`` -> backend (logits) -> ``postprocess.logits_to_mask``
(upsample to the image's size, threshold from the model's config, clean-up) -> bool mask.
Only the backend knows about a runtime (PyTorch, onnxruntime); everything else is numpy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskseg.config import Config
from maskseg.io import read_image
from maskseg.pipeline.backends import (
    PREFERENCE,
    Backend,
    is_installed,
    list_backends,
    load_backend,
    suffixes_of,
)
from maskseg.pipeline.postprocess import logit, logits_to_mask, sigmoid, upsample
from maskseg.pipeline.preprocess import as_rgb, model_input

WEIGHTS_DIR = Path(__file__).parents[1] / "weights"  # src/maskseg/weights
DEFAULT_MODEL = "unet-msfd"
# its twin trained without the test split: what held-out figures (compare, evaluate) use
HELDOUT_MODEL = "unet-msfd-heldout"
# the half-resolution U-Net (``maskseg.models.lrunet``), and its twin without the test split
FAST_MODEL = "unet-msfd-fast"
# The set of pairs the shipped models' splits were made over (``data.splits.pairs_digest`` of
# the 167 ids of ../shared/data/mfsd-real/MSFD): their files predate the fingerprint, so it is
# supplied here, and a held-out twin's "test" split is not rebuilt from other pairs.
SHIPPED_PAIRS_DIGEST = "da18493c6353606e"


def shipped_files() -> dict[str, dict[str, Path]]:
    """Shipped models by name, each as {backend: the file that backend runs}: a model may ship
    as .onnx (onnxruntime) and .safetensors (PyTorch)."""
    by_suffix: dict[str, list[str]] = {}
    for name in list_backends():
        for suffix in suffixes_of(name):
            by_suffix.setdefault(suffix, []).append(name)
    found: dict[str, dict[str, Path]] = {}
    for p in sorted(WEIGHTS_DIR.iterdir()) if WEIGHTS_DIR.is_dir() else []:
        for name in by_suffix.get(p.suffix.lower(), []):
            found.setdefault(p.stem, {}).setdefault(name, p)
    return found


def _pick(files: dict[str, Path], backend: str = "auto") -> Path | None:
    """The file of one shipped model that ``backend`` runs ("auto": the first backend in
    order of preference whose runtime is installed)."""
    if backend != "auto":
        return files.get(backend)
    order = [n for n in PREFERENCE if n in files]
    return next((files[n] for n in order if is_installed(n)), files[order[0]] if order else None)


def available_models(backend: str = "auto") -> dict[str, Path]:
    """Shipped models by name (the weight files inside the package), each listed once as the
    file that ``backend`` runs ("auto": the fastest installed runtime)."""
    picked = {name: _pick(files, backend) for name, files in shipped_files().items()}
    return {name: path for name, path in picked.items() if path is not None}


def resolve_model_path(model: str | Path | None, backend: str = "auto") -> Path:
    """A shipped model's name, a path to a model file, or None for the default model.

    A shipped name resolves to the file that ``backend`` runs (``available_models``).
    """
    if backend != "auto":
        suffixes_of(backend)  # an unknown name fails here, listing the valid ones
    if model is None:
        model = DEFAULT_MODEL
    shipped = shipped_files()
    if str(model) in shipped:
        path = _pick(shipped[str(model)], backend)
        if path is None:
            have = ", ".join(shipped[str(model)])
            raise ValueError(
                f"shipped model {model} has no file for the {backend} backend "
                f"(it ships for: {have})"
            )
        return path
    path = Path(model)
    if path.is_file():
        return path
    names = ", ".join(shipped) or "none installed"
    raise FileNotFoundError(f"{model}: no such model file or shipped model (shipped: {names})")


class Predictor:
    """Segment face masks in RGB images of any size, each read as one face crop (a whole
    photo belongs to ``maskseg.ScenePredictor``). RGB, not OpenCV's BGR: a BGR array gives a
    wrong mask without an error (``cv2.cvtColor(img, cv2.COLOR_BGR2RGB)``).

    Args:
        backend: maps a float32 (N, 3, S, S) batch to (N, 1, S, S) logits.
        config: the config stored with the model (input size, decision threshold, clean-up).
        threshold: probability above which a pixel is mask; None takes the model's own.
        clean: keep the largest region and fill its holes; None takes the model's own.
        batch_size: largest batch handed to the backend at once (bounds memory).
        info: what the model file says of itself (metrics, provenance).
        source: the model file it was loaded from (None: built in memory); what belongs to
            that file (its learned face check) is found beside it.
    """

    def __init__(
        self,
        backend: Backend,
        config: Config,
        threshold: float | None = None,
        clean: bool | None = None,
        batch_size: int = 32,
        info: dict[str, Any] | None = None,
        source: Path | None = None,
    ):
        self.backend = backend
        self.source = source
        self.config = config
        self.size = config.data.image_size
        self.threshold = config.infer.threshold if threshold is None else threshold
        self.clean = config.infer.clean if clean is None else clean
        self._logit_threshold = logit(self.threshold)  # validates the threshold too
        self.batch_size = batch_size
        self.info = info or {}

    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        backend: str = "auto",
        threshold: float | None = None,
        clean: bool | None = None,
        **options: Any,
    ) -> Predictor:
        """Load a shipped model by name (default: the shipped MSFD U-Net) or a model file.

        Args:
            backend: "auto" (for a shipped model its fastest installed runtime: onnxruntime,
                else PyTorch; for a file the first installed runtime that reads it), "onnx"
                or "torch".
            options: for the backend, e.g. threads=2, device="cpu"; precision="fp32" for
                the torch backend (the onnx one runs the file's own precision).
        """
        path = resolve_model_path(model, backend)
        net, cfg, info = load_backend(path, backend, **options)
        if not cfg.data.pairs_digest and path.resolve().parent == WEIGHTS_DIR.resolve():
            data = dataclasses.replace(cfg.data, pairs_digest=SHIPPED_PAIRS_DIGEST)
            cfg = dataclasses.replace(cfg, data=data)  # a shipped file from before the digest
        return cls(net, cfg, threshold=threshold, clean=clean, info=info, source=path)

    from_pretrained = load

    @classmethod
    def from_model(cls, model: Any, config: Config, device: str = "auto", **kwargs: Any):
        """Wrap an in-memory PyTorch module (e.g. one being trained) in the PyTorch backend."""
        from maskseg.pipeline.backends.pytorch import TorchBackend

        precision = kwargs.pop("precision", "auto")
        return cls(TorchBackend(model, device, precision), config, **kwargs)

    def describe(self) -> str:
        """One line: architecture, input size and the runtime that runs it."""
        return f"{self.config.model.name} {self.size}px, {self.backend.describe()}"

    def logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Raw logits (N, 1, S, S) at the model's input size, float32."""
        outs = [
            self.backend(model_input(list(images[i : i + self.batch_size]), self.size))
            for i in range(0, len(images), self.batch_size)
        ]
        if not outs:
            return np.zeros((0, 1, self.size, self.size), np.float32)
        return np.concatenate(outs).astype(np.float32, copy=False)

    def gate_closed(self, logits: np.ndarray) -> np.ndarray:
        """Bool per crop of (N, 1, S, S) logits: the model says the crop has no mask at its
        own operating point (no logit above 0, probability 0.5). Only for a model with a
        mask-presence gate and a threshold under 0.5; else all False.

        The gate's ``min(mask logits, presence logit)`` makes a face without a mask a crop of
        logits at or under 0, and the shipped INT8 files clamp it at exactly 0 (their output
        was calibrated on masked crops): a threshold under 0.5 would paint every such face.
        A lower threshold widens the masks the model finds; it gives none to a face whose
        gate says it has none."""
        logits = np.asarray(logits)
        if not (self.config.model.presence and self.threshold < 0.5) or not len(logits):
            return np.zeros(len(logits), bool)
        return logits.reshape(len(logits), -1).max(axis=1) <= 0.0

    def masks_from_logits(
        self, logits: np.ndarray, sizes: Sequence[tuple[int, int]]
    ) -> list[np.ndarray]:
        """Bool masks at the given (height, width) sizes: upsample, threshold, clean up (a
        crop the gate closed is empty at any threshold: ``gate_closed``)."""
        closed = self.gate_closed(logits)
        return [
            np.zeros((h, w), bool)
            if shut
            else logits_to_mask(lg, h, w, self._logit_threshold, self.clean)
            for lg, (h, w), shut in zip(logits, sizes, closed, strict=True)
        ]

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[np.ndarray]:
        """Bool masks, each at its image's own (H, W), or at ``sizes`` when given (an image
        decoded reduced still gets a mask at the full size of its file)."""
        if not images:
            return []
        images = [as_rgb(im) for im in images]
        sizes = [im.shape[:2] for im in images] if sizes is None else sizes
        return self.masks_from_logits(self.logits(images), sizes)

    def predict(self, image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """Bool mask (H, W) for one RGB uint8 image (H, W, 3) (grayscale and RGBA accepted).
        ``size``: (height, width) to give the mask instead of the image's (an image decoded
        reduced gets its mask at the file's full size)."""
        return self.predict_batch([image], None if size is None else [size])[0]

    __call__ = predict

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Mask probability in [0, 1], float32 (H, W), before thresholding and clean-up.

        With a mask-presence gate, a crop the gate closes reads at most 0.5 (the shipped INT8
        files give exactly 0.5 there): a pixel is mask where its probability is *above* 0.5,
        and ``predict`` at a threshold under 0.5 still gives such a crop no mask
        (``gate_closed``); compare with ``>``, not ``>=``."""
        image = as_rgb(image)
        return sigmoid(upsample(self.logits([image])[0], *image.shape[:2]))

    def predict_file(self, path: str | Path) -> np.ndarray:
        """``predict`` on an image file (``read_image``: any size, orientation applied)."""
        return self.predict(read_image(path))
