"""Losses of the LESS referring head (Liu et al., NeurIPS 2024), binary-mask supervision only.

With mask logits M_i over the N voxels of a scene, sigma the sigmoid, p_i = sigma(M_i), target y_i in {0, 1}:

* L_bce  = 1/N sum_i -[w y_i log p_i + (1 - y_i) log(1 - p_i)], target voxels weighted ``pos_weight`` w = 20 (as the
  authors' released code: the referred object is a small share of a scan's voxels);
* L_dice = 1 - (2 sum_i p_i y_i + 1) / (sum_i p_i + sum_i y_i + 1) (soft Dice, smoothed by 1 as in Mask2Former);
* L_area = 1/N sum_i sigma(M_i) (the paper's area regularisation: the mean foreground probability, which pushes the
  network to the smallest mask that still satisfies the mask loss; weight 1 in the authors' code);
* L_p2p  = -log( 1/|P| sum_{i in P} e_i / (e_i + sum_{j in N} exp(P_i . N_j / tau)) ),  e_i = exp(P_i . P_avg / tau),
  on L2-normalised per-voxel features: P the target voxels, N the others, P_avg the mean of the (normalised)
  target features, tau = 0.05, weight 0.05. The paper prints the bracket without the log,
  L_p2p = -1/|P| sum_i exp(.)/(exp(.) + sum_j exp(.)); the authors' released code takes -log of that mean, which
  has the same minimiser and keeps useful gradients while the ratio is tiny (at the start with |N| ~ 10^5 voxels).
  We follow the code. To stay O(V k) instead of O(|P| |N|), the anchors i are ``num_samples`` target voxels and the
  negative sum is estimated from ``num_samples`` background voxels scaled by |N| / k (unbiased for the full sum);
  P_avg uses all target voxels.

Total (``referring_loss``): bce_weight L_bce + dice_weight L_dice + area_weight L_area + p2p_weight L_p2p, with the
weights and switches of ``ReferringConfig`` (1, 1, 1, 0.05; Dice is our addition, absent from the authors' code).
Every function accepts one description ([V] logits) or a batch ([S, V]) and averages over descriptions.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from mtml.model.referring import ReferringConfig


def _rows(logits: torch.Tensor, target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[V] or [S, V] -> [S, V] float logits (and float target of the same shape)."""
    logits = logits[None] if logits.dim() == 1 else logits
    if target is None:
        return logits.float(), None
    target = target[None] if target.dim() == 1 else target
    if target.shape != logits.shape:
        raise ValueError(f"referring loss: logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    return logits.float(), target.to(logits.dtype)


def bce_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float = 20.0) -> torch.Tensor:
    """Binary cross-entropy of mask logits [V] or [S, V] against bool target (same shape), target voxels weighted
    ``pos_weight``; mean over voxels, then over descriptions. Scalar."""
    logits, y = _rows(logits, target)
    pw = torch.tensor(float(pos_weight), device=logits.device, dtype=logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, y, pos_weight=pw)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss 1 - (2 sum p y + smooth) / (sum p + sum y + smooth) per description, p = sigmoid(logits);
    logits [V] or [S, V], bool target of the same shape. Mean over descriptions; scalar in [0, 1)."""
    logits, y = _rows(logits, target)
    p = logits.sigmoid()
    dice = (2 * (p * y).sum(1) + smooth) / (p.sum(1) + y.sum(1) + smooth)
    return (1 - dice).mean()


def mask_loss(logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 1.0, dice_weight: float = 1.0,
              pos_weight: float = 20.0) -> torch.Tensor:
    """The segmentation loss bce_weight * L_bce + dice_weight * L_dice (defaults 1 and 1, target weight 20) of mask
    logits [V] or [S, V] against a bool target of the same shape. Scalar."""
    return bce_weight * bce_loss(logits, target, pos_weight) + dice_weight * dice_loss(logits, target)


def area_loss(logits: torch.Tensor) -> torch.Tensor:
    """L_area: the mean sigmoid of mask logits [V] or [S, V] (over voxels, then descriptions). Scalar in (0, 1)."""
    return _rows(logits)[0].sigmoid().mean()


def point_to_point_loss(point_embed: torch.Tensor, target: torch.Tensor, temperature: float = 0.05,
                        num_samples: int = 256, generator: torch.Generator | None = None) -> torch.Tensor:
    """L_p2p (module docstring) of per-voxel features [V, D] or [S, V, D] for bool targets [V] or [S, V].

    Features are L2-normalised; per description, up to ``num_samples`` target voxels are the anchors and up to
    ``num_samples`` background voxels estimate the negative sum (scaled by |N| / k); draws use ``generator``. Cost
    O(V D + k^2 D). A description with no target or no background voxel contributes 0. Mean over descriptions.
    """
    emb = point_embed[None] if point_embed.dim() == 2 else point_embed
    tgt = (target[None] if target.dim() == 1 else target).bool()
    if tgt.shape != emb.shape[:2]:
        raise ValueError(f"p2p loss: point_embed {tuple(point_embed.shape)} and target {tuple(target.shape)} differ")
    losses = []
    for e, y in zip(emb, tgt):
        pos_idx, neg_idx = y.nonzero()[:, 0], (~y).nonzero()[:, 0]
        if not len(pos_idx) or not len(neg_idx):
            losses.append(e.sum() * 0.0)
            continue
        e = F.normalize(e.float(), dim=1)
        pos = e[pos_idx]
        center = pos.mean(0)
        anchors = pos[_sample(len(pos_idx), num_samples, generator, e.device)]
        negatives = e[neg_idx[_sample(len(neg_idx), num_samples, generator, e.device)]]
        to_center = anchors @ center / temperature  # [k_p]
        to_neg = torch.logsumexp(anchors @ negatives.T / temperature, dim=1) + math.log(len(neg_idx) / len(negatives))
        log_ratio = to_center - torch.logaddexp(to_center, to_neg)  # log of each anchor's ratio
        losses.append(math.log(len(anchors)) - torch.logsumexp(log_ratio, dim=0))  # -log(mean ratio)
    return torch.stack(losses).mean()


def _sample(n: int, k: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """min(n, k) distinct indices in [0, n), uniformly at random (all of them, in order, when n <= k)."""
    if n <= k:
        return torch.arange(n, device=device)
    return torch.randperm(n, generator=generator)[:k].to(device)


def referring_loss(outputs: dict, target: torch.Tensor, cfg: ReferringConfig | None = None,
                   generator: torch.Generator | None = None) -> dict:
    """The LESS training loss of a ``ReferringHead`` output for bool targets [V] or [S, V] (one per description).

    Returns {"loss": weighted total, "bce", "dice", "area", "p2p": the unweighted parts}, scalars. A part switched
    off in ``cfg`` (``use_area``, ``use_p2p``, or a zero weight) is not computed and reported as 0.

    A head on superpoints (outputs with "superpoints") is trained on them, as LESS: each superpoint counts once,
    whatever its voxel count, and its target is whether most of its voxels are the object's.
    """
    cfg = cfg or ReferringConfig()
    logits = outputs["mask_logits"]
    if "superpoints" in outputs:
        target, logits = superpoint_targets(target, outputs["superpoints"]), outputs["superpoint_mask_logits"]
        outputs = {**outputs, "point_embed": outputs["superpoint_embed"]}
    zero = logits.sum() * 0.0
    parts = {
        "bce": bce_loss(logits, target, cfg.pos_weight) if cfg.bce_weight else zero,
        "dice": dice_loss(logits, target) if cfg.dice_weight else zero,
        "area": area_loss(logits) if cfg.use_area and cfg.area_weight else zero,
        "p2p": point_to_point_loss(outputs["point_embed"], target, cfg.p2p_temperature, cfg.p2p_samples, generator)
        if cfg.use_p2p and cfg.p2p_weight else zero,
    }
    total = (cfg.bce_weight * parts["bce"] + cfg.dice_weight * parts["dice"]
             + (cfg.area_weight if cfg.use_area else 0.0) * parts["area"]
             + (cfg.p2p_weight if cfg.use_p2p else 0.0) * parts["p2p"])
    return {"loss": total, **parts}


def superpoint_targets(target: torch.Tensor, superpoints: torch.Tensor) -> torch.Tensor:
    """Voxel targets bool [V] or [S, V] and superpoint ids int64 [V] in [0, P) -> bool [P] or [S, P]: the
    superpoints more than half of whose voxels are in the target."""
    p = int(superpoints.max()) + 1
    t = target.float().reshape(-1, target.shape[-1])
    inside = torch.zeros(t.shape[0], p, dtype=t.dtype, device=t.device).index_add_(1, superpoints, t)
    counts = torch.bincount(superpoints, minlength=p).to(t.dtype)
    return (inside > 0.5 * counts).reshape(*target.shape[:-1], p)
