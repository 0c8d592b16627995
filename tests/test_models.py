"""Contracts every registered architecture must keep (a new one inherits these tests): the
``SegmentationModel`` contract the pipeline, gate and export rely on, and the registry."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from maskseg.config import Config, ModelConfig
from maskseg.models import (
    PresenceHead,
    SegmentationModel,
    UNet,
    complete_params,
    create_model,
    list_models,
    model_class,
    register_model,
)
from maskseg.models import registry as model_registry
from maskseg.pipeline.weights import load_model_file
from maskseg.train.checkpoint import save_checkpoint, save_weights
from maskseg.train.losses import BCEDiceLoss, soft_dice_loss

ARCHITECTURES = list_models()

# Small params of each architecture for fast tests: a new architecture adds its own here.
TINY = {
    name: {"base_channels": 4, "depth": 2}
    for name in ("unet", "resunet", "attunet", "lrunet", "unetpp")
}


def tiny(name: str, **options) -> ModelConfig:
    return ModelConfig(name=name, params=TINY[name], **options)


def test_every_architecture_has_tiny_params():
    missing = sorted(set(ARCHITECTURES) - set(TINY))
    assert not missing, f"add small params for {missing} to TINY"


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("presence", [False, True], ids=["plain", "presence"])
@pytest.mark.parametrize("hw", [(1, 1), (37, 53), (64, 64), (17, 200)])
def test_logits_have_the_input_size(name: str, presence: bool, hw):
    model = create_model(tiny(name, presence=presence)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *hw))
    assert out.shape == (2, 1, *hw) and out.dtype == torch.float32


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("hw", [(1, 1), (37, 53), (32, 32)])
def test_encoder_features_match_feature_widths(name: str, hw):
    model = create_model(tiny(name)).eval()
    assert isinstance(model, SegmentationModel)
    with torch.no_grad():
        features = model.encode(torch.randn(2, 3, *hw))
        assert [f.shape[1] for f in features] == list(model.feature_widths)
        assert all(f.shape[0] == 2 and f.dim() == 4 and min(f.shape[2:]) >= 1 for f in features)
        logits = model.decode(features, hw)
        assert logits.shape == (2, 1, *hw)
        n = PresenceHead.n_features(model.feature_widths)
        assert model.presence_features(torch.randn(3, 3, *hw)).shape == (3, n)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_head_is_the_only_one_channel_conv(name: str):
    """INT8 export finds the logit head as the only Conv with one output channel and keeps
    it in fp32 (maskseg.train.quantize); another such conv would stay fp32 too: only the
    attention gates' weight convs may (a per-pixel weight in (0, 1), kept precise)."""
    from maskseg.models.parts import AttentionGate

    model = create_model(tiny(name, presence=True))
    assert isinstance(model.head, torch.nn.Conv2d) and model.head.out_channels == 1
    gates = [c for m in model.modules() if isinstance(m, AttentionGate) for c in m.modules()]
    ones = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d) and m.out_channels == 1 and not any(m is g for g in gates)
    ]
    assert ones == [model.head]
    assert len(gates) == 0 or name == "attunet"


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_presence_slot_gates_the_logits(name: str):
    plain = create_model(tiny(name))
    assert plain.presence is None
    torch.manual_seed(0)
    model = create_model(tiny(name, presence=True, presence_hidden=8)).eval()
    assert isinstance(model.presence, PresenceHead)
    keys = [k for k in model.state_dict() if k not in plain.state_dict()]
    assert keys and all(k.startswith("presence.") for k in keys)  # kept fp32 by --half
    torch.nn.init.constant_(model.presence.classifier[-1].bias, -3.0)
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        features = model.encode(x)
        logits = model.decode(features, (24, 24))
        gate = model.presence(features)
        torch.testing.assert_close(model(x), torch.minimum(logits, gate[:, :, None, None]))
    with pytest.raises(ValueError, match="features"):
        model.attach_presence(PresenceHead([1, 2], 0))


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("hw", [(1, 1), (37, 53), (32, 32)])
def test_masked_presence_head_gates_the_logits(name: str, hw):
    """A ``masked`` head reads the decoder's logits too; the model file keeps its kind."""
    torch.manual_seed(0)
    cfg = tiny(name, presence=True, presence_hidden=8, presence_features="masked")
    model = create_model(cfg).eval()
    assert model.presence.kind == "masked"
    n = PresenceHead.n_features(model.feature_widths, "masked")
    assert n == PresenceHead.n_features(model.feature_widths) + sum(model.feature_widths) + 16
    assert model.presence.mean.numel() == n
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        features = model.encode(x)
        logits = model.decode(features, hw)
        gate = model.presence(features, logits)
        torch.testing.assert_close(model(x), torch.minimum(logits, gate[:, :, None, None]))
        assert model.presence_features(x, "masked").shape == (2, n)
    with pytest.raises(ValueError, match="logits"):
        model.presence(features)
    model.attach_presence(model.make_presence_head(8))  # a refit may change the kind
    with torch.no_grad():
        assert model.presence.kind == "pooled" and model(x).shape == (2, 1, *hw)
    with pytest.raises(ValueError, match="features"):
        model.attach_presence(PresenceHead([1, 2], 0, "masked"))


