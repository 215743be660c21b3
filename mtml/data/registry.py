"""The dataset registry: every dataset by name, with its classes, its seed ranges and its training data.

One ``Dataset`` entry per name:

* "toy" (``mtml.data.toy``) and "longtail" (``mtml.data.longtail``): generated benchmarks, a scene per seed. They
  have class names, a class set, split seeds, a scene maker and training data.
* "scannet20", "scannet200": class-set entries (ids and names from ``mtml.labels``' ScanNet functions).
* "store": training data from HDF5 voxel stores written by ``mtml-prep`` (``data.store``, ``data.val_store``).
* "scans": training data from a folder of real scans in any format ``mtml.io.formats`` reads (``data.scans_root``),
  e.g. ``scannet_mini``'s VoteNet scans: validation on one held-out space (``data.holdout_space``), never trained on.
  ``scannet_scans(root)`` lists such a folder, ``scan_space(name)`` is a scan's space (``sceneSSSS`` of
  ``sceneSSSS_RR``: the rescans of one room) and ``loso_folds(names)`` the leave-one-space-out folds.

Every seed range of the generated benchmarks lives here (``TOY_SPLIT_SEEDS``, ``LONGTAIL_SPLIT_SEEDS``); no two
ranges of a dataset share a seed:

* toy: "train" 0..899 and "test" 900..999 (the benchmark's 1000 scenes, ``toy_scene_seeds``), "val" 100000..100099,
  "harder" 200000.. (the generalisation check of ``mtml.tables.toy_table1``, drawn with a harder scene config),
  "referring_extra" 300000.. (extra training scenes of the referring head, ``mtml.data.referring``);
* longtail: "train" 0..599, "val" 600..699, "test" 700..799.

Lookups: ``dataset(name)``, ``class_set(name)``, ``label_names(name)``, ``split_seeds(name, split)``,
``training_sets(cfg)``; an unknown name is an InputError that lists the names known for that lookup.
The ``cfg`` of ``training_sets`` is an ``mtml.config.ExperimentConfig``, read by attribute only (the data layer
does not import the config).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, Optional

from mtml.data.longtail import (
    LONGTAIL_CLASS_NAMES,
    LONGTAIL_OBJECT_CLASS_IDS,
    LongtailSceneConfig,
    class_frequency_splits,
    generate_longtail_scene,
    longtail_point_counts,
    longtail_scene_name,
)
from mtml.data.toy import TOY_CLASS_NAMES, TOY_INSTANCE_CLASS_IDS, ToySceneConfig, generate_scene, toy_scene_name
from mtml.errors import InputError
from mtml.io.formats import find_scenes, read_any_scene
from mtml.labels import (
    ClassSet,
    scannet20_instance_classes,
    scannet200_instance_classes,
    scannet_label_names,
)
from mtml.scene import Scene

# ------------------------------------------------------------------------------------------------ seeds

TOY_NUM_SCENES = 1000
"""Scenes of the toy benchmark (seeds 0..999)."""
TOY_TRAIN_FRACTION = 0.9
"""Share of the toy benchmark's scenes that are training scenes (the first 900); the rest are test scenes."""
RESERVED_BLOCK = 100_000
"""Seeds in each open-ended toy block ("harder", "referring_extra"): far more than any use draws."""


def _toy_benchmark_splits(num_scenes: int = TOY_NUM_SCENES, base_seed: int = 0) -> dict[str, range]:
    """"train" (the first ``TOY_TRAIN_FRACTION``, rounded) and "test" (the rest) of the toy scenes
    ``base_seed .. base_seed + num_scenes - 1``."""
    n_train = int(round(num_scenes * TOY_TRAIN_FRACTION))
    return {"train": range(base_seed, base_seed + n_train),
            "test": range(base_seed + n_train, base_seed + num_scenes)}


