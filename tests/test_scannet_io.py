"""mtml.io.scannet: ScanNet v2 scan folders, the label map and benchmark gt ids (on tests/scannet_fixture.py scans)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scannet_fixture as fx

from mtml.errors import InputError
from mtml.io.benchmark import read_gt_ids
from mtml.io.scannet import (
    LabelRow,
    ScannetGroundTruth,
    find_label_map,
    find_scans,
    raw_label_ids,
    read_label_map,
    read_scannet_scan,
    write_gt_file,
)

SCENE = "scene0000_00"


@pytest.fixture(scope="module")
def scan():
    return fx.make_scan(SCENE, seed=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, scan):
    """A scan folder (with the tsv inside) that tests only read."""
    return fx.write_scan(scan, tmp_path_factory.mktemp("scans"), label_map=True)


@pytest.fixture(scope="module")
def scenes(folder):
    """The scan read once per benchmark: {"scannet20": Scene, "scannet200": Scene}."""
    return {b: read_scannet_scan(folder, benchmark=b) for b in ("scannet20", "scannet200")}


@pytest.fixture
def fresh_folder(tmp_path, scan):
    """A scan folder of this test's own, to damage."""
    return fx.write_scan(scan, tmp_path, label_map=True)


def object_vertices(scan, raw_label):
    """bool [N]: vertices of the (first) object with this raw label."""
    return scan.vertex_object == scan.object_labels.index(raw_label)


# ------------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("label_set", ["scannet20", "scannet200"])  # not "benchmark": pytest-benchmark's fixture
def test_labels_and_instances_per_vertex(folder, scenes, scan, label_set):
    scene = scenes[label_set]
    want_labels, want_instances = fx.expected_annotations(scan, label_set)
    np.testing.assert_array_equal(scene.labels, want_labels)
    np.testing.assert_array_equal(scene.instances, want_instances)
    assert scene.labels.dtype == np.int64 and scene.instances.dtype == np.int64
    # the instance of every vertex is its object's objectId (the unannotated box: -1)
    np.testing.assert_array_equal(scene.instances, np.asarray(scan.object_ids)[scan.vertex_object])
    np.testing.assert_allclose(scene.points, scan.points)
    np.testing.assert_array_equal(scene.colors, scan.colors)
    np.testing.assert_array_equal(scene.faces, scan.faces)
    assert scene.points.dtype == np.float32 and scene.colors.dtype == np.uint8
    assert scene.name == SCENE and scene.source == str(folder)


@pytest.mark.parametrize(
    "raw, scannet20, scannet200",
    [
        ("wall", 1, 1),
        ("floor", 2, 3),
        ("chair", 5, 2),
        ("office chair", 5, 10),  # nyu40 chair; its own ScanNet200 class
        ("table", 7, 4),
        ("cabinet", 3, 7),
        ("trash can", 39, 56),  # nyu40 otherfurniture
        ("box", 0, 26),  # nyu40 29 (box) is not one of ScanNet20's classes
        (fx.UNKNOWN_LABEL, 0, 0),  # not in the tsv
    ],
)
def test_raw_label_conventions(scenes, scan, raw, scannet20, scannet200):
    verts = object_vertices(scan, raw)
    instance = scan.object_ids[scan.object_labels.index(raw)]
    for benchmark, want in (("scannet20", scannet20), ("scannet200", scannet200)):
        scene = scenes[benchmark]
        assert set(scene.labels[verts].tolist()) == {want}, benchmark
        assert set(scene.instances[verts].tolist()) == {instance}  # label 0 still keeps its objectId


def test_unsegmented_vertices_have_no_label_and_no_instance(scenes, scan):
    verts = scan.vertex_object == scan.object_labels.index(None)
    assert verts.sum() > 50
    scene = scenes["scannet20"]
    assert (scene.labels[verts] == 0).all() and (scene.instances[verts] == -1).all()
    assert ((scene.instances == -1) == verts).all()  # and only those


def test_later_group_wins_for_label_and_instance(tmp_path):
    scan = fx.make_scan(SCENE, seed=1)
    chair = scan.groups[scan.object_labels.index("chair")]
    stolen = chair["segments"][:2]
    scan.groups.append({"id": 99, "objectId": 99, "segments": stolen, "label": "table"})
    scan.groups[0]["segments"].append(stolen[0])  # the floor also claims one of them, earlier in the file
    folder = fx.write_scan(scan, tmp_path, label_map=True)
    scene = read_scannet_scan(folder)
    moved = np.isin(scan.seg_indices, stolen)
    assert moved.sum() > 0
    assert (scene.labels[moved] == 7).all() and (scene.instances[moved] == 99).all()
    labels, instances = fx.expected_annotations(scan, "scannet20")
    np.testing.assert_array_equal(scene.labels, labels)
    np.testing.assert_array_equal(scene.instances, instances)


