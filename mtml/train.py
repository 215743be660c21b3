"""Training loop: Adam, augmentation, tqdm progress, JSONL metrics, atomic checkpoints, resume, validation."""

from __future__ import annotations

import json
import math
import os
import time
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml
from tqdm import tqdm

from mtml.config import ExperimentConfig
from mtml.data.dataset import SceneSampleSet
from mtml.errors import InputError
from mtml.io.atomic import atomic_path, atomic_write_text
from mtml.losses.mtml import mtml_loss
from mtml.model.model import MTMLNet, load_checkpoint, save_checkpoint

VAL_SEED_START = 100_000  # validation scenes: seeds far from the benchmark's 0..999


def toy_datasets(cfg: ExperimentConfig):
    """(train set with augmentation, validation scenes (a list of zero-argument Scene makers)) for the toy
    benchmark: train on the benchmark's train split, validate on seeds outside train and test."""
    from mtml.data.toy import ToySceneConfig, generate_scene, toy_scene_seeds

    toy_cfg = ToySceneConfig(**cfg.data.toy)
    train_seeds = toy_scene_seeds("train")[: cfg.data.train_scenes]
    train = SceneSampleSet(train_seeds, partial(generate_scene, config=toy_cfg), cfg.model.num_classes,
                           cfg.data.stuff_classes, cfg.data.voxel_size, augment_seed=cfg.train.seed,
                           class_ids=cfg.model.class_ids)
    val = [partial(generate_scene, s, toy_cfg) for s in range(VAL_SEED_START, VAL_SEED_START + cfg.data.val_scenes)]
    return train, val


def store_datasets(cfg: ExperimentConfig):
    """(train set, validation scene makers) from HDF5 stores written by mtml-prep: each stored grid becomes a
    point cloud of voxel centres that is augmented and re-voxelised like any scan."""
    from mtml.data.voxelize import grid_to_scene
    from mtml.io.store import VoxelStore

    train_store = VoxelStore(cfg.data.store)
    names = train_store.names()
    if cfg.data.val_store:
        val_store = VoxelStore(cfg.data.val_store)
        val_names = val_store.names()[: cfg.data.val_scenes]
    else:
        val_store, val_names = train_store, names[len(names) - min(cfg.data.val_scenes, len(names) - 1):]
        names = [n for n in names if n not in set(val_names)]
    if not names:
        raise InputError(cfg.data.store, "no scenes to train on")
    names = names[: cfg.data.train_scenes]

    def make(store, name):
        return grid_to_scene(store.get(name), name, f"{store.path}:{name}")

    train = SceneSampleSet(names, partial(make, train_store), cfg.model.num_classes, cfg.data.stuff_classes,
                           cfg.data.voxel_size, augment_seed=cfg.train.seed, class_ids=cfg.model.class_ids)
    return train, [partial(make, val_store, n) for n in val_names]


def measure_class_sizes(train_set: SceneSampleSet, max_scenes: int = 200) -> dict:
    """Median voxel count per thing class over (up to ``max_scenes``) un-augmented training scenes."""
    from mtml.cluster.proposals import class_size_prior
    from mtml.data.voxelize import voxelize

    keys = train_set.keys[:max_scenes]
    grids = (voxelize(train_set.make_scene(k), train_set.voxel_size) for k in keys)
    return class_size_prior(grids, train_set.stuff_classes)


def lr_at(step: int, total: int, cfg: ExperimentConfig) -> float:
    """Learning rate at a global step: constant, or cosine decay to 5% of the base rate."""
    if cfg.train.lr_schedule == "constant" or total <= 1:
        return cfg.train.lr
    return cfg.train.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))


