"""Calibrate the detection -> training-crop mapping (``maskseg.pipeline.detect.crops``) on
training pairs.

The segmentation model was trained on MSFD face crops (tight squares from the dataset's own
face boxes); a detector frames faces its own way. Each training crop (canonical split,
``trainval`` only, never ``test``) is pasted into 640x480 scenes at known positions and sizes
(110-240 px, edges feathered so there is no hard seam) on noise, a blurred other training crop
or a flat colour; the detector runs on the scene, and for each way of reading a detection
(box, eyes, eyes + mouth) the script fits

    crop centre = reference point + (ox, oy) * length,   crop side = scale * length

by medians. Figures are out of fold (fit on the other CV folds' people, scored on this fold's),
so they say how well the mapping does on faces it was not fitted on: spread of the scale ratio
(std and IQR relative to its median), centre error, and IoU of mapped vs true crop (mean and
10th percentile). The final mapping per detector and mode is fitted on all training pairs.

    python benchmarks/calibrate_crops.py                  # print the figures
    python benchmarks/calibrate_crops.py --write          # and update the shipped JSON files
    python benchmarks/calibrate_crops.py --padding-check  # replicate vs black crop padding
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskseg.data.pairs import find_pairs
from maskseg.data.splits import splits_for
from maskseg.io import read_image, read_mask
from maskseg.pipeline.detect import CropMapping, crop_box, cut_crop, get_detector, list_detectors
from maskseg.pipeline.detect.crops import METHODS, mapping_path, mapping_record, reference
from maskseg.pipeline.detect.nms import box_iou

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mfsd-real" / "MSFD"
SCENE = (480, 640)  # height, width: a webcam frame
FACE_SIZES = (110, 240)  # pasted crop side, pixels
MODES = ("frame", "tiles", "roi")
MIN_MATCH_IOU = 0.25  # a detection must overlap the pasted crop this much to count as it


@dataclass
class Sample:
    """One detection of one pasted crop: where the crop truly is and what the detector said."""

    pair_id: str
    truth: np.ndarray  # x1, y1, x2, y2 of the pasted crop
    box: np.ndarray
    keypoints: np.ndarray


def make_scene(
    crop: np.ndarray, other: np.ndarray, rng: np.random.Generator, kind: int
) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``crop`` into a 640x480 background at a random place and size.

    Returns:
        the scene (RGB uint8) and the true crop rectangle x1, y1, x2, y2.
    """
    h, w = SCENE
    if kind == 0:  # noise, smoothed a little so it is not pure pixel static
        bg = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        bg = cv2.GaussianBlur(bg, (0, 0), 2.0)
    elif kind == 1:  # another training crop, blown up and blurred: a real-looking scene
        bg = cv2.GaussianBlur(cv2.resize(other, (w, h)), (0, 0), 12.0)
    else:  # a flat colour
        bg = np.empty((h, w, 3), np.uint8)
        bg[:] = rng.integers(0, 256, 3)
    side = int(rng.integers(FACE_SIZES[0], FACE_SIZES[1] + 1))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    face = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    # feathered edge: alpha ramps 0 -> 1 over 6% of the side, so there is no hard seam
    ramp = np.minimum(np.arange(side), np.arange(side)[::-1]) + 0.5
    ramp = np.clip(ramp / max(2.0, 0.06 * side), 0.0, 1.0)
    alpha = np.minimum.outer(ramp, ramp)[..., None]
    region = bg[y : y + side, x : x + side].astype(np.float32)
    bg[y : y + side, x : x + side] = (alpha * face + (1 - alpha) * region + 0.5).astype(np.uint8)
    return bg, np.array([x, y, x + side, y + side], np.float64)


