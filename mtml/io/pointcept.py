"""ScanNet scans as Pointcept's ``preprocess_scannet.py`` writes them -> ``Scene``.

Pointcept writes one folder per scan, ``<output_root>/{train,val,test}/<scene id>/``, holding:

* ``coord.npy``: float [N, 3], metres (the mesh vertices, not axis-aligned);
* ``color.npy``: [N, 3] red green blue in 0..255 (uint8);
* ``normal.npy`` (optional): [N, 3] vertex normals; not read;
* ``segment20.npy``, ``segment200.npy`` (not in the test split): [N] 0-based index into the ScanNet20 /
  ScanNet200 class lists (``VALID_CLASS_IDS_20`` / ``VALID_CLASS_IDS_200`` of ScanNet's
  ``scannet200_constants.py``: the id order of ``mtml/resources/scannet_labels.json``), -1 = ignored (other
  classes and unannotated points);
* ``instance.npy`` (not in the test split): [N] the aggregation group ``id`` of each point, -1 = none.

``read_pointcept_scene`` turns the class indices back into the benchmark's label ids: NYU40 ids of the 20 ScanNet
classes (from ``segment20``) or ScanNet200 category ids (from ``segment200``), 0 for -1, as ``read_scannet_scan``
labels a raw scan folder. Every problem is an ``InputError`` naming the file or folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mtml.errors import InputError
from mtml.io.ply import colors_uint8, points_float32
from mtml.io.scannet import BENCHMARKS, benchmark_label_ids
from mtml.io.votenet import integer_array, load_array, require_folder
from mtml.scene import NO_INSTANCE, Scene

#: The file whose presence makes a folder a Pointcept scan.
POINTCEPT_COORD = "coord.npy"
#: The files of a Pointcept scan this reader knows (``normal.npy`` is recognised, not read).
POINTCEPT_FILES = ("coord.npy", "color.npy", "normal.npy", "segment20.npy", "segment200.npy", "instance.npy")
#: Benchmark -> the file of its class indices.
SEGMENT_FILES = {"scannet20": "segment20.npy", "scannet200": "segment200.npy"}
#: The split folders Pointcept writes under its output root.
POINTCEPT_SPLITS = ("train", "val", "test")
#: Pointcept's "ignore" class index / "no instance" id.
IGNORE_INDEX = -1


def is_pointcept_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a Pointcept scan (its ``coord.npy``)."""
    return (Path(path) / POINTCEPT_COORD).is_file()


def find_pointcept_scenes(root: str | os.PathLike) -> list[Path]:
    """The Pointcept scan folders directly under ``root``, or, when there are none, under its split folders
    ``root/train``, ``root/val``, ``root/test`` (Pointcept's output root); sorted by scene name.
    InputError naming ``root`` when it is missing or not a folder."""
    root = require_folder(root)
    scenes = [p for p in root.iterdir() if p.is_dir() and is_pointcept_folder(p)]
    if not scenes:
        splits = [root / s for s in POINTCEPT_SPLITS if (root / s).is_dir()]
        scenes = [p for split in splits for p in split.iterdir() if p.is_dir() and is_pointcept_folder(p)]
    return sorted(scenes, key=lambda p: (p.name, str(p)))


def pointcept_labels(path: str | os.PathLike, indices: np.ndarray, benchmark: str) -> np.ndarray:
    """Pointcept class indices int [N] (0-based into ``benchmark``'s class list, -1 = ignored) -> int64 [N] label
    ids of ``benchmark`` ("scannet20": NYU40 ids, "scannet200": ScanNet200 ids), 0 for -1.
    InputError naming ``path`` for an index outside -1 .. (number of classes - 1)."""
    class_ids = np.asarray((0,) + benchmark_label_ids(benchmark), dtype=np.int64)  # position 0 holds index -1
    indices = np.asarray(indices, dtype=np.int64)
    bad = (indices < IGNORE_INDEX) | (indices >= len(class_ids) - 1)
    if bad.any():
        raise InputError(path, f"{int(bad.sum())} class indices outside -1..{len(class_ids) - 2} (the {benchmark} "
                               f"classes), e.g. {np.unique(indices[bad])[:5].tolist()}")
    return class_ids[indices + 1]


def read_pointcept_scene(folder: str | os.PathLike, benchmark: str = "scannet20") -> Scene:
    """Read one Pointcept scan folder (see the module docstring for its files).

    folder:    the scan's folder (``.../train/scene0000_00``).
    benchmark: "scannet20" (labels from ``segment20.npy`` as NYU40 ids of the 20 classes) or "scannet200" (from
               ``segment200.npy``, ScanNet200 ids); 0 where Pointcept has -1.
    Returns a Scene: points float32 [N, 3] metres, colors uint8 [N, 3] or None without ``color.npy``, labels int64
    [N] or None without the benchmark's segment file, instances int64 [N] (-1 = none) or None without
    ``instance.npy``; ``name`` is the folder name and ``source`` the folder.
    Raises InputError naming the folder or file for: no ``coord.npy``, arrays of the wrong shape, type or length,
    NaN / infinite coordinates, class indices outside the benchmark, instance ids below -1, an unknown benchmark.
    """
    if benchmark not in BENCHMARKS:
        raise InputError(None, f"unknown benchmark {benchmark!r} (known: {', '.join(BENCHMARKS)})")
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "no such folder" if not folder.exists() else "not a folder (expected a Pointcept "
                                                                                "scan folder)")
    coord_path = folder / POINTCEPT_COORD
    if not coord_path.is_file():
        raise InputError(folder, f"not a Pointcept scan folder: no {POINTCEPT_COORD}")
    coord = load_array(coord_path, "Pointcept coordinates")
    if coord.ndim != 2 or coord.shape[1] != 3 or not np.issubdtype(coord.dtype, np.number):
        raise InputError(coord_path, f"expected coordinates [N, 3] (numbers), got {coord.dtype} {coord.shape}")
    if len(coord) == 0:
        raise InputError(coord_path, "empty scene: 0 points")
    points = points_float32(coord_path, coord)
    colors = None
    color_path = folder / "color.npy"
    if color_path.is_file():
        color = load_array(color_path, "Pointcept colours")
        if color.shape != (len(points), 3) or not np.issubdtype(color.dtype, np.number):
            raise InputError(color_path, f"expected colours [{len(points)}, 3] (numbers), got {color.dtype} "
                                         f"{color.shape}")
        colors = colors_uint8(color)
    labels = None
    segment_path = folder / SEGMENT_FILES[benchmark]
    if segment_path.is_file():
        indices = integer_array(segment_path, load_array(segment_path, "class indices"), len(points), "class index")
        labels = pointcept_labels(segment_path, indices, benchmark)
    instances = None
    instance_path = folder / "instance.npy"
    if instance_path.is_file():
        instances = integer_array(instance_path, load_array(instance_path, "instance ids"), len(points),
                                  "instance id")
        if instances.size and instances.min() < NO_INSTANCE:
            raise InputError(instance_path, f"{int((instances < NO_INSTANCE).sum())} instance ids below -1 "
                                            "(-1 means none)")
    return Scene(points=points, colors=colors, labels=labels, instances=instances, name=folder.name,
                 source=str(folder))
