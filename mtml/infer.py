"""Inference on one scene: voxelize -> network -> clustering, with per-stage timings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from mtml.cluster.pipeline import ClusterConfig, Instances, segment_instances
from mtml.data.dataset import onehot_input
from mtml.data.voxelize import voxelize
from mtml.model.model import MTMLNet
from mtml.scene import Scene, VoxelGrid


@dataclass
class SceneResult:
    """What inference produced for one scene: its grid, the instances over the grid's voxels, timings (s)."""

    scene: Scene
    grid: VoxelGrid
    instances: Instances
    timings: dict = field(default_factory=dict)


@torch.no_grad()
def predict_voxels(model: MTMLNet, grid: VoxelGrid, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Run the network on a grid; returns (embedding float32 [V, D], direction float32 [V, 3]) for its
    occupied voxels, in the order of grid.coords."""
    x = onehot_input(grid, model.cfg.num_classes, class_ids=model.cfg.class_ids)[None].to(device)
    out = model(x)
    c = torch.from_numpy(grid.coords).to(device)
    emb = out["embedding"][0][:, c[:, 0], c[:, 1], c[:, 2]].T
    direc = out["direction"][0][:, c[:, 0], c[:, 1], c[:, 2]].T
    return emb.float().cpu().numpy(), direc.float().cpu().numpy()


def segment_grid(model: MTMLNet, scene: Scene, grid: VoxelGrid, cluster_cfg: ClusterConfig,
                 device: str = "cpu") -> SceneResult:
    """Instances of an already voxelised scene. Timings: network, cluster (s)."""
    t0 = time.perf_counter()
    emb, direc = predict_voxels(model, grid, device)
    t1 = time.perf_counter()
    instances = segment_instances(grid, emb, direc, cluster_cfg)
    t2 = time.perf_counter()
    return SceneResult(scene, grid, instances, {"network": t1 - t0, "cluster": t2 - t1})


def segment_scene(model: MTMLNet, scene: Scene, cluster_cfg: ClusterConfig, voxel_size: float = 0.1,
                  max_voxels: Optional[int] = None, device: str = "cpu") -> SceneResult:
    """Instances of one scene (which must carry semantic labels). Timings: voxelize, network, cluster (s)."""
    t0 = time.perf_counter()
    grid = voxelize(scene, voxel_size, max_voxels=max_voxels)
    res = segment_grid(model, scene, grid, cluster_cfg, device)
    res.timings = {"voxelize": time.perf_counter() - t0 - sum(res.timings.values()), **res.timings}
    return res
