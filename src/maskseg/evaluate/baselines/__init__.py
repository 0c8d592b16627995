"""Classical (non-learned) face-mask segmenters behind one interface, and their registry.

Every method is an object with ``predict(image) -> mask``: RGB uint8 (H, W, 3) in, bool
(H, W) out, the same call as ``maskseg.Predictor``. ``get_method(name)`` builds one with the
parameters tuned on the training split (``tuned_params.json``, written by
``maskseg.evaluate.baselines.tune.tune_baselines``).

    seg = get_method("grabcut")          # tuned parameters
    mask = seg.predict(read_image(path))  # bool (H, W)
    list_methods()                        # ["prior", "otsu", "sauvola", "canny", ...]
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from maskseg.evaluate.baselines._base import Baseline, BaseParams
from maskseg.evaluate.baselines._prior import FacePrior
from maskseg.evaluate.baselines.cluster import KMeans, KMeansParams
from maskseg.evaluate.baselines.edges import Canny, CannyParams
from maskseg.evaluate.baselines.geometry import PriorOnly, PriorParams
from maskseg.evaluate.baselines.grabcut import GrabCut, GrabCutParams
from maskseg.evaluate.baselines.threshold import Otsu, OtsuParams, Sauvola, SauvolaParams
from maskseg.evaluate.baselines.watershed import Watershed, WatershedParams

TUNED_PARAMS = Path(__file__).with_name("tuned_params.json")

_REGISTRY: dict[str, type[Baseline]] = {
    cls.name: cls for cls in (PriorOnly, Otsu, Sauvola, Canny, KMeans, GrabCut, Watershed)
}


def list_methods() -> list[str]:
    """Names of all classical methods, in a fixed order (simplest first)."""
    return list(_REGISTRY)


def method_class(name: str) -> type[Baseline]:
    """The class registered under ``name``; unknown names fail listing the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(list_methods())}")
    return _REGISTRY[name]


def params_from_dict(cls: type[Baseline], values: dict[str, Any]) -> BaseParams:
    """Build ``cls.Params`` from a dict; unknown keys fail naming the valid ones."""
    valid = {f.name for f in dataclasses.fields(cls.Params)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise ValueError(f"unknown {cls.name} parameter(s) {unknown}; valid: {sorted(valid)}")
    return cls.Params(**values)


def load_tuned(path: str | Path = TUNED_PARAMS) -> dict[str, Any]:
    """The tuned-parameters file as a dict; empty when it does not exist."""
    path = Path(path)
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def tuned_prior(path: str | Path = TUNED_PARAMS) -> FacePrior:
    """The face prior fitted during tuning (the built-in default when there is none)."""
    return FacePrior(**load_tuned(path).get("face_prior", {}))


def get_method(
    name: str,
    params: BaseParams | dict[str, Any] | None = None,
    *,
    tuned: bool | str | Path = True,
    prior: FacePrior | None = None,
) -> Baseline:
    """Build a classical segmenter by name.

    Args:
        name: one of ``list_methods()``.
        params: a Params instance (used as is), or a dict of overrides on top of the tuned
            (or default) parameters, or None for the tuned parameters.
        tuned: True for the shipped tuned parameters, a path for another tuned-parameters
            JSON, False for the dataclass defaults.
        prior: face prior; None takes the one stored with the tuned parameters.
    """
    cls = method_class(name)
    source = TUNED_PARAMS if tuned is True else tuned
    stored = load_tuned(source) if source else {}
    if prior is None:
        prior = FacePrior(**stored.get("face_prior", {}))
    if isinstance(params, BaseParams):
        return cls(params, prior)
    values = dict(stored.get("methods", {}).get(name, {}).get("params", {}))
    values.update(params or {})
    return cls(params_from_dict(cls, values), prior)


__all__ = [
    "Baseline",
    "BaseParams",
    "Canny",
    "CannyParams",
    "FacePrior",
    "GrabCut",
    "GrabCutParams",
    "KMeans",
    "KMeansParams",
    "Otsu",
    "OtsuParams",
    "PriorOnly",
    "PriorParams",
    "Sauvola",
    "SauvolaParams",
    "Watershed",
    "WatershedParams",
    "get_method",
    "list_methods",
    "load_tuned",
    "method_class",
    "params_from_dict",
    "tuned_prior",
]
