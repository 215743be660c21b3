"""The learned proposal score: the class-agnostic proposals, the scorer's features and targets, NMS on the learned
score, its trainer (``train.task: score_proposals``) and its use at inference."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import train_instance_head_on_bundled

from mtml.cluster.pipeline import ClusterConfig, proposal_pool, segment_instances
from mtml.cluster.proposals import mean_shift_proposals
from mtml.config import config_from_dict
from mtml.model.instance_classifier import GEOMETRY_FEATURES
from mtml.model.proposal_scorer import SCORE_TERMS, ProposalScorer, proposal_features, proposal_iou_targets
from mtml.scene import VoxelGrid


def _row_grid(labels, instances=None):
    """A 1-voxel-thick row of voxels along x with the given labels (and instances)."""
    n = len(labels)
    coords = np.c_[np.arange(n), np.zeros(n, np.int64), np.zeros(n, np.int64)].astype(np.int64)
    return VoxelGrid(shape=(n, 1, 1), coords=coords, origin=np.zeros(3), voxel_size=0.1,
                     labels=np.asarray(labels, np.int64), point_to_voxel=np.arange(n),
                     instances=None if instances is None else np.asarray(instances, np.int64))


def test_class_agnostic_proposals_keep_a_cluster_whole_across_labels():
    coords = np.c_[np.arange(8), np.zeros(8), np.zeros(8)].astype(np.int64)
    labels = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    embedding = np.zeros((8, 2), np.float32)  # one mean-shift cluster
    by_label = mean_shift_proposals(coords, labels, embedding, [0.5], min_voxels=2)
    both = mean_shift_proposals(coords, labels, embedding, [0.5], min_voxels=2, class_agnostic=True)
    assert sorted(map(tuple, by_label)) == [(0, 1, 2, 3), (4, 5, 6, 7)]
    assert sorted(map(tuple, both)) == [(0, 1, 2, 3), (0, 1, 2, 3, 4, 5, 6, 7), (4, 5, 6, 7)]
    # a second bandwidth finding the same sets adds nothing
    assert len(mean_shift_proposals(coords, labels, embedding, [0.5, 0.7], 2, class_agnostic=True)) == 3


def test_iou_targets_measure_each_proposal_against_its_main_object():
    grid = _row_grid([1] * 10, instances=[0, 0, 0, 0, 1, 1, 1, 1, -1, -1])
    masks = [np.arange(4), np.arange(6), np.array([8, 9]), np.arange(10)]
    targets = proposal_iou_targets(grid, masks)
    assert targets == pytest.approx([1.0, 4 / 6, 0.0, 4 / 10])


def test_features_are_descriptors_then_score_terms():
    grid = _row_grid([1, 1, 1, 2, 2, 2])
    probabilities = np.tile(np.eye(3, dtype=np.float32)[[1]], (6, 1))
    masks = [np.arange(3), np.arange(6)]
    terms = {"direction": None, "feature": np.array([1.0, 0.5]), "size": np.array([0.2, 0.9]),
             "score": np.array([0.6, 0.7])}
    features = proposal_features(grid, masks, probabilities, terms)
    assert features.shape == (2, 3 + GEOMETRY_FEATURES + len(SCORE_TERMS)) and features.dtype == np.float32
    assert features[:, :3] == pytest.approx(np.array([[0, 1, 0], [0, 1, 0]]))  # mean class probabilities
    assert features[:, -4:] == pytest.approx(np.array([[0.5, 1.0, 0.2, 0.6], [0.5, 0.5, 0.9, 0.7]]))
    assert ProposalScorer(3)(torch.from_numpy(features)).shape == (2,)


def test_scorer_standardises_its_features_with_the_training_statistics():
    torch.manual_seed(0)
    scorer = ProposalScorer(3)
    features = torch.randn(50, 3 + GEOMETRY_FEATURES + len(SCORE_TERMS)) * 4.0 + 7.0
    before = scorer(features)
    scorer.set_feature_scale(features)
    assert scorer.feature_mean == pytest.approx(features.mean(0).tolist(), rel=1e-5)
    assert torch.allclose(scorer(features), scorer.net((features - features.mean(0)) / features.std(0)).squeeze(-1))
    assert not torch.allclose(before, scorer(features))
    assert "feature_mean" in scorer.state_dict() and "feature_std" in scorer.state_dict()  # saved with the weights
    scale = scorer.feature_mean.clone()
    scorer.set_feature_scale(features[:1])  # too few rows to measure: the scale stays
    assert torch.equal(scorer.feature_mean, scale)


def test_example_batches_per_scene_or_shuffled_across_scenes():
    from mtml.train.instances import example_batches

    examples = [(torch.arange(3.0)[:, None] + 10 * k, torch.arange(3) + 10 * k) for k in range(4)]  # 4 scenes of 3
    steps, batch_of = example_batches(examples, batch=0, seed=0)
    assert steps == 4 and batch_of(2, epoch=5)[1].tolist() == [20, 21, 22]
    steps, batch_of = example_batches(examples, batch=5, seed=0)
    assert steps == 3  # 12 examples, 5 per step
    epoch0 = torch.cat([batch_of(i, 0)[1] for i in range(steps)])
    assert sorted(epoch0.tolist()) == sorted(torch.cat([t for _, t in examples]).tolist())  # each once
    x, t = batch_of(1, 0)
    assert torch.equal(x[:, 0], t.float())  # inputs and targets stay paired
    epoch1 = torch.cat([batch_of(i, 1)[1] for i in range(steps)])
    assert not torch.equal(epoch0, epoch1)  # reshuffled each epoch
    assert torch.equal(torch.cat([example_batches(examples, 5, 0)[1](i, 1)[1] for i in range(steps)]), epoch1)


def test_nms_keeps_what_the_learned_score_prefers():
    """Two labels over one mean-shift cluster: the hand-made score and a score that prefers whole proposals
    choose differently, and NMS follows the given score."""
    grid = _row_grid([1] * 6 + [2] * 6)
    embedding = np.zeros((12, 2), np.float32)
    direction = np.zeros((12, 3), np.float32)
    cfg = ClusterConfig(bandwidths=[0.5], min_voxels=2, class_agnostic_proposals=True, use_direction=False)
    masks, terms = proposal_pool(grid, embedding, direction, cfg)
    assert sorted(len(m) for m in masks) == [6, 6, 12] and set(terms) >= {"score", "feature", "size"}

    def prefer(larger: bool):
        return lambda ms, t: np.array([len(m) if larger else 1.0 / len(m) for m in ms]) / 12.0

    whole = segment_instances(grid, embedding, direction, cfg, rescore=prefer(larger=True))
    parts = segment_instances(grid, embedding, direction, cfg, rescore=prefer(larger=False))
    assert [len(m) for m in whole.masks] == [12]
    assert sorted(len(m) for m in parts.masks) == [6, 6] and sorted(parts.labels.tolist()) == [1, 2]


def test_trainer_trains_only_the_scorer_and_inference_uses_it(tmp_path, bundled_toy):
    """Three scenes on the bundled model, then a scorer forced to prefer small proposals."""
    from mtml.data.toy import generate_scene
    from mtml.predict.infer import segment_scene

    model, state = train_instance_head_on_bundled(tmp_path, bundled_toy, "score_proposals", "proposal_scorer",
                                                  cluster={"class_agnostic_proposals": True})
    assert state["experiment"]["cluster"]["class_agnostic_proposals"] is True

    # a scorer that prefers small proposals (score = 10 - ln(voxels)) gives smaller instances than the hand-made score
    with torch.no_grad():
        for p in model.proposal_scorer.parameters():
            p.zero_()
        net = model.proposal_scorer.net
        net[0].weight[0, model.cfg.num_classes + GEOMETRY_FEATURES - 1] = -1.0  # ln(voxels)
        net[0].bias[0] = 10.0
        net[2].weight[0, 0] = 1.0
        net[4].weight[0, 0] = 1.0
    exp = config_from_dict(state["experiment"])
    scene = dataclasses.replace(generate_scene(3), labels=None, instances=None)
    small = segment_scene(model, scene, exp.cluster, use_given_labels=False)
    model.proposal_scorer = None
    hand_made = segment_scene(model, scene, exp.cluster, use_given_labels=False)
    assert len(small.instances) > len(hand_made.instances)
    assert np.mean([len(m) for m in small.instances.masks]) < 0.5 * np.mean([len(m) for m in hand_made.instances.masks])


def test_given_labels_get_no_proposal_across_two_labels(bundled_toy):
    """The bundled model proposes class-agnostic pieces on its predicted labels; on a scan's own labels every
    instance keeps to one of them (on scenes 900-919, 19 instances crossed a label before this was so)."""
    from mtml.data.toy import generate_scene
    from mtml.model.model import load_checkpoint
    from mtml.predict.infer import segment_scene

    path, experiment = bundled_toy
    model, _ = load_checkpoint(path)
    cluster = config_from_dict(experiment).cluster
    assert cluster.class_agnostic_proposals
    for seed in (901, 904, 906):
        result = segment_scene(model, generate_scene(seed), cluster)
        assert result.labels_source == "given" and len(result.instances)
        assert all(len(np.unique(result.grid.labels[rows])) == 1 for rows in result.instances.masks)


def test_scorer_task_needs_the_scorer_switched_on(tmp_path, bundled_toy):
    from mtml.errors import InputError
    from mtml.train.trainers import run_training

    path, experiment = bundled_toy
    cfg = config_from_dict({**experiment, "name": "scorer_off",
                            "model": {**experiment["model"], "proposal_scorer": False},
                            "train": {**experiment["train"], "task": "score_proposals"}})
    with pytest.raises(InputError, match="model.proposal_scorer"):
        run_training(cfg, tmp_path / "run", progress=False, init_checkpoint=path)
