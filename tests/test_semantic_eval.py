"""Semantic segmentation metrics (mtml.eval.semantic): hand-computed IoU / precision / recall, nan handling,
group means, accumulation over scenes, and the report outputs."""

import csv
import json
import math

import numpy as np
import pytest

from mtml.errors import InputError
from mtml.eval.semantic import SemanticConfusion, scannet200_splits, semantic_scores

NAMES = {1: "chair", 2: "table", 3: "door", 4: "lamp"}
SPLITS = {1: "head", 2: "head", 3: "common", 4: "tail"}


def test_hand_computed_example():
    # gt:   1 1 1 2 2 3 -1  0
    # pred: 1 1 2 2 5 1  2  3   (5 is not a class; gt -1 / 0 are ignored whatever is predicted)
    gt = np.array([1, 1, 1, 2, 2, 3, -1, 0])
    pred = np.array([1, 1, 2, 2, 5, 1, 2, 3])
    r = semantic_scores(pred, gt, [1, 2, 3, 4], NAMES)
    # chair: TP 2, GT 3, P 3 (two chairs + the door point) -> IoU 2/4, prec 2/3, rec 2/3
    # table: TP 1, GT 2, P 2 (the chair point + itself)   -> IoU 1/3, prec 1/2, rec 1/2
    # door:  TP 0, GT 1, P 0 -> IoU 0, precision 0 (never predicted but present), recall 0
    # lamp:  absent from gt and predictions -> nan
    np.testing.assert_allclose(r.iou[:3], [2 / 4, 1 / 3, 0.0])
    np.testing.assert_allclose(r.precision[:3], [2 / 3, 1 / 2, 0.0])
    np.testing.assert_allclose(r.recall[:3], [2 / 3, 1 / 2, 0.0])
    assert np.isnan(r.iou[3]) and np.isnan(r.precision[3]) and np.isnan(r.recall[3])
    assert r.gt_points.tolist() == [3, 2, 1, 0] and r.pred_points.tolist() == [3, 2, 0, 0]
    assert r.miou == pytest.approx((2 / 4 + 1 / 3 + 0) / 3)
    assert r.mean_precision == pytest.approx((2 / 3 + 1 / 2) / 3)
    assert r.mean_recall == pytest.approx((2 / 3 + 1 / 2) / 3)


def test_predicted_but_absent_class_has_zero_recall_and_iou():
    r = semantic_scores(np.array([1, 2]), np.array([1, 1]), [1, 2])
    assert r.iou.tolist() == [0.5, 0.0] and r.precision.tolist() == [1.0, 0.0] and r.recall.tolist() == [0.5, 0.0]


def test_perfect_prediction():
    rng = np.random.default_rng(0)
    gt = rng.integers(1, 5, size=500)
    gt[::7] = -1
    pred = gt.copy()
    pred[gt == -1] = 3  # ignored points may be predicted as anything
    r = semantic_scores(pred, gt, [1, 2, 3, 4], NAMES, SPLITS)
    assert r.miou == 1.0 and r.mean_precision == 1.0 and r.mean_recall == 1.0
    assert all(m == {"miou": 1.0, "mean_precision": 1.0, "mean_recall": 1.0} for m in r.group_means().values())


def test_nothing_present_is_nan():
    r = semantic_scores(np.array([7, 7]), np.array([-1, 0]), [1, 2], NAMES, SPLITS)
    assert np.isnan(r.iou).all() and math.isnan(r.miou) and math.isnan(r.mean_recall)
    assert r.to_dict()["means"] == {"miou": None, "mean_precision": None, "mean_recall": None}


def test_group_means_skip_absent_classes_and_ungrouped_ones():
    gt = np.array([1, 1, 2, 2, 3, 3, 5])
    pred = np.array([1, 1, 2, 1, 3, 1, 5])
    ids = [1, 2, 3, 4, 5]
    r = semantic_scores(pred, gt, ids, NAMES, SPLITS)  # class 5 has no group
    iou = dict(zip(ids, r.iou))
    assert iou[1] == pytest.approx(2 / 4) and iou[2] == pytest.approx(1 / 2) and iou[3] == pytest.approx(1 / 2)
    groups = r.group_means()
    assert list(groups) == ["head", "common", "tail"]
    assert groups["head"]["miou"] == pytest.approx((2 / 4 + 1 / 2) / 2)
    assert groups["common"]["miou"] == pytest.approx(1 / 2)
    assert math.isnan(groups["tail"]["miou"])  # lamp (4) absent
    assert r.miou == pytest.approx((0.5 + 0.5 + 0.5 + 1.0) / 4)


