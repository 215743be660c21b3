"""Per-scan inference time of the referring head with the bundled model, backbone included (seeds/002 reports
per-scan inference time; the mtml goal is under 200 ms on a laptop-class CPU for a 100k-voxel scene).

Two scenes of the toy generator on a larger floor, voxelised at 10 cm:

* ``grid100k``: a 8.4 m x 8.4 m room whose dense voxel grid (what the dense backbone computes on) holds about
  100k voxels, about a ScanNet room at 10 cm;
* ``occupied100k``: a 30 m x 30 m hall with about 100k *occupied* voxels (a grid of about 1.3M voxels).

Each is timed for one sentence and for five sentences sharing one backbone pass: the network, the instances that
are the head's superpoints, and the head (``network_outputs``, ``segment_grid``, ``refer_voxels``: what
``mtml-infer --refer`` runs after voxelizing); text encoding is timed apart. Every time is also reported as
a ratio to a 1024x1024 float32 matmul reference (20 times) measured in the same run.

Run: python -m pytest benchmarks/bench_referring.py --benchmark-columns=mean,stddev,rounds
"""

from __future__ import annotations

import pytest
import torch
from reference import RatioRecorder, bundled_model_or_skip, reference_workload

from mtml.data.dataset import padded_shape
from mtml.data.toy import ToySceneConfig, generate_scene
from mtml.data.voxelize import voxelize
from mtml.model.text import make_text_encoder
from mtml.predict.infer import encode_descriptions, network_outputs, refer_voxels, referring_superpoints, segment_grid

SENTENCES = ["the tall pillar next to the cabinet", "the smallest cube", "the flat box in the middle of the room",
             "the left-most long box", "the cabinet behind the pillar"]
SCENES = {"grid100k": ToySceneConfig(floor_size=(8.4, 8.4), num_boxes=(10, 14)),
          "occupied100k": ToySceneConfig(floor_size=(30.0, 30.0), num_boxes=(60, 80))}
_RATIOS = RatioRecorder()
_record = _RATIOS.record


@pytest.fixture(scope="module")
def model():
    """(the bundled model, its instance clustering settings)."""
    loaded = bundled_model_or_skip("toy")
    if loaded.model.referring_head is None:
        pytest.skip("the bundled toy.pt has no referring head")
    return loaded.model, loaded.config.cluster


@pytest.fixture(scope="module")
def text(model):
    encoder = make_text_encoder(model[0].cfg.text_encoder)
    return {n: encode_descriptions(encoder, SENTENCES[:n]) for n in (1, 5)}


SCENE_OF = {}


@pytest.fixture(scope="module", params=list(SCENES))
def grid(request):
    scene = SCENE_OF[request.param] = generate_scene(0, SCENES[request.param])
    g = voxelize(scene, 0.1)
    shape = padded_shape(g.shape)
    print(f"\n{request.param}: {g.num_voxels} occupied voxels, grid {shape} = {shape[0] * shape[1] * shape[2]} voxels")
    return request.param, g


def test_reference_matmul(benchmark):
    benchmark.pedantic(reference_workload, rounds=5, warmup_rounds=1)
    _record(benchmark, "reference")


@pytest.mark.parametrize("sentences", [1, 5])
def test_refer_per_scan(benchmark, model, text, grid, sentences):
    """Backbone (all heads at the occupied voxels) + referring head for ``sentences`` descriptions."""
    (model, cluster_cfg), (name, g) = model, grid
    scene = SCENE_OF[name]

    def run():  # what mtml-infer --refer runs after voxelizing: one network pass, instances, the head
        with torch.no_grad():
            outputs = network_outputs(model, g)
            superpoints = referring_superpoints(segment_grid(model, scene, g, cluster_cfg, outputs=outputs))
            return refer_voxels(model, g, text[sentences], "cpu", outputs, superpoints)

    pred = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert pred.masks.shape == (sentences, g.num_voxels)
    shape = padded_shape(g.shape)
    _record(benchmark, f"{name}_{sentences}", {"occupied_voxels": g.num_voxels,
                                                "grid_voxels": int(shape[0] * shape[1] * shape[2])})


def test_text_encoding(benchmark, model):
    encoder = make_text_encoder(model[0].cfg.text_encoder)
    benchmark.pedantic(lambda: encode_descriptions(encoder, SENTENCES), rounds=5, warmup_rounds=1)
    _record(benchmark, "text_5")
