"""``mtml-bench scannet-mini``: seeds/004 Table 2 leave-one-space-out on the real scannet_mini scans (read in place
from ../shared/data/scannet_mini/scans, never copied; runs and outputs go to tmp_path only)."""

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtml.cli import run_command
from mtml.cli.bench import main as bench_main
from mtml.data.registry import class_set, scan_space
from mtml.errors import InputError
from mtml.eval.instance_ap import InstanceAPResult
from mtml.eval.scenes import baseline_segmenter, evaluate_scenes
from mtml.io.formats import find_scenes, read_any_scene
from mtml.tables import scannet_mini as sm

from conftest import SCANNET_MINI_MISSING, require_scannet_mini  # noqa: E402
from conftest import SCANNET_MINI_SCANS as SCANS  # noqa: E402

needs_scans = pytest.mark.skipif(not SCANS.is_dir(), reason=SCANNET_MINI_MISSING)

OVERLAPS = np.append(np.arange(0.5, 0.95, 0.05), 0.25)


def _read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _check_fractions(rows: list[dict], columns) -> None:
    """Every filled numeric cell is a fraction in [0, 1]."""
    for row in rows:
        for col in columns:
            if row[col] != "":
                assert 0.0 <= float(row[col]) <= 1.0, (row["source"], row["row"], col, row[col])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One fold (the first space), one epoch of two steps, language-grounded and scratch models, through the CLI."""
    require_scannet_mini()
    root = tmp_path_factory.mktemp("scannet_mini")
    runs, out = root / "runs", root / "out"
    argv = ["scannet-mini", "--scans", str(SCANS), "--folds", "1", "--epochs", "1", "--max-steps", "2",
            "--with-scratch", "--runs", str(runs), "--out", str(out)]
    assert run_command(bench_main, argv) == 0
    return runs, out


@needs_scans
def test_smoke_csv_has_every_row_and_metric(smoke_run):
    _, out = smoke_run
    text = (out / "scannet_mini.csv").read_text()
    rows = _read_csv(text)
    assert list(rows[0].keys()) == sm.csv_columns()
    assert len([c for c in sm.csv_columns() if c.startswith("ap50 ")]) == 18
    assert len([c for c in sm.csv_columns() if c.startswith("iou ")]) == 20
    ours = {r["row"]: r for r in rows if r["source"] == "ours"}
    assert set(ours) == {r.key for r in (*sm.ROWS, *sm.SCRATCH_ROWS)}
    for key, row in ours.items():
        for metric in ("ap", "ap50", "ap25"):
            assert row[metric] != "", (key, metric)
        # semantic mIoU only where the semantics are the model's own
        assert (row["miou"] != "") == (row["semantics"] == "predicted"), key
    _check_fractions(rows, [c for c in sm.csv_columns() if c not in ("source", "row", "title", "semantics")])
    # ground-truth semantics: the labels are right, so connected components find real instances
    assert float(ours["connected_components_gt"]["ap50"]) > 0.3

    paper = {r["row"]: r for r in rows if r["source"] == "paper"}
    assert set(paper) == {"segment_as_instance", "connected_components", "fe_only", "multi_task"}
    assert float(paper["multi_task"]["ap50"]) == pytest.approx(0.402)
    assert float(paper["connected_components"]["ap50"]) == pytest.approx(0.230)
    assert float(paper["multi_task"]["ap50 toilet"]) == pytest.approx(0.965)


@needs_scans
def test_smoke_held_out_space_never_trained_on(smoke_run):
    runs, _ = smoke_run
    folds = sorted(p for p in runs.iterdir() if p.is_dir())
    assert [f.name for f in folds] == [sm.scannet_folds(SCANS)[0].space]
    fold_dir = folds[0]
    record = json.loads((fold_dir / "fold.json").read_text())
    space = record["held_out_space"]
    all_scans = set(find_scenes(SCANS))
    assert record["held_out_scans"] and all(scan_space(n) == space for n in record["held_out_scans"])
    assert set(record["held_out_scans"]) == {n for n in all_scans if scan_space(n) == space}
    assert not {scan_space(n) for n in record["train_scans"]} & {space}
    assert set(record["train_scans"]) | set(record["held_out_scans"]) == all_scans
    for key, init in (("grounded", "anchors"), ("scratch", "random")):
        cfg = yaml.safe_load((fold_dir / key / "config.yaml").read_text())
        # the trainer validates on data.holdout_space only and trains on every other space's scans
        assert cfg["data"]["kind"] == "scans"
        assert cfg["data"]["holdout_space"] == space
        assert Path(cfg["data"]["scans_root"]) == SCANS
        assert cfg["train"]["classifier_init"] == init
        assert cfg["train"]["epochs"] == 1 and cfg["train"]["max_steps_per_epoch"] == 2
        assert (fold_dir / key / "last.pt").is_file()


@needs_scans
def test_smoke_pooled_rows_match_a_direct_evaluation(smoke_run):
    """The ground-truth connected-components row equals ``evaluate_scenes`` of that baseline on the held-out scans
    (the benchmark pools folds through the one evaluation loop)."""
    _, out = smoke_run
    ours = {r["row"]: r for r in _read_csv((out / "scannet_mini.csv").read_text()) if r["source"] == "ours"}
    fold = sm.scannet_folds(SCANS, 1)[0]
    paths = find_scenes(SCANS)
    classes = class_set("scannet20")
    direct = evaluate_scenes(baseline_segmenter("connected_components", 0.1, classes.ids),
                             [read_any_scene(paths[n], benchmark="scannet20") for n in fold.held_out], classes,
                             min_region_size=sm.MIN_REGION_POINTS, progress=False)
    assert float(ours["connected_components_gt"]["ap50"]) == pytest.approx(direct.mean_ap50, abs=1e-4)


@needs_scans
def test_folds_cover_every_space_once():
    folds = sm.scannet_folds(SCANS)
    assert len(folds) == 8
    assert [f.space for f in folds] == sorted(f.space for f in folds)
    held = [n for f in folds for n in f.held_out]
    assert sorted(held) == sorted(find_scenes(SCANS))
    for f in folds:
        assert not {scan_space(n) for n in f.train} & {f.space}
    assert len(sm.scannet_folds(SCANS, 3)) == 3


def test_missing_scans_folder_is_one_line_input_error(tmp_path, capsys):
    with pytest.raises(InputError):
        sm.scannet_folds(tmp_path / "absent")
    assert run_command(bench_main, ["scannet-mini", "--scans", str(tmp_path / "absent"),
                                    "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "absent" in err and "no such folder of scans" in err


def test_table_csv_from_hand_made_results():
    """Fractions to 4 decimals, nan (a class without ground truth) and non-applicable cells empty."""
    classes = class_set("scannet20")
    aps = np.full((len(classes.ids), len(OVERLAPS)), np.nan)
    aps[0] = 0.5      # cabinet: 0.5 at every threshold
    aps[2] = 0.25     # chair
    inst = InstanceAPResult(classes.ids, classes.names, OVERLAPS, aps)
    sem_ids = sm.semantic_class_ids()
    confusion = sm.SemanticConfusion(sem_ids)
    confusion.update(np.array([1, 1, 2, 5]), np.array([1, 2, 2, 5]))  # wall 1/2, floor 1/2, chair 1/1
    results = {"multi_task": sm.RowResult(inst, confusion.result()),
               "connected_components_gt": sm.RowResult(inst, None)}
    rows = {r["row"]: r for r in _read_csv(sm.table_csv(results, sm.ROWS)) if r["source"] == "ours"}
    assert set(rows) == {"multi_task", "connected_components_gt"}
    mt = rows["multi_task"]
    assert mt["ap50"] == "0.3750" and mt["ap50 cabinet"] == "0.5000" and mt["ap50 bed"] == ""
    assert mt["iou wall"] == "0.5000" and mt["iou chair"] == "1.0000" and mt["iou sofa"] == ""
    assert float(mt["miou"]) == pytest.approx((0.5 + 0.5 + 1.0) / 3, abs=1e-4)
    assert rows["connected_components_gt"]["miou"] == "" and rows["connected_components_gt"]["iou wall"] == ""
    text = sm.table_text(results, sm.ROWS, [sm.Fold("scene0001", ("scene0001_00",), ("scene0002_00",))])
    assert "40.2" in text and "FE only" in text and not math.isnan(float(mt["ap"]))
