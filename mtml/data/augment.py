"""Training augmentation: rotations about the vertical axis, flips and sub-voxel shifts of the points.

Rotations are multiples of 90 degrees so that the dense grid keeps its footprint; the objects of the toy
benchmark already have arbitrary yaw, and the random sub-voxel shift re-draws the voxelisation aliasing.
"""

from __future__ import annotations

import numpy as np


def augment_points(points: np.ndarray, rng: np.random.Generator, voxel_size: float) -> np.ndarray:
    """Rotate by k*90 degrees about z, maybe mirror x, and shift by up to one voxel in x and y.

    points: float [N, 3] metres. Returns a new float32 [N, 3] array (same points, moved).
    """
    k = int(rng.integers(4))
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][k]
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)
    out = points.astype(np.float64) @ rot.T
    if rng.random() < 0.5:
        out[:, 0] = -out[:, 0]
    out[:, :2] += rng.uniform(0, voxel_size, size=2)
    return out.astype(np.float32)
