"""INT8 settings chosen on a validation fold: calibration method, quantized ops, fp32 head.

    python benchmarks/int8_calibration.py --data ../shared/data/mfsd-real/MSFD [--model unet-msfd]

Every variant is calibrated on the training folds of the model's split without fold K
(``--fold``, default 0) and scored on fold K: mean IoU against the truth, its change from the
fp32 export, and the share of mask pixels that differ from fp32; plus ms per crop at batch 16
(forward pass, median of rounds). The test split is never opened. ``maskseg export --int8``
uses the settings chosen from this table (see the README's "Fast inference (ONNX)").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from maskseg.evaluate.metrics import iou
from maskseg.evaluate.scoring import score_masks
from maskseg.pipeline.backends.onnx import OnnxBackend, open_session
from maskseg.pipeline.predictor import Predictor, resolve_model_path
from maskseg.train.export import _torch_model, to_onnx
from maskseg.train.quantize import calibration_crops as _crops
from maskseg.train.quantize import calibration_ids, quantize_int8

VARIANTS = [  # (name, method, keep head fp32, op types)
    ("minmax, all ops, head fp32", "minmax", True, None),
    ("minmax, all ops, head int8", "minmax", False, None),
    ("minmax, Conv only, head fp32", "minmax", True, ["Conv"]),
    ("entropy, all ops, head fp32", "entropy", True, None),
    ("percentile, all ops, head fp32", "percentile", True, None),
]


def ms_per_crop(backend: OnnxBackend, size: int, rounds: int) -> float:
    x = np.random.default_rng(0).normal(size=(16, 3, size, size)).astype(np.float32)
    backend(x)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        backend(x)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times) / 16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="unet-msfd")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=10)
    a = ap.parse_args()
    net, cfg, _ = _torch_model(resolve_model_path(a.model, backend="torch"))
    size = cfg.data.image_size
    calib, part = calibration_ids(a.data, cfg, exclude_fold=a.fold)
    from maskseg.data.splits import load_split

    split = load_split(a.data, cfg.data, "trainval")
    val = split.take(split.splits.folds[a.fold])
    crops = _crops(a.data, cfg, calib)
    images = [s.image for s in val]
    print(
        f"model {a.model}, calibration: {len(calib)} crops ({part}); "
        f"scored on fold {a.fold} ({len(val)} crops)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        to_onnx(net, size, fp32)
        ref = Predictor(OnnxBackend(open_session(fp32)), cfg)
        ref_masks = ref.predict_batch(images)
        ref_iou = float(iou(score_masks(ref_masks, val)))
        print(f"{'variant':<34} {'val IoU':>8} {'vs fp32':>8} {'px differ':>10} {'ms/crop':>8}")
        print(
            f"{'fp32':<34} {ref_iou:8.4f} {0:+8.4f} {0:10.4%} "
            f"{ms_per_crop(ref.backend, size, a.rounds):8.2f}"
        )
        for name, method, head, ops in VARIANTS:
            out = Path(tmp) / "int8.onnx"
            quantize_int8(fp32, out, crops, method, keep_head_fp32=head, op_types=ops)
            p = Predictor(OnnxBackend(open_session(out), int8=True), cfg)
            masks = p.predict_batch(images)
            v = float(iou(score_masks(masks, val)))
            differ = sum(int((m != r).sum()) for m, r in zip(masks, ref_masks, strict=True))
            total = sum(m.size for m in masks)
            print(
                f"{name:<34} {v:8.4f} {v - ref_iou:+8.4f} {differ / total:10.4%} "
                f"{ms_per_crop(p.backend, size, a.rounds):8.2f}"
            )


if __name__ == "__main__":
    main()
