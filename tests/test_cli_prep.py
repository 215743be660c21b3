"""``mtml-prep scannet`` and ``mtml.data.scannet_prep``: ScanNet scan folders -> a resumable voxel store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scannet_fixture as fx

from mtml.cli import run_command
from mtml.cli.prep import main
from mtml.data.scannet_prep import prep_scannet
from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.io.scannet import read_scannet_scan
from mtml.io.store import VoxelStore

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
