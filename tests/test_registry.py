"""mtml.data.registry: every dataset, its seed ranges, class sets and training data, looked up by name."""

from itertools import combinations
from types import SimpleNamespace

import numpy as np
import pytest

from mtml.data import registry as reg
from mtml.data.longtail import LONGTAIL_CLASS_NAMES, LONGTAIL_OBJECT_CLASS_IDS, LongtailSceneConfig
from mtml.data.toy import TOY_CLASS_NAMES, ToySceneConfig, generate_scene
from mtml.errors import InputError
from mtml.labels import ClassSet, scannet_label_data

# The seeds of every range, written out: the scenes of a split must never change.
EXPECTED_SEEDS = {
    ("toy", "train"): range(0, 900),
    ("toy", "test"): range(900, 1000),
    ("toy", "val"): range(100_000, 100_100),
    ("toy", "harder"): range(200_000, 300_000),
    ("toy", "referring_extra"): range(300_000, 400_000),
    ("longtail", "train"): range(0, 600),
    ("longtail", "val"): range(600, 700),
    ("longtail", "test"): range(700, 800),
}
BENCHMARK_SPLITS = ("train", "val", "test")
CLASS_SET_NAMES = ("toy", "longtail", "scannet20", "scannet200")


@pytest.mark.parametrize("name, split", sorted(EXPECTED_SEEDS))
def test_split_seeds_are_the_literal_ranges(name, split):
    assert reg.split_seeds(name, split) == EXPECTED_SEEDS[name, split]


def test_every_seed_range_is_listed():
    listed = {(name, split) for name in ("toy", "longtail") for split in reg.dataset(name).split_seeds}
    assert listed == set(EXPECTED_SEEDS)


@pytest.mark.parametrize("name", ["toy", "longtail"])
def test_ranges_of_a_dataset_do_not_overlap(name):
    ranges = reg.dataset(name).split_seeds
    assert set(BENCHMARK_SPLITS) <= set(ranges)
    for (a, seeds_a), (b, seeds_b) in combinations(ranges.items(), 2):
        assert not set(seeds_a) & set(seeds_b), f"{name}: {a} and {b} share seeds"


def test_a_dataset_with_overlapping_ranges_is_refused():
    with pytest.raises(ValueError, match="'a' and 'b' overlap"):
        reg.Dataset("bad", split_seeds={"a": range(0, 10), "b": range(9, 20)})
    assert len(reg.Dataset("fine", split_seeds={"a": range(0, 10), "b": range(10, 20)}).split_seeds) == 2


def test_harder_and_referring_extra_overlap_no_split():
    splits = set().union(*(reg.split_seeds("toy", s) for s in BENCHMARK_SPLITS))
    harder, extra = set(reg.split_seeds("toy", "harder")), set(reg.split_seeds("toy", "referring_extra"))
    assert not harder & splits and not extra & splits and not harder & extra


def test_seed_constants_and_their_readers_agree():
    from mtml.data.referring import TOY_EXTRA_SEED_START
    from mtml.tables.toy_table1 import HARDER_SEED_START

    assert HARDER_SEED_START == 200_000 and TOY_EXTRA_SEED_START == 300_000
    assert reg.longtail_scene_seeds("test") == list(range(700, 800))
    assert reg.TOY_SPLIT_SEEDS["train"] == range(0, 900) and reg.LONGTAIL_SPLIT_SEEDS["val"] == range(600, 700)


def test_toy_scene_seeds_blocks():
    train, test, everything = reg.toy_scene_seeds("train"), reg.toy_scene_seeds("test"), reg.toy_scene_seeds("all")
    assert train == list(range(900)) and test == list(range(900, 1000)) and everything == list(range(1000))
    assert sorted(train + test) == everything
    assert reg.toy_scene_seeds("test", num_scenes=20, base_seed=1000) == list(range(1018, 1020))
    assert reg.toy_scene_seeds("train", num_scenes=20, base_seed=1000) == list(range(1000, 1018))
    with pytest.raises(InputError, match="unknown toy split"):
        reg.toy_scene_seeds("val")


def _assert_names_known(err, names):
    message = str(err.value)
    assert all(n in message for n in names), message


