"""Semantic segmentation metrics over scenes: per-class IoU, precision, recall and their means, with the ScanNet200
long-tail protocol's head / common / tail group means.

``SemanticConfusion(class_ids)`` accumulates, over any number of scenes, a confusion matrix of gt class x predicted
class, plus one column for predictions outside the class list. Per point:

* a point whose gt is not in the class list (-1, 0 = unlabeled, a non-evaluated class) is ignored entirely;
* a prediction outside the class list counts as wrong (a false negative of the gt class, no one's false positive).

Per class c, with TP = points of gt c predicted c, GT = points of gt c, P = (evaluated) points predicted c:
IoU = TP / (GT + P - TP), precision = TP / P, recall = TP / GT. A class with GT = P = 0 (absent from gt and
predictions) gets nan for all three and is left out of every mean. Otherwise a 0/0 ratio counts as 0 (a class
present but never predicted has precision 0; one predicted but absent has recall 0), so every mean averages the
same classes. Means are unweighted over classes (ScanNet's mIoU).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mtml.errors import InputError
from mtml.io.atomic import atomic_write_text
from mtml.labels import scannet200_class_splits

#: Canonical order of the ScanNet200 groups in reports; other group names follow in order of appearance.
GROUP_ORDER = ("head", "common", "tail")

_METRICS = ("iou", "precision", "recall")
_MEAN_NAMES = {"iou": "miou", "precision": "mean_precision", "recall": "mean_recall"}


def _as_labels(values, what: str, source) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(source, f"{what} labels must be 1-D, got shape {arr.shape}")
    integral_floats = np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
    if arr.size and not np.issubdtype(arr.dtype, np.integer) and not integral_floats:
        raise InputError(source, f"{what} labels must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


class SemanticConfusion:
    """Confusion counts over scenes for a fixed list of class ids.

    class_ids: the evaluated label ids (ints, unique); results list classes in this order.
    ``matrix``: int64 [C, C + 1], row = gt class, column = predicted class, last column = prediction not a class.
    """

    def __init__(self, class_ids: Sequence[int]):
        ids = [int(i) for i in class_ids]
        if len(set(ids)) != len(ids):
            raise InputError(None, "semantic evaluation: duplicate class ids")
        self.class_ids = tuple(ids)
        self._sorted = np.asarray(sorted(ids), dtype=np.int64)
        self._index_of_sorted = np.asarray([ids.index(int(i)) for i in self._sorted], dtype=np.int64)
        self.matrix = np.zeros((len(ids), len(ids) + 1), dtype=np.int64)
        self.num_scenes = 0

    def _index(self, labels: np.ndarray) -> np.ndarray:
        """Labels int64 [N] -> class index [N] (position in class_ids), -1 for labels not in the list."""
        out = np.full(labels.shape, -1, dtype=np.int64)
        if not len(self._sorted):
            return out
        pos = np.clip(np.searchsorted(self._sorted, labels), 0, len(self._sorted) - 1)
        hit = self._sorted[pos] == labels
        out[hit] = self._index_of_sorted[pos[hit]]
        return out

    def update(self, pred: np.ndarray, gt: np.ndarray, source: str | os.PathLike | None = None) -> None:
        """Add one scene. pred, gt: integer label ids [N] per point (same N); source names the scene in errors."""
        pred = _as_labels(pred, "predicted", source)
        gt = _as_labels(gt, "ground-truth", source)
        if pred.shape != gt.shape:
            raise InputError(source, f"{pred.shape[0]} predicted labels but {gt.shape[0]} ground-truth labels")
        c = len(self.class_ids)
        g = self._index(gt)
        keep = g >= 0
        p = self._index(pred[keep])
        p[p < 0] = c
        self.matrix += np.bincount(g[keep] * (c + 1) + p, minlength=c * (c + 1)).reshape(c, c + 1)
        self.num_scenes += 1

    def merge(self, other: SemanticConfusion) -> None:
        """Add another accumulator's counts (same class ids), e.g. from a parallel worker."""
        if other.class_ids != self.class_ids:
            raise InputError(None, "semantic evaluation: merging confusions over different class ids")
        self.matrix += other.matrix
        self.num_scenes += other.num_scenes

    def result(self, class_names: Mapping[int, str] | None = None,
               splits: Mapping[int, str] | None = None) -> SemanticResult:
        """Metrics from the counts so far. class_names: id -> name (missing ids are named by their number);
        splits: id -> group name (e.g. "head" / "common" / "tail"), classes not in it belong to no group."""
        c = len(self.class_ids)
        tp = np.diag(self.matrix[:, :c]).astype(np.float64)
        gt_count = self.matrix.sum(axis=1).astype(np.float64)
        pred_count = self.matrix[:, :c].sum(axis=0).astype(np.float64)
        present = (gt_count + pred_count) > 0

        def ratio(num, den):
            out = np.zeros(c, dtype=np.float64)
            np.divide(num, den, out=out, where=den > 0)
            out[~present] = np.nan
            return out

        names = {int(k): str(v) for k, v in (class_names or {}).items()}
        groups = {int(k): str(v) for k, v in (splits or {}).items()}
        return SemanticResult(
            class_ids=self.class_ids,
            class_names=tuple(names.get(i, str(i)) for i in self.class_ids),
            groups=tuple(groups.get(i) for i in self.class_ids),
            iou=ratio(tp, gt_count + pred_count - tp),
            precision=ratio(tp, pred_count),
            recall=ratio(tp, gt_count),
            gt_points=gt_count.astype(np.int64),
            pred_points=pred_count.astype(np.int64),
            num_scenes=self.num_scenes,
        )


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def _json_number(x: float):
    return None if isinstance(x, float) and math.isnan(x) else x


