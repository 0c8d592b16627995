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
    assert ids == ["pseudo#with_mask__a b"] and images.shape == (1, 20, 20, 3)
    assert masks.dtype == np.uint8 and masks[0, :, :10].all() and not masks[0, :, 10:].any()
    assert (images[0, :, :10] == 200).all() and (images[0, :, 10:] == 0).all()
    with pytest.raises(FileNotFoundError, match="pseudo-label"):
        read_pseudo(tmp_path, 20)


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
