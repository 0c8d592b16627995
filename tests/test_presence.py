"""The mask-presence gate: fitted on a frozen encoder, it empties the masks of unmasked faces
and leaves masked faces' masks exactly as they were."""

from pathlib import Path

import numpy as np
import pytest
import torch

from maskseg.config import Config, DataConfig, ModelConfig
from maskseg.data.faces import LabelledCrop
from maskseg.evaluate.presence_rates import presence_rates
from maskseg.models import create_model
from maskseg.pipeline.predictor import Predictor
from maskseg.train.checkpoint import save_weights
from maskseg.train.gate import GateConfig, fit_presence


def _faces(n: int, masked: bool, rng: np.random.Generator) -> list[np.ndarray]:
    """Skin-coloured squares; masked ones have a light-blue lower half."""
    out = []
    for _ in range(n):
        img = np.empty((48, 48, 3), np.uint8)
        img[:] = rng.integers(150, 220), rng.integers(110, 170), rng.integers(90, 140)
        if masked:
            img[24:] = rng.integers(170, 230), rng.integers(200, 240), rng.integers(220, 255)
        out.append(np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8))
    return out


def test_gate_empties_unmasked_faces_and_keeps_masked_ones(tmp_path: Path):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    cfg = Config(data=DataConfig(image_size=32), model=ModelConfig(base_channels=4, depth=2))
    net = create_model(cfg.model).eval()
    # the untrained decoder's logits, made positive everywhere: every pixel is "mask"
    with torch.no_grad():
        net.head.bias.fill_(50.0)
    pos, neg = _faces(40, True, rng), _faces(40, False, rng)
    new_pos, new_neg = _faces(10, True, rng), _faces(10, False, rng)
    crops = [LabelledCrop(f"p{i}", im, True) for i, im in enumerate(new_pos)]
    crops += [LabelledCrop(f"n{i}", im, False) for i, im in enumerate(new_neg)]
    plain = Predictor.from_model(net, cfg, "cpu", precision="fp32")
    assert all(m.all() for m in plain.predict_batch(new_neg))  # no gate: masks everywhere
    assert presence_rates(plain, crops).false_mask_rate == 1.0
    before = plain.predict_batch(new_pos)
    figures = fit_presence(net, pos, neg, 32, GateConfig(hidden=16, epochs=30))
    assert figures["train_accuracy"] == 1.0
    gated_cfg = cfg.replace("model", presence=True, presence_hidden=16)
    save_weights(tmp_path / "g.safetensors", net, gated_cfg)
    gated = Predictor.load(tmp_path / "g.safetensors", backend="torch", precision="fp32")
    assert not any(m.any() for m in gated.predict_batch(new_neg))
    for m, m0 in zip(gated.predict_batch(new_pos), before, strict=True):
        np.testing.assert_array_equal(m, m0)  # untouched where a mask is worn
    rates = presence_rates(gated, crops)
    assert (rates.found_rate, rates.false_mask_rate) == (1.0, 0.0)


def test_presence_rates_count_by_coverage():
    class Fixed:
        """Masks covering a given share of each crop, by crop id order."""

        def __init__(self, shares):
            self.shares = list(shares)

        def predict_batch(self, images):
            out = []
            for im in images:
                m = np.zeros(im.shape[:2], bool)
                m.flat[: int(self.shares.pop(0) * m.size)] = True
                out.append(m)
            return out

    img = np.zeros((10, 10, 3), np.uint8)
    crops = [
        LabelledCrop("a", img, True),
        LabelledCrop("b", img, True),
        LabelledCrop("c", img, False),
        LabelledCrop("d", img, False),
        LabelledCrop("e", img, False),
    ]
    # 1 % of 100 px is 1 px: "covers more than 1 %" needs 2 px
    rates = presence_rates(Fixed([0.5, 0.01, 0.0, 0.02, 0.3]), crops)
    assert (rates.found, rates.n_with) == (1, 2)
    assert (rates.false_masks, rates.n_without) == (2, 3)
    assert rates.as_dict()["false_mask_rate"] == 2 / 3


