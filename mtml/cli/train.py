"""``mtml-train --config toy/toy.yaml [--out DIR] [--resume] [--seed N]``: train a model."""

from __future__ import annotations

import argparse
import sys
import time

from mtml.cli import nonneg_int, positive_int, run_command
from mtml.config import load_config
from mtml.io.atomic import check_output_folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mtml-train", description="Train an MTML model from a YAML config.")
    p.add_argument("--config", required=True, help="experiment YAML: a file, or a config installed with mtml "
                                                   "by its name in configs/ (toy/toy.yaml)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt if it exists")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="start from these weights (fine-tuning; optimizer and schedule start fresh)")
    p.add_argument("--seed", type=nonneg_int, default=None, help="override train.seed")
    p.add_argument("--epochs", type=positive_int, default=None, help="override train.epochs")
    p.add_argument("--threads", type=nonneg_int, default=None, help="override train.num_threads (0: torch's default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config setting, e.g. --set data.store=scannet_train.h5 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.set)
    if args.seed is not None:
        cfg.train.seed = args.seed
    if args.epochs is not None:
        cfg.train.epochs = args.epochs
    if args.threads is not None:
        cfg.train.num_threads = args.threads
    out = args.out or f"runs/{cfg.name}"
    check_output_folder(out, "--out")
    from mtml.train.trainers import run_training

    t0 = time.perf_counter()
    last = run_training(cfg, out, resume=args.resume, progress=not args.no_progress, init_checkpoint=args.init)
    print(f"done in {time.perf_counter() - t0:.0f} s; checkpoint {last}; metrics {out}/metrics.jsonl")
    return 0


def entry() -> None:
    sys.exit(run_command(main))


if __name__ == "__main__":
    entry()
