"""Evaluating a model or a baseline on scenes of the toy benchmark (MTML Table 1)."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from tqdm import tqdm

from mtml.cluster.pipeline import ClusterConfig, Instances, baseline_instances
from mtml.data.toy import TOY_CLASS_NAMES, TOY_INSTANCE_CLASS_IDS, ToySceneConfig, generate_scene
from mtml.data.voxelize import voxelize
from mtml.eval.instance_ap import InstanceAPResult
from mtml.eval.scenes import evaluate_point_predictions, point_predictions
from mtml.scene import Scene, VoxelGrid

Segmenter = Callable[[Scene], tuple[VoxelGrid, Instances]]


def model_segmenter(model, cluster_cfg: ClusterConfig, voxel_size: float) -> Segmenter:
    """Segmenter running the MTML network and post-processing."""
    from mtml.infer import segment_scene

    def run(scene: Scene):
        res = segment_scene(model, scene, cluster_cfg, voxel_size)
        return res.grid, res.instances

    return run


def baseline_segmenter(method: str, voxel_size: float) -> Segmenter:
    """Segmenter for "connected_components" or "segment_as_instance" on the ground-truth semantic labels."""

    def run(scene: Scene):
        grid = voxelize(scene, voxel_size)
        return grid, baseline_instances(grid, method, TOY_INSTANCE_CLASS_IDS)

    return run


def evaluate_toy(segment: Segmenter, seeds: Iterable[int], toy_cfg: Optional[ToySceneConfig] = None,
                 progress: bool = True, desc: str = "eval") -> InstanceAPResult:
    """AP / AP50 / AP25 of ``segment`` over the toy scenes with the given seeds (point-level, ScanNet rules)."""
    toy_cfg = toy_cfg or ToySceneConfig()
    seeds = list(seeds)

    def pairs():
        for seed in tqdm(seeds, desc=desc, disable=not progress, leave=False):
            scene = generate_scene(seed, toy_cfg)
            grid, inst = segment(scene)
            yield scene, point_predictions(inst.point_masks(grid, scene.labels), inst.labels, inst.scores)

    names = [TOY_CLASS_NAMES[c] for c in TOY_INSTANCE_CLASS_IDS]
    return evaluate_point_predictions(pairs(), TOY_INSTANCE_CLASS_IDS, names)
