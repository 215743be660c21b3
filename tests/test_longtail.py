"""mtml.data.longtail: the long-tail synthetic semantic benchmark."""

import time
from dataclasses import replace

import numpy as np
import pytest

from mtml.data.longtail import (
    BOX,
    CYLINDER,
    LONGTAIL_CLASS_NAMES,
    LONGTAIL_CLASSES,
    LONGTAIL_FLOOR_LABEL,
    LONGTAIL_OBJECT_CLASS_IDS,
    LONGTAIL_WALL_LABEL,
    LongtailSceneConfig,
    class_frequency_splits,
    generate_longtail_scene,
    generate_longtail_scene_with_objects,
    longtail_class_weights,
    longtail_point_counts,
    sample_longtail_layout,
)
from mtml.data.registry import (
    class_set,
    label_names,
    longtail_class_splits,
    longtail_scene_seeds,
    longtail_train_point_counts,
)
from mtml.data.toy import polygon_distance
from mtml.data.voxelize import voxelize
from mtml.errors import InputError

CFG = LongtailSceneConfig()
NOISE_BOUND = 6 * CFG.noise
BY_NAME = {c.name: c for c in LONGTAIL_CLASSES}


@pytest.fixture(scope="module")
def scenes():
    """30 training scenes with their objects (generated once for the module)."""
    return [generate_longtail_scene_with_objects(seed) for seed in range(30)]


@pytest.fixture(scope="module")
def layouts():
    """The objects of the first 200 training scenes (layouts only, no points)."""
    return [sample_longtail_layout(np.random.default_rng(seed))[2] for seed in longtail_scene_seeds("train")[:200]]


def _local(points, center, yaw):
    """World points [N, >=2] -> (x, y) in a frame centred at ``center`` and rotated by ``yaw``."""
    c, s = np.cos(yaw), np.sin(yaw)
    dx, dy = points[:, 0] - center[0], points[:, 1] - center[1]
    return np.stack([dx * c + dy * s, -dx * s + dy * c], 1)


def _depth_in_part(points, obj, part):
    """How far each point [N, 3] lies inside one part of an object (<= 0 outside), metres."""
    kind, cx, cy, z0, sx, sy, sz = part
    c, s = np.cos(obj.yaw), np.sin(obj.yaw)
    center = np.asarray(obj.center) + np.array([cx * c - cy * s, cx * s + cy * c])
    loc = _local(points, center, obj.yaw)
    z = points[:, 2] - obj.base_z - z0
    zdepth = np.minimum(z, sz - z)
    if kind == CYLINDER:
        return np.minimum(sx / 2 - np.hypot(loc[:, 0], loc[:, 1]), zdepth)
    return np.minimum.reduce([sx / 2 - np.abs(loc[:, 0]), sy / 2 - np.abs(loc[:, 1]), zdepth])


# ---------------------------------------------------------------------------------------- classes


def test_class_list():
    names = list(LONGTAIL_CLASS_NAMES.values())
    assert len(names) >= 40 and len(set(names)) == len(names)
    assert sorted(LONGTAIL_CLASS_NAMES) == list(range(len(names)))  # consecutive ids 0..K-1
    assert LONGTAIL_CLASS_NAMES[LONGTAIL_FLOOR_LABEL] == "floor" and LONGTAIL_CLASS_NAMES[LONGTAIL_WALL_LABEL] == "wall"
    assert LONGTAIL_OBJECT_CLASS_IDS == tuple(range(2, len(names)))
    for group in (("chair", "office chair", "armchair"), ("cabinet", "kitchen cabinet"),
                  ("table", "coffee table", "desk"), ("shelf", "bookshelf")):
        assert len({BY_NAME[n].family for n in group}) == 1, group
    supported = {c.name for c in LONGTAIL_CLASSES if c.supported_by}
    assert {"monitor", "lamp", "microwave", "printer", "toaster", "box"} <= supported
    for c in LONGTAIL_CLASSES:
        for s in c.supported_by:  # supports exist and stand on the floor themselves
            assert s in BY_NAME and not BY_NAME[s].supported_by


def test_class_shapes_visible_and_distinct():
    rng = np.random.default_rng(0)
    signature = {}
    for c in LONGTAIL_CLASSES:
        rows = []
        for _ in range(10):
            parts = np.array([p[:7] for p in c.build(rng)], dtype=float)
            assert set(parts[:, 0]) <= {BOX, CYLINDER} and (parts[:, 4:7] > 0).all(), c.name
            lo = (parts[:, 1:3] - parts[:, 4:6] / 2).min(0)
            hi = (parts[:, 1:3] + parts[:, 4:6] / 2).max(0)
            size = sorted(hi - lo, reverse=True)
            top = (parts[:, 3] + parts[:, 6]).max()
            assert max(size[0], top) >= 0.25 and top <= 2.0 and parts[:, 3].min() >= 0.0, c.name
            rows.append([size[0], size[1], top, len(parts), (parts[:, 0] == CYLINDER).sum()])
        signature[c.name] = np.mean(rows, axis=0)
    names = list(signature)
    for i, a in enumerate(names):  # every pair differs by >= 8 cm in a mean dimension or in its parts
        for b in names[i + 1:]:
            sa, sb = signature[a], signature[b]
            assert np.abs(sa[:3] - sb[:3]).max() >= 0.08 or np.abs(sa[3:] - sb[3:]).max() >= 0.5, (a, b)


