from pathlib import Path

import numpy as np
import pytest
import torch

from maskseg.config import Config, DataConfig, ModelConfig, TrainConfig
from maskseg.data.pairs import Sample, find_pairs, load_samples
from maskseg.models import create_model
from maskseg.pipeline.weights import load_checkpoint
from maskseg.train.dataset import SegmentationDataset
from maskseg.train.engine import (
    CHECKPOINT,
    evaluate,
    fit,
    make_scheduler,
    read_history,
    remove_stale_temp_files,
    train_one_epoch,
)
from maskseg.train.losses import BCEDiceLoss


def _cfg(**train) -> Config:
    t = dict(epochs=3, batch_size=4, lr=5e-3, warmup_epochs=1, progress=False, seed=3)
    t.update(train)
    return Config(
        data=DataConfig(image_size=32),
        model=ModelConfig(base_channels=4, depth=2),
        train=TrainConfig(**t),
    )


@pytest.fixture
def samples(msfd_tiny: Path):
    s, _ = load_samples(find_pairs(msfd_tiny).pairs)
    return s[:16], s[16:]


def _weights(model: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("preset", ["standard", "strong"])
def test_augmentation_keeps_image_and_mask_aligned(preset: str):
    """Image = mask drawn in white: after any augmentation, bright pixels must be mask pixels."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(6):
        mask = np.zeros((48, 48), bool)
        y, x = rng.integers(5, 25, 2)
        mask[y : y + 20, x : x + 15] = True
        image = np.repeat(np.where(mask[..., None], 230, 20).astype(np.uint8), 3, axis=2)
        samples.append(Sample(str(i), image, mask))
    ds = SegmentationDataset(samples, 48, augment=preset, seed=0)
    plain = SegmentationDataset(samples, 48)
    changed = 0
    for e in range(4):
        ds.epoch = e
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 48, 48) and y.shape == (1, 48, 48)
            assert x.dtype == y.dtype == np.float32
            assert set(np.unique(y).tolist()) <= {0.0, 1.0}
            changed += not np.array_equal(y, plain[i][1])
            inside, outside = x.mean(0)[y[0] > 0], x.mean(0)[y[0] == 0]
            assert inside.mean() > outside.mean() + 1.0, "mask moved without its image"
    assert changed > 0
    ds.epoch = 1
    first = ds[2][0]
    np.testing.assert_array_equal(first, ds[2][0])  # same (epoch, index) -> same result
    ds.epoch = 2
    assert not np.array_equal(first, ds[2][0])  # another epoch, another augmentation
    with pytest.raises(ValueError, match="valid: none"):
        SegmentationDataset(samples, 48, augment="wild")


def test_fit_learns_and_writes_run_files(samples, tmp_path: Path):
    res = fit(_cfg(epochs=6), *samples, tmp_path)
    assert res.epochs_run == 6 and 1 <= res.best_epoch <= 6
    hist = read_history(tmp_path / "metrics.csv")
    assert len(hist) == 6 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert {"val_iou", "val_dice", "lr", "val_loss"} <= set(hist[0])
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert (tmp_path / "best.safetensors").exists()
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert ckpt["epoch"] == 6 and {"optimizer", "scheduler", "config", "history"} <= set(ckpt)
    assert not list(tmp_path.glob("*.tmp"))


def test_same_seed_same_result(samples, tmp_path: Path):
    a = fit(_cfg(epochs=2), *samples, tmp_path / "a")
    b = fit(_cfg(epochs=2), *samples, tmp_path / "b")
    for k, v in _weights(a.model).items():
        torch.testing.assert_close(v, b.model.state_dict()[k], rtol=0, atol=0)
    c = fit(_cfg(epochs=2, seed=4), *samples, tmp_path / "c")
    assert not torch.equal(a.model.head.weight, c.model.head.weight)


class Killed(Exception):
    pass


def test_resume_mid_epoch_matches_uninterrupted_run(samples, tmp_path: Path):
    full = fit(_cfg(), *samples, tmp_path / "full")

    def kill(epoch: int, step: int) -> None:
        if (epoch, step) == (1, 2):  # after the 2nd step of the 2nd epoch
            raise Killed

    with pytest.raises(Killed):
        fit(_cfg(), *samples, tmp_path / "cut", checkpoint_interval=0, on_step=kill)
    ckpt = load_checkpoint(tmp_path / "cut" / CHECKPOINT)
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (1, 1)  # last save before the kill
    steps = []
    resumed = fit(
        _cfg(), *samples, tmp_path / "cut", resume=True, on_step=lambda e, s: steps.append((e, s))
    )
    assert steps[0] == (1, 2), "resume must continue mid-epoch, not restart"
    assert resumed.epochs_run == 3 and len(resumed.history) == 3
    for k, v in _weights(full.model).items():
        torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=1e-5, atol=1e-6)


def test_fit_without_validation_keeps_last_epoch(samples, tmp_path: Path):
    res = fit(_cfg(epochs=2), samples[0], [], tmp_path)
    assert res.best_epoch == 2
    assert "val_iou" not in res.history[0]


def test_fit_rejects_too_little_data(samples, tmp_path: Path):
    with pytest.raises(ValueError, match="at least 2"):
        fit(_cfg(), samples[0][:1], [], tmp_path)


def test_evaluate_at_truth_resolution_matches_predictor(samples, tmp_path: Path):
    from maskseg.evaluate.scoring import score
    from maskseg.pipeline.predictor import Predictor

    cfg = _cfg(epochs=1)
    model = fit(cfg, *samples, tmp_path, resume=False).model
    counts, loss = evaluate(model, samples[1], cfg, torch.device("cpu"))
    assert len(counts) == len(samples[1]) and np.isfinite(loss) and loss > 0
    assert int(counts.tp[0] + counts.fp[0] + counts.fn[0] + counts.tn[0]) == 64 * 64
    # Validation scores exactly what a user of the saved weights gets from Predictor.
    predictor = Predictor.load(tmp_path / "best.safetensors", precision=cfg.train.precision)
    again = score(predictor, samples[1]).counts
    np.testing.assert_array_equal(again.tp, counts.tp)
    np.testing.assert_array_equal(again.fp, counts.fp)


def _learning_rates(tc: TrainConfig, steps_per_epoch: int, steps: int) -> tuple[list, float]:
    """The learning rate of each of ``steps`` steps of ``tc``'s schedule, and the one after."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=tc.lr)
    sched = make_scheduler(opt, tc, steps_per_epoch)
    lrs = []
    for _ in range(steps):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return lrs, sched.get_last_lr()[0]


def test_lr_schedule_warms_up_then_decays_to_one_percent():
    lrs, last = _learning_rates(TrainConfig(epochs=10, warmup_epochs=2, lr=1.0), 5, 50)
    assert lrs[0] == pytest.approx(1 / 10)  # step 0 of a 10-step warm-up
    assert lrs[9] == pytest.approx(1.0)  # warm-up done
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))  # then never rises
    # halfway through the cosine: 0.01 + 0.99 * 0.5
    assert lrs[10 + 20] == pytest.approx(0.01 + 0.99 * 0.5, abs=1e-6)
    assert last == pytest.approx(0.01)


