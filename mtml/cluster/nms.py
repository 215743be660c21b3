"""Non-maximum suppression over voxel-set proposals."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def membership_matrix(proposals: list[np.ndarray], num_voxels: int) -> sparse.csr_matrix:
    """Sparse 0/1 matrix [P, V]: row p marks the voxels of proposal p (int64 row-index arrays)."""
    if not proposals:
        return sparse.csr_matrix((0, num_voxels), dtype=np.int32)
    rows = np.repeat(np.arange(len(proposals)), [len(p) for p in proposals])
    cols = np.concatenate(proposals)
    return sparse.csr_matrix((np.ones(len(cols), dtype=np.int32), (rows, cols)), shape=(len(proposals), num_voxels))


def pairwise_iou(proposals: list[np.ndarray], num_voxels: int) -> np.ndarray:
    """IoU [P, P] between voxel sets, via one sparse product (no P x V dense matrix)."""
    m = membership_matrix(proposals, num_voxels)
    inter = (m @ m.T).toarray().astype(np.float64)
    sizes = np.asarray([len(p) for p in proposals], dtype=np.float64)
    union = sizes[:, None] + sizes[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(proposals: list[np.ndarray], scores: np.ndarray, num_voxels: int, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: keep the best-scored proposal, drop those overlapping it by IoU > threshold, repeat.

    Returns int64 indices of the kept proposals, best first.
    """
    if not proposals:
        return np.zeros(0, dtype=np.int64)
    iou = pairwise_iou(proposals, num_voxels)
    order = np.argsort(-np.asarray(scores), kind="stable")
    suppressed = np.zeros(len(proposals), dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)
