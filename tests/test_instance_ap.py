"""The vectorised ScanNet instance evaluator against the official numbers and a literal per-mask restatement."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from mtml.data.registry import class_set, register_class_set
from mtml.eval.instance_ap import OVERLAPS, InstanceAPResult, average_precision, evaluate_instances
from mtml.io.benchmark import load_benchmark_scene, pair_benchmark_scenes
from mtml.labels import ClassSet
from mtml.scene import ScenePredictions

FIXTURE = Path(__file__).parent / "fixtures" / "scannet_instance_eval"


def read_csv_numbers(text: str) -> dict:
    """class name -> (class id, ap, ap50, ap25) from an official-format CSV."""
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == ["class", "class id", "ap", "ap50", "ap25"]
    return {r[0]: (int(r[1]), float(r[2]), float(r[3]), float(r[4])) for r in rows[1:]}


def assert_csv_close(got: str, want: str, tol: float = 1e-9) -> None:
    got_rows, want_rows = read_csv_numbers(got), read_csv_numbers(want)
    assert list(got_rows) == list(want_rows)
    for name, (cid, *values) in want_rows.items():
        gcid, *gvalues = got_rows[name]
        assert gcid == cid
        for g, w in zip(gvalues, values):
            assert (math.isnan(g) and math.isnan(w)) or abs(g - w) <= tol, (name, gvalues, values)


# ---------------------------------------------------------------------------------------------------------------
# A slow, literal per-mask restatement of the official evaluate_semantic_instance.py (dicts, loops, one mask and
# one gt instance at a time). benchmarks/bench_instance_ap.py times it against the vectorised evaluator.


def reference_average_precisions(scenes, class_ids, class_names, min_region_size=100):
    """AP [C, T] per class and threshold, computed the way the official script does, one mask at a time."""
    class_ids = [int(c) for c in class_ids]
    name_of = dict(zip(class_ids, class_names))
    overlaps = np.append(np.arange(0.5, 0.95, 0.05), 0.25)

    per_scene = []
    for scene_index, (gt_ids, preds) in enumerate(scenes):
        gt_ids = np.asarray(gt_ids, np.int64)
        gt_by_class = {name: [] for name in class_names}
        for inst_id in np.unique(gt_ids):
            if inst_id == 0:
                continue
            label = int(inst_id // 1000)
            if label in name_of:
                gt_by_class[name_of[label]].append(
                    {"instance_id": int(inst_id), "vert_count": int(np.sum(gt_ids == inst_id)), "matched_pred": []}
                )
        pred_by_class = {name: [] for name in class_names}
        void = np.logical_not(np.isin(gt_ids // 1000, class_ids))
        for p in range(len(preds)):
            label = int(preds.label_ids[p])
            if label not in name_of:
                continue
            mask = np.asarray(preds.masks[p]) != 0
            count = int(np.count_nonzero(mask))
            if count < min_region_size:
                continue
            pred = {
                "key": (scene_index, p),
                "vert_count": count,
                "confidence": float(preds.scores[p]),
                "void_intersection": int(np.count_nonzero(void & mask)),
            }
            matched_gt = []
            for gt in gt_by_class[name_of[label]]:
                inter = int(np.count_nonzero((gt_ids == gt["instance_id"]) & mask))
                if inter > 0:
                    matched_gt.append(dict(gt, intersection=inter))
                    gt["matched_pred"].append(dict(pred, intersection=inter))
            pred["matched_gt"] = matched_gt
            pred_by_class[name_of[label]].append(pred)
        per_scene.append((gt_by_class, pred_by_class))

    aps = np.zeros((len(class_names), len(overlaps)))
    for oi, th in enumerate(overlaps):
        visited = {}
        for _, pred_by_class in per_scene:
            for preds_of_class in pred_by_class.values():
                for pred in preds_of_class:
                    visited[pred["key"]] = False
        for ci, name in enumerate(class_names):
            y_true, y_score = [], []
            hard_fn = 0
            has_gt = has_pred = False
            for gt_by_class, pred_by_class in per_scene:
                gts = [g for g in gt_by_class[name] if g["instance_id"] >= 1000 and g["vert_count"] >= min_region_size]
                has_gt = has_gt or bool(gts)
                has_pred = has_pred or bool(pred_by_class[name])
                true = [1.0] * len(gts)
                score = [-math.inf] * len(gts)
                matched = [False] * len(gts)
                for gi, gt in enumerate(gts):
                    found = False
                    for pred in gt["matched_pred"]:
                        if visited[pred["key"]]:
                            continue
                        iou = pred["intersection"] / (gt["vert_count"] + pred["vert_count"] - pred["intersection"])
                        if iou > th:
                            if matched[gi]:
                                low, high = sorted([score[gi], pred["confidence"]])
                                score[gi] = high
                                true.append(0.0)
                                score.append(low)
                                matched.append(True)
                            else:
                                found = True
                                matched[gi] = True
                                score[gi] = pred["confidence"]
                                visited[pred["key"]] = True
                    if not found:
                        hard_fn += 1
                true = [t for t, m in zip(true, matched) if m]
                score = [s for s, m in zip(score, matched) if m]
                for pred in pred_by_class[name]:
                    if any(
                        g["intersection"] / (g["vert_count"] + pred["vert_count"] - g["intersection"]) > th
                        for g in pred["matched_gt"]
                    ):
                        continue
                    ignore = pred["void_intersection"]
                    for g in pred["matched_gt"]:
                        if g["instance_id"] < 1000:
                            ignore += g["intersection"]
                        if g["vert_count"] < min_region_size:
                            ignore += g["intersection"]
                    if ignore / pred["vert_count"] <= th:
                        true.append(0.0)
                        score.append(pred["confidence"])
                y_true += true
                y_score += score
            if has_gt and has_pred:
                if not y_true:  # the official script hits an IndexError here; both implementations say 0.0
                    aps[ci, oi] = 0.0
                    continue
                y_true_a, y_score_a = np.array(y_true), np.array(y_score)
                order = np.argsort(y_score_a)
                sorted_score = y_score_a[order]
                cum = np.cumsum(y_true_a[order])
                _, first_idx = np.unique(sorted_score, return_index=True)
                n_all, n_true = len(sorted_score), cum[-1]
                precision = np.zeros(len(first_idx) + 1)
                recall = np.zeros(len(first_idx) + 1)
                cum = np.append(cum, 0)
                for k, idx in enumerate(first_idx):
                    below = cum[idx - 1]
                    tp = n_true - below
                    fp = n_all - idx - tp
                    fn = below + hard_fn
                    precision[k] = float(tp) / (tp + fp)
                    recall[k] = float(tp) / (tp + fn)
                precision[-1], recall[-1] = 1.0, 0.0
                padded = np.append(np.append(recall[0], recall), 0.0)
                aps[ci, oi] = np.dot(precision, np.convolve(padded, [-0.5, 0, 0.5], "valid"))
            elif has_gt:
                aps[ci, oi] = 0.0
            else:
                aps[ci, oi] = float("nan")
    return aps


# ---------------------------------------------------------------------------------------------------------------
# Random scenes that exercise every rule.


def random_scene(rng: np.random.Generator, class_ids, min_size: int):
    """(gt_ids int64 [N], ScenePredictions) with misses, duplicates, label errors, FPs, tiny and void masks."""
    n = int(rng.integers(300, 1500))
    gt = np.zeros(n, np.int64)
    order = rng.permutation(n)
    pos = 0
    instances = []
    next_inst = {}
    while pos < n:
        size = int(rng.choice([rng.integers(5, min_size + 5), rng.integers(min_size, 4 * min_size + 10)]))
        kind = rng.choice(["valid", "valid", "valid", "other", "group", "unlabelled"])
        if pos == 0:  # at least one instance that is evaluated
            size, kind = int(rng.integers(min_size, 3 * min_size)), "valid"
        if kind == "valid":
            label = int(rng.choice(class_ids))
        elif kind == "other":
            label = int(rng.choice([1, 2, 40, 41]))
        else:
            label = 0
        if kind == "unlabelled":
            inst_id = 0
        elif kind == "group":
            inst_id = int(rng.integers(1, 999))
        else:
            next_inst[label] = next_inst.get(label, 0) + 1
            inst_id = label * 1000 + next_inst[label]
        verts = order[pos : pos + size]
        gt[verts] = inst_id
        pos += size
        if inst_id:
            instances.append((inst_id, label))

    masks, labels = [], []
    valid_labels = [int(c) for c in class_ids]
    other_labels = [1, 2, 40]

    def perturb(mask):
        mask = mask.copy()
        on = np.flatnonzero(mask)
        if on.size:
            mask[rng.choice(on, size=int(rng.integers(0, max(1, int(0.6 * on.size)))), replace=False)] = False
        mask[rng.integers(0, n, size=int(rng.integers(0, max(1, int(0.5 * mask.sum()) + 2))))] = True
        return mask

    def label_for(true_label):
        r = rng.random()
        if r < 0.7 and true_label in valid_labels:
            return true_label
        if r < 0.9:
            return int(rng.choice(valid_labels))
        return int(rng.choice(other_labels))

    for inst_id, label in instances:
        base = gt == inst_id
        for _ in range(int(rng.choice([0, 1, 1, 1, 2, 3]))):  # misses and duplicates
            masks.append(perturb(base) if rng.random() < 0.8 else base.copy())
            labels.append(label_for(label))
    by_label = {}
    for inst_id, label in instances:
        by_label.setdefault(label, []).append(inst_id)
    for label, ids in by_label.items():  # unions of same-class instances (a duplicate may match twice at 0.25)
        if len(ids) >= 2 and rng.random() < 0.7:
            a, b = rng.choice(ids, size=2, replace=False)
            masks.append(np.isin(gt, [a, b]))
            labels.append(label_for(label))
    for _ in range(int(rng.integers(0, 4))):  # pure false positives
        mask = np.zeros(n, bool)
        mask[rng.choice(n, size=int(rng.integers(1, 3 * min_size)), replace=False)] = True
        masks.append(mask)
        labels.append(label_for(-1))
    for _ in range(int(rng.integers(0, 3))):  # masks (mostly) on unlabelled / void vertices
        void_verts = np.flatnonzero(~np.isin(gt // 1000, valid_labels))
        mask = np.zeros(n, bool)
        if void_verts.size:
            mask[rng.choice(void_verts, size=int(rng.integers(1, void_verts.size + 1)), replace=False)] = True
        mask[rng.integers(0, n, size=int(rng.integers(0, min_size)))] = True
        masks.append(mask)
        labels.append(label_for(-1))
    for _ in range(int(rng.integers(0, 3))):  # tiny masks
        mask = np.zeros(n, bool)
        mask[rng.choice(n, size=int(rng.integers(1, max(2, min_size))), replace=False)] = True
        masks.append(mask)
        labels.append(label_for(-1))

    p = len(masks)
    perm = rng.permutation(p)
    if rng.random() < 0.5:
        scores = rng.integers(1, 6, size=p) / 5.0  # many ties
    else:
        scores = rng.random(p)
    if p == 0:
        return gt, ScenePredictions.empty(n)
    return gt, ScenePredictions(np.stack(masks)[perm], np.array(labels)[perm], scores)


@pytest.mark.parametrize("seed", range(40))
def test_random_scenes_match_literal_reference(seed):
    rng = np.random.default_rng(seed)
    class_ids = [3, 4, 5, 7] if seed % 4 else [0, 3, 5]  # 0 as a class makes ids < 1000 gt groups of a class
    names = [f"c{c}" for c in class_ids]
    min_size = int(rng.choice([10, 30, 100]))
    scenes = [random_scene(rng, class_ids, min_size) for _ in range(int(rng.integers(1, 5)))]
    want = reference_average_precisions(scenes, class_ids, names, min_size)
    got = evaluate_instances(iter(scenes), class_ids, names, min_region_size=min_size)
    np.testing.assert_allclose(got.ap_per_overlap, want, rtol=0, atol=1e-12, equal_nan=True)
    assert not np.isnan(want).all() or seed % 4 == 0  # the generator does give classes with gt


# ---------------------------------------------------------------------------------------------------------------
# The fixture: six scenes and what ScanNet's own script wrote for them.


def fixture_scenes(classes):
    pairs = pair_benchmark_scenes(FIXTURE / "pred", FIXTURE / "gt")
    return [load_benchmark_scene(pred, gt, classes.ids) for _, pred, gt in pairs]


def test_fixture_matches_official_csv():
    classes = class_set("scannet20")
    result = evaluate_instances(fixture_scenes(classes), classes.ids, classes.names)
    assert_csv_close(result.to_csv(), (FIXTURE / "reference.csv").read_text())


def test_fixture_literal_reference_agrees():
    classes = class_set("scannet20")
    scenes = fixture_scenes(classes)
    want = reference_average_precisions(scenes, classes.ids, classes.names)
    got = evaluate_instances(scenes, classes.ids, classes.names)
    np.testing.assert_allclose(got.ap_per_overlap, want, rtol=0, atol=1e-12, equal_nan=True)


# ---------------------------------------------------------------------------------------------------------------
# Small cases worked out by hand (N = 1000 vertices, min_region_size 100).

CHAIR, TABLE = 5, 7
CLASSES = [CHAIR, TABLE, 8]
NAMES = ["chair", "table", "door"]


def block(start: int, stop: int, n: int = 1000) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[start:stop] = True
    return mask


def two_object_gt() -> np.ndarray:
    gt = np.zeros(1000, np.int64)
    gt[0:200] = CHAIR * 1000 + 1
    gt[200:400] = TABLE * 1000 + 1
    return gt


def evaluate_one(gt, masks, labels, scores) -> InstanceAPResult:
    preds = ScenePredictions(np.array(masks).reshape(len(labels), -1), labels, scores)
    return evaluate_instances([(gt, preds)], CLASSES, NAMES)


def test_perfect_prediction_scores_one():
    result = evaluate_one(two_object_gt(), [block(0, 200), block(200, 400)], [CHAIR, TABLE], [0.3, 0.7])
    np.testing.assert_array_equal(result.ap_per_overlap[:2], 1.0)
    assert np.isnan(result.ap_per_overlap[2]).all()  # door: no gt
    assert result.mean_ap == result.mean_ap50 == result.mean_ap25 == 1.0


def test_false_positive_ranked_above_true_positive():
    # A chair mask on the table (not void, so not excused) scored above the correct chair mask.
    # Curve points (p, r): (0.5, 1) at score 0.8, (0, 0) at 0.9, artificial (1, 0); step widths 0.5, 0.5, 0 -> 0.25.
    result = evaluate_one(two_object_gt(), [block(200, 400), block(0, 200)], [CHAIR, CHAIR], [0.9, 0.8])
    np.testing.assert_allclose(result.ap_per_overlap[0], 0.25)
    assert result.ap_per_overlap[1].tolist() == [0.0] * len(OVERLAPS)  # table: gt, no prediction
    # Ranked below, the false positive costs nothing.
    result = evaluate_one(two_object_gt(), [block(200, 400), block(0, 200)], [CHAIR, CHAIR], [0.8, 0.9])
    np.testing.assert_allclose(result.ap_per_overlap[0], 1.0)


def test_no_predictions_is_zero_and_no_gt_is_nan():
    result = evaluate_instances([(two_object_gt(), ScenePredictions.empty(1000))], CLASSES, NAMES)
    assert result.ap.tolist()[:2] == [0.0, 0.0] and math.isnan(result.ap[2])
    # Predictions of a class without gt leave it nan.
    result = evaluate_one(two_object_gt(), [block(600, 800)], [8], [0.9])
    assert math.isnan(result.ap[2]) and math.isnan(result.ap50[2]) and math.isnan(result.ap25[2])


def test_unmatched_prediction_excused_by_void_share_per_threshold():
    # 120 vertices on the table + 80 unlabelled: void share 0.4 excuses it at 0.25 but not at 0.5 and above.
    mask = block(280, 480)
    result = evaluate_one(two_object_gt(), [mask, block(0, 200)], [CHAIR, CHAIR], [0.95, 0.8])
    assert result.ap25[0] == 1.0
    np.testing.assert_allclose(result.ap_per_overlap[0, :-1], 0.25)
    # Entirely on unlabelled vertices: never a false positive.
    result = evaluate_one(two_object_gt(), [block(500, 700), block(0, 200)], [CHAIR, CHAIR], [0.95, 0.8])
    np.testing.assert_array_equal(result.ap_per_overlap[0], 1.0)


def test_small_gt_and_small_predictions():
    gt = two_object_gt()
    gt[500:550] = CHAIR * 1000 + 2  # 50 vertices: not evaluated, but it excuses predictions on it
    masks = [block(0, 200), block(500, 550) | block(600, 660), block(0, 99)]
    # Second mask: 50 on the small chair + 60 unlabelled -> excused; third: 99 vertices -> dropped.
    result = evaluate_one(gt, masks, [CHAIR, CHAIR, CHAIR], [0.5, 0.9, 0.99])
    np.testing.assert_array_equal(result.ap_per_overlap[0], 1.0)


def test_duplicate_is_not_marked_visited():
    # Chairs A (0..199) and B (200..399); P1 = A (0.9), P2 = A u B (0.8, IoU 0.5 with each).
    # At 0.25 P2 is a duplicate of A (false positive, score 0.8) and, not being marked visited, also matches B:
    # y = [TP 0.9, FP 0.8, TP 0.8] -> AP 11/12. Above 0.5 P2 matches nothing: [TP 0.9, FP 0.8] + 1 miss -> 0.5.
    gt = np.zeros(1000, np.int64)
    gt[0:200] = CHAIR * 1000 + 1
    gt[200:400] = CHAIR * 1000 + 2
    result = evaluate_one(gt, [block(0, 200), block(0, 400)], [CHAIR, CHAIR], [0.9, 0.8])
    assert result.ap25[0] == pytest.approx(11 / 12, abs=1e-15)
    np.testing.assert_allclose(result.ap_per_overlap[0, :-1], 0.5)


def test_iou_must_exceed_threshold_strictly():
    gt = two_object_gt()
    # IoU exactly 0.5 (100 shared of 200 gt / 200 pred): no match at 0.5; a match at 0.25.
    result = evaluate_one(gt, [block(100, 300)], [CHAIR], [0.9])
    assert result.ap50[0] == 0.0 and result.ap25[0] == 1.0


def test_average_precision_empty_and_counts():
    assert average_precision(np.zeros(0), np.zeros(0), 3) == 0.0
    assert average_precision([1.0], [0.5], 0) == 1.0
    assert average_precision([1.0, 0.0], [0.8, 0.9], 0) == 0.25


def test_result_outputs_and_groups():
    result = evaluate_one(two_object_gt(), [block(0, 200)], [CHAIR], [0.9])
    assert result.to_csv().splitlines() == [
        "class,class id,ap,ap50,ap25",
        "chair,5,1.0,1.0,1.0",
        "table,7,0.0,0.0,0.0",
        "door,8,nan,nan,nan",
    ]
    assert result.mean_ap == 0.5
    groups = result.group_means({"g1": [CHAIR, 8], "g2": [8]})
    assert groups["g1"]["ap"] == 1.0 and math.isnan(groups["g2"]["ap50"])
    table = result.table({"g1": [CHAIR, 8]})
    assert "#" * 64 in table and "average" in table and "g1" in table
    assert "chair          :          1.000          1.000          1.000" in table
    with pytest.raises(ValueError):
        result.group_means({"bad": [99]})


def test_scenes_are_consumed_lazily_and_validated():
    def scenes():
        yield two_object_gt(), ScenePredictions(block(0, 200)[None], [CHAIR], [1.0])

    assert evaluate_instances(scenes(), CLASSES, NAMES).ap[0] == 1.0
    with pytest.raises(ValueError):
        evaluate_instances([(two_object_gt(), ScenePredictions.empty(999))], CLASSES, NAMES)
    with pytest.raises(ValueError):
        ScenePredictions(np.zeros((2, 10), bool), [1], [0.5, 0.5])


# ---------------------------------------------------------------------------------------------------------------
# Class sets.


def test_scannet_class_sets():
    s20 = class_set("scannet20")
    assert s20.ids == (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
    assert s20.names[0] == "cabinet" and s20.names[-1] == "otherfurniture" and len(s20) == 18
    s200 = class_set("scannet200")
    assert len(s200) == 198 and "wall" not in s200.names and "floor" not in s200.names
    assert set(s200.groups) == {"head", "common", "tail"}
    members = [i for ids in s200.groups.values() for i in ids]
    assert sorted(members) == sorted(s200.ids)  # the three splits partition the 198 classes


def test_class_set_registry():
    from mtml.errors import InputError

    with pytest.raises(InputError, match="unknown class set"):
        class_set("no-such-set")
    register_class_set("test-tiny", lambda: ClassSet("test-tiny", (1, 2), ("a", "b")))
    assert class_set("test-tiny").names == ("a", "b")
