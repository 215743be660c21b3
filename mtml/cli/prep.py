"""``mtml-prep``: turn datasets into HDF5 voxel stores for training (``mtml.io.store``).

Subcommands:

* ``mtml-prep scannet --root R --out store.h5 [--benchmark scannet20|scannet200] [--voxel-size 0.1]
  [--label-map TSV] [--limit N] [--point-map] [--overwrite] [--no-progress]``: every ScanNet scan folder under
  ``R`` (``R/scene*/``), voxelized with per-voxel majority labels (the benchmark's ids) and instances and mean
  colours. Resumable: run it again after an interruption (or with a larger ``--limit``) and it continues.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mtml.cli import positive_float, positive_int, run_command, subcommand_main
from mtml.io.atomic import check_output_file


def _run_scannet(args: argparse.Namespace) -> int:
    from mtml.data.scannet_prep import prep_scannet

    check_output_file(args.out, "--out")
    summary = prep_scannet(
        args.root,
        args.out,
        benchmark=args.benchmark,
        voxel_size=args.voxel_size,
        label_map=args.label_map,
        limit=args.limit,
        with_point_map=args.point_map,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(summary.line())
    return 0


def _add_scannet_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "scannet",
        help="ScanNet v2 scan folders -> voxel store",
        description="Voxelize every ScanNet v2 scan folder under --root (scene*/ with <scene>_vh_clean_2.ply, "
        "segs and aggregation) into an HDF5 voxel store. Resumable: rerun to continue an interrupted build.",
    )
    p.add_argument("--root", required=True, help="folder holding the scene* scan folders (e.g. <ScanNet>/scans)")
    p.add_argument("--out", required=True, help="HDF5 store to write (work goes to OUT.partial until done)")
    p.add_argument("--benchmark", choices=["scannet20", "scannet200"], default="scannet20",
                   help="label ids to keep: NYU40 ids of the 20 ScanNet classes, or ScanNet200 ids "
                        "(default: scannet20)")
    p.add_argument("--voxel-size", type=positive_float, default=0.1, help="voxel edge in metres (default: 0.1)")
    p.add_argument("--label-map", default=None,
                   help="scannetv2-labels.combined.tsv (default: found in the first scan folder, ROOT or ROOT/..)")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N scans (sorted by name)")
    p.add_argument("--point-map", action="store_true", help="also store each scan's vertex -> voxel map")
    p.add_argument("--overwrite", action="store_true", help="rebuild from scratch instead of continuing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_scannet)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the subcommand; returns the exit status.
    Bad input raises InputError (``run_command`` turns it into one line and status 2)."""
    return subcommand_main("mtml-prep", "Prepare datasets as HDF5 voxel stores.", [_add_scannet_parser], argv,
                           metavar="DATASET")


def entry() -> None:
    """Console entry point ``mtml-prep``."""
    sys.exit(run_command(main))


if __name__ == "__main__":
    entry()
