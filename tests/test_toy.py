"""mtml.data.toy: the synthetic box benchmark."""

import time
from dataclasses import replace

import numpy as np
import pytest

from mtml.data.toy import (
    TOY_BOX_SIZES_M,
    TOY_CLASS_NAMES,
    TOY_INSTANCE_CLASS_IDS,
    ToySceneConfig,
    footprint_corners,
    generate_scene,
    generate_scene_with_boxes,
    polygon_distance,
    write_toy_dataset,
)
from mtml.io.ply import read_ply

CFG = ToySceneConfig()
NOISE_BOUND = 6 * CFG.noise  # no coordinate of ~50 x 35k points strays 6 sigma by chance


@pytest.fixture(scope="module")
def scenes():
    """50 scenes with their boxes (generated once for the module)."""
    return [generate_scene_with_boxes(seed) for seed in range(50)]


def _local(points, box):
    """Points [N, 3] in a box's frame: (lx, ly, z) with the box centred at lx = ly = 0."""
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    dx, dy = points[:, 0] - box.center[0], points[:, 1] - box.center[1]
    return np.stack([dx * c + dy * s, -dx * s + dy * c, points[:, 2]], 1)


def _depth_inside(points, box):
    """How far each point lies inside the solid box (<= 0 outside): float [N]."""
    loc = _local(points, box)
    hx, hy, h = box.size[0] / 2, box.size[1] / 2, box.size[2]
    return np.minimum.reduce([hx - np.abs(loc[:, 0]), hy - np.abs(loc[:, 1]), h - loc[:, 2], loc[:, 2]])


def _distance_to_surface(points, box):
    """Distance from each point to the box's boundary (all six faces), metres."""
    loc = _local(points, box)
    half = np.array([box.size[0] / 2, box.size[1] / 2, box.size[2] / 2])
    q = np.abs(loc - [0, 0, half[2]]) - half
    outside = np.linalg.norm(np.maximum(q, 0), axis=1)
    inside = np.minimum(q.max(axis=1), 0)
    return outside + np.abs(inside)


def test_constants():
    assert TOY_CLASS_NAMES[0] == "floor" and len(TOY_CLASS_NAMES) == 6
    assert TOY_INSTANCE_CLASS_IDS == [1, 2, 3, 4, 5]
    assert TOY_BOX_SIZES_M[4] == (1.2, 0.4, 0.8)
    assert TOY_BOX_SIZES_M[5] == (0.6, 0.6, 1.2)


def test_polygon_distance():
    sq = footprint_corners(np.zeros(2), np.array([0.5, 0.5]), np.array(0.0))
    shifted = lambda dx, dy, yaw=0.0: footprint_corners(np.array([dx, dy]), np.array([0.5, 0.5]), np.array(yaw))
    assert polygon_distance(sq, shifted(2.0, 0.0)) == pytest.approx(1.0)
    assert polygon_distance(sq, shifted(1.0, 0.0)) == pytest.approx(0.0, abs=1e-12)  # touching
    assert polygon_distance(sq, shifted(0.3, 0.2)) == 0.0  # overlapping
    assert polygon_distance(sq, shifted(2.0, 2.0)) == pytest.approx(np.sqrt(2.0))  # corner to corner
    # a diamond whose corner points at the square's edge
    d = polygon_distance(sq, shifted(1.5 + np.sqrt(0.5), 0.0, np.pi / 4))
    assert d == pytest.approx(1.0)
    # broadcasting: [3, 1] x [1, 2]
    many = polygon_distance(np.stack([sq] * 3)[:, None], np.stack([shifted(2, 0), shifted(0, 3)])[None])
    np.testing.assert_allclose(many, [[1.0, 2.0]] * 3)


