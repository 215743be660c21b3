"""Connected components of voxel sets (26-connectivity), and the connected-component baselines."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

_FULL_3x3x3 = np.ones((3, 3, 3), dtype=bool)


def connected_components(coords: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Split voxels into spatially connected pieces, never joining voxels of different groups.

    coords: int64 [M, 3] voxel indices (unique); groups: int64 [M] group of each voxel (e.g. a cluster id
    combined with the semantic label). Returns int64 [M] component ids in [0, C), dense, numbered group by
    group (in sorted group order). Two voxels share a component iff they are in the same group and
    linked by a chain of 26-neighbours of that group.
    """
    if len(coords) == 0:
        return np.zeros(0, dtype=np.int64)
    out = np.empty(len(coords), dtype=np.int64)
    next_id = 0
    group_ids, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(group_ids) + 1))
    for g in range(len(group_ids)):
        rows = order[bounds[g]:bounds[g + 1]]
        c = coords[rows]
        c = c - c.min(axis=0)
        mask = np.zeros(tuple(c.max(axis=0) + 1), dtype=bool)
        mask[c[:, 0], c[:, 1], c[:, 2]] = True
        labelled, n = ndimage.label(mask, structure=_FULL_3x3x3)
        out[rows] = labelled[c[:, 0], c[:, 1], c[:, 2]] - 1 + next_id
        next_id += n
    return out


def semantic_components(coords: np.ndarray, labels: np.ndarray, thing_classes: Sequence[int]) -> list[np.ndarray]:
    """The "connected components" baseline: each connected region of one thing class is an instance.

    coords int64 [V, 3], labels int64 [V]. Returns a list of int64 row-index arrays into coords.
    """
    rows = np.nonzero(np.isin(labels, np.asarray(thing_classes)))[0]
    comp = connected_components(coords[rows], labels[rows])
    return [rows[comp == c] for c in range(int(comp.max()) + 1)] if len(rows) else []


def semantic_segments(labels: np.ndarray, thing_classes: Sequence[int]) -> list[np.ndarray]:
    """The "segment as instance" baseline: all voxels of one thing class form one instance.

    labels int64 [V]. Returns a list of int64 row-index arrays.
    """
    return [np.nonzero(labels == c)[0] for c in thing_classes if (labels == c).any()]
