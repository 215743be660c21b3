"""The semantic head's losses: text-anchored contrastive pre-training, focal and class-balanced focal."""

import math

import pytest
import torch
from torch.nn import functional as F

from mtml.losses.focal import class_balanced_alpha, focal_loss
from mtml.losses.language import anchor_contrastive_loss, sample_negatives
from mtml.losses.mtml import LossConfig


def test_focal_with_gamma_zero_is_cross_entropy():
    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(focal_loss(logits, target, gamma=0.0), F.cross_entropy(logits, target), atol=1e-6)


def test_focal_matches_formula_and_down_weights_easy_voxels():
    logits = torch.tensor([[4.0, 0.0], [0.2, 0.0]])
    target = torch.tensor([0, 0])
    p = torch.softmax(logits, 1)[:, 0]
    expected = (-(1 - p) ** 2 * torch.log(p)).mean()
    assert torch.allclose(focal_loss(logits, target, gamma=2.0), expected)
    # the easy voxel (p = 0.98) loses far more of its cross-entropy than the hard one (p = 0.55)
    ratio = (1 - p) ** 2
    assert ratio[0] < 0.001 < 0.1 < ratio[1]


def test_class_balanced_alpha_is_log_count_share_times_classes():
    counts = torch.tensor([1e6, 1e3, 10.0])
    alpha = class_balanced_alpha(counts)
    logs = [math.log(1e6), math.log(1e3), math.log(10.0)]
    assert alpha.tolist() == pytest.approx([3 * v / sum(logs) for v in logs], rel=1e-5)
    assert float(alpha.mean()) == pytest.approx(1.0)
    assert (class_balanced_alpha(torch.tensor([0.0, 5.0])) > 0).all()  # unseen classes keep a weight


def test_alpha_weights_each_voxel_by_its_class():
    logits = torch.zeros(2, 2)
    alpha = torch.tensor([2.0, 0.5])
    l0 = focal_loss(logits[:1], torch.tensor([0]), 2.0, alpha)
    l1 = focal_loss(logits[1:], torch.tensor([1]), 2.0, alpha)
    assert float(l0 / l1) == pytest.approx(4.0)


def test_negatives_never_the_own_class():
    target = torch.randint(0, 5, (1000,), generator=torch.Generator().manual_seed(0))
    neg = sample_negatives(target, 5, 3, torch.Generator().manual_seed(1))
    assert neg.shape == (1000, 3)
    assert not (neg == target[:, None]).any()
    assert set(neg.unique().tolist()) == set(range(5))


def test_contrastive_loss_zero_on_anchor_and_positive_elsewhere():
    anchors = torch.eye(4)
    target = torch.tensor([0, 1, 2, 3])
    on_anchor = anchor_contrastive_loss(anchors[target] * 3.0, target, anchors)  # scale does not matter
    assert float(on_anchor["loss"]) == pytest.approx(0.0, abs=1e-6)
    # 100 voxels, each on the anchor of the next class; negatives are drawn at random, so a seeded generator and
    # enough voxels that some draw hits that anchor (all 100 missing it has probability (2/3)^300)
    many = target.repeat(25)
    wrong = anchor_contrastive_loss(anchors[(many + 1) % 4], many, anchors, num_negatives=3,
                                    generator=torch.Generator().manual_seed(0))
    assert float(wrong["pos"]) == pytest.approx(1.0)  # cosine distance 1 to the own anchor
    assert float(wrong["neg"]) > 0  # sits on a negative anchor: distance 0 < t_neg = 0.6


def test_contrastive_loss_pulls_features_to_their_anchor():
    torch.manual_seed(0)
    anchors = F.normalize(torch.randn(6, 16), dim=1)
    target = torch.randint(0, 6, (200,))
    feats = torch.randn(200, 16, requires_grad=True)
    opt = torch.optim.Adam([feats], lr=0.05)
    for _ in range(200):
        loss = anchor_contrastive_loss(feats, target, anchors)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    nearest = (F.normalize(feats.detach(), dim=1) @ anchors.T).argmax(1)
    assert (nearest == target).float().mean() > 0.99


def test_unknown_semantic_loss_is_refused():
    with pytest.raises(ValueError, match="semantic loss"):
        LossConfig(semantic="dice")
