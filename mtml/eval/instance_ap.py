"""Instance-segmentation average precision, exactly as ScanNet's ``evaluate_semantic_instance.py`` computes it.

This is a vectorised re-implementation of the official benchmark script (BenchmarkScripts/3d_evaluation): the same
numbers, including the script's quirks, at a fraction of the cost. Per scene, all prediction x ground-truth
intersection counts come from one ``bincount``; only the greedy matching walks (small) lists of overlapping pairs.

Rules (all of them the official script's):

* Overlap thresholds are ``np.append(np.arange(0.5, 0.95, 0.05), 0.25)``; ``ap`` is the mean over the first ten
  (0.50:0.95), ``ap50`` / ``ap25`` the values at 0.5 / 0.25.
* Ground truth is ``label_id * 1000 + instance`` per vertex. A vertex is *void* when ``id // 1000`` is not an
  evaluated class. Every non-zero id whose label is a class is a gt instance; it is *matched against* only if
  ``id >= 1000`` and it has at least ``min_region_size`` vertices (the others only excuse false positives, below).
* Predictions whose label is not a class, or with fewer than ``min_region_size`` vertices, are dropped.
* Per threshold, gt instances are visited in ascending id order and, for each, the same-label predictions that
  overlap it in prediction order; a prediction already matched to an earlier gt is skipped (``visited``). The first
  prediction with IoU strictly above the threshold matches; each further one is a false positive scored with the
  lower of its score and the running best, the gt keeping the higher one. Such a duplicate is *not* marked visited,
  so it can still match a later gt. A gt left without a match is a hard false negative.
* A prediction with IoU above the threshold with no same-label gt instance (small ones and groups included) is a
  false positive unless the share of its vertices on void, plus the vertices it shares with same-label gt groups
  (``id < 1000``) and with same-label gt instances under ``min_region_size``, is above the threshold.
* Precision / recall over the unique scores, with the artificial point (precision 1, recall 0), integrated with the
  script's ``np.convolve(recall, [-0.5, 0, 0.5])`` step widths. A class gets that AP if some scene has gt and some
  scene has predictions of it, 0.0 if it only has gt, nan if it has no gt. Overall means are nanmeans over classes.

One deliberate difference: where a class has gt and predictions but, at some threshold, no prediction counts at all
(every one unmatched and excused) and no gt is matched, the official script fails with an IndexError on an empty
array; here that AP is 0.0, the value its formula tends to (the artificial point alone has zero width).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mtml.scene import ScenePredictions

#: IoU thresholds, in the official order: 0.50, 0.55, ..., 0.90, then 0.25.
OVERLAPS: np.ndarray = np.append(np.arange(0.5, 0.95, 0.05), 0.25)


@dataclass
class InstanceAPResult:
    """Average precision per class and overall.

    ``ap_per_overlap``: float [C, T] AP per class and threshold (``overlaps`` [T], official order);
    ``ap`` / ``ap50`` / ``ap25``: float [C] per class (nan: no gt of that class; 0.0: gt but no predictions);
    ``mean_ap`` / ``mean_ap50`` / ``mean_ap25``: nanmeans over classes (nan when no class has gt).
    """

    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    overlaps: np.ndarray
    ap_per_overlap: np.ndarray
    ap: np.ndarray = field(init=False)
    ap50: np.ndarray = field(init=False)
    ap25: np.ndarray = field(init=False)
    mean_ap: float = field(init=False)
    mean_ap50: float = field(init=False)
    mean_ap25: float = field(init=False)

    def __post_init__(self) -> None:
        self.class_ids = tuple(int(i) for i in self.class_ids)
        self.class_names = tuple(str(n) for n in self.class_names)
        aps = np.asarray(self.ap_per_overlap, dtype=np.float64)
        self.ap_per_overlap = aps
        o50 = np.isclose(self.overlaps, 0.5)
        o25 = np.isclose(self.overlaps, 0.25)
        not25 = ~o25
        # Per class as the script does it: np.average of that class's thresholds, one class at a time.
        self.ap = np.array([np.average(row[not25]) for row in aps], dtype=np.float64)
        self.ap50 = np.array([np.average(row[o50]) for row in aps], dtype=np.float64)
        self.ap25 = np.array([np.average(row[o25]) for row in aps], dtype=np.float64)
        self.mean_ap = _nanmean(aps[:, not25])
        self.mean_ap50 = _nanmean(aps[:, o50])
        self.mean_ap25 = _nanmean(aps[:, o25])

    def per_class(self) -> dict[str, dict[str, float]]:
        """Class name -> {"class_id", "ap", "ap50", "ap25"} (floats; ids as int)."""
        return {
            name: {"class_id": cid, "ap": float(a), "ap50": float(a50), "ap25": float(a25)}
            for name, cid, a, a50, a25 in zip(self.class_names, self.class_ids, self.ap, self.ap50, self.ap25)
        }

    def group_means(self, groups: Mapping[str, Sequence[int]]) -> dict[str, dict[str, float]]:
        """Group name -> {"ap", "ap50", "ap25"}: nanmeans of the per-class values over the group's class ids
        (e.g. ScanNet200 head / common / tail). ValueError for an id that is not one of ``class_ids``."""
        index = {cid: k for k, cid in enumerate(self.class_ids)}
        out: dict[str, dict[str, float]] = {}
        for name, ids in groups.items():
            missing = [i for i in ids if int(i) not in index]
            if missing:
                raise ValueError(f"group {name!r}: class ids {missing} are not evaluated")
            rows = np.array([index[int(i)] for i in ids], dtype=np.int64)
            out[name] = {
                "ap": _nanmean(self.ap[rows]),
                "ap50": _nanmean(self.ap50[rows]),
                "ap25": _nanmean(self.ap25[rows]),
            }
        return out

    def to_csv(self) -> str:
        """The official script's result file: ``class,class id,ap,ap50,ap25`` then one row per class (class order),
        numbers written with Python ``str(float)`` (``nan`` for classes without gt)."""
        lines = ["class,class id,ap,ap50,ap25"]
        for name, cid, a, a50, a25 in zip(self.class_names, self.class_ids, self.ap, self.ap50, self.ap25):
            lines.append(",".join([name, str(cid), str(float(a)), str(float(a50)), str(float(a25))]))
        return "\n".join(lines) + "\n"

    def table(self, groups: Mapping[str, Sequence[int]] | None = None) -> str:
        """The official script's printed table (AP, AP_50%, AP_25% per class to 3 decimals, then the average),
        followed by one row per group in ``groups`` (name -> class ids) when given."""
        group_rows = self.group_means(groups) if groups else {}
        width = max([15] + [len(n) for n in self.class_names] + [len(g) for g in group_rows])
        rule = width + 49  # 64 characters for 15-character names, as the official table

        def row(name: str, a: float, a50: float, a25: float) -> str:
            return f"{name:<{width}}:{a:>15.3f}{a50:>15.3f}{a25:>15.3f}"

        lines = ["", "#" * rule, f"{'what':<{width}}:{'AP':>15}{'AP_50%':>15}{'AP_25%':>15}", "#" * rule]
        lines += [row(n, a, a50, a25) for n, a, a50, a25 in zip(self.class_names, self.ap, self.ap50, self.ap25)]
        lines += ["-" * rule, row("average", self.mean_ap, self.mean_ap50, self.mean_ap25)]
        if group_rows:
            lines.append("-" * rule)
            lines += [row(g, m["ap"], m["ap50"], m["ap25"]) for g, m in group_rows.items()]
        lines.append("")
        return "\n".join(lines)


def evaluate_instances(
    scenes: Iterable[tuple[np.ndarray, ScenePredictions]],
    class_ids: Sequence[int],
    class_names: Sequence[str],
    min_region_size: int = 100,
) -> InstanceAPResult:
    """Evaluate predicted instances against ground truth over many scenes, as ScanNet's official script does.

    ``scenes``: iterable (consumed once, one scene in memory at a time) of ``(gt_ids, predictions)``, where
    ``gt_ids`` is int [N] with ``label_id * 1000 + instance`` per vertex and ``predictions`` a ScenePredictions
    whose masks cover the same N vertices. ``class_ids`` / ``class_names``: the C evaluated classes, in report
    order. ``min_region_size``: minimum vertex count of gt instances and of predictions.
    Returns an InstanceAPResult (AP per class and threshold, per-class and mean AP / AP50 / AP25).
    """
    acc = _Accumulator(class_ids, min_region_size)
    if len(class_names) != len(acc.class_ids):
        raise ValueError(f"{len(acc.class_ids)} class ids but {len(class_names)} class names")
    for gt_ids, predictions in scenes:
        acc.add_scene(gt_ids, predictions)
    return InstanceAPResult(
        tuple(acc.class_ids.tolist()), tuple(class_names), OVERLAPS.copy(), acc.average_precisions()
    )


def average_precision(y_true: np.ndarray, y_score: np.ndarray, hard_false_negatives: int) -> float:
    """The official script's AP of one class at one threshold.

    ``y_true``: float [M] 1 for a true positive, 0 for a false positive; ``y_score``: float [M] their scores;
    ``hard_false_negatives``: unmatched gt count. Precision / recall at every unique score (a score and all higher
    ones count as positive), plus the artificial point (precision 1, recall 0); the curve is integrated with step
    widths ``(recall[i-1] - recall[i+1]) / 2`` (``np.convolve`` with ``[-0.5, 0, 0.5]``). Returns 0.0 for M = 0.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    order = np.argsort(y_score, kind="stable")  # within ties the order cannot matter: only counts below a score do
    sorted_scores = y_score[order]
    cumsum = np.concatenate([[0.0], np.cumsum(y_true[order])])  # cumsum[i]: true positives among the i lowest
    _, first = np.unique(sorted_scores, return_index=True)  # first (lowest) position of each unique score
    num_examples = sorted_scores.size
    num_true = cumsum[-1]
    true_below = cumsum[first]
    tp = num_true - true_below
    fp = (num_examples - first) - tp
    fn = true_below + hard_false_negatives
    precision = np.append(tp / (tp + fp), 1.0)
    recall = np.append(tp / (tp + fn), 0.0)
    padded = np.concatenate([recall[:1], recall, [0.0]])
    step_widths = np.convolve(padded, [-0.5, 0, 0.5], "valid")
    return float(np.dot(precision, step_widths))


