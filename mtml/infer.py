"""Inference on one scene: voxelize -> network (all heads, one forward) -> semantic labels -> clustering,
with per-stage timings."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from mtml.cluster.pipeline import ClusterConfig, Instances, segment_instances
from mtml.data.dataset import network_input
from mtml.data.voxelize import voxelize
from mtml.model.model import MTMLNet
from mtml.scene import Scene, VoxelGrid


@dataclass
class VoxelPredictions:
    """The network's outputs at a grid's occupied voxels (rows in the order of grid.coords).

    embedding: float32 [V, D] metric feature embedding.
    direction: float32 [V, 3] predicted direction to the object centre (unnormalised).
    labels:    int64 [V] predicted semantic label ids, or None for a model without a semantic head.
    features:  float32 [V, Ds] language-grounded features, or None.
    """

    embedding: np.ndarray
    direction: np.ndarray
    labels: Optional[np.ndarray] = None
    features: Optional[np.ndarray] = None


@dataclass
class SceneResult:
    """What inference produced for one scene: its grid (whose labels are those the instances were built on),
    the instances over the grid's voxels, the point labels, where they came from, and timings (s).

    point_labels:  int64 [N] semantic label of each input point (given, or predicted through its voxel).
    labels_source: "given" (the scan's labels) or "predicted" (the semantic head).
    """

    scene: Scene
    grid: VoxelGrid
    instances: Instances
    point_labels: np.ndarray
    labels_source: str
    timings: dict = field(default_factory=dict)
    voxel_predictions: Optional[VoxelPredictions] = None


@torch.no_grad()
def predict_voxels(model: MTMLNet, grid: VoxelGrid, device: str = "cpu") -> VoxelPredictions:
    """Run the network once on a grid; all heads at its occupied voxels (see ``VoxelPredictions``)."""
    x = network_input(grid, model.cfg)[None].to(device)
    out = model(x, torch.from_numpy(grid.coords).to(device))
    labels = features = None
    if "semantic" in out:
        channels = model.semantic_head.logits(out["semantic"]).argmax(1).cpu().numpy()
        labels = np.asarray(model.cfg.channel_ids(), dtype=np.int64)[channels]
        features = out["semantic"].float().cpu().numpy()
    return VoxelPredictions(out["embedding"].float().cpu().numpy(), out["direction"].float().cpu().numpy(),
                            labels, features)


def segment_grid(model: MTMLNet, scene: Scene, grid: VoxelGrid, cluster_cfg: ClusterConfig, device: str = "cpu",
                 use_given_labels: bool = True) -> SceneResult:
    """Semantic labels and instances of an already voxelised scene. Timings: network, cluster (s).

    The instances are built on the scan's own labels when it has them and ``use_given_labels`` is set (or the
    model reads labels as input); otherwise on the semantic head's predictions.
    """
    t0 = time.perf_counter()
    pred = predict_voxels(model, grid, device)
    t1 = time.perf_counter()
    given = grid.labels is not None and (use_given_labels or model.cfg.needs_labels)
    if not given:
        if pred.labels is None:
            raise ValueError("this model has no semantic head: the scan needs a 'label' property")
        grid = dataclasses.replace(grid, labels=pred.labels)
    instances = segment_instances(grid, pred.embedding, pred.direction, cluster_cfg)
    t2 = time.perf_counter()
    point_labels = scene.labels if given and scene.labels is not None else grid.labels[grid.point_to_voxel]
    return SceneResult(scene, grid, instances, point_labels, "given" if given else "predicted",
                       {"network": t1 - t0, "cluster": t2 - t1}, pred)


def segment_scene(model: MTMLNet, scene: Scene, cluster_cfg: ClusterConfig, voxel_size: float = 0.1,
                  max_voxels: Optional[int] = None, device: str = "cpu", use_given_labels: bool = True) -> SceneResult:
    """Semantic labels and instances of one scene (see ``segment_grid``). Timings: voxelize, network, cluster (s)."""
    t0 = time.perf_counter()
    grid = voxelize(scene, voxel_size, max_voxels=max_voxels)
    res = segment_grid(model, scene, grid, cluster_cfg, device, use_given_labels)
    res.timings = {"voxelize": time.perf_counter() - t0 - sum(res.timings.values()), **res.timings}
    return res
