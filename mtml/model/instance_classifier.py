"""Instance classification: one semantic label per instance, from its voxels' mean class probabilities and its
shape.

The semantic head labels each voxel from its context. Where a small box touches a larger one, the context
looks like one long object, and the small box's voxels take the larger box's class (on the toy benchmark,
two thirds of the small cubes that touch another box). Once the instance is segmented, its footprint and
height say what it is. This small MLP reads them, with the voxels' mean class probabilities. It relabels the
instance and its voxels: the proposal-classification step of two-stage instance segmentation (as in
SoftGroup's top-down refinement).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from mtml.scene import Instances, VoxelGrid

GEOMETRY_FEATURES = 4
"""Shape features per instance: footprint long side and short side (m, along the footprint's principal axes),
top above the floor (m) and ln(voxel count)."""


def instance_geometry(grid: VoxelGrid, masks: Sequence[np.ndarray]) -> np.ndarray:
    """float32 [K, GEOMETRY_FEATURES]: each instance's footprint long and short side (m), top above the floor
    (m) and ln(voxels). masks: K int64 row arrays into grid.coords. Invariant to rotation about the vertical axis
    (the sides are measured along the footprint's principal axes)."""
    from mtml.data.dataset import floor_level

    out = np.zeros((len(masks), GEOMETRY_FEATURES), dtype=np.float32)
    floor = floor_level(grid) if len(masks) else 0
    for k, rows in enumerate(masks):
        coords = grid.coords[rows]
        xy = coords[:, :2].astype(np.float64)
        xy -= xy.mean(axis=0)
        axes = np.linalg.eigh(xy.T @ xy)[1] if len(rows) > 1 else np.eye(2)
        proj = xy @ axes
        sides = np.sort(proj.max(axis=0) - proj.min(axis=0) + 1.0)[::-1] * grid.voxel_size
        top = (coords[:, 2].max() - floor + 1) * grid.voxel_size
        out[k] = (sides[0], sides[1], top, np.log(len(rows)))
    return out


def instance_descriptors(grid: VoxelGrid, masks: Sequence[np.ndarray], class_probabilities: np.ndarray) -> np.ndarray:
    """float32 [K, C + GEOMETRY_FEATURES]: each instance's mean class probabilities over its voxels
    (``class_probabilities`` float [V, C] at the grid's occupied voxels) followed by ``instance_geometry``."""
    probs = np.stack([class_probabilities[rows].mean(axis=0) for rows in masks]) if len(masks) else \
        np.zeros((0, class_probabilities.shape[1]))
    return np.concatenate([probs.astype(np.float32), instance_geometry(grid, masks)], axis=1)


class InstanceClassifier(nn.Module):
    """MLP: instance descriptors [K, num_classes + GEOMETRY_FEATURES] -> class logits [K, num_classes] (the
    model's class channels)."""

    def __init__(self, num_classes: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(num_classes + GEOMETRY_FEATURES, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        return self.net(descriptors)


def instance_targets(grid: VoxelGrid, masks: Sequence[np.ndarray], channel_ids: Sequence[int],
                     ignore: Sequence[int] = ()) -> np.ndarray:
    """int64 [K]: the class channel of the ground-truth label most voxels of each instance have (the grid's
    ``labels``; a stuff label when the instance is mostly floor), -1 where those voxels are all ``ignore``d."""
    channel_of = {int(c): i for i, c in enumerate(channel_ids)}
    out = np.full(len(masks), -1, dtype=np.int64)
    for k, rows in enumerate(masks):
        labels = grid.labels[rows]
        labels = labels[~np.isin(labels, np.asarray(ignore, dtype=np.int64))]
        if len(labels):
            values, counts = np.unique(labels, return_counts=True)
            out[k] = channel_of.get(int(values[counts.argmax()]), -1)
    return out


def relabel_instances(instances: Instances, voxel_labels: np.ndarray, instance_labels: np.ndarray,
                      stuff_classes: Sequence[int]):
    """Give each instance its classified label and its voxels that label.

    instances: ``mtml.cluster.pipeline.Instances``; voxel_labels int64 [V] (the semantic head's); instance_labels
    int64 [K] label ids. An instance classified as a stuff class (floor, wall) stops being an instance and its
    voxels take that class. Returns (Instances without those, new voxel labels int64 [V]).
    """
    labels = voxel_labels.copy()
    for k, rows in enumerate(instances.masks):
        labels[rows] = instance_labels[k]
    stuff = {int(s) for s in stuff_classes}
    keep = [k for k, label in enumerate(instance_labels) if int(label) not in stuff]
    kept = Instances([instances.masks[k] for k in keep], np.asarray(instance_labels, dtype=np.int64)[keep],
                     instances.scores[keep])
    return kept, labels
