"""The trainer registry: ``train.task`` -> the function that trains it. Every trainer takes (cfg, out_dir,
resume, progress, init_checkpoint) and returns the run's last.pt."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

from mtml.config import ExperimentConfig
from mtml.errors import InputError
from mtml.train.instances import INSTANCE_HEAD_OF_TASK, train_instance_head
from mtml.train.referring import train_referring
from mtml.train.segment import train

Trainer = Callable[[ExperimentConfig, "str | os.PathLike", bool, bool, Optional[str]], Path]

TRAINERS: dict[str, Trainer] = {
    "segment": train,  # backbone, instance and semantic heads
    "refer": train_referring,  # the referring head on a frozen model
    **{task: train_instance_head for task in INSTANCE_HEAD_OF_TASK},  # instance classifier, proposal scorer
}


def run_training(cfg: ExperimentConfig, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
                 init_checkpoint: Optional[str] = None) -> Path:
    """Run the trainer ``cfg.train.task`` names (``TRAINERS``); returns the run's last.pt."""
    try:
        trainer = TRAINERS[cfg.train.task]
    except KeyError:
        raise InputError(None, f"unknown train.task {cfg.train.task!r} ({', '.join(TRAINERS)})") from None
    return trainer(cfg, out_dir, resume, progress, init_checkpoint)
