"""Does a face's mask have the colour of its own skin? The skin-colour check of
docs/shipped-model-plan.md ("A mask is not the face's own skin"), on validation data only.

    python benchmarks/sweep_skin_check.py [--model runs16/M0.safetensors] [--limit 0]
        [--dump FILE.jsonl]

Every image goes once through the scene path's stages (detect with the shipped face check,
windows, segment, grow and redo), once more with the gate removed (the decoder's own mask,
grown and redone the same way), and through Face Mesh. Per face, colours in CIE Lab (OpenCV,
float): the skin reference is the median of the forehead (landmark polygon between the
brows and the hairline, minus any mask pixel); the paint is the median of the pixels the
face's mask covers. The distance is the chroma distance (a*, b*) of the two medians: light
and shade move L*, a mask's fabric moves a* and b*.

Candidate rules, each applied per face before the frame mask is pasted again:
- veto d: a face given a mask by the gate loses it when its paint lies within d of its skin;
- rescue c, e: a face the gate gave no mask gets the decoder's own mask when that mask covers
  at least c of its chin region, and its paint lies at least e from its skin.

Printed per candidate, on three validation sets: fold 0's validation photos of
``../shared/data/faces`` (unmasked and masked given a mask: over 1 % of the picture) and
``../shared/data/maskedface-seg`` (dev 150: scene IoU mean per class, IWM given a mask, and
the chin calls of the wear check against the truth over the same regions).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from maskseg.console import cpu_description
from maskseg.evaluate.metrics import confusion, iou
from maskseg.io import read_image
from maskseg.pipeline.detect.detections import Detections
from maskseg.pipeline.detect.landmarks import FaceLandmarker
from maskseg.pipeline.face_regions import region_polygon, region_share
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.scene import ScenePredictor
from maskseg.pipeline.wear import judge
from maskseg.train.pseudo import ungated

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_maskedface import DATA as MASKEDFACE  # noqa: E402
from bench_maskedface import load as load_maskedface  # noqa: E402
from bench_maskedface import truth_mask  # noqa: E402
from sweep_face_check import validation_photos  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "runs" / "faces"
MIN_SHARE = 0.01
# the forehead: temple to temple along the hairline, back along the brows' upper edges
FOREHEAD = (
    54,
    103,
    67,
    109,
    10,
    338,
    297,
    332,
    284,
    300,
    293,
    334,
    296,
    336,
    9,
    107,
    66,
    105,
    63,
    70,
)

VETO = (None, 4.0, 6.0, 8.0, 10.0, 12.0)
RESCUE = (None, (0.4, 8.0), (0.4, 12.0), (0.4, 16.0), (0.4, 20.0))


def polygon_pixels(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool mask of a polygon's pixels."""
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, [np.round(poly).astype(np.int32).reshape(-1, 1, 2)], 1)
    return out.astype(bool)


def chroma_median(lab: np.ndarray, where: np.ndarray, least: int = 20) -> np.ndarray | None:
    """Median L*, a*, b* over the pixels, or None when fewer than ``least``."""
    if int(where.sum()) < least:
        return None
    return np.median(lab[where], axis=0)


def distance(skin: np.ndarray | None, paint: np.ndarray | None) -> float:
    """Chroma (a*, b*) distance; NaN when either is missing."""
    if skin is None or paint is None:
        return float("nan")
    return float(np.hypot(*(paint[1:] - skin[1:])))


@dataclass
class FaceRec:
    gated: np.ndarray  # full-frame bool mask of the face, gate on
    own: np.ndarray  # full-frame bool mask of the face, gate off
    points: np.ndarray | None
    d_gated: float  # chroma distance of the gated paint to the forehead skin
    d_own: float  # the same for the decoder's own paint
    chin_own: float  # share of the chin region the decoder's own mask covers
    info: dict = field(default_factory=dict)


@dataclass
class ImageRec:
    name: str
    shape: tuple[int, int]
    faces: list[FaceRec]
    truth: np.ndarray | None = None


class Recorder:
    def __init__(self, scene: ScenePredictor, landmarker: FaceLandmarker):
        self.scene, self.landmarker = scene, landmarker

    def face_masks(self, shape, dets, rects, logits) -> list[np.ndarray]:
        out = []
        for i in range(len(dets)):
            sub = Detections(
                dets.boxes[i : i + 1], dets.scores[i : i + 1], dets.keypoints[i : i + 1]
            )
            out.append(self.scene.paste(shape, None, sub, rects[i : i + 1], logits[i : i + 1]).mask)
        return out

    def record(self, name: str, image: np.ndarray, truth: np.ndarray | None = None) -> ImageRec:
        sc = self.scene
        shape = image.shape[:2]
        dets = sc.detect(image)
        if not len(dets):
            return ImageRec(name, shape, [], truth)
        first = sc.crop_rects(dets)
        rects, logits = sc.regrow(image, first, sc.crop_logits(image, first))
        with ungated(sc.predictor):
            own_rects, own_logits = sc.regrow(image, first, sc.crop_logits(image, first))
        gated = self.face_masks(shape, dets, rects, logits)
        own = self.face_masks(shape, dets, own_rects, own_logits)
        marks = self.landmarker.for_detections(image, dets)
        lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
        faces = []
        for i in range(len(dets)):
            pts = marks[i].points.astype(np.float64) if marks[i] is not None else None
            skin = paint_g = paint_o = None
            chin = 0.0
            if pts is not None:
                forehead = polygon_pixels(pts[list(FOREHEAD)], shape) & ~gated[i] & ~own[i]
                skin = chroma_median(lab, forehead)
                chin = region_share(region_polygon(pts, "chin"), own[i])[0]
            paint_g = chroma_median(lab, gated[i])
            paint_o = chroma_median(lab, own[i])
            info = {
                "image": name,
                "face": i,
                "score": round(float(dets.scores[i]), 3),
                "presence": round(float(marks[i].presence), 3) if marks[i] is not None else None,
                "gated_px": int(gated[i].sum()),
                "own_px": int(own[i].sum()),
                "skin": None if skin is None else [round(float(v), 1) for v in skin],
                "paint_gated": None if paint_g is None else [round(float(v), 1) for v in paint_g],
                "paint_own": None if paint_o is None else [round(float(v), 1) for v in paint_o],
            }
            faces.append(
                FaceRec(
                    np.packbits(gated[i]),
                    np.packbits(own[i]),
                    pts,
                    distance(skin, paint_g),
                    distance(skin, paint_o),
                    float(chin),
                    info,
                )
            )
            faces[-1].info.update(
                d_gated=round(faces[-1].d_gated, 2),
                d_own=round(faces[-1].d_own, 2),
                chin_own=round(chin, 3),
            )
        return ImageRec(name, shape, faces, truth)


