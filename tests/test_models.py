"""Contracts every registered architecture must keep (a new one inherits these tests)."""

from pathlib import Path

import pytest
import torch

from maskseg.config import Config, ModelConfig
from maskseg.models import UNet, create_model, list_models
from maskseg.pipeline.weights import load_model_file
from maskseg.train.checkpoint import save_checkpoint, save_weights
from maskseg.train.losses import BCEDiceLoss, soft_dice_loss

ARCHITECTURES = list_models()


def tiny(name: str) -> ModelConfig:
    return ModelConfig(name=name, base_channels=4, depth=2)


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("hw", [(1, 1), (37, 53), (64, 64), (17, 200)])
def test_logits_have_the_input_size(name: str, hw):
    model = create_model(tiny(name)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *hw))
    assert out.shape == (2, 1, *hw) and out.dtype == torch.float32


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_gradients_reach_every_parameter(name: str):
    model = create_model(tiny(name))
    loss = BCEDiceLoss()(model(torch.randn(2, 3, 32, 32)), torch.rand(2, 1, 32, 32).round())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_save_load_round_trip(name: str, tmp_path: Path):
    cfg = Config(model=tiny(name))
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


def test_registry():
    assert "unet" in list_models()
    assert isinstance(create_model(ModelConfig(base_channels=4, depth=2)), UNet)
    with pytest.raises(ValueError, match="valid: unet"):
        create_model(ModelConfig(name="segformer"))
    with pytest.raises(ValueError):
        UNet(depth=0)


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
