"""The MTML model: backbone + embedding head + direction head, and its checkpoint format."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import nn

from mtml.errors import InputError
from mtml.io.atomic import atomic_path
from mtml.model.backbone import BackboneConfig, DilatedBackbone
from mtml.model.heads import PointwiseHead


@dataclass
class ModelConfig:
    """What a checkpoint needs to rebuild the network.

    num_classes: semantic classes of the one-hot input.
    class_ids: the semantic label id of each input channel, in channel order (empty: ids 0 .. num_classes-1).
    embedding_dim: size of the metric feature embedding (4 in the paper).
    """

    num_classes: int = 6
    embedding_dim: int = 4
    class_ids: list = field(default_factory=list)

    def channel_ids(self) -> list:
        """The label id of each input channel."""
        return list(self.class_ids) if self.class_ids else list(range(self.num_classes))
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

    @staticmethod
    def from_dict(d: dict) -> "ModelConfig":
        d = dict(d)
        bb = BackboneConfig(**d.pop("backbone", {}))
        return ModelConfig(backbone=bb, **d)


class MTMLNet(nn.Module):
    """Voxel input [B, C, X, Y, Z] -> dict of per-voxel outputs at the same resolution.

    ``embedding``: [B, embedding_dim, X, Y, Z] feature embedding (unnormalised, metric units of the loss).
    ``direction``: [B, 3, X, Y, Z] predicted direction to the object centre (unnormalised; normalise to use).
    X, Y, Z must be even (see ``mtml.data.dataset.pad_to_multiple``).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.class_ids and len(cfg.class_ids) != cfg.num_classes:
            raise ValueError(f"class_ids has {len(cfg.class_ids)} ids but num_classes is {cfg.num_classes}")
        self.cfg = cfg
        bb_cfg = BackboneConfig(**{**asdict(cfg.backbone), "in_channels": cfg.num_classes})
        self.cfg.backbone = bb_cfg
        self.backbone = DilatedBackbone(bb_cfg)
        self.embedding_head = PointwiseHead(bb_cfg.out_channels, cfg.embedding_dim)
        self.direction_head = PointwiseHead(bb_cfg.out_channels, 3)

    def forward(self, x: torch.Tensor) -> dict:
        feats = self.backbone(x)
        return {"embedding": self.embedding_head(feats), "direction": self.direction_head(feats)}


def save_checkpoint(path: str | os.PathLike, model: MTMLNet, extra: Optional[dict] = None) -> None:
    """Write the model (weights + config) and ``extra`` (optimizer state, epoch, metrics...) atomically."""
    state = {"format": "mtml-1", "model_config": asdict(model.cfg), "model_state": model.state_dict()}
    state.update(extra or {})
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> tuple[MTMLNet, dict]:
    """Read a checkpoint written by ``save_checkpoint``; returns (model in eval mode, the whole state dict)."""
    if not os.path.isfile(path):
        raise InputError(path, "no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # corrupt or not a torch file
        raise InputError(path, f"not a readable mtml checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format") != "mtml-1":
        raise InputError(path, "not an mtml checkpoint (missing format tag 'mtml-1')")
    model = MTMLNet(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model_state"])
    model.eval()
    return model, state


def inference_bytes_per_voxel(cfg: ModelConfig) -> int:
    """Rough peak memory of a forward pass per dense grid cell (bytes), for refusing grids that won't fit.

    Counts the float32 full-resolution maps alive at the peak (input, stem, residual block, upsampled,
    fused, head hidden layers) plus the half-resolution maps (1/8 of the cells each), with a 1.5x margin.
    """
    b = cfg.backbone
    full = cfg.num_classes + 4 * b.full_channels + 2 * b.full_channels + b.out_channels + 2 * 32 + cfg.embedding_dim + 3
    half = (2 + b.dilated_blocks) * b.half_channels * 2 / 8
    return int(1.5 * 4 * (full + half))
