"""Caching toy splits as voxel grids in an HDF5 store (``mtml.io.store``), resumable."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from mtml.data.registry import TOY_NUM_SCENES, toy_scene_seeds
from mtml.data.toy import ToySceneConfig, generate_scene_with_boxes, toy_scene_name
from mtml.data.voxelize import voxelize
from mtml.io.store import build_store
from mtml.scene import VoxelGrid


def cache_toy_split(
    path: str | os.PathLike,
    split: str,
    config=None,
    voxel_size: float = 0.1,
    *,
    num_scenes: Optional[int] = None,
    base_seed: int = 0,
    with_point_map: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Generate, voxelize and store a toy split (``mtml.data.toy``), resuming an interrupted run.

    path:       the store file to create.
    split:      "train", "test" or "all" (see ``mtml.data.registry.toy_scene_seeds``).
    config:     ToySceneConfig (default: the default config).
    voxel_size: metres.
    num_scenes, base_seed: as in ``toy_scene_seeds`` (default 1000 scenes from seed 0).
    Each scene is stored under its name ``toy_<seed>`` with attrs {seed, split, num_points, num_boxes};
    the store's meta records the config, voxel size, split and seeds, so a resume with other settings
    fails instead of mixing scenes. Returns ``path``.
    """
    config = ToySceneConfig() if config is None else config
    num_scenes = TOY_NUM_SCENES if num_scenes is None else num_scenes
    seeds = toy_scene_seeds(split, num_scenes, base_seed)

    def make(seed: int) -> VoxelGrid:
        scene, boxes = generate_scene_with_boxes(seed, config)
        grid = voxelize(scene, voxel_size)
        grid.extra = {"seed": seed, "split": split, "num_points": scene.num_points, "num_boxes": len(boxes)}
        return grid

    meta = {
        "generator": "mtml.data.toy",
        "config": asdict(config),
        "voxel_size": voxel_size,
        "split": split,
        "num_scenes": num_scenes,
        "base_seed": base_seed,
    }
    items = ((toy_scene_name(s), (lambda s=s: make(s))) for s in seeds)
    return build_store(
        path,
        items,
        meta=meta,
        with_point_map=with_point_map,
        overwrite=overwrite,
        progress=progress,
        total=len(seeds),
        desc=f"toy {split}",
    )
