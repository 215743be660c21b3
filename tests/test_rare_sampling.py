"""mtml.data.rare_sampling: copying rare-class instances into scenes where they fit."""

import numpy as np
import pytest

from mtml.data.longtail import LONGTAIL_FLOOR_LABEL, generate_longtail_scene, generate_longtail_scene_with_objects
from mtml.data.rare_sampling import (
    BankInstance,
    InstanceBank,
    count_inserted_instances,
    height_map,
    insert_rare_instances,
    oriented_box,
    place_rare_instances,
)
from mtml.data.registry import longtail_class_splits, longtail_scene_seeds
from mtml.data.toy import footprint_corners
from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.scene import Scene

MARGIN, FLATNESS = 0.05, 0.06
Z_TOL = FLATNESS / 2  # points this close above the support belong to the support surface


@pytest.fixture(scope="module")
def groups():
    split = longtail_class_splits()
    return {g: [c for c in split if split[c] == g] for g in ("head", "common", "tail")}


@pytest.fixture(scope="module")
def bank(groups):
    scenes = [generate_longtail_scene(s) for s in longtail_scene_seeds("train")[:40]]
    return InstanceBank.from_scenes(scenes, groups["tail"] + groups["common"])


@pytest.fixture(scope="module")
def augmented(bank):
    """(original scene, its objects, augmented scene, placements) for 6 validation scenes."""
    rng = np.random.default_rng(123)
    out = []
    for seed in longtail_scene_seeds("val")[:6]:
        scene, objects = generate_longtail_scene_with_objects(seed)
        aug, placed = place_rare_instances(scene, bank, rng, 5, margin=MARGIN, flatness=FLATNESS)
        out.append((scene, objects, aug, placed))
    return out


def _in_footprint(points, center, half, yaw):
    """bool [N]: points' (x, y) inside the rectangle (centre, half edges, yaw)."""
    c, s = np.cos(yaw), np.sin(yaw)
    dx, dy = points[:, 0] - center[0], points[:, 1] - center[1]
    return (np.abs(dx * c + dy * s) <= half[0]) & (np.abs(-dx * s + dy * c) <= half[1])


def test_oriented_box():
    rng = np.random.default_rng(0)
    local = rng.uniform(-1, 1, (500, 2)) * [0.6, 0.25]
    yaw = 0.4
    c, s = np.cos(yaw), np.sin(yaw)
    xy = np.stack([local[:, 0] * c - local[:, 1] * s, local[:, 0] * s + local[:, 1] * c], 1) + [2.0, 3.0]
    center, half, got = oriented_box(xy)
    assert np.allclose(center, [2.0, 3.0], atol=0.02) and np.allclose(half, [0.6, 0.25], atol=0.02)
    assert got == pytest.approx(yaw, abs=0.02)
    center, half, got = oriented_box(np.array([[0.0, 0.0], [1.0, 0.0]]))  # degenerate: no hull
    assert np.allclose(center, [0.5, 0.0]) and np.allclose(half, [0.5, 0.0])


def test_height_map():
    pts = np.array([[0.0, 0.0, 0.0], [0.05, 0.05, 0.7], [0.25, 0.0, 0.3], [0.25, 0.02, 0.1], [0.0, 0.35, 0.0]])
    origin, h = height_map(pts, 0.1)
    assert np.allclose(origin, [0.0, 0.0]) and h.shape == (3, 4)
    assert h[0, 0] == 0.7 and h[2, 0] == 0.3 and h[1, 1] == 0.0 and h[0, 3] == 0.0


def test_bank(bank, groups):
    assert len(bank) > 50
    assert set(bank.class_counts) <= set(groups["tail"] + groups["common"])
    assert set(groups["tail"]) & set(bank.class_counts)
    for entry in bank.instances:
        assert entry.points[:, 2].min() == 0.0 and entry.height == pytest.approx(float(entry.points[:, 2].max()))
        assert (np.abs(entry.points[:, :2]) <= np.asarray(entry.half_xy) + 1e-4).all()
        assert entry.colors is not None and len(entry.colors) == len(entry.points)
    # uniform over classes: every class gets the same total probability, so a rare one is not swamped
    labels = np.array([e.label for e in bank.instances])
    per_class = [bank.probabilities[labels == c].sum() for c in bank.class_counts]
    assert np.allclose(per_class, 1.0 / len(bank.class_counts))
    natural = InstanceBank(bank.instances, balance=0.0)
    assert np.allclose(natural.probabilities, 1.0 / len(bank))


def test_inserted_instances_sit_on_floor_or_an_object_top(augmented):
    kinds = set()
    for scene, _, aug, placed in augmented:
        assert len(placed) >= 1
        for p in placed:
            own = aug.instances == p.instance
            assert aug.points[own, 2].min() == pytest.approx(p.support_z, abs=0.02)
            inside = _in_footprint(aug.points, p.center, p.half_xy, p.yaw) & ~own
            below = inside & (aug.points[:, 2] <= p.support_z + Z_TOL) & (aug.points[:, 2] > p.support_z - 0.1)
            assert below.sum() >= 5  # something carries it
            owners = np.unique(aug.instances[below])
            assert len(owners) == 1, owners  # one surface: the floor or one object
            if owners[0] == -1:
                assert (aug.labels[below] == LONGTAIL_FLOOR_LABEL).all() and abs(p.support_z) < 0.05
                kinds.add("floor")
            else:
                top = aug.points[aug.instances == owners[0], 2].max()
                assert p.support_z == pytest.approx(top, abs=0.04)  # the top of that object
                kinds.add("object")
    assert kinds == {"floor", "object"}


