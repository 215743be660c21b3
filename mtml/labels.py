"""Class sets for instance evaluation: the ids, names and optional category groups a benchmark scores.

The ScanNet label data ship in ``mtml/resources/scannet_labels.json`` (ScanNet20 / ScanNet200 ids and names, the
18 ScanNet instance-evaluation classes and ScanNet200's head / common / tail split).

``class_set(name)`` looks a set up in a small registry; other modules add their own with ``register_class_set``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

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


def scannet200_instance_classes() -> ClassSet:
    """ScanNet200's instance classes: the 200 benchmark categories (raw category ids, official order) less
    wall and floor, i.e. 198 classes; groups ``head`` / ``common`` / ``tail`` hold the ids of each split's classes."""
    data = scannet_label_data()
    all200 = data["scannet200"]
    pairs = [(int(i), str(n)) for i, n in zip(all200["ids"], all200["names"]) if n not in SCANNET200_NON_INSTANCE_NAMES]
    id_of = {n: i for i, n in pairs}
    position = {i: k for k, (i, _) in enumerate(pairs)}
    groups = {
        split: tuple(sorted((id_of[n] for n in names if n in id_of), key=position.__getitem__))
        for split, names in data["splits"].items()
    }
    return ClassSet("scannet200", tuple(i for i, _ in pairs), tuple(n for _, n in pairs), groups)


def toy_instance_classes() -> ClassSet:
    """The five box classes of the synthetic toy benchmark (``mtml.data.toy``), ids 1..5."""
    from mtml.data.toy import TOY_CLASS_NAMES, TOY_INSTANCE_CLASS_IDS

    return ClassSet("toy", tuple(TOY_INSTANCE_CLASS_IDS), tuple(TOY_CLASS_NAMES[i] for i in TOY_INSTANCE_CLASS_IDS))


def longtail_instance_classes() -> ClassSet:
    """The 44 object classes of the long-tail synthetic benchmark (``mtml.data.longtail``), ids 2..45 (no floor,
    wall); groups ``head`` / ``common`` / ``tail`` as measured by ``longtail_class_splits`` (cached)."""
    from mtml.data.longtail import LONGTAIL_CLASS_NAMES, LONGTAIL_OBJECT_CLASS_IDS, longtail_class_splits

    split = longtail_class_splits()
    groups = {g: tuple(i for i in LONGTAIL_OBJECT_CLASS_IDS if split[i] == g) for g in ("head", "common", "tail")}
    names = tuple(LONGTAIL_CLASS_NAMES[i] for i in LONGTAIL_OBJECT_CLASS_IDS)
    return ClassSet("longtail", LONGTAIL_OBJECT_CLASS_IDS, names, groups)


_REGISTRY: dict[str, Callable[[], ClassSet]] = {
    "scannet20": scannet20_instance_classes,
    "scannet200": scannet200_instance_classes,
    "toy": toy_instance_classes,
}


def register_class_set(name: str, factory: Callable[[], ClassSet]) -> None:
    """Make ``class_set(name)`` return ``factory()``; ``factory`` takes no arguments and builds the ClassSet."""
    _REGISTRY[name] = factory


register_class_set("longtail", longtail_instance_classes)


def class_set_names() -> Sequence[str]:
    """Names ``class_set`` accepts, in registration order."""
    return tuple(_REGISTRY)


def class_set(name: str) -> ClassSet:
    """The registered class set called ``name`` ("scannet20", "scannet200", ...); InputError if unknown."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise InputError(None, f"unknown class set {name!r} (known: {', '.join(_REGISTRY)})") from None
    return factory()


def label_names(benchmark: str) -> dict[int, str]:
    """Every semantic label id of a benchmark -> its name, stuff classes and 0 ("unlabeled") included.

    benchmark: "toy", "longtail", "scannet20" or "scannet200".
    """
    if benchmark == "toy":
        from mtml.data.toy import TOY_CLASS_NAMES

        return dict(TOY_CLASS_NAMES)
    if benchmark == "longtail":
        from mtml.data.longtail import LONGTAIL_CLASS_NAMES

        return dict(LONGTAIL_CLASS_NAMES)
    if benchmark in ("scannet20", "scannet200"):
        data = scannet_label_data()[benchmark]
        return {0: "unlabeled", **{int(i): str(n) for i, n in zip(data["ids"], data["names"])}}
    raise InputError(None, f"unknown benchmark {benchmark!r} (toy, longtail, scannet20, scannet200)")


def scene_gt_ids(scene: Scene, thing_classes: Sequence[int]) -> np.ndarray:
    """Ground truth in ScanNet's encoding: int64 [N] = label * 1000 + instance + 1 for points of thing classes
    with an instance, 0 elsewhere (floor, unlabelled)."""
    ids = np.zeros(scene.num_points, dtype=np.int64)
    has = (scene.instances >= 0) & np.isin(scene.labels, np.asarray(thing_classes))
    ids[has] = scene.labels[has] * 1000 + scene.instances[has] + 1
    return ids
