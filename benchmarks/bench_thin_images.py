"""Time, peak memory and detector tiles of the scene path on thin and very wide images.

    python benchmarks/bench_thin_images.py [--timeout 150] [--cases 4095x1 20000x300f] [--api]

Each case runs in a fresh process: ``decode_image(path, min_side=DECODE_SIDE)`` (as
``maskseg predict`` and ``maskseg serve`` decode) then ``ScenePredictor.segment`` with the
shipped model, after one warm-up call on a 256 x 256 image. Printed per case: the decoded size
(or the refusal), the detector's tile count for that size, wall time, and the peak RSS above
the process's peak after warm-up. Cases (width x height): 4095x1, 50000x1, 1x40000 (one-pixel
PNGs of a few hundred bytes), 20000x300 (noise JPEG) and 20000x300f (a flat JPEG with 50
copies of ``examples/face.jpg`` 250 px tall along it: also prints faces found / with a mask).
A case over ``--timeout`` seconds is stopped and reported as "> N s" with the peak RSS it had
reached. ``--api`` decodes with ``shape_check=False`` (where the version has it), so images
that ``decode_image`` refuses go through the scene path as a Python caller's arrays would.
Run it with ``PYTHONPATH=<other checkout>/src`` to measure another version.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

CASES = ["4095x1", "50000x1", "1x40000", "20000x300", "20000x300f"]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

CHILD = r"""
import json, resource, sys, time
import numpy as np
from maskseg.pipeline.predictor import Predictor
from maskseg.io import ImageReadError, decode_image
from maskseg.io import DECODE_SIDE
from maskseg.pipeline.scene import ScenePredictor

def peak_kb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))

scene = ScenePredictor(Predictor.load())
scene.segment(np.full((256, 256, 3), 128, np.uint8))
base = peak_kb()
print(json.dumps({"base_kb": base}), flush=True)
t0 = time.perf_counter()
out = {}
extra = {"shape_check": False} if sys.argv[2] == "api" else {}
try:
    try:
        image, full = decode_image(sys.argv[1], min_side=DECODE_SIDE, **extra)
    except TypeError:  # a version without shape_check
        image, full = decode_image(sys.argv[1], min_side=DECODE_SIDE)
except ImageReadError as exc:
    out["refused"] = exc.reason
else:
    h, w = image.shape[:2]
    out["decoded"] = f"{w}x{h}"
    out["tiles"] = len(scene.detector.regions(h, w)) - 1
    print(json.dumps({"tiles": out["tiles"], "decoded": out["decoded"]}), flush=True)
    result = scene.segment(image, size=full)
    out["faces"] = len(result.faces)
    out["masked"] = sum(f.mask for f in result.faces)
out["seconds"] = time.perf_counter() - t0
out["peak_mb"] = (peak_kb() - base) / 1024
print(json.dumps(out), flush=True)
"""


def make_image(case: str, folder: Path) -> tuple[Path, int]:
    """The case's file and how many faces were pasted into it."""
    w, h = (int(v) for v in case.rstrip("f").split("x"))
    rng = np.random.default_rng(0)
    if min(w, h) == 1:
        path = folder / f"{case}.png"
        cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))
        return path, 0
    path = folder / f"{case}.jpg"
    if not case.endswith("f"):
        cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        return path, 0
    image = np.full((h, w, 3), 128, np.uint8)
    face = cv2.imread(str(EXAMPLES / "face.jpg"))
    fh = 250
    face = cv2.resize(face, (round(face.shape[1] * fh / face.shape[0]), fh), cv2.INTER_AREA)
    n = 50
    step = w // n
    y = (h - fh) // 2
    for i in range(n):
        x = i * step + (step - face.shape[1]) // 2
        image[y : y + fh, x : x + face.shape[1]] = face
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path, n


def peak_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return 0


def run_case(path: Path, timeout: float, api: bool) -> dict:
    how = "api" if api else "decode"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    start = time.monotonic()
    peak = 0
    while proc.poll() is None and time.monotonic() - start < timeout:
        peak = max(peak, peak_of(proc.pid))
        time.sleep(0.2)
    timed_out = proc.poll() is None
    if timed_out:
        peak = max(peak, peak_of(proc.pid))
        proc.kill()
    stdout, stderr = proc.communicate()
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    info: dict = {}
    for line in lines:
        info.update(line)
    if timed_out:
        info["seconds"] = f"> {timeout:.0f}"
        info["peak_mb"] = (peak - info.get("base_kb", 0)) / 1024
        info["timed_out"] = True
    elif proc.returncode != 0:
        info["error"] = stderr.strip().splitlines()[-1] if stderr.strip() else "failed"
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=150.0, help="seconds per case")
    ap.add_argument("--cases", nargs="+", default=CASES)
    ap.add_argument("--api", action="store_true", help="decode with shape_check=False")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"{'case':>11} {'bytes':>8} {'decoded':>11} {'tiles':>6} {'seconds':>8} "
            f"{'peak MB':>8}  faces / masked / pasted"
        )
        for case in a.cases:
            path, pasted = make_image(case, Path(tmp))
            r = run_case(path, a.timeout, a.api)
            seconds = r.get("seconds", "?")
            seconds = f"{seconds:.2f}" if isinstance(seconds, float) else seconds
            peak = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "?"
            if "refused" in r:
                print(
                    f"{case:>11} {path.stat().st_size:>8} {'refused':>11} {'-':>6} {seconds:>8} "
                    f"{peak:>8}  {r['refused']}"
                )
                continue
            faces = f"{r.get('faces', '?')} / {r.get('masked', '?')} / {pasted}"
            note = f"  ERROR {r['error']}" if "error" in r else ""
            print(
                f"{case:>11} {path.stat().st_size:>8} {r.get('decoded', '?'):>11} "
                f"{r.get('tiles', '?'):>6} {seconds:>8} {peak:>8}  {faces}{note}"
            )


if __name__ == "__main__":
    main()
