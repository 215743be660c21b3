"""ScanNet v2 scan folders -> ``Scene`` with per-vertex semantic labels and instance ids; benchmark gt files.

A scan folder ``<scene>/`` (e.g. ``scans/scene0000_00/``) holds:

* ``<scene>_vh_clean_2.ply``: the mesh (binary PLY, vertex ``x y z red green blue alpha``, face
  ``vertex_indices``), read with ``mtml.io.ply.read_ply``;
* ``<scene>_vh_clean_2.0.010000.segs.json``: ``{"segIndices": [segment id of each vertex], ...}``;
* ``<scene>.aggregation.json``: ``{"segGroups": [{"id", "objectId", "segments": [segment ids], "label"}, ...]}``;

and the label map ``scannetv2-labels.combined.tsv`` (tab separated, one row per raw category; the columns used
are ``id`` (the ScanNet200 category id), ``raw_category`` and ``nyu40id``) sits in the scan folder, its parent or
its grandparent (``<ScanNet>/scans/<scene>/`` with the tsv at ``<ScanNet>/``), or is given explicitly.

Label conventions (mirroring ScanNet's ``BenchmarkScripts``):

* A segGroup's raw ``label`` is looked up in the tsv's ``raw_category`` column (exact string match). For
  ``"scannet20"`` the vertex label is the row's ``nyu40id`` (as ``export_train_mesh_for_evaluation.py`` maps it
  with ``util.read_label_mapping(..., 'raw_category', 'nyu40id')``) when it is one of the 20 ScanNet benchmark
  ids, else 0. For ``"scannet200"`` it is the row's ``id`` when that is one of the 200 ScanNet200 ids, else 0
  (``ScanNet200/utils.py: point_indices_from_group``). A raw label missing from the tsv maps to 0, as
  ScanNet200's script does (the older ScanNet20 export would stop with a KeyError instead).
* The vertex instance is the group's ``objectId`` (the benchmark's gt files store ``objectId + 1``, see
  ``ScannetGroundTruth``), also for groups whose label maps to 0. Vertices whose segment is in no group get
  label 0 and instance -1.
* Groups are applied in file order and a vertex whose segment is in several groups takes the *last* one, label
  and instance together: ``preprocess_scannet200.py`` loops over ``segGroups`` in file order overwriting both, and
  ``export_train_mesh_for_evaluation.py`` overwrites instance ids in objectId order (the file order in ScanNet's
  aggregations). Segment ids a group names but no vertex has are ignored (``np.isin`` in ScanNet200's script).

Every problem with the input is an ``InputError`` naming the offending file or folder.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtml.errors import InputError
from mtml.io.atomic import atomic_write_text
from mtml.io.ply import read_ply
from mtml.labels import SCANNET_INSTANCE_CLASS_SETS, scannet_label_data, scene_gt_ids
from mtml.scene import NO_INSTANCE, Scene

#: Benchmarks ``read_scannet_scan`` can label a scan for.
BENCHMARKS = ("scannet20", "scannet200")
#: File name of ScanNet's label map.
LABEL_MAP_NAME = "scannetv2-labels.combined.tsv"
MESH_SUFFIX = "_vh_clean_2.ply"
SEGS_SUFFIX = "_vh_clean_2.0.010000.segs.json"
AGGREGATION_SUFFIX = ".aggregation.json"
#: Columns ``read_label_map`` needs in the tsv header.
REQUIRED_COLUMNS = ("id", "raw_category", "nyu40id")


@dataclass(frozen=True)
class LabelRow:
    """One row of ``scannetv2-labels.combined.tsv``: a raw category and the ids it maps to.

    raw_category: the name annotators typed (what aggregation ``label`` fields hold).
    category:     the cleaned-up category name ("" when the column is absent).
    id:           ScanNet200 category id (the tsv's ``id`` column).
    nyu40id:      NYU40 class id 1..40 (ScanNet20's label space).
    nyu40class:   NYU40 class name ("" when the column is absent).
    """

    raw_category: str
    category: str
    id: int
    nyu40id: int
    nyu40class: str


#: What ``read_scannet_scan`` accepts as its label map: the tsv's path, a ``read_label_map`` result, or None.
LabelMapArg = str | os.PathLike | Mapping[str, LabelRow] | None


# ---------------------------------------------------------------------------------------------- label map
def read_label_map(path: str | os.PathLike) -> dict[str, LabelRow]:
    """Read ``scannetv2-labels.combined.tsv``.

    path: the tab-separated file with a header row holding at least ``id``, ``raw_category`` and ``nyu40id``.
    Returns raw_category -> LabelRow (file order). A raw category listed twice with the same ids is fine; with
    different ids it is an error.
    Raises InputError naming the file when it is missing, not text, has no header or lacks a required column,
    or a row is short or has a non-integer ``id`` / ``nyu40id`` (the message gives the line number).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(path, "no such label map file") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, expected the label map (scannetv2-labels.combined.tsv)") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a text file (expected a tab-separated label map)") from None
    except OSError as err:
        raise InputError(path, f"cannot read the label map: {err.strerror or err}") from None
    reader = csv.DictReader(text.splitlines(), delimiter="\t")
    header = reader.fieldnames
    if not header:
        raise InputError(path, "empty label map: no header row")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(
            path, f"label map header lacks column(s) {', '.join(missing)} (has: {', '.join(header)}); "
            "expected scannetv2-labels.combined.tsv"
        )
    rows: dict[str, LabelRow] = {}
    for row in reader:
        line = reader.line_num
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue  # blank line
        values = {}
        for col in ("id", "nyu40id"):
            text_value = row.get(col)
            if text_value is None:
                raise InputError(path, f"line {line}: too few columns (no {col!r})")
            try:
                values[col] = int(text_value)
            except ValueError:
                raise InputError(path, f"line {line}: {col} {text_value!r} is not an integer") from None
        raw = row.get("raw_category")
        if raw is None:
            raise InputError(path, f"line {line}: too few columns (no 'raw_category')")
        entry = LabelRow(raw, row.get("category") or "", values["id"], values["nyu40id"], row.get("nyu40class") or "")
        old = rows.get(raw)
        if old is not None and (old.id, old.nyu40id) != (entry.id, entry.nyu40id):
            raise InputError(
                path, f"line {line}: raw category {raw!r} listed again with other ids "
                f"(id {entry.id} / nyu40id {entry.nyu40id}, before {old.id} / {old.nyu40id})"
            )
        rows.setdefault(raw, entry)
    if not rows:
        raise InputError(path, "label map has a header but no rows")
    return rows


def find_label_map(folder: str | os.PathLike) -> Path | None:
    """The ``scannetv2-labels.combined.tsv`` nearest a scan folder: in it, its parent or its grandparent
    (``<ScanNet>/scans/<scene>/`` with the tsv at ``<ScanNet>/``), or None when there is none."""
    folder = Path(folder)
    for place in (folder, folder.parent, folder.parent.parent):
        candidate = place / LABEL_MAP_NAME
        if candidate.is_file():
            return candidate
    return None


def _check_benchmark(benchmark: str) -> None:
    if benchmark not in BENCHMARKS:
        raise InputError(None, f"unknown benchmark {benchmark!r} (known: {', '.join(BENCHMARKS)})")


def benchmark_label_ids(benchmark: str) -> tuple[int, ...]:
    """The semantic label ids a benchmark keeps (others become 0): the 20 NYU40 ids of ScanNet20 (wall 1, floor 2,
    ..., otherfurniture 39) or the 200 raw category ids of ScanNet200, from ``mtml/resources/scannet_labels.json``."""
    _check_benchmark(benchmark)
    return tuple(int(i) for i in scannet_label_data()[benchmark]["ids"])


def raw_label_ids(label_map: Mapping[str, LabelRow], benchmark: str) -> dict[str, int]:
    """raw_category -> benchmark label id (0 for ids outside the benchmark), per the module docstring's rules.

    label_map: from ``read_label_map``. benchmark: "scannet20" (nyu40id) or "scannet200" (tsv id).
    """
    keep = set(benchmark_label_ids(benchmark))
    column = "nyu40id" if benchmark == "scannet20" else "id"
    out = {}
    for raw, row in label_map.items():
        value = getattr(row, column)
        out[raw] = value if value in keep else 0
    return out


def _resolve_label_map(folder: Path, label_map: LabelMapArg) -> Mapping[str, LabelRow]:
    if label_map is None:
        found = find_label_map(folder)
        if found is None:
            raise InputError(
                folder, f"no {LABEL_MAP_NAME} in the scan folder, its parent or grandparent; give the label map"
            )
        return read_label_map(found)
    if isinstance(label_map, Mapping):
        return label_map
    return read_label_map(label_map)


# ---------------------------------------------------------------------------------------------- scan folders
def scan_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The paths of a scan folder's files: ``{"mesh", "segs", "aggregation"}`` (they need not exist)."""
    folder = Path(folder)
    name = folder.name
    return {
        "mesh": folder / f"{name}{MESH_SUFFIX}",
        "segs": folder / f"{name}{SEGS_SUFFIX}",
        "aggregation": folder / f"{name}{AGGREGATION_SUFFIX}",
    }


def find_scans(root: str | os.PathLike) -> list[Path]:
    """The scan folders directly under ``root``: folders named ``scene*`` holding ``<name>_vh_clean_2.ply``.

    Returns them sorted by name. Raises InputError naming ``root`` when it is missing or not a folder.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(root, "no such folder")
    if not root.is_dir():
        raise InputError(root, "not a folder (expected the folder that holds the scene* scan folders)")
    scans = [
        p for p in root.iterdir() if p.name.startswith("scene") and p.is_dir() and scan_files(p)["mesh"].is_file()
    ]
    return sorted(scans, key=lambda p: p.name)


def _load_json(path: Path, what: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise InputError(path, f"no such {what} file") from None
    except IsADirectoryError:
        raise InputError(path, f"is a folder, expected the {what} file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"malformed {what} JSON ({err})") from None
    except OSError as err:
        raise InputError(path, f"cannot read the {what} file: {err.strerror or err}") from None


def _int_array(values, path: Path, what: str) -> np.ndarray:
    """A JSON list of integers as int64 [K]; InputError naming ``path`` otherwise."""
    if not isinstance(values, list):
        raise InputError(path, f"{what} must be a list of integers, got {type(values).__name__}")
    arr = np.asarray(values) if values else np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise InputError(path, f"{what} must be a list of integers")
    return arr.astype(np.int64)


def read_segments(path: str | os.PathLike) -> np.ndarray:
    """Read ``<scene>_vh_clean_2.0.010000.segs.json``: int64 [N], the segment id of each mesh vertex.

    Raises InputError naming the file when it is missing, not JSON, or has no integer list ``segIndices``.
    """
    path = Path(path)
    data = _load_json(path, "segmentation")
    if not isinstance(data, dict) or "segIndices" not in data:
        raise InputError(path, "not a ScanNet segmentation: no 'segIndices'")
    return _int_array(data["segIndices"], path, "'segIndices'")


@dataclass(frozen=True)
class SegGroup:
    """One annotated object of an aggregation file: ``object_id`` (objectId), raw ``label`` and its segment ids
    ``segments`` int64 [K]."""

    object_id: int
    label: str
    segments: np.ndarray


def read_aggregation(path: str | os.PathLike) -> list[SegGroup]:
    """Read ``<scene>.aggregation.json``: its ``segGroups`` in file order.

    Raises InputError naming the file when it is missing, not JSON, has no ``segGroups`` list, or a group lacks
    an integer ``objectId`` >= 0, a string ``label`` or an integer list ``segments``.
    """
    path = Path(path)
    data = _load_json(path, "aggregation")
    if not isinstance(data, dict) or not isinstance(data.get("segGroups"), list):
        raise InputError(path, "not a ScanNet aggregation: no 'segGroups' list")
    groups = []
    for k, g in enumerate(data["segGroups"]):
        if not isinstance(g, dict):
            raise InputError(path, f"segGroups[{k}] is not an object")
        obj = g.get("objectId")
        if isinstance(obj, bool) or not isinstance(obj, int) or obj < 0:
            raise InputError(path, f"segGroups[{k}]: 'objectId' must be an integer >= 0, got {obj!r}")
        label = g.get("label")
        if not isinstance(label, str):
            raise InputError(path, f"segGroups[{k}]: 'label' must be a string, got {label!r}")
        segments = _int_array(g.get("segments"), path, f"segGroups[{k}] 'segments'")
        groups.append(SegGroup(obj, label, segments))
    return groups


def vertex_groups(seg_indices: np.ndarray, groups: list[SegGroup]) -> np.ndarray:
    """The group that annotates each vertex.

    seg_indices: int64 [N] segment id per vertex. groups: segGroups in file order.
    Returns int64 [N]: the index in ``groups`` of the last group listing the vertex's segment, -1 for none.
    """
    uniq, inverse = np.unique(seg_indices, return_inverse=True)
    last = np.full(len(uniq), -1, dtype=np.int64)
    if groups and len(uniq):
        segs = np.concatenate([g.segments for g in groups])
        owner = np.repeat(np.arange(len(groups), dtype=np.int64), [len(g.segments) for g in groups])
        pos = np.minimum(np.searchsorted(uniq, segs), len(uniq) - 1)
        known = uniq[pos] == segs
        np.maximum.at(last, pos[known], owner[known])
    return last[inverse.reshape(-1)]


def read_scannet_scan(
    folder: str | os.PathLike,
    benchmark: str = "scannet20",
    label_map: LabelMapArg = None,
) -> Scene:
    """Read a ScanNet v2 scan folder with its annotation.

    folder:    ``.../<scene>/`` holding the mesh, segs and aggregation files (see the module docstring).
    benchmark: "scannet20" (labels are NYU40 ids of the 20 benchmark classes) or "scannet200" (ScanNet200 ids).
    label_map: the tsv's path, an already read ``read_label_map`` dict, or None to find the tsv beside the scan.
    Returns a Scene: points float32 [N, 3] metres, colors uint8 [N, 3], faces int64 [F, 3], labels int64 [N]
    (benchmark ids, 0 = unlabelled / other), instances int64 [N] (objectId, -1 = none); ``name`` is the folder
    name (the scene id) and ``source`` the folder.
    Raises InputError naming the folder or file for: a missing folder or file, a malformed PLY / JSON / tsv,
    a segs file whose length differs from the mesh's vertex count, an unknown benchmark.
    """
    _check_benchmark(benchmark)
    folder = Path(folder)
    if not folder.exists():
        raise InputError(folder, "no such scan folder")
    if not folder.is_dir():
        raise InputError(folder, "not a folder (expected a ScanNet scan folder)")
    files = scan_files(folder)
    for key, what in (("mesh", "mesh"), ("segs", "segmentation"), ("aggregation", "aggregation")):
        if not files[key].is_file():
            raise InputError(files[key], f"no such {what} file in the scan folder")
    rows = _resolve_label_map(folder, label_map)
    mesh = read_ply(files["mesh"])
    seg_indices = read_segments(files["segs"])
    if len(seg_indices) != mesh.num_points:
        raise InputError(
            files["segs"], f"{len(seg_indices)} segment ids but the mesh {files['mesh'].name} has "
            f"{mesh.num_points} vertices"
        )
    groups = read_aggregation(files["aggregation"])
    to_id = raw_label_ids(rows, benchmark)
    group_label = np.array([to_id.get(g.label, 0) for g in groups] + [0], dtype=np.int64)
    group_object = np.array([g.object_id for g in groups] + [NO_INSTANCE], dtype=np.int64)
    owner = vertex_groups(seg_indices, groups)  # -1 indexes the trailing "no group" entry
    return Scene(
        points=mesh.points,
        colors=mesh.colors,
        labels=group_label[owner],
        instances=group_object[owner],
        name=folder.name,
        source=str(folder),
        faces=mesh.faces,
    )


# ---------------------------------------------------------------------------------------------- benchmark gt
@dataclass(frozen=True)
class ScannetGroundTruth:
    """Ground truth of ScanNet's instance benchmark for scenes read by ``read_scannet_scan``.

    benchmark: "scannet20" (the 18 instance classes: no wall, floor) or "scannet200"
    (``scannet200_instance_classes``: the 200 classes less wall and floor).
    """

    benchmark: str = "scannet20"

    def __post_init__(self) -> None:
        _check_benchmark(self.benchmark)

    @property
    def instance_class_ids(self) -> tuple[int, ...]:
        """The label ids that carry instances in this benchmark."""
        return SCANNET_INSTANCE_CLASS_SETS[self.benchmark]().ids

    def gt_ids(self, scene: Scene) -> np.ndarray:
        """int64 [N]: ``label * 1000 + instance + 1`` (instance = objectId, so ``objectId + 1`` as ScanNet writes
        it) for vertices with an instance and a label among ``instance_class_ids``, 0 elsewhere.

        The official gt files also keep codes for other annotated vertices (wall 1001, otherprop 40xxx, ...);
        the evaluation treats those exactly like 0 (void: label not a benchmark class), so AP is the same.
        """
        if scene.labels is None or scene.instances is None:
            raise InputError(scene.source or scene.name, "no semantic labels / instance ids to build ground truth")
        return scene_gt_ids(scene, self.instance_class_ids)

    def write(self, scene: Scene, folder: str | os.PathLike) -> Path:
        """Write ``<folder>/<scene.name>.txt`` (one gt id per vertex, see ``gt_ids``) atomically; returns it."""
        path = Path(folder) / f"{scene.name}.txt"
        write_gt_file(path, self.gt_ids(scene))
        return path


def write_gt_file(path: str | os.PathLike, gt_ids: np.ndarray) -> Path:
    """Write a benchmark gt file: one integer per line and vertex (``label*1000 + instance``), atomically.

    path: the output ``<scene>.txt`` (its folder is created). gt_ids: integer array [N].
    Returns the path. Raises ValueError for a non-integer or non-1-D array.
    """
    ids = np.asarray(gt_ids)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise ValueError(f"gt ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
    text = "".join(f"{v}\n" for v in ids.astype(np.int64).tolist())
    atomic_write_text(path, text)
    return Path(path)
