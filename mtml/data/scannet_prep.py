"""Scans -> an HDF5 voxel store (``mtml.io.store``), resumable: what ``mtml-prep`` runs for every format.

* ``prep_scannet``: ScanNet v2 scan folders (labels from the aggregation, through the tsv);
* ``prep_scans("votenet", ...)``: VoteNet / mmdetection3d exports (``<scene>_vert.npy`` + ``_sem_label.npy`` + ``_ins_label.npy``);
* ``prep_scans("pointcept", ...)``: Pointcept scan folders (``coord.npy``, ``segment20.npy`` / ``segment200.npy``, ``instance.npy``);
* ``prep_scans("ply", ...)``: PLY files whose ``label`` holds NYU40 ids, as ScanNet's ``<scene>_vh_clean_2.labels.ply``.

All of them write the same store through ``mtml.io.store.build_store`` (``_build``): one grid per scan, voxel labels
in the benchmark's ids (``scannet20``: the NYU40 ids of its 20 classes, other ids 0; ``scannet200``: ScanNet200 ids,
from the sources that have them: scan folders and Pointcept's ``segment200``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.io.formats import find_ply_files, nyu40_scene_to_benchmark, read_any_scene
from mtml.io.ply import read_ply
from mtml.io.pointcept import find_pointcept_scenes
from mtml.io.scannet import BENCHMARKS, find_label_map, find_scans, read_label_map, read_scannet_scan
from mtml.io.store import VoxelStore, build_store
from mtml.io.votenet import find_votenet_scans
from mtml.scene import Scene, VoxelGrid


@dataclass(frozen=True)
class PrepSummary:
    """What a ``prep_*`` function did: the store ``path``, ``scenes`` in it from this run's scan list, how many were
    ``built`` now and ``kept`` from an earlier (interrupted or shorter) run, their total ``voxels``, ``seconds``."""

    path: Path
    scenes: int
    built: int
    kept: int
    voxels: int
    seconds: float

    def line(self) -> str:
        """The one-line summary ``mtml-prep`` prints."""
        return (
            f"{self.path}: {self.scenes} scenes ({self.built} built, {self.kept} kept), "
            f"{self.voxels} voxels, {self.seconds:.1f} s"
        )


def _check_settings(benchmark: str, voxel_size: float, limit: int | None) -> None:
    """InputError for an unknown benchmark, a voxel size that is not a positive finite number, a limit below 1."""
    if benchmark not in BENCHMARKS:
        raise InputError(None, f"unknown benchmark {benchmark!r} (known: {', '.join(BENCHMARKS)})")
    if not (isinstance(voxel_size, (int, float)) and math.isfinite(voxel_size) and voxel_size > 0):
        raise InputError(None, f"voxel size must be a positive finite number, got {voxel_size}")
    if limit is not None and limit < 1:
        raise InputError(None, f"limit must be at least 1, got {limit}")


def _build(
    out: str | os.PathLike,
    scans: list[tuple[str, Path]],
    read: Callable[[Path], Scene],
    meta: dict,
    *,
    voxel_size: float,
    with_point_map: bool,
    overwrite: bool,
    progress: bool,
    start: float,
) -> PrepSummary:
    """Voxelize each (name, path) of ``scans`` read by ``read(path)`` into the store ``out`` (``build_store``:
    resumable, scenes already there are kept) with store-wide ``meta``. Each grid's attrs are {source, num_points,
    num_voxels}. InputError naming the scan when it has no semantic labels (a store is training data).
    ``start``: ``time.perf_counter()`` when the run began, for the summary's seconds."""
    built = []

    def make(name: str, path: Path) -> VoxelGrid:
        scene = read(path)
        if scene.labels is None:
            raise InputError(scene.source or path, f"no semantic labels in {meta['benchmark']} ids: mtml-prep "
                                                   "stores labelled scans (training data)")
        grid = voxelize(scene, voxel_size)
        grid.extra = {"source": scene.source or str(path), "num_points": scene.num_points,
                      "num_voxels": grid.num_voxels}
        built.append(name)
        return grid

    items = ((name, (lambda name=name, path=path: make(name, path))) for name, path in scans)
    path = build_store(out, items, meta=meta, with_point_map=with_point_map, overwrite=overwrite, progress=progress,
                       total=len(scans), desc=f"{meta['dataset']} {meta['benchmark']}")
    with VoxelStore(path) as store:
        voxels = 0
        for name, _ in scans:
            count = store.attrs(name).get("num_voxels")
            voxels += int(count) if count is not None else store.get(name).num_voxels
    return PrepSummary(path, len(scans), len(built), len(scans) - len(built), voxels, time.perf_counter() - start)


def _nyu40_sources(what: str, benchmark: str) -> None:
    """InputError unless ``benchmark`` can be had from NYU40 ids (only "scannet20" can)."""
    if benchmark != "scannet20":
        raise InputError(None, f"{what} hold NYU40 ids, which have no {benchmark} ids: use --benchmark scannet20, "
                               "or ScanNet scan folders / Pointcept folders (segment200) for scannet200")


def _scans_of(root: Path, found: list[tuple[str, Path]], what: str, limit: int | None) -> list[tuple[str, Path]]:
    """The first ``limit`` (all for None) of ``found``; InputError naming ``root`` when it is empty."""
    if not found:
        raise InputError(root, f"no {what} in this folder")
    return found[:limit]


