"""Training the LESS referring head on the shared backbone, with binary masks only.

The rest of the network (backbone, instance and semantic heads) comes from ``init_checkpoint`` and stays frozen:
the referring head learns on top of the features the other heads already use, so adding it changes nothing they
predict. Scenes are not rotated or flipped, because the descriptions are viewpoint-dependent ("left of").
Each step takes one scene and all its training descriptions (one backbone pass, S masks). The frozen backbone's
voxel features are computed once and kept in memory; so are the text features of each description, unless
``data.referring_redraw`` or ``data.referring_word_dropout`` change the text at every step
(``training_descriptions``).

Writes the same files as ``mtml.train.segment.train``: config.yaml, metrics.jsonl, last.pt / best.pt (by validation
Acc@0.5), curves.png; ``resume`` continues after the last finished epoch.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from mtml.config import ExperimentConfig
from mtml.data.referring import (
    build_referring_split,
    check_referring_kind,
    class_names_for_scene_id,
    drop_words,
    extra_training_records,
    generate_descriptions,
    has_extra_training_scenes,
    referring_target_mask,
    scene_for_record,
)
from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.eval.referring import ReferringScores
from mtml.losses.referring import referring_loss
from mtml.model.model import MTMLNet
from mtml.model.referring import ReferringConfig
from mtml.model.text import make_text_encoder
from mtml.predict.infer import (
    encode_descriptions,
    network_outputs,
    referring_masks,
    referring_superpoints,
    segment_grid,
    voxel_centres,
)
from mtml.train.loop import checkpoint_extra, fit_epochs, start_frozen_model_run


class ReferringScenes:
    """The descriptions of one benchmark split grouped by scene, with cached network and text features.

    records: ScanRefer-style dicts (``mtml.data.referring``). For each scene: its Scene, VoxelGrid, the frozen
    network's referring features [V, C] and voxel centres [V, 3], the voxel targets bool [S, V] (voxels whose
    majority instance is the object), the encoded descriptions (None unless ``encode_text``), the superpoint ids
    int64 [V] (for a head on superpoints, else None; from the instances found on the predicted labels, as at
    inference) and the seconds the network's pass (and the superpoints) took.
    """

    def __init__(self, records: list, model: MTMLNet, encoder, voxel_size: float, cluster_cfg=None, cache: bool = True,
                 encode_text: bool = True):
        self.by_scene: OrderedDict = OrderedDict()
        for r in records:
            self.by_scene.setdefault(r["scene_id"], []).append(r)
        self.names = list(self.by_scene)
        self.model, self.encoder, self.voxel_size, self.cache = model, encoder, voxel_size, cache
        self.encode_text = encode_text
        self.cluster_cfg = cluster_cfg
        if model.referring_head is not None and model.referring_head.cfg.superpoints and cluster_cfg is None:
            raise ValueError("a referring head on superpoints needs the cluster settings that find them")
        self._cache: dict = {}

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        name = self.names[i]
        if name in self._cache:
            return self._cache[name]

        records = self.by_scene[name]
        scene = scene_for_record(records[0])
        grid = voxelize(scene, self.voxel_size)
        t0 = time.perf_counter()
        with torch.no_grad():
            outputs = network_outputs(self.model, grid)
            feats = self.model.referring_features(outputs)
        superpoints = None
        if self.model.referring_head.cfg.superpoints:  # as at inference: instances on the predicted labels
            res = segment_grid(self.model, scene, grid, self.cluster_cfg, use_given_labels=False, outputs=outputs)
            superpoints = torch.from_numpy(referring_superpoints(res))
        backbone_seconds = time.perf_counter() - t0
        for r in records:
            referring_target_mask(scene, r)  # InputError when the object is not in the scene
        item = {"records": records, "scene": scene, "grid": grid, "features": feats,
                "xyz": torch.from_numpy(voxel_centres(grid)), "targets": voxel_targets(grid, records),
                "text": (encode_descriptions(self.encoder, [r["description"] for r in records])
                         if self.encode_text else None),
                "superpoints": superpoints, "backbone_seconds": backbone_seconds}
        if self.cache:
            self._cache[name] = item
        return item


def voxel_targets(grid, records: list) -> torch.Tensor:
    """bool [S, V]: for each of S records, the grid's voxels whose majority instance is its object."""
    return torch.from_numpy(np.stack([grid.instances == int(r["object_id"]) for r in records]))


