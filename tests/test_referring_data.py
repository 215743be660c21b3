"""mtml.data.referring: the synthetic referring benchmark (ScanRefer-schema records, one object per description)."""

import json
from collections import Counter

import numpy as np
import pytest

from mtml.data import referring as R
from mtml.data.longtail import LONGTAIL_CLASS_NAMES, generate_longtail_scene
from mtml.data.registry import split_seeds
from mtml.data.toy import TOY_CLASS_NAMES, generate_scene
from mtml.errors import InputError
from mtml.scene import Scene

HANDMADE = R.HANDMADE_DESCRIPTIONS
SCANREFER_KEYS = {"scene_id", "object_id", "object_name", "ann_id", "description", "token"}


@pytest.fixture(scope="module")
def generated():
    """(scene, class_names, records) for 12 toy and 12 long-tail test scenes, default per_scene."""
    out = []
    for seeds, make, names in ((split_seeds("toy", "test")[:12], generate_scene, TOY_CLASS_NAMES),
                               (split_seeds("longtail", "test")[:12], generate_longtail_scene, LONGTAIL_CLASS_NAMES)):
        for s in seeds:
            scene = make(s)
            out.append((scene, names, R.generate_descriptions(scene, names, np.random.default_rng(s))))
    return out


def _object_geometry(scene: Scene, object_id) -> dict:
    """Independent of the module: bounds and xy of an instance's points."""
    p = scene.points[scene.instances == int(object_id)].astype(np.float64)
    lo, hi = p.min(0), p.max(0)
    return {"center": (lo + hi) / 2.0, "min": lo, "max": hi, "xy": p[:, :2], "height": hi[2] - lo[2], "points": p}


def _stands_on(t: dict, a: dict) -> bool:
    """Target geometry t is off the floor, above a's footprint, and a has points at t's bottom around it."""
    p = a["points"]
    around = ((p[:, :2] >= t["min"][:2] - 0.1) & (p[:, :2] <= t["max"][:2] + 0.1)).all(1)
    return bool(t["min"][2] > a["min"][2] + 0.15 and (a["min"][:2] <= t["center"][:2]).all()
                and (t["center"][:2] <= a["max"][:2]).all() and (np.abs(p[around, 2] - t["min"][2]) < 0.1).sum() >= 3)


def _class_members(scene: Scene, names: dict, label: int) -> list:
    ids = []
    for i in np.unique(scene.instances[scene.instances >= 0]):
        if np.bincount(scene.labels[scene.instances == i]).argmax() == label:
            ids.append(int(i))
    return ids


# --------------------------------------------------------------------------------------------- schema


def test_records_have_scanrefer_schema(generated):
    for scene, names, records in generated:
        for r in records:
            assert SCANREFER_KEYS <= set(r)
            assert r["scene_id"] == scene.name
            assert isinstance(r["object_id"], str) and r["object_id"].isdigit()
            assert isinstance(r["ann_id"], str) and r["ann_id"].isdigit()
            assert " " not in r["object_name"]
            assert r["token"] == R.tokenize(r["description"])
            assert all(t == t.lower() for t in r["token"])
        # ann_id counts 0, 1, ... per object
        by_obj = {}
        for r in records:
            by_obj.setdefault(r["object_id"], []).append(int(r["ann_id"]))
        assert all(v == list(range(len(v))) for v in by_obj.values())


def test_tokenize_splits_punctuation_like_scanrefer():
    assert R.tokenize("This is the sofa's cushion. It is left-most, near 2.5 m!") == [
        "this", "is", "the", "sofa", "'s", "cushion", ".", "it", "is", "left-most", ",", "near", "2.5", "m", "!"]


def test_json_round_trip(tmp_path, generated):
    records = [r for _, _, recs in generated[:2] for r in recs]
    path = tmp_path / "sub" / "refer.json"
    R.write_referring_json(records, path)
    assert json.loads(path.read_text()) == records
    assert R.read_referring_json(path) == records
    assert not [p for p in path.parent.iterdir() if p.name != "refer.json"]  # no temp files left