def test_masked_features_by_hand():
    """One 1-channel 2 x 2 map [[1, 2], [3, 4]]; the decoder says mask on the bottom half of a
    4 x 4 input: mask-weighted mean (3 + 4) / 4 / (0.5 + 0.05), the mask's grid 8 x 0, 8 x 1."""
    m = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    logits = torch.full((1, 1, 4, 4), -100.0)
    logits[..., 2:, :] = 100.0
    f = PresenceHead.features([m], logits, "masked")[0]
    # pooled: the map's mean, then the deepest (only) map on a 2 x 2 grid
    torch.testing.assert_close(f[:5], torch.tensor([2.5, 1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(f[5], torch.tensor(1.75 / 0.55))
    torch.testing.assert_close(f[6:], torch.tensor([0.0] * 8 + [1.0] * 8))
    # no mask anywhere: the mask-weighted mean is 0, not the mean of nothing
    f = PresenceHead.features([m], torch.full((1, 1, 4, 4), -100.0), "masked")[0]
    assert float(f[5]) == 0.0 and float(f[6:].sum()) == 0.0
    with pytest.raises(ValueError, match="unknown presence features"):
        PresenceHead([1], 0, "pixels")


def test_masked_head_survives_its_weight_file(tmp_path: Path):
    torch.manual_seed(0)
    cfg = Config(model=tiny("unet", presence=True, presence_hidden=4, presence_features="masked"))
    model = create_model(cfg.model).eval()
    with torch.no_grad():
        model.presence.mean.normal_()
    save_weights(tmp_path / "m.safetensors", model, cfg, {})
    state, loaded_cfg = load_model_file(tmp_path / "m.safetensors")[:2]
    assert loaded_cfg.model.presence_features == "masked"
    loaded = create_model(loaded_cfg.model).eval()
    loaded.load_state_dict(state)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_gate_fits_on_every_architecture(name: str):
    from maskseg.train.gate import GateConfig, fit_presence

    rng = np.random.default_rng(0)
    model = create_model(tiny(name))
    crops = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(8)]
    figures = fit_presence(model, crops[:4], crops[4:], 32, GateConfig(hidden=4, epochs=2))
    assert 0 <= figures["train_accuracy"] <= 1 and isinstance(model.presence, PresenceHead)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_gradients_reach_every_parameter(name: str):
    model = create_model(tiny(name))
    loss = BCEDiceLoss()(model(torch.randn(2, 3, 32, 32)), torch.rand(2, 1, 32, 32).round())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("presence", [False, True], ids=["plain", "presence"])
def test_save_load_round_trip(name: str, presence: bool, tmp_path: Path):
    cfg = Config(model=tiny(name, presence=presence, presence_hidden=8))
    model = create_model(cfg.model).eval()
    x = torch.randn(1, 3, 40, 40)
    save_weights(tmp_path / "w.safetensors", model, cfg, {"iou": 0.5})
    save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "config": cfg.to_dict()})
    for file in ("w.safetensors", "c.pt"):
        state, cfg2, _ = load_model_file(tmp_path / file)
        assert cfg2 == cfg
        m2 = create_model(cfg2.model).eval()
        m2.load_state_dict(state)
        with torch.no_grad():
            torch.testing.assert_close(m2(x), model(x))


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("presence", [False, True], ids=["plain", "presence"])
def test_onnx_export_matches_pytorch(name: str, presence: bool, tmp_path: Path):
    from maskseg.pipeline.backends.onnx import open_session
    from maskseg.train.export import INPUT, to_onnx, torch_logits

    torch.manual_seed(0)
    model = create_model(tiny(name, presence=presence, presence_hidden=8)).eval()
    dynamic = to_onnx(model, 32, tmp_path / "m.onnx", exporter="legacy")
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    got = open_session(tmp_path / "m.onnx").run(None, {INPUT: x})[0]
    np.testing.assert_allclose(got, torch_logits(model, x), atol=1e-4)
    if dynamic:
        x = x[:1, :, :29, :21]
        got = open_session(tmp_path / "m.onnx").run(None, {INPUT: x})[0]
        np.testing.assert_allclose(got, torch_logits(model, x), atol=1e-4)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_params_are_the_architectures_own(name: str):
    cls = model_class(name)
    assert dataclasses.is_dataclass(cls.Params)
    full = complete_params(ModelConfig(name=name, params={}))
    assert full.params == dataclasses.asdict(cls.Params())  # defaults written out
    assert complete_params(full) == full
    with pytest.raises(ValueError, match=f"unknown param.*{name}.*valid"):
        create_model(ModelConfig(name=name, params={"no_such_option": 1}))


