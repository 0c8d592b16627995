"""Scene evaluation with ground truth: ``predict --scene`` on synthetic 640x480 scenes.

    python benchmarks/bench_scene.py [--model unet-msfd-heldout] [--part test] [--repeats 3]
        [--set grow_rounds=1 ...]

Scenes are built (``maskseg.data.synth``) from the labelled crops of one part of the model's own
split (default: its held-out test pairs; the default model is the held-out twin, since the
shipped ``unet-msfd`` trained on every pair and has no test part): each masked face is
placed, at 110-240 px, in ``--repeats`` scenes over varied backgrounds, with up to one more
masked face of the same part and up to two unmasked faces (crops of the face photos' same
part, ``maskseg data faces``) beside it. Prints full-frame IoU of the scene path against the
placed truth (mean over scenes and pooled), crop-mode IoU on the same faces (the crop given to
the model as it is), missed masked faces, unmasked faces that got a mask (> 1 % of their
square), and ms per scene.
``--part fold0`` scores fold 0's validation pairs instead (for choices made on validation).
``--set NAME=VALUE`` changes a scene setting (``maskseg.pipeline.scene.SceneConfig``).
``--breakdown`` also says where the full-frame IoU is lost: per background kind; per placed
masked face, IoU inside its own square and why a face got no mask there (not found, or found
and left empty by the gate or the face check); and how much paint lies outside the masked
squares (on unmasked faces, or on the background around them).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from maskseg.data.splits import load_split
from maskseg.data.synth import BACKGROUNDS, compose
from maskseg.evaluate.metrics import confusion, iou
from maskseg.pipeline.detect import box_iou
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.scene import ScenePredictor
from maskseg.pipeline.scene_config import SCENE_SCORE_THRESHOLD, SceneConfig, scene_config

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mfsd-real" / "MSFD"
FACES = ROOT / "runs" / "faces"


def part_ids(splits, part: str) -> list[str]:
    if part == "test":
        return list(splits.test)
    if part.startswith("fold"):
        return splits.train_val(int(part[4:]))[1]
    raise ValueError(f"unknown part {part!r}: test or foldK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model",
        default="unet-msfd-heldout",
        help="model name or file (default: the held-out twin; its test pairs are unseen)",
    )
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--faces", default=str(FACES), help="`maskseg data faces` output ('' for none)")
    ap.add_argument("--part", default="test", help="test or foldK (validation of fold K)")
    ap.add_argument("--repeats", type=int, default=3, help="scenes per masked face")
    ap.add_argument("--unmasked", type=int, default=2, help="most unmasked faces per scene")
    ap.add_argument("--mode", default="tiles", choices=["frame", "tiles"])
    ap.add_argument("--score-threshold", type=float, default=SCENE_SCORE_THRESHOLD)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a scene setting"
    )
    ap.add_argument("--breakdown", action="store_true", help="where the IoU is lost")
    a = ap.parse_args()

    predictor = Predictor.load(a.model, backend=a.backend)
    d = predictor.config.data
    data = load_split(a.data, d, "all")
    pairs = data.take(part_ids(data.splits, a.part))
    if not len(pairs):
        raise SystemExit(
            f"model {a.model or 'default'} has no {a.part} pairs in its split (a model trained "
            "on every pair has no test part): use --model unet-msfd-heldout or --part foldK"
        )
    unmasked = []
    if a.faces and a.unmasked > 0:
        from maskseg.data.faces import face_splits, load_crops, load_index

        fs = face_splits(load_index(a.faces), d)
        unmasked = [c for c in load_crops(a.faces, part_ids(fs, a.part)) if not c.mask]
    config = scene_config(a.set, SceneConfig(mode=a.mode, score_threshold=a.score_threshold))
    scene = ScenePredictor(predictor, config)

    crop_iou = {s.id: float(iou(confusion(predictor.predict(s.image), s.mask))) for s in pairs}
    rng = np.random.default_rng(a.seed)
    scene_ious, inter, union, ms = [], 0, 0, []
    missed = placed_masked = placed_unmasked = false_masks = 0
    crop_ious_of_placed = []
    parts = Breakdown()
    for k, s in enumerate(pairs):
        for _ in range(a.repeats):
            faces = [(s.id, s.image, s.mask)]
            if len(pairs) > 1 and rng.random() < 0.5:
                o = pairs[(k + 1 + int(rng.integers(len(pairs) - 1))) % len(pairs)]
                faces.append((o.id, o.image, o.mask))
            for _ in range(int(rng.integers(0, a.unmasked + 1)) if unmasked else 0):
                u = unmasked[int(rng.integers(len(unmasked)))]
                faces.append((u.id, u.image, None))
            photo = pairs[int(rng.integers(len(pairs)))].image
            # the draw compose makes itself when given no kind: the same scenes, kind known
            kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
            sc = compose(faces, rng, kind=kind, photo=photo)
            start = time.perf_counter()
            result = scene.segment(sc.image)
            ms.append((time.perf_counter() - start) * 1000)
            c = confusion(result.mask, sc.truth)
            scene_ious.append(float(iou(c)))
            inter, union = inter + int(c.tp[0]), union + int(c.tp[0] + c.fp[0] + c.fn[0])
            boxes = np.array([f.box for f in result.faces], np.float64).reshape(-1, 4)
            if a.breakdown:
                parts.add(kind, scene_ious[-1], sc, result, boxes)
            for p in sc.placements:
                x1, y1, x2, y2 = p.rect
                if p.masked:
                    placed_masked += 1
                    crop_ious_of_placed.append(crop_iou[p.id])
                    missed += not found(p.rect, boxes)
                else:
                    placed_unmasked += 1
                    false_masks += result.mask[y1:y2, x1:x2].mean() > 0.01
    print(
        f"model {a.model or 'default'} ({predictor.describe()}); part {a.part}: "
        f"{len(pairs)} masked faces, {len(unmasked)} unmasked crops; detector "
        f"blazeface {a.mode}, score >= {a.score_threshold}"
    )
    print(f"scene settings: {config}")
    print(
        f"scenes: {len(scene_ious)} (640x480), masked faces placed {placed_masked}, "
        f"unmasked faces placed {placed_unmasked}"
    )
    print(f"scene IoU  mean {np.mean(scene_ious):.4f}  (pooled {inter / max(1, union):.4f})")
    print(f"crop IoU   mean {np.mean(crop_ious_of_placed):.4f}  (the same faces, as crops)")
    print(f"missed masked faces {missed}/{placed_masked} ({missed / max(1, placed_masked):.1%})")
    print(
        f"unmasked faces given a mask {false_masks}/{placed_unmasked} "
        f"({false_masks / max(1, placed_unmasked):.1%})"
    )
    print(f"ms per scene: median {statistics.median(ms):.1f}")
    if a.breakdown:
        parts.report()


def found(rect, boxes: np.ndarray) -> bool:
    """Whether a placed face's square was detected: a box overlapping it by IoU >= 0.25."""
    return bool(len(boxes)) and float(box_iou(np.array(rect, np.float64), boxes).max()) >= 0.25


