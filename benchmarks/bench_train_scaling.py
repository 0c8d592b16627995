"""Training on 1 and 2 processes (torchrun, gloo on the CPU), and an epoch of a 10,000-pair set
read from the decoded cache against today's in-memory path.

    python benchmarks/bench_train_scaling.py [--phase all|scaling|cache|iou] [--pairs 10000]
        [--scaling-pairs 1000] [--epochs 2] [--today-train-pairs 2000] [--iou-epochs 30]
        [--work DIR]

The set is built from the 167 pairs of ../shared/data/mfsd-real/MSFD: every pair is written
again and again in the MSFD layout, each copy with a seeded variation (mirrored every other
copy, scaled 0.9-1.1, shifted up to 5 %, brightness +-10 %; image JPEG quality 95, mask PNG),
its name the source's plus ``_vNNNN`` so a person's copies keep their group key.

scaling: ``torchrun --standalone --nproc-per-node N -m maskseg train`` (default model, 160 px,
batch 16 over all processes, no validation) on --scaling-pairs pairs for --epochs epochs, N = 1
(2 threads, and 1 thread) and 2 (1 thread each): images/s from the epochs' own seconds in
metrics.csv (the first epoch left out), peak memory of the job (PSS summed over its
processes, so the cache's pages shared through the page cache count once) and the largest
process's peak RSS.
cache: in fresh processes of --threads threads each, today's path (every pair decoded and
resized into memory when a run starts) against the cache (built once, memory-mapped):
start-up seconds, memory, one pass of the data with augmentation (no model), and one training
epoch: all --pairs pairs from the cache, --today-train-pairs pairs in memory (time per pair
compared).
iou: ``maskseg train`` on the 167 real pairs (fold 0 validation), --iou-epochs epochs, on 1 and
on 2 processes with the same seed: validation and test IoU.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from maskseg.console import cpu_description

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "mfsd-real" / "MSFD"
MODEL = ["--image-size", "160", "--batch-size", "16"]


# --------------------------------------------------------------------------- the big set


def build_set(dest: Path, n: int, seed: int = 0) -> float:
    """Write ``n`` varied copies of the real pairs under ``dest`` (MSFD layout); seconds."""
    from maskseg.data.pairs import find_pairs, load_samples

    t0 = time.perf_counter()
    samples, _ = load_samples(find_pairs(REAL).pairs)
    images, masks = dest / "1" / "face_crop", dest / "1" / "face_crop_segmentation"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(n):
        s = samples[k % len(samples)]
        image, mask = s.image, s.mask.astype(np.uint8) * 255
        h, w = mask.shape
        if k // len(samples) % 2:
            image, mask = image[:, ::-1], mask[:, ::-1]
        scale = rng.uniform(0.9, 1.1)
        shift = rng.uniform(-0.05, 0.05, 2) * (w, h)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, scale)
        m[:, 2] += shift
        image = cv2.warpAffine(
            np.ascontiguousarray(image), m, (w, h), borderMode=cv2.BORDER_REFLECT
        )
        mask = cv2.warpAffine(np.ascontiguousarray(mask), m, (w, h), flags=cv2.INTER_NEAREST)
        image = np.clip(image * rng.uniform(0.9, 1.1), 0, 255).astype(np.uint8)
        name = f"{s.id}_v{k:05d}"
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(images / f"{name}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(masks / f"{name}.png"), mask)
    return time.perf_counter() - t0


def subset(src: Path, dest: Path, n: int) -> None:
    """The first ``n`` pairs of ``src``, linked (not copied) into ``dest``."""
    for sub in ("face_crop", "face_crop_segmentation"):
        (dest / "1" / sub).mkdir(parents=True, exist_ok=True)
    names = sorted(p.stem for p in (src / "1" / "face_crop").iterdir())[:n]
    for name in names:
        for sub, ext in (("face_crop", ".jpg"), ("face_crop_segmentation", ".png")):
            (dest / "1" / sub / (name + ext)).symlink_to(src / "1" / sub / (name + ext))


sys.path.insert(0, str(Path(__file__).resolve().parent))
from memwatch import MemoryWatch  # noqa: E402


def run_watched(cmd: list[str], env: dict | None = None) -> tuple[MemoryWatch, str]:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    watch = MemoryWatch(proc.pid)
    out, _ = proc.communicate()
    watch.stop()
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    return watch, out


# --------------------------------------------------------------------------- phases


def train_cmd(procs: int, data: Path, out: Path, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(procs), "-m", "maskseg", "train"]
    return cmd + ["--data", str(data), "--output", str(out), "--no-progress", *extra]


def epoch_seconds(run: Path) -> list[float]:
    with open(run / "metrics.csv") as fh:
        return [float(r["seconds"]) for r in csv.DictReader(fh)]


def phase_scaling(a, work: Path, big: Path) -> None:
    data = work / f"set{a.scaling_pairs}"
    if not data.exists():
        subset(big, data, a.scaling_pairs)
    cache = work / "cache"
    common = [*MODEL, "--epochs", str(a.epochs), "--val-fold", "-1", "--test-fraction", "0"]
    common += ["--cache-dir", str(cache), "--checkpoint-interval", "100000"]
    print(
        f"\nscaling: {a.scaling_pairs} pairs, default model at 160 px, batch 16 over all "
        f"processes, {a.epochs} epochs (images/s: median of epochs 2..{a.epochs})"
    )
    print(
        f"{'processes x threads':<22}{'images/s':>10}{'vs 1 x 1':>10}{'efficiency':>12}"
        f"{'peak PSS, job':>16}{'peak RSS, largest':>20}"
    )
    base = None
    for procs, threads in ((1, 1), (1, 2), (2, 1)):
        run = work / f"scaling_{procs}x{threads}"
        shutil.rmtree(run, ignore_errors=True)
        watch, _ = run_watched(train_cmd(procs, data, run, [*common, "--threads", str(threads)]))
        summary = json.loads((run / "summary.json").read_text())
        per_epoch = summary["n_train"] // 16 * 16
        secs = epoch_seconds(run)
        ips = per_epoch / statistics.median(secs[1:] or secs)
        base = base or ips
        speedup = ips / base
        print(
            f"{f'{procs} x {threads}':<22}{ips:>10.1f}{speedup:>9.2f}x"
            f"{speedup / (procs * threads):>12.2f}{watch.pss:>13.0f} MB{watch.rss:>17.0f} MB"
        )
    print("efficiency: the speed-up over 1 x 1 per core used (processes x threads)")


def phase_cache(a, work: Path, big: Path) -> None:
    print(
        f"\ncache: {a.pairs} pairs at 160 px, default model, batch 16, {a.threads} thread(s); "
        "each column in a fresh process"
    )
    results = {}
    for mode in ("cached", "today"):
        cmd = [sys.executable, __file__, "--worker", mode, "--work", str(work)]
        cmd += ["--pairs", str(a.pairs), "--today-train-pairs", str(a.today_train_pairs)]
        cmd += ["--threads", str(a.threads)]
        watch, out = run_watched(cmd)
        results[mode] = json.loads(out.strip().splitlines()[-1])
        results[mode]["peak_pss"] = watch.pss
        results[mode]["peak_rss"] = watch.rss
    c, t = results["cached"], results["today"]
    rows = [
        ("start-up, first run (decode + resize), s", f"{c['build_s']:.1f}", f"{t['load_s']:.1f}"),
        ("start-up, later runs and folds, s", f"{c['open_s']:.2f}", f"{t['load_s']:.1f}"),
        ("data pass with augmentation, ms per pair", f"{c['pass_ms']:.2f}", f"{t['pass_ms']:.2f}"),
        ("training epoch, ms per pair", f"{c['train_ms']:.1f}", f"{t['train_ms']:.1f}"),
        ("  (pairs in that epoch)", str(c["train_pairs"]), str(t["train_pairs"])),
        ("training epoch of the whole set, s", f"{c['train_s']:.0f}", "-"),
        ("peak PSS of the process, MB", f"{c['peak_pss']:.0f}", f"{t['peak_pss']:.0f}"),
        ("on disk, MB", f"{c['disk_mb']:.0f}", "-"),
    ]
    print(f"{'':<44}{'cache':>10}{'today':>10}")
    for name, cached, today in rows:
        print(f"{name:<44}{cached:>10}{today:>10}")


def worker(a) -> None:
    """One measure of phase_cache in this fresh process; prints one JSON line."""
    import torch

    from maskseg.config import Config, DataConfig, TrainConfig
    from maskseg.data.cache import training_cache
    from maskseg.data.pairs import find_pairs, load_samples
    from maskseg.train.dataset import SegmentationDataset
    from maskseg.train.engine import fit

    torch.set_num_threads(a.threads)
    work = Path(a.work)
    pairs = find_pairs(work / f"set{a.pairs}").pairs
    out: dict = {}

    def one_pass(ds: SegmentationDataset) -> float:
        t0 = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        return (time.perf_counter() - t0) / len(ds) * 1000

    def train_epoch(ds) -> tuple[float, int]:
        cfg = Config(
            data=DataConfig(image_size=160),
            train=TrainConfig(epochs=1, batch_size=16, progress=False, augment="standard"),
        )
        run = Path(tempfile.mkdtemp(dir=work))
        fit(cfg, ds, [], run, checkpoint_interval=1e9)
        secs = epoch_seconds(run)[0]
        shutil.rmtree(run)
        return secs, len(ds) // 16 * 16

    if a.worker == "cached":
        folder = work / "cache_bench"
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        c = training_cache(pairs, 160, folder)
        out["build_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        c = training_cache(pairs, 160, folder)
        out["open_s"] = time.perf_counter() - t0
        out["disk_mb"] = sum(f.stat().st_size for f in c.folder.iterdir()) / 2**20
        ds = SegmentationDataset.from_arrays(c.ids, c.images, c.masks, None, "standard")
        out["pass_ms"] = one_pass(ds)
        secs, n = train_epoch(ds)
    else:
        t0 = time.perf_counter()
        samples, _ = load_samples(pairs)
        ds = SegmentationDataset(samples, 160, "standard")
        out["load_s"] = time.perf_counter() - t0
        out["pass_ms"] = one_pass(ds)
        del samples
        part = SegmentationDataset.from_arrays(
            ds.ids, ds.images, ds.masks, np.arange(min(len(ds), a.today_train_pairs)), "standard"
        )
        secs, n = train_epoch(part)
    out.update(
        train_s=secs, train_pairs=n, train_ms=secs / n * 1000, threads=torch.get_num_threads()
    )
    print(json.dumps(out))


def phase_iou(a, work: Path) -> None:
    print(
        f"\niou: the 167 real pairs, fold 0 validation, {a.iou_epochs} epochs, default model, "
        f"batch 16 over all processes, seed 0, {a.threads} thread(s) per process"
    )
    print(
        f"{'processes':<12}{'best val IoU':>14}{'last val IoU':>14}{'test IoU':>10}{'s/epoch':>9}"
    )
    for procs in (1, 2):
        run = work / f"iou_{procs}"
        shutil.rmtree(run, ignore_errors=True)
        extra = [*MODEL, "--epochs", str(a.iou_epochs), "--cache-dir", str(work / "cache")]
        extra += ["--threads", str(a.threads)]
        run_watched(train_cmd(procs, REAL, run, extra))
        s = json.loads((run / "summary.json").read_text())
        with open(run / "metrics.csv") as fh:
            rows = list(csv.DictReader(fh))
        print(
            f"{procs:<12}{max(float(r['val_iou']) for r in rows):>14.4f}"
            f"{float(rows[-1]['val_iou']):>14.4f}{s['test']['iou']:>10.4f}"
            f"{statistics.median(float(r['seconds']) for r in rows):>9.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", default="all", choices=["all", "scaling", "cache", "iou"])
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--scaling-pairs", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--today-train-pairs", type=int, default=2000)
    ap.add_argument("--iou-epochs", type=int, default=30)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per process in the cache and iou phases (on a shared 2-core "
        "machine two threads stall each other: see the scaling phase's 1 x 2 row)",
    )
    ap.add_argument("--work", type=Path, help="work folder (kept); default: a temporary one")
    ap.add_argument("--worker", choices=["cached", "today"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)
    if not (REAL / "1" / "face_crop").is_dir():
        sys.exit(f"shared data not found at {REAL}")
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_scaling_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{cpu_description()}; load average {os.getloadavg()[0]:.2f} at start")
    big = work / f"set{a.pairs}"
    if a.phase in ("all", "scaling", "cache") and not big.exists():
        secs = build_set(big, a.pairs)
        print(f"built {a.pairs} pairs from the 167 real ones in {secs:.0f} s: {big}")
    try:
        if a.phase in ("all", "scaling"):
            phase_scaling(a, work, big)
        if a.phase in ("all", "cache"):
            phase_cache(a, work, big)
        if a.phase in ("all", "iou"):
            phase_iou(a, work)
    finally:
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
