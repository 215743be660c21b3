"""mtml.io.store: the HDF5 voxel-grid cache."""

import os

import h5py
import numpy as np
import pytest

from mtml.data.toy import generate_scene
from mtml.data.toy_cache import cache_toy_split
from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.io.store import VoxelStore, build_store
from mtml.scene import Scene, VoxelGrid


def _grid(seed=0, colors=True, n=200):
    rng = np.random.default_rng(seed)
    scene = Scene(
        points=rng.random((n, 3)) * 3,
        labels=rng.integers(0, 5, n),
        instances=rng.integers(-1, 4, n),
        colors=rng.integers(0, 256, (n, 3)).astype(np.uint8) if colors else None,
    )
    return voxelize(scene, 0.25)


def _assert_same(a: VoxelGrid, b: VoxelGrid, point_map=True):
    assert a.shape == b.shape and a.voxel_size == b.voxel_size
    np.testing.assert_array_equal(a.origin, b.origin)
    for key in ("coords", "labels", "instances", "colors") + (("point_to_voxel",) if point_map else ()):
        x, y = getattr(a, key), getattr(b, key)
        if x is None:
            assert y is None, key
        else:
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype, key


def test_put_get_round_trip(tmp_path):
    path = tmp_path / "cache.h5"
    g1, g2 = _grid(1), _grid(2, colors=False)
    g2.labels = None
    with VoxelStore(path, "w") as store:
        store.put("scene_b", g1, {"seed": 1, "split": "train"}, with_point_map=True)
        store.put("scene_a", g2)
        store.set_meta({"voxel_size": 0.25})
    with VoxelStore(path) as store:
        assert store.names() == ["scene_a", "scene_b"] and len(store) == 2
        assert "scene_a" in store and "nope" not in store
        assert store.meta == {"voxel_size": 0.25}
        b = store.get("scene_b")
        _assert_same(g1, b)
        assert b.coords.dtype == np.int64 and b.extra == {"seed": 1, "split": "train"}
        assert store.attrs("scene_b") == {"seed": 1, "split": "train"}
        a = store.get("scene_a")
        _assert_same(g2, a, point_map=False)
        assert a.point_to_voxel is None and a.labels is None and a.colors is None
        with pytest.raises(KeyError):
            store.get("nope")
        with pytest.raises(ValueError):
            store.put("x", g1)  # read-only
    with h5py.File(path, "r") as f:  # compact on disk
        assert f["scene_b/coords"].dtype == np.int8 and "point_to_voxel" not in f["scene_a"]


def test_put_replaces_and_append_keeps(tmp_path):
    path = tmp_path / "cache.h5"
    with VoxelStore(path, "a") as store:
        store.put("s", _grid(1))
    with VoxelStore(path, "a") as store:
        store.put("t", _grid(2))
        store.put("s", _grid(3))
    with VoxelStore(path) as store:
        assert store.names() == ["s", "t"]
        _assert_same(store.get("s"), _grid(3), point_map=False)


def test_write_mode_is_atomic(tmp_path):
    path = tmp_path / "cache.h5"
    with VoxelStore(path, "w") as store:
        store.put("old", _grid(1))
    with pytest.raises(RuntimeError):
        with VoxelStore(path, "w") as store:
            store.put("new", _grid(2))
            raise RuntimeError("crash mid-build")
    with VoxelStore(path) as store:
        assert store.names() == ["old"]
    assert os.listdir(tmp_path) == ["cache.h5"]


def _items(names, calls, fail_after=None):
    for i, name in enumerate(names):
        if fail_after is not None and i == fail_after:
            raise KeyboardInterrupt("interrupted")

        def make(name=name):
            calls.append(name)
            grid = _grid(int(name[1:]))
            grid.extra = {"name": name}
            return grid

        yield name, make


