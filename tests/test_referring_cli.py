"""The referring head inside the package: training it on a frozen backbone, and mtml-infer --refer."""

import json

import numpy as np
import pytest
import torch
from plyfile import PlyData

from mtml.cli import run_command
from mtml.cli.infer import main as infer_main
from mtml.data.toy import generate_scene
from mtml.io.ply import write_ply
from mtml.model.model import load_checkpoint


def _run(argv, capsys):
    code = run_command(infer_main, argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_training_the_referring_head_leaves_the_rest_untouched(tiny_semantic_checkpoint, tiny_referring_checkpoint):
    base, base_state = load_checkpoint(tiny_semantic_checkpoint)
    model, state = load_checkpoint(tiny_referring_checkpoint)
    assert model.referring_head is not None
    assert state["class_voxel_counts"] == base_state["class_voxel_counts"] != []  # C-Focal weights stay usable
    own = model.state_dict()
    for key, value in base.state_dict().items():
        assert torch.equal(own[key], value), key  # frozen: backbone, instance and semantic heads
    rows = [json.loads(line) for line in (tiny_referring_checkpoint.parent / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in rows if r["kind"] == "val"]
    assert vals and {"miou", "acc25", "acc50"} <= set(vals[-1])


def test_extra_training_scenes_join_the_training_set_of_toy_runs_only(tiny_semantic_checkpoint, tmp_path,
                                                                    monkeypatch):
    from conftest import TINY_REFERRING

    import mtml.train.referring as tr
    from mtml.config import config_from_dict
    from mtml.data.referring import TOY_EXTRA_SEED_START
    from mtml.errors import InputError

    built_sets = []  # scene names of each ReferringScenes built, in order

    class Recorded(tr.ReferringScenes):
        def __init__(self, records, *args, **kwargs):
            super().__init__(records, *args, **kwargs)
            built_sets.append(sorted(self.names))

    monkeypatch.setattr(tr, "ReferringScenes", Recorded)
    cfg = {**TINY_REFERRING, "data": {**TINY_REFERRING["data"], "referring_extra_scenes": 2},
           "train": {**TINY_REFERRING["train"], "epochs": 1}}
    tr.train_referring(config_from_dict(cfg), tmp_path / "toy", progress=False,
                       init_checkpoint=str(tiny_semantic_checkpoint))
    train_names = built_sets[0]  # the training set is built first, then validation
    assert len(train_names) == 4 + 2
    assert {f"toy_{TOY_EXTRA_SEED_START}", f"toy_{TOY_EXTRA_SEED_START + 1}"} <= set(train_names)
    cfg["data"] = {**cfg["data"], "kind": "longtail"}
    with pytest.raises(InputError, match="referring_extra_scenes"):
        tr.train_referring(config_from_dict(cfg), tmp_path / "longtail", progress=False,
                           init_checkpoint=str(tiny_semantic_checkpoint))


def test_refer_writes_target_ply_and_json(tiny_referring_checkpoint, tmp_path, capsys):
    scene = generate_scene(7)
    src = write_ply(tmp_path / "room.ply", scene.points)
    sentences = ["the pillar", "the small cube next to the cabinet"]
    code, out, err = _run([str(src), "--checkpoint", str(tiny_referring_checkpoint), "--out", str(tmp_path / "o"),
                           "--no-picture", "--refer", sentences[0], "--refer", sentences[1]], capsys)
    assert code == 0, err
    v = PlyData.read(str(tmp_path / "o" / "room_refer.ply"))["vertex"].data
    assert len(v) == scene.num_points and {"target_0", "target_1"} <= set(v.dtype.names)
    summary = json.loads((tmp_path / "o" / "room_refer.json").read_text())
    assert [a["description"] for a in summary["answers"]] == sentences
    for k, answer in enumerate(summary["answers"]):
        mask = v[f"target_{k}"] == 1
        assert answer["num_points"] == int(mask.sum()) > 0  # every sentence gets an answer
        pts = np.c_[v["x"], v["y"], v["z"]][mask]
        assert answer["bbox_min"] == pytest.approx(pts.min(0).tolist(), abs=1e-3)
        assert answer["bbox_max"] == pytest.approx(pts.max(0).tolist(), abs=1e-3)
        assert sentences[k] in out


def test_one_sentence_writes_a_target_property_and_a_picture(tiny_referring_checkpoint, tmp_path, capsys):
    src = write_ply(tmp_path / "room.ply", generate_scene(8).points)
    code, _, err = _run([str(src), "--checkpoint", str(tiny_referring_checkpoint), "--out", str(tmp_path / "o"),
                         "--refer", "the flat box"], capsys)
    assert code == 0, err
    v = PlyData.read(str(tmp_path / "o" / "room_refer.ply"))["vertex"].data
    assert set(np.unique(v["target"])) <= {0, 1}
    assert (tmp_path / "o" / "room_refer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_all_sentences_share_one_network_pass(tiny_referring_checkpoint, tmp_path, capsys, monkeypatch):
    import mtml.predict.infer

    calls = []
    real = mtml.predict.infer.network_outputs
    monkeypatch.setattr(mtml.predict.infer, "network_outputs", lambda *a, **k: calls.append(1) or real(*a, **k))
    src = write_ply(tmp_path / "room.ply", generate_scene(8).points)
    code, _, err = _run([str(src), "--checkpoint", str(tiny_referring_checkpoint), "--out", str(tmp_path / "o"),
                         "--no-picture"] + [a for s in ("the pillar", "the cube", "the cabinet") for a in ("--refer", s)],
                        capsys)
    assert code == 0, err
    assert len(calls) == 1  # instances and three sentences from one backbone pass


def test_refer_needs_a_referring_head(tiny_semantic_checkpoint, tmp_path, capsys):
    src = write_ply(tmp_path / "room.ply", generate_scene(8).points)
    code, _, err = _run([str(src), "--checkpoint", str(tiny_semantic_checkpoint), "--out", str(tmp_path / "o"),
                         "--refer", "the pillar"], capsys)
    assert code == 2 and "referring head" in err and str(tiny_semantic_checkpoint) in err
    assert not (tmp_path / "o").exists()


def test_demo_with_a_referring_head_answers_the_demo_sentence(tiny_referring_checkpoint, tmp_path, capsys):
    from mtml.cli.infer import DEMO_SENTENCE

    code, out, err = _run(["--demo", "--checkpoint", str(tiny_referring_checkpoint), "--out", str(tmp_path),
                           "--no-picture"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "toy_00900_refer.json").read_text())
    assert [a["description"] for a in summary["answers"]] == [DEMO_SENTENCE] and DEMO_SENTENCE in out


def test_demo_sentence_is_true_in_the_demo_scene():
    """The generator's own facts single out one flat box right of the cabinet in scene 900."""
    from mtml.cli.infer import DEMO_SENTENCE
    from mtml.data import referring as R
    from mtml.data.toy import TOY_CLASS_NAMES

    facts = R.scene_facts(generate_scene(900), TOY_CLASS_NAMES)
    cabinet = [r for r in range(len(facts.names)) if facts.names[r] == "cabinet"]
    assert len(cabinet) == 1 and "flat box" in DEMO_SENTENCE and "right" in DEMO_SENTENCE
    flat_box = [k for k, v in TOY_CLASS_NAMES.items() if v == "flat box"][0]
    pred = {"fact": "right of", "label": flat_box, "anchor_id": str(int(facts.instances[cabinet[0]])), "corner": None,
            "adjectives": []}
    hits = np.flatnonzero(R.evaluate_predicate(facts, pred))
    assert len(hits) == 1 and int(facts.instances[hits[0]]) == 5
