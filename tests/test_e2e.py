"""End to end on real MSFD pairs: data check, train briefly, evaluate, predict."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from maskseg.cli.main import main
from maskseg.io import read_image, read_mask
from maskseg.train.engine import read_history

pytestmark = pytest.mark.slow


def _subset(real_data: Path, dst: Path, n: int = 30) -> Path:
    src = real_data / "1"
    root = dst / "MSFD"
    for sub in ("face_crop", "face_crop_segmentation"):
        (root / "1" / sub).mkdir(parents=True)
    for p in sorted((src / "face_crop").iterdir())[::5][:n]:
        shutil.copy(p, root / "1" / "face_crop" / p.name)
        shutil.copy(src / "face_crop_segmentation" / p.name, root / "1" / "face_crop_segmentation")
    return root


def test_train_evaluate_predict_on_real_pairs(real_data: Path, tmp_path: Path, capsys):
    data = _subset(real_data, tmp_path)
    assert main(["data", "check", str(data)]) == 0
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(data),
        "--output",
        str(run),
        "--epochs",
        "12",
        "--image-size",
        "64",
        "--base-channels",
        "8",
        "--depth",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--no-progress",
    ]
    assert main(args) == 0
    hist = read_history(run / "metrics.csv")
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert max(r["val_iou"] for r in hist) > 0.3  # learnt something about real masks

    assert (
        main(
            [
                "evaluate",
                "--data",
                str(data),
                "--model",
                str(run / "best.safetensors"),
                "--output",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    assert "iou" in capsys.readouterr().out

    image = next((data / "1" / "face_crop").iterdir())
    out = tmp_path / "pred"
    assert (
        main(
            ["predict", str(image), "--output", str(out), "--model", str(run / "best.safetensors")]
        )
        == 0
    )
    mask = read_mask(out / f"{image.stem}.png")
    assert mask.shape == read_image(image).shape[:2] == (250, 250)
    assert 0 < mask.mean() < 1


def test_shipped_model_predicts_odd_real_photos(tmp_path: Path):
    """The default model on real unlabelled photos of every odd kind in ../shared/data/faces."""
    from conftest import FACES

    if not FACES.is_dir():
        pytest.skip(f"shared data not found at {FACES}")
    picks = sorted(FACES.glob("with_mask/*.png"))[:3] + sorted(FACES.glob("*/*.webp"))[:1]
    picks += sorted(FACES.glob("*/*.jpg_*"))[:1] + sorted(FACES.glob("with_mask/*.jp*g"))[:3]
    out = tmp_path / "out"
    assert main(["predict", *map(str, picks), "--output", str(out)]) == 0
    for p in picks:
        m = read_mask(out / f"{p.stem}.png")
        assert m.shape == read_image(p).shape[:2]
    assert np.mean([read_mask(out / f"{p.stem}.png").mean() for p in picks]) > 0.05
