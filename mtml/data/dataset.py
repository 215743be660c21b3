"""From VoxelGrids to network tensors, and the training data set of the toy benchmark."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from mtml.data.augment import AugmentConfig, augment_scene
from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.scene import Scene, VoxelGrid


def padded_shape(shape: Sequence[int], multiple: int = 2) -> tuple:
    """Grid shape rounded up to a multiple (the backbone pools by 2 and upsamples back)."""
    return tuple(int(-(-s // multiple) * multiple) for s in shape)


def label_channels(labels: np.ndarray, class_ids: Sequence[int], source: Optional[str] = None) -> np.ndarray:
    """Input channel of each semantic label: the label's position in ``class_ids`` (int64, same shape).

    InputError (naming ``source``) for labels that are not in ``class_ids``.
    """
    ids = np.asarray(class_ids, dtype=np.int64)
    order = np.argsort(ids)
    pos = np.clip(np.searchsorted(ids[order], labels), 0, len(ids) - 1)
    known = ids[order][pos] == labels
    if not known.all():
        raise InputError(source, f"{int((~known).sum())} labels are not classes this model knows "
                                 f"(e.g. {np.unique(labels[~known])[:5].tolist()}; known: {ids.tolist()[:12]}...)")
    return order[pos]


def onehot_input(grid: VoxelGrid, num_classes: int, shape: Optional[Sequence[int]] = None,
                 class_ids: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Dense one-hot semantic input [num_classes, X, Y, Z] (float32); empty voxels are all-zero.

    grid.labels hold label ids; channel c is the label ``class_ids[c]`` (default: label c, for
    ids 0 .. num_classes-1). ``shape`` (>= grid.shape) pads the grid.
    """
    if grid.labels is None:
        raise InputError(None, "this model needs semantic labels as input (a 'label' vertex property)")
    channels = label_channels(grid.labels, class_ids if class_ids else range(num_classes))
    shape = padded_shape(grid.shape) if shape is None else tuple(shape)
    x = torch.zeros((num_classes, *shape), dtype=torch.float32)
    c = torch.from_numpy(grid.coords)
    x[torch.from_numpy(channels), c[:, 0], c[:, 1], c[:, 2]] = 1.0
    return x


def floor_level(grid: VoxelGrid, percentile: float = 1.0) -> int:
    """The z index of the floor: a low percentile of the occupied voxels' z, so that a few stray points
    below the floor do not move it. Indoor scans (and the synthetic benchmarks) have their floor as the
    lowest large surface."""
    return int(np.floor(np.percentile(grid.coords[:, 2], percentile)))


def network_input(grid: VoxelGrid, model_cfg, shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """The dense input tensor [C, X, Y, Z] (float32) of a grid, with the features ``model_cfg.inputs`` lists
    (see ``mtml.model.model.ModelConfig``), in that order. Empty voxels are all-zero.

    "height" is metres above the floor (``floor_level``), "rgb" the voxel's mean colour in [0, 1] (0.5 grey
    when the scan has no colour), "semantic" the one-hot labels (``onehot_input``; needs grid.labels).
    """
    shape = padded_shape(grid.shape) if shape is None else tuple(shape)
    c = torch.from_numpy(grid.coords)
    parts = []
    for feature in model_cfg.inputs:
        if feature == "semantic":
            parts.append(onehot_input(grid, model_cfg.num_classes, shape, model_cfg.class_ids))
            continue
        if feature == "occupancy":
            values = torch.ones((1, grid.num_voxels))
        elif feature == "height":
            z = (grid.coords[:, 2] - floor_level(grid) + 0.5) * grid.voxel_size
            values = torch.from_numpy(z.astype(np.float32))[None]
        elif feature == "rgb":
            rgb = grid.colors if grid.colors is not None else np.full((grid.num_voxels, 3), 0.5, np.float32)
            values = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32).T)
        else:
            raise ValueError(f"unknown input feature {feature!r}")
        dense = torch.zeros((values.shape[0], *shape), dtype=torch.float32)
        dense[:, c[:, 0], c[:, 1], c[:, 2]] = values
        parts.append(dense)
    return torch.cat(parts, dim=0)


