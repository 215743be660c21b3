"""mtml.data.voxelize: points -> occupied voxels with majority labels."""

import numpy as np
import pytest

from mtml.data.toy import generate_scene
from mtml.data.voxelize import majority_per_group, voxelize
from mtml.errors import InputError
from mtml.scene import Scene


def test_majority_per_group():
    group = np.array([0, 0, 0, 1, 1, 3, 3])
    values = np.array([5, 5, 2, -1, 7, 4, 2])
    # group 1 and 3 are ties -> the smaller value; group 2 is empty -> -1
    np.testing.assert_array_equal(majority_per_group(group, values, 4), [5, -1, -1, 2])
    np.testing.assert_array_equal(majority_per_group(np.zeros(0, int), np.zeros(0, int), 2), [-1, -1])


def _cluster_scene():
    """Points in three 1 m voxels: (0,0,0) labels 1,1,2; (2,0,0) labels 3; (0,1,1) labels 4,5."""
    pts = np.array([
        [0.1, 0.1, 0.1], [0.5, 0.5, 0.5], [0.9, 0.2, 0.3],
        [2.5, 0.5, 0.5],
        [0.5, 1.5, 1.5], [0.2, 1.2, 1.9],
    ], dtype=np.float32)
    return Scene(
        points=pts,
        labels=np.array([1, 1, 2, 3, 5, 4]),
        instances=np.array([0, 0, -1, 2, 7, 7]),
        colors=np.array([[255, 0, 0], [0, 0, 0], [0, 255, 0], [0, 0, 255], [10, 10, 10], [30, 30, 30]], np.uint8),
    )


def test_majority_labels_and_colours():
    grid = voxelize(_cluster_scene(), voxel_size=1.0, origin=np.zeros(3))
    assert grid.shape == (3, 2, 2)
    np.testing.assert_array_equal(grid.coords, [[0, 0, 0], [0, 1, 1], [2, 0, 0]])  # unique, sorted
    np.testing.assert_array_equal(grid.labels, [1, 4, 3])  # (0,1,1) is a 4/5 tie -> 4
    np.testing.assert_array_equal(grid.instances, [0, 7, 2])
    np.testing.assert_allclose(grid.colors[0], [1 / 3, 1 / 3, 0], atol=1e-6)
    np.testing.assert_allclose(grid.colors[1], [20 / 255] * 3, atol=1e-6)
    assert grid.colors.dtype == np.float32
    np.testing.assert_array_equal(grid.point_to_voxel, [0, 0, 0, 2, 1, 1])


def test_point_to_voxel_maps_every_point():
    scene = generate_scene(11)
    grid = voxelize(scene, voxel_size=0.1)
    n = scene.num_points
    assert grid.point_to_voxel.shape == (n,) and grid.point_to_voxel.dtype == np.int64
    assert grid.point_to_voxel.min() >= 0 and grid.point_to_voxel.max() == grid.num_voxels - 1
    cells = np.floor((scene.points.astype(np.float64) - grid.origin) / grid.voxel_size).astype(np.int64)
    np.testing.assert_array_equal(grid.coords[grid.point_to_voxel], cells)
    assert len(np.unique(grid.coords, axis=0)) == grid.num_voxels
    assert (grid.coords >= 0).all() and (grid.coords < np.array(grid.shape)).all()
    np.testing.assert_allclose(grid.origin, scene.points.min(axis=0), atol=1e-6)
    # the majority label of each voxel is one of its points' labels
    assert (scene.labels == grid.labels[grid.point_to_voxel]).mean() > 0.9
    assert set(np.unique(grid.instances)) == set(np.unique(scene.instances))


def test_optional_annotations_stay_none():
    grid = voxelize(Scene(points=np.random.default_rng(0).random((50, 3))), 0.25)
    assert grid.labels is None and grid.instances is None and grid.colors is None


def test_max_voxels():
    scene = Scene(points=np.array([[0, 0, 0], [9.95, 9.95, 0.95]]), name="big", source="big.ply")
    grid = voxelize(scene, 0.1, max_voxels=100_000)
    assert grid.shape == (100, 100, 10)
    with pytest.raises(InputError) as info:
        voxelize(scene, 0.1, max_voxels=99_999)
    msg = str(info.value)
    assert msg.startswith("big.ply: ") and "100x100x10" in msg and "99999" in msg


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_points(bad):
    pts = np.zeros((4, 3))
    pts[2, 1] = bad
    with pytest.raises(InputError, match="NaN"):
        voxelize(Scene(points=pts, source="s.ply"), 0.1)


def test_bad_inputs():
    with pytest.raises(InputError, match="empty"):
        voxelize(Scene(points=np.zeros((0, 3))), 0.1)
    with pytest.raises(InputError, match=r"\[N, 3\]"):
        voxelize(Scene(points=np.zeros((5, 2))), 0.1)
    for size in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(InputError, match="voxel size"):
            voxelize(Scene(points=np.zeros((5, 3))), size)
    with pytest.raises(InputError, match="below the grid origin"):
        voxelize(Scene(points=np.zeros((5, 3))), 0.1, origin=np.ones(3))
