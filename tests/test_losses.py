import math

import pytest
import torch

from mtml.losses.directional import direction_targets, directional_loss
from mtml.losses.discriminative import discriminative_loss
from mtml.losses.mtml import LossConfig, mtml_loss


def test_discriminative_zero_when_clusters_tight_and_far():
    emb = torch.tensor([[0.0, 0], [0.1, 0], [5.0, 0], [5.1, 0]])
    idx = torch.tensor([0, 0, 1, 1])
    out = discriminative_loss(emb, idx, 2, gamma_reg=0.0)
    assert out["var"].item() == 0.0 and out["dist"].item() == 0.0


def test_discriminative_hinges_match_hand_computation():
    # instance 0: points at distance 1.0 from the mean (mean 0) -> (1.0 - 0.5)^2 = 0.25 each
    # instance 1: a single point at x=2 -> var 0; means 2 apart -> dist hinge (3 - 2)^2 = 1
    emb = torch.tensor([[-1.0, 0], [1.0, 0], [2.0, 0]])
    idx = torch.tensor([0, 0, 1])
    out = discriminative_loss(emb, idx, 2)
    assert out["var"].item() == pytest.approx((0.25 + 0.0) / 2)
    assert out["dist"].item() == pytest.approx(1.0)
    assert out["reg"].item() == pytest.approx((0.0 + 2.0) / 2)
    assert out["loss"].item() == pytest.approx(0.125 + 1.0 + 0.001 * 1.0)


def test_discriminative_no_instances_is_zero_with_grad():
    emb = torch.zeros(0, 4, requires_grad=True)
    out = discriminative_loss(emb, torch.zeros(0, dtype=torch.long), 0)
    assert out["loss"].item() == 0.0
    out["loss"].backward()


def test_direction_targets_point_to_center():
    xyz = torch.tensor([[0.0, 0, 0], [2.0, 0, 0]])
    t = direction_targets(xyz, torch.tensor([0, 0]), 1)
    assert torch.allclose(t, torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]))


def test_directional_loss_is_minus_one_for_perfect_and_plus_one_for_opposite():
    xyz = torch.tensor([[0.0, 0, 0], [2.0, 0, 0], [10.0, 0, 0], [10.0, 4, 0]])
    idx = torch.tensor([0, 0, 1, 1])
    perfect = torch.tensor([[3.0, 0, 0], [-0.5, 0, 0], [0.0, 2, 0], [0.0, -1, 0]])
    assert directional_loss(perfect, xyz, idx, 2).item() == pytest.approx(-1.0)
    assert directional_loss(-perfect, xyz, idx, 2).item() == pytest.approx(1.0)


def test_directional_loss_averages_per_instance_not_per_voxel():
    # instance 0 has 3 voxels all right, instance 1 has 1 voxel... two voxels needed for a centre; use 2 vs 4
    xyz = torch.tensor([[0.0, 0, 0], [2.0, 0, 0], [10.0, 0, 0], [12.0, 0, 0], [10.0, 0, 0], [12.0, 0, 0]])
    idx = torch.tensor([0, 0, 1, 1, 1, 1])
    pred = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [-1.0, 0, 0], [1.0, 0, 0], [-1.0, 0, 0], [1.0, 0, 0]])
    # instance 0 cos = 1, instance 1 cos = -1 -> loss 0 (a voxel average would give -(2-4)/6 = 1/3)
    assert directional_loss(pred, xyz, idx, 2).item() == pytest.approx(0.0, abs=1e-6)


def test_mtml_loss_combines_with_feature_weight_and_fe_only_switch():
    torch.manual_seed(0)
    emb, direc = torch.randn(20, 4), torch.randn(20, 3)
    xyz, idx = torch.randn(20, 3), torch.arange(20) % 3
    joint = mtml_loss(emb, direc, xyz, idx, 3, LossConfig())
    assert joint["loss"].item() == pytest.approx(joint["dir"].item() + 0.5 * joint["feat"].item(), rel=1e-6)
    fe = mtml_loss(emb, direc, xyz, idx, 3, LossConfig(use_direction=False))
    assert fe["loss"].item() == pytest.approx(fe["feat"].item()) and fe["dir"].item() == 0.0
    assert not math.isclose(joint["loss"].item(), fe["loss"].item())