def toy_scene_seeds(split: str = "all", num_scenes: int = TOY_NUM_SCENES, base_seed: int = 0) -> list:
    """Seeds of a split of a block of toy scenes, seeds ``base_seed .. base_seed + num_scenes - 1``.

    split: "train" (first 90%, 900 of 1000), "test" (last 10%, 100 of 1000) or "all". The defaults are the toy
    benchmark itself (``TOY_SPLIT_SEEDS["train"]`` / ``["test"]``). Returns list[int]; InputError for another split.
    """
    blocks = {**_toy_benchmark_splits(num_scenes, base_seed), "all": range(base_seed, base_seed + num_scenes)}
    if split not in blocks:
        raise InputError(None, f"unknown toy split {split!r} (expected one of {', '.join(blocks)})")
    return list(blocks[split])


TOY_SPLIT_SEEDS: Mapping[str, range] = MappingProxyType({
    **_toy_benchmark_splits(),
    "val": range(100_000, 100_100),
    "harder": range(200_000, 200_000 + RESERVED_BLOCK),
    "referring_extra": range(300_000, 300_000 + RESERVED_BLOCK),
})
"""Toy seed ranges: the benchmark's "train" 0..899 and "test" 900..999, "val" 100000..100099, "harder" 200000..
(``mtml.tables.toy_table1``) and "referring_extra" 300000.. (``mtml.data.referring.extra_training_records``)."""

LONGTAIL_SPLIT_SEEDS: Mapping[str, range] = MappingProxyType({
    "train": range(0, 600), "val": range(600, 700), "test": range(700, 800)})
"""Long-tail seed ranges: "train" 0..599, "val" 600..699, "test" 700..799."""


def longtail_scene_seeds(split: str) -> list:
    """Seeds of a long-tail split: "train" 0..599, "val" 600..699, "test" 700..799 (``LONGTAIL_SPLIT_SEEDS``, as
    ``split_seeds("longtail", split)``). Returns list[int]; InputError for another split name."""
    return list(split_seeds("longtail", split))


LONGTAIL_SPLIT_SCENES = 200
"""Training scenes the long-tail head / common / tail split is measured on by default."""


@functools.lru_cache(maxsize=4)
def longtail_train_point_counts(num_scenes: int = LONGTAIL_SPLIT_SCENES) -> dict:
    """``longtail_point_counts`` over the first ``num_scenes`` long-tail training scenes (default config), cached:
    dict[int, int] object class id -> points. InputError unless 1 <= num_scenes <= 600."""
    train = LONGTAIL_SPLIT_SEEDS["train"]
    if not 0 < num_scenes <= len(train):
        raise InputError(None, f"num_scenes must be in 1..{len(train)}, got {num_scenes}")
    return longtail_point_counts(train[:num_scenes])


@functools.lru_cache(maxsize=4)
def longtail_class_splits(num_scenes: int = LONGTAIL_SPLIT_SCENES) -> dict:
    """Head / common / tail of the long-tail object classes measured over the first ``num_scenes`` training scenes
    (default config): dict[int, str] (``class_frequency_splits`` of ``longtail_train_point_counts``). Floor and wall
    are not included (they would always be head). Cached per ``num_scenes``."""
    return class_frequency_splits(longtail_train_point_counts(num_scenes))


# ------------------------------------------------------------------------------------------ class sets


def _toy_instance_classes() -> ClassSet:
    """The five box classes of the toy benchmark, ids 1..5."""
    return ClassSet("toy", tuple(TOY_INSTANCE_CLASS_IDS), tuple(TOY_CLASS_NAMES[i] for i in TOY_INSTANCE_CLASS_IDS))


def _longtail_instance_classes() -> ClassSet:
    """The 44 object classes of the long-tail benchmark, ids 2..45 (no floor, wall); groups ``head`` / ``common`` /
    ``tail`` as measured by ``longtail_class_splits`` (cached)."""
    split = longtail_class_splits()
    groups = {g: tuple(i for i in LONGTAIL_OBJECT_CLASS_IDS if split[i] == g) for g in ("head", "common", "tail")}
    names = tuple(LONGTAIL_CLASS_NAMES[i] for i in LONGTAIL_OBJECT_CLASS_IDS)
    return ClassSet("longtail", LONGTAIL_OBJECT_CLASS_IDS, names, groups)


# --------------------------------------------------------------------------------------- scene makers


def _make_toy_scene(seed: int, config: Optional[ToySceneConfig] = None) -> Scene:
    """The toy scene of ``seed`` (``mtml.data.toy.generate_scene``; config None: the default ToySceneConfig)."""
    return generate_scene(seed, ToySceneConfig() if config is None else config)


