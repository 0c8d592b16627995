"""The shipped INT8 models with and without onnxruntime's exact INT8 products.

    python benchmarks/bench_int8_precision.py [--models unet-msfd-heldout unet-msfd-fast-heldout]

On x86 CPUs without VNNI (AVX2 only) onnxruntime's fast U8S8 kernel saturates 16-bit pair
sums; ``session.x64quantprecision`` (``maskseg.pipeline.backends.onnx.PRECISE_INT8``, on by
default) switches those CPUs to its exact U8U8 kernel. Per model: MSFD test IoU (the held-out
twins never saw the test split) and ms per crop at batch 1 and 16 (medians over runs, the two
settings alternating in one run), each with the setting off and on. With VNNI or AMX the two
rows should agree: the setting changes nothing there.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from maskseg.console import cpu_description
from maskseg.data.splits import load_split
from maskseg.evaluate.scoring import score
from maskseg.pipeline.predictor import Predictor

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mfsd-real" / "MSFD"


def test_iou(p: Predictor, data: Path) -> float:
    samples = list(load_split(data, p.config.data, "test").samples.values())
    return score(p, samples).summary()["iou"]


def ms_per_crop(p: Predictor, batch: np.ndarray) -> float:
    t = time.perf_counter()
    p.backend(batch)
    return 1000 * (time.perf_counter() - t) / len(batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["unet-msfd-heldout", "unet-msfd-fast-heldout"])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    print(f"CPU: {cpu_description()}; {a.threads} threads")
    print("model                    exact int8 | MSFD test IoU | ms/crop batch 1 | batch 16")
    rng = np.random.default_rng(0)
    for name in a.models:
        ps = {
            precise: Predictor.load(name, backend="onnx", threads=a.threads, precise_int8=precise)
            for precise in (False, True)
        }
        size = ps[True].size
        iou = {k: test_iou(p, a.data) for k, p in ps.items()}
        times: dict[tuple[bool, int], list[float]] = {}
        for n in (1, 16):
            batch = rng.standard_normal((n, 3, size, size)).astype(np.float32)
            for p in ps.values():
                ms_per_crop(p, batch)  # warm-up
            for _ in range(a.runs):
                for k, p in ps.items():
                    times.setdefault((k, n), []).append(ms_per_crop(p, batch))
        for k in (False, True):
            t1 = statistics.median(times[(k, 1)])
            t16 = statistics.median(times[(k, 16)])
            print(
                f"{name:24s} {'on ' if k else 'off'}        | {iou[k]:.4f}        |"
                f" {t1:6.2f}          | {t16:6.2f}"
            )


if __name__ == "__main__":
    main()
