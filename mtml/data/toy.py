"""The paper's synthetic benchmark (MTML, Table 1): boxes of five classes standing on a floor.

A scene is a square floor (label 0, no instance) with 5..10 boxes on it, each with a random yaw about the
vertical axis. Most boxes are placed freely, keeping ``min_gap`` metres of clearance between footprints so
that connected components on a 10 cm grid separate them; a share of them (``contact_fraction``) is pushed
face-to-face against an already placed box, often one of the same class (``same_class_contact``), which
is what makes the benchmark hard for connected components.

Points are sampled as a scanner sees them: a regular grid (``point_spacing`` apart, random phase per face)
on the floor outside the boxes' footprints and on each box's four sides and top (no bottom), minus the
parts hidden inside a touching box, plus gaussian noise (``noise`` metres std on every coordinate).

Coordinates: metres, the floor is ``[0, floor_x] x [0, floor_y]`` at z = 0, z points up.
Everything is deterministic for a seed (``np.random.default_rng(seed)``). Which seeds make up the benchmark's
splits (train 0..899, test 900..999, ...) is the dataset registry's business (``mtml.data.registry``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from tqdm import tqdm

from mtml.io.ply import scene_to_ply
from mtml.scene import NO_INSTANCE, Scene

TOY_VOXEL_SIZE = 0.1
"""Voxel edge (metres) the toy benchmark is defined at."""

TOY_FLOOR_LABEL = 0
TOY_CLASS_NAMES = {
    0: "floor",
    1: "small cube",
    2: "long box",
    3: "flat box",
    4: "cabinet",
    5: "pillar",
}
TOY_BOX_SIZES_VOXELS = {
    1: (4, 4, 4),
    2: (8, 4, 4),
    3: (8, 8, 4),
    4: (12, 4, 8),
    5: (6, 6, 12),
}
"""label -> (x, y, z) box edge lengths in voxels of ``TOY_VOXEL_SIZE``."""
TOY_BOX_SIZES_M = {k: tuple(n / 10.0 for n in v) for k, v in TOY_BOX_SIZES_VOXELS.items()}
"""label -> (x, y, z) box edge lengths in metres (voxels / 10)."""
TOY_INSTANCE_CLASS_IDS = [1, 2, 3, 4, 5]


@dataclass(frozen=True)
class ToySceneConfig:
    """How toy scenes are drawn. Lengths in metres.

    floor_size:         (x, y) extent of the floor.
    num_boxes:          inclusive (min, max) number of boxes to place.
    contact_fraction:   probability that a new box (after the first) is pushed into contact with an
                        already placed box instead of placed freely.
    same_class_contact: probability that a contact box takes the class of the box it touches (otherwise
                        one of the other four classes, uniformly).
    min_gap:            footprint-to-footprint clearance between boxes that do not touch.
    point_spacing:      grid step of the sampled surface points.
    noise:              gaussian std added to every coordinate.
    min_face_overlap:   contact faces overlap by at least this share of the shorter face.
    max_tries:          placement attempts per box before giving up (contact, then free placement).
    hidden_tolerance:   surface points within this distance inside another box count as hidden.
    """

    floor_size: tuple = (6.4, 6.4)
    num_boxes: tuple = (5, 10)
    # calibrated so that connected components on the ground-truth labels scores a mean AP50 near the
    # paper's 87.6 (88.2 on the 100 test scenes, 88.4 on 600 train scenes; see README "Toy benchmark")
    contact_fraction: float = 0.2
    same_class_contact: float = 0.35
    min_gap: float = 0.35
    point_spacing: float = 0.04
    noise: float = 0.01
    min_face_overlap: float = 0.3
    max_tries: int = 100
    hidden_tolerance: float = 0.01


@dataclass
class ToyBox:
    """One placed box.

    label:    class id (1..5).
    instance: instance id in its scene (0..K-1, placement order).
    center:   (x, y, z) of the box centre, metres (z = half the height: boxes stand on the floor).
    size:     (x, y, z) edge lengths, metres, along the box's own axes.
    yaw:      rotation about +z in radians, in [0, pi).
    touching: instance ids of the boxes it was pushed against / that were pushed against it.
    """

    label: int
    instance: int
    center: tuple
    size: tuple
    yaw: float
    touching: list = field(default_factory=list)

    def footprint(self) -> np.ndarray:
        """float64 [4, 2]: the (x, y) corners of the box's base, counter-clockwise, metres."""
        return footprint_corners(
            np.asarray(self.center[:2]), np.asarray(self.size[:2]) / 2.0, np.asarray(self.yaw)
        )


# --------------------------------------------------------------------------------------- geometry


