"""One entry point for every scan format mtml reads: ``read_any_scene`` finds a path's format and reads it,
``find_scenes`` lists the scans of every format in a folder.

Formats (``ACCEPTED_FORMATS``, what an error lists):

* ``"ply"``: a PLY point cloud or mesh (``mtml.io.ply.read_ply``); ScanNet's ``<scene>_vh_clean_2.labels.ply``
  carries NYU40 ids in its ``label`` property;
* ``"scannet"``: a ScanNet v2 scan folder ``<scene>/``: with its segmentation and aggregation files, labelled by
  ``mtml.io.scannet.read_scannet_scan``; without them, its ``<scene>_vh_clean_2.labels.ply`` (NYU40 labels, no
  instances) or else the bare mesh ``<scene>_vh_clean_2.ply`` (a test scan: no labels);
* ``"votenet"``: a VoteNet / mmdetection3d export, ``<scene>_vert.npy`` or any file of the scan, or its path prefix
  (``mtml.io.votenet``);
* ``"pointcept"``: a Pointcept scan folder holding ``coord.npy``, or one of its files (``mtml.io.pointcept``).

Labels come out in the ids of ``benchmark``, as ``read_scannet_scan`` gives them: for "scannet20" the NYU40 ids of
its 20 classes (other NYU40 ids become 0), for "scannet200" ScanNet200 ids. Sources that hold NYU40 ids only
(VoteNet, ``_vh_clean_2.labels.ply``) cannot give ScanNet200 ids: their scene has no labels for "scannet200" (the
instances stay). Another benchmark name (e.g. "toy") leaves NYU40 labels as they are; a Pointcept scan then reads
its ``segment20`` (NYU40 ids). A plain PLY's ``label`` values are kept as they are for every benchmark.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from mtml.errors import InputError
from mtml.io.ply import SCANNET_LABELS_PLY_SUFFIX, is_scannet_labels_ply, ply_scene_name, read_ply
from mtml.io.pointcept import POINTCEPT_FILES, find_pointcept_scenes, is_pointcept_folder, read_pointcept_scene
from mtml.io.scannet import (
    BENCHMARKS,
    MESH_SUFFIX,
    LabelMapArg,
    benchmark_label_ids,
    find_scans,
    read_scannet_scan,
    scan_files,
)
from mtml.io.votenet import find_votenet_scans, read_votenet_scene, require_folder, votenet_prefix
from mtml.scene import Scene

#: What ``read_any_scene`` accepts, in words (its error lists them).
ACCEPTED_FORMATS = (
    "a PLY file (.ply)",
    "a ScanNet scan folder (<scene>/<scene>_vh_clean_2.ply with segs and aggregation, or _vh_clean_2.labels.ply)",
    "a VoteNet/mmdetection3d scan (<scene>_vert.npy with _sem_label.npy, _ins_label.npy, or its prefix)",
    "a Pointcept scan folder (coord.npy, color.npy, segment20.npy, segment200.npy, instance.npy)",
)


def scene_format(path: str | os.PathLike) -> str | None:
    """The format of the scan ``path`` names: "ply" (any ``.ply`` path, existing or not), "scannet" (a folder with
    a ScanNet scan's files), "pointcept" (a folder with ``coord.npy``, or one of its files), "votenet" (a file
    named as a VoteNet scan's, or a prefix whose ``_vert.npy`` exists); None for anything else."""
    path = Path(path)
    if path.is_dir():
        if is_pointcept_folder(path):
            return "pointcept"
        labelled = path / f"{path.name}{SCANNET_LABELS_PLY_SUFFIX}"
        if any(f.exists() for f in scan_files(path).values()) or labelled.is_file():
            return "scannet"
        return None
    if path.suffix.lower() == ".ply":
        return "ply"
    if path.name in POINTCEPT_FILES and is_pointcept_folder(path.parent):
        return "pointcept"
    if votenet_prefix(path) is not None:
        return "votenet"
    return None


def nyu40_to_benchmark(labels: np.ndarray | None, benchmark: str) -> np.ndarray | None:
    """NYU40 ids int [N] (0 = unannotated) in ``benchmark``'s ids: "scannet20" keeps its 20 NYU40 ids and sets the
    others to 0; "scannet200" has no mapping from NYU40 ids (None); any other name keeps them as they are.
    None stays None."""
    if labels is None or benchmark not in BENCHMARKS:
        return labels
    if benchmark == "scannet200":
        return None
    labels = np.asarray(labels, dtype=np.int64)
    return np.where(np.isin(labels, np.asarray(benchmark_label_ids(benchmark))), labels, 0)


def nyu40_scene_to_benchmark(scene: Scene, benchmark: str) -> Scene:
    """A copy of ``scene`` (labels in NYU40 ids) with its labels in ``benchmark``'s ids (``nyu40_to_benchmark``)."""
    return dataclasses.replace(scene, labels=nyu40_to_benchmark(scene.labels, benchmark))


def _read_scannet_folder(folder: Path, benchmark: str, label_map: LabelMapArg) -> Scene:
    """A ScanNet scan folder: annotated (segs or aggregation present) through ``read_scannet_scan``, else its
    ``_vh_clean_2.labels.ply`` (NYU40 labels), else its bare mesh; named after the folder."""
    files = scan_files(folder)
    if files["segs"].exists() or files["aggregation"].exists():
        return read_scannet_scan(folder, benchmark=benchmark, label_map=label_map)
    labelled = folder / f"{folder.name}{SCANNET_LABELS_PLY_SUFFIX}"
    if labelled.is_file():
        return nyu40_scene_to_benchmark(read_ply(labelled), benchmark)
    return dataclasses.replace(read_ply(files["mesh"]), name=folder.name)


def read_any_scene(path: str | os.PathLike, benchmark: str = "scannet20", label_map: LabelMapArg = None) -> Scene:
    """Read a scan in any format of the module docstring.

    path:      a PLY file, a ScanNet scan folder, a VoteNet scan (a file of it or its prefix) or a Pointcept scan
               folder (or one of its files).
    benchmark: the label ids wanted ("scannet20": NYU40 ids of the 20 classes, "scannet200": ScanNet200 ids; see
               the module docstring for sources without them and for other names).
    label_map: ScanNet scan folders only: ``scannetv2-labels.combined.tsv`` (path or read map), or None to find it
               beside the scan.
    Returns a Scene: points float32 [N, 3] metres, colors uint8 [N, 3] or None, labels int64 [N] or None,
    instances int64 [N] (-1 = none) or None, ``name`` (the scene id or file stem) and ``source``.
    Raises InputError naming the path when it is in none of these formats (listing them) or is unreadable.
    """
    kind = scene_format(path)
    path = Path(path)
    if kind == "ply":
        scene = read_ply(path)
        return nyu40_scene_to_benchmark(scene, benchmark) if is_scannet_labels_ply(path) else scene
    if kind == "scannet":
        return _read_scannet_folder(path, benchmark, label_map)
    if kind == "votenet":
        return nyu40_scene_to_benchmark(read_votenet_scene(path), benchmark)
    if kind == "pointcept":
        folder = path if path.is_dir() else path.parent
        return read_pointcept_scene(folder, benchmark if benchmark in BENCHMARKS else "scannet20")
    what = "not a scan mtml reads" if path.exists() else "no such file or folder"
    raise InputError(path, f"{what}; accepted: {'; '.join(ACCEPTED_FORMATS)}")


def find_ply_files(root: str | os.PathLike, in_scan_folders: bool = False) -> dict[str, Path]:
    """The PLY scans in folder ``root``: its ``.ply`` files (a ``<scene>_vh_clean_2.ply`` is left out when its
    ``<scene>_vh_clean_2.labels.ply`` is there: the same mesh with labels) and, with ``in_scan_folders``, the
    ``<scene>_vh_clean_2.labels.ply`` of each ScanNet scan folder ``root/<scene>/``.

    Returns scene name (``ply_scene_name``) -> file, sorted by name. InputError naming ``root`` when it is missing
    or not a folder, or when two files give the same name."""
    root = require_folder(root)
    plys = sorted(p for p in root.iterdir() if p.suffix.lower() == ".ply" and p.is_file())
    if in_scan_folders:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        plys += [f / f"{f.name}{SCANNET_LABELS_PLY_SUFFIX}" for f in folders
                 if (f / f"{f.name}{SCANNET_LABELS_PLY_SUFFIX}").is_file()]
    labelled = {ply_scene_name(p) for p in plys if is_scannet_labels_ply(p)}
    found: dict[str, Path] = {}
    for ply in plys:
        if ply.name.endswith(MESH_SUFFIX) and ply.name[: -len(MESH_SUFFIX)] in labelled:
            continue
        name = ply_scene_name(ply)
        if name in found:
            raise InputError(root, f"two scans named {name!r} ({found[name]} and {ply}); keep one of them")
        found[name] = ply
    return dict(sorted(found.items()))


def find_scenes(root: str | os.PathLike) -> dict[str, Path]:
    """Every scan in folder ``root``, in any format: VoteNet scans in it (their prefixes), Pointcept scan folders
    (``find_pointcept_scenes``: in it or in its train/val/test folders), ScanNet scan folders (``find_scans``) and
    PLY files in it (``find_ply_files``).

    Returns scene name -> the path ``read_any_scene`` reads it from, sorted by name. Names are those the readers
    give (scene id, folder name, PLY stem). Raises InputError naming ``root`` when it is missing or not a folder,
    holds no scan, or two scans share a name.
    """
    root = Path(root)
    found: dict[str, Path] = {}

    def add(name: str, path: Path) -> None:
        if name in found:
            raise InputError(root, f"two scans named {name!r} ({found[name]} and {path}); keep one of them")
        found[name] = path

    for prefix in find_votenet_scans(root):  # also checks that root is a folder
        add(prefix.name, prefix)
    for folder in find_pointcept_scenes(root):
        add(folder.name, folder)
    for folder in find_scans(root):
        add(folder.name, folder)
    for name, ply in find_ply_files(root).items():
        add(name, ply)
    if not found:
        raise InputError(root, f"no scans in this folder; accepted: {'; '.join(ACCEPTED_FORMATS)}")
    return dict(sorted(found.items()))
