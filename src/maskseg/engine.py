"""Training and evaluation: train_one_epoch, evaluate, fit (early stopping, checkpoints, resume).

Determinism: batch order comes from (seed, epoch) and each sample's augmentation from
(seed, epoch, index), so an interrupted run resumed from a mid-epoch checkpoint takes exactly
the steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from maskseg import metrics as M
from maskseg.checkpoint import load_checkpoint, load_weights, save_checkpoint, save_weights
from maskseg.config import Config, TrainConfig
from maskseg.data import Sample
from maskseg.io import atomic_write_bytes
from maskseg.losses import BCEDiceLoss
from maskseg.models import create_model, is_trainable
from maskseg.preprocess import clean_mask, logits_to_mask, resize_image, resize_mask, to_tensor
from maskseg.transforms import train_transform
from maskseg.viz import plot_curves

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
BEST_WEIGHTS = "best.safetensors"
METRICS_CSV = "metrics.csv"
CURVES_PNG = "curves.png"


# --------------------------------------------------------------------------- device / precision


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 (AVX512-BF16 or AMX): there bf16 autocast pays off."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, c, lambda: False)() for c in checks)


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CPUs with native bf16, AMP on CUDA (bf16, else fp16), else fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if precision == "fp16":
            dtype = torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if precision == "bf16" or (precision == "auto" and cpu_supports_bf16()):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def needs_grad_scaler(device: torch.device, precision: str) -> bool:
    if device.type != "cuda" or precision == "fp32":
        return False
    return precision == "fp16" or not torch.cuda.is_bf16_supported()


# --------------------------------------------------------------------------- data


class SegmentationDataset(Dataset):
    """Samples resized once to the model's input size; augmentation seeded per (epoch, index)."""

    def __init__(self, samples: list[Sample], size: int, augment: str = "none", seed: int = 0):
        self.ids = [s.id for s in samples]
        self.images = np.stack([resize_image(s.image, size) for s in samples])
        self.masks = np.stack([resize_mask(s.mask, size) for s in samples]).astype(np.uint8)
        self.transform = train_transform(augment)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.images[i], self.masks[i]
        if self.transform is not None:
            self.transform.set_random_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        x = to_tensor(image)[0]
        y = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
        return x, y


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    images: np.ndarray,
    device: torch.device,
    precision: str = "auto",
    batch_size: int = 32,
) -> torch.Tensor:
    """Logits (N, 1, S, S) for RGB uint8 images (N, S, S, 3) already at the model's size."""
    model.eval()
    outs = []
    for i in range(0, len(images), batch_size):
        x = to_tensor(images[i : i + batch_size]).to(device, memory_format=torch.channels_last)
        with autocast_context(device, precision):
            outs.append(model(x).float().cpu())
    return torch.cat(outs) if outs else torch.zeros(0, 1, 1, 1)


def evaluate(
    model: torch.nn.Module,
    samples: list[Sample],
    size: int,
    device: torch.device,
    precision: str = "auto",
    postprocess: bool = True,
) -> tuple[M.Counts, float]:
    """Per-image confusion counts at each ground truth's original resolution, and mean BCE+Dice.

    Logits are upsampled to the truth's size before thresholding and the mask is cleaned as
    ``Predictor`` cleans it, so the score is the one a user gets on the original image.
    """
    if not samples:
        return M.empty_counts(), float("nan")
    images = np.stack([resize_image(s.image, size) for s in samples])
    logits = predict_logits(model, images, device, precision)
    parts = []
    loss_fn = BCEDiceLoss()
    losses = []
    for s, lg in zip(samples, logits, strict=True):
        pred = logits_to_mask(lg, *s.mask.shape)
        parts.append(M.confusion(clean_mask(pred) if postprocess else pred, s.mask))
        target = torch.from_numpy(resize_mask(s.mask, size).astype(np.float32))[None, None]
        losses.append(float(loss_fn(lg[None], target)))
    return M.concat(parts), float(np.mean(losses))


# --------------------------------------------------------------------------- training


