"""Experiment configuration: one YAML file -> typed dataclasses (data, model, loss, train, cluster)."""

from __future__ import annotations

import collections.abc
import dataclasses
import numbers
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from mtml.cluster.pipeline import ClusterConfig
from mtml.data.augment import AugmentConfig
from mtml.data.registry import label_names
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
    kind "scans": real scans in ``scans_root`` (any format ``mtml.io.formats`` reads: VoteNet ``_vert.npy``,
                  Pointcept folders, ScanNet scan folders, PLY), labels in ``benchmark``'s ids; validation on the
                  scans of space ``holdout_space`` (``sceneSSSS``; empty: the last space), training on the other
                  spaces' scans (``mtml.data.registry.loso_folds``).
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
    augment:      the training augmentation, a mapping of ``mtml.data.augment.AugmentConfig`` fields (defaults: the
                  generated benchmarks' k*90 degree rotation, x mirror and sub-voxel shift).
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
    scans_root: str = ""
    holdout_space: str = ""
    benchmark: str = "toy"
    val_min_region_size: int = 100
    augment: AugmentConfig = field(default_factory=AugmentConfig)


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


def _expected(hint) -> str:
    """What a value of type ``hint`` is, in words, for error messages ("an integer", "a list of numbers")."""
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if hint in words:
        return words[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    container = origin or hint
    if container in (list, tuple, collections.abc.Sequence):
        plurals = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        return "a list" + (f" of {plurals[args[0]]}" if args and args[0] in plurals else "")
    if container in (dict, collections.abc.Mapping):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _fits(value: Any, hint) -> bool:
    """Whether a config value (as YAML or a checkpoint gives it) has the type a dataclass field declares: ints for
    int fields (not bools), ints or floats for float fields, bools for bool fields, None for Optional, lists (or
    tuples) for sequences and dicts for mappings, with their items checked when the hint names their type."""
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    container = origin or hint
    if container in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
        return not args or all(_fits(v, args[0]) for v in value)
    if container in (dict, collections.abc.Mapping):
        return isinstance(value, dict) and (not args or all(_fits(k, args[0]) and _fits(v, args[1])
                                                            for k, v in value.items()))
    return isinstance(value, container) if isinstance(container, type) else True


def _build(cls, values: Any, where: str):
    """Instantiate dataclass ``cls`` from a dict, recursing into dataclass fields. Unknown keys and values whose
    type does not match their field's (``_fits``) are InputErrors naming the setting and the value."""
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
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, val, f"{where}:{key}")
            continue
        if not _fits(val, hint):
            # YAML 1.1 (PyYAML) reads 1e-3 (no dot in the mantissa) as a string
            quirk = (" (YAML reads exponents without a dot as text: write 0.001 or 1.0e-3)"
                     if isinstance(val, str) and _fits(1.0, hint) and _is_number(val) else "")
            raise InputError(where, f"setting {key!r} = {val!r} is not {_expected(hint)}{quirk}")
        kwargs[key] = val
    return cls(**kwargs)


def _is_number(text: str) -> bool:
    """Whether ``text`` reads as a float ("1e-3", "2.5")."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def config_from_dict(values: dict, where: str = "config") -> ExperimentConfig:
    """Build an ExperimentConfig from a (YAML-loaded) dict; ``where`` names the source in errors.

    ``model.class_ids`` may name a benchmark ("scannet20", "scannet200", "toy"): every label id of that benchmark,
    0 ("unlabeled") first, and ``model.num_classes`` follows.
    """
    model = values.get("model") if isinstance(values, dict) else None
    if isinstance(model, dict) and isinstance(model.get("class_ids"), str):  # resolved before the type check
        class_ids = sorted(label_names(model["class_ids"]), key=lambda i: (i != 0, i))
        values = {**values, "model": {**model, "class_ids": class_ids, "num_classes": len(class_ids)}}
    return _build(ExperimentConfig, values, where)


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
    """A config file as a dict, composed: the files listed under a top-level ``_base_`` (paths relative to the
    file, each composed the same way) are merged in their order, then the file's own settings go on top, section
    by section (``_deep_merge``). ``seen``: the real paths of the files that compose this one (cycle check)."""
    if not os.path.isfile(path):
        raise InputError(path, "no such config file")
    real_path = os.path.realpath(path)
    if real_path in seen:
        raise InputError(path, "composes itself (a cycle of _base_ files)")
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid YAML ({err})") from None
    if not isinstance(values, dict):
        raise InputError(path, "expected a mapping of settings")
    if "inherit" in values:
        raise InputError(path, "'inherit' is no longer read: list the files this config composes as "
                               "'_base_: [file.yaml, ...]' (paths relative to this file)")
    bases = values.pop("_base_", None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise InputError(path, "_base_ must be a list of config files")
    composed: dict = {}
    for base in bases:
        base_path = os.path.join(os.path.dirname(os.fspath(path)), base)
        if not os.path.isfile(base_path):
            raise InputError(path, f"_base_ file {base!r} not found ({base_path})")
        composed = _deep_merge(composed, _read_yaml(base_path, seen + (real_path,)))
    return _deep_merge(composed, values)


def packaged_configs_dir() -> str:
    """The folder of the configs shipped with mtml: ``mtml/configs`` in an installed package (setup.py installs
    the checkout's top-level ``configs/`` there), else the checkout's ``configs/`` beside the ``mtml`` folder."""
    package = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(package, "configs")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package), "configs")


def find_config(path: str | os.PathLike, folder: Optional[str | os.PathLike] = None) -> str:
    """The config file ``path`` names. With ``folder``: ``folder/path``. Without: that file when it exists, else a
    name relative to the packaged configs folder (``toy/toy.yaml``, see ``packaged_configs_dir``). InputError when
    there is no such file."""
    if folder is not None:
        path = os.path.join(folder, path)
    if os.path.isfile(path):
        return os.fspath(path)
    packaged = os.path.join(packaged_configs_dir(), path)
    if folder is None and not os.path.isabs(path) and os.path.isfile(packaged):
        return packaged
    where = f"in {folder}" if folder is not None else f"here or among the packaged configs ({packaged_configs_dir()})"
    raise InputError(path, f"no such config file {where}")


def load_config(path: str | os.PathLike, overrides: Optional[list] = None) -> ExperimentConfig:
    """Read a YAML experiment config: a file, or a name relative to the packaged configs (``find_config``),
    composed from its ``_base_`` files (``_read_yaml``), then ``overrides`` (``apply_overrides``); InputError
    names the file on a missing file or a bad setting."""
    path = find_config(path)
    values = _read_yaml(path)
    return config_from_dict(apply_overrides(values, list(overrides or [])), path)
