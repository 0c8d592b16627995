"""Hyper-parameter sweep by 3-fold cross-validation, configurations run in parallel.

Meant for a lent GPU (many short runs at once); works on a CPU too, slowly.
Selection is by mean validation IoU over the folds; the held-out test IoU is printed beside it
for information only and must not be used to choose.

    python benchmarks/gpu_sweep.py --data PATH/TO/MSFD --work /tmp/sweep [--parallel 8]
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

SWEEP = {
    "s192_c16_d4": [],
    "s256_c16_d4": ["--image-size", "256"],
    "s160_c16_d4": ["--image-size", "160"],
    "s192_c32_d4": ["--base-channels", "32"],
    "s192_c16_d5": ["--depth", "5"],
    "s192_c16_lr1e-3": ["--lr", "1e-3"],
    "s192_c16_bs8": ["--batch-size", "8"],
    "s192_c16_e400": ["--epochs", "400"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="subset of configuration names")
    ap.add_argument("--deadline", type=float, default=1e9, help="seconds; then stop and report")
    a = ap.parse_args()
    names = a.only or list(SWEEP)
    pending, running, t0 = list(names), {}, time.time()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    while (pending or running) and time.time() - t0 < a.deadline:
        while pending and len(running) < a.parallel:
            name = pending.pop(0)
            out = a.work / name
            cmd = [sys.executable, "-m", "maskseg", "cv", "--data", a.data, "--output", str(out),
                   "--epochs", str(a.epochs), "--patience", str(a.patience), "--threads",
                   str(a.threads), "--no-progress", "--checkpoint-interval", "600",
                   *SWEEP[name]]  # fmt: skip
            out.mkdir(parents=True, exist_ok=True)
            log = open(out / "log.txt", "w")
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                print(f"[{time.time() - t0:6.0f}s] {name} exited {proc.returncode}", flush=True)
                del running[name]
        time.sleep(1)
    for name, (proc, _) in running.items():
        print(f"deadline: stopping {name}; reporting its finished folds only")
        proc.kill()
    rows = []
    for name in names:
        # fold summaries, so a configuration stopped at the deadline still shows finished folds
        folds = [json.loads(f.read_text()) for f in sorted((a.work / name).glob("fold*/summary.json"))]
        if not folds:
            continue
        val = np.array([f["val"]["iou"] for f in folds])
        test = np.array([f["test"]["iou"] for f in folds])
        epochs = [f["best_epoch"] for f in folds]
        rows.append((name, val.mean(), val.std(), test.mean(), test.std(), epochs))
    rows.sort(key=lambda r: -r[1])
    print(f"\n{'config':<18} {'val IoU (select)':>18} {'test IoU (info)':>18}  best epochs")
    for name, v, vs, t, ts, ep in rows:
        print(f"{name:<18} {v:.4f} ± {vs:.4f}   {t:.4f} ± {ts:.4f}   {ep}")
    print(f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