def test_unknown_names_are_input_errors_naming_the_known_ones():
    with pytest.raises(InputError, match="unknown dataset 'nope'") as err:
        reg.dataset("nope")
    _assert_names_known(err, ("toy", "longtail", "scannet20", "scannet200", "store"))
    with pytest.raises(InputError, match="unknown class set 'store'") as err:
        reg.class_set("store")
    _assert_names_known(err, CLASS_SET_NAMES)
    with pytest.raises(InputError, match="unknown benchmark 'nyu40'") as err:
        reg.label_names("nyu40")
    _assert_names_known(err, CLASS_SET_NAMES)
    with pytest.raises(InputError, match="unknown generated dataset 'scannet20'") as err:
        reg.split_seeds("scannet20", "train")
    _assert_names_known(err, ("toy", "longtail"))
    with pytest.raises(InputError, match="unknown split 'dev' of longtail") as err:
        reg.split_seeds("longtail", "dev")
    _assert_names_known(err, BENCHMARK_SPLITS)
    with pytest.raises(InputError, match="unknown split 'dev'"):
        reg.longtail_scene_seeds("dev")
    with pytest.raises(InputError, match="unknown data kind 'scannet20'") as err:
        reg.training_sets(SimpleNamespace(data=SimpleNamespace(kind="scannet20")))
    _assert_names_known(err, ("toy", "longtail", "store"))


def test_class_sets():
    toy = reg.class_set("toy")
    assert (toy.name, toy.ids, toy.names) == ("toy", (1, 2, 3, 4, 5),
                                              ("small cube", "long box", "flat box", "cabinet", "pillar"))
    longtail = reg.class_set("longtail")
    assert longtail.ids == LONGTAIL_OBJECT_CLASS_IDS and len(longtail) == 44
    assert longtail.names == tuple(LONGTAIL_CLASS_NAMES[i] for i in LONGTAIL_OBJECT_CLASS_IDS)
    assert sorted(i for ids in longtail.groups.values() for i in ids) == sorted(longtail.ids)
    split = reg.longtail_class_splits()
    assert all(split[i] == group for group, ids in longtail.groups.items() for i in ids)
    s20 = reg.class_set("scannet20")
    assert s20.ids == (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39) and s20.names[0] == "cabinet"
    s200 = reg.class_set("scannet200")
    assert len(s200) == 198 and "wall" not in s200.names and "floor" not in s200.names
    assert list(s200.groups) == ["head", "common", "tail"]
    assert sorted(i for ids in s200.groups.values() for i in ids) == sorted(s200.ids)
    assert reg.class_set_names()[:4] == CLASS_SET_NAMES


def test_label_names():
    assert reg.label_names("toy") == TOY_CLASS_NAMES
    assert reg.label_names("longtail") == LONGTAIL_CLASS_NAMES
    for name in ("scannet20", "scannet200"):
        data = scannet_label_data()[name]
        names = reg.label_names(name)
        assert names[0] == "unlabeled" and len(names) == len(data["ids"]) + 1
        assert [names[int(i)] for i in data["ids"]] == list(data["names"])
    assert reg.label_names("scannet20")[1] == "wall"
    fresh = reg.label_names("toy")
    fresh[0] = "changed"
    assert reg.label_names("toy")[0] == "floor"  # each call hands out its own dict


def test_every_class_set_is_labelled():
    for name in CLASS_SET_NAMES:
        names = reg.label_names(name)
        classes = reg.class_set(name)
        assert isinstance(classes, ClassSet) and classes.name == name
        assert all(i in names for i in classes.ids)


def test_make_scene_and_scene_names():
    toy = reg.dataset("toy")
    scene = toy.make_scene(905)
    assert scene.name == "toy_00905" and np.array_equal(scene.points, generate_scene(905).points)
    harder = toy.make_scene(905, ToySceneConfig(num_boxes=(2, 2)))
    assert len(np.unique(harder.instances[harder.instances >= 0])) <= 2
    longtail = reg.dataset("longtail")
    assert longtail.scene_config is LongtailSceneConfig
    for entry in (toy, longtail):
        for seed in (0, 12, 123_456):
            assert reg.parse_scene_name(entry.scene_name(seed)) == (entry.name, seed)
    assert reg.parse_scene_name("scene0000_00") is None
    assert reg.parse_scene_name("store_00001") is None  # a registered name that makes no scenes
    assert reg.parse_scene_name("toy") is None


def test_training_sets_follow_the_config():
    data = SimpleNamespace(kind="toy", train_scenes=4, val_scenes=3, toy={"num_boxes": (2, 3)}, stuff_classes=[0],
                           voxel_size=0.1, semantic_ignore=[])
    cfg = SimpleNamespace(data=data, model=SimpleNamespace(), train=SimpleNamespace(seed=7))
    train, val = reg.training_sets(cfg)
    assert train.keys == [0, 1, 2, 3] and len(val) == 3
    assert train.augment_seed == 7 and train.voxel_size == 0.1
    scene = val[2]()
    assert scene.name == "toy_100002"
    assert np.array_equal(scene.points, generate_scene(100_002, ToySceneConfig(num_boxes=(2, 3))).points)
    assert np.array_equal(train.make_scene(3).points, generate_scene(3, ToySceneConfig(num_boxes=(2, 3))).points)
    data.kind, data.longtail, data.train_scenes, data.val_scenes = "longtail", {}, 10_000, 2
    train, val = reg.training_sets(cfg)
    assert train.keys == list(range(600)) and [make().name for make in val] == ["longtail_00600", "longtail_00601"]


