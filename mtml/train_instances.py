"""Training the instance classifier (``mtml.model.instance_classifier``) on a frozen model (``train.task:
classify_instances``).

The rest of the network comes from ``init_checkpoint`` and stays frozen. Each training scene is run once: the
network, the instances built on its predicted labels, and their descriptors are cached. The target of an
instance is the ground-truth label most of its voxels have. One optimizer step per scene (all its instances),
cross-entropy. Validation runs the whole plain-scan pipeline (instances, classifier, point labels) and reports
AP50 and mIoU on predicted labels, like the segmentation trainer.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional

import torch
from torch.nn import functional as F
from tqdm import tqdm

from mtml.config import ExperimentConfig
from mtml.errors import InputError
from mtml.model.model import MTMLNet


def instance_examples(model: MTMLNet, cfg: ExperimentConfig, scenes, progress: bool = True,
                      desc: str = "instances") -> list:
    """For each scene (an iterable of Scenes with labels): (descriptors float32 tensor [K, C + 4], target class
    channels int64 tensor [K]) of the instances the frozen model builds on its own predicted labels; instances
    without a target (all voxels ignored) are left out."""
    from mtml.cluster.pipeline import segment_instances
    from mtml.data.voxelize import voxelize
    from mtml.infer import predict_voxels
    from mtml.model.instance_classifier import instance_descriptors, instance_targets

    examples = []
    for scene in tqdm(scenes, desc=desc, disable=not progress, leave=False):
        grid = voxelize(scene, cfg.data.voxel_size)
        pred = predict_voxels(model, grid)
        inst = segment_instances(dataclasses.replace(grid, labels=pred.labels), pred.embedding, pred.direction,
                                 cfg.cluster)
        targets = instance_targets(grid, inst.masks, model.cfg.channel_ids(), cfg.data.semantic_ignore)
        keep = targets >= 0
        desc_k = instance_descriptors(grid, inst.masks, pred.probabilities)[keep]
        examples.append((torch.from_numpy(desc_k), torch.from_numpy(targets[keep])))
    return examples


def train_instance_classifier(cfg: ExperimentConfig, out_dir: str | os.PathLike, resume: bool = False,
                              progress: bool = True, init_checkpoint: Optional[str] = None) -> Path:
    """Train the instance classifier of ``cfg.model`` on the instances of ``init_checkpoint`` (required; every
    other weight comes from it and is frozen). Returns ``out_dir/last.pt``."""
    from mtml.train import DATASETS, _checkpoint_extra, fit_epochs, selection_score, start_frozen_model_run, validate

    if not cfg.model.instance_classifier:
        raise InputError(None, "train.task 'classify_instances' needs model.instance_classifier: true")
    if not cfg.model.semantic_head:
        raise InputError(None, "the instance classifier reads the semantic head's probabilities: it needs one")
    if cfg.data.kind not in DATASETS:
        raise InputError(None, f"unknown data kind {cfg.data.kind!r} ({', '.join(DATASETS)})")
    run = start_frozen_model_run(cfg, out_dir, resume, init_checkpoint, "instance_classifier",
                                 "the model whose instances it labels")
    model = run.model
    train_set, val_scenes = DATASETS[cfg.data.kind](cfg)
    with torch.no_grad():
        examples = instance_examples(model, cfg, (train_set.make_scene(k) for k in train_set.keys), progress)

    def step_losses(index: int, epoch: int) -> dict:
        descriptors, targets = examples[index]
        model.instance_classifier.train()
        logits = model.instance_classifier(descriptors)
        if len(targets) == 0:
            return {"loss": logits.sum() * 0.0}
        return {"loss": F.cross_entropy(logits, targets)}

    def validate_epoch() -> tuple[dict, float]:
        metrics = validate(model, cfg, val_scenes)
        model.eval()  # validate() hands the model back in train mode; its frozen parts stay in eval
        return metrics, selection_score(metrics, cfg.train.select_by)

    return fit_epochs(cfg, run.out, model, run.opt, len(examples), step_losses, validate_epoch,
                      lambda epoch, best, seconds: _checkpoint_extra(cfg, epoch, best, seconds, run.class_counts),
                      run.start_epoch, run.best_score, run.elapsed, progress)