def make_scheduler(opt: torch.optim.Optimizer, tc: TrainConfig, steps_per_epoch: int):
    """Linear warm-up, then cosine decay to 1% of the peak LR, stepped per batch."""
    total = max(1, tc.epochs * steps_per_epoch)
    warm = min(total - 1, tc.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@dataclass
class FitResult:
    run_dir: Path
    best_epoch: int
    best_metric: float
    epochs_run: int
    history: list[dict]
    model: torch.nn.Module


class _Trainer:
    """Holds the mutable state of one run so fit() reads top to bottom."""

    def __init__(self, cfg: Config, run_dir: Path, device: torch.device, steps_per_epoch: int):
        self.cfg, self.run_dir, self.device = cfg, run_dir, device
        tc = cfg.train
        torch.manual_seed(tc.seed)
        self.model = create_model(cfg.model).to(device, memory_format=torch.channels_last)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay
        )
        self.sched = make_scheduler(self.opt, tc, steps_per_epoch)
        self.loss_fn = BCEDiceLoss(tc.bce_weight, tc.dice_weight, tc.lovasz_weight)
        self.scaler = (
            torch.amp.GradScaler("cuda") if needs_grad_scaler(device, tc.precision) else None
        )
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0  # completed steps of the current epoch
        self.loss_sum = 0.0
        self.best_metric = -math.inf
        self.best_epoch = -1
        self.bad_epochs = 0
        self.history: list[dict] = []

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "loss_sum": self.loss_sum,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "config": self.cfg.to_dict(),
        }

    def restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        if self.scaler and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        for key in ("epoch", "step_in_epoch", "loss_sum", "best_metric", "best_epoch",
                    "bad_epochs", "history"):  # fmt: skip
            setattr(self, key, ckpt[key])

    def save(self) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT, self.state())


def train_one_epoch(
    tr: _Trainer,
    dataset: SegmentationDataset,
    checkpoint_interval: float,
    on_step: Callable[[int, int], None] | None = None,
) -> float:
    """Run the rest of the current epoch (from tr.step_in_epoch); returns the mean train loss."""
    tc, device = tr.cfg.train, tr.device
    dataset.epoch = tr.epoch
    bs = min(tc.batch_size, len(dataset))
    order = epoch_order(len(dataset), tc.seed, tr.epoch)
    n_steps = len(dataset) // bs  # drop the ragged last batch: BatchNorm dislikes tiny batches
    batches = [order[i * bs : (i + 1) * bs] for i in range(n_steps)]
    loader = DataLoader(
        dataset, batch_sampler=batches[tr.step_in_epoch :], num_workers=tc.num_workers
    )
    tr.model.train()
    last_save = time.monotonic()
    bar = tqdm(
        loader,
        total=n_steps,
        initial=tr.step_in_epoch,
        desc=f"epoch {tr.epoch + 1}/{tc.epochs}",
        disable=not tc.progress,
        leave=False,
        dynamic_ncols=True,
    )
    for x, y in bar:
        x = x.to(device, memory_format=torch.channels_last, non_blocking=True)
        y = y.to(device, non_blocking=True)
        with autocast_context(device, tc.precision):
            logits = tr.model(x)
        loss = tr.loss_fn(logits, y)
        tr.opt.zero_grad(set_to_none=True)
        if tr.scaler:
            tr.scaler.scale(loss).backward()
            tr.scaler.step(tr.opt)
            tr.scaler.update()
        else:
            loss.backward()
            tr.opt.step()
        tr.sched.step()
        tr.loss_sum += float(loss.detach())
        tr.step_in_epoch += 1
        bar.set_postfix(loss=f"{tr.loss_sum / tr.step_in_epoch:.4f}")
        if on_step:
            on_step(tr.epoch, tr.step_in_epoch)
        if tr.step_in_epoch < n_steps and time.monotonic() - last_save >= checkpoint_interval:
            tr.save()  # mid-epoch checkpoint: a kill now loses at most checkpoint_interval s
            last_save = time.monotonic()
    bar.close()
    return tr.loss_sum / max(1, n_steps)


