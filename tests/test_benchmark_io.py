"""Reading and writing the ScanNet instance benchmark layout."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from mtml.data.registry import class_set
from mtml.errors import InputError
from mtml.eval.instance_ap import evaluate_instances
from mtml.io.benchmark import (
    OFFICIAL_RESULT_NAME,
    load_benchmark_scene,
    pair_benchmark_scenes,
    read_gt_ids,
    read_mask,
    read_prediction_file,
    write_scene_predictions,
)
from mtml.scene import ScenePredictions

FIXTURE = Path(__file__).parent / "fixtures" / "scannet_instance_eval"


def test_read_fixture_scene():
    gt = read_gt_ids(FIXTURE / "gt" / "scene0011_00.txt")
    assert gt.dtype == np.int64 and gt.shape == (3802,)
    preds = read_prediction_file(FIXTURE / "pred" / "scene0011_00.txt", gt.size)
    assert preds.masks.shape == (9, 3802) and preds.masks.dtype == bool
    first = (FIXTURE / "pred" / "scene0011_00.txt").read_text().splitlines()[0].split()
    assert preds.label_ids[0] == int(first[1]) and preds.scores[0] == float(first[2])
    want0 = np.loadtxt(FIXTURE / "pred" / first[0], dtype=np.int64) != 0
    np.testing.assert_array_equal(preds.masks[0], want0)


def test_round_trip_gt_instances_score_one(tmp_path):
    classes = class_set("scannet20")
    scenes, with_gt = [], set()
    for gt_file in sorted((FIXTURE / "gt").glob("*.txt")):
        gt = read_gt_ids(gt_file)
        ids = np.unique(gt[gt >= 1000])
        masks = gt[None, :] == ids[:, None]
        write_scene_predictions(tmp_path, gt_file.stem, masks, ids // 1000, np.ones(ids.size))
        preds = read_prediction_file(tmp_path / gt_file.name, gt.size)
        np.testing.assert_array_equal(preds.masks, masks)
        np.testing.assert_array_equal(preds.label_ids, ids // 1000)
        scenes.append((gt, preds))
        with_gt |= {int(i // 1000) for i in ids if np.sum(gt == i) >= 100}
    result = evaluate_instances(scenes, classes.ids, classes.names)
    for cid, ap, ap50, ap25 in zip(result.class_ids, result.ap, result.ap50, result.ap25):
        if cid in with_gt:
            assert ap == ap50 == ap25 == 1.0, cid
        else:
            assert math.isnan(ap) and math.isnan(ap50) and math.isnan(ap25), cid
    assert with_gt and result.mean_ap == 1.0


def test_write_layout_and_exact_scores(tmp_path):
    masks = np.array([[1, 0, 1], [0, 1, 1]], bool)
    scene_file = write_scene_predictions(tmp_path / "out", "scene0001_00", masks, [5, 7], [0.1 + 0.2, 1e-17])
    assert scene_file == tmp_path / "out" / "scene0001_00.txt"
    assert scene_file.read_text().splitlines() == [
        "pred_mask/scene0001_00_000.txt 5 0.30000000000000004",
        "pred_mask/scene0001_00_001.txt 7 1e-17",
    ]
    assert (tmp_path / "out" / "pred_mask" / "scene0001_00_001.txt").read_text() == "0\n1\n1\n"
    back = read_prediction_file(scene_file, 3)
    assert back.scores.tolist() == [0.1 + 0.2, 1e-17]
    assert not list((tmp_path / "out").rglob("*.tmp"))
    empty = write_scene_predictions(tmp_path / "out", "scene0002_00", np.zeros((0, 3), bool), [], [])
    assert empty.read_text() == "" and len(read_prediction_file(empty, 3)) == 0
    with pytest.raises(ValueError):
        write_scene_predictions(tmp_path, "bad name", masks, [5, 7], [0.5, 0.5])


def test_official_parsing_conventions(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.txt").write_text("0\n2\n-1\n")
    (tmp_path / "m" / "b.txt").write_text("1\n0\n0\n")
    # Label "5.9" reads as 5 (int(float(...))); a mask listed twice is one prediction, at its first position,
    # with the last line's label and confidence; blank lines are skipped.
    (tmp_path / "s.txt").write_text("m/a.txt 5.9 0.5\n\nm/b.txt 7 0.25\nm/a.txt 3 0.75\n")
    preds = read_prediction_file(tmp_path / "s.txt", 3)
    assert preds.label_ids.tolist() == [3, 7] and preds.scores.tolist() == [0.75, 0.25]
    assert preds.masks.tolist() == [[False, True, True], [True, False, False]]
    # Masks of labels outside the class set are not even read (the official script skips them first).
    (tmp_path / "t.txt").write_text("m/missing.txt 1 0.5\nm/b.txt 7 0.25\n")
    preds = read_prediction_file(tmp_path / "t.txt", 3, class_ids=[7])
    assert preds.label_ids.tolist() == [7]
    # Without num_vertices the first mask sets N.
    assert read_prediction_file(tmp_path / "s.txt", None).num_vertices == 3


@pytest.mark.parametrize(
    "index_text, mask_text, culprit, message",
    [
        (None, None, "s.txt", "no such prediction file"),
        ("m/a.txt 5 0.5\nm/a.txt 5\n", "1\n0\n1\n", "s.txt", "line 2: expected '<mask path> <label id> <confidence>'"),
        ("m/a.txt chair 0.5\n", "1\n0\n1\n", "s.txt", "line 1: label id 'chair' is not a number"),
        ("m/a.txt 5 high\n", "1\n0\n1\n", "s.txt", "line 1: confidence 'high' is not a number"),
        ("m/a.txt 5 nan\n", "1\n0\n1\n", "s.txt", "line 1: confidence is nan"),
        ("/abs/a.txt 5 0.5\n", "1\n0\n1\n", "s.txt", "must be relative"),
        ("../a.txt 5 0.5\n", "1\n0\n1\n", "s.txt", "points outside the prediction folder"),
        ("m/a.txt 5 0.5\n", "1\n0\n", "a.txt", "expected 3 lines (one per vertex), got 2 (listed on line 1 of"),
        ("m/a.txt 5 0.5\n", "1\n0.5\n1\n", "a.txt", "line 2: expected an integer, got '0.5'"),
        ("m/b.txt 5 0.5\n", "1\n0\n1\n", "b.txt", "no such mask file"),
    ],
)
def test_prediction_errors_name_the_file(tmp_path, index_text, mask_text, culprit, message):
    (tmp_path / "m").mkdir()
    if mask_text is not None:
        (tmp_path / "m" / "a.txt").write_text(mask_text)
    if index_text is not None:
        (tmp_path / "s.txt").write_text(index_text)
    with pytest.raises(InputError) as err:
        read_prediction_file(tmp_path / "s.txt", 3)
    assert Path(err.value.source).name == culprit
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_gt_and_mask_errors(tmp_path):
    with pytest.raises(InputError, match="no such ground-truth file"):
        read_gt_ids(tmp_path / "missing.txt")
    (tmp_path / "gt.txt").write_text("5001\n\n0\n")
    with pytest.raises(InputError, match=r"gt.txt: line 2: expected an integer, got ''"):
        read_gt_ids(tmp_path / "gt.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(InputError, match="empty ground-truth file"):
        read_gt_ids(tmp_path / "empty.txt")
    (tmp_path / "mask.txt").write_text("1\n0\n")
    assert read_mask(tmp_path / "mask.txt").tolist() == [True, False]
    with pytest.raises(InputError, match="expected 5 lines"):
        read_mask(tmp_path / "mask.txt", 5)


def test_pairing_follows_the_official_script(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    shutil.copytree(FIXTURE / "pred", pred)
    shutil.copytree(FIXTURE / "gt", gt)
    (pred / OFFICIAL_RESULT_NAME).write_text("class,class id,ap,ap50,ap25\n")  # the official default output
    pairs = pair_benchmark_scenes(pred, gt)
    assert [s for s, _, _ in pairs] == sorted(p.stem for p in (FIXTURE / "gt").glob("*.txt"))
    gt_ids, preds = load_benchmark_scene(pairs[0][1], pairs[0][2], class_set("scannet20").ids)
    assert preds.num_vertices == gt_ids.size
    # A ground-truth scene without predictions: left out, or an error when all are required.
    (pred / "scene0011_05.txt").unlink()
    assert len(pair_benchmark_scenes(pred, gt)) == 5
    with pytest.raises(InputError, match="no prediction file for ground-truth scene scene0011_05"):
        pair_benchmark_scenes(pred, gt, require_all_gt=True)
    # A prediction without ground truth: an error, as in the official script.
    (pred / "scene9999_00.txt").write_text("")
    with pytest.raises(InputError, match="no ground-truth file") as err:
        pair_benchmark_scenes(pred, gt)
    assert Path(err.value.source).name == "scene9999_00.txt"
    with pytest.raises(InputError, match="no such ground-truth folder"):
        pair_benchmark_scenes(pred, tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no prediction files"):
        pair_benchmark_scenes(empty, gt)


def test_scene_predictions_from_lists():
    preds = ScenePredictions([[0, 2, 0]], [5], [0.5])
    assert preds.masks.dtype == bool and preds.masks.tolist() == [[False, True, False]]
