"""The training loop every trainer shares: run folders, resume, the epoch loop (cosine learning rate, JSONL
metrics, atomic checkpoints, best.pt by validation), validation of a segmenting model, loss curves."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml
from tqdm import tqdm

from mtml.config import ExperimentConfig
from mtml.data.registry import class_set, label_names
from mtml.errors import InputError
from mtml.eval.scenes import evaluate_scenes, evaluate_semantic, model_segmenter
from mtml.eval.semantic import SemanticConfusion
from mtml.io.atomic import atomic_path, atomic_write_text
from mtml.model.model import MTMLNet, load_checkpoint, read_checkpoint, save_checkpoint
from mtml.train.weight_average import WeightAverage

LOSS_CURVES = {"loss": "total", "feat": "feature", "dir": "direction", "sem": "semantic", "bce": "mask BCE",
               "dice": "mask Dice", "area": "area", "p2p": "point-to-point"}
VAL_CURVES = {"ap50": "instance mean AP50", "miou": "mIoU (semantic, or referring)", "acc50": "referring Acc@0.5"}


def lr_at(step: int, total: int, cfg: ExperimentConfig) -> float:
    """Learning rate at a global step: constant, or cosine decay to 5% of the base rate."""
    if cfg.train.lr_schedule == "constant" or total <= 1:
        return cfg.train.lr
    return cfg.train.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))


def plot_curves(metrics_path: Path, out_png: Path) -> None:
    """Picture of the training losses per epoch and the validation metrics (%) (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    vals = [r for r in rows if r.get("kind") == "val"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for key, name in LOSS_CURVES.items():
        if epochs and key in epochs[0]:
            ax[0].plot([r["epoch"] for r in epochs], [r[key] for r in epochs], "o-" if key == "loss" else "s--", label=name)
    ax[0].set_xlabel("epoch"), ax[0].set_ylabel("training loss"), ax[0].legend()
    for key, name in VAL_CURVES.items():
        if vals and key in vals[0]:
            ax[1].plot([r["epoch"] for r in vals], [100 * r[key] for r in vals], "o-", label=name)
    ax[1].set_xlabel("epoch"), ax[1].set_ylabel("validation (%)"), ax[1].legend()
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def validate(model: MTMLNet, cfg: ExperimentConfig, val_scenes) -> dict:
    """Validation metrics on the validation scenes (zero-argument Scene makers): instance AP / AP50 / AP25
    when the instance heads train, semantic mIoU (fraction) when the semantic head does. A model with a
    semantic head is validated the way it will be used: on its own predicted labels."""
    model.eval()
    metrics = {}
    confusion = None
    if model.semantic_head is not None:
        confusion = SemanticConfusion(cfg.model.channel_ids())
    scenes = (make() for make in val_scenes)
    if cfg.loss.instance:
        segment = model_segmenter(model, cfg.cluster, cfg.data.voxel_size, use_given_labels=confusion is None)
        res = evaluate_scenes(segment, scenes, class_set(cfg.data.benchmark), cfg.data.val_min_region_size,
                              desc="val", semantic=confusion, semantic_ignore=cfg.data.semantic_ignore)
        metrics.update({"ap": float(res.mean_ap), "ap50": float(res.mean_ap50), "ap25": float(res.mean_ap25)})
    elif confusion is not None:
        evaluate_semantic(model, scenes, cfg.data.voxel_size, confusion, cfg.data.semantic_ignore, desc="val",
                          total=len(val_scenes))
    if confusion is not None:
        metrics["miou"] = float(confusion.result(label_names(cfg.data.benchmark)).miou)
    model.train()
    return metrics


def selection_score(metrics: dict, select_by: str) -> float:
    """The validation number that picks best.pt: "ap50", "miou", or "both" (their mean)."""
    if select_by == "both":
        return (metrics["ap50"] + metrics["miou"]) / 2
    return metrics[select_by]


def load_matching_weights(model: torch.nn.Module, src: torch.nn.Module, source: str, skip: tuple = ()) -> list:
    """Copy into ``model`` every tensor of ``src`` with the same name and shape, except names starting with a
    prefix in ``skip``; returns (and prints) the names of the model's tensors that start fresh (not in ``src``,
    another shape, e.g. a new head or a stem for other input features, or skipped)."""
    own = model.state_dict()
    usable = {k: v for k, v in src.state_dict().items()
              if k in own and own[k].shape == v.shape and not k.startswith(tuple(skip))}
    model.load_state_dict(usable, strict=False)
    fresh = [k for k in own if k not in usable]
    if fresh:
        print(f"{source}: {len(fresh)} tensors start fresh (not in it, another shape, or skipped): "
              f"{', '.join(fresh[:4])}{' ...' if len(fresh) > 4 else ''}")
    return fresh


def start_run(cfg: ExperimentConfig, out_dir: str | os.PathLike) -> tuple[Path, Path, Path]:
    """Create the run folder, set the thread count and the seed; returns (folder, its last.pt, its
    metrics.jsonl)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    torch.manual_seed(cfg.train.seed)
    return out, out / "last.pt", out / "metrics.jsonl"


@dataclass
class FrozenModelRun:
    """A run that trains one head of a model whose other weights are frozen (see ``start_frozen_model_run``)."""

    out: Path
    model: MTMLNet
    opt: torch.optim.Optimizer
    start_epoch: int
    best_score: float
    elapsed: float
    class_counts: list


def start_frozen_model_run(cfg: ExperimentConfig, out_dir: str | os.PathLike, resume: bool,
                           init_checkpoint: Optional[str], head: str, init_help: str) -> FrozenModelRun:
    """Set up a run that trains only ``head`` (the model's attribute, e.g. "referring_head"): the run folder
    (``start_run``, config.yaml), the model of ``cfg.model`` resumed from ``last.pt``, or else the weights of
    ``init_checkpoint`` with the head starting fresh (also when that checkpoint has one), every other weight
    frozen in eval mode, Adam over the head. The frozen model's class counts and instance settings (its class size
    prior) are kept: ``cfg.cluster.class_sizes`` is set from them. ``init_help``: what --init must be, for the error."""
    out, last, metrics_path = start_run(cfg, out_dir)
    model = MTMLNet(cfg.model)
    start_epoch, best_score, elapsed, state = 0, -1.0, 0.0, None
    if resume and last.exists():
        model, state = load_checkpoint(last)
        source_state = state
        start_epoch, best_score, elapsed = resume_point(last, state)
    else:
        if not init_checkpoint:
            raise InputError(None, f"training the {head.replace('_', ' ')} needs --init: {init_help}")
        src, source_state = load_checkpoint(init_checkpoint)
        load_matching_weights(model, src, init_checkpoint, skip=(f"{head}.",))
        if metrics_path.exists():
            metrics_path.unlink()
    cfg.cluster.class_sizes = source_state.get("experiment", {}).get("cluster", {}).get("class_sizes",
                                                                                          cfg.cluster.class_sizes)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(f"{head}."))
    model.eval()  # frozen parts: batch norm statistics stay as trained
    getattr(model, head).train()
    opt = torch.optim.Adam(getattr(model, head).parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    if state is not None:
        opt.load_state_dict(state["optimizer_state"])
        torch.set_rng_state(state["torch_rng"])
    atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return FrozenModelRun(out, model, opt, start_epoch, best_score, elapsed, source_state.get("class_voxel_counts", []))


def resume_point(last: Path, state: dict) -> tuple[int, float, float]:
    """(first epoch to run, best validation score so far, training seconds so far) of a run resumed from
    its ``last`` checkpoint's ``state``."""
    print(f"resuming from {last} after epoch {state['epoch']}")
    return state["epoch"] + 1, state.get("best_score", -1.0), state.get("train_seconds", 0.0)


def fit_epochs(cfg: ExperimentConfig, out: Path, model: MTMLNet, opt: torch.optim.Optimizer, num_items: int,
               step_losses, validate_epoch, checkpoint_extra, start_epoch: int = 0, best_score: float = -1.0,
               elapsed: float = 0.0, progress: bool = True, shown=("ap50", "miou")) -> Path:
    """The epoch loop every trainer shares: cosine learning rate, one optimizer step per training item, JSONL
    metrics, atomic ``last.pt`` every epoch (before validating: a failed validation never costs an epoch; its
    ``val_pending`` says whether that epoch's validation is still to run, and a resumed run runs it first),
    ``best.pt`` at the best validation score, and ``curves.png``. Returns ``out/last.pt``. With
    ``train.ema_decay`` set, validation and both checkpoints use the moving average of the weights
    (``mtml.train.weight_average``).

    step_losses(index, epoch) -> dict of scalar tensors with "loss" (the one to minimise) for training item
    ``index`` in [0, num_items); validate_epoch() -> (metrics dict of fractions, selection score);
    checkpoint_extra(epoch, best_score, seconds) -> what a checkpoint keeps besides the weights. ``shown``: the
    validation metrics printed after each validation.
    """
    last, best, metrics_path = out / "last.pt", out / "best.pt", out / "metrics.jsonl"
    steps_per_epoch = num_items if cfg.train.max_steps_per_epoch is None else min(num_items, cfg.train.max_steps_per_epoch)
    total_steps = steps_per_epoch * cfg.train.epochs

    def log(row: dict) -> None:
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    resumed = read_checkpoint(last) if start_epoch > 0 else {}  # a resumed run starts from last.pt
    average = WeightAverage(model, cfg.train.ema_decay) if cfg.train.ema_decay else None
    if average is not None and start_epoch > 0:  # last.pt holds the average; the optimizer's weights ride along
        saved = resumed.get("training_weights")
        if saved is None:
            raise InputError(str(last), "was written without train.ema_decay: resume it with the setting it ran with")
        average.resume(saved)
    averaged = average.applied if average is not None else contextlib.nullcontext

    def validate_and_keep_best(epoch: int, extra: dict, loss_text: str) -> None:
        """Validate after ``epoch`` (0-based; inside ``averaged()``), log and print it, write best.pt when the
        score is the best so far, and rewrite last.pt (its checkpoint ``extra``) as validated."""
        nonlocal best_score
        val, score = validate_epoch()
        log({"kind": "val", "epoch": epoch + 1, "seconds": elapsed, **val})
        text = "  ".join(f"val {k} {100 * v:.1f}" for k, v in val.items() if k in shown)
        print(f"epoch {epoch + 1}: {loss_text}  {text}  ({elapsed:.0f} s)")
        if score > best_score:
            best_score = score
            save_checkpoint(best, model, checkpoint_extra(epoch, best_score, elapsed))
            extra["best_score"] = best_score
        extra["val_pending"] = False
        save_checkpoint(last, model, extra)

    if resumed.get("val_pending"):  # the run stopped while validating the epoch last.pt holds: validate it now
        pending = {k: v for k, v in resumed.items() if k not in ("format", "model_config", "model_state")}
        with averaged():
            validate_and_keep_best(start_epoch - 1, pending, "(validation resumed)")
        plot_curves(metrics_path, out / "curves.png")

    for epoch in range(start_epoch, cfg.train.epochs):
        t_epoch = time.perf_counter()
        order = np.random.default_rng([cfg.train.seed, epoch]).permutation(num_items)[:steps_per_epoch]
        sums: dict = {}
        bar = tqdm(order, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not progress)
        for i, idx in enumerate(bar):
            step = epoch * steps_per_epoch + i
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, cfg)
            losses = step_losses(int(idx), epoch)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            if average is not None:
                average.update()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            if (i + 1) % cfg.train.log_every == 0:
                bar.set_postfix(loss=f"{sums['loss'] / (i + 1):.3f}")
                log({"kind": "step", "epoch": epoch + 1, "step": step + 1, "lr": opt.param_groups[0]["lr"],
                     **{k: v.item() for k, v in losses.items()}})
        elapsed += time.perf_counter() - t_epoch
        row = {"kind": "epoch", "epoch": epoch + 1, "seconds": elapsed, **{k: v / len(order) for k, v in sums.items()}}
        log(row)
        extra = checkpoint_extra(epoch, best_score, elapsed)
        extra.update({"optimizer_state": opt.state_dict(), "torch_rng": torch.get_rng_state()})
        if average is not None:
            extra["training_weights"] = average.training_weights()
        extra["val_pending"] = (epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == cfg.train.epochs
        with averaged():  # checkpoints and validation see the averaged weights when train.ema_decay is set
            save_checkpoint(last, model, extra)
            if extra["val_pending"]:
                validate_and_keep_best(epoch, extra, f"loss {row['loss']:.4f}")
        plot_curves(metrics_path, out / "curves.png")
    return last


def checkpoint_extra(cfg: ExperimentConfig, epoch: int, best_score: float, seconds: float, class_counts) -> dict:
    """What inference needs besides the weights: the experiment config (voxel size, clustering, classes), and
    the training class frequencies (voxels per class channel)."""
    return {"epoch": epoch, "best_score": best_score, "train_seconds": seconds, "experiment": cfg.to_dict(),
            "class_names": label_names(cfg.data.benchmark), "class_voxel_counts": np.asarray(class_counts).tolist()}
