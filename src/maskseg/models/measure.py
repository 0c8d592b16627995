"""How big a network is: parameters and convolution multiply-adds per crop, the figures the
architecture tables compare (``benchmarks/bench_race.py --variants``)."""

from __future__ import annotations

import torch
from torch import nn


def conv_macs(net: nn.Module, side: int, in_channels: int = 3) -> int:
    """Multiply-adds of every ``Conv2d`` for one ``side`` x ``side`` input: each output
    value costs one per weight of its filter (input channels per group x kernel area)."""
    total = 0

    def hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.weight[0].numel()

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net(torch.zeros(1, in_channels, side, side))
    finally:
        for h in hooks:
            h.remove()
    return total


def parameters(net: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in net.parameters())
