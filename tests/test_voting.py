"""Test-time voting (``mtml.predict.voting``): the copies of a scan, the vote, and the voted result on the bundled model."""

import dataclasses

import numpy as np
import pytest

from mtml.config import config_from_dict
from mtml.data.toy import generate_scene
from mtml.data.voxelize import voxelize
from mtml.model.model import load_checkpoint
from mtml.predict.infer import segment_grid, segment_grid_voted
from mtml.predict.voting import View, majority_labels, relabel_by_points, view_grid, view_points, voting_views
from mtml.scene import Instances, Scene
from mtml.tables.plain_scans import without_annotations


def test_views_in_order_turns_then_phases_then_mirrors():
    views = voting_views(16)
    assert views[0] == View(0, 0.0, False)  # the scan as given comes first
    assert [v.quarter_turns for v in views[:4]] == [0, 1, 2, 3]
    assert {v.phase for v in views[:4]} == {0.0} and {v.phase for v in views[4:8]} == {0.5}
    assert not any(v.mirror for v in views[:8]) and all(v.mirror for v in views[8:])
    assert len(set(views)) == 16
    assert voting_views(3) == views[:3]
    for bad in (0, 17):
        with pytest.raises(ValueError, match="between 1 and 16"):
            voting_views(bad)


def test_view_points_turn_and_mirror_keep_heights_and_distances():
    rng = np.random.default_rng(0)
    points = rng.uniform(-2, 2, (50, 3)).astype(np.float32)
    turned = view_points(np.array([[1.0, 0.0, 0.3]]), View(1, 0.0, False))
    np.testing.assert_allclose(turned, [[0.0, 1.0, 0.3]], atol=1e-6)
    mirrored = view_points(np.array([[1.0, 2.0, 0.3]]), View(0, 0.0, True))
    np.testing.assert_allclose(mirrored, [[-1.0, 2.0, 0.3]], atol=1e-6)
    for view in voting_views(16):
        out = view_points(points, view)
        assert out.dtype == np.float32 and out.shape == points.shape
        np.testing.assert_allclose(out[:, 2], points[:, 2], atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(out[1:] - out[:-1], axis=1),
                                   np.linalg.norm(points[1:] - points[:-1], axis=1), atol=1e-5)


def test_half_voxel_phase_moves_the_voxel_boundaries():
    scene = generate_scene(3)
    copy, grid = view_grid(scene, View(0, 0.0, False), 0.1)
    _, shifted = view_grid(scene, View(0, 0.5, False), 0.1)
    np.testing.assert_allclose(shifted.origin, grid.origin - [0.05, 0.05, 0.0])
    np.testing.assert_array_equal(copy.points, scene.points)
    # the same points, cut differently: some pairs that share a voxel on one grid do not on the other
    a, b = grid.point_to_voxel, shifted.point_to_voxel
    same_a = a[:-1] == a[1:]
    assert np.any(same_a & (b[:-1] != b[1:]))


def test_majority_labels_with_ties_to_the_first_pass():
    sets = np.array([[1, 2, 3, 4, 0],
                     [1, 5, 5, 7, 9],
                     [2, 5, 3, 8, 9],
                     [1, 2, 6, 4, 0]])
    # columns: clear 1; tie 2/5 with pass 0 -> 2; 3 twice; tie 4/.. -> 4 (pass 0's); tie 0/9 with pass 0 -> 0
    np.testing.assert_array_equal(majority_labels(sets), [1, 2, 3, 4, 0])
    # a tie that leaves the first pass out goes to the smallest label
    np.testing.assert_array_equal(majority_labels(np.array([[1], [3], [3], [2], [2]])), [2])
    np.testing.assert_array_equal(majority_labels(np.array([[7, 8]])), [7, 8])


def test_independent_errors_are_voted_away():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 6, 1000)
    sets = np.repeat(truth[None], 5, axis=0)
    for k in range(5):  # each pass gets a different fifth of the points wrong
        wrong = np.arange(1000) % 5 == k
        sets[k, wrong] = (truth[wrong] + 1 + k) % 6
    assert all((s != truth).mean() == pytest.approx(0.2) for s in sets)
    np.testing.assert_array_equal(majority_labels(sets), truth)