def test_loader_accepts_real_scanrefer_records(tmp_path):
    path = tmp_path / "ScanRefer_filtered_val.json"
    path.write_text(json.dumps([{"scene_id": "scene0011_00", "object_id": 5, "object_name": "office_chair",
                                 "ann_id": "0", "description": "This is a black office chair. It is next to the desk.",
                                 "eval_type": "multiple"}]))
    (rec,) = R.read_referring_json(path)
    assert rec["object_id"] == "5" and rec["eval_type"] == "multiple"
    assert rec["token"][:5] == ["this", "is", "a", "black", "office"] and rec["token"][-1] == "."


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not a JSON file"),
    ('{"scene_id": "x"}', "expected a JSON list"),
    ('[{"scene_id": "toy_00001", "object_id": "1", "object_name": "pillar", "ann_id": "0"}]',
     "record 0: missing key 'description'"),
    ('[{"scene_id": "toy_00001", "object_id": "1", "object_name": "pillar", "ann_id": "0", "description": "a"},'
     ' {"scene_id": "toy_00001", "object_id": [1], "object_name": "pillar", "ann_id": "0", "description": "b"}]',
     "record 1: object_id"),
    ('[{"scene_id": "toy_00001", "object_id": "1", "object_name": "pillar", "ann_id": "0", "description": "a",'
     ' "token": "a"}]', "record 0: token must be a list"),
    ('[3]', "record 0: expected an object"),
])
def test_loader_errors_name_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        R.read_referring_json(path)
    assert err.value.source == str(path) and problem in str(err.value)