def fit(
    cfg: Config,
    train_samples: list[Sample],
    val_samples: list[Sample],
    run_dir: str | Path,
    resume: bool = False,
    checkpoint_interval: float = 60.0,
    on_step: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Train with early stopping on validation IoU; without validation samples, train all epochs.

    Writes into run_dir: checkpoint.pt (full state, atomically, at every epoch end and every
    ``checkpoint_interval`` seconds), best.safetensors (best weights + config), metrics.csv and
    curves.png. ``resume=True`` continues from checkpoint.pt, mid-epoch included.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    device = resolve_device(tc.device)
    if not is_trainable(cfg.model):
        raise ValueError("ensembles and flip-TTA models are built from trained models; train "
                         "single models, then combine them with `maskseg pack`")  # fmt: skip
    if len(train_samples) < 2:
        raise ValueError(f"need at least 2 training pairs, got {len(train_samples)}")
    dataset = SegmentationDataset(train_samples, cfg.data.image_size, tc.augment, tc.seed)
    steps_per_epoch = len(dataset) // min(tc.batch_size, len(dataset))
    tr = _Trainer(cfg, run_dir, device, steps_per_epoch)
    ckpt_path = run_dir / CHECKPOINT
    if resume and ckpt_path.exists():
        tr.restore(load_checkpoint(ckpt_path, map_location=device))
        log.info("resumed %s at epoch %d step %d", ckpt_path, tr.epoch, tr.step_in_epoch)
    elif resume:
        log.warning("no checkpoint in %s; starting from scratch", run_dir)

    stopped = tr.bad_epochs >= tc.patience and bool(val_samples)
    while tr.epoch < tc.epochs and not stopped:
        t0 = time.perf_counter()
        train_loss = train_one_epoch(tr, dataset, checkpoint_interval, on_step)
        row = {"epoch": tr.epoch + 1, "lr": tr.sched.get_last_lr()[0], "train_loss": train_loss}
        if val_samples:
            counts, val_loss = evaluate(
                tr.model, val_samples, cfg.data.image_size, device, tc.precision
            )
            s = M.summarize(counts)
            row.update(val_loss=val_loss, **{f"val_{k}": s[k] for k in M.METRIC_NAMES})
            row["val_iou_pooled"] = s["iou_pooled"]
            metric = s["iou"]
        else:
            metric = -train_loss  # no validation: the last epoch is the model
        row["seconds"] = time.perf_counter() - t0
        tr.history.append(row)
        if metric > tr.best_metric + tc.min_delta or not val_samples:
            tr.best_metric, tr.best_epoch, tr.bad_epochs = metric, tr.epoch + 1, 0
            save_weights(run_dir / BEST_WEIGHTS, tr.model, cfg, dict(row))
        else:
            tr.bad_epochs += 1
        tr.epoch += 1
        tr.step_in_epoch, tr.loss_sum = 0, 0.0
        tr.save()
        write_history(run_dir, tr.history, plot=tr.epoch % 10 == 0)
        msg = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
        log.info("epoch %d/%d %s", tr.epoch, tc.epochs, msg)
        if val_samples and tr.bad_epochs >= tc.patience:
            log.info("early stopping: no val IoU gain for %d epochs", tc.patience)
            stopped = True

    write_history(run_dir, tr.history)
    state, _, _ = load_weights(run_dir / BEST_WEIGHTS)
    tr.model.load_state_dict(state)
    return FitResult(run_dir, tr.best_epoch, tr.best_metric, tr.epoch, tr.history, tr.model)


def write_history(run_dir: Path, history: list[dict], plot: bool = True) -> None:
    """metrics.csv (and curves.png when ``plot``): rewritten as training goes, so both are
    current after a kill; the plot only every few epochs, as it costs more than a small epoch."""
    if not history:
        return
    keys = list(dict.fromkeys(k for row in history for k in row))
    lines = [",".join(keys)]
    lines += [",".join(f"{row.get(k, '')}" for k in keys) for row in history]
    atomic_write_bytes(run_dir / METRICS_CSV, ("\n".join(lines) + "\n").encode())
    if plot:
        plot_curves(history, run_dir / CURVES_PNG)


def read_history(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]
