"""Predictor: the one inference path every front end (CLI, video loop, web API) calls.

checkpoint / weight file -> preprocess (maskseg.preprocess) -> model -> upsample logits to the
input's size -> threshold -> bool mask.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from maskseg.checkpoint import load_model_file
from maskseg.config import Config
from maskseg.engine import autocast_context, resolve_device
from maskseg.io import read_image
from maskseg.models import create_model
from maskseg.preprocess import clean_mask, logits_to_mask, resize_image, to_tensor, upsample_logits

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = "unet-msfd"


def available_models() -> dict[str, Path]:
    """Shipped models by name (the weight files inside the package)."""
    return {
        p.name.removesuffix(".safetensors"): p for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))
    }


def resolve_model_path(model: str | Path | None) -> Path:
    """A shipped model's name, a path to .safetensors / .pt, or None for the default model."""
    shipped = available_models()
    if model is None:
        model = DEFAULT_MODEL
    if str(model) in shipped:
        return shipped[str(model)]
    path = Path(model)
    if path.exists():
        return path
    names = ", ".join(shipped) or "none installed"
    raise FileNotFoundError(f"{model}: no such model file or shipped model (shipped: {names})")


class Predictor:
    """Segment face masks in RGB images of any size.

    Args:
        model: a network returning (N, 1, S, S) logits.
        config: the config it was trained with (input size, architecture).
        device: "auto", "cpu" or "cuda".
        threshold: probability above which a pixel is mask.
        precision: "auto" (bf16 where the CPU has it, AMP on CUDA) or "fp32".
        postprocess: keep the largest region and fill its holes (as evaluation does).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: Config,
        device: str = "auto",
        threshold: float = 0.5,
        precision: str = "auto",
        postprocess: bool = True,
    ):
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.device = resolve_device(device)
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.config = config
        self.size = config.data.image_size
        self.precision = precision
        self.threshold = threshold
        self.postprocess = postprocess
        self._logit_threshold = math.log(threshold / (1 - threshold))

    @classmethod
    def load(cls, model: str | Path | None = None, device: str = "auto", **kwargs) -> Predictor:
        """Load a shipped model by name (default: the shipped MSFD U-Net) or a model file."""
        state, cfg, _ = load_model_file(resolve_model_path(model))
        net = create_model(cfg.model)
        net.load_state_dict(state)
        return cls(net, cfg, device=device, **kwargs)

    from_pretrained = load

    @torch.no_grad()
    def logits(self, images: list[np.ndarray]) -> torch.Tensor:
        """Raw logits (N, 1, S, S) at the model's input size."""
        batch = np.stack([resize_image(self._check(im), self.size) for im in images])
        x = to_tensor(batch).to(self.device, memory_format=torch.channels_last)
        with autocast_context(self.device, self.precision):
            return self.model(x).float().cpu()

    def predict_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Bool masks, each at its image's own (H, W)."""
        if not images:
            return []
        out = self.logits(images) - self._logit_threshold
        masks = [logits_to_mask(lg, *im.shape[:2]) for lg, im in zip(out, images, strict=True)]
        return [clean_mask(m) for m in masks] if self.postprocess else masks

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Bool mask (H, W) for one RGB uint8 image (H, W, 3)."""
        return self.predict_batch([image])[0]

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Mask probability in [0, 1], float32 (H, W)."""
        up = upsample_logits(self.logits([image])[0], *image.shape[:2])
        return torch.sigmoid(up).numpy()

    def predict_file(self, path: str | Path) -> np.ndarray:
        return self.predict(read_image(path))

    @staticmethod
    def _check(image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise TypeError("expected an RGB uint8 numpy array; use maskseg.io.read_image(path)")
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
            raise ValueError(f"expected an image of shape (H, W, 3), got {image.shape}")
        return image