def plot_curves(metrics_path: Path, out_png: Path) -> None:
    """Picture of the training loss per epoch and the validation AP50 (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    vals = [r for r in rows if r.get("kind") == "val"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    if epochs:
        ax[0].plot([r["epoch"] for r in epochs], [r["loss"] for r in epochs], "o-", label="total")
        ax[0].plot([r["epoch"] for r in epochs], [r["feat"] for r in epochs], "s--", label="feature")
        ax[0].plot([r["epoch"] for r in epochs], [r["dir"] for r in epochs], "^--", label="direction")
    ax[0].set_xlabel("epoch"), ax[0].set_ylabel("training loss"), ax[0].legend()
    if vals:
        ax[1].plot([r["epoch"] for r in vals], [100 * r["ap50"] for r in vals], "o-")
    ax[1].set_xlabel("epoch"), ax[1].set_ylabel("validation mean AP50 (%)")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def validate(model: MTMLNet, cfg: ExperimentConfig, val_scenes) -> dict:
    """Mean AP / AP50 / AP25 of the model on the validation scenes (zero-argument Scene makers)."""
    from mtml.eval.labels import class_set
    from mtml.eval.scenes import evaluate_scenes, model_segmenter

    model.eval()
    res = evaluate_scenes(model_segmenter(model, cfg.cluster, cfg.data.voxel_size), (make() for make in val_scenes),
                          class_set(cfg.data.benchmark), cfg.data.val_min_region_size, desc="val")
    model.train()
    return {"ap": float(res.mean_ap), "ap50": float(res.mean_ap50), "ap25": float(res.mean_ap25)}


def train(cfg: ExperimentConfig, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
          init_checkpoint: Optional[str] = None) -> Path:
    """Train a model as configured; returns the path of the final checkpoint (``out_dir/last.pt``).

    out_dir receives: config.yaml, metrics.jsonl (one JSON object per line), last.pt (every epoch),
    best.pt (best validation AP50), curves.png. With ``resume`` it continues after the last finished epoch.
    """
    if cfg.data.kind not in ("toy", "store"):
        raise InputError(None, f"unknown data kind {cfg.data.kind!r} (toy or store)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last, best, metrics_path = out / "last.pt", out / "best.pt", out / "metrics.jsonl"
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    torch.manual_seed(cfg.train.seed)
    train_set, val_scenes = toy_datasets(cfg) if cfg.data.kind == "toy" else store_datasets(cfg)
    if cfg.cluster.class_sizes == "auto":
        cfg.cluster.class_sizes = measure_class_sizes(train_set)
        print(f"class size prior (median voxels per instance): {cfg.cluster.class_sizes}")
    model = MTMLNet(cfg.model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    start_epoch, best_ap50, elapsed = 0, -1.0, 0.0
    if resume and last.exists():
        model, state = load_checkpoint(last)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        opt.load_state_dict(state["optimizer_state"])
        start_epoch, best_ap50, elapsed = state["epoch"] + 1, state.get("best_ap50", -1.0), state.get("train_seconds", 0.0)
        torch.set_rng_state(state["torch_rng"])
        print(f"resuming from {last} after epoch {state['epoch']}")
    elif init_checkpoint:
        src, _ = load_checkpoint(init_checkpoint)
        model.load_state_dict(src.state_dict())
    elif metrics_path.exists():
        metrics_path.unlink()  # a fresh run starts a fresh log
    atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    model.train()
    steps_per_epoch = len(train_set) if cfg.train.max_steps_per_epoch is None else min(len(train_set), cfg.train.max_steps_per_epoch)
    total_steps = steps_per_epoch * cfg.train.epochs

    def log(row: dict) -> None:
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    for epoch in range(start_epoch, cfg.train.epochs):
        t_epoch = time.perf_counter()
        train_set.epoch = epoch
        order = np.random.default_rng([cfg.train.seed, epoch]).permutation(len(train_set))[:steps_per_epoch]
        sums: dict = {}
        bar = tqdm(order, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not progress)
        for i, idx in enumerate(bar):
            step = epoch * steps_per_epoch + i
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, cfg)
            sample = train_set[int(idx)]
            outputs = model(sample.inputs[None])
            c = sample.coords[sample.rows]
            emb = outputs["embedding"][0][:, c[:, 0], c[:, 1], c[:, 2]].T
            direc = outputs["direction"][0][:, c[:, 0], c[:, 1], c[:, 2]].T
            losses = mtml_loss(emb, direc, c.float(), sample.instance_index, sample.num_instances, cfg.loss)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            if (i + 1) % cfg.train.log_every == 0:
                bar.set_postfix(loss=f"{sums['loss'] / (i + 1):.3f}")
                log({"kind": "step", "epoch": epoch + 1, "step": step + 1, "lr": opt.param_groups[0]["lr"],
                     **{k: v.item() for k, v in losses.items()}})
        elapsed += time.perf_counter() - t_epoch
        row = {"kind": "epoch", "epoch": epoch + 1, "seconds": elapsed, **{k: v / len(order) for k, v in sums.items()}}
        log(row)
        extra = _checkpoint_extra(cfg, epoch, best_ap50, elapsed)
        extra.update({"optimizer_state": opt.state_dict(), "torch_rng": torch.get_rng_state()})
        save_checkpoint(last, model, extra)  # before validation: a failed validation never costs an epoch
        if (epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == cfg.train.epochs:
            val = validate(model, cfg, val_scenes)
            log({"kind": "val", "epoch": epoch + 1, "seconds": elapsed, **val})
            print(f"epoch {epoch + 1}: loss {row['loss']:.4f}  val AP50 {100 * val['ap50']:.1f}  ({elapsed:.0f} s)")
            if val["ap50"] > best_ap50:
                best_ap50 = val["ap50"]
                save_checkpoint(best, model, _checkpoint_extra(cfg, epoch, best_ap50, elapsed))
                extra["best_ap50"] = best_ap50
                save_checkpoint(last, model, extra)
        plot_curves(metrics_path, out / "curves.png")
    return last


def _checkpoint_extra(cfg: ExperimentConfig, epoch: int, best_ap50: float, seconds: float) -> dict:
    """What inference needs besides the weights: the experiment config (voxel size, clustering, classes)."""
    from mtml.eval.labels import label_names

    return {"epoch": epoch, "best_ap50": best_ap50, "train_seconds": seconds, "experiment": cfg.to_dict(),
            "class_names": label_names(cfg.data.benchmark)}
