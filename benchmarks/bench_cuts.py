"""Shot-cut detection: does ``CutDetector`` see a cut where there is one, and only there?

    python benchmarks/bench_cuts.py [--photos 300] [--threshold 24] [--part fold0] [--seed 0]

Scores (``maskseg.video.cuts.content_score``, the content detector of PySceneDetect) of
three kinds of frame pairs, all 640 x 480:

- *same shot, clips*: consecutive frames of the video benchmark's clips (labelled crops of
  one part of the MSFD split moving over a backdrop at 2, 6 and 12 px per frame);
- *same shot, photos*: a real photo of ``../shared/data/faces`` (its non-test part) and the
  same photo after a camera move (a pan of 4-16 px, a zoom of 1-3 %, brightness +-5 %,
  sensor noise);
- *cut*: two different photos, and the last frame of one clip against the first of another.

Prints each kind's score percentiles, and at ``--threshold`` the share of same-shot pairs
called a cut (false cuts) and of cuts missed, with the time per frame.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from maskseg.console import cpu_description
from maskseg.data.faces import face_splits, load_index, photo_path
from maskseg.data.splits import load_split
from maskseg.io import read_image
from maskseg.pipeline.modelfile import read_model_info
from maskseg.pipeline.predictor import resolve_model_path
from maskseg.video.cuts import CUT_THRESHOLD, content_score, signature
from maskseg.video.synthetic import moving_faces

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SIZE = (640, 480)


def fit(image: np.ndarray) -> np.ndarray:
    """A photo as a 640 x 480 frame: the largest 4:3 centre crop, resized."""
    h, w = image.shape[:2]
    cw, ch = min(w, h * 4 // 3), min(h, w * 3 // 4)
    x, y = (w - cw) // 2, (h - ch) // 2
    return cv2.resize(image[y : y + ch, x : x + cw], SIZE, interpolation=cv2.INTER_AREA)


def camera_move(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The frame a moment later: panned, zoomed a little, a little brighter or darker, with
    sensor noise."""
    h, w = frame.shape[:2]
    dx, dy = rng.uniform(4, 16) * rng.choice([-1, 1]), rng.uniform(0, 8) * rng.choice([-1, 1])
    zoom = 1 + rng.uniform(0.01, 0.03)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0, zoom)
    m[:, 2] += (dx, dy)
    moved = cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    moved = moved.astype(np.float32) * rng.uniform(0.95, 1.05) + rng.normal(0, 3, moved.shape)
    return np.clip(moved, 0, 255).astype(np.uint8)


def pct(values: list[float]) -> str:
    v = np.array(values)
    return " ".join(f"{q}%: {np.percentile(v, q):6.1f}" for q in (0, 1, 50, 99, 100))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=300, help="photos drawn (seeded)")
    ap.add_argument("--threshold", type=float, default=CUT_THRESHOLD)
    ap.add_argument("--part", default="fold0", help="MSFD part whose crops move in the clips")
    ap.add_argument("--faces", default=str(ROOT / "runs" / "faces"))
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0, help="which photos and camera moves")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)

    cfg, _ = read_model_info(resolve_model_path("unet-msfd-heldout", "onnx"))
    data = load_split(DATA / "mfsd-real" / "MSFD", cfg.data, "all")
    k = int(a.part[4:]) if a.part.startswith("fold") else None
    ids = data.splits.train_val(k)[1] if k is not None else list(data.splits.test)
    pairs = data.take(ids)

    same_clip, cut_clip, ends = [], [], []
    spent, frames_scored = 0.0, 0
    for speed in (2.0, 6.0, 12.0):
        for c in range(a.clips):
            chosen = [pairs[(2 * c + j) % len(pairs)].image for j in range(2)]
            sigs = []
            for frame, _ in moving_faces(chosen, a.frames, SIZE, 140, speed, seed=100 + c):
                start = time.perf_counter()
                sigs.append(signature(frame))
                spent += time.perf_counter() - start
                frames_scored += 1
            same_clip += [content_score(x, y) for x, y in zip(sigs, sigs[1:], strict=False)]
            ends.append((sigs[0], sigs[-1]))
    for i, (_, last) in enumerate(ends):
        first = ends[(i + 1) % len(ends)][0]
        cut_clip.append(content_score(last, first))

    splits = face_splits(load_index(a.faces), cfg.data)
    trainval = set(splits.trainval)
    paths = sorted({p for e, p in photo_path(a.faces) if e.id in trainval and e.status == "ok"})
    picked = [paths[i] for i in rng.permutation(len(paths))[: a.photos]]
    photos = [fit(read_image(p)) for p in picked]  # the index lists only readable photos
    same_photo = [content_score(signature(p), signature(camera_move(p, rng))) for p in photos]
    cut_photo = [
        content_score(signature(p), signature(photos[(i + 1) % len(photos)]))
        for i, p in enumerate(photos)
    ]

    t = a.threshold
    print(f"CPU: {cpu_description()}; threshold {t}")
    rows = [
        ("same shot, clips", same_clip, False),
        ("same shot, photos moved", same_photo, False),
        ("cut, clip to clip", cut_clip, True),
        ("cut, photo to photo", cut_photo, True),
    ]
    for name, scores, is_cut in rows:
        wrong = [s <= t for s in scores] if is_cut else [s > t for s in scores]
        what = "missed" if is_cut else "false cuts"
        print(f"{name:<26} n={len(scores):>5}  {pct(scores)}  {what}: {np.mean(wrong):.1%}")
    print(f"signature: {1000 * spent / max(1, frames_scored):.2f} ms per 640x480 frame")


if __name__ == "__main__":
    main()
