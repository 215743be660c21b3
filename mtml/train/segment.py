"""The segmentation trainer (``train.task: segment``): backbone, instance heads and semantic head from scenes of
the dataset registry, with augmentation, text anchors and the class-balanced focal loss."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml

from mtml.cluster.proposals import class_size_prior
from mtml.config import ExperimentConfig
from mtml.data.dataset import SceneSampleSet, label_channels
from mtml.data.longtail import class_frequency_splits
from mtml.data.rare_sampling import InstanceBank, insert_rare_instances
from mtml.data.registry import label_names, training_sets
from mtml.data.voxelize import voxelize
from mtml.io.atomic import atomic_write_text
from mtml.losses.focal import class_balanced_alpha
from mtml.losses.mtml import total_loss
from mtml.model.model import MTMLNet, load_checkpoint
from mtml.model.text import class_anchors, make_text_encoder
from mtml.train.loop import (
    checkpoint_extra,
    fit_epochs,
    load_matching_weights,
    resume_point,
    selection_score,
    start_run,
    validate,
)

RARE_SAMPLING_SCENES = 400  # training scenes whose tail-class instances rare-class sampling draws from


def rare_sampling_transform(cfg: ExperimentConfig, scenes):
    """scene_transform inserting ``data.rare_instances`` instances of the tail classes (seeds/001: instances of
    the least frequent third of the classes, by point count over ``scenes``) from ``scenes`` into each
    training scene."""
    ids, counts = np.unique(np.concatenate([s.labels for s in scenes]), return_counts=True)
    splits = class_frequency_splits({int(i): int(n) for i, n in zip(ids, counts)})
    bank = InstanceBank.from_scenes(scenes, [c for c, group in splits.items() if group == "tail"])

    def transform(scene, rng):
        return insert_rare_instances(scene, bank, rng, cfg.data.rare_instances)

    return transform


def measure_training_statistics(train_set: SceneSampleSet, max_scenes: int = 200) -> tuple[dict, np.ndarray]:
    """(median voxel count per thing class, voxel count per class channel int64 [C]) over (up to
    ``max_scenes``) un-augmented training scenes: the class size prior and the C-Focal class frequencies."""
    grids = [voxelize(train_set.make_scene(k), train_set.voxel_size) for k in train_set.keys[:max_scenes]]
    counts = np.zeros(train_set.model_cfg.num_classes, dtype=np.int64)
    for grid in grids:
        channels = label_channels(grid.labels, train_set.model_cfg.channel_ids())
        keep = ~np.isin(grid.labels, np.asarray(train_set.ignore_labels, dtype=np.int64))
        counts += np.bincount(channels[keep], minlength=len(counts))
    return class_size_prior(iter(grids), train_set.stuff_classes), counts


def set_text_anchors(model: MTMLNet, cfg: ExperimentConfig) -> None:
    """Encode the class names of ``data.benchmark`` (in the model's class channel order) with the configured
    text encoder and store them in the semantic head; its prototypes start from them when
    ``train.classifier_init`` is "anchors" (language-grounded) and stay random when "random" (scratch)."""
    names = label_names(cfg.data.benchmark)
    channel_names = {i: names.get(label, str(label)) for i, label in enumerate(cfg.model.channel_ids())}
    cache = os.environ.get("MTML_ANCHOR_CACHE") or str(Path.home() / ".cache" / "mtml" / "anchors.h5")
    _, anchors = class_anchors(channel_names, make_text_encoder(cfg.model.text_encoder), cache)
    model.semantic_head.set_anchors(anchors, init_classifier=cfg.train.classifier_init == "anchors")


def training_loss(model: MTMLNet, sample, cfg: ExperimentConfig, class_alpha=None) -> dict:
    """One forward pass of a training sample and every configured loss (``mtml.losses.mtml.total_loss``)."""
    outputs = model(sample.inputs[None], sample.coords)
    return total_loss(outputs, sample, model, cfg.loss, class_alpha)


def train(cfg: ExperimentConfig, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
          init_checkpoint: Optional[str] = None) -> Path:
    """Train a model as configured; returns the path of the final checkpoint (``out_dir/last.pt``).

    out_dir receives: config.yaml, metrics.jsonl (one JSON object per line), last.pt (every epoch),
    best.pt (best validation score, see ``selection_score``), curves.png. With ``resume`` it continues after
    the last finished epoch; ``init_checkpoint`` starts from another run's weights (e.g. a pre-training stage).
    """
    train_set, val_scenes = training_sets(cfg)
    out, last, metrics_path = start_run(cfg, out_dir)
    class_sizes, class_counts = measure_training_statistics(train_set)
    if cfg.cluster.class_sizes == "auto":
        cfg.cluster.class_sizes = class_sizes
        print(f"class size prior (median voxels per instance): {cfg.cluster.class_sizes}")
    class_alpha = class_balanced_alpha(class_counts)
    if cfg.data.rare_instances:
        train_set.scene_transform = rare_sampling_transform(
            cfg, [train_set.make_scene(k) for k in train_set.keys[:RARE_SAMPLING_SCENES]])
    model = MTMLNet(cfg.model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    start_epoch, best_score, elapsed = 0, -1.0, 0.0
    if resume and last.exists():
        model, state = load_checkpoint(last)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        opt.load_state_dict(state["optimizer_state"])
        start_epoch, best_score, elapsed = resume_point(last, state)
        torch.set_rng_state(state["torch_rng"])
    else:
        src = None
        if init_checkpoint:
            src, _ = load_checkpoint(init_checkpoint)
            load_matching_weights(model, src, init_checkpoint)
        if model.semantic_head is not None and (src is None or src.semantic_head is None):
            set_text_anchors(model, cfg)
        if metrics_path.exists():
            metrics_path.unlink()  # a fresh run starts a fresh log
    atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    model.train()

    def step_losses(index: int, epoch: int) -> dict:
        train_set.epoch = epoch  # the augmentation draws per (scene, epoch)
        return training_loss(model, train_set[index], cfg, class_alpha)

    def validate_epoch() -> tuple[dict, float]:
        val = validate(model, cfg, val_scenes)
        return val, selection_score(val, cfg.train.select_by)

    return fit_epochs(cfg, out, model, opt, len(train_set), step_losses, validate_epoch,
                      lambda epoch, best_score, seconds: checkpoint_extra(cfg, epoch, best_score, seconds, class_counts),
                      start_epoch, best_score, elapsed, progress, shown=("ap50", "miou"))


