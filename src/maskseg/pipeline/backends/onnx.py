"""The onnxruntime backend: an exported model (``maskseg export``) without PyTorch.

The .onnx file holds the weights (fp32 or INT8 QDQ) and, in its metadata, the same config a
.safetensors file carries, so the ``Predictor`` preprocesses and thresholds exactly alike.
Session defaults were measured on a shared 2-core CPU (``benchmarks/bench_race.py``): all
graph optimisations, sequential execution, and no spinning of idle worker threads (spinning
only burns the core another process needs, for no gain on batches of crops).

INT8 on x86 CPUs without VNNI (AVX2 only, as many laptops): onnxruntime's fast U8S8 kernel
adds pairs of uint8 x int8 products in 16 bits, which saturate, so the shipped INT8 model
lost 0.015 IoU there (MSFD test 0.885 against 0.900 on VNNI/AMX machines, where the same
file computes exact int8 sums). ``session.x64quantprecision`` makes onnxruntime use its
exact U8U8 kernel on those CPUs only (no effect with VNNI or AMX); it costs about a third
more time per crop there (docs/results.md, "INT8 on CPUs without VNNI").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from maskseg.config import Config

OPTIMIZATION = {
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# onnxruntime's switch to exact (unsaturated) INT8 products on x86 CPUs without VNNI
PRECISE_INT8 = "session.x64quantprecision"


def session_options(
    threads: int = 0,
    optimization: str = "all",
    spinning: bool = False,
    parallel: bool = False,
    precise_int8: bool = True,
) -> ort.SessionOptions:
    """onnxruntime session settings.

    Args:
        threads: intra-op threads (0: one per core, as onnxruntime chooses).
        optimization: graph optimisation level: none, basic, extended or all.
        spinning: let idle worker threads spin for the next op (lower latency on an idle
            machine, wasted cycles on a shared one).
        parallel: run independent branches of the graph concurrently (ORT_PARALLEL).
        precise_int8: exact INT8 products on x86 CPUs without VNNI (``PRECISE_INT8``; the
            module's text says why); False trades that accuracy for their faster kernel.
    """
    if optimization not in OPTIMIZATION:
        raise ValueError(f"unknown optimization {optimization!r}; valid: {', '.join(OPTIMIZATION)}")
    so = ort.SessionOptions()
    so.graph_optimization_level = OPTIMIZATION[optimization]
    so.intra_op_num_threads = max(0, threads)
    so.inter_op_num_threads = 1
    so.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
    so.add_session_config_entry(PRECISE_INT8, "1" if precise_int8 else "0")
    so.log_severity_level = 3  # errors only: no warnings about unused initializers on stderr
    return so


def _providers(device: str) -> list[str]:
    if device in ("auto", "cpu"):
        return [PROVIDERS["cpu"]]
    name = PROVIDERS.get(device.split(":")[0])
    if name is None:
        raise ValueError(f"unknown device {device!r} for the onnx backend; valid: auto, cpu, cuda")
    if name not in ort.get_available_providers():
        raise ValueError(
            f"device {device!r}: this onnxruntime has no {name} "
            f"(available: {', '.join(ort.get_available_providers())}); "
            "add --backend torch to run the PyTorch weights there"
        )
    return [name, PROVIDERS["cpu"]]


def metadata(session: ort.InferenceSession, path: str | Path) -> tuple[Config, dict[str, Any]]:
    """(config, info) from a maskseg .onnx file's metadata."""
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if meta.get("format") != "maskseg" or "config" not in meta:
        raise ValueError(
            f"{path}: ONNX file has no maskseg config metadata (export it with `maskseg export`)"
        )
    info: dict[str, Any] = {"metrics": json.loads(meta.get("metrics", "{}"))}
    for key, value in meta.items():
        if key not in ("format", "config", "metrics"):
            info[key] = json.loads(value) if value[:1] in "{[" else value
    return Config.from_dict(json.loads(meta["config"])), info


def open_session(
    model: str | Path | bytes, options: ort.SessionOptions | None = None, device: str = "auto"
) -> ort.InferenceSession:
    """An onnxruntime session on a model file (or its bytes)."""
    what = "model bytes" if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes):
        if not Path(model).is_file():
            raise FileNotFoundError(f"{model}: model file not found")
        model = os.fspath(model)
    try:
        return ort.InferenceSession(
            model, options or session_options(), providers=_providers(device)
        )
    except Exception as exc:  # onnxruntime's Fail, InvalidProtobuf, InvalidArgument (empty), ...
        raise ValueError(f"{what}: not a readable ONNX model ({str(exc)[:300]})") from None


def check_input(session: ort.InferenceSession, cfg: Config, path: str | Path) -> None:
    """Refuse a file whose graph does not take what its config says: (N, 3, S, S) floats at
    the config's input size (a file put together by hand, or metadata copied to another
    graph, would fail only at its first image)."""
    inputs = session.get_inputs()
    size = cfg.data.image_size
    want = [None, cfg.model.in_channels, size, size]
    shape = list(inputs[0].shape) if len(inputs) == 1 else []
    fixed = len(shape) == 4 and all(
        w is None or not isinstance(d, int) or d == w for d, w in zip(shape, want, strict=True)
    )
    if not fixed or inputs[0].type != "tensor(float)":
        got = ", ".join(f"{i.name} {i.type} {list(i.shape)}" for i in inputs) or "no input"
        raise ValueError(
            f"{path}: the graph takes {got}, but its maskseg config says one float "
            f"input of [N, {cfg.model.in_channels}, {size}, {size}]"
        )


class OnnxBackend:
    """Runs an exported model that maps (N, 3, S, S) to (N, 1, S, S) logits."""

    name = "onnx"

    def __init__(self, session: ort.InferenceSession, int8: bool = False):
        self.session = session
        self.int8 = int8
        self.input = session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(None, {self.input: x})[0]

    def describe(self) -> str:
        so = self.session.get_session_options()
        threads = so.intra_op_num_threads or os.cpu_count()
        kind = "int8" if self.int8 else "fp32"
        return (
            f"onnxruntime {ort.__version__} on {self.session.get_providers()[0]} "
            f"({kind}, {threads} thread{'s' if threads != 1 else ''})"
        )


def load(
    path: str | Path,
    device: str = "auto",
    precision: str = "auto",
    threads: int = 0,
    optimization: str = "all",
    spinning: bool = False,
    parallel: bool = False,
    precise_int8: bool = True,
) -> tuple[OnnxBackend, Config, dict[str, Any]]:
    """An .onnx file written by ``maskseg export``.

    Args:
        precision: "auto" only: the file's own (fp32, or INT8 when exported with ``--int8``).
        threads, optimization, spinning, parallel, precise_int8: see ``session_options``.
    """
    if precision != "auto":
        raise ValueError(
            f"precision {precision!r}: the onnx backend runs the file's own precision "
            "(fp32, or INT8 when exported with --int8); precision applies to the torch backend"
        )
    options = session_options(threads, optimization, spinning, parallel, precise_int8)
    session = open_session(path, options, device)
    cfg, info = metadata(session, path)
    check_input(session, cfg, path)
    return OnnxBackend(session, int8=info.get("int8") == "yes"), cfg, info
