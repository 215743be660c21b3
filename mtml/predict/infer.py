"""Inference on one scene: voxelize -> network (all heads, one forward) -> semantic labels -> clustering,
with per-stage timings."""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

import numpy as np
import torch

from mtml.cluster.pipeline import ClusterConfig, segment_instances
from mtml.data.dataset import network_input
from mtml.data.voxelize import point_labels_at_floor, voxelize
from mtml.model.instance_classifier import instance_descriptors, relabel_instances
from mtml.model.model import MTMLNet
from mtml.model.proposal_scorer import proposal_features
from mtml.predict.voting import majority_labels, relabel_by_points, view_grid, voting_views
from mtml.scene import Instances, ReferringPrediction, Scene, SceneResult, VoxelGrid, VoxelPredictions


@torch.no_grad()
def network_outputs(model: MTMLNet, grid: VoxelGrid, device: str = "cpu") -> dict:
    """One forward pass of the network on a grid: every head's output at the occupied voxels (torch tensors
    [V, D] in the order of grid.coords, see ``MTMLNet.forward``), to share between ``predict_voxels`` and
    ``refer_voxels``."""
    x = network_input(grid, model.cfg)[None].to(device)
    return model(x, torch.from_numpy(grid.coords).to(device))


@torch.no_grad()
def predict_voxels(model: MTMLNet, grid: VoxelGrid, device: str = "cpu", outputs: Optional[dict] = None) -> VoxelPredictions:
    """All heads at a grid's occupied voxels (see ``VoxelPredictions``); runs the network unless its
    ``outputs`` (``network_outputs``) are given."""
    out = network_outputs(model, grid, device) if outputs is None else outputs
    labels = features = probabilities = None
    if "semantic" in out:
        probabilities = model.semantic_head.logits(out["semantic"]).softmax(dim=1).float().cpu().numpy()
        labels = np.asarray(model.cfg.channel_ids(), dtype=np.int64)[probabilities.argmax(axis=1)]
        features = out["semantic"].float().cpu().numpy()
    return VoxelPredictions(out["embedding"].float().cpu().numpy(), out["direction"].float().cpu().numpy(),
                            labels, features, probabilities)


def segment_grid(model: MTMLNet, scene: Scene, grid: VoxelGrid, cluster_cfg: ClusterConfig, device: str = "cpu",
                 use_given_labels: bool = True, outputs: Optional[dict] = None, vote_passes: int = 1,
                 max_voxels: Optional[int] = None) -> SceneResult:
    """Semantic labels and instances of an already voxelised scene. Timings (s): network (the heads' outputs; the
    forward pass too unless ``outputs`` are given), cluster, point_labels (the points' labels: the floor rules,
    ``point_labels_at_floor``, when ``cluster_cfg.floor_label`` is set).

    The instances are built on the scan's own labels when it has them and ``use_given_labels`` is set (or the
    model reads labels as input); otherwise on the semantic head's predictions. There, a model with a proposal
    scorer ranks the proposals with it (``learned_proposal_scores``), a model with an instance classifier
    corrects each instance's label (``classify_instances``), and the point labels are sharpened at the
    floor when ``cluster_cfg.floor_label`` is set. On given labels, ``cluster_cfg.class_agnostic_proposals`` is
    ignored, so that every instance keeps to one given label. ``outputs``: the network's outputs when the caller
    already ran it (``network_outputs``). ``vote_passes`` > 1: on predicted labels, each point's label is voted
    over that many turned, shifted and mirrored copies of the scan (``mtml.predict.voting``; ``max_voxels`` bounds the
    copies' grids).
    """
    given = grid.labels is not None and (use_given_labels or model.cfg.needs_labels)
    if vote_passes > 1 and not given:
        return segment_grid_voted(model, scene, grid, cluster_cfg, vote_passes, device, outputs, max_voxels)
    t0 = time.perf_counter()
    pred = predict_voxels(model, grid, device, outputs)
    t1 = time.perf_counter()
    if not given:
        if pred.labels is None:
            raise ValueError("this model has no semantic head: the scan needs a 'label' property")
        grid = dataclasses.replace(grid, labels=pred.labels)
    rescore = None
    if given:  # instances keep to the given labels: no proposal across two of them
        cluster_cfg = dataclasses.replace(cluster_cfg, class_agnostic_proposals=False)
    elif model.proposal_scorer is not None:
        rescore = learned_proposal_scores(model, grid, pred.probabilities)
    instances = segment_instances(grid, pred.embedding, pred.direction, cluster_cfg, rescore)
    if not given and model.instance_classifier is not None:
        instances, labels = classify_instances(model, grid, instances, pred.probabilities, cluster_cfg.stuff_classes)
        grid = dataclasses.replace(grid, labels=labels)
    t2 = time.perf_counter()
    if given and scene.labels is not None:
        point_labels = scene.labels
    elif not given and cluster_cfg.floor_label is not None:
        point_labels = point_labels_at_floor(scene.points, grid, grid.labels, cluster_cfg.floor_label,
                                             cluster_cfg.floor_tolerance, cluster_cfg.floor_foot_radius,
                                             cluster_cfg.floor_foot_offset, cluster_cfg.floor_foot_rise)
    else:
        point_labels = grid.labels[grid.point_to_voxel]
    t3 = time.perf_counter()
    return SceneResult(scene, grid, instances, point_labels, "given" if given else "predicted",
                       {"network": t1 - t0, "cluster": t2 - t1, "point_labels": t3 - t2}, pred)


