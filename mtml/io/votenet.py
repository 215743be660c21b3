"""ScanNet scans as VoteNet's and mmdetection3d's ``batch_load_scannet_data.py`` export them -> ``Scene``.

One scan is a set of ``.npy`` files sharing a path prefix ``<folder>/<scene id>``:

* ``<prefix>_vert.npy``: float [N, C], C = 3 (x y z) or C >= 6 (x y z, red green blue in 0..255, then anything,
  e.g. normals), metres. VoteNet's export (and ScanRefer's) has already applied the scan's axis alignment;
  mmdetection3d's has not and writes the 4x4 alignment to ``<prefix>_axis_align_matrix.npy`` instead, which this
  reader applies (as mmdetection3d's ``GlobalAlignment`` does), so points come out axis-aligned, z up, either way.
  The exports keep at most ``max_num_point`` random vertices (VoteNet: 50,000) or, without that limit
  (mmdetection3d's default), every mesh vertex, under the same file names.
* ``<prefix>_aligned_vert.npy``: ScanRefer's export writes this axis-aligned copy beside ``_vert.npy``; it is read
  instead of ``_vert.npy`` when present.
* ``<prefix>_sem_label.npy`` (optional): [N] NYU40 class id of each point (0 = unannotated) -> ``Scene.labels``.
* ``<prefix>_ins_label.npy`` (optional): [N] ScanNet aggregation ``objectId + 1`` (0 = no object) ->
  ``Scene.instances`` = ``ins_label - 1`` (-1 = none).
* ``<prefix>_bbox.npy``, ``_aligned_bbox.npy``, ``_unaligned_bbox.npy``: boxes; recognised as the scan's files,
  not read.

A plain ``_vert.npy`` alone is a valid unlabelled scan. ``load_array``, ``integer_array`` (checked ``.npy``
reading) and ``require_folder`` serve ``mtml.io.pointcept`` and ``mtml.io.formats`` too. Every problem is an
``InputError`` naming the file.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from mtml.errors import InputError
from mtml.io.ply import colors_uint8, points_float32, whole_numbers
from mtml.scene import Scene

#: The files of one VoteNet / mmdetection3d scan: kind -> file name suffix after the prefix.
VOTENET_SUFFIXES = {
    "vert": "_vert.npy",
    "aligned_vert": "_aligned_vert.npy",
    "sem_label": "_sem_label.npy",
    "ins_label": "_ins_label.npy",
    "axis_align_matrix": "_axis_align_matrix.npy",
    "bbox": "_bbox.npy",
    "aligned_bbox": "_aligned_bbox.npy",
    "unaligned_bbox": "_unaligned_bbox.npy",
}
#: The files whose presence makes a prefix a scan (its points).
_VERTEX_KINDS = ("aligned_vert", "vert")
# longest first, so that "_aligned_vert.npy" is not taken for "_vert.npy" with "..._aligned" as the prefix
_SUFFIXES_LONGEST_FIRST = sorted(VOTENET_SUFFIXES.values(), key=len, reverse=True)


def load_array(path: str | os.PathLike, what: str) -> np.ndarray:
    """The array in a ``.npy`` file (never unpickled). ``what`` names the content in messages ("VoteNet points").

    Raises InputError naming the file when it is missing, a folder, not a ``.npy`` array, or holds Python objects.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"no such file ({what})")
    if path.is_dir():
        raise InputError(path, f"is a folder, expected a .npy file ({what})")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
        # np.load raises ValueError for pickled object arrays and for files that are not .npy
        raise InputError(path, f"not a readable .npy array of {what} ({err})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise InputError(path, f"an .npz archive, expected one .npy array of {what}")
    return array


def require_folder(root: str | os.PathLike) -> Path:
    """``root`` as a Path; InputError naming it when it is missing or not a folder (of scans)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "no such folder" if not root.exists() else "not a folder (expected a folder of scans)")
    return root


def integer_array(path: str | os.PathLike, array: np.ndarray, num_points: int, what: str) -> np.ndarray:
    """A per-point id array as int64 [N]: 1-D (or [N, 1]), ``num_points`` long, integer-valued (integer dtype, or
    floats that are whole numbers). InputError naming ``path`` otherwise."""
    values = np.asarray(array)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise InputError(path, f"{what} must be one value per point, got shape {values.shape}")
    if len(values) != num_points:
        raise InputError(path, f"{len(values)} {what} values for {num_points} points")
    return whole_numbers(path, values, what)


def votenet_files(prefix: str | os.PathLike) -> dict[str, Path]:
    """The paths of the scan with path prefix ``prefix`` (``<folder>/<scene id>``): kind -> path, for every kind
    of ``VOTENET_SUFFIXES`` (they need not exist)."""
    prefix = Path(prefix)
    return {kind: prefix.with_name(prefix.name + suffix) for kind, suffix in VOTENET_SUFFIXES.items()}


def votenet_prefix(path: str | os.PathLike) -> Path | None:
    """The path prefix of the VoteNet scan that ``path`` names: one of its files (``<prefix>_vert.npy``,
    ``_sem_label.npy``, ...; it need not exist) or the prefix itself when ``<prefix>_vert.npy`` or
    ``<prefix>_aligned_vert.npy`` exists. None when ``path`` is neither."""
    path = Path(path)
    for suffix in _SUFFIXES_LONGEST_FIRST:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.with_name(path.name[: -len(suffix)])
    files = votenet_files(path)
    if path.name and any(files[kind].is_file() for kind in _VERTEX_KINDS):
        return path
    return None


def find_votenet_scans(root: str | os.PathLike) -> list[Path]:
    """The path prefixes of the VoteNet scans directly in folder ``root`` (those with a ``_vert.npy`` or
    ``_aligned_vert.npy``), sorted by scene name. InputError naming ``root`` when it is missing or not a folder."""
    root = require_folder(root)
    vertex_suffixes = tuple(VOTENET_SUFFIXES[kind] for kind in _VERTEX_KINDS)
    prefixes = {votenet_prefix(p) for p in root.iterdir() if p.name.endswith(vertex_suffixes) and p.is_file()}
    return sorted((p for p in prefixes if p is not None), key=lambda p: p.name)


def _vertex_array(path: Path) -> np.ndarray:
    """The vertex file's array, checked: numeric [N, 3] or [N, >= 6], N >= 1."""
    vert = load_array(path, "VoteNet points")
    if vert.ndim != 2 or not (vert.shape[1] == 3 or vert.shape[1] >= 6):
        raise InputError(path, f"expected points [N, 3] (x y z) or [N, >= 6] (x y z r g b ...), got shape {vert.shape}")
    if not np.issubdtype(vert.dtype, np.number) or np.issubdtype(vert.dtype, np.complexfloating):
        raise InputError(path, f"points must be real numbers, got {vert.dtype}")
    if len(vert) == 0:
        raise InputError(path, "empty scene: 0 points")
    return vert


def _aligned(path: Path, points: np.ndarray) -> np.ndarray:
    """``points`` [N, 3] moved by the 4x4 axis alignment in ``path`` (mmdetection3d's ``_axis_align_matrix.npy``)."""
    matrix = load_array(path, "axis alignment")
    if matrix.shape != (4, 4) or not np.issubdtype(matrix.dtype, np.number):
        raise InputError(path, f"axis alignment must be a 4x4 matrix, got {matrix.dtype} {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise InputError(path, "axis alignment has NaN or infinite entries")
    matrix = matrix.astype(np.float64)
    return points_float32(path, points.astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3])


def read_votenet_scene(path: str | os.PathLike) -> Scene:
    """Read one VoteNet / mmdetection3d scan (see the module docstring for its files).

    path: the scan's path prefix (``scans/scene0001_00``) or any one of its files (``scans/scene0001_00_vert.npy``).
    Returns a Scene: points float32 [N, 3] metres (axis-aligned), colors uint8 [N, 3] or None (x y z only),
    labels int64 [N] NYU40 ids (0 = unannotated) or None without ``_sem_label.npy``, instances int64 [N] object
    index (``ins_label - 1``, -1 = none) or None without ``_ins_label.npy``; ``name`` is the scene id (the prefix's
    file name) and ``source`` the vertex file.
    Raises InputError naming the file for: no vertex file, an array of the wrong shape or type, NaN / infinite
    coordinates, label files of another length than the points, negative or non-integer ids.
    """
    prefix = votenet_prefix(path)
    if prefix is None:
        raise InputError(path, "not a VoteNet scan: expected <scene>_vert.npy (optionally with _sem_label.npy and "
                               "_ins_label.npy beside it) or its prefix <scene>")
    files = votenet_files(prefix)
    aligned = files["aligned_vert"].is_file()
    vert_path = files["aligned_vert"] if aligned else files["vert"]
    if not vert_path.is_file():
        raise InputError(files["vert"], "no such file (the points of a VoteNet scan)")
    vert = _vertex_array(vert_path)
    points = points_float32(vert_path, vert[:, :3])
    if not aligned and files["axis_align_matrix"].is_file():
        points = _aligned(files["axis_align_matrix"], points)
    colors = colors_uint8(vert[:, 3:6]) if vert.shape[1] >= 6 else None
    ids = {}
    for kind, what in (("sem_label", "semantic label"), ("ins_label", "instance label")):
        if files[kind].is_file():
            values = integer_array(files[kind], load_array(files[kind], what + "s"), len(points), what)
            if values.size and values.min() < 0:
                raise InputError(files[kind], f"{int((values < 0).sum())} negative {what} values (0 means none)")
            ids[kind] = values
    instances = ids.get("ins_label")
    if instances is not None:
        instances = instances - 1  # objectId + 1 -> objectId; 0 (no object) -> -1, mtml.scene.NO_INSTANCE
    return Scene(points=points, colors=colors, labels=ids.get("sem_label"), instances=instances,
                 name=prefix.name, source=str(vert_path))
