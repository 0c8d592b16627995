"""Training and evaluation: train_one_epoch, evaluate, fit (early stopping, checkpoints, resume).

Determinism: batch order comes from (seed, epoch) and each sample's augmentation from
(seed, epoch, index), so an interrupted run resumed from a mid-epoch checkpoint takes exactly
the steps the uninterrupted run would have taken.

Under ``torchrun`` (``maskseg.train.distributed``) each of the N processes trains on its share
of the same epoch order with a batch of ``batch_size / N``, DistributedDataParallel averaging
the gradients: the processes' k-th batches together are the single process's k-th batch, so
only BatchNorm's per-process statistics (``--sync-bn`` on CUDA) set N processes apart from one.
Validation is sharded and its counts summed over the ranks; rank 0 alone writes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import random
import signal
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from maskseg.config import Config, TrainConfig
from maskseg.console import StopEvent, show_progress, stop_on_signals
from maskseg.data.pairs import Sample
from maskseg.evaluate import metrics as M
from maskseg.evaluate.scoring import score_masks
from maskseg.files import atomic_write_bytes
from maskseg.models import create_model, is_trainable
from maskseg.pipeline.annotate import plot_curves
from maskseg.pipeline.backends.runtime import autocast_context, needs_grad_scaler
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.preprocess import resize_mask
from maskseg.pipeline.weights import load_checkpoint, load_weights
from maskseg.train import distributed as D
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
    ``predict``); the loss is computed on the same logits at the model's input size. In a
    process group each rank scores every N-th image and the counts and loss sums are added
    over the ranks, so every rank returns the whole split's figures.
    """
    if not samples:
        return M.empty_counts(), float("nan")
    mine = list(range(D.rank(), len(samples), D.world()))
    counts = np.zeros((len(samples), 4), np.int64)
    loss_sum = 0.0
    if mine:
        part = [samples[i] for i in mine]
        model = D.unwrap(model)
        predictor = Predictor.from_model(model, cfg, device, precision=cfg.train.precision)
        logits = predictor.logits([s.image for s in part])
        masks = predictor.masks_from_logits(logits, [s.mask.shape for s in part])
        size = cfg.data.image_size
        target = np.stack([resize_mask(s.mask, size) for s in part]).astype(np.float32)
        # Every image has the same size here, so the batch loss is the mean of per-image losses.
        loss = BCEDiceLoss()(torch.from_numpy(logits), torch.from_numpy(target)[:, None])
        c = score_masks(masks, part)
        counts[mine] = np.stack([c.tp, c.fp, c.fn, c.tn], axis=1)
        loss_sum = float(loss) * len(part)
    counts = D.all_reduce_sum(counts)
    loss_sum = float(D.all_reduce_sum(np.array([loss_sum]))[0])
    return M.Counts(*counts.T.copy()), loss_sum / len(samples)


# --------------------------------------------------------------------------- training


