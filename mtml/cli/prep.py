"""``mtml-prep``: turn datasets into HDF5 voxel stores for training (``mtml.io.store``).

Subcommands, one per format (``mtml.data.scannet_prep``), all writing the same store:

* ``mtml-prep scannet --root R --out store.h5 [--label-map TSV] ...``: every ScanNet scan folder under ``R``
  (``R/scene*/`` with mesh, segs and aggregation), labelled through the tsv;
* ``mtml-prep votenet --root R --out store.h5 ...``: every VoteNet / mmdetection3d scan in ``R``
  (``<scene>_vert.npy`` + ``_sem_label.npy`` + ``_ins_label.npy``, as ``batch_load_scannet_data.py`` writes them);
* ``mtml-prep pointcept --root R --out store.h5 ...``: every Pointcept scan folder under ``R`` (``<scene>/coord.npy``
  ...; or under ``R/train``, ``R/val``, ``R/test``);
* ``mtml-prep ply --root R --out store.h5 ...``: every PLY file in ``R`` and each scan folder's
  ``<scene>_vh_clean_2.labels.ply``, their ``label`` holding NYU40 ids.

Common options: ``[--benchmark scannet20|scannet200] [--voxel-size 0.1] [--limit N] [--point-map] [--overwrite]
[--no-progress]``. Voxels get per-voxel majority labels (the benchmark's ids: NYU40 ids of the 20 ScanNet classes,
or ScanNet200 ids where the source has them: scan folders and Pointcept) and instances, and mean colours.
Resumable: run it again after an interruption (or with a larger ``--limit``) and it continues.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence

from mtml.cli import positive_float, positive_int, run_command, subcommand_main
from mtml.io.atomic import check_output_file


def _prep_function(name: str) -> Callable:
    """The store builder of format ``name``: ``prep_scannet`` for scan folders, else ``prep_scans`` bound to the
    format (``mtml.data.scannet_prep``, imported when a subcommand runs: it loads h5py and the readers)."""
    from mtml.data.scannet_prep import prep_scannet, prep_scans

    return prep_scannet if name == "scannet" else functools.partial(prep_scans, name)


def _run(args: argparse.Namespace) -> int:
    """Check --out, run the chosen format's prep function and print its one-line summary."""
    check_output_file(args.out, "--out")
    extra = {"label_map": args.label_map} if args.format == "scannet" else {}
    summary = _prep_function(args.format)(
        args.root,
        args.out,
        benchmark=args.benchmark,
        voxel_size=args.voxel_size,
        limit=args.limit,
        with_point_map=args.point_map,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        **extra,
    )
    print(summary.line())
    return 0


#: Subcommand -> (help, description, --root help, --benchmark help).
_FORMATS = {
    "scannet": (
        "ScanNet v2 scan folders -> voxel store",
        "Voxelize every ScanNet v2 scan folder under --root (scene*/ with <scene>_vh_clean_2.ply, segs and "
        "aggregation) into an HDF5 voxel store.",
        "folder holding the scene* scan folders (e.g. <ScanNet>/scans)",
        "label ids to keep: NYU40 ids of the 20 ScanNet classes, or ScanNet200 ids (default: scannet20)",
    ),
    "votenet": (
        "VoteNet / mmdetection3d ScanNet exports (<scene>_vert.npy) -> voxel store",
        "Voxelize every VoteNet / mmdetection3d scan in --root (<scene>_vert.npy with _sem_label.npy and "
        "_ins_label.npy, as batch_load_scannet_data.py writes them) into an HDF5 voxel store.",
        "folder holding the <scene>_vert.npy files (e.g. scannet_train_detection_data)",
        "label ids to keep: NYU40 ids of the 20 ScanNet classes (these files hold NYU40 ids, so scannet20 only)",
    ),
    "pointcept": (
        "Pointcept ScanNet folders (<scene>/coord.npy) -> voxel store",
        "Voxelize every Pointcept scan folder under --root (<scene>/ with coord.npy, color.npy, segment20.npy / "
        "segment200.npy and instance.npy; or those under --root/train, val, test) into an HDF5 voxel store.",
        "folder holding the Pointcept scan folders (e.g. data/scannet/train)",
        "label ids to keep: NYU40 ids of the 20 ScanNet classes (segment20.npy), or ScanNet200 ids "
        "(segment200.npy) (default: scannet20)",
    ),
    "ply": (
        "PLY files with NYU40 'label' (e.g. <scene>_vh_clean_2.labels.ply) -> voxel store",
        "Voxelize every PLY file in --root, and the <scene>_vh_clean_2.labels.ply of each scan folder under it, "
        "into an HDF5 voxel store; the vertex property 'label' holds NYU40 ids (and 'instance', if there, instances).",
        "folder holding the PLY files or the ScanNet scan folders",
        "label ids to keep: NYU40 ids of the 20 ScanNet classes (the labels are NYU40 ids, so scannet20 only)",
    ),
}


def _format_parser_adder(name: str) -> Callable[[argparse._SubParsersAction], None]:
    """The function that adds subcommand ``name`` (a key of ``_FORMATS``) with the common options."""
    help_text, description, root_help, benchmark_help = _FORMATS[name]

    def add(subparsers: argparse._SubParsersAction) -> None:
        p = subparsers.add_parser(name, help=help_text,
                                  description=description + " Resumable: rerun to continue an interrupted build.")
        p.add_argument("--root", required=True, help=root_help)
        p.add_argument("--out", required=True, help="HDF5 store to write (work goes to OUT.partial until done)")
        p.add_argument("--benchmark", choices=["scannet20", "scannet200"], default="scannet20", help=benchmark_help)
        p.add_argument("--voxel-size", type=positive_float, default=0.1, help="voxel edge in metres (default: 0.1)")
        if name == "scannet":
            p.add_argument("--label-map", default=None, help="scannetv2-labels.combined.tsv (default: found in the "
                                                             "first scan folder, ROOT or ROOT/..)")
        p.add_argument("--limit", type=positive_int, default=None, help="only the first N scans (sorted by name)")
        p.add_argument("--point-map", action="store_true", help="also store each scan's point -> voxel map")
        p.add_argument("--overwrite", action="store_true", help="rebuild from scratch instead of continuing")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(handler=_run, format=name)

    return add


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the subcommand; returns the exit status.
    Bad input raises InputError (``run_command`` turns it into one line and status 2)."""
    return subcommand_main("mtml-prep", "Prepare datasets as HDF5 voxel stores.",
                           [_format_parser_adder(name) for name in _FORMATS], argv, metavar="DATASET")


def entry() -> None:
    """Console entry point ``mtml-prep``."""
    sys.exit(run_command(main))


if __name__ == "__main__":
    entry()