def prep_scannet(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    benchmark: str = "scannet20",
    voxel_size: float = 0.1,
    label_map: str | os.PathLike | None = None,
    limit: int | None = None,
    with_point_map: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepSummary:
    """Read every scan folder under ``root``, voxelize it and store the grids in ``out``.

    root:       folder of ``scene*`` scan folders (``find_scans``), e.g. ``<ScanNet>/scans``.
    out:        the HDF5 store to write. Work goes to ``out + ".partial"``; scenes already there or in an existing
                ``out`` are kept, so an interrupted run (or one with ``limit``) is continued, not redone.
    benchmark:  "scannet20" or "scannet200": voxel labels are that benchmark's ids (NYU40 ids / ScanNet200 ids,
                0 for other categories), see ``mtml.io.scannet``.
    voxel_size: metres.
    label_map:  ``scannetv2-labels.combined.tsv``; default: found beside the first scan (its folder, parent or
                grandparent).
    limit:      only the first ``limit`` scans (sorted by name).
    with_point_map: also store each scan's vertex -> voxel map (int [N]).
    overwrite:  rebuild everything instead of continuing.
    Each grid holds coords [V, 3], majority labels [V] and instances [V] (objectId, -1 = none), mean colors [V, 3];
    its attrs are {source, num_points, num_voxels}. The store meta records dataset, benchmark, voxel size and the
    label map path (continuing with other settings is an InputError).
    Raises InputError naming the root, the label map or the scan folder / file that is wrong.
    """
    start = time.perf_counter()
    _check_settings(benchmark, voxel_size, limit)
    root = Path(root)
    scans = _scans_of(root, [(folder.name, folder) for folder in find_scans(root)],
                      "ScanNet scan folders (scene*/<scene>_vh_clean_2.ply)", limit)
    if label_map is None:
        found = find_label_map(scans[0][1])
        if found is None:
            raise InputError(
                root, "no scannetv2-labels.combined.tsv in the first scan folder, this folder or its parent; "
                "give the label map"
            )
        label_map = found
    label_map = Path(label_map).resolve()
    rows = read_label_map(label_map)

    meta = {"dataset": "scannet", "benchmark": benchmark, "voxel_size": float(voxel_size), "label_map": str(label_map)}
    return _build(out, scans, lambda folder: read_scannet_scan(folder, benchmark=benchmark, label_map=rows), meta,
                  voxel_size=voxel_size, with_point_map=with_point_map, overwrite=overwrite, progress=progress,
                  start=start)


@dataclass(frozen=True)
class ScanFormat:
    """How ``prep_scans`` finds and reads one kind of labelled scan export.

    find:   root -> [(scan name, path)] of the scans in ``root``.
    read:   (path, benchmark) -> Scene with labels in the benchmark's ids.
    what:   the scans, named for errors ("VoteNet scans (<scene>_vert.npy)").
    nyu40:  the files hold NYU40 ids (so only "scannet20" can be had from them).
    """

    find: Callable[[Path], list]
    read: Callable[[Path, str], Scene]
    what: str
    nyu40: bool


SCAN_FORMATS = {
    "votenet": ScanFormat(lambda root: [(p.name, p) for p in find_votenet_scans(root)],
                          lambda path, benchmark: read_any_scene(path, benchmark),
                          "VoteNet scans (<scene>_vert.npy)", nyu40=True),
    "pointcept": ScanFormat(lambda root: [(p.name, p) for p in find_pointcept_scenes(root)],
                            lambda path, benchmark: read_any_scene(path, benchmark),
                            "Pointcept scan folders (<scene>/coord.npy)", nyu40=False),
    "ply": ScanFormat(lambda root: list(find_ply_files(root, in_scan_folders=True).items()),
                      lambda path, benchmark: nyu40_scene_to_benchmark(read_ply(path), benchmark),
                      "PLY files (*.ply, <scene>/<scene>_vh_clean_2.labels.ply)", nyu40=True),
}
"""The export formats ``prep_scans`` reads: VoteNet / mmdetection3d (``<scene>_vert.npy`` with ``_sem_label.npy``
and ``_ins_label.npy``, instances ``ins_label - 1``), Pointcept scan folders (``segment20.npy`` as NYU40 ids or
``segment200.npy`` as ScanNet200 ids, ``instance.npy``; the folders of ``root`` or of its train/val/test folders),
and PLY files whose vertex ``label`` holds NYU40 ids (``.ply`` files and the ``<scene>_vh_clean_2.labels.ply`` of
ScanNet scan folders; instances from an ``instance`` property)."""


def prep_scans(
    fmt: str,
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    benchmark: str = "scannet20",
    voxel_size: float = 0.1,
    limit: int | None = None,
    with_point_map: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepSummary:
    """Voxelize every scan of format ``fmt`` ("votenet", "pointcept", "ply": ``SCAN_FORMATS``) under ``root`` into
    the store ``out``.

    benchmark: "scannet20" (NYU40 ids of its 20 classes, other ids 0), or "scannet200" for formats that carry
    ScanNet200 ids (Pointcept's ``segment200.npy``). The other arguments, the resuming and the grids are those of
    ``prep_scannet``. Store meta: dataset ``fmt``, benchmark, voxel size. InputError naming the root or the file
    that is wrong, also for a scan without labels (a store is training data).
    """
    start = time.perf_counter()
    if fmt not in SCAN_FORMATS:
        raise InputError(None, f"unknown scan format {fmt!r} (known: scannet, {', '.join(SCAN_FORMATS)})")
    spec = SCAN_FORMATS[fmt]
    _check_settings(benchmark, voxel_size, limit)
    if spec.nyu40:
        _nyu40_sources(spec.what, benchmark)
    root = Path(root)
    scans = _scans_of(root, spec.find(root), spec.what, limit)
    meta = {"dataset": fmt, "benchmark": benchmark, "voxel_size": float(voxel_size)}
    return _build(out, scans, lambda path: spec.read(path, benchmark), meta, voxel_size=voxel_size,
                  with_point_map=with_point_map, overwrite=overwrite, progress=progress, start=start)
