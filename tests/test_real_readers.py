"""Readers for real scans as users have them (``mtml.io.votenet``, ``mtml.io.pointcept``, ScanNet's
``_vh_clean_2.labels.ply``) and the one entry point ``mtml.io.formats.read_any_scene``.

VoteNet's layout is tested on the real ScanNet scans of ``../shared/data/scannet_mini`` (read in place, never copied
into the repository); every other case builds its own small synthetic files in ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import scannet_fixture as fx

import mtml
from mtml.cli import run_command
from mtml.cli.infer import main as infer_main
from mtml.data.toy import generate_scene
from mtml.errors import InputError
from mtml.io.formats import ACCEPTED_FORMATS, find_ply_files, find_scenes, read_any_scene, scene_format
from mtml.io.ply import read_ply, scene_to_ply, write_ply
from mtml.io.pointcept import find_pointcept_scenes, read_pointcept_scene
from mtml.io.scannet import read_scannet_scan
from mtml.io.votenet import VOTENET_SUFFIXES, find_votenet_scans, read_votenet_scene, votenet_prefix
from mtml.labels import scannet_label_data

from conftest import require_scannet_mini  # noqa: E402
S20 = scannet_label_data()["scannet20"]["ids"]
S200 = scannet_label_data()["scannet200"]["ids"]


@pytest.fixture(scope="module")
def scans():
    """The real scannet_mini scans folder (VoteNet layout), read in place."""
    return require_scannet_mini()


def _raw(prefix: Path) -> dict:
    """The real scan's arrays as numpy loads them: the reference the reader is checked against."""
    return {kind: np.load(f"{prefix}_{kind}.npy") for kind in ("vert", "sem_label", "ins_label")}


# ---------------------------------------------------------------------------------------------------- VoteNet


def test_votenet_reads_the_real_scans_as_numpy_has_them(scans):
    prefixes = find_votenet_scans(scans)
    assert len(prefixes) == 16 and [p.name for p in prefixes] == sorted(p.name for p in prefixes)
    for prefix in prefixes[:3]:
        raw = _raw(prefix)
        scene = read_votenet_scene(prefix)
        assert scene.name == prefix.name and scene.source == f"{prefix}_vert.npy"
        assert scene.points.dtype == np.float32 and scene.points.shape == (len(raw["vert"]), 3)
        np.testing.assert_array_equal(scene.points, raw["vert"][:, :3])
        assert scene.colors.dtype == np.uint8
        np.testing.assert_array_equal(scene.colors, np.round(raw["vert"][:, 3:6]).astype(np.uint8))
        assert scene.labels.dtype == np.int64 and scene.instances.dtype == np.int64
        np.testing.assert_array_equal(scene.labels, raw["sem_label"].astype(np.int64))
        np.testing.assert_array_equal(scene.instances, raw["ins_label"].astype(np.int64) - 1)
        assert scene.labels.min() >= 0 and scene.labels.max() <= 40  # NYU40 ids
        assert scene.instances.min() == -1 and scene.instances.max() >= 5
        for k in np.unique(scene.instances[scene.instances >= 0]):  # one semantic id per object
            assert len(np.unique(scene.labels[scene.instances == k])) == 1


def test_votenet_scan_from_any_of_its_files_or_its_prefix(scans):
    prefix = scans / "scene0003_01"
    want = read_votenet_scene(prefix)
    for kind in ("vert", "sem_label", "ins_label", "bbox"):
        path = Path(f"{prefix}{VOTENET_SUFFIXES[kind]}")
        assert path.is_file() and votenet_prefix(path) == prefix
        got = read_any_scene(path, benchmark="toy")  # a non-ScanNet benchmark keeps the NYU40 ids as they are
        assert got.name == "scene0003_01"
        np.testing.assert_array_equal(got.points, want.points)
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.instances, want.instances)
    assert scene_format(prefix) == "votenet" and votenet_prefix(scans / "scene9999_00") is None


