"""Points -> occupied voxels, with majority labels per voxel and the point -> voxel map."""

from __future__ import annotations

from typing import Optional

import numpy as np

from mtml.errors import InputError
from mtml.scene import NO_INSTANCE, Scene, VoxelGrid


def majority_per_group(group: np.ndarray, values: np.ndarray, num_groups: int) -> np.ndarray:
    """Most frequent value in each group.

    group:  int64 [N] group index in [0, num_groups) of each element.
    values: int64 [N] value of each element (any integers, negatives allowed).
    Returns int64 [num_groups]; ties go to the smaller value; empty groups get NO_INSTANCE.
    """
    out = np.full(num_groups, NO_INSTANCE, dtype=np.int64)
    if group.size == 0:
        return out
    uniq_vals, val_idx = np.unique(values, return_inverse=True)
    pair = group.astype(np.int64) * len(uniq_vals) + val_idx
    pair_ids, counts = np.unique(pair, return_counts=True)
    pair_group = pair_ids // len(uniq_vals)
    pair_val = pair_ids % len(uniq_vals)
    # sort by group, then count descending, then value ascending; the first row of each group wins
    order = np.lexsort((pair_val, -counts, pair_group))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pair_group[order][1:] != pair_group[order][:-1]
    winners = order[first]
    out[pair_group[winners]] = uniq_vals[pair_val[winners]]
    return out