def test_group_segments_missing_from_the_mesh_are_ignored(tmp_path):
    scan = fx.make_scan(SCENE)
    scan.groups[3]["segments"].append(10**9)
    scene = read_scannet_scan(fx.write_scan(scan, tmp_path, label_map=True))
    np.testing.assert_array_equal(scene.labels, fx.expected_annotations(scan, "scannet20")[0])


# ------------------------------------------------------------------------------------------- label map
def test_label_map_found_in_parent_and_grandparent_or_given(tmp_path, scan):
    root = tmp_path / "ScanNet"
    folder = fx.write_scan(scan, root / "scans")
    fx.write_label_map(root / fx.TSV_NAME)  # <ScanNet>/scans/<scene> with the tsv at <ScanNet>/
    assert find_label_map(folder) == root / fx.TSV_NAME
    want = fx.expected_annotations(scan, "scannet200")[0]
    np.testing.assert_array_equal(read_scannet_scan(folder, "scannet200").labels, want)
    fx.write_label_map(root / "scans" / fx.TSV_NAME)
    assert find_label_map(folder) == root / "scans" / fx.TSV_NAME
    other = fx.write_label_map(tmp_path / "elsewhere.tsv")
    rows = read_label_map(other)
    for given in (other, str(other), rows):
        np.testing.assert_array_equal(read_scannet_scan(folder, "scannet200", label_map=given).labels, want)


def test_read_label_map_rows(tmp_path):
    rows = read_label_map(fx.write_label_map(tmp_path / "map.tsv"))
    assert list(rows) == list(fx.LABEL_ROWS)
    assert rows["office chair"] == LabelRow("office chair", "office chair", 10, 5, "chair")
    assert rows["trash can"].nyu40class == "otherfurniture"


def test_ids_outside_the_benchmark_map_to_0(tmp_path):
    extra = {"id": 100000, "raw_category": "made-up thing", "nyu40id": 40}  # otherprop; not a ScanNet200 id
    rows = read_label_map(fx.write_label_map(tmp_path / "map.tsv", extra_rows=[extra]))
    assert raw_label_ids(rows, "scannet20")["made-up thing"] == 0
    assert raw_label_ids(rows, "scannet200")["made-up thing"] == 0
    assert raw_label_ids(rows, "scannet20")["chair"] == 5 and raw_label_ids(rows, "scannet200")["chair"] == 2


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "no header"),
        ("id\traw_category\tcategory\n1\twall\twall\n", "nyu40id"),
        ("id\traw_category\tnyu40id\n", "no rows"),
        ("id\traw_category\tnyu40id\n1\twall\t1\nx\tchair\t5\n", "line 3: id 'x' is not an integer"),
        ("id\traw_category\tnyu40id\n1\twall\n", "line 2: too few columns"),
        ("id\traw_category\tnyu40id\n1\twall\t1\n2\twall\t5\n", "listed again"),
    ],
)
def test_malformed_label_map_names_the_file(tmp_path, text, problem):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(InputError, match=problem) as err:
        read_label_map(path)
    assert err.value.source == str(path)


def test_missing_label_map_file(tmp_path):
    with pytest.raises(InputError, match="no such label map") as err:
        read_label_map(tmp_path / "nope.tsv")
    assert err.value.source == str(tmp_path / "nope.tsv")


# ------------------------------------------------------------------------------------------- ground truth
def test_gt_ids_scannet20(scenes, scan, tmp_path):
    scene = scenes["scannet20"]
    gt = ScannetGroundTruth("scannet20").gt_ids(scene)
    assert gt.dtype == np.int64 and gt.shape == (scan.num_vertices,)
    for raw, label in (("chair", 5), ("office chair", 5), ("table", 7), ("cabinet", 3), ("trash can", 39)):
        verts = object_vertices(scan, raw)
        assert set(gt[verts].tolist()) == {label * 1000 + scan.object_ids[scan.object_labels.index(raw)] + 1}
    for raw in ("floor", "wall", "box", fx.UNKNOWN_LABEL, None):  # stuff, non-benchmark, unknown, unannotated
        assert (gt[scan.vertex_object == scan.object_labels.index(raw)] == 0).all(), raw
    assert (gt[scan.vertex_object == 2] == 0).all()  # the second wall
    # the file round-trips through the benchmark reader
    path = ScannetGroundTruth("scannet20").write(scene, tmp_path / "gt")
    assert path == tmp_path / "gt" / f"{SCENE}.txt"
    np.testing.assert_array_equal(read_gt_ids(path), gt)