def learned_proposal_scores(model: MTMLNet, grid: VoxelGrid, probabilities: np.ndarray):
    """The model's proposal scorer as ``segment_instances``' ``rescore``: (masks, terms) -> float [P], the predicted
    IoU of each proposal with its object. grid: with the predicted labels; probabilities float [V, C]."""
    head = model.proposal_scorer

    @torch.no_grad()
    def rescore(masks: list, terms: dict) -> np.ndarray:
        features = torch.from_numpy(proposal_features(grid, masks, probabilities, terms))
        return torch.sigmoid(head(features.to(next(head.parameters()).device))).cpu().numpy()

    return rescore


@torch.no_grad()
def classify_instances(model: MTMLNet, grid: VoxelGrid, instances: Instances, probabilities: np.ndarray,
                       stuff_classes) -> tuple[Instances, np.ndarray]:
    """The model's instance classifier on instances built on predicted labels: each instance and its voxels take
    the class it predicts (``mtml.model.instance_classifier``); instances it calls stuff are dropped.
    probabilities: float [V, C] the semantic head's class probabilities. Returns (instances, voxel labels [V])."""
    if len(instances) == 0:
        return instances, grid.labels
    head = model.instance_classifier
    descriptors = torch.from_numpy(instance_descriptors(grid, instances.masks, probabilities))
    channels = head(descriptors.to(next(head.parameters()).device)).argmax(dim=1).cpu().numpy()
    labels = np.asarray(model.cfg.channel_ids(), dtype=np.int64)[channels]
    return relabel_instances(instances, grid.labels, labels, stuff_classes)


def segment_scene(model: MTMLNet, scene: Scene, cluster_cfg: ClusterConfig, voxel_size: float = 0.1,
                  max_voxels: Optional[int] = None, device: str = "cpu", use_given_labels: bool = True,
                  vote_passes: int = 1) -> SceneResult:
    """Semantic labels and instances of one scene (see ``segment_grid``). Timings (s): voxelize, then
    ``segment_grid``'s."""
    t0 = time.perf_counter()
    grid = voxelize(scene, voxel_size, max_voxels=max_voxels)
    res = segment_grid(model, scene, grid, cluster_cfg, device, use_given_labels, vote_passes=vote_passes,
                       max_voxels=max_voxels)
    res.timings = {"voxelize": time.perf_counter() - t0 - sum(res.timings.values()), **res.timings}
    return res


def voxel_centres(grid: VoxelGrid) -> np.ndarray:
    """float32 [V, 3]: the centres of a grid's occupied voxels, metres."""
    return (grid.origin + (grid.coords + 0.5) * grid.voxel_size).astype(np.float32)


def encode_descriptions(encoder, descriptions: list[str], device: str = "cpu") -> tuple:
    """(words [S, L, D], word_mask bool [S, L], sentences [S, D]) of descriptions, from a text encoder."""
    words, mask, _ = encoder.encode_words(list(descriptions))
    sentences = encoder.encode_sentences(list(descriptions))
    # clones: frozen encoders may return inference-mode tensors, which autograd refuses to keep for backward
    return words.clone().to(device), mask.clone().to(device), sentences.clone().to(device)