def collect(
    detector, mode: str, crops: dict[str, np.ndarray], repeats: int, seed: int
) -> tuple[list[Sample], int]:
    """Run the detector on every scene; returns matched samples and the number of scenes.

    Scenes depend only on (seed, pair, repeat), so every detector and mode sees the same ones.
    """
    ids = sorted(crops)
    samples, n = [], 0
    for k, pid in enumerate(ids):
        for r in range(repeats):
            rng = np.random.default_rng([seed, k, r])
            other = crops[ids[(k + 1 + int(rng.integers(len(ids) - 1))) % len(ids)]]
            scene, truth = make_scene(crops[pid], other, rng, (k + r) % 3)
            n += 1
            if mode == "roi":  # a face tracked from the previous frame: a little off
                side = truth[2] - truth[0]
                c = (truth[:2] + truth[2:]) / 2 + rng.uniform(-0.15, 0.15, 2) * side
                half = side * rng.uniform(0.85, 1.15) / 2
                dets = detector.detect(scene, rois=np.array([[*(c - half), *(c + half)]]))
            else:
                dets = detector.detect(scene)
            if not len(dets):
                continue
            iou = box_iou(truth, dets.boxes.astype(np.float64))
            j = int(iou.argmax())
            if iou[j] >= MIN_MATCH_IOU:
                samples.append(Sample(pid, truth, dets.boxes[j], dets.keypoints[j]))
    return samples, n


def fit(samples: list[Sample], method: str) -> CropMapping:
    """Medians of the per-sample offsets and scale: robust to the odd bad keypoint."""
    refs = np.array([reference(s.box, s.keypoints, method) for s in samples])
    truths = np.array([s.truth for s in samples])
    centre = (truths[:, :2] + truths[:, 2:]) / 2
    side = truths[:, 2] - truths[:, 0]
    off = (centre - refs[:, :2]) / refs[:, 2:3]
    return CropMapping(
        method,
        float(np.median(off[:, 0])),
        float(np.median(off[:, 1])),
        float(np.median(side / refs[:, 2])),
    )


def scores(samples: list[Sample], mapping: CropMapping) -> dict[str, np.ndarray]:
    """Per-sample scale ratio, centre error (in crop sides) and IoU of mapped vs true crop."""
    refs = np.array([reference(s.box, s.keypoints, mapping.method) for s in samples])
    truths = np.array([s.truth for s in samples])
    side = truths[:, 2] - truths[:, 0]
    rects = np.array([crop_box(s.box, s.keypoints, mapping) for s in samples])
    centre_err = np.linalg.norm(
        (rects[:, :2] + rects[:, 2:]) / 2 - (truths[:, :2] + truths[:, 2:]) / 2, axis=1
    )
    iou = np.array([box_iou(t, r[None])[0] for t, r in zip(truths, rects, strict=True)])
    return {"ratio": side / refs[:, 2], "centre": centre_err / side, "iou": iou}


def out_of_fold(samples: list[Sample], folds: list[set[str]], method: str) -> dict[str, float]:
    """Fit on the other folds' people, score this fold's; pool the scores over folds."""
    pooled: dict[str, list[np.ndarray]] = {"ratio": [], "centre": [], "iou": []}
    for val in folds:
        train = [s for s in samples if s.pair_id not in val]
        held = [s for s in samples if s.pair_id in val]
        if not train or not held:
            continue
        for key, arr in scores(held, fit(train, method)).items():
            pooled[key].append(arr)
    ratio, centre, iou = (np.concatenate(pooled[k]) for k in ("ratio", "centre", "iou"))
    med = float(np.median(ratio))
    q75, q25 = np.percentile(ratio, [75, 25])
    return {
        "scale_ratio_median": med,
        "scale_ratio_rel_std": float(np.std(ratio) / med),
        "scale_ratio_rel_iqr": float((q75 - q25) / med),
        "centre_error_median": float(np.median(centre)),
        "iou_mean": float(np.mean(iou)),
        "iou_p10": float(np.percentile(iou, 10)),
        "n": int(len(iou)),
    }