def test_unet_params_defaults_are_the_flat_ones():
    """Old flat configs (runs, shipped files) were read with these defaults; the U-Net's
    Params must keep them, or an old partial config would build another network."""
    from maskseg.config import FLAT_PARAMS
    from maskseg.models import UNetParams

    assert FLAT_PARAMS["unet"] == dataclasses.asdict(UNetParams())
    assert complete_params(ModelConfig()) == ModelConfig()


def test_registry():
    assert "unet" in list_models()
    assert isinstance(create_model(ModelConfig(base_channels=4, depth=2)), UNet)
    valid = "valid: attunet, lrunet, resunet, unet, unetpp"
    with pytest.raises(ValueError, match=f"unknown model 'segformer'; {valid}"):
        create_model(ModelConfig(name="segformer"))
    with pytest.raises(ValueError):
        UNet(depth=0)


def test_register_refuses_a_taken_name(monkeypatch):
    monkeypatch.setattr(model_registry, "_REGISTRY", dict(model_registry._REGISTRY))
    with pytest.raises(ValueError, match=r"'unet' is already registered.*maskseg.models.unet:UNet"):
        register_model("unet", UNet)
    assert model_class("unet") is UNet  # unchanged
    register_model("unet-twin", "maskseg.models.unet:UNet")  # resolved lazily
    assert "unet-twin" in list_models()
    with pytest.raises(ValueError, match="'unet-twin' is already registered"):
        register_model("unet-twin", UNet)
    net = create_model(ModelConfig(name="unet-twin", params={"base_channels": 4, "depth": 2}))
    assert isinstance(net, UNet)
    register_model("unet-twin", UNet, replace=True)  # on purpose only
    with pytest.raises(TypeError, match="SegmentationModel"):
        register_model("plain", torch.nn.Conv2d)
    with pytest.raises(ValueError, match="module:Class"):
        register_model("nowhere", "maskseg.models.unet")
    register_model("broken", "maskseg.models.parts:Down")
    with pytest.raises(TypeError, match="not a SegmentationModel"):
        create_model(ModelConfig(name="broken"))


