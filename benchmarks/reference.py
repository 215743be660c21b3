"""The fixed reference workload that every benchmark's timings are divided by, measured in the same run, so that
numbers from different machines and loads compare: a 1024x1024 float32 matmul, 20 times."""

from __future__ import annotations

import pytest
import torch


def reference_workload() -> None:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(20):
        a @ b


class RatioRecorder:
    """Keeps each benchmark's mean (seconds) by key and writes ``mean_s`` and ``ratio_to_reference`` (once the
    "reference" key is recorded) into the benchmark's extra info."""

    def __init__(self):
        self.means: dict = {}

    def record(self, benchmark, key: str, info: dict | None = None) -> None:
        benchmark.extra_info.update(info or {})
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["mean_s"] = mean
        if "reference" in self.means:
            benchmark.extra_info["ratio_to_reference"] = mean / self.means["reference"]
        self.means[key] = mean


def bundled_model_or_skip(name: str = "toy"):
    """A model bundled in mtml/checkpoints, loaded (``mtml.predict.checkpoint.LoadedModel``: model in eval mode,
    experiment config, checkpoint state); skips the calling benchmark when it is missing."""
    from mtml.predict.checkpoint import bundled_checkpoints, load_model

    if name not in bundled_checkpoints():
        pytest.skip(f"bundled checkpoint {name} missing (train it: see its model card in mtml/checkpoints/)")
    return load_model(name)
