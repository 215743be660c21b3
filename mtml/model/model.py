"""The MTML model: shared backbone + embedding, direction and (optional) semantic heads; its checkpoint format."""

from __future__ import annotations

import dataclasses
import os
import re
import reprlib
import typing
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Optional

import numpy as np
import torch
from torch import nn

from mtml.errors import InputError
from mtml.io.atomic import atomic_path
from mtml.model.backbone import BackboneConfig, DilatedBackbone
from mtml.model.heads import PointwiseHead, SemanticHead
from mtml.model.instance_classifier import InstanceClassifier
from mtml.model.proposal_scorer import ProposalScorer
from mtml.model.referring import ReferringConfig, ReferringHead

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
        """A ModelConfig from its ``asdict`` form (a checkpoint's ``model_config``). ValueError names the first
        unknown key, TypeError the first wrongly typed value, also inside ``backbone`` and ``referring``."""
        d = dict(checked_fields(ModelConfig, d, ""))
        bb = BackboneConfig(**checked_fields(BackboneConfig, d.pop("backbone", {}), "backbone."))
        checked_fields(ReferringConfig, d.get("referring", {}), "referring.")
        return ModelConfig(backbone=bb, **d)


def checked_fields(cls, values, prefix: str) -> dict:
    """``values`` when it is a dict whose keys are fields of dataclass ``cls`` and whose values have the fields'
    plain types (bool, int, float, str, list, dict; an int counts as a float, a bool as neither). ValueError
    naming an unknown key (after ``prefix``), TypeError naming a wrongly typed one. Fields of other types are not
    checked here."""
    if not isinstance(values, dict):
        raise TypeError(f"{prefix.rstrip('.') or 'it'} must be a mapping, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in values if key not in names]
    if unknown:
        raise ValueError(f"unknown key {', '.join(prefix + str(k) for k in unknown)} (known: {', '.join(names)})")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        hint = hints[key]
        if hint is bool:
            ok = isinstance(value, bool)
        elif hint is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif hint is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif hint in (str, list, dict):
            ok = isinstance(value, hint)
        else:
            ok = True
        if not ok:
            raise TypeError(f"{prefix}{key} must be {hint.__name__}, got {type(value).__name__} {reprlib.repr(value)}")
    return values


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
            self.instance_classifier = InstanceClassifier(cfg.num_classes)
        self.proposal_scorer = None
        if cfg.proposal_scorer:
            self.proposal_scorer = ProposalScorer(cfg.num_classes)
        self.referring_head = None
        if cfg.referring:
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


CHECKPOINT_FORMAT = "mtml-1"
PLAIN_SCALARS = (bool, int, float, str, bytes, type(None))
TORCH_PLAIN = (torch.Tensor, torch.Size, torch.dtype, torch.device)


def plain_data(value, where: str = "checkpoint"):
    """``value`` with numpy scalars and arrays turned into Python numbers and lists and paths into strings, so that
    ``torch.load(weights_only=True)`` reads it back: containers (dict, list, tuple) are rebuilt only where something
    inside them changed, tensors stay. TypeError naming ``where`` (the key path) for any other type."""
    if isinstance(value, TORCH_PLAIN) or type(value) in PLAIN_SCALARS:
        return value
    if isinstance(value, np.generic):  # before the float check: np.float64 is a float subclass
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, PurePath):
        return os.fspath(value)
    if type(value) in (dict, OrderedDict):  # a module's state_dict is an OrderedDict
        items = [(plain_data(k, where), plain_data(v, f"{where}[{k!r}]")) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items())):
            return value
        return type(value)(items)
    if type(value) in (list, tuple):
        items = [plain_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    raise TypeError(f"{where} is a {type(value).__name__}: a checkpoint holds only tensors and plain data "
                    "(torch.load(weights_only=True) refuses anything else)")


def save_checkpoint(path: str | os.PathLike, model: MTMLNet, extra: Optional[dict] = None) -> None:
    """Write the model (weights + config) and ``extra`` (optimizer state, epoch, metrics...) atomically. Everything
    is stored as tensors and plain data (``plain_data``), so ``load_checkpoint`` reads it without running code."""
    state = {"format": CHECKPOINT_FORMAT, "model_config": asdict(model.cfg), "model_state": model.state_dict()}
    state.update(extra or {})
    state = plain_data(state)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _one_line(err: Exception) -> str:
    """``Type: message`` of an exception on one line."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def read_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict:
    """The whole state dict of a checkpoint written by ``save_checkpoint``, read with
    ``torch.load(weights_only=True)``: only tensors and plain data are unpickled, so a file that would call any
    other code on loading is refused without running it. InputError naming the file (one line) for a missing or
    unreadable file, a refused pickle, and a file without the ``format: mtml-1`` tag."""
    if not os.path.isfile(path):
        raise InputError(path, "no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr; the error says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a refused pickle or a corrupt file
        refused = re.search(r"WeightsUnpickler error:\s*(?:Unsupported global: GLOBAL (\S+))?", str(err))
        if refused:
            call = f": it would call {refused.group(1)} on loading" if refused.group(1) else ""
            raise InputError(path, f"refused to load, not a plain mtml checkpoint{call} (only tensors and plain "
                                   "data are read)") from None
        raise InputError(path, f"not a readable mtml checkpoint ({_one_line(err)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, f"not an mtml checkpoint (missing format tag '{CHECKPOINT_FORMAT}')")
    return state


def state_mismatch(expected: Mapping, given: Mapping, shown: int = 3) -> str:
    """How a state dict ``given`` differs from the ``expected`` one (name -> tensor): the missing and unexpected
    names and the tensors of another shape (the first ``shown`` of each), or "" when they match."""
    def listed(names: list) -> str:
        more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
        return ", ".join(names[:shown]) + more

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    reshaped = [k for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]
    parts = []
    if missing:
        parts.append(f"missing {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {listed(unexpected)}")
    for k in reshaped[:shown]:
        parts.append(f"shape of {k} {'x'.join(map(str, given[k].shape))} in the file vs "
                     f"{'x'.join(map(str, expected[k].shape))} by model_config")
    if len(reshaped) > shown:
        parts.append(f"{len(reshaped) - shown} more of another shape")
    return "; ".join(parts)


def model_from_state(state: dict, path: str | os.PathLike) -> MTMLNet:
    """The network a checkpoint's state describes (``model_config``) with its weights (``model_state``), in eval
    mode. InputError naming the file (``path``) for a bad ``model_config`` (unknown keys, wrong types, settings the
    network refuses) or weights that do not fit it (missing, unexpected or other-shaped tensors)."""
    try:
        model = MTMLNet(ModelConfig.from_dict(state.get("model_config")))
    except (TypeError, ValueError) as err:
        raise InputError(path, f"bad model_config: {' '.join(str(err).split())}") from None
    weights = state.get("model_state")
    if not isinstance(weights, Mapping):
        raise InputError(path, "model_state is missing or not a mapping of tensors")
    not_tensors = [k for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise InputError(path, f"model_state: {', '.join(map(str, not_tensors[:3]))} not tensors")
    mismatch = state_mismatch(model.state_dict(), weights)
    if mismatch:
        raise InputError(path, f"model_state does not match model_config: {mismatch}")
    model.load_state_dict(weights)
    model.eval()
    return model


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> tuple[MTMLNet, dict]:
    """Read a checkpoint written by ``save_checkpoint`` safely (``read_checkpoint``); returns (model in eval mode,
    the whole state dict). InputError naming the file for anything but a plain mtml checkpoint whose weights fit
    its ``model_config`` (``model_from_state``)."""
    state = read_checkpoint(path, map_location)
    return model_from_state(state, path), state


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


MAX_MEMORY_GB = 1e6
"""The largest memory bound accepted (GiB), as ``mtml-infer --max-memory-gb`` has it."""


def max_voxels_for_memory(cfg: ModelConfig, memory_gb: float) -> int:
    """The most dense grid cells a forward pass of a ``cfg`` network may use within ``memory_gb`` GiB
    (``inference_bytes_per_voxel``). InputError for a bound that is not a number in (0, ``MAX_MEMORY_GB``] (nan,
    inf, 0, negatives, bools, strings)."""
    if isinstance(memory_gb, bool) or not isinstance(memory_gb, (int, float, np.integer, np.floating)) \
            or not 0 < memory_gb <= MAX_MEMORY_GB:  # nan fails both comparisons
        raise InputError(None, f"max_memory_gb must be a number in (0, {MAX_MEMORY_GB:g}] GiB, got {memory_gb!r}")
    return int(float(memory_gb) * 2**30 / inference_bytes_per_voxel(cfg))