def test_read_any_scene_puts_votenet_labels_in_the_benchmark_ids(scans):
    prefix = scans / "scene0001_00"
    raw = read_votenet_scene(prefix)
    s20 = read_any_scene(f"{prefix}_vert.npy", benchmark="scannet20")
    keep = np.isin(raw.labels, S20)
    assert (~keep).any()  # scene0001_00 has NYU40 ids outside ScanNet20 (e.g. 38 otherstructure)
    np.testing.assert_array_equal(s20.labels[keep], raw.labels[keep])
    assert (s20.labels[~keep] == 0).all()
    np.testing.assert_array_equal(s20.instances, raw.instances)
    s200 = read_any_scene(prefix, benchmark="scannet200")  # NYU40 ids have no ScanNet200 ids: no labels
    assert s200.labels is None
    np.testing.assert_array_equal(s200.instances, raw.instances)


def test_votenet_variants_of_the_export(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.random((40, 3)).astype(np.float32) * 4
    rgb = rng.integers(0, 256, (40, 3)).astype(np.float32)
    # a plain _vert.npy alone is an unlabelled scan; x y z only has no colours
    np.save(tmp_path / "plain_vert.npy", np.hstack([xyz, rgb]))
    plain = read_votenet_scene(tmp_path / "plain_vert.npy")
    assert plain.labels is None and plain.instances is None and plain.name == "plain"
    np.testing.assert_array_equal(plain.colors, rgb.astype(np.uint8))
    np.save(tmp_path / "xyz_vert.npy", xyz.astype(np.float64))
    only_xyz = read_votenet_scene(tmp_path / "xyz")
    assert only_xyz.colors is None and only_xyz.points.dtype == np.float32
    # mmdetection3d: unaligned _vert.npy and its 4x4 alignment, applied by the reader
    matrix = np.eye(4)
    matrix[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    matrix[:3, 3] = [1.0, 2.0, -0.5]
    np.save(tmp_path / "mm_vert.npy", np.hstack([xyz, rgb]))
    np.save(tmp_path / "mm_axis_align_matrix.npy", matrix)
    np.save(tmp_path / "mm_sem_label.npy", np.arange(40, dtype=np.int64) % 41)
    np.save(tmp_path / "mm_ins_label.npy", np.repeat(np.arange(4, dtype=np.int64), 10))
    mm = read_votenet_scene(tmp_path / "mm_ins_label.npy")
    np.testing.assert_allclose(mm.points, xyz @ matrix[:3, :3].T + matrix[:3, 3], atol=1e-5)
    assert mm.instances.tolist() == np.repeat(np.arange(-1, 3), 10).tolist()
    # ScanRefer: _aligned_vert.npy (x y z r g b nx ny nz) is read instead of _vert.npy; no alignment on top
    np.save(tmp_path / "mm_aligned_vert.npy", np.hstack([xyz + 10, rgb, np.zeros((40, 3), np.float32)]))
    aligned = read_any_scene(tmp_path / "mm_vert.npy")
    np.testing.assert_array_equal(aligned.points, xyz + 10)
    assert aligned.source.endswith("mm_aligned_vert.npy") and aligned.name == "mm"
    assert [p.name for p in find_votenet_scans(tmp_path)] == ["mm", "plain", "xyz"]


@pytest.mark.parametrize("case, message", [
    ("shape", "expected points [N, 3]"),
    ("empty", "empty scene"),
    ("nan", "NaN"),
    ("length", "39 semantic label values for 40 points"),
    ("negative", "negative instance label"),
    ("fractional", "not integers"),
    ("pickle", "not a readable .npy"),
    ("text", "not a readable .npy"),
    ("missing", "no such file"),
    ("matrix", "4x4"),
])
def test_votenet_bad_files_are_one_line_input_errors_naming_the_file(tmp_path, case, message):
    n = 40
    vert = np.hstack([np.random.default_rng(1).random((n, 3)), np.full((n, 3), 128.0)])
    files = {"vert": vert, "sem_label": np.ones(n, np.uint32), "ins_label": np.ones(n, np.uint32)}
    bad_kind = {"shape": "vert", "empty": "vert", "nan": "vert", "length": "sem_label", "negative": "ins_label",
                "fractional": "sem_label", "pickle": "ins_label", "text": "vert", "missing": "vert",
                "matrix": "axis_align_matrix"}[case]
    if case == "shape":
        files["vert"] = vert[:, :5]
    elif case == "empty":
        files = {"vert": np.zeros((0, 6))}
    elif case == "nan":
        files["vert"][3, 1] = np.nan
    elif case == "length":
        files["sem_label"] = files["sem_label"][:-1]
    elif case == "negative":
        files["ins_label"] = -np.ones(n, np.int32)
    elif case == "fractional":
        files["sem_label"] = np.full(n, 1.5)
    elif case == "matrix":
        files["axis_align_matrix"] = np.eye(3)
    for kind, array in files.items():
        np.save(tmp_path / f"s{VOTENET_SUFFIXES[kind]}", array)
    bad_file = tmp_path / f"s{VOTENET_SUFFIXES[bad_kind]}"
    if case == "pickle":
        np.save(bad_file, np.array([{"a": 1}] * n, dtype=object), allow_pickle=True)
    elif case == "text":
        bad_file.write_text("not numpy")
    elif case == "missing":
        bad_file.unlink()
    with pytest.raises(InputError, match=re.escape(message)) as err:
        read_votenet_scene(tmp_path / ("s_sem_label.npy" if case == "missing" else "s"))
    assert err.value.source == str(bad_file) and "\n" not in str(err.value)


# -------------------------------------------------------------------------------------------------- Pointcept


def write_pointcept_scene(folder: Path, seed: int = 0, n: int = 300, *, labels: bool = True) -> dict:
    """A synthetic Pointcept scan folder (the files Pointcept's preprocess_scannet.py writes); returns its arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "coord": (rng.random((n, 3)) * [4, 3, 2.5]).astype(np.float32),
        "color": rng.integers(0, 256, (n, 3)).astype(np.uint8),
        "normal": rng.normal(size=(n, 3)).astype(np.float32),
    }
    if labels:
        arrays["segment20"] = rng.integers(-1, 20, n).astype(np.int64)
        arrays["segment200"] = rng.integers(-1, 200, n).astype(np.int64)
        arrays["instance"] = rng.integers(-1, 12, n).astype(np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        np.save(folder / f"{key}.npy", array)
    return arrays


def test_pointcept_class_indices_become_benchmark_ids(tmp_path):
    folder = tmp_path / "train" / "scene0007_00"
    arrays = write_pointcept_scene(folder)
    s20 = read_pointcept_scene(folder)
    assert s20.name == "scene0007_00" and s20.source == str(folder)
    np.testing.assert_array_equal(s20.points, arrays["coord"])
    np.testing.assert_array_equal(s20.colors, arrays["color"])
    want20 = np.where(arrays["segment20"] >= 0, np.asarray(S20)[arrays["segment20"]], 0)
    np.testing.assert_array_equal(s20.labels, want20)
    np.testing.assert_array_equal(s20.instances, arrays["instance"])
    s200 = read_pointcept_scene(folder, "scannet200")
    want200 = np.where(arrays["segment200"] >= 0, np.asarray(S200)[arrays["segment200"]], 0)
    np.testing.assert_array_equal(s200.labels, want200)
    # the published class order: index 0 of ScanNet20 is wall (NYU40 1), 19 otherfurniture (39);
    # ScanNet200 index 1 is chair (2), 2 floor (3), 199 mattress (1191)
    np.save(folder / "segment20.npy", np.array([0, 19, -1] + [5] * 297))
    np.save(folder / "segment200.npy", np.array([1, 2, 199] + [-1] * 297))
    assert read_pointcept_scene(folder).labels[:4].tolist() == [1, 39, 0, 6]
    assert read_pointcept_scene(folder, "scannet200").labels[:4].tolist() == [2, 3, 1191, 0]


def test_pointcept_folder_through_read_any_scene_and_find(tmp_path):
    root = tmp_path / "pointcept"
    write_pointcept_scene(root / "train" / "scene0001_00", 1)
    write_pointcept_scene(root / "val" / "scene0002_00", 2)
    write_pointcept_scene(root / "test" / "scene0003_00", 3, labels=False)
    assert [p.name for p in find_pointcept_scenes(root)] == ["scene0001_00", "scene0002_00", "scene0003_00"]
    assert [p.name for p in find_pointcept_scenes(root / "val")] == ["scene0002_00"]
    test_scan = read_any_scene(root / "test" / "scene0003_00")
    assert test_scan.labels is None and test_scan.instances is None and test_scan.colors is not None
    for path in (root / "val" / "scene0002_00", root / "val" / "scene0002_00" / "coord.npy"):
        assert scene_format(path) == "pointcept"
        np.testing.assert_array_equal(read_any_scene(path, "scannet200").labels,
                                      read_pointcept_scene(root / "val" / "scene0002_00", "scannet200").labels)


@pytest.mark.parametrize("name, array, message", [
    ("segment20.npy", np.full(300, 20), "outside -1..19"),
    ("segment20.npy", np.full(300, -2), "outside -1..19"),
    ("instance.npy", np.full(300, -3), "below -1"),
    ("coord.npy", np.zeros((300, 2)), "expected coordinates"),
    ("color.npy", np.zeros((299, 3)), "expected colours"),
    ("segment20.npy", np.zeros(12), "12 class index values for 300 points"),
])
def test_pointcept_bad_files(tmp_path, name, array, message):
    folder = tmp_path / "scene0000_00"
    write_pointcept_scene(folder)
    np.save(folder / name, array)
    with pytest.raises(InputError, match=message) as err:
        read_pointcept_scene(folder)
    assert err.value.source == str(folder / name)


def test_pointcept_unknown_benchmark_and_not_a_folder(tmp_path):
    write_pointcept_scene(tmp_path / "s")
    with pytest.raises(InputError, match="unknown benchmark 'nyu40'"):
        read_pointcept_scene(tmp_path / "s", "nyu40")
    with pytest.raises(InputError, match="no coord.npy") as err:
        read_pointcept_scene(tmp_path)
    assert err.value.source == str(tmp_path)


# ------------------------------------------------------------------------------------ PLY and scan folders


def _labels_ply(path: Path, labels: np.ndarray) -> Path:
    """A mesh-like PLY with colour and a NYU40 ``label`` property, as ScanNet's _vh_clean_2.labels.ply."""
    rng = np.random.default_rng(len(labels))
    return write_ply(path, rng.random((len(labels), 3)).astype(np.float32),
                     colors=rng.integers(0, 256, (len(labels), 3)), int_props={"label": labels})


def test_scannet_labels_ply_is_nyu40_and_named_by_scene(tmp_path):
    nyu40 = np.array([1, 2, 5, 38, 40, 0, 39, 22] * 5)
    path = _labels_ply(tmp_path / "scene0004_00_vh_clean_2.labels.ply", nyu40)
    raw = read_ply(path)
    assert raw.name == "scene0004_00" and raw.labels.tolist() == nyu40.tolist() and raw.instances is None
    s20 = read_any_scene(path)
    assert s20.labels.tolist() == [1, 2, 5, 0, 0, 0, 39, 0] * 5  # 38, 40, 22 are not ScanNet20 classes
    assert read_any_scene(path, "scannet200").labels is None
    # any other PLY keeps its labels: they are whatever ids the file's author used (toy scenes: 0..5)
    toy = scene_to_ply(generate_scene(4), tmp_path / "toy.ply")
    np.testing.assert_array_equal(read_any_scene(toy).labels, generate_scene(4).labels)


def test_scan_folder_variants(tmp_path):
    folder = fx.write_scan_folder(tmp_path, "scene0005_00", seed=5)
    annotated = read_any_scene(folder, "scannet200")
    expected = read_scannet_scan(folder, "scannet200")
    np.testing.assert_array_equal(annotated.labels, expected.labels)
    np.testing.assert_array_equal(annotated.instances, expected.instances)
    # without segs and aggregation: the labelled mesh, else the bare mesh (a test scan)
    for name in ("scene0005_00_vh_clean_2.0.010000.segs.json", "scene0005_00.aggregation.json"):
        (folder / name).unlink()
    bare = read_any_scene(folder)
    assert bare.name == "scene0005_00" and bare.labels is None and bare.faces is not None
    _labels_ply(folder / "scene0005_00_vh_clean_2.labels.ply", np.full(bare.num_points, 38))
    labelled = read_any_scene(folder, "toy")
    assert labelled.name == "scene0005_00" and (labelled.labels == 38).all()
    assert find_ply_files(tmp_path, in_scan_folders=True) == {"scene0005_00": folder / (
        "scene0005_00_vh_clean_2.labels.ply")}


def test_unknown_or_missing_paths_list_the_accepted_formats(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty_folder").mkdir()
    for path, what in ((tmp_path / "notes.txt", "not a scan mtml reads"),
                       (tmp_path / "empty_folder", "not a scan mtml reads"),
                       (tmp_path / "nothing_here", "no such file or folder")):
        with pytest.raises(InputError) as err:
            read_any_scene(path)
        message = str(err.value)
        assert message.startswith(f"{path}: {what}") and "\n" not in message
        assert all(fmt in message for fmt in ACCEPTED_FORMATS)
    with pytest.raises(InputError, match="no such file"):
        read_any_scene(tmp_path / "missing.ply")
    with pytest.raises(InputError, match="no such file"):
        read_any_scene(tmp_path / "scene0000_00_vert.npy")


def test_find_scenes_lists_every_format_and_refuses_two_of_a_name(tmp_path):
    np.save(tmp_path / "scene0001_00_vert.npy", np.ones((5, 6), np.float32))
    np.save(tmp_path / "scene0001_00_aligned_vert.npy", np.ones((5, 6), np.float32))
    write_pointcept_scene(tmp_path / "scene0002_00")
    fx.write_scan_folder(tmp_path, "scene0003_00", seed=3)
    scene_to_ply(generate_scene(1), tmp_path / "room.ply")
    _labels_ply(tmp_path / "scene0004_00_vh_clean_2.labels.ply", np.ones(10, np.int64))
    write_ply(tmp_path / "scene0004_00_vh_clean_2.ply", np.zeros((10, 3)))  # the same mesh, unlabelled: left out
    found = find_scenes(tmp_path)
    assert list(found) == ["room", "scene0001_00", "scene0002_00", "scene0003_00", "scene0004_00"]
    assert [scene_format(p) for p in found.values()] == ["ply", "votenet", "pointcept", "scannet", "ply"]
    assert all(read_any_scene(p).name == name for name, p in found.items())
    scene_to_ply(generate_scene(2), tmp_path / "scene0002_00.ply")
    with pytest.raises(InputError, match="two scans named 'scene0002_00'"):
        find_scenes(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no scans in this folder") as err:
        find_scenes(tmp_path / "empty")
    assert err.value.source == str(tmp_path / "empty")


# --------------------------------------------------------------------------------------------- mtml-infer


def test_mtml_infer_reads_a_votenet_file_and_a_pointcept_folder(scans, tiny_semantic_checkpoint, tmp_path, capsys):
    scene = dataclasses.replace(generate_scene(7), labels=None, instances=None)
    pointcept = tmp_path / "pc" / "toy_pointcept"
    pointcept.mkdir(parents=True)
    np.save(pointcept / "coord.npy", scene.points)
    np.save(pointcept / "color.npy", np.full((scene.num_points, 3), 200, np.uint8))
    out = tmp_path / "out"
    vert = scans / "scene0009_01_vert.npy"
    code = run_command(infer_main, [str(vert), str(pointcept), "--checkpoint", str(tiny_semantic_checkpoint),
                                    "--out", str(out), "--predict-labels", "--no-picture"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    for name, num_points in (("scene0009_01", len(np.load(vert))), ("toy_pointcept", scene.num_points)):
        summary = json.loads((out / f"{name}_instances.json").read_text())
        assert summary["scene"] == name and summary["num_points"] == num_points
        assert summary["labels"] == "predicted"
        assert len(read_ply(out / f"{name}_instances.ply").points) == num_points
    assert mtml.read_scene(vert).name == "scene0009_01"
