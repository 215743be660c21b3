"""Text-anchored contrastive pre-training loss (Rozenberszki et al., "Language-Grounded Indoor 3D Semantic
Segmentation in the Wild", eqs. 1-3).

With cosine distance d(a, b) = 1 - cos(a, b):
    L_pos = mean_i max(0, d(f_i, t_h(i)) - t_pos)                       (pull toward the own class anchor)
    L_neg = mean_i 1/|M| sum_{j in M_i} max(0, t_neg - d(f_i, t_j))     (push from |M| other anchors)
    L     = L_pos + lambda * L_neg
The paper prints eqs. 1-2 in terms of the cosine similarity, where the hinge directions read reversed; the
distance form is the one whose minimum is "feature on its anchor, away from the others", which is what the
text describes. Constants: t_pos = 0, t_neg = 0.6, lambda = 1, |M| = 3 drawn uniformly from the other classes.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.nn import functional as F


def sample_negatives(target: torch.Tensor, num_classes: int, num_negatives: int,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """For each voxel, ``num_negatives`` classes drawn uniformly from all classes except its own.

    target int64 [M] in [0, C). Returns int64 [M, num_negatives] (draws are independent, so a class may repeat).
    """
    offset = torch.randint(1, num_classes, (target.numel(), num_negatives), generator=generator, device=target.device)
    return (target[:, None] + offset) % num_classes


def anchor_contrastive_loss(features: torch.Tensor, target: torch.Tensor, anchors: torch.Tensor,
                            t_pos: float = 0.0, t_neg: float = 0.6, neg_weight: float = 1.0, num_negatives: int = 3,
                            generator: Optional[torch.Generator] = None) -> dict:
    """L_pos + neg_weight * L_neg of voxel features against the class anchors.

    features [M, D] (any scale), target int64 [M] in [0, C), anchors [C, D] text features (fixed).
    Returns {"loss", "pos", "neg"} scalars (zeros for M = 0).
    """
    if target.numel() == 0:
        zero = features.sum() * 0.0
        return {"loss": zero, "pos": zero, "neg": zero}
    f = F.normalize(features, dim=1)
    a = F.normalize(anchors.to(f.dtype), dim=1)
    d_pos = 1.0 - (f * a[target]).sum(1)
    negatives = sample_negatives(target, a.shape[0], num_negatives, generator)
    d_neg = 1.0 - torch.einsum("md,mkd->mk", f, a[negatives])
    pos = torch.clamp(d_pos - t_pos, min=0.0).mean()
    neg = torch.clamp(t_neg - d_neg, min=0.0).mean()
    return {"loss": pos + neg_weight * neg, "pos": pos, "neg": neg}
