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
    """Where scenes come from.

    kind "toy":   the synthetic benchmark, scenes generated from seeds; ``toy`` overrides fields of
                  ``mtml.data.toy.ToySceneConfig``; val_scenes come from seeds after the benchmark's 1000.
    kind "store": voxel grids in an HDF5 store written by ``mtml-prep`` (``store``; validation on
                  ``val_store``, or on the last ``val_scenes`` scenes of ``store`` when it is empty).
    kind "longtail": the long-tail synthetic benchmark (``mtml.data.longtail``); ``longtail`` overrides fields
                  of its LongtailSceneConfig.
    rare_instances: tail-class instances inserted into each training scene (rare-class instance sampling).
    semantic_ignore: labels the semantic loss and metrics skip (ScanNet's 0, "unlabeled").
    referring_per_scene: descriptions drawn per scene for the referring benchmark (``train.task: refer``).
    referring_redraw: draw a training scene's descriptions afresh every epoch after the first (other facts and
                  phrasings of the same scene), instead of the same ``referring_per_scene`` ones every epoch.
    referring_word_dropout: share of the words of each training description left out at each step, so that the
                  head learns from what is left and does not hang on one word ("cube" without "small").
    referring_extra_scenes: toy scenes added to the referring head's training set, from seeds that no split and
                  no other part of the model uses (``mtml.data.referring.extra_training_records``); the frozen
                  model segments them as it segments unseen scans, not as the scenes it was trained on.
    benchmark:    the class set validation reports (toy, scannet20, scannet200).
    val_min_region_size: smallest ground-truth instance that counts in validation (points, or voxels for stores).
    """

    kind: str = "toy"
    voxel_size: float = 0.1
    train_scenes: int = 900
    val_scenes: int = 50
    toy: dict = field(default_factory=dict)
    longtail: dict = field(default_factory=dict)
    rare_instances: int = 0
    referring_per_scene: int = 8
    referring_redraw: bool = False
    referring_word_dropout: float = 0.0
    referring_extra_scenes: int = 0
    semantic_ignore: list = field(default_factory=list)
    stuff_classes: list = field(default_factory=lambda: [0])
    store: str = ""
    val_store: str = ""
    benchmark: str = "toy"
    val_min_region_size: int = 100


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
    # train.task classify_instances / score_proposals: examples (instances, proposals) per step, drawn from all
    # training scenes and reshuffled each epoch; 0: one scene's examples per step
    head_batch: int = 0
    # exponential moving average of the trained weights (mtml.train.weight_average): 0 off; else the decay per step
    # (0.999 remembers about 1000 steps). Validation, best.pt and last.pt then use the average
    ema_decay: float = 0.0
    select_by: str = "ap50"  # validation score that picks best.pt: "ap50", "miou" or "both" (their mean)
    classifier_init: str = "anchors"  # semantic head prototypes: "anchors" (text features) or "random" (scratch)
    # "segment" (mtml.train.segment.train), "refer" (the referring head, mtml.train.referring), "classify_instances"
    # (the instance classifier) or "score_proposals" (the proposal scorer; both mtml.train.instances)
    task: str = "segment"


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
    """Build an ExperimentConfig from a (YAML-loaded) dict; ``where`` names the source in errors.

    ``model.class_ids`` may name a benchmark ("scannet20", "scannet200", "toy"): every label id of that benchmark,
    0 ("unlabeled") first, and ``model.num_classes`` follows.
    """
    cfg = _build(ExperimentConfig, values, where)
    if isinstance(cfg.model.class_ids, str):
        from mtml.labels import label_names

        cfg.model.class_ids = sorted(label_names(cfg.model.class_ids), key=lambda i: (i != 0, i))
        cfg.model.num_classes = len(cfg.model.class_ids)
    return cfg


def apply_overrides(values: dict, overrides: list[str], where: str = "--set") -> dict:
    """Apply ``key.sub=value`` overrides (value parsed as YAML) to a config dict; returns the dict."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(where, f"expected key=value, got {item!r}")
        node = values
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(where, f"{key}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(text)
    return values


def _deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override``'s values put in, recursing into sections that both have."""
    out = dict(base)
    for key, val in override.items():
        out[key] = _deep_merge(out[key], val) if isinstance(val, dict) and isinstance(out.get(key), dict) else val
    return out


def _read_yaml(path: str | os.PathLike, seen: tuple = ()) -> dict:
    """A config file as a dict; a top-level ``inherit: other.yaml`` (relative to the file) is read first and this
    file's settings override its settings, section by section."""
    if not os.path.isfile(path):
        raise InputError(path, "no such config file")
    if os.path.realpath(path) in seen:
        raise InputError(path, "inherits from itself")
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid YAML ({err})") from None
    if not isinstance(values, dict):
        raise InputError(path, "expected a mapping of settings")
    parent = values.pop("inherit", None)
    if parent is None:
        return values
    base = _read_yaml(os.path.join(os.path.dirname(os.fspath(path)), parent), seen + (os.path.realpath(path),))
    return _deep_merge(base, values)


def load_config(path: str | os.PathLike, overrides: Optional[list] = None) -> ExperimentConfig:
    """Read a YAML experiment config (with ``inherit``, see ``_read_yaml``; then ``overrides``, see
    ``apply_overrides``); InputError names the file on a missing file or a bad setting."""
    values = _read_yaml(path)
    return config_from_dict(apply_overrides(values, list(overrides or [])), os.fspath(path))