def test_loader_missing_file_and_writer_rejects_bad_records(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        R.read_referring_json(tmp_path / "nope.json")
    path = tmp_path / "out.json"
    with pytest.raises(InputError, match="record 0: missing key 'scene_id'"):
        R.write_referring_json([{"object_id": "1"}], path)
    assert not path.exists()


# ------------------------------------------------------------------------------------------ generator


def test_deterministic_for_the_rng():
    scene = generate_longtail_scene(705)
    a = R.generate_descriptions(scene, LONGTAIL_CLASS_NAMES, np.random.default_rng(3))
    b = R.generate_descriptions(scene, LONGTAIL_CLASS_NAMES, np.random.default_rng(3))
    c = R.generate_descriptions(scene, LONGTAIL_CLASS_NAMES, np.random.default_rng(4))
    assert a == b and a != c


def test_split_records_do_not_depend_on_num_scenes():
    two = R.build_referring_split("toy", "test", num_scenes=2, seed=1)
    three = R.build_referring_split("toy", "test", num_scenes=3, seed=1)
    assert three[: len(two)] == two
    assert R.build_referring_split("toy", "test", num_scenes=2, seed=2) != two


def test_at_least_five_descriptions_per_scene_spread_over_objects(generated):
    for scene, names, records in generated:
        n_objects = len(R.scene_facts(scene, names).instances)
        assert n_objects >= 2
        assert len(records) >= 5, scene.name
        assert len({r["description"] for r in records}) == len(records)
        assert len({r["object_id"] for r in records}) >= min(4, n_objects), scene.name


def test_each_description_identifies_exactly_its_object(generated):
    for scene, names, records in generated:
        facts = R.scene_facts(scene, names)
        for r in records:
            p = r["predicate"]
            hold = R.evaluate_predicate(facts, p)  # plain meaning, slack 0
            assert hold.sum() == 1, (scene.name, r["description"])
            assert facts.instances[hold][0] == int(r["object_id"])
            assert R.evaluate_predicate(facts, p, slack=1.0).sum() == 1  # no near miss either
            assert names[p["label"]].replace(" ", "_") == r["object_name"]
            assert r["description"] == R.render_description(facts, p, _template_of(facts, p, r["description"]))


def _template_of(facts, predicate, text):
    """The TEMPLATES entry that renders ``text`` (each description comes from one)."""
    hits = [t for t in R.TEMPLATES[predicate["fact"]] if R.render_description(facts, predicate, t) == text]
    assert hits, text
    return hits[0]


def test_facts_are_geometrically_true(generated):
    """Re-check every generated fact from the raw points, without the module's predicates."""
    seen = set()
    for scene, names, records in generated:
        for r in records:
            p, fact = r["predicate"], r["predicate"]["fact"]
            t = _object_geometry(scene, r["object_id"])
            seen.add(fact)
            if fact == "between":
                ends = [_object_geometry(scene, i) for i in _class_members(scene, names, p["anchor_label"])
                        if i != int(r["object_id"])]
                assert len(ends) == 2, r["description"]
                a, b = ends[0]["center"][:2], ends[1]["center"][:2]
                x = t["center"][:2]
                along = (x - a) @ (b - a) / ((b - a) @ (b - a))
                (dx, dy), (ex, ey) = b - a, x - a
                dist = abs(dx * ey - dy * ex) / np.linalg.norm(b - a)
                assert 0.1 < along < 0.9 and dist < 0.65, (scene.name, r["description"])
                continue
            if p["anchor_id"] is not None or p["anchor_label"] is not None:
                if p["anchor_id"] is not None:
                    assert p["anchor_id"] != r["object_id"]
                    anchors = [int(p["anchor_id"])]
                    assert len(_class_members(scene, names, int(np.bincount(
                        scene.labels[scene.instances == anchors[0]]).argmax()))) == 1  # the anchor's class is unique
                else:  # "a <class>": one of several objects of that class
                    seen.add("any anchor")
                    anchors = _class_members(scene, names, p["anchor_label"])
                    assert len(anchors) >= 2 and p["anchor_label"] != p["label"]
                    assert f"a {names[p['anchor_label']]}" in r["description"] or \
                        f"an {names[p['anchor_label']]}" in r["description"]

                def holds(a):
                    return {
                        "left of": lambda: t["center"][0] < a["center"][0],
                        "right of": lambda: t["center"][0] > a["center"][0],
                        "behind": lambda: t["center"][1] > a["center"][1],
                        "in front of": lambda: t["center"][1] < a["center"][1],
                        "next to": lambda: np.min(np.linalg.norm(t["xy"][::7, None] - a["xy"][None, ::7], axis=-1)) < 0.6,
                        "in contact with": lambda: np.min(np.linalg.norm(
                            t["xy"][::2, None] - a["xy"][None, ::2], axis=-1)) < 0.1,
                        "on top of": lambda: _stands_on(t, a),
                    }[fact]()

                assert any(holds(_object_geometry(scene, a)) for a in anchors), (scene.name, r["description"])
                continue
            others = [_object_geometry(scene, i) for i in _class_members(scene, names, p["label"])
                      if i != int(r["object_id"])]
            if fact == "category":
                assert not others
                continue
            assert others
            if fact in ("left-most", "right-most", "front-most", "back-most"):
                axis, sign = {"left-most": (0, 1), "right-most": (0, -1), "front-most": (1, 1), "back-most": (1, -1)}[fact]
                assert all(sign * t["center"][axis] < sign * o["center"][axis] for o in others), r["description"]
            elif fact in ("tallest", "shortest"):
                sign = 1 if fact == "tallest" else -1
                assert all(sign * t["height"] > sign * o["height"] for o in others), r["description"]
            elif fact == "corner":
                lo, hi = scene.points[:, :2].min(0), scene.points[:, :2].max(0)
                sx, sy = R.CORNERS[p["corner"]]
                corner = np.array([(lo, hi)[sx][0], (lo, hi)[sy][1]])
                d = lambda g: np.linalg.norm(g["center"][:2] - corner)  # noqa: E731
                assert all(d(t) < d(o) for o in others), r["description"]
            elif fact == "middle":
                mid = (scene.points[:, :2].min(0) + scene.points[:, :2].max(0)) / 2.0
                d = lambda g: np.linalg.norm(g["center"][:2] - mid)  # noqa: E731
                assert all(d(t) < d(o) for o in others), r["description"]
    # the test scenes exercise every position fact and most relations
    assert {"category", "left-most", "right-most", "front-most", "back-most", "corner", "left of", "right of",
            "behind", "in front of", "next to", "in contact with", "any anchor", "between"} <= seen


def _room_scene() -> Scene:
    """A hand-built 4 m x 3 m room (labels 0 floor, 1 box, 2 table, 3 lamp, 4 pillar): box 0 at x=0.5 near the
    front left corner, box 1 at x=3.5 far back, box 2 (the big one) mid-back, a table at x=2 in front, a lamp on
    the table, a pillar at the back right."""
    rng = np.random.default_rng(0)

    def block(x0, y0, z0, x1, y1, z1, n=400):
        return np.stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n), rng.uniform(z0, z1, n)], 1)

    def slab(x0, y0, x1, y1, z, n=300):  # a horizontal top
        return np.stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n), np.full(n, z)], 1)

    parts = [  # (points, label, instance)
        (slab(0.0, 0.0, 4.0, 3.0, 0.0, 3000), 0, -1),
        (block(0.3, 0.3, 0.0, 0.7, 0.7, 0.4), 1, 0),
        (block(3.3, 2.5, 0.0, 3.7, 2.9, 0.4), 1, 1),
        (block(1.4, 2.2, 0.0, 2.6, 2.9, 0.8), 1, 2),
        (np.concatenate([slab(1.5, 0.8, 2.5, 1.4, 0.75), block(1.5, 0.8, 0.0, 1.55, 0.85, 0.75, 50)]), 2, 3),
        (block(1.9, 1.0, 0.75, 2.1, 1.2, 1.2, 200), 3, 4),
        (block(3.7, 1.0, 0.0, 3.9, 1.2, 1.6, 300), 4, 5),
    ]
    pts = np.concatenate([p for p, _, _ in parts]).astype(np.float32)
    labels = np.concatenate([np.full(len(p), lb) for p, lb, _ in parts]).astype(np.int64)
    inst = np.concatenate([np.full(len(p), i) for p, _, i in parts]).astype(np.int64)
    return Scene(points=pts, labels=labels, instances=inst, name="handbuilt_room", source="handbuilt")


