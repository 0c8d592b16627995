"""Training and evaluation: train_one_epoch, evaluate, fit (early stopping, checkpoints, resume).

Determinism: batch order comes from (seed, epoch) and each sample's augmentation from
(seed, epoch, index), so an interrupted run resumed from a mid-epoch checkpoint takes exactly
the steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from maskseg.config import Config, TrainConfig
from maskseg.console import show_progress
from maskseg.data.pairs import Sample
from maskseg.evaluate import metrics as M
from maskseg.evaluate.scoring import score_masks
from maskseg.files import atomic_write_bytes
from maskseg.models import create_model, is_trainable
from maskseg.pipeline.annotate import plot_curves
from maskseg.pipeline.backends.runtime import autocast_context, needs_grad_scaler, resolve_device
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.preprocess import resize_mask
from maskseg.pipeline.weights import load_checkpoint, load_weights
from maskseg.train.checkpoint import save_checkpoint, save_weights
from maskseg.train.dataset import SegmentationDataset
from maskseg.train.losses import BCEDiceLoss

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
BEST_WEIGHTS = "best.safetensors"
METRICS_CSV = "metrics.csv"
CURVES_PNG = "curves.png"
RUN_FILES = (CHECKPOINT, BEST_WEIGHTS, METRICS_CSV, CURVES_PNG)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


# --------------------------------------------------------------------------- evaluation


def evaluate(
    model: torch.nn.Module, samples: list[Sample], cfg: Config, device: torch.device
) -> tuple[M.Counts, float]:
    """Per-image confusion counts at each ground truth's original resolution, and mean BCE+Dice.

    Masks come from ``Predictor`` (the same resize, threshold and clean-up a user gets from
    ``predict``); the loss is computed on the same logits at the model's input size.
    """
    if not samples:
        return M.empty_counts(), float("nan")
    predictor = Predictor.from_model(model, cfg, device, precision=cfg.train.precision)
    logits = predictor.logits([s.image for s in samples])
    masks = predictor.masks_from_logits(logits, [s.mask.shape for s in samples])
    size = cfg.data.image_size
    target = np.stack([resize_mask(s.mask, size) for s in samples]).astype(np.float32)
    # Every image has the same size here, so the batch loss is the mean of per-image losses.
    loss = BCEDiceLoss()(torch.from_numpy(logits), torch.from_numpy(target)[:, None])
    return score_masks(masks, samples), float(loss)


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


def train_one_epoch(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    precision: str = "auto",
    scaler: torch.amp.GradScaler | None = None,
    after_step: Callable[[float], None] | None = None,
) -> list[float]:
    """One pass over ``loader``: forward under autocast, loss, backward, optimizer step and a
    per-batch scheduler step. ``after_step(loss)`` runs after each step (progress bars,
    mid-epoch checkpoints). Returns the loss of every step."""
    model.train()
    losses = []
    for x, y in loader:
        x = x.to(device, memory_format=torch.channels_last, non_blocking=True)
        y = y.to(device, non_blocking=True)
        with autocast_context(device, precision):
            logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if after_step:
            after_step(losses[-1])
    return losses


class Trainer:
    """The mutable state of one run (model, optimizer, scheduler, counters), so that a
    checkpoint holds all of it and ``fit`` reads top to bottom."""

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
        for key in (
            "epoch",
            "step_in_epoch",
            "loss_sum",
            "best_metric",
            "best_epoch",
            "bad_epochs",
            "history",
        ):
            setattr(self, key, ckpt[key])

    def save(self) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT, self.state())

    def train_epoch(
        self,
        dataset: SegmentationDataset,
        checkpoint_interval: float,
        on_step: Callable[[int, int], None] | None = None,
    ) -> float:
        """Run the rest of the current epoch (from ``step_in_epoch``); the mean train loss."""
        tc = self.cfg.train
        dataset.epoch = self.epoch
        bs = min(tc.batch_size, len(dataset))
        order = epoch_order(len(dataset), tc.seed, self.epoch)
        n_steps = len(dataset) // bs  # drop the ragged last batch: BatchNorm dislikes tiny ones
        batches = [order[i * bs : (i + 1) * bs] for i in range(n_steps)]
        loader = DataLoader(
            dataset, batch_sampler=batches[self.step_in_epoch :], num_workers=tc.num_workers
        )
        bar = tqdm(
            loader,
            total=n_steps,
            initial=self.step_in_epoch,
            desc=f"epoch {self.epoch + 1}/{tc.epochs}",
            disable=not show_progress(tc.progress),
            leave=False,
            dynamic_ncols=True,
        )
        last_save = time.monotonic()

        def after_step(loss: float) -> None:
            nonlocal last_save
            self.loss_sum += loss
            self.step_in_epoch += 1
            bar.set_postfix(loss=f"{self.loss_sum / self.step_in_epoch:.4f}")
            if on_step:
                on_step(self.epoch, self.step_in_epoch)
            if self.step_in_epoch < n_steps and time.monotonic() - last_save >= checkpoint_interval:
                self.save()  # mid-epoch checkpoint: a kill now loses at most the interval
                last_save = time.monotonic()

        train_one_epoch(
            self.model,
            self.loss_fn,
            self.opt,
            self.sched,
            bar,
            self.device,
            tc.precision,
            self.scaler,
            after_step,
        )
        bar.close()
        return self.loss_sum / max(1, n_steps)


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temporary files a kill during an atomic write of a run file leaves behind
    (``.checkpoint.pt.XXXX.tmp``); only this run's own files, so a folder shared with other
    processes is safe."""
    stale = [p for name in RUN_FILES for p in run_dir.glob(f".{name}.*.tmp")]
    for p in stale:
        p.unlink(missing_ok=True)
        log.info("removed stale temporary file %s", p)
    return stale


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
        raise ValueError(
            "ensembles and flip-TTA models are built from trained models; train "
            "single models, then combine them with `maskseg pack`"
        )
    if len(train_samples) < 2:
        raise ValueError(f"need at least 2 training pairs, got {len(train_samples)}")
    dataset = SegmentationDataset(train_samples, cfg.data.image_size, tc.augment, tc.seed)
    steps_per_epoch = len(dataset) // min(tc.batch_size, len(dataset))
    tr = Trainer(cfg, run_dir, device, steps_per_epoch)
    ckpt_path = run_dir / CHECKPOINT
    if resume:
        remove_stale_temp_files(run_dir)
    if resume and ckpt_path.exists():
        tr.restore(load_checkpoint(ckpt_path, map_location=device))
        log.info("resumed %s at epoch %d step %d", ckpt_path, tr.epoch, tr.step_in_epoch)
    elif resume:
        log.warning("no checkpoint in %s; starting from scratch", run_dir)

    stopped = tr.bad_epochs >= tc.patience and bool(val_samples)
    while tr.epoch < tc.epochs and not stopped:
        t0 = time.perf_counter()
        train_loss = tr.train_epoch(dataset, checkpoint_interval, on_step)
        row = {"epoch": tr.epoch + 1, "lr": tr.sched.get_last_lr()[0], "train_loss": train_loss}
        if val_samples:
            counts, val_loss = evaluate(tr.model, val_samples, cfg, device)
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
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_bytes(run_dir / METRICS_CSV, buf.getvalue().encode())
    if plot:
        plot_curves(history, run_dir / CURVES_PNG)


def read_history(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]
