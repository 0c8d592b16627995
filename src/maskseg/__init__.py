"""maskseg: segment the face mask a person wears, pixel by pixel."""

from maskseg.inference import Predictor

__all__ = ["Predictor", "__version__"]
__version__ = "0.1.0"
