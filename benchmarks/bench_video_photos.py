"""Video of real photos: false masks on people without one, and masks kept on people with one.

    python benchmarks/bench_video_photos.py [--model unet-msfd] [--faces runs/faces]
        [--part test|val|foldK] [--limit 40] [--frames 30] [--hold-look V ...]

``bench_video_accuracy.py`` moves labelled MSFD crops over plain backgrounds: no hair,
collars, hands or posters for the detector to mistake for a face, so it cannot show masks
painted on those, or such masks flickering in and out. Here each photo of the ``--part`` of
``../shared/data/faces`` (the split of ``maskseg data faces``, as ``bench_photos.py``; choose
on ``foldK`` with that fold's model, report ``test``) becomes a short clip as a still camera
would film it: the photo letterboxed into 640 x 480, drifting half a pixel a frame, with
sensor noise, through ``VideoSegmenter`` (tracking, searches around followed faces,
smoothing, the gate and the learned face check as ``maskseg video`` runs them). Prints, for
photos without a mask: the share of frames given a mask (more than ``MIN_SHARE`` of the
frame), the share of clips with any such frame, and the mask's on/off switches per clip (the
flicker); for photos with one: the share of frames whose mask is on the main face (the crop
window ``maskseg data faces`` cut, as ``bench_photos.py``'s ``ON_FACE``); and the share of
frames detected in full. ``--hold-look V`` adds ``VideoOptions(hold_look=V)`` beside the
default (0: the default, not held), ``--hold-empty`` and ``--hold-empty-twice`` the default
with ``VideoOptions.hold_empty`` / ``hold_empty_twice`` flipped, ``--hold-growth`` with
``hold_growth`` flipped, ``--segment-every K ...`` the default with
``VideoOptions(segment_every=K)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from maskseg.console import cpu_description
from maskseg.data.faces import face_splits, load_index
from maskseg.io import ImageReadError, read_image
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.scene import ScenePredictor
from maskseg.pipeline.scene_config import scene_config
from maskseg.video import VideoOptions, VideoSegmenter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_photos import FACES, ON_FACE, part_ids, photos_folder, window_share  # noqa: E402
from bench_video_accuracy import add_option_flags, option_ways  # noqa: E402

SIZE = (640, 480)
MIN_SHARE = 0.001  # a frame "has a mask" above this share of its pixels
DRIFT = 0.5  # px a frame
NOISE = 2.0  # grey levels, sensor noise


def clip(image: np.ndarray, frames: int, seed: int) -> tuple[list[np.ndarray], list[tuple]]:
    """The photo letterboxed into SIZE, drifting DRIFT px a frame with noise; and, per
    frame, the affine map (scale, dx, dy) from photo pixels to frame pixels."""
    w, h = SIZE
    scale = min(w / image.shape[1], h / image.shape[0])
    rng = np.random.default_rng(seed)
    direction = rng.uniform(0, 2 * np.pi)
    out, maps = [], []
    for k in range(frames):
        dx = (w - scale * image.shape[1]) / 2 + DRIFT * k * np.cos(direction)
        dy = (h - scale * image.shape[0]) / 2 + DRIFT * k * np.sin(direction)
        m = np.float32([[scale, 0, dx], [0, scale, dy]])
        frame = cv2.warpAffine(image, m, SIZE, flags=cv2.INTER_AREA, borderValue=(0, 0, 0))
        noisy = frame.astype(np.float32) + rng.normal(0, NOISE, frame.shape)
        out.append(np.clip(noisy, 0, 255).astype(np.uint8))
        maps.append((scale, dx, dy))
    return out, maps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model name or file (default: shipped)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--faces", default=str(FACES), help="`maskseg data faces` output folder")
    ap.add_argument("--part", default="test", help="test, val (= fold0) or foldK")
    ap.add_argument("--limit", type=int, default=40, help="photos per label (0: all)")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--hold-look", type=float, nargs="+", default=[], metavar="V")
    add_option_flags(ap)
    a = ap.parse_args()

    index = load_index(a.faces)
    photos_root = photos_folder(a.faces)
    predictor = Predictor.load(a.model, backend=a.backend)
    ways = {"default": VideoOptions()}
    for v in a.hold_look:
        ways[f"hold_look {v:g}" if v else "not held"] = VideoOptions(hold_look=v or None)
    ways.update(option_ways(a))
    scenes = {
        name: ScenePredictor(predictor, o.scene_config(scene_config(a.set)))
        for name, o in ways.items()
    }
    part = set(part_ids(face_splits(index, predictor.config.data), a.part))
    entries = {e.id: e for e in index}
    print(f"CPU: {cpu_description()}; model {a.model or 'default'} ({predictor.describe()})")
    print(
        f"photos: the {a.part} part of {photos_root}, at most {a.limit} per label; "
        f"{a.frames} frames each, {SIZE[0]}x{SIZE[1]}, drift {DRIFT} px a frame"
    )
    for label in ("without_mask", "with_mask"):
        ids = sorted(e.id for e in index if e.id in part and e.id.startswith(label + "/"))
        ids = ids[: a.limit] if a.limit else ids
        rows = {name: {"masked": [], "clips": [], "switches": [], "full": []} for name in ways}
        used = 0
        for n, i in enumerate(ids):
            try:
                image = read_image(photos_root / i)
            except (ImageReadError, OSError, ValueError):
                continue
            entry = entries[i]
            if label == "with_mask" and entry.status != "ok":
                continue  # no main face window to judge the mask by
            used += 1
            frames, maps = clip(image, a.frames, seed=n)
            for name, options in ways.items():
                seg = VideoSegmenter(scenes[name], options)
                on, full = [], 0
                for frame, (s, dx, dy) in zip(frames, maps, strict=True):
                    r = seg(frame)
                    full += r.full_detection
                    if label == "without_mask":
                        on.append(float(r.scene.mask.mean()) > MIN_SHARE)
                    else:
                        x1, y1, x2, y2 = entry.rect
                        rect = [s * x1 + dx, s * y1 + dy, s * x2 + dx, s * y2 + dy]
                        on.append(window_share(r.scene.mask, rect) > ON_FACE)
                rows[name]["masked"].append(float(np.mean(on)))
                rows[name]["clips"].append(any(on))
                rows[name]["switches"].append(int(np.sum(np.diff(np.array(on, int)) != 0)))
                rows[name]["full"].append(full / len(frames))
        what = "frames given a mask" if label == "without_mask" else "frames, mask on the face"
        print(f"\n{label}: {used} clips")
        pad = max([16, *(len(n) + 2 for n in rows)])  # the names' column fits the longest
        print(f"{'':<{pad}}{what:>26}{'clips with any':>16}{'switches/clip':>15}{'full det.':>11}")
        for name, r in rows.items():
            print(
                f"{name:<{pad}}{np.mean(r['masked']):>26.2%}{np.mean(r['clips']):>16.1%}"
                f"{np.mean(r['switches']):>15.2f}{np.mean(r['full']):>11.1%}"
            )


if __name__ == "__main__":
    main()
