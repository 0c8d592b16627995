"""Export a trained model to one ONNX file (fp32 or static INT8) for the onnxruntime backend.

    report = export_onnx("unet-msfd", "unet-msfd.onnx", int8=True, data="MSFD")
    print(report.format())

The file holds the weights and, in its metadata, the model's config (input size, threshold,
clean-up, split settings), its metrics and where it came from (source file and its sha256,
INT8 or not, how many calibration crops). The batch axis is dynamic; the spatial axes are
dynamic where the network allows (the plain U-Net takes any size; a presence head pools to a
fixed grid, which the exporter can only trace at one size, so such a model keeps its input
size fixed, which is the only size the ``Predictor`` feeds it).

INT8 (``maskseg.train.quantize``) is static QDQ quantization with per-channel int8 weights
and uint8 activations, calibrated on crops of the model's own *training* part of its split
(never its test part). The final 1x1 convolution, whose output is compared with the
threshold, stays in fp32.

Needs PyTorch, ``onnx`` and ``onnxscript`` (``pip install torch==2.13.0 'maskseg[train]'``,
the CPU build of torch); running the result needs only onnxruntime.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskseg import __version__
from maskseg.config import Config
from maskseg.files import atomic_write_bytes, make_parents, refuse_overwrite
from maskseg.train.quantize import calibration_crops, calibration_ids, quantize_int8

EXPORTERS = ("dynamo", "legacy")
DEFAULT_OPSET = 18
INPUT, OUTPUT = "image", "logits"


@dataclass
class ExportReport:
    """What ``export_onnx`` wrote and how closely the file matches PyTorch fp32."""

    output: Path
    int8: bool
    dynamic_size: bool
    seconds: float
    size_bytes: int
    max_logit_diff: float  # max |ONNX - PyTorch fp32| over the parity crops
    parity_on: str  # what the parity crops were
    n_parity: int
    mask_pixels_differing: int = 0  # at the crops' own resolution, after clean-up
    mask_pixels: int = 0
    iou: dict[str, float] = field(default_factory=dict)  # {"torch fp32": ..., "onnx": ...}
    calibration: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        kind = "INT8 (QDQ, per-channel)" if self.int8 else "fp32"
        size = "dynamic" if self.dynamic_size else "fixed"
        lines = [
            f"wrote {self.output} ({self.size_bytes / 1e6:.1f} MB, {kind}; batch dynamic, "
            f"input size {size}) in {self.seconds:.1f} s",
            f"parity with PyTorch fp32 on {self.n_parity} {self.parity_on}: "
            f"max |logit diff| {self.max_logit_diff:.2e}",
        ]
        if self.mask_pixels:
            share = self.mask_pixels_differing / self.mask_pixels
            lines.append(
                f"  mask pixels that differ: {self.mask_pixels_differing} of "
                f"{self.mask_pixels} ({share:.4%})"
            )
        if self.iou:
            ious = ", ".join(f"{k} {v:.4f}" for k, v in self.iou.items())
            delta = self.iou["onnx"] - self.iou["torch fp32"]
            lines.append(f"  mean IoU: {ious} (difference {delta:+.4f})")
        if self.calibration:
            c = self.calibration
            lines.append(
                f"calibration: {c['count']} crops of the {c['part']} part of the "
                f"model's split, {c['method']}"
            )
        return "\n".join(lines)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _torch_model(path: Path):
    """The model in fp32 on the CPU, in eval mode, as PyTorch would run it."""
    import torch

    from maskseg.pipeline.backends.pytorch import load

    backend, cfg, info = load(path, device="cpu", precision="fp32")
    net = backend.model.float().to(memory_format=torch.contiguous_format).eval()
    return net, cfg, info


def torch_logits(net, batch: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """PyTorch fp32 logits of a normalised (N, 3, S, S) batch."""
    import torch

    with torch.inference_mode():
        return np.concatenate(
            [
                net(torch.from_numpy(batch[i : i + batch_size])).numpy()
                for i in range(0, len(batch), batch_size)
            ]
        )


def to_onnx(
    net, size: int, path: Path, opset: int = DEFAULT_OPSET, exporter: str = "dynamo"
) -> bool:
    """Write ``net`` (fp32, eval) as ONNX with a dynamic batch axis, and dynamic spatial axes
    when the exported graph runs at another size with the same result.

    Returns:
        whether the spatial axes are dynamic.
    """
    import logging
    import warnings

    import torch

    for noisy in ("onnx_ir", "onnxscript", "torch.onnx"):  # pass-by-pass INFO lines
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "torchvision is not installed. Skipping torchvision::nms": true, and irrelevant here
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; valid: {', '.join(EXPORTERS)}")
    example = torch.zeros(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer notes, not our concern
        try:
            _export(net, example, path, opset, exporter, dynamic_size=True)
            if _runs_at_other_size(net, path, size):
                return True
        except Exception:  # e.g. adaptive pooling the exporter cannot trace at any size
            pass
        _export(net, example, path, opset, exporter, dynamic_size=False)
    return False


def _export(net, example, path: Path, opset: int, exporter: str, dynamic_size: bool) -> None:
    import torch

    if exporter == "legacy":
        axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
        with _c_output_silenced():  # it dumps its whole TorchScript graph when it fails
            torch.onnx.export(
                net,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: axes, OUTPUT: axes},
                verbose=False,
            )
        return
    from torch.export import Dim

    shapes = {0: Dim("batch", min=1, max=4096)}
    if dynamic_size:
        shapes.update({2: Dim("height", min=1, max=8192), 3: Dim("width", min=1, max=8192)})
    program = torch.onnx.export(
        net,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_shapes=({k: v for k, v in shapes.items()},),
        optimize=True,
        verbose=False,
        external_data=False,
    )
    program.save(str(path), external_data=False)


@contextlib.contextmanager
def _c_output_silenced():
    """Send what C++ code writes to stdout/stderr nowhere for a while (Python's own
    redirection does not reach it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _runs_at_other_size(net, path: Path, size: int) -> bool:
    """An exported graph can accept a dynamic size and still compute it wrongly (a shape
    specialised during tracing); check one odd, non-square size against PyTorch."""
    from maskseg.pipeline.backends.onnx import open_session, session_options

    x = np.random.default_rng(0).normal(size=(1, 3, size + 13, size - 7)).astype(np.float32)
    quiet = session_options()
    quiet.log_severity_level = 4  # a failure here is an answer, not an error to print
    try:
        got = open_session(path, quiet).run(None, {INPUT: x})[0]
    except Exception:
        return False
    want = torch_logits(net, x)
    return got.shape == want.shape and float(np.abs(got - want).max()) < 1e-3


# --------------------------------------------------------------------------- the command


def _metadata(path: Path, meta: dict[str, Any]) -> bytes:
    """The model at ``path`` with maskseg's metadata, serialised (weights embedded)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in meta.items():
        text = value if isinstance(value, str) else json.dumps(value)
        model.metadata_props.add(key=key, value=text)
    model.producer_name, model.producer_version = "maskseg", __version__
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_onnx(
    model: str | Path | None,
    output: str | Path,
    *,
    int8: bool = False,
    data: str | Path | None = None,
    calibration: int = 0,
    exclude_fold: int | None = None,
    method: str = "minmax",
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    parity_split: str = "test",
) -> ExportReport:
    """Export a model file (or a shipped model by name) to one ONNX file and check parity.

    Args:
        data: a data folder; required for ``int8`` (calibration on the training part of the
            model's own split) and used for the parity check on ``parity_split``.
        calibration: calibration crops (0: the whole training part).
        exclude_fold: leave this validation fold out of calibration.
        method: calibration method: minmax, entropy or percentile (``quantize_int8``).
        parity_split: "test" (the model's held-out split), "trainval" or "none".

    Returns:
        the report; the file is written atomically.
    """
    from maskseg.pipeline.predictor import resolve_model_path

    start = time.perf_counter()
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"{output}: the output file must end in .onnx")
    if int8 and data is None:
        raise ValueError(
            "--int8 needs calibration crops: give --data (the training part of "
            "the model's split is used, never its test part)"
        )
    source = resolve_model_path(model, backend="torch")
    refuse_overwrite([output], [source], "write the ONNX file to a new file (--output)")
    make_parents(output)
    net, cfg, info = _torch_model(source)
    size = cfg.data.image_size
    meta: dict[str, Any] = {
        "format": "maskseg",
        "config": cfg.to_dict(),
        "metrics": info,
        "source": source.name,
        "source_sha256": sha256_file(source),
        "int8": "yes" if int8 else "no",
        "exporter": f"torch {_torch_version()} {exporter}, opset {opset}",
        "maskseg_version": __version__,
    }
    calib: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="maskseg-export-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        dynamic = to_onnx(net, size, fp32, opset, exporter)
        final = fp32
        if int8:
            ids, part = calibration_ids(data, cfg, calibration, exclude_fold)
            crops = calibration_crops(data, cfg, ids)
            final = Path(tmp) / "int8.onnx"
            quantize_int8(fp32, final, crops, method)
            calib = {
                "count": len(ids),
                "part": part,
                "method": method,
                "split_seed": cfg.data.seed,
                "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
            }
            meta["calibration"] = calib
        blob = _metadata(final, meta)
    report = _parity(net, blob, cfg, data, parity_split)
    atomic_write_bytes(output, blob)
    report.update(
        output=output,
        int8=int8,
        dynamic_size=dynamic,
        size_bytes=len(blob),
        calibration=calib,
        seconds=time.perf_counter() - start,
    )
    return ExportReport(**report)


def _torch_version() -> str:
    import torch

    return torch.__version__


def _parity(net, blob: bytes, cfg: Config, data, part: str) -> dict[str, Any]:
    """Logits and masks of the ONNX model against PyTorch fp32 on real crops (``part`` of the
    model's split) or, without data, on random inputs."""
    from maskseg.pipeline.backends.onnx import OnnxBackend, open_session
    from maskseg.pipeline.predictor import Predictor

    onnx_backend = OnnxBackend(open_session(blob))
    size = cfg.data.image_size
    if data is None or part == "none":
        x = np.random.default_rng(0).normal(size=(4, 3, size, size)).astype(np.float32)
        diff = float(np.abs(onnx_backend(x) - torch_logits(net, x)).max())
        return {"max_logit_diff": diff, "parity_on": "random inputs", "n_parity": len(x)}
    from maskseg.data.splits import load_split
    from maskseg.evaluate.metrics import iou
    from maskseg.evaluate.scoring import score_masks
    from maskseg.pipeline.backends.pytorch import TorchBackend

    split = load_split(data, cfg.data, part)
    if part == "test" and not split.splits.test:
        # a model trained on every pair has no held-out part: check on what it trained on
        part = "trainval"
        split = load_split(data, cfg.data, part)
    samples = split.take(getattr(split.splits, part))
    if not samples:
        raise ValueError(f"{data}: the {part} part of the model's split holds no readable pairs")
    ref = Predictor(TorchBackend(net, "cpu", "fp32"), cfg)
    mine = Predictor(onnx_backend, cfg)
    images = [s.image for s in samples]
    sizes = [im.shape[:2] for im in images]
    ref_logits, my_logits = ref.logits(images), mine.logits(images)
    diff = float(np.abs(my_logits - ref_logits).max())
    ref_masks = ref.masks_from_logits(ref_logits, sizes)
    my_masks = mine.masks_from_logits(my_logits, sizes)
    differing = sum(int((a != b).sum()) for a, b in zip(ref_masks, my_masks, strict=True))
    ious = {
        "torch fp32": float(iou(score_masks(ref_masks, samples))),
        "onnx": float(iou(score_masks(my_masks, samples))),
    }
    return {
        "max_logit_diff": diff,
        "parity_on": f"{part} crops",
        "n_parity": len(samples),
        "mask_pixels_differing": differing,
        "mask_pixels": sum(m.size for m in ref_masks),
        "iou": ious,
    }
