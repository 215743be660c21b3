"""The dense dilated 3D CNN of MTML (SSCNet-like), shared by every head.

Layout (after the authors' released code): a 7x7x7 convolution and a residual 3x3x3 block at full
resolution, max-pool /2, a residual block and several dilated residual blocks at half resolution, the
concatenation of four half-resolution feature maps, a 4x4x4 transposed convolution (stride 2) back to the
input size. We also concatenate the full-resolution features before the heads (a skip connection) so that
boundaries between touching objects stay sharp at 10 cm voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class ResidualBlock3d(nn.Module):
    """Two 3x3x3 convolutions (optionally dilated) with BatchNorm, ReLU and an identity (or 1x1x1) skip.

    Input [B, in_ch, X, Y, Z] -> output [B, out_ch, X, Y, Z].
    """

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(in_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm3d(out_ch)
        self.conv2 = nn.Conv3d(out_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(out_ch)
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv3d(in_ch, out_ch, 1, bias=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.skip(x))


@dataclass
class BackboneConfig:
    """Widths and depth of the backbone. ``dilated_blocks`` dilated residual blocks run at half resolution."""

    in_channels: int = 6
    full_channels: int = 16
    half_channels: int = 32
    dilation: int = 5
    dilated_blocks: int = 3
    out_channels: int = 32


class DilatedBackbone(nn.Module):
    """Voxel grid features -> per-voxel features at the same resolution.

    Input [B, in_channels, X, Y, Z] with X, Y, Z even; output [B, out_channels, X, Y, Z].
    """

    def __init__(self, cfg: BackboneConfig = BackboneConfig()):
        super().__init__()
        self.cfg = cfg
        f, h = cfg.full_channels, cfg.half_channels
        self.stem = nn.Sequential(
            nn.Conv3d(cfg.in_channels, f, 7, padding=3, bias=False), nn.BatchNorm3d(f), nn.ReLU(inplace=True)
        )
        self.full_block = ResidualBlock3d(f, f)
        self.pool = nn.MaxPool3d(2)
        self.half_block = ResidualBlock3d(f, h)
        self.dilated = nn.ModuleList(ResidualBlock3d(h, h, cfg.dilation) for _ in range(cfg.dilated_blocks))
        num_concat = 1 + cfg.dilated_blocks  # the half-res block and each dilated block: four maps by default
        self.up = nn.Sequential(
            nn.ConvTranspose3d(num_concat * h, f, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm3d(f),
            nn.ReLU(inplace=True),
        )
        self.fuse = nn.Sequential(nn.Conv3d(2 * f, cfg.out_channels, 1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        """Dense features [B, out_channels, X, Y, Z]; with ``coords`` int64 [V, 3] (B = 1) the features at those
        voxels only, [V, out_channels]. In eval mode the upsampling and the fusion then run at those voxels alone
        (the same values; several times cheaper when a tenth of the grid is occupied). Training keeps the dense
        path, whose BatchNorm statistics are taken over the whole grid."""
        full = self.full_block(self.stem(x))
        y = self.half_block(self.pool(full))
        maps = [y]
        for block in self.dilated:
            y = block(y)
            maps.append(y)
        half = torch.cat(maps, dim=1)
        if coords is None or self.training:
            dense = self.fuse(torch.cat([full, self.up(half)], dim=1))
            return dense if coords is None else dense[0][:, coords[:, 0], coords[:, 1], coords[:, 2]].T
        deconv, bn, act = self.up
        up = act(F.batch_norm(conv_transpose_at(deconv, half, coords), bn.running_mean, bn.running_var, bn.weight,
                              bn.bias, False, 0.0, bn.eps))
        at_full = full[0][:, coords[:, 0], coords[:, 1], coords[:, 2]].T
        conv = self.fuse[0]
        return self.fuse[1](F.linear(torch.cat([at_full, up], dim=1), conv.weight.flatten(1), conv.bias))


# Transposed convolution with kernel 4, stride 2, padding 1: output index o = 2j + p (parity p) reads input j + d
# with kernel tap k for the two (d, k) pairs of its parity: p = 0 -> (0, 1), (-1, 3); p = 1 -> (0, 2), (+1, 0).
_TAP_OFFSET = ((0, -1), (0, 1))
_TAP_KERNEL = ((1, 3), (2, 0))


def conv_transpose_at(layer: nn.ConvTranspose3d, x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` read at output voxels ``coords`` only, for a kernel-4, stride-2, padding-1 transposed
    convolution: x [1, C_in, X, Y, Z], coords int64 [V, 3] into the (2X, 2Y, 2Z) output -> [V, C_out]."""
    if layer.kernel_size != (4, 4, 4) or layer.stride != (2, 2, 2) or layer.padding != (1, 1, 1):
        raise ValueError("conv_transpose_at handles kernel 4, stride 2, padding 1 only")
    padded = F.pad(x[0], (1, 1, 1, 1, 1, 1)).permute(1, 2, 3, 0)  # [X+2, Y+2, Z+2, C_in], zero border
    rows = padded.reshape(-1, padded.shape[-1])
    strides = torch.tensor([padded.shape[1] * padded.shape[2], padded.shape[2], 1], device=coords.device)
    out = x.new_zeros((len(coords), layer.out_channels))
    parity = coords % 2
    code = parity[:, 0] * 4 + parity[:, 1] * 2 + parity[:, 2]
    bits = [((i >> 2) & 1, (i >> 1) & 1, i & 1) for i in range(8)]  # a parity code, or a tap, per axis
    for c, p in enumerate(bits):
        sel = torch.nonzero(code == c).squeeze(1)
        if len(sel) == 0:
            continue
        offsets = torch.tensor([[_TAP_OFFSET[p[a]][t[a]] for a in range(3)] for t in bits])  # [8 taps, 3]
        kernel = [[_TAP_KERNEL[p[a]][t[a]] for a in range(3)] for t in bits]
        weight = torch.cat([layer.weight[:, :, k[0], k[1], k[2]] for k in kernel])  # [8 * C_in, C_out]
        index = ((coords[sel, None, :] // 2 + 1 + offsets.to(coords.device)) * strides).sum(dim=2)  # [Vc, 8]
        out[sel] = rows[index.reshape(-1)].reshape(len(sel), -1) @ weight
    if layer.bias is not None:
        out += layer.bias
    return out


def receptive_field(cfg: BackboneConfig = BackboneConfig()) -> int:
    """Receptive field of one output voxel of ``DilatedBackbone(cfg)``, in input voxels along one axis.

    Computed layer by layer (kernel k, dilation d, stride s at the current input spacing ``jump``):
    rf += (k - 1) * d * jump. The transposed convolution (k=4, s=2) lets an output voxel see
    ceil(k / s) = 2 half-resolution cells. The skip path is narrower, so the deep path sets the value.
    """
    rf, jump = 1, 1
    rf += (7 - 1) * jump  # stem
    rf += 2 * (3 - 1) * jump  # full-resolution residual block
    rf += (2 - 1) * jump  # max-pool 2
    jump *= 2
    rf += 2 * (3 - 1) * jump  # half-resolution block
    rf += cfg.dilated_blocks * 2 * (3 - 1) * cfg.dilation * jump
    rf += (4 // 2 - 1) * jump  # transposed conv: two half-res cells per output voxel
    return rf
