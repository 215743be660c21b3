"""A scan folder in ScanNet's layout through prep, a few training steps, inference, export and evaluation."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import scannet_fixture as fx

from mtml.cli import run_command
from mtml.cli.eval import main as eval_main
from mtml.cli.infer import main as infer_main
from mtml.cli.prep import main as prep_main
from mtml.cli.train import main as train_main
from mtml.io.benchmark import read_prediction_file, write_scene_predictions
from mtml.io.scannet import ScannetGroundTruth, read_scannet_scan

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = ["model.backbone.full_channels=4", "model.backbone.half_channels=8", "model.backbone.dilated_blocks=1",
        "model.backbone.out_channels=8", "train.epochs=1", "train.max_steps_per_epoch=2", "train.num_threads=1",
        "data.val_scenes=1"]


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("class_set_name", ["scannet20", "scannet200"])
def test_ground_truth_exported_as_predictions_scores_one(tmp_path, class_set_name):
    benchmark = class_set_name
    gt = ScannetGroundTruth(benchmark)
    for folder in fx.write_scannet_root(tmp_path / "scans", 2):
        scene = read_scannet_scan(folder, benchmark)
        gt.write(scene, tmp_path / "gt")
        ids = gt.gt_ids(scene)
        inst = np.unique(ids[ids > 0])
        write_scene_predictions(tmp_path / "pred", scene.name, ids[None, :] == inst[:, None], inst // 1000,
                                np.ones(len(inst)))
    out = tmp_path / "result.csv"
    assert run_command(eval_main, ["scannet", "--pred-path", str(tmp_path / "pred"), "--gt-path", str(tmp_path / "gt"),
                                   "--output-file", str(out), "--benchmark", benchmark]) == 0
    scored = [r for r in _csv(out) if not math.isnan(float(r["ap"]))]
    assert len(scored) >= 3
    assert all(float(r["ap"]) == pytest.approx(1.0) and float(r["ap25"]) == pytest.approx(1.0) for r in scored)


@pytest.mark.parametrize("config, class_set_name", [("scannet/scannet.yaml", "scannet20"),
                                                     ("scannet/scannet200.yaml", "scannet200")])
def test_scan_folder_through_prep_train_infer_export(tmp_path, capsys, config, class_set_name):
    benchmark = class_set_name
    folders = fx.write_scannet_root(tmp_path / "scans", 3)
    store = tmp_path / "store.h5"
    assert run_command(prep_main, ["scannet", "--root", str(tmp_path / "scans"), "--out", str(store),
                                   "--benchmark", benchmark, "--no-progress"]) == 0
    run = tmp_path / "run"
    sets = [x for kv in [*TINY, f"data.store={store}"] for x in ("--set", kv)]
    assert run_command(train_main, ["--config", str(CONFIGS / config), "--out", str(run), "--no-progress", *sets]) == 0
    assert (run / "last.pt").exists() and (run / "metrics.jsonl").exists()

    export = tmp_path / "export"
    code = run_command(infer_main, [str(folders[0]), "--checkpoint", str(run / "last.pt"), "--out", str(tmp_path / "out"),
                                    "--scannet-export", str(export), "--no-picture"])
    assert code == 0, capsys.readouterr().err
    scene = read_scannet_scan(folders[0], benchmark)
    preds = read_prediction_file(export / f"{scene.name}.txt", scene.num_points)
    assert preds.masks.shape[1] == scene.num_points
    assert set(preds.label_ids.tolist()) <= set(scene.labels.tolist())  # labels come from the semantic input
    ScannetGroundTruth(benchmark).write(scene, tmp_path / "gt")
    result = tmp_path / "result.csv"
    assert run_command(eval_main, ["scannet", "--pred-path", str(export), "--gt-path", str(tmp_path / "gt"),
                                   "--output-file", str(result), "--benchmark", benchmark]) == 0
    aps = [float(r["ap50"]) for r in _csv(result)]
    assert any(not math.isnan(a) for a in aps) and all(math.isnan(a) or 0.0 <= a <= 1.0 for a in aps)