def test_zipf_weights():
    w = longtail_class_weights()
    p = np.array([w[i] for i in LONGTAIL_OBJECT_CLASS_IDS])
    assert np.isclose(p.sum(), 1.0) and (np.diff(p) < 0).all()
    assert np.isclose(p[0] / p[-1], len(p) ** 1.1)


# ----------------------------------------------------------------------------------------- scenes


def test_deterministic():
    a, b = generate_longtail_scene(7), generate_longtail_scene(7)
    for field in ("points", "colors", "labels", "instances"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.name == "longtail_00007"
    c = generate_longtail_scene(8)
    assert c.num_points != a.num_points or not np.array_equal(c.points, a.points)


def test_scene_arrays(scenes):
    for scene, objects in scenes:
        n = scene.num_points
        assert scene.points.dtype == np.float32 and scene.points.shape == (n, 3)
        assert scene.colors.dtype == np.uint8 and scene.colors.shape == (n, 3)
        assert scene.labels.dtype == np.int64 and scene.instances.dtype == np.int64
        stuff = np.isin(scene.labels, [LONGTAIL_FLOOR_LABEL, LONGTAIL_WALL_LABEL])
        assert (scene.instances[stuff] == -1).all() and (scene.instances[~stuff] >= 0).all()
        assert set(np.unique(scene.instances[~stuff])) <= set(range(len(objects)))
        for obj in objects:  # one label per instance, the object's
            labels = np.unique(scene.labels[scene.instances == obj.instance])
            assert labels.tolist() in ([obj.label], [])
        assert scene.points[:, 2].min() > -NOISE_BOUND and scene.points[:, 2].max() < CFG.wall_height + NOISE_BOUND
        floor = scene.labels == LONGTAIL_FLOOR_LABEL
        assert np.abs(scene.points[floor, 2]).max() < NOISE_BOUND


def test_generated_points_on_visible_surfaces(scenes):
    for scene, objects in scenes[:10]:
        for obj in objects:
            own = scene.instances == obj.instance
            for part in obj.parts:  # no point of anything else lies deep inside a part
                assert _depth_in_part(scene.points[~own], obj, part).max() < NOISE_BOUND + CFG.hidden_tolerance
            if obj.support is None:  # no floor is sampled under parts standing on the floor
                floor = scene.points[scene.labels == LONGTAIL_FLOOR_LABEL]
                for part in obj.parts[obj.parts[:, 3] == 0]:
                    xy = _local(floor, obj.center, obj.yaw)
                    kind, cx, cy, _, sx, sy, _ = part
                    d = xy - [cx, cy]
                    inner = (np.hypot(*d.T) < sx / 2 - NOISE_BOUND) if kind == CYLINDER else \
                        (np.abs(d[:, 0]) < sx / 2 - NOISE_BOUND) & (np.abs(d[:, 1]) < sy / 2 - NOISE_BOUND)
                    assert not inner.any(), LONGTAIL_CLASS_NAMES[obj.label]


def test_objects_do_not_overlap_and_supported_ones_sit_on_tops(scenes, layouts):
    n_supported = 0
    all_layouts = [objs for _, objs in scenes] + layouts[30:100]
    for objects in all_layouts:
        floor_objs = [o for o in objects if o.support is None]
        if len(floor_objs) > 1:
            fp = np.stack([o.footprint() for o in floor_objs])
            dist = polygon_distance(fp[:, None], fp[None])
            np.fill_diagonal(dist, np.inf)
            assert dist.min() >= CFG.min_gap - 1e-9
        for o in floor_objs:
            assert o.base_z == 0.0
            assert (o.footprint() >= CFG.wall_gap - 1e-9).all()
        by_id = {o.instance: o for o in objects}
        for o in objects:
            if o.support is None:
                continue
            n_supported += 1
            sup = by_id[o.support]
            allowed = BY_NAME[LONGTAIL_CLASS_NAMES[o.label]].supported_by
            assert sup.support is None and LONGTAIL_CLASS_NAMES[sup.label] in allowed
            center, half, z = sup.top_surface()
            assert o.base_z == pytest.approx(z)  # stands exactly on the support's top part
            corners = _local(o.footprint(), sup.center, sup.yaw) - center
            assert (np.abs(corners) <= half + 1e-9).all()  # and within it
            for other in objects:  # clear of the other objects on the same support
                if other.support == o.support and other.instance != o.instance:
                    assert polygon_distance(o.footprint(), other.footprint()) >= CFG.item_gap - 1e-9
    assert n_supported >= 20


def test_objects_stay_in_room(scenes):
    for scene, objects in scenes:
        lo, hi = scene.points.min(0), scene.points.max(0)
        for o in objects:
            fp = o.footprint()
            assert (fp >= lo[:2] - 1e-6).all() and (fp <= hi[:2] + 1e-6).all()


def test_zipf_frequencies(layouts):
    counts = np.zeros(max(LONGTAIL_CLASS_NAMES) + 1, dtype=int)
    present = np.zeros_like(counts)
    for objects in layouts:
        labels = [o.label for o in objects]
        np.add.at(counts, labels, 1)
        present[list(set(labels))] += 1
    obj = counts[list(LONGTAIL_OBJECT_CLASS_IDS)]
    assert obj[0] > 10 * obj[-1] and obj[-1] > 0
    assert obj[:5].sum() > 2 * obj[-15:].sum()
    share = present[list(LONGTAIL_OBJECT_CLASS_IDS)] / len(layouts)
    assert share[0] > 0.8 and (share[-10:] < 0.1).all() and share[-10:].mean() < 0.07


def test_splits_disjoint():
    train, val, test = (set(longtail_scene_seeds(s)) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (600, 100, 100)
    assert not (train & val) and not (train & test) and not (val & test)
    with pytest.raises(InputError):
        longtail_scene_seeds("dev")


def test_class_frequency_splits_unit():
    counts = {10: 5, 11: 100, 12: 0, 13: 50, 14: 7, 15: 60, 16: 1}
    split = class_frequency_splits(counts)
    assert split == {11: "head", 15: "head", 13: "head", 14: "common", 10: "common", 16: "tail", 12: "tail"}


def test_measured_class_splits():
    split = longtail_class_splits()  # 200 training scenes, cached
    assert set(split) == set(LONGTAIL_OBJECT_CLASS_IDS)
    groups = {g: [c for c in split if split[c] == g] for g in ("head", "common", "tail")}
    sizes = [len(m) for m in groups.values()]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(LONGTAIL_OBJECT_CLASS_IDS)
    counts = longtail_train_point_counts()  # what the split was measured on (cached)
    head, common, tail = ([counts[c] for c in groups[g]] for g in ("head", "common", "tail"))
    assert min(head) >= max(common) and min(common) >= max(tail) and min(tail) > 0
    assert sum(head) > sum(common) > sum(tail)
    assert counts[LONGTAIL_OBJECT_CLASS_IDS[0]] in head  # the most frequent class (chair) is head
    classes = class_set("longtail")  # registered with these groups
    assert classes.ids == LONGTAIL_OBJECT_CLASS_IDS and "floor" not in classes.names and "wall" not in classes.names
    assert {g: set(m) for g, m in classes.groups.items()} == {g: set(m) for g, m in groups.items()}


def test_point_counts_match_generated_scenes():
    seeds = longtail_scene_seeds("train")[:3]
    full = np.zeros(max(LONGTAIL_CLASS_NAMES) + 1, dtype=int)
    for seed in seeds:
        full += np.bincount(generate_longtail_scene(seed).labels, minlength=len(full))
    quick = longtail_point_counts(seeds)
    assert quick == {c: int(full[c]) for c in LONGTAIL_OBJECT_CLASS_IDS}


def test_head_common_tail_point_counts_ordered():
    seeds = longtail_scene_seeds("train")[:60]
    counts = longtail_point_counts(seeds)
    split = class_frequency_splits(counts)
    by = {g: [counts[c] for c in counts if split[c] == g] for g in ("head", "common", "tail")}
    assert min(by["head"]) >= max(by["common"]) and min(by["common"]) >= max(by["tail"])
    assert sum(by["head"]) > sum(by["common"]) > sum(by["tail"])


def test_speed_and_size():
    cfg = replace(CFG, room_size=(5.0, 5.0))
    generate_longtail_scene(0, cfg)
    t0 = time.perf_counter()
    scenes = [generate_longtail_scene(seed, cfg) for seed in range(5)]
    per_scene = (time.perf_counter() - t0) / 5
    assert per_scene < 0.2
    for scene in scenes:
        assert scene.num_points < 100_000
        shape = voxelize(scene, 0.1).shape
        assert shape[0] <= 52 and shape[1] <= 52 and shape[2] <= 22


def test_bad_input():
    with pytest.raises(InputError):
        generate_longtail_scene(-1)
    with pytest.raises(InputError):
        generate_longtail_scene(0, replace(CFG, wall_height=3.0))
    with pytest.raises(InputError):
        longtail_class_splits(0)


def test_label_names():
    assert label_names("longtail") == LONGTAIL_CLASS_NAMES
