"""From per-voxel network outputs to instances: proposals -> scores -> NMS -> one coherent labelling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from mtml.cluster.components import semantic_components, semantic_segments
from mtml.cluster.nms import nms
from mtml.cluster.proposals import mean_shift_proposals, proposal_scores
from mtml.data.voxelize import majority_per_group
from mtml.scene import Instances, VoxelGrid


@dataclass
class ClusterConfig:
    """Post-processing settings (embedding units are those of the discriminative loss)."""

    bandwidths: Sequence[float] = (0.6, 1.0, 1.5)
    seeds: str = "bins"  # mean-shift seeds: "bins" (one per occupied bandwidth cell) or "all" (every voxel)
    feature_threshold: float = 1.0
    min_voxels: int = 4
    size_prior_voxels: int = 20
    nms_iou: float = 0.3
    score_weights: Sequence[float] = (1.0, 1.0, 1.0)  # direction, feature, size terms of the proposal score
    # label -> typical instance voxels (empty: a plain size floor); "auto": mtml-train measures it on its
    # training scenes (median per class) and stores the numbers in the checkpoint
    class_sizes: dict | str = field(default_factory=dict)
    size_sigma: float = 0.4  # width of the class size prior, in ln units
    exclusive: bool = True
    use_direction: bool = True
    stuff_classes: Sequence[int] = (0,)
    # The floor rules below are the toy benchmark's (boxes on a flat floor): off here, switched on and set only by
    # the toy config bases (configs/_base_/cluster/toy.yaml, toy_floor.yaml).
    # predicted labels only: points within floor_tolerance (m) of the floor height are floor, and the object points
    # of floor voxels take the nearest object's label (``mtml.data.voxelize.point_labels_at_floor``); None: off
    floor_label: Optional[int] = None
    floor_tolerance: float = 0.0
    # with floor_label: a floor-height point on the plane of an object's side (fitted to the object points just
    # above the floor within this horizontal radius, m), or at most floor_foot_offset (m) plus floor_foot_rise times
    # its height above the floor outside it, is the foot of that side and takes its label
    # (``mtml.data.voxelize.point_labels_at_floor``); radius 0: off
    floor_foot_radius: float = 0.0
    floor_foot_offset: float = 0.0
    floor_foot_rise: float = 0.0
    # also propose mean-shift clusters whole across predicted labels (``mean_shift_proposals``), for a learned
    # proposal score (``mtml.model.proposal_scorer``) to pick among; ``mtml.predict.infer.segment_grid`` ignores it on
    # given labels
    class_agnostic_proposals: bool = False


def _finalise(masks: list[np.ndarray], scores: np.ndarray, labels: np.ndarray, cfg: ClusterConfig,
              num_voxels: int) -> Instances:
    """NMS, optional exclusive assignment (each voxel to its best instance) and majority labels."""
    keep = nms(masks, scores, num_voxels, cfg.nms_iou)
    claimed = np.zeros(num_voxels, dtype=bool)
    out_masks, out_scores = [], []
    for i in keep:
        rows = masks[i]
        if cfg.exclusive:
            rows = rows[~claimed[rows]]
            if len(rows) < cfg.min_voxels:
                continue
            claimed[rows] = True
        out_masks.append(rows)
        out_scores.append(scores[i])
    if not out_masks:
        return Instances()
    owner = np.repeat(np.arange(len(out_masks)), [len(m) for m in out_masks])
    out_labels = majority_per_group(owner, labels[np.concatenate(out_masks)], len(out_masks))
    return Instances(out_masks, out_labels, np.asarray(out_scores, dtype=np.float64))


def proposal_pool(grid: VoxelGrid, embedding: np.ndarray, direction: np.ndarray | None,
                  cfg: ClusterConfig = ClusterConfig()) -> tuple[list, dict]:
    """Every instance proposal of one grid and its hand-made score terms, before NMS.

    grid: voxels with semantic ``labels`` [V]; embedding float32 [V, D] and direction float32 [V, 3] (None, or
    ignored when cfg.use_direction is False) for every occupied voxel. Stuff voxels (floor) are never part of a
    proposal. Returns (masks: P int64 row arrays into grid.coords, terms: ``proposal_scores``' dict of [P]
    arrays, "score" their weighted mean).
    """
    things = np.nonzero(~np.isin(grid.labels, np.asarray(cfg.stuff_classes)))[0]
    coords = grid.coords[things]
    proposals = mean_shift_proposals(coords, grid.labels[things], embedding[things], cfg.bandwidths, cfg.min_voxels,
                                     cfg.seeds, cfg.class_agnostic_proposals)
    use_dir = direction if (cfg.use_direction and direction is not None) else None
    proposal_labels = None
    if cfg.class_sizes and proposals:
        owner = np.repeat(np.arange(len(proposals)), [len(p) for p in proposals])
        proposal_labels = majority_per_group(owner, grid.labels[things][np.concatenate(proposals)], len(proposals))
    terms = proposal_scores(
        proposals, coords.astype(np.float64), embedding[things],
        None if use_dir is None else use_dir[things], cfg.feature_threshold, cfg.size_prior_voxels,
        cfg.score_weights, proposal_labels, {int(k): v for k, v in cfg.class_sizes.items()}, cfg.size_sigma,
    )
    return [things[p] for p in proposals], terms


def segment_instances(grid: VoxelGrid, embedding: np.ndarray, direction: np.ndarray | None,
                      cfg: ClusterConfig = ClusterConfig(),
                      rescore: Optional[Callable[[list, dict], np.ndarray]] = None) -> Instances:
    """MTML post-processing on one grid: ``proposal_pool``, then NMS and one label per instance.

    grid, embedding, direction: as ``proposal_pool``. ``rescore(masks, terms)``: a learned score in [0, 1] per
    proposal (float [P]) that replaces the hand-made one (``mtml.model.proposal_scorer``); None: terms["score"].
    """
    masks, terms = proposal_pool(grid, embedding, direction, cfg)
    scores = terms["score"] if rescore is None or not masks else np.asarray(rescore(masks, terms), dtype=np.float64)
    return _finalise(masks, scores, grid.labels, cfg, grid.num_voxels)


def baseline_instances(grid: VoxelGrid, method: str, thing_classes: Sequence[int]) -> Instances:
    """The paper's baselines on the semantic labels: "connected_components" or "segment_as_instance".

    Every instance gets score 1 (the baselines have no confidence).
    """
    if method == "connected_components":
        masks = semantic_components(grid.coords, grid.labels, thing_classes)
    elif method == "segment_as_instance":
        masks = semantic_segments(grid.labels, thing_classes)
    else:
        raise ValueError(f"unknown baseline {method!r}")
    labels = np.asarray([grid.labels[m[0]] for m in masks], dtype=np.int64)
    return Instances(masks, labels, np.ones(len(masks)))
