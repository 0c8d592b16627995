"""A learned face check: one logistic regression over what the scene path already knows of
each detection, fitted on training photos, swept on validation (docs/shipped-model-plan.md,
"A learned face check").

    python benchmarks/sweep_face_classifier.py --model runs22/M0.safetensors [--fold 0]
        [--limit 0] [--train-features FILE] [--set retry_small=0 ...]

Every photo goes once through the scene path's stages with every detection kept
(``sweep_face_check.Runner``: detect, windows, segment, grow and redo, Face Mesh presence,
the wear check over each face's painted mask). Each detection the shipped size check keeps
gets the features of ``features`` (detector score, size and place against the picture's
largest detection, BlazeFace keypoint roll and order, Face Mesh presence, the model's peak
logit and mask area, the wear reading). Training rows: the fold's *training* photos of
``../shared/data/faces`` (never its validation photos), painted detections only: every one
in an unmasked photo is a false mask (0); in a masked photo, a detection whose centre lies in
the window ``maskseg data faces`` cut round the photo's main face is its mask (1), others are
left out (another person's mask or a false one: unknown). The fit is class-balanced, L2 1.0
on standardised features. Then each threshold t drops, after the size check, every detection
whose fitted probability of being a face's mask is under t, and the rows print as in
``sweep_face_check.py``: validation photos (unmasked / masked given a mask), the fold's
synthetic scenes (held-out twin), maskedface-seg dev (IoU, IWM given a mask), and the masked
validation photos whose mask lies on their main face (over ``bench_photos.ON_FACE`` of the
window ``maskseg data faces`` cut: a false mask elsewhere does not count).

``--train-features FILE --train-only``: only compute the training rows and write them to FILE
(``.npz``); ``--train-features FILE`` without it: do the validation sets, then wait for FILE
(so two processes share the work).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from maskseg.console import cpu_description
from maskseg.data.faces import INDEX, face_splits, load_index
from maskseg.io import ImageReadError, read_image
from maskseg.pipeline.detect.landmarks import FaceLandmarker
from maskseg.pipeline.face_check import (
    LEARNED_FEATURES,
    FaceCheck,
    LearnedCheck,
    detection_features,
    fit_logistic,
    keep_mask,
)
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.scene import ScenePredictor
from maskseg.pipeline.scene_config import SceneConfig, scene_config
from maskseg.train.face_check import centres_inside

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_photos import ON_FACE, window_share  # noqa: E402
from sweep_face_check import (  # noqa: E402
    HEADER,
    SIZES,
    Runner,
    maskedface,
    row,
    scenes,
    validation_photos,
)

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "runs" / "faces"
THRESHOLDS = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5]
SIZE_CHECK = FaceCheck(min_side=SIZES[0])


def features(rec: dict) -> np.ndarray:
    """``detection_features`` of every detection of a record (``Runner.record`` with the
    wear check)."""
    dets = rec["dets"]
    verdicts = [None if w is None else w.verdict for w in rec["wears"]]
    return detection_features(
        dets.boxes,
        dets.scores,
        dets.keypoints,
        rec["presence"],
        rec["peak"],
        rec["area"],
        verdicts,
        rec["shape"],
    )


def training_rows(
    runner: Runner, faces: Path, cfg_data, fold: int, limit: int, part: str = "train"
):
    """(X, y) from the fold's training photos (see the module docstring); ``part`` "val":
    its validation photos instead (with "train", every non-test photo: what the shipped
    check is fitted on)."""
    index = load_index(faces)
    root = Path(json.loads((faces / INDEX).read_text())["root"])
    train = set(face_splits(index, cfg_data).train_val(fold)[0 if part == "train" else 1])
    xs, ys = [], []
    entries = [e for e in index if e.id in train]
    for label in ("without_mask", "with_mask"):
        chosen = [e for e in entries if e.id.startswith(label + "/")]
        for e in chosen[:limit] if limit else chosen:
            try:
                image = read_image(root / e.id)
            except (ImageReadError, OSError, ValueError):
                continue
            rec = runner.record(image)
            if not len(rec["dets"]):
                continue
            k = keep_mask(rec["dets"].boxes, rec["dets"].scores, SIZE_CHECK) & rec["painted"]
            f = features(rec)
            if label == "with_mask":  # only the main face's mask is known to be one
                has_rect = bool(e.rect) and len(e.rect) == 4
                k &= centres_inside(rec["dets"].boxes, e.rect) if has_rect else False
            for i in np.flatnonzero(k):
                xs.append(f[i])
                ys.append(float(label == "with_mask"))
    return np.array(xs).reshape(-1, len(LEARNED_FEATURES)), np.array(ys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="segmenter + gate fitted without --fold")
    ap.add_argument("--twin", default="unet-msfd-heldout", help="model for the fold's scenes")
    ap.add_argument("--faces", type=Path, default=FACES)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="photos per label and set (0: all)")
    ap.add_argument("--train-features", type=Path, default=None)
    ap.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=THRESHOLDS,
        help="the candidates' thresholds t on the fitted probability",
    )
    ap.add_argument(
        "--rows-from",
        choices=("train", "val"),
        default="train",
        help="with --train-only: the fold's training or validation photos (the shipped check "
        "is fitted on both parts of fold 0: every non-test photo)",
    )
    ap.add_argument(
        "--train-only", action="store_true", help="only write --train-features, then stop"
    )
    ap.add_argument(
        "--write",
        type=Path,
        default=None,
        help="only fit on the rows of --fit-rows (read through --model) and write the check "
        "(JSON) here: beside the model file as <stem>.face-check.json, it is that model's",
    )
    ap.add_argument("--fit-rows", type=Path, nargs="+", default=[])
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a scene setting for every run of the scene path here (training rows, photos, "
        "scenes, maskedface-seg), e.g. retry_small=0",
    )
    ap.add_argument(
        "--touch",
        action="store_true",
        help="also each threshold with the touch rule: a face the learned check would empty "
        "keeps its mask when that mask touches the mask of a larger face that stays",
    )
    a = ap.parse_args()
    if a.write is not None:
        rows = [np.load(f) for f in a.fit_rows]
        x = np.concatenate([r["x"] for r in rows])
        y = np.concatenate([r["y"] for r in rows])
        LearnedCheck(*fit_logistic(x, y)).save(
            a.write,
            rows=int(len(y)),
            masks_on_a_main_face=int(y.sum()),
            painted_in_unmasked_photos=int(len(y) - y.sum()),
            fitted_on=f"every non-test photo of ../shared/data/faces, read through {a.model}",
            command=f"python benchmarks/sweep_face_classifier.py --model {a.model} --fold 0 "
            "--train-only --rows-from train|val --train-features F; then --write",
        )
        print(f"wrote {a.write}: {len(y)} rows, {int(y.sum())} masks on a main face")
        return

    landmarker = FaceLandmarker()
    model = Predictor.load(a.model)
    off = scene_config(a.set, SceneConfig(face_min_side=None, face_presence=None))
    runner = Runner(ScenePredictor(model, off), landmarker, wear=True)
    print(f"CPU: {cpu_description()}; model {a.model}, twin {a.twin}; fold {a.fold}", flush=True)
    if a.set:
        print(f"scene settings: {off}", flush=True)
    if a.train_only:
        x, y = training_rows(runner, a.faces, model.config.data, a.fold, a.limit, a.rows_from)
        np.savez(a.train_features, x=x, y=y)
        print(f"training rows: {len(y)} ({int(y.sum())} masks on a main face)")
        return
    twin = Predictor.load(a.twin)
    twin_runner = Runner(ScenePredictor(twin, off), landmarker, wear=True)
    rects = {e.id: e.rect for e in load_index(a.faces)}
    ph: dict[str, list[dict]] = {"without_mask": [], "with_mask": []}
    for label, i, image in validation_photos(a.faces, model.config.data, a.limit, a.fold):
        ph[label].append({**runner.record(image), "rect": rects.get(i)})
    sc = scenes(twin_runner, twin, a.faces, a.limit, a.fold)
    mf, iwm = maskedface(runner, a.limit)
    if a.train_features is None:
        x, y = training_rows(runner, a.faces, model.config.data, a.fold, a.limit)
    else:  # written by a --train-only process running alongside
        while not a.train_features.exists():
            time.sleep(10)
        time.sleep(2)
        z = np.load(a.train_features)
        x, y = z["x"], z["y"]
    clf = LearnedCheck(*fit_logistic(x, y))
    print(
        f"training rows: {len(y)} painted detections of fold {a.fold}'s training photos, "
        f"{int(y.sum())} masks on a main face, {int(len(y) - y.sum())} in unmasked photos"
    )
    print("weights (standardised features):")
    for name, wt in sorted(zip(clf.names, clf.weights, strict=True), key=lambda t: -abs(t[1])):
        print(f"  {name:<26}{wt:+.3f}")
    print(
        f"photos: {len(ph['without_mask'])} unmasked, {len(ph['with_mask'])} masked; "
        f"scenes: {len(sc)}; maskedface: {len(mf)}"
    )
    print(f"{HEADER}{'masked on face':>16}", flush=True)

    def rule(rec: dict, t: float | None) -> np.ndarray:
        dets = rec["dets"]
        k = keep_mask(dets.boxes, dets.scores, SIZE_CHECK)
        if t is not None and len(dets):
            k &= clf.proba(features(rec)) >= t
        return k

    def touching(rec: dict, t: float, run: Runner) -> np.ndarray:
        """``rule`` at t, with the faces it empties kept where their mask touches (within 2
        px) the mask of a larger face that stays."""
        size_ok = rule(rec, None)
        k = rule(rec, t)
        dropped = np.flatnonzero(size_ok & ~k)
        if not len(dropped) or not k.any():
            return k
        dets = rec["dets"]
        side = np.maximum(dets.boxes[:, 2] - dets.boxes[:, 0], dets.boxes[:, 3] - dets.boxes[:, 1])
        out = k.copy()
        for i in dropped:
            larger = k & (side > side[i])
            if not larger.any():
                continue
            own = np.zeros(len(dets), bool)
            own[i] = True
            mine = run.mask(rec, own)
            if not mine.any():
                continue
            grown = cv2.dilate(run.mask(rec, larger).astype(np.uint8), np.ones((5, 5), np.uint8))
            out[i] = bool((grown.astype(bool) & mine).any())
        return out

    rows = [(f"size<{SIZES[0]:.2f} (shipped)", None, False)]
    rows += [(f"learned p<{t:g} | size<{SIZES[0]:.2f}", t, False) for t in a.thresholds]
    if a.touch:
        rows += [(f"learned p<{t:g} + touch", t, True) for t in a.thresholds]
    for name, t, touch in rows:

        def kept(rec: dict, t=t, touch=touch) -> np.ndarray:
            # the scene records (``sc``) are the twin's, read through its own runner
            run = twin_runner if any(rec is r for r in sc) else runner
            return touching(rec, t, run) if touch else rule(rec, t)

        # masked photos whose mask lies on their main face (``bench_photos.ON_FACE``)
        on_face = np.mean(
            [
                bool(r["rect"]) and window_share(runner.mask(r, kept(r)), r["rect"]) > ON_FACE
                for r in ph["with_mask"]
            ]
        )
        line = row(name, kept, runner, twin_runner, ph, sc, mf, iwm)
        print(f"{line}{on_face:>16.2%}", flush=True)


if __name__ == "__main__":
    main()
