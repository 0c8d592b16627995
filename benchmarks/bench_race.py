"""The speed race: maskseg (PyTorch bf16, ONNX fp32, ONNX INT8) against segmentation_models_pytorch
``Unet('resnet34')``, in one run, interleaved, at the same input size and batch.

    python benchmarks/bench_race.py [--rounds 7] [--threads 2]            # the race
    python benchmarks/bench_race.py --ort-options                        # onnxruntime settings
    python benchmarks/bench_race.py --variants [--only TEXT ...]         # other architectures

Needs ``maskseg[train]`` (PyTorch, onnx) and, for the reference, ``maskseg[bench]`` (see
benchmarks/README.md for an install line that keeps the CPU build of torch). Every figure is a
median over ``--rounds`` rounds; within a round the contenders take turns (in a rotating
order), so a neighbour's load on this shared CPU hits them alike and the ratios stay
comparable even when the absolute figures move. "forward" times the network alone on a
normalised batch; "predict" times ``Predictor.predict_batch`` on 250x250 RGB crops (MSFD's
size): resize, normalise, network, upsample, threshold, clean-up.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from onnxruntime import __version__ as ort_version

from maskseg.config import Config
from maskseg.console import cpu_description
from maskseg.models import create_model
from maskseg.models.measure import conv_macs, parameters
from maskseg.pipeline.backends.onnx import OnnxBackend, open_session, session_options
from maskseg.pipeline.backends.pytorch import TorchBackend
from maskseg.pipeline.predictor import Predictor, resolve_model_path
from maskseg.train.export import to_onnx
from maskseg.train.quantize import quantize_int8


def smp_unet(classes: int = 1) -> torch.nn.Module:
    """segmentation_models_pytorch Unet with a resnet34 encoder, random init.

    torchvision's only build for this torch is a CUDA one whose compiled ops fail to load
    beside the CPU torch; registering the schemas its import checks lets it import (smp's Unet
    uses none of those ops).
    """
    global _TV_LIB
    try:
        import torchvision  # noqa: F401
    except RuntimeError:  # "operator torchvision::nms does not exist"
        _TV_LIB = torch.library.Library("torchvision", "DEF")  # kept alive: owns the schemas
        for op in ("nms", "qnms"):
            _TV_LIB.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import segmentation_models_pytorch as smp

    return smp.Unet("resnet34", encoder_weights=None, classes=classes).eval()


_TV_LIB = None


@dataclass
class Contender:
    name: str
    forward: Callable[[np.ndarray], np.ndarray]
    predictor: Predictor | None = None


def _time_calls(fn: Callable[[], object], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def race(contenders: list[Contender], size: int, rounds: int, modes: list[tuple[str, int]]):
    """{(contender, mode, batch): per-call seconds over all rounds}."""
    rng = np.random.default_rng(0)
    x = {b: rng.normal(size=(b, 3, size, size)).astype(np.float32) for _, b in modes}
    crops = [rng.integers(0, 255, (250, 250, 3), dtype=np.uint8) for _ in range(16)]
    jobs = {}
    for c in contenders:
        for mode, b in modes:
            if mode == "forward":
                jobs[c.name, mode, b] = lambda c=c, b=b: c.forward(x[b])
            elif c.predictor is not None:
                jobs[c.name, mode, b] = lambda c=c, b=b: c.predictor.predict_batch(crops[:b])
    for fn in jobs.values():  # warm-up: lazy initialisation, allocator, oneDNN primitives
        fn()
        fn()
    times: dict[tuple[str, str, int], list[float]] = {k: [] for k in jobs}
    keys = list(jobs)
    for r in range(rounds):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            calls = max(2, 16 // key[2])
            times[key] += _time_calls(jobs[key], calls)
    return times


def print_race(times, reference: str | None) -> None:
    print(f"{'':<28} {'mode':<8} {'batch':>5} {'crops/s':>9} {'ms/call p50':>12} {'vs ref':>7}")
    for (name, mode, b), ts in times.items():
        med = statistics.median(ts)
        ref = times.get((reference, mode, b)) if reference else None
        ratio = f"{statistics.median(ref) / med:6.1f}x" if ref else ""
        print(f"{name:<28} {mode:<8} {b:>5} {b / med:9.1f} {1000 * med:12.2f} {ratio:>7}")


def onnx_files(cfg_model, size: int, tmp: Path, net=None, calib: np.ndarray | None = None):
    """(fp32 path, int8 path) of a network exported here (random crops calibrate INT8 when
    no real ones are given: right for timing, meaningless for accuracy)."""
    net = create_model(cfg_model).eval() if net is None else net
    fp32 = tmp / f"{id(net)}-fp32.onnx"
    to_onnx(net, size, fp32)
    if calib is None:
        calib = np.random.default_rng(1).normal(size=(8, 3, size, size)).astype(np.float32)
    int8 = tmp / f"{id(net)}-int8.onnx"
    quantize_int8(fp32, int8, calib)
    return fp32, int8


def ort(path: Path, threads: int, **options) -> OnnxBackend:
    return OnnxBackend(open_session(path, session_options(threads, **options)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet-msfd", help="maskseg model (name or file)")
    ap.add_argument(
        "--int8",
        type=Path,
        help="INT8 .onnx to race (default: the shipped one "
        "when it is INT8, else one exported here with random calibration)",
    )
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-smp", action="store_true", help="leave the reference out")
    ap.add_argument("--ort-options", action="store_true", help="time onnxruntime settings")
    ap.add_argument("--variants", action="store_true", help="time faster U-Net variants")
    ap.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="TEXT",
        help="with --variants: only the variants whose name contains one of these",
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from maskseg.pipeline.backends.pytorch import load as load_torch

    tb, cfg, _ = load_torch(resolve_model_path(a.model, "torch"), "cpu", "bf16", a.threads)
    size = cfg.data.image_size
    print(f"CPU: {cpu_description()}")
    print(
        f"torch {torch.__version__}, {a.threads} threads; onnxruntime {ort_version}; "
        f"input {size}px; {a.rounds} rounds"
    )
    smp = None if a.no_smp else smp_unet()
    ref_name = "smp Unet resnet34 bf16"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fp32_net = create_model(cfg.model)
        fp32_net.load_state_dict(tb.model.state_dict())
        fp32, int8 = onnx_files(cfg.model, size, tmp, fp32_net.eval())
        shipped = resolve_model_path(a.model, "onnx") if a.int8 is None else a.int8
        if a.int8 is not None or _is_int8(shipped):
            int8 = shipped
        if a.ort_options:
            run_ort_options(fp32, int8, cfg, size, a)
        elif a.variants:
            run_variants(cfg, size, tmp, smp, a)
        else:
            backends = {
                "maskseg torch bf16": tb,
                "maskseg onnx fp32": ort(fp32, a.threads),
                "maskseg onnx int8": ort(int8, a.threads),
            }
            if smp is not None:
                backends[ref_name] = TorchBackend(smp, "cpu", "bf16", a.threads)
            cs = [Contender(name, b, Predictor(b, cfg)) for name, b in backends.items()]
            modes = [("forward", 1), ("forward", 16), ("predict", 1), ("predict", 16)]
            print(f"int8 file: {int8.name}")
            print_race(race(cs, size, a.rounds, modes), ref_name if smp is not None else None)


def _is_int8(path: Path) -> bool:
    from maskseg.pipeline.modelfile import read_model_info

    try:
        return read_model_info(path)[1].get("int8") == "yes"
    except (FileNotFoundError, ValueError):
        return False


def run_ort_options(fp32: Path, int8: Path, cfg: Config, size: int, a) -> None:
    """Each onnxruntime setting against the default, forward pass, interleaved."""
    settings = {
        "default (all, 2 thr, no spin)": {},
        "spinning on": {"spinning": True},
        "1 thread": {"threads": 1},
        "optimization basic": {"optimization": "basic"},
        "optimization extended": {"optimization": "extended"},
        "optimization none": {"optimization": "none"},
        "parallel execution": {"parallel": True},
    }
    cs = []
    for label, path in (("fp32", fp32), ("int8", int8)):
        for name, opts in settings.items():
            opts = {"threads": a.threads, **opts}
            cs.append(Contender(f"{label} {name}", ort(path, opts.pop("threads"), **opts)))
    print_race(race(cs, size, a.rounds, [("forward", 1), ("forward", 16)]), None)


VARIANTS = [  # (name, architecture, base channels, block, input size[, depth])
    ("c16 double 160 (shipped)", "unet", 16, "double", 160),
    ("c12 double 160", "unet", 12, "double", 160),
    ("c8 double 160", "unet", 8, "double", 160),
    ("c16 separable 160", "unet", 16, "separable", 160),
    ("c8 separable 160", "unet", 8, "separable", 160),
    ("c16 double 128", "unet", 16, "double", 128),
    ("c8 double 128", "unet", 8, "double", 128),
    ("c16 separable 128", "unet", 16, "separable", 128),
    ("c8 separable 128", "unet", 8, "separable", 128),
    ("lrunet c16 double 160", "lrunet", 16, "double", 160),
    ("lrunet c32 double 160", "lrunet", 32, "double", 160),
    ("lrunet c32 separable 160", "lrunet", 32, "separable", 160),
    ("resunet c16 160", "resunet", 16, "residual", 160),
    ("attunet c16 160", "attunet", 16, "double", 160),
    ("unetpp c16 160", "unetpp", 16, "double", 160),
    ("unet d5 c16 160", "unet", 16, "double", 160, 5),
    ("unet c24 160", "unet", 24, "double", 160),
]


def run_variants(cfg: Config, size: int, tmp: Path, smp, a) -> None:
    """Random-weight variants in ONNX fp32 and INT8 against the reference at the shipped
    model's input size (the reference's work does not shrink with a variant's input)."""
    from maskseg.config import ModelConfig

    cs: list[Contender] = []
    print(f"{'variant':<28} {'params (M)':>10} {'GMACs':>7}")
    chosen = [v for v in VARIANTS if not a.only or any(o in v[0] for o in a.only)]
    for name, arch, channels, block, side, *depth in chosen:
        params = {"base_channels": channels, "block": block, "depth": (depth or [4])[0]}
        mc = ModelConfig(name=arch, params=params)
        net = create_model(mc).eval()
        params, gmacs = parameters(net) / 1e6, conv_macs(net, side) / 1e9
        print(f"{name:<28} {params:>10.2f} {gmacs:>7.3f}")
        fp32, int8 = onnx_files(mc, side, tmp, net)
        for label, path in (("fp32", fp32), ("int8", int8)):
            cs.append(Contender(f"{name} {label}", _at_size(ort(path, a.threads), side)))
    ref_name = None
    if smp is not None:
        ref_name = "smp Unet resnet34 bf16"
        print(f"{ref_name:<28} {'':>10} {conv_macs(smp, size) / 1e9:>7.3f}")
        cs.append(Contender(ref_name, TorchBackend(smp, "cpu", "bf16", a.threads)))
    print_race(race(cs, size, a.rounds, [("forward", 1), ("forward", 16)]), ref_name)


def _at_size(backend: OnnxBackend, side: int) -> Callable[[np.ndarray], np.ndarray]:
    """The backend fed a crop of ``side`` px (the race hands every contender the shipped size;
    a smaller-input variant would get its input resized, which costs microseconds)."""
    return lambda x: backend(np.ascontiguousarray(x[:, :, :side, :side]))


if __name__ == "__main__":
    main()
