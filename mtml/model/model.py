"""The MTML model: shared backbone + embedding, direction and (optional) semantic heads; its checkpoint format."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import nn

from mtml.errors import InputError
from mtml.io.atomic import atomic_path
from mtml.model.backbone import BackboneConfig, DilatedBackbone
from mtml.model.heads import PointwiseHead, SemanticHead

INPUT_CHANNELS = {"occupancy": 1, "height": 1, "rgb": 3}
"""Channels of each geometry input feature; "semantic" adds one one-hot channel per class."""


@dataclass
class ModelConfig:
    """What a checkpoint needs to rebuild the network.

    num_classes: semantic classes (of the one-hot input and of the semantic head).
    class_ids: the semantic label id of each class channel, in channel order (empty: ids 0 .. num_classes-1).
    embedding_dim: size of the metric feature embedding (4 in the paper).
    inputs: the per-voxel input features, in channel order: "semantic" (one-hot labels, the MTML paper's
        input), "occupancy" (1 on occupied voxels), "height" (metres above the estimated floor), "rgb"
        (mean colour in [0, 1]; grey where the scan has none).
    semantic_head: add the language-grounded semantic head (predicts labels, so plain scans need none).
    semantic_dim: the semantic head's feature size; equals the text encoder's (384 for all-MiniLM-L6-v2).
    text_encoder: the encoder whose class-name features are the anchors (recorded; the anchors themselves
        are stored in the weights, so inference never loads the encoder), and whose word and sentence features
        the referring head reads.
    referring: settings of the LESS referring head (``mtml.model.referring.ReferringConfig`` fields); empty: no
        referring head. It reads the backbone features and the semantic head's class probabilities.
    instance_classifier: add the instance classifier (``mtml.model.instance_classifier``), which relabels the
        instances built on predicted labels from their mean class probabilities and their shape.
    proposal_scorer: add the learned proposal score (``mtml.model.proposal_scorer``), which replaces the hand-made
        score of the proposals built on predicted labels before NMS.
    """

    num_classes: int = 6
    embedding_dim: int = 4
    class_ids: list = field(default_factory=list)
    inputs: list = field(default_factory=lambda: ["semantic"])
    semantic_head: bool = False
    semantic_dim: int = 384
    text_encoder: str = "minilm"
    referring: dict = field(default_factory=dict)
    instance_classifier: bool = False
    proposal_scorer: bool = False
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

    def channel_ids(self) -> list:
        """The label id of each class channel."""
        return list(self.class_ids) if self.class_ids else list(range(self.num_classes))

    def in_channels(self) -> int:
        """Number of input channels the listed ``inputs`` make."""
        unknown = [f for f in self.inputs if f != "semantic" and f not in INPUT_CHANNELS]
        if unknown or not self.inputs:
            raise ValueError(f"unknown model inputs {unknown} (known: semantic, {', '.join(INPUT_CHANNELS)})")
        return sum(self.num_classes if f == "semantic" else INPUT_CHANNELS[f] for f in self.inputs)

    @property
    def needs_labels(self) -> bool:
        """True when the network reads semantic labels (one-hot input)."""
        return "semantic" in self.inputs

    @staticmethod
    def from_dict(d: dict) -> "ModelConfig":
        d = dict(d)
        bb = BackboneConfig(**d.pop("backbone", {}))
        return ModelConfig(backbone=bb, **d)


class MTMLNet(nn.Module):
    """Voxel input [B, C, X, Y, Z] -> dict of per-voxel outputs at the same resolution.

    ``embedding``: [B, embedding_dim, X, Y, Z] feature embedding (unnormalised, metric units of the loss).
    ``direction``: [B, 3, X, Y, Z] predicted direction to the object centre (unnormalised; normalise to use).
    ``semantic``:  [B, semantic_dim, X, Y, Z] language-grounded feature (with ``semantic_head``); class logits
                   of selected voxels come from ``model.semantic_head.logits(features [M, D])``.
    X, Y, Z must be even (see ``mtml.data.dataset.padded_shape``).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.class_ids and len(cfg.class_ids) != cfg.num_classes:
            raise ValueError(f"class_ids has {len(cfg.class_ids)} ids but num_classes is {cfg.num_classes}")
        self.cfg = cfg
        bb_cfg = BackboneConfig(**{**asdict(cfg.backbone), "in_channels": cfg.in_channels()})
        self.cfg.backbone = bb_cfg
        self.backbone = DilatedBackbone(bb_cfg)
        self.embedding_head = PointwiseHead(bb_cfg.out_channels, cfg.embedding_dim)
        self.direction_head = PointwiseHead(bb_cfg.out_channels, 3)
        self.semantic_head = SemanticHead(bb_cfg.out_channels, cfg.num_classes, cfg.semantic_dim) if cfg.semantic_head else None
        self.instance_classifier = None
        if cfg.instance_classifier:
            from mtml.model.instance_classifier import InstanceClassifier

            self.instance_classifier = InstanceClassifier(cfg.num_classes)
        self.proposal_scorer = None
        if cfg.proposal_scorer:
            from mtml.model.proposal_scorer import ProposalScorer

            self.proposal_scorer = ProposalScorer(cfg.num_classes)
        self.referring_head = None
        if cfg.referring:
            from mtml.model.referring import ReferringConfig, ReferringHead

            extra = cfg.num_classes if cfg.semantic_head else 0
            self.referring_head = ReferringHead(bb_cfg.out_channels + extra, ReferringConfig(**cfg.referring))

    def forward(self, x: torch.Tensor, coords: Optional[torch.Tensor] = None) -> dict:
        """Dense outputs [B, D, X, Y, Z] for input x [B, C, X, Y, Z]; with ``coords`` int64 [V, 3] (B = 1) the
        heads run only at those voxels and each output is [V, D] (rows in the order of coords), which is
        several times cheaper on sparse scans; then ``backbone`` [V, C] holds the shared features as well."""
        feats = self.backbone(x, coords)  # [B, C, X, Y, Z], or [V, C] at coords
        out = {"embedding": self.embedding_head(feats), "direction": self.direction_head(feats)}
        if self.semantic_head is not None:
            out["semantic"] = self.semantic_head(feats)
        if coords is not None:
            out["backbone"] = feats
        return out

    def referring_features(self, outputs: dict) -> torch.Tensor:
        """The referring head's per-voxel input [V, C_in] from ``forward(x, coords)`` outputs: the backbone
        features and, with a semantic head, its class probabilities."""
        parts = [outputs["backbone"]]
        if self.semantic_head is not None:
            parts.append(self.semantic_head.logits(outputs["semantic"]).softmax(dim=1))
        return torch.cat(parts, dim=1)


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
    full = cfg.in_channels() + 4 * b.full_channels + 2 * b.full_channels + b.out_channels + 2 * 32 + cfg.embedding_dim + 3
    if cfg.semantic_head:
        full += 2 * 64 + cfg.semantic_dim
    half = (2 + b.dilated_blocks) * b.half_channels * 2 / 8
    return int(1.5 * 4 * (full + half))