ROOM_NAMES = {0: "floor", 1: "box", 2: "table", 3: "lamp", 4: "pillar"}


def _target(facts, fact, label=1, **kw):
    pred = {"fact": fact, "label": label, "anchor_id": None, "corner": None, "adjectives": [], **kw}
    hold = R.evaluate_predicate(facts, pred)
    assert hold.sum() == 1, (fact, kw)
    return int(facts.instances[hold][0])


def test_viewpoint_convention_spot_check():
    """The viewer stands at -y looking toward +y: left = small x, front = small y, corners of the floor extent."""
    facts = R.scene_facts(_room_scene(), ROOM_NAMES)
    assert list(facts.instances) == [0, 1, 2, 3, 4, 5]  # the floor is not an object
    assert _target(facts, "left-most") == 0
    assert _target(facts, "right-most") == 1
    assert _target(facts, "front-most") == 0
    assert _target(facts, "corner", corner="front left") == 0
    assert _target(facts, "corner", corner="back right") == 1
    assert _target(facts, "largest") == 2 and _target(facts, "tallest") == 2
    assert _target(facts, "on top of", label=3, anchor_id="3") == 4  # the lamp on the table
    assert _target(facts, "in front of", label=1, anchor_id="3") == 0  # box 0 (y 0.5) vs the table (y 1.1)
    behind = {"fact": "behind", "label": 1, "anchor_id": "3", "corner": None, "adjectives": []}
    assert set(facts.instances[R.evaluate_predicate(facts, behind)]) == {1, 2}  # not unique: never generated
    assert _target(facts, "right of", label=4, anchor_id="3") == 5
    assert _target(facts, "left of", label=2, anchor_id="5") == 3
    # the lamp stands on the table, so it is not "next to" / "behind" it
    for rel in ("next to", "in contact with", "left of", "right of", "behind", "in front of"):
        pred = {"fact": rel, "label": 3, "anchor_id": "3", "corner": None, "adjectives": []}
        assert not R.evaluate_predicate(facts, pred).any(), rel
    records = R.generate_descriptions(_room_scene(), ROOM_NAMES, np.random.default_rng(0), per_scene=40)
    texts = {r["description"] for r in records if r["predicate"]["fact"] == "left-most"}
    assert texts and all(r["object_id"] == "0" for r in records if r["predicate"]["fact"] == "left-most")
    assert any("lamp" in r["description"] and r["predicate"]["fact"] == "on top of" for r in records)


