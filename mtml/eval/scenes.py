"""Evaluating instance predictions over points of whole scenes (the toy benchmark, PLY scans)."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from mtml.eval.instance_ap import InstanceAPResult, ScenePredictions, evaluate_instances
from mtml.scene import Scene


def scene_gt_ids(scene: Scene, thing_classes: Sequence[int]) -> np.ndarray:
    """Ground truth in ScanNet's encoding: int64 [N] = label * 1000 + instance + 1 for points of thing classes
    with an instance, 0 elsewhere (floor, unlabelled)."""
    ids = np.zeros(scene.num_points, dtype=np.int64)
    has = (scene.instances >= 0) & np.isin(scene.labels, np.asarray(thing_classes))
    ids[has] = scene.labels[has] * 1000 + scene.instances[has] + 1
    return ids


def point_predictions(masks: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> ScenePredictions:
    """Wrap point masks bool [K, N], labels int64 [K] and scores float [K] for the evaluator."""
    return ScenePredictions(masks=np.asarray(masks, dtype=bool), label_ids=np.asarray(labels, dtype=np.int64),
                            scores=np.asarray(scores, dtype=np.float64))


def evaluate_point_predictions(pairs: Iterable[tuple[Scene, ScenePredictions]], class_ids: Sequence[int],
                               class_names: Sequence[str], min_region_size: int = 100) -> InstanceAPResult:
    """AP / AP50 / AP25 over scenes whose ground truth is in the Scene's labels/instances."""
    return evaluate_instances(((scene_gt_ids(s, class_ids), p) for s, p in pairs), class_ids, class_names,
                              min_region_size=min_region_size)