def training_descriptions(item: dict, epoch: int, index: int, per_scene: int, redraw: bool,
                          word_dropout: float) -> tuple:
    """The descriptions one training step learns from, for the scene ``item`` (a ``ReferringScenes`` item) at
    position ``index`` of the training set: its own records in epoch 0 (or without ``redraw``), else ``per_scene``
    new ones drawn by the generator for this epoch; each with ``word_dropout`` of its words left out. The draws
    depend only on (epoch, index), so a resumed run sees the same text. Returns (list of S description strs,
    their voxel targets bool [S, V])."""
    rng = np.random.default_rng([epoch, index])
    records = item["records"]
    if redraw and epoch > 0:
        records = generate_descriptions(item["scene"], class_names_for_scene_id(records[0]["scene_id"]), rng,
                                        per_scene) or records
    texts = [drop_words(r["description"], word_dropout, rng) for r in records]
    return texts, voxel_targets(item["grid"], records)


def evaluate_referring(model: MTMLNet, scenes: ReferringScenes, progress: bool = True, desc: str = "val"):
    """``mtml.eval.referring.ReferringScores`` of the model's referring head over every description of
    ``scenes``, at the points (a point is in the answer when its voxel is). The time per scan is the network's
    pass (measured when the scene's features were computed) plus the referring head's for all its descriptions."""
    scores = ReferringScores()
    head = model.referring_head
    was_training = head.training
    head.eval()
    for i in tqdm(range(len(scenes)), desc=desc, disable=not progress, leave=False):
        item = scenes[i]
        t0 = time.perf_counter()
        with torch.no_grad():
            out = head(item["features"], item["xyz"], *item["text"], item["superpoints"])
        masks = referring_masks(torch.sigmoid(out["mask_logits"]).numpy())
        seconds = time.perf_counter() - t0 + item["backbone_seconds"]
        grid, scene = item["grid"], item["scene"]
        for k, record in enumerate(item["records"]):
            scores.update(masks[k][grid.point_to_voxel], referring_target_mask(scene, record),
                          seconds if k == 0 else 0.0, scan=scene.name)
    head.train(was_training)
    return scores


def train_referring(cfg: ExperimentConfig, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
                    init_checkpoint: Optional[str] = None) -> Path:
    """Train the referring head of ``cfg.model`` (``train.task: refer``) on the synthetic referring benchmark of
    ``data.kind`` (one of ``mtml.data.referring.KINDS``: toy or longtail); every other weight comes from
    ``init_checkpoint`` (required) and is frozen.
    Returns ``out_dir/last.pt``."""
    if not cfg.model.referring:
        raise InputError(None, "train.task 'refer' needs model.referring settings")
    check_referring_kind(cfg.data.kind)
    if cfg.data.referring_extra_scenes and not has_extra_training_scenes(cfg.data.kind):
        raise InputError(None, f"data.referring_extra_scenes: data.kind {cfg.data.kind!r} has no extra referring "
                               "training scenes")
    run = start_frozen_model_run(cfg, out_dir, resume, init_checkpoint, "referring_head",
                                 "the checkpoint whose backbone it reads")
    model = run.model
    encoder = make_text_encoder(cfg.model.text_encoder)
    per_scene = cfg.data.referring_per_scene
    augment = cfg.data.referring_redraw or cfg.data.referring_word_dropout > 0
    train_records = build_referring_split(cfg.data.kind, "train", cfg.data.train_scenes, per_scene)
    if cfg.data.referring_extra_scenes:
        train_records += extra_training_records(cfg.data.referring_extra_scenes, per_scene, kind=cfg.data.kind)
    train_set = ReferringScenes(train_records,
                                model, encoder, cfg.data.voxel_size, cfg.cluster, encode_text=not augment)
    val_set = ReferringScenes(build_referring_split(cfg.data.kind, "val", cfg.data.val_scenes, per_scene),
                              model, encoder, cfg.data.voxel_size, cfg.cluster)
    head_cfg = ReferringConfig(**cfg.model.referring)

    def step_losses(index: int, epoch: int) -> dict:
        item = train_set[index]
        text, targets = item["text"], item["targets"]
        if augment:
            texts, targets = training_descriptions(item, epoch, index, per_scene, cfg.data.referring_redraw,
                                                   cfg.data.referring_word_dropout)
            text = encode_descriptions(encoder, texts)
        return referring_loss(model.referring_head(item["features"], item["xyz"], *text, item["superpoints"]),
                              targets, head_cfg)

    def validate_epoch() -> tuple[dict, float]:
        res = evaluate_referring(model, val_set, progress).results()
        val = {"miou": res["miou"], "acc25": res["acc@0.25"], "acc50": res["acc@0.5"]}
        return val, val["acc50"]

    return fit_epochs(cfg, run.out, model, run.opt, len(train_set), step_losses, validate_epoch,
                      lambda epoch, best, seconds: checkpoint_extra(cfg, epoch, best, seconds, run.class_counts),
                      run.start_epoch, run.best_score, run.elapsed, progress, shown=("acc50", "miou"))
