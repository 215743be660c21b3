"""``mtml-eval``: instance-segmentation AP as ScanNet's benchmark computes it.

Subcommands:

* ``mtml-eval scannet --pred-path P --gt-path G --output-file F [--benchmark scannet20|scannet200]
  [--min-region-size 100] [--require-all-scenes]``: the official ``evaluate_semantic_instance.py`` on the benchmark
  layout (``P/<scene>.txt`` + masks, ``G/<scene>.txt``). Like the official script it evaluates every prediction file,
  fails if one has no ground truth, and writes the same CSV; ``--require-all-scenes`` also fails when a
  ground-truth scene has no prediction file (as the benchmark server would).
* ``mtml-eval instances --gt A.ply [B.ply ...] --pred-dir D --output-file F [--classes toy]``: ``mtml-infer``
  outputs (``D/<name>_instances.ply`` + ``.json``) against ground-truth PLYs with ``label`` and ``instance``.

A new subcommand adds an ``_add_<name>_parser(subparsers)`` (listed in ``SUBCOMMANDS``) whose handler builds its
scenes and class set and calls ``evaluate_and_report``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

import numpy as np

from mtml.cli import int_at_least, run_command, subcommand_main
from mtml.data.registry import class_set
from mtml.errors import InputError
from mtml.eval.instance_ap import InstanceAPResult, evaluate_instances
from mtml.io.atomic import atomic_write_text, check_output_file
from mtml.io.benchmark import load_benchmark_scene, pair_benchmark_scenes
from mtml.labels import ClassSet
from mtml.scene import ScenePredictions


def evaluate_and_report(
    scenes: Iterable[tuple[np.ndarray, ScenePredictions]],
    classes: ClassSet,
    output_file: str | os.PathLike,
    min_region_size: int = 100,
    out: TextIO | None = None,
) -> InstanceAPResult:
    """Evaluate ``scenes`` (iterable of ``(gt_ids int [N], ScenePredictions)``, read lazily one at a time) on
    ``classes``, print the table (plus the class set's group means, e.g. ScanNet200 head/common/tail) to ``out``
    (default stdout) and write the official CSV to ``output_file`` atomically. Returns the result."""
    out = sys.stdout if out is None else out
    result = evaluate_instances(scenes, classes.ids, classes.names, min_region_size=min_region_size)
    print(result.table(classes.groups or None), file=out)
    atomic_write_text(output_file, result.to_csv())
    print(f"wrote {output_file}", file=out)
    return result


def _add_min_region_size(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-region-size", type=int_at_least(0), default=100,
                   help="minimum vertices (points) of gt instances and predictions (default: 100)")


def _run_scannet(args: argparse.Namespace) -> int:
    check_output_file(args.output_file)
    classes = class_set(args.benchmark)
    pairs = pair_benchmark_scenes(
        args.pred_path, args.gt_path, require_all_gt=args.require_all_scenes, exclude=[args.output_file]
    )
    print(f"evaluating {len(pairs)} scenes ({classes.name}, {len(classes)} classes)...")
    scenes = (load_benchmark_scene(pred_file, gt_file, classes.ids) for _, pred_file, gt_file in pairs)
    evaluate_and_report(scenes, classes, args.output_file, args.min_region_size)
    return 0


def _add_scannet_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "scannet",
        help="ScanNet benchmark layout (as evaluate_semantic_instance.py)",
        description="Evaluate predictions in the ScanNet instance benchmark layout exactly as ScanNet's "
        "evaluate_semantic_instance.py does; print the table and write its CSV.",
    )
    p.add_argument("--pred-path", required=True, help="folder of <scene>.txt prediction files (masks below it)")
    p.add_argument("--gt-path", required=True, help="folder of <scene>.txt ground-truth files (label*1000+instance)")
    p.add_argument("--output-file", required=True, help="CSV to write (class,class id,ap,ap50,ap25)")
    p.add_argument(
        "--benchmark",
        choices=["scannet20", "scannet200"],
        default="scannet20",
        help="class set: the 18 ScanNet classes, or ScanNet200's 198 (default: scannet20)",
    )
    _add_min_region_size(p)
    p.add_argument(
        "--require-all-scenes", action="store_true", help="fail when a ground-truth scene has no prediction file"
    )
    p.set_defaults(handler=_run_scannet)


def _run_instances(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mtml.eval.scenes import point_predictions
    from mtml.io.instances import read_instance_outputs
    from mtml.io.ply import read_ply
    from mtml.labels import scene_gt_ids

    check_output_file(args.output_file)
    classes = class_set(args.classes)
    gts = [read_ply(p) for p in args.gt]
    for gt in gts:
        if gt.labels is None or gt.instances is None:
            raise InputError(gt.source, "ground truth needs 'label' and 'instance' vertex properties")

    def scenes():
        for gt in gts:
            stem = Path(args.pred_dir) / f"{gt.name}_instances"
            masks, labels, scores = read_instance_outputs(f"{stem}.ply", f"{stem}.json")
            if masks.shape[1] != gt.num_points:
                raise InputError(f"{stem}.ply", f"{masks.shape[1]} points, but {gt.source} has {gt.num_points}")
            yield scene_gt_ids(gt, classes.ids), point_predictions(masks, labels, scores)

    print(f"evaluating {len(gts)} scenes ({classes.name}, {len(classes)} classes)...")
    evaluate_and_report(scenes(), classes, args.output_file, args.min_region_size)
    return 0


def _add_instances_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "instances",
        help="mtml-infer outputs against ground-truth PLYs",
        description="Evaluate <pred-dir>/<name>_instances.{ply,json} written by mtml-infer against ground-truth "
        "PLY files with 'label' and 'instance' vertex properties (ScanNet's rules, at the points).",
    )
    p.add_argument("--gt", nargs="+", required=True, help="ground-truth PLY files")
    p.add_argument("--pred-dir", required=True, help="folder with mtml-infer outputs")
    p.add_argument("--output-file", required=True, help="CSV to write (class,class id,ap,ap50,ap25)")
    p.add_argument("--classes", default="toy", help="class set (default: toy; also scannet20, scannet200)")
    _add_min_region_size(p)
    p.set_defaults(handler=_run_instances)


#: Functions adding one subcommand each; a handler stored as ``handler`` runs it.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_scannet_parser, _add_instances_parser]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the subcommand; returns the exit status.
    Bad input raises InputError (``run_command`` turns it into one line and status 2)."""
    return subcommand_main("mtml-eval", "Instance-segmentation AP (ScanNet rules).", SUBCOMMANDS, argv)


def entry() -> None:
    """Console entry point ``mtml-eval``."""
    sys.exit(run_command(main))


if __name__ == "__main__":
    entry()
