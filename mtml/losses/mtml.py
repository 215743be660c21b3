"""The joint MTML objective: loss_dir + feature_weight * loss_feat (feature_weight = 0.5 in the authors' code).
With ``use_direction=False`` it is the "feature embedding only" ablation."""

from __future__ import annotations

from dataclasses import dataclass


from mtml.losses.directional import directional_loss
from mtml.losses.discriminative import discriminative_loss


@dataclass
class LossConfig:
    delta_var: float = 0.5
    delta_dist: float = 1.5
    gamma_var: float = 1.0
    gamma_dist: float = 1.0
    gamma_reg: float = 0.001
    feature_weight: float = 0.5
    use_direction: bool = True


def mtml_loss(embedding, direction, voxel_xyz, instance_index, num_instances, cfg: LossConfig) -> dict:
    """Loss of one scene over its instance voxels.

    embedding [M, D], direction [M, 3], voxel_xyz [M, 3] (voxel units), instance_index int64 [M] in [0, K).
    Returns {"loss", "feat", "var", "dist", "reg", "dir"} scalars.
    """
    feat = discriminative_loss(
        embedding, instance_index, num_instances,
        cfg.delta_var, cfg.delta_dist, cfg.gamma_var, cfg.gamma_dist, cfg.gamma_reg,
    )
    if cfg.use_direction:
        l_dir = directional_loss(direction, voxel_xyz, instance_index, num_instances)
        total = l_dir + cfg.feature_weight * feat["loss"]
    else:
        l_dir = direction.sum() * 0.0
        total = feat["loss"]
    return {"loss": total, "feat": feat["loss"], "var": feat["var"], "dist": feat["dist"],
            "reg": feat["reg"], "dir": l_dir}