def test_deterministic():
    a, b = generate_scene(7), generate_scene(7)
    for key in ("points", "labels", "instances"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert a.points.tobytes() == b.points.tobytes()
    c = generate_scene(8)
    assert a.points.shape != c.points.shape or not np.array_equal(a.points, c.points)
    assert a.name == "toy_00007" and a.colors is None


def test_arrays_and_point_count(scenes):
    for scene, boxes in scenes:
        n = scene.num_points
        assert 10_000 <= n <= 100_000
        assert scene.points.dtype == np.float32 and scene.points.shape == (n, 3)
        assert scene.labels.dtype == np.int64 and scene.instances.dtype == np.int64
        floor = scene.labels == 0
        np.testing.assert_array_equal(scene.instances[floor], -1)
        assert (scene.instances[~floor] >= 0).all()
        assert set(np.unique(scene.instances[~floor])) == {b.instance for b in boxes}
        for box in boxes:
            assert (scene.labels[scene.instances == box.instance] == box.label).all()
        lo, hi = CFG.num_boxes
        assert lo <= len(boxes) <= hi


def test_every_class_appears(scenes):
    seen = {box.label for _, boxes in scenes for box in boxes}
    assert seen == set(TOY_INSTANCE_CLASS_IDS)


def test_boxes_stand_inside_the_floor(scenes):
    for _, boxes in scenes:
        for box in boxes:
            assert box.size == TOY_BOX_SIZES_M[box.label]
            assert box.center[2] == pytest.approx(box.size[2] / 2)
            assert 0 <= box.yaw < np.pi
            corners = box.footprint()
            assert (corners >= -1e-9).all() and (corners <= np.array(CFG.floor_size) + 1e-9).all()


def test_gaps_and_contacts(scenes):
    contacts = same_class = 0
    for _, boxes in scenes:
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                d = polygon_distance(a.footprint(), b.footprint())
                if b.instance in a.touching:
                    assert a.instance in b.touching
                    assert d < 1e-9
                    assert a.yaw == b.yaw
                    contacts += 1
                    same_class += a.label == b.label
                else:
                    assert d >= CFG.min_gap - 1e-9
    assert contacts > 20
    assert 0 < same_class < contacts


def test_contact_faces_overlap(scenes):
    """Touching boxes share a face segment of at least min_face_overlap of the shorter face."""
    for _, boxes in scenes:
        for a in boxes:
            for j in a.touching:
                b = boxes[j]
                rel = _local(np.array([b.center]), a)[0, :2]
                ha, hb = np.array(a.size[:2]) / 2, np.array(b.size[:2]) / 2
                flush = np.flatnonzero(np.abs(np.abs(rel) - (ha + hb)) < 1e-6)  # the axis the faces meet on
                assert len(flush) == 1
                side = 1 - flush[0]
                overlap = min(ha[side], rel[side] + hb[side]) - max(-ha[side], rel[side] - hb[side])
                assert overlap >= CFG.min_face_overlap * 2 * min(ha[side], hb[side]) - 1e-9


def test_no_floor_under_boxes_and_no_hidden_faces(scenes):
    margin = NOISE_BOUND
    for scene, boxes in scenes[:20]:
        for box in boxes:
            depth = _depth_inside(scene.points.astype(np.float64), box)
            # floor points and other boxes' points never lie (deep) inside a box
            assert (depth[scene.instances != box.instance] < margin).all()
            # the floor under a box is not sampled: no floor point within the footprint shrunk by the margin
            loc = _local(scene.points[scene.labels == 0].astype(np.float64), box)
            under = (np.abs(loc[:, 0]) < box.size[0] / 2 - margin) & (np.abs(loc[:, 1]) < box.size[1] / 2 - margin)
            assert not under.any()


def test_points_on_box_surfaces(scenes):
    for scene, boxes in scenes[:20]:
        pts = scene.points.astype(np.float64)
        for box in boxes:
            own = pts[scene.instances == box.instance]
            assert len(own) > 100
            assert _distance_to_surface(own, box).max() < NOISE_BOUND
            loc = _local(own, box)
            # a top and no bottom
            assert (np.abs(loc[:, 2] - box.size[2]) < NOISE_BOUND).sum() > 20
            hx, hy = box.size[0] / 2 - NOISE_BOUND, box.size[1] / 2 - NOISE_BOUND
            bottom = (np.abs(loc[:, 0]) < hx) & (np.abs(loc[:, 1]) < hy) & (loc[:, 2] < NOISE_BOUND)
            assert not bottom.any()
        floor = pts[scene.labels == 0]
        assert np.abs(floor[:, 2]).max() < NOISE_BOUND
        assert floor[:, 0].min() > -NOISE_BOUND and floor[:, 0].max() < CFG.floor_size[0] + NOISE_BOUND


def test_noise_level():
    scene = generate_scene(3)
    z = scene.points[scene.labels == 0, 2]
    assert np.std(z) == pytest.approx(CFG.noise, rel=0.1)
    flat = generate_scene(3, replace(CFG, noise=0.0))
    np.testing.assert_array_equal(flat.points[flat.labels == 0, 2], 0.0)


def test_contact_config_extremes():
    never = replace(CFG, contact_fraction=0.0)
    for seed in range(5):
        _, boxes = generate_scene_with_boxes(seed, never)
        assert all(not b.touching for b in boxes)
    always_same = replace(CFG, contact_fraction=1.0, same_class_contact=1.0)
    touching = 0
    for seed in range(5):
        _, boxes = generate_scene_with_boxes(seed, always_same)
        for b in boxes:
            assert all(boxes[j].label == b.label for j in b.touching)
            touching += bool(b.touching)
    assert touching > 10
    never_same = replace(CFG, contact_fraction=1.0, same_class_contact=0.0)
    for seed in range(5):
        _, boxes = generate_scene_with_boxes(seed, never_same)
        for b in boxes:
            assert all(boxes[j].label != b.label for j in b.touching)


def test_generation_is_fast():
    start = time.perf_counter()
    for seed in range(5):
        generate_scene(100 + seed)
    # the target is well under 0.1 s per scene; this bound leaves room for a loaded machine
    assert (time.perf_counter() - start) / 5 < 0.5


def test_write_toy_dataset(tmp_path):
    paths = write_toy_dataset(tmp_path, [4, 5], progress=False)
    assert [p.name for p in paths] == ["toy_00004.ply", "toy_00005.ply"]
    back = read_ply(paths[0])
    want = generate_scene(4)
    np.testing.assert_array_equal(back.points, want.points)
    np.testing.assert_array_equal(back.labels, want.labels)
    np.testing.assert_array_equal(back.instances, want.instances)
    # resumable: existing files are not rewritten
    paths[0].write_bytes(b"sentinel")
    write_toy_dataset(tmp_path, [4, 5, 6], progress=False)
    assert paths[0].read_bytes() == b"sentinel"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy_00004.ply", "toy_00005.ply", "toy_00006.ply"]
