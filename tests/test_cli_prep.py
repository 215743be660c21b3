"""``mtml-prep`` and ``mtml.data.scannet_prep``: ScanNet scan folders, VoteNet exports, Pointcept folders and labelled
PLY files -> a resumable voxel store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scannet_fixture as fx

from mtml.cli import run_command
from mtml.cli.prep import main
from mtml.data.scannet_prep import prep_scannet, prep_scans
from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.io.formats import read_any_scene
from mtml.io.ply import read_ply, write_ply
from mtml.io.pointcept import read_pointcept_scene
from mtml.io.scannet import read_scannet_scan
from mtml.io.store import VoxelStore
from mtml.io.votenet import read_votenet_scene
from mtml.labels import scannet_label_data

NAMES = ["scene0000_00", "scene0001_00", "scene0002_00"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Three scans with the tsv at the root; tests only read it."""
    root = tmp_path_factory.mktemp("scannet") / "scans"
    fx.write_scannet_root(root, 3)
    return root


def run(argv, capsys):
    status = run_command(main, argv)
    captured = capsys.readouterr()
    return status, captured.out.strip().splitlines(), captured.err.strip().splitlines()


def test_store_has_one_grid_per_scene_with_benchmark_labels(root, tmp_path):
    out = tmp_path / "store.h5"
    summary = prep_scannet(root, out, benchmark="scannet200", voxel_size=0.1, progress=False)
    assert summary.path == out and (summary.scenes, summary.built, summary.kept) == (3, 3, 0)
    assert not Path(str(out) + ".partial").exists()
    with VoxelStore(out) as store:
        assert store.names() == NAMES
        assert store.meta == {"dataset": "scannet", "benchmark": "scannet200", "voxel_size": 0.1,
                              "label_map": str((root / fx.TSV_NAME).resolve())}
        total = 0
        for k, name in enumerate(NAMES):
            grid = store.get(name)
            scene = read_scannet_scan(root / name, benchmark="scannet200")
            want = voxelize(scene, 0.1)
            np.testing.assert_array_equal(grid.coords, want.coords)
            np.testing.assert_array_equal(grid.labels, want.labels)
            np.testing.assert_array_equal(grid.instances, want.instances)
            np.testing.assert_allclose(grid.colors, want.colors)
            assert grid.voxel_size == 0.1 and grid.point_to_voxel is None
            # labels stay ScanNet200 ids (not contiguous indices); every annotated object is present
            assert set(np.unique(grid.labels).tolist()) == {0, 1, 2, 3, 4, 7, 10, 26, 56}
            scan = fx.make_scan(name, seed=k)
            assert set(np.unique(grid.instances).tolist()) == set(scan.object_ids)
            assert grid.extra == {"source": str(root / name), "num_points": scan.num_vertices,
                                  "num_voxels": grid.num_voxels}
            total += grid.num_voxels
    assert summary.voxels == total


def test_resume_keeps_existing_scenes(root, tmp_path):
    out = tmp_path / "store.h5"
    first = prep_scannet(root, out, limit=1, progress=False)
    assert (first.scenes, first.built, first.kept) == (1, 1, 0)
    with VoxelStore(out) as store:
        assert store.names() == NAMES[:1]
        before = store.get(NAMES[0])
    full = prep_scannet(root, out, progress=False)
    assert (full.scenes, full.built, full.kept) == (3, 2, 1)  # scene0000_00 was not rebuilt
    with VoxelStore(out) as store:
        assert store.names() == NAMES
        np.testing.assert_array_equal(store.get(NAMES[0]).labels, before.labels)
        assert set(np.unique(store.get(NAMES[0]).labels).tolist()) == {0, 1, 2, 3, 5, 7, 39}  # scannet20 ids
    again = prep_scannet(root, out, progress=False)
    assert (again.built, again.kept) == (0, 3)
    with pytest.raises(InputError, match="different settings"):
        prep_scannet(root, out, voxel_size=0.05, progress=False)


