"""Which detections are faces: the face-check candidates of docs/shipped-model-plan.md, on
validation data only.

    python benchmarks/sweep_face_check.py [--model unet-msfd] [--twin unet-msfd-heldout]
        [--limit 0] [--secondary] [--confidence] [--zones]

Every image goes once through the scene path's stages (detect, windows, segment, grow and
redo), and each detection gets the Face Mesh face-presence score
(``maskseg.pipeline.detect.landmarks``); each candidate rule then drops detections and the
frame mask is pasted again from the kept faces only (``ScenePredictor.paste``: the same masks
the scene path would paste had the rule dropped them before segmentation). Printed per
candidate, on three validation sets:

- photos: fold 0's (``--fold K``: fold K's, as for the scenes) validation photos of
  ``../shared/data/faces`` (shipped model): unmasked and masked photos given a mask (over 1 %
  of the picture);
- scenes: fold 0's validation pairs in synthetic scenes (``bench_scene.py --part fold0``,
  the same scenes, held-out twin): full-frame IoU mean;
- maskedface: ``../shared/data/maskedface-seg`` (dev 150, shipped model): scene IoU mean,
  and how many incorrectly worn (IWM) photos get a mask (over 1 % of the picture).

A rule drops a detection when its presence is under ``p`` and its detector score under
``s`` ("presence"), or when its box side is under ``r`` times the image's largest detection's
("size"), or either ("both"). With ``--confidence``, the presence rules also need the
model's own peak logit in the face's final window (the gated output's maximum: the lower of
the decoder's surest pixel and the gate's logit) under ``g`` before they drop it, each with
the size check 0.25: a window the model is sure holds a mask is kept whatever Face Mesh says.
With ``--zones``, the shipped size check with each zone rule (``maskseg.pipeline.face_check.
in_zones``): a detection under a ratio of a larger one's side, lying in the body below that
face or in the head around it, is dropped; ``--zones-score``: the halo rules again, each
dropping only detections under a detector score. With ``--geometry``, the shipped size check
with rules that ask whether a detection looks like a face to the two models already run:
"keypoints" (BlazeFace's six keypoints rolled past R degrees or out of a face's order,
``maskseg.pipeline.face_check.keypoints_implausible``), "wear" (the wear check reads the
face's painted mask as no worn mask: nose covered but not the mouth, landmarks out of order
or off the box, pixels off the lower face; ``maskseg.pipeline.wear.not_worn_like_a_mask``),
or either; each for detections under a detector score s only, or for all.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from maskseg.console import cpu_description
from maskseg.data.faces import INDEX, face_splits, load_crops, load_index
from maskseg.data.splits import load_split
from maskseg.data.synth import compose
from maskseg.evaluate.metrics import confusion, iou
from maskseg.io import ImageReadError, read_image
from maskseg.pipeline.detect.detections import Detections
from maskseg.pipeline.detect.landmarks import FaceLandmarker
from maskseg.pipeline.face_check import FaceCheck, keep_mask, keypoints_implausible
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.request import face_parts
from maskseg.pipeline.scene import ScenePredictor
from maskseg.pipeline.scene_config import SceneConfig
from maskseg.pipeline.wear import WearCheck, not_worn_like_a_mask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_maskedface import DATA as MASKEDFACE  # noqa: E402
from bench_maskedface import load as load_maskedface  # noqa: E402
from bench_maskedface import truth_mask  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "runs" / "faces"
MSFD = ROOT.parent / "shared" / "data" / "mfsd-real" / "MSFD"
MIN_SHARE = 0.01

PRESENCE = [(p, s) for p in (0.01, 0.05, 0.1) for s in (0.4, 0.5, 0.6)]
SIZES = [1 / 4, 1 / 3]
# --confidence: presence under p, detector score under s (1.01: any) and peak logit under g
CONFIDENCE = [(p, s, g) for p in (0.01, 0.05, 0.1) for s in (0.5, 0.6, 1.01) for g in (2, 4, 6)]


# --zones: the body below and the head around a larger face (maskseg.pipeline.face_check.in_zones)
ZONE_BODY: list[tuple[float, float] | None] = [None, (0.75, 2.0), (1.0, 3.0), (1.5, 4.0)]
ZONE_HALO: list[float | None] = [None, 0.5, 1.0]
ZONE_RATIO = [0.5, 0.75]
# --zones-score: the zone rules only for detections the detector is unsure of (score under s)
ZONE_SCORE = [0.5, 0.6, 0.7]

# --geometry: keypoints rolled past R degrees (or out of order), the wear reading, or either,
# for detections under a detector score s (None: all)
GEOMETRY_KINDS = ("keypoints", "wear", "keypoints | wear")
GEOMETRY_ROLL = [30.0, 45.0]
GEOMETRY_SCORE: list[float | None] = [0.5, 0.6, None]


def geometry_candidates() -> list[tuple[str, str, float, float | None]]:
    """(name, kind, roll, score): the wear rule once per score, the keypoint rules per roll."""
    out = []
    for kind, score in itertools.product(GEOMETRY_KINDS, GEOMETRY_SCORE):
        for roll in GEOMETRY_ROLL if "keypoints" in kind else GEOMETRY_ROLL[:1]:
            name = kind.replace("keypoints", f"keypoints>{roll:g}deg")
            out.append((name + (f" & score<{score:g}" if score else ""), kind, roll, score))
    return out


def geometry_drop(rec: dict, kind: str, roll: float, score: float | None) -> np.ndarray:
    """Bool per detection: dropped by the geometry rule."""
    dets = rec["dets"]
    drop = np.zeros(len(dets), bool)
    if not len(dets):
        return drop
    if "keypoints" in kind:
        drop |= keypoints_implausible(dets.keypoints, roll)
    if "wear" in kind:
        drop |= rec["odd_wear"]
    if score is not None:
        drop &= dets.scores < score
    return drop


Candidate = tuple[str, float | None, float | None, float | None, bool, float | None]


ZoneRule = tuple[str, tuple[float, float] | None, float | None, float, float | None]


def zone_candidates(scored: bool = False) -> list[ZoneRule]:
    """(name, body, halo, ratio, score): today's check, then each zone rule with it; with
    ``scored``, the halo rules (with and without the smallest body zone) for detections
    under each detector score of ``ZONE_SCORE`` only."""
    out: list[ZoneRule] = [(f"size<{SIZES[0]:.2f} (shipped)", None, None, 1.0, None)]
    bodies, halos, scores = ZONE_BODY, ZONE_HALO, [None]
    if scored:
        bodies, halos, scores = ZONE_BODY[:2], ZONE_HALO[1:], ZONE_SCORE
    for body, halo, ratio, score in itertools.product(bodies, halos, ZONE_RATIO, scores):
        if body is None and halo is None:
            continue
        parts = [f"body {body[0]:g}x{body[1]:g}" if body else "", f"halo {halo:g}" if halo else ""]
        name = " + ".join(p for p in parts if p) + f" <{ratio:g}"
        out.append((name + (f" & score<{score:g}" if score else ""), body, halo, ratio, score))
    return out


def candidates(secondary: bool = False, confidence: bool = False) -> list[Candidate]:
    """(name, p, s, r, secondary, g): today's (nothing dropped), each presence rule, each size
    rule and each pair of them; with ``secondary``, the presence rules again sparing each
    picture's best-scoring detection (alone and with size 0.25); with ``confidence``, only
    the size check 0.25 (today's shipped check) and the presence rules that also need the
    peak logit under ``g``, each with the size check."""
    if confidence:
        r = SIZES[0]
        out: list[Candidate] = [(f"size<{r:.2f} (shipped)", None, None, r, False, None)]
        out += [
            (f"presence<{p} & score<{s} & peak<{g} | size<{r:.2f}", p, s, r, False, g)
            for p, s, g in CONFIDENCE
        ]
        return out
    out = [("today", None, None, None, False, None)]
    out += [(f"presence<{p} & score<{s}", p, s, None, False, None) for p, s in PRESENCE]
    out += [(f"size<{r:.2f}", None, None, r, False, None) for r in SIZES]
    out += [
        (f"presence<{p} & score<{s} | size<{r:.2f}", p, s, r, False, None)
        for (p, s), r in itertools.product(PRESENCE, SIZES)
    ]
    if secondary:
        for r in (None, SIZES[0]):
            tail = "" if r is None else f" | size<{r:.2f}"
            out += [
                (f"2nd: presence<{p} & score<{s}{tail}", p, s, r, True, None) for p, s in PRESENCE
            ]
    return out


def keep(
    rec: dict,
    p: float | None,
    s: float | None,
    r: float | None,
    secondary: bool = False,
    g: float | None = None,
) -> np.ndarray:
    dets = rec["dets"]
    k = np.ones(len(dets), bool)
    if not len(dets):
        return k
    if p is not None:
        drop = (rec["presence"] < p) & (dets.scores < s)
        if g is not None:
            drop &= rec["peak"] < g
        if secondary:
            drop[int(np.argmax(dets.scores))] = False  # the best detection is never checked
        k &= ~drop
    if r is not None:
        sides = np.maximum(dets.boxes[:, 2] - dets.boxes[:, 0], dets.boxes[:, 3] - dets.boxes[:, 1])
        k &= sides >= r * sides.max()
    return k


class Runner:
    def __init__(self, scene: ScenePredictor, landmarker: FaceLandmarker, wear: bool = False):
        self.scene, self.landmarker = scene, landmarker
        self.wear = WearCheck(landmarker) if wear else None

    def record(self, image: np.ndarray, truth: np.ndarray | None = None) -> dict:
        sc = self.scene
        dets = sc.detect(image)
        rects, logits = sc.segment_windows(image, dets)
        marks = self.landmarker.for_detections(image, dets) if len(dets) else []
        presence = np.array([m.presence for m in marks], np.float32)
        odd_wear = np.zeros(len(dets), bool)
        wears: list = [None] * len(dets)
        painted = np.zeros(len(dets), bool)
        area = np.zeros(len(dets))
        if self.wear is not None and len(dets):
            # every detection's mask judged as the wear check would, all faces pasted
            res = sc.paste(image.shape[:2], None, dets, rects, logits)
            parts = face_parts(res.mask, res.faces)
            wears, _ = self.wear.check(image, parts, faces=res.faces)
            pairs = zip(parts, wears, strict=True)
            odd_wear = np.array([not_worn_like_a_mask(w, bool(p.any())) for (_, _, p), w in pairs])
            painted = np.array([bool(p.any()) for _, _, p in parts])
            area = np.array([f.mask_area for f in res.faces])
        return {
            "odd_wear": odd_wear,
            "wears": wears,
            "painted": painted,
            "area": area,
            "shape": image.shape[:2],
            "dets": dets,
            "rects": rects,
            "logits": logits,
            "peak": logits.reshape(len(logits), -1).max(1) if len(logits) else np.zeros(0),
            "presence": presence,
            "truth": truth,
        }

    def mask(self, rec: dict, k: np.ndarray) -> np.ndarray:
        dets = rec["dets"]
        if not len(dets) or not k.any():
            return np.zeros(rec["shape"], bool)
        idx = np.flatnonzero(k)
        sub = Detections(dets.boxes[idx], dets.scores[idx], dets.keypoints[idx])
        return self.scene.paste(rec["shape"], None, sub, rec["rects"][idx], rec["logits"][idx]).mask


def validation_photos(
    faces: Path, cfg_data, limit: int, fold: int = 0
) -> Iterator[tuple[str, str, np.ndarray]]:
    """(label, id, image) of fold ``fold``'s validation photos, unmasked first, up to
    ``limit`` per label (0: all); unreadable photos are skipped."""
    index = load_index(faces)
    root = Path(json.loads((faces / INDEX).read_text())["root"])
    val = set(face_splits(index, cfg_data).train_val(fold)[1])
    for label in ("without_mask", "with_mask"):
        ids = sorted(e.id for e in index if e.id in val and e.id.startswith(label + "/"))
        for i in ids[:limit] if limit else ids:
            try:
                image = read_image(root / i)
            except (ImageReadError, OSError, ValueError):
                continue
            yield label, i, image


def photos(
    runner: Runner, faces: Path, cfg_data, limit: int, fold: int = 0
) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"without_mask": [], "with_mask": []}
    for label, _, image in validation_photos(faces, cfg_data, limit, fold):
        out[label].append(runner.record(image))
    return out


def scenes(runner: Runner, twin: Predictor, faces: Path, limit: int, fold: int = 0) -> list[dict]:
    """The scenes of ``bench_scene.py --part foldK`` (same seed, repeats 3, up to 2
    unmasked)."""
    d = twin.config.data
    data = load_split(MSFD, d, "all")
    pairs = data.take(data.splits.train_val(fold)[1])
    fs = face_splits(load_index(faces), d)
    unmasked = [c for c in load_crops(faces, fs.train_val(fold)[1]) if not c.mask]
    rng = np.random.default_rng(0)
    out = []
    for k, s in enumerate(pairs):
        for _ in range(3):
            fcs = [(s.id, s.image, s.mask)]
            if len(pairs) > 1 and rng.random() < 0.5:
                o = pairs[(k + 1 + int(rng.integers(len(pairs) - 1))) % len(pairs)]
                fcs.append((o.id, o.image, o.mask))
            for _ in range(int(rng.integers(0, 3))):
                u = unmasked[int(rng.integers(len(unmasked)))]
                fcs.append((u.id, u.image, None))
            photo = pairs[int(rng.integers(len(pairs)))].image
            sc = compose(fcs, rng, photo=photo)
            out.append(runner.record(sc.image, sc.truth))
        if limit and len(out) >= limit:
            break
    return out


def maskedface(runner: Runner, limit: int) -> tuple[list[dict], list[dict]]:
    """Records of the maskedface-seg dev photos (CWM then IWM, up to ``limit`` each), and the
    IWM ones among them."""
    mf, iwm = [], []
    for cls in ("CWM", "IWM"):
        for _, image, truth in load_maskedface(MASKEDFACE / cls)[: limit or None]:
            mf.append(runner.record(read_image(image), truth_mask(truth)))
            if cls == "IWM":
                iwm.append(mf[-1])
    return mf, iwm


HEADER = (
    f"{'candidate':<44}{'unmasked given':>15}{'masked given':>13}{'scene IoU':>11}"
    f"{'maskedface IoU':>16}{'IWM given':>11}"
)


def given(runner: Runner, recs: list[dict], rule) -> float:
    """Share of records whose mask, with ``rule``'s detections only, covers over MIN_SHARE."""
    return float(np.mean([runner.mask(x, rule(x)).mean() > MIN_SHARE for x in recs]))


def row(name: str, rule, main_runner: Runner, twin_runner: Runner, ph, sc, mf, iwm) -> str:
    """One candidate's line under ``HEADER``: validation photos (unmasked / masked given a
    mask), the scenes' and maskedface-seg's mean IoU, IWM photos given a mask."""

    def mean_iou(runner: Runner, recs: list[dict]) -> float:
        return float(np.mean([iou(confusion(runner.mask(x, rule(x)), x["truth"])) for x in recs]))

    return (
        f"{name:<44}{given(main_runner, ph['without_mask'], rule):>15.2%}"
        f"{given(main_runner, ph['with_mask'], rule):>13.2%}"
        f"{mean_iou(twin_runner, sc):>11.4f}{mean_iou(main_runner, mf):>16.4f}"
        f"{round(given(main_runner, iwm, rule) * len(iwm)):>8}/{len(iwm)}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model for photos and maskedface")
    ap.add_argument("--twin", default="unet-msfd-heldout", help="model for the fold-0 scenes")
    ap.add_argument("--faces", type=Path, default=FACES)
    ap.add_argument("--limit", type=int, default=0, help="images per set (0: all)")
    ap.add_argument(
        "--secondary",
        action="store_true",
        help="also the presence rules that spare each picture's best-scoring detection",
    )
    ap.add_argument(
        "--confidence",
        action="store_true",
        help="only the shipped size check and the presence rules that also need the model's "
        "peak logit under g (each with the size check)",
    )
    ap.add_argument(
        "--zones",
        action="store_true",
        help="only the shipped size check and, with it, the zone rules (a detection smaller "
        "than a face, in the body below it or the head around it)",
    )
    ap.add_argument(
        "--fold",
        type=int,
        default=0,
        help="the validation fold of the photos and scenes (the model's gate must not have "
        "been fitted on it)",
    )
    ap.add_argument(
        "--zones-score",
        action="store_true",
        help="the halo rules again, each only for detections under a detector score",
    )
    ap.add_argument(
        "--geometry",
        action="store_true",
        help="only the shipped size check and, with it, the keypoint-geometry and wear-reading "
        "rules (a detection that does not look like a face to BlazeFace or Face Mesh)",
    )
    a = ap.parse_args()

    landmarker = FaceLandmarker()
    model = Predictor.load(a.model)
    twin = Predictor.load(a.twin)
    off = SceneConfig(face_min_side=None, face_presence=None)  # every rule starts from none
    main_runner = Runner(ScenePredictor(model, off), landmarker, a.geometry)
    twin_runner = Runner(ScenePredictor(twin, off), landmarker, a.geometry)
    print(
        f"CPU: {cpu_description()}; model {a.model or 'default'}, twin {a.twin}; "
        f"validation fold {a.fold}"
    )
    ph = photos(main_runner, a.faces, model.config.data, a.limit, a.fold)
    sc = scenes(twin_runner, twin, a.faces, a.limit, a.fold)
    mf, iwm = maskedface(main_runner, a.limit)
    print(
        f"photos: {len(ph['without_mask'])} unmasked, {len(ph['with_mask'])} masked; "
        f"scenes: {len(sc)}; maskedface: {len(mf)}"
    )
    print(HEADER)
    rules = [
        (name, lambda x, p=p, s=s, r=r, second=second, g=g: keep(x, p, s, r, second, g))
        for name, p, s, r, second, g in candidates(a.secondary, a.confidence)
    ]
    if a.zones or a.zones_score:
        checks = [
            (
                name,
                FaceCheck(
                    min_side=SIZES[0],
                    body=body,
                    halo=halo,
                    zone_ratio=ratio,
                    zone_below=np.inf if score is None else score,
                ),
            )
            for name, body, halo, ratio, score in zone_candidates(a.zones_score)
        ]
        rules = [
            (name, lambda x, c=c: keep_mask(x["dets"].boxes, x["dets"].scores, c))
            for name, c in checks
        ]
    if a.geometry:
        size = FaceCheck(min_side=SIZES[0])
        rules = [(f"size<{SIZES[0]:.2f} (shipped)", lambda x: keep(x, None, None, SIZES[0]))]
        rules += [
            (
                name,
                lambda x, kind=kind, roll=roll, score=score: (
                    keep_mask(x["dets"].boxes, x["dets"].scores, size)
                    & ~geometry_drop(x, kind, roll, score)
                ),
            )
            for name, kind, roll, score in geometry_candidates()
        ]
    for name, rule in rules:
        print(row(name, rule, main_runner, twin_runner, ph, sc, mf, iwm), flush=True)


if __name__ == "__main__":
    main()
