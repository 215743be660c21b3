import csv

import numpy as np
import pytest

from mtml.cli import run_command
from mtml.cli.eval import main as eval_main
from mtml.data.toy import TOY_CLASS_NAMES, generate_scene
from mtml.io.instances import write_instance_outputs
from mtml.io.ply import scene_to_ply


def _write_as_prediction(scene, out_dir, drop=()):
    inst = scene.instances.copy()
    inst[scene.labels == 0] = -1
    ids = [i for i in np.unique(inst[inst >= 0]) if i not in drop]
    inst[~np.isin(inst, ids)] = -1
    remap = {old: new for new, old in enumerate(ids)}
    point_instance = np.asarray([remap.get(i, -1) for i in inst], dtype=np.int64)
    labels = np.asarray([scene.labels[inst == i][0] for i in ids], dtype=np.int64)
    write_instance_outputs(out_dir, scene.name, scene.points, point_instance, scene.labels, labels,
                           np.linspace(1, 0.5, len(ids)), TOY_CLASS_NAMES, {})


def _rows(path):
    with open(path) as f:
        return {r["class"]: r for r in csv.DictReader(f)}


def test_ground_truth_as_prediction_scores_one(tmp_path, capsys):
    scenes = [generate_scene(s) for s in (5, 6)]
    gts = [str(scene_to_ply(s, tmp_path / "gt" / f"{s.name}.ply")) for s in scenes]
    for s in scenes:
        _write_as_prediction(s, tmp_path / "pred")
    code = run_command(eval_main, ["instances", "--gt", *gts, "--pred-dir", str(tmp_path / "pred"),
                                   "--output-file", str(tmp_path / "r.csv")])
    assert code == 0, capsys.readouterr().err
    for row in _rows(tmp_path / "r.csv").values():
        assert float(row["ap50"]) == pytest.approx(1.0) and float(row["ap"]) == pytest.approx(1.0)


def test_missing_instance_lowers_recall(tmp_path):
    scene = generate_scene(5)
    gt = str(scene_to_ply(scene, tmp_path / f"{scene.name}.ply"))
    _write_as_prediction(scene, tmp_path / "pred", drop=(0,))
    assert run_command(eval_main, ["instances", "--gt", gt, "--pred-dir", str(tmp_path / "pred"),
                                   "--output-file", str(tmp_path / "r.csv")]) == 0
    label0 = TOY_CLASS_NAMES[int(scene.labels[scene.instances == 0][0])]
    assert float(_rows(tmp_path / "r.csv")[label0]["ap50"]) < 1.0


def test_missing_prediction_is_one_line_error(tmp_path, capsys):
    scene = generate_scene(5)
    gt = str(scene_to_ply(scene, tmp_path / f"{scene.name}.ply"))
    code = run_command(eval_main, ["instances", "--gt", gt, "--pred-dir", str(tmp_path / "nothing"),
                                   "--output-file", str(tmp_path / "r.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "toy_00005_instances.ply" in err[0]
    assert not (tmp_path / "r.csv").exists()
