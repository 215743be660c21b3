"""Rows of a paper-table reproduction: each row is a config (named in the packaged configs, e.g.
``longtail/scratch.yaml``) trained with ``mtml-train``'s trainer, possibly starting from another row's checkpoint
or from a given checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from mtml.config import find_config, load_config
from mtml.train.trainers import run_training


@dataclass(frozen=True)
class Method:
    """One row: its key, title, config (its name relative to the configs folder) and where its weights start:
    ``init_from`` names another row's key (trained first), "checkpoint" the checkpoint given to ``train_methods``,
    None nothing."""

    key: str
    title: str
    config: str
    init_from: Optional[str] = None


def train_methods(configs_dir: Optional[str | Path], out_dir: str | Path, methods: Sequence[Method],
                  prerequisites: Sequence[Method] = (), init_checkpoint: Optional[str] = None,
                  progress: bool = True) -> dict[str, Path]:
    """Train every row of ``methods`` into ``out_dir/<key>/``, after the ``prerequisites`` rows that some of
    them start from, resuming runs that were interrupted (``mtml.train.segment.run_training``, so the config's
    ``train.task`` picks the trainer). ``configs_dir``: the folder the rows' configs are named in (None: the
    packaged configs, ``mtml.config.find_config``). Returns row key -> final checkpoint
    (``out_dir/<key>/last.pt``)."""
    needed = {m.init_from for m in methods}
    done: dict[str, Path] = {}
    for method in [*(p for p in prerequisites if p.key in needed), *methods]:
        cfg = load_config(find_config(method.config, configs_dir))
        if method.init_from == "checkpoint":
            init = init_checkpoint
        else:
            init = str(done[method.init_from]) if method.init_from else None
        done[method.key] = run_training(cfg, Path(out_dir) / method.key, resume=True, progress=progress,
                                        init_checkpoint=init)
    return {m.key: done[m.key] for m in methods}
