"""Rare-class instance sampling: copy object instances of rare classes into training scenes where they fit.

A training-time augmentation for long-tailed benchmarks (ScanNet200; ``mtml.data.longtail``): an
``InstanceBank`` holds object instances (points, colours, label) cut out of some scenes, for a chosen set
of classes (e.g. the tail and common ones), and samples them with weights that favour rare classes.
``insert_rare_instances`` places a number of them into a scene:

1. draw an instance from the bank, then up to ``max_tries`` random yaws (about z) and positions inside the
   scene's xy extent;
2. read the scene's height map (max z per ``cell``) under the instance's footprint grown by ``margin``; the
   placement is kept only if that support is flat (max - min <= ``flatness``): the floor or one object's
   top, so the instance never hangs over an edge or straddles two surfaces. Its base goes at the
   support height (the max);
3. accept the first placement whose 3D box (footprint grown by ``margin``, from the support up to the
   instance's height + ``margin``) holds no scene point above the support surface and overlaps the box of
   no scene instance other than the one it stands on (an instance's box: the minimal-area rectangle around
   its xy points times its z range), and which stays inside the scene's extent.

Placed instances get their bank label and new instance ids (after the scene's largest); the height map,
points and boxes are updated after each one, so later instances may stand on earlier ones' tops. When
nothing fits, the scene comes back unchanged. Coordinates in metres, z up. Deterministic for the rng.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from mtml.data.longtail import _extent, _rotate
from mtml.data.toy import footprint_corners, polygon_distance
from mtml.errors import InputError
from mtml.scene import NO_INSTANCE, Scene


def oriented_box(xy: np.ndarray) -> tuple:
    """Minimal-area rectangle around 2D points.

    xy: float [M, 2] metres, M >= 1. Returns (center float64 [2], half float64 [2] half edge lengths along
    the rectangle's axes, yaw float radians in [0, pi/2)): one of the rectangle's sides is parallel to a
    convex-hull edge (checked for every edge).
    """
    xy = np.asarray(xy, dtype=np.float64)
    try:
        v = xy[ConvexHull(xy).vertices]
    except (QhullError, ValueError):  # fewer than 3 points or all collinear
        v = xy
    e = np.roll(v, -1, axis=0) - v
    ang = np.unique(np.round(np.arctan2(e[:, 1], e[:, 0]) % (np.pi / 2.0), 9)) if len(v) > 1 else np.zeros(1)
    local = _rotate(v[None], -ang[:, None])  # [A, V, 2]
    lo, hi = local.min(1), local.max(1)
    best = int(np.argmin(np.prod(hi - lo, axis=1)))
    center = _rotate((lo[best] + hi[best]) / 2.0, ang[best])
    return center, (hi[best] - lo[best]) / 2.0, float(ang[best])


def _check_scene(scene: Scene) -> None:
    if scene.labels is None or scene.instances is None:
        raise InputError(scene.source or scene.name, "rare-instance sampling needs per-point labels and instances")
    if scene.num_points == 0:
        raise InputError(scene.source or scene.name, "empty scene: no points")


@dataclass
class InstanceBoxes:
    """Oriented boxes of a scene's instances.

    ids: int64 [K] instance ids; corners: float64 [K, 4, 2] footprint corners (metres); zmin, zmax: float64 [K].
    """

    ids: np.ndarray
    corners: np.ndarray
    zmin: np.ndarray
    zmax: np.ndarray

    def append(self, inst_id: int, corners: np.ndarray, zmin: float, zmax: float) -> None:
        """Add one box (in place)."""
        self.ids = np.append(self.ids, inst_id)
        self.corners = np.concatenate([self.corners, corners[None]])
        self.zmin = np.append(self.zmin, zmin)
        self.zmax = np.append(self.zmax, zmax)


def instance_boxes(scene: Scene) -> InstanceBoxes:
    """The oriented box (``oriented_box`` of its xy points, z range of its points) of every instance
    (id >= 0) of a scene with ``instances``."""
    inst = np.asarray(scene.instances)
    pts = np.asarray(scene.points, dtype=np.float64)
    ids = np.unique(inst[inst != NO_INSTANCE])
    corners, zmin, zmax = np.zeros((len(ids), 4, 2)), np.zeros(len(ids)), np.zeros(len(ids))
    for k, i in enumerate(ids):
        p = pts[inst == i]
        c, h, yaw = oriented_box(p[:, :2])
        corners[k] = footprint_corners(c, h, np.asarray(yaw))
        zmin[k], zmax[k] = p[:, 2].min(), p[:, 2].max()
    return InstanceBoxes(ids.astype(np.int64), corners, zmin, zmax)


# ------------------------------------------------------------------------------------------- bank


@dataclass(frozen=True)
class BankInstance:
    """One object instance in canonical position.

    points:  float32 [M, 3] metres, relative to its bottom centre: its minimal-area footprint rectangle is
             axis-aligned and centred at x = y = 0, its lowest point at z = 0.
    colors:  uint8 [M, 3] or None.
    label:   semantic class id.
    half_xy: (hx, hy) half edge lengths of its footprint rectangle, metres.
    height:  z extent of its points, metres.
    source:  "<scene name>#<instance id>".
    """

    points: np.ndarray
    colors: Optional[np.ndarray]
    label: int
    half_xy: tuple
    height: float
    source: str


class InstanceBank:
    """Object instances to copy into scenes, sampled with weights favouring rare classes.

    instances: the BankInstance entries; balance: an entry of a class with n entries in the bank has weight
    ``n ** -balance`` (1: every class equally likely, the default; 0: as frequent as in the bank).
    """

    def __init__(self, instances: Sequence[BankInstance], balance: float = 1.0):
        self.instances = list(instances)
        self.balance = float(balance)
        labels = np.array([b.label for b in self.instances], dtype=np.int64)
        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        self.class_counts = {int(c): int(n) for c, n in zip(classes, counts)}
        w = counts[inverse].astype(np.float64) ** -self.balance
        self.probabilities = w / w.sum() if len(w) else w  # float64 [E]: sampling probability of each entry

    @classmethod
    def from_scenes(cls, scenes: Iterable[Scene], class_ids: Iterable[int], min_points: int = 30,
                    balance: float = 1.0) -> "InstanceBank":
        """Collect every instance whose (majority) label is in ``class_ids`` from scenes with labels and
        instances; instances with fewer than ``min_points`` points are skipped."""
        wanted = {int(c) for c in class_ids}
        entries = []
        for scene in scenes:
            _check_scene(scene)
            pts = np.asarray(scene.points, dtype=np.float64)
            inst, labels = np.asarray(scene.instances), np.asarray(scene.labels)
            for i in np.unique(inst[inst != NO_INSTANCE]):
                m = inst == i
                label = int(np.bincount(labels[m] - labels[m].min()).argmax() + labels[m].min())
                if label not in wanted or m.sum() < min_points:
                    continue
                p = pts[m]
                center, half, yaw = oriented_box(p[:, :2])
                local = np.empty_like(p)
                local[:, :2] = _rotate(p[:, :2] - center, -yaw)
                local[:, 2] = p[:, 2] - p[:, 2].min()
                colors = None if scene.colors is None else np.asarray(scene.colors)[m].copy()
                entries.append(BankInstance(local.astype(np.float32), colors, label,
                                            (float(half[0]), float(half[1])), float(local[:, 2].max()),
                                            f"{scene.name}#{int(i)}"))
        return cls(entries, balance=balance)

    def __len__(self) -> int:
        return len(self.instances)

    def sample(self, rng: np.random.Generator) -> BankInstance:
        """One entry drawn with ``probabilities``; InputError if the bank is empty."""
        if not self.instances:
            raise InputError(None, "the instance bank is empty")
        return self.instances[int(rng.choice(len(self.instances), p=self.probabilities))]


# ------------------------------------------------------------------------------------ height map


def height_map(points: np.ndarray, cell: float = 0.1) -> tuple:
    """Highest point per xy cell.

    points: float [N, 3] metres (N >= 1); cell: cell edge, metres.
    Returns (origin_xy float64 [2]: the points' min x, y = corner of cell (0, 0); heights float64 [Hx, Hy]:
    max z of the points in each cell, the points' min z (the floor level) where a cell is empty).
    """
    pts = np.asarray(points, dtype=np.float64)
    origin = pts[:, :2].min(0)
    idx = np.floor((pts[:, :2] - origin) / cell).astype(np.int64)
    shape = tuple(int(s) for s in idx.max(0) + 1)
    heights = np.full(shape, pts[:, 2].min())
    np.maximum.at(heights, (idx[:, 0], idx[:, 1]), pts[:, 2])
    return origin, heights


# ------------------------------------------------------------------------------------- insertion


@dataclass
class Placement:
    """One inserted instance.

    label, instance: its class id and new instance id; center: (x, y) of its footprint centre; yaw: radians;
    half_xy: half footprint edges; support_z: height of its base (the support surface), metres; height: its
    z extent; source: the bank entry's source.
    """

    label: int
    instance: int
    center: tuple
    yaw: float
    half_xy: tuple
    support_z: float
    height: float
    source: str

    def footprint(self, grow: float = 0.0) -> np.ndarray:
        """float64 [4, 2]: world corners of the footprint rectangle grown by ``grow`` metres per side."""
        return footprint_corners(np.asarray(self.center), np.asarray(self.half_xy) + grow, np.asarray(self.yaw))


def _footprint_samples(half: np.ndarray, step: float) -> np.ndarray:
    """Grid of points [S, 2] covering the rectangle [-half, half] (edges included), ``step`` apart or less."""
    axes = [np.linspace(-h, h, int(np.ceil(2.0 * h / step)) + 1) for h in half]
    gx, gy = np.meshgrid(*axes, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], 1)


def _points_in_box(points: np.ndarray, center, half, yaw, z_lo: float, z_hi: float) -> bool:
    """Whether any of points [N, 3] lies in the oriented box (xy rectangle, z_lo < z <= z_hi)."""
    r = float(np.hypot(*half))
    m = ((np.abs(points[:, 0] - center[0]) <= r) & (np.abs(points[:, 1] - center[1]) <= r)
         & (points[:, 2] > z_lo) & (points[:, 2] <= z_hi))
    if not m.any():
        return False
    local = _rotate(points[m, :2] - center, -yaw)
    return bool(((np.abs(local[:, 0]) <= half[0]) & (np.abs(local[:, 1]) <= half[1])).any())


def place_rare_instances(scene: Scene, bank: InstanceBank, rng, num_instances: int, cell: float = 0.1,
                         margin: float = 0.05, max_tries: int = 50, flatness: float = 0.06) -> tuple:
    """Insert up to ``num_instances`` bank instances into a scene where they fit (see the module docstring).

    scene:         points [N, 3] metres with labels and instances (colors optional).
    bank:          InstanceBank to draw from; rng: np.random.Generator (or an int seed).
    num_instances: how many instances to try to place (one bank draw each).
    cell:          height-map cell edge, metres; margin: clearance around the instance's box, metres.
    max_tries:     random yaw / position tries per instance; flatness: max height spread of a support.
    Returns (Scene, list[Placement]): a new Scene (same name, source, faces) with the placed instances'
    points appended (their label, a new instance id, their colours; grey when the bank entry has none and the
    scene has colours), and one Placement per placed instance. Points above the support by at most
    ``flatness / 2`` count as the support surface, not as collisions.
    """
    _check_scene(scene)
    if cell <= 0 or margin < 0 or flatness < 0 or max_tries < 1:
        raise InputError(None, f"bad placement settings: cell={cell}, margin={margin}, flatness={flatness}, "
                               f"max_tries={max_tries}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    pts = np.asarray(scene.points, dtype=np.float64)
    origin, heights = height_map(pts, cell)
    lo_xy, hi_xy = pts[:, :2].min(0), pts[:, :2].max(0)
    boxes = instance_boxes(scene)
    inst = np.asarray(scene.instances)
    next_id = int(max(inst.max(), NO_INSTANCE)) + 1
    z_tol = flatness / 2.0
    added_pts, added_col, added_lab, added_inst, placements = [], [], [], [], []
    collide = pts
    for _ in range(num_instances):
        if not len(bank):
            break
        entry = bank.sample(rng)
        yaw = rng.uniform(0.0, 2.0 * np.pi, max_tries)
        u = rng.random((max_tries, 2))
        grown = np.asarray(entry.half_xy) + margin
        ext = _extent(grown, yaw)  # [T, 2] axis-aligned half extents
        lo, hi = lo_xy + ext, hi_xy - ext
        center = lo + u * np.maximum(hi - lo, 0.0)
        fits = np.flatnonzero((hi >= lo).all(1))  # tries whose footprint lies inside the scene's extent
        if not len(fits):
            continue
        samples = _footprint_samples(grown, cell / 2.0)  # [S, 2]
        world = center[fits, None] + _rotate(samples[None], yaw[fits, None])  # [F, S, 2]
        idx = np.floor((world - origin) / cell).astype(np.int64)
        idx = np.clip(idx, 0, np.array(heights.shape) - 1)
        under = heights[idx[..., 0], idx[..., 1]]  # [F, S]
        support = np.zeros(max_tries)
        support[fits] = under.max(1)
        for t in fits[support[fits] - under.min(1) <= flatness]:
            z0, top = float(support[t]), float(support[t]) + entry.height + margin
            poly = footprint_corners(center[t], grown, np.asarray(yaw[t]))
            above = (boxes.zmax > z0 + flatness) & (boxes.zmin < top)
            if above.any() and (polygon_distance(poly[None], boxes.corners[above]) <= 0.0).any():
                continue
            if _points_in_box(collide, center[t], grown, yaw[t], z0 + z_tol, top):
                continue
            new = np.empty((len(entry.points), 3))
            new[:, :2] = center[t] + _rotate(entry.points[:, :2].astype(np.float64), yaw[t])
            new[:, 2] = entry.points[:, 2] + z0
            p = Placement(entry.label, next_id, (float(center[t, 0]), float(center[t, 1])), float(yaw[t]),
                          entry.half_xy, z0, entry.height, entry.source)
            placements.append(p)
            added_pts.append(new)
            added_lab.append(np.full(len(new), entry.label, np.int64))
            added_inst.append(np.full(len(new), next_id, np.int64))
            added_col.append(entry.colors if entry.colors is not None else np.full((len(new), 3), 128, np.uint8))
            next_id += 1
            boxes.append(p.instance, p.footprint(), z0, z0 + entry.height)
            collide = np.concatenate([collide, new])
            cidx = np.clip(np.floor((new[:, :2] - origin) / cell).astype(np.int64), 0, np.array(heights.shape) - 1)
            np.maximum.at(heights, (cidx[:, 0], cidx[:, 1]), new[:, 2])
            break
    if not placements:
        return Scene(points=scene.points, colors=scene.colors, labels=scene.labels, instances=scene.instances,
                     name=scene.name, source=scene.source, faces=scene.faces), placements
    colors = None if scene.colors is None else np.concatenate([np.asarray(scene.colors)] + added_col)
    out = Scene(
        points=np.concatenate([pts] + added_pts).astype(np.float32),
        colors=colors,
        labels=np.concatenate([np.asarray(scene.labels, dtype=np.int64)] + added_lab),
        instances=np.concatenate([inst.astype(np.int64)] + added_inst),
        name=scene.name,
        source=scene.source,
        faces=scene.faces,
    )
    return out, placements


def insert_rare_instances(scene: Scene, bank: InstanceBank, rng, num_instances: int, cell: float = 0.1,
                          margin: float = 0.05, max_tries: int = 50, flatness: float = 0.06) -> Scene:
    """The scene with up to ``num_instances`` bank instances inserted (``place_rare_instances``, whose
    arguments these are, without the placement records)."""
    return place_rare_instances(scene, bank, rng, num_instances, cell, margin, max_tries, flatness)[0]


def count_inserted_instances(original: Scene, augmented: Scene) -> int:
    """Number of instance ids in ``augmented`` that ``original`` does not have (the placed instances)."""
    before = set(np.unique(np.asarray(original.instances)).tolist())
    after = set(np.unique(np.asarray(augmented.instances)).tolist())
    return len(after - before - {NO_INSTANCE})