class Breakdown:
    """Where a scene's IoU goes (``--breakdown``)."""

    def __init__(self) -> None:
        self.by_kind: dict[str, list[float]] = {}
        self.face_ious: list[float] = []
        self.not_found = self.left_empty = 0
        self.tp = self.painted = self.on_unmasked = self.around = 0

    def add(self, kind: str, scene_iou: float, sc, result, boxes: np.ndarray) -> None:
        self.by_kind.setdefault(kind, []).append(scene_iou)
        mask = result.mask.astype(bool)
        masked_squares = np.zeros_like(mask)
        for p in sc.placements:
            x1, y1, x2, y2 = p.rect
            if not p.masked:
                self.on_unmasked += int(mask[y1:y2, x1:x2].sum())
                continue
            masked_squares[y1:y2, x1:x2] = True
            c = confusion(mask[y1:y2, x1:x2], sc.truth[y1:y2, x1:x2])
            self.face_ious.append(float(iou(c)))
            if not mask[y1:y2, x1:x2].any():
                seen = found(p.rect, boxes)
                self.left_empty += seen
                self.not_found += not seen
        self.tp += int((mask & sc.truth).sum())
        self.painted += int(mask.sum())
        self.around += int((mask & ~masked_squares).sum())

    def report(self) -> None:
        print("\nbreakdown")
        for kind, v in sorted(self.by_kind.items()):
            print(f"  background {kind:<9} scenes {len(v):3d}  scene IoU mean {np.mean(v):.4f}")
        f = np.array(self.face_ious)
        print(
            f"  masked faces {len(f)}: IoU inside their own square mean {f.mean():.4f}, "
            f"median {np.median(f):.4f}; no mask in the square: {self.not_found} not found, "
            f"{self.left_empty} found and left empty (gate or face check)"
        )
        print(
            f"  paint outside the masked squares: {self.around / max(1, self.painted):.1%} of "
            f"all painted pixels ({self.on_unmasked / max(1, self.painted):.1%} on unmasked "
            f"faces); true pixels found {self.tp:,}, painted {self.painted:,}"
        )


if __name__ == "__main__":
    main()
