"""The wear check (is the mask worn properly?): verdicts against labels, part calls against
pixel truth, and its cost per face.

    python benchmarks/bench_wear.py [--model unet-msfd] [--msfd-model unet-msfd-heldout]
        [--faces-data DIR] [--msfd DIR] [--runs 200] [--threads 1 2] [--timing-only]

1. ``../shared/data/maskedface-seg`` (150 whole-head photos, 1024 x 1024; ``CWM`` = mask worn
   correctly, ``IWM`` = incorrectly), each through the pipeline's request engine in scene mode
   with the wear check (``--model``: the shipped model by default; it never saw these
   photos). The face judged is the detected face whose box holds the most labelled face
   pixels (skin or mask); a photo without a detected face counts as "no face". Prints the
   accuracy of ``correct`` against ``CWM`` (any other verdict, null and "no face" included,
   against ``IWM``), the confusion table of verdicts per class, the same from the truth mask
   over the same landmarks (what the rules give with a perfect mask), and per part (nose,
   mouth, chin) the agreement of the call from the predicted mask with the call from the
   truth mask over the same landmark regions (faces with landmarks; also without the faces
   whose predicted mask is empty, a segmentation miss rather than a wear-check one).
2. The MSFD test split of the held-out twin (``--msfd-model``, ``maskseg.data.splits.
   load_split`` with the model's own split settings): each crop in crop mode; among the crops
   whose truth mask gives a verdict (not null), the share where the predicted mask gives the
   same verdict, and the part agreement.
3. Cost: per face, the landmark pass (``FaceLandmarker.for_rois``: crop, model, mapping back;
   one face and three faces per call) and the judgement (``judge``), median and minimum over
   ``--runs`` calls, at each of ``--threads`` onnxruntime threads (1: the ``WearCheck``
   default, which leaves the other core to the rest of a video; 2: both cores, as the
   issue's target is stated), the rows of all thread counts interleaved in one run so that
   they share the machine's load; the CPU named.

The thresholds were chosen on these photos and on the MSFD trainval crops (see
``maskseg.pipeline.wear``); the MSFD test figures are the held-out check. Development and
evaluation only: maskedface-seg is CC BY-NC-SA.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from maskseg.console import cpu_description
from maskseg.data.splits import load_split
from maskseg.io import read_image
from maskseg.pipeline.detect.landmarks import FaceRoi
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.request import Mode, RequestEngine
from maskseg.pipeline.scene import ScenePredictor
from maskseg.pipeline.scene_config import scene_config
from maskseg.pipeline.wear import PARTS, VERDICTS, WearCheck, judge, picture_roi

ROOT = Path(__file__).resolve().parents[1]
FACES_DATA = ROOT.parent / "shared" / "data" / "maskedface-seg"
MSFD = ROOT.parent / "shared" / "data" / "mfsd-real" / "MSFD"
COLUMNS = (*VERDICTS, "null", "no face")
CLASSES = {"CWM": "worn correctly", "IWM": "worn incorrectly"}


def photos(root: Path, cls: str) -> list[tuple[str, Path, Path]]:
    out = []
    for image in sorted((root / cls / "images").glob("*.jpg")):
        truth = root / cls / "masks" / f"{image.stem}_gt.png"
        if truth.is_file():
            out.append((image.stem, image, truth))
    return out


def name(verdict: str | None) -> str:
    return "null" if verdict is None else verdict


def confusion(title: str, rows: dict[str, Counter]) -> None:
    print(f"\n{title}")
    print(f"{'class':<6}" + "".join(f"{c:>20}" for c in COLUMNS))
    for cls, counts in rows.items():
        print(f"{cls:<6}" + "".join(f"{counts.get(c, 0):>20}" for c in COLUMNS))


def accuracy(rows: dict[str, Counter]) -> tuple[int, int]:
    right = rows["CWM"].get("correct", 0) + sum(n for v, n in rows["IWM"].items() if v != "correct")
    return right, sum(sum(c.values()) for c in rows.values())


def agreement(pairs: list[tuple]) -> str:
    """Per part: agreeing calls / calls."""
    cells = []
    for k, part in enumerate(PARTS):
        same = sum(a[k] == b[k] for a, b in pairs)
        cells.append(f"{part} {same}/{len(pairs)} = {same / max(1, len(pairs)):.1%}")
    return ", ".join(cells)


def maskedface(root: Path, model: str | None, backend: str, settings: list[str]) -> None:
    predictor = Predictor.load(model, backend=backend)
    engine = RequestEngine(ScenePredictor(predictor, scene_config(settings)), wear=WearCheck())
    print(f"\n== maskedface-seg, scene mode; model {model or 'default'} ({predictor.describe()})")
    pred_rows = {c: Counter() for c in CLASSES}
    truth_rows = {c: Counter() for c in CLASSES}
    parts_all, parts_found, missing = [], [], 0
    wear_ms, faces_n = [], 0
    for cls in CLASSES:
        for _, image_path, truth_path in photos(root, cls):
            labels = np.asarray(Image.open(truth_path))
            truth = labels == 2
            seg = engine.run(image_path, Mode.scene)
            wear_ms.append(seg.wear_ms)
            faces_n += len(seg.faces)
            if not seg.faces:
                pred_rows[cls]["no face"] += 1
                truth_rows[cls]["no face"] += 1
                continue

            def inside(f, labels=labels) -> int:
                x1, y1, x2, y2 = np.clip(np.round(f.box).astype(int), 0, None)
                return int((labels[y1:y2, x1:x2] > 0).sum())

            k = max(range(len(seg.faces)), key=lambda i: inside(seg.faces[i]))
            got, points = seg.wear[k], seg.landmarks[k]
            pred_rows[cls][name(got.verdict)] += 1
            if points is None:
                truth_rows[cls]["null"] += 1
                missing += 1
                continue
            want = judge(points, truth, box=seg.faces[k].box)
            truth_rows[cls][name(want.verdict)] += 1
            if got.nose is None or want.nose is None:
                missing += 1
                continue
            pair = ((got.nose, got.mouth, got.chin), (want.nose, want.mouth, want.chin))
            parts_all.append(pair)
            if seg.face_parts()[k][2].any():
                parts_found.append(pair)
    right, total = accuracy(pred_rows)
    print(f"correct vs incorrect (predicted mask): {right}/{total} = {right / total:.3f}")
    confusion("verdicts from the predicted mask", pred_rows)
    right, total = accuracy(truth_rows)
    print(
        f"\ncorrect vs incorrect (truth mask, same landmarks): {right}/{total} = "
        f"{right / total:.3f}"
    )
    confusion("verdicts from the truth mask over the same landmarks", truth_rows)
    print(f"\npart calls, predicted vs truth mask ({missing} faces without calls left out):")
    print(f"  every judged face: {agreement(parts_all)}")
    print(f"  faces given a mask: {agreement(parts_found)}")
    print(
        f"wear check per photo (landmarks of all its {faces_n / max(1, len(wear_ms)):.1f} "
        f"detections on average, judgement): median {statistics.median(wear_ms):.1f} ms"
    )


def msfd(root: Path, model: str, backend: str) -> None:
    predictor = Predictor.load(model, backend=backend)
    engine = RequestEngine(predictor=predictor, wear=WearCheck())
    data = load_split(root, predictor.config.data, "test")
    samples = data.take(data.splits.test)
    print(f"\n== MSFD test split ({len(samples)} crops), crop mode; model {model}")
    judged, same, unjudged = 0, 0, Counter()
    table: Counter = Counter()
    pairs = []
    for s in samples:
        seg = engine.segment(s.image, None, Mode.crop)
        got, points = seg.wear[0], seg.landmarks[0]
        if points is None:
            unjudged["no landmarks"] += 1
            continue
        want = judge(points, s.mask)
        if want.verdict is None:
            unjudged[want.reason] += 1
            continue
        judged += 1
        same += got.verdict == want.verdict
        table[(want.verdict, name(got.verdict))] += 1
        if got.nose is not None:
            pairs.append(((got.nose, got.mouth, got.chin), (want.nose, want.mouth, want.chin)))
    print(
        f"verdict agreement, truth vs predicted mask: {same}/{judged} = "
        f"{same / max(1, judged):.1%} (crops whose truth gives a verdict; "
        f"left out: {dict(unjudged) or 'none'})"
    )
    print("truth -> predicted: " + ", ".join(f"{a} -> {b}: {n}" for (a, b), n in table.items()))
    print(f"part calls: {agreement(pairs)}")


def timing(runs: int, threads: Sequence[int] = (1,)) -> None:
    checks = {n: WearCheck(threads=n) for n in threads}
    image = read_image(ROOT / "examples" / "face.jpg")
    h, w = image.shape[:2]
    roi = picture_roi(h, w)
    rois = [roi, FaceRoi(roi.cx + 4, roi.cy - 3, roi.side * 1.1, 0.1), roi]
    mask = Predictor.load().predict(image)
    first = checks[threads[0]]
    points = first.landmarker.for_rois(image, [roi])[0].points.astype(np.float64)
    cases: dict[str, tuple] = {}
    for n, check in checks.items():
        lm = check.landmarker
        cases[f"landmarks, 1 face per call, {n} thr"] = (
            lambda lm=lm: lm.for_rois(image, rois[:1]),
            1,
        )
        cases[f"landmarks, 3 faces per call, {n} thr"] = (lambda lm=lm: lm.for_rois(image, rois), 3)
    cases["judgement"] = (lambda: judge(points, mask), 1)
    cases[f"WearCheck.check, 1 face, {threads[0]} thr"] = (
        lambda: first.check(image, [(0, 0, mask)]),
        1,
    )
    for fn, _ in cases.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in cases}
    load = os.getloadavg()[0]
    for _ in range(runs):
        for key, (fn, n) in cases.items():
            t = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t) * 1e3 / n)
    print(
        f"\n== cost per face on {cpu_description()}, onnxruntime threads "
        f"{', '.join(map(str, threads))}, {runs} calls each, interleaved "
        f"(load average {load:.1f} -> {os.getloadavg()[0]:.1f})"
    )
    for key, ts in times.items():
        print(f"{key:<38} median {statistics.median(ts):6.2f} ms   min {min(ts):6.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model for maskedface-seg (default: shipped)")
    ap.add_argument("--msfd-model", default="unet-msfd-heldout", help="model for MSFD test")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--faces-data", type=Path, default=FACES_DATA)
    ap.add_argument("--msfd", type=Path, default=MSFD)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="landmark threads")
    ap.add_argument("--timing-only", action="store_true", help="only the cost per face")
    ap.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a scene setting"
    )
    a = ap.parse_args()
    if a.timing_only:
        print(f"CPU: {cpu_description()}")
        timing(a.runs, a.threads)
        return
    for path in (a.faces_data, a.msfd):
        if not path.is_dir():
            raise SystemExit(f"{path} not found (see ../shared/data/README.md)")
    print(f"CPU: {cpu_description()}")
    maskedface(a.faces_data, a.model, a.backend, a.set)
    msfd(a.msfd, a.msfd_model, a.backend)
    timing(a.runs, a.threads)


if __name__ == "__main__":
    main()
