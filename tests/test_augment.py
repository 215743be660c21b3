"""Training augmentation (mtml.data.augment): the defaults are bit-identical to the generated benchmarks' old
augmentation, each heavy transform does what it says, and the heavy set builds valid samples of a real scan."""


import numpy as np
import pytest
import torch

from mtml.config import config_from_dict, load_config
from mtml.data.augment import (
    ELASTIC_NOISE_CLIP,
    AugmentConfig,
    augment_points,
    augment_scene,
    color_jitter,
    crop_mask,
    elastic_displacement,
)
from mtml.data.dataset import SceneSampleSet, padded_shape
from mtml.data.registry import dataset
from mtml.errors import InputError
from mtml.io.formats import find_scenes, read_any_scene
from mtml.scene import Scene

from conftest import SCANNET_MINI_SCANS, require_scannet_mini  # noqa: E402
HEAVY = load_config("scannet/mini.yaml").data.augment


def _legacy_augment_points(points, rng, voxel_size):
    """The augmentation as it was before AugmentConfig (verbatim): the reference the defaults must reproduce."""
    k = int(rng.integers(4))
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][k]
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)
    out = points.astype(np.float64) @ rot.T
    if rng.random() < 0.5:
        out[:, 0] = -out[:, 0]
    out[:, :2] += rng.uniform(0, voxel_size, size=2)
    return out.astype(np.float32)


def _room(num_points=20_000, seed=0, size=(6.0, 4.0, 2.5)) -> Scene:
    """A box-shaped random point cloud with colours, labels and instances (one per 1 m x-slab)."""
    rng = np.random.default_rng(seed)
    points = (rng.random((num_points, 3)) * np.asarray(size)).astype(np.float32)
    instances = np.floor(points[:, 0]).astype(np.int64)
    instances[points[:, 2] < 0.1] = -1
    return Scene(points=points, colors=rng.integers(0, 256, (num_points, 3), dtype=np.uint8),
                 labels=(instances + 2).astype(np.int64), instances=instances, name="room")


@pytest.mark.parametrize("seed", [0, 1, 7, 123, 2024])
def test_defaults_reproduce_the_old_augmentation(seed):
    """Same points, bit for bit, and the rng left in the same state (later draws unchanged too)."""
    scene = dataset("toy").make_scene(seed)
    old_rng, new_rng, scene_rng = (np.random.default_rng([3, seed, 1]) for _ in range(3))
    old = _legacy_augment_points(scene.points, old_rng, 0.1)
    assert np.array_equal(augment_points(scene.points, new_rng, 0.1, AugmentConfig()), old)
    augmented = augment_scene(scene, scene_rng, 0.1)
    assert np.array_equal(augmented.points, old) and augmented.points.dtype == np.float32
    assert old_rng.random() == new_rng.random() == scene_rng.random()
    assert augmented.colors is scene.colors and augmented.labels is scene.labels
    assert augmented.instances is scene.instances


def test_default_sample_set_matches_the_old_augmentation():
    """A toy and a long-tail training set built from a default config augment as before, epoch by epoch."""
    for name in ("toy", "longtail"):
        cfg = config_from_dict({"data": {"kind": name}})
        make = dataset(name).make_scene
        samples = SceneSampleSet([3, 11], make, cfg.model, [0], 0.1, augment_seed=5, augment=cfg.data.augment)
        for epoch in (0, 2):
            samples.epoch = epoch
            for i, key in enumerate(samples.keys):
                expected = _legacy_augment_points(make(key).points, np.random.default_rng([5, key, epoch]), 0.1)
                assert np.array_equal(samples.scene(i).points, expected)


def test_rotation_any_angle_preserves_distances_and_height():
    scene = _room(2000)
    config = AugmentConfig(rotation="any", flip_x=False, shift_voxels=0.0)
    angles = []
    for seed in range(6):
        out = augment_points(scene.points, np.random.default_rng(seed), 0.1, config).astype(np.float64)
        before = np.linalg.norm(scene.points[:200, None] - scene.points[None, :200], axis=-1)
        after = np.linalg.norm(out[:200, None] - out[None, :200], axis=-1)
        np.testing.assert_allclose(after, before, atol=1e-5)
        np.testing.assert_allclose(out[:, 2], scene.points[:, 2], atol=1e-6)
        angles.append(np.arctan2(out[0, 1], out[0, 0]) - np.arctan2(scene.points[0, 1], scene.points[0, 0]))
    quarter = np.mod(np.asarray(angles), np.pi / 2)
    assert np.any((quarter > 0.05) & (quarter < np.pi / 2 - 0.05)), "every angle was a multiple of 90 degrees"


