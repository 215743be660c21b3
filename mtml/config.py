"""Experiment configuration: one YAML file -> typed dataclasses (data, model, loss, train, cluster)."""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from mtml.cluster.pipeline import ClusterConfig
from mtml.errors import InputError
from mtml.losses.mtml import LossConfig
from mtml.model.model import ModelConfig


@dataclass
class DataConfig:
    """Where scenes come from. kind "toy": the synthetic benchmark, scenes generated from seeds.

    toy: overrides of ``mtml.data.toy.ToySceneConfig`` fields. val_scenes come from seeds after the
    benchmark's 1000 (never from the train or test split).
    """

    kind: str = "toy"
    voxel_size: float = 0.1
    train_scenes: int = 900
    val_scenes: int = 50
    toy: dict = field(default_factory=dict)
    stuff_classes: list = field(default_factory=lambda: [0])


@dataclass
class TrainConfig:
    epochs: int = 12
    lr: float = 5e-4
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"  # or "constant"
    val_every: int = 2
    seed: int = 0
    num_threads: int = 0  # 0: torch's default
    max_steps_per_epoch: Optional[int] = None  # cap, for smoke tests
    log_every: int = 50


@dataclass
class ExperimentConfig:
    name: str = "toy"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, values: Any, where: str):
    """Instantiate dataclass ``cls`` from a dict, recursing into dataclass fields; unknown keys are errors."""
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise InputError(where, f"expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, val in values.items():
        if key not in fields:
            raise InputError(where, f"unknown setting {key!r} (known: {', '.join(fields)})")
        hint = hints[key]
        sub = hint if dataclasses.is_dataclass(hint) else None
        kwargs[key] = _build(sub, val, f"{where}:{key}") if sub is not None else val
    return cls(**kwargs)


def config_from_dict(values: dict, where: str = "config") -> ExperimentConfig:
    """Build an ExperimentConfig from a (YAML-loaded) dict; ``where`` names the source in errors."""
    return _build(ExperimentConfig, values, where)


def load_config(path: str | os.PathLike) -> ExperimentConfig:
    """Read a YAML experiment config; InputError names the file on a missing file or a bad setting."""
    if not os.path.isfile(path):
        raise InputError(path, "no such config file")
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid YAML ({err})") from None
    return config_from_dict(values, os.fspath(path))
