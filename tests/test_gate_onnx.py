"""Refitting the mask-presence gate inside an ONNX file (``maskseg.train.gate_onnx``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from maskseg.config import ModelConfig
from maskseg.io import read_image
from maskseg.models import create_model
from maskseg.pipeline.modelfile import read_onnx_info
from maskseg.pipeline.preprocess import model_input
from maskseg.train.gate import encoder_features
from maskseg.train.gate_onnx import feature_name, onnx_features, with_head

ROOT = Path(__file__).resolve().parents[1]
TWIN = ROOT / "src" / "maskseg" / "weights" / "unet-msfd-heldout.onnx"


def _run(blob_or_path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    src = blob_or_path if isinstance(blob_or_path, bytes) else str(blob_or_path)
    s = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _crops(n: int, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(params=["pooled", "masked"])
def tiny_onnx(tmp_path: Path, request):
    from maskseg.train.export import to_onnx

    torch.manual_seed(0)
    cfg = ModelConfig(
        name="unet",
        params={"base_channels": 4, "depth": 2},
        presence=True,
        presence_hidden=8,
        presence_features=request.param,
    )
    model = create_model(cfg).eval()
    to_onnx(model, 32, tmp_path / "m.onnx", exporter="legacy")
    return model, tmp_path / "m.onnx"


def test_features_are_the_encoders(tiny_onnx):
    model, path = tiny_onnx
    crops = _crops(3)
    got = onnx_features(path, crops, 32)
    want = encoder_features(model, crops, 32, kind=model.presence.kind)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)


def _random_head(model, kind: str, seed: int = 5, bias: float = 0.0):
    """A presence head of 8 hidden units with random weights and statistics."""
    torch.manual_seed(seed)
    head = model.make_presence_head(8, kind)
    for p in head.classifier.parameters():
        torch.nn.init.normal_(p, std=0.5)
    with torch.no_grad():
        head.classifier[-1].bias.fill_(bias)
        head.mean.normal_()
        head.std.uniform_(0.5, 2.0)
    return head


def test_new_head_gives_what_pytorch_gives(tiny_onnx):
    model, path = tiny_onnx
    # "no mask" below the tiny model's logits
    head = _random_head(model, model.presence.kind, bias=-5.0)
    blob = with_head(path, head)
    model.attach_presence(head)
    x = model_input(_crops(2), 32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(blob, x), want, atol=1e-4)
    assert not np.allclose(_run(path, x), want, atol=1e-2)  # the old head said otherwise


def test_head_of_another_shape_is_refused(tiny_onnx):
    model, path = tiny_onnx
    with pytest.raises(ValueError, match="new head"):
        with_head(path, model.make_presence_head(16, model.presence.kind))


def test_int8_twin_keeps_its_segmentation():
    """In the shipped INT8 twin only the head changes: a head that always says "mask" leaves
    the mask of a masked face as it was; one that always says "no mask" empties it."""
    face = read_image(ROOT / "examples" / "face.jpg")
    x = model_input([face], 160)
    before = _run(TWIN, x)
    assert (before > 0).mean() > 0.1  # the twin finds the mask
    assert feature_name(TWIN)
    cfg = read_onnx_info(TWIN)[0].model  # whichever features the shipped head reads
    head = create_model(cfg).make_presence_head(cfg.presence_hidden, cfg.presence_features)
    with torch.no_grad():
        head.classifier[-1].weight.zero_()
        head.classifier[-1].bias.fill_(50.0)
    yes = _run(with_head(TWIN, head), x)
    np.testing.assert_array_equal(yes > 0, before > 0)
    with torch.no_grad():
        head.classifier[-1].bias.fill_(-50.0)
    no = _run(with_head(TWIN, head), x)
    assert no.max() <= -49.0


def test_pooled_head_rebuilt_as_masked_gives_what_pytorch_gives(tmp_path: Path):
    """An exported model whose head reads pooled features gets a masked one built in its
    graph: features and gated logits equal PyTorch's with that head attached."""
    from maskseg.config import Config
    from maskseg.train.export import _metadata, to_onnx
    from maskseg.train.gate_onnx import with_masked_features

    torch.manual_seed(0)
    cfg = ModelConfig(
        name="unet", params={"base_channels": 4, "depth": 2}, presence=True, presence_hidden=8
    )
    model = create_model(cfg).eval()
    to_onnx(model, 32, tmp_path / "m.onnx", exporter="legacy")
    meta = {"format": "maskseg", "config": Config(model=cfg).to_dict()}
    (tmp_path / "m.onnx").write_bytes(_metadata(tmp_path / "m.onnx", meta))
    head = _random_head(model, "masked", bias=-2.0)
    blob = with_masked_features(tmp_path / "m.onnx", head, 32)
    crops = _crops(3)
    model.attach_presence(head)
    np.testing.assert_allclose(
        onnx_features(blob, crops, 32), encoder_features(model, crops, 32, kind="masked"), atol=1e-4
    )
    x = model_input(crops, 32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(blob, x), want, atol=1e-4)
    (tmp_path / "masked.onnx").write_bytes(blob)
    assert read_onnx_info(tmp_path / "masked.onnx")[0].model.presence_features == "masked"
    # and again on the rebuilt file: its masked head is replaced, not stacked
    head2 = _random_head(model, "masked", seed=7)
    again = with_masked_features(blob, head2, 32)
    model.attach_presence(head2)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(again, x), want, atol=1e-4)
    with pytest.raises(ValueError, match="masked"):
        with_masked_features(tmp_path / "m.onnx", model.make_presence_head(8), 32)


def test_int8_twin_rebuilt_as_masked_keeps_its_segmentation():
    from maskseg.train.gate_onnx import with_masked_features

    face = read_image(ROOT / "examples" / "face.jpg")
    x = model_input([face], 160)
    before = _run(TWIN, x)
    net = create_model(
        ModelConfig(name="unet", params={"base_channels": 16, "depth": 4}, presence=True)
    )
    head = net.make_presence_head(256, "masked")
    with torch.no_grad():
        head.classifier[-1].weight.zero_()
        head.classifier[-1].bias.fill_(50.0)
    blob = with_masked_features(TWIN, head)  # the size the gated graph fixes
    np.testing.assert_array_equal(_run(blob, x) > 0, before > 0)
    n = type(head).n_features(net.feature_widths, "masked")
    assert onnx_features(blob, [face], 160).shape == (1, n)
