"""Static INT8 for an exported ONNX model: calibration crops from the model's own training
split, then onnxruntime's QDQ quantization with the logit head kept in fp32.

    ids, part = calibration_ids(data, cfg)
    quantize_int8(fp32_onnx, int8_onnx, calibration_crops(data, cfg, ids))

Per-channel int8 weights and uint8 activations, ranges from crops of the *training* part of
the model's split (never its test part; ``exclude_fold`` also leaves out a validation
fold). The final 1x1 convolution, whose output is compared with the threshold, stays in
fp32: the ``SegmentationModel`` contract makes ``head`` the model's only convolution with one
output channel, which is how it is found in the graph. ``maskseg.train.export`` runs this
for ``maskseg export --int8``.

Needs ``onnx`` and onnxruntime's quantization tools (``maskseg[train]``); no PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maskseg.config import Config
from maskseg.pipeline.preprocess import model_input


def calibration_ids(
    data: str | Path, cfg: Config, count: int = 0, exclude_fold: int | None = None, seed: int = 0
) -> tuple[list[str], str]:
    """Ids of training crops for calibration: the trainval part of the model's own split
    (minus ``exclude_fold``), all of them or ``count`` drawn with a seed.

    Returns:
        (ids, a name for the part they come from).
    """
    from maskseg.data.pairs import find_pairs
    from maskseg.data.splits import splits_for

    splits = splits_for([p.id for p in find_pairs(data).pairs], cfg.data)
    if exclude_fold is None:
        ids, part = splits.trainval, "trainval"
    else:
        ids, _ = splits.train_val(exclude_fold)
        part = f"trainval without fold {exclude_fold}"
    if not ids:
        raise ValueError(f"{data}: the model's split leaves no training crops to calibrate on")
    if 0 < count < len(ids):
        ids = sorted(np.random.default_rng(seed).choice(ids, count, replace=False).tolist())
    return ids, part


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over preprocessed crops (one per call: the
    histogram calibrators stack their outputs, which needs batches of one size)."""

    def __init__(self, batch: np.ndarray, input_name: str, batch_size: int = 1):
        self.chunks = [batch[i : i + batch_size] for i in range(0, len(batch), batch_size)]
        self.input_name = input_name
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.chunks):
            return None
        self.i += 1
        return {self.input_name: self.chunks[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


def quantize_int8(
    fp32_path: Path,
    output: Path,
    crops: np.ndarray,
    method: str = "minmax",
    keep_head_fp32: bool = True,
    op_types: Sequence[str] | None = None,
) -> None:
    """Static QDQ INT8: per-channel int8 weights, uint8 activations, ranges from ``crops``
    (a normalised (N, 3, S, S) batch of training crops).

    Args:
        method: activation ranges from the calibration crops' min/max, their histogram's
            entropy, or its 99.999th percentile.
        keep_head_fp32: leave the last 1x1 convolution (1 output channel: the logits) in fp32.
        op_types: operator types to quantize (None: every type onnxruntime can).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise ValueError(f"unknown calibration method {method!r}; valid: {', '.join(methods)}")
    prepared = output.with_name(output.stem + ".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    model = onnx.load(str(prepared))
    exclude = _head_convs(model) if keep_head_fp32 else []
    quantize_static(
        str(prepared),
        str(output),
        _Batches(crops, model.graph.input[0].name),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        calibrate_method=methods[method],
        op_types_to_quantize=list(op_types) if op_types else None,
    )


def _head_convs(model) -> list[str]:
    """Names of Conv nodes with one output channel: the model's logit ``head`` (by the
    ``SegmentationModel`` contract the only such convolution)."""
    from onnx import numpy_helper

    weights = {t.name: t for t in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "Conv"
        and n.input[1] in weights
        and numpy_helper.to_array(weights[n.input[1]]).shape[0] == 1
    ]


def calibration_crops(data: str | Path, cfg: Config, ids: Sequence[str]) -> np.ndarray:
    """The pairs ``ids`` of ``data`` as the model's normalised (N, 3, S, S) input batch."""
    from maskseg.data.splits import load_split

    split = load_split(data, cfg.data, list(ids))
    samples = split.take(list(ids))
    if not samples:
        raise ValueError(f"{data}: none of the {len(ids)} calibration crops could be read")
    return model_input([s.image for s in samples], cfg.data.image_size)
