"""An HDF5 cache of voxel grids (h5py): one group per scene.

Layout of a store file::

    /                         attrs: format="mtml-voxel-store", version=1, meta_json (store-wide settings)
    /<scene name>/            attrs: shape (3,), origin (3,) metres, voxel_size metres, attrs_json
        coords                [V, 3] smallest signed int type that holds the indices (int16 usually)
        labels                [V] (optional) semantic ids, smallest int type that fits
        instances             [V] (optional) instance ids (-1 = none), smallest int type that fits
        colors                [V, 3] float32 in [0, 1] (optional)
        point_to_voxel        [N] (optional, only when asked for: it is as long as the point cloud)

``get`` always hands back int64 coords / labels / instances, as ``VoxelGrid`` specifies.

Safety: ``VoxelStore(path, "w")`` writes a new store to a temporary file that replaces ``path`` only when
the store is closed without an error. ``"a"`` edits a file in place; each ``put`` writes its scene under a
temporary group name and renames it when complete (leftovers are removed on the next open), then flushes.
``build_store`` combines both: it appends to ``path + ".partial"`` (resuming whatever an interrupted build
left there) and renames it to ``path`` at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Iterable, Optional

import h5py
import numpy as np
from tqdm import tqdm

from mtml.errors import InputError
from mtml.io.atomic import atomic_path
from mtml.scene import VoxelGrid

STORE_FORMAT = "mtml-voxel-store"
STORE_VERSION = 1
_TMP_PREFIX = ".tmp_"
_MODES = ("r", "a", "w")


def _smallest_int(values: np.ndarray) -> np.ndarray:
    """The array in the smallest signed integer type that holds all its values."""
    values = np.asarray(values)
    if values.size == 0:
        return values.astype(np.int16)
    lo, hi = int(values.min()), int(values.max())
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return values.astype(dt)
    return values.astype(np.int64)


def _dataset(group: h5py.Group, key: str, data: np.ndarray) -> None:
    """Write one array, with a Fletcher-32 checksum so that damaged data fails to read instead of
    reading back wrong."""
    data = np.asarray(data)
    group.create_dataset(key, data=data, fletcher32=data.size > 0)


class VoxelStore:
    """A file of named VoxelGrids. Use as a context manager (or call ``close``).

    path: the HDF5 file.
    mode: "r" read only (the file must exist), "a" read/write, created if missing (edits in place),
          "w" a new store written to a temporary file and moved onto ``path`` by a clean ``close``.
    Raises InputError naming the file when it is missing ("r"), not HDF5 / corrupt, or not a voxel store.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r"):
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self._atomic = None
        if mode == "r" and not self.path.exists():
            raise InputError(self.path, "no such file")
        if self.path.is_dir():
            raise InputError(self.path, "is a directory, not a voxel store")
        if mode == "a":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if mode == "w":
            self._atomic = atomic_path(self.path)
            file_path = self._atomic.__enter__()
        else:
            file_path = self.path
        try:
            self._file = h5py.File(file_path, {"r": "r", "a": "a", "w": "w"}[mode])
        except OSError as err:
            self._abort()
            raise InputError(self.path, f"not a readable HDF5 voxel store ({err})") from err
        if len(self._file.attrs) == 0 and len(self._file) == 0 and mode != "r":
            self._file.attrs["format"] = STORE_FORMAT
            self._file.attrs["version"] = STORE_VERSION
            self._file.attrs["meta_json"] = "{}"
        fmt = self._file.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != STORE_FORMAT:
            self._file.close()
            self._abort()
            raise InputError(self.path, f"an HDF5 file but not an mtml voxel store (format={fmt!r})")
        if mode != "r":
            for name in [n for n in self._file if n.startswith(_TMP_PREFIX)]:
                del self._file[name]  # an interrupted put

    # ------------------------------------------------------------------ lifecycle
    def _abort(self) -> None:
        if self._atomic is not None:
            atomic, self._atomic = self._atomic, None
            try:
                atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)
            except RuntimeError:
                pass

    def close(self, *, commit: bool = True) -> None:
        """Close the file. In mode "w", ``commit=True`` moves the new store onto ``path``; False discards it."""
        if getattr(self, "_file", None) is not None and self._file.id.valid:
            self._file.close()
        if self._atomic is not None:
            if commit:
                atomic, self._atomic = self._atomic, None
                atomic.__exit__(None, None, None)
            else:
                self._abort()

    def __enter__(self) -> "VoxelStore":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(commit=exc_type is None)

    # ------------------------------------------------------------------ store-wide settings
    @property
    def meta(self) -> dict:
        """Store-wide settings (JSON-serialisable dict), e.g. the generator config of a cached split."""
        return json.loads(self._file.attrs.get("meta_json", "{}"))

    def set_meta(self, meta: dict) -> None:
        """Replace the store-wide settings (must be JSON-serialisable)."""
        self._file.attrs["meta_json"] = json.dumps(meta, sort_keys=True)

    # ------------------------------------------------------------------ scenes
    def names(self) -> list:
        """Sorted scene names."""
        return sorted(n for n in self._file if not n.startswith(_TMP_PREFIX))

    def __contains__(self, name: str) -> bool:
        return not name.startswith(_TMP_PREFIX) and name in self._file

    def __len__(self) -> int:
        return len(self.names())

    def put(
        self,
        name: str,
        grid: VoxelGrid,
        attrs: Optional[dict] = None,
        *,
        with_point_map: bool = False,
    ) -> None:
        """Store (or replace) one scene's grid.

        name:  scene name (no '/', not starting with '.').
        grid:  VoxelGrid: coords [V, 3], optional labels [V], instances [V], colors [V, 3], point_to_voxel [N].
        attrs: JSON-serialisable per-scene metadata, handed back as ``VoxelGrid.extra`` by ``get``.
        with_point_map: also store ``point_to_voxel`` (int32 or int64 [N]).
        """
        if self.mode == "r":
            raise ValueError(f"{self.path}: store opened read-only")
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad scene name {name!r}")
        attrs_json = json.dumps(attrs or {}, sort_keys=True)  # fail before writing anything
        coords = np.asarray(grid.coords)
        tmp = _TMP_PREFIX + name
        if tmp in self._file:
            del self._file[tmp]
        g = self._file.create_group(tmp)
        g.attrs["shape"] = np.asarray(grid.shape, dtype=np.int64)
        g.attrs["origin"] = np.asarray(grid.origin, dtype=np.float64)
        g.attrs["voxel_size"] = float(grid.voxel_size)
        g.attrs["attrs_json"] = attrs_json
        _dataset(g, "coords", _smallest_int(coords).reshape(len(coords), 3))
        for key in ("labels", "instances"):
            values = getattr(grid, key)
            if values is not None:
                _dataset(g, key, _smallest_int(values))
        if grid.colors is not None:
            _dataset(g, "colors", np.asarray(grid.colors, dtype=np.float32))
        if with_point_map and grid.point_to_voxel is not None:
            p2v = np.asarray(grid.point_to_voxel)
            _dataset(g, "point_to_voxel", p2v.astype(np.int32 if len(coords) < 2**31 else np.int64))
        if name in self._file:
            del self._file[name]
        self._file.move(tmp, name)
        self._file.flush()

    def get(self, name: str) -> VoxelGrid:
        """Load one scene's grid: int64 coords [V, 3], labels / instances int64 [V] or None, colors float32
        [V, 3] or None, point_to_voxel int64 [N] or None when it was not stored; ``extra`` holds the attrs
        given to ``put``. Raises KeyError for an unknown name, InputError for a damaged entry."""
        if name not in self:
            raise KeyError(f"{self.path}: no scene {name!r}")
        try:
            g = self._file[name]

            def read(key, dtype):
                return np.asarray(g[key][()], dtype=dtype) if key in g else None

            return VoxelGrid(
                shape=tuple(int(s) for s in g.attrs["shape"]),
                origin=np.asarray(g.attrs["origin"], dtype=np.float64),
                voxel_size=float(g.attrs["voxel_size"]),
                coords=read("coords", np.int64).reshape(-1, 3),
                point_to_voxel=read("point_to_voxel", np.int64),
                labels=read("labels", np.int64),
                instances=read("instances", np.int64),
                colors=read("colors", np.float32),
                extra=json.loads(g.attrs.get("attrs_json", "{}")),
            )
        except (OSError, KeyError, ValueError, TypeError, AttributeError) as err:
            raise InputError(self.path, f"scene {name!r} is damaged ({type(err).__name__}: {err})") from err

    def attrs(self, name: str) -> dict:
        """The per-scene metadata given to ``put`` (without loading the arrays)."""
        if name not in self:
            raise KeyError(f"{self.path}: no scene {name!r}")
        return json.loads(self._file[name].attrs.get("attrs_json", "{}"))


