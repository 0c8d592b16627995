"""Whole-head photos with pixel truth: crop mode against scene mode, per way of wearing the mask.

    python benchmarks/bench_maskedface.py [--model unet-msfd] [--data DIR] [--sheet PATH]
        [--set grow_rounds=1 --set grow_by=0.4 ...]

The photos are ``../shared/data/maskedface-seg`` (MaskedFace-Net faces from FFHQ, 1024 x 1024,
a whole head with hair, neck and background; ``CWM`` = mask worn correctly, ``IWM`` = worn
incorrectly: nose, nose and mouth, or chin uncovered). The truth is the mask class (2) of each
``masks/ID_gt.png``. Each photo is segmented two ways through the pipeline's request engine
(``maskseg.pipeline.request``): as one crop (the whole picture given to the segmenter) and as a
scene (faces found, framed, segmented, pasted). Prints per class and overall: mean IoU against
the truth, and the share of photos given a mask (more than 1 % of the picture); for scenes also
the share where a face was found. ``--sheet`` writes a contact sheet of the 12 worst scene
results (photo | truth | scene | crop) to a path outside the repository (default
``runs/maskedface_worst.jpg``; never commit it: the photos are CC BY-NC-SA). ``--set
NAME=VALUE`` changes a scene setting (``maskseg.pipeline.scene.SceneConfig``), e.g. the
grow-and-redo framing.
Development and evaluation only: never train shipped weights on this set.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from maskseg.console import cpu_description
from maskseg.evaluate.metrics import confusion, iou
from maskseg.io import read_image
from maskseg.pipeline.annotate import image_grid, mask_rgb, overlay
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.request import Mode, RequestEngine
from maskseg.pipeline.scene import ScenePredictor
from maskseg.pipeline.scene_config import scene_config

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "maskedface-seg"
MIN_SHARE = 0.01
CLASSES = {"CWM": "worn correctly", "IWM": "worn incorrectly"}


def load(folder: Path) -> list[tuple[str, Path, Path]]:
    """(id, image, truth) for every labelled photo of one class."""
    out = []
    for image in sorted((folder / "images").glob("*.jpg")):
        truth = folder / "masks" / f"{image.stem}_gt.png"
        if truth.is_file():
            out.append((image.stem, image, truth))
    return out


def truth_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)) == 2  # palette: 0 background, 1 skin, 2 mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model name or file (default: shipped)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sheet", type=Path, default=ROOT / "runs" / "maskedface_worst.jpg")
    ap.add_argument("--worst", type=int, default=12)
    ap.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a scene setting"
    )
    a = ap.parse_args()
    if not a.data.is_dir():
        raise SystemExit(f"{a.data} not found (see ../shared/data/README.md)")

    predictor = Predictor.load(a.model, backend=a.backend)
    config = scene_config(a.set)
    engine = RequestEngine(ScenePredictor(predictor, config))
    print(f"CPU: {cpu_description()}; model {a.model or 'default'} ({predictor.describe()})")
    print(f"scene settings: {config}")
    print(
        f"{'class':<22}{'photos':>7} | crop: IoU, given a mask | "
        f"scene: IoU, face found, given a mask | ms/photo crop, scene"
    )
    rows, all_crop, all_scene = [], [], []
    for cls, what in CLASSES.items():
        crop_iou, scene_iou, crop_any, scene_any, found, t_crop, t_scene = ([] for _ in range(7))
        for pid, image_path, truth_path in load(a.data / cls):
            image = read_image(image_path)
            truth = truth_mask(truth_path)
            t = time.perf_counter()
            crop = engine.segment(image, mode=Mode.crop)
            t_crop.append(time.perf_counter() - t)
            t = time.perf_counter()
            scene = engine.segment(image, mode=Mode.scene)
            t_scene.append(time.perf_counter() - t)
            ci = iou(confusion(crop.mask, truth))
            si = iou(confusion(scene.mask, truth))
            crop_iou.append(ci)
            scene_iou.append(si)
            crop_any.append(crop.mask.mean() > MIN_SHARE)
            scene_any.append(scene.mask.mean() > MIN_SHARE)
            found.append(bool(scene.faces))
            rows.append((si, cls, pid, image, truth, scene.mask, crop.mask, ci))
        all_crop += crop_iou
        all_scene += scene_iou
        print(
            f"{cls + ' (' + what + ')':<22}{len(crop_iou):>7} | "
            f"{np.mean(crop_iou):.3f}, {np.mean(crop_any):6.1%}        | "
            f"{np.mean(scene_iou):.3f}, {np.mean(found):6.1%}, {np.mean(scene_any):6.1%}       | "
            f"{statistics.median(t_crop) * 1e3:.0f}, {statistics.median(t_scene) * 1e3:.0f}"
        )
    n, crop_all, scene_all = len(all_crop), np.mean(all_crop), np.mean(all_scene)
    print(f"{'all':<22}{n:>7} | {crop_all:.3f}                 | {scene_all:.3f}")
    print(f"mean IoU to four places: crop {crop_all:.4f}, scene {scene_all:.4f}")
    if a.sheet and a.worst:
        worst = sorted(rows, key=lambda r: r[0])[: a.worst]
        grid = [
            [image, mask_rgb(truth), overlay(image, scene_mask), overlay(image, crop_mask)]
            for _, _, _, image, truth, scene_mask, crop_mask, _ in worst
        ]
        titles = [f"{cls} {pid}\nscene {si:.2f}\ncrop {ci:.2f}" for si, cls, pid, *_, ci in worst]
        a.sheet.parent.mkdir(parents=True, exist_ok=True)
        image_grid(grid, ["photo", "truth", "scene", "crop"], titles, a.sheet, tile=200)
        print(f"contact sheet of the {len(worst)} worst scene results: {a.sheet}")


if __name__ == "__main__":
    main()
