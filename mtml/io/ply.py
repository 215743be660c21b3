"""PLY point clouds and meshes <-> ``Scene`` (via ``plyfile``).

Reading accepts binary and ASCII files, point clouds and triangle (or polygon) meshes:

- vertex ``x y z`` (required, any numeric type) -> ``Scene.points`` float32 [N, 3], metres;
- vertex ``red green blue`` (optional; integers taken as 0..255, floats with max <= 1 as 0..1, other
  floats as 0..255) -> ``Scene.colors`` uint8 [N, 3];
- vertex ``label`` (optional, integer-valued) -> ``Scene.labels`` int64 [N] semantic class ids (in ScanNet's
  ``<scene>_vh_clean_2.labels.ply`` these are NYU40 ids, 0 = unannotated; such a file's Scene is named ``<scene>``);
- vertex ``instance`` (optional, integer-valued) -> ``Scene.instances`` int64 [N] (-1 = no instance);
- face ``vertex_indices`` or ``vertex_index`` (optional) -> ``Scene.faces`` int64 [F, 3]; polygons with more
  than three corners are split into triangle fans, degenerate faces (< 3 corners) are dropped.

Every problem with the file is an ``InputError(path, problem)``. Writing goes through ``atomic_path``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
from plyfile import (
    PlyData,
    PlyElement,
    PlyElementParseError,
    PlyHeaderParseError,
    PlyListProperty,
)

from mtml.errors import InputError
from mtml.io.atomic import atomic_path
from mtml.scene import Scene

_XYZ = ("x", "y", "z")
_RGB = ("red", "green", "blue")
_FACE_PROPS = ("vertex_indices", "vertex_index")
#: ScanNet's labelled mesh: ``<scene>_vh_clean_2.labels.ply``, vertex ``label`` = NYU40 id.
SCANNET_LABELS_PLY_SUFFIX = "_vh_clean_2.labels.ply"


def is_scannet_labels_ply(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named as ScanNet's labelled mesh ``<scene>_vh_clean_2.labels.ply`` (labels: NYU40 ids)."""
    name = Path(path).name
    return name.endswith(SCANNET_LABELS_PLY_SUFFIX) and len(name) > len(SCANNET_LABELS_PLY_SUFFIX)


def ply_scene_name(path: str | os.PathLike) -> str:
    """The name ``read_ply`` gives the Scene of a PLY file: the scene id of ScanNet's
    ``<scene>_vh_clean_2.labels.ply``, else the file stem."""
    path = Path(path)
    return path.name[: -len(SCANNET_LABELS_PLY_SUFFIX)] if is_scannet_labels_ply(path) else path.stem


def points_float32(source: str | os.PathLike, xyz: np.ndarray) -> np.ndarray:
    """Coordinates [N, 3] (any numeric type, metres) as float32 [N, 3]; InputError naming ``source`` when some
    are NaN, infinite or too large for float32."""
    points = np.asarray(xyz, dtype=np.float64)
    with np.errstate(over="ignore"):
        points = points.astype(np.float32)
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        raise InputError(
            source, f"{int(bad.sum())} of {len(points)} vertices have NaN or infinite (or float32-overflowing) "
            "coordinates"
        )
    return points