def test_gate_fits_single_models_only():
    """The gate reads one encoder (the SegmentationModel contract); ensembles and flip-TTA
    models are packed from gated single models."""
    img = np.zeros((32, 32, 3), np.uint8)
    for wrapped in ({"members": 2}, {"flip_tta": True}):
        net = create_model(ModelConfig(base_channels=4, depth=2, **wrapped))
        with pytest.raises(TypeError, match="SegmentationModel"):
            fit_presence(net, [img], [img], 32)


def test_jittered_copies_move_the_window_and_count_once():
    """``jittered``: same size, content moved by at most JITTER_SHIFT of the side (plus the
    scale's reach), different per copy, reproducible from the seed; ``crop_features`` with
    ``jitter=2`` and mirroring gives 6 rows per crop, labels in step, figures per crop."""
    from maskseg.train.gate import JITTER_SCALE, JITTER_SHIFT, crop_features, fit_head, jittered

    image = np.zeros((100, 100, 3), np.uint8)
    image[40:60, 40:60] = 255  # a square whose centre is (50, 50)
    rng = np.random.default_rng(0)
    copies = [jittered(image, rng) for _ in range(20)]
    reach = 100 * (JITTER_SHIFT + JITTER_SCALE / 2) + 1
    centres = []
    for c in copies:
        assert c.shape == image.shape and c.dtype == image.dtype
        ys, xs = np.nonzero(c[..., 0] > 127)
        centres.append((xs.mean() + 0.5, ys.mean() + 0.5))
        assert abs(centres[-1][0] - 50) <= reach and abs(centres[-1][1] - 50) <= reach
    assert len({(round(x), round(y)) for x, y in centres}) > 10  # copies differ
    again = jittered(image, np.random.default_rng(0))
    assert np.array_equal(again, copies[0])

    seen = []

    def features(images):
        seen.append(len(images))
        # five columns: what a pooled head over one 1-channel map reads (its mean + 2x2 grid)
        return np.array([[float(im.mean())] * 5 for im in images], np.float32)

    pos, neg = [image, image], [np.zeros_like(image)]
    cfg = GateConfig(jitter=2, flip=True)
    feats, labels = crop_features(features, pos, neg, cfg)
    assert feats.shape == (3 * 3 * 2, 5) and seen == [9, 9]
    assert labels.tolist() == ([1, 1, 0] * 3) * 2
    # the plain crops come first, unchanged: jitter only adds
    assert feats[0, 0] == pytest.approx(float(image.mean()))
    from maskseg.models.presence import PresenceHead

    head = PresenceHead([1], hidden=4)
    assert PresenceHead.n_features([1], "pooled") == feats.shape[1]
    cfg = GateConfig(jitter=2, flip=True, hidden=4, epochs=1)
    _, figures = fit_head(feats, labels, head, cfg)
    assert (figures["n_positive"], figures["n_negative"]) == (2, 1)


def test_photo_crops_cut_every_kept_detection_of_a_real_photo_and_stop_at_the_limit():
    """Hard negatives from a photo without a mask: each detection the scene path keeps, cut
    in the scene path's own window; photos past the limit are not even read."""
    from maskseg.io import read_image
    from maskseg.pipeline.detect import cut_crop
    from maskseg.pipeline.finder import FaceFinder
    from maskseg.train.gate import photo_crops

    photo = read_image(Path(__file__).parents[1] / "examples" / "astronaut.jpg")
    finder = FaceFinder()
    dets = finder.find(photo)
    assert len(dets) >= 1  # the astronaut's face at least

    def photos():
        yield photo
        raise AssertionError("a photo past the limit was read")

    crops, n = photo_crops(photos(), size=64, limit=1)
    assert n == 1 and len(crops) == len(dets)
    assert all(c.shape == (64, 64, 3) and c.dtype == np.uint8 for c in crops)
    np.testing.assert_array_equal(crops[0], cut_crop(photo, finder.windows(dets)[0], size=64))
    assert photo_crops(iter([]), size=64) == ([], 0)