def _make_longtail_scene(seed: int, config: Optional[LongtailSceneConfig] = None) -> Scene:
    """The long-tail scene of ``seed`` (``generate_longtail_scene``; config None: the default config)."""
    return generate_longtail_scene(seed, LongtailSceneConfig() if config is None else config)


# --------------------------------------------------------------------------------------- training data


def _sample_set(cfg, keys, make_scene, scene_transform=None):
    """The augmented training ``SceneSampleSet`` over ``keys`` (scenes from ``make_scene(key)``) for the
    experiment ``cfg``, augmented by ``cfg.data.augment`` (an ``mtml.data.augment.AugmentConfig``; absent: its
    defaults)."""
    # imported here, not at the top: torch loads only when training data are built, so that class-set and
    # seed lookups (e.g. ``mtml-eval``) stay light
    from mtml.data.dataset import SceneSampleSet

    return SceneSampleSet(keys, make_scene, cfg.model, cfg.data.stuff_classes, cfg.data.voxel_size,
                          augment_seed=cfg.train.seed, scene_transform=scene_transform,
                          ignore_labels=cfg.data.semantic_ignore, augment=getattr(cfg.data, "augment", None))


def _generated_training_sets(name: str, cfg) -> tuple:
    """(train set with augmentation, validation scenes: a list of zero-argument Scene makers) of the generated
    dataset ``name``: its first ``cfg.data.train_scenes`` "train" seeds and first ``cfg.data.val_scenes`` "val" seeds,
    drawn with its scene config overridden by ``cfg.data.<name>`` (a dict of config fields)."""
    entry = dataset(name)
    make = partial(entry.make_scene, config=entry.scene_config(**getattr(cfg.data, name)))
    train = _sample_set(cfg, list(entry.split_seeds["train"][: cfg.data.train_scenes]), make)
    return train, [partial(make, s) for s in entry.split_seeds["val"][: cfg.data.val_scenes]]


def _store_training_sets(cfg) -> tuple:
    """(train set, validation scene makers) from HDF5 stores written by mtml-prep: each stored grid becomes a
    point cloud of voxel centres that is augmented and re-voxelised like any scan. Validation on the first
    ``data.val_scenes`` of ``data.val_store``, or else on the last ``data.val_scenes`` of ``data.store`` (at least one
    scene is left to train on); InputError when no scene is left to train on."""
    # imported here for the reason given in ``_sample_set`` (h5py, torch)
    from mtml.data.voxelize import grid_to_scene
    from mtml.io.store import VoxelStore

    train_store = VoxelStore(cfg.data.store)
    names = train_store.names()
    if cfg.data.val_store:
        val_store = VoxelStore(cfg.data.val_store)
        val_names = val_store.names()[: cfg.data.val_scenes]
    else:
        val_store, val_names = train_store, names[len(names) - min(cfg.data.val_scenes, len(names) - 1):]
        names = [n for n in names if n not in set(val_names)]
    if not names:
        raise InputError(cfg.data.store, "no scenes to train on")
    names = names[: cfg.data.train_scenes]

    def make(store, name):
        return grid_to_scene(store.get(name), name, f"{store.path}:{name}")

    train = _sample_set(cfg, names, partial(make, train_store))
    return train, [partial(make, val_store, n) for n in val_names]


_SCANNET_SCAN = re.compile(r"^(scene\d{4})_\d{2}$")


def scan_space(name: str) -> str:
    """The space (room) a scan belongs to: ``sceneSSSS`` for a ScanNet scan ``sceneSSSS_RR`` (its rescans share it);
    any other name is a space of its own."""
    m = _SCANNET_SCAN.match(name)
    return m.group(1) if m else name


def scannet_scans(root) -> list:
    """The names of the scans in folder ``root`` (any format of ``mtml.io.formats.find_scenes``; e.g. the VoteNet
    scans of ``scannet_mini/scans``), sorted. InputError naming ``root`` when it is missing or holds no scan."""
    return list(find_scenes(root))


