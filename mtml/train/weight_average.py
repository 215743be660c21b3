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
    """The moving average of ``model``'s trainable parameters, starting at their current values. It keeps
    references to those parameters, so every method acts on the model it was built on."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.average = {name: p.detach().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        """Move the average toward the model's current parameters (call after each optimizer step)."""
        for name, avg in self.average.items():
            avg.lerp_(self.params[name].detach(), 1.0 - self.decay)

    def training_weights(self) -> dict:
        """{name: tensor}: the model's own values of the averaged parameters (kept in ``last.pt`` for resuming)."""
        return {name: p.detach().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def _load(self, values: dict) -> None:
        for name, p in self.params.items():
            p.copy_(values[name])

    @contextmanager
    def applied(self):
        """Within the block the model holds the averaged parameters; afterwards its own again."""
        own = self.training_weights()
        self._load(self.average)
        try:
            yield
        finally:
            self._load(own)

    def resume(self, training_weights: dict) -> None:
        """Continue a run whose ``last.pt`` was loaded into the model: its parameters (the averaged ones, as
        written) become the average, and ``training_weights`` (``training_weights()`` of that run) the model's."""
        missing = set(self.params) - set(training_weights)
        if missing:
            raise ValueError(f"the checkpoint lacks the training weights of {sorted(missing)[:3]}")
        self.average = self.training_weights()
        self._load(training_weights)
