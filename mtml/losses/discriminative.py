"""The discriminative feature-embedding loss of De Brabandere et al. (MTML eq. 1).

L_var pulls each voxel's embedding to within delta_var of its instance mean, L_dist pushes instance means
at least 2 * delta_dist apart, L_reg keeps the means near the origin.
"""

from __future__ import annotations

import torch


def instance_means(values: torch.Tensor, instance_index: torch.Tensor, num_instances: int) -> torch.Tensor:
    """Mean of ``values`` [M, D] per instance; ``instance_index`` int64 [M] in [0, K). Returns [K, D]."""
    sums = values.new_zeros(num_instances, values.shape[1]).index_add_(0, instance_index, values)
    counts = torch.bincount(instance_index, minlength=num_instances).clamp_min(1).to(values.dtype)
    return sums / counts[:, None]


def discriminative_loss(
    embedding: torch.Tensor,
    instance_index: torch.Tensor,
    num_instances: int,
    delta_var: float = 0.5,
    delta_dist: float = 1.5,
    gamma_var: float = 1.0,
    gamma_dist: float = 1.0,
    gamma_reg: float = 0.001,
) -> dict:
    """Discriminative loss of one scene.

    embedding:      [M, D] embeddings of the voxels that belong to an instance.
    instance_index: int64 [M], the voxel's instance as a dense index in [0, num_instances).
    Returns {"loss", "var", "dist", "reg"} scalars; all zero when there is no instance.
    """
    zero = embedding.sum() * 0.0
    if num_instances == 0:
        return {"loss": zero, "var": zero, "dist": zero, "reg": zero}
    means = instance_means(embedding, instance_index, num_instances)
    counts = torch.bincount(instance_index, minlength=num_instances).clamp_min(1).to(embedding.dtype)
    pull = (torch.norm(embedding - means[instance_index], dim=1) - delta_var).clamp_min(0).square()
    l_var = (torch.zeros_like(counts).index_add_(0, instance_index, pull) / counts).mean()
    if num_instances > 1:
        pair_dist = torch.cdist(means, means)
        off_diag = ~torch.eye(num_instances, dtype=torch.bool, device=embedding.device)
        l_dist = (2 * delta_dist - pair_dist[off_diag]).clamp_min(0).square().mean()
    else:
        l_dist = zero
    l_reg = torch.norm(means, dim=1).mean()
    loss = gamma_var * l_var + gamma_dist * l_dist + gamma_reg * l_reg
    return {"loss": loss, "var": l_var, "dist": l_dist, "reg": l_reg}
