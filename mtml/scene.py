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


@dataclass
class Instances:
    """Instances over the voxels of one grid, best score first.

    masks:  list of int64 row arrays into grid.coords.
    labels: int64 [K] semantic label (majority of the mask's voxels).
    scores: float64 [K] confidence in [0, 1].
    """

    masks: list = field(default_factory=list)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.masks)

    def voxel_instance_ids(self, num_voxels: int) -> np.ndarray:
        """int64 [V]: index of the instance holding each voxel (the best-scored one), -1 for none."""
        ids = np.full(num_voxels, NO_INSTANCE, dtype=np.int64)
        for k in range(len(self.masks) - 1, -1, -1):  # best last, so it wins overlaps
            ids[self.masks[k]] = k
        return ids

    def point_instance_ids(self, grid: VoxelGrid, point_labels: np.ndarray | None = None) -> np.ndarray:
        """int64 [N]: instance index of each input point (through its voxel), -1 for none.

        With ``point_labels`` int64 [N] (the semantic input), a point joins its voxel's instance only if its own
        label is the instance's label: a floor point in a voxel shared with a box stays floor.
        """
        ids = self.voxel_instance_ids(grid.num_voxels)[grid.point_to_voxel]
        if point_labels is not None and len(self.labels):
            has = ids >= 0
            ids[has & (self.labels[np.maximum(ids, 0)] != point_labels)] = NO_INSTANCE
        return ids

    def point_masks(self, grid: VoxelGrid, point_labels: np.ndarray | None = None) -> np.ndarray:
        """bool [K, N]: each instance's mask over the input points (overlaps kept as predicted; with
        ``point_labels``, only points of the instance's label)."""
        out = np.zeros((len(self.masks), len(grid.point_to_voxel)), dtype=bool)
        for k, rows in enumerate(self.masks):
            voxel_mask = np.zeros(grid.num_voxels, dtype=bool)
            voxel_mask[rows] = True
            out[k] = voxel_mask[grid.point_to_voxel]
            if point_labels is not None:
                out[k] &= point_labels == self.labels[k]
        return out


