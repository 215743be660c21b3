"""Evaluating a model with a semantic head on plain scans: the scenes' labels are removed before the model sees
them, so semantic labels and instances both come from the network (one forward) and are scored against the
ground truth that was removed."""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

from mtml.eval.instance_ap import InstanceAPResult
from mtml.eval.labels import ClassSet
from mtml.eval.scenes import Segmenter, evaluate_scenes, model_segmenter
from mtml.eval.semantic import SemanticConfusion, SemanticResult
from mtml.scene import Scene


def without_annotations(scene: Scene) -> Scene:
    """The same scan with no semantic or instance labels (what a user's plain scan looks like)."""
    return dataclasses.replace(scene, labels=None, instances=None)


def plain_scan_segmenter(model, cluster_cfg, voxel_size: float) -> Segmenter:
    """Segmenter that hands the model each scene without its annotations."""
    segment = model_segmenter(model, cluster_cfg, voxel_size, use_given_labels=False)
    return lambda scene: segment(without_annotations(scene))


def evaluate_plain_scans(model, cluster_cfg, voxel_size: float, scenes: Iterable[Scene], classes: ClassSet,
                         class_names: dict, progress: bool = True, total: Optional[int] = None,
                         desc: str = "plain scans") -> tuple[InstanceAPResult, SemanticResult]:
    """Instance AP (ScanNet rules, over ``classes``) and semantic metrics (over the model's classes) of a model
    with a semantic head on scenes whose annotations it never sees."""
    if model.semantic_head is None:
        raise ValueError("plain-scan evaluation needs a model with a semantic head")
    confusion = SemanticConfusion(model.cfg.channel_ids())
    ap = evaluate_scenes(plain_scan_segmenter(model, cluster_cfg, voxel_size), scenes, classes, progress=progress,
                         desc=desc, total=total, semantic=confusion)
    return ap, confusion.result(class_names)