def test_register_class_set():
    reg.register_class_set("test-registry-tiny", lambda: ClassSet("test-registry-tiny", (1,), ("a",)))
    assert reg.class_set("test-registry-tiny").names == ("a",)
    with pytest.raises(InputError, match="unknown benchmark"):
        reg.label_names("test-registry-tiny")  # a class set alone has no label names


# ------------------------------------------------------------------- real scans: spaces and leave-one-space-out
from conftest import SCANNET_MINI_SCANS, require_scannet_mini  # noqa: E402


@pytest.fixture(scope="module")
def real_scans():
    """The real scannet_mini scans (VoteNet layout), read in place."""
    require_scannet_mini()
    return SCANNET_MINI_SCANS


def test_scan_spaces():
    assert reg.scan_space("scene0003_02") == "scene0003" and reg.scan_space("scene0003_00") == "scene0003"
    assert reg.scan_space("room") == "room" and reg.scan_space("scene03_1") == "scene03_1"
    with pytest.raises(InputError, match="at least two spaces"):
        reg.loso_folds(["scene0001_00", "scene0001_01"])


def test_leave_one_space_out_on_the_real_scans(real_scans):
    names = reg.scannet_scans(real_scans)
    assert len(names) == 16 and names == sorted(names)
    folds = reg.loso_folds(names)
    assert [space for space, _, _ in folds] == ["scene0001", "scene0003", "scene0004", "scene0005", "scene0006",
                                                "scene0007", "scene0008", "scene0009"]
    val_count = {n: 0 for n in names}
    for space, train, val in folds:
        assert val and all(reg.scan_space(n) == space for n in val)
        assert not {reg.scan_space(n) for n in train} & {reg.scan_space(n) for n in val}  # no held-out room trained
        assert sorted(train + val) == names
        for n in val:
            val_count[n] += 1
    assert set(val_count.values()) == {1}  # each scan is validated in exactly one fold
    assert dict((s, v) for s, _, v in folds)["scene0003"] == ["scene0003_00", "scene0003_01", "scene0003_02"]


def test_scans_training_data_hold_out_one_space(real_scans):
    data = SimpleNamespace(kind="scans", scans_root=str(real_scans), holdout_space="scene0006", benchmark="scannet20",
                           train_scenes=10_000, val_scenes=2, stuff_classes=[1, 2], voxel_size=0.1,
                           semantic_ignore=[0])
    cfg = SimpleNamespace(data=data, model=SimpleNamespace(), train=SimpleNamespace(seed=3))
    train, val = reg.training_sets(cfg)
    assert len(train.keys) == 13 and not any(k.startswith("scene0006") for k in train.keys)
    scenes = [make() for make in val]
    assert [s.name for s in scenes] == ["scene0006_00", "scene0006_01"]
    s20 = set(scannet_label_data()["scannet20"]["ids"]) | {0}
    assert all(set(np.unique(s.labels).tolist()) <= s20 for s in scenes)  # NYU40 ids outside ScanNet20 became 0
    scene = train.make_scene(train.keys[0])
    assert scene.name == train.keys[0] and scene.instances.min() == -1 and scene.points.shape[1] == 3
    data.holdout_space = ""
    _, val = reg.training_sets(cfg)
    assert [make().name for make in val] == ["scene0009_00", "scene0009_01"]  # default: the last space
    data.holdout_space = "scene0002"
    with pytest.raises(InputError, match="'scene0002' is not a space of these scans") as err:
        reg.training_sets(cfg)
    assert "scene0001, scene0003" in str(err.value)
    data.scans_root = ""
    with pytest.raises(InputError, match="needs data.scans_root"):
        reg.training_sets(cfg)


def test_a_config_of_kind_scans_gives_network_samples_of_real_scans(real_scans):
    from mtml.config import config_from_dict

    cfg = config_from_dict({
        "data": {"kind": "scans", "scans_root": str(real_scans), "holdout_space": "scene0003", "benchmark": "scannet20",
                 "train_scenes": 2, "val_scenes": 1, "semantic_ignore": [0], "stuff_classes": [0, 1, 2]},
        "model": {"inputs": ["occupancy", "height"], "semantic_head": True, "class_ids": "scannet20"},
    })
    train, val = reg.training_sets(cfg)
    assert train.keys == ["scene0001_00", "scene0001_01"] and val[0]().name == "scene0003_00"
    sample = train[0]
    assert sample.inputs.shape[0] == 2 and sample.num_instances >= 5
    assert sample.semantic is not None and len(sample.semantic) == sample.grid.num_voxels
