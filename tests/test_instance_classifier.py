"""The instance classifier (descriptors, targets, relabelling, its trainer) and point labels at the floor."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_SEMANTIC, train_instance_head_on_bundled

from mtml.config import config_from_dict
from mtml.data.voxelize import point_labels_at_floor, voxelize
from mtml.model.instance_classifier import (
    GEOMETRY_FEATURES,
    instance_descriptors,
    instance_geometry,
    instance_targets,
    relabel_instances,
)
from mtml.scene import Instances, Scene


def _box_scene(sides_xy, height, yaw, voxel=0.1):
    """A floor and one solid box (sides in metres, rotated by ``yaw``) standing on it: (scene, its voxel grid,
    the box's voxel rows)."""
    rng = np.random.default_rng(0)
    floor = np.stack(np.meshgrid(np.arange(-2, 2, 0.05), np.arange(-2, 2, 0.05)), -1).reshape(-1, 2)
    floor = np.c_[floor, np.zeros(len(floor))]
    u, v, w = np.meshgrid(*(np.arange(0.02, s, 0.04) for s in (*sides_xy, height)), indexing="ij")
    box = np.stack([u.ravel() - sides_xy[0] / 2, v.ravel() - sides_xy[1] / 2, w.ravel() + 0.01], 1)
    c, s = np.cos(yaw), np.sin(yaw)
    box[:, :2] = box[:, :2] @ np.array([[c, s], [-s, c]])
    points = np.concatenate([floor, box]) + rng.normal(0, 0.002, (len(floor) + len(box), 3))
    labels = np.r_[np.zeros(len(floor), np.int64), np.full(len(box), 2, np.int64)]
    instances = np.r_[np.full(len(floor), -1, np.int64), np.zeros(len(box), np.int64)]
    scene = Scene(points.astype(np.float32), labels=labels, instances=instances, name="box")
    grid = voxelize(scene, voxel)
    return scene, grid, np.nonzero(grid.instances == 0)[0]


def _box_grid(sides_xy, height, yaw):
    return _box_scene(sides_xy, height, yaw)[1:]


@pytest.mark.parametrize("yaw", [0.0, 0.5, 1.2])
def test_geometry_measures_the_footprint_along_its_own_axes(yaw):
    grid, rows = _box_grid((1.2, 0.4), 0.8, yaw)
    long_side, short_side, top, log_count = instance_geometry(grid, [rows])[0]
    assert long_side == pytest.approx(1.2, abs=0.25)
    assert short_side == pytest.approx(0.4, abs=0.25)
    assert long_side > 2 * short_side  # whatever the yaw: axis-aligned extents of a rotated box would not say so
    assert top == pytest.approx(0.8, abs=0.15)
    assert log_count == pytest.approx(np.log(len(rows)))


def test_descriptors_are_mean_probabilities_then_geometry():
    grid, rows = _box_grid((0.4, 0.4), 0.4, 0.0)
    probs = np.zeros((grid.num_voxels, 3), np.float32)
    probs[:, 0] = 1.0
    probs[rows[: len(rows) // 2]] = (0.0, 0.0, 1.0)
    d = instance_descriptors(grid, [rows], probs)
    assert d.shape == (1, 3 + GEOMETRY_FEATURES)
    share = (len(rows) // 2) / len(rows)
    assert np.allclose(d[0, :3], (1 - share, 0.0, share), atol=1e-6)
    assert np.allclose(d[0, 3:], instance_geometry(grid, [rows])[0])
    assert instance_descriptors(grid, [], probs).shape == (0, 3 + GEOMETRY_FEATURES)


def test_targets_take_the_majority_ground_truth_label():
    grid, rows = _box_grid((0.4, 0.4), 0.4, 0.0)
    floor_rows = np.nonzero(grid.labels == 0)[0][:50]
    mostly_box = np.r_[rows, floor_rows[:5]]
    t = instance_targets(grid, [mostly_box, floor_rows], channel_ids=[0, 1, 2])
    assert t.tolist() == [2, 0]
    assert instance_targets(grid, [floor_rows], channel_ids=[0, 1, 2], ignore=[0]).tolist() == [-1]
    assert instance_targets(dataclasses.replace(grid), [rows], channel_ids=[5, 2]).tolist() == [1]  # channel, not id


def test_relabel_gives_instances_and_voxels_their_class_and_drops_stuff():
    voxel_labels = np.array([0, 1, 1, 3, 3, 3, 0])
    inst = Instances([np.array([1, 2]), np.array([3, 4, 5]), np.array([6])], np.array([1, 3, 3]),
                     np.array([0.9, 0.8, 0.5]))
    kept, labels = relabel_instances(inst, voxel_labels, np.array([2, 3, 0]), stuff_classes=(0,))
    assert labels.tolist() == [0, 2, 2, 3, 3, 3, 0]
    assert len(kept) == 2 and kept.labels.tolist() == [2, 3] and kept.scores.tolist() == [0.9, 0.8]
    assert voxel_labels.tolist() == [0, 1, 1, 3, 3, 3, 0]  # the input is not modified


def test_point_labels_at_floor_split_a_mixed_voxel():
    """A 10 cm voxel at the foot of a box holds floor points and the box's lowest side points: the floor
    points are floor and the side points the box, whichever label the voxel has."""
    scene, grid, rows = _box_scene((0.4, 0.4), 0.4, 0.3)
    plain = grid.labels[grid.point_to_voxel]
    assert (plain != scene.labels).sum() > 50  # the mixed voxels mislabel points
    refined = point_labels_at_floor(scene.points, grid, grid.labels, floor_label=0, tolerance=0.02)
    assert (refined != scene.labels).sum() < 0.2 * (plain != scene.labels).sum()
    # a grid with no floor voxel is left as it is
    everything_box = np.full(grid.num_voxels, 2)
    assert (point_labels_at_floor(scene.points, grid, everything_box, 0, 0.02) == 2).all()


def test_point_labels_at_floor_give_the_foot_of_a_side_to_its_object():
    """The floor band also holds the lowest part of every box side. With foot_radius, a floor-height point on (or
    just outside) a side's plane goes back to the box; only floor-height points change, and far fewer box points
    stay floor."""
    from mtml.data.toy import generate_scene

    scene = generate_scene(0)
    grid = voxelize(scene, 0.1)
    band_only = point_labels_at_floor(scene.points, grid, grid.labels, floor_label=0, tolerance=0.03)
    with_feet = point_labels_at_floor(scene.points, grid, grid.labels, floor_label=0, tolerance=0.03,
                                      foot_radius=0.05, foot_offset=0.01)
    box = scene.labels > 0
    assert (box & (with_feet == 0)).sum() < 0.5 * (box & (band_only == 0)).sum()
    assert (with_feet != scene.labels).sum() < 0.85 * (band_only != scene.labels).sum()
    changed = with_feet != band_only
    floor_height = np.median(scene.points[grid.labels[grid.point_to_voxel] == 0, 2])  # as the function measures it
    assert changed.any() and (np.abs(scene.points[changed, 2] - floor_height) <= 0.03).all()
    assert (with_feet[changed] > 0).all()  # a foot takes an object's label, never the floor's


def _one_side_scene(side: float, extra_floor=None):
    """A box side at x = 1 (the box on the side ``side`` points away from) on a floor, plus ``extra_floor`` points
    [K, 3] given in the side = 1 frame (labelled floor): (scene, its grid, the side's points [M, 3])."""
    extra_floor = np.zeros((0, 3)) if extra_floor is None else extra_floor
    rng = np.random.default_rng(0)
    y, z = np.meshgrid(np.arange(0.0, 1.0, 0.04), np.arange(0.005, 0.4, 0.04), indexing="ij")
    wall = np.stack([np.full(y.size, 1.0), y.ravel(), z.ravel()], 1)  # the side facing +x (side 1) or -x
    top = np.stack([rng.uniform(0.6, 1.0, 300), rng.uniform(0.0, 1.0, 300), np.full(300, 0.4)], 1)
    fx, fy = np.meshgrid(np.arange(1.02, 1.6, 0.04), np.arange(0.0, 1.0, 0.04), indexing="ij")
    floor = np.stack([fx.ravel(), fy.ravel(), np.zeros(fx.size)], 1)
    far_floor = np.stack([rng.uniform(-1.0, 3.0, 3000), rng.uniform(-1.0, 2.0, 3000), np.zeros(3000)], 1)
    far_floor = far_floor[np.abs(far_floor[:, 0] - 1.0) > 0.7]
    points = np.concatenate([wall, top, floor, far_floor, extra_floor])
    points[:, 0] = 1.0 + side * (points[:, 0] - 1.0)  # mirrored: the box lies at x > 1 for side -1
    labels = np.r_[np.full(len(wall) + len(top), 3), np.zeros(len(points) - len(wall) - len(top), np.int64)]
    scene = Scene(points.astype(np.float32), labels=labels.astype(np.int64), name="one side")
    return scene, voxelize(scene, 0.1), wall


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_the_foot_of_a_side_is_what_lies_on_its_plane(side):
    """Floor-height points on a side's plane take the box's label, floor points 2 cm or more outside it stay
    floor, whichever way the box faces."""
    scene, grid, wall = _one_side_scene(side)
    out = point_labels_at_floor(scene.points, grid, grid.labels, floor_label=0, tolerance=0.03, foot_radius=0.05,
                                foot_offset=0.01)
    feet = np.arange(len(wall))[wall[:, 2] < 0.03]
    assert len(feet) and (out[feet] == 3).all()
    assert (out[scene.labels == 0] == 0).all()  # the floor, from 2 cm outside the side on


def test_a_higher_point_may_lie_further_outside_the_side():
    """foot_rise: 1.5 cm outside the side, a point 2 cm above the floor is the side's foot (allowance 1 + 0.5 * 2
    cm), while one at floor height is floor (allowance 1 cm)."""
    probes = np.array([[1.015, 0.5, 0.02], [1.015, 0.3, 0.0]])
    scene, grid, _ = _one_side_scene(1.0, probes)
    n = scene.num_points
    for rise, expected in ((0.0, [0, 0]), (0.5, [3, 0])):
        out = point_labels_at_floor(scene.points, grid, grid.labels, floor_label=0, tolerance=0.03,
                                    foot_radius=0.05, foot_offset=0.01, foot_rise=rise)
        assert out[n - 2:].tolist() == expected, rise


TINY_CLASSIFIER = {
    **TINY_SEMANTIC,
    "name": "tiny_instance_classifier",
    "model": {**TINY_SEMANTIC["model"], "instance_classifier": True},
    "train": {**TINY_SEMANTIC["train"], "task": "classify_instances"},
}


def test_trainer_trains_only_the_classifier_and_inference_uses_it(tmp_path, bundled_toy):
    """Three scenes on the bundled model (a model that finds instances), then the classifier's answers forced."""
    from mtml.data.toy import generate_scene
    from mtml.predict.infer import segment_scene

    model, state = train_instance_head_on_bundled(tmp_path, bundled_toy, "classify_instances", "instance_classifier")

    # force the classifier's answer: every instance becomes class channel 3, and its voxels with it
    with torch.no_grad():
        for p in model.instance_classifier.parameters():
            p.zero_()
        model.instance_classifier.net[-1].bias[3] = 1.0
    exp = config_from_dict(state["experiment"])
    scene = dataclasses.replace(generate_scene(3), labels=None, instances=None)
    res = segment_scene(model, scene, exp.cluster, use_given_labels=False)
    assert len(res.instances) and (res.instances.labels == 3).all()
    for rows in res.instances.masks:
        assert (res.grid.labels[rows] == 3).all()
    # classified as floor (stuff): no instance left
    with torch.no_grad():
        model.instance_classifier.net[-1].bias.zero_()
        model.instance_classifier.net[-1].bias[0] = 1.0
    assert len(segment_scene(model, scene, exp.cluster, use_given_labels=False).instances) == 0


def test_trainer_needs_the_classifier_and_an_init(tmp_path):
    from mtml.errors import InputError
    from mtml.train.trainers import run_training

    no_head = {**TINY_CLASSIFIER, "model": {**TINY_CLASSIFIER["model"], "instance_classifier": False}}
    with pytest.raises(InputError, match="instance_classifier: true"):
        run_training(config_from_dict(no_head), tmp_path / "a", progress=False)
    with pytest.raises(InputError, match="needs --init"):
        run_training(config_from_dict(TINY_CLASSIFIER), tmp_path / "b", progress=False)