def budget(tc: TrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(epochs, optimiser steps) of a run: ``tc.steps`` and the epochs they start when set
    (the last one cut short), else ``tc.epochs`` whole epochs."""
    if tc.steps is None:
        return tc.epochs, tc.epochs * steps_per_epoch
    return math.ceil(tc.steps / max(1, steps_per_epoch)), tc.steps


def make_scheduler(opt: torch.optim.Optimizer, tc: TrainConfig, steps_per_epoch: int):
    """Linear warm-up, then cosine decay to 1% of the peak LR, stepped per batch, over the
    run's whole ``budget``."""
    total = max(1, budget(tc, steps_per_epoch)[1])
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


def load_init(model: torch.nn.Module, cfg: Config, path: str) -> None:
    """Start ``model`` from the segmentation weights of ``path`` (fine-tuning): the file's
    architecture must be the run's; a presence gate in it is left out (fitting the encoder
    again invalidates it: refit it with ``maskseg gate`` afterwards)."""
    from maskseg.pipeline.weights import load_model_file

    def network(c: Config) -> dict:  # the architecture, without the gate
        return {k: v for k, v in dataclasses.asdict(c.model).items() if "presence" not in k}

    state, file_cfg, _ = load_model_file(path)
    mine, theirs = network(cfg), network(file_cfg)
    if mine != theirs:
        raise ValueError(f"{path}: --init weights are a {theirs}, the run trains a {mine}")
    state = {k: v.float() for k, v in state.items() if not k.startswith("presence.")}
    model.load_state_dict(state)
    log.info("started from the weights of %s", path)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: the step under way was finished and the checkpoint saved; the
    message says how to continue."""


def stop_after_step() -> AbstractContextManager[StopEvent | None]:
    """Ctrl-C asks the run to stop after the step under way (its state is whole then, and
    saved: ``TrainingInterrupted``); a second one interrupts at once (``stop_on_signals``).
    One process only: under torchrun every rank must stop at the same step, so there a
    Ctrl-C stops as before (the last periodic checkpoint stands)."""
    if D.world() > 1:
        return nullcontext()

    def say(_name: str) -> None:
        log.warning("Ctrl-C: stopping after this step (again: at once)")

    return stop_on_signals((signal.SIGINT,), on_first=say)


class Trainer:
    """The mutable state of one run (model, optimizer, scheduler, counters), so that a
    checkpoint holds all of it and ``fit`` reads top to bottom."""

    def __init__(self, cfg: Config, run_dir: Path, device: torch.device, steps_per_epoch: int):
        self.cfg, self.run_dir, self.device = cfg, run_dir, device
        tc = cfg.train
        torch.manual_seed(tc.seed)
        model = create_model(cfg.model)
        if tc.init:
            load_init(model, cfg, tc.init)
        model = model.to(device, memory_format=torch.channels_last)
        # ``net`` takes the training steps (DDP in a process group); ``model`` is what is
        # saved and scored: the same parameters, without the wrapper's ``module.`` prefix
        self.net = D.wrap(model, device, tc.sync_bn)
        self.model = D.unwrap(self.net)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay
        )
        self.sched = make_scheduler(self.opt, tc, steps_per_epoch)
        self.steps_per_epoch = steps_per_epoch
        self.epochs, self.total_steps = budget(tc, steps_per_epoch)
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
        self.stop: StopEvent | None = None  # set by Ctrl-C (``stop_after_step``)

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
            "world_size": D.world(),
        }

    def restore(self, ckpt: dict) -> None:
        if ckpt.get("world_size", 1) != D.world():
            raise ValueError(
                f"the checkpoint was written by a run of {ckpt.get('world_size', 1)} "
                f"process(es); resume it with as many (torchrun --nproc-per-node), since the "
                "epoch's shares and the step count depend on it"
            )
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
        if D.is_main():
            save_checkpoint(self.run_dir / CHECKPOINT, self.state())

    def train_epoch(
        self,
        dataset: SegmentationDataset,
        checkpoint_interval: float,
        on_step: Callable[[int, int], None] | None = None,
    ) -> float:
        """Run the rest of the current epoch (from ``step_in_epoch``); the mean train loss
        (over all ranks' batches)."""
        tc = self.cfg.train
        dataset.epoch = self.epoch
        bs = batch_size(tc.batch_size, len(dataset), D.world())
        per_rank = bs // D.world()
        shard = D.shard(epoch_order(len(dataset), tc.seed, self.epoch))
        n_steps = len(dataset) // bs  # drop the ragged last batch: BatchNorm dislikes tiny ones
        # a budget in steps (``TrainConfig.steps``) ends in the middle of its last epoch
        n_steps = min(n_steps, self.total_steps - self.epoch * self.steps_per_epoch)
        batches = [shard[i * per_rank : (i + 1) * per_rank] for i in range(n_steps)]
        loader = DataLoader(
            dataset, batch_sampler=batches[self.step_in_epoch :], num_workers=tc.num_workers
        )
        bar = tqdm(
            loader,
            total=n_steps,
            initial=self.step_in_epoch,
            desc=f"epoch {self.epoch + 1}/{self.epochs}",
            disable=not (D.is_main() and show_progress(tc.progress)),
            leave=False,
            dynamic_ncols=True,
        )
        last_save = time.monotonic()

        def after_step(loss: float) -> None:
            nonlocal last_save
            self.loss_sum += D.mean_over_ranks(loss)
            self.step_in_epoch += 1
            bar.set_postfix(loss=f"{self.loss_sum / self.step_in_epoch:.4f}")
            if on_step:
                on_step(self.epoch, self.step_in_epoch)
            if self.stop is not None and self.stop.is_set():  # Ctrl-C: the step is whole
                self.save()
                raise TrainingInterrupted(
                    f"stopped at epoch {self.epoch + 1} step {self.step_in_epoch}; the "
                    f"checkpoint is saved in {self.run_dir}: continue with the same command "
                    "and --resume"
                )
            if self.step_in_epoch < n_steps and time.monotonic() - last_save >= checkpoint_interval:
                self.save()  # mid-epoch checkpoint: a kill now loses at most the interval
                last_save = time.monotonic()

        train_one_epoch(
            self.net,
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
        D.sync_buffers(self.model)
        D.check_in_sync(self.model)
        return self.loss_sum / max(1, n_steps)


def batch_size(wanted: int, n: int, world: int) -> int:
    """The batch of one step over all processes: ``wanted``, or all ``n`` samples when fewer;
    it must split evenly over the processes (DDP averages the processes' gradients, which is
    the whole batch's gradient only when their batches are equal)."""
    bs = min(wanted, n)
    if bs % world or bs < world:
        raise ValueError(
            f"a batch of {bs} images does not split evenly over {world} processes; "
            f"give --batch-size a multiple of {world}"
        )
    return bs


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
    train_samples: list[Sample] | SegmentationDataset,
    val_samples: list[Sample],
    run_dir: str | Path,
    resume: bool = False,
    checkpoint_interval: float = 60.0,
    on_step: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Train with early stopping on validation IoU; without validation samples, train all epochs.

    ``train_samples``: decoded pairs, or a dataset already at the model's size (the cached
    arrays of ``maskseg.data.cache``). Writes into run_dir: checkpoint.pt (full state,
    atomically, at every epoch end and every ``checkpoint_interval`` seconds),
    best.safetensors (best weights + config), metrics.csv and curves.png; in a process group
    only rank 0 writes, and every rank returns the same model. ``resume=True`` continues from
    checkpoint.pt, mid-epoch included.
    """
    run_dir = Path(run_dir)
    tc = cfg.train
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    device = D.device_for(tc.device)
    if not is_trainable(cfg.model):
        raise ValueError(
            "ensembles and flip-TTA models are built from trained models; train "
            "single models, then combine them with `maskseg pack`"
        )
    if len(train_samples) < 2:
        raise ValueError(f"need at least 2 training pairs, got {len(train_samples)}")
    dataset = (
        train_samples
        if isinstance(train_samples, SegmentationDataset)
        else SegmentationDataset(
            train_samples, cfg.data.image_size, tc.augment, tc.seed, tc.pad_label
        )
    )
    steps_per_epoch = len(dataset) // batch_size(tc.batch_size, len(dataset), D.world())
    tr = Trainer(cfg, run_dir, device, steps_per_epoch)
    ckpt_path = run_dir / CHECKPOINT

    def read_checkpoint() -> dict | None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            return None
        remove_stale_temp_files(run_dir)
        if ckpt_path.exists():
            return load_checkpoint(ckpt_path, map_location="cpu")
        log.warning("no checkpoint in %s; starting from scratch", run_dir)
        return None

    ckpt = D.on_main(read_checkpoint)  # rank 0 reads; the run folder need not be shared
    if ckpt is not None:
        tr.restore(ckpt)
        log.info("resumed %s at epoch %d step %d", ckpt_path, tr.epoch, tr.step_in_epoch)
    main = D.is_main()

    stopped = tr.bad_epochs >= tc.patience and bool(val_samples)
    with stop_after_step() as tr.stop:  # Ctrl-C ends the step under way, saves and says so
        while tr.epoch < tr.epochs and not stopped:
            t0 = time.perf_counter()
            train_loss = tr.train_epoch(dataset, checkpoint_interval, on_step)
            row = {
                "epoch": tr.epoch + 1,
                "step": min(tr.total_steps, (tr.epoch + 1) * tr.steps_per_epoch),  # so far
                "lr": tr.sched.get_last_lr()[0],
                "train_loss": train_loss,
            }
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
            # every rank holds the same figures (summed over ranks), so all decide alike
            if metric > tr.best_metric + tc.min_delta or not val_samples:
                tr.best_metric, tr.best_epoch, tr.bad_epochs = metric, tr.epoch + 1, 0
                if main:
                    save_weights(run_dir / BEST_WEIGHTS, tr.model, cfg, dict(row))
            else:
                tr.bad_epochs += 1
            tr.epoch += 1
            tr.step_in_epoch, tr.loss_sum = 0, 0.0
            tr.save()
            if main:
                write_history(run_dir, tr.history, plot=tr.epoch % 10 == 0)
            msg = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
            log.info("epoch %d/%d %s", tr.epoch, tr.epochs, msg)
            if val_samples and tr.bad_epochs >= tc.patience:
                log.info("early stopping: no val IoU gain for %d epochs", tc.patience)
                stopped = True

    def best_state() -> dict:
        write_history(run_dir, tr.history)
        return load_weights(run_dir / BEST_WEIGHTS)[0]

    tr.model.load_state_dict(D.on_main(best_state))
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
