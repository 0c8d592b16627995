"""maskseg: segment the face mask a person wears, pixel by pixel."""

import os

# albumentations asks PyPI for a newer version at import; this tool makes no network calls.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from maskseg.inference import Predictor  # noqa: E402

__all__ = ["Predictor", "__version__"]
__version__ = "0.1.0"
