"""Geometry inputs, the semantic head, and one forward for all heads."""

import numpy as np
import pytest
import torch

from mtml.data.dataset import floor_level, make_sample, network_input
from mtml.data.toy import TOY_BOX_SIZES_M, generate_scene
from mtml.data.voxelize import voxelize
from mtml.model.model import ModelConfig, MTMLNet, inference_bytes_per_voxel
from mtml.scene import Scene

SMALL = {"full_channels": 4, "half_channels": 8, "dilated_blocks": 1, "dilation": 2, "out_channels": 8}


def _model(**kw):
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict({"num_classes": 6, "inputs": ["occupancy", "height"], "semantic_head": True,
                                 "semantic_dim": 16, "backbone": SMALL, **kw})
    return MTMLNet(cfg).eval()


def test_geometry_input_channels():
    grid = voxelize(generate_scene(3), 0.1)
    cfg = ModelConfig(num_classes=6, inputs=["occupancy", "height", "rgb", "semantic"])
    x = network_input(grid, cfg)
    assert x.shape[0] == cfg.in_channels() == 1 + 1 + 3 + 6
    c = grid.coords
    occ = x[0][c[:, 0], c[:, 1], c[:, 2]]
    assert torch.all(occ == 1) and float(x[0].sum()) == grid.num_voxels
    height = x[1][c[:, 0], c[:, 1], c[:, 2]].numpy()
    floor = grid.labels == 0
    assert np.median(height[floor]) == pytest.approx(0.05, abs=0.051)  # floor voxels: centre 5 cm above floor
    for label, size in TOY_BOX_SIZES_M.items():  # the top voxel of a box: its height less half a voxel
        if (grid.labels == label).any():
            assert height[grid.labels == label].max() == pytest.approx(size[2] - 0.05, abs=0.11)
    assert torch.all(x[2:5][:, c[:, 0], c[:, 1], c[:, 2]] == 0.5)  # no colour in the scan: grey
    assert torch.equal(x[5:].sum(0), x[0])  # one-hot labels cover every occupied voxel once


def test_floor_level_ignores_a_few_stray_points_below():
    rng = np.random.default_rng(0)
    floor = np.c_[rng.uniform(0, 3, (5000, 2)), np.full(5000, 0.5)]
    stray = np.c_[rng.uniform(0, 3, (5, 2)), np.full(5, 0.0)]  # 0.5% of the voxels
    grid = voxelize(Scene(points=np.r_[floor, stray].astype(np.float32)), 0.1)
    assert floor_level(grid) == 5


def test_sparse_forward_equals_dense_gather():
    model = _model()
    grid = voxelize(generate_scene(1), 0.1)
    x = network_input(grid, model.cfg)[None]
    coords = torch.from_numpy(grid.coords)
    with torch.no_grad():
        dense = model(x)
        sparse = model(x, coords)
    for key in ("embedding", "direction", "semantic"):
        gathered = dense[key][0][:, coords[:, 0], coords[:, 1], coords[:, 2]].T
        assert sparse[key].shape == gathered.shape
        assert torch.allclose(sparse[key], gathered, atol=1e-5)


def test_semantic_head_logits_follow_prototypes():
    model = _model()
    anchors = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    model.semantic_head.set_anchors(anchors)
    assert torch.allclose(model.semantic_head.classifier, anchors)
    logits = model.semantic_head.logits(anchors * 5)
    assert torch.equal(logits.argmax(1), torch.arange(6))
    assert float(logits.detach().max()) == pytest.approx(model.semantic_head.logit_scale, rel=1e-5)
    before = model.semantic_head.classifier.clone()
    model.semantic_head.set_anchors(anchors.flip(0), init_classifier=False)  # scratch: prototypes untouched
    assert torch.equal(model.semantic_head.classifier, before)


def test_sample_semantic_targets_and_ignored_labels():
    model = _model()
    grid = voxelize(generate_scene(2), 0.1)
    sample = make_sample(grid, model.cfg, [0], ignore_labels=[0])
    assert sample.semantic.shape == (grid.num_voxels,)
    assert torch.all(sample.semantic[torch.from_numpy(grid.labels == 0)] == -1)
    assert torch.equal(sample.semantic[torch.from_numpy(grid.labels != 0)], torch.from_numpy(grid.labels[grid.labels != 0]))


def test_memory_estimate_counts_the_semantic_head():
    plain = ModelConfig(num_classes=6, inputs=["occupancy", "height"])
    with_head = ModelConfig(num_classes=6, inputs=["occupancy", "height"], semantic_head=True)
    assert inference_bytes_per_voxel(with_head) > inference_bytes_per_voxel(plain)


def test_unknown_input_feature_is_refused():
    with pytest.raises(ValueError, match="unknown model inputs"):
        MTMLNet(ModelConfig(inputs=["normals"]))


def test_scannet200_configs_anchor_the_200_class_names():
    import json
    from pathlib import Path

    from mtml.config import load_config
    from mtml.train.segment import set_text_anchors

    root = Path(__file__).resolve().parents[1]
    for name in ("scannet/scannet200_semantic_pretrain.yaml", "scannet/scannet200_semantic.yaml"):
        cfg = load_config(root / "configs" / name)
        assert cfg.model.semantic_head and not cfg.model.needs_labels and cfg.data.semantic_ignore == [0]
    assert cfg.loss.semantic == "cb_focal" and cfg.data.rare_instances > 0
    from mtml.labels import scannet_label_data

    names = scannet_label_data()["scannet200"]["names"]
    assert len(names) == 200 and cfg.model.num_classes == 201  # + "unlabeled"
    shared = root.parent / "shared" / "data" / "scannet_labels.json"
    if shared.exists():  # the package's copy is the shared label file's list
        assert json.loads(shared.read_text())["scannet200"]["names"] == list(names)
    cfg.model.backbone.full_channels, cfg.model.backbone.half_channels = 4, 8
    model = MTMLNet(cfg.model)
    set_text_anchors(model, cfg)
    from mtml.model.text import make_text_encoder

    expected = make_text_encoder("minilm").encode_sentences([names[0], names[-1]])
    assert torch.allclose(model.semantic_head.anchors[1], expected[0], atol=1e-5)
    assert torch.allclose(model.semantic_head.anchors[200], expected[1], atol=1e-5)