def loso_folds(names: Sequence[str]) -> list:
    """Leave-one-space-out folds over scan ``names``: one fold per space (``scan_space``), in sorted order, as
    (held-out space, train names, validation names); validation holds every scan of the held-out space and training
    every other scan, so no scan of a validation space is ever trained on. Names keep their given order within a
    fold. InputError when the names span fewer than two spaces (no fold would have training data)."""
    spaces = sorted({scan_space(n) for n in names})
    if len(spaces) < 2:
        raise InputError(None, f"leave-one-space-out needs scans of at least two spaces, got {spaces}")
    return [(space, [n for n in names if scan_space(n) != space], [n for n in names if scan_space(n) == space])
            for space in spaces]


def _scans_training_sets(cfg) -> tuple:
    """(train set, validation scene makers) from the scans in ``data.scans_root`` (``find_scenes``), read with labels
    in ``data.benchmark``'s ids: validation on the first ``data.val_scenes`` scans of space ``data.holdout_space``
    (default: the last space, sorted), training on the first ``data.train_scenes`` scans of the other spaces
    (``loso_folds``). InputError when the root is unset or has no such space."""
    if not cfg.data.scans_root:
        raise InputError(None, "data.kind 'scans' needs data.scans_root (a folder of scans)")
    paths = find_scenes(cfg.data.scans_root)
    folds = {space: (train, val) for space, train, val in loso_folds(list(paths))}
    held_out = cfg.data.holdout_space or list(folds)[-1]
    if held_out not in folds:
        raise InputError(cfg.data.scans_root, f"data.holdout_space {held_out!r} is not a space of these scans "
                                              f"(spaces: {', '.join(folds)})")
    train_names, val_names = folds[held_out]

    def make(name):
        return read_any_scene(paths[name], benchmark=cfg.data.benchmark)

    train = _sample_set(cfg, train_names[: cfg.data.train_scenes], make)
    return train, [partial(make, n) for n in val_names[: cfg.data.val_scenes]]


# -------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Dataset:
    """One registered dataset. Every field but ``name`` is optional (None / empty where the dataset lacks it).

    name:             the registry key ("toy", "scannet200", ...).
    class_names:      () -> dict[int, str]: every semantic label id -> its name, 0 and stuff classes included.
    instance_classes: () -> ClassSet: the classes its instance evaluation scores.
    split_seeds:      split name -> range of scene seeds, step 1 (generated datasets); no two ranges overlap
                      (ValueError).
    make_scene:       (seed, config=None) -> Scene (generated datasets; config None: ``scene_config()``).
    scene_config:     the dataclass of ``make_scene``'s config (ToySceneConfig, ...); ``cfg.data.<name>`` overrides
                      its fields in training.
    scene_name:       seed -> the name of that seed's Scene (``"<name>_<seed, 5 digits>"``).
    training_sets:    (cfg) -> (augmented train SceneSampleSet, list of zero-argument validation Scene makers);
                      the datasets that have it are the ``data.kind`` values training accepts.
    """

    name: str
    class_names: Optional[Callable[[], dict[int, str]]] = None
    instance_classes: Optional[Callable[[], ClassSet]] = None
    split_seeds: Mapping[str, range] = field(default_factory=dict)
    make_scene: Optional[Callable[..., Scene]] = None
    scene_config: Optional[type] = None
    scene_name: Optional[Callable[[int], str]] = None
    training_sets: Optional[Callable[[Any], tuple]] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "split_seeds", MappingProxyType(dict(self.split_seeds)))
        ranges = sorted((r.start, r.stop, split) for split, r in self.split_seeds.items() if len(r))
        for (_, stop, split), (start, _, next_split) in zip(ranges, ranges[1:]):
            if start < stop:
                raise ValueError(f"dataset {self.name!r}: seed ranges {split!r} and {next_split!r} overlap")


_REGISTRY: dict[str, Dataset] = {}


def register_dataset(entry: Dataset) -> None:
    """Make ``dataset(entry.name)`` return ``entry`` (replacing an entry of that name)."""
    _REGISTRY[entry.name] = entry


def register_class_set(name: str, factory: Callable[[], ClassSet]) -> None:
    """Make ``class_set(name)`` return ``factory()`` (a zero-argument ClassSet builder): a new class-set entry, or
    the class set of the registered dataset ``name``."""
    register_dataset(dataclasses.replace(_REGISTRY.get(name, Dataset(name)), instance_classes=factory))