def footprint_corners(center_xy: np.ndarray, half_xy: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Corners of rotated rectangles (broadcasting over leading dims).

    center_xy: [..., 2] centres, metres; half_xy: [..., 2] half edge lengths along the box axes;
    yaw: [...] radians. Returns float64 [..., 4, 2] corners in counter-clockwise order.
    """
    center_xy, half_xy = np.asarray(center_xy, np.float64), np.asarray(half_xy, np.float64)
    yaw = np.asarray(yaw, np.float64)
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    signs = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    local = signs * half_xy[..., None, :]  # [..., 4, 2]
    lx, ly = local[..., 0], local[..., 1]
    x = center_xy[..., None, 0] + lx * c - ly * s
    y = center_xy[..., None, 1] + lx * s + ly * c
    return np.stack([x, y], axis=-1)


def _project(axes: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """[..., A, 2] axes, [..., V, 2] vertices -> [..., A, V] projections."""
    return np.einsum("...ad,...vd->...av", axes, poly)


def _point_to_edges(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Smallest distance from any of [..., M, 2] points to any edge of the closed polygon [..., V, 2]."""
    a = poly
    ab = np.roll(poly, -1, axis=-2) - a  # [..., V, 2]
    ap = points[..., :, None, :] - a[..., None, :, :]  # [..., M, V, 2]
    denom = np.maximum((ab * ab).sum(-1), 1e-300)[..., None, :]
    t = np.clip((ap * ab[..., None, :, :]).sum(-1) / denom, 0.0, 1.0)
    diff = ap - t[..., None] * ab[..., None, :, :]
    return np.sqrt((diff * diff).sum(-1)).min(axis=(-1, -2))


def polygon_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Euclidean distance between convex polygons (0 if they intersect or touch); broadcasts.

    p: [..., M, 2], q: [..., N, 2] vertices in order (either orientation), metres.
    Returns float64 [...]: 0 where a separating-axis test finds no separating edge normal, otherwise
    the smallest vertex-to-edge distance in either direction.
    """
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    batch = np.broadcast_shapes(p.shape[:-2], q.shape[:-2])
    p = np.broadcast_to(p, batch + p.shape[-2:])
    q = np.broadcast_to(q, batch + q.shape[-2:])

    def normals(poly):
        e = np.roll(poly, -1, axis=-2) - poly
        return np.stack([-e[..., 1], e[..., 0]], axis=-1)

    axes = np.concatenate([normals(p), normals(q)], axis=-2)  # [..., M+N, 2]
    pp, pq = _project(axes, p), _project(axes, q)
    separated = ((pp.max(-1) < pq.min(-1)) | (pq.max(-1) < pp.min(-1))).any(-1)
    dist = np.minimum(_point_to_edges(p, q), _point_to_edges(q, p))
    return np.where(separated, dist, 0.0)


# -------------------------------------------------------------------------------------- placement


def _half_xy(labels: np.ndarray) -> np.ndarray:
    """[T] labels -> [T, 2] half footprint extents, metres."""
    sizes = np.array([TOY_BOX_SIZES_M[k][:2] for k in TOY_INSTANCE_CLASS_IDS])
    return sizes[np.asarray(labels) - TOY_INSTANCE_CLASS_IDS[0]] / 2.0


def _first_valid(
    corners: np.ndarray, placed: list, floor: np.ndarray, min_gap: float, exempt: Optional[np.ndarray]
) -> Optional[int]:
    """Index of the first candidate footprint [T, 4, 2] inside the floor and ``min_gap`` from every placed
    box (except, per candidate, the box ``exempt[t]``), or None."""
    eps = 1e-9
    ok = ((corners >= -eps) & (corners <= floor + eps)).all(axis=(-1, -2))
    if placed:
        others = np.stack([b.footprint() for b in placed])  # [K, 4, 2]
        dist = polygon_distance(corners[:, None], others[None])  # [T, K]
        if exempt is not None:
            dist[np.arange(len(corners)), exempt] = np.inf
        ok &= (dist >= min_gap).all(axis=1)
    hits = np.flatnonzero(ok)
    return int(hits[0]) if len(hits) else None


def _place_free(rng, label: int, placed: list, cfg: ToySceneConfig, floor: np.ndarray):
    """Rejection-sample a free position and yaw for a box of class ``label``; None after max_tries."""
    t = cfg.max_tries
    yaw = rng.uniform(0.0, np.pi, t)
    half = _half_xy(np.full(t, label))
    c, s = np.abs(np.cos(yaw)), np.abs(np.sin(yaw))
    ext = np.stack([c * half[:, 0] + s * half[:, 1], s * half[:, 0] + c * half[:, 1]], axis=1)
    center = ext + rng.random((t, 2)) * np.maximum(floor - 2 * ext, 0.0)
    corners = footprint_corners(center, half, yaw)
    i = _first_valid(corners, placed, floor, cfg.min_gap, exempt=None)
    return None if i is None else (center[i], float(yaw[i]))


def _place_contact(rng, same: bool, offset: int, placed: list, cfg: ToySceneConfig, floor: np.ndarray):
    """Try to push a new box face-to-face against a placed box; None after max_tries.

    The partner A, its side face and the slide along it are drawn per try; the new box has A's yaw,
    its centre is offset along A's face normal by the sum of the half extents (faces touch exactly)
    and slid along the face so that the faces overlap by >= min_face_overlap of the shorter one.
    Returns (label, centre [2], yaw, partner index) or None.
    """
    t = cfg.max_tries
    partner = rng.integers(0, len(placed), t)
    face = rng.integers(0, 4, t)  # 0: +x, 1: -x, 2: +y, 3: -y of A's own axes
    slide = rng.uniform(-1.0, 1.0, t)
    a_label = np.array([placed[k].label for k in partner])
    n_cls = len(TOY_INSTANCE_CLASS_IDS)
    label = a_label if same else (a_label - 1 + offset) % n_cls + 1
    half_a = np.array([placed[k].size[:2] for k in partner]) / 2.0
    half_b = _half_xy(label)
    yaw = np.array([placed[k].yaw for k in partner])
    center_a = np.array([placed[k].center[:2] for k in partner])
    normal_axis = face // 2  # 0: A's x axis, 1: A's y axis
    side_axis = 1 - normal_axis
    rows = np.arange(t)
    sign = np.where(face % 2 == 0, 1.0, -1.0)
    push = sign * (half_a[rows, normal_axis] + half_b[rows, normal_axis])
    ha, hb = half_a[rows, side_axis], half_b[rows, side_axis]
    reach = ha + hb - cfg.min_face_overlap * 2.0 * np.minimum(ha, hb)
    along = slide * reach
    local = np.zeros((t, 2))
    local[rows, normal_axis] = push
    local[rows, side_axis] = along
    c, s = np.cos(yaw), np.sin(yaw)
    center = center_a + np.stack([local[:, 0] * c - local[:, 1] * s, local[:, 0] * s + local[:, 1] * c], 1)
    corners = footprint_corners(center, half_b, yaw)
    i = _first_valid(corners, placed, floor, cfg.min_gap, exempt=partner)
    return None if i is None else (int(label[i]), center[i], float(yaw[i]), int(partner[i]))


def _place_boxes(rng: np.random.Generator, cfg: ToySceneConfig) -> list:
    """Draw the boxes of one scene (see ToySceneConfig); returns list[ToyBox] in placement order."""
    floor = np.asarray(cfg.floor_size, dtype=np.float64)
    lo, hi = cfg.num_boxes
    n = int(rng.integers(lo, hi + 1))
    boxes: list = []
    for _ in range(n):
        # draw every per-box decision up front so the stream does not depend on which branch runs
        label = int(rng.choice(TOY_INSTANCE_CLASS_IDS))
        contact = rng.random() < cfg.contact_fraction
        same = rng.random() < cfg.same_class_contact
        offset = int(rng.integers(1, len(TOY_INSTANCE_CLASS_IDS)))
        partner = None
        found = None
        if contact and boxes:
            got = _place_contact(rng, same, offset, boxes, cfg, floor)
            if got is not None:
                label, center, yaw, partner = got
                found = (center, yaw)
        if found is None:
            found = _place_free(rng, label, boxes, cfg, floor)
        if found is None:
            continue
        center, yaw = found
        size = TOY_BOX_SIZES_M[label]
        box = ToyBox(
            label=label,
            instance=len(boxes),
            center=(float(center[0]), float(center[1]), size[2] / 2.0),
            size=size,
            yaw=yaw,
        )
        if partner is not None:
            box.touching.append(partner)
            boxes[partner].touching.append(box.instance)
        boxes.append(box)
    return boxes


# --------------------------------------------------------------------------------------- sampling


def _face_grid(rng: np.random.Generator, len_a: float, len_b: float, spacing: float):
    """Regular grid over [0, len_a] x [0, len_b] with a random phase; returns two float64 [M] arrays."""
    pa, pb = rng.uniform(0.0, spacing, 2)
    a = np.arange(pa, len_a, spacing)
    b = np.arange(pb, len_b, spacing)
    ga, gb = np.meshgrid(a, b, indexing="ij")
    return ga.ravel(), gb.ravel()


def _box_surface(rng: np.random.Generator, box: ToyBox, spacing: float) -> np.ndarray:
    """Points on a box's top and four sides (no bottom) in world coordinates: float64 [M, 3]."""
    sx, sy, sz = box.size
    hx, hy = sx / 2.0, sy / 2.0
    parts = []
    a, b = _face_grid(rng, sx, sy, spacing)  # top
    parts.append(np.stack([a - hx, b - hy, np.full_like(a, sz)], 1))
    for sign in (1.0, -1.0):  # +-x sides: grid over (y, z)
        a, b = _face_grid(rng, sy, sz, spacing)
        parts.append(np.stack([np.full_like(a, sign * hx), a - hy, b], 1))
    for sign in (1.0, -1.0):  # +-y sides: grid over (x, z)
        a, b = _face_grid(rng, sx, sz, spacing)
        parts.append(np.stack([a - hx, np.full_like(a, sign * hy), b], 1))
    local = np.concatenate(parts)
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    world = np.empty_like(local)
    world[:, 0] = box.center[0] + local[:, 0] * c - local[:, 1] * s
    world[:, 1] = box.center[1] + local[:, 0] * s + local[:, 1] * c
    world[:, 2] = local[:, 2]
    return world


def _inside_box(points: np.ndarray, box: ToyBox, tol: float) -> np.ndarray:
    """bool [N]: which points [N, 3] lie inside the box grown by ``tol`` metres on every side."""
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    dx, dy = points[:, 0] - box.center[0], points[:, 1] - box.center[1]
    lx, ly = dx * c + dy * s, -dx * s + dy * c
    return (
        (np.abs(lx) <= box.size[0] / 2.0 + tol)
        & (np.abs(ly) <= box.size[1] / 2.0 + tol)
        & (points[:, 2] >= -tol)
        & (points[:, 2] <= box.size[2] + tol)
    )


def toy_scene_name(seed: int) -> str:
    """The scene name of a seed: ``toy_<seed, 5 digits>``."""
    return f"toy_{seed:05d}"


def generate_scene_with_boxes(seed: int, config: ToySceneConfig = ToySceneConfig()):
    """Draw one toy scene and the boxes it was built from.

    seed:   any non-negative int; the same seed (and config) gives bit-identical output.
    config: ToySceneConfig.
    Returns (Scene, list[ToyBox]): the Scene has points float32 [N, 3] (metres), labels int64 [N]
    (0 floor, 1..5 box class), instances int64 [N] (-1 floor, 0..K-1 boxes, equal to ToyBox.instance),
    colors None, name ``toy_<seed>``.
    """
    rng = np.random.default_rng(seed)
    boxes = _place_boxes(rng, config)
    spacing = config.point_spacing
    fx, fy = config.floor_size
    a, b = _face_grid(rng, fx, fy, spacing)
    parts = [np.stack([a, b, np.zeros_like(a)], 1)]
    owners = [np.full(len(a), -1, dtype=np.int64)]
    for box in boxes:
        pts = _box_surface(rng, box, spacing)
        parts.append(pts)
        owners.append(np.full(len(pts), box.instance, dtype=np.int64))
    points = np.concatenate(parts)
    owner = np.concatenate(owners)
    hidden = np.zeros(len(points), dtype=bool)
    for box in boxes:
        hidden |= _inside_box(points, box, config.hidden_tolerance) & (owner != box.instance)
    points, owner = points[~hidden], owner[~hidden]
    points = points + rng.normal(0.0, config.noise, points.shape)
    box_labels = np.array([TOY_FLOOR_LABEL] + [bx.label for bx in boxes], dtype=np.int64)
    labels = box_labels[owner + 1]
    instances = np.where(owner >= 0, owner, NO_INSTANCE).astype(np.int64)
    scene = Scene(
        points=points.astype(np.float32),
        labels=labels,
        instances=instances,
        name=toy_scene_name(seed),
        source=f"toy seed {seed}",
    )
    return scene, boxes


def generate_scene(seed: int, config: ToySceneConfig = ToySceneConfig()) -> Scene:
    """One toy scene (see ``generate_scene_with_boxes``, which this calls, for the arrays and units)."""
    return generate_scene_with_boxes(seed, config)[0]


def write_toy_dataset(
    out_dir: str | os.PathLike,
    seeds: Iterable[int],
    config: ToySceneConfig = ToySceneConfig(),
    *,
    binary: bool = True,
    progress: bool = True,
) -> list:
    """Write ``<out_dir>/toy_<seed>.ply`` (vertex x y z label instance) for each seed.

    Files that already exist are skipped, so an interrupted run resumes; each file is written atomically.
    Returns list[Path] of all the seeds' files (written now or before).
    """
    out_dir = Path(out_dir)
    seeds = list(seeds)
    paths = []
    for seed in tqdm(seeds, desc="toy scenes", unit="scene", disable=not progress):
        path = out_dir / f"{toy_scene_name(seed)}.ply"
        if not path.exists():
            scene_to_ply(generate_scene(seed, config), path, binary=binary)
        paths.append(path)
    return paths