def test_flip_y_mirrors_y_only():
    points = _room(500).points
    config = AugmentConfig(rotation="none", flip_x=False, flip_y=True, shift_voxels=0.0)
    flipped = [augment_points(points, np.random.default_rng(s), 0.1, config) for s in range(12)]
    assert all(np.array_equal(f[:, [0, 2]], points[:, [0, 2]]) for f in flipped)
    mirrored = [np.array_equal(f[:, 1], -points[:, 1]) for f in flipped]
    kept = [np.array_equal(f[:, 1], points[:, 1]) for f in flipped]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


def test_scaling_stays_in_range():
    points = _room(500).points.astype(np.float64)
    config = AugmentConfig(rotation="none", flip_x=False, shift_voxels=0.0, scale_range=[0.9, 1.1])
    factors = [np.linalg.norm(augment_points(points, np.random.default_rng(s), 0.1, config)[:50], axis=1)
               / np.linalg.norm(points[:50], axis=1) for s in range(40)]
    for f in factors:
        np.testing.assert_allclose(f, f[0], rtol=1e-5)  # isotropic: one factor for all points
    drawn = np.asarray([f[0] for f in factors])
    assert drawn.min() >= 0.9 - 1e-6 and drawn.max() <= 1.1 + 1e-6 and np.ptp(drawn) > 0.1


def test_elastic_displacement_bounded_and_smooth():
    points = _room(20_000).points.astype(np.float64)
    for granularity, magnitude in ([0.2, 0.4], [0.8, 1.6]):
        shift = elastic_displacement(points, np.random.default_rng(4), granularity, magnitude)
        assert shift.shape == points.shape and np.isfinite(shift).all()
        assert np.abs(shift).max() <= ELASTIC_NOISE_CLIP * magnitude
        assert np.abs(shift).max() > 1e-3 * magnitude  # it does move the points
        # nearby points move alike: a point 1 cm away moves by almost the same vector
        nearby = elastic_displacement(np.concatenate([points, points + [0.01, 0.0, 0.0]]),
                                      np.random.default_rng(4), granularity, magnitude)
        near_diff = np.linalg.norm(nearby[: len(points)] - nearby[len(points):], axis=1)
        far_diff = np.linalg.norm(shift - shift[np.random.default_rng(0).permutation(len(points))], axis=1)
        assert np.median(near_diff) < 0.1 * np.median(far_diff)


def test_elastic_in_scene_moves_points_but_keeps_them_aligned():
    scene = _room(5000)
    config = AugmentConfig(rotation="none", flip_x=False, shift_voxels=0.0, elastic=[[0.2, 0.4], [0.8, 1.6]])
    out = augment_scene(scene, np.random.default_rng(1), 0.1, config)
    moved = np.linalg.norm(out.points - scene.points, axis=1)
    assert out.num_points == scene.num_points and moved.max() > 0.01
    assert moved.max() <= ELASTIC_NOISE_CLIP * (0.4 + 1.6) * np.sqrt(3)
    assert np.array_equal(out.labels, scene.labels) and np.array_equal(out.colors, scene.colors)


def test_color_jitter_stays_uint8_in_range():
    colors = _room(5000).colors
    config = AugmentConfig(color_brightness=0.3, color_contrast=0.5, color_noise_std=0.2)
    for seed in range(5):
        out = color_jitter(colors, np.random.default_rng(seed), config)
        assert out.dtype == np.uint8 and out.shape == colors.shape
        assert out.min() >= 0 and out.max() <= 255
        assert not np.array_equal(out, colors)
    noise_only = color_jitter(np.full((20_000, 3), 128, np.uint8), np.random.default_rng(0),
                              AugmentConfig(color_noise_std=0.02))
    assert abs(noise_only.astype(float).std() - 0.02 * 255) < 0.5  # per-channel noise of the asked std
    brighter = [color_jitter(np.full((10, 3), 100, np.uint8), np.random.default_rng(s),
                             AugmentConfig(color_brightness=0.1)) for s in range(20)]
    offsets = np.asarray([b.astype(int) - 100 for b in brighter])
    assert np.abs(offsets).max() <= round(0.1 * 255) and np.ptp(offsets) > 5
    assert all(np.ptp(o) == 0 for o in offsets)  # one offset for every point and channel


