"""seeds/004 Table 2 on real scans, leave-one-space-out: for each space of a folder of labelled ScanNet scans
(``scannet_mini``), the model ``scannet/mini.yaml`` is trained on every other space's scans and evaluated on the
held-out space's scans; instance AP over ScanNet's 18 instance classes and semantic IoU over its 20 classes are
accumulated over the held-out scans of all folds (predictions pooled, as one evaluation over all of them).

Rows (``ROWS``), on the semantics the trained model predicts (the scan's labels are removed before it sees it):
"segment as instance" and "connected components" (``mtml.cluster.pipeline.baseline_instances`` on the predicted
labels) and "multi-task" (the model's MTML instances); with the ground-truth semantics as input: connected
components and multi-task (``use_given_labels=True``); with ``with_scratch`` also the multi-task row of a model
trained the same number of steps with randomly initialised class prototypes (``train.classifier_init: random``)
instead of text anchors. "FE only" is left out: there is no FE-only config for real scans.

Each fold lives in ``<runs>/<space>/``: ``fold.json`` (the held-out space, its scans and the training scans),
``configs/<row model>.yaml`` (the base config plus this fold's overrides) and one run folder per trained model
(``grounded/``, ``scratch/``; ``mtml.tables.methods.train_methods``, interrupted runs resume). The rows evaluate
``last.pt``: ``best.pt`` is picked on the held-out space, so evaluating it would select on the test scans.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from mtml.config import apply_overrides, find_config
from mtml.data.registry import class_set, label_names, loso_folds
from mtml.errors import InputError
from mtml.eval.instance_ap import InstanceAPResult
from mtml.eval.scenes import (
    Segmenter,
    baseline_segmenter,
    evaluate_scenes,
    model_segmenter,
)
from mtml.eval.semantic import SemanticConfusion, SemanticResult
from mtml.io.atomic import atomic_write_text
from mtml.io.formats import find_scenes, read_any_scene
from mtml.predict.checkpoint import load_model
from mtml.scene import Scene
from mtml.tables.methods import Method, train_methods
from mtml.tables.plain_scans import without_annotations

BASE_CONFIG = "scannet/mini.yaml"
BENCHMARK = "scannet20"

MIN_REGION_POINTS = 30
"""Smallest ground-truth instance scored, in points. ScanNet's rule is 100 mesh vertices; its v2 meshes hold about
150k vertices on average and a ``scannet_mini`` scan 50k points, so 100 vertices scale to about 33 points."""

GROUNDED = Method("grounded", "Language-grounded (text-anchor init)", "grounded.yaml")
SCRATCH = Method("scratch", "Scratch (random prototypes)", "scratch.yaml")
CLASSIFIER_INIT = {GROUNDED.key: "anchors", SCRATCH.key: "random"}


@dataclass(frozen=True)
class Row:
    """One table row: its key, title, where its semantics come from ("predicted" / "ground truth"), the trained
    model it uses (a ``Method`` key) and how it segments: "segment_as_instance" / "connected_components" (baselines
    on the row's semantics) or "multi_task" (the model's instances)."""

    key: str
    title: str
    semantics: str
    model: str
    method: str


ROWS = (
    Row("segment_as_instance", "Segment as instance", "predicted", GROUNDED.key, "segment_as_instance"),
    Row("connected_components", "Connected components", "predicted", GROUNDED.key, "connected_components"),
    Row("multi_task", "Multi-task (language-grounded)", "predicted", GROUNDED.key, "multi_task"),
    Row("connected_components_gt", "Connected components", "ground truth", GROUNDED.key, "connected_components"),
    Row("multi_task_gt", "Multi-task", "ground truth", GROUNDED.key, "multi_task"),
)
SCRATCH_ROWS = (Row("multi_task_scratch", "Multi-task (scratch)", "predicted", SCRATCH.key, "multi_task"),)

# seeds/004 Table 2 (ScanNet v2 val, instances on SparseConvNet's semantics): average AP, AP50, AP25, then AP50 per
# class in ScanNet's instance class order (cabinet .. otherfurniture), fractions.
PAPER_TABLE2 = {
    "segment_as_instance": ((0.068, 0.145, 0.239), (0.008, 0.197, 0.001, 0.240, 0.061, 0.037, 0.023, 0.024, 0.005,
                                                    0.032, 0.057, 0.085, 0.112, 0.231, 0.676, 0.130, 0.677, 0.010)),
    "connected_components": ((0.118, 0.230, 0.338), (0.081, 0.467, 0.239, 0.398, 0.324, 0.073, 0.031, 0.198, 0.005,
                                                     0.034, 0.109, 0.173, 0.162, 0.227, 0.801, 0.135, 0.631, 0.052)),
    "fe_only": ((0.171, 0.333, 0.492), (0.118, 0.446, 0.689, 0.369, 0.361, 0.304, 0.258, 0.175, 0.067, 0.004, 0.053,
                                        0.285, 0.302, 0.593, 0.962, 0.294, 0.553, 0.154)),
    "multi_task": ((0.203, 0.402, 0.554), (0.145, 0.540, 0.792, 0.488, 0.427, 0.324, 0.327, 0.219, 0.109, 0.008,
                                           0.142, 0.399, 0.421, 0.643, 0.965, 0.364, 0.708, 0.215)),
}
PAPER_TITLES = {"segment_as_instance": "Segment as instance", "connected_components": "Connected components",
                "fe_only": "FE only", "multi_task": "Multi-task"}


@dataclass(frozen=True)
class Fold:
    """One leave-one-space-out fold: the held-out space, its scans (evaluated) and the training scans."""

    space: str
    held_out: tuple
    train: tuple


@dataclass
class RowResult:
    """A row's numbers over all folds: instance AP, and semantic metrics when the row's semantics are predicted."""

    instances: InstanceAPResult
    semantic: SemanticResult | None


def scannet_folds(scans_root: str | Path, max_folds: int | None = None) -> list[Fold]:
    """The leave-one-space-out folds (``loso_folds``, spaces sorted) of the scans in ``scans_root``, the first
    ``max_folds`` of them (None: all). InputError when the folder is missing or holds no scans."""
    if not Path(scans_root).is_dir():
        raise InputError(scans_root, "no such folder of scans (give it with --scans)")
    folds = [Fold(space, tuple(val), tuple(train)) for space, train, val in loso_folds(list(find_scenes(scans_root)))]
    return folds[:max_folds]


def fold_overrides(scans_root: str | Path, space: str, classifier_init: str,
                   extra: Sequence[str] = ()) -> list[str]:
    """``--set`` style overrides that train one fold's model: the scans folder (absolute), the held-out space,
    the classifier init ("anchors" / "random"), then ``extra`` (e.g. ``train.epochs=1``)."""
    return [f"data.scans_root={Path(scans_root).resolve()}", f"data.holdout_space={space}",
            f"train.classifier_init={classifier_init}", *extra]


def train_fold(fold: Fold, scans_root: str | Path, runs: str | Path, extra_overrides: Sequence[str] = (),
               with_scratch: bool = False, configs_dir: str | Path | None = None,
               progress: bool = True) -> dict[str, Path]:
    """Train the fold's models into ``runs/<space>/<model key>/`` (resuming interrupted runs) after recording the
    fold in ``runs/<space>/fold.json`` and each model's config in ``runs/<space>/configs/<key>.yaml`` (the base
    config ``scannet/mini.yaml`` from ``configs_dir`` or the packaged configs, plus ``fold_overrides``).
    Returns model key -> its last.pt."""
    fold_dir = Path(runs) / fold.space
    atomic_write_text(fold_dir / "fold.json", json.dumps(
        {"held_out_space": fold.space, "held_out_scans": list(fold.held_out), "train_scans": list(fold.train)},
        indent=2) + "\n")
    base = Path(find_config(BASE_CONFIG, configs_dir)).resolve()
    methods = (GROUNDED, SCRATCH) if with_scratch else (GROUNDED,)
    for method in methods:
        values = apply_overrides({"_base_": [str(base)]},
                                 fold_overrides(scans_root, fold.space, CLASSIFIER_INIT[method.key], extra_overrides))
        atomic_write_text(fold_dir / "configs" / method.config, yaml.safe_dump(values, sort_keys=False))
    return train_methods(fold_dir / "configs", fold_dir, methods, progress=progress)


def _cached(segment: Segmenter) -> Segmenter:
    """``segment`` remembering its result per scene name (the predicted semantics feed three rows)."""
    results: dict = {}

    def run(scene: Scene):
        if scene.name not in results:
            results[scene.name] = segment(scene)
        return results[scene.name]

    return run


def _on_predicted_labels(predict: Segmenter, segment: Segmenter) -> Segmenter:
    """``segment`` run on the scene with its labels replaced by the point labels ``predict`` gives."""
    return lambda scene: segment(dataclasses.replace(scene, labels=np.asarray(predict(scene)[2], dtype=np.int64)))


def _fold_segmenters(checkpoint: Path, thing_classes: Sequence[int]) -> dict[str, Segmenter]:
    """Segmenter per (semantics, method) of one fold's model: keys "predicted/<method>", "ground truth/<method>"."""
    loaded = load_model(checkpoint)
    model, cfg = loaded.model, loaded.config
    voxel = cfg.data.voxel_size
    plain = model_segmenter(model, cfg.cluster, voxel, use_given_labels=False)
    predicted = _cached(lambda scene: plain(without_annotations(scene)))
    segs = {"predicted/multi_task": predicted,
            "ground truth/multi_task": model_segmenter(model, cfg.cluster, voxel, use_given_labels=True)}
    for method in ("segment_as_instance", "connected_components"):
        baseline = baseline_segmenter(method, voxel, thing_classes)
        segs[f"ground truth/{method}"] = baseline
        segs[f"predicted/{method}"] = _on_predicted_labels(predicted, baseline)
    return segs