def referring_superpoints(result: SceneResult) -> np.ndarray:
    """The superpoints the referring head runs on, from a scene's inference result: int64 [V] ids in [0, P) over
    the grid's voxels. Each instance is one superpoint; the voxels of no instance form one superpoint per semantic
    label (e.g. the floor)."""
    ids = result.instances.voxel_instance_ids(result.grid.num_voxels)
    rest = ids < 0
    if rest.any():
        labels = result.grid.labels if result.grid.labels is not None else np.zeros(result.grid.num_voxels, np.int64)
        ids[rest] = len(result.instances) + np.unique(labels[rest], return_inverse=True)[1]
    return np.unique(ids, return_inverse=True)[1].astype(np.int64)


@torch.no_grad()
def refer_voxels(model: MTMLNet, grid: VoxelGrid, text: tuple, device: str = "cpu", outputs: Optional[dict] = None,
                 superpoints: Optional[np.ndarray] = None) -> ReferringPrediction:
    """Masks of the objects S descriptions refer to, all from one backbone pass (``outputs`` when given).

    text: ``encode_descriptions``' (words, word_mask, sentences). superpoints: ``referring_superpoints`` of the
    grid, needed by a head that runs on superpoints. A voxel is in the mask when its probability is over 0.5;
    when no voxel is, the mask is the voxels at least half as likely as the most likely one, so every description
    gets an answer.
    """
    if model.referring_head is None:
        raise ValueError("this model has no referring head")
    if model.referring_head.cfg.superpoints and superpoints is None:
        raise ValueError("this referring head runs on superpoints: pass referring_superpoints(segment_grid(...))")
    out = network_outputs(model, grid, device) if outputs is None else outputs
    words, word_mask, sentences = text
    sp = None if superpoints is None else torch.from_numpy(np.asarray(superpoints, dtype=np.int64)).to(device)
    head_out = model.referring_head(model.referring_features(out), torch.from_numpy(voxel_centres(grid)).to(device),
                                    words, word_mask, sentences, sp)
    prob = torch.sigmoid(head_out["mask_logits"]).float().cpu().numpy()
    masks = referring_masks(prob)
    scores = np.array([float(p[m].mean()) for p, m in zip(prob, masks)])
    return ReferringPrediction(masks, scores, prob)


def referring_masks(prob: np.ndarray) -> np.ndarray:
    """Mask probabilities float [S, V] -> bool masks [S, V]: the voxels over 0.5, or, for a description with
    none, the voxels at least half as likely as its most likely one (every description gets an answer)."""
    masks = prob > 0.5
    empty = ~masks.any(axis=1)
    masks[empty] = prob[empty] >= 0.5 * prob[empty].max(axis=1, keepdims=True)
    return masks


def segment_grid_voted(model, scene: Scene, grid: VoxelGrid, cluster_cfg: ClusterConfig, passes: int,
                       device: str = "cpu", outputs: dict | None = None, max_voxels: int | None = None):
    """``mtml.predict.infer.segment_grid`` on predicted labels, voted over ``passes`` copies of the scan (module docstring).

    scene, grid: the scan as given and its grid (the first copy; ``outputs``: the network's outputs on it, when
    the caller already ran it). Returns a ``SceneResult`` over ``grid``: the first copy's instances and network
    outputs, the voted point labels, and the timings summed over the copies.
    """
    views = voting_views(passes)
    first = segment_grid(model, scene, grid, cluster_cfg, device, use_given_labels=False, outputs=outputs)
    if passes == 1:
        return first
    label_sets = [first.point_labels]
    timings = dict(first.timings)
    for view in views[1:]:
        t0 = time.perf_counter()
        copy, copy_grid = view_grid(scene, view, grid.voxel_size, max_voxels)
        timings["voting_voxelize"] = timings.get("voting_voxelize", 0.0) + time.perf_counter() - t0
        res = segment_grid(model, copy, copy_grid, cluster_cfg, device, use_given_labels=False)
        for key, seconds in res.timings.items():
            timings[key] = timings[key] + seconds
        label_sets.append(res.point_labels)
    point_labels = majority_labels(np.stack(label_sets))
    instances, voxel_labels = relabel_by_points(first.instances, first.grid, point_labels, cluster_cfg.stuff_classes)
    return dataclasses.replace(first, grid=dataclasses.replace(first.grid, labels=voxel_labels), instances=instances,
                               point_labels=point_labels, timings=timings)
