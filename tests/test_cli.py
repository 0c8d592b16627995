"""CLI tests: run the real `maskseg` entry point (in-process via main(), or as a subprocess)."""

import argparse
import json
import logging
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
from conftest import signal_when

from maskseg.cli.main import main
from maskseg.config import Config, DataConfig, ModelConfig
from maskseg.io import read_mask
from maskseg.models import create_model
from maskseg.train.checkpoint import save_weights

TINY = [
    "--image-size",
    "32",
    "--base-channels",
    "4",
    "--depth",
    "2",
    "--batch-size",
    "4",
    "--no-progress",
    "--seed",
    "1",
]


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
    assert (
        main(["predict", str(src / "a.jpg"), "--output", str(out), "--model", str(tiny_model)]) == 0
    )
    assert main(["predict", str(src / "a.jpg"), "--output", str(out), "--model", "nope"]) == 2


def test_train_cv_evaluate(msfd_tiny: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(msfd_tiny), "--output", str(run), "--epochs", "2", *TINY]
    assert main(args) == 0
    for name in (
        "config.yaml",
        "splits.json",
        "metrics.csv",
        "curves.png",
        "checkpoint.pt",
        "best.safetensors",
        "summary.json",
    ):
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
    assert len(s["folds"]) == 3
    fold_ious = [f["test"]["iou"] for f in s["folds"]]
    assert s["test_iou_mean"] == pytest.approx(sum(fold_ious) / 3)
    assert (cv / "cv_results.md").read_text().count("\n") == 6

    ev = tmp_path / "ev"
    args = [
        "evaluate",
        "--data",
        str(msfd_tiny),
        "--model",
        str(run / "best.safetensors"),
        "--output",
        str(ev),
    ]
    assert main(args) == 0
    ev_summary = json.loads((ev / "summary.json").read_text())
    assert ev_summary["n_images"] == len(splits["test"])
    assert ev_summary["iou"] == pytest.approx(summary["test"]["iou"], abs=1e-6)
    assert (ev / "worst_cases.png").exists()
    lines = (ev / "per_image.csv").read_text().splitlines()
    assert lines[0].startswith("id,iou,dice") and len(lines) == 1 + len(splits["test"])


@pytest.mark.slow
def test_kill_mid_epoch_then_resume(msfd_tiny: Path, tmp_path: Path):
    """A real SIGKILL during training; --resume continues from the mid-epoch checkpoint."""
    run = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "maskseg",
        "train",
        "--data",
        str(msfd_tiny),
        "--output",
        str(run),
        "--epochs",
        "4",
        "--checkpoint-interval",
        "0",
        *TINY,
        "--image-size",
        "64",
        "--batch-size",
        "2",
    ]
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
    assert (
        main(
            [
                "tune-baselines",
                "--data",
                str(msfd_tiny),
                "--output",
                str(out),
                "--methods",
                "prior",
                "otsu",
            ]
        )
        == 0
    )
    tuned = json.loads(out.read_text())
    assert set(tuned["methods"]) == {"prior", "otsu"}
    assert "train IoU" in capsys.readouterr().out
    # a method the file holds no parameters for is refused, not run on its defaults
    cmp = ["compare", "--data", str(msfd_tiny), "--no-unet", "--tuned", str(out), "--output"]
    assert main([*cmp, str(tmp_path / "c"), "--methods", "otsu", "kmeans"]) == 2
    assert "holds no tuned parameters for kmeans" in capsys.readouterr().err
    img = next((msfd_tiny / "1" / "face_crop").iterdir())
    pred = tmp_path / "pred"
    assert main(["predict", str(img), "--output", str(pred), "--method", "grabcut"]) == 0
    assert read_mask(pred / f"{img.stem}.png").shape == (64, 64)
    with pytest.raises(SystemExit):  # argparse lists the valid methods
        main(["predict", str(img), "--output", str(pred), "--method", "nope"])


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


