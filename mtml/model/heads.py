"""Per-voxel prediction heads on top of the shared backbone features."""

from __future__ import annotations

import torch
from torch import nn


class PointwiseHead(nn.Module):
    """Three 1x1x1 convolutions: [B, in_ch, X, Y, Z] -> [B, out_ch, X, Y, Z] (the authors' head shape)."""

    def __init__(self, in_ch: int, out_ch: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(in_ch, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv3d(hidden, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv3d(hidden, out_ch, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