def test_in_contact_with_needs_touching_footprints():
    """Of two boxes beside a pillar, the one flush against it is "in contact with" it; the one 30 cm away is only
    "next to" it."""
    rng = np.random.default_rng(1)

    def block(x0, x1, label, instance, n=600):
        pts = np.stack([rng.uniform(x0, x1, n), rng.uniform(1.0, 1.4, n), rng.uniform(0.0, 0.4, n)], 1)
        return pts, np.full(n, label), np.full(n, instance)

    parts = [(np.stack([rng.uniform(0, 3, 2000), rng.uniform(0, 3, 2000), np.zeros(2000)], 1), np.zeros(2000),
              np.full(2000, -1)), block(0.3, 0.7, 1, 0), block(0.7, 1.1, 4, 1), block(1.4, 1.8, 1, 2)]
    scene = Scene(points=np.concatenate([p for p, _, _ in parts]).astype(np.float32),
                  labels=np.concatenate([lb for _, lb, _ in parts]).astype(np.int64),
                  instances=np.concatenate([i for _, _, i in parts]).astype(np.int64), name="flush", source="flush")
    facts = R.scene_facts(scene, ROOM_NAMES)
    assert _target(facts, "in contact with", anchor_id="1") == 0
    near = {"fact": "next to", "label": 1, "anchor_id": "1", "corner": None, "adjectives": []}
    assert set(facts.instances[R.evaluate_predicate(facts, near)]) == {0, 2}


def test_scene_facts_need_labels_and_instances():
    scene = Scene(points=np.zeros((4, 3), np.float32), name="bare", source="bare.ply")
    with pytest.raises(InputError, match="bare.ply"):
        R.scene_facts(scene, ROOM_NAMES)


def test_templates_and_adjectives_table():
    assert set(R.TEMPLATES) == {f for fs in R.FACTS.values() for f in fs}
    assert all(len(v) >= 4 for v in R.TEMPLATES.values())
    facts = R.scene_facts(_room_scene(), ROOM_NAMES)
    for fact, templates in R.TEMPLATES.items():
        pred = {"fact": fact, "label": 1, "anchor_id": "5", "corner": "front left", "adjectives": ["small"],
                "anchor_label": 1 if fact == "between" else None}  # "between" the other two of the three boxes
        for t in templates:
            text = R.render_description(facts, pred, t)
            assert "{" not in text and "  " not in text
            assert set(R.tokenize(text)) <= R.generator_vocabulary(ROOM_NAMES)


# ------------------------------------------------------------------------------------------ benchmark


def test_splits_are_by_scene():
    for kind in R.KINDS:
        seeds = {s: set(R.referring_scene_seeds(kind, s)) for s in R.SPLITS}
        assert all(seeds[s] for s in R.SPLITS)
        assert not seeds["train"] & seeds["val"] and not seeds["train"] & seeds["test"]
        assert not seeds["val"] & seeds["test"]
    assert R.referring_scene_seeds("toy", "test") == list(range(900, 1000))
    assert R.referring_scene_seeds("toy", "val") == list(range(100_000, 100_100))
    assert R.referring_scene_seeds("longtail", "val") == list(range(600, 700))
    ids = {s: {r["scene_id"] for r in R.build_referring_split("longtail", s, num_scenes=2)} for s in R.SPLITS}
    assert len(ids["train"] | ids["val"] | ids["test"]) == 6
    with pytest.raises(InputError, match="kind"):
        R.build_referring_split("scannet", "train")
    with pytest.raises(InputError, match="split"):
        R.build_referring_split("toy", "dev")
    with pytest.raises(InputError, match="num_scenes"):
        R.build_referring_split("toy", "val", num_scenes=101)


def test_extra_training_scenes_lie_outside_every_split_and_every_other_seed_block():
    from mtml.tables.toy_table1 import HARDER_SEED_START

    records = R.extra_training_records(3, seed=1)
    seeds = {R._parse_scene_id(r["scene_id"])[1] for r in records}
    assert seeds == {300_000, 300_001, 300_002} == {R.TOY_EXTRA_SEED_START + i for i in range(3)}
    val = split_seeds("toy", "val")
    used = set(range(1000)) | set(range(val.start, val.start + 1000))
    used |= set(range(HARDER_SEED_START, HARDER_SEED_START + 1000))
    assert not seeds & used
    assert all(r["scene_id"].startswith("toy_") for r in records)
    # the same scenes and rng rule as a split: a scene's records do not depend on how many are drawn
    two = R.extra_training_records(2, seed=1)
    assert records[: len(two)] == two
    assert R.extra_training_records(0) == []
    with pytest.raises(InputError, match=">= 0"):
        R.extra_training_records(-1)
    with pytest.raises(InputError, match="<= 100000"):
        R.extra_training_records(100_001)
    assert R.has_extra_training_scenes("toy") and not R.has_extra_training_scenes("longtail")
    with pytest.raises(InputError, match="referring_extra"):
        R.extra_training_records(1, kind="longtail")