@dataclass(frozen=True, eq=False)
class SemanticResult:
    """Per-class semantic metrics, one entry per class in ``class_ids`` order.

    iou / precision / recall: float64 [C] in [0, 1], nan for classes absent from gt and predictions;
    gt_points / pred_points: int64 [C]; groups: group name or None per class.
    """

    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    groups: tuple[str | None, ...]
    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    gt_points: np.ndarray
    pred_points: np.ndarray
    num_scenes: int = 0

    @property
    def miou(self) -> float:
        """Mean IoU over classes present in gt or predictions (nan if none)."""
        return _nanmean(self.iou)

    @property
    def mean_precision(self) -> float:
        return _nanmean(self.precision)

    @property
    def mean_recall(self) -> float:
        return _nanmean(self.recall)

    def group_names(self) -> list[str]:
        """Group names in report order: head, common, tail first, then any others in order of appearance."""
        seen = [g for g in dict.fromkeys(self.groups) if g is not None]
        return [g for g in GROUP_ORDER if g in seen] + [g for g in seen if g not in GROUP_ORDER]

    def group_means(self) -> dict[str, dict[str, float]]:
        """group -> {"miou", "mean_precision", "mean_recall"} over that group's classes (nan-skipping; nan when
        no class of the group is present). Empty without splits."""
        out = {}
        groups = np.asarray([g if g is not None else "" for g in self.groups], dtype=object)
        for g in self.group_names():
            sel = groups == g
            out[g] = {_MEAN_NAMES[m]: _nanmean(getattr(self, m)[sel]) for m in _METRICS}
        return out

    def means(self) -> dict[str, float]:
        """{"miou", "mean_precision", "mean_recall"} over all classes."""
        return {"miou": self.miou, "mean_precision": self.mean_precision, "mean_recall": self.mean_recall}

    def per_class(self) -> list[dict]:
        """One dict per class: id, name, group, iou, precision, recall (nan as float nan), gt_points, pred_points."""
        return [
            {"id": int(i), "name": n, "group": g, "iou": float(self.iou[k]), "precision": float(self.precision[k]),
             "recall": float(self.recall[k]), "gt_points": int(self.gt_points[k]),
             "pred_points": int(self.pred_points[k])}
            for k, (i, n, g) in enumerate(zip(self.class_ids, self.class_names, self.groups))
        ]

    def to_dict(self) -> dict:
        """JSON-friendly: {"means", "groups", "classes", "num_scenes"}; nan becomes None."""
        classes = [{k: _json_number(v) for k, v in row.items()} for row in self.per_class()]
        return {
            "means": {k: _json_number(v) for k, v in self.means().items()},
            "groups": {g: {k: _json_number(v) for k, v in m.items()} for g, m in self.group_means().items()},
            "classes": classes,
            "num_scenes": self.num_scenes,
        }

    def table(self) -> str:
        """A text table: one row per class (id, name, group, IoU, precision, recall, gt points), then the means
        over all classes and per group. Values in %, nan shown as "-"."""

        def pct(x: float) -> str:
            return "-" if math.isnan(x) else f"{100 * x:.1f}"

        name_w = max([len("class"), *(len(n) for n in self.class_names), len("mean: common")])
        has_groups = any(g is not None for g in self.groups)
        group_w = max([len("group"), *(len(g) for g in self.groups if g)]) if has_groups else 0
        head = f"{'id':>6}  {'class':<{name_w}}" + (f"  {'group':<{group_w}}" if has_groups else "")
        head += f"  {'IoU':>6}  {'prec':>6}  {'recall':>6}  {'gt pts':>10}"
        lines = [head, "-" * len(head)]
        for row in self.per_class():
            line = f"{row['id']:>6}  {row['name']:<{name_w}}"
            if has_groups:
                line += f"  {row['group'] or '':<{group_w}}"
            line += f"  {pct(row['iou']):>6}  {pct(row['precision']):>6}  {pct(row['recall']):>6}"
            lines.append(line + f"  {row['gt_points']:>10}")
        lines.append("-" * len(head))
        summary = [("mean", self.means())] + [(f"mean: {g}", m) for g, m in self.group_means().items()]
        for label, m in summary:
            line = f"{'':>6}  {label:<{name_w}}" + (f"  {'':<{group_w}}" if has_groups else "")
            line += f"  {pct(m['miou']):>6}  {pct(m['mean_precision']):>6}  {pct(m['mean_recall']):>6}"
            lines.append(line.rstrip())
        return "\n".join(lines) + "\n"

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write ``path`` atomically: header ``class_id,name,group,iou,precision,recall,gt_points,pred_points``,
        one row per class, then summary rows with an empty class_id and name "mean" (all classes) or "mean:GROUP".
        Metrics are fractions in [0, 1]; nan is written as "nan"."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["class_id", "name", "group", "iou", "precision", "recall", "gt_points", "pred_points"])

        def num(x: float) -> str:
            return "nan" if math.isnan(x) else repr(float(x))

        for row in self.per_class():
            writer.writerow([row["id"], row["name"], row["group"] or "", num(row["iou"]), num(row["precision"]),
                             num(row["recall"]), row["gt_points"], row["pred_points"]])
        summary = [("mean", "", self.means())] + [(f"mean:{g}", g, m) for g, m in self.group_means().items()]
        for label, group, m in summary:
            writer.writerow(["", label, group, num(m["miou"]), num(m["mean_precision"]), num(m["mean_recall"]),
                             "", ""])
        atomic_write_text(path, buf.getvalue())


def semantic_scores(pred: np.ndarray, gt: np.ndarray, class_ids: Sequence[int],
                    class_names: Mapping[int, str] | None = None,
                    splits: Mapping[int, str] | None = None) -> SemanticResult:
    """One scene's metrics: pred, gt integer label ids [N]; class_ids the evaluated ids -> SemanticResult."""
    conf = SemanticConfusion(class_ids)
    conf.update(pred, gt)
    return conf.result(class_names, splits)


def scannet200_splits() -> dict[int, str]:
    """ScanNet200 class id -> "head" / "common" / "tail" (from ``mtml/resources/scannet_labels.json``)."""
    return scannet200_class_splits()