@dataclass
class ScenePredictions:
    """The predicted instances of one scene.

    ``masks``: bool [P, N], one row per prediction over the scene's N vertices (points);
    ``label_ids``: int64 [P], predicted class id per instance; ``scores``: float64 [P], confidence per instance.
    Inputs are converted to these dtypes; ValueError when the shapes disagree.
    """

    masks: np.ndarray
    label_ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.masks = np.asarray(self.masks)
        if self.masks.dtype != np.bool_:
            self.masks = self.masks != 0
        self.label_ids = np.asarray(self.label_ids, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if self.masks.ndim != 2:
            raise ValueError(f"masks must be 2-D [P, N], got shape {self.masks.shape}")
        if not (self.masks.shape[0] == self.label_ids.size == self.scores.size):
            raise ValueError(
                f"{self.masks.shape[0]} masks, {self.label_ids.size} label ids and {self.scores.size} scores"
            )

    @classmethod
    def empty(cls, num_vertices: int) -> ScenePredictions:
        """No predictions for a scene of ``num_vertices`` vertices."""
        return cls(np.zeros((0, num_vertices), bool), np.zeros(0, np.int64), np.zeros(0, np.float64))

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def num_vertices(self) -> int:
        """N, the number of vertices each mask covers."""
        return int(self.masks.shape[1])


@dataclass
class VoxelPredictions:
    """The network's outputs at a grid's occupied voxels (rows in the order of grid.coords).

    embedding: float32 [V, D] metric feature embedding.
    direction: float32 [V, 3] predicted direction to the object centre (unnormalised).
    labels:    int64 [V] predicted semantic label ids, or None for a model without a semantic head.
    features:  float32 [V, Ds] language-grounded features, or None.
    probabilities: float32 [V, C] class probabilities (class channels in ``model.cfg.channel_ids()`` order), or None.
    """

    embedding: np.ndarray
    direction: np.ndarray
    labels: Optional[np.ndarray] = None
    features: Optional[np.ndarray] = None
    probabilities: Optional[np.ndarray] = None


@dataclass
class SceneResult:
    """What inference produced for one scene: its grid (whose labels are those the instances were built on),
    the instances over the grid's voxels, the point labels, where they came from, and timings (s).

    point_labels:  int64 [N] semantic label of each input point (given, or predicted through its voxel).
    labels_source: "given" (the scan's labels) or "predicted" (the semantic head).
    """

    scene: Scene
    grid: VoxelGrid
    instances: Instances
    point_labels: np.ndarray
    labels_source: str
    timings: dict = field(default_factory=dict)
    voxel_predictions: Optional[VoxelPredictions] = None


@dataclass
class ReferringPrediction:
    """The referring head's answer for S descriptions of one grid.

    masks:  bool [S, V] the voxels of the referred object.
    scores: float64 [S] confidence: the mean mask probability over the chosen voxels.
    probabilities: float32 [S, V] per-voxel mask probabilities.
    """

    masks: np.ndarray
    scores: np.ndarray
    probabilities: np.ndarray


@dataclass
class Transform:
    """How a scan's own coordinates map to the canonical frame the models read (z up, metres, walls along x and y,
    floor at z = 0, the horizontal bounding box's min corner at the origin; ``mtml.data.normalize``)::

        canonical = scale * original @ rotation.T + translation

    Points keep their order, so per-point results need no mapping; ``to_original`` maps coordinates back.

    rotation:      float64 [3, 3], a proper rotation (det +1): the up axis onto +z, then the turn about z.
    scale:         metres per unit of the scan's coordinates (1, 0.01 or 0.001).
    translation:   float64 [3], metres.
    up_axis:       the scan's up axis as assumed: "x", "y", "z", "-x", "-y" or "-z".
    units:         the scan's units as assumed: "m", "cm" or "mm".
    up_source, units_source: "given" (a setting), "detected" (measured on the scan) or "default" (nothing measured
                   clearly: z up, metres).
    yaw_degrees:   the turn about the vertical, after the up axis was put on +z (0 when ``walls_aligned`` is False).
    walls_aligned: whether that turn was made (dominant walls onto x/y, ``mtml.data.normalize.normalize_scene``).
    message:       one line saying what was assumed (``normalize_scene`` writes it).
    """

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    scale: float = 1.0
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    up_axis: str = "z"
    units: str = "m"
    up_source: str = "default"
    units_source: str = "default"
    yaw_degrees: float = 0.0
    walls_aligned: bool = False
    message: str = ""

    def to_canonical(self, points: np.ndarray) -> np.ndarray:
        """float64 [N, 3] canonical coordinates (metres) of points [N, 3] in the scan's own coordinates."""
        return self.scale * (np.asarray(points, dtype=np.float64) @ self.rotation.T) + self.translation

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """float64 [N, 3] the scan's own coordinates of canonical points [N, 3] (metres): ``to_canonical`` undone."""
        return ((np.asarray(points, dtype=np.float64) - self.translation) @ self.rotation) / self.scale

    def to_dict(self) -> dict:
        """The transform as plain JSON-able data (lists and numbers)."""
        return {"up_axis": self.up_axis, "up_source": self.up_source, "units": self.units,
                "units_source": self.units_source, "scale": self.scale, "rotation": self.rotation.tolist(),
                "translation": self.translation.tolist(), "yaw_degrees": self.yaw_degrees,
                "walls_aligned": self.walls_aligned, "message": self.message}


@dataclass
class Instance:
    """One object a ``Predictor`` found in a scene (``mtml.predict.predictor``).

    label_id:      semantic class id.
    label_name:    the class's name (the id as text when the checkpoint names no such class).
    score:         confidence in [0, 1].
    point_indices: int64 [M] rows of the scene's points that belong to it (sorted, M >= 1).
    """

    label_id: int
    label_name: str
    score: float
    point_indices: np.ndarray


@dataclass
class Segmentation:
    """A ``Predictor``'s segmentation of one scene of N points.

    point_instances: int64 [N] index into ``instances`` of each point's instance, -1 for none.
    point_labels:    int64 [N] semantic class id of each point (the labels the instances were built on).
    instances:       the instances, best score first; each has at least one point.
    class_names:     class id -> name, from the checkpoint.
    timings_s:       seconds per stage (voxelize, network, cluster, ...).
    labels_source:   "given" (the scene's own labels) or "predicted" (the semantic head).
    transform:       how the scene's coordinates were brought into the frame the model read (``Transform``; its
                     ``message`` says what was assumed), or None.
    """

    point_instances: np.ndarray
    point_labels: np.ndarray
    instances: list = field(default_factory=list)
    class_names: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    labels_source: str = ""
    transform: Optional[Transform] = None


@dataclass
class Referral:
    """A ``Predictor``'s answer to one sentence about a scene of N points.

    sentence:   the description, as given.
    point_mask: bool [N] the points of the object it refers to (never empty).
    score:      confidence: the mean mask probability over the chosen voxels.
    found:      True when some voxel's probability is over 0.5; False when the mask is the fallback of the
                most likely voxels (``mtml.predict.infer.referring_masks``).
    """

    sentence: str
    point_mask: np.ndarray
    score: float
    found: bool