def test_records_of_kind_keeps_the_scenes_of_one_dataset():
    records = [{"scene_id": i} for i in ("toy_00901", "longtail_00701", "scene0000_00", "toy_x", "toyota_00001")]
    assert R.records_of_kind(records, "toy") == records[:1]
    assert R.records_of_kind(records, "longtail") == records[1:2]
    assert R.class_names_for_scene_id("longtail_00701") == LONGTAIL_CLASS_NAMES
    with pytest.raises(InputError, match="toy_<seed> or longtail_<seed>"):
        R.class_names_for_scene_id("toyota_00001")


def test_scene_for_record_and_target_mask(generated):
    scene, _, records = generated[-1]
    rec = records[0]
    again = R.scene_for_record(rec)
    assert again.name == scene.name and np.array_equal(again.points, scene.points)
    mask = R.referring_target_mask(again, rec)
    assert mask.dtype == bool and mask.shape == (scene.num_points,)
    assert mask.sum() == (scene.instances == int(rec["object_id"])).sum() > 0
    with pytest.raises(InputError, match="not an instance"):
        R.referring_target_mask(again, {**rec, "object_id": "999"})
    with pytest.raises(InputError, match="not a synthetic scene"):
        R.scene_for_record({"scene_id": "scene0000_00"})


# -------------------------------------------------------------------------------------------- hand-made


@pytest.mark.parametrize("path", R.HANDMADE_SETS, ids=R.evaluation_set_name)
def test_handmade_set(path):
    """The hand-written descriptions: valid, about real objects of test scenes, and worded unlike the generator."""
    records = R.read_referring_json(path)
    assert len(records) >= 25
    vocab = R.generator_vocabulary()
    test_scenes = {f"toy_{s:05d}" for s in split_seeds("toy", "test")} | {
        f"longtail_{s:05d}" for s in split_seeds("longtail", "test")}
    scenes, new_words = {}, []
    for rec in records:
        assert rec["scene_id"] in test_scenes
        if rec["scene_id"] not in scenes:
            scene = R.scene_for_record(rec)
            names = R.class_names_for_scene_id(rec["scene_id"])
            facts = R.scene_facts(scene, names)
            generated = {tuple(R.tokenize(d)) for _, _, d in R.candidate_descriptions(facts)}
            scenes[rec["scene_id"]] = (scene, facts, generated)
        scene, facts, generated = scenes[rec["scene_id"]]
        assert R.referring_target_mask(scene, rec).any()
        assert facts.names[facts.row(int(rec["object_id"]))].replace(" ", "_") == rec["object_name"]
        new_words.append(bool(set(rec["token"]) - vocab))
        assert tuple(rec["token"]) not in generated, rec["description"]  # a sentence the generator never says
        assert rec["token"] == R.tokenize(rec["description"])
    if path in R.HANDMADE_SETS[2:]:
        # written blind with no word list to avoid: 2 to 4 of each ("long box, back left") happen to use only words
        # the generator has, in shapes it never uses; the two sets before them were held to a new word each
        assert sum(new_words) >= 35, sum(new_words)
    else:
        assert all(new_words), [r["description"] for r, new in zip(records, new_words) if not new]
    if path == HANDMADE:  # the blind sets describe toy scenes only
        assert sum(r["scene_id"].startswith("longtail") for r in records) >= 5