def _grid_with_two_instances():
    points = np.array([[0.05, 0.05, 0.05], [0.06, 0.05, 0.05], [0.15, 0.05, 0.05], [0.25, 0.05, 0.05],
                       [0.35, 0.05, 0.05], [0.36, 0.05, 0.05], [0.45, 0.05, 0.05]], dtype=np.float32)
    grid = voxelize(Scene(points=points), 0.1, origin=np.zeros(3))
    grid = dataclasses.replace(grid, labels=np.array([1, 1, 1, 2, 2]))
    return grid, Instances([np.array([0, 1]), np.array([3, 4])], np.array([1, 2]), np.array([0.9, 0.8]))


def test_relabel_by_points_takes_each_instance_majority_and_drops_stuff():
    grid, instances = _grid_with_two_instances()
    assert grid.num_voxels == 5
    # instance 0 holds points 0-2 (voxels 0, 1), instance 1 points 4-6 (voxels 3, 4); point 3 is in no instance
    point_labels = np.array([3, 3, 1, 2, 0, 0, 2])
    kept, voxel_labels = relabel_by_points(instances, grid, point_labels, stuff_classes=(0,))
    assert len(kept) == 1 and kept.labels.tolist() == [3]
    np.testing.assert_array_equal(kept.masks[0], [0, 1])
    np.testing.assert_array_equal(voxel_labels, [3, 3, 1, 0, 0])  # the dropped instance's voxels turn stuff


@pytest.fixture(scope="module")
def bundled_model(bundled_toy):
    path, experiment = bundled_toy
    model, _ = load_checkpoint(path)
    return model, config_from_dict(experiment, path)


def test_one_pass_is_the_plain_pipeline(bundled_model):
    model, exp = bundled_model
    scene = without_annotations(generate_scene(900))
    grid = voxelize(scene, exp.data.voxel_size)
    plain = segment_grid(model, scene, grid, exp.cluster, use_given_labels=False)
    voted = segment_grid(model, scene, grid, exp.cluster, use_given_labels=False, vote_passes=1)
    np.testing.assert_array_equal(plain.point_labels, voted.point_labels)
    assert [m.tolist() for m in plain.instances.masks] == [m.tolist() for m in voted.instances.masks]


def test_voted_result_is_consistent(bundled_model):
    model, exp = bundled_model
    truth = generate_scene(901)
    scene = without_annotations(truth)
    grid = voxelize(scene, exp.data.voxel_size)
    res = segment_grid(model, scene, grid, exp.cluster, use_given_labels=False, vote_passes=4)
    assert res.grid.coords is grid.coords and res.labels_source == "predicted"
    assert res.point_labels.shape == (scene.num_points,)
    assert set(np.unique(res.point_labels)) <= set(model.cfg.channel_ids())
    # mostly right: the passes agree with the truth on the bulk of the points
    assert (res.point_labels == truth.labels).mean() > 0.9
    point_instance = res.instances.point_instance_ids(res.grid)
    for k, label in enumerate(res.instances.labels):  # each instance carries its points' voted majority
        values, counts = np.unique(res.point_labels[point_instance == k], return_counts=True)
        assert label == values[counts.argmax()] and label != 0
    # every pass was run and timed
    assert res.timings["network"] > 0 and res.timings["voting_voxelize"] > 0


def test_given_labels_are_not_voted(bundled_model):
    model, exp = bundled_model
    scene = generate_scene(902)
    grid = voxelize(scene, exp.data.voxel_size)
    res = segment_grid(model, scene, grid, exp.cluster, use_given_labels=True, vote_passes=8)
    assert res.labels_source == "given"
    np.testing.assert_array_equal(res.point_labels, scene.labels)
    assert "voting_voxelize" not in res.timings


def test_segment_grid_voted_rejects_bad_pass_counts(bundled_model):
    model, exp = bundled_model
    scene = without_annotations(generate_scene(903))
    grid = voxelize(scene, exp.data.voxel_size)
    with pytest.raises(ValueError, match="between 1 and 16"):
        segment_grid_voted(model, scene, grid, exp.cluster, passes=17)