def test_names_list_without_torch():
    """``maskseg models`` in the light install lists the architectures: the registry needs
    no PyTorch until a model is built."""
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('blocked', name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from maskseg.models import create_model, list_models\n"
        "from maskseg.config import ModelConfig\n"
        "print(','.join(list_models()))\n"
        "try:\n"
        "    create_model(ModelConfig())\n"
        "except ImportError:\n"
        "    print('needs torch')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [",".join(list_models()), "needs torch"]


def test_bad_model_files(tmp_path: Path):
    (tmp_path / "x.pt").write_bytes(b"garbage")
    (tmp_path / "x.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="x.pt"):
        load_model_file(tmp_path / "x.pt")
    with pytest.raises(ValueError, match="x.safetensors"):
        load_model_file(tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError):
        load_model_file(tmp_path / "none.pt")


def test_dice_loss_hand_values():
    big = torch.full((1, 1, 2, 2), 50.0)  # sigmoid ~ 1 everywhere
    ones = torch.ones(1, 1, 2, 2)
    assert soft_dice_loss(big, ones).item() == pytest.approx(0.0, abs=1e-6)
    # prediction 1 everywhere, truth half: 1 - (2*2 + 1) / (4 + 2 + 1) = 2/7
    half = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert soft_dice_loss(big, half).item() == pytest.approx(2 / 7, abs=1e-5)


def test_ensemble_and_flip_tta_files(tmp_path: Path):
    from maskseg.models import Ensemble, FlipTTA
    from maskseg.train.checkpoint import combine_weights

    cfg = Config(model=ModelConfig(base_channels=4, depth=2))
    nets = []
    for i in range(2):
        torch.manual_seed(i)
        nets.append(create_model(cfg.model).eval())
        save_weights(tmp_path / f"m{i}.safetensors", nets[-1], cfg)
    x = torch.randn(1, 3, 24, 24)
    out_cfg, _ = combine_weights(
        [tmp_path / "m0.safetensors", tmp_path / "m1.safetensors"],
        tmp_path / "ens.safetensors",
        flip_tta=True,
    )
    assert out_cfg.model.members == 2 and out_cfg.model.flip_tta
    state, cfg2, _ = load_model_file(tmp_path / "ens.safetensors")
    ens = create_model(cfg2.model).eval()
    ens.load_state_dict(state)
    assert isinstance(ens, FlipTTA) and isinstance(ens.model, Ensemble)
    with torch.no_grad():
        per = [(n(x) + n(x.flip(-1)).flip(-1)) / 2 for n in nets]
        torch.testing.assert_close(ens(x), (per[0] + per[1]) / 2, rtol=1e-4, atol=1e-5)
    other = Config(model=ModelConfig(base_channels=8, depth=2))
    save_weights(tmp_path / "big.safetensors", create_model(other.model), other)
    with pytest.raises(ValueError, match="differs"):
        combine_weights([tmp_path / "m0.safetensors", tmp_path / "big.safetensors"], tmp_path / "x")
    with pytest.raises(ValueError, match="already"):
        combine_weights([tmp_path / "ens.safetensors"], tmp_path / "y")


def test_lovasz_hinge_hand_values():
    from maskseg.train.losses import lovasz_hinge_loss

    t = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    confident = (2 * t - 1) * 10
    assert lovasz_hinge_loss(confident, t).item() == pytest.approx(0.0)  # right with margin
    assert lovasz_hinge_loss(torch.zeros_like(t), t).item() == pytest.approx(1.0)  # all at 0
    assert lovasz_hinge_loss(-confident, t).item() == pytest.approx(11.0)  # wrong, margin 10
    logits = torch.zeros_like(t, requires_grad=True)
    BCEDiceLoss(lovasz_weight=1.0)(logits, t).backward()
    # descending the loss must raise truth pixels' logits and lower the others'
    assert (logits.grad[t > 0] < 0).all() and (logits.grad[t == 0] > 0).all()


@pytest.mark.parametrize("hw", [(1, 1), (37, 53)])
def test_separable_block_keeps_the_contract(hw):
    """The depthwise-separable block (ModelConfig.block) is an option of the U-Net, not a
    registered architecture, so it gets the contract checks here."""
    model = create_model(ModelConfig(base_channels=8, depth=2, block="separable"))
    out = model(torch.randn(2, 3, *hw))
    assert out.shape == (2, 1, *hw)
    BCEDiceLoss()(out, torch.rand(2, 1, *hw).round()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() for p in model.parameters())
    plain = create_model(ModelConfig(base_channels=8, depth=2))
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in plain.parameters())
    with pytest.raises(ValueError, match="valid: double, separable"):
        UNet(block="inverted")


def test_lrunet_works_at_half_resolution_and_costs_a_quarter():
    """The stem halves the input at once; the decoder's logits are resized to the input; at
    equal base channels the multiply-adds of the U-Net's convolutions drop about 4x."""
    from maskseg.models.lrunet import LRUNet
    from maskseg.models.measure import conv_macs

    net = LRUNet(base_channels=8, depth=3).eval()
    x = torch.randn(2, 3, 64, 48)
    feats = net.encode(x)
    assert [f.shape[-2:] for f in feats] == [(32, 24), (16, 12), (8, 6), (4, 3)]
    assert net(x).shape == (2, 1, 64, 48)

    ratio = conv_macs(UNet(base_channels=8, depth=3).eval(), 64) / conv_macs(net, 64)
    assert 3.5 < ratio < 4.5, ratio


def test_conv_macs_and_parameters_hand_computed():
    """A 3x3 conv 3 -> 4 on 8 x 8 (padding 1): 64 outputs x 4 channels x 27 weights; a
    depthwise 3x3 on 4 channels after it: 64 x 4 x 9; parameters 3*4*9 + 4 + 4*9 + 4."""
    from maskseg.models.measure import conv_macs, parameters

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 3, padding=1, groups=4)
    )
    assert conv_macs(net, 8) == 64 * 4 * 27 + 64 * 4 * 9
    assert parameters(net) == 3 * 4 * 9 + 4 + 4 * 9 + 4
    # the hooks are gone afterwards: a second count is the same
    assert conv_macs(net, 8) == 64 * 4 * 27 + 64 * 4 * 9


