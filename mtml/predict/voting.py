"""Test-time voting on plain scans: the whole plain-scan pipeline (network, instances, instance classifier, floor
rules) runs on several copies of a scan, turned about the vertical axis, on a grid shifted by half a voxel and
mirrored, and every point takes the label that most copies give it.

One network pass puts each 10 cm voxel boundary in one place, and a box's edge, a contact between two boxes or
an instance cut falls differently in every copy: their errors are partly independent, and the majority corrects
what only some copies get wrong. The instances are those of the first copy (the scan as given); each takes the
most frequent voted label of its points. ``passes`` copies cost ``passes`` times one pass.

Copies, in order (``voting_views``): the four quarter turns; the same four on a grid shifted by half a voxel in x
and y; the eight again mirrored (x -> -x). So 4 passes vote over turns, 8 over turns and grid phases, 16 adds
mirrors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mtml.data.voxelize import NO_INSTANCE, majority_per_group, voxelize
from mtml.model.instance_classifier import relabel_instances
from mtml.scene import Instances, Scene, VoxelGrid

MAX_PASSES = 16


@dataclass(frozen=True)
class View:
    """One copy of a scan: ``quarter_turns`` (0-3) about the vertical axis, then x -> -x when ``mirror``, voxelised
    on a grid whose origin is the points' min corner less ``phase`` voxels in x and y."""

    quarter_turns: int
    phase: float
    mirror: bool


def voting_views(passes: int) -> list[View]:
    """The first ``passes`` (1..16) copies, the scan as given first (see the module docstring for the order)."""
    if not 1 <= int(passes) <= MAX_PASSES:
        raise ValueError(f"voting passes must be between 1 and {MAX_PASSES}, got {passes}")
    return [View(i % 4, 0.5 * ((i // 4) % 2), bool(i // 8)) for i in range(int(passes))]


def view_points(points: np.ndarray, view: View) -> np.ndarray:
    """float32 [N, 3]: ``points`` (metres) turned and mirrored as ``view`` says (heights unchanged)."""
    angle = view.quarter_turns * np.pi / 2
    c, s = np.cos(angle), np.sin(angle)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    out = np.asarray(points, dtype=np.float64) @ turn.T
    if view.mirror:
        out[:, 0] = -out[:, 0]
    return out.astype(np.float32)


def view_grid(scene: Scene, view: View, voxel_size: float, max_voxels: int | None = None) -> tuple[Scene, VoxelGrid]:
    """The copy of ``scene`` that ``view`` describes and its voxel grid."""
    points = view_points(scene.points, view)
    copy = dataclasses.replace(scene, points=points)
    origin = points.min(axis=0).astype(np.float64) - view.phase * voxel_size * np.array([1.0, 1.0, 0.0])
    return copy, voxelize(copy, voxel_size, origin=origin, max_voxels=max_voxels)


def majority_labels(label_sets: np.ndarray) -> np.ndarray:
    """int64 [N]: the most frequent label of each column of ``label_sets`` int64 [K, N] (K passes); a tie goes to
    the first pass's label when it is among the most frequent, else to the smallest label id."""
    label_sets = np.asarray(label_sets, dtype=np.int64)
    classes, inverse = np.unique(label_sets, return_inverse=True)
    inverse = inverse.reshape(label_sets.shape)
    points = np.arange(label_sets.shape[1])
    counts = np.zeros((len(classes), len(points)), dtype=np.int64)
    np.add.at(counts, (inverse, np.broadcast_to(points, inverse.shape)), 2)
    counts[inverse[0], points] += 1  # the first pass breaks ties
    return classes[counts.argmax(axis=0)]


def relabel_by_points(instances: Instances, grid: VoxelGrid, point_labels: np.ndarray, stuff_classes) -> tuple:
    """Each instance takes the most frequent of ``point_labels`` int64 [N] over its points; one whose majority is
    a stuff class stops being an instance. Returns (Instances, voxel labels int64 [V]: each instance's voxels take
    its label, the other voxels keep ``grid.labels``)."""
    if len(instances) == 0:
        return instances, grid.labels
    owner = instances.voxel_instance_ids(grid.num_voxels)[grid.point_to_voxel]
    inside = owner >= 0
    voted = majority_per_group(owner[inside], point_labels[inside], len(instances))
    new = np.where(voted == NO_INSTANCE, instances.labels, voted)  # an instance with no points keeps its label
    return relabel_instances(instances, grid.labels, new, stuff_classes)