def test_gt_ids_scannet200(scenes, scan, tmp_path):
    scene = scenes["scannet200"]
    gt = ScannetGroundTruth("scannet200").gt_ids(scene)
    for raw, label in (("chair", 2), ("office chair", 10), ("table", 4), ("cabinet", 7), ("trash can", 56),
                       ("box", 26)):
        verts = object_vertices(scan, raw)
        assert set(gt[verts].tolist()) == {label * 1000 + scan.object_ids[scan.object_labels.index(raw)] + 1}
    for raw in ("floor", "wall", fx.UNKNOWN_LABEL, None):
        assert (gt[object_vertices(scan, raw)] == 0).all(), raw
    path = write_gt_file(tmp_path / "x.txt", gt)
    assert path.read_text().splitlines()[:3] == [str(v) for v in gt[:3]]


def test_write_gt_file_rejects_non_integers(tmp_path):
    with pytest.raises(ValueError):
        write_gt_file(tmp_path / "x.txt", np.array([1.5, 2.0]))
    assert not (tmp_path / "x.txt").exists()


# ------------------------------------------------------------------------------------------- errors
def _segs(folder):
    return folder / f"{SCENE}_vh_clean_2.0.010000.segs.json"


def _agg(folder):
    return folder / f"{SCENE}.aggregation.json"


def _mesh(folder):
    return folder / f"{SCENE}_vh_clean_2.ply"


@pytest.mark.parametrize("which", [_mesh, _segs, _agg])
def test_missing_file_names_it(fresh_folder, which):
    which(fresh_folder).unlink()
    with pytest.raises(InputError, match="no such") as err:
        read_scannet_scan(fresh_folder)
    assert err.value.source == str(which(fresh_folder))


def test_missing_folder_and_missing_tsv_name_the_folder(tmp_path, scan):
    with pytest.raises(InputError, match="no such scan folder") as err:
        read_scannet_scan(tmp_path / "scene9999_00")
    assert err.value.source == str(tmp_path / "scene9999_00")
    folder = fx.write_scan(scan, tmp_path / "a" / "b")  # no tsv anywhere near
    with pytest.raises(InputError, match="scannetv2-labels.combined.tsv") as err:
        read_scannet_scan(folder)
    assert err.value.source == str(folder)
    with pytest.raises(InputError, match="no such label map") as err:
        read_scannet_scan(folder, label_map=tmp_path / "nope.tsv")
    assert err.value.source == str(tmp_path / "nope.tsv")


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "which, corrupt, problem",
    [
        (_segs, lambda p: p.write_text('{"segIndices": [1, 2'), "malformed segmentation JSON"),
        (_agg, lambda p: p.write_text("not json"), "malformed aggregation JSON"),
        (_segs, lambda p: _edit_json(p, lambda d: d["segIndices"].pop()), "segment ids but the mesh"),
        (_segs, lambda p: _edit_json(p, lambda d: d.pop("segIndices")), "no 'segIndices'"),
        (_segs, lambda p: _edit_json(p, lambda d: d["segIndices"].__setitem__(0, "a")), "list of integers"),
        (_agg, lambda p: _edit_json(p, lambda d: d.pop("segGroups")), "no 'segGroups'"),
        (_agg, lambda p: _edit_json(p, lambda d: d["segGroups"][1].pop("objectId")), r"segGroups\[1\]: 'objectId'"),
        (_agg, lambda p: _edit_json(p, lambda d: d["segGroups"][2].__setitem__("label", 5)), "'label'"),
        (_agg, lambda p: _edit_json(p, lambda d: d["segGroups"][0].__setitem__("segments", [1.5])), "'segments'"),
        (_mesh, lambda p: p.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\n"), "PLY"),
    ],
)
def test_malformed_files_name_the_file(fresh_folder, which, corrupt, problem):
    corrupt(which(fresh_folder))
    with pytest.raises(InputError, match=problem) as err:
        read_scannet_scan(fresh_folder)
    assert err.value.source == str(which(fresh_folder))


def test_unknown_benchmark(folder):
    with pytest.raises(InputError, match="unknown benchmark"):
        read_scannet_scan(folder, benchmark="nyu40")
    with pytest.raises(InputError, match="unknown benchmark"):
        ScannetGroundTruth("nyu40")


# ------------------------------------------------------------------------------------------- find_scans
def test_find_scans(tmp_path):
    folders = fx.write_scannet_root(tmp_path, 3)
    (tmp_path / "scene0100_00").mkdir()  # no mesh
    (tmp_path / "other").mkdir()
    (tmp_path / "scene0200_00.txt").write_text("not a folder")
    assert find_scans(tmp_path) == sorted(folders)
    assert [p.name for p in find_scans(tmp_path)] == ["scene0000_00", "scene0001_00", "scene0002_00"]
    with pytest.raises(InputError, match="no such folder") as err:
        find_scans(tmp_path / "missing")
    assert err.value.source == str(tmp_path / "missing")
    with pytest.raises(InputError, match="not a folder"):
        find_scans(tmp_path / "scene0200_00.txt")