def test_build_store_resumes(tmp_path):
    path = tmp_path / "train.h5"
    names = [f"s{i}" for i in range(5)]
    calls = []
    with pytest.raises(KeyboardInterrupt):
        build_store(path, _items(names, calls, fail_after=3), meta={"v": 1}, progress=False)
    assert not path.exists()
    partial = tmp_path / "train.h5.partial"
    with VoxelStore(partial) as store:
        assert store.names() == names[:3]
    calls.clear()
    out = build_store(path, _items(names, calls), meta={"v": 1}, progress=False)
    assert out == path and calls == names[3:]  # only the missing scenes were built
    assert not partial.exists()
    with VoxelStore(path) as store:
        assert store.names() == names
        assert store.get("s4").extra == {"name": "s4"}
        _assert_same(store.get("s1"), _grid(1), point_map=False)
    # extending a finished store keeps its scenes and rebuilds nothing
    calls.clear()
    build_store(path, _items(names + ["s7"], calls), meta={"v": 1}, progress=False)
    assert calls == ["s7"]
    with VoxelStore(path) as store:
        assert store.names() == names + ["s7"]
    # different settings are refused rather than mixed
    with pytest.raises(InputError, match="different settings"):
        build_store(path, _items(names, calls), meta={"v": 2}, progress=False)
    assert path.exists() and not partial.exists()
    calls.clear()
    build_store(path, _items(names[:2], calls), meta={"v": 2}, overwrite=True, progress=False)
    assert calls == names[:2]
    with VoxelStore(path) as store:
        assert store.names() == names[:2] and store.meta == {"v": 2}


def test_damaged_partial_is_started_over(tmp_path):
    path = tmp_path / "x.h5"
    (tmp_path / "x.h5.partial").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 50)
    calls = []
    with pytest.warns(RuntimeWarning, match="starting the build over"):
        build_store(path, _items(["s1"], calls), progress=False)
    with VoxelStore(path) as store:
        assert store.names() == ["s1"]


def test_bad_files_raise_input_error(tmp_path):
    missing = tmp_path / "missing.h5"
    with pytest.raises(InputError, match="no such file") as info:
        VoxelStore(missing)
    assert str(missing) in str(info.value)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not hdf5" * 10)
    with pytest.raises(InputError, match="not a readable HDF5") as info:
        VoxelStore(junk)
    assert str(info.value).startswith(str(junk) + ": ")
    good = tmp_path / "good.h5"
    with VoxelStore(good, "w") as store:
        store.put("s", _grid(1))
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(InputError, match=str(truncated)):
        with VoxelStore(truncated) as store:
            store.get("s")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(InputError, match="not an mtml voxel store"):
        VoxelStore(other)
    with pytest.raises(InputError, match="directory"):
        VoxelStore(tmp_path)
    # a damaged scene entry
    with h5py.File(good, "a") as f:
        del f["s/coords"]
    with VoxelStore(good) as store:
        with pytest.raises(InputError, match="scene 's' is damaged"):
            store.get("s")


def test_cache_toy_split(tmp_path):
    path = tmp_path / "toy_test.h5"
    cache_toy_split(path, "test", num_scenes=20, progress=False)  # seeds 18, 19
    with VoxelStore(path) as store:
        assert store.names() == ["toy_00018", "toy_00019"]
        assert store.meta["split"] == "test" and store.meta["voxel_size"] == 0.1
        grid = store.get("toy_00019")
        scene = generate_scene(19)
        assert grid.extra["seed"] == 19 and grid.extra["num_points"] == scene.num_points
        _assert_same(grid, voxelize(scene, 0.1), point_map=False)
    with pytest.raises(InputError, match="different settings"):
        cache_toy_split(path, "test", num_scenes=20, voxel_size=0.2, progress=False)


def test_damaged_data_is_detected(tmp_path):
    path = tmp_path / "cache.h5"
    with VoxelStore(path, "w") as store:
        store.put("s", _grid(1, n=2000), with_point_map=True)
    with h5py.File(path, "r") as f:
        offset = f["s/point_to_voxel"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 16: offset + 32] = bytes(b ^ 0xFF for b in data[offset + 16: offset + 32])  # flip bits
    path.write_bytes(bytes(data))
    with VoxelStore(path) as store:
        with pytest.raises(InputError, match="damaged"):
            store.get("s")