def voxelize(
    scene: Scene,
    voxel_size: float = 0.1,
    origin: Optional[np.ndarray] = None,
    max_voxels: Optional[int] = None,
) -> VoxelGrid:
    """Quantise a scene's points into a voxel grid.

    scene:      points [N, 3] in metres (+ optional colors, labels, instances).
    voxel_size: voxel edge in metres.
    origin:     metres [3], min corner of voxel (0,0,0); default: the points' min corner.
    max_voxels: refuse (InputError) a dense grid with more cells than this, before allocating anything.
    Returns a VoxelGrid whose ``coords`` are unique occupied cells and whose per-voxel labels/instances are
    the majority over the voxel's points.
    """
    pts = np.asarray(scene.points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(scene.source or scene.name, f"points must be [N, 3], got {pts.shape}")
    if len(pts) == 0:
        raise InputError(scene.source or scene.name, "empty scene: no points")
    if not np.isfinite(pts).all():
        raise InputError(scene.source or scene.name, "coordinates contain NaN or infinity")
    if not np.isfinite(voxel_size) or voxel_size <= 0:
        raise InputError(None, f"voxel size must be a positive finite number, got {voxel_size}")
    origin = pts.min(axis=0) if origin is None else np.asarray(origin, dtype=np.float64)
    span = np.maximum(np.floor((pts.max(axis=0) - origin) / voxel_size) + 1, 1)  # the dense shape, as floats
    if float(np.prod(span)) >= 2.0**62:  # its cells could not be numbered in int64
        raise InputError(scene.source or scene.name, f"the points span {np.ptp(pts, axis=0).round(1).tolist()} m: "
                                                     f"a grid at {voxel_size} m would have {np.prod(span):.3g} voxels")
    cell = np.floor((pts - origin) / voxel_size).astype(np.int64)
    if (cell < 0).any():
        raise InputError(scene.source or scene.name, "points lie below the grid origin")
    shape = tuple(int(s) for s in cell.max(axis=0) + 1)
    num_cells = int(np.prod(np.asarray(shape, dtype=np.int64)))
    if max_voxels is not None and num_cells > max_voxels:
        raise InputError(
            scene.source or scene.name,
            f"grid of {shape[0]}x{shape[1]}x{shape[2]} = {num_cells} voxels at {voxel_size} m exceeds the "
            f"limit of {max_voxels} voxels (raise the memory limit or use a larger voxel size)",
        )
    flat = (cell[:, 0] * shape[1] + cell[:, 1]) * shape[2] + cell[:, 2]
    uniq, point_to_voxel = np.unique(flat, return_inverse=True)
    coords = np.stack(np.unravel_index(uniq, shape), axis=1).astype(np.int64)
    num_vox = len(uniq)
    labels = None if scene.labels is None else majority_per_group(point_to_voxel, scene.labels, num_vox)
    instances = (
        None if scene.instances is None else majority_per_group(point_to_voxel, scene.instances, num_vox)
    )
    colors = None
    if scene.colors is not None:
        sums = np.zeros((num_vox, 3), dtype=np.float64)
        np.add.at(sums, point_to_voxel, scene.colors.astype(np.float64) / 255.0)
        colors = (sums / np.bincount(point_to_voxel, minlength=num_vox)[:, None]).astype(np.float32)
    return VoxelGrid(
        shape=shape,
        origin=origin,
        voxel_size=float(voxel_size),
        coords=coords,
        point_to_voxel=point_to_voxel.astype(np.int64),
        labels=labels,
        instances=instances,
        colors=colors,
    )


def grid_to_scene(grid: VoxelGrid, name: str = "grid", source: str = "") -> Scene:
    """The occupied voxels as a point cloud: one point at each voxel centre (metres), with the voxel's label,
    instance and colour. Re-voxelising it at ``grid.voxel_size`` from ``grid.origin`` gives the same grid."""
    points = ((grid.coords + 0.5) * grid.voxel_size + grid.origin).astype(np.float32)
    colors = None if grid.colors is None else np.round(grid.colors * 255).clip(0, 255).astype(np.uint8)
    return Scene(points=points, colors=colors, labels=grid.labels, instances=grid.instances, name=name, source=source)


def point_labels_at_floor(points: np.ndarray, grid: VoxelGrid, voxel_labels: np.ndarray, floor_label: int,
                          tolerance: float, foot_radius: float = 0.0, foot_offset: float = 0.0,
                          foot_rise: float = 0.0) -> np.ndarray:
    """Point labels from voxel labels, sharpened where one voxel holds both floor and an object.

    A heuristic of the toy benchmark (boxes standing on a flat floor): ``mtml.predict.infer`` runs it only where
    ``ClusterConfig.floor_label`` is set, which only the toy config bases do (configs/_base_/cluster/toy_floor.yaml;
    the toy values of the other settings: configs/_base_/cluster/toy.yaml). The foot rule is off by default.

    points float [N, 3] (metres, the grid's scene); voxel_labels int64 [V]. Each point takes its voxel's label,
    except:
    - a point within ``tolerance`` metres of the floor height (the median height of the points in floor voxels)
      is floor;
    - a point of a floor voxel higher than that takes the label of the nearest non-floor voxel within one voxel
      edge (centre distance);
    - with ``foot_radius`` > 0 (metres): a floor-height point is the foot of an object's side when it lies on that
      side's plane. The plane is fitted to the object points just above the floor band (at most one voxel edge
      higher) within ``foot_radius`` horizontally (at least 3 of them): their mean, and the normal of their
      spread turned away from the object. A floor-height point at most ``foot_offset`` + ``foot_rise`` * (its
      height above the floor) metres outside that plane takes the label of the nearest of those points: the
      higher a point, the less likely it is floor (the floor's points lie at its height, give or take the
      noise). The first rule alone labels the lowest ``tolerance`` of every side floor.
    A 10 cm voxel at the foot of a box holds floor points and the bottom of the box's sides. With the toy scenes'
    1 cm noise the two overlap, so no rule at the points separates them fully.
    Returns int64 [N].
    """
    from scipy.spatial import cKDTree

    labels = voxel_labels[grid.point_to_voxel].astype(np.int64)
    floor = labels == floor_label
    if not floor.any():
        return labels
    z = points[:, 2]
    floor_height = np.median(z[floor])
    on_floor = np.abs(z - floor_height) <= tolerance
    labels[on_floor] = floor_label
    objects = np.nonzero(voxel_labels != floor_label)[0]
    lifted = np.nonzero(floor & ~on_floor)[0]
    if len(objects) and len(lifted):
        centres = grid.origin + (grid.coords[objects] + 0.5) * grid.voxel_size
        dist, nearest = cKDTree(centres).query(points[lifted], distance_upper_bound=grid.voxel_size * (1 + 1e-6))
        found = np.isfinite(dist)
        labels[lifted[found]] = voxel_labels[objects[nearest[found]]]
    if foot_radius > 0:
        low_top = floor_height + tolerance
        upper = np.nonzero((labels != floor_label) & (z > low_top))[0]  # object points above the band
        sides = upper[z[upper] <= low_top + grid.voxel_size]
        band = np.nonzero(on_floor)[0]
        if len(band) and len(sides):
            # where the objects are: the centroid and the count of each voxel's object points above the band
            voxels, owner = np.unique(grid.point_to_voxel[upper], return_inverse=True)
            counts = np.bincount(owner, minlength=len(voxels)).astype(np.float64)
            centroids = np.stack([np.bincount(owner, points[upper, i], len(voxels)) for i in range(2)], 1)
            allowance = foot_offset + foot_rise * (z[band] - floor_height)
            feet = _feet_on_side_planes(points[band, :2], points[sides, :2], centroids / counts[:, None], counts,
                                        2.0 * grid.voxel_size, foot_radius, allowance)
            found = feet >= 0
            labels[band[found]] = labels[sides[feet[found]]]
    return labels


def _feet_on_side_planes(band_xy: np.ndarray, side_xy: np.ndarray, object_xy: np.ndarray, object_weight: np.ndarray,
                         reach: float, radius: float, allowance: np.ndarray) -> np.ndarray:
    """For floor-height points (xy [B, 2], metres) and the object points just above them (xy [M, 2]): int64 [B],
    the index of the nearest side point when the point lies at most its ``allowance`` (float [B], metres) outside
    the side plane fitted to the side points within ``radius`` (``point_labels_at_floor``), else -1. Each plane's normal is
    turned away from the weighted mean of the ``object_xy`` [W, 2] (weights [W]) within ``reach`` of it: an
    object's top pulls that mean inside the object."""
    from scipy.spatial import cKDTree

    out = np.full(len(band_xy), -1, dtype=np.int64)
    side_tree = cKDTree(side_xy)
    counts = side_tree.query_ball_point(band_xy, radius, return_length=True)
    near = np.nonzero(counts >= 3)[0]
    if not len(near):
        return out
    owner, members = _flat_neighbours(side_tree, band_xy[near], radius)
    k = np.bincount(owner, minlength=len(near)).astype(np.float64)
    mean = np.stack([np.bincount(owner, side_xy[members, i], len(near)) for i in range(2)], 1) / k[:, None]
    d = side_xy[members] - mean[owner]
    sxx, syy, sxy = (np.bincount(owner, w, len(near)) for w in (d[:, 0] ** 2, d[:, 1] ** 2, d[:, 0] * d[:, 1]))
    along = 0.5 * np.arctan2(2.0 * sxy, sxx - syy)  # the direction of the largest spread: along the side
    normal = np.stack([-np.sin(along), np.cos(along)], 1)
    owner, members = _flat_neighbours(cKDTree(object_xy), mean, reach)
    weight = object_weight[members]
    mass = np.bincount(owner, weight, len(near))
    inside = np.stack([np.bincount(owner, weight * object_xy[members, i], len(near)) for i in range(2)], 1)
    inside /= np.maximum(mass, 1e-12)[:, None]
    normal[np.einsum("ij,ij->i", mean - inside, normal) < 0] *= -1.0
    outside = np.einsum("ij,ij->i", band_xy[near] - mean, normal)
    keep = near[(outside <= allowance[near]) & (mass > 0)]
    out[keep] = side_tree.query(band_xy[keep])[1]
    return out


def _flat_neighbours(tree, queries: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """All (query index, tree point index) pairs within ``radius`` of queries [Q, 2], as two flat int64 arrays."""
    lists = tree.query_ball_point(queries, radius)
    lengths = np.fromiter((len(m) for m in lists), dtype=np.int64, count=len(lists))
    members = np.concatenate(lists).astype(np.int64) if lengths.sum() else np.zeros(0, dtype=np.int64)
    return np.repeat(np.arange(len(queries)), lengths), members
