"""Training and inference throughput of the default model (images/s, medians over runs).

    python benchmarks/bench_speed.py [--device cpu|cuda] [--precision auto|fp32] [--runs 5]

Training: full steps (forward, BCE+Dice, backward, AdamW) on augmented batches at the model's
input size, data loading included. Inference: Predictor.predict_batch on 250x250 RGB images
(resize, model, upsample, threshold), batch 1 and batched.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from maskseg.config import Config
from maskseg.data.pairs import Sample
from maskseg.models import create_model
from maskseg.pipeline.backends.runtime import autocast_context, resolve_device
from maskseg.pipeline.predictor import Predictor
from maskseg.train.dataset import SegmentationDataset
from maskseg.train.losses import BCEDiceLoss


def _samples(n: int, size: int = 250) -> list[Sample]:
    rng = np.random.default_rng(0)
    return [
        Sample(
            str(i),
            rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
            rng.random((size, size)) > 0.6,
        )
        for i in range(n)
    ]


def bench_train(cfg: Config, device: torch.device, precision: str, steps: int) -> float:
    bs = cfg.train.batch_size
    ds = SegmentationDataset(_samples(bs * 4), cfg.data.image_size, cfg.train.augment)
    model = create_model(cfg.model).to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = BCEDiceLoss()

    def step(i: int) -> None:
        idx = [(i * bs + j) % len(ds) for j in range(bs)]
        x = torch.from_numpy(np.stack([ds[k][0] for k in idx]))
        x = x.to(device, memory_format=torch.channels_last)
        y = torch.from_numpy(np.stack([ds[k][1] for k in idx])).to(device)
        with autocast_context(device, precision):
            out = model(x)
        loss = loss_fn(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(0)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * bs / (time.perf_counter() - t0)


def bench_infer(predictor: Predictor, batch: int, n_images: int) -> float:
    images = [s.image for s in _samples(batch)]
    predictor.predict_batch(images)  # warm-up
    t0 = time.perf_counter()
    done = 0
    while done < n_images:
        predictor.predict_batch(images)
        done += batch
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    cfg = Config()
    try:
        predictor = Predictor.load(backend="torch", device=str(device), precision=a.precision)
        cfg = predictor.config
    except FileNotFoundError:  # no shipped weights yet: same architecture, random weights
        predictor = Predictor.from_model(
            create_model(cfg.model), cfg, str(device), precision=a.precision
        )
    print(
        f"device {device}, precision {a.precision}, torch threads {torch.get_num_threads()}, "
        f"model {cfg.model.name} c{cfg.model.base_channels} d{cfg.model.depth}, "
        f"input {cfg.data.image_size}px, {a.runs} runs (median, min-max)"
    )
    rows = [
        (
            f"train (batch {cfg.train.batch_size})",
            lambda: bench_train(cfg, device, a.precision, a.steps),
        ),
        ("infer batch 1", lambda: bench_infer(predictor, 1, 40)),
        ("infer batch 16", lambda: bench_infer(predictor, 16, 160)),
    ]
    with torch.inference_mode(False):
        for name, fn in rows:
            vals = [fn() for _ in range(a.runs)]
            print(
                f"{name:<18} {statistics.median(vals):8.1f} images/s "
                f"({min(vals):.1f}-{max(vals):.1f})"
            )


if __name__ == "__main__":
    main()
