"""``mtml-eval scannet``: the official CSV on the fixture, and one-line errors with exit status 2."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from mtml.cli import run_command
from mtml.cli.eval import main
from mtml.data.registry import class_set
from mtml.io.benchmark import write_scene_predictions

FIXTURE = Path(__file__).parent / "fixtures" / "scannet_instance_eval"


def csv_values(path: Path) -> dict:
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["class", "class id", "ap", "ap50", "ap25"]
    return {r[0]: [int(r[1])] + [float(x) for x in r[2:]] for r in rows[1:]}


def scannet_args(pred, gt, out, *extra):
    return ["scannet", "--pred-path", str(pred), "--gt-path", str(gt), "--output-file", str(out), *extra]


def test_fixture_csv_equals_reference(tmp_path, capsys):
    out = tmp_path / "res" / "result.csv"
    assert main(scannet_args(FIXTURE / "pred", FIXTURE / "gt", out)) == 0
    got, want = csv_values(out), csv_values(FIXTURE / "reference.csv")
    assert list(got) == list(want)
    for name in want:
        assert got[name][0] == want[name][0]
        for g, w in zip(got[name][1:], want[name][1:]):
            assert (math.isnan(g) and math.isnan(w)) or abs(g - w) <= 1e-9, name
    printed = capsys.readouterr().out
    assert "evaluating 6 scenes" in printed and "AP_50%" in printed and "average" in printed


def run(argv, capsys):
    status = run_command(main, argv)
    return status, capsys.readouterr().err.strip().splitlines()


def test_missing_gt_folder_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "result.csv"
    status, err = run(scannet_args(FIXTURE / "pred", tmp_path / "no_gt", out), capsys)
    assert status == 2 and len(err) == 1
    assert str(tmp_path / "no_gt") in err[0] and "no such ground-truth folder" in err[0]
    assert not out.exists()


def test_bad_mask_is_one_line_exit_2(tmp_path, capsys):
    pred = tmp_path / "pred"
    shutil.copytree(FIXTURE / "pred", pred)
    bad = pred / "pred_mask" / "scene0011_02_003.txt"
    bad.write_text("".join(bad.read_text().splitlines(keepends=True)[:-5]))
    out = tmp_path / "result.csv"
    status, err = run(scannet_args(pred, FIXTURE / "gt", out), capsys)
    assert status == 2 and len(err) == 1
    assert str(bad) in err[0] and "expected 5688 lines (one per vertex), got 5683" in err[0]
    assert not out.exists()


def test_prediction_without_gt_and_required_scenes(tmp_path, capsys):
    pred = tmp_path / "pred"
    shutil.copytree(FIXTURE / "pred", pred)
    (pred / "scene0011_03.txt").unlink()
    out = tmp_path / "result.csv"
    assert run(scannet_args(pred, FIXTURE / "gt", out), capsys)[0] == 0  # evaluated on the other five
    status, err = run(scannet_args(pred, FIXTURE / "gt", out, "--require-all-scenes"), capsys)
    assert status == 2 and len(err) == 1 and "scene0011_03" in err[0]
    (pred / "scene0999_00.txt").write_text("")
    status, err = run(scannet_args(pred, FIXTURE / "gt", out), capsys)
    assert status == 2 and len(err) == 1 and "scene0999_00.txt" in err[0] and "no ground-truth file" in err[0]


def test_argument_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["scannet", "--pred-path", "p", "--gt-path", "g", "--output-file", "o", "--min-region-size", "-1"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_scannet200_prints_group_means(tmp_path, capsys):
    classes = class_set("scannet200")
    chair, table = classes.ids[0], classes.ids[1]
    gt = np.zeros(1000, np.int64)
    gt[:300] = chair * 1000 + 1
    gt[300:600] = table * 1000 + 1
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "scene0000_00.txt").write_text("".join(f"{v}\n" for v in gt))
    masks = np.stack([gt == chair * 1000 + 1, gt == table * 1000 + 1])
    write_scene_predictions(tmp_path / "pred", "scene0000_00", masks, [chair, chair], [0.9, 0.8])
    out = tmp_path / "result.csv"
    assert main(scannet_args(tmp_path / "pred", tmp_path / "gt", out, "--benchmark", "scannet200")) == 0
    printed = capsys.readouterr().out
    for group in ("head", "common", "tail"):
        assert any(line.startswith(group) for line in printed.splitlines()), group
    values = csv_values(out)
    assert len(values) == 198
    assert values["chair"][1:] == [1.0, 1.0, 1.0] and values["table"][1:] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("subcommand", ["scannet", "instances"])
def test_unwritable_output_file_is_one_line_exit_2_before_evaluating(subcommand, tmp_path, capsys, monkeypatch):
    import mtml.cli.eval as eval_module

    monkeypatch.setattr(eval_module, "evaluate_instances", lambda *a, **k: pytest.fail("evaluated before the check"))
    (tmp_path / "a_file").write_text("x")
    inputs = (["--pred-path", str(FIXTURE / "pred"), "--gt-path", str(FIXTURE / "gt")] if subcommand == "scannet"
              else ["--gt", str(tmp_path / "gt.ply"), "--pred-dir", str(tmp_path)])
    for out, problem in ((Path("/sys/result.csv"), "not writable"),  # sysfs refuses new files, also to root
                         (tmp_path / "a_file" / "result.csv", "is a file, not a folder"),
                         (tmp_path, "is a folder")):
        status, err = run([subcommand, *inputs, "--output-file", str(out)], capsys)
        assert status == 2 and len(err) == 1, err
        assert str(out) in err[0] and problem in err[0] and "--output-file" in err[0]