def semantic_class_ids() -> list[int]:
    """The 20 ScanNet classes' label ids (NYU40), the ids the semantic metrics score."""
    return [i for i in label_names(BENCHMARK) if i != 0]


def evaluate_folds(folds: Sequence[Fold], checkpoints: dict[str, dict[str, Path]], scans_root: str | Path,
                   rows: Sequence[Row] = ROWS, progress: bool = True) -> dict[str, RowResult]:
    """Every row over the held-out scans of all ``folds``, each scan segmented by its own fold's model
    (``checkpoints``: space -> model key -> checkpoint), pooled into one ``evaluate_scenes`` per row (ScanNet's
    rules at the points, ``MIN_REGION_POINTS``). Rows on predicted semantics also score the semantic labels
    (20 classes, unlabelled points not scored). Returns row key -> RowResult."""
    classes = class_set(BENCHMARK)
    paths = find_scenes(scans_root)
    space_of = {name: fold.space for fold in folds for name in fold.held_out}
    models = {(fold.space, key): _fold_segmenters(path, classes.ids)
              for fold in folds for key, path in checkpoints[fold.space].items()}
    names = label_names(BENCHMARK)
    results = {}
    for row in rows:
        def segment(scene: Scene, row=row):
            return models[(space_of[scene.name], row.model)][f"{row.semantics}/{row.method}"](scene)

        confusion = SemanticConfusion(semantic_class_ids()) if row.semantics == "predicted" else None
        scenes = (read_any_scene(paths[name], benchmark=BENCHMARK) for name in space_of)
        ap = evaluate_scenes(segment, scenes, classes, min_region_size=MIN_REGION_POINTS, progress=progress,
                             desc=row.key, total=len(space_of), semantic=confusion, semantic_ignore=[0])
        results[row.key] = RowResult(ap, confusion.result(names) if confusion is not None else None)
    return results