# ----------------------------------------------------------------------------------------------------------------


def _nanmean(values: np.ndarray) -> float:
    """nanmean that returns nan (without a warning) when every value is nan or there are none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if np.size(values) else float("nan")


def _unique_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(ids, return_inverse=True, return_counts=True)`` for int64 [N]; by counting (O(N)) when the id
    range is not much larger than N (ScanNet20 ids stay below 40,000), else by sorting."""
    if ids.size == 0:
        return ids[:0], np.zeros(0, np.int64), np.zeros(0, np.int64)
    low, high = int(ids.min()), int(ids.max())
    if high - low > 4 * ids.size + 65536:
        return np.unique(ids, return_inverse=True, return_counts=True)
    shifted = ids - low
    counts = np.bincount(shifted)
    present = np.flatnonzero(counts)
    lookup = np.zeros(counts.size, np.int64)
    lookup[present] = np.arange(present.size)
    return present + low, lookup[shifted], counts[present]


class _Accumulator:
    """Per-threshold true/false positives (class, 0/1, score), hard false negatives and has_gt / has_pred per
    class, gathered scene by scene; ``average_precisions`` turns them into the [C, T] AP table."""

    def __init__(self, class_ids: Sequence[int], min_region_size: int):
        self.class_ids = np.asarray(list(class_ids), dtype=np.int64).reshape(-1)
        if np.unique(self.class_ids).size != self.class_ids.size:
            raise ValueError("class ids must be unique")
        if min_region_size < 0:
            raise ValueError(f"min_region_size must be >= 0, got {min_region_size}")
        self.min_region_size = int(min_region_size)
        self._sorted_ids = np.sort(self.class_ids)
        self._sorted_to_class = np.argsort(self.class_ids, kind="stable")
        num_classes, num_overlaps = self.class_ids.size, OVERLAPS.size
        self.has_gt = np.zeros(num_classes, bool)
        self.has_pred = np.zeros(num_classes, bool)
        self.hard_fn = np.zeros((num_overlaps, num_classes), np.int64)
        # Per threshold: chunks of (class index int64 [M], true float64 [M], score float64 [M]).
        self.records: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(num_overlaps)]

    def class_index(self, labels: np.ndarray) -> np.ndarray:
        """Index into ``class_ids`` of each label, -1 where the label is not a class. int64 [...] like ``labels``."""
        labels = np.asarray(labels, dtype=np.int64)
        if self._sorted_ids.size == 0:
            return np.full(labels.shape, -1, np.int64)
        pos = np.clip(np.searchsorted(self._sorted_ids, labels), 0, self._sorted_ids.size - 1)
        return np.where(self._sorted_ids[pos] == labels, self._sorted_to_class[pos], -1)

    def add_scene(self, gt_ids: np.ndarray, preds: ScenePredictions) -> None:
        gt_ids = np.asarray(gt_ids)
        if gt_ids.ndim != 1 or not np.issubdtype(gt_ids.dtype, np.integer):
            raise ValueError(f"gt_ids must be a 1-D integer array, got {gt_ids.dtype} {gt_ids.shape}")
        if not isinstance(preds, ScenePredictions):
            raise TypeError(f"predictions must be ScenePredictions, got {type(preds).__name__}")
        if preds.num_vertices != gt_ids.size:
            raise ValueError(f"prediction masks cover {preds.num_vertices} vertices, ground truth has {gt_ids.size}")
        min_size = self.min_region_size
        num_classes = self.class_ids.size

        # Ground truth, one column per distinct id (ascending, the script's instance order).
        uid, inverse, ucount = _unique_ids(gt_ids.astype(np.int64, copy=False))
        ucls = self.class_index(uid // 1000)
        uvoid = ucls < 0
        uinstance = (uid != 0) & ~uvoid  # the script's gt instances: small ones and groups (id < 1000) included
        eligible = uinstance & (uid >= 1000) & (ucount >= min_size)  # those predictions are matched against
        gt_per_class = np.bincount(ucls[eligible], minlength=num_classes)
        self.has_gt |= gt_per_class > 0

        # Mask vertices as (prediction row, vertex) pairs; a flat nonzero is ~10x faster than a 2-D one.
        num_preds, num_ids = len(preds), uid.size
        flat = np.flatnonzero(preds.masks) if gt_ids.size else np.zeros(0, np.int64)
        rows = flat // gt_ids.size if gt_ids.size else flat
        verts = flat - rows * gt_ids.size

        # Predictions that take part: a class label and at least min_size vertices, in prediction order.
        pcount = np.bincount(rows, minlength=num_preds)
        pcls_all = self.class_index(preds.label_ids)
        kept = np.flatnonzero((pcls_all >= 0) & (pcount >= min_size))
        if kept.size == 0:
            self.hard_fn += gt_per_class
            return
        pcls, pcount, pscore = pcls_all[kept], pcount[kept], preds.scores[kept]
        self.has_pred[pcls] = True

        # Intersection counts [K, U] of every kept prediction with every gt id: one bincount.
        inter = np.bincount(rows * num_ids + inverse.reshape(-1)[verts], minlength=num_preds * num_ids)
        inter = inter.reshape(num_preds, num_ids)[kept]

        # Pairs the script associates: same label, gt instance, at least one shared vertex.
        pair = (pcls[:, None] == ucls[None, :]) & uinstance[None, :] & (inter > 0)
        iou = np.zeros(inter.shape, np.float64)
        union = ucount[None, :] + pcount[:, None] - inter
        iou[pair] = inter[pair] / union[pair]
        # Vertices that excuse an unmatched prediction: void, plus same-label groups and small instances (a small
        # group counts twice, as in the script).
        excuse_weight = (uid < 1000).astype(np.int64) + (ucount < min_size).astype(np.int64)
        ignored = inter[:, uvoid].sum(axis=1) + (np.where(pair, inter, 0) * excuse_weight[None, :]).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):  # empty masks only when min_region_size is 0
            ignored_share = ignored / pcount

        # Greedy-matching candidates: eligible gt (ascending id) -> overlapping predictions (prediction order).
        candidates = [
            (int(ucls[g]), [(int(p), float(iou[p, g])) for p in np.flatnonzero(pair[:, g])])
            for g in np.flatnonzero(eligible & pair.any(axis=0))
        ]
        scores = pscore.tolist()
        # Unmatched predictions that count as false positives, per threshold [T, K]: no same-label gt instance
        # with IoU above the threshold (<=> best IoU not above it) and an excused share not above it either.
        best_iou = iou.max(axis=1, initial=0.0)
        false_pos = (best_iou[None, :] <= OVERLAPS[:, None]) & (ignored_share[None, :] <= OVERLAPS[:, None])

        for t, threshold in enumerate(OVERLAPS):
            visited = [False] * kept.size
            out_cls: list[int] = []
            out_true: list[float] = []
            out_score: list[float] = []
            matched_per_class = np.zeros(num_classes, np.int64)
            for cls, preds_of_gt in candidates:
                matched = False
                best = 0.0
                for p, overlap in preds_of_gt:
                    if visited[p] or not overlap > threshold:
                        continue
                    score = scores[p]
                    if matched:  # a duplicate: the lower score is a false positive; not marked visited
                        out_cls.append(cls)
                        out_true.append(0.0)
                        out_score.append(min(best, score))
                        best = max(best, score)
                    else:
                        matched, best = True, score
                        visited[p] = True
                if matched:
                    out_cls.append(cls)
                    out_true.append(1.0)
                    out_score.append(best)
                    matched_per_class[cls] += 1
            self.hard_fn[t] += gt_per_class - matched_per_class

            unmatched_fp = false_pos[t]
            self.records[t].append(
                (
                    np.concatenate([np.asarray(out_cls, np.int64), pcls[unmatched_fp]]),
                    np.concatenate([np.asarray(out_true, np.float64), np.zeros(int(unmatched_fp.sum()))]),
                    np.concatenate([np.asarray(out_score, np.float64), pscore[unmatched_fp]]),
                )
            )

    def average_precisions(self) -> np.ndarray:
        """float [C, T]: AP per class and threshold (0.0 with gt but no predictions, nan without gt)."""
        num_classes, num_overlaps = self.class_ids.size, OVERLAPS.size
        aps = np.full((num_classes, num_overlaps), np.nan)
        aps[self.has_gt & ~self.has_pred] = 0.0
        scored = np.flatnonzero(self.has_gt & self.has_pred)
        for t in range(num_overlaps):
            chunks = self.records[t]
            cls = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int64)
            true = np.concatenate([c[1] for c in chunks]) if chunks else np.zeros(0)
            score = np.concatenate([c[2] for c in chunks]) if chunks else np.zeros(0)
            order = np.argsort(cls, kind="stable")
            bounds = np.searchsorted(cls[order], np.arange(num_classes + 1))
            for c in scored:
                sel = order[bounds[c] : bounds[c + 1]]
                aps[c, t] = average_precision(true[sel], score[sel], int(self.hard_fn[t, c]))
        return aps
