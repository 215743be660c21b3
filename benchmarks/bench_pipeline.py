"""Speed of training and inference on one toy scene, network and post-processing apart.

Each timing is also reported as a ratio to a fixed reference workload (a 1024x1024 float32 matmul, 20 times)
measured in the same run, so numbers from different machines and loads can be compared.

Run: pytest benchmarks/bench_pipeline.py --benchmark-only --benchmark-columns=mean,stddev,rounds
"""

from __future__ import annotations

import pytest
import torch
from reference import RatioRecorder, bundled_model_or_skip, reference_workload

from mtml.cluster.pipeline import segment_instances
from mtml.data.dataset import make_sample
from mtml.data.toy import generate_scene
from mtml.data.voxelize import voxelize
from mtml.losses.focal import class_balanced_alpha
from mtml.predict.infer import predict_voxels
from mtml.train.segment import training_loss

_RATIOS = RatioRecorder()
_record = _RATIOS.record


@pytest.fixture(scope="module")
def toy():
    """The bundled toy model (post-processing time depends on how well the embedding is trained)."""
    loaded = bundled_model_or_skip("toy")
    cfg, model, state = loaded.config, loaded.model, loaded.state
    scene = generate_scene(900)
    grid = voxelize(scene, cfg.data.voxel_size)
    return cfg, scene, grid, model, state


def test_reference_matmul(benchmark):
    benchmark.pedantic(reference_workload, rounds=5, warmup_rounds=1)
    _record(benchmark, "reference")


def test_train_step(benchmark, toy):
    cfg, scene, grid, model, state = toy
    sample = make_sample(grid, cfg.model, cfg.data.stuff_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    alpha = class_balanced_alpha(state["class_voxel_counts"]) if cfg.loss.semantic == "cb_focal" else None
    model.train()

    def step():
        loss = training_loss(model, sample, cfg, alpha)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    _record(benchmark, "train_step")


def test_inference_network(benchmark, toy):
    cfg, scene, grid, model, _ = toy
    model.eval()
    benchmark.pedantic(lambda: predict_voxels(model, grid), rounds=10, warmup_rounds=1)
    _record(benchmark, "network")


def test_inference_postprocessing(benchmark, toy):
    cfg, scene, grid, model, _ = toy
    model.eval()
    pred = predict_voxels(model, grid)
    benchmark.pedantic(lambda: segment_instances(grid, pred.embedding, pred.direction, cfg.cluster), rounds=10, warmup_rounds=1)
    _record(benchmark, "postprocessing")
    if "network" in _RATIOS.means:
        benchmark.extra_info["share_of_inference"] = _RATIOS.means["postprocessing"] / (_RATIOS.means["postprocessing"] + _RATIOS.means["network"])


@pytest.fixture(scope="module")
def plain_toy(toy):
    """The toy scene without its labels, and its grid: what the plain-scan pipeline (and voting) reads."""
    from mtml.tables.plain_scans import without_annotations

    cfg, scene, _, model, _ = toy
    plain = without_annotations(scene)
    return cfg, plain, voxelize(plain, cfg.data.voxel_size), model


@pytest.mark.parametrize("passes", [1, 8])
def test_plain_scan_labels(benchmark, plain_toy, passes):
    """The whole plain-scan pipeline (network, instances, instance classifier, floor rules), with the labels voted
    over ``passes`` copies of the scene (``mtml.predict.voting``); the 8-pass run also reports its cost in single passes."""
    from mtml.predict.infer import segment_grid

    cfg, plain, grid, model = plain_toy
    model.eval()
    benchmark.pedantic(lambda: segment_grid(model, plain, grid, cfg.cluster, use_given_labels=False,
                                            vote_passes=passes), rounds=5 if passes == 1 else 3, warmup_rounds=1)
    _record(benchmark, f"plain_scan_vote{passes}")
    if passes > 1 and "plain_scan_vote1" in _RATIOS.means:
        benchmark.extra_info["single_passes"] = _RATIOS.means[f"plain_scan_vote{passes}"] / _RATIOS.means["plain_scan_vote1"]
