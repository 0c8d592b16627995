"""Backend selection: by file suffix, by flag, the shipped model's file by installed runtime, and
clear errors for a file the chosen backend cannot read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import maskseg.pipeline.predictor as inference
from maskseg.cli.main import main
from maskseg.config import Config, DataConfig, ModelConfig
from maskseg.io import read_mask
from maskseg.models import create_model
from maskseg.pipeline import backends
from maskseg.pipeline.backends import is_installed, load_backend, register_backend
from maskseg.pipeline.backends.onnx import load as load_onnx
from maskseg.pipeline.backends.onnx import session_options
from maskseg.pipeline.predictor import (
    Predictor,
    available_models,
    resolve_model_path,
    shipped_files,
)
from maskseg.train.checkpoint import save_weights
from maskseg.train.export import export_onnx


def cli_image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (50, 40, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("backends")
    cfg = Config(data=DataConfig(image_size=32), model=ModelConfig(base_channels=4, depth=2))
    torch.manual_seed(0)
    net = create_model(cfg.model)
    # An untrained net's logits are nearly flat: scaled and centred on the CLI test's image,
    # its masks cover part of it, so comparing them says something.
    with torch.no_grad():
        net.head.weight.mul_(100.0)
        fp32 = Predictor.from_model(net, cfg, "cpu", precision="fp32")
        net.head.bias.sub_(float(np.median(fp32.logits([cli_image()]))))
    src = tmp / "tiny.safetensors"
    save_weights(src, net, cfg)
    export_onnx(src, tmp / "tiny.onnx", exporter="legacy")
    return src, tmp / "tiny.onnx"


def test_backend_follows_the_file_suffix(tiny_files):
    src, onnx_file = tiny_files
    assert Predictor.load(src).backend.name == "torch"
    assert Predictor.load(onnx_file).backend.name == "onnx"
    assert Predictor.load(onnx_file, backend="onnx").backend.name == "onnx"


def test_backend_flag_on_a_file_it_cannot_read(tiny_files):
    src, onnx_file = tiny_files
    with pytest.raises(ValueError, match="maskseg export"):
        Predictor.load(src, backend="onnx")
    with pytest.raises(ValueError, match="reads .safetensors"):
        Predictor.load(onnx_file, backend="torch")
    with pytest.raises(ValueError, match="valid: auto, torch, onnx"):
        Predictor.load(onnx_file, backend="openvino")


def test_shipped_model_is_listed_once_and_picks_the_fastest_runtime(monkeypatch):
    assert list(available_models()).count("unet-msfd") == 1
    files = shipped_files()["unet-msfd"]
    assert set(files) == {"onnx", "torch"}
    assert resolve_model_path("unet-msfd").suffix == ".onnx"  # onnxruntime is installed
    assert resolve_model_path(None, backend="torch").suffix == ".safetensors"
    assert resolve_model_path("unet-msfd", backend="onnx").suffix == ".onnx"
    assert Predictor.load().backend.name == "onnx"
    assert Predictor.load(backend="torch").backend.name == "torch"
    # Without onnxruntime, "auto" falls back to the PyTorch file.
    monkeypatch.setattr(inference, "is_installed", lambda name: name != "onnx")
    assert resolve_model_path("unet-msfd").suffix == ".safetensors"
    assert available_models()["unet-msfd"].suffix == ".safetensors"


def test_cli_backend_flag(tmp_path: Path, tiny_files, capsys):
    src, onnx_file = tiny_files
    from maskseg.io import write_rgb

    write_rgb(tmp_path / "a.png", cli_image())
    masks = {}
    for backend, model in [("onnx", onnx_file), ("torch", src), ("auto", onnx_file)]:
        out = tmp_path / backend
        args = ["predict", str(tmp_path / "a.png"), "--output", str(out), "--model", str(model)]
        assert main([*args, "--backend", backend, "--no-progress"]) == 0
        masks[backend] = read_mask(out / "a.png")
    assert 0.05 < masks["onnx"].mean() < 0.95  # not trivially equal (measured 0.29)
    assert (masks["onnx"] != masks["torch"]).mean() < 1e-3
    np.testing.assert_array_equal(masks["onnx"], masks["auto"])
    code = main(
        [
            "predict",
            str(tmp_path / "a.png"),
            "--output",
            str(tmp_path / "x"),
            "--model",
            str(src),
            "--backend",
            "onnx",
        ]
    )
    assert code == 2 and "maskseg export" in capsys.readouterr().err


def test_session_options_and_errors(tiny_files, tmp_path: Path):
    _, onnx_file = tiny_files
    x = np.zeros((2, 3, 32, 32), np.float32)
    ref, _, _ = load_onnx(onnx_file)
    for opts in [
        {"threads": 1},
        {"optimization": "basic"},
        {"spinning": True},
        {"parallel": True},
        {"optimization": "none"},
    ]:
        backend, cfg, _ = load_onnx(onnx_file, **opts)
        np.testing.assert_allclose(backend(x), ref(x), atol=1e-5)
    assert "fp32" in ref.describe() and "onnxruntime" in ref.describe()
    with pytest.raises(ValueError, match="optimization"):
        session_options(optimization="max")
    with pytest.raises(ValueError, match="precision"):
        load_onnx(onnx_file, precision="fp32")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        load_backend(tmp_path / "bad.onnx")
    with pytest.raises(FileNotFoundError):
        load_backend(tmp_path / "missing.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")  # onnxruntime's InvalidArgument, not Fail
    with pytest.raises(ValueError, match="empty.onnx: not a readable ONNX model"):
        load_backend(tmp_path / "empty.onnx")


def test_onnx_whose_config_does_not_fit_its_graph_is_refused(tiny_files, tmp_path: Path):
    """A maskseg config copied onto a graph of another input size is refused when the file
    loads, not at its first image."""
    import onnx
    from onnx import TensorProto, helper

    _, onnx_file = tiny_files
    node = helper.make_node("ReduceMean", ["image"], ["logits"], axes=[1], keepdims=1)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    for prop in onnx.load(str(onnx_file)).metadata_props:  # says 32 x 32
        model.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(model, str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match=r"config says one float input of \[N, 3, 32, 32\]"):
        Predictor.load(tmp_path / "other.onnx")
    assert Predictor.load(onnx_file).size == 32  # the file it came from loads


def test_onnx_without_maskseg_metadata_is_refused(tmp_path: Path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["image"], ["logits"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match="no maskseg config metadata"):
        Predictor.load(tmp_path / "plain.onnx")


def test_runtimes_are_checked_without_importing(monkeypatch):
    assert is_installed("onnx") and is_installed("torch")
    # a backend whose runtime is missing, or blocked, is not installed; one that needs
    # nothing beyond maskseg's own dependencies is
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    monkeypatch.setattr(backends, "_RUNTIMES", dict(backends._RUNTIMES))
    monkeypatch.setattr(backends, "PREFERENCE", list(backends.PREFERENCE))
    register_backend("ghost", "maskseg_ghost:load", (".ghost",), runtime="maskseg_no_such_rt")
    register_backend("blocked", "maskseg_blocked:load", (".blk",), runtime="maskseg_blocked_rt")
    register_backend("plain", "maskseg_plain:load", (".plain",))
    monkeypatch.setitem(sys.modules, "maskseg_blocked_rt", None)  # how an import is blocked
    assert not is_installed("ghost") and not is_installed("blocked") and is_installed("plain")
    # checking finds the runtime without importing it (importing torch takes seconds)
    code = (
        "import sys\n"
        "from maskseg.pipeline.backends import is_installed\n"
        "before = {m for m in ('torch', 'onnxruntime') if m in sys.modules}\n"
        "found = is_installed('torch'), is_installed('onnx')\n"
        "after = {m for m in ('torch', 'onnxruntime') if m in sys.modules}\n"
        "print(found, sorted(before), sorted(after))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(True, True) [] []"


def test_an_unknown_backend_is_not_installed():
    assert not is_installed("tensorflow")


def test_shipped_int8_computes_exact_int8_sums_on_every_cpu():
    """The shipped INT8 file through the default session gives the logits of its QDQ graph run
    unfused (DequantizeLinear, fp32 convolution, QuantizeLinear: exact int8 arithmetic, what a
    VNNI or AMX kernel computes). On an AVX2 CPU without VNNI onnxruntime's fast U8S8 kernel
    saturates: measured there on these crops, mean |logit difference| 0.43 and 2.8 % of pixels
    on the other side of the threshold without ``PRECISE_INT8``, 0.010 and 0.03 % with it."""
    from maskseg.io import read_image
    from maskseg.pipeline.backends.onnx import PRECISE_INT8

    assert session_options().get_session_config_entry(PRECISE_INT8) == "1"
    assert session_options(precise_int8=False).get_session_config_entry(PRECISE_INT8) == "0"
    face = read_image(Path(__file__).parents[1] / "examples" / "face.jpg")
    crops = [face, face[:, ::-1], face[::-1], np.ascontiguousarray(face.transpose(1, 0, 2))]
    logits = {}
    for name, opts in {"default": {}, "exact": {"optimization": "none"}}.items():
        predictor = Predictor.load("unet-msfd-heldout", backend="onnx", threads=1, **opts)
        assert predictor.backend.int8
        logits[name] = predictor.logits(crops)
    assert np.abs(logits["default"] - logits["exact"]).mean() < 0.05
    assert ((logits["default"] > 0) == (logits["exact"] > 0)).mean() > 0.998
