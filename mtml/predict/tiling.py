"""Scans of any size under a memory bound: when a scan's dense grid would need more memory than the network may
use, it is cut into overlapping full-height tiles in x and y, each tile runs the ordinary pipeline
(``mtml.predict.infer.segment_grid``), and the tiles' answers are merged into one ``SceneResult`` over the whole
scan's sparse grid.

How the scan is cut (``tile_layout``): the grid's columns are split into the fewest equal *cores* (an even number
of voxels wide, so that every tile keeps the untiled grid's max-pool phase, and at least the overlap); each tile is
its core widened by the overlap on every side (clipped to the scan) and full height. A tile's grid, with a voxel of
slack in x and y for the shifted copies of ``--vote``, fits ``max_voxels``. Every voxel is *owned* by the one tile
whose core holds it: its semantic label, its network outputs and its place in an instance come from that tile,
where it lies at least the overlap away from the tile's cut edge.

The overlap (default 2 m): the backbone's receptive field is 142 voxels, 14.2 m at 10 cm
(``mtml.model.backbone.receptive_field``), but nearly all of an output's weight is near it (the 7x7x7 stem and the
full-resolution block see 1.1 m; the dilated blocks add sparse taps further out), so a core voxel 2 m from the cut
already sees what decides its label: on toy test scenes 900-909 cut into 4 tiles, 99.96% of the points keep their
untiled label with 2 m (at least 99.86% per scene; 99.6% with 0.4 m, down to 98.3% on one scene). The overlap
also sets what merges cleanly: an object narrower than the overlap that crosses a core border lies whole inside
both tiles, so both find it and agree on its label.

How instances merge (``merge_fragments``): each tile's instances are fragments over the whole grid's voxels. Two
fragments of neighbouring tiles with the same semantic label are one object when their IoU over the voxels both
tiles see is at least ``merge_iou`` (0.5; with exclusive masks a fragment can pass that with at most one fragment of
another tile). Matches join best first and chain across tiles (union-find), but an instance never takes two
fragments of one tile: that tile saw them as two objects, and a ring of matches through the other tiles (one that
merged them, as happens around the corner where four cores meet) must not override it. A merged instance holds the
voxels its fragments own, so an object cut at a border comes out once and no voxel is in two instances; its score
is that of its largest fragment (the tile that saw most of it).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from mtml.cluster.pipeline import ClusterConfig
from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.model.model import MTMLNet
from mtml.predict.infer import segment_grid
from mtml.scene import Instances, Scene, SceneResult, VoxelGrid, VoxelPredictions

TILE_OVERLAP_M = 2.0
"""Default overlap (m): how far each tile reaches past its core on every side (see the module docstring)."""
TILE_MERGE_IOU = 0.5
"""Default IoU, over the voxels two tiles share, at which their fragments of one label are one instance."""


@dataclass
class Tile:
    """One tile, in voxel columns of the whole grid (half-open ranges ``(x0, x1, y0, y1)``).

    core: the columns it owns. box: the columns it sees, the core widened by the overlap, clipped to the grid.
    """

    core: tuple
    box: tuple


@dataclass
class TilePlan:
    """How a scan too large for one grid is cut.

    grid:      the whole scan's sparse grid (``coords`` of its occupied voxels; the dense ``shape`` is never
               allocated).
    tiles:     the tiles whose cores hold at least one occupied voxel.
    owner:     int64 [V] index into ``tiles`` of the tile owning each voxel of ``grid``.
    margin:    the overlap in voxels (even).
    max_voxels: the bound each tile's grid fits.
    """

    grid: VoxelGrid
    tiles: list
    owner: np.ndarray
    margin: int
    max_voxels: int


def _even_up(n: int) -> int:
    """``n`` rounded up to an even number (the backbone pools by 2)."""
    return n + (n % 2)


def tile_cells(width: int, depth: int, height: int) -> int:
    """Dense cells of a tile's network input: ``width`` x ``depth`` voxel columns (one voxel of slack each, for the
    half-voxel shifted copies of ``mtml.predict.voting``) by ``height`` voxels, each rounded up to even."""
    return _even_up(width + 1) * _even_up(depth + 1) * _even_up(height)


def margin_voxels(overlap_m: float, voxel_size: float) -> int:
    """The overlap in voxels, rounded up to even (tiles then start on even columns). InputError for an overlap that
    is not a finite number > 0."""
    if isinstance(overlap_m, bool) or not isinstance(overlap_m, (int, float)) or not math.isfinite(overlap_m) \
            or overlap_m <= 0:
        raise InputError(None, f"the tile overlap must be a finite number of metres > 0, got {overlap_m!r}")
    return _even_up(math.ceil(overlap_m / voxel_size - 1e-9))


def axis_options(length: int, margin: int) -> list:
    """The ways to cut one axis of ``length`` voxels into tiles whose cores are even and at least ``margin`` wide
    (or one tile, the whole axis): (tiles, width of the widest tile's box, core width) for each tile count that
    some core reaches with a narrower widest box than every smaller count; fewest tiles first."""
    min_core = _even_up(max(margin, 2))
    narrowest: dict = {}
    for core in [length, *range(min_core, length, 2)]:
        tiles = -(-length // core)
        # tile i sees [i * core - margin, (i + 1) * core + margin), clipped; the widest is the first, the second
        # (the widest inner one) or the last
        widest = max(min(length, (i + 1) * core + margin) - max(0, i * core - margin) for i in {0, min(1, tiles - 1),
                                                                                              tiles - 1})
        if tiles not in narrowest or widest < narrowest[tiles][0]:
            narrowest[tiles] = (widest, core)
    options = []
    for tiles in sorted(narrowest):
        widest, core = narrowest[tiles]
        if not options or widest < options[-1][1]:
            options.append((tiles, widest, core))
    return options


def tile_layout(shape: tuple, max_voxels: int, margin: int) -> tuple | None:
    """The fewest tiles of a grid of ``shape`` (X, Y, Z) voxels whose full-height grids fit ``max_voxels``
    (``tile_cells``), each core at least ``margin`` voxels wide (narrower cores would run every point through the
    network more than 9 times); among as few, the one with the fewest cells in all. Returns (core width in x, core
    width in y), even numbers of voxels (an axis left whole has its full length), or None when no such tiles exist
    (the scan is too tall for the bound)."""
    size_x, size_y, height = (int(s) for s in shape)
    options_y = axis_options(size_y, margin)
    best = None
    for tiles_x, width_x, core_x in axis_options(size_x, margin):
        if best is not None and tiles_x > best[0][0]:
            break  # the tiles in x alone are already more than the best layout's
        fitting = [option for option in options_y if tile_cells(width_x, option[1], height) <= max_voxels]
        if fitting:
            count = tiles_x * fitting[0][0]
            rank = (count, count * tile_cells(width_x, fitting[0][1], height))  # then the least network work
            if best is None or rank < best[0]:
                best = (rank, core_x, fitting[0][2])
    return None if best is None else best[1:]


def grid_or_tiles(scene: Scene, voxel_size: float, max_voxels: int | None,
                  overlap_m: float = TILE_OVERLAP_M) -> VoxelGrid | TilePlan:
    """The scene's voxel grid when its dense grid has at most ``max_voxels`` cells (exactly ``voxelize(scene,
    voxel_size, max_voxels=max_voxels)``), else the ``TilePlan`` that cuts it into tiles that fit (``tile_layout``;
    tiles ``overlap_m`` metres wider than their cores on each side). ``max_voxels`` None: never tiled.

    InputError naming the scan for bad points (``voxelize``) and when not even one full-height tile fits: the scan
    is too tall for the bound (the message says to raise the memory limit).
    """
    grid = voxelize(scene, voxel_size)  # the sparse grid; nothing dense is allocated
    num_cells = math.prod(grid.shape)
    if max_voxels is None or num_cells <= max_voxels:
        return grid
    margin = margin_voxels(overlap_m, voxel_size)
    layout = tile_layout(grid.shape, max_voxels, margin)
    if layout is None:
        width_x, width_y = (axis_options(size, margin)[-1][1] for size in grid.shape[:2])  # the narrowest tiles
        raise InputError(scene.source or scene.name,
                         f"grid of {'x'.join(map(str, grid.shape))} = {num_cells} voxels at {voxel_size} m is "
                         f"{grid.shape[2]} voxels tall: even its smallest full-height tile ({width_x}x{width_y}x"
                         f"{grid.shape[2]} voxels with {overlap_m:g} m overlap, "
                         f"{tile_cells(width_x, width_y, grid.shape[2])} padded cells) exceeds the limit of "
                         f"{max_voxels} voxels (raise the memory limit or use a larger voxel size)")
    core_x, core_y = layout
    size_x, size_y = grid.shape[0], grid.shape[1]
    cores_y = -(-size_y // core_y)
    code = (grid.coords[:, 0] // core_x) * cores_y + grid.coords[:, 1] // core_y
    used, owner = np.unique(code, return_inverse=True)
    tiles = []
    for c in used.tolist():
        x0, y0 = (c // cores_y) * core_x, (c % cores_y) * core_y
        x1, y1 = min(x0 + core_x, size_x), min(y0 + core_y, size_y)
        box = (max(x0 - margin, 0), min(x1 + margin, size_x), max(y0 - margin, 0), min(y1 + margin, size_y))
        tiles.append(Tile((x0, x1, y0, y1), box))
    return TilePlan(grid, tiles, owner.astype(np.int64), margin, int(max_voxels))


def _in_box(coords: np.ndarray, box: tuple) -> np.ndarray:
    """bool [V]: which voxels (coords int64 [V, 3]) lie in the columns ``box`` = (x0, x1, y0, y1)."""
    x0, x1, y0, y1 = box
    return (coords[:, 0] >= x0) & (coords[:, 0] < x1) & (coords[:, 1] >= y0) & (coords[:, 1] < y1)


def tile_input(scene: Scene, plan: TilePlan, index: int) -> tuple[Scene, VoxelGrid, np.ndarray, np.ndarray]:
    """Tile ``index`` of a plan as the pipeline takes it: (its points as a Scene, its grid, rows int64 [V_t] of the
    whole grid's voxels it holds, point indices int64 [N_t] of the scene's points it holds). The tile's voxels are
    exactly the whole grid's (same points per voxel), its origin is its box's corner (an even column) at the whole
    grid's height."""
    grid, box = plan.grid, plan.tiles[index].box
    rows = np.flatnonzero(_in_box(grid.coords, box))
    local_row = np.full(grid.num_voxels, -1, dtype=np.int64)
    local_row[rows] = np.arange(len(rows))
    points = np.flatnonzero(local_row[grid.point_to_voxel] >= 0)
    offset = np.array([box[0], box[2], 0], dtype=np.int64)
    coords = grid.coords[rows] - offset

    def part(values: np.ndarray | None, at: np.ndarray) -> np.ndarray | None:
        return None if values is None else values[at]

    tile_grid = VoxelGrid(shape=tuple(int(s) for s in coords.max(axis=0) + 1),
                          origin=grid.origin + offset * grid.voxel_size, voxel_size=grid.voxel_size, coords=coords,
                          point_to_voxel=local_row[grid.point_to_voxel[points]], labels=part(grid.labels, rows),
                          instances=part(grid.instances, rows), colors=part(grid.colors, rows))
    tile_scene = Scene(points=scene.points[points], colors=part(scene.colors, points),
                       labels=part(scene.labels, points), instances=part(scene.instances, points),
                       name=scene.name, source=scene.source)
    return tile_scene, tile_grid, rows, points


