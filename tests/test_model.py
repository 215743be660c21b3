import pytest
import torch

from mtml.errors import InputError
from mtml.model.backbone import BackboneConfig, DilatedBackbone, receptive_field
from mtml.model.model import ModelConfig, MTMLNet, load_checkpoint, save_checkpoint


def test_default_receptive_field_at_least_142_voxels():
    assert receptive_field() >= 142


def test_receptive_field_formula_matches_gradients():
    """The formula must agree with where an output voxel's gradient actually reaches (small config)."""
    cfg = BackboneConfig(in_channels=1, full_channels=8, half_channels=8, dilation=2, dilated_blocks=1, out_channels=8)
    net = DilatedBackbone(cfg).eval()
    n = 64
    torch.manual_seed(0)
    x = torch.rand(1, 1, n, 2, 2, requires_grad=True)
    net(x)[0, :, n // 2].sum().backward()
    reach = torch.nonzero(x.grad[0, 0].abs().sum(dim=(1, 2)) > 0)[:, 0]
    span = int(reach.max() - reach.min() + 1)
    rf = receptive_field(cfg)
    # max-pool routes gradients to one voxel of each pair (and dead ReLUs cut paths), so the observed span
    # may fall short of the bound by a voxel or two
    assert rf - 2 <= span <= rf


def test_forward_shapes():
    net = MTMLNet(ModelConfig())
    out = net(torch.zeros(1, 6, 8, 10, 4))
    assert out["embedding"].shape == (1, 4, 8, 10, 4)
    assert out["direction"].shape == (1, 3, 8, 10, 4)


def test_checkpoint_round_trip(tmp_path):
    net = MTMLNet(ModelConfig(embedding_dim=3))
    save_checkpoint(tmp_path / "m.pt", net, {"epoch": 4})
    loaded, state = load_checkpoint(tmp_path / "m.pt")
    assert state["epoch"] == 4 and loaded.cfg.embedding_dim == 3
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_checkpoint_names_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(InputError, match="bad.pt"):
        load_checkpoint(bad)
    with pytest.raises(InputError, match="missing.pt: no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def _randomised(net: torch.nn.Module) -> torch.nn.Module:
    """The net with non-trivial BatchNorm statistics (fresh ones are the identity and would hide a missed BN)."""
    torch.manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def test_conv_transpose_at_matches_the_dense_layer():
    from mtml.model.backbone import conv_transpose_at

    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose3d(5, 3, 4, stride=2, padding=1)
    x = torch.randn(1, 5, 4, 3, 5)
    dense = layer(x)[0]
    coords = torch.cartesian_prod(torch.arange(8), torch.arange(6), torch.arange(10))  # every output voxel
    with torch.no_grad():
        at = conv_transpose_at(layer, x, coords)
    assert torch.allclose(at, dense[:, coords[:, 0], coords[:, 1], coords[:, 2]].T, atol=1e-5)
    with pytest.raises(ValueError, match="kernel 4, stride 2"):
        conv_transpose_at(torch.nn.ConvTranspose3d(5, 3, 2, stride=2), x, coords)


def test_sparse_eval_path_equals_the_dense_network():
    """With coords, an eval-mode model computes its upsampling, fusion and heads at those voxels only; the
    values must be those of the dense network read at the voxels."""
    net = _randomised(MTMLNet(ModelConfig(inputs=["occupancy", "height"], semantic_head=True, semantic_dim=16)))
    torch.manual_seed(2)
    x = torch.rand(1, 2, 12, 10, 6)
    coords = torch.nonzero(torch.rand(12, 10, 6) < 0.3)
    with torch.no_grad():
        dense = net(x)
        sparse = net(x, coords)
        dense_backbone = net.backbone(x)[0][:, coords[:, 0], coords[:, 1], coords[:, 2]].T
    assert torch.allclose(sparse["backbone"], dense_backbone, atol=1e-5)
    for key in ("embedding", "direction", "semantic"):
        expected = dense[key][0][:, coords[:, 0], coords[:, 1], coords[:, 2]].T
        assert sparse[key].shape == expected.shape
        assert torch.allclose(sparse[key], expected, atol=1e-5), key
