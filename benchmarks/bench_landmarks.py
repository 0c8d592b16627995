"""Face-landmark stage (MediaPipe Face Mesh on onnxruntime): ms per face, and whether its
face-presence score tells faces from the detector's false detections.

Speed: ms per face of the model call alone and of the whole stage (``for_rois``: crop, model,
mapping back) at batch 1 and 3, at one thread and the default thread count; median and
minimum over --runs calls (the cases interleaved), the CPU and the load average named (the
minimum is the figure on an idle machine; the median is what a busy one gives).

Presence score, on a seeded sample of ``faces/with_mask`` and ``faces/without_mask`` photos
run through the scene path's detector (BlazeFace short range, tiles, score threshold
``SCENE_SCORE_THRESHOLD``):

* ``top``: the best-scoring detection of each photo: a true face, nearly always (these are
  portrait photos, mostly of one person);
* ``extra``: every other detection that does not overlap the top one (IoU 0): faces of other
  people in the photo, or false detections (hair, collars, curtains, patterns);
* ``background``: up to three windows per photo that touch no detection (nor a 1.5x margin
  around one) and lie inside the photo, sized like a face ROI there (0.4-1x the top face's
  ROI side, at least 32 px) and turned by up to +-0.3 rad: known non-faces (most photos are
  tight portraits, so only some have room for one).

For each group: quantiles of the score; then, per threshold, the share of ``top`` faces kept
and of ``background`` windows / ``extra`` detections let through, and the threshold that
separates ``top`` from ``background`` best (largest kept - let through).

    python benchmarks/bench_landmarks.py [--faces DIR] [--sample 300] [--seed 0] [--runs 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from maskseg.console import cpu_description
from maskseg.io import ImageReadError, read_image
from maskseg.pipeline.detect import FaceLandmarker, FaceRoi, box_iou, default_threads, get_detector
from maskseg.pipeline.detect.landmarks import crop_roi, rois_from_detections
from maskseg.pipeline.scene_config import SCENE_SCORE_THRESHOLD

DEFAULT_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
THRESHOLDS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def sample_files(folder: Path, n: int, seed: int) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    rng = np.random.default_rng(seed)
    return [files[i] for i in sorted(rng.choice(len(files), min(n, len(files)), replace=False))]


def timing(runs: int) -> None:
    """ms per face at batch 1 and 3, model alone and the whole stage; the cases take turns
    call by call, so load from other processes falls on all of them alike."""
    detector = get_detector("blazeface", threads=1)
    image = read_image(EXAMPLES / "face.jpg")
    roi = rois_from_detections(detector.detect(image))[0]
    rois = [roi, FaceRoi(roi.cx + 4, roi.cy - 3, roi.side * 1.1, roi.angle + 0.1), roi]
    crops = np.stack([crop_roi(image, r) for r in rois])
    cases = {}
    for t in sorted({1, default_threads()}):
        landmarker = FaceLandmarker(threads=t)
        for n in (1, 3):
            cases[(t, n, "model")] = partial(landmarker.run, crops[:n])
            cases[(t, n, "stage")] = partial(landmarker.for_rois, image, rois[:n])
    for fn in cases.values():
        fn()  # warm-up: onnxruntime allocates on the first call
    times: dict[tuple, list[float]] = {key: [] for key in cases}
    load_before = os.getloadavg()[0]
    for _ in range(runs):
        for key, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[key].append(1000.0 * (time.perf_counter() - start) / key[1])
    print(
        f"\nspeed on {cpu_description()}; ms per face over {runs} calls each (median / min); "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(f"{'threads':>7} {'batch':>5} {'model':>13} {'stage':>13}")
    for t, n in sorted({(t, n) for t, n, _ in cases}):
        cells = [
            f"{np.median(times[(t, n, k)]):>6.2f} / {np.min(times[(t, n, k)]):<4.2f}"
            for k in ("model", "stage")
        ]
        print(f"{t:>7} {n:>5} {cells[0]:>13} {cells[1]:>13}")


def background_windows(
    shape: tuple[int, int], boxes: np.ndarray, side: float, rng: np.random.Generator, k: int = 3
) -> list[FaceRoi]:
    """Up to ``k`` ROIs inside the image touching no box (grown 1.5x about its centre)."""
    h, w = shape
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.75
    grown = np.concatenate([centre - half, centre + half], axis=1)
    out: list[FaceRoi] = []
    for _ in range(50):
        if len(out) == k:
            break
        s = max(32.0, side * rng.uniform(0.4, 1.0))
        angle = rng.uniform(-0.3, 0.3)
        reach = s * (abs(np.cos(angle)) + abs(np.sin(angle))) / 2  # half the turned square's extent
        if 2 * reach > min(h, w):
            break
        cx, cy = rng.uniform(reach, w - reach), rng.uniform(reach, h - reach)
        window = np.array([cx - reach, cy - reach, cx + reach, cy + reach])
        if (box_iou(window, grown) > 0).any():  # IoU > 0 exactly when they overlap
            continue
        out.append(FaceRoi(cx, cy, s, angle))
    return out


def quantiles(scores: list[float], qs=(0.0, 0.01, 0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 1.0)) -> str:
    if not scores:
        return "(none)"
    vals = np.quantile(np.asarray(scores), qs)
    return "  ".join(f"q{round(q * 100):>3}={v:.3f}" for q, v in zip(qs, vals, strict=True))


def presence(args) -> None:
    detector = get_detector("blazeface", mode="tiles", score_threshold=SCENE_SCORE_THRESHOLD)
    landmarker = FaceLandmarker()
    rng = np.random.default_rng(args.seed)
    groups: dict[str, list[float]] = {}
    for folder in ("with_mask", "without_mask"):
        files = sample_files(args.faces / folder, args.sample, args.seed)
        skipped = no_face = 0
        for path in files:
            try:
                image = read_image(path)
            except ImageReadError:
                skipped += 1
                continue
            faces = detector.detect(image)
            if not len(faces):
                no_face += 1
                continue
            rois = landmarker.rois(faces)
            extra = [
                int(i) + 1 for i in np.flatnonzero(box_iou(faces.boxes[0], faces.boxes[1:]) == 0)
            ]
            windows = background_windows(image.shape[:2], faces.boxes, rois[0].side, rng)
            chosen = [rois[0]] + [rois[i] for i in extra] + windows
            found = landmarker.for_rois(image, chosen)
            groups.setdefault(f"top {folder}", []).append(found[0].presence)
            groups.setdefault(f"extra {folder}", []).extend(
                f.presence for f in found[1 : 1 + len(extra)]
            )
            groups.setdefault(f"background {folder}", []).extend(
                f.presence for f in found[1 + len(extra) :]
            )
        print(
            f"{folder}: {len(files)} photos sampled (seed {args.seed}), {skipped} unreadable, "
            f"{no_face} without a detection"
        )
    print(f"\npresence score by group (detector blazeface tiles, score >= {SCENE_SCORE_THRESHOLD})")
    for name in sorted(groups):
        print(f"  {name:<24} n={len(groups[name]):<4} {quantiles(groups[name])}")

    top = np.array(groups.get("top with_mask", []) + groups.get("top without_mask", []))
    top_mask = np.array(groups.get("top with_mask", []))
    top_bare = np.array(groups.get("top without_mask", []))
    background = np.array(
        groups.get("background with_mask", []) + groups.get("background without_mask", [])
    )
    extra = np.array(groups.get("extra with_mask", []) + groups.get("extra without_mask", []))
    print(
        f"\n{'threshold':>9} {'top kept':>9} {'masked':>7} {'unmasked':>8} "
        f"{'background in':>13} {'extra in':>9}"
    )
    for t in THRESHOLDS:
        print(
            f"{t:>9.2f} {np.mean(top >= t):>9.1%} {np.mean(top_mask >= t):>7.1%} "
            f"{np.mean(top_bare >= t):>8.1%} {np.mean(background >= t):>13.1%} "
            f"{np.mean(extra >= t) if len(extra) else 0:>9.1%}"
        )
    if not len(background) or not len(top):
        return
    for label, faces in (("all top", top), ("unmasked top", top_bare), ("masked top", top_mask)):
        if not len(faces):
            continue
        cands = np.unique(np.concatenate([faces, background]))
        gain = [np.mean(faces >= c) - np.mean(background >= c) for c in cands]
        best = float(cands[int(np.argmax(gain))])
        print(
            f"best threshold {label} vs background: {best:.4f} (kept {np.mean(faces >= best):.1%}, "
            f"background in {np.mean(background >= best):.1%})"
        )
    print(f"max background {background.max():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES)
    parser.add_argument("--sample", type=int, default=300, help="photos per folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    timing(args.runs)
    if not (args.faces / "with_mask").is_dir():
        sys.exit(f"\nface photos not found at {args.faces}: presence figures skipped")
    presence(args)


if __name__ == "__main__":
    main()