def test_help_documents_every_option():
    from maskseg.cli.main import METHODS, build_parser
    from maskseg.evaluate.baselines import list_methods

    assert list(METHODS) == list_methods()
    parser = build_parser()
    commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0]
    undocumented = []
    for name, sub in commands.choices.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        parsers = [(name, sub)] + [(f"{name} {n}", p) for a in nested for n, p in a.choices.items()]
        for label, p in parsers:
            for action in p._actions:
                if action.option_strings and action.help in (None, "") and action.dest != "help":
                    undocumented.append(f"{label} {action.option_strings[0]}")
    assert not undocumented
    text = commands.choices["train"].format_help()
    assert "--epochs EPOCHS" in text and "(default: 250)" in text
    assert "(default: 0)" in commands.choices["tune-baselines"].format_help()
    assert "grabcut" in commands.choices["predict"].format_help()


def test_resume_refuses_changed_options_and_applies_allowed(
    msfd_tiny: Path, tmp_path: Path, capsys
):
    run = tmp_path / "run"
    base = ["train", "--data", str(msfd_tiny), "--output", str(run), *TINY]
    assert main([*base, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*base, "--epochs", "3", "--lr", "0.1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "train.epochs (run: 1, given: 3)" in err and "train.lr" in err
    assert main([*base, "--epochs", "1", "--threads", "1", "--resume"]) == 0
    assert "threads: 1" in (run / "config.yaml").read_text()  # applied and recorded


def test_train_refuses_a_finished_run_and_a_folder_inside_the_data(
    msfd_tiny: Path, tmp_path: Path, capsys
):
    """Training again into a run folder without --resume used to replace its weights and
    checkpoint; a run folder inside the data folder put its files among the pairs."""
    run = tmp_path / "run"
    base = ["train", "--data", str(msfd_tiny), "--output", str(run), *TINY, "--epochs", "1"]
    assert main(base) == 0
    before = (run / "best.safetensors").read_bytes()
    capsys.readouterr()
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err, err
    assert (run / "best.safetensors").read_bytes() == before
    inside = msfd_tiny / "runs" / "r1"
    args = ["train", "--data", str(msfd_tiny), "--output", str(inside), *TINY, "--epochs", "1"]
    assert main(args) == 2
    assert "inside the data folder" in capsys.readouterr().err
    assert not inside.exists()
    # a run that cannot start writes no folder (it could then only be resumed as refused)
    fresh = tmp_path / "fresh"
    args = ["train", "--output", str(fresh), *TINY, "--epochs", "1"]
    assert main([*args, "--data", str(tmp_path / "no-such-data")]) == 2
    assert not fresh.exists()
    if not torch.cuda.is_available():
        assert main([*args, "--data", str(msfd_tiny), "--device", "cuda"]) == 2
        assert "--device cuda: this PyTorch has no CUDA device" in capsys.readouterr().err
        assert not fresh.exists()


def test_a_split_is_not_rebuilt_from_other_pairs(msfd_tiny: Path, tmp_path: Path, capsys):
    """A model's split is a function of every pair id in its data folder: evaluated on a
    subset (or a folder with more pairs), the rebuilt "test" split used to hold some of its
    training pairs without a word. The run records the set it split, and evaluate refuses
    another."""
    import shutil

    from maskseg.data.pairs import find_pairs
    from maskseg.data.splits import pairs_digest
    from maskseg.pipeline.modelfile import read_model_info

    run = tmp_path / "run"
    assert (
        main(["train", "--data", str(msfd_tiny), "--output", str(run), *TINY, "--epochs", "1"]) == 0
    )
    cfg, _ = read_model_info(run / "best.safetensors")
    ids = [p.id for p in find_pairs(msfd_tiny).pairs]
    assert cfg.data.pairs_digest == pairs_digest(ids) == pairs_digest(ids[::-1])
    model = ["--model", str(run / "best.safetensors")]
    assert (
        main(["evaluate", "--data", str(msfd_tiny), *model, "--output", str(tmp_path / "e")]) == 0
    )
    subset = tmp_path / "subset"
    shutil.copytree(msfd_tiny, subset)
    for image in sorted((subset / "1" / "face_crop").glob("*.jpg"))[:3]:
        image.unlink()
    capsys.readouterr()
    assert main(["evaluate", "--data", str(subset), *model, "--output", str(tmp_path / "e2")]) == 2
    err = capsys.readouterr().err
    assert "not the set the model's split was made over" in err, err
    # a run resumed on another set of pairs is refused; a moved copy of the same is not
    before = (run / "config.yaml").read_text()
    resume = ["train", "--output", str(run), "--resume", "--data"]
    assert main([*resume, str(subset)]) == 2
    assert "not the set the model's split was made over" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == before
    moved = tmp_path / "moved"
    shutil.copytree(msfd_tiny, moved)
    assert main([*resume, str(moved)]) == 0


@pytest.mark.parametrize(
    "flag, message",
    [
        (["--epochs", "0"], "train.epochs must be at least 1"),
        (["--lr", "0"], "train.lr must be > 0"),
        (["--batch-size", "0"], "train.batch_size must be at least 1"),
        (["--image-size", "0"], "image_size must be at least 16"),
        (["--patience", "-1"], "train.patience must be at least 0"),
        (["--steps", "0"], "train.steps must be at least 1"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_train_refuses_unusable_values_before_writing(
    flag, message, msfd_tiny: Path, tmp_path: Path, capsys
):
    run = tmp_path / "run"
    assert main(["train", "--data", str(msfd_tiny), "--output", str(run), *TINY, *flag]) == 2
    assert message in capsys.readouterr().err
    assert not run.exists()


def test_ctrl_c_during_training_saves_the_step_and_says_how_to_resume(
    msfd_tiny: Path, tmp_path: Path
):
    import signal
    import subprocess
    import sys

    run = tmp_path / "run"
    args = ["train", "--data", str(msfd_tiny), "--output", str(run), *TINY, "--epochs", "400"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskseg", *args, "--threads", "1"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    # once an epoch is done, training is under way
    _, err = signal_when(proc, (run / "metrics.csv").exists, signal.SIGINT, "an epoch")
    assert proc.returncode == 130, err
    assert "continue with the same command and --resume" in err, err
    assert "Traceback" not in err, err
    import re

    epoch, step = map(int, re.search(r"stopped at epoch (\d+) step (\d+)", err).groups())
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)  # saved at that very step
    assert (ckpt["epoch"] + 1, ckpt["step_in_epoch"]) == (epoch, step) and epoch >= 2


@pytest.mark.parametrize(("sig", "code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_stops_predict_after_the_file_in_hand_and_keeps_its_reports(
    tmp_path: Path, sig: str, code: int
):
    """A job array's preemption (SIGTERM) or Ctrl-C: the files done keep their masks and
    their rows in the summary and COCO files, the run says how far it got, and it exits as
    the shell expects."""
    import signal
    import subprocess
    import sys

    src = tmp_path / "in"
    src.mkdir()
    face = cv2.imread(str(Path(__file__).resolve().parents[1] / "examples" / "face.jpg"))
    for k in range(200):
        cv2.imwrite(str(src / f"f{k:03d}.jpg"), face)
    out = tmp_path / "out"
    reports = ["--summary", str(tmp_path / "s.csv"), "--coco", str(tmp_path / "c.json")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskseg", "predict", str(src), "--output", str(out), *reports],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
    )

    def started() -> bool:
        return out.is_dir() and len(list(out.glob("*.png"))) >= 2

    _, err = signal_when(proc, started, getattr(signal, sig), "two masks written")
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    masks = sorted(out.glob("*.png"))
    assert 2 <= len(masks) < 200
    assert f"stopped by {sig}: {len(masks)} of 200 file(s) done" in err, err
    rows = (tmp_path / "s.csv").read_text().splitlines()[1:]
    assert sorted({r.split(",")[0] for r in rows}) == sorted(
        str(src / f"{m.stem}.jpg") for m in masks
    )
    coco = json.loads((tmp_path / "c.json").read_text())
    assert sorted(im["file_name"] for im in coco["images"]) == [
        str(src / f"{m.stem}.jpg") for m in masks
    ]


def test_pack_refuses_members_of_other_splits_and_onnx_files(
    tiny_model: Path, tmp_path: Path, capsys
):
    """Members trained on other splits used to be packed under the first one's: its "test"
    pairs were the other's training pairs."""
    cfg = Config(
        data=DataConfig(image_size=32, seed=5), model=ModelConfig(base_channels=4, depth=2)
    )
    other = tmp_path / "other.safetensors"
    save_weights(other, create_model(cfg.model), cfg)
    out = tmp_path / "packed.safetensors"
    assert main(["pack", str(tiny_model), str(other), "--output", str(out)]) == 2
    assert "trained on another split" in capsys.readouterr().err
    (tmp_path / "m.onnx").write_bytes(b"not read")
    assert main(["pack", str(tmp_path / "m.onnx"), str(tiny_model), "--output", str(out)]) == 2
    assert "an ONNX file cannot be packed" in capsys.readouterr().err
    assert not out.exists()
    same = tmp_path / "same.safetensors"  # another model of the same split packs
    save_weights(
        same,
        create_model(ModelConfig(base_channels=4, depth=2)),
        Config(data=DataConfig(image_size=32), model=ModelConfig(base_channels=4, depth=2)),
    )
    assert main(["pack", str(tiny_model), str(same), "--output", str(out)]) == 0


def test_tune_baselines_writes_only_a_json_file(msfd_tiny: Path, tmp_path: Path, capsys):
    """Its --output replaced any file it was given, an input image included."""
    image = next((msfd_tiny / "1" / "face_crop").glob("*.jpg"))
    before = image.read_bytes()
    args = ["tune-baselines", "--data", str(msfd_tiny), "--methods", "prior", "--output"]
    for output in (image, tmp_path):
        assert main([*args, str(output)]) == 2
        assert "give a .json file" in capsys.readouterr().err
    assert image.read_bytes() == before
    assert main([*args, str(tmp_path / "tuned.json")]) == 0
    assert "prior" in json.loads((tmp_path / "tuned.json").read_text())["methods"]


def test_output_cut_short_by_its_reader_ends_quietly():
    """`maskseg models --json | head -1`: the reader leaves early; no BrokenPipe traceback."""
    import subprocess
    import sys

    proc = subprocess.run(
        f"{sys.executable} -m maskseg models --json | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout == "{\n" and "BrokenPipe" not in proc.stderr, proc.stderr


def test_the_package_lists_its_public_names():
    import maskseg

    assert dir(maskseg) == ["Predictor", "ScenePredictor", "__version__", "read_image"]


class Payload:
    """Stands for arbitrary code a pickled .pt file could run when unpickled."""


def test_unsafe_checkpoint_is_refused_without_bad_advice(tmp_path: Path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "x": Payload()}, path)
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((8, 8, 3), 90, np.uint8))
    assert main(["predict", str(img), "--output", str(tmp_path / "o"), "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert "evil.pt" in err and "weights_only=True" in err
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err


def _bomb_png(path: Path, side: int = 20000) -> None:
    """A real, valid 1-bit PNG of side x side pixels: ~50 KB on disk, 400 MP decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\0" * (1 + side // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_predict_skips_bad_inputs_once_each_and_goes_on(tmp_path: Path, tiny_model: Path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _bomb_png(src / "a_bomb.png")
    (src / "b_dir.jpg").mkdir()  # a folder named like an image
    cv2.imwrite(str(src / "b_dir.jpg" / "inside.jpg"), np.full((9, 9, 3), 90, np.uint8))
    (src / "c_loop.jpg").symlink_to(src / "c_loop.jpg")  # a link to itself
    (src / "d_back").symlink_to(src)  # a link to the folder being scanned
    (src / "e_broken.jpg").symlink_to(src / "missing.jpg")
    cv2.imwrite(str(src / "z_good.jpg"), np.full((12, 10, 3), 90, np.uint8))
    out = tmp_path / "out"
    assert main(["predict", str(src), "--output", str(out), "--model", str(tiny_model)]) == 1
    err = capsys.readouterr().err
    for name, why in [
        ("a_bomb.png", "20000x20000"),
        ("b_dir.jpg", "directory"),
        ("c_loop.jpg", "loop"),
        ("d_back", "loop"),
        ("e_broken.jpg", "broken"),
    ]:
        lines = [line for line in err.splitlines() if f"/{name}:" in line]
        assert len(lines) == 1 and why in lines[0], (name, err)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "b_dir.jpg/inside.png",
        "z_good.png",
    ]
    assert "%|" not in err  # no progress bar when stderr is not a terminal


@pytest.mark.slow
def test_predict_above_pillows_limit_when_allowed(tmp_path: Path, tiny_model: Path):
    """--max-pixels may go beyond Pillow's own 179 MP: the 400 MP image is then decoded
    (reduced) and its mask written at full size."""
    _bomb_png(tmp_path / "big.png")
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(tmp_path / "big.png"),
                "--output",
                str(out),
                "--model",
                str(tiny_model),
                "--max-pixels",
                str(10**9),
            ]
        )
        == 0
    )
    assert read_mask(out / "big.png", max_pixels=10**9).shape == (20000, 20000)


def test_compare_and_evaluate_score_the_models_own_test_ids(
    msfd_tiny: Path, tmp_path: Path, capsys
):
    """A model trained with non-default seeds is scored on its own test split by both."""
    from maskseg.config import DataConfig as D
    from maskseg.data.pairs import find_pairs
    from maskseg.data.splits import splits_for

    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(msfd_tiny),
        "--output",
        str(run),
        "--epochs",
        "1",
        *TINY,
        "--seed",
        "5",
        "--split-seed",
        "3",
    ]
    assert main(args) == 0
    model = str(run / "best.safetensors")
    ids = [p.id for p in find_pairs(msfd_tiny).pairs]
    own, canonical = splits_for(ids, D(seed=3)).test, splits_for(ids, D()).test
    assert own != canonical  # otherwise this test could not tell the splits apart
    assert json.loads((run / "splits.json").read_text())["test"] == own

    ev = tmp_path / "ev"
    assert main(["evaluate", "--data", str(msfd_tiny), "--model", model, "--output", str(ev)]) == 0
    lines = (ev / "per_image.csv").read_text().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in lines) == own
    assert json.loads((ev / "summary.json").read_text())["skipped"] == []
    # a test image that cannot be read is not scored, and the summary says which
    broken = msfd_tiny / "1" / "face_crop" / f"{own[0]}.jpg"
    original = broken.read_bytes()
    broken.write_bytes(b"not a jpeg")
    capsys.readouterr()
    assert main(["evaluate", "--data", str(msfd_tiny), "--model", model, "--output", str(ev)]) == 0
    skipped = json.loads((ev / "summary.json").read_text())["skipped"]
    assert [k["id"] for k in skipped] == [own[0]] and skipped[0]["reason"]
    assert f"not scored: 1 pair(s) of the test split ({own[0]};" in capsys.readouterr().out
    broken.write_bytes(original)
    assert (ev / "worst_cases.png").is_file()
    # again with no worst cases drawn: the folder holds this run's reports only
    evaluate = ["evaluate", "--data", str(msfd_tiny), "--model", model, "--output"]
    assert main([*evaluate, str(ev), "--worst", "0"]) == 0
    assert not (ev / "worst_cases.png").exists() and (ev / "summary.json").is_file()
    capsys.readouterr()
    assert main([*evaluate, str(ev / "summary.json")]) == 2  # a file: one line, no traceback
    assert "a file, not a folder" in capsys.readouterr().err
    inside = msfd_tiny / "reports"
    assert main([*evaluate, str(inside)]) == 2 and not inside.exists()
    assert "inside the data folder" in capsys.readouterr().err

    cmp = ["compare", "--data", str(msfd_tiny), "--model", model, "--examples", "0"]
    capsys.readouterr()
    assert main([*cmp, "--output", str(tmp_path / "c0")]) == 2  # shipped tuning: split seed 0
    assert "split-seed 3" in capsys.readouterr().err
    tuned = tmp_path / "tuned.json"
    assert (
        main(
            [
                "tune-baselines",
                "--data",
                str(msfd_tiny),
                "--output",
                str(tuned),
                "--methods",
                "prior",
                "--split-seed",
                "3",
            ]
        )
        == 0
    )
    out = tmp_path / "c1"
    assert main([*cmp, "--output", str(out), "--tuned", str(tuned), "--methods", "prior"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert sorted(result["split"]["test_ids"]) == own and result["split"]["seed"] == 3
    assert main([*cmp, "--output", str(out), "--split-seed", "0"]) == 2  # not the model's split


# ---------------------------------------------------------------------------- CLI odds


def test_cli_modules_stay_small():
    """One module per group of commands; none grows past 400 lines."""
    folder = Path(__file__).resolve().parents[1] / "src" / "maskseg" / "cli"
    sizes = {p.name: len(p.read_text().splitlines()) for p in folder.glob("*.py")}
    assert {"main.py", "train.py", "evaluate.py", "media.py", "models.py"} <= set(sizes)
    assert max(sizes.values()) <= 400, sizes


def test_torch_install_advice_names_the_cpu_build(tmp_path: Path, monkeypatch, capsys):
    """Without PyTorch the advice installs the CPU build: a bare 'maskseg[train]' pulls a
    multi-GB CUDA torch."""
    advice = "pip install torch==2.13.0 'maskseg[train]'"
    monkeypatch.setitem(sys.modules, "maskseg.pipeline.backends.pytorch", None)  # import fails
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((8, 8, 3), 90, np.uint8))
    out = str(tmp_path / "o")
    assert main(["predict", str(img), "--output", out, "--backend", "torch"]) == 2
    assert advice in capsys.readouterr().err
    weights = tmp_path / "m.safetensors"  # only PyTorch reads it
    weights.write_bytes(b"x")
    assert main(["predict", str(img), "--output", out, "--model", str(weights)]) == 2
    assert advice in capsys.readouterr().err
    # every such install command in the package names the CPU build
    src = Path(__file__).resolve().parents[1] / "src" / "maskseg"
    bare = [
        f"{p.relative_to(src)}:{k}"
        for p in src.rglob("*.py")
        for k, line in enumerate(p.read_text().splitlines(), 1)
        if "pip install" in line and "maskseg[train]" in line and "torch==2.13.0" not in line
    ]
    assert not bare


def test_predict_reports_files_of_other_types_in_folders(
    tmp_path: Path, tiny_model: Path, capsys, caplog
):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    cv2.imwrite(str(src / "a.jpg"), np.full((10, 12, 3), 90, np.uint8))
    cv2.imwrite(str(src / "sub" / "b.png"), np.full((10, 12, 3), 90, np.uint8))
    (src / "anim.gif").write_bytes(b"GIF89a")
    (src / "README").write_text("no extension")
    (src / "sub" / "notes.txt").write_text("text")
    (src / ".hidden").write_text("left out on purpose, not reported")
    (src / ".git").mkdir()  # hidden folders are not reported either
    (src / ".git" / "c.jpg").write_bytes(b"not scanned")
    (src / "._a.jpg").write_bytes(b"\x00\x05\x16\x07")  # macOS's AppleDouble copy of a.jpg
    (src / "sub" / ".d.png").write_bytes(b"hidden, named like an image")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="maskseg.cli.predict"):
        rc = main(["predict", str(src), "--output", str(out), "--model", str(tiny_model)])
    assert rc == 0  # reported, not a failure: the images were all written
    lines = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "left out 3 file(s) that are not images of an accepted type" in lines[0]
    assert "(.gif, .txt, no extension)" in lines[0]
    assert "README, anim.gif, sub/notes.txt" in lines[0] and ".hidden" not in lines[0]
    assert "left out 2 hidden file(s) named like images" in lines[1]
    assert lines[1].endswith("._a.jpg, sub/.d.png; give a file by name to segment it")
    assert sorted(p.name for p in out.rglob("*.png")) == ["a.png", "b.png"]
    caplog.clear()
    # a second run beside the first run's outputs reports no more than before
    (src / "masks").mkdir()
    (src / "masks" / "x.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="maskseg.cli.predict"):
        main(["predict", str(src), "--output", str(src / "masks"), "--model", str(tiny_model)])
    lines = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(lines) == 2 and "left out 3 file(s)" in lines[0] and "x.json" not in lines[0]


def test_predict_names_a_symlink_loop_given_by_name(tmp_path: Path, tiny_model: Path, capsys):
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "missing.jpg")
    out = str(tmp_path / "out")
    args = ["--output", out, "--model", str(tiny_model)]
    assert main(["predict", str(tmp_path / "loop.jpg"), str(tmp_path / "broken.jpg"), *args]) == 1
    err = capsys.readouterr().err
    assert f"skipped {tmp_path / 'loop.jpg'}: symlink loop" in err
    assert f"skipped {tmp_path / 'broken.jpg'}: broken link" in err
    assert main(["predict", str(tmp_path / "nothing.jpg"), *args]) == 1
    assert "file does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option", [["--detect-mode", "frame"], ["--detector", "blazeface"], ["--detect-threshold=0.3"]]
)
def test_predict_refuses_detector_options_without_scene(tmp_path: Path, capsys, option):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((8, 8, 3), 90, np.uint8))
    args = ["predict", str(img), "--output", str(tmp_path / "o"), *option]
    assert main([*args, "--model", "no-such-model"]) == 2  # refused before the model loads
    err = capsys.readouterr().err
    assert option[0].split("=")[0] in err and "--scene" in err and "no-such-model" not in err
    assert not (tmp_path / "o").exists()


def test_help_says_what_overlays_and_evaluate_default_to():
    from maskseg.cli.main import build_parser

    commands = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)][0]
    predict = " ".join(commands.choices["predict"].format_help().split())
    assert "decoded reduced, so their overlay is smaller than the image" in predict
    evaluate = " ".join(commands.choices["evaluate"].format_help().split())
    assert "default: unet-msfd-heldout" in evaluate


def test_evaluate_defaults_to_the_held_out_twin(msfd_tiny: Path, tmp_path: Path, capsys):
    """The default model saw every pair: evaluate scores its twin that held out the test split
    unless --model is given."""
    out = tmp_path / "ev"
    # these synthetic pairs are not the twin's: scored whole (its test split is MSFD's)
    assert main(["evaluate", "--data", str(msfd_tiny), "--output", str(out), "--split", "all"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "unet-msfd-heldout" and summary["n_images"] == 24
    assert "all split" in capsys.readouterr().out
    out = tmp_path / "ev2"
    assert (
        main(["evaluate", "--data", str(msfd_tiny), "--model", "unet-msfd", "--output", str(out)])
        == 1
    )
    assert "--split all" in capsys.readouterr().err and not out.exists()


def test_models_reads_figures_through_nested_packs():
    """A shipped file packed from a gated file that was itself packed keeps each step's
    figures one level down: the newest gate (outermost) and the training figures are found."""
    from maskseg.cli.models import _gate, _training

    old_gate, new_gate = {"n_positive": 1}, {"n_positive": 2}
    trained = {"epoch": 250, "train_loss": 0.08, "gate": old_gate}
    nested = {"members": ["a"], "member_metrics": [{"member_metrics": [trained], "gate": new_gate}]}
    assert _gate(nested) is new_gate and _gate({"member_metrics": [trained]}) is old_gate
    assert _training(nested) == {"epoch": 250, "train_loss": 0.08}
    assert _gate({}) is None and _training({"member_metrics": ["not a dict"]}) == {}


def test_models_lists_a_readable_table_and_json(capsys, monkeypatch):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("unet-msfd (default)\n") and "\nunet-msfd-heldout\n" in text
    assert "\nunet-msfd-fast\n" in text and "\nunet-msfd-fast-heldout\n" in text
    for label in ("for:", "trained on:", "test figures:", "files:", "detector:", "licence:"):
        assert text.count(f"  {label}") == 4, label
    assert "unet-msfd.onnx (2.5 MB, INT8, onnxruntime" in text
    assert "its held-out\n                twin unet-msfd-fast-heldout stands for it" in text
    assert "runs/" not in text and "{" not in text  # no internal run paths, no raw dicts
    assert "architectures: attunet, lrunet, resunet, unet, unetpp" in text
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["architectures"] == ["attunet", "lrunet", "resunet", "unet", "unetpp"]
    models = listing["models"]
    assert [m["name"] for m in models][:1] == ["unet-msfd"] and models[0]["default"]
    held = next(m for m in models if m["name"] == "unet-msfd-heldout")
    assert held["trained_on"]["test_fraction"] > 0 and held["files"][0]["precision"] == "INT8"
    # each gated model's learned face check: its own file beside it, or the fallback, said so
    assert text.count("  face check:") == 4
    assert "face check:   its own, unet-msfd.face-check.json (" in text
    by_name = {m["name"]: m for m in models}
    assert by_name["unet-msfd"]["face_check"]["file"] == "unet-msfd.face-check.json"
    assert (
        by_name["unet-msfd"]["face_check"]["rows"]
        > by_name["unet-msfd"]["face_check"]["painted_in_unmasked_photos"]
        > 0
    )
    assert by_name["unet-msfd-fast-heldout"]["face_check"] is None
    assert all(f["bytes"] > 0 for m in models for f in m["files"])
    # where listing the architectures needs PyTorch, the listing says what to install
    from maskseg.cli import models as cli_models

    monkeypatch.setattr(cli_models, "architectures", lambda: None)
    assert main(["models"]) == 0
    assert (
        "architectures: (install PyTorch to list and train them: "
        "pip install torch==2.13.0 'maskseg[train]' --index-url "
        "https://download.pytorch.org/whl/cpu" in capsys.readouterr().out
    )


def test_shipped_twin_is_not_scored_on_a_split_rebuilt_from_other_pairs(
    real_data: Path, tmp_path: Path, capsys
):
    """The shipped files predate the pairs fingerprint, so it is supplied for them: a subset
    of MSFD rebuilt another "test" split (holding the twin's training pairs) and was scored
    without a word. Scoring a folder whole (--split all) needs no split and is allowed."""
    sub = tmp_path / "sub" / "1"
    for kind in ("face_crop", "face_crop_segmentation"):
        (sub / kind).mkdir(parents=True)
        for f in sorted((real_data / "1" / kind).iterdir())[:30]:
            (sub / kind / f.name).symlink_to(f)
    args = ["evaluate", "--data", str(tmp_path / "sub"), "--model", "unet-msfd-heldout"]
    assert main([*args, "--output", str(tmp_path / "e1")]) == 2
    assert "not the set the model's split was made over" in capsys.readouterr().err
    assert main([*args, "--output", str(tmp_path / "e2"), "--split", "all", "--worst", "0"]) == 0
    assert json.loads((tmp_path / "e2" / "summary.json").read_text())["n_images"] == 30


def test_cv_counts_only_the_pairs_it_could_read(msfd_tiny: Path, tmp_path: Path, capsys):
    """A pair whose image does not decode is left out of training and scoring; the per-fold
    counts (summary and cv_results.md) say how many pairs were used, not how many the split
    listed."""
    bad = next((msfd_tiny / "1" / "face_crop").glob("*person2_0_0_1*"))
    bad.write_bytes(b"\xff\xd8\xff garbage")
    cv = tmp_path / "cv"
    assert main(["cv", "--data", str(msfd_tiny), "--output", str(cv), "--epochs", "1", *TINY]) == 0
    s = json.loads((cv / "summary.json").read_text())
    splits = json.loads((cv / "splits.json").read_text())
    listed = sum(len(fold) for fold in splits["folds"])  # the trainval pairs
    assert any(bad.stem in line for line in s["skipped_pairs"])
    in_test = any(bad.stem in i for i in splits["test"])
    assert s["n_test"] == len(splits["test"]) - in_test
    assert sum(f["n_val"] for f in s["folds"]) == listed - (not in_test)  # each pair once
    for f in s["folds"]:
        assert f["n_train"] + f["n_val"] == listed - (not in_test)
    table = (cv / "cv_results.md").read_text()
    for f in s["folds"]:
        assert f"| {f['fold']} | {f['n_train']} | {f['n_val']} |" in table