def test_interrupted_build_continues_where_it_stopped(tmp_path):
    root = tmp_path / "scans"
    folders = fx.write_scannet_root(root, 3)
    agg = folders[1] / f"{folders[1].name}.aggregation.json"
    good = agg.read_text()
    agg.write_text("{ broken")
    out = tmp_path / "store.h5"
    with pytest.raises(InputError) as err:
        prep_scannet(root, out, progress=False)
    assert str(folders[1]) in str(err.value)  # the message names the scan folder (and its file)
    assert not out.exists()
    with VoxelStore(str(out) + ".partial") as partial:
        assert partial.names() == NAMES[:1]
    agg.write_text(good)
    summary = prep_scannet(root, out, progress=False)
    assert (summary.built, summary.kept) == (2, 1)
    with VoxelStore(out) as store:
        assert store.names() == NAMES


def test_explicit_label_map_and_point_map(tmp_path):
    root = tmp_path / "scans"
    fx.write_scan_folder(root, "scene0005_00", label_map=False)
    with pytest.raises(InputError, match="scannetv2-labels.combined.tsv") as err:
        prep_scannet(root, tmp_path / "a.h5", progress=False)
    assert err.value.source == str(root)
    tsv = fx.write_label_map(tmp_path / "labels" / "my.tsv")
    summary = prep_scannet(root, tmp_path / "a.h5", label_map=tsv, with_point_map=True, progress=False)
    assert summary.scenes == 1
    with VoxelStore(tmp_path / "a.h5") as store:
        assert store.meta["label_map"] == str(tsv.resolve())
        grid = store.get("scene0005_00")
        assert grid.point_to_voxel is not None and len(grid.point_to_voxel) == grid.extra["num_points"]


def test_cli_writes_store_and_prints_one_summary_line(root, tmp_path, capsys):
    out = tmp_path / "cli.h5"
    status, stdout, _ = run(["scannet", "--root", str(root), "--out", str(out), "--benchmark", "scannet200",
                             "--voxel-size", "0.2", "--limit", "2", "--no-progress"], capsys)
    assert status == 0
    assert len(stdout) == 1 and "2 scenes" in stdout[0] and "voxels" in stdout[0] and stdout[0].endswith(" s")
    with VoxelStore(out) as store:
        assert store.names() == NAMES[:2]
        assert store.meta["benchmark"] == "scannet200" and store.meta["voxel_size"] == 0.2
        assert 56 in store.get(NAMES[0]).labels  # trash can keeps its ScanNet200 id


