"""Peak memory and wall time of ``maskseg predict`` on a very large image.

    python benchmarks/bench_large_image.py [--side 12000] [--format png]

Builds a side x side photo-like image (smooth colour fields), then runs ``maskseg predict``
in a fresh process under ``/usr/bin/time -v`` and prints its wall time and peak resident
memory, beside the process's baseline on a 250 x 250 image and the size of the output mask.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np


def run(image: Path, out: Path) -> tuple[float, float]:
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "maskseg",
        "predict",
        str(image),
        "--output",
        str(out),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)[1]) / 1024
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", res.stderr)
    secs = int(wall[1] or 0) * 3600 + int(wall[2]) * 60 + float(wall[3])
    return secs, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=12000)
    ap.add_argument("--format", default="png", choices=["png", "jpg"])
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp / f"big.{a.format}"), cv2.resize(small, (a.side, a.side)))
        cv2.imwrite(str(tmp / "small.jpg"), cv2.resize(small, (250, 250)))
        base_s, base_mb = run(tmp / "small.jpg", tmp / "out")
        big_s, big_mb = run(tmp / f"big.{a.format}", tmp / "out")
    mask_mb = a.side * a.side / 2**20
    print(f"250x250 jpg: {base_s:.1f} s, peak RSS {base_mb:.0f} MB (the process's baseline)")
    print(
        f"{a.side}x{a.side} {a.format}: {big_s:.1f} s, peak RSS {big_mb:.0f} MB; "
        f"{big_mb - base_mb:.0f} MB above baseline = {(big_mb - base_mb) / mask_mb:.1f}x "
        f"the {mask_mb:.0f} MB output mask"
    )


if __name__ == "__main__":
    main()
