"""Inference without PyTorch: the light install (onnxruntime) predicts, lists models and
evaluates; nothing on the predict path imports torch."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskseg.io import read_mask

ROOT = Path(__file__).resolve().parents[1]
FACE = ROOT / "examples" / "face.jpg"

# A sitecustomize that makes every `import torch...` fail, as in an install without it.
BLOCKER = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            message = f"No module named {name!r} (blocked: torch-free test)"
            raise ModuleNotFoundError(message, name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
"""


@pytest.fixture(scope="module")
def no_torch_env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("no_torch")
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _maskseg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "maskseg", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_blocker_blocks(no_torch_env):
    out = subprocess.run(
        [sys.executable, "-c", "import torch"], env=no_torch_env, capture_output=True, text=True
    )
    assert out.returncode != 0 and "blocked" in out.stderr


def test_predict_without_torch(no_torch_env, tmp_path: Path):
    res = _maskseg(
        no_torch_env, "predict", str(FACE), "--output", str(tmp_path), "--overlay", "--no-progress"
    )
    assert res.returncode == 0, res.stderr
    mask = read_mask(tmp_path / "face.png")
    assert 0.05 < mask.mean() < 0.9  # the example face wears a mask
    assert (tmp_path / "face_overlay.jpg").is_file()
    res = _maskseg(
        no_torch_env, "predict", str(FACE), "--output", str(tmp_path / "t"), "--backend", "torch"
    )
    # the advice installs the CPU build of torch (a bare 'maskseg[train]' pulls a CUDA one)
    assert res.returncode == 2 and "pip install torch==2.13.0 'maskseg[train]'" in res.stderr
    assert "--index-url https://download.pytorch.org/whl/cpu" in res.stderr
    # a command that needs the [train] extra says what to install, not only the module
    res = _maskseg(no_torch_env, "train", "--data", str(tmp_path), "--output", str(tmp_path / "r"))
    assert res.returncode == 2, res.stderr
    assert "No module named 'torch'" in res.stderr
    assert "; this command needs the [train] extra: pip install torch==2.13.0" in res.stderr


def test_models_and_evaluate_without_torch(no_torch_env, msfd_tiny: Path, tmp_path: Path):
    res = _maskseg(no_torch_env, "models")
    assert res.returncode == 0, res.stderr
    assert "unet-msfd (default)" in res.stdout and "unet-msfd.onnx" in res.stdout
    # the registry lists names without PyTorch
    assert "architectures: attunet, lrunet, resunet, unet, unetpp" in res.stdout
    assert "float16, PyTorch not installed)" in res.stdout  # the .safetensors file needs PyTorch
    res = _maskseg(no_torch_env, "models", "--json")
    assert res.returncode == 0, res.stderr
    listing = json.loads(res.stdout)
    assert {m["name"] for m in listing["models"]} >= {"unet-msfd", "unet-msfd-heldout"}
    assert "unet" in listing["architectures"]
    # the shipped default saw every pair of its data: no test split, and the error says why
    args = ["evaluate", "--data", str(msfd_tiny), "--backend", "onnx"]
    res = _maskseg(no_torch_env, *args, "--model", "unet-msfd", "--output", str(tmp_path / "e"))
    assert res.returncode == 1 and "--split all" in res.stderr
    res = _maskseg(
        no_torch_env, *args, "--model", "unet-msfd", "--split", "all", "--output", str(tmp_path)
    )
    assert res.returncode == 0, res.stderr
    assert "iou" in res.stdout and (tmp_path / "summary.json").is_file()
    # without --model: the held-out twin; its test split is MSFD's, not these pairs'
    res = _maskseg(no_torch_env, *args, "--output", str(tmp_path / "ev"))
    assert res.returncode == 2 and "not the set the model's split was made over" in res.stderr
    res = _maskseg(no_torch_env, *args, "--split", "all", "--output", str(tmp_path / "ev"))
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["model"] == "unet-msfd-heldout" and summary["n_images"] == 24


