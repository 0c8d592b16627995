import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskseg.config import Config, DataConfig, InferConfig, ModelConfig
from maskseg.models import create_model
from maskseg.pipeline.predictor import Predictor, available_models, resolve_model_path
from maskseg.train.checkpoint import save_weights


def pattern(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A test image that looks alike at any size: colour ramps, a light ellipse, noise."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :] + np.zeros((h, 1), np.float32)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None] + np.zeros((1, w), np.float32)
    img = 255 * np.stack([x, y, 1 - 0.5 * (x + y)], axis=2)
    inside = ((y - 0.6) / 0.3) ** 2 + ((x - 0.5) / 0.3) ** 2 < 1
    img[inside] = (230, 230, 240)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def non_trivial(mask: np.ndarray) -> bool:
    """Neither (nearly) empty nor (nearly) full: comparing such masks says something."""
    return 0.05 < mask.mean() < 0.95


def _tiny(tmp_path: Path, **infer) -> Path:
    """An untrained tiny U-Net whose masks of ``pattern`` images cover about half of them
    (an untrained net's logits are nearly flat: its head is scaled and centred on one)."""
    cfg = Config(
        data=DataConfig(image_size=32),
        model=ModelConfig(base_channels=4, depth=2),
        infer=InferConfig(**infer),
    )
    torch.manual_seed(0)
    net = create_model(cfg.model)
    with torch.no_grad():
        net.head.weight.mul_(100.0)
        fp32 = Predictor.from_model(net, cfg, "cpu", precision="fp32")
        net.head.bias.sub_(float(np.median(fp32.logits([pattern(64, 64)]))))
    path = tmp_path / "tiny.safetensors"
    save_weights(path, net, cfg)
    return path


@pytest.fixture
def tiny_predictor(tmp_path: Path) -> Predictor:
    return Predictor.load(_tiny(tmp_path), device="cpu")


@pytest.mark.parametrize("hw", [(1, 1), (16, 16), (250, 250), (31, 517), (1200, 900)])
def test_mask_has_input_size(tiny_predictor: Predictor, hw):
    img = pattern(*hw)
    mask = tiny_predictor.predict(img)
    assert mask.shape == hw and mask.dtype == bool
    proba = tiny_predictor.predict_proba(img)
    assert proba.shape == hw and proba.dtype == np.float32
    if min(hw) >= 16:  # measured 0.44 .. 0.51 of the image
        assert non_trivial(mask) and non_trivial(proba > 0.5)
    unclean = Predictor(tiny_predictor.backend, tiny_predictor.config, clean=False)
    # same path, same numbers: the mask is logit > 0, i.e. proba > 0.5, except where a logit is
    # so close to 0 (under ~1e-7) that float32's sigmoid rounds it to exactly 0.5 (seen on an
    # AVX2-only CPU: 1 pixel of 1,080,000)
    sure = np.abs(proba - 0.5) > 1e-6
    np.testing.assert_array_equal(unclean.predict(img)[sure], (proba > 0.5)[sure])
    assert sure.mean() > 0.999
    np.testing.assert_array_equal(mask, tiny_predictor.predict(img))  # deterministic


def test_mask_at_a_given_size(tiny_predictor: Predictor):
    """An image decoded reduced still gets a mask at its file's full size."""
    img = pattern(50, 40, seed=2)
    big = tiny_predictor.predict(img, size=(500, 400))
    assert big.shape == (500, 400)
    small = tiny_predictor.predict(img)
    assert non_trivial(small)  # measured 0.47
    # The same logits, sampled at 10x: the share of mask pixels agrees closely.
    assert abs(big.mean() - small.mean()) < 0.05


def test_batch_matches_single_and_threshold(tiny_predictor: Predictor):
    imgs = [pattern(h, 40, seed=1) for h in (20, 40, 60)]
    for img, m in zip(imgs, tiny_predictor.predict_batch(imgs), strict=True):
        assert non_trivial(m)  # measured 0.45 .. 0.47
        np.testing.assert_array_equal(m, tiny_predictor.predict(img))
    assert tiny_predictor.predict_batch([]) == []
    backend, cfg = tiny_predictor.backend, tiny_predictor.config
    assert Predictor(backend, cfg, threshold=1e-6).predict(imgs[0]).all()
    assert not Predictor(backend, cfg, threshold=1 - 1e-6).predict(imgs[0]).any()
    with pytest.raises(ValueError, match="threshold"):
        Predictor(backend, cfg, threshold=1.5)


def test_threshold_comes_from_the_model_file(tmp_path: Path):
    low = Predictor.load(_tiny(tmp_path, threshold=1e-6))
    assert low.threshold == 1e-6
    img = np.full((20, 20, 3), 100, np.uint8)
    assert low.predict(img).all()
    assert Predictor.load(tmp_path / "tiny.safetensors", threshold=0.5).threshold == 0.5


def test_input_checks(tiny_predictor: Predictor):
    gray = np.zeros((20, 30), np.uint8)
    assert tiny_predictor.predict(gray).shape == (20, 30)
    rgba = np.zeros((20, 30, 4), np.uint8)  # fully transparent: white, as read_image makes it
    white = np.full((20, 30, 3), 255, np.uint8)
    np.testing.assert_array_equal(tiny_predictor.predict(rgba), tiny_predictor.predict(white))
    img = pattern(40, 60)
    opaque = np.dstack([img, np.full((40, 60), 255, np.uint8)])  # opaque: the RGB image
    assert non_trivial(tiny_predictor.predict(img))
    np.testing.assert_array_equal(tiny_predictor.predict(opaque), tiny_predictor.predict(img))
    with pytest.raises(TypeError, match=r"got a float32 array; scale it to 0-255"):
        tiny_predictor.predict(np.zeros((20, 30, 3), np.float32))
    with pytest.raises(TypeError, match=r"got PIL\.Image\.Image; use np\.asarray"):
        tiny_predictor.predict(Image.new("RGB", (30, 20)))
    with pytest.raises(TypeError, match=r"got str; use maskseg\.io\.read_image"):
        tiny_predictor.predict("examples/face.jpg")
    with pytest.raises(ValueError, match="shape"):
        tiny_predictor.predict(np.zeros((20, 30, 5), np.uint8))
    with pytest.raises(ValueError, match=r"the image is empty: 30 x 0 pixels"):
        tiny_predictor.predict(np.zeros((0, 30, 3), np.uint8))


def test_unknown_model_and_backend(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="shipped"):
        resolve_model_path("no-such-model")
    with pytest.raises(ValueError, match="valid: auto, torch"):
        Predictor.load(_tiny(tmp_path), backend="tensorflow")
    (tmp_path / "m.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a model file"):
        Predictor.load(tmp_path / "m.h5")


def test_inference_import_is_light():
    """`import maskseg` and `maskseg.pipeline.predictor` must not pull in the training stack."""
    heavy = [
        "albumentations",
        "matplotlib",
        "maskseg.train.engine",
        "maskseg.train.transforms",
        "maskseg.train.losses",
        "maskseg.train.workflows",
        "tqdm",
    ]
    code = (
        "import sys, maskseg, maskseg.pipeline.predictor, maskseg.cli.predict, maskseg.cli.main\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.slow
def test_shipped_model_segments_real_faces(real_data: Path):
    from maskseg.data.splits import load_split
    from maskseg.evaluate.scoring import score

    assert {"unet-msfd", "unet-msfd-heldout"} <= set(available_models())
    twin = Predictor.load("unet-msfd-heldout")  # trained without its test split
    data = load_split(real_data, twin.config.data, "test")
    samples = data.take(data.splits.test)[:12]
    assert len(samples) == 12 and score(twin, samples).summary()["iou"] > 0.85
    predictor = Predictor.load()  # the default saw every pair: it has no test split
    assert predictor.config.data.test_fraction == 0
    assert score(predictor, samples).summary()["iou"] > 0.9  # its own training faces


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((16, 16, 3), np.uint8),
        np.full((250, 250, 3), 255, np.uint8),
        pytest.param(np.zeros((3000, 4000, 3), np.uint8), marks=pytest.mark.slow),
        np.full((40, 30), 128, np.uint8),  # grayscale array
    ],
    ids=["black16", "white250", "huge4000x3000", "gray"],
)
def test_shipped_model_on_odd_images(image: np.ndarray):
    predictor = Predictor.load()
    mask = predictor.predict(image)
    assert mask.shape == image.shape[:2] and mask.dtype == bool
    np.testing.assert_array_equal(mask, predictor.predict(image))