def instance_targets(grid: VoxelGrid, stuff_classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """The voxels that carry an instance, and their instance as a dense index.

    Returns (rows int64 [M] into grid.coords, instance_index int64 [M] in [0, K), K).
    Voxels of stuff classes (floor, wall) or without an instance are left out.
    """
    keep = grid.instances >= 0
    if grid.labels is not None and len(stuff_classes):
        keep &= ~np.isin(grid.labels, np.asarray(stuff_classes))
    rows = np.nonzero(keep)[0]
    uniq, index = np.unique(grid.instances[rows], return_inverse=True)
    return rows, index.astype(np.int64), len(uniq)


@dataclass
class Sample:
    """One training example: network input and the targets of its instance voxels."""

    inputs: torch.Tensor  # float32 [C, X, Y, Z]
    coords: torch.Tensor  # int64 [V, 3] occupied voxels
    rows: torch.Tensor  # int64 [M] instance voxels (rows of coords)
    instance_index: torch.Tensor  # int64 [M] in [0, K)
    num_instances: int
    grid: VoxelGrid
    semantic: Optional[torch.Tensor] = None  # int64 [V] class channel of each voxel (-1: ignored; None: unlabelled)


def make_sample(grid: VoxelGrid, model_cfg, stuff_classes: Sequence[int], shape=None,
                ignore_labels: Sequence[int] = ()) -> Sample:
    """Build the network input (``network_input``) and the loss targets of one voxel grid (see ``Sample``).
    Voxels whose label is in ``ignore_labels`` (e.g. ScanNet's 0, "unlabeled") get semantic target -1."""
    rows, index, k = instance_targets(grid, stuff_classes)
    semantic = None
    if grid.labels is not None:
        channels = label_channels(grid.labels, model_cfg.channel_ids())
        if len(ignore_labels):
            channels[np.isin(grid.labels, np.asarray(ignore_labels))] = -1
        semantic = torch.from_numpy(channels)
    return Sample(
        inputs=network_input(grid, model_cfg, shape),
        coords=torch.from_numpy(grid.coords),
        rows=torch.from_numpy(rows),
        instance_index=torch.from_numpy(index),
        num_instances=k,
        grid=grid,
        semantic=semantic,
    )


class SceneSampleSet(torch.utils.data.Dataset):
    """Scenes produced by ``make_scene(key)`` (e.g. the toy generator with a seed), voxelised on the fly.

    keys: one key per scene (toy: seeds). model_cfg: the ModelConfig whose inputs and classes to build.
    With ``augment_seed`` set, each access draws a fresh rotation/flip/shift from (augment_seed, key, epoch),
    so training epochs differ but a resumed run replays the same sequence. ``scene_transform(scene, rng)``
    (e.g. rare-class instance insertion) runs before the geometric augmentation, with the same rng.
    ``augment``: the AugmentConfig of that augmentation (default: the generated benchmarks', see
    ``mtml.data.augment``); the grid is rebuilt per sample, so rotations by any angle and crops are fine.
    """

    def __init__(self, keys, make_scene, model_cfg, stuff_classes, voxel_size=0.1,
                 augment_seed: Optional[int] = None, grid_shape=None, scene_transform=None,
                 ignore_labels: Sequence[int] = (), augment: Optional[AugmentConfig] = None):
        self.keys = list(keys)
        self.make_scene = make_scene
        self.model_cfg = model_cfg
        self.stuff_classes = list(stuff_classes)
        self.voxel_size = voxel_size
        self.augment_seed = augment_seed
        self.grid_shape = grid_shape
        self.scene_transform = scene_transform
        self.ignore_labels = list(ignore_labels)
        self.augment = AugmentConfig() if augment is None else augment
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.keys)

    def scene(self, i: int) -> Scene:
        """The i-th scene, augmented when the set augments."""
        scene = self.make_scene(self.keys[i])
        if self.augment_seed is not None:
            key = self.keys[i]
            key = key if isinstance(key, (int, np.integer)) else zlib.crc32(str(key).encode())  # stable across runs
            rng = np.random.default_rng([self.augment_seed, int(key), self.epoch])
            if self.scene_transform is not None:
                scene = self.scene_transform(scene, rng)
            scene = augment_scene(scene, rng, self.voxel_size, self.augment)
        return scene

    def __getitem__(self, i: int) -> Sample:
        grid = voxelize(self.scene(i), self.voxel_size)
        shape = self.grid_shape
        if shape is not None:
            shape = tuple(max(a, b) for a, b in zip(padded_shape(grid.shape), shape))
        return make_sample(grid, self.model_cfg, self.stuff_classes, shape, self.ignore_labels)
