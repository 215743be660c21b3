"""Reproducing MTML Table 1 (AP50 per class on the synthetic toy benchmark) and the out-of-distribution check."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Optional, Sequence

from mtml.data.registry import split_seeds
from mtml.data.toy import TOY_CLASS_NAMES, TOY_INSTANCE_CLASS_IDS, ToySceneConfig
from mtml.eval.scenes import Segmenter, baseline_segmenter, model_segmenter
from mtml.eval.toy import evaluate_toy
from mtml.predict.checkpoint import load_model

# AP50 (%) per class (small cube, long box, flat box, cabinet, pillar) from the paper's Table 1.
PAPER_TABLE1 = {
    "connected_components": [92.5, 85.1, 86.9, 93.5, 79.9],
    "fe_only": [97.3, 92.7, 95.0, 96.4, 95.2],
    "multi_task": [98.0, 93.5, 96.1, 96.6, 95.3],
}
METHOD_TITLES = {"connected_components": "Connected components", "fe_only": "FE only", "multi_task": "Multi-task",
                 "segment_as_instance": "Segment as instance"}

# Scenes for the generalisation check: the toy dataset's "harder" seeds (outside train/test/validation; see
# mtml.data.registry), more boxes, more contact.
HARDER_SEED_START = split_seeds("toy", "harder").start
HARDER_TOY_CONFIG = ToySceneConfig(num_boxes=(8, 14), contact_fraction=0.4, same_class_contact=0.5)


@dataclass
class MethodRow:
    method: str
    ap50: list  # per class, %
    ap: list
    ap25: list

    @property
    def mean_ap50(self) -> float:
        return sum(self.ap50) / len(self.ap50)


def checkpoint_segmenter(path: str) -> Segmenter:
    """Segmenter from a checkpoint written by mtml-train (its own cluster settings and voxel size)."""
    loaded = load_model(path)
    return model_segmenter(loaded.model, loaded.config.cluster, loaded.config.data.voxel_size)


def evaluate_methods(segmenters: dict, seeds: Sequence[int], toy_cfg: Optional[ToySceneConfig] = None,
                     progress: bool = True) -> list[MethodRow]:
    """Evaluate each named segmenter on the same scenes; AP numbers in % per toy class."""
    rows = []
    for name, seg in segmenters.items():
        res = evaluate_toy(seg, seeds, toy_cfg, progress=progress, desc=METHOD_TITLES.get(name, name))
        rows.append(MethodRow(name, [100 * float(v) for v in res.ap50], [100 * float(v) for v in res.ap],
                              [100 * float(v) for v in res.ap25]))
    return rows


def default_segmenters(multi_task: Optional[str], fe_only: Optional[str], voxel_size: float = 0.1) -> dict:
    """CC baseline + whichever of the two trained models are given (checkpoint paths)."""
    segs = {"connected_components": baseline_segmenter("connected_components", voxel_size, TOY_INSTANCE_CLASS_IDS)}
    if fe_only:
        segs["fe_only"] = checkpoint_segmenter(fe_only)
    if multi_task:
        segs["multi_task"] = checkpoint_segmenter(multi_task)
    return segs


def table1_text(rows: list[MethodRow], with_paper: bool = True) -> str:
    """A printable table: per-class AP50 and the mean, ours beside the paper's row."""
    names = [TOY_CLASS_NAMES[c] for c in TOY_INSTANCE_CLASS_IDS]
    head = f"{'method':<28}" + "".join(f"{n:>12}" for n in names) + f"{'mean':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{METHOD_TITLES.get(r.method, r.method):<28}" + "".join(f"{v:>12.1f}" for v in r.ap50)
                     + f"{r.mean_ap50:>8.1f}")
        if with_paper and r.method in PAPER_TABLE1:
            p = PAPER_TABLE1[r.method]
            lines.append(f"{'  paper':<28}" + "".join(f"{v:>12.1f}" for v in p) + f"{sum(p) / len(p):>8.1f}")
    return "\n".join(lines)


def table1_csv(rows: list[MethodRow]) -> str:
    """CSV: source (ours/paper), method, metric, one column per class, mean."""
    names = [TOY_CLASS_NAMES[c] for c in TOY_INSTANCE_CLASS_IDS]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["source", "method", "metric", *names, "mean"])
    for r in rows:
        for metric, vals in (("ap50", r.ap50), ("ap", r.ap), ("ap25", r.ap25)):
            w.writerow(["ours", r.method, metric, *[f"{v:.2f}" for v in vals], f"{sum(vals) / len(vals):.2f}"])
        if r.method in PAPER_TABLE1:
            p = PAPER_TABLE1[r.method]
            w.writerow(["paper", r.method, "ap50", *p, f"{sum(p) / len(p):.2f}"])
    return buf.getvalue()
