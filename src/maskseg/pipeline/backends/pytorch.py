"""The PyTorch backend: a ``torch.nn.Module`` on a device, bf16 autocast where it pays off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskseg.config import Config
from maskseg.pipeline.backends.runtime import autocast_context, effective_precision, resolve_device


class TorchBackend:
    """Runs a model that returns (N, 1, S, S) logits.

    Args:
        model: the network (moved to ``device`` in channels_last and put in eval mode).
        device: "auto", "cpu", "cuda", ...
        precision: "auto" (bf16 where the CPU has it, AMP on CUDA), "bf16", "fp16" or "fp32".
        threads: torch CPU threads for this process (0 leaves torch's default).
    """

    name = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | torch.device = "auto",
        precision: str = "auto",
        threads: int = 0,
    ):
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.precision = precision
        autocast_context(self.device, precision)  # fail now on a bad precision, not mid-run
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        x = x.to(self.device, memory_format=torch.channels_last)
        with torch.inference_mode(), autocast_context(self.device, self.precision):
            return self.model(x).float().cpu().numpy()

    def describe(self) -> str:
        return f"torch {torch.__version__} on {self.device} " + (
            f"({effective_precision(self.device, self.precision)}, "
            f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''})"
        )


def load(
    path: str | Path, device: str = "auto", precision: str = "auto", threads: int = 0
) -> tuple[TorchBackend, Config, dict[str, Any]]:
    """A .safetensors weight file or a .pt checkpoint, loaded without unpickling code."""
    from maskseg.models import create_model
    from maskseg.pipeline.weights import load_model_file

    state, cfg, info = load_model_file(path)
    net = create_model(cfg.model)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1 if "\n" in str(exc) else 0].strip()[:300]
        raise ValueError(
            f"{path}: weights do not fit the model its config describes ({first})"
        ) from None
    return TorchBackend(net, device, precision, threads), cfg, info
