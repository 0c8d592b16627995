"""What a model file says of itself (config, metrics) without loading a runtime.

Lets ``Predictor.load`` pick a backend, and ``maskseg models`` list shipped models, without
importing PyTorch: safetensors metadata is read with the numpy reader, ONNX metadata with
onnxruntime (no graph optimisation, so opening costs milliseconds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from maskseg.config import Config


def read_safetensors_info(path: str | Path) -> tuple[Config, dict[str, Any]]:
    """(config, {"metrics": ...}) from a maskseg .safetensors weight file's metadata."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weight file not found")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("format") != "maskseg" or "config" not in meta:
        raise ValueError(f"{path}: safetensors file has no maskseg config metadata")
    return Config.from_dict(json.loads(meta["config"])), {
        "metrics": json.loads(meta.get("metrics", "{}"))
    }


def read_onnx_info(path: str | Path) -> tuple[Config, dict[str, Any]]:
    """(config, info) from a maskseg .onnx file's metadata (info: metrics, provenance)."""
    from maskseg.pipeline.backends.onnx import metadata, open_session, session_options

    session = open_session(path, session_options(threads=1, optimization="none"))
    return metadata(session, path)


def read_model_info(path: str | Path) -> tuple[Config, dict[str, Any]]:
    """(config, info) of any model file maskseg reads."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors_info(path)
    if path.suffix == ".onnx":
        return read_onnx_info(path)
    from maskseg.pipeline.weights import load_model_file  # a .pt checkpoint needs PyTorch

    _, cfg, info = load_model_file(path)
    return cfg, {"metrics": info}
