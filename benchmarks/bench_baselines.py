"""Accuracy and speed of the classical baselines on the real MSFD pairs.

Prints, per method, mean IoU on the canonical test split (and on the training split the
parameters were tuned on, for an overfitting check) and the wall time to segment all pairs;
times are medians over --repeats runs. Target: all methods over all 167 pairs in <= 120 s.

    python benchmarks/bench_baselines.py [--data ROOT] [--repeats 3] [--methods otsu grabcut]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from maskseg.data.pairs import find_pairs, load_samples
from maskseg.data.splits import splits_for
from maskseg.evaluate.baselines import get_method, list_methods
from maskseg.evaluate.metrics import confusion, iou

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mfsd-real" / "MSFD"
TARGET_SECONDS = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="*", default=list_methods(), choices=list_methods())
    args = parser.parse_args()

    start = time.perf_counter()
    scan = find_pairs(args.data)
    samples, skipped = load_samples(scan.pairs)
    splits = splits_for([p.id for p in scan.pairs])
    test = set(splits.test)
    print(
        f"{len(samples)} pairs decoded in {time.perf_counter() - start:.1f} s "
        f"({len(skipped)} skipped); test split {sum(s.id in test for s in samples)} images; "
        f"{args.repeats} timed run(s) per method"
    )
    print(f"{'method':<10} {'test IoU':>8} {'train IoU':>9} {'seconds':>8} {'ms/image':>8}")
    total = 0.0
    for name in args.methods:
        method = get_method(name)
        method.predict(samples[0].image)  # warm-up
        seconds, scores = [], {}
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            preds = [method.predict(s.image) for s in samples]
            seconds.append(time.perf_counter() - t0)
        for split, keep in (("test", True), ("train", False)):
            chosen = [
                (p, s.mask) for p, s in zip(preds, samples, strict=True) if (s.id in test) == keep
            ]
            scores[split] = np.mean([iou(confusion(p, m)) for p, m in chosen])
        sec = float(np.median(seconds))
        total += sec
        print(
            f"{name:<10} {scores['test']:>8.3f} {scores['train']:>9.3f} {sec:>8.2f} "
            f"{1000 * sec / len(samples):>8.1f}"
        )
    verdict = "within" if total <= TARGET_SECONDS else "OVER"
    print(
        f"all {len(args.methods)} methods over {len(samples)} pairs: {total:.1f} s "
        f"(sum of per-method medians; {verdict} the {TARGET_SECONDS:.0f} s target)"
    )


if __name__ == "__main__":
    main()