def test_crop_keeps_arrays_aligned_and_a_window():
    scene = _room(20_000)
    point_id = np.arange(scene.num_points)
    # encode each point's index in its colour and label to check alignment after the crop
    scene.labels = point_id.astype(np.int64)
    scene.colors = np.stack([point_id % 256, (point_id // 256) % 256, point_id // 65536], axis=1).astype(np.uint8)
    config = AugmentConfig(rotation="none", flip_x=False, shift_voxels=0.0, crop_min_fraction=0.6,
                           crop_min_points=1000)
    cropped_any = False
    for seed in range(10):
        out = augment_scene(scene, np.random.default_rng(seed), 0.1, config)
        ids = out.labels
        assert len(out.points) == len(out.colors) == len(out.labels) == len(out.instances) >= 1000
        np.testing.assert_array_equal(out.points, scene.points[ids])
        np.testing.assert_array_equal(out.instances, scene.instances[ids])
        np.testing.assert_array_equal(out.colors, scene.colors[ids])
        span = np.ptp(out.points[:, :2], axis=0) / np.ptp(scene.points[:, :2], axis=0)
        assert (span >= 0.6 - 0.01).all()
        # a window: every point of the scene inside the kept points' x/y box was kept
        lo, hi = out.points[:, :2].min(axis=0), out.points[:, :2].max(axis=0)
        inside = ((scene.points[:, :2] >= lo) & (scene.points[:, :2] <= hi)).all(axis=1)
        assert inside.sum() == out.num_points
        cropped_any |= out.num_points < scene.num_points
    assert cropped_any


def test_crop_falls_back_when_too_few_points_or_no_instance():
    scene = _room(3000)
    assert crop_mask(scene, np.random.default_rng(0), 0.6, min_points=3000) is None
    out = augment_scene(scene, np.random.default_rng(0), 0.1, AugmentConfig(crop_min_fraction=0.6,
                                                                             crop_min_points=3000))
    assert out.num_points == scene.num_points
    # only the points of x < 0.1 carry an instance: almost every window misses them all
    lone = Scene(points=scene.points, instances=np.where(scene.points[:, 0] < 0.1, 0, -1).astype(np.int64))
    masks = [crop_mask(lone, np.random.default_rng(s), 0.6, min_points=10) for s in range(30)]
    assert any(m is None for m in masks)
    assert all(lone.instances[m].max() >= 0 for m in masks if m is not None)


def test_config_validation_and_yaml():
    with pytest.raises(InputError, match="rotation"):
        AugmentConfig(rotation="sometimes")
    with pytest.raises(InputError, match="scale_range"):
        AugmentConfig(scale_range=[1.1, 0.9])
    with pytest.raises(InputError, match="elastic"):
        AugmentConfig(elastic=[[0.2]])
    with pytest.raises(InputError, match="unknown setting"):
        config_from_dict({"data": {"augment": {"rotate": "any"}}})
    assert config_from_dict({}).data.augment == AugmentConfig()
    assert load_config("toy/toy.yaml").data.augment == AugmentConfig()
    assert HEAVY.rotation == "any" and HEAVY.flip_y and HEAVY.scale_range == [0.9, 1.1]
    assert HEAVY.elastic == [[0.2, 0.4], [0.8, 1.6]] and HEAVY.crop_min_fraction == 0.6
    again = config_from_dict(load_config("scannet/mini.yaml").to_dict())  # a checkpoint's round trip
    assert again.data.augment == HEAVY


def test_heavy_set_builds_a_valid_sample_of_a_real_scan():
    require_scannet_mini()
    cfg = load_config("scannet/mini.yaml")
    assert list(cfg.model.inputs) == ["occupancy", "height", "rgb"]  # channels 0, 1 and 2..4
    paths = find_scenes(SCANNET_MINI_SCANS)
    name = min(paths)
    original = read_any_scene(paths[name], benchmark="scannet20")

    def make(key):
        return read_any_scene(paths[key], benchmark="scannet20")

    samples = SceneSampleSet([name], make, cfg.model, cfg.data.stuff_classes, cfg.data.voxel_size,
                             augment_seed=0, ignore_labels=cfg.data.semantic_ignore, augment=cfg.data.augment)
    for epoch in range(2):
        samples.epoch = epoch
        scene = samples.scene(0)
        assert scene.num_points >= cfg.data.augment.crop_min_points
        assert len(scene.colors) == len(scene.labels) == len(scene.instances) == scene.num_points
        assert scene.colors.dtype == np.uint8
        sample = samples[0]
        grid = sample.grid
        assert len(grid.point_to_voxel) == scene.num_points  # the grid was built from the augmented points
        assert sample.inputs.shape == (cfg.model.in_channels(), *padded_shape(grid.shape))
        assert all(s % 2 == 0 for s in sample.inputs.shape[1:]) and torch.isfinite(sample.inputs).all()
        assert (sample.coords >= 0).all() and (sample.coords < torch.tensor(grid.shape)).all()
        assert sample.num_instances > 0 and len(sample.rows) == len(sample.instance_index)
        assert int(sample.instance_index.max()) == sample.num_instances - 1
        assert sample.semantic.shape == (grid.num_voxels,)
        assert int(sample.semantic.max()) < cfg.model.num_classes and int(sample.semantic.min()) >= -1
        rgb = sample.inputs[2:5]
        assert float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
        assert scene.num_points <= original.num_points
    # a fixed grid_shape pads each sample to at least that shape, and never cuts a rotated footprint
    for fixed in [(8, 8, 8), (200, 200, 64)]:
        samples.grid_shape = fixed
        sample = samples[0]
        expected = tuple(max(a, b) for a, b in zip(padded_shape(sample.grid.shape), fixed))
        assert tuple(sample.inputs.shape[1:]) == expected
