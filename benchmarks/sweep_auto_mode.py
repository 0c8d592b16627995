"""One mode for any picture: the auto-mode candidates of docs/shipped-model-plan.md, on
validation data only.

    python benchmarks/sweep_auto_mode.py [--model unet-msfd] [--twin unet-msfd-heldout]
        [--limit 0]

A picture is read as one face crop (crop mode) when the scene path's largest face window is
at least ``t`` times the picture's short side (the face fills it), else as a scene; a
picture without faces goes as today's auto mode does (crop mode when shaped like a crop).
Each picture is segmented both ways once, and every ``t`` picks between them. Printed per
candidate:

- MSFD crops: fold 0's validation pairs (held-out twin): mean IoU of auto against crop mode
  (the gap the rule is chosen on) and against scene mode;
- photos: fold 0's validation photos of ``../shared/data/faces`` (shipped model): unmasked and
  masked photos given a mask (over 1 % of the picture), with scene mode's for comparison;
- maskedface: ``../shared/data/maskedface-seg`` dev 150 (shipped model): IoU per class
  (reported, not chosen on).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from maskseg.console import cpu_description
from maskseg.data.faces import INDEX, face_splits, load_index
from maskseg.data.splits import load_split
from maskseg.evaluate.metrics import confusion, iou
from maskseg.io import ImageReadError, read_image
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.request import looks_like_crop
from maskseg.pipeline.scene import ScenePredictor
from maskseg.pipeline.windows import side_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_maskedface import DATA as MASKEDFACE  # noqa: E402
from bench_maskedface import load as load_maskedface  # noqa: E402
from bench_maskedface import truth_mask  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "runs" / "faces"
MSFD = ROOT.parent / "shared" / "data" / "mfsd-real" / "MSFD"
MIN_SHARE = 0.01
CANDIDATES = (0.6, 0.7, 0.8)


def both(predictor: Predictor, scene: ScenePredictor, image: np.ndarray) -> dict:
    """Crop-mode and scene-mode masks and the largest window's side over the short side."""
    result = scene.segment(image)
    short = min(image.shape[:2])
    ratio = max((side_of(f.crop) for f in result.faces), default=0.0) / short
    return {
        "crop": predictor.predict(image),
        "scene": result.mask,
        "ratio": ratio,
        "faces": len(result.faces),
        "crop_shaped": looks_like_crop(*image.shape[:2]),
    }


def auto(rec: dict, t: float | None) -> np.ndarray:
    """The mask auto mode gives with threshold ``t`` (None: today's auto)."""
    if not rec["faces"]:
        return rec["crop"] if rec["crop_shaped"] else rec["scene"]
    if t is not None and rec["ratio"] >= t:
        return rec["crop"]
    return rec["scene"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--twin", default="unet-msfd-heldout")
    ap.add_argument("--faces", type=Path, default=FACES)
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    model, twin = Predictor.load(a.model), Predictor.load(a.twin)
    scene, twin_scene = ScenePredictor(model), ScenePredictor(twin)
    print(f"CPU: {cpu_description()}; model {a.model or 'default'}, twin {a.twin}")

    data = load_split(MSFD, twin.config.data, "all")
    pairs = data.take(data.splits.train_val(0)[1])[: a.limit or None]
    crops = [(both(twin, twin_scene, s.image), s.mask) for s in pairs]

    index = load_index(a.faces)
    root = Path(json.loads((a.faces / INDEX).read_text())["root"])
    val = set(face_splits(index, model.config.data).train_val(0)[1])
    photos: dict[str, list[dict]] = {}
    for label in ("without_mask", "with_mask"):
        ids = sorted(e.id for e in index if e.id in val and e.id.startswith(label + "/"))
        photos[label] = []
        for i in ids[: a.limit or None]:
            try:
                photos[label].append(both(model, scene, read_image(root / i)))
            except (ImageReadError, OSError, ValueError):
                continue
    mf = {
        cls: [
            (both(model, scene, read_image(image)), truth_mask(truth))
            for _, image, truth in load_maskedface(MASKEDFACE / cls)[: a.limit or None]
        ]
        for cls in ("CWM", "IWM")
    }
    print(
        f"MSFD fold-0 crops {len(crops)}; photos {len(photos['without_mask'])} unmasked, "
        f"{len(photos['with_mask'])} masked; maskedface {sum(map(len, mf.values()))}"
    )

    def mean_iou(recs, pick) -> float:
        return float(np.mean([iou(confusion(pick(r), truth)) for r, truth in recs]))

    def given(recs, pick) -> float:
        return float(np.mean([pick(r).mean() > MIN_SHARE for r in recs]))

    crop_iou = mean_iou(crops, lambda r: r["crop"])
    scene_iou = mean_iou(crops, lambda r: r["scene"])
    print(f"MSFD fold-0 crops: crop mode {crop_iou:.4f}, scene mode {scene_iou:.4f}")
    print(
        f"photos, scene mode: unmasked given a mask "
        f"{given(photos['without_mask'], lambda r: r['scene']):.2%}, masked "
        f"{given(photos['with_mask'], lambda r: r['scene']):.2%}"
    )
    print(
        f"{'t':<8}{'MSFD auto IoU':>14}{'gap to crop':>12}{'unmasked given':>16}"
        f"{'masked given':>14}{'maskedface CWM':>16}{'IWM':>8}"
    )
    for t in (None, *CANDIDATES):

        def pick(r, t=t):
            return auto(r, t)

        m = mean_iou(crops, pick)
        print(
            f"{'today' if t is None else t:<8}{m:>14.4f}{crop_iou - m:>12.4f}"
            f"{given(photos['without_mask'], pick):>16.2%}{given(photos['with_mask'], pick):>14.2%}"
            f"{mean_iou(mf['CWM'], pick):>16.4f}{mean_iou(mf['IWM'], pick):>8.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
