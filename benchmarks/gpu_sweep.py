"""Hyper-parameter sweep by 3-fold cross-validation; every (configuration, fold) runs as its own
process, in parallel. Meant for a lent GPU; works on a CPU too, slowly.

Selection is by mean validation IoU over the folds. Fold -1 (if asked for) trains on every
non-test pair; its held-out test IoU is printed for information only, never to choose.

    python benchmarks/gpu_sweep.py --data PATH/TO/MSFD --work /tmp/sweep [--final A B]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COMMON = ["--epochs", "250", "--patience", "80"]
SWEEP = {
    "std_lr1e-3": ["--lr", "1e-3", "--augment", "standard"],
    "strong_lr1e-3": ["--lr", "1e-3", "--augment", "strong"],
    "strong_lr3e-3": ["--lr", "3e-3", "--augment", "strong"],
    "strong_lr1e-3_s160": ["--lr", "1e-3", "--augment", "strong", "--image-size", "160"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--parallel", type=int, default=14)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="subset of configuration names")
    ap.add_argument("--final", nargs="*", default=[], help="configs also trained on all non-test")
    ap.add_argument("--deadline", type=float, default=1e9, help="seconds; then stop and report")
    a = ap.parse_args()
    names = a.only or list(SWEEP)
    jobs = [(n, k) for n in names for k in (0, 1, 2)] + [(n, -1) for n in a.final]
    pending, running, t0 = list(jobs), {}, time.time()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    while (pending or running) and time.time() - t0 < a.deadline:
        while pending and len(running) < a.parallel:
            name, k = pending.pop(0)
            out = a.work / name / f"fold{k}"
            out.mkdir(parents=True, exist_ok=True)
            cmd = [
                sys.executable,
                "-m",
                "maskseg",
                "train",
                "--data",
                a.data,
                "--output",
                str(out),
                "--val-fold",
                str(k),
                "--threads",
                str(a.threads),
                "--no-progress",
                "--checkpoint-interval",
                "600",
                *COMMON,
                *SWEEP[name],
            ]
            log = open(out / "log.txt", "w")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            running[(name, k)] = (proc, log)
        for job, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                print(f"[{time.time() - t0:5.0f}s] {job} exited {proc.returncode}", flush=True)
                del running[job]
        time.sleep(1)
    for job, (proc, _) in running.items():
        print(f"deadline: stopped {job}")
        proc.kill()
    print(
        f"\n{'config':<20} {'val IoU (select)':>17} {'test IoU (info)':>17}  best epochs"
        "  | all-non-test model: test IoU / Dice"
    )
    for name in names:
        folds = [
            json.loads(f.read_text())
            for k in (0, 1, 2)
            if (f := a.work / name / f"fold{k}" / "summary.json").exists()
        ]
        if not folds:
            continue
        val = np.array([f["val"]["iou"] for f in folds])
        test = np.array([f["test"]["iou"] for f in folds])
        line = (
            f"{name:<20} {val.mean():.4f} ± {val.std():.4f}  {test.mean():.4f} ± "
            f"{test.std():.4f}  {[f['best_epoch'] for f in folds]}"
        )
        final = a.work / name / "fold-1" / "summary.json"
        if final.exists():
            t = json.loads(final.read_text())["test"]
            line += f"  | {t['iou']:.4f} / {t['dice']:.4f}"
        print(line)
    print(f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
