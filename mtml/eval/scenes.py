"""Evaluating instance predictions over points of whole scenes (the toy benchmark, PLY scans)."""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from mtml.cluster.pipeline import ClusterConfig, baseline_instances
from mtml.data.voxelize import voxelize
from mtml.eval.instance_ap import InstanceAPResult, evaluate_instances
from mtml.labels import ClassSet, scene_gt_ids
from mtml.scene import Instances, Scene, ScenePredictions, VoxelGrid

Segmenter = Callable[[Scene], tuple[VoxelGrid, Instances, np.ndarray]]
"""A method under evaluation: Scene -> (its voxel grid, instances over the grid's voxels, the semantic label of
each point, int64 [N], that the instances were built on)."""


def point_predictions(masks: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> ScenePredictions:
    """Wrap point masks bool [K, N], labels int64 [K] and scores float [K] for the evaluator."""
    return ScenePredictions(masks=np.asarray(masks, dtype=bool), label_ids=np.asarray(labels, dtype=np.int64),
                            scores=np.asarray(scores, dtype=np.float64))


def scored_labels(labels: np.ndarray, ignore: Sequence[int]) -> np.ndarray:
    """Ground-truth point labels int64 [N] for the semantic metrics: labels in ``ignore`` become -1 (not scored)."""
    return np.where(np.isin(labels, np.asarray(ignore, dtype=np.int64)), -1, labels).astype(np.int64)


def model_segmenter(model, cluster_cfg: ClusterConfig, voxel_size: float, use_given_labels: bool = True,
                    vote_passes: int = 1) -> Segmenter:
    """Segmenter running the MTML network and post-processing; with ``use_given_labels=False`` a model with a
    semantic head ignores the scene's labels and builds instances on its own predictions (voted over
    ``vote_passes`` copies of the scene, ``mtml.predict.voting``)."""
    from mtml.predict.infer import segment_scene

    def run(scene: Scene):
        res = segment_scene(model, scene, cluster_cfg, voxel_size, use_given_labels=use_given_labels,
                            vote_passes=vote_passes)
        return res.grid, res.instances, res.point_labels

    return run


def baseline_segmenter(method: str, voxel_size: float, thing_classes: Sequence[int]) -> Segmenter:
    """Segmenter for "connected_components" or "segment_as_instance" on the scene's semantic labels."""

    def run(scene: Scene):
        grid = voxelize(scene, voxel_size)
        return grid, baseline_instances(grid, method, thing_classes), scene.labels

    return run


def evaluate_scenes(segment: Segmenter, scenes: Iterable[Scene], classes: ClassSet, min_region_size: int = 100,
                    progress: bool = True, desc: str = "eval", total: Optional[int] = None,
                    semantic=None, semantic_ignore: Sequence[int] = ()) -> InstanceAPResult:
    """AP / AP50 / AP25 of ``segment`` over scenes whose ground truth is in their labels/instances (ScanNet's
    rules at the points; a point joins an instance only if its own label is the instance's label).

    semantic: a ``mtml.eval.semantic.SemanticConfusion`` that also receives each scene's point labels against
    its ground-truth labels (points labelled with ``semantic_ignore`` are not scored), or None.
    """

    def pairs():
        for scene in tqdm(scenes, desc=desc, disable=not progress, leave=False, total=total):
            grid, inst, point_labels = segment(scene)
            if semantic is not None:
                semantic.update(point_labels, scored_labels(scene.labels, semantic_ignore))
            yield scene_gt_ids(scene, classes.ids), point_predictions(inst.point_masks(grid, point_labels),
                                                                      inst.labels, inst.scores)

    return evaluate_instances(pairs(), classes.ids, classes.names, min_region_size=min_region_size)


def evaluate_semantic(model, scenes: Iterable[Scene], voxel_size: float, confusion, semantic_ignore: Sequence[int] = (),
                      progress: bool = True, desc: str = "eval", total: Optional[int] = None):
    """Feed a ``SemanticConfusion`` with the semantic head's point labels (through each point's voxel) against
    the scenes' ground-truth labels (``semantic_ignore`` labels not scored); returns the confusion."""
    from mtml.predict.infer import predict_voxels

    for scene in tqdm(scenes, desc=desc, disable=not progress, leave=False, total=total):
        grid = voxelize(scene, voxel_size)
        pred = predict_voxels(model, grid)
        confusion.update(pred.labels[grid.point_to_voxel], scored_labels(scene.labels, semantic_ignore))
    return confusion
