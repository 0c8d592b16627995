"""ONNX export: parity with PyTorch (logits and masks), dynamic axes, metadata, INT8 on real
pairs, calibration never touching the test split, non-default architectures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maskseg.cli.main import main
from maskseg.config import Config, DataConfig, ModelConfig
from maskseg.models import create_model
from maskseg.pipeline.backends.onnx import OnnxBackend, load, open_session
from maskseg.pipeline.modelfile import read_model_info
from maskseg.pipeline.predictor import Predictor, resolve_model_path
from maskseg.pipeline.preprocess import model_input
from maskseg.train.checkpoint import save_weights
from maskseg.train.export import export_onnx, sha256_file, torch_logits
from maskseg.train.quantize import calibration_ids


def _model(tmp_path: Path, name: str = "tiny", size: int = 32, **model) -> Path:
    cfg = Config(
        data=DataConfig(image_size=size),
        model=ModelConfig(**{"base_channels": 4, "depth": 2, **model}),
    )
    net = create_model(cfg.model)
    gen = torch.Generator().manual_seed(0)
    for p in net.parameters():  # non-trivial weights, so logits span both sides of the threshold
        p.data.normal_(0, 0.3, generator=gen)
    path = tmp_path / f"{name}.safetensors"
    save_weights(path, net, cfg, {"note": "test"})
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny U-Net and its ONNX export with the default (dynamo) exporter, made once."""
    tmp = tmp_path_factory.mktemp("export")
    src = _model(tmp)
    export_onnx(src, tmp / "tiny.onnx")
    return src, tmp / "tiny.onnx"


def _images(n: int = 4, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        for h, w in [(40, 40), (61, 37), (250, 250), (19, 90)][:n]
    ]


def test_onnx_logits_and_masks_match_pytorch(exported):
    src, onnx_file = exported
    torch_p = Predictor.load(src, backend="torch", precision="fp32")
    onnx_p = Predictor.load(onnx_file)
    assert onnx_p.backend.name == "onnx" and not onnx_p.backend.int8
    images = _images()
    diff = np.abs(onnx_p.logits(images) - torch_p.logits(images)).max()
    assert diff < 1e-4
    for a, b in zip(onnx_p.predict_batch(images), torch_p.predict_batch(images), strict=True):
        assert a.shape == b.shape
        assert (a != b).mean() < 1e-3  # equal but for a logit within float error of 0


def test_batch_and_spatial_axes_are_dynamic(exported):
    src, onnx_file = exported
    backend = OnnxBackend(open_session(onnx_file))
    net = Predictor.load(src, backend="torch").backend.model.float().eval()
    rng = np.random.default_rng(1)
    for shape in [(1, 3, 32, 32), (5, 3, 32, 32), (2, 3, 45, 29)]:
        x = rng.normal(size=shape).astype(np.float32)
        out = backend(x)
        assert out.shape == (shape[0], 1, *shape[2:])
        np.testing.assert_allclose(out, torch_logits(net, x), atol=1e-4)


def test_metadata_carries_config_metrics_and_provenance(exported):
    src, onnx_file = exported
    cfg, info = read_model_info(onnx_file)
    src_cfg, src_info = read_model_info(src)
    assert cfg == src_cfg
    assert info["metrics"] == src_info["metrics"] == {"note": "test"}
    assert info["source_sha256"] == sha256_file(src)
    assert info["source"] == src.name and info["int8"] == "no"
    assert "opset 18" in info["exporter"]


def test_export_command_prints_parity(tmp_path: Path, capsys):
    src = _model(tmp_path)
    out = tmp_path / "cli.onnx"
    assert main(["export", str(src), "--output", str(out), "--exporter", "legacy"]) == 0
    text = capsys.readouterr().out
    assert "max |logit diff|" in text and "input size dynamic" in text
    assert out.is_file()
    assert main(["export", str(src), "--output", str(tmp_path / "x.onnx"), "--int8"]) == 2
    assert "--int8 needs calibration crops" in capsys.readouterr().err
    assert main(["export", str(src), "--output", str(tmp_path / "x.pt")]) == 2


@pytest.mark.parametrize(
    "model, dynamic",
    [
        ({"presence": True, "presence_hidden": 8}, False),  # pooled head: traced at one size
        ({"block": "separable", "base_channels": 8}, True),
        ({"depth": 3, "flip_tta": True}, True),
    ],
    ids=["presence-head", "separable", "depth3-flip"],
)
def test_export_of_other_architectures(tmp_path: Path, model: dict, dynamic: bool):
    src = _model(tmp_path, **model)
    report = export_onnx(src, tmp_path / "m.onnx", exporter="legacy")
    assert report.dynamic_size is dynamic
    assert report.max_logit_diff < 1e-4
    p = Predictor.load(tmp_path / "m.onnx")
    assert p.config.model == read_model_info(src)[0].model
    images = _images(3)
    ref = Predictor.load(src, backend="torch", precision="fp32")
    np.testing.assert_allclose(p.logits(images), ref.logits(images), atol=1e-4)


