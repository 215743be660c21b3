"""Learned proposal scoring: a small MLP predicts how well each instance proposal covers one object.

MTML's hand-made score (direction and feature coherency, size prior) ranks the proposals that NMS keeps. On
plain scans the proposals come from predicted labels, and where the semantic head gives one box two classes, or
two touching boxes one class, the right proposal is often in the pool but loses to a wrong one: on toy scenes
800-849, the final instances cover 23 of 371 boxes with IoU below 0.8, while the pool (with the class-agnostic
proposals, ``ClusterConfig.class_agnostic_proposals``) has a proposal of IoU >= 0.8 for all but 4. This MLP
reads each proposal's mean class probabilities, its shape (``mtml.model.instance_classifier.instance_geometry``)
and the hand-made score terms, and predicts its IoU with the object most of its voxels belong to: the mask
scoring of two-stage instance segmentation (Mask Scoring R-CNN, SoftGroup). Its prediction replaces the
hand-made score before NMS. It trains on a frozen model (``train.task: score_proposals``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from mtml.model.instance_classifier import GEOMETRY_FEATURES, instance_descriptors
from mtml.scene import VoxelGrid

SCORE_TERMS = ("direction", "feature", "size", "score")
"""The hand-made score terms (``mtml.cluster.proposals.proposal_scores``) the scorer reads, in this order."""


def proposal_features(grid: VoxelGrid, masks: Sequence[np.ndarray], class_probabilities: np.ndarray,
                      terms: dict) -> np.ndarray:
    """float32 [P, C + GEOMETRY_FEATURES + len(SCORE_TERMS)]: each proposal's ``instance_descriptors`` (mean class
    probabilities over its voxels, shape) followed by its hand-made score terms (each in [0, 1]; a missing
    direction term, for a model without direction head, reads 0.5).

    masks: P int64 row arrays into grid.coords; class_probabilities float [V, C]; terms: ``proposal_scores``' dict.
    """
    columns = [np.full(len(masks), 0.5) if terms.get(name) is None else np.asarray(terms[name], dtype=np.float64)
               for name in SCORE_TERMS]
    return np.concatenate([instance_descriptors(grid, masks, class_probabilities),
                           np.stack(columns, axis=1).astype(np.float32)], axis=1)


def proposal_iou_targets(grid: VoxelGrid, masks: Sequence[np.ndarray]) -> np.ndarray:
    """float32 [P]: the voxel IoU of each proposal with the ground-truth instance (``grid.instances``) most of its
    voxels belong to; 0 for a proposal with no instance voxel."""
    instance_sizes = np.bincount(grid.instances[grid.instances >= 0]) if (grid.instances >= 0).any() else np.zeros(0)
    out = np.zeros(len(masks), dtype=np.float32)
    for k, rows in enumerate(masks):
        ids = grid.instances[rows]
        ids = ids[ids >= 0]
        if len(ids):
            counts = np.bincount(ids)
            best = int(counts.argmax())
            inter = counts[best]
            out[k] = inter / (len(rows) + instance_sizes[best] - inter)
    return out


class ProposalScorer(nn.Module):
    """MLP: proposal features [P, num_classes + GEOMETRY_FEATURES + len(SCORE_TERMS)] -> IoU logits [P] (the
    predicted IoU with its object is the sigmoid). The features are standardised first, with the mean and standard
    deviation of the training proposals (``set_feature_scale``; stored with the weights)."""

    def __init__(self, num_classes: int, hidden: int = 64):
        super().__init__()
        num_features = num_classes + GEOMETRY_FEATURES + len(SCORE_TERMS)
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_std", torch.ones(num_features))
        self.net = nn.Sequential(
            nn.Linear(num_features, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, 1),
        )

    def set_feature_scale(self, features: torch.Tensor) -> None:
        """Standardise with the mean and standard deviation (at least 1e-3) of ``features`` [N, F]; fewer than two
        rows leave the scale as it is."""
        if len(features) < 2:
            return
        with torch.no_grad():
            self.feature_mean.copy_(features.mean(dim=0))
            self.feature_std.copy_(features.std(dim=0).clamp_min(1e-3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.feature_mean) / self.feature_std).squeeze(-1)
