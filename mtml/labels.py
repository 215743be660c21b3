"""Class sets for instance evaluation (``ClassSet``: the ids, names and optional category groups a benchmark
scores) and ScanNet's label data, which ship in ``mtml/resources/scannet_labels.json`` (ScanNet20 / ScanNet200 ids and
names, the 18 ScanNet instance-evaluation classes and ScanNet200's head / common / tail split).

Nothing here is specific to a dataset of ours: the registry of datasets, their class sets and label names by name
(``class_set("toy")``, ``label_names("longtail")``, ...) is ``mtml.data.registry``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType

import numpy as np

from mtml.errors import InputError
from mtml.scene import Scene

#: ScanNet200 categories that are not objects and are left out of its instance evaluation
#: (``VALID_PANOPTIC_IDS`` / ``CLASS_LABELS_PANOPTIC`` in the official ``scannet200_constants.py``).
SCANNET200_NON_INSTANCE_NAMES = ("wall", "floor")


@dataclass(frozen=True)
class ClassSet:
    """The classes one benchmark evaluates.

    ``ids``: label ids (ints, in evaluation / report order); ``names``: one name per id;
    ``groups``: optional group name -> tuple of class ids (a subset of ``ids``), e.g. ScanNet200 head/common/tail.
    """

    name: str
    ids: tuple[int, ...]
    names: tuple[str, ...]
    groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(int(i) for i in self.ids))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "groups", {str(k): tuple(int(i) for i in v) for k, v in dict(self.groups).items()})
        if len(self.ids) != len(self.names):
            raise ValueError(f"class set {self.name!r}: {len(self.ids)} ids but {len(self.names)} names")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"class set {self.name!r}: duplicate class ids")
        known = set(self.ids)
        for group, members in self.groups.items():
            stray = [i for i in members if i not in known]
            if stray:
                raise ValueError(f"class set {self.name!r}: group {group!r} has ids {stray} that are not classes")

    def __len__(self) -> int:
        return len(self.ids)


@functools.lru_cache(maxsize=1)
def scannet_label_data() -> dict:
    """The parsed ``mtml/resources/scannet_labels.json`` (keys: scannet20, scannet200, splits,
    instance_eval_classes_scannet20; each class list is ``{"ids": [...], "names": [...]}``)."""
    text = resources.files("mtml").joinpath("resources", "scannet_labels.json").read_text(encoding="utf-8")
    return json.loads(text)


def scannet20_instance_classes() -> ClassSet:
    """The 18 classes of ScanNet's official instance evaluation (NYU40 ids): cabinet 3, bed 4, ... otherfurniture 39.

    Same ids, names and order as ``VALID_CLASS_IDS`` / ``CLASS_LABELS`` in ``evaluate_semantic_instance.py``.
    """
    data = scannet_label_data()["instance_eval_classes_scannet20"]
    return ClassSet("scannet20", tuple(data["ids"]), tuple(data["names"]))


def scannet200_class_splits() -> dict[int, str]:
    """ScanNet200 category id -> "head" / "common" / "tail" (``mtml/resources/scannet_labels.json``'s splits), for
    every one of the 200 categories the splits name, in split order."""
    data = scannet_label_data()
    id_of = {str(n): int(i) for i, n in zip(data["scannet200"]["ids"], data["scannet200"]["names"])}
    return {id_of[n]: split for split, names in data["splits"].items() for n in names if n in id_of}


def scannet200_instance_classes() -> ClassSet:
    """ScanNet200's instance classes: the 200 benchmark categories (raw category ids, official order) less
    wall and floor, i.e. 198 classes; groups ``head`` / ``common`` / ``tail`` hold the ids of each split's classes."""
    data = scannet_label_data()
    all200 = data["scannet200"]
    pairs = [(int(i), str(n)) for i, n in zip(all200["ids"], all200["names"]) if n not in SCANNET200_NON_INSTANCE_NAMES]
    split_of = scannet200_class_splits()
    groups = {split: tuple(i for i, _ in pairs if split_of.get(i) == split) for split in data["splits"]}
    return ClassSet("scannet200", tuple(i for i, _ in pairs), tuple(n for _, n in pairs), groups)


SCANNET_INSTANCE_CLASS_SETS: Mapping[str, Callable[[], ClassSet]] = MappingProxyType({
    "scannet20": scannet20_instance_classes,
    "scannet200": scannet200_instance_classes,
})
"""ScanNet benchmark name -> the factory of its instance class set."""


def scannet_label_names(benchmark: str) -> dict[int, str]:
    """Every semantic label id of a ScanNet benchmark ("scannet20": NYU40 ids, "scannet200": raw category ids)
    -> its name, with 0 -> "unlabeled". InputError for another benchmark."""
    if benchmark not in SCANNET_INSTANCE_CLASS_SETS:
        known = ", ".join(SCANNET_INSTANCE_CLASS_SETS)
        raise InputError(None, f"unknown ScanNet benchmark {benchmark!r} (known: {known})")
    data = scannet_label_data()[benchmark]
    return {0: "unlabeled", **{int(i): str(n) for i, n in zip(data["ids"], data["names"])}}


def scene_gt_ids(scene: Scene, thing_classes: Sequence[int]) -> np.ndarray:
    """Ground truth in ScanNet's encoding: int64 [N] = label * 1000 + instance + 1 for points of thing classes
    with an instance, 0 elsewhere (floor, unlabelled)."""
    ids = np.zeros(scene.num_points, dtype=np.int64)
    has = (scene.instances >= 0) & np.isin(scene.labels, np.asarray(thing_classes))
    ids[has] = scene.labels[has] * 1000 + scene.instances[has] + 1
    return ids
