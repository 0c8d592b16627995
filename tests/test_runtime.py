"""PyTorch device and precision choices (maskseg.pipeline.backends.runtime): what each setting
runs, checked by the dtype PyTorch computes in, not by the names the functions return."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

import pytest
import torch

from maskseg.pipeline.backends.runtime import (
    autocast_context,
    cpu_supports_bf16,
    effective_precision,
    needs_grad_scaler,
    resolve_device,
)

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # a device object only: nothing here runs on it


def computed_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The dtype a convolution's output has inside ``autocast_context`` (CPU tensors)."""
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad(), autocast_context(device, precision):
        return conv(x).dtype


def test_devices():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device("cpu") == CPU
    given = torch.device("cuda", 1)
    assert resolve_device(given) is given  # a device passes through as it is
    if torch.cuda.is_available():
        assert resolve_device("cuda:1") == given
    else:  # refused at once, not when the first tensor moves there (a traceback then)
        with pytest.raises(ValueError, match="--device cuda:1: this PyTorch has no CUDA"):
            resolve_device("cuda:1")
    with pytest.raises(ValueError, match="--device gpu: not a device PyTorch knows"):
        resolve_device("gpu")


def test_cpu_bf16_is_what_the_processor_says():
    """Native bf16 means AVX512-BF16 or AMX; on Linux x86 the kernel lists both in cpuinfo."""
    assert isinstance(cpu_supports_bf16(), bool)
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() not in ("x86_64", "AMD64") or not cpuinfo.is_file():
        pytest.skip("no x86 /proc/cpuinfo to compare with")
    flags = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    assert cpu_supports_bf16() == bool(flags & {"avx512_bf16", "amx_tile", "amx_bf16"})


def test_cpu_precisions_run_in_the_dtype_they_name():
    assert computed_dtype(CPU, "fp32") == torch.float32
    assert computed_dtype(CPU, "bf16") == torch.bfloat16  # bf16 autocast runs on any CPU
    native = torch.bfloat16 if cpu_supports_bf16() else torch.float32
    assert computed_dtype(CPU, "auto") == native  # only where it pays off
    names = {torch.float32: "fp32", torch.bfloat16: "bf16"}
    for precision in ("fp32", "bf16", "auto"):
        assert effective_precision(CPU, precision) == names[computed_dtype(CPU, precision)]
    assert isinstance(autocast_context(CPU, "fp32"), contextlib.nullcontext)


def test_bf16_on_cpu_is_close_to_fp32():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = conv(x)
        with autocast_context(CPU, "bf16"):
            low = conv(x)
    assert low.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: about 2-3 significant digits
    assert (low.float() - ref).abs().max() < 0.02 * ref.abs().max()
    assert (low.float() - ref).abs().max() > 0  # it did round


def test_bad_precisions_fail_by_name():
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        autocast_context(CPU, "fp8")
    with pytest.raises(ValueError, match="fp16 precision needs CUDA"):
        autocast_context(CPU, "fp16")


def test_grad_scaler_only_for_fp16_on_cuda():
    for precision in ("auto", "fp32", "bf16", "fp16"):
        assert not needs_grad_scaler(CPU, precision)
    assert not needs_grad_scaler(CUDA, "fp32")
    assert needs_grad_scaler(CUDA, "fp16")
    assert effective_precision(CUDA, "fp16") == "fp16"
    assert effective_precision(CUDA, "fp32") == "fp32"