def unpack(bits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)


def face_mask(face: FaceRec, shape, veto: float | None, rescue) -> np.ndarray | None:
    """The face's mask under a rule (None: no mask)."""
    g = face.info["gated_px"] > 0
    if g:
        if veto is not None and np.isfinite(face.d_gated) and face.d_gated < veto:
            return None
        return unpack(face.gated, shape)
    if rescue is not None and face.info["own_px"] > 0:
        c, e = rescue
        if face.chin_own >= c and np.isfinite(face.d_own) and face.d_own >= e:
            return unpack(face.own, shape)
    return None


def frame(rec: ImageRec, veto, rescue) -> np.ndarray:
    out = np.zeros(rec.shape, bool)
    for f in rec.faces:
        m = face_mask(f, rec.shape, veto, rescue)
        if m is not None:
            out |= m
    return out


def chin_agree(rec: ImageRec, veto, rescue) -> bool | None:
    """The wear check's chin call on the image's best face against its truth (None: no
    face or no landmarks)."""
    if not rec.faces or rec.faces[0].points is None:
        return None
    f = rec.faces[0]
    m = face_mask(f, rec.shape, veto, rescue)
    pred = judge(f.points, m if m is not None else np.zeros(rec.shape, bool))
    true = judge(f.points, rec.truth)
    return bool(pred.chin) == bool(true.chin)


def photos(rec: Recorder, faces: Path, cfg_data, limit: int) -> dict[str, list[ImageRec]]:
    out: dict[str, list[ImageRec]] = {"without_mask": [], "with_mask": []}
    for label, i, image in validation_photos(faces, cfg_data, limit):
        out[label].append(rec.record(i, image))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs16/M0.safetensors")
    ap.add_argument("--faces", type=Path, default=FACES)
    ap.add_argument("--limit", type=int, default=0, help="images per set (0: all)")
    ap.add_argument("--dump", type=Path, default=None, help="per-face figures as JSON lines")
    a = ap.parse_args()

    model = Predictor.load(a.model, backend="torch")
    rec = Recorder(ScenePredictor(model), FaceLandmarker())
    print(f"CPU: {cpu_description()}; model {a.model}", flush=True)
    ph = photos(rec, a.faces, model.config.data, a.limit)
    mf: dict[str, list[ImageRec]] = {"CWM": [], "IWM": []}
    for cls in mf:
        for name, image, truth in load_maskedface(MASKEDFACE / cls)[: a.limit or None]:
            mf[cls].append(rec.record(f"{cls}/{name}", read_image(image), truth_mask(truth)))
    if a.dump:
        with a.dump.open("w") as fh:
            for group, recs in [*ph.items(), *mf.items()]:
                for r in recs:
                    for f in r.faces:
                        fh.write(json.dumps({"set": group, **f.info}) + "\n")
    print(
        f"photos: {len(ph['without_mask'])} unmasked, {len(ph['with_mask'])} masked; "
        f"maskedface: {len(mf['CWM'])} CWM, {len(mf['IWM'])} IWM"
    )
    print(
        f"{'veto':>6}{'rescue':>12}{'unmasked given':>16}{'masked given':>14}"
        f"{'mf IoU CWM':>12}{'mf IoU IWM':>12}{'IWM given':>11}{'chin agree':>12}"
    )
    for veto in VETO:
        for rescue in RESCUE:

            def given(recs, veto=veto, rescue=rescue) -> float:
                return float(np.mean([frame(r, veto, rescue).mean() > MIN_SHARE for r in recs]))

            def miou(recs, veto=veto, rescue=rescue) -> float:
                return float(
                    np.mean([iou(confusion(frame(r, veto, rescue), r.truth)) for r in recs])
                )

            chins = [chin_agree(r, veto, rescue) for r in mf["CWM"] + mf["IWM"]]
            chins = [c for c in chins if c is not None]
            rs = "off" if rescue is None else f"{rescue[0]}/{rescue[1]:g}"
            vs = "off" if veto is None else f"{veto:g}"
            print(
                f"{vs:>6}{rs:>12}{given(ph['without_mask']):>16.2%}{given(ph['with_mask']):>14.2%}"
                f"{miou(mf['CWM']):>12.4f}{miou(mf['IWM']):>12.4f}"
                f"{round(given(mf['IWM']) * len(mf['IWM'])):>8}/{len(mf['IWM'])}"
                f"{sum(chins):>8}/{len(chins)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
