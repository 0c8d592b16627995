"""PyTorch device and precision choices, shared by training and the PyTorch backend.

Small on purpose: the inference path imports it without pulling in the training stack.
"""

from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str | torch.device) -> torch.device:
    """ "auto" is CUDA when present, else the CPU; anything else is passed to torch.device."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device {name}: not a device PyTorch knows ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device {name}: this PyTorch has no CUDA device (a CPU build, or no GPU); "
            "give --device cpu or auto"
        )
    return device


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 (AVX512-BF16 or AMX): there bf16 autocast pays off."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, c, lambda: False)() for c in checks)


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CPUs with native bf16, AMP on CUDA (bf16, else fp16), else fp32."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}; valid: auto, fp32, bf16, fp16")
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if precision == "fp16":
            dtype = torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if precision == "fp16":
        raise ValueError("fp16 precision needs CUDA; use bf16 or fp32 on the CPU")
    if precision == "bf16" or (precision == "auto" and cpu_supports_bf16()):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def effective_precision(device: torch.device, precision: str) -> str:
    """What ``autocast_context`` will actually run: "bf16", "fp16" or "fp32"."""
    if precision == "fp32":
        return "fp32"
    if device.type == "cuda":
        if precision == "fp16" or not torch.cuda.is_bf16_supported():
            return "fp16"
        return "bf16"
    return "bf16" if precision == "bf16" or cpu_supports_bf16() else "fp32"


def needs_grad_scaler(device: torch.device, precision: str) -> bool:
    if device.type != "cuda" or precision == "fp32":
        return False
    return precision == "fp16" or not torch.cuda.is_bf16_supported()