def _open_partial(partial: Path) -> VoxelStore:
    """Open a build's ``.partial`` file for appending; a damaged one (a crash mid-write) is started over."""
    if not partial.exists():
        return VoxelStore(partial, "a")
    try:
        return VoxelStore(partial, "a")
    except InputError as err:
        warnings.warn(f"{err}; starting the build over", RuntimeWarning, stacklevel=3)
        partial.unlink()
        return VoxelStore(partial, "a")


def build_store(
    path: str | os.PathLike,
    items: Iterable,
    *,
    meta: Optional[dict] = None,
    with_point_map: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    total: Optional[int] = None,
    desc: str = "voxel store",
) -> Path:
    """Build (or extend, or resume building) a store, replacing ``path`` only when done.

    path:  the final store file. Work happens in ``path + ".partial"``: scenes found there (an interrupted
           build) or in an existing ``path`` (copied to the partial file first) are kept and not rebuilt.
    items: iterable of (name, grid) where grid is a VoxelGrid or a zero-argument callable returning one
           (called only for names not yet in the store, so a resumed build skips the work); the grid's
           ``extra`` dict (JSON-serialisable) is stored as the scene's attrs.
    meta:  store-wide settings; resuming a build made with different settings raises InputError.
    with_point_map: store each grid's point_to_voxel too.
    overwrite: ignore (and eventually replace) what is at ``path`` and in the partial file.
    total, desc, progress: for the tqdm progress bar.
    Returns ``path``.
    """
    final = Path(path)
    partial = Path(str(final) + ".partial")
    if overwrite and partial.exists():
        partial.unlink()
    copied = False
    if not overwrite and not partial.exists() and final.exists():
        VoxelStore(final, "r").close()  # a damaged final store is an error, not something to extend
        shutil.copyfile(final, partial)
        copied = True
    store = _open_partial(partial)
    try:
        if meta is not None:
            have = store.meta
            want = json.loads(json.dumps(meta, sort_keys=True))
            if have and have != want:
                store.close()
                if copied:
                    partial.unlink()
                raise InputError(
                    final if copied else partial,
                    f"was built with different settings ({json.dumps(have, sort_keys=True)}); "
                    "delete it or pass overwrite=True",
                )
            store.set_meta(want)
        for name, grid in tqdm(items, total=total, desc=desc, unit="scene", disable=not progress):
            if name in store:
                continue
            if callable(grid):
                grid = grid()
            store.put(name, grid, attrs=grid.extra, with_point_map=with_point_map)
    finally:
        store.close()
    os.replace(partial, final)
    return final