def test_lr_schedule_spans_a_budget_in_steps():
    """``TrainConfig.steps``: the cosine ends at the budget, whatever ``epochs`` says; the
    warm-up stays in epochs."""
    from maskseg.train.engine import budget

    tc = TrainConfig(epochs=10, steps=23, warmup_epochs=1, lr=1.0)
    assert budget(tc, steps_per_epoch=5) == (5, 23)  # 4 whole epochs and 3 steps of a 5th
    assert budget(TrainConfig(epochs=10), steps_per_epoch=5) == (10, 50)
    lrs, last = _learning_rates(tc, 5, 23)
    assert lrs[4] == pytest.approx(1.0)  # a 5-step warm-up
    # halfway through the 18 cosine steps: 0.01 + 0.99 * 0.5
    assert lrs[5 + 9] == pytest.approx(0.01 + 0.99 * 0.5, abs=1e-6)
    assert last == pytest.approx(0.01)  # the floor at the 23rd step


def test_fit_stops_after_exactly_its_budget_of_steps(samples, tmp_path: Path):
    """16 training pairs in batches of 4: 4 steps an epoch, so a budget of 10 steps is two
    whole epochs and half a third, which is validated like the others."""
    taken = []
    res = fit(_cfg(epochs=50, steps=10), *samples, tmp_path, on_step=lambda e, s: taken.append(e))
    assert len(taken) == 10 and taken.count(2) == 2
    assert res.epochs_run == 3 and len(res.history) == 3 and "val_iou" in res.history[-1]
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert ckpt["scheduler"]["last_epoch"] == 10  # the schedule's steps: the budget's
    assert res.history[-1]["lr"] == pytest.approx(_cfg().train.lr * 0.01)  # its floor
    assert [r["step"] for r in read_history(tmp_path / "metrics.csv")] == [4, 8, 10]


