"""The joint objective: loss_dir + feature_weight * loss_feat (feature_weight = 0.5 in the authors' code) for the
instance heads, plus semantic_weight * the semantic head's loss. With ``use_direction=False`` it is the
"feature embedding only" ablation; ``instance=False`` trains the semantic head alone."""

from __future__ import annotations

from dataclasses import dataclass

from mtml.losses.directional import directional_loss
from mtml.losses.discriminative import discriminative_loss
from mtml.losses.focal import focal_loss
from mtml.losses.language import anchor_contrastive_loss


@dataclass
class LossConfig:
    delta_var: float = 0.5
    delta_dist: float = 1.5
    gamma_var: float = 1.0
    gamma_dist: float = 1.0
    gamma_reg: float = 0.001
    feature_weight: float = 0.5
    use_direction: bool = True
    instance: bool = True
    # semantic head: "none", "contrastive" (text-anchor pre-training), "ce", "focal", "cb_focal"
    semantic: str = "none"
    semantic_weight: float = 1.0
    focal_gamma: float = 2.0
    t_pos: float = 0.0
    t_neg: float = 0.6
    neg_weight: float = 1.0  # lambda
    num_negatives: int = 3

    def __post_init__(self):
        if self.semantic not in SEMANTIC_LOSSES:
            raise ValueError(f"unknown semantic loss {self.semantic!r} (one of {', '.join(SEMANTIC_LOSSES)})")


SEMANTIC_LOSSES = ("none", "contrastive", "ce", "focal", "cb_focal")


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


def semantic_loss(features, target, head, cfg: LossConfig, class_alpha=None) -> dict:
    """The semantic head's loss over voxels.

    features [M, D] (the head's output), target int64 [M] class channels, head: the model's SemanticHead
    (anchors, prototypes), class_alpha float [C] (C-Focal weights, needed for "cb_focal").
    Returns {"sem": scalar} plus the contrastive parts ("sem_pos", "sem_neg") for "contrastive".
    """
    if cfg.semantic == "contrastive":
        parts = anchor_contrastive_loss(features, target, head.anchors, cfg.t_pos, cfg.t_neg, cfg.neg_weight,
                                        cfg.num_negatives)
        return {"sem": parts["loss"], "sem_pos": parts["pos"], "sem_neg": parts["neg"]}
    gamma = 0.0 if cfg.semantic == "ce" else cfg.focal_gamma
    if cfg.semantic == "cb_focal" and class_alpha is None:
        raise ValueError("the cb_focal loss needs the class weights (class_alpha)")
    alpha = class_alpha if cfg.semantic == "cb_focal" else None
    return {"sem": focal_loss(head.logits(features), target, gamma, alpha)}


def total_loss(outputs: dict, sample, model, cfg: LossConfig, class_alpha=None) -> dict:
    """Every configured loss of one scene from the model's per-voxel outputs.

    outputs: {"embedding" [V, D], "direction" [V, 3], "semantic" [V, Ds]} at ``sample.coords`` (V voxels);
    sample: ``mtml.data.dataset.Sample``. Returns {"loss": the weighted sum, and each part}.
    """
    parts: dict = {}
    total = outputs["embedding"].sum() * 0.0
    if cfg.instance:
        rows = sample.rows
        inst = mtml_loss(outputs["embedding"][rows], outputs["direction"][rows], sample.coords[rows].float(),
                         sample.instance_index, sample.num_instances, cfg)
        total = total + inst.pop("loss")
        parts.update(inst)
    if cfg.semantic != "none":
        if model.semantic_head is None or sample.semantic is None:
            raise ValueError("a semantic loss needs a model with a semantic head and labelled scenes")
        labelled = sample.semantic >= 0
        sem = semantic_loss(outputs["semantic"][labelled], sample.semantic[labelled], model.semantic_head, cfg,
                            class_alpha)
        total = total + cfg.semantic_weight * sem["sem"]
        parts.update(sem)
    return {"loss": total, **parts}
