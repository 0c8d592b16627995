"""maskseg: segment the face mask a person wears, pixel by pixel.

``import maskseg`` stays light: ``Predictor`` is imported on first use, and nothing of the
training stack (PyTorch's autograd users, albumentations, matplotlib) is loaded for inference.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

# albumentations asks PyPI for a newer version at import; this tool makes no network calls.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

if TYPE_CHECKING:
    from maskseg.pipeline.predictor import Predictor

__all__ = ["Predictor", "__version__"]
__version__ = "0.2.0"


def __getattr__(name: str):
    if name == "Predictor":
        from maskseg.pipeline.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'maskseg' has no attribute {name!r}")