def padding_check(crops: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> None:
    """Replicate vs black padding for a face cut off by the frame edge, measured with the
    shipped segmentation model: IoU on the visible part, for 15-35% of the crop outside.

    In-sample for the model (it was trained on these pairs), but both paddings see the same
    images, so the comparison between them is fair.
    """
    from maskseg.evaluate.metrics import confusion, iou
    from maskseg.pipeline.predictor import Predictor

    predictor = Predictor.load()
    rng = np.random.default_rng(0)
    results: dict[str, list[float]] = {"none (whole crop)": [], "replicate": [], "constant": []}
    for pid in sorted(crops):
        image, mask = crops[pid], masks[pid]
        s = image.shape[0]
        cut = int(s * rng.uniform(0.15, 0.35))
        # which frame edge cuts the face: the visible rows/columns of the crop, and where the
        # whole crop sits relative to the visible part (the frame)
        visible, rect = [
            ((slice(None), slice(0, s - cut)), (0, 0, s, s)),  # right edge
            ((slice(None), slice(cut, s)), (-cut, 0, s - cut, s)),  # left edge
            ((slice(0, s - cut), slice(None)), (0, 0, s, s)),  # bottom edge
            ((slice(cut, s), slice(None)), (0, -cut, s, s - cut)),  # top edge
        ][int(rng.integers(4))]
        frame, truth = np.ascontiguousarray(image[visible]), mask[visible]
        results["none (whole crop)"].append(
            iou(confusion(predictor.predict(image)[visible], truth))
        )
        for border in ("replicate", "constant"):
            pred = predictor.predict(cut_crop(frame, np.array(rect), border=border))
            results[border].append(iou(confusion(pred[visible], truth)))
    print("\npadding of crops that leave the frame (15-35% cut off; IoU on the visible part)")
    for name, vals in results.items():
        print(f"  {name:<18} mean IoU {np.mean(vals):.4f}  (n={len(vals)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=4, help="scenes per training crop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", nargs="+", default=list_detectors())
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--write", action="store_true", help="update the shipped JSON files")
    parser.add_argument("--padding-check", action="store_true")
    args = parser.parse_args()

    scan = find_pairs(args.data)
    splits = splits_for([p.id for p in scan.pairs])
    trainval = set(splits.trainval)  # the test split is never read
    pairs = [p for p in scan.pairs if p.id in trainval]
    crops = {p.id: read_image(p.image) for p in pairs}
    folds = [set(f) for f in splits.folds]
    print(
        f"{len(crops)} training crops (test split of {len(splits.test)} left out), "
        f"{args.repeats} scenes each, faces {FACE_SIZES[0]}-{FACE_SIZES[1]} px in "
        f"{SCENE[1]}x{SCENE[0]}; figures out of fold over {len(folds)} folds"
    )
    if args.padding_check:
        padding_check(crops, {p.id: read_mask(p.mask) for p in pairs})
        return

    header = (
        f"{'detector':<15} {'mode':<6} {'method':<11} {'found':>6} {'ratio':>6} {'rel std':>7} "
        f"{'rel IQR':>7} {'centre':>6} {'IoU mean':>8} {'IoU p10':>7}"
    )
    print(header)
    for name in args.detectors:
        for mode in args.modes:
            detector = get_detector(name, mode="tiles" if mode == "tiles" else "frame")
            start = time.perf_counter()
            samples, n = collect(detector, mode, crops, args.repeats, args.seed)
            seconds = time.perf_counter() - start
            figures = {m: out_of_fold(samples, folds, m) for m in METHODS}
            for m, f in figures.items():
                print(
                    f"{name:<15} {mode:<6} {m:<11} {len(samples) / n:>6.1%} "
                    f"{f['scale_ratio_median']:>6.3f} {f['scale_ratio_rel_std']:>7.1%} "
                    f"{f['scale_ratio_rel_iqr']:>7.1%} {f['centre_error_median']:>6.3f} "
                    f"{f['iou_mean']:>8.4f} {f['iou_p10']:>7.4f}"
                )
            best = max(METHODS, key=lambda m: figures[m]["iou_mean"])
            mapping = fit(samples, best)
            print(f"  -> {best}: {mapping}  ({seconds:.0f} s)")
            if args.write:
                record = mapping_record(
                    mapping,
                    detector=name,
                    mode=mode,
                    how=(
                        f"benchmarks/calibrate_crops.py --repeats {args.repeats} --seed "
                        f"{args.seed}: {len(crops)} MSFD trainval crops pasted into "
                        f"{SCENE[1]}x{SCENE[0]} scenes at {FACE_SIZES[0]}-{FACE_SIZES[1]} px; "
                        "medians over all matched detections; method chosen by out-of-fold "
                        "mean IoU"
                    ),
                    found=len(samples) / n,
                    out_of_fold=figures,
                )
                path = mapping_path(name, mode)
                path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
                print(f"  wrote {path}")


if __name__ == "__main__":
    main()