def test_accumulating_two_scenes_equals_one_concatenated_update():
    rng = np.random.default_rng(1)
    ids = [3, 10, 11, 40, 1191]
    labels = np.array([-1, 0, 3, 10, 11, 40, 1191, 77])
    scenes = [(rng.choice(labels, 300), rng.choice(labels, 300)) for _ in range(2)]
    acc = SemanticConfusion(ids)
    for pred, gt in scenes:
        acc.update(pred, gt)
    one = SemanticConfusion(ids)
    one.update(np.concatenate([s[0] for s in scenes]), np.concatenate([s[1] for s in scenes]))
    np.testing.assert_array_equal(acc.matrix, one.matrix)
    a, b = acc.result(), one.result()
    np.testing.assert_array_equal(a.iou, b.iou)
    np.testing.assert_array_equal(a.precision, b.precision)
    assert acc.num_scenes == 2 and a.miou == b.miou
    # merging two accumulators gives the same counts
    m1, m2 = SemanticConfusion(ids), SemanticConfusion(ids)
    m1.update(*scenes[0])
    m2.update(*scenes[1])
    m1.merge(m2)
    np.testing.assert_array_equal(m1.matrix, acc.matrix)


def test_class_order_follows_class_ids():
    r = semantic_scores(np.array([2, 2, 1]), np.array([2, 1, 1]), [2, 1])
    assert r.class_ids == (2, 1)
    np.testing.assert_allclose(r.iou, [1 / 2, 1 / 2])
    np.testing.assert_allclose(r.recall, [1.0, 1 / 2])


def test_bad_input():
    conf = SemanticConfusion([1, 2])
    with pytest.raises(InputError, match="scene0000_00: 2 predicted labels but 3"):
        conf.update(np.array([1, 2]), np.array([1, 2, 2]), source="scene0000_00")
    with pytest.raises(InputError, match="1-D"):
        conf.update(np.zeros((2, 2), int), np.zeros((2, 2), int))
    with pytest.raises(InputError, match="integers"):
        conf.update(np.array([1.5]), np.array([1]))
    with pytest.raises(InputError, match="duplicate"):
        SemanticConfusion([1, 1])
    conf.update(np.array([1.0, 2.0]), np.array([1, 2]))  # integral floats are accepted
    assert conf.matrix.sum() == 2


def test_reports(tmp_path):
    gt = np.array([1, 1, 2, 3])
    pred = np.array([1, 2, 2, 3])
    r = semantic_scores(pred, gt, [1, 2, 3, 4], NAMES, SPLITS)
    text = r.table()
    assert "chair" in text and "mean: head" in text and "mean: tail" in text
    assert "lamp" in text.splitlines()[5] and text.splitlines()[5].split()[-2] == "-"  # nan shown as "-"
    d = json.loads(json.dumps(r.to_dict()))  # JSON-friendly (no nan)
    assert d["classes"][3]["iou"] is None and d["means"]["miou"] == pytest.approx(r.miou)
    assert set(d["groups"]) == {"head", "common", "tail"}
    out = tmp_path / "sub" / "semantic.csv"
    r.to_csv(out)
    rows = list(csv.DictReader(out.open()))
    assert [row["name"] for row in rows] == ["chair", "table", "door", "lamp", "mean", "mean:head", "mean:common",
                                             "mean:tail"]
    assert float(rows[0]["iou"]) == pytest.approx(0.5) and rows[3]["iou"] == "nan"
    assert float(rows[4]["iou"]) == pytest.approx(r.miou)
    assert [p.name for p in out.parent.iterdir()] == ["semantic.csv"]  # no temp file left behind


def test_scannet200_splits():
    splits = scannet200_splits()
    assert len(splits) == 200 and set(splits.values()) == {"head", "common", "tail"}
