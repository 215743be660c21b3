"""An exponential moving average of the weights a run trains (``train.ema_decay``).

After every optimizer step the average moves toward the current weights: ``average += (1 - decay) * (weights -
average)``, so it remembers about ``1 / (1 - decay)`` steps. The averaged weights are the ones a run validates and
writes (``best.pt`` and ``last.pt``); the weights the optimizer works on travel in ``last.pt`` too, so a resumed run
goes on from them exactly. Only trainable parameters (``requires_grad``) are averaged; buffers (batch-norm
statistics) are the model's own.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """The moving average of ``model``'s trainable parameters, starting at their current values."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        self.average = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward ``model``'s current parameters (call after each optimizer step)."""
        params = dict(model.named_parameters())
        for name, avg in self.average.items():
            avg.lerp_(params[name].detach(), 1.0 - self.decay)

    @contextmanager
    def applied(self, model: nn.Module):
        """Within the block ``model`` holds the averaged parameters; afterwards its own again."""
        params = dict(model.named_parameters())
        own = {name: params[name].detach().clone() for name in self.average}
        with torch.no_grad():
            for name, avg in self.average.items():
                params[name].copy_(avg)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, weights in own.items():
                    params[name].copy_(weights)

    def training_weights(self, model: nn.Module) -> dict:
        """{name: tensor}: ``model``'s own values of the averaged parameters (kept in ``last.pt`` for resuming)."""
        params = dict(model.named_parameters())
        return {name: params[name].detach().clone() for name in self.average}

    @torch.no_grad()
    def resume(self, model: nn.Module, training_weights: dict) -> None:
        """Continue a run whose ``last.pt`` was loaded into ``model``: its parameters (the averaged ones, as
        written) become the average, and ``training_weights`` (``training_weights()`` of that run) the model's."""
        params = dict(model.named_parameters())
        missing = set(self.average) - set(training_weights)
        if missing:
            raise ValueError(f"the checkpoint lacks the training weights of {sorted(missing)[:3]}")
        for name in self.average:
            self.average[name] = params[name].detach().clone()
            params[name].copy_(training_weights[name])
