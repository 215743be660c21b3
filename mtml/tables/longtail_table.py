"""seeds/001 Table 1 on the long-tail synthetic benchmark: semantic mIoU, precision and recall over head /
common / tail classes and all classes, for scratch training, the balancing baselines and language grounding."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional, Sequence

from mtml.data.longtail import LONGTAIL_CLASS_NAMES, LongtailSceneConfig, generate_longtail_scene
from mtml.data.registry import longtail_class_splits
from mtml.eval.scenes import evaluate_semantic
from mtml.eval.semantic import SemanticConfusion, SemanticResult
from mtml.predict.checkpoint import load_model
from mtml.tables.methods import Method, train_methods

GROUPS = ("head", "common", "tail")

PRETRAIN = Method("pretrain", "Language pre-training (stage 1)", "longtail/pretrain.yaml")
METHODS = (
    Method("scratch", "Scratch (CE)", "longtail/scratch.yaml"),
    Method("sampling", "Ins. samp.", "longtail/sampling.yaml"),
    Method("focal", "Focal", "longtail/focal.yaml"),
    Method("cb_focal", "C-Focal", "longtail/cb_focal.yaml"),
    Method("grounded", "Language-grounded (CE)", "longtail/grounded.yaml", init_from="pretrain"),
    Method("full", "Full (LG + C-Focal + samp.)", "longtail/full.yaml", init_from="pretrain"),
    # not in seeds/001: Scratch with as many steps as pre-training + fine-tuning take together
    Method("scratch_long", "Scratch (CE), 1200 steps", "longtail/scratch_long.yaml"),
)

# seeds/001 Table 1 (ScanNet200 val, mIoU %): head, common, tail, all
PAPER_MIOU = {
    "scratch": (48.29, 19.08, 7.86, 25.02),
    "sampling": (48.46, 18.97, 9.22, 25.49),
    "cb_focal": (48.10, 20.28, 9.38, 25.86),
    "grounded": (50.39, 22.84, 10.10, 27.73),
    "full": (51.51, 22.68, 12.41, 28.87),
}


def train_longtail_methods(configs_dir: Optional[str | Path], out_dir: str | Path,
                           methods: Sequence[Method] = METHODS, progress: bool = True) -> dict[str, Path]:
    """Train every row (and the shared pre-training stage first) into ``out_dir/<key>/``, resuming runs that
    were interrupted; ``configs_dir``: the configs folder (None: the packaged configs). Returns row key -> final
    checkpoint (``out_dir/<key>/last.pt``)."""
    return train_methods(configs_dir, out_dir, methods, prerequisites=(PRETRAIN,), progress=progress)


def evaluate_checkpoint(path: str | Path, seeds: Sequence[int], progress: bool = True) -> SemanticResult:
    """Semantic metrics of a checkpoint's semantic head on long-tail scenes (the ``seeds``), grouped by the
    benchmark's head / common / tail split."""
    loaded = load_model(path)
    model, exp = loaded.model, loaded.config
    scene_cfg = LongtailSceneConfig(**exp.data.longtail)
    scenes = (generate_longtail_scene(s, scene_cfg) for s in seeds)
    confusion = evaluate_semantic(model, scenes, exp.data.voxel_size, SemanticConfusion(model.cfg.channel_ids()),
                                  exp.data.semantic_ignore, progress=progress, desc=Path(path).parent.name,
                                  total=len(seeds))
    return confusion.result(LONGTAIL_CLASS_NAMES, longtail_class_splits())


def _row_values(res: SemanticResult) -> dict[str, list[float]]:
    """metric -> [head, common, tail, all] in %."""
    groups, overall = res.group_means(), res.means()
    return {metric: [100 * groups[g][metric] for g in GROUPS] + [100 * overall[metric]] for metric in overall}


def table_text(results: dict[str, SemanticResult], methods: Sequence[Method] = METHODS) -> str:
    """The seeds/001 Table 1 layout: mIoU, precision and recall for head / common / tail / all (%)."""
    cols = [f"{m[:4]} {g}" for m in ("mIoU", "Prec", "Rec") for g in (*GROUPS, "all")]
    head = f"{'method':<30}" + "".join(f"{c:>12}" for c in cols)
    lines = [head, "-" * len(head)]
    for m in methods:
        if m.key not in results:
            continue
        vals = _row_values(results[m.key])
        lines.append(f"{m.title:<30}" + "".join(f"{v:>12.1f}" for k in ("miou", "mean_precision", "mean_recall")
                                                  for v in vals[k]))
    lines.append("")
    lines.append("seeds/001 Table 1 on ScanNet200 (mIoU head / common / tail / all): " + "; ".join(
        f"{m.title} {' / '.join(f'{v:.1f}' for v in PAPER_MIOU[m.key])}" for m in methods if m.key in PAPER_MIOU))
    return "\n".join(lines)


def table_csv(results: dict[str, SemanticResult], methods: Sequence[Method] = METHODS) -> str:
    """CSV: method, metric, head, common, tail, all (%)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "metric", *GROUPS, "all"])
    for m in methods:
        if m.key in results:
            for metric, vals in _row_values(results[m.key]).items():
                w.writerow([m.key, metric, *[f"{v:.2f}" for v in vals]])
    return buf.getvalue()
