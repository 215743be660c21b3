"""The segmentation trainer (``train.task: segment``): backbone, instance heads and semantic head from scenes of
the dataset registry, with augmentation, text anchors and the class-balanced focal loss."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml

from mtml.config import ExperimentConfig
from mtml.data.dataset import SceneSampleSet
from mtml.errors import InputError
from mtml.io.atomic import atomic_write_text
from mtml.losses.focal import class_balanced_alpha
from mtml.losses.mtml import total_loss
from mtml.model.model import MTMLNet, load_checkpoint
from mtml.train.loop import (
    checkpoint_extra,
    fit_epochs,
    load_matching_weights,
    resume_point,
    selection_score,
    start_run,
    validate,
)

VAL_SEED_START = 100_000  # validation scenes: seeds far from the benchmark's 0..999
RARE_SAMPLING_SCENES = 400  # training scenes whose tail-class instances rare-class sampling draws from


def _sample_set(cfg: ExperimentConfig, keys, make_scene, scene_transform=None) -> SceneSampleSet:
    """The augmented training set over ``keys`` (scenes from ``make_scene(key)``) for this experiment."""
    return SceneSampleSet(keys, make_scene, cfg.model, cfg.data.stuff_classes, cfg.data.voxel_size,
                          augment_seed=cfg.train.seed, scene_transform=scene_transform,
                          ignore_labels=cfg.data.semantic_ignore)


def toy_datasets(cfg: ExperimentConfig):
    """(train set with augmentation, validation scenes (a list of zero-argument Scene makers)) for the toy
    benchmark: train on the benchmark's train split, validate on seeds outside train and test."""
    from mtml.data.toy import ToySceneConfig, generate_scene, toy_scene_seeds

    toy_cfg = ToySceneConfig(**cfg.data.toy)
    train_seeds = toy_scene_seeds("train")[: cfg.data.train_scenes]
    train = _sample_set(cfg, train_seeds, partial(generate_scene, config=toy_cfg))
    val = [partial(generate_scene, s, toy_cfg) for s in range(VAL_SEED_START, VAL_SEED_START + cfg.data.val_scenes)]
    return train, val


def longtail_datasets(cfg: ExperimentConfig):
    """(train set, validation scene makers) of the long-tail benchmark (``mtml.data.longtail``)."""
    from mtml.data.longtail import LongtailSceneConfig, generate_longtail_scene, longtail_scene_seeds

    make = partial(generate_longtail_scene, config=LongtailSceneConfig(**cfg.data.longtail))
    train = _sample_set(cfg, longtail_scene_seeds("train")[: cfg.data.train_scenes], make)
    return train, [partial(make, s) for s in longtail_scene_seeds("val")[: cfg.data.val_scenes]]


def rare_sampling_transform(cfg: ExperimentConfig, scenes):
    """scene_transform inserting ``data.rare_instances`` instances of the tail classes (seeds/001: instances of
    the least frequent third of the classes, by point count over ``scenes``) from ``scenes`` into each
    training scene."""
    from mtml.data.longtail import class_frequency_splits
    from mtml.data.rare_sampling import InstanceBank, insert_rare_instances

    ids, counts = np.unique(np.concatenate([s.labels for s in scenes]), return_counts=True)
    splits = class_frequency_splits({int(i): int(n) for i, n in zip(ids, counts)})
    bank = InstanceBank.from_scenes(scenes, [c for c, group in splits.items() if group == "tail"])

    def transform(scene, rng):
        return insert_rare_instances(scene, bank, rng, cfg.data.rare_instances)

    return transform


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

    train = _sample_set(cfg, names, partial(make, train_store))
    return train, [partial(make, val_store, n) for n in val_names]


DATASETS = {"toy": toy_datasets, "store": store_datasets, "longtail": longtail_datasets}


def measure_training_statistics(train_set: SceneSampleSet, max_scenes: int = 200) -> tuple[dict, np.ndarray]:
    """(median voxel count per thing class, voxel count per class channel int64 [C]) over (up to
    ``max_scenes``) un-augmented training scenes: the class size prior and the C-Focal class frequencies."""
    from mtml.cluster.proposals import class_size_prior
    from mtml.data.dataset import label_channels
    from mtml.data.voxelize import voxelize

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
    from mtml.labels import label_names
    from mtml.model.text import class_anchors, make_text_encoder

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
    if cfg.data.kind not in DATASETS:
        raise InputError(None, f"unknown data kind {cfg.data.kind!r} ({', '.join(DATASETS)})")
    out, last, metrics_path = start_run(cfg, out_dir)
    train_set, val_scenes = DATASETS[cfg.data.kind](cfg)
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


