"""Self-training's pseudo-labels (``maskseg.train.pseudo``): the keep rule by hand, the folder
round trip, and a real teacher labelling real crops that a real training run then reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maskseg.train.pseudo import PseudoConfig, PseudoSet, keep, read_pseudo, write_pseudo

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "src" / "maskseg" / "weights" / "unet-msfd.safetensors"


def test_keep_rule_by_hand():
    cfg = PseudoConfig()  # confident 0.97 of pixels at <= 0.1 or >= 0.9, mask 5-80 %
    prob = np.zeros((10, 10))
    assert keep(prob, cfg) == "no mask"  # the gate's empty mask, or nothing
    prob[5:, :] = 0.95  # half the crop, every pixel sure
    assert keep(prob, cfg) is None
    prob[5, :3] = 0.6  # 3 of 100 pixels unsure: 97 % sure, still kept
    assert keep(prob, cfg) is None
    prob[5, 3] = 0.3  # a fourth: 96 %
    assert keep(prob, cfg) == "unsure"
    assert keep(np.full((10, 10), 0.99), cfg) == "too large"
    assert keep(np.pad(np.ones((2, 2)), 4), cfg) == "no mask"  # 4 % of the crop


def test_folder_round_trip(tmp_path: Path):
    """Image and label stay aligned through writing and resizing to the model's size."""
    image = np.zeros((50, 50, 3), np.uint8)
    image[:, :25] = 200  # bright left half
    mask = np.zeros((50, 50), bool)
    mask[:, :25] = True
    made = PseudoSet(ids=["with_mask/a b.jpg"], images=[image], masks=[mask])
    made.dropped["unsure"] = 3
    record = write_pseudo(tmp_path / "p", made, {"teacher": "t"})
    assert record["kept"] == 1 and record["read"] == 4 and record["kept_share"] == 0.25
    ids, images, masks = read_pseudo(tmp_path / "p", 20)
    assert ids == ["pseudo#with_mask__a b_jpg"] and images.shape == (1, 20, 20, 3)
    assert masks.dtype == np.uint8 and masks[0, :, :10].all() and not masks[0, :, 10:].any()
    assert (images[0, :, :10] == 200).all() and (images[0, :, 10:] == 0).all()
    with pytest.raises(FileNotFoundError, match="pseudo-label"):
        read_pseudo(tmp_path, 20)


def test_photos_that_share_a_stem_keep_their_own_crops(tmp_path: Path):
    """``faces/with_mask`` holds ``204.jpg`` beside ``204.png`` (and names like ``a_b.jpg``
    beside ``a.b.jpg``): each keeps its own files, none overwrites another."""
    ids = ["with_mask/204.jpg", "with_mask/204.png", "with_mask/a_b.jpg", "with_mask/a.b.jpg"]
    images = [np.full((8, 8, 3), 10 * k, np.uint8) for k in range(len(ids))]
    masks = [np.eye(8, dtype=bool)] * len(ids)
    record = write_pseudo(tmp_path / "p", PseudoSet(ids, images, masks), {"teacher": "t"})
    assert len(set(record["files"])) == 4 == len(list((tmp_path / "p" / "images").iterdir()))
    _, read, _ = read_pseudo(tmp_path / "p", 8)
    assert [int(im[0, 0, 0]) for im in read] == [0, 10, 20, 30]  # each crop its own


def test_teacher_labels_real_crops_and_training_reads_them(real_data: Path, tmp_path: Path):
    """`maskseg data pseudo` with the shipped model as teacher on crops of real photos, then a
    real one-epoch training run with `--pseudo`: its rows are the pairs plus the kept crops."""
    from conftest import real_faces_folder

    from maskseg.cli.main import main

    faces = real_faces_folder(tmp_path, 20)
    out = tmp_path / "pseudo"
    assert main(["data", "pseudo", str(TEACHER), "--faces", str(faces), "--output", str(out)]) == 0
    record = json.loads((out / "pseudo.json").read_text())
    assert record["rule"]["confident"] == 0.97 and record["part"] == "every non-test photo"
    assert 0 < record["kept"] <= record["read"] <= 20
    assert record["read"] == record["kept"] + sum(record["dropped"].values())
    assert len(list((out / "masks").glob("*.png"))) == record["kept"]
    # a second run into the same folder is refused before any work
    with pytest.raises(SystemExit, match="not an empty folder"):
        main(["data", "pseudo", str(TEACHER), "--faces", str(faces), "--output", str(out)])
    run = tmp_path / "run"
    args = ["train", "--data", str(real_data), "--output", str(run), "--epochs", "1"]
    args += ["--val-fold", "-1", "--threads", "1", "--no-progress", "--pseudo", str(out)]
    assert main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_pseudo"] == record["kept"]
    assert summary["n_rows"] == summary["n_train"] + record["kept"]