def test_residual_block_adds_its_input_back():
    from maskseg.models.parts import ResidualConv

    block = ResidualConv(4, 4).eval()
    torch.nn.init.zeros_(block.body[-1].weight)  # the body's last BatchNorm: no correction
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))
    wider = ResidualConv(4, 8)
    assert isinstance(wider.shortcut[0], torch.nn.Conv2d) and wider.shortcut[0].out_channels == 8
    assert wider(x).shape == (2, 8, 8, 8)


def test_attention_gate_scales_the_skip_between_zero_and_itself():
    from maskseg.models.parts import AttentionGate

    gate = AttentionGate(4, 2).eval()
    skip, gating = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    bn = gate.weight[2]  # the weight map's BatchNorm: its bias decides the sigmoid's side
    with torch.no_grad():
        torch.nn.init.zeros_(bn.weight)
        bn.bias.fill_(20.0)
        torch.testing.assert_close(gate(skip, gating), skip)  # weight ~1: the skip passes
        bn.bias.fill_(-20.0)
        assert gate(skip, gating).abs().max() < 1e-6  # weight ~0: the skip is shut
        torch.nn.init.ones_(bn.weight)
        bn.bias.zero_()
        w = gate(skip, gating) / skip
        assert ((w > 0) & (w < 1)).all()  # one weight per pixel, shared by the channels
        torch.testing.assert_close(w, w[:, :1].expand_as(w))


def test_unetpp_nests_a_decoder_row_per_skip_level():
    """U-Net++ at depth 3: rows of 3, 2 and 1 nested nodes; node X[i][j] reads j earlier
    nodes of its row plus the node below (j + 1 maps of the row's width); a mask needs
    every node of the grid."""
    from maskseg.models.unetpp import UNetPlusPlus

    model = UNetPlusPlus(base_channels=4, depth=3).eval()
    assert [len(row) for row in model.nodes] == [3, 2, 1]
    widths = model.feature_widths  # 4, 8, 16, 32
    for i, row in enumerate(model.nodes):
        for j, node in enumerate(row, start=1):
            assert (
                node.reduce.in_channels == widths[i + 1] and node.reduce.out_channels == widths[i]
            )
            assert node.conv[0].in_channels == (j + 1) * widths[i]
    assert not hasattr(model, "up")
    # one forward pass runs each of the six nested nodes once
    calls = []
    hooks = [
        n.register_forward_hook(lambda m, i, o: calls.append(m)) for r in model.nodes for n in r
    ]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 24, 24))
    assert out.shape == (1, 1, 24, 24) and len(calls) == 6
    for h in hooks:
        h.remove()