class _Fixed:
    """A backend that answers the same logits for every crop of a batch."""

    name = "fixed"

    def __init__(self, logits: np.ndarray):
        self.logits = logits

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.repeat(self.logits[None, None], len(batch), axis=0)

    def describe(self) -> str:
        return "fixed logits"


def test_a_lower_threshold_widens_masks_but_does_not_open_the_gate():
    """A gated model's closed crop is logits at or under 0 (the shipped INT8 files give
    exactly 0): at threshold 0.3 it stays empty, while a crop with a mask gets the pixels
    between 0.3 and 0.5 as well; without a gate the threshold applies to every pixel."""
    closed = np.zeros((16, 16), np.float32)  # the INT8 clamp: probability 0.5 everywhere
    closed[:, :8] = -3.0
    open_ = np.full((16, 16), -3.0, np.float32)
    open_[4:12, 4:12] = 2.0  # the mask
    open_[12, 4:12] = -0.5  # probability 0.38: mask at 0.3, not at 0.5

    def masks(logits: np.ndarray, threshold: float, presence: bool) -> np.ndarray:
        cfg = Config(data=DataConfig(image_size=16), model=ModelConfig(presence=presence))
        p = Predictor(_Fixed(logits), cfg, threshold=threshold, clean=False)
        return p.predict(np.zeros((16, 16, 3), np.uint8))

    assert not masks(closed, 0.5, True).any() and not masks(closed, 0.3, True).any()
    assert masks(closed, 0.3, False).sum() == 128  # no gate: the 0.5 plateau passes 0.3
    assert masks(open_, 0.5, True).sum() == 64
    assert masks(open_, 0.3, True).sum() == 72  # widened by the row at 0.38
    assert masks(open_, 0.7, True).sum() == 64
