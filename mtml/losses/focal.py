"""Cross-entropy, focal and class-balanced focal losses for per-voxel classification (Lin et al.;
the class-balanced variant of Rozenberszki et al., "C-Focal")."""

from __future__ import annotations

from typing import Optional

import torch
from torch.nn import functional as F


def class_balanced_alpha(class_counts: torch.Tensor) -> torch.Tensor:
    """The C-Focal class weights alpha_i = log n_i / sum_j log n_j, scaled by the number of classes C so that
    they average 1 (a constant factor, which keeps the loss on the scale of plain cross-entropy).

    class_counts: float/int [C] training voxels per class; classes never seen count as 2 (log 2 > 0), so
    every class keeps a positive weight. Returns float32 [C].
    """
    n = torch.clamp(torch.as_tensor(class_counts, dtype=torch.float64), min=2.0)
    alpha = torch.log(n) / torch.log(n).sum()
    return (alpha * len(n)).float()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean over voxels of -alpha_t (1 - p_t)^gamma log p_t.

    logits [M, C], target int64 [M] in [0, C), alpha float [C] or None (all 1). gamma = 0 and no alpha
    give plain cross-entropy. Returns a scalar (0 for M = 0).
    """
    if target.numel() == 0:
        return logits.sum() * 0.0
    log_p = F.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
    loss = -log_p
    if gamma:
        loss = loss * (1.0 - log_p.exp()).clamp(min=0.0) ** gamma
    if alpha is not None:
        loss = loss * alpha.to(loss.device)[target]
    return loss.mean()
