"""Contracts of the classical baselines: any image in, a bool mask of its size out, always."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskseg.config import DataConfig
from maskseg.data import splits as data_module
from maskseg.data.pairs import find_pairs
from maskseg.data.splits import make_splits
from maskseg.evaluate.baselines import (
    TUNED_PARAMS,
    FacePrior,
    OtsuParams,
    get_method,
    list_methods,
    load_tuned,
)
from maskseg.evaluate.baselines import tune as tune_module
from maskseg.evaluate.metrics import confusion, iou

REQUIRED = {"otsu", "sauvola", "canny", "kmeans", "grabcut", "watershed"}
SKIN = (224, 172, 140)


def synthetic_face(h: int = 200, w: int = 180, mask_rgb=(240, 240, 245), seed: int = 0):
    """Skin-coloured crop, dark eyes, a flat mask over the lower-middle: (image, truth)."""
    rng = np.random.default_rng(seed)
    image = np.empty((h, w, 3), np.uint8)
    image[:] = SKIN
    for cx in (0.35, 0.65):  # dark eyes, as in the skin band of a real face
        cv2.circle(image, (int(cx * w), int(0.33 * h)), max(1, w // 25), (40, 30, 30), -1)
    truth = np.zeros((h, w), np.uint8)
    cv2.ellipse(truth, (w // 2, int(0.78 * h)), (int(0.42 * w), int(0.3 * h)), 0, 0, 360, 1, -1)
    truth[: int(0.5 * h)] = 0
    truth = truth.astype(bool)
    image[truth] = mask_rgb
    noise = rng.normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), truth


def odd_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    face, _ = synthetic_face()
    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    return {
        "gray_as_rgb": np.repeat(gray[..., None], 3, axis=2),
        "gray_2d": gray,
        "tiny_16": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        "one_pixel": np.full((1, 1, 3), 128, np.uint8),
        "one_row": rng.integers(0, 256, (1, 33, 3), dtype=np.uint8),
        "huge_4000x3000": cv2.resize(face, (4000, 3000), interpolation=cv2.INTER_NEAREST),
        "all_black": np.zeros((64, 48, 3), np.uint8),
        "all_white": np.full((64, 48, 3), 255, np.uint8),
        "rgba": np.dstack([face, np.full(face.shape[:2], 255, np.uint8)]),
    }


ODD = odd_images()


@pytest.mark.parametrize("kind", list(ODD))
@pytest.mark.parametrize("name", list_methods())
def test_any_image_gives_bool_mask_of_its_size(name: str, kind: str):
    image = ODD[kind]
    mask = get_method(name).predict(image)
    assert mask.dtype == bool
    assert mask.shape == image.shape[:2]


@pytest.mark.parametrize("name", list_methods())
def test_deterministic(name: str):
    rng = np.random.default_rng(3)
    image, _ = synthetic_face(mask_rgb=(70, 110, 200))
    image = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    first = get_method(name).predict(image)
    assert np.array_equal(first, get_method(name).predict(image))
    assert np.array_equal(first, get_method(name)(image))


@pytest.mark.parametrize("name", ["otsu", "kmeans", "grabcut", "watershed"])
@pytest.mark.parametrize("colour", [(240, 240, 245), (30, 30, 35), (90, 140, 210)])
def test_obvious_mask_is_found(name: str, colour):
    image, truth = synthetic_face(mask_rgb=colour)
    pred = get_method(name).predict(image)
    assert iou(confusion(pred, truth)) > 0.85


@pytest.mark.parametrize("name", list_methods())
def test_every_method_finds_most_of_a_synthetic_mask(name: str):
    image, truth = synthetic_face()
    assert iou(confusion(get_method(name).predict(image), truth)) > 0.5


def test_registry_lists_required_methods_and_rejects_unknown():
    assert REQUIRED <= set(list_methods())
    with pytest.raises(ValueError, match="valid: .*otsu.*watershed"):
        get_method("thresholding")


def test_params_overrides_and_errors():
    assert get_method("otsu", {"roi": 0.33}).params.roi == 0.33
    assert get_method("otsu", OtsuParams(channel="b")).params.channel == "b"
    assert get_method("otsu", tuned=False).params == OtsuParams()
    with pytest.raises(ValueError, match="unknown otsu parameter.*'nope'"):
        get_method("otsu", {"nope": 1})
    with pytest.raises(TypeError, match="OtsuParams"):
        get_method("grabcut", OtsuParams())
    with pytest.raises(ValueError, match="unknown channel"):
        get_method("otsu", {"channel": "hue"}).predict(ODD["tiny_16"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_method("otsu").params.roi = 0.5  # type: ignore[misc]


def test_bad_inputs_fail_early_with_a_hint():
    seg = get_method("otsu")
    with pytest.raises(TypeError, match="uint8"):
        seg.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        seg.predict(np.zeros((8, 8, 2), np.uint8))


def test_shipped_tuned_params_load_and_record_their_origin():
    stored = load_tuned()
    assert TUNED_PARAMS.exists()
    assert set(stored["methods"]) == set(list_methods())
    assert "Test images were not read" in stored["about"]
    assert FacePrior(**stored["face_prior"]) == FacePrior()  # defaults are the fitted prior
    for name, entry in stored["methods"].items():
        assert dataclasses.asdict(get_method(name).params) == entry["params"]


def test_fit_face_prior_recovers_a_known_prior():
    truth = FacePrior(top=0.45, top_softness=0.05, centre_y=0.6, radius_x=0.4, radius_y=0.4)
    fitted = tune_module.fit_face_prior([truth.map(80, 80)])
    got = np.array(dataclasses.astuple(fitted))
    assert np.allclose(got, dataclasses.astuple(truth), atol=0.02)


def _write_plain_dataset(root: Path, n_people: int = 8, per_person: int = 2) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for p in range(n_people):
        for k in range(per_person):
            colour = (40 + 25 * p, 90, 200 - 15 * k)
            image, truth = synthetic_face(96, 96, colour, seed=p * 10 + k)
            name = f"faceMsak_person{p}_0_0_{k}"
            cv2.imwrite(str(root / "images" / f"{name}.png"), image[..., ::-1])
            cv2.imwrite(str(root / "masks" / f"{name}.png"), truth.astype(np.uint8) * 255)


def test_tuning_reads_training_ids_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _write_plain_dataset(tmp_path / "data")
    seen: list[str] = []
    real_load = data_module.load_samples

    def spy(pairs):
        seen.extend(p.id for p in pairs)
        return real_load(pairs)

    monkeypatch.setattr(data_module, "load_samples", spy)
    out = tmp_path / "tuned.json"
    grids = {"otsu": {"roi": [0.1, 0.3]}, "grabcut": {"fg_prior": [0.5]}}
    result = tune_module.tune_baselines(
        tmp_path / "data", out, methods=["otsu", "grabcut"], grids=grids
    )

    d = DataConfig()
    ids = [p.id for p in find_pairs(tmp_path / "data").pairs]
    splits = make_splits(ids, d.test_fraction, d.folds, d.seed, d.group_regex)
    assert splits.test and seen
    assert not set(seen) & set(splits.test)
    assert sorted(seen) == splits.trainval
    assert result["split"]["n_train_images"] == len(splits.trainval)
    assert len(result["methods"]["otsu"]["results"]) == 2
    assert json.loads(out.read_text())["methods"]["otsu"]["params"]["roi"] in (0.1, 0.3)
    tuned = get_method("otsu", tuned=out)
    assert tuned.params.roi == result["methods"]["otsu"]["params"]["roi"]
