"""CLI tests: run the real `maskseg` entry point (in-process via main(), or as a subprocess)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from maskseg.checkpoint import save_weights
from maskseg.cli import main
from maskseg.config import Config, DataConfig, ModelConfig
from maskseg.io import read_mask
from maskseg.models import create_model

TINY = ["--image-size", "32", "--base-channels", "4", "--depth", "2", "--batch-size", "4",
        "--no-progress", "--seed", "1"]  # fmt: skip


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    cfg = Config(data=DataConfig(image_size=32), model=ModelConfig(base_channels=4, depth=2))
    path = tmp_path / "tiny.safetensors"
    save_weights(path, create_model(cfg.model), cfg)
    return path


def test_data_check(msfd_tiny: Path, capsys):
    assert main(["data", "check", str(msfd_tiny)]) == 0
    assert "24 found, 24 valid" in capsys.readouterr().out
    (msfd_tiny / "1" / "face_crop" / "faceMsak_person3_0_0_1.jpg").write_bytes(b"junk")
    assert main(["data", "check", str(msfd_tiny), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["n_valid"] == 23 and "faceMsak_person3_0_0_1.jpg" in report["unreadable"][0]
    assert main(["data", "check", str(msfd_tiny / "nothing")]) == 2


def test_predict_folder_with_odd_files(tmp_path: Path, tiny_model: Path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.jpg"), np.full((40, 70, 3), 90, np.uint8))
    cv2.imwrite(str(src / "gray.png"), np.full((33, 21), 200, np.uint8))
    cv2.imwrite(str(src / "deep.png"), np.full((12, 9), 4000, np.uint16))
    cv2.imwrite(str(src / "b.bmp"), np.zeros((5, 6, 3), np.uint8))
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "out"
    rc = main(["predict", str(src), "--output", str(out), "--model", str(tiny_model), "--overlay"])
    captured = capsys.readouterr()
    assert rc == 1  # one input failed: reported, the rest written
    assert "broken.jpg" in captured.err
    sizes = {p.name: read_mask(p).shape for p in out.glob("*.png")}
    assert sizes == {"a.png": (40, 70), "gray.png": (33, 21), "deep.png": (12, 9), "b.png": (5, 6)}
    assert (out / "a_overlay.jpg").exists()
    raw = cv2.imread(str(out / "a.png"), cv2.IMREAD_UNCHANGED)
    assert raw.ndim == 2 and set(np.unique(raw)) <= {0, 255}
    assert main(["predict", str(src / "a.jpg"), "--output", str(out), "--model",
                 str(tiny_model)]) == 0  # fmt: skip
    assert main(["predict", str(src / "a.jpg"), "--output", str(out), "--model", "nope"]) == 2


def test_train_cv_evaluate(msfd_tiny: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(msfd_tiny), "--output", str(run), "--epochs", "2", *TINY]
    assert main(args) == 0
    for name in ("config.yaml", "splits.json", "metrics.csv", "curves.png", "checkpoint.pt",
                 "best.safetensors", "summary.json"):  # fmt: skip
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    splits = json.loads((run / "splits.json").read_text())
    assert summary["n_test"] == len(splits["test"]) > 0
    assert "iou" in summary["test"] and "iou" in summary["val"]

    cv = tmp_path / "cv"
    assert main(["cv", "--data", str(msfd_tiny), "--output", str(cv), "--epochs", "1", *TINY]) == 0
    out = capsys.readouterr().out
    assert "mean ± std" in out
    s = json.loads((cv / "summary.json").read_text())
    assert len(s["folds"]) == 3 and 0 <= s["test_iou_mean"] <= 1
    assert (cv / "cv_results.md").read_text().count("\n") == 6

    ev = tmp_path / "ev"
    args = ["evaluate", "--data", str(msfd_tiny), "--model", str(run / "best.safetensors"),
            "--output", str(ev)]  # fmt: skip
    assert main(args) == 0
    ev_summary = json.loads((ev / "summary.json").read_text())
    assert ev_summary["n_images"] == len(splits["test"])
    assert ev_summary["iou"] == pytest.approx(summary["test"]["iou"], abs=1e-6)
    assert (ev / "worst_cases.png").exists()
    lines = (ev / "per_image.csv").read_text().splitlines()
    assert lines[0].startswith("id,iou,dice") and len(lines) == 1 + len(splits["test"])


def test_kill_mid_epoch_then_resume(msfd_tiny: Path, tmp_path: Path):
    """A real SIGKILL during training; --resume continues from the mid-epoch checkpoint."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "maskseg", "train", "--data", str(msfd_tiny), "--output",
            str(run), "--epochs", "4", "--checkpoint-interval", "0", *TINY,
            "--image-size", "64", "--batch-size", "2"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt_path = run / "checkpoint.pt"
    deadline = time.monotonic() + 120
    state = None
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt_path.exists():
            try:
                c = torch.load(ckpt_path, weights_only=True)
            except Exception:  # being replaced right now: try again
                c = None
            if c and c["epoch"] >= 1 and c["step_in_epoch"] >= 1:
                state = (c["epoch"], c["step_in_epoch"])
                break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state is not None
    before = (run / "metrics.csv").read_text().splitlines()
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stderr and "step" in resumed.stderr
    after = (run / "metrics.csv").read_text().splitlines()
    assert len(after) == 5 and after[: len(before)] == before  # earlier epochs kept, not redone
    assert not list(run.glob("*.tmp"))


