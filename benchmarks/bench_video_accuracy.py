"""Video accuracy against ground truth: does smoothing help, and does it lag a moving face?

    python benchmarks/bench_video_accuracy.py [--model unet-msfd-heldout] [--clips 11]
                                              [--frames 90] [--faces 2] [--speeds 2 6]
                                              [--set grow_rounds=0 ...]

Clips are built from the model's held-out test pairs (so the default is the held-out twin;
the shipped model saw every pair): ``--faces`` labelled crops move over a background at
``--speeds`` px per frame, bouncing off the edges, and each frame's truth is the crops'
masks at the place and size they were pasted (``maskseg.video.synthetic.moving_faces``).
Each clip runs through ``VideoSegmenter`` four ways: the default (tracking, re-detection
around followed faces, smoothing), the same with ``--no-smooth``, a full detection in every
frame with smoothing (``--detect-every 1``), and a full detection in every frame without
smoothing (each frame on its own, as ``predict --scene``). Prints mean
per-frame IoU against the truth, the frame-to-frame flicker (pixels that change between
consecutive frames beyond what the truth changes, as a share of the truth's area), and the
IoU of the 10 frames after each bounce (where lag would show). ``--set NAME=VALUE`` changes a
scene setting (``maskseg.pipeline.scene_config``; ``grow_rounds=0``: no grow and redo).
``--hold-look V ...`` adds the default with faces the search around followed faces cannot see
held while they look alike (``VideoOptions.hold_look``); the last two columns are the share of
frames with a full detection and the face crops the U-Net segmented a frame (its work, which
no CPU's noise moves). ``--gate-frames K ...`` adds the default with the gate's
decision voted over each face's last K frames (``VideoOptions.gate_frames``); ``--redo-model
M`` the default with the grown windows of grow and redo segmented by model M
(``ScenePredictor(redo=...)``); ``--segment-every K ...`` the default with each followed face
segmented every K-th frame between full detections (``VideoOptions.segment_every``);
``--carry-window`` the default with ``VideoOptions.carry_window`` flipped; ``--carry-overlap S
...`` the default with ``VideoOptions.carry_overlap`` S; ``--smooth-weight W ...`` with
``VideoOptions.smooth_weight`` W; ``--hold-taken-back`` with ``VideoOptions.hold_taken_back``
flipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from maskseg.data.splits import load_split
from maskseg.evaluate.metrics import confusion, iou
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.scene import ScenePredictor
from maskseg.pipeline.scene_config import scene_config
from maskseg.video import VideoOptions, VideoSegmenter
from maskseg.video.synthetic import moving_faces

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scene import part_ids  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mfsd-real" / "MSFD"
SIZE = (640, 480)
SIDE = 150


def truth_of(masks: list[np.ndarray], rects: list[tuple[int, int, int, int]]) -> np.ndarray:
    w, h = SIZE
    out = np.zeros((h, w), bool)
    for m, (x, y, x2, _) in zip(masks, rects, strict=True):
        side = x2 - x
        small = cv2.resize(m.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
        out[y0:y1, x0:x1] |= small[y0 - y : y1 - y, x0 - x : x1 - x].astype(bool)
    return out


# boolean VideoOptions fields a flag adds a row for, the default's other way: what they do
FLIPS = {
    "hold_empty": "a face its full detection left without a mask stays so in the searched "
    "frames, or not",
    "hold_growth": "grow and redo decided on full detections and held between, or every frame",
    "carry_window": "a face due for the model first cut from its carried window, or from its "
    "steadied one",
    "hold_taken_back": "a face whose growth was taken back not grown again before the next "
    "full detection, or grown",
}
# numeric VideoOptions fields a flag adds a row for each value of: (metavar, what they do)
VALUES = {
    "smooth_weight": ("W", "the newest frame's share of a face's running mask"),
    "carry_overlap": ("S", "a face overlapping another by S of the smaller window segmented, "
                      "not carried"),
}  # fmt: skip


def add_option_flags(ap: argparse.ArgumentParser) -> None:
    """A flag per ``FLIPS`` and ``VALUES`` field, ``--hold-empty-twice`` and
    ``--segment-every``, for this bench and bench_video_photos."""
    for option, what in FLIPS.items():
        ap.add_argument(
            "--" + option.replace("_", "-"),
            action="store_true",
            help=f"also the default with VideoOptions.{option} flipped ({what})",
        )
    ap.add_argument(
        "--hold-empty-twice",
        action="store_true",
        help="also the default with hold_empty on and VideoOptions.hold_empty_twice flipped "
        "(a face masked at its previous full detection held empty only after two empty ones)",
    )
    for option, (metavar, what) in VALUES.items():
        ap.add_argument(
            "--" + option.replace("_", "-"),
            type=float,
            nargs="+",
            default=[],
            metavar=metavar,
            help=f"also the default with VideoOptions.{option} {metavar}: {what}",
        )
    ap.add_argument(
        "--segment-every",
        type=int,
        nargs="+",
        default=[],
        metavar="K",
        help="also the default with each followed face segmented every K-th frame between "
        "full detections (VideoOptions.segment_every)",
    )


def option_ways(a: argparse.Namespace) -> dict[str, VideoOptions]:
    """The rows those flags ask for, named, each beside the default: the other way."""
    ways = {}
    for option in FLIPS:
        if getattr(a, option):
            flipped = not getattr(VideoOptions(), option)
            name = f"{option} {'on' if flipped else 'off'}"
            ways[name] = VideoOptions(**{option: flipped})
    if a.hold_empty_twice:
        twice = not VideoOptions().hold_empty_twice
        ways[f"hold_empty_twice {'on' if twice else 'off'}"] = VideoOptions(
            hold_empty=True, hold_empty_twice=twice
        )
    for option in VALUES:
        for v in getattr(a, option):
            ways[f"{option} {v:g}"] = VideoOptions(**{option: v})
    for k in a.segment_every:
        if k != VideoOptions().segment_every:
            ways[f"segment_every {k}"] = VideoOptions(segment_every=k)
    return ways


def run(
    scene: ScenePredictor, options: VideoOptions, frames: list[np.ndarray]
) -> tuple[list, int, int]:
    """Each frame's mask, how many frames had a full detection, and how many face crops the
    U-Net segmented (the model's work: a speed figure no CPU's noise moves)."""
    seg = VideoSegmenter(scene, options)
    cut = [0]
    real = scene.crop_logits

    def counted(image, rects, **kw):
        cut[0] += len(rects)
        return real(image, rects, **kw)

    scene.crop_logits = counted
    try:
        results = [seg(f) for f in frames]
    finally:
        del scene.crop_logits
    return [r.scene.mask for r in results], sum(r.full_detection for r in results), cut[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet-msfd-heldout")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument(
        "--part",
        default="test",
        help="test, or foldK: validation of fold K (for choices, with that fold's model)",
    )
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--clips", type=int, default=11)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--faces", type=int, default=2)
    ap.add_argument("--speeds", type=float, nargs="+", default=[2.0, 6.0])
    ap.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a scene setting"
    )
    ap.add_argument(
        "--default-only", action="store_true", help="only the default row (a model comparison)"
    )
    ap.add_argument(
        "--hold-only",
        action="store_true",
        help="only the default row and held growth (the hold_growth rule)",
    )
    ap.add_argument(
        "--redo-model",
        default=None,
        metavar="M",
        help="also the default with the grown windows redone by model M (ScenePredictor redo)",
    )
    ap.add_argument(
        "--gate-frames",
        type=int,
        nargs="+",
        default=[],
        metavar="K",
        help="also the default with the gate voted over K frames (VideoOptions.gate_frames)",
    )
    ap.add_argument(
        "--hold-look",
        type=float,
        nargs="+",
        default=[],
        metavar="V",
        help="also the default with faces the search around faces misses held while they "
        "look alike at least V (VideoOptions.hold_look; 0: not held)",
    )
    add_option_flags(ap)
    a = ap.parse_args()

    predictor = Predictor.load(a.model, backend=a.backend)
    scene = ScenePredictor(predictor, scene_config(a.set))
    d = predictor.config.data
    data = load_split(a.data, d, "all")
    pairs = data.take(part_ids(data.splits, a.part))
    if len(pairs) < a.faces:
        raise SystemExit(f"{a.model}: its {a.part} part of {a.data} has {len(pairs)} pairs")
    ways = {
        "default (track + smooth)": VideoOptions(),
        "growth held (hold_growth)": VideoOptions(hold_growth=True),
        "--no-smooth": VideoOptions(smooth=False),
        "full detection + smooth": VideoOptions(detect_every=1),
        "each frame alone": VideoOptions(smooth=False, detect_every=1),
    }
    if a.default_only:
        ways = {"default (track + smooth)": VideoOptions()}
    elif a.hold_only:
        ways = {k: ways[k] for k in ("default (track + smooth)", "growth held (hold_growth)")}
    for k in a.gate_frames:
        ways[f"gate voted over {k} frames"] = VideoOptions(gate_frames=k)
    for v in a.hold_look:
        name = f"lost faces held ({v:g})" if v else "lost faces not held"  # 0: None
        ways[name] = VideoOptions(hold_look=v or None)
    ways.update(option_ways(a))
    scenes = dict.fromkeys(ways, scene)
    if a.redo_model:
        redo = Predictor.load(a.redo_model, backend=a.backend)
        name = "default, redone by --redo-model"
        ways[name] = VideoOptions()
        scenes[name] = ScenePredictor(predictor, scene_config(a.set), redo=redo)
    print(
        f"model {a.model} ({predictor.describe()}); {a.clips} clips x {a.frames} frames, "
        f"{a.faces} faces of the {a.part} part each, {SIDE} px, 640x480"
        + (f"; scene settings {', '.join(a.set)}" if a.set else "")
        + (f"; redo model {a.redo_model}" if a.redo_model else "")
    )
    for speed in a.speeds:
        scores = {
            k: {"iou": [], "flicker": [], "after_bounce": [], "full": [], "crops": []} for k in ways
        }
        for c in range(a.clips):
            chosen = [pairs[(c * a.faces + k) % len(pairs)] for k in range(a.faces)]
            frames, truths, pos = [], [], []
            for frame, rects in moving_faces(
                [s.image for s in chosen], a.frames, SIZE, SIDE, speed, seed=c
            ):
                frames.append(frame)
                truths.append(truth_of([s.mask for s in chosen], rects))
                pos.append(np.array([(r[0], r[1]) for r in rects], float))
            step = np.diff(np.array(pos), axis=0)  # (frames - 1, faces, 2)
            turned = (np.sign(step[1:]) * np.sign(step[:-1]) < 0).any(axis=(1, 2))
            bounces = [i + 2 for i in np.flatnonzero(turned)]  # the frame after the turn
            after = sorted({j for b in bounces for j in range(b, min(b + 10, a.frames))})
            for name, options in ways.items():
                masks, full, cut = run(scenes[name], options, frames)
                scores[name]["full"].append(full / len(frames))
                scores[name]["crops"].append(cut / len(frames))
                per = [float(iou(confusion(m, t))) for m, t in zip(masks, truths, strict=True)]
                scores[name]["iou"].append(np.mean(per))
                if after:
                    scores[name]["after_bounce"].append(np.mean([per[j] for j in after]))
                change = [
                    int((m1 ^ m0).sum()) - int((t1 ^ t0).sum())
                    for m0, m1, t0, t1 in zip(masks, masks[1:], truths, truths[1:], strict=False)
                ]
                area = np.mean([t.sum() for t in truths])
                scores[name]["flicker"].append(max(0.0, float(np.mean(change))) / area)
        print(f"\nspeed {speed:g} px/frame")
        print(
            f"{'':<26}{'mean IoU':>10}{'IoU after bounces':>19}{'flicker':>9}{'full det.':>11}"
            f"{'crops/frame':>13}"
        )
        for name, s in scores.items():
            ab = np.mean(s["after_bounce"]) if s["after_bounce"] else float("nan")
            print(
                f"{name:<26}{np.mean(s['iou']):>10.4f}{ab:>19.4f}{np.mean(s['flicker']):>9.3f}"
                f"{np.mean(s['full']):>11.1%}{np.mean(s['crops']):>13.2f}"
            )


if __name__ == "__main__":
    main()
