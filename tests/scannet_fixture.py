"""Small synthetic ScanNet v2 scans written in ScanNet's real file formats, for tests.

A scan is a 5 m x 4 m room: a floor ("floor"), two walls ("wall") and boxes standing on the floor with the raw
labels in ``BOX_LABELS`` ("chair", "office chair", "table", "cabinet", "trash can", "box", an unknown raw label
``UNKNOWN_LABEL`` and one unannotated box whose segments are in no group). Every surface is a triangulated grid,
split into several segments (over-segmentation); each annotated object is one segGroup.

Files, as ScanNet ships them (``<root>/<scene>/``):

* ``<scene>_vh_clean_2.ply``: binary little-endian, vertex ``x y z`` (float) ``red green blue alpha`` (uchar),
  face ``vertex_indices`` (uchar count, int indices);
* ``<scene>_vh_clean_2.0.010000.segs.json``: ``{"params": ..., "sceneId", "segIndices": [...]}``;
* ``<scene>.aggregation.json``: ``{"sceneId": "scannet.<scene>", "appId", "segGroups": [{"id", "objectId",
  "segments", "label"}], "segmentsFile"}``;
* ``scannetv2-labels.combined.tsv``: the real header (``TSV_HEADER``) with rows for the raw labels used
  (``LABEL_ROWS``). ``id`` (ScanNet200 id) and ``nyu40id`` are the real values; ``count`` and the descriptive
  columns are illustrative.

API: ``make_scan`` builds a ``SyntheticScan`` in memory (with the truth per vertex), ``write_scan`` writes it,
``write_scan_folder`` does both, ``write_scannet_root`` writes several scans plus the tsv at the root,
``write_label_map`` writes a tsv, and ``expected_annotations`` computes the labels / instances a correct reader
must return (a plain per-group loop, like ScanNet's ``preprocess_scannet200.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from mtml.labels import scannet_label_data

TSV_NAME = "scannetv2-labels.combined.tsv"
TSV_HEADER = (
    "id", "raw_category", "category", "count", "nyu40id", "eigen13id", "nyuClass", "nyu40class", "eigen13class",
    "ModelNet40", "ModelNet10", "ShapeNetCore55", "synsetoffset", "wnsynsetid", "wnsynsetkey", "mpcat40",
    "mpcat40index",
)


def _row(id_, raw, category, count, nyu40id, eigen13id, nyu_class, nyu40class, eigen13class, modelnet40, modelnet10,
         shapenet, synsetoffset, wnsynsetid, wnsynsetkey, mpcat40, mpcat40index) -> dict:
    values = (id_, raw, category, count, nyu40id, eigen13id, nyu_class, nyu40class, eigen13class, modelnet40,
              modelnet10, shapenet, synsetoffset, wnsynsetid, wnsynsetkey, mpcat40, mpcat40index)
    return {k: str(v) for k, v in zip(TSV_HEADER, values)}


#: raw_category -> tsv row (column name -> text). ``id`` / ``nyu40id`` as in ScanNet's tsv.
LABEL_ROWS: dict[str, dict] = {
    r["raw_category"]: r
    for r in (
        _row(1, "wall", "wall", 8277, 1, 12, "wall", "wall", "Wall", "", "", "", "", "n04546855", "wall.n.01",
             "wall", 1),
        _row(2, "chair", "chair", 4646, 5, 4, "chair", "chair", "Chair", "chair", "chair", "chair", "03001627",
             "n03001627", "chair.n.01", "chair", 3),
        _row(3, "floor", "floor", 1553, 2, 5, "floor", "floor", "Floor", "", "", "", "", "n03365592", "floor.n.01",
             "floor", 2),
        _row(4, "table", "table", 1170, 7, 10, "table", "table", "Table", "table", "table", "table", "04379243",
             "n04379243", "table.n.02", "table", 5),
        _row(7, "cabinet", "cabinet", 731, 3, 6, "cabinet", "cabinet", "Furniture", "", "", "cabinet", "02933112",
             "n02933112", "cabinet.n.01", "cabinet", 7),
        _row(10, "office chair", "office chair", 595, 5, 4, "chair", "chair", "Chair", "chair", "chair", "chair",
             "03001627", "n04373704", "swivel_chair.n.01", "chair", 3),
        _row(26, "box", "box", 775, 29, 7, "box", "box", "Objects", "", "", "", "", "n02883344", "box.n.01",
             "objects", 39),
        _row(56, "trash can", "trash can", 369, 39, 6, "garbage bin", "otherfurniture", "Furniture", "", "",
             "trash_bin", "02747177", "n02747177", "ashcan.n.01", "objects", 39),
    )
}
#: A raw label that is in no tsv row (readers map it to 0).
UNKNOWN_LABEL = "mystery gadget"
#: Boxes of every scan, in aggregation order after floor and walls: (raw label or None = unannotated, size in m).
BOX_LABELS: tuple[tuple[str | None, tuple[float, float, float]], ...] = (
    ("chair", (0.5, 0.5, 0.9)),
    ("office chair", (0.5, 0.5, 1.0)),
    ("table", (1.2, 0.8, 0.75)),
    ("cabinet", (0.6, 0.4, 1.2)),
    ("trash can", (0.3, 0.3, 0.5)),
    ("box", (0.4, 0.4, 0.4)),
    (UNKNOWN_LABEL, (0.3, 0.4, 0.3)),
    (None, (0.3, 0.3, 0.3)),
)
ROOM = (5.0, 4.0, 2.0)  # x, y extent of the floor and wall height, metres


@dataclass
class SyntheticScan:
    """One synthetic scan and its truth.

    scene_id:      e.g. "scene0000_00".
    points:        float32 [N, 3] metres.  colors: uint8 [N, 3].  faces: int64 [F, 3].
    seg_indices:   int64 [N] segment id per vertex (arbitrary, non-contiguous ids as in ScanNet).
    groups:        the aggregation's segGroups (JSON dicts, file order); edit before ``write_scan`` to test overlaps.
    object_labels: raw label of each object (None: unannotated), objects being floor, wall, wall, then the boxes.
    object_ids:    objectId of each object (-1 for the unannotated one).
    vertex_object: int64 [N] the object each vertex was built for (index into ``object_labels``).
    """

    scene_id: str
    points: np.ndarray
    colors: np.ndarray
    faces: np.ndarray
    seg_indices: np.ndarray
    groups: list
    object_labels: list
    object_ids: list
    vertex_object: np.ndarray

    @property
    def num_vertices(self) -> int:
        return len(self.points)


def _grid_surface(origin, u, v, spacing: float, tiles: int = 1):
    """A triangulated grid over the parallelogram origin + s*u + t*v (s, t in [0, 1]).

    Returns (vertices float64 [M, 3], triangles int64 [T, 3] local indices, tile int64 [M] in [0, tiles**2)).
    """
    origin, u, v = (np.asarray(a, dtype=np.float64) for a in (origin, u, v))
    nu = max(1, math.ceil(np.linalg.norm(u) / spacing))
    nv = max(1, math.ceil(np.linalg.norm(v) / spacing))
    s, t = np.meshgrid(np.arange(nu + 1) / nu, np.arange(nv + 1) / nv, indexing="ij")
    verts = origin + s.reshape(-1, 1) * u + t.reshape(-1, 1) * v
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    tile = (np.minimum((s * tiles).astype(int), tiles - 1) * tiles + np.minimum((t * tiles).astype(int), tiles - 1))
    return verts, tris, tile.ravel()


def _box_surfaces(x0, y0, size):
    """The five visible faces (no bottom) of an axis-aligned box standing on z = 0: (origin, u, v) each."""
    sx, sy, sz = size
    return [
        ((x0, y0, sz), (sx, 0, 0), (0, sy, 0)),  # top
        ((x0, y0, 0), (sx, 0, 0), (0, 0, sz)),  # front (y = y0)
        ((x0, y0 + sy, 0), (sx, 0, 0), (0, 0, sz)),  # back
        ((x0, y0, 0), (0, sy, 0), (0, 0, sz)),  # left (x = x0)
        ((x0 + sx, y0, 0), (0, sy, 0), (0, 0, sz)),  # right
    ]


def make_scan(scene_id: str = "scene0000_00", seed: int = 0, spacing: float = 0.08) -> SyntheticScan:
    """Build a synthetic scan in memory (about 9k vertices at the default 8 cm vertex spacing).

    seed: box placement (which slot each box takes, a few cm of jitter), colours, vertex noise and segment ids.
    """
    rng = np.random.default_rng(seed)
    width, depth, height = ROOM
    # (raw label, surfaces, tiles per surface side): floor and walls split into tiles, boxes one segment per face
    objects = [
        ("floor", [((0, 0, 0), (width, 0, 0), (0, depth, 0))], 2),
        ("wall", [((0, 0, 0), (width, 0, 0), (0, 0, height))], 2),
        ("wall", [((0, 0, 0), (0, depth, 0), (0, 0, height))], 2),
    ]
    slots = [(0.4 + 1.15 * i, 0.4 + 1.7 * j) for j in range(2) for i in range(4)]
    order = rng.permutation(len(slots))
    for k, (label, size) in enumerate(BOX_LABELS):
        sx0, sy0 = slots[order[k]]
        x0, y0 = sx0 + rng.uniform(0, 0.1), sy0 + rng.uniform(0, 0.1)
        objects.append((label, _box_surfaces(x0, y0, size), 1))

    points, faces, segs, owner, colors = [], [], [], [], []
    seg_keys = []  # (object, surface, tile) of each local segment, numbered in order of appearance
    offset = 0
    for obj, (label, surfaces, tiles) in enumerate(objects):
        base = rng.integers(40, 216, 3)
        for surf, (o, u, v) in enumerate(surfaces):
            verts, tris, tile = _grid_surface(o, u, v, spacing, tiles)
            first_seg = len(seg_keys)
            seg_keys.extend((obj, surf, t) for t in range(tiles * tiles))
            points.append(verts)
            faces.append(tris + offset)
            segs.append(first_seg + tile)
            owner.append(np.full(len(verts), obj))
            colors.append(np.clip(base + rng.integers(-20, 21, (len(verts), 3)), 0, 255))
            offset += len(verts)
    points = np.concatenate(points)
    points += rng.normal(0, 0.002, points.shape)  # a little scanner noise
    local_seg = np.concatenate(segs)
    seg_ids = rng.choice(200_000, size=len(seg_keys), replace=False).astype(np.int64)  # non-contiguous, shuffled
    vertex_object = np.concatenate(owner).astype(np.int64)

    groups, object_ids = [], []
    for obj, (label, _, _) in enumerate(objects):
        if label is None:
            object_ids.append(-1)
            continue
        object_id = len(groups)
        object_ids.append(object_id)
        members = [int(seg_ids[s]) for s, key in enumerate(seg_keys) if key[0] == obj]
        groups.append({"id": object_id, "objectId": object_id, "segments": members, "label": label})
    return SyntheticScan(
        scene_id=scene_id,
        points=points.astype(np.float32),
        colors=np.concatenate(colors).astype(np.uint8),
        faces=np.concatenate(faces).astype(np.int64),
        seg_indices=seg_ids[local_seg],
        groups=groups,
        object_labels=[label for label, _, _ in objects],
        object_ids=object_ids,
        vertex_object=vertex_object,
    )


def write_mesh(path: str | Path, points: np.ndarray, colors: np.ndarray, faces: np.ndarray) -> Path:
    """Write a ``_vh_clean_2.ply``-style mesh: binary, x y z float, red green blue alpha uchar, face lists."""
    vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                          ("green", "u1"), ("blue", "u1"), ("alpha", "u1")])
    for i, c in enumerate("xyz"):
        vertex[c] = points[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        vertex[c] = colors[:, i]
    vertex["alpha"] = 255
    face = np.empty(len(faces), dtype=[("vertex_indices", "<i4", (3,))])
    face["vertex_indices"] = faces
    ply = PlyData(
        [PlyElement.describe(vertex, "vertex"),
         PlyElement.describe(face, "face", len_types={"vertex_indices": "u1"}, val_types={"vertex_indices": "i4"})],
        text=False, byte_order="<", comments=["VCGLIB generated"],
    )
    path = Path(path)
    ply.write(str(path))
    return path


def write_label_map(path: str | Path, rows: Sequence[dict] | None = None, extra_rows: Sequence[dict] = ()) -> Path:
    """Write a ``scannetv2-labels.combined.tsv`` with the real header.

    rows: tsv rows (column -> value; missing columns written empty); default ``LABEL_ROWS``' rows.
    extra_rows: appended after ``rows`` (e.g. a made-up category to test filtering).
    """
    rows = list(LABEL_ROWS.values()) if rows is None else list(rows)
    lines = ["\t".join(TSV_HEADER)]
    for row in [*rows, *extra_rows]:
        lines.append("\t".join(str(row.get(col, "")) for col in TSV_HEADER))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_scan(scan: SyntheticScan, root: str | Path, *, label_map: bool = False) -> Path:
    """Write ``scan`` as ``root/<scene_id>/`` (mesh, segs, aggregation; plus the tsv inside it when
    ``label_map``). Returns the scan folder."""
    folder = Path(root) / scan.scene_id
    folder.mkdir(parents=True, exist_ok=True)
    name = scan.scene_id
    write_mesh(folder / f"{name}_vh_clean_2.ply", scan.points, scan.colors, scan.faces)
    segs = {
        "params": {"kThresh": "0.0001", "segMinVerts": "20", "minPoints": "750", "maxPoints": "30000",
                   "thinThresh": "0.05", "flatThresh": "0.001", "minLength": "0.02", "maxLength": "1"},
        "sceneId": name,
        "segIndices": scan.seg_indices.tolist(),
    }
    (folder / f"{name}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(segs), encoding="utf-8")
    aggregation = {
        "sceneId": f"scannet.{name}",
        "appId": "Aggregator.v2",
        "segGroups": scan.groups,
        "segmentsFile": f"scannet.{name}_vh_clean_2.0.010000.segs.json",
    }
    (folder / f"{name}.aggregation.json").write_text(json.dumps(aggregation, indent=1), encoding="utf-8")
    if label_map:
        write_label_map(folder / TSV_NAME)
    return folder


def write_scan_folder(root: str | Path, scene_id: str = "scene0000_00", seed: int = 0, *, spacing: float = 0.08,
                      label_map: bool = True) -> Path:
    """``write_scan(make_scan(scene_id, seed, spacing), root, label_map=label_map)``: a standalone scan folder
    (with the tsv inside it by default). Returns ``root/<scene_id>``."""
    return write_scan(make_scan(scene_id, seed, spacing), root, label_map=label_map)


def write_scannet_root(root: str | Path, n_scenes: int, seed: int = 0, *, spacing: float = 0.08) -> list[Path]:
    """Write ``n_scenes`` scans ``scene0000_00``, ``scene0001_00``, ... (seeds ``seed``, ``seed + 1``, ...) under
    ``root`` and the tsv at ``root`` (where ScanNet keeps it relative to its scan folders' parent). Returns the
    scan folders, sorted."""
    root = Path(root)
    folders = [write_scan_folder(root, f"scene{k:04d}_00", seed + k, spacing=spacing, label_map=False)
               for k in range(n_scenes)]
    write_label_map(root / TSV_NAME)
    return folders


def benchmark_id(raw_label: str | None, benchmark: str, rows: dict | None = None) -> int:
    """The label a reader must give ``raw_label``: nyu40id (scannet20) or tsv id (scannet200) when it is one of
    the benchmark's ids in ``mtml/resources/scannet_labels.json``, else 0 (also for unknown raw labels)."""
    rows = LABEL_ROWS if rows is None else rows
    row = rows.get(raw_label) if raw_label is not None else None
    if row is None:
        return 0
    value = int(row["nyu40id"] if benchmark == "scannet20" else row["id"])
    return value if value in scannet_label_data()[benchmark]["ids"] else 0


def expected_annotations(scan: SyntheticScan, benchmark: str, rows: dict | None = None):
    """Reference labels / instances of ``scan`` as written (``scan.groups``, later groups win), computed with a
    plain loop over groups. Returns (labels int64 [N], instances int64 [N], -1 = none)."""
    labels = np.zeros(scan.num_vertices, dtype=np.int64)
    instances = np.full(scan.num_vertices, -1, dtype=np.int64)
    for group in scan.groups:
        member = np.isin(scan.seg_indices, np.asarray(group["segments"], dtype=np.int64))
        labels[member] = benchmark_id(group["label"], benchmark, rows)
        instances[member] = group["objectId"]
    return labels, instances