def _faces_folder(folder: Path, n: int = 10) -> Path:
    """A folder as ``maskseg data faces`` writes it: crops and index.json, half of them of a
    face with a mask, half without, each photo its own group."""
    import cv2

    from maskseg.data.faces import CROP_SIDE, INDEX, FaceCrop

    photos = {True: FACE, False: ROOT / "examples" / "astronaut.jpg"}
    entries = []
    for k in range(n):
        label = k % 2 == 0
        image = cv2.resize(cv2.imread(str(photos[label])), (CROP_SIDE, CROP_SIDE))
        crop = f"{'with' if label else 'without'}/{k:05d}.jpg"
        (folder / crop).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / crop), np.ascontiguousarray(image[:, :: 1 - 2 * (k % 3 == 0)]))
        pid = f"{'with' if label else 'without'}_mask/photo{k}.jpg"
        entries.append(FaceCrop(pid, label, crop, f"g{k}", 0.9, [0, 0, 100, 100], 1, "ok"))
    index = {"root": "photos", "detector": "blazeface", "crop_side": CROP_SIDE}
    index["crops"] = [dataclasses.asdict(e) for e in entries]
    (folder / INDEX).write_text(json.dumps(index))
    return folder


def test_evaluate_faces_without_torch(no_torch_env, msfd_tiny: Path, tmp_path: Path):
    from maskseg.data.faces import load_index
    from maskseg.pipeline.modelfile import read_model_info
    from maskseg.pipeline.predictor import resolve_model_path

    faces = _faces_folder(tmp_path / "faces")
    args = ["evaluate", "--data", str(msfd_tiny), "--faces", str(faces)]
    # the synthetic pairs are not the twin's: scored whole (its test split is MSFD's)
    res = _maskseg(no_torch_env, *args, "--split", "all", "--output", str(tmp_path / "ev"))
    assert res.returncode == 0, res.stderr
    assert "false-mask rate" in res.stdout and "found rate" in res.stdout
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    cfg, _ = read_model_info(resolve_model_path("unet-msfd-heldout", backend="onnx"))
    f = summary["faces"]  # the photos of the same part: all of them
    assert f["n_with_mask"] + f["n_without_mask"] == len(load_index(faces)) == 10
    assert summary["n_images"] > 0 and 0 <= f["found_rate"] <= 1
    # the default model has no test pairs: the photos' rates alone
    res = _maskseg(no_torch_env, *args, "--model", "unet-msfd", "--output", str(tmp_path / "all"))
    assert res.returncode == 0, res.stderr
    assert "face photos only" in res.stdout and "false-mask rate" in res.stdout
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert "iou" not in summary and summary["faces"]["folder"] == str(faces)


def test_predict_path_imports_no_torch():
    light = [
        "maskseg",
        "maskseg.cli.main",
        "maskseg.pipeline.predictor",
        "maskseg.cli.predict",
        "maskseg.pipeline.backends",
        "maskseg.pipeline.backends.onnx",
        "maskseg.pipeline.modelfile",
        "maskseg.pipeline.postprocess",
        "maskseg.pipeline.preprocess",
        "maskseg.io",
        "maskseg.evaluate.scoring",
        "maskseg.data.pairs",
        "maskseg.evaluate.evaluation",
    ]
    code = f"import sys\nfor m in {light!r}: __import__(m)\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_compare_without_matplotlib_writes_all_but_the_chart(msfd_tiny: Path, tmp_path: Path):
    """``compare`` with neither PyTorch nor matplotlib (the light install): the table, JSON
    and CSV are written, the bar chart is left out with a warning saying what to install,
    and a chart of an earlier run in the folder is removed (it would not match)."""
    site = tmp_path / "site"
    site.mkdir()
    blocker = BLOCKER.replace(
        'name == "torch" or name.startswith("torch.")',
        'name.split(".")[0] in ("torch", "matplotlib")',
    )
    (site / "sitecustomize.py").write_text(blocker)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "bar_chart.png").write_bytes(b"an earlier run's chart")
    args = ["compare", "--data", str(msfd_tiny), "--output", str(out), "--no-unet"]
    res = _maskseg(env, *args, "--methods", "otsu", "--examples", "0")
    assert res.returncode == 0, res.stderr
    assert "no bar_chart.png: charts need matplotlib" in res.stderr and "[train]" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["per_image.csv", "results.json", "results.md"]
    assert "otsu" in json.loads((out / "results.json").read_text())["methods"][0]["method"]
