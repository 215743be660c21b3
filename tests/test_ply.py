"""mtml.io.ply: round trips and clear errors for bad files."""

import os

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from mtml.errors import InputError
from mtml.io.ply import read_ply, scene_to_ply, write_ply
from mtml.scene import Scene


def _raw_ply(path, vertex_fields, n=4, faces=None, text=False, fill=None):
    """Write a PLY with exactly the given vertex fields (list of (name, dtype)) using plyfile directly."""
    v = np.zeros(n, dtype=vertex_fields)
    rng = np.random.default_rng(0)
    for name in v.dtype.names:
        v[name] = rng.random(n) * 3 if np.issubdtype(v.dtype[name], np.floating) else np.arange(n)
    if fill:
        for name, values in fill.items():
            v[name] = values
    elements = [PlyElement.describe(v, "vertex")]
    if faces is not None:
        elements.append(faces)
    PlyData(elements, text=text).write(str(path))
    return v


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("with_colors", [True, False])
@pytest.mark.parametrize("with_labels", [True, False])
@pytest.mark.parametrize("with_faces", [True, False])
def test_round_trip(tmp_path, binary, with_colors, with_labels, with_faces):
    rng = np.random.default_rng(1)
    n = 50
    scene = Scene(
        points=(rng.random((n, 3)) * 10 - 5).astype(np.float32),
        colors=rng.integers(0, 256, (n, 3)).astype(np.uint8) if with_colors else None,
        labels=rng.integers(0, 40, n) if with_labels else None,
        instances=rng.integers(-1, 7, n) if with_labels else None,
        faces=rng.integers(0, n, (20, 3)) if with_faces else None,
    )
    path = tmp_path / "sub" / "room.ply"
    scene_to_ply(scene, path, binary=binary)
    assert path.read_bytes()[:3] == b"ply"
    assert (b"binary_little_endian" in path.read_bytes()[:200]) == binary
    back = read_ply(path)
    assert back.name == "room" and back.source == str(path)
    assert back.points.dtype == np.float32
    np.testing.assert_array_equal(back.points, scene.points)
    for key in ("colors", "labels", "instances", "faces"):
        want, got = getattr(scene, key), getattr(back, key)
        if want is None:
            assert got is None, key
        else:
            np.testing.assert_array_equal(got, want)
    if with_labels:
        assert back.labels.dtype == np.int64 and back.instances.dtype == np.int64
    if with_faces:
        assert back.faces.dtype == np.int64 and back.faces.shape == (20, 3)
    # written atomically: no temporary files left beside it
    assert os.listdir(path.parent) == ["room.ply"]


def test_write_ply_extra_props_in_order(tmp_path):
    pts = np.zeros((3, 3))
    write_ply(tmp_path / "a.ply", pts, int_props={"instance": [1, 2, 3], "label": [4, 5, 6], "seg": [0, 0, 1]})
    ply = PlyData.read(str(tmp_path / "a.ply"))
    assert [p.name for p in ply["vertex"].properties] == ["x", "y", "z", "instance", "label", "seg"]
    assert ply["vertex"].data["x"].dtype == np.float32
    assert ply["vertex"].data["seg"].dtype == np.int32


def test_write_ply_rejects_bad_shapes_without_writing(tmp_path):
    with pytest.raises(ValueError):
        write_ply(tmp_path / "a.ply", np.zeros((3, 2)))
    with pytest.raises(ValueError):
        write_ply(tmp_path / "a.ply", np.zeros((3, 3)), int_props={"label": [1, 2]})
    with pytest.raises(ValueError):
        write_ply(tmp_path / "a.ply", np.zeros((3, 3)), faces=[[0, 1, 5]])
    assert os.listdir(tmp_path) == []


def test_float_colors_double_coords_and_label_types(tmp_path):
    path = tmp_path / "f.ply"
    fields = [("x", "f8"), ("y", "f8"), ("z", "i4"), ("red", "f4"), ("green", "f4"), ("blue", "f4"),
              ("label", "u2"), ("instance", "f4")]
    v = _raw_ply(path, fields, fill={"red": [0, 0.5, 1, 1], "green": 0, "blue": 1, "instance": [-1, 0, 1, 2]})
    scene = read_ply(path)
    np.testing.assert_allclose(scene.points[:, 0], v["x"].astype(np.float32))
    np.testing.assert_array_equal(scene.colors[:, 0], [0, 128, 255, 255])
    np.testing.assert_array_equal(scene.colors[:, 2], 255)
    np.testing.assert_array_equal(scene.instances, [-1, 0, 1, 2])
    assert scene.labels.dtype == np.int64


def test_non_integer_label_is_an_error(tmp_path):
    path = tmp_path / "l.ply"
    _raw_ply(path, [("x", "f4"), ("y", "f4"), ("z", "f4"), ("label", "f4")], fill={"label": [0, 1.5, 2, 3]})
    with pytest.raises(InputError, match="label"):
        read_ply(path)