def test_cli_missing_root_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "x.h5"
    status, stdout, stderr = run(["scannet", "--root", str(tmp_path / "nope"), "--out", str(out)], capsys)
    assert status == 2 and len(stderr) == 1 and stdout == []
    assert str(tmp_path / "nope") in stderr[0] and "no such folder" in stderr[0]
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_cli_root_without_scans_and_bad_arguments(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status, _, stderr = run(["scannet", "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "x.h5")], capsys)
    assert status == 2 and len(stderr) == 1 and "no ScanNet scan folders" in stderr[0]
    for bad in (["--voxel-size", "0"], ["--limit", "0"], ["--benchmark", "nyu40"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["scannet", "--root", str(tmp_path), "--out", str(tmp_path / "x.h5"), *bad])
        assert exit_info.value.code == 2
    capsys.readouterr()


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "abc"])
def test_cli_voxel_size_must_be_a_positive_finite_number(value, root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["scannet", "--root", str(root), "--out", str(tmp_path / "x.h5"), "--voxel-size", value])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--voxel-size" in errors[0] and value in errors[0]
    assert not (tmp_path / "x.h5.partial").exists()


def test_cli_unusable_out_is_one_line_exit_2_before_reading_scans(root, tmp_path, capsys, monkeypatch):
    from mtml.data import scannet_prep

    monkeypatch.setattr(scannet_prep, "prep_scannet", lambda *a, **k: pytest.fail("scans read before checking --out"))
    (tmp_path / "a_file").write_text("x")
    for out, problem in ((tmp_path, "is a folder"), (tmp_path / "a_file" / "x.h5", "is a file, not a folder"),
                         (Path("/sys/x.h5"), "not writable")):  # sysfs refuses new files, also to root
        status, stdout, stderr = run(["scannet", "--root", str(root), "--out", str(out)], capsys)
        assert status == 2 and len(stderr) == 1 and stdout == []
        assert str(out) in stderr[0] and problem in stderr[0] and "--out" in stderr[0]


# ------------------------------------------------------------------ the other formats: VoteNet, Pointcept, PLY
from conftest import SCANNET_MINI_SCANS, require_scannet_mini  # noqa: E402
S20_AND_0 = {0, *scannet_label_data()["scannet20"]["ids"]}


@pytest.fixture(scope="module")
def real_scans():
    """The real scannet_mini scans (VoteNet layout), read in place; stores go to tmp_path only."""
    require_scannet_mini()
    return SCANNET_MINI_SCANS


def _assert_store_holds(store_path, scenes, voxel_size=0.1):
    """The store has exactly ``scenes`` (name -> Scene), each voxelized as ``voxelize`` does it."""
    with VoxelStore(store_path) as store:
        assert store.names() == sorted(scenes)
        for name, scene in scenes.items():
            grid, want = store.get(name), voxelize(scene, voxel_size)
            np.testing.assert_array_equal(grid.coords, want.coords)
            np.testing.assert_array_equal(grid.labels, want.labels)
            if scene.instances is None:
                assert grid.instances is None
            else:
                np.testing.assert_array_equal(grid.instances, want.instances)
            assert grid.extra == {"source": scene.source, "num_points": scene.num_points,
                                  "num_voxels": grid.num_voxels}


def test_prep_votenet_on_two_real_scans(real_scans, tmp_path):
    out = tmp_path / "votenet.h5"
    summary = prep_scans("votenet", real_scans, out, limit=2, progress=False)
    assert (summary.scenes, summary.built, summary.kept) == (2, 2, 0)
    names = ["scene0001_00", "scene0001_01"]
    scenes = {n: read_any_scene(real_scans / n, "scannet20") for n in names}
    _assert_store_holds(out, scenes)
    with VoxelStore(out) as store:
        assert store.meta == {"dataset": "votenet", "benchmark": "scannet20", "voxel_size": 0.1}
        for n in names:
            grid = store.get(n)
            assert set(np.unique(grid.labels).tolist()) <= S20_AND_0 and 38 not in grid.labels
            raw = read_votenet_scene(real_scans / n)
            assert set(np.unique(grid.instances).tolist()) <= set(np.unique(raw.instances).tolist())
            assert len(np.unique(grid.instances)) >= 10
        assert summary.voxels == sum(store.get(n).num_voxels for n in names)
    again = prep_scans("votenet", real_scans, out, limit=2, progress=False)
    assert (again.built, again.kept) == (0, 2)


def test_cli_votenet_and_its_refusals(real_scans, tmp_path, capsys):
    out = tmp_path / "cli.h5"
    status, stdout, _ = run(["votenet", "--root", str(real_scans), "--out", str(out), "--limit", "1",
                             "--voxel-size", "0.2", "--no-progress"], capsys)
    assert status == 0 and len(stdout) == 1 and "1 scenes (1 built, 0 kept)" in stdout[0]
    with VoxelStore(out) as store:
        assert store.names() == ["scene0001_00"] and store.meta["voxel_size"] == 0.2
    status, stdout, stderr = run(["votenet", "--root", str(real_scans), "--out", str(tmp_path / "200.h5"),
                                  "--benchmark", "scannet200"], capsys)
    assert status == 2 and stdout == [] and len(stderr) == 1 and "NYU40 ids" in stderr[0]
    assert not (tmp_path / "200.h5").exists() and not (tmp_path / "200.h5.partial").exists()
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    np.save(unlabelled / "scene0000_00_vert.npy", np.ones((10, 6), np.float32))
    status, _, stderr = run(["votenet", "--root", str(unlabelled), "--out", str(tmp_path / "u.h5"), "--no-progress"],
                            capsys)
    assert status == 2 and len(stderr) == 1 and "no semantic labels" in stderr[0]
    assert str(unlabelled / "scene0000_00_vert.npy") in stderr[0]
    status, _, stderr = run(["votenet", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "n.h5")], capsys)
    assert status == 2 and "no such folder" in stderr[0]


def _pointcept_root(root: Path) -> list[Path]:
    """Two synthetic Pointcept scan folders under root/train and root/val (Pointcept's output layout)."""
    folders = []
    for k, split in enumerate(("train", "val")):
        folder = root / split / f"scene000{k}_00"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(k)
        n = 400
        np.save(folder / "coord.npy", (rng.random((n, 3)) * [3, 3, 2]).astype(np.float32))
        np.save(folder / "color.npy", rng.integers(0, 256, (n, 3)).astype(np.uint8))
        np.save(folder / "segment20.npy", rng.integers(-1, 20, n))
        np.save(folder / "segment200.npy", rng.integers(-1, 200, n))
        np.save(folder / "instance.npy", rng.integers(-1, 8, n))
        folders.append(folder)
    return folders


@pytest.mark.parametrize("label_set", ["scannet20", "scannet200"])
def test_prep_pointcept_stores_benchmark_ids(tmp_path, label_set):
    folders = _pointcept_root(tmp_path / "pointcept")
    out = tmp_path / "pc.h5"
    summary = prep_scans("pointcept", tmp_path / "pointcept", out, benchmark=label_set, progress=False)
    assert summary.scenes == 2
    _assert_store_holds(out, {f.name: read_pointcept_scene(f, label_set) for f in folders})
    ids = {0, *scannet_label_data()[label_set]["ids"]}
    with VoxelStore(out) as store:
        assert store.meta["dataset"] == "pointcept" and store.meta["benchmark"] == label_set
        labels = np.concatenate([store.get(f.name).labels for f in folders])
        assert set(labels.tolist()) <= ids and labels.max() > (40 if label_set == "scannet200" else 0)


def test_cli_pointcept_and_a_test_split_scan_without_labels(tmp_path, capsys):
    root = tmp_path / "pointcept"
    _pointcept_root(root)
    status, stdout, _ = run(["pointcept", "--root", str(root / "val"), "--out", str(tmp_path / "val.h5"),
                             "--benchmark", "scannet200", "--no-progress"], capsys)
    assert status == 0 and "1 scenes" in stdout[0]
    (root / "val" / "scene0001_00" / "segment200.npy").unlink()
    status, _, stderr = run(["pointcept", "--root", str(root), "--out", str(tmp_path / "all.h5"), "--benchmark",
                             "scannet200", "--no-progress"], capsys)
    assert status == 2 and len(stderr) == 1 and "no semantic labels in scannet200 ids" in stderr[0]
    assert str(root / "val" / "scene0001_00") in stderr[0]


def test_prep_ply_reads_labels_ply_of_scan_folders_and_ply_files(tmp_path):
    root = tmp_path / "scans"
    rng = np.random.default_rng(0)
    nyu40 = np.array([1, 2, 5, 38, 39, 0, 22, 14] * 40)
    points = (rng.random((len(nyu40), 3)) * 3).astype(np.float32)
    write_ply(root / "scene0002_00" / "scene0002_00_vh_clean_2.labels.ply", points, int_props={"label": nyu40})
    write_ply(root / "room.ply", points + 1, int_props={"label": nyu40[::-1].copy(), "instance": np.arange(320) % 7})
    out = tmp_path / "ply.h5"
    summary = prep_scans("ply", root, out, progress=False)
    assert summary.scenes == 2
    expected = {}
    for name, path in (("room", root / "room.ply"),
                       ("scene0002_00", root / "scene0002_00" / "scene0002_00_vh_clean_2.labels.ply")):
        scene = read_ply(path)
        expected[name] = dataclasses.replace(scene, labels=np.where(np.isin(scene.labels, list(S20_AND_0)),
                                                                    scene.labels, 0))
    _assert_store_holds(out, expected)
    with VoxelStore(out) as store:
        assert store.meta == {"dataset": "ply", "benchmark": "scannet20", "voxel_size": 0.1}
        assert set(np.unique(store.get("scene0002_00").labels).tolist()) == {0, 1, 2, 5, 14, 39}
    write_ply(root / "plain.ply", points)
    with pytest.raises(InputError, match="no semantic labels") as err:
        prep_scans("ply", root, tmp_path / "plain.h5", progress=False)
    assert err.value.source == str(root / "plain.ply")
    with pytest.raises(InputError, match="NYU40 ids"):
        prep_scans("ply", root, tmp_path / "x.h5", benchmark="scannet200", progress=False)
