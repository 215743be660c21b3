"""The public API: ``import mtml`` stays cheap, ``mtml.Predictor`` loads bundled models by name and gives the
instances, labels and referred objects that mtml-infer writes for the same scan (it runs the same pipeline)."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import scannet_fixture as fx
from plyfile import PlyData

import mtml
from mtml.cli import run_command
from mtml.cli.infer import main as infer_main
from mtml.data.toy import generate_scene
from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.io.ply import read_ply, scene_to_ply, write_ply
from mtml.io.scannet import read_scannet_scan
from mtml.predict.checkpoint import BUNDLED_DIR, bundled_checkpoints, load_model
from mtml.predict.infer import network_outputs, segment_grid

SENTENCES = ["the flat box on the right side of the cabinet", "the smallest cube"]


@pytest.fixture(scope="module")
def toy():
    """The bundled plain-scan model (semantic, instance and referring heads)."""
    return mtml.Predictor.from_checkpoint("toy")


@pytest.fixture(scope="module")
def plain_scene():
    """Toy test scene 900 without its annotations, as a user's x y z scan."""
    return dataclasses.replace(generate_scene(900), labels=None, instances=None)


def test_import_is_cheap_and_a_bundled_model_loads_by_name():
    code = ("import sys, mtml\n"
            "assert 'torch' not in sys.modules, 'import mtml imported torch'\n"
            "p = mtml.Predictor.from_checkpoint('toy')\n"
            "print(type(p).__name__, p.model.training, p.loaded.path.endswith('toy.pt'))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["Predictor", "False", "True"]


def test_public_names():
    from mtml import scene

    assert mtml.Scene is scene.Scene and mtml.Segmentation is scene.Segmentation
    assert mtml.Instance is scene.Instance and mtml.Referral is scene.Referral
    assert mtml.bundled_checkpoints() == bundled_checkpoints()
    assert {"Predictor", "read_scene", "Scene"} <= set(dir(mtml))
    with pytest.raises(AttributeError, match="no attribute 'Predicter'"):
        _ = mtml.Predicter


def _pipeline(name: str, scene, use_given_labels: bool):
    """What mtml-infer runs for a scene (load, voxelize, network, segment_grid) and the point instance ids it
    writes: (SceneResult, int64 [N] instance index per point, -1 none)."""
    loaded = load_model(name)
    grid = voxelize(scene, loaded.config.data.voxel_size)
    outputs = network_outputs(loaded.model, grid)
    res = segment_grid(loaded.model, scene, grid, loaded.config.cluster, use_given_labels=use_given_labels,
                       outputs=outputs)
    return res, res.instances.point_instance_ids(res.grid, res.point_labels)


def _assert_same_segmentation(seg, res, point_ids, class_names):
    """The Segmentation holds the pipeline's instances that have points, in score order, with their points."""
    kept = [k for k in range(len(res.instances)) if (point_ids == k).any()]
    assert len(seg.instances) == len(kept) > 0
    np.testing.assert_array_equal(seg.point_labels, res.point_labels)
    for new_id, (inst, k) in enumerate(zip(seg.instances, kept)):
        np.testing.assert_array_equal(inst.point_indices, np.flatnonzero(point_ids == k))
        np.testing.assert_array_equal(np.flatnonzero(seg.point_instances == new_id), inst.point_indices)
        assert inst.label_id == int(res.instances.labels[k]) and inst.score == float(res.instances.scores[k])
        assert inst.label_name == class_names[inst.label_id]
        assert inst.point_indices.dtype == np.int64
    assert ((seg.point_instances >= 0) == (point_ids >= 0)).all()


def test_segment_equals_the_pipeline_on_a_plain_scan(toy, plain_scene):
    seg = toy.segment(plain_scene)
    res, point_ids = _pipeline("toy", plain_scene, use_given_labels=True)
    assert seg.labels_source == res.labels_source == "predicted"
    _assert_same_segmentation(seg, res, point_ids, toy.class_names)
    assert {"voxelize", "network", "cluster"} <= set(seg.timings_s)
    assert seg.class_names == {0: "floor", 1: "small cube", 2: "long box", 3: "flat box", 4: "cabinet", 5: "pillar"}


def test_segment_equals_the_pipeline_on_given_labels():
    """A model that reads labels (toy_multitask) builds the instances on the scan's own labels."""
    scene = generate_scene(901)
    predictor = mtml.Predictor.from_checkpoint("toy_multitask")
    seg = predictor.segment(scene)
    res, point_ids = _pipeline("toy_multitask", scene, use_given_labels=True)
    assert seg.labels_source == "given"
    np.testing.assert_array_equal(seg.point_labels, scene.labels)
    _assert_same_segmentation(seg, res, point_ids, predictor.class_names)


def test_segment_and_refer_give_what_mtml_infer_writes(toy, plain_scene, tmp_path, capsys):
    """One mtml-infer run on the plain PLY against the Predictor on the same file: the same instances (points,
    labels, scores), point labels and referred points."""
    ply = write_ply(tmp_path / "room.ply", plain_scene.points)
    args = [str(ply), "--out", str(tmp_path / "out"), "--no-picture", "--refer", SENTENCES[0], "--refer", SENTENCES[1]]
    assert run_command(infer_main, args) == 0, capsys.readouterr().err
    vertex = PlyData.read(str(tmp_path / "out" / "room_instances.ply"))["vertex"].data
    summary = json.loads((tmp_path / "out" / "room_instances.json").read_text())

    scene = mtml.read_scene(ply)
    seg = toy.segment(scene)
    np.testing.assert_array_equal(seg.point_labels, vertex["label"])
    assert len(seg.instances) == len(summary["instances"])
    for inst, written in zip(seg.instances, summary["instances"]):
        np.testing.assert_array_equal(inst.point_indices, np.flatnonzero(vertex["instance"] == written["id"]))
        assert (inst.label_id, inst.label_name) == (written["label"], written["label_name"])
        assert round(inst.score, 6) == written["score"]

    referrals = toy.refer(scene, SENTENCES)
    assert [r.sentence for r in referrals] == SENTENCES
    targets = PlyData.read(str(tmp_path / "out" / "room_refer.ply"))["vertex"].data
    answers = json.loads((tmp_path / "out" / "room_refer.json").read_text())["answers"]
    for k, (referral, answer) in enumerate(zip(referrals, answers)):
        assert referral.point_mask.dtype == np.bool_ and referral.point_mask.shape == (scene.num_points,)
        np.testing.assert_array_equal(referral.point_mask, targets[f"target_{k}"] == 1)
        assert referral.point_mask.sum() == answer["num_points"] > 0
        assert round(referral.score, 4) == answer["score"] and 0.0 <= referral.score <= 1.0
        assert isinstance(referral.found, bool)
    assert referrals[0].found  # the demo sentence is answered with voxels over 0.5 (the CLI's demo checks it)


def test_refer_one_referral_per_sentence_and_empty_input(toy, plain_scene):
    assert toy.refer(plain_scene, []) == []
    [one] = toy.refer(plain_scene, [SENTENCES[1]])
    assert one.sentence == SENTENCES[1] and one.point_mask.any()
    with pytest.raises(InputError, match="empty sentence"):
        toy.refer(plain_scene, ["the pillar", "  "])


def test_refer_needs_a_referring_head(plain_scene):
    predictor = mtml.Predictor.from_checkpoint("toy_multitask")
    with pytest.raises(InputError, match=r"toy_multitask\.pt: this checkpoint has no referring head"):
        predictor.refer(plain_scene, ["the smallest cube"])


def test_unknown_name_lists_the_bundled_models(tmp_path):
    with pytest.raises(InputError, match="no_such_model: no such checkpoint file, nor a bundled model "
                                         r"\(bundled: toy, toy_fe_only, toy_multitask"):
        mtml.Predictor.from_checkpoint("no_such_model")
    with pytest.raises(InputError, match="missing.pt: no such checkpoint file"):
        mtml.load_model(tmp_path / "missing.pt")


def test_a_file_loads_by_its_path_and_a_bundled_model_by_name(tmp_path):
    """The loader rebuilds the experiment config the checkpoint carries; a file keeps its path as given."""
    copy = tmp_path / "copy.pt"
    copy.write_bytes((BUNDLED_DIR / "toy_fe_only.pt").read_bytes())
    loaded = load_model(str(copy))
    assert loaded.path == str(copy) and not loaded.model.training and loaded.state["format"] == "mtml-1"
    assert loaded.config.name == "toy_fe_only_finetune" and loaded.config.loss.use_direction is False
    assert loaded.config.cluster.use_direction is False and loaded.config.data.voxel_size == 0.1
    assert load_model("toy_fe_only").path == str(BUNDLED_DIR / "toy_fe_only.pt")


def test_segment_refuses_what_the_model_cannot_do(toy, plain_scene):
    with pytest.raises(InputError, match="no 'label' vertex property"):
        mtml.Predictor.from_checkpoint("toy_multitask").segment(plain_scene)
    with pytest.raises(InputError, match="use_given_labels=True, but the scene has no labels"):
        toy.segment(plain_scene, use_given_labels=True)
    with pytest.raises(InputError, match="vote_passes must be between 1 and 16, got 0"):
        toy.segment(plain_scene, vote_passes=0)
    with pytest.raises(InputError, match="toy_fe_only.pt: use_given_labels=False, but this model cannot predict"):
        mtml.Predictor.from_checkpoint("toy_fe_only").segment(generate_scene(900), use_given_labels=False)


def test_predicted_labels_on_a_labelled_scan(toy):
    """use_given_labels=False ignores the scan's labels, as mtml-infer --predict-labels does."""
    scene = generate_scene(900)
    predicted = toy.segment(scene, use_given_labels=False)
    given = toy.segment(scene)
    assert predicted.labels_source == "predicted" and given.labels_source == "given"
    np.testing.assert_array_equal(given.point_labels, scene.labels)
    assert (predicted.point_labels == scene.labels).mean() > 0.9


def test_read_scene_reads_ply_files_and_scannet_folders(tmp_path):
    ply = scene_to_ply(generate_scene(3), tmp_path / "scene.ply")
    scene, expected = mtml.read_scene(ply), read_ply(ply)
    assert isinstance(scene, mtml.Scene) and scene.name == "scene"
    np.testing.assert_array_equal(scene.points, expected.points)
    np.testing.assert_array_equal(scene.labels, expected.labels)
    folder = fx.write_scan(fx.make_scan("scene0000_00", seed=3), tmp_path, label_map=True)
    scan, expected = mtml.read_scene(folder, "scannet200"), read_scannet_scan(folder, "scannet200")
    assert scan.name == "scene0000_00"
    np.testing.assert_array_equal(scan.labels, expected.labels)
    np.testing.assert_array_equal(scan.instances, expected.instances)
    with pytest.raises(InputError, match="nothing.ply"):
        mtml.read_scene(tmp_path / "nothing.ply")