def test_predict_keeps_same_named_files_apart(tmp_path: Path, tiny_model: Path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    cv2.imwrite(str(src / "a.jpg"), np.full((10, 20, 3), 90, np.uint8))
    cv2.imwrite(str(src / "a.png"), np.full((11, 21, 3), 90, np.uint8))
    cv2.imwrite(str(src / "sub" / "a.jpg"), np.full((12, 22, 3), 90, np.uint8))
    out = tmp_path / "out"
    assert main(["predict", str(src), "--output", str(out), "--model", str(tiny_model)]) == 0
    shapes = {str(p.relative_to(out)): read_mask(p).shape for p in out.rglob("*.png")}
    assert shapes == {"a.png": (10, 20), "a_png.png": (11, 21), "sub/a.png": (12, 22)}


def test_tune_baselines_then_predict_with_method(msfd_tiny: Path, tmp_path: Path, capsys):
    out = tmp_path / "tuned.json"
    assert main(["tune-baselines", "--data", str(msfd_tiny), "--output", str(out),
                 "--methods", "prior", "otsu"]) == 0  # fmt: skip
    tuned = json.loads(out.read_text())
    assert set(tuned["methods"]) == {"prior", "otsu"}
    assert "train IoU" in capsys.readouterr().out
    img = next((msfd_tiny / "1" / "face_crop").iterdir())
    pred = tmp_path / "pred"
    assert main(["predict", str(img), "--output", str(pred), "--method", "grabcut"]) == 0
    assert read_mask(pred / f"{img.stem}.png").shape == (64, 64)
    assert main(["predict", str(img), "--output", str(pred), "--method", "nope"]) == 2


def test_pack_command(tmp_path: Path, tiny_model: Path, capsys):
    out = tmp_path / "ens.safetensors"
    assert main(["pack", str(tiny_model), str(tiny_model), "--flip", "--output", str(out)]) == 0
    assert "2 member(s), flip TTA True" in capsys.readouterr().out
    half = tmp_path / "half.safetensors"
    assert main(["pack", str(tiny_model), "--half", "--output", str(half)]) == 0
    assert half.stat().st_size < 0.6 * tiny_model.stat().st_size
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((30, 40, 3), 90, np.uint8))
    assert main(["predict", str(img), "--output", str(tmp_path / "p"), "--model", str(out)]) == 0
    assert read_mask(tmp_path / "p" / "a.png").shape == (30, 40)


def test_cv_folds_in_separate_calls_then_gathered(msfd_tiny: Path, tmp_path: Path, capsys):
    cv = tmp_path / "cv"
    base = ["cv", "--data", str(msfd_tiny), "--output", str(cv), "--epochs", "1", *TINY]
    assert main([*base, "--only-fold", "2"]) == 0
    assert "folds finished so far: [2]" in capsys.readouterr().out
    assert not (cv / "summary.json").exists()
    assert main([*base, "--only-fold", "0", "--only-fold", "1"]) == 0
    s = json.loads((cv / "summary.json").read_text())
    assert [f["fold"] for f in s["folds"]] == [0, 1, 2]
    assert main([*base, "--only-fold", "7"]) == 2
