"""Evaluating a model with a semantic head on plain scans: the scenes' labels are removed before the model sees
them, so semantic labels and instances both come from the network (one forward) and are scored against the
ground truth that was removed."""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

from mtml.data.registry import class_set
from mtml.data.toy import TOY_CLASS_NAMES, TOY_INSTANCE_CLASS_IDS, generate_scene
from mtml.eval.instance_ap import InstanceAPResult
from mtml.eval.scenes import Segmenter, evaluate_scenes, model_segmenter
from mtml.eval.semantic import SemanticConfusion, SemanticResult
from mtml.labels import ClassSet
from mtml.predict.checkpoint import load_model
from mtml.scene import Scene


def without_annotations(scene: Scene) -> Scene:
    """The same scan with no semantic or instance labels (what a user's plain scan looks like)."""
    return dataclasses.replace(scene, labels=None, instances=None)


def plain_scan_segmenter(model, cluster_cfg, voxel_size: float, vote_passes: int = 1) -> Segmenter:
    """Segmenter that hands the model each scene without its annotations (labels voted over ``vote_passes``
    copies of the scene, ``mtml.predict.voting``)."""
    segment = model_segmenter(model, cluster_cfg, voxel_size, use_given_labels=False, vote_passes=vote_passes)
    return lambda scene: segment(without_annotations(scene))


def evaluate_plain_scans(model, cluster_cfg, voxel_size: float, scenes: Iterable[Scene], classes: ClassSet,
                         class_names: dict, progress: bool = True, total: Optional[int] = None,
                         desc: str = "plain scans", vote_passes: int = 1) -> tuple[InstanceAPResult, SemanticResult]:
    """Instance AP (ScanNet rules, over ``classes``) and semantic metrics (over the model's classes) of a model
    with a semantic head on scenes whose annotations it never sees; ``vote_passes``: see ``mtml.predict.voting``."""
    if model.semantic_head is None:
        raise ValueError("plain-scan evaluation needs a model with a semantic head")
    confusion = SemanticConfusion(model.cfg.channel_ids())
    segmenter = plain_scan_segmenter(model, cluster_cfg, voxel_size, vote_passes)
    ap = evaluate_scenes(segmenter, scenes, classes, progress=progress, desc=desc, total=total, semantic=confusion)
    return ap, confusion.result(class_names)


def evaluate_toy_plain(checkpoint: str, seeds, progress: bool = True,
                       vote_passes: int = 1) -> tuple[InstanceAPResult, SemanticResult]:
    """``evaluate_plain_scans`` of a toy checkpoint (with its own cluster settings) on the toy scenes ``seeds``,
    labels voted over ``vote_passes`` copies of each scene (``mtml.predict.voting``)."""
    loaded = load_model(checkpoint)
    model, exp = loaded.model, loaded.config
    seeds = list(seeds)
    return evaluate_plain_scans(model, exp.cluster, exp.data.voxel_size, (generate_scene(s) for s in seeds),
                                class_set("toy"), TOY_CLASS_NAMES, progress=progress, total=len(seeds),
                                vote_passes=vote_passes)


def box_class_miou(result: SemanticResult) -> float:
    """Mean IoU over the toy benchmark's five box classes (the floor left out), a fraction."""
    return sum(float(result.iou[result.class_ids.index(c)]) for c in TOY_INSTANCE_CLASS_IDS) / len(TOY_INSTANCE_CLASS_IDS)
