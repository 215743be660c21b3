"""mtml.train.weight_average: the moving average of trained weights (train.ema_decay)."""

import pytest
import torch
from torch import nn

from mtml.model.model import load_checkpoint
from mtml.train.segment import train
from mtml.train.weight_average import WeightAverage


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    net[2].weight.requires_grad_(False)  # frozen: not averaged
    return net


def test_update_moves_the_average_by_one_minus_decay_of_the_gap():
    net = _net()
    start = net[0].weight.detach().clone()
    average = WeightAverage(net, 0.75)
    with torch.no_grad():
        net[0].weight.add_(4.0)
    average.update()
    assert torch.allclose(average.average["0.weight"], start + 1.0)
    assert "2.weight" not in average.average and "2.bias" in average.average
    assert not any("running" in name for name in average.average)  # buffers are the model's own


def _averaged_once():
    """A net whose first bias was set to 2 after its average began, and that average, updated once (decay 0.5)."""
    net = _net()
    average = WeightAverage(net, 0.5)
    with torch.no_grad():
        net[0].bias.fill_(2.0)
    average.update()
    return net, average


def test_applied_swaps_the_average_in_and_restores_the_weights():
    net, average = _averaged_once()
    expected = average.average["0.bias"].clone()
    with average.applied():
        assert torch.equal(net[0].bias, expected)
    assert torch.equal(net[0].bias, torch.full((4,), 2.0))


def test_resume_restores_both_the_average_and_the_training_weights():
    net, average = _averaged_once()
    kept, own = {k: v.clone() for k, v in average.average.items()}, average.training_weights()
    with average.applied():
        written = {k: v.detach().clone() for k, v in net.state_dict().items()}  # what last.pt holds
    fresh = _net()
    fresh.load_state_dict(written)
    again = WeightAverage(fresh, 0.5)
    again.resume(own)
    assert all(torch.equal(again.average[k], kept[k]) for k in kept)
    assert torch.equal(fresh[0].bias, torch.full((4,), 2.0))
    with pytest.raises(ValueError, match="training weights"):
        WeightAverage(_net(), 0.5).resume({})


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(_net(), decay)


def test_a_run_with_ema_writes_the_average_and_keeps_the_training_weights(tiny_config, tmp_path):
    tiny_config.train.ema_decay = 0.5
    last = train(tiny_config, tmp_path, progress=False)
    model, state = load_checkpoint(last)
    own = state["training_weights"]
    params = dict(model.named_parameters())
    assert own and set(own) <= set(params)
    # two epochs of two steps moved the weights; the written ones are the average, which lags behind them
    assert any(not torch.allclose(params[k], own[k]) for k in own)
    best, _ = load_checkpoint(tmp_path / "best.pt")
    assert set(dict(best.named_parameters())) == set(params)