@pytest.mark.parametrize("path", R.HANDMADE_SETS[1:], ids=R.evaluation_set_name)
def test_the_blind_sets_cover_new_scenes_and_every_class(path):
    records = R.read_referring_json(path)
    earlier = {r["scene_id"] for p in R.HANDMADE_SETS[:R.HANDMADE_SETS.index(path)] for r in R.read_referring_json(p)}
    scenes = {r["scene_id"] for r in records}
    # 2 descriptions per scene (4 in blind5, on the last ten test scenes), 8 per class; blind3 lost one that the
    # generator says word for word
    assert len(records) == (39 if path == R.HANDMADE_BLIND3_DESCRIPTIONS else 40)
    assert len(scenes) == (10 if path == R.HANDMADE_BLIND5_DESCRIPTIONS else 20)
    if path == R.HANDMADE_BLIND6_DESCRIPTIONS:  # a new writer on the first twenty test scenes, which are all taken
        assert scenes == {f"toy_{s:05d}" for s in range(900, 920)}
        said = {r["description"].lower() for p in R.HANDMADE_SETS[:-1] for r in R.read_referring_json(p)}
        assert not {r["description"].lower() for r in records} & said
    else:
        assert not scenes & earlier
    per_class = Counter(r["object_name"] for r in records)
    assert set(per_class) == {n.replace(" ", "_") for k, n in TOY_CLASS_NAMES.items() if k}
    assert set(per_class.values()) <= {7, 8}, per_class
    assert R.evaluation_set_name(R.HANDMADE_BLIND_DESCRIPTIONS) == "handmade_blind"
    assert R.evaluation_set_name("my/own_set.json") == "own_set"


# ---------------------------------------------------------------------------------------- augmentation


def test_drop_words_leaves_out_words_only():
    text = "This is a tall cabinet. It is next to the room's long box."
    assert R.drop_words(text, 0.0, np.random.default_rng(0)) == text
    words = [t for t in R.tokenize(text) if t[0].isalnum()]
    dropped = 0
    for seed in range(200):
        out = R.drop_words(text, 0.3, np.random.default_rng(seed))
        assert out == R.drop_words(text, 0.3, np.random.default_rng(seed))  # the rng alone decides
        kept = [t for t in R.tokenize(out) if t[0].isalnum()]
        assert kept and len(kept) <= len(words)
        it = iter(words)
        assert all(any(k == w for w in it) for k in kept)  # the kept words, in their order
        # punctuation stays; "'s" goes with its word
        assert out.count(".") == 2 and ("room's" in out) == ("room" in kept)
        dropped += len(words) - len(kept)
    assert 0.25 < dropped / (200 * len(words)) < 0.35
    assert R.tokenize(R.drop_words("pillar", 0.99, np.random.default_rng(1))) == ["pillar"]  # one word is kept
    with pytest.raises(InputError, match="dropout"):
        R.drop_words(text, 1.0, np.random.default_rng(0))


def test_training_descriptions_redraw_each_epoch_and_keep_targets_right():
    from mtml.data.voxelize import voxelize
    from mtml.train.referring import training_descriptions, voxel_targets

    records = R.build_referring_split("toy", "train", 1, 4)
    scene = R.scene_for_record(records[0])
    grid = voxelize(scene, 0.1)
    item = {"records": records, "scene": scene, "grid": grid}
    texts, targets = training_descriptions(item, 0, 0, 4, redraw=True, word_dropout=0.0)
    assert texts == [r["description"] for r in records]  # epoch 0: the scene's own descriptions
    assert np.array_equal(targets.numpy(), voxel_targets(grid, records).numpy())
    seen = set(texts)
    for epoch in (1, 2, 3):
        texts, targets = training_descriptions(item, epoch, 0, 4, redraw=True, word_dropout=0.0)
        again, _ = training_descriptions(item, epoch, 0, 4, redraw=True, word_dropout=0.0)
        assert texts == again and len(texts) == 4 == len(targets)
        facts = R.scene_facts(scene, TOY_CLASS_NAMES)
        by_text = {d: row for row, _, d in R.candidate_descriptions(facts)}
        for text, target in zip(texts, targets.numpy()):
            # each drawn description's target is the object the generator drew it for
            assert np.array_equal(target, grid.instances == facts.instances[by_text[text]])
        seen |= set(texts)
    assert len(seen) > 8  # later epochs bring descriptions the first one did not have
    fixed, _ = training_descriptions(item, 3, 0, 4, redraw=False, word_dropout=0.0)
    assert fixed == [r["description"] for r in records]
    short, _ = training_descriptions(item, 3, 0, 4, redraw=False, word_dropout=0.5)
    assert sum(len(R.tokenize(t)) for t in short) < sum(len(r["token"]) for r in records)
