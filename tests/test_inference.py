from pathlib import Path

import numpy as np
import pytest

from maskseg.checkpoint import save_weights
from maskseg.config import Config, DataConfig, ModelConfig
from maskseg.inference import Predictor, available_models, resolve_model_path
from maskseg.models import create_model


@pytest.fixture
def tiny_predictor(tmp_path: Path) -> Predictor:
    cfg = Config(data=DataConfig(image_size=32), model=ModelConfig(base_channels=4, depth=2))
    save_weights(tmp_path / "tiny.safetensors", create_model(cfg.model), cfg)
    return Predictor.load(tmp_path / "tiny.safetensors", device="cpu")


@pytest.mark.parametrize("hw", [(1, 1), (16, 16), (250, 250), (31, 517), (1200, 900)])
def test_mask_has_input_size(tiny_predictor: Predictor, hw):
    img = np.random.default_rng(0).integers(0, 255, (*hw, 3), dtype=np.uint8)
    mask = tiny_predictor.predict(img)
    assert mask.shape == hw and mask.dtype == bool
    proba = tiny_predictor.predict_proba(img)
    assert proba.shape == hw and 0 <= proba.min() <= proba.max() <= 1
    np.testing.assert_array_equal(mask, tiny_predictor.predict(img))  # deterministic


def test_batch_matches_single_and_threshold(tiny_predictor: Predictor):
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (h, 40, 3), dtype=np.uint8) for h in (20, 40, 60)]
    for img, m in zip(imgs, tiny_predictor.predict_batch(imgs), strict=True):
        np.testing.assert_array_equal(m, tiny_predictor.predict(img))
    assert tiny_predictor.predict_batch([]) == []
    low = Predictor(tiny_predictor.model, tiny_predictor.config, "cpu", threshold=1e-6)
    high = Predictor(tiny_predictor.model, tiny_predictor.config, "cpu", threshold=1 - 1e-6)
    assert low.predict(imgs[0]).all() and not high.predict(imgs[0]).any()
    with pytest.raises(ValueError, match="threshold"):
        Predictor(tiny_predictor.model, tiny_predictor.config, threshold=1.5)


def test_input_checks(tiny_predictor: Predictor):
    gray = np.zeros((20, 30), np.uint8)
    assert tiny_predictor.predict(gray).shape == (20, 30)
    with pytest.raises(TypeError, match="uint8"):
        tiny_predictor.predict(np.zeros((20, 30, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        tiny_predictor.predict(np.zeros((20, 30, 4), np.uint8))


def test_unknown_model_lists_shipped():
    with pytest.raises(FileNotFoundError, match="shipped"):
        resolve_model_path("no-such-model")


def test_shipped_model_segments_real_faces(real_data: Path):
    from maskseg import metrics as M
    from maskseg.config import DataConfig
    from maskseg.data import find_pairs, load_samples, make_splits

    assert "unet-msfd" in available_models()
    predictor = Predictor.load()  # the default shipped model
    d = DataConfig()
    pairs = find_pairs(real_data).pairs
    test_ids = set(make_splits([p.id for p in pairs], d.test_fraction, d.folds, d.seed,
                               d.group_regex).test)  # fmt: skip
    samples, _ = load_samples([p for p in pairs if p.id in test_ids][:12])
    counts = M.empty_counts()
    for s in samples:
        counts = counts + M.confusion(predictor.predict(s.image), s.mask)
    assert M.iou(counts) > 0.85


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((16, 16, 3), np.uint8),
        np.full((250, 250, 3), 255, np.uint8),
        np.zeros((3000, 4000, 3), np.uint8),
        np.full((40, 30), 128, np.uint8),  # grayscale array
    ],
    ids=["black16", "white250", "huge4000x3000", "gray"],
)
def test_shipped_model_on_odd_images(image: np.ndarray):
    predictor = Predictor.load()
    mask = predictor.predict(image)
    assert mask.shape == image.shape[:2] and mask.dtype == bool
    np.testing.assert_array_equal(mask, predictor.predict(image))