def _number(value: float | None) -> str:
    """A fraction for the CSV to 4 decimals; "" for a missing or nan value."""
    return "" if value is None or math.isnan(float(value)) else f"{float(value):.4f}"


def csv_columns() -> list[str]:
    """The CSV's columns: source, row, title, semantics, miou, ap, ap50, ap25, then ``ap50 <class>`` for the 18
    instance classes and ``iou <class>`` for the 20 semantic classes."""
    inst_names = class_set(BENCHMARK).names
    sem_names = [label_names(BENCHMARK)[i] for i in semantic_class_ids()]
    return ["source", "row", "title", "semantics", "miou", "ap", "ap50", "ap25",
            *[f"ap50 {n}" for n in inst_names], *[f"iou {n}" for n in sem_names]]


def table_csv(results: dict[str, RowResult], rows: Sequence[Row]) -> str:
    """CSV of our rows and the paper's (``PAPER_TABLE2``), every value a fraction in [0, 1]; empty where a value
    does not apply (no mIoU on ground-truth semantics or for the paper) or a class has no ground truth."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_columns())
    n_sem = len(semantic_class_ids())
    for row in rows:
        if row.key not in results:
            continue
        res = results[row.key]
        sem = res.semantic
        w.writerow(["ours", row.key, row.title, row.semantics, _number(sem.miou if sem else None),
                    _number(res.instances.mean_ap), _number(res.instances.mean_ap50), _number(res.instances.mean_ap25),
                    *[_number(v) for v in res.instances.ap50],
                    *([_number(v) for v in sem.iou] if sem else [""] * n_sem)])
    for key, (means, per_class) in PAPER_TABLE2.items():
        w.writerow(["paper", key, PAPER_TITLES[key], "SparseConvNet", "", *[_number(v) for v in means],
                    *[_number(v) for v in per_class], *[""] * n_sem])
    return buf.getvalue()


def table_text(results: dict[str, RowResult], rows: Sequence[Row], folds: Sequence[Fold]) -> str:
    """The printed table: mIoU, AP, AP50, AP25 (%) per row, the paper's AP50 beside the rows it has."""
    scans = sum(len(f.held_out) for f in folds)
    head = f"{'method':<34}{'semantics':>14}{'mIoU':>8}{'AP':>8}{'AP50':>8}{'AP25':>8}{'paper AP50':>12}"
    lines = [f"scannet_mini, leave-one-space-out: {len(folds)} folds, {scans} held-out scans (%)", head,
             "-" * len(head)]
    for row in rows:
        if row.key not in results:
            continue
        res = results[row.key]
        miou = f"{100 * res.semantic.miou:.1f}" if res.semantic else "-"
        paper = PAPER_TABLE2.get(row.key)[0][1] if row.semantics == "predicted" and row.key in PAPER_TABLE2 else None
        lines.append(f"{row.title:<34}{row.semantics:>14}{miou:>8}" + "".join(
            f"{100 * v:>8.1f}" for v in (res.instances.mean_ap, res.instances.mean_ap50, res.instances.mean_ap25))
            + (f"{100 * paper:>12.1f}" if paper is not None else f"{'-':>12}"))
    fe = PAPER_TABLE2["fe_only"][0]
    lines.append(f"FE only: no FE-only config for real scans, not run (paper AP / AP50 / AP25 "
                 f"{' / '.join(f'{100 * v:.1f}' for v in fe)}).")
    lines.append("Paper: seeds/004 Table 2, ScanNet v2 val on SparseConvNet semantics; ours: instances over ScanNet's "
                 f"18 classes (min region {MIN_REGION_POINTS} points), mIoU over its 20 classes, last.pt of each fold.")
    return "\n".join(lines)


def run_benchmark(scans_root: str | Path, runs: str | Path, out: str | Path, max_folds: int | None = None,
                  extra_overrides: Sequence[str] = (), with_scratch: bool = False,
                  configs_dir: str | Path | None = None, progress: bool = True) -> tuple[str, Path]:
    """Train every fold (``train_fold``), evaluate all rows (``evaluate_folds``) and write ``out/scannet_mini.csv``
    atomically. Returns (the printed table, the CSV's path)."""
    folds = scannet_folds(scans_root, max_folds)
    checkpoints = {fold.space: train_fold(fold, scans_root, runs, extra_overrides, with_scratch, configs_dir,
                                          progress) for fold in folds}
    rows = (*ROWS, *SCRATCH_ROWS) if with_scratch else ROWS
    results = evaluate_folds(folds, checkpoints, scans_root, rows, progress)
    csv_path = Path(out) / "scannet_mini.csv"
    atomic_write_text(csv_path, table_csv(results, rows))
    return table_text(results, rows, folds), csv_path
