"""``mtml-bench``: paper-table reproductions.

  mtml-bench toy-table1 [--multi-task CKPT] [--fe-only CKPT] [--train] [--out DIR]
  mtml-bench toy-generalization [--checkpoint CKPT] [--scenes N]
  mtml-bench toy-plain [--checkpoint CKPT] [--scenes N] [--split val] [--vote PASSES]
                                                          (semantic head + instances, labels removed)
  mtml-bench longtail [--train] [--runs DIR] [--scenes N]  (seeds/001 Table 1 on the long-tail benchmark)
  mtml-bench referring [--train] [--init CKPT] [--runs DIR] [--scenes N]  (seeds/002 ablation, referring benchmark)
  mtml-bench scannet-mini [--scans DIR] [--folds N] [--epochs E] [--max-steps S] [--with-scratch] [--runs DIR]
                                                          (seeds/004 Table 2, leave-one-space-out on real scans)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtml.cli import int_between, positive_int, run_command
from mtml.io.atomic import check_output_folder
from mtml.predict.voting import MAX_PASSES


def _checkpoints(args) -> tuple[str, str]:
    """The multi-task and FE-only checkpoints: given, trained now (--train), or the bundled ones."""
    from mtml.predict.checkpoint import resolve_checkpoint

    if args.train:
        from mtml.config import find_config, load_config
        from mtml.train.segment import train

        trained = {}
        for key, cfg_name in (("multi_task", "toy/toy.yaml"), ("fe_only", "toy/fe_only.yaml")):
            cfg = load_config(find_config(cfg_name, args.configs))
            trained[key] = str(train(cfg, Path(args.out) / f"train_{key}", resume=True))
        return trained["multi_task"], trained["fe_only"]
    return (args.multi_task or resolve_checkpoint("toy_multitask"),
            args.fe_only or resolve_checkpoint("toy_fe_only"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mtml-bench", description="Reproduce the paper's tables.")
    sub = p.add_subparsers(dest="command", required=True)
    t1 = sub.add_parser("toy-table1", help="MTML Table 1: AP50 per class on the 100 toy test scenes")
    t1.add_argument("--multi-task", default=None, help="checkpoint (default: bundled toy_multitask.pt)")
    t1.add_argument("--fe-only", default=None, help="checkpoint (default: bundled toy_fe_only.pt)")
    t1.add_argument("--train", action="store_true", help="train both models from toy/toy.yaml and toy/fe_only.yaml "
                                                         "first (about 1 h each)")
    t1.add_argument("--configs", default=None, help="configs folder holding toy/toy.yaml and toy/fe_only.yaml (with "
                                                     "--train; default: the configs installed with mtml)")
    t1.add_argument("--scenes", type=positive_int, default=None, help="evaluate on the first N test scenes only")
    t1.add_argument("--out", default="mtml_bench", help="folder for table1.csv (default mtml_bench)")
    gen = sub.add_parser("toy-generalization",
                         help="model vs connected components on unseen, harder toy scenes (more boxes, more contact)")
    gen.add_argument("--checkpoint", default=None, help="checkpoint (default: bundled toy_multitask.pt)")
    gen.add_argument("--scenes", type=positive_int, default=100)
    gen.add_argument("--out", default="mtml_bench")
    plain = sub.add_parser("toy-plain", help="the plain-scan model on the toy test scenes with their labels removed: "
                                             "semantic IoU per class and instance AP50")
    plain.add_argument("--checkpoint", default=None, help="checkpoint with a semantic head (default: bundled toy.pt)")
    plain.add_argument("--scenes", type=positive_int, default=None, help="evaluate on the first N scenes only")
    plain.add_argument("--split", choices=("test", "val"), default="test",
                       help="toy test scenes 900-999 (default) or the validation scenes 100000-100099")
    plain.add_argument("--vote", type=int_between(1, MAX_PASSES), default=1, metavar="PASSES",
                       help="vote each point's label over this many turned, shifted and mirrored copies of the scene "
                            f"(1-{MAX_PASSES}; mtml.predict.voting; default 1: one pass)")
    plain.add_argument("--out", default="mtml_bench")
    lt = sub.add_parser("longtail", help="seeds/001 Table 1: semantic mIoU / precision / recall over head, common, "
                                         "tail on the long-tail benchmark's test scenes")
    lt.add_argument("--train", action="store_true", help="train the rows from configs longtail/*.yaml first "
                                                         "(resumes interrupted runs)")
    lt.add_argument("--configs", default=None, help="configs folder holding longtail/*.yaml (with --train; default: "
                                                     "the configs installed with mtml)")
    lt.add_argument("--runs", default="runs/longtail", help="folder of the runs: <runs>/<row>/last.pt")
    lt.add_argument("--scenes", type=positive_int, default=None, help="evaluate on the first N test scenes only")
    lt.add_argument("--out", default="mtml_bench")
    ref = sub.add_parser("referring", help="seeds/002 ablation: the referring head with and without PWCA, QSA, "
                                           "L_area, L_p2p; mIoU / Acc@0.25 / Acc@0.5 on validation and hand-made "
                                           "descriptions, ms per scan")
    ref.add_argument("--train", action="store_true", help="train the rows from configs referring/ablation*.yaml "
                                                          "first (resumes interrupted runs; about 15 min on 2 cores)")
    ref.add_argument("--init", default=None, help="the model whose frozen features the rows train on (default: "
                                                  "bundled toy.pt; its own referring head is not used)")
    ref.add_argument("--checkpoint", default=None, help="score this one model (e.g. the bundled toy.pt) instead of "
                                                        "the ablation rows")
    ref.add_argument("--configs", default=None, help="configs folder holding referring/ablation*.yaml (with --train; "
                                                      "default: the configs installed with mtml)")
    ref.add_argument("--runs", default="runs/referring", help="folder of the runs: <runs>/<row>/best.pt")
    ref.add_argument("--scenes", type=positive_int, default=None, help="evaluate on the first N validation scenes only")
    ref.add_argument("--handmade", action="append", default=None, help="ScanRefer-style JSON of extra descriptions, "
                     "scored as a set of its own; repeatable (default: every bundled hand-made set)")
    ref.add_argument("--out", default="mtml_bench")
    sm = sub.add_parser("scannet-mini", help="seeds/004 Table 2 on real ScanNet scans, leave-one-space-out: train "
                                             "scannet/mini.yaml per fold, instance AP and semantic mIoU pooled over "
                                             "the held-out scans (about 8 min of training per fold)")
    sm.add_argument("--scans", default="../shared/data/scannet_mini/scans",
                    help="folder of labelled scans (default ../shared/data/scannet_mini/scans)")
    sm.add_argument("--folds", type=positive_int, default=None, help="run the first N folds only (default: all)")
    sm.add_argument("--epochs", type=positive_int, default=None, help="train.epochs of every run (smoke runs)")
    sm.add_argument("--max-steps", type=positive_int, default=None, help="train.max_steps_per_epoch (smoke runs)")
    sm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="further config overrides")
    sm.add_argument("--with-scratch", action="store_true", help="also train each fold with random class prototypes "
                                                                "(train.classifier_init: random), same steps")
    sm.add_argument("--configs", default=None, help="configs folder holding scannet/mini.yaml (default: the configs "
                                                     "installed with mtml)")
    sm.add_argument("--runs", default="runs/scannet_mini", help="folder of the folds: <runs>/<space>/ (resumed)")
    sm.add_argument("--out", default="mtml_bench")
    args = p.parse_args(argv)
    check_output_folder(args.out, "--out")
    if (getattr(args, "train", False) or args.command == "scannet-mini") and hasattr(args, "runs"):
        check_output_folder(args.runs, "--runs")

    from mtml.data.registry import split_seeds
    from mtml.io.atomic import atomic_write_text
    from mtml.tables import toy_table1 as t

    out = Path(args.out)
    if args.command == "toy-table1":
        multi, fe = _checkpoints(args)
        seeds = list(split_seeds("toy", "test"))[: args.scenes]
        rows = t.evaluate_methods(t.default_segmenters(multi, fe), seeds)
        print(f"MTML Table 1: AP50 (%) on {len(seeds)} toy test scenes\n" + t.table1_text(rows))
        atomic_write_text(out / "table1.csv", t.table1_csv(rows))
        print(f"wrote {out / 'table1.csv'}")
    elif args.command == "toy-plain":
        _toy_plain(args, out)
    elif args.command == "longtail":
        _longtail(args, out)
    elif args.command == "referring":
        _referring(args, out)
    elif args.command == "scannet-mini":
        _scannet_mini(args, out)
    else:
        from mtml.predict.checkpoint import resolve_checkpoint

        seeds = split_seeds("toy", "harder")[: args.scenes]
        ckpt = args.checkpoint or resolve_checkpoint("toy_multitask")
        rows = t.evaluate_methods(t.default_segmenters(ckpt, None), seeds, t.HARDER_TOY_CONFIG)
        print(f"Generalisation: AP50 (%) on {args.scenes} unseen scenes with {t.HARDER_TOY_CONFIG.num_boxes} boxes "
              f"and contact share {t.HARDER_TOY_CONFIG.contact_fraction}\n" + t.table1_text(rows, with_paper=False))
        atomic_write_text(out / "generalization.csv", t.table1_csv(rows))
    return 0


def _trained_rows(runs: str, methods, file_name: str) -> dict:
    """row key -> ``runs/<key>/<file_name>`` for every row; InputError naming the first missing checkpoint."""
    from mtml.errors import InputError

    checkpoints = {m.key: Path(runs) / m.key / file_name for m in methods}
    missing = [str(p) for p in checkpoints.values() if not p.exists()]
    if missing:
        raise InputError(missing[0], f"no such checkpoint ({len(missing)} rows missing; train them with --train)")
    return checkpoints


def _toy_plain(args, out: Path) -> None:
    """mtml-bench toy-plain: print and write (toy_plain[_val][_voteN].json) semantic and instance metrics on plain
    toy scans."""
    import json

    from mtml.predict.checkpoint import resolve_checkpoint
    from mtml.data.registry import split_seeds
    from mtml.data.toy import TOY_CLASS_NAMES, TOY_INSTANCE_CLASS_IDS
    from mtml.io.atomic import atomic_write_text
    from mtml.tables.plain_scans import box_class_miou, evaluate_toy_plain

    ckpt = args.checkpoint or resolve_checkpoint("toy")
    seeds = list(split_seeds("toy", args.split))[: args.scenes]
    ap, sem = evaluate_toy_plain(ckpt, seeds, vote_passes=args.vote)
    ap50 = {TOY_CLASS_NAMES[c]: 100 * float(v) for c, v in zip(TOY_INSTANCE_CLASS_IDS, ap.ap50)}
    votes = f", labels voted over {args.vote} passes" if args.vote > 1 else ""
    print(f"Plain toy scans ({len(seeds)} {args.split} scenes, labels removed{votes}; {ckpt})\n{sem.table()}")
    print(f"semantic mIoU: five box classes {100 * box_class_miou(sem):.1f}, all six classes {100 * sem.miou:.1f}")
    print("instance AP50 (%): " + "  ".join(f"{k} {v:.1f}" for k, v in ap50.items()) + f"  mean {100 * ap.mean_ap50:.1f}")
    result = {"checkpoint": ckpt, "split": args.split, "scenes": len(seeds), "vote_passes": args.vote,
              "box_miou": 100 * box_class_miou(sem), "semantic": sem.to_dict(), "instance_ap50": ap50,
              "instance_mean_ap50": 100 * float(ap.mean_ap50)}
    name = "toy_plain" + ("_val" if args.split == "val" else "") + (f"_vote{args.vote}" if args.vote > 1 else "")
    atomic_write_text(out / f"{name}.json", json.dumps(result, indent=2) + "\n")


def _longtail(args, out: Path) -> None:
    """mtml-bench longtail: train (optionally) and evaluate every row; print the table, write longtail.csv."""
    from mtml.data.registry import split_seeds
    from mtml.io.atomic import atomic_write_text
    from mtml.tables import longtail_table as lt

    if args.train:
        checkpoints = lt.train_longtail_methods(args.configs, args.runs)
    else:
        checkpoints = _trained_rows(args.runs, lt.METHODS, "last.pt")
    seeds = list(split_seeds("longtail", "test"))[: args.scenes]
    results = {key: lt.evaluate_checkpoint(path, seeds) for key, path in checkpoints.items()}
    print(f"Long-tail benchmark, {len(seeds)} test scenes (%)\n" + lt.table_text(results))
    atomic_write_text(out / "longtail.csv", lt.table_csv(results))
    print(f"wrote {out / 'longtail.csv'}")


def _referring(args, out: Path) -> None:
    """mtml-bench referring: train (optionally) and evaluate every ablation row; print the table, write
    referring.csv."""
    from mtml.predict.checkpoint import resolve_checkpoint
    from mtml.data.referring import HANDMADE_SETS
    from mtml.io.atomic import atomic_write_text
    from mtml.tables import referring_table as rt

    methods = rt.METHODS
    if args.checkpoint:
        methods = (rt.Method("model", args.checkpoint, ""),)
        checkpoints = {"model": Path(args.checkpoint)}
    elif args.train:
        checkpoints = rt.train_ablation(args.configs, args.runs, args.init or resolve_checkpoint("toy"))
    else:
        checkpoints = _trained_rows(args.runs, rt.METHODS, "best.pt")
    results = rt.evaluate_rows(checkpoints, args.scenes, args.handmade or HANDMADE_SETS)
    print("Referring segmentation (%)\n" + rt.table_text(results, methods))
    atomic_write_text(out / "referring.csv", rt.table_csv(results, methods))
    print(f"wrote {out / 'referring.csv'}")


def _scannet_mini(args, out: Path) -> None:
    """mtml-bench scannet-mini: train and evaluate every fold; print the table, write scannet_mini.csv."""
    from mtml.tables.scannet_mini import run_benchmark

    overrides = [*([f"train.epochs={args.epochs}"] if args.epochs else []),
                 *([f"train.max_steps_per_epoch={args.max_steps}"] if args.max_steps else []), *args.set]
    text, csv_path = run_benchmark(args.scans, args.runs, out, args.folds, overrides, args.with_scratch, args.configs)
    print(text)
    print(f"wrote {csv_path}")


def entry() -> None:
    sys.exit(run_command(main))


if __name__ == "__main__":
    entry()