def test_int8_needs_data_and_onnx_suffix(tmp_path: Path):
    src = _model(tmp_path)
    with pytest.raises(ValueError, match="calibration crops"):
        export_onnx(src, tmp_path / "a.onnx", int8=True)
    with pytest.raises(ValueError, match=".onnx"):
        export_onnx(src, tmp_path / "a.bin")


def test_export_makes_its_folder_or_says_at_once_why_it_cannot(tmp_path: Path, monkeypatch):
    import maskseg.train.export as export

    src = _model(tmp_path)
    export_onnx(src, tmp_path / "new" / "deeper" / "m.onnx", exporter="legacy", parity_split="none")
    assert Predictor.load(tmp_path / "new" / "deeper" / "m.onnx").size == 32
    (tmp_path / "file").write_text("a file, not a folder")

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(export, "_torch_model", no_work)  # refused before any work
    with pytest.raises(ValueError, match=r"file/m.onnx: cannot make its folder"):
        export_onnx(src, tmp_path / "file" / "m.onnx", exporter="legacy")


def test_calibration_crops_come_from_the_training_part_only(msfd_tiny: Path):
    from maskseg.data.pairs import find_pairs
    from maskseg.data.splits import splits_for

    cfg = Config(data=DataConfig(image_size=32))
    splits = splits_for([p.id for p in find_pairs(msfd_tiny).pairs], cfg.data)
    ids, part = calibration_ids(msfd_tiny, cfg)
    assert part == "trainval" and sorted(ids) == splits.trainval
    assert not set(ids) & set(splits.test)
    ids, part = calibration_ids(msfd_tiny, cfg, exclude_fold=1)
    assert not set(ids) & (set(splits.test) | set(splits.folds[1]))
    few, _ = calibration_ids(msfd_tiny, cfg, count=5)
    assert len(few) == 5 and set(few) <= set(splits.trainval)
    assert few == calibration_ids(msfd_tiny, cfg, count=5)[0]  # seeded


def test_int8_tiny_model_runs(msfd_tiny: Path, tmp_path: Path):
    src = _model(tmp_path)
    report = export_onnx(
        src,
        tmp_path / "q.onnx",
        int8=True,
        data=msfd_tiny,
        calibration=8,
        exporter="legacy",
        parity_split="none",
    )
    backend, cfg, info = load(tmp_path / "q.onnx")
    assert backend.int8 and info["int8"] == "yes"
    assert info["calibration"]["count"] == 8 and info["calibration"]["part"] == "trainval"
    assert report.calibration["count"] == 8
    import onnx

    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}
    floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    heads = [n for n in graph.node if n.op_type == "Conv" and n.input[1] in floats]
    assert len(heads) == 1  # only the logit head keeps fp32 weights
    x = model_input(_images(2), cfg.data.image_size)
    assert backend(x).shape == (2, 1, 32, 32)


@pytest.mark.parametrize("name", ["unet-msfd", "unet-msfd-fast"])
def test_shipped_onnx_is_an_export_of_the_shipped_weights(name: str):
    """The .onnx that ships must come from the .safetensors that ships: retraining or repacking
    the weights means exporting again (see README, "Fast inference (ONNX)")."""
    onnx_file = resolve_model_path(name, backend="onnx")
    weights = resolve_model_path(name, backend="torch")
    cfg, info = read_model_info(onnx_file)
    assert info["source_sha256"] == sha256_file(weights), "re-export the shipped ONNX model"
    assert cfg == read_model_info(weights)[0]
    assert info["int8"] == "yes" and info["calibration"]["part"] == "trainval"


@pytest.mark.slow
def test_int8_keeps_iou_on_real_pairs(real_data: Path, tmp_path: Path):
    """INT8 calibrated on a few training crops: IoU within 0.005 of PyTorch fp32. (The
    shipped model saw every pair, so parity is checked on all of them: it has no test split.)"""
    report = export_onnx(
        "unet-msfd",
        tmp_path / "q.onnx",
        int8=True,
        data=real_data,
        calibration=24,
        exporter="legacy",
    )
    assert report.n_parity == 167 and report.parity_on == "trainval crops"
    assert abs(report.iou["onnx"] - report.iou["torch fp32"]) <= 0.005
    assert report.mask_pixels_differing / report.mask_pixels < 0.005
    meta = json.loads(json.dumps(read_model_info(tmp_path / "q.onnx")[1]["calibration"]))
    assert meta["count"] == 24


@pytest.mark.slow
def test_shipped_fp32_export_matches_pytorch_on_the_test_split(real_data: Path, tmp_path: Path):
    report = export_onnx("unet-msfd", tmp_path / "f.onnx", data=real_data)
    assert report.max_logit_diff < 1e-3
    assert abs(report.iou["onnx"] - report.iou["torch fp32"]) <= 0.001