def colors_uint8(rgb: np.ndarray) -> np.ndarray:
    """RGB [N, 3] as uint8: integers taken as 0..255 (clipped), floats with max <= 1 as 0..1, other floats as
    0..255 (rounded, clipped; NaN -> 0)."""
    rgb = np.asarray(rgb)
    if np.issubdtype(rgb.dtype, np.integer):
        return np.clip(rgb, 0, 255).astype(np.uint8)
    rgb = np.nan_to_num(rgb.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if rgb.size and rgb.max() <= 1.0:
        rgb = rgb * 255.0
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _element_noun(name: str, count: int) -> str:
    """How a message names ``count`` rows of element ``name``: "3 vertices", "1 face", "2 'edge' elements"."""
    plural = {"vertex": "vertices", "face": "faces"}
    if name in plural:
        return f"{count} {name if count == 1 else plural[name]}"
    return f"{count} '{name}' element{'' if count == 1 else 's'}"


def _min_row_bytes(element: PlyElement, text: bool, byte_order: str) -> int:
    """The fewest bytes one row of ``element`` can take in the file: binary, the sizes of its scalar properties
    plus the count of each list (an empty list); ASCII, one character and one separator per property."""
    if text:
        return 2 * len(element.properties)
    size = 0
    for prop in element.properties:
        dtype = prop.list_dtype(byte_order)[0] if isinstance(prop, PlyListProperty) else prop.dtype(byte_order)
        size += np.dtype(dtype).itemsize
    return size


def _check_element_counts(path: Path) -> None:
    """Read the header only and check that the file is large enough for the row counts it declares, before a
    reader allocates arrays of those counts (plyfile allocates ``count`` rows up front: a header claiming 2^31
    vertices would ask for tens of GB). InputError naming the file when it cannot hold them."""
    with open(path, "rb") as stream:
        header = PlyData._parse_header(stream)  # plyfile's own header parser; reads up to end_header only
        available = os.fstat(stream.fileno()).st_size - stream.tell()
    needed = [el.count * _min_row_bytes(el, header.text, header.byte_order) for el in header.elements]
    # an ASCII file may end without a newline after its last value
    if sum(needed) - int(header.text) <= available:
        return
    worst = max(range(len(needed)), key=needed.__getitem__)
    element = header.elements[worst]
    budget = max(available - (sum(needed) - needed[worst]), 0)
    raise InputError(
        path,
        f"malformed or truncated PLY data: header says {_element_noun(element.name, element.count)} (at least "
        f"{needed[worst]} bytes) but the file holds at most {budget} bytes of {element.name} data",
    )


def _load(path: Path) -> PlyData:
    """Parse the whole file (no memory map: the data is copied out right away anyway)."""
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a directory, not a PLY file")
    try:
        _check_element_counts(path)
        try:
            # Meshes are almost always triangles: memory-mapping face lists of known length 3 skips plyfile's
            # per-face Python loop (1.3 s -> 2 ms for 260k faces). Every array read_ply keeps is a copy, so
            # nothing refers to the map afterwards. Any other layout fails here and takes the general reader.
            return PlyData.read(str(path), mmap=True, known_list_len={"face": {"vertex_indices": 3}})
        except (PlyElementParseError, ValueError, TypeError, EOFError, IndexError, KeyError):
            return PlyData.read(str(path), mmap=False)
    except PlyHeaderParseError as err:
        with open(path, "rb") as fh:
            magic = fh.read(4).rstrip()
        what = "malformed PLY header" if magic == b"ply" else "not a PLY file"
        raise InputError(path, f"{what} ({err})") from err
    except PlyElementParseError as err:
        raise InputError(path, f"malformed or truncated PLY data ({err})") from err
    except OSError as err:
        raise InputError(path, f"cannot read the file ({err.strerror or err})") from err
    except (ValueError, TypeError, EOFError, UnicodeDecodeError, IndexError, KeyError) as err:
        raise InputError(path, f"not a readable PLY file ({type(err).__name__}: {err})") from err


def whole_numbers(path: str | os.PathLike, values: np.ndarray, what: str) -> np.ndarray:
    """``values`` (any shape) as int64 when they are integers, or floats that are all whole numbers; InputError
    naming ``path`` and ``what`` (e.g. "vertex property 'label'") otherwise."""
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    if not np.issubdtype(values.dtype, np.floating):
        raise InputError(path, f"{what} must be integers, got {values.dtype}")
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        raise InputError(path, f"{int(bad.sum())} {what} values are not integers")
    return values.astype(np.int64)


def _integer_column(path: Path, data: np.ndarray, name: str) -> np.ndarray:
    """A vertex property that must hold integers, as int64 [N]."""
    return whole_numbers(path, np.asarray(data[name]), f"vertex property '{name}'")


def _colors(data: np.ndarray) -> np.ndarray:
    """red/green/blue columns -> uint8 [N, 3] (``colors_uint8``)."""
    return colors_uint8(np.stack([np.asarray(data[c]) for c in _RGB], axis=1))


def _faces(path: Path, ply: PlyData, num_vertices: int) -> Optional[np.ndarray]:
    """The face element's index lists as int64 [F, 3] triangles (fans for polygons), or None."""
    names = [el.name for el in ply.elements]
    if "face" not in names:
        return None
    face_data = ply["face"].data
    prop = next((p for p in _FACE_PROPS if p in (face_data.dtype.names or ())), None)
    if prop is None:
        return None
    col = face_data[prop]
    if len(col) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if col.dtype != object:  # fixed-length subarray
        lists = np.asarray(col).reshape(len(col), -1).astype(np.int64)
        lengths = np.full(len(col), lists.shape[1], dtype=np.int64)
        flat = lists.ravel()
    else:
        lengths = np.fromiter((len(f) for f in col), dtype=np.int64, count=len(col))
        flat = np.concatenate([np.asarray(f, dtype=np.int64).ravel() for f in col])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    tris_per_face = np.maximum(lengths - 2, 0)
    face_of_tri = np.repeat(np.arange(len(lengths)), tris_per_face)
    # k-th triangle of a face (k = 1..n-2) is (v0, vk, vk+1)
    first_tri = np.concatenate([[0], np.cumsum(tris_per_face)[:-1]])
    k = np.arange(len(face_of_tri)) - first_tri[face_of_tri] + 1
    base = starts[face_of_tri]
    tris = np.stack([flat[base], flat[base + k], flat[base + k + 1]], axis=1)
    out_of_range = (tris < 0) | (tris >= num_vertices)
    if out_of_range.any():
        raise InputError(
            path,
            f"{int(out_of_range.any(axis=1).sum())} faces refer to vertices outside 0..{num_vertices - 1}",
        )
    return tris


def read_ply(path: str | os.PathLike) -> Scene:
    """Read a PLY point cloud or mesh.

    path: a binary or ASCII PLY file.
    Returns a Scene with points float32 [N, 3] (metres), colors uint8 [N, 3] or None, labels int64 [N] or
    None, instances int64 [N] or None, faces int64 [F, 3] or None; ``name`` is the file stem (the scene id for
    ScanNet's ``<scene>_vh_clean_2.labels.ply``) and ``source`` the path as given.
    Raises InputError naming the file for a missing file, a directory, a non-PLY file, a malformed or
    truncated body (also a header declaring more rows than the file can hold, found before anything is
    allocated), no ``vertex`` element, missing x/y/z, zero vertices, or NaN/infinite coordinates.
    """
    path = Path(path)
    ply = _load(path)
    if "vertex" not in [el.name for el in ply.elements]:
        raise InputError(path, "no 'vertex' element")
    data = ply["vertex"].data
    props = data.dtype.names or ()
    missing = [c for c in _XYZ if c not in props]
    if missing:
        raise InputError(path, f"missing vertex properties: {', '.join(missing)}")
    if len(data) == 0:
        raise InputError(path, "empty scene: the vertex element has 0 vertices")
    for c in _XYZ:
        if not np.issubdtype(data[c].dtype, np.number):
            raise InputError(path, f"vertex property '{c}' is not numeric ({data[c].dtype})")
    points = points_float32(path, np.stack([np.asarray(data[c], dtype=np.float64) for c in _XYZ], axis=1))
    colors = _colors(data) if all(c in props for c in _RGB) else None
    labels = _integer_column(path, data, "label") if "label" in props else None
    instances = _integer_column(path, data, "instance") if "instance" in props else None
    faces = _faces(path, ply, len(points))
    return Scene(
        points=points,
        colors=colors,
        labels=labels,
        instances=instances,
        name=ply_scene_name(path),
        source=str(path),
        faces=faces,
    )


def write_ply(
    path: str | os.PathLike,
    points: np.ndarray,
    *,
    colors: Optional[np.ndarray] = None,
    int_props: Optional[Mapping[str, np.ndarray]] = None,
    faces: Optional[np.ndarray] = None,
    binary: bool = True,
) -> Path:
    """Write vertices (and optionally triangles) to a PLY file, atomically.

    path:      output file; its folder is created if needed.
    points:    [N, 3] coordinates in metres, written as float32 ``x y z``.
    colors:    [N, 3] RGB 0..255 (written as uchar ``red green blue``), or None.
    int_props: name -> [N] integer array, written in this order as int32 vertex properties
               (e.g. ``{"label": labels, "instance": instances}``).
    faces:     [F, 3] vertex indices, written as ``face`` ``vertex_indices`` (uchar count, int32 indices).
    binary:    binary little-endian (True) or ASCII (False).
    Returns the path written. Raises ValueError on mismatched shapes or out-of-range values.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [N, 3], got {points.shape}")
    n = len(points)
    fields = [(c, "<f4") for c in _XYZ]
    columns = {c: points[:, i] for i, c in enumerate(_XYZ)}
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (n, 3):
            raise ValueError(f"colors must be [{n}, 3], got {colors.shape}")
        if colors.size and (colors.min() < 0 or colors.max() > 255):
            raise ValueError("colors must lie in 0..255")
        fields += [(c, "u1") for c in _RGB]
        columns.update({c: colors[:, i] for i, c in enumerate(_RGB)})
    for name, values in (int_props or {}).items():
        values = np.asarray(values)
        if name in columns:
            raise ValueError(f"vertex property '{name}' given twice")
        if values.shape != (n,):
            raise ValueError(f"vertex property '{name}' must be [{n}], got {values.shape}")
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"vertex property '{name}' must be integers, got {values.dtype}")
        info = np.iinfo(np.int32)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise ValueError(f"vertex property '{name}' does not fit in int32")
        fields.append((name, "<i4"))
        columns[name] = values
    vertex = np.empty(n, dtype=fields)
    for name, values in columns.items():
        vertex[name] = values
    elements = [PlyElement.describe(vertex, "vertex")]
    if faces is not None:
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must be [F, 3], got {faces.shape}")
        if faces.size and (faces.min() < 0 or faces.max() >= n):
            raise ValueError(f"face indices must lie in 0..{n - 1}")
        face = np.empty(len(faces), dtype=[("vertex_indices", "<i4", (3,))])
        face["vertex_indices"] = faces
        elements.append(PlyElement.describe(face, "face", len_types={"vertex_indices": "u1"}))
    path = Path(path)
    with atomic_path(path) as tmp:
        PlyData(elements, text=not binary, byte_order="<").write(str(tmp))
    return path


def scene_to_ply(scene: Scene, path: str | os.PathLike, *, binary: bool = True) -> Path:
    """Write a Scene: x y z, red green blue if it has colours, ``label`` / ``instance`` if present, faces.

    scene: points [N, 3] metres, optional colors uint8 [N, 3], labels [N], instances [N], faces [F, 3].
    Returns the path written (atomically).
    """
    int_props = {}
    if scene.labels is not None:
        int_props["label"] = scene.labels
    if scene.instances is not None:
        int_props["instance"] = scene.instances
    return write_ply(
        path, scene.points, colors=scene.colors, int_props=int_props, faces=scene.faces, binary=binary
    )
