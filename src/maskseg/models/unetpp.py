"""U-Net++ (Zhou et al., 2018): the U-Net's encoder with nested, densely connected skips.

Each skip level ``i`` gets a row of decoder nodes ``X[i][j]`` (``j`` = 1 .. depth - i); a node
reads every earlier node of its row and the upsampled node below-left (``X[i + 1][j - 1]``),
so the encoder's features reach the output through decoders of every depth instead of one.
The mask comes from ``X[0][depth]`` (no deep supervision: the training loop and the gate see
one logit map, as for every ``SegmentationModel``). At 16 base channels it does about twice
the U-Net's multiply-adds, most of them in the full-resolution row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from maskseg.models.parts import BLOCKS
from maskseg.models.unet import UNet, UNetParams


@dataclass(frozen=True)
class UNetPPParams(UNetParams):
    """``UNetPlusPlus``'s options (``ModelConfig.params``): the U-Net's."""


class _Node(nn.Module):
    """One nested node: the node below reduced to this row's width (1x1 conv) and upsampled
    to its size, concatenated with the row's earlier nodes, then a conv block."""

    def __init__(self, below_ch: int, ch: int, n_row: int, conv: type[nn.Module]):
        super().__init__()
        self.reduce = nn.Conv2d(below_ch, ch, 1, bias=False)
        self.conv = conv((n_row + 1) * ch, ch)

    def forward(self, row: list[torch.Tensor], below: torch.Tensor) -> torch.Tensor:
        size = row[0].shape[-2:]
        up = F.interpolate(self.reduce(below), size=size, mode="bilinear", align_corners=False)
        return self.conv(torch.cat([*row, up], dim=1))


class UNetPlusPlus(UNet):
    """The U-Net with nested skip pathways (registered as "unetpp").

    Args: as ``UNet`` (no attention).

    Shape: (N, in_channels, H, W) -> (N, 1, H, W) logits, for any H, W >= 1.
    """

    Params = UNetPPParams

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 16,
        depth: int = 4,
        presence: bool = False,
        presence_hidden: int = 256,
        block: str = "double",
    ):
        super().__init__(in_channels, base_channels, depth, presence, presence_hidden, block)
        conv = BLOCKS[block]
        widths = self.feature_widths
        del self.up  # the nested nodes replace the U-Net's one decoder path
        # nodes[i][j - 1] is X[i][j]: row i has depth - i nodes; X[i][j] reads j earlier nodes
        self.nodes = nn.ModuleList(
            nn.ModuleList(_Node(widths[i + 1], widths[i], j, conv) for j in range(1, depth - i + 1))
            for i in range(depth)
        )

    def decode(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Fill the nested grid column by column; the top row's last node gives the mask."""
        depth = len(self.nodes)
        rows = [[f] for f in features]  # rows[i][j] = X[i][j]; the encoder is column 0
        for j in range(1, depth + 1):
            for i in range(depth - j + 1):
                rows[i].append(self.nodes[i][j - 1](rows[i][:j], rows[i + 1][j - 1]))
        return self.head(rows[0][depth])