def test_resume_mid_budget_of_steps_matches_uninterrupted_run(samples, tmp_path: Path):
    """A run budgeted in steps killed in its last, short epoch and resumed: the same steps,
    the same weights as a run never stopped (how long runs span sessions)."""
    cfg = _cfg(epochs=50, steps=10)
    full = fit(cfg, *samples, tmp_path / "full")

    def kill(epoch: int, step: int) -> None:
        if (epoch, step) == (2, 1):  # the first step of the short third epoch
            raise Killed

    with pytest.raises(Killed):
        fit(cfg, *samples, tmp_path / "cut", checkpoint_interval=0, on_step=kill)
    steps = []
    resumed = fit(
        cfg, *samples, tmp_path / "cut", resume=True, on_step=lambda e, s: steps.append((e, s))
    )
    assert steps == [(2, 1), (2, 2)]
    for k, v in _weights(full.model).items():
        torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=1e-5, atol=1e-6)


def test_train_one_epoch_in_bf16_and_fp32(samples):
    """bf16 autocast (the default where the CPU has it) trains: finite losses that fall, and
    its forward pass stays close to fp32's."""
    cfg = _cfg()
    ds = SegmentationDataset(samples[0], 32)
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    for precision in ("bf16", "fp32"):
        torch.manual_seed(0)
        model = create_model(cfg.model)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
        sched = make_scheduler(opt, cfg.train, len(loader))
        seen = []
        losses = [
            train_one_epoch(
                model,
                BCEDiceLoss(),
                opt,
                sched,
                loader,
                torch.device("cpu"),
                precision,
                after_step=seen.append,
            )
            for _ in range(4)
        ]
        assert len(seen) == 4 * len(loader) and all(np.isfinite(seen))
        assert np.mean(losses[-1]) < np.mean(losses[0]), precision
    x = torch.from_numpy(ds[0][0])[None]
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x).float()
    with torch.no_grad():
        full = model(x)
    assert low.dtype == torch.float32
    assert (low - full).abs().max() < 0.1 * full.abs().max() + 0.05


def test_stale_temp_files_removed_on_resume(samples, tmp_path: Path):
    fit(_cfg(epochs=1), *samples, tmp_path)
    stale = tmp_path / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".notes.txt.x.tmp"  # not a run file: left alone
    other.write_bytes(b"x")
    fit(_cfg(epochs=2), *samples, tmp_path, resume=True)
    assert not stale.exists() and other.exists()
    assert remove_stale_temp_files(tmp_path) == []


def test_fit_refuses_ensembles(samples, tmp_path: Path):
    cfg = _cfg()
    with pytest.raises(ValueError, match="maskseg pack"):
        fit(cfg.replace("model", members=2), *samples, tmp_path)


def test_init_starts_from_the_weights_and_drops_a_gate(tmp_path: Path):
    """--init (fine-tuning): a fresh model takes the file's segmentation weights exactly, in
    half precision too; a gate in the file is left out; another architecture is refused."""
    from maskseg.train.checkpoint import save_weights
    from maskseg.train.engine import load_init

    small = ModelConfig(base_channels=4, depth=2)
    cfg = Config(model=small)
    torch.manual_seed(1)
    src = create_model(ModelConfig(base_channels=4, depth=2, presence=True, presence_hidden=8))
    path = tmp_path / "gated.safetensors"
    save_weights(path, src, _gated_cfg(), half=True)
    torch.manual_seed(2)
    fresh = create_model(small)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    load_init(fresh, cfg, str(path))
    after = fresh.state_dict()
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert changed  # the weights moved to the file's
    for k, v in after.items():
        assert torch.equal(v, src.state_dict()[k].half().float()), k
    assert not any(k.startswith("presence") for k in after)
    with pytest.raises(ValueError, match="--init weights"):
        load_init(
            create_model(ModelConfig(base_channels=8, depth=2)),
            Config(model=ModelConfig(base_channels=8, depth=2)),
            str(path),
        )


def _gated_cfg() -> Config:
    return Config(model=ModelConfig(base_channels=4, depth=2, presence=True, presence_hidden=8))
