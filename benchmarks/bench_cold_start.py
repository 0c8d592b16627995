"""Wall time of a cold ``maskseg predict`` on one image, as a user starting it sees it.

    python benchmarks/bench_cold_start.py [--runs 5] [IMAGE]

Each run is a fresh process (imports, model load, decode, predict, write); the first run is
reported apart (it may read files from disk rather than the page cache), the median is over
the others.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", default=str(ROOT / "examples" / "face.jpg"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--args", default="", help="extra arguments for maskseg predict")
    a = ap.parse_args()
    exe = shutil.which("maskseg") or f"{sys.executable} -m maskseg"
    times = []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(a.runs + 1):
            cmd = [*exe.split(), "predict", a.image, "--output", out, *a.args.split()]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    warm = times[1:]
    print(f"maskseg predict {Path(a.image).name} {a.args}".rstrip())
    med = statistics.median(warm)
    print(
        f"first run {times[0]:.2f} s; median of next {len(warm)}: {med:.2f} s "
        f"(min {min(warm):.2f}, max {max(warm):.2f})"
    )


if __name__ == "__main__":
    main()
