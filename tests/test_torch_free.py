"""Inference without PyTorch: the light install (onnxruntime) predicts, lists models and
evaluates; nothing on the predict path imports torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
            raise ImportError(f"No module named {name!r} (blocked: torch-free test)", name=name)
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
    assert res.returncode == 2 and "maskseg[train]" in res.stderr


def test_models_and_evaluate_without_torch(no_torch_env, msfd_tiny: Path, tmp_path: Path):
    res = _maskseg(no_torch_env, "models")
    assert res.returncode == 0, res.stderr
    assert "unet-msfd (default)" in res.stdout and "unet-msfd.onnx" in res.stdout
    # the shipped default saw every pair of its data: no test split, and the error says why
    res = _maskseg(
        no_torch_env,
        "evaluate",
        "--data",
        str(msfd_tiny),
        "--backend",
        "onnx",
        "--output",
        str(tmp_path / "ev"),
    )
    assert res.returncode == 1 and "--split all" in res.stderr
    res = _maskseg(
        no_torch_env,
        "evaluate",
        "--data",
        str(msfd_tiny),
        "--backend",
        "onnx",
        "--split",
        "all",
        "--output",
        str(tmp_path / "ev"),
    )
    assert res.returncode == 0, res.stderr
    assert "iou" in res.stdout and (tmp_path / "ev" / "summary.json").is_file()


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