def test_soft_folder_round_trip_keeps_probabilities(tmp_path: Path):
    """A soft folder's masks come back as 0-255 probabilities (area-averaged, not
    thresholded), and the training set puts the real 0/1 masks on the same scale."""
    from maskseg.train.dataset import SegmentationDataset
    from maskseg.train.pseudo import is_soft, to_soft

    image = np.zeros((40, 40, 3), np.uint8)
    prob = np.zeros((40, 40), np.float32)
    prob[:, :20] = 0.8  # left half fairly sure
    prob[:, 20:] = 0.1
    soft = to_soft(prob)
    assert soft.dtype == np.uint8 and soft[0, 0] == 204 and soft[0, 39] == 26  # rint(0.8*255)
    made = PseudoSet(ids=["with_mask/x.jpg"], images=[image], masks=[soft])
    write_pseudo(tmp_path / "s", made, {"teacher": "t", "rule": {"soft": True}})
    assert is_soft(tmp_path / "s")
    _, _, masks = read_pseudo(tmp_path / "s", 20)
    assert masks[0, :, :10].tolist() == [[204] * 10] * 20 and (masks[0, :, 10:] == 26).all()
    # a hard folder is not soft and its masks stay 0/1
    write_pseudo(tmp_path / "h", PseudoSet(["a"], [image], [prob >= 0.5]), {"rule": {}})
    assert not is_soft(tmp_path / "h")
    assert set(np.unique(read_pseudo(tmp_path / "h", 20)[2])) == {0, 1}
    images = np.zeros((1, 20, 20, 3), np.uint8)
    ds = SegmentationDataset.from_arrays(["p"], images, masks, mask_scale=255)
    target = ds[0][1]
    assert target.shape == (1, 20, 20)
    assert np.allclose(target[0, 0, :10], 0.8) and np.allclose(target[0, 0, 10:], 26 / 255)


def test_soft_labels_come_from_the_ungated_teacher(tmp_path: Path):
    """With ``soft`` the kept set is the gated teacher's, but the targets are the decoder's
    probabilities without the gate: where the gate's logit is below a pixel's, the hard path
    caps it there and the soft target does not."""
    import torch

    from maskseg.pipeline.predictor import Predictor
    from maskseg.train.pseudo import pseudo_label, teacher_probs, ungated

    predictor = Predictor.load(TEACHER, backend="torch", precision="fp32")
    model = predictor.backend.model
    assert model.presence is not None
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    with ungated(predictor):
        assert model.presence is None
        free = teacher_probs(predictor, [image], flip=False)[0]
    assert model.presence is not None  # put back
    # a gate at logit 0.5 for every crop: gated pixels are capped at sigmoid(0.5) = 0.62
    cls = model.presence.classifier
    last = cls[-1] if isinstance(cls, torch.nn.Sequential) else cls
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(0.5)
    capped = teacher_probs(predictor, [image], flip=False)[0]
    assert capped.max() <= 1 / (1 + np.exp(-0.5)) + 1e-5
    assert np.allclose(capped, np.minimum(free, 1 / (1 + np.exp(-0.5))), atol=1e-5)

    class Crop:
        id, mask = "with_mask/r.jpg", True

    Crop.image = image
    cfg = PseudoConfig(confident=0.0, min_share=0.0, max_share=1.0, flip=False, soft=True)
    made = pseudo_label(predictor, [Crop()], cfg)
    assert made.masks[0].dtype == np.uint8 and made.masks[0].shape == (96, 96)
    import cv2

    expected = cv2.resize(free.astype(np.float32), (96, 96), interpolation=cv2.INTER_LINEAR)
    assert np.abs(made.masks[0].astype(int) - np.rint(expected * 255)).max() <= 1
