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
    from maskseg.io import read_image
    from maskseg.pipeline.predictor import Predictor
    from maskseg.pipeline.scene import ScenePredictor

__all__ = ["Predictor", "ScenePredictor", "read_image", "__version__"]
__version__ = "0.2.0"

_PUBLIC = {
    "Predictor": "maskseg.pipeline.predictor",
    "ScenePredictor": "maskseg.pipeline.scene",
    "read_image": "maskseg.io",
}


def __getattr__(name: str):
    """The public names, imported on first use (``import maskseg`` itself stays light)."""
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'maskseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (lazily imported ones included), for ``dir()`` and completion."""
    return sorted(__all__)