def test_inserted_instances_collide_with_nothing(augmented):
    for scene, objects, aug, placed in augmented:
        for p in placed:
            own = aug.instances == p.instance
            # no other point (scene or other inserted instance) inside its box above the support
            box = _in_footprint(aug.points, p.center, p.half_xy, p.yaw)
            box &= (aug.points[:, 2] > p.support_z + Z_TOL) & (aug.points[:, 2] <= p.support_z + p.height)
            assert not (box & ~own).any()
            # its points do not enter the (true) box of any generated object
            pts = aug.points[own]
            pts = pts[pts[:, 2] > p.support_z + Z_TOL]
            for obj in objects:
                z_in = (pts[:, 2] > obj.base_z) & (pts[:, 2] < obj.base_z + obj.height)
                assert not (z_in & _in_footprint(pts, obj.center, obj.half_xy, obj.yaw)).any()
            # it stays within the room
            lo, hi = scene.points[:, :2].min(0), scene.points[:, :2].max(0)
            corners = footprint_corners(np.asarray(p.center), np.asarray(p.half_xy), np.asarray(p.yaw))
            assert (corners >= lo).all() and (corners <= hi).all()


def test_augmented_scene_arrays(augmented):
    for scene, _, aug, placed in augmented:
        n = scene.num_points
        np.testing.assert_array_equal(aug.points[:n], scene.points)
        np.testing.assert_array_equal(aug.labels[:n], scene.labels)
        np.testing.assert_array_equal(aug.instances[:n], scene.instances)
        assert aug.name == scene.name and aug.source == scene.source
        assert aug.points.dtype == np.float32 and aug.colors.dtype == np.uint8 and len(aug.colors) == aug.num_points
        assert count_inserted_instances(scene, aug) == len(placed)
        first = scene.instances.max() + 1
        assert [p.instance for p in placed] == list(range(first, first + len(placed)))
        for p in placed:
            assert (aug.labels[aug.instances == p.instance] == p.label).all()


def test_tail_share_of_voxels_rises(augmented, groups):
    before = after = 0.0
    for scene, _, aug, _ in augmented:
        g0, g1 = voxelize(scene, 0.1), voxelize(aug, 0.1)
        before += np.isin(g0.labels, groups["tail"]).mean()
        after += np.isin(g1.labels, groups["tail"]).mean()
    assert after > 1.3 * before


def test_deterministic(bank):
    scene = generate_longtail_scene(650)
    a = insert_rare_instances(scene, bank, np.random.default_rng(5), 4)
    b = insert_rare_instances(scene, bank, np.random.default_rng(5), 4)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.instances, b.instances)
    c = insert_rare_instances(scene, bank, 5, 4)  # an int seed works too
    np.testing.assert_array_equal(a.points, c.points)


def test_impossible_placement_leaves_scene_unchanged(bank):
    scene = generate_longtail_scene(651)
    pts = np.random.default_rng(0).normal(0.0, 0.02, (200, 3)).astype(np.float32)
    huge = BankInstance(points=pts * [200, 200, 1] + [0, 0, 0.1], colors=None, label=40, half_xy=(20.0, 20.0),
                        height=0.3, source="huge")
    out, placed = place_rare_instances(scene, InstanceBank([huge]), np.random.default_rng(0), 3)
    assert placed == [] and count_inserted_instances(scene, out) == 0
    np.testing.assert_array_equal(out.points, scene.points)
    np.testing.assert_array_equal(out.instances, scene.instances)
    # a room packed with 20 cm blocks of alternating heights (every bank instance is wider): nowhere flat
    g = np.stack(np.meshgrid(np.arange(0, 4, 0.03), np.arange(0, 4, 0.03), indexing="ij"), -1).reshape(-1, 2)
    block = (g // 0.2).astype(np.int64)
    z = np.where((block[:, 0] + block[:, 1]) % 2 == 0, 0.3, 1.0)
    full = Scene(points=np.column_stack([g, z]).astype(np.float32), labels=np.full(len(g), 5, np.int64),
                 instances=block[:, 0] * 20 + block[:, 1], name="packed")
    out, placed = place_rare_instances(full, bank, np.random.default_rng(0), 5)
    assert placed == [] and out.num_points == full.num_points


def test_bad_input(bank):
    with pytest.raises(InputError):
        InstanceBank.from_scenes([Scene(points=np.zeros((3, 3), np.float32))], [2])
    with pytest.raises(InputError):
        InstanceBank([]).sample(np.random.default_rng(0))
    with pytest.raises(InputError):
        insert_rare_instances(generate_longtail_scene(0), bank, 0, 1, cell=0.0)