def test_polygon_faces_are_triangulated_and_vertex_index_accepted(tmp_path):
    path = tmp_path / "mesh.ply"
    faces = np.empty(3, dtype=[("vertex_index", object)])
    faces["vertex_index"] = [np.array([0, 1, 2, 3], "i4"), np.array([1, 2, 3], "i4"), np.array([0, 1], "i4")]
    _raw_ply(path, [("x", "f4"), ("y", "f4"), ("z", "f4")], faces=PlyElement.describe(faces, "face"))
    scene = read_ply(path)
    np.testing.assert_array_equal(scene.faces, [[0, 1, 2], [0, 2, 3], [1, 2, 3]])


def _expect(path, *fragments):
    with pytest.raises(InputError) as info:
        read_ply(path)
    msg = str(info.value)
    assert msg.startswith(str(path) + ": "), msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


def test_missing_file_and_directory(tmp_path):
    _expect(tmp_path / "nope.ply", "no such file")
    _expect(tmp_path, "directory")


def test_text_file_is_not_a_ply(tmp_path):
    path = tmp_path / "notes.ply"
    path.write_text("just some notes\n")
    _expect(path, "not a PLY file")
    empty = tmp_path / "empty.ply"
    empty.write_bytes(b"")
    _expect(empty, "not a PLY file")
    junk = tmp_path / "junk.ply"
    junk.write_bytes(bytes(range(256)) * 4)
    _expect(junk, "PLY")


def test_missing_coordinates_are_named(tmp_path):
    path = tmp_path / "nox.ply"
    _raw_ply(path, [("y", "f4"), ("z", "f4")])
    msg = _expect(path, "missing vertex properties", "x")
    assert "y" not in msg.split(":")[-1] and "z" not in msg.split(":")[-1]
    path2 = tmp_path / "onlyz.ply"
    _raw_ply(path2, [("z", "f4"), ("label", "i4")])
    _expect(path2, "x, y")


def test_no_vertex_element(tmp_path):
    path = tmp_path / "points.ply"
    v = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(v, "point")]).write(str(path))
    _expect(path, "no 'vertex' element")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_coordinates(tmp_path, bad):
    path = tmp_path / "nan.ply"
    x = np.array([0.0, bad, 1.0, bad, 2.0], dtype=np.float32)
    _raw_ply(path, [("x", "f4"), ("y", "f4"), ("z", "f4")], n=5, fill={"x": x})
    _expect(path, "2 of 5 vertices", "NaN")


def test_float64_overflowing_float32(tmp_path):
    path = tmp_path / "big.ply"
    _raw_ply(path, [("x", "f8"), ("y", "f8"), ("z", "f8")], n=3, fill={"z": [0, 1e300, 0]})
    _expect(path, "1 of 3 vertices")


def test_empty_vertex_element(tmp_path):
    path = tmp_path / "empty.ply"
    _raw_ply(path, [("x", "f4"), ("y", "f4"), ("z", "f4")], n=0)
    _expect(path, "empty scene", "0 vertices")


@pytest.mark.parametrize("text", [False, True])
def test_truncated_body(tmp_path, text):
    good = tmp_path / "good.ply"
    write_ply(good, np.random.default_rng(0).random((100, 3)), int_props={"label": np.arange(100)},
              binary=not text)
    data = good.read_bytes()
    bad = tmp_path / "cut.ply"
    bad.write_bytes(data[: len(data) - len(data) // 3])
    _expect(bad, "malformed or truncated")


def test_face_index_out_of_range(tmp_path):
    path = tmp_path / "mesh.ply"
    faces = np.empty(1, dtype=[("vertex_indices", "i4", (3,))])
    faces["vertex_indices"] = [[0, 1, 9]]
    _raw_ply(path, [("x", "f4"), ("y", "f4"), ("z", "f4")], faces=PlyElement.describe(faces, "face"))
    _expect(path, "faces refer to vertices outside")


def test_truncated_header(tmp_path):
    path = tmp_path / "hdr.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\n")
    _expect(path, "malformed PLY header")


@pytest.mark.parametrize("text", [False, True])
@pytest.mark.parametrize("element", ["vertex", "face"])
def test_header_count_beyond_the_file_size_is_refused_before_allocating(tmp_path, text, element):
    import tracemalloc

    claims = {"vertex": 3, "face": 1, element: 2**31}
    header = (f"ply\nformat {'ascii' if text else 'binary_little_endian'} 1.0\n"
              f"element vertex {claims['vertex']}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {claims['face']}\nproperty list uchar int vertex_indices\nend_header\n")
    body = "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n" if text else (np.eye(3, dtype="<f4").tobytes() + b"\x03"
                                                           + np.arange(3, dtype="<i4").tobytes())
    path = tmp_path / "liar.ply"
    path.write_bytes(header.encode() + (body.encode() if text else body))
    tracemalloc.start()
    try:
        msg = _expect(path, f"header says {2**31} {'vertices' if element == 'vertex' else 'faces'}",
                      f"bytes of {element} data")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak  # no array of the claimed size was allocated
    # the bytes after the header, less the fewest the other element's rows can take (binary: 12 per vertex, 1 per
    # empty face list; ASCII: 2 per property value)
    budget = {(False, "vertex"): 49 - 1, (False, "face"): 49 - 3 * 12, (True, "vertex"): 26 - 2,
              (True, "face"): 26 - 3 * 6}[text, element]
    assert len(body) == (26 if text else 49) and f"at most {budget} bytes" in msg, msg