@dataclass
class Fragments:
    """The instances every tile found, over the whole grid's voxels (fragment f is tile ``tile[f]``'s)."""

    rows: list = dataclasses.field(default_factory=list)  # int64 row arrays into the whole grid's coords
    tile: list = dataclasses.field(default_factory=list)
    labels: list = dataclasses.field(default_factory=list)
    scores: list = dataclasses.field(default_factory=list)


def _root(parent: np.ndarray, i: int) -> int:
    """Union-find: the representative of ``i`` (with path halving)."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def merge_fragments(plan: TilePlan, fragments: Fragments, merge_iou: float = TILE_MERGE_IOU) -> Instances:
    """The tiles' instances as one set over the whole grid (module docstring): fragments of two tiles with one
    label and IoU >= ``merge_iou`` over the voxels both tiles see are one instance; each instance holds the voxels
    its fragments' tiles own; instances with none are dropped. Returns ``Instances`` over ``plan.grid``, best score
    first."""
    count = len(fragments.rows)
    if count == 0:
        return Instances()
    tile = np.asarray(fragments.tile, dtype=np.int64)
    labels = np.asarray(fragments.labels, dtype=np.int64)
    sizes = np.array([len(r) for r in fragments.rows], dtype=np.int64)
    member = np.repeat(np.arange(count), sizes)
    voxel = np.concatenate(fragments.rows)
    order = np.lexsort((member, voxel))
    member, voxel = member[order], voxel[order]
    # every pair of fragments of different tiles on one voxel: entries i and i + step of the sorted list
    pair_a, pair_b = [], []
    for step in itertools.count(1):
        same = voxel[step:] == voxel[:-step]
        if not same.any():
            break
        a, b = member[:-step][same], member[step:][same]
        keep = tile[a] != tile[b]
        pair_a.append(a[keep])
        pair_b.append(b[keep])
    parent = np.arange(count)
    tiles_of = {i: {int(tile[i])} for i in range(count)}  # a component's tiles, kept at its root
    if pair_a:
        pairs, shared = np.unique(np.stack([np.concatenate(pair_a), np.concatenate(pair_b)], axis=1), axis=0,
                                  return_counts=True)
        candidates = []
        for (a, b), both in zip(pairs.tolist(), shared.tolist()):
            if labels[a] != labels[b]:
                continue
            box_a, box_b = plan.tiles[tile[a]].box, plan.tiles[tile[b]].box
            seen_a = int(_in_box(plan.grid.coords[fragments.rows[a]], box_b).sum())  # a's voxels b's tile sees
            seen_b = int(_in_box(plan.grid.coords[fragments.rows[b]], box_a).sum())
            iou = both / (seen_a + seen_b - both)
            if iou >= merge_iou:
                candidates.append((-iou, a, b))
        for _, a, b in sorted(candidates):  # best match first
            ra, rb = _root(parent, a), _root(parent, b)
            if ra != rb and not tiles_of[ra] & tiles_of[rb]:  # at most one fragment per tile: its tile split them
                parent[ra] = rb
                tiles_of[rb] |= tiles_of.pop(ra)
    roots = np.array([_root(parent, i) for i in range(count)])
    masks, out_labels, out_scores = [], [], []
    for r in np.unique(roots).tolist():
        members = np.flatnonzero(roots == r)
        owned = [fragments.rows[f][plan.owner[fragments.rows[f]] == tile[f]] for f in members]
        rows = np.unique(np.concatenate(owned))
        if len(rows) == 0:
            continue
        masks.append(rows.astype(np.int64))
        out_labels.append(labels[members[0]])
        out_scores.append(fragments.scores[members[np.argmax(sizes[members])]])
    order = np.argsort(-np.asarray(out_scores, dtype=np.float64), kind="stable")
    return Instances([masks[k] for k in order], np.asarray(out_labels, dtype=np.int64)[order],
                     np.asarray(out_scores, dtype=np.float64)[order])


def segment_tiles(model: MTMLNet, scene: Scene, plan: TilePlan, cluster_cfg: ClusterConfig, device: str = "cpu",
                  use_given_labels: bool = True, vote_passes: int = 1,
                  merge_iou: float = TILE_MERGE_IOU) -> SceneResult:
    """``segment_grid`` on each tile of ``plan`` (one at a time, so memory holds one tile's network), merged into
    one result over the whole scan (module docstring).

    Returns a ``SceneResult`` whose grid is ``plan.grid`` (labels: those the instances were built on, each voxel's
    from its owning tile), whose instances are the merged ones over its voxels, whose point labels come from the
    tile owning each point's voxel, and whose ``voxel_predictions`` hold the embedding, direction and predicted
    labels (no semantic features or probabilities: they would be the largest whole-scan arrays). Timings (s): each
    stage of ``segment_grid`` summed over the tiles, and ``tiling`` (cutting and merging).
    """
    t_start = time.perf_counter()
    grid = plan.grid
    voxel_labels = np.zeros(grid.num_voxels, dtype=np.int64)
    point_labels = np.zeros(scene.num_points, dtype=np.int64)
    embedding = direction = predicted = None
    fragments = Fragments()
    timings: dict = {}
    labels_source = "given"
    for index in range(len(plan.tiles)):
        tile_scene, tile_grid, rows, points = tile_input(scene, plan, index)
        res = segment_grid(model, tile_scene, tile_grid, cluster_cfg, device, use_given_labels,
                           vote_passes=vote_passes, max_voxels=plan.max_voxels)
        for stage, seconds in res.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
        labels_source = res.labels_source
        owned = plan.owner[rows] == index
        voxel_labels[rows[owned]] = res.grid.labels[owned]
        owned_points = plan.owner[grid.point_to_voxel[points]] == index
        point_labels[points[owned_points]] = res.point_labels[owned_points]
        pred = res.voxel_predictions
        if embedding is None:
            embedding = np.zeros((grid.num_voxels, pred.embedding.shape[1]), dtype=pred.embedding.dtype)
            direction = np.zeros((grid.num_voxels, 3), dtype=pred.direction.dtype)
            predicted = None if pred.labels is None else np.zeros(grid.num_voxels, dtype=np.int64)
        embedding[rows[owned]] = pred.embedding[owned]
        direction[rows[owned]] = pred.direction[owned]
        if predicted is not None:
            predicted[rows[owned]] = pred.labels[owned]
        for mask, label, score in zip(res.instances.masks, res.instances.labels, res.instances.scores):
            fragments.rows.append(rows[mask])
            fragments.tile.append(index)
            fragments.labels.append(int(label))
            fragments.scores.append(float(score))
    instances = merge_fragments(plan, fragments, merge_iou)
    timings["tiling"] = time.perf_counter() - t_start - sum(timings.values())
    return SceneResult(scene, dataclasses.replace(grid, labels=voxel_labels), instances, point_labels, labels_source,
                       timings, VoxelPredictions(embedding, direction, predicted))
