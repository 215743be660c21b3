"""ScanNet scan folders -> an HDF5 voxel store (``mtml.io.store``), resumable; what ``mtml-prep scannet`` runs."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.io.scannet import BENCHMARKS, find_label_map, find_scans, read_label_map, read_scannet_scan
from mtml.io.store import VoxelStore, build_store
from mtml.scene import VoxelGrid


@dataclass(frozen=True)
class PrepSummary:
    """What ``prep_scannet`` did: the store ``path``, ``scenes`` in it from this run's scan list, how many were
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
    if benchmark not in BENCHMARKS:
        raise InputError(None, f"unknown benchmark {benchmark!r} (known: {', '.join(BENCHMARKS)})")
    if not (isinstance(voxel_size, (int, float)) and math.isfinite(voxel_size) and voxel_size > 0):
        raise InputError(None, f"voxel size must be a positive finite number, got {voxel_size}")
    if limit is not None and limit < 1:
        raise InputError(None, f"limit must be at least 1, got {limit}")
    root = Path(root)
    scans = find_scans(root)
    if not scans:
        raise InputError(root, "no ScanNet scan folders (scene*/<scene>_vh_clean_2.ply) in this folder")
    scans = scans[:limit]
    if label_map is None:
        found = find_label_map(scans[0])
        if found is None:
            raise InputError(
                root, "no scannetv2-labels.combined.tsv in the first scan folder, this folder or its parent; "
                "give the label map"
            )
        label_map = found
    label_map = Path(label_map).resolve()
    rows = read_label_map(label_map)

    built = []

    def make(folder: Path) -> VoxelGrid:
        scene = read_scannet_scan(folder, benchmark=benchmark, label_map=rows)
        grid = voxelize(scene, voxel_size)
        grid.extra = {"source": str(folder), "num_points": scene.num_points, "num_voxels": grid.num_voxels}
        built.append(folder.name)
        return grid

    meta = {"dataset": "scannet", "benchmark": benchmark, "voxel_size": float(voxel_size), "label_map": str(label_map)}
    items = ((folder.name, (lambda folder=folder: make(folder))) for folder in scans)
    path = build_store(
        out, items, meta=meta, with_point_map=with_point_map, overwrite=overwrite, progress=progress,
        total=len(scans), desc=f"scannet {benchmark}",
    )
    with VoxelStore(path) as store:
        voxels = 0
        for folder in scans:
            count = store.attrs(folder.name).get("num_voxels")
            voxels += int(count) if count is not None else store.get(folder.name).num_voxels
    return PrepSummary(path, len(scans), len(built), len(scans) - len(built), voxels, time.perf_counter() - start)
