"""Backends: anything that maps a float32 (N, 3, S, S) batch to (N, 1, S, S) logits.

The ``Predictor`` does everything else (resize, normalise, upsample, threshold, clean-up) in
numpy/OpenCV, so a backend is only the network. Backends register by name and are imported
lazily: ``torch`` needs PyTorch, ``onnx`` only onnxruntime (a core dependency).

    backend, config, info = load_backend("unet-msfd.onnx", kind="auto")
    logits = backend(batch)  # np.float32 (N, 1, S, S)
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from maskseg.config import Config


class Backend(Protocol):
    """A network behind one call. ``name`` says which runtime; ``describe()`` where it runs."""

    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def describe(self) -> str: ...


Loader = Callable[..., tuple[Backend, Config, dict[str, Any]]]

# name -> ("module:function", file suffixes it reads). Imported on first use only.
_REGISTRY: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch": ("maskseg.pipeline.backends.pytorch:load", (".safetensors", ".pt", ".pth")),
    "onnx": ("maskseg.pipeline.backends.onnx:load", (".onnx",)),
}
# The top-level module each backend's runtime needs (checked without importing it).
_RUNTIMES = {"torch": "torch", "onnx": "onnxruntime"}
# How to install PyTorch with maskseg: the CPU build pinned in the same command (any other
# torch request pulls a multi-GB CUDA build; see the README's install extras).
TORCH_INSTALL = (
    "pip install torch==2.13.0 'maskseg[train]' --index-url https://download.pytorch.org/whl/cpu "
    "--extra-index-url https://pypi.org/simple"
)
# the modules only the [train] extra installs: a command that fails to import one says so
TRAIN_MODULES = frozenset(
    {"torch", "safetensors", "albumentations", "matplotlib", "onnx", "onnxscript"}
)
# "auto" tries these in order: for a file that more than one backend reads, and for a shipped
# model that ships in several formats (fastest first: benchmarks/bench_race.py).
PREFERENCE = ["onnx", "torch"]


def register_backend(
    name: str,
    target: str,
    suffixes: tuple[str, ...],
    first: bool = False,
    runtime: str | None = None,
):
    """Add a backend: ``target`` is "module:function" returning (backend, config, info);
    ``runtime`` the module it needs (default: none beyond maskseg's own dependencies)."""
    _REGISTRY[name] = (target, suffixes)
    if runtime:
        _RUNTIMES[name] = runtime
    if name not in PREFERENCE:
        PREFERENCE.insert(0 if first else len(PREFERENCE), name)


def is_installed(name: str) -> bool:
    """Whether a backend's runtime can be found (without importing it: importing torch alone
    takes over a second). An unknown backend is not installed."""
    if name not in _REGISTRY:
        return False
    runtime = _RUNTIMES.get(name)
    if runtime is None:
        return True
    try:
        return importlib.util.find_spec(runtime) is not None
    except (ImportError, ValueError):  # a broken or blocked install
        return False


def suffixes_of(name: str) -> tuple[str, ...]:
    """The file suffixes a backend reads."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; valid: auto, {', '.join(_REGISTRY)}")
    return _REGISTRY[name][1]


def list_backends() -> list[str]:
    return list(_REGISTRY)


def _loader(name: str) -> Loader:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; valid: auto, {', '.join(_REGISTRY)}")
    module, func = _REGISTRY[name][0].split(":")
    return getattr(importlib.import_module(module), func)


def backends_for(path: Path) -> list[str]:
    """Backends that read this file, in order of preference."""
    suffix = path.suffix.lower()
    return [n for n in PREFERENCE if suffix in _REGISTRY[n][1]]


def load_backend(
    path: str | Path, kind: str = "auto", **options: Any
) -> tuple[Backend, Config, dict[str, Any]]:
    """Load a model file into a backend.

    Args:
        path: a weight file; its suffix says which backends can read it.
        kind: a backend name, or "auto" for the first one that reads the file and whose
            runtime is installed.
        options: passed to the backend's loader (e.g. device, precision, threads).

    Returns:
        (backend, the config stored with the model, other stored info such as metrics).
    """
    path = Path(path)
    if kind != "auto":
        suffixes = suffixes_of(kind)
        try:
            loader = _loader(kind)
        except ImportError as exc:
            raise ImportError(
                f"the {kind} backend needs {_RUNTIMES.get(kind, kind)}, which does not import "
                f"here ({exc}); install it (PyTorch: {TORCH_INSTALL})"
            ) from None
        if path.suffix.lower() not in suffixes:
            hint = ""
            if kind == "onnx":
                hint = f"; export one with `maskseg export {path} --output {path.stem}.onnx`"
            raise ValueError(f"{path}: the {kind} backend reads {', '.join(suffixes)} files{hint}")
        return loader(path, **options)
    names = backends_for(path)
    if not names:
        known = sorted({s for _, suffixes in _REGISTRY.values() for s in suffixes})
        raise ValueError(f"{path}: not a model file this tool reads ({', '.join(known)})")
    missing = []
    for name in names:
        try:
            loader = _loader(name)
        except ImportError as exc:  # runtime not installed: try the next backend
            missing.append(f"{name} ({exc.name or exc})")
            continue
        return loader(path, **options)
    raise ImportError(
        f"{path}: no installed runtime can run it; missing: {', '.join(missing)}. "
        f"Install one, e.g. {TORCH_INSTALL} for PyTorch."
    )
