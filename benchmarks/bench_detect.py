"""Face-detection recall and speed for every registered detector and mode.

Recall = share of photos in which at least one face is found, on a fixed seeded sample of
``faces/with_mask`` and of ``faces/without_mask`` (mostly one face per photo, from tiny crops
to 4k photos; files are decoded with ``maskseg.io.read_image``, unreadable ones skipped and
named). Speed = ms per 640x480 frame, median over --runs timed runs, per mode, at one thread
and at the default thread count; "roi" searches one region around a face, as a video loop
does between full detections.

    python benchmarks/bench_detect.py [--faces DIR] [--sample 200] [--seed 0] [--runs 50]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from maskseg.io import ImageReadError, read_image
from maskseg.pipeline.detect import default_threads, get_detector, list_detectors
from maskseg.pipeline.detect._base import MODES

DEFAULT_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
FRAME = (480, 640)  # height, width


def sample_images(folder: Path, n: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """Decode a seeded sample of every file in ``folder`` (odd extensions included)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    rng = np.random.default_rng(seed)
    chosen = [files[i] for i in sorted(rng.choice(len(files), min(n, len(files)), replace=False))]
    images, skipped = [], []
    for path in chosen:
        try:
            images.append(read_image(path))
        except ImageReadError as exc:
            skipped.append(f"{path.name} ({exc.reason})")
    return images, skipped


def recall(detector, images: list[np.ndarray]) -> float:
    return float(np.mean([len(detector.detect(im)) > 0 for im in images]))


def ms_per_frame(detector, frame: np.ndarray, runs: int, rois: np.ndarray | None) -> float:
    detector.detect(frame, rois=rois)  # warm-up: onnxruntime allocates on the first call
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        detector.detect(frame, rois=rois)
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="minimum face score (default: the model's own, 0.5 / 0.6; the "
        "scene path uses maskseg.pipeline.scene.SCENE_SCORE_THRESHOLD)",
    )
    parser.add_argument("--detectors", nargs="*", default=None, help="default: all")
    args = parser.parse_args()

    sets = {}
    for name in ("with_mask", "without_mask"):
        images, skipped = sample_images(args.faces / name, args.sample, args.seed)
        sets[name] = images
        print(f"{name}: {len(images)} decoded of a {args.sample}-file sample (seed {args.seed})")
        for item in skipped:
            print(f"  skipped {item}")

    # A real photo as the timed frame, resized to 640x480, so NMS sees a real face.
    frame = cv2.resize(sets["with_mask"][0], FRAME[::-1], interpolation=cv2.INTER_AREA)
    threads = default_threads()
    print(
        f"\n{'detector':<15} {'mode':<6} {'regions':>7} {'with_mask':>9} {'without':>8} "
        f"{'ms 1 thr':>8} {'ms ' + str(threads) + ' thr':>8}"
    )
    print(f"score threshold: {args.score_threshold or 'the model default'}")
    for name in args.detectors or list_detectors():
        for mode in (*MODES, "roi"):
            det = {
                t: get_detector(
                    name,
                    mode="frame" if mode == "roi" else mode,
                    threads=t,
                    score_threshold=args.score_threshold,
                )
                for t in sorted({1, threads})
            }
            rois = None
            if mode == "roi":
                found = det[1].detect(frame)
                h, w = FRAME
                rois = found.boxes[:1] if len(found) else np.array([[w / 3, h / 3, w / 2, h / 2]])
            n_regions = len(det[1].regions(*FRAME, rois=rois))
            rec = {
                k: ("-" if mode == "roi" else f"{recall(det[1], ims):.1%}")
                for k, ims in sets.items()
            }
            ms = {t: ms_per_frame(d, frame, args.runs, rois) for t, d in det.items()}
            print(
                f"{name:<15} {mode:<6} {n_regions:>7} {rec['with_mask']:>9} "
                f"{rec['without_mask']:>8} {ms[1]:>8.2f} {ms[threads]:>8.2f}"
            )


if __name__ == "__main__":
    main()
