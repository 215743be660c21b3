"""Training the per-instance heads on a frozen model: the instance classifier (``mtml.model.instance_classifier``,
``train.task: classify_instances``) and the proposal scorer (``mtml.model.proposal_scorer``, ``train.task:
score_proposals``).

The rest of the network comes from ``init_checkpoint`` and stays frozen. Each training scene is run once: the
network on the scan without its labels, the instances (classifier) or every proposal (scorer) built on its
predicted labels, and their descriptors are cached. The classifier's target is the ground-truth label most of an
instance's voxels have (cross-entropy); the scorer's is a proposal's IoU with the object most of its voxels belong
to (binary cross-entropy on that soft target). One optimizer step per scene, or per ``train.head_batch`` examples
drawn from all scenes (``example_batches``). Validation runs the whole plain-scan pipeline (proposals, scores,
classifier, point labels) and reports AP50 and mIoU on predicted labels, like the segmentation trainer.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch.nn import functional as F
from tqdm import tqdm

from mtml.cluster.pipeline import proposal_pool, segment_instances
from mtml.config import ExperimentConfig
from mtml.data.registry import training_sets
from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.model.instance_classifier import instance_descriptors, instance_targets
from mtml.model.model import MTMLNet
from mtml.model.proposal_scorer import proposal_features, proposal_iou_targets
from mtml.predict.infer import learned_proposal_scores, predict_voxels
from mtml.train.loop import checkpoint_extra, fit_epochs, selection_score, start_frozen_model_run, validate

INSTANCE_HEAD_OF_TASK = {"classify_instances": "instance_classifier", "score_proposals": "proposal_scorer"}
"""train.task -> the model attribute (and ``ModelConfig`` switch) of the head it trains."""


def _frozen_predictions(model: MTMLNet, cfg: ExperimentConfig, scenes, progress: bool, desc: str) -> Iterator:
    """For each scene (Scenes with labels): (its grid with the true labels and instances, the same grid with the
    frozen model's predicted labels, the model's ``VoxelPredictions``)."""
    for scene in tqdm(scenes, desc=desc, disable=not progress, leave=False):
        grid = voxelize(scene, cfg.data.voxel_size)
        pred = predict_voxels(model, grid)
        yield grid, dataclasses.replace(grid, labels=pred.labels), pred


def instance_examples(model: MTMLNet, cfg: ExperimentConfig, scenes, progress: bool = True,
                      desc: str = "instances") -> list:
    """For each scene (an iterable of Scenes with labels): (descriptors float32 tensor [K, C + 4], target class
    channels int64 tensor [K]) of the instances the frozen model builds on its own predicted labels (ranked by its
    proposal scorer when it has one, as at inference); instances without a target (all voxels ignored) are left
    out."""
    examples = []
    for grid, predicted, pred in _frozen_predictions(model, cfg, scenes, progress, desc):
        rescore = None if model.proposal_scorer is None else learned_proposal_scores(model, predicted,
                                                                                     pred.probabilities)
        inst = segment_instances(predicted, pred.embedding, pred.direction, cfg.cluster, rescore)
        targets = instance_targets(grid, inst.masks, model.cfg.channel_ids(), cfg.data.semantic_ignore)
        keep = targets >= 0
        desc_k = instance_descriptors(grid, inst.masks, pred.probabilities)[keep]
        examples.append((torch.from_numpy(desc_k), torch.from_numpy(targets[keep])))
    return examples


def proposal_examples(model: MTMLNet, cfg: ExperimentConfig, scenes, progress: bool = True,
                      desc: str = "proposals") -> list:
    """For each scene (an iterable of Scenes with labels and instances): (``proposal_features`` float32 tensor
    [P, F], IoU targets float32 tensor [P] in [0, 1]) of every proposal (``proposal_pool``, with cfg.cluster's
    settings) the frozen model makes on its own predicted labels."""
    examples = []
    for grid, predicted, pred in _frozen_predictions(model, cfg, scenes, progress, desc):
        masks, terms = proposal_pool(predicted, pred.embedding, pred.direction, cfg.cluster)
        features = proposal_features(predicted, masks, pred.probabilities, terms)
        examples.append((torch.from_numpy(features), torch.from_numpy(proposal_iou_targets(grid, masks))))
    return examples


def example_batches(examples: list, batch: int, seed: int) -> tuple[int, Callable]:
    """Steps of an epoch over per-scene examples [(inputs [K, F], targets [K])]: with ``batch`` 0, one scene per
    step; otherwise ``batch`` examples per step drawn from all scenes, in an order fixed by ``seed`` and the epoch
    (so a resumed run draws the same). Returns (steps per epoch, (step, epoch) -> (inputs, targets))."""
    if batch <= 0:
        return len(examples), lambda index, epoch: examples[index]
    inputs = torch.cat([x for x, _ in examples])
    targets = torch.cat([t for _, t in examples])

    @functools.lru_cache(maxsize=1)  # steps come epoch by epoch: one order at a time
    def order(epoch: int) -> torch.Tensor:
        return torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))

    def draw(index: int, epoch: int) -> tuple:
        rows = order(epoch)[index * batch:(index + 1) * batch]
        return inputs[rows], targets[rows]

    return max(1, math.ceil(len(inputs) / batch)), draw


def train_instance_head(cfg: ExperimentConfig, out_dir: str | os.PathLike, resume: bool = False,
                        progress: bool = True, init_checkpoint: Optional[str] = None) -> Path:
    """Train the head ``cfg.train.task`` names (``INSTANCE_HEAD_OF_TASK``) on the instances or proposals of
    ``init_checkpoint`` (required; every other weight comes from it and is frozen). Returns ``out_dir/last.pt``."""
    task = cfg.train.task
    head = INSTANCE_HEAD_OF_TASK[task]
    if not getattr(cfg.model, head):
        raise InputError(None, f"train.task {task!r} needs model.{head}: true")
    if not cfg.model.semantic_head:
        raise InputError(None, f"the {head.replace('_', ' ')} reads the semantic head's probabilities: it needs one")
    train_set, val_scenes = training_sets(cfg)
    what_it_does = "labels" if head == "instance_classifier" else "scores"
    run = start_frozen_model_run(cfg, out_dir, resume, init_checkpoint, head,
                                 f"the model whose instances it {what_it_does}")
    model = run.model
    make_examples = instance_examples if head == "instance_classifier" else proposal_examples
    loss_of = F.cross_entropy if head == "instance_classifier" else F.binary_cross_entropy_with_logits
    with torch.no_grad():
        examples = make_examples(model, cfg, (train_set.make_scene(k) for k in train_set.keys), progress)
    trained = getattr(model, head)
    if head == "proposal_scorer":
        trained.set_feature_scale(torch.cat([inputs for inputs, _ in examples]) if examples else torch.zeros(0))
    num_steps, example_batch = example_batches(examples, cfg.train.head_batch, cfg.train.seed)

    def step_losses(index: int, epoch: int) -> dict:
        inputs, targets = example_batch(index, epoch)
        trained.train()
        outputs = trained(inputs)
        if len(targets) == 0:
            return {"loss": outputs.sum() * 0.0}
        return {"loss": loss_of(outputs, targets)}

    def validate_epoch() -> tuple[dict, float]:
        metrics = validate(model, cfg, val_scenes)
        model.eval()  # validate() hands the model back in train mode; its frozen parts stay in eval
        return metrics, selection_score(metrics, cfg.train.select_by)

    return fit_epochs(cfg, run.out, model, run.opt, num_steps, step_losses, validate_epoch,
                      lambda epoch, best, seconds: checkpoint_extra(cfg, epoch, best, seconds, run.class_counts),
                      run.start_epoch, run.best_score, run.elapsed, progress)
