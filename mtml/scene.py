"""The two types every stage passes on: a ``Scene`` (points) and a ``VoxelGrid`` (its voxels).

Units: coordinates in metres; voxel indices are integer cells of ``voxel_size`` metres counted from
``origin``. Labels are integer semantic class ids; instance ids are integers with -1 meaning "no instance".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

NO_INSTANCE = -1


@dataclass
class Scene:
    """A point cloud (or mesh vertices) with optional per-point annotations.

    points:    float32 [N, 3], metres.
    colors:    uint8 [N, 3] RGB, or None.
    labels:    int64 [N] semantic class ids, or None.
    instances: int64 [N] instance ids (-1 = none), or None.
    name:      short name used for output files (e.g. the PLY's stem).
    source:    where it came from (a path), for error messages.
    faces:     int64 [F, 3] triangle vertex indices when read from a mesh, else None (kept for export).
    """

    points: np.ndarray
    colors: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    instances: Optional[np.ndarray] = None
    name: str = "scene"
    source: str = ""
    faces: Optional[np.ndarray] = None

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])


@dataclass
class VoxelGrid:
    """The occupied cells of a regular grid and the map from points to cells.

    shape:          (X, Y, Z) grid size in voxels.
    origin:         float64 [3], metres: the min corner of voxel (0, 0, 0).
    voxel_size:     metres per voxel edge.
    coords:         int64 [V, 3] indices of the occupied voxels (unique, sorted).
    point_to_voxel: int64 [N] row of ``coords`` holding each input point.
    labels:         int64 [V] majority semantic label of each voxel's points, or None.
    instances:      int64 [V] majority instance id of each voxel's points (-1 = none), or None.
    colors:         float32 [V, 3] mean colour in [0, 1], or None.
    """

    shape: tuple
    origin: np.ndarray
    voxel_size: float
    coords: np.ndarray
    point_to_voxel: np.ndarray
    labels: Optional[np.ndarray] = None
    instances: Optional[np.ndarray] = None
    colors: Optional[np.ndarray] = None
    extra: dict = field(default_factory=dict)

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])