def _lookup(name: str, what: str, attribute: str) -> Dataset:
    """The entry ``name`` when it has ``attribute`` (a Dataset field); otherwise InputError "unknown <what> <name>
    (known: <every name that has it>)"."""
    entry = _REGISTRY.get(name)
    if entry is None or not getattr(entry, attribute):
        known = ", ".join(n for n, e in _REGISTRY.items() if getattr(e, attribute))
        raise InputError(None, f"unknown {what} {name!r} (known: {known})")
    return entry


def dataset(name: str) -> Dataset:
    """The registered Dataset ``name``; InputError listing the known names if there is none."""
    return _lookup(name, "dataset", "name")


def class_set_names() -> Sequence[str]:
    """The names ``class_set`` accepts, in registration order."""
    return tuple(n for n, e in _REGISTRY.items() if e.instance_classes)


def class_set(name: str) -> ClassSet:
    """The instance class set of dataset ``name`` ("toy", "longtail", "scannet20", "scannet200"); InputError
    listing the known class sets if it has none."""
    return _lookup(name, "class set", "instance_classes").instance_classes()


def label_names(name: str) -> dict[int, str]:
    """Every semantic label id of dataset ``name`` -> its name, stuff classes and 0 included (a fresh dict);
    InputError listing the datasets with class names if it has none."""
    return dict(_lookup(name, "benchmark", "class_names").class_names())


def split_seeds(name: str, split: str) -> range:
    """The scene seeds of ``split`` of the generated dataset ``name`` (see ``TOY_SPLIT_SEEDS``,
    ``LONGTAIL_SPLIT_SEEDS``); InputError naming the known datasets or splits."""
    seeds = _lookup(name, "generated dataset", "split_seeds").split_seeds
    if split not in seeds:
        raise InputError(None, f"unknown split {split!r} of {name} (known: {', '.join(seeds)})")
    return seeds[split]


def training_sets(cfg) -> tuple:
    """(augmented train SceneSampleSet, list of zero-argument validation Scene makers) of the experiment ``cfg``
    (an ``ExperimentConfig``) from the dataset ``cfg.data.kind``; InputError listing the kinds with training data."""
    return _lookup(cfg.data.kind, "data kind", "training_sets").training_sets(cfg)


_SCENE_NAME = re.compile(r"^([A-Za-z0-9]+)_(\d+)$")


def parse_scene_name(scene_name: str) -> Optional[tuple[str, int]]:
    """(dataset name, seed) of the name of a generated scene, ``<dataset>_<seed digits>`` (``"toy_00012"`` ->
    ("toy", 12)); None for any other name (a ScanNet scan id, a dataset that makes no scenes, ...)."""
    m = _SCENE_NAME.match(str(scene_name))
    entry = None if m is None else _REGISTRY.get(m.group(1))
    if entry is None or entry.make_scene is None:
        return None
    return entry.name, int(m.group(2))


register_dataset(Dataset("toy", class_names=lambda: TOY_CLASS_NAMES, instance_classes=_toy_instance_classes,
                         split_seeds=TOY_SPLIT_SEEDS, make_scene=_make_toy_scene, scene_config=ToySceneConfig,
                         scene_name=toy_scene_name, training_sets=partial(_generated_training_sets, "toy")))
register_dataset(Dataset("longtail", class_names=lambda: LONGTAIL_CLASS_NAMES,
                         instance_classes=_longtail_instance_classes, split_seeds=LONGTAIL_SPLIT_SEEDS,
                         make_scene=_make_longtail_scene, scene_config=LongtailSceneConfig,
                         scene_name=longtail_scene_name, training_sets=partial(_generated_training_sets, "longtail")))
register_dataset(Dataset("scannet20", class_names=partial(scannet_label_names, "scannet20"),
                         instance_classes=scannet20_instance_classes))
register_dataset(Dataset("scannet200", class_names=partial(scannet_label_names, "scannet200"),
                         instance_classes=scannet200_instance_classes))
register_dataset(Dataset("store", training_sets=_store_training_sets))
register_dataset(Dataset("scans", training_sets=_scans_training_sets))
