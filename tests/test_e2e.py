"""End to end on real MSFD pairs: data check, train briefly, evaluate, predict."""

import csv
import json
import re
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

    model = str(run / "best.safetensors")
    capsys.readouterr()
    report = tmp_path / "ev"
    assert main(["evaluate", "--data", str(data), "--model", model, "--output", str(report)]) == 0
    printed = capsys.readouterr().out
    table = dict(re.findall(r"^(iou|dice|images)\s+([0-9.]+)", printed, re.MULTILINE))
    assert set(table) == {"iou", "dice", "images"}, printed
    summary = json.loads((report / "summary.json").read_text())
    rows = list(csv.DictReader((report / "per_image.csv").open()))
    ids = [r["id"] for r in rows]
    # the model's own test split: about 20 % of the 30 pairs, grouped by person (measured 6)
    assert int(float(table["images"])) == summary["n_images"] == len(ids) and 3 <= len(ids) <= 8
    assert float(table["iou"]) == pytest.approx(summary["iou"], abs=5e-5)
    assert summary["iou"] == pytest.approx(np.mean([float(r["iou"]) for r in rows]), abs=1e-6)
    assert summary["iou"] > 0.4  # measured 0.69 (12 epochs at 64 px), 0.35 .. 0.85 per image

    # `maskseg predict` on the same test images gives masks whose IoU with the truths, computed
    # here, is what evaluate reported, image by image
    crops = data / "1" / "face_crop"
    out = tmp_path / "pred"
    images = [str(crops / f"{i}.jpg") for i in ids]
    assert main(["predict", *images, "--output", str(out), "--model", model, "--no-progress"]) == 0
    truths = data / "1" / "face_crop_segmentation"
    for r in rows:
        mask = read_mask(out / f"{r['id']}.png")
        truth = read_mask(truths / f"{r['id']}.jpg")  # JPEG truth: > 127, as the data's README
        assert mask.shape == truth.shape == (250, 250)
        union = (mask | truth).sum()
        own = (mask & truth).sum() / union if union else 1.0
        assert own == pytest.approx(float(r["iou"]), abs=1e-6), r["id"]
        assert 0.02 < mask.mean() < 0.9  # a mask, not everything (truths cover 12 % .. 62 %)


def test_shipped_model_predicts_odd_real_photos(tmp_path: Path):
    """The default model on real unlabelled photos of every odd kind in ../shared/data/faces."""
    from conftest import FACES

    if not FACES.is_dir():
        pytest.skip(f"shared data not found at {FACES}")
    picks = sorted(FACES.glob("with_mask/*.png"))[:3] + sorted(FACES.glob("*/*.webp"))[:1]
    picks += sorted(FACES.glob("*/*.jpg_*"))[:1] + sorted(FACES.glob("with_mask/*.jp*g"))[:3]
    assert len(picks) == 8 and all("with_mask" in p.parts for p in picks)
    out, scene = tmp_path / "out", tmp_path / "scene"
    assert main(["predict", *map(str, picks), "--output", str(out), "--no-progress"]) == 0
    args = ["predict", *map(str, picks), "--output", str(scene), "--scene", "--json"]
    assert main([*args, "--no-progress"]) == 0
    for p in picks:  # every photo wears a mask
        shape = read_image(p).shape[:2]
        crop_mode = read_mask(out / f"{p.stem}.png")
        assert crop_mode.shape == shape and crop_mode.mean() > 0.02, p  # measured 0.04 .. 0.25
        whole = read_mask(scene / f"{p.stem}.png")
        record = json.loads((scene / f"{p.stem}.json").read_text())
        assert whole.shape == shape and whole.mean() > 0.005, p  # measured 0.020 .. 0.15
        assert (record["height"], record["width"]) == shape
        assert max(record["faces"], key=lambda f: f["score"])["mask"], p
