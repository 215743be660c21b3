"""The direction-to-centre loss of MTML: minus the mean cosine between the predicted direction and the
voxel -> instance-centre vector, averaged per instance and then over instances."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtml.losses.discriminative import instance_means


def direction_targets(voxel_xyz: torch.Tensor, instance_index: torch.Tensor, num_instances: int) -> torch.Tensor:
    """Unit vectors [M, 3] from each voxel centre to its instance's centre of mass (mean voxel position).

    voxel_xyz: [M, 3] voxel positions (any unit); instance_index: int64 [M] in [0, num_instances).
    A voxel at its centre gets a zero vector (it is then ignored by the cosine).
    """
    centers = instance_means(voxel_xyz, instance_index, num_instances)
    return F.normalize(centers[instance_index] - voxel_xyz, dim=1, eps=1e-6)


def direction_cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine [M] between predicted directions [M, 3] (any length) and unit targets [M, 3]."""
    return (F.normalize(pred, dim=1, eps=1e-6) * target).sum(dim=1)


def directional_loss(
    direction: torch.Tensor, voxel_xyz: torch.Tensor, instance_index: torch.Tensor, num_instances: int
) -> torch.Tensor:
    """-mean over instances of the mean cosine within the instance; a scalar in [-1, 1] (0 with no instance).

    direction: [M, 3] predictions; voxel_xyz: [M, 3]; instance_index: int64 [M] in [0, num_instances).
    """
    if num_instances == 0:
        return direction.sum() * 0.0
    cos = direction_cosine(direction, direction_targets(voxel_xyz, instance_index, num_instances))
    per_instance = instance_means(cos[:, None], instance_index, num_instances)[:, 0]
    return -per_instance.mean()
