"""Instance proposals from the embedding (mean-shift at several bandwidths, split by connected components)
and their score (direction coherency + feature coherency + size prior), all vectorised over proposals."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from mtml.cluster.components import connected_components


def class_size_prior(grids: Iterable, stuff_classes: Sequence[int]) -> dict:
    """Median voxel count of the instances of each thing class over ground-truth grids: label -> voxels.

    grids: VoxelGrids with ``labels`` and ``instances``. Used by ``proposal_scores`` as the typical size.
    """
    counts: dict = {}
    for grid in grids:
        keep = (grid.instances >= 0) & ~np.isin(grid.labels, np.asarray(stuff_classes))
        inst, n = np.unique(grid.instances[keep], return_counts=True)
        for i, c in zip(inst, n):
            label = int(np.bincount(grid.labels[keep][grid.instances[keep] == i]).argmax())
            counts.setdefault(label, []).append(int(c))
    return {label: float(np.median(v)) for label, v in sorted(counts.items())}


def mean_shift_proposals(
    coords: np.ndarray,
    labels: np.ndarray,
    embedding: np.ndarray,
    bandwidths: Sequence[float],
    min_voxels: int,
    seeds: str = "bins",
    class_agnostic: bool = False,
) -> list[np.ndarray]:
    """Mean-shift clusters of ``embedding`` at each bandwidth, each split into spatially connected pieces of
    one semantic label. Identical voxel sets found at several bandwidths are kept once.

    coords int64 [M, 3], labels int64 [M], embedding float32 [M, D]. Returns int64 row arrays into the M voxels,
    each with at least ``min_voxels`` voxels. ``seeds``: "bins" (one mean-shift seed per occupied bandwidth cell,
    several times faster) or "all" (every voxel a seed). ``class_agnostic``: also propose each cluster's
    connected pieces regardless of label, so that an object whose voxels the semantic head labels with two
    classes is still proposed whole.
    """
    from mtml.cluster.meanshift import mean_shift  # the one place the pipeline calls mean-shift

    proposals, seen = [], set()
    if len(coords) == 0:
        return proposals
    label_ids, label_index = np.unique(labels, return_inverse=True)
    for bw in bandwidths:
        cluster, _ = mean_shift(embedding, float(bw), seeds="bins" if seeds == "bins" else None)
        cluster = np.asarray(cluster.cpu() if hasattr(cluster, "cpu") else cluster, dtype=np.int64)
        groupings = [cluster * len(label_ids) + label_index] + ([cluster] if class_agnostic else [])
        for group in groupings:
            comp = connected_components(coords, group)
            order = np.argsort(comp, kind="stable")
            bounds = np.searchsorted(comp[order], np.arange(comp.max() + 2))
            for c in range(len(bounds) - 1):
                rows = order[bounds[c]:bounds[c + 1]]
                if len(rows) < min_voxels:
                    continue
                key = rows.tobytes()
                if key not in seen:
                    seen.add(key)
                    proposals.append(rows)
    return proposals


def proposal_scores(
    proposals: list[np.ndarray],
    voxel_xyz: np.ndarray,
    embedding: np.ndarray,
    direction: np.ndarray | None,
    feature_threshold: float,
    size_prior_voxels: int,
    weights: Sequence[float] = (1.0, 1.0, 1.0),
    labels: np.ndarray | None = None,
    class_sizes: Mapping[int, float] | None = None,
    size_sigma: float = 0.4,
) -> dict:
    """Score each proposal; every term lies in [0, 1].

    direction: mean of (1 + cos) / 2 between the predicted direction [M, 3] and the voxel -> proposal-centre
               vector (skipped when ``direction`` is None, e.g. for a feature-embedding-only model).
    feature:   share of the proposal's embeddings within ``feature_threshold`` of their mean.
    size:      min(1, size / size_prior_voxels): tiny fragments score low; or, with ``class_sizes`` (label -> typical
               voxel count) and ``labels`` int64 [P] (each proposal's label), exp(-(ln(size / typical))^2 /
               (2 size_sigma^2)): fragments and merged neighbours (twice the typical size) both score low.
    The score is the weighted mean of the terms (``weights``: direction, feature, size).
    Returns {"score": [P], "direction": [P] or None, "feature": [P], "size": [P]} float64 arrays.
    """
    if not proposals:
        empty = np.zeros(0)
        return {"score": empty, "direction": None, "feature": empty, "size": empty}
    sizes = np.asarray([len(p) for p in proposals], dtype=np.float64)
    owner = np.repeat(np.arange(len(proposals)), sizes.astype(np.int64))
    rows = np.concatenate(proposals)

    def per_proposal_mean(values: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(owner, values[:, d], len(proposals)) for d in range(values.shape[1])], 1) / sizes[:, None]

    emb = embedding[rows].astype(np.float64)
    emb_mean = per_proposal_mean(emb)
    within = np.linalg.norm(emb - emb_mean[owner], axis=1) <= feature_threshold
    feature = np.bincount(owner, within.astype(np.float64), len(proposals)) / sizes
    size = np.minimum(1.0, sizes / float(size_prior_voxels))
    if class_sizes and labels is not None:
        typical = np.asarray([class_sizes.get(int(lab), np.nan) for lab in labels], dtype=np.float64)
        known = np.isfinite(typical)
        size[known] = np.exp(-0.5 * (np.log(sizes[known] / typical[known]) / size_sigma) ** 2)
    terms, term_weights = [feature, size], list(weights[1:])
    dir_score = None
    if direction is not None:
        xyz = voxel_xyz[rows].astype(np.float64)
        to_center = per_proposal_mean(xyz)[owner] - xyz
        to_center /= np.maximum(np.linalg.norm(to_center, axis=1, keepdims=True), 1e-6)
        pred = direction[rows].astype(np.float64)
        pred /= np.maximum(np.linalg.norm(pred, axis=1, keepdims=True), 1e-6)
        cos = (pred * to_center).sum(axis=1)
        dir_score = np.bincount(owner, (1.0 + cos) / 2.0, len(proposals)) / sizes
        terms.insert(0, dir_score)
        term_weights.insert(0, weights[0])
    score = np.average(np.stack(terms), axis=0, weights=np.asarray(term_weights, dtype=np.float64))
    return {"score": score, "direction": dir_score, "feature": feature, "size": size}
